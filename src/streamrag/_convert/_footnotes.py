"""Footnotes: small lines at the bottom of a column that start with a marker, moved to the page's end.

Mathpix writes a page's footnotes after the rest of its text as ``\\footnotetext{…}`` blocks, the
marker as a superscript (``\\footnotetext{${ }^{1}$ …}``), so a footnote does not cut the body
paragraph it sits under (in a two-column paper, the left column's footnotes would otherwise come
between the columns); the chunker reads these blocks as asides.

A footnote zone is a run of lines (in reading order) in a font clearly smaller than the body's,
going down the page, that starts with a marker (a number of one to three digits, or ``*``, ``∗``,
``†``, ``‡``, ``§``, ``¶``) followed by text, in the lower half of the text, with no body-size line
below it in its column. Each marker line there starts a footnote; the next lines continue it. A later
number counts as a marker only if it is the previous footnote's number plus one (``1``…``2``), so a
continuation line that starts with a number is not cut off.
"""

from __future__ import annotations

import re
from dataclasses import replace

from ._textlayer import Line

SMALL = 0.88
"""A footnote's font size is at most this share of the body size."""
_MARKER = re.compile(r"^\s*(\d{1,3}|[*∗†‡§¶]{1,3})\s?(?=[^\W\d_]|http|www|\()")
_TEX = {"*": "*", "∗": "*", "†": "\\dagger", "‡": "\\ddagger", "§": "\\S", "¶": "\\P"}


def _marker(line: Line, previous: str | None) -> str | None:
    """The footnote marker ``line`` starts with, if it may start a footnote after ``previous``."""
    match = _MARKER.match(line.text)
    if match is None:
        return None
    mark = match[1]
    rest = line.text[match.end() :]
    if sum(c.isalpha() for c in rest) >= 4 and rest.upper() == rest:
        return None  # "332 ACKNOWLEDGMENTS": a running foot with its page number, not a note
    if mark.isdigit() and previous is not None and previous.isdigit() and int(mark) != int(previous) + 1:
        return None
    return mark


def _zone_start(lines: list[Line], k: int, body: float, low: float) -> bool:
    """May ``lines[k]`` open a footnote zone: small, low on the page, under all body text of its column?"""
    line = lines[k]
    if line.size > SMALL * body or line.base > low or _marker(line, None) is None:
        return False
    if k > 0 and lines[k - 1].size <= SMALL * body and 0 < lines[k - 1].base - line.base < 2.0 * line.size:
        return False  # the small text began above: a caption or small print, not a footnote
    return not any(o.size > SMALL * body and o.base < line.base and o.x0 < line.x1 and o.x1 > line.x0 for o in lines)


def split_footnotes(lines: list[Line], body: float) -> tuple[list[Line], list[tuple[str, list[Line]]]]:
    """``lines`` (in reading order) without their footnotes, and the footnotes: (marker, lines)."""
    if not body or len(lines) < 3:
        return lines, []
    bottom, top = min(ln.base for ln in lines), max(ln.base for ln in lines)
    low = bottom + 0.5 * (top - bottom)
    notes: list[tuple[str, list[Line]]] = []
    taken: set[int] = set()
    k = 0
    while k < len(lines):
        if not _zone_start(lines, k, body, low):
            k += 1
            continue
        size, previous, last = lines[k].size, None, lines[k]
        while k < len(lines):
            line = lines[k]
            if abs(line.size - size) > 0.5 or line.base > last.base + 0.7 * size:  # not small, or back up
                break
            mark = _marker(line, previous)
            if mark is not None:
                notes += [(each, [part]) for each, part in _one_per_cell(line, mark)]
                previous = notes[-1][0]
            else:
                notes[-1][1].append(line)
            taken.add(id(line))
            last = line
            k += 1
    return [ln for ln in lines if id(ln) not in taken], notes


def _one_per_cell(line: Line, mark: str) -> list[tuple[str, Line]]:
    """A line holding several numbered footnotes side by side (``1 url  2 url``): one per cell."""
    marks: list[str] = []
    for _, _, text in line.cells:
        match = _MARKER.match(text)
        expected = str(int(marks[-1]) + 1) if marks and marks[-1].isdigit() else None
        if match is None or (expected is not None and match[1] != expected):
            return [(mark, line)]
        marks.append(match[1])
    if len(marks) < 2:
        return [(mark, line)]
    return [
        (m, replace(line, text=text, x0=x0, x1=x1, cells=[(x0, x1, text)]))
        for m, (x0, x1, text) in zip(marks, line.cells, strict=True)
    ]


def note_text(lines: list[str]) -> list[str]:
    """A footnote's line texts without the marker that starts the first."""
    return [_MARKER.sub("", lines[0], count=1), *lines[1:]]


def footnote_text(mark: str, text: str) -> str:
    """Mathpix's shape: ``\\footnotetext{${ }^{1}$ The note.}`` (braces in the note escaped)."""
    text = text.replace("{", "\\{").replace("}", "\\}")
    return f"\\footnotetext{{${{ }}^{{{_TEX.get(mark, mark)}}}$ {text}}}"
