"""Reading a page's text layer through PDFium: lines with geometry, and what kind of page it is.

Every function here calls into PDFium: the caller holds :data:`streamrag._convert.PDFIUM_LOCK`.
"""

from __future__ import annotations

import ctypes
import re
import statistics
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

from .._exceptions import ConversionError
from ._text import HYPHEN_MARKS

#: Characters one page may hold; a denser page is an error of that page, not a hang of the server.
MAX_PAGE_CHARS = 200_000

_BOLD_FONT = re.compile(r"bold|black|heavy|demi|medi|cmbx|\bbx", re.IGNORECASE)
_LINE_SPLIT = re.compile(r"([^\r\n\x02\ufffe]*[\x02\ufffe]?)(?:\r\n|[\r\n])?")
_WORDLIKE = re.compile(r"^[(\[\"'“‘]*(?:[^\W\d_]{1,20}(?:[-'’][^\W\d_]+)*|\d+(?:[.,]\d+)*)[)\]\"'”’.,;:!?]*$")
_VISIBLE_RUN = re.compile(f"[^\\s{''.join(HYPHEN_MARKS)}]+")
"""A run of visible characters: not white space, not one of :data:`HYPHEN_MARKS`."""
_ALEF_LAM = re.compile("[اأإآ]ل")
_RTL_CHAR = re.compile("[\u0590-\u08ff\ufb1d-\ufdff\ufe70-\ufeff]")
CELL_GAP = 0.9
"""A gap wider than this many font sizes between two words splits a line into table cells."""


@dataclass(slots=True)
class Line:
    """One line of text with the geometry the layout rules need (PDF points, y up)."""

    text: str
    x0: float
    x1: float
    base: float
    size: float
    first_word: float = 0.0
    bold: bool = False
    rotated: bool = False
    cells: list[tuple[float, float, str]] = field(default_factory=list)
    """The line split at wide gaps: ``(x0, x1, text)``; one cell for ordinary text."""


@dataclass(slots=True)
class PageFacts:
    """What a page holds, to choose between its text layer, OCR and ``image_no_content``."""

    lines: list[Line]
    box: tuple[float, float, float, float]
    width: float
    height: float
    visible_chars: int
    image_cover: float
    """The largest image's share of the page area (0..1); measured only when it can decide the page's
    kind (fewer than 10 visible chars, or a text layer that reads as garbage), else 0."""
    invisible_text: bool
    """The text is drawn invisibly (render mode 3): an OCR layer over a scan (measured as ``image_cover``)."""

    def needs_ocr(self) -> bool:
        if self.visible_chars < 10:
            return self.image_cover > 0.05
        return self.invisible_text and self.image_cover > 0.5 and garbage_share(self.lines) > 0.3

    def is_blank(self) -> bool:
        return self.visible_chars == 0 and self.image_cover <= 0.05


def garbage_share(lines: list[Line]) -> float:
    """Share of a text layer's tokens that do not look like words or numbers."""
    tokens = [t for ln in lines for t in ln.text.split()]
    if not tokens:
        return 1.0
    return sum(1 for t in tokens if not _WORDLIKE.match(t)) / len(tokens)


def read_page(page: pdfium.PdfPage) -> PageFacts:
    textpage = page.get_textpage()
    try:
        lines = read_lines(textpage)
    finally:
        textpage.close()
    box = left, bottom, right, top = page.get_bbox()
    # text off the visible page (a printer's line numbers beside the crop box) is not page text
    lines = [ln for ln in lines if ln.x1 > left and ln.x0 < right and bottom < ln.base + ln.size and ln.base < top]
    width, height = page.get_size()
    visible = sum(len(run) for ln in lines for run in _VISIBLE_RUN.findall(ln.text))
    # the objects only matter for a page with almost no text, or a text layer that may be OCR garbage
    maybe_scan = visible < 10 or (len(lines) < 400 and garbage_share(lines) > 0.3)
    cover, invisible = _objects(page, width * height) if maybe_scan else (0.0, False)
    return PageFacts(lines, box, width, height, visible, cover, invisible)


def _objects(page: pdfium.PdfPage, area: float) -> tuple[float, bool]:
    """The largest image's cover of the page, and whether all text objects are invisible.

    Walks the page's objects and those of its top-level form XObjects through PDFium's C API
    directly: a helper object per page object costs more than the rest of a text page's reading.
    """
    cover, text_objects, invisible = 0.0, 0, 0
    left, bottom, right, top = (ctypes.c_float() for _ in range(4))
    page_width, page_height = page.get_size()
    for obj, kind in _page_objects(page.raw):
        if kind == pdfium_c.FPDF_PAGEOBJ_IMAGE:
            if pdfium_c.FPDFPageObj_GetBounds(obj, left, bottom, right, top):
                box = (min(right.value, page_width) - max(left.value, 0.0)) * (
                    min(top.value, page_height) - max(bottom.value, 0.0)
                )
                cover = max(cover, box / area if area else 0.0)
        elif kind == pdfium_c.FPDF_PAGEOBJ_TEXT:
            text_objects += 1
            invisible += pdfium_c.FPDFTextObj_GetTextRenderMode(obj) == pdfium_c.FPDF_TEXTRENDERMODE_INVISIBLE
    return cover, text_objects > 0 and invisible >= 0.9 * text_objects


def _page_objects(raw_page: Any) -> Iterator[tuple[Any, int]]:
    """(object handle, type) of a page's objects, each followed by those of a form XObject it is."""
    for i in range(pdfium_c.FPDFPage_CountObjects(raw_page)):
        obj = pdfium_c.FPDFPage_GetObject(raw_page, i)
        if not obj:
            continue
        kind = pdfium_c.FPDFPageObj_GetType(obj)
        yield obj, kind
        if kind == pdfium_c.FPDF_PAGEOBJ_FORM:
            for j in range(pdfium_c.FPDFFormObj_CountObjects(obj)):
                inner = pdfium_c.FPDFFormObj_GetObject(obj, j)
                if inner:
                    yield inner, pdfium_c.FPDFPageObj_GetType(inner)


def read_lines(textpage: pdfium.PdfTextPage) -> list[Line]:
    """The page's lines as PDFium splits them (``\\r\\n``), sampling a few chars per line for style.

    A line is handled as runs of visible characters (words, mostly): the boxes of a run's first and
    last characters are all the layout needs, so no Python work is done per character.
    """
    n = textpage.count_chars()
    if n > MAX_PAGE_CHARS:  # no real page holds this much: refuse it before the per-char layout work
        raise ConversionError("page_too_large", f"the page has {n} characters, over the limit of {MAX_PAGE_CHARS}")
    raw = textpage.raw
    text = textpage.get_text_range() if n > 0 else ""
    if len(text) != n:  # non-BMP characters: fall back to one call per char
        text = "".join(chr(pdfium_c.FPDFText_GetUnicode(raw, i) or 0xFFFD) for i in range(n))
    left, right, bottom, top = (ctypes.c_double() for _ in range(4))
    if "ل" in text:
        text = _lam_alef(textpage, text)
    ox, oy = ctypes.c_double(), ctypes.c_double()
    name = ctypes.create_string_buffer(128)
    flags = ctypes.c_int()
    matrix = pdfium_c.FS_MATRIX()
    get_box = pdfium_c.FPDFText_GetCharBox

    def box(i: int) -> tuple[float, float]:
        get_box(raw, i, left, right, bottom, top)
        return left.value, right.value

    def edges(runs: list[tuple[int, int]]) -> list[tuple[float, float]]:
        """(left of its first char, right of its last char) of each run: one or two boxes a run."""
        out = []
        for start, end in runs:
            get_box(raw, start, left, right, bottom, top)
            x_left = left.value
            if end - start > 1:
                get_box(raw, end - 1, left, right, bottom, top)
            out.append((x_left, right.value))
        return out

    def font_size(i: int) -> float:  # the nominal size times the text matrix's scale
        pdfium_c.FPDFText_GetMatrix(raw, i, matrix)
        scale = abs(matrix.a * matrix.d - matrix.b * matrix.c) ** 0.5
        return float(pdfium_c.FPDFText_GetFontSize(raw, i)) * (scale or 1.0)

    def is_bold(i: int) -> bool:
        if pdfium_c.FPDFText_GetFontWeight(raw, i) >= 600:
            return True
        pdfium_c.FPDFText_GetFontInfo(raw, i, name, len(name), ctypes.byref(flags))
        return bool(_BOLD_FONT.search(name.value.decode("latin-1")))

    lines: list[Line] = []
    for match in _LINE_SPLIT.finditer(text):  # PDFium ends a hyphenated line with a mark, not CRLF
        segment, offset = match[1], match.start()
        runs = [(offset + m.start(), offset + m.end()) for m in _VISIBLE_RUN.finditer(segment)]
        if not runs:
            continue
        first = runs[0][0]
        run_edges = edges(runs)
        x0, x1 = run_edges[0][0], run_edges[-1][1]
        pdfium_c.FPDFText_GetCharOrigin(raw, first, ox, oy)
        samples = _samples(runs)
        size = statistics.median(font_size(i) for i in samples)
        cells = _cells(segment, offset, runs, run_edges, size)
        space = segment.find(" ", first - offset)
        if space <= 0:
            first_word = x1 - x0
        elif offset + space == runs[0][1]:  # the usual case: the first run is the first word
            first_word = run_edges[0][1] - x0
        else:
            first_word = box(offset + space - 1)[1] - x0
        bold = all(is_bold(i) for i in samples)
        angle = pdfium_c.FPDFText_GetCharAngle(raw, first)
        rotated = 0.1 < angle < 6.18  # radians; the arXiv side stamp is rotated 90°
        lines.append(Line(segment, x0, x1, oy.value, size, first_word, bold, rotated, cells))
    return lines


def _samples(runs: list[tuple[int, int]]) -> list[int]:
    """Every ``len // 4``-th visible character (about five), as indices into the page text."""
    count = sum(end - start for start, end in runs)
    step = max(1, count // 4)
    samples: list[int] = []
    wanted, seen = 0, 0  # the next sample's rank among the visible chars; visible chars before this run
    for start, end in runs:
        while wanted < seen + end - start:
            samples.append(start + wanted - seen)
            wanted += step
        seen += end - start
    return samples


def _lam_alef(textpage: pdfium.PdfTextPage, text: str) -> str:
    """Put PDFium's decomposed Arabic lam-alef ligatures back in logical order (lam first).

    A ligature glyph comes out as alef then lam, both with the glyph's box; a real alef followed by
    a lam (the article after a prefix, "بال") has two boxes.
    """
    chars = list(text)
    a, b = (ctypes.c_double() for _ in range(2))
    c, d = (ctypes.c_double() for _ in range(2))
    dummy = ctypes.c_double()
    for match in _ALEF_LAM.finditer(text):
        i = match.start()
        pdfium_c.FPDFText_GetCharBox(textpage, i, a, b, dummy, dummy)
        pdfium_c.FPDFText_GetCharBox(textpage, i + 1, c, d, dummy, dummy)
        if abs(a.value - c.value) < 0.01 and abs(b.value - d.value) < 0.01:
            chars[i], chars[i + 1] = chars[i + 1], chars[i]
    return "".join(chars)


def is_rtl(text: str) -> bool:
    rtl = len(_RTL_CHAR.findall(text))
    return rtl > 0 and rtl >= 0.5 * sum(1 for ch in text if ch.isalpha())


def _cells(
    segment: str, offset: int, runs: list[tuple[int, int]], edges: list[tuple[float, float]], size: float
) -> list[tuple[float, float, str]]:
    """Split a line at gaps wider than :data:`CELL_GAP` font sizes (or at tabs) between its runs."""
    cells: list[tuple[float, float, str]] = []
    start, x_start = runs[0][0], edges[0][0]
    for k in range(1, len(runs)):
        end, following = runs[k - 1][1], runs[k][0]
        x_prev, x_next = edges[k - 1][1], edges[k][0]
        if x_next - x_prev > CELL_GAP * size or "\t" in segment[end - offset : following - offset]:
            cells.append((x_start, x_prev, segment[start - offset : end - offset]))
            start, x_start = following, x_next
    last = runs[-1][1]
    cells.append((x_start, edges[-1][1], segment[start - offset : last - offset]))
    return cells
