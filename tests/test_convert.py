"""The local converter on real PDFs: page messages, separators, laziness, page ranges, errors."""

from __future__ import annotations

import io
import re
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pypdfium2 as pdfium
import pytest

from streamrag._convert import PDFIUM_LOCK, PdfPages, _pages, convert_pdf, parse_page_ranges
from streamrag._exceptions import ConversionError
from streamrag._models import PageMessage

SENTENCE_END = re.compile(r"[.!?:][\"'”’)\]]*$")
LIST_ITEM = re.compile(r"^(- |\d+\. )")


@pytest.fixture(scope="module")
def corpus(shared: Path) -> Path:
    return shared / "corpus"


def read(path: Path) -> bytes:
    return path.read_bytes()


def words(text: str) -> list[str]:
    """Lower-cased words, without LaTeX command names (so MMD and plain text compare)."""
    return re.findall(r"[a-z0-9]+", re.sub(r"\\[a-zA-Z]+", " ", text).lower())


def word_f1(ours: str, reference: str) -> float:
    a, b = Counter(words(ours)), Counter(words(reference))
    common = sum((a & b).values())
    if not common:
        return 0.0
    precision, recall = common / sum(a.values()), common / sum(b.values())
    return 2 * precision * recall / (precision + recall)


def check_separators(messages: list[PageMessage]) -> None:
    """Page 1 has no leading newline; later pages start with "\\n\\n", or "\\n" only when they continue."""
    previous: str | None = None
    for message in messages:
        if message.text is None:
            continue
        if previous is None:
            assert not message.text.startswith("\n")
        else:
            assert message.text.startswith("\n")
            if not message.text.startswith("\n\n"):
                last = previous.rstrip().rsplit("\n", 1)[-1]
                first = message.text[1:].split("\n", 1)[0]
                continues_paragraph = not SENTENCE_END.search(last) and not first.startswith("\\")
                continues_list = bool(LIST_ITEM.match(last) and LIST_ITEM.match(first))
                assert continues_paragraph or continues_list, (last, first)
        previous = message.text


def test_multipage_text_pdf_keeps_the_text_layer_and_separators(corpus: Path) -> None:
    path = corpus / "arxiv-1804.07821.pdf"
    messages = list(convert_pdf(read(path)))
    assert [m.page_idx for m in messages] == list(range(1, 11))
    assert all(m.pdf_selected_len == 10 and m.version == "streamrag-local-1" for m in messages)
    assert all(m.text and m.error_info is None for m in messages)
    check_separators(messages)
    document = "".join(m.text or "" for m in messages)
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f\ufffe]", document)
    assert "\n\n\n" not in document
    assert "\\section{" in document or "\\subsection{" in document
    # every word of PDFium's raw text layer is still there (hyphenated words are rejoined)
    pdf = pdfium.PdfDocument(read(path))
    try:
        raw = " ".join(pdf[i].get_textpage().get_text_range() for i in range(len(pdf)))
    finally:
        pdf.close()
    raw_words = Counter(words(raw.replace("\ufffe\r\n", "").replace("\ufffe", "")))
    kept = sum((raw_words & Counter(words(document))).values())
    assert kept / sum(raw_words.values()) > 0.97


def test_a_paragraph_cut_by_the_page_break_continues_with_one_newline(shared: Path) -> None:
    messages = list(convert_pdf(read(shared / "captures" / "midterm-old" / "midterm-old.pdf")))
    check_separators(messages)
    # the numbered questions run on from page to page as one list, as in Mathpix's stream
    assert messages[1].text is not None and messages[1].text.startswith("\n1. (13 points)")
    assert any(m.text and m.text.startswith("\n\n") for m in messages)


def test_word_f1_against_mathpix(shared: Path) -> None:
    """Our words vs Mathpix's for the same PDFs (measured 0.90-0.98; Mathpix writes math as LaTeX)."""
    scores = {}
    for name in ("midterm-old", "final-old", "exam-2024-solutions"):
        folder = shared / "captures" / name
        ours = "".join(m.text or "" for m in convert_pdf(read(folder / f"{name}.pdf")))
        scores[name] = word_f1(ours, (folder / "result.mmd").read_text(encoding="utf-8"))
    assert min(scores.values()) > 0.85, scores


def test_pages_are_converted_lazily_and_without_holding_the_lock(corpus: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The 352-page book: its first page needs only a few pages read (neighbours for running headers)."""
    with PdfPages(read(corpus / "freeculture.pdf"), page_ranges="2-352") as pages:
        assert len(pages) == 351 and pages.pages_read == 0
        iterator = iter(pages)
        first = next(iterator)
        assert first.page_idx == 1 and first.text and pages.pages_read <= 4
        assert PDFIUM_LOCK.acquire(blocking=False)  # not held between pages
        PDFIUM_LOCK.release()
        second = next(iterator)
        assert second.page_idx == 2 and pages.pages_read <= 5


def test_two_documents_convert_in_threads_like_one_at_a_time(corpus: Path) -> None:
    files = [corpus / "arxiv-0908.0054.pdf", corpus / "arxiv-2310.07875-tablib-p1-7.pdf"]
    expected = {f.name: [m.text for m in convert_pdf(read(f))] for f in files}
    results: dict[str, list[str | None]] = {}

    def run(path: Path) -> None:
        results[path.name] = [m.text for m in convert_pdf(read(path))]

    threads = [threading.Thread(target=run, args=(f,)) for f in files]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == expected


@pytest.mark.parametrize(
    ("spec", "pages"),
    [
        ("2,4-6", [2, 4, 5, 6]),
        ("2 - -2", list(range(2, 10))),
        ("-1", [10]),
        ("-3--2", [8, 9]),
        (" 5 , 1 ", [1, 5]),
        ("1-3,2,3", [1, 2, 3]),
        ("10", [10]),
    ],
)
def test_parse_page_ranges(spec: str, pages: list[int]) -> None:
    assert parse_page_ranges(spec, 10) == pages


@pytest.mark.parametrize("spec", ["", " ", "a", "0", "11", "-11", "3-1", "1-", "1,,2", "1-2-3", "1.5"])
def test_parse_page_ranges_rejects(spec: str) -> None:
    with pytest.raises(ValueError):
        parse_page_ranges(spec, 10)


def test_page_ranges_select_and_renumber(corpus: Path) -> None:
    with PdfPages(read(corpus / "redp5110_sampled.pdf"), page_ranges="-2 - -1") as pages:
        assert pages.selected == [17, 18] and len(pages) == 2
        messages = list(pages)
    assert [(m.page_idx, m.pdf_selected_len) for m in messages] == [(1, 2), (2, 2)]
    assert messages[0].error_info is not None and messages[0].error_info.id == "image_no_content"
    assert messages[1].text and not messages[1].text.startswith("\n")  # first page with text
    with pytest.raises(ConversionError) as caught:
        PdfPages(read(corpus / "redp5110_sampled.pdf"), page_ranges="3-99")
    assert caught.value.error_id == "opts_page_ranges"


def test_blank_pages_are_mathpix_image_no_content(corpus: Path) -> None:
    messages = list(convert_pdf(read(corpus / "arxiv-2103.15348-with-empty-pages.pdf")))
    assert [m.text is not None for m in messages] == [True, False, False, True]
    for blank in messages[1:3]:
        assert blank.wire() == {
            "version": "streamrag-local-1",
            "error": "Content not found",
            "error_info": {"id": "image_no_content", "message": "Content not found"},
            "page_idx": blank.page_idx,
            "pdf_selected_len": 4,
        }
    check_separators(messages)


def test_a_failing_page_is_a_page_error(corpus: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    original = _pages.PdfPages._read_facts

    def flaky(self: PdfPages, number: int) -> Any:
        if number == 2:
            raise RuntimeError("boom")
        return original(self, number)

    monkeypatch.setattr(_pages.PdfPages, "_read_facts", flaky)
    messages = list(convert_pdf(read(corpus / "arxiv-0908.0054.pdf")))
    assert [m.error_info.id if m.error_info else "text" for m in messages] == [
        "text",
        "sys_exception",
        "text",
        "text",
    ]
    assert messages[1].error_info is not None and "boom" in messages[1].error_info.message


def test_encrypted_with_empty_user_password_opens(corpus: Path) -> None:
    texts = [m.text or "" for m in convert_pdf(read(corpus / "arxiv-2103.15348-copy-protected.pdf"))]
    assert len(texts) == 2 and "LayoutParser" in texts[0]


@pytest.mark.parametrize("password", [None, "", "wrong"])
def test_password_missing_or_wrong(corpus: Path, password: str | None) -> None:
    with pytest.raises(ConversionError) as caught:
        PdfPages(read(corpus / "arxiv-2206.01062-pg3-password-1234.pdf"), password=password)
    assert caught.value.error_id == "pdf_encrypted"


def test_right_password_converts(corpus: Path) -> None:
    messages = list(convert_pdf(read(corpus / "arxiv-2206.01062-pg3-password-1234.pdf"), password="1234"))
    assert len(messages) == 1 and messages[0].text and "DocLayNet" in messages[0].text


def invalid_inputs(corpus: Path) -> Iterator[tuple[str, bytes]]:
    paper = read(corpus / "arxiv-0908.0054.pdf")
    yield "broken", read(corpus / "broken-unreadablemetadata.pdf")
    yield "empty", b""
    yield "not a pdf", b"Hello, this is plain text and not a PDF at all.\n" * 20
    yield "truncated", paper[: len(paper) // 2]
    yield "header only", b"%PDF-1.7\n"


def test_invalid_pdfs(corpus: Path) -> None:
    for name, data in invalid_inputs(corpus):
        with pytest.raises(ConversionError) as caught:
            convert_pdf(data)  # raises at once, before the first page is asked for
        assert caught.value.error_id == "pdf_invalid", name


def test_zero_pages() -> None:
    with PDFIUM_LOCK:
        empty = pdfium.PdfDocument.new()
        buffer = io.BytesIO()
        empty.save(buffer)
        empty.close()
    with pytest.raises(ConversionError) as caught:
        PdfPages(buffer.getvalue())
    assert caught.value.error_id == "pdf_no_pages"


def test_close_is_idempotent_and_ends_conversion(corpus: Path) -> None:
    pages = PdfPages(read(corpus / "arxiv-0908.0054.pdf"))
    iterator = iter(pages)
    assert next(iterator).text
    pages.close()
    pages.close()
    rest = list(iterator)
    assert rest and all(m.error_info is not None and m.error_info.id == "sys_exception" for m in rest)
