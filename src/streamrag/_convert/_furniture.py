"""Running headers, footers, page numbers and side stamps: recognised and kept out of the body.

Mathpix leaves them out unless asked (``include_page_info``). A line is page furniture when it is
rotated (the arXiv side stamp), or sits in the top or bottom band of the page and

- is a bare page number (in the outer band), or
- repeats (digits aside) at the same height on a page up to two pages before or after, or
- is the band's outermost line, set apart from the body (two line heights), starts or ends with a
  page number, and a neighbouring page's such line sits at the same height: a book's running foot,
  whose words change with the chapter ("Chapter 2. Roles … 11" beside "10 Row and Column Access …"),
  but not the first entry of a table of contents.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ._textlayer import Line, PageFacts

MARGIN = 0.12
"""The outer bands, as a share of the page height, where a bare page number is furniture."""
BAND = 0.16
"""The bands where repeated running heads are looked for (a journal's head can sit lower)."""
SAME_HEIGHT = 0.02
PAGE_NUMBER = re.compile(
    r"^[-–\s]*(?:page\s*)?(?:\d{1,4}|[ivxlcdm]{1,7})(?:\s*(?:of|/)\s*\d{1,4})?[-–\s]*$", re.IGNORECASE
)
NUMBERED = re.compile(r"^\s*(?:\d{1,4}|[ivxlc]{1,6})\s+\S|\S\s+(?:\d{1,4}|[ivxlc]{1,6})\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class _Margin:
    key: str  # the text, lower-cased, digits and roman numerals as "#"
    top: bool
    distance: float  # from the nearer page edge, as a share of the page height
    outermost: bool  # nearest the page edge in its band, and two line heights clear of the next line
    line: Line


def _key(text: str) -> str:
    text = re.sub(r"\b[ivxlc]{1,6}\b", "#", re.sub(r"\d+", "#", text.lower()))  # page numbers, roman too
    return re.sub(r"\s+", " ", text).strip()


def _margin_lines(facts: PageFacts) -> list[_Margin]:
    """Lines in the top and bottom bands, each marked if it is its band's outermost."""
    _, bottom, _, top = facts.box
    height = (top - bottom) or 1.0
    bands: dict[bool, list[tuple[float, Line]]] = {True: [], False: []}
    for line in facts.lines:
        from_top, from_bottom = (top - line.base) / height, (line.base - bottom) / height
        if from_top < BAND:
            bands[True].append((from_top, line))
        elif from_bottom < BAND:
            bands[False].append((from_bottom, line))
    out = []
    for is_top, found in bands.items():
        if not found:
            continue
        _, outer = min(found, key=lambda f: f[0])
        inward = [abs(outer.base - o.base) for o in facts.lines if (o.base < outer.base) == is_top and o is not outer]
        apart = min(inward, default=height) >= 2 * outer.size
        out += [_Margin(_key(ln.text), is_top, d, ln is outer and apart, ln) for d, ln in found]
    return out


def _is_furniture(m: _Margin, seen: list[_Margin]) -> bool:
    same_place = [o for o in seen if o.top == m.top and abs(o.distance - m.distance) < SAME_HEIGHT]
    text = m.line.text.strip()
    if m.distance < MARGIN and PAGE_NUMBER.match(text):
        return True
    if len(m.key) > 1 and any(o.key == m.key for o in same_place):
        return True
    return (
        m.outermost
        and NUMBERED.search(text) is not None
        and any(o.outermost and NUMBERED.search(o.line.text.strip()) for o in same_place)
    )


def body_lines(facts: PageFacts, neighbours: list[PageFacts]) -> list[Line]:
    """``facts.lines`` without furniture, judged against the neighbouring pages."""
    seen = [m for other in neighbours for m in _margin_lines(other)]
    furniture = {id(m.line) for m in _margin_lines(facts) if _is_furniture(m, seen)}
    return [ln for ln in facts.lines if id(ln) not in furniture and not (ln.rotated and len(ln.text) < 200)]
