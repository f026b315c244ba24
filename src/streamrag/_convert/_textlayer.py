"""Reading a page's text layer through PDFium: lines with geometry, and what kind of page it is.

Every function here calls into PDFium: the caller holds :data:`streamrag._convert.PDFIUM_LOCK`.
"""

from __future__ import annotations

import ctypes
import re
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

from .._exceptions import ConversionError
from ._text import HYPHEN_MARKS

#: Characters one page may hold; a denser page is an error of that page, not a hang of the server.
MAX_PAGE_CHARS = 200_000

_BOLD_FONT = re.compile(r"bold|black|heavy|demi|medi|cmbx|\bbx", re.IGNORECASE)
_LINE_SPLIT = re.compile(r"([^\r\n\x02\ufffe]*[\x02\ufffe]?)(?:\r\n|[\r\n])?")
_WORDLIKE = re.compile(r"^[(\[\"'“‘]*(?:[^\W\d_]{1,20}(?:[-'’][^\W\d_]+)*|\d+(?:[.,]\d+)*)[)\]\"'”’.,;:!?]*$")
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
    """The largest image's share of the page area (0..1)."""
    invisible_text: bool
    """The text is drawn invisibly (render mode 3): an OCR layer over a scan."""

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
    width, height = page.get_size()
    visible = sum(1 for ln in lines for ch in ln.text if not ch.isspace() and ch not in HYPHEN_MARKS)
    cover, invisible = _objects(page, width * height) if visible < 10 or len(lines) < 400 else (0.0, False)
    return PageFacts(lines, page.get_bbox(), width, height, visible, cover, invisible)


def _objects(page: pdfium.PdfPage, area: float) -> tuple[float, bool]:
    """The largest image's cover of the page, and whether all text objects are invisible."""
    cover, text_objects, invisible = 0.0, 0, 0
    left, bottom, right, top = (ctypes.c_float() for _ in range(4))
    for obj in page.get_objects(max_depth=2):
        if obj.type == pdfium_c.FPDF_PAGEOBJ_IMAGE:
            if pdfium_c.FPDFPageObj_GetBounds(obj.raw, left, bottom, right, top):
                box = (min(right.value, page.get_width()) - max(left.value, 0.0)) * (
                    min(top.value, page.get_height()) - max(bottom.value, 0.0)
                )
                cover = max(cover, box / area if area else 0.0)
        elif obj.type == pdfium_c.FPDF_PAGEOBJ_TEXT:
            text_objects += 1
            invisible += pdfium_c.FPDFTextObj_GetTextRenderMode(obj.raw) == pdfium_c.FPDF_TEXTRENDERMODE_INVISIBLE
    return cover, text_objects > 0 and invisible >= 0.9 * text_objects


def read_lines(textpage: pdfium.PdfTextPage) -> list[Line]:
    """The page's lines as PDFium splits them (``\\r\\n``), sampling a few chars per line for style."""
    n = textpage.count_chars()
    if n > MAX_PAGE_CHARS:  # no real page holds this much: refuse it before the per-char layout work
        raise ConversionError("page_too_large", f"the page has {n} characters, over the limit of {MAX_PAGE_CHARS}")
    text = textpage.get_text_range() if n > 0 else ""
    if len(text) != n:  # non-BMP characters: fall back to one call per char
        text = "".join(chr(pdfium_c.FPDFText_GetUnicode(textpage, i) or 0xFFFD) for i in range(n))
    left, right, bottom, top = (ctypes.c_double() for _ in range(4))
    if "ل" in text:
        text = _lam_alef(textpage, text)
    ox, oy = ctypes.c_double(), ctypes.c_double()
    name = ctypes.create_string_buffer(128)
    flags = ctypes.c_int()
    matrix = pdfium_c.FS_MATRIX()

    def box(i: int) -> tuple[float, float]:
        pdfium_c.FPDFText_GetCharBox(textpage, i, left, right, bottom, top)
        return left.value, right.value

    def font_size(i: int) -> float:  # the nominal size times the text matrix's scale
        pdfium_c.FPDFText_GetMatrix(textpage, i, matrix)
        scale = abs(matrix.a * matrix.d - matrix.b * matrix.c) ** 0.5
        return float(pdfium_c.FPDFText_GetFontSize(textpage, i)) * (scale or 1.0)

    def is_bold(i: int) -> bool:
        if pdfium_c.FPDFText_GetFontWeight(textpage, i) >= 600:
            return True
        pdfium_c.FPDFText_GetFontInfo(textpage, i, name, len(name), ctypes.byref(flags))
        return bool(_BOLD_FONT.search(name.value.decode("latin-1")))

    lines: list[Line] = []
    for match in _LINE_SPLIT.finditer(text):  # PDFium ends a hyphenated line with a mark, not CRLF
        segment, offset = match[1], match.start()
        visible = [offset + j for j, ch in enumerate(segment) if not ch.isspace() and ch not in HYPHEN_MARKS]
        if not visible:
            continue
        first, last = visible[0], visible[-1]
        x0, _ = box(first)
        _, x1 = box(last)
        pdfium_c.FPDFText_GetCharOrigin(textpage, first, ox, oy)
        samples = visible[:: max(1, len(visible) // 4)]
        size = statistics.median(font_size(i) for i in samples)
        cells = _cells(segment, offset, visible, box, size)
        space = segment.find(" ", first - offset)
        first_word = box(offset + space - 1)[1] - x0 if space > 0 else x1 - x0
        bold = all(is_bold(i) for i in samples)
        angle = pdfium_c.FPDFText_GetCharAngle(textpage, first)
        rotated = 0.1 < angle < 6.18  # radians; the arXiv side stamp is rotated 90°
        lines.append(Line(segment, x0, x1, oy.value, size, first_word, bold, rotated, cells))
    return lines


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
    segment: str, offset: int, visible: list[int], get_box: Callable[[int], tuple[float, float]], size: float
) -> list[tuple[float, float, str]]:
    """Split a line at gaps wider than :data:`CELL_GAP` font sizes (or at tabs)."""
    cells: list[tuple[float, float, str]] = []
    start = visible[0]
    prev = start
    x_start = get_box(start)[0]
    x_prev = get_box(prev)[1]
    for i in visible[1:]:
        if i == prev + 1:
            prev = i
            continue
        gap_text = segment[prev + 1 - offset : i - offset]
        x_next = get_box(i)[0]
        x_prev = get_box(prev)[1]
        if "\t" in gap_text or x_next - x_prev > CELL_GAP * size:
            cells.append((x_start, x_prev, segment[start - offset : prev + 1 - offset]))
            start, x_start = i, x_next
        prev = i
    x_prev = get_box(prev)[1]
    cells.append((x_start, x_prev, segment[start - offset : prev + 1 - offset]))
    return cells
