"""Running headers, footers, page numbers and side stamps: recognised and kept out of the body.

Mathpix leaves them out unless asked (``include_page_info``). A line is page furniture when it is
rotated (the arXiv side stamp), or sits in the top or bottom margin band and is either a bare page
number or repeats (digits aside) at the same place on a page up to two pages before or after.
"""

from __future__ import annotations

import re

from ._textlayer import Line, PageFacts

MARGIN = 0.12
"""The top and bottom bands, as a share of the page height, where furniture is looked for."""
PAGE_NUMBER = re.compile(
    r"^[-–\s]*(?:page\s*)?(?:\d{1,4}|[ivxlcdm]{1,7})(?:\s*(?:of|/)\s*\d{1,4})?[-–\s]*$", re.IGNORECASE
)


def _key(text: str) -> str:
    text = re.sub(r"\b[ivxlc]{1,6}\b", "#", re.sub(r"\d+", "#", text.lower()))  # page numbers, roman too
    return re.sub(r"\s+", " ", text).strip()


def _margin_lines(facts: PageFacts) -> list[tuple[str, float, Line]]:
    """Lines in the margin bands: (key, distance from the nearer page edge as a share of height, line)."""
    _, bottom, _, top = facts.box
    height = (top - bottom) or 1.0
    out = []
    for line in facts.lines:
        from_top, from_bottom = (top - line.base) / height, (line.base - bottom) / height
        if from_top < MARGIN:
            out.append((_key(line.text), -from_top, line))
        elif from_bottom < MARGIN:
            out.append((_key(line.text), from_bottom, line))
    return out


def body_lines(facts: PageFacts, neighbours: list[PageFacts]) -> list[Line]:
    """``facts.lines`` without furniture, judged against the neighbouring pages."""
    seen = [(key, where) for other in neighbours for key, where, _ in _margin_lines(other)]
    furniture: set[int] = set()
    for key, where, line in _margin_lines(facts):
        if PAGE_NUMBER.match(line.text.strip()) or any(
            key == k and abs(where - w) < 0.02 and len(key) > 1 for k, w in seen
        ):
            furniture.add(id(line))
    return [ln for ln in facts.lines if id(ln) not in furniture and not (ln.rotated and len(ln.text) < 200)]
