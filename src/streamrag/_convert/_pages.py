"""Opening a PDF and converting its pages lazily, one :class:`PageMessage` per selected page.

Each page is classified from its text layer: text (laid out by :mod:`._layout`), scanned (no text,
or an invisible OCR layer that reads as garbage, over a page-sized image: OCR'd by :mod:`._ocr`), or
blank (``image_no_content``, as Mathpix). Running headers and footers are judged against the two
pages before and after (:mod:`._furniture`), read once and cached; only a few pages are held.

When the page asked for needs OCR, the next scanned pages are submitted too, so that up to the core
count of ``tesseract`` processes run while this one is awaited; page 1's OCR is submitted first.
"""

from __future__ import annotations

import io
import re
import threading
from collections.abc import Iterator
from types import TracebackType

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

from .._exceptions import ConversionError
from .._models import ErrorInfo, PageMessage
from ._furniture import body_lines
from ._layout import Block, Layout, markdown, ocr_blocks, separator
from ._ocr import DPI, OcrJobs, resolve_languages, workers
from ._text import Vocabulary
from ._textlayer import PageFacts, read_page

PDFIUM_LOCK = threading.Lock()
"""Guards every call into PDFium (one process-wide lock; PDFium has global state)."""

VERSION = "streamrag-local-1"
LOOKAHEAD = 16
"""How far past the current page to look for more scanned pages to OCR in parallel."""

_RANGE = re.compile(r"^(-?\d+)(?:-(-?\d+))?$")


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


class PdfPages:
    """An opened PDF, ready to convert page by page.

    ``ocr_languages``: Tesseract language codes joined by ``+`` (default ``$STREAMRAG_OCR_LANGUAGES``
    or ``eng``); a language that is not installed is the error ``opts_ocr_languages``.
    """

    def __init__(
        self,
        data: bytes,
        *,
        password: str | None = None,
        page_ranges: str | None = None,
        ocr_languages: str | None = None,
    ) -> None:
        if not data or b"%PDF-" not in data[:1024]:
            raise ConversionError("pdf_invalid", "not a PDF file" if data else "empty file")
        try:
            languages = resolve_languages(ocr_languages)
        except ValueError as exc:
            raise ConversionError("opts_ocr_languages", str(exc)) from None
        self._ocr = OcrJobs(languages)
        self._facts: dict[int, PageFacts] = {}
        with PDFIUM_LOCK:
            try:
                self._doc: pdfium.PdfDocument | None = pdfium.PdfDocument(data, password=password)
            except pdfium.PdfiumError as exc:
                # PDFium's error code is process-wide and may be left over from another document:
                # trust "password" only for a file that is encrypted at all
                if exc.err_code == pdfium_c.FPDF_ERR_PASSWORD and b"/Encrypt" in data:
                    raise ConversionError("pdf_encrypted", "the PDF is encrypted; password missing or wrong") from None
                if _has_no_pages(data):  # PDFium refuses a page tree with /Count 0
                    raise ConversionError("pdf_no_pages", "the PDF has no pages") from None
                raise ConversionError("pdf_invalid", f"cannot read the PDF ({exc})") from None
            self.num_pages = len(self._doc)
        if self.num_pages == 0:
            self.close()
            raise ConversionError("pdf_no_pages", "the PDF has no pages")
        try:
            self.selected = list(range(1, self.num_pages + 1))
            if page_ranges is not None:
                self.selected = parse_page_ranges(page_ranges, self.num_pages)
        except ValueError as exc:
            self.close()
            raise ConversionError("opts_page_ranges", str(exc)) from None
        self._body_size = 0.0
        self._vocabulary = Vocabulary()
        self.pages_read = 0
        """How many pages' text layers have been read so far (the laziness tests watch it)."""

    def __len__(self) -> int:
        return len(self.selected)

    def __iter__(self) -> Iterator[PageMessage]:
        last: Block | None = None
        total = len(self.selected)
        for idx in range(1, total + 1):
            try:
                blocks = self._page_blocks(idx)
            except ConversionError as exc:  # a page refused on purpose (e.g. page_too_large)
                yield _error_page(idx, total, exc.error_id, exc.message)
                continue
            except Exception as exc:  # one bad page must not end the document
                message = f"Page conversion failed: {type(exc).__name__}: {exc}"
                yield _error_page(idx, total, "sys_exception", message)
                continue
            finally:
                number = self.selected[idx - 1]
                for old in [n for n in self._facts if n < number - 2]:
                    del self._facts[old]
            if not blocks:
                yield _error_page(idx, total, "image_no_content", "Content not found")
                continue
            text = separator(last, blocks[0]) + markdown(blocks)
            body = [b for b in blocks if b.kind != "footnote"]  # footnotes end a page, inside its paragraph
            last = body[-1] if body else blocks[-1]
            yield PageMessage(page_idx=idx, pdf_selected_len=total, text=text, version=VERSION)

    def _read_facts(self, number: int) -> PageFacts:
        """Read page ``number``'s text layer and objects (under the lock)."""
        with PDFIUM_LOCK:
            if self._doc is None:
                raise ConversionError("sys_exception", "the PDF is closed")
            page = self._doc[number - 1]
            try:
                self.pages_read += 1
                return read_page(page)
            finally:
                page.close()

    def _page_facts(self, number: int) -> PageFacts:
        if number not in self._facts:
            self._facts[number] = self._read_facts(number)
        return self._facts[number]

    def _page_blocks(self, idx: int) -> list[Block]:
        number = self.selected[idx - 1]
        facts = self._page_facts(number)
        if facts.needs_ocr():
            self._submit_ocr(number)
            self._prefetch(idx)
            return ocr_blocks(self._ocr.result(number), self._vocabulary)
        if facts.is_blank():
            return []
        neighbours = []
        for other in (number - 2, number - 1, number + 1, number + 2):
            if 1 <= other <= self.num_pages:
                try:
                    neighbours.append(self._page_facts(other))
                except Exception:  # a neighbour that cannot be read only weakens furniture detection
                    continue
        lines = body_lines(facts, neighbours)
        self._vocabulary.add(" ".join(ln.text for ln in lines))
        layout = Layout(lines, self._body_size, self._vocabulary)
        self._body_size = layout.body or self._body_size
        return layout.blocks()

    def _submit_ocr(self, number: int) -> None:
        def render() -> tuple[bytes, float, float]:
            with PDFIUM_LOCK:
                if self._doc is None:
                    raise ConversionError("sys_exception", "the PDF is closed")
                page = self._doc[number - 1]
                try:
                    scale = DPI / 72
                    height = page.get_height()
                    bitmap = page.render(scale=scale, grayscale=True)
                    image = bitmap.to_pil()
                    bitmap.close()
                finally:
                    page.close()
            buffer = io.BytesIO()
            image.save(buffer, format="PPM")
            return buffer.getvalue(), scale, height

        self._ocr.submit(number, render)

    def _prefetch(self, idx: int) -> None:
        """Submit the OCR of the next scanned pages until every worker has one."""
        for later in self.selected[idx : idx + LOOKAHEAD]:
            if self._ocr.running() >= workers():
                return
            try:
                if self._page_facts(later).needs_ocr():
                    self._submit_ocr(later)
            except Exception:  # that page will report its own error when its turn comes
                return

    def close(self) -> None:
        """Release the PDFium document and stop its OCR (idempotent)."""
        self._ocr.close()
        with PDFIUM_LOCK:
            if self._doc is not None:
                self._doc.close()
                self._doc = None
        self._facts.clear()

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


def convert_pdf(
    data: bytes, *, password: str | None = None, page_ranges: str | None = None, ocr_languages: str | None = None
) -> Iterator[PageMessage]:
    """Open ``data`` and yield its pages' messages lazily; the PDF is closed when iteration ends."""
    pages = PdfPages(data, password=password, page_ranges=page_ranges, ocr_languages=ocr_languages)

    def generate() -> Iterator[PageMessage]:
        with pages:
            yield from pages

    return generate()
