"""Local PDF → per-page Mathpix Markdown: PDFium's text layer, laid out; Tesseract for scans.

Pages come out as :class:`~streamrag._models.PageMessage` objects shaped like Mathpix's page stream,
so the rest of streamrag treats a local conversion and a Mathpix job the same way. Each page is
converted only when the iterator asks for it. PDFium is not thread-safe: every pypdfium2 call runs
under :data:`PDFIUM_LOCK`, held per page so several documents can be converted in turns.

Modules, one job each: ``_pages`` (opening, page classification, the stream of messages),
``_textlayer`` (PDFium lines and page facts), ``_furniture`` (running headers, footers, page
numbers), ``_layout`` (reading order, blocks, headings, lists, separators), ``_footnotes``
(footnotes moved to the page's end as ``\\footnotetext``), ``_tables`` (pipe tables), ``_text``
(clean-up, hyphenation), ``_ocr`` (Tesseract).
"""

from ._ocr import installed_languages
from ._pages import PDFIUM_LOCK, VERSION, PdfPages, convert_pdf, parse_page_ranges

__all__ = ["PDFIUM_LOCK", "VERSION", "PdfPages", "convert_pdf", "installed_languages", "parse_page_ranges"]
