"""Local PDF → per-page Mathpix Markdown, from PDFium's text layer (no OCR yet).

Pages come out as :class:`PageMessage` objects shaped like Mathpix's page stream, so the rest of
streamrag treats a local conversion and a Mathpix job the same way. Each page is converted only
when the iterator asks for it. PDFium is not thread-safe: every pypdfium2 call runs under
:data:`PDFIUM_LOCK`, held per page so several documents can be converted in turns.
"""

from __future__ import annotations

import ctypes
import re
import statistics
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

from ._exceptions import ConversionError
from ._models import ErrorInfo, PageMessage

__all__ = ["PDFIUM_LOCK", "VERSION", "PdfPages", "convert_pdf", "parse_page_ranges"]

PDFIUM_LOCK = threading.Lock()
"""Guards every call into PDFium (one process-wide lock; PDFium has global state)."""

VERSION = "streamrag-local-1"

_RANGE = re.compile(r"^(-?\d+)(?:-(-?\d+))?$")
_BULLET = re.compile(r"^(?:[•◦▪▫‣⁃∙●○■□➢►\x80-\x9f\ue000-\uf8ff]\s*|[-–—*]\s+)(?=\S)")
_NUMBERED = re.compile(r"^(\d{1,2})[.)]\s+(?=\S)")
_PAGE_NUMBER = re.compile(
    r"^[-–\s]*(?:page\s*)?(?:\d{1,4}|[ivxlcdm]{1,7})(?:\s*(?:of|/)\s*\d{1,4})?[-–\s]*$", re.IGNORECASE
)
_BOLD_FONT = re.compile(r"bold|black|heavy|demi|medi|cmbx|\bbx", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\ue000-\uf8ff\ufffd-\uffff]")
_LIGATURES = str.maketrans({"ﬀ": "ff", "ﬁ": "fi", "ﬂ": "fl", "ﬃ": "ffi", "ﬄ": "ffl", "ﬅ": "st", "ﬆ": "st"})
_SENTENCE_END = re.compile(r"[.!?:][\"'”’)\]]*$")
_HYPHEN_MARKS = ("\x02", "\ufffe", "\xad")
_LINE_SPLIT = re.compile(r"([^\r\n\x02\ufffe]*[\x02\ufffe]?)(?:\r\n|[\r\n])?")


def parse_page_ranges(spec: str, num_pages: int) -> list[int]:
    """Mathpix ``page_ranges`` (``"2,4-6"``, ``"2 - -2"``; -1 is the last page) → sorted 1-based pages.

    Raises ``ValueError`` on bad syntax, a page outside ``1..num_pages``, a reversed range, or an
    empty selection.
    """

    def page(token: str) -> int:
        n = int(token)
        resolved = num_pages + 1 + n if n < 0 else n
        if n == 0 or not 1 <= resolved <= num_pages:
            raise ValueError(f"page {n} is outside 1..{num_pages}")
        return resolved

    selected: set[int] = set()
    for part in spec.split(","):
        match = _RANGE.match(re.sub(r"\s+", "", part))
        if match is None:
            raise ValueError(f"cannot parse page range {part.strip()!r} in {spec!r}")
        first = page(match[1])
        last = page(match[2]) if match[2] is not None else first
        if last < first:
            raise ValueError(f"page range {part.strip()!r} is reversed")
        selected.update(range(first, last + 1))
    return sorted(selected)


@dataclass(slots=True)
class _Line:
    """One text-layer line with the geometry the layout rules need (PDF points, y up)."""

    text: str
    x0: float
    x1: float
    base: float
    size: float
    first_word: float
    bold: bool
    rotated: bool


@dataclass(slots=True)
class _Block:
    kind: str  # "para" | "item" | "heading"
    lines: list[_Line]
    text: str = ""


def _read_lines(textpage: pdfium.PdfTextPage) -> list[_Line]:
    """The page's lines as PDFium splits them (``\\r\\n``), sampling a few chars per line for geometry."""
    n = textpage.count_chars()
    text = textpage.get_text_range() if n > 0 else ""
    if len(text) != n:  # non-BMP characters: fall back to one call per char
        text = "".join(chr(pdfium_c.FPDFText_GetUnicode(textpage, i) or 0xFFFD) for i in range(n))
    left, right, bottom, top = (ctypes.c_double() for _ in range(4))
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

    lines: list[_Line] = []
    for match in _LINE_SPLIT.finditer(text):  # PDFium ends a hyphenated line with a mark, not CRLF
        segment, offset = match[1], match.start()
        visible = [offset + j for j, ch in enumerate(segment) if not ch.isspace() and ch not in _HYPHEN_MARKS]
        if not visible:
            continue
        first, last = visible[0], visible[-1]
        x0, _ = box(first)
        _, x1 = box(last)
        space = segment.find(" ", first - offset)
        first_word = (box(offset + space - 1)[1] if space > 0 else x1) - x0
        pdfium_c.FPDFText_GetCharOrigin(textpage, first, ox, oy)
        samples = visible[:: max(1, len(visible) // 4)]
        size = statistics.median(font_size(i) for i in samples)
        bold = all(is_bold(i) for i in samples)
        angle = pdfium_c.FPDFText_GetCharAngle(textpage, first)
        rotated = 0.1 < angle < 6.18  # radians; the arXiv side stamp is rotated 90°
        lines.append(_Line(segment, x0, x1, oy.value, size, first_word, bold, rotated))
    return lines


def _clean(text: str) -> str:
    text = text.translate(_LIGATURES)
    return re.sub(r"\s+", " ", _CONTROL.sub("", text)).strip()


def _join_lines(lines: list[_Line]) -> str:
    """A paragraph's lines joined with spaces, undoing end-of-line hyphenation."""
    out = ""
    for line in lines:
        piece = line.text.strip()
        soft_hyphen = len(out) > 1 and out[-1] == "-" and out[-2].isalpha() and piece[:1].islower()
        if out.endswith(_HYPHEN_MARKS) or soft_hyphen:
            out = out[:-1]
        else:
            out += " " if out else ""
        out += piece
    return _clean(out)


class _Layout:
    """Groups a page's lines into Markdown blocks (paragraphs, list items, headings)."""

    def __init__(self, lines: list[_Line], page_box: tuple[float, float, float, float], body: float):
        _, bottom, _, top = page_box
        margin = 0.12 * (top - bottom)
        self.lines = [
            ln
            for ln in lines
            if not (ln.rotated and len(ln.text) < 200)
            and not (_PAGE_NUMBER.match(ln.text.strip()) and not bottom + margin < ln.base < top - margin)
        ]
        sizes = [round(ln.size * 2) / 2 for ln in self.lines for _ in range(len(ln.text))]
        self.body = statistics.mode(sizes) if len(sizes) >= 300 or (sizes and not body) else body
        deltas = [
            p.base - c.base
            for p, c in zip(self.lines, self.lines[1:], strict=False)
            if abs(p.size - c.size) < 0.5 and 0.9 * c.size < p.base - c.base < 2.2 * c.size
        ]
        self.leading = sorted(deltas)[len(deltas) // 4] if deltas else 1.2 * (self.body or 10.0)

    def _right_edge(self, line: _Line) -> float:
        """Where lines of this line's column usually end (90th percentile of overlapping lines)."""
        overlapping = [o for o in self.lines if o.x0 < line.x1 and o.x1 > line.x0 and o.x0 > line.x0 - 40]
        ends = sorted(o.x1 for o in overlapping if abs(o.size - line.size) < 0.5)
        if len(ends) < 3:
            ends = sorted(o.x1 for o in overlapping)
        return ends[int(0.9 * (len(ends) - 1))] if ends else line.x1

    def _breaks(self, prev: _Line, cur: _Line, block: _Block) -> bool:
        size = max(prev.size, cur.size, 1.0)
        delta = prev.base - cur.base
        if abs(delta) < 0.7 * size and cur.x0 >= prev.x1 - 2:
            return False  # same visual line: a superscript, subscript or the text after it
        if abs(prev.size - cur.size) > 0.12 * size or (prev.bold != cur.bold and size < 1.15 * self.body):
            return True
        if _BULLET.match(cur.text) or _NUMBERED.match(cur.text):
            return True
        if abs(delta) < 0.3 * size:  # same visual line, split by PDFium
            return False
        if delta < 0 or delta > 1.45 * self.leading:
            return True
        if block.kind == "item":
            return cur.x0 < block.lines[0].x0 + 0.5 * size
        if self._right_edge(prev) - prev.x1 > cur.first_word + 0.6 * size:
            return True  # the next line's first word would have fitted: prev ends its paragraph
        return cur.x0 - prev.x0 > 0.8 * size and len(block.lines) > 1  # first-line indent

    def blocks(self) -> list[_Block]:
        blocks: list[_Block] = []
        for line in self.lines:
            if not blocks or self._breaks(blocks[-1].lines[-1], line, blocks[-1]):
                kind = "item" if _BULLET.match(line.text) or _NUMBERED.match(line.text) else "para"
                blocks.append(_Block(kind, [line]))
            else:
                blocks[-1].lines.append(line)
        for block in blocks:
            text = _join_lines(block.lines)
            if block.kind == "item":
                numbered = _NUMBERED.match(text)
                text = f"{numbered[1]}. {text[numbered.end() :]}" if numbered else "- " + _BULLET.sub("", text)
            elif self._is_heading(block, text):
                block.kind = "heading"
                level = "section" if block.lines[0].size >= 1.4 * self.body else "subsection"
                text = f"\\{level}{{{text}}}"
            block.text = text
        return [b for b in blocks if b.text and b.text != "-"]

    def _is_heading(self, block: _Block, text: str) -> bool:
        words = len(text.split())
        if not 0 < words <= 14 or len(block.lines) > 2 or text.endswith((".", ",", ";")):
            return False
        if self.body and block.lines[0].size >= 1.15 * self.body:
            return True
        letters = [c for c in text if c.isalpha()]
        title_like = all(ln.bold for ln in block.lines) or (len(letters) >= 4 and text.upper() == text)
        return len(block.lines) == 1 and words <= 10 and title_like and text[:1].isupper()


def _markdown(blocks: list[_Block]) -> str:
    parts: list[str] = []
    for prev, block in zip([None, *blocks], blocks, strict=False):
        if prev is not None:
            parts.append("\n" if prev.kind == block.kind == "item" else "\n\n")
        parts.append(block.text)
    return "".join(parts)


def _separator(last: _Block | None, first: _Block) -> str:
    """Mathpix's page separator: ``"\\n"`` continues the previous page's paragraph or list."""
    if last is None:
        return ""
    open_ended = last.kind in ("para", "item") and not _SENTENCE_END.search(last.text)
    lowercase = first.kind == "para" and (first.text[:1].islower() or first.text[:1] in ",;)]}%")
    if (open_ended and lowercase) or (last.kind == "item" and first.kind == "item"):
        return "\n"
    return "\n\n"


class PdfPages:
    """An opened PDF, ready to convert page by page."""

    def __init__(self, data: bytes, *, password: str | None = None, page_ranges: str | None = None) -> None:
        if not data or b"%PDF-" not in data[:1024]:
            raise ConversionError("pdf_invalid", "not a PDF file" if data else "empty file")
        with PDFIUM_LOCK:
            try:
                self._doc: pdfium.PdfDocument | None = pdfium.PdfDocument(data, password=password)
            except pdfium.PdfiumError as exc:
                if exc.err_code == pdfium_c.FPDF_ERR_PASSWORD:
                    raise ConversionError("pdf_encrypted", "the PDF is encrypted; password missing or wrong") from None
                if _has_no_pages(data):  # PDFium refuses a page tree with /Count 0
                    raise ConversionError("pdf_no_pages", "the PDF has no pages") from None
                raise ConversionError("pdf_invalid", f"cannot read the PDF ({exc})") from None
            num_pages = len(self._doc)
        if num_pages == 0:
            self.close()
            raise ConversionError("pdf_no_pages", "the PDF has no pages")
        try:
            self.selected = list(range(1, num_pages + 1))
            if page_ranges is not None:
                self.selected = parse_page_ranges(page_ranges, num_pages)
        except ValueError as exc:
            self.close()
            raise ConversionError("opts_page_ranges", str(exc)) from None
        self._body_size = 0.0

    def __len__(self) -> int:
        return len(self.selected)

    def __iter__(self) -> Iterator[PageMessage]:
        last: _Block | None = None
        total = len(self.selected)
        for idx, number in enumerate(self.selected, start=1):
            try:
                blocks = self._page_blocks(number)
            except Exception as exc:  # one bad page must not end the document
                message = f"Page conversion failed: {type(exc).__name__}: {exc}"
                yield _error_page(idx, total, "sys_exception", message)
                continue
            if not blocks:
                yield _error_page(idx, total, "image_no_content", "Content not found")
                continue
            text = _separator(last, blocks[0]) + _markdown(blocks)
            last = blocks[-1]
            yield PageMessage(page_idx=idx, pdf_selected_len=total, text=text, version=VERSION)

    def _page_blocks(self, number: int) -> list[_Block]:
        with PDFIUM_LOCK:
            if self._doc is None:
                raise ConversionError("sys_exception", "the PDF is closed")
            page = self._doc[number - 1]
            try:
                textpage = page.get_textpage()
                try:
                    lines = _read_lines(textpage)
                finally:
                    textpage.close()
                page_box = page.get_bbox()
            finally:
                page.close()
        layout = _Layout(lines, page_box, self._body_size)
        self._body_size = layout.body or self._body_size
        return layout.blocks()

    def close(self) -> None:
        """Release the PDFium document (idempotent)."""
        with PDFIUM_LOCK:
            if self._doc is not None:
                self._doc.close()
                self._doc = None

    def __enter__(self) -> PdfPages:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _error_page(idx: int, total: int, error_id: str, message: str) -> PageMessage:
    info = ErrorInfo(id=error_id, message=message)
    return PageMessage(page_idx=idx, pdf_selected_len=total, version=VERSION, error=message, error_info=info)


def _has_no_pages(data: bytes) -> bool:
    counts = re.findall(rb"/Count\s*(\d+)", data)
    return bool(counts) and all(int(c) == 0 for c in counts) and not re.search(rb"/Type\s*/Page\b", data)


def convert_pdf(data: bytes, *, password: str | None = None, page_ranges: str | None = None) -> Iterator[PageMessage]:
    """Open ``data`` and yield its pages' messages lazily; the PDF is closed when iteration ends."""
    pages = PdfPages(data, password=password, page_ranges=page_ranges)  # raises here, not at first next()

    def generate() -> Iterator[PageMessage]:
        with pages:
            yield from pages

    return generate()
