"""The local converter on every kind of PDF in the shared corpus (see corpus/MANIFEST.tsv).

OCR tests convert one or two pages each; nothing here measures wall-clock time.
"""

from __future__ import annotations

import gc
import re
import tracemalloc
from collections import Counter
from pathlib import Path

import pytest

from streamrag._convert import PdfPages, convert_pdf, installed_languages
from streamrag._convert._text import Vocabulary, join_lines
from streamrag._exceptions import ConversionError
from streamrag._mmd import split_blocks
from streamrag._server.options import parse_options

needs_tesseract = pytest.mark.skipif(not installed_languages(), reason="tesseract is not installed")


@pytest.fixture(scope="module")
def corpus(shared: Path) -> Path:
    return shared / "corpus"


def texts(path: Path, **options: str) -> list[str]:
    return [m.text or "" for m in convert_pdf(path.read_bytes(), **options)]


def words(text: str) -> list[str]:
    return re.findall(r"[^\W_]+", re.sub(r"\\[a-zA-Z]+", " ", text).lower())


def word_f1(ours: str, reference: str) -> float:
    a, b = Counter(words(ours)), Counter(words(reference))
    common = sum((a & b).values())
    return 2 * common / (sum(a.values()) + sum(b.values())) if common else 0.0


# --- text, paragraphs, hyphenation ------------------------------------------------------------


@pytest.mark.parametrize(
    ("lines", "joined"),
    [
        (["an ag\ufffe", "gregation module"], "an aggregation module"),
        (["a breadth-", "first search"], "a breadth-first search"),
        (["the state-of-the-", "art results"], "the state-of-the-art results"),
        (["the Bose-", "Einstein statistics"], "the Bose-Einstein statistics"),
        (["counting is a com-", "mon problem"], "counting is a common problem"),
        (["F´ısica, M ´ exico"], "Física, México"),
        (["行政处罚", "决定书"], "行政处罚决定书"),
    ],
)
def test_lines_join_undoing_hyphenation_only(lines: list[str], joined: str) -> None:
    assert join_lines(lines, Vocabulary()) == joined


def test_the_document_vocabulary_decides_a_hyphen() -> None:
    vocabulary = Vocabulary()
    vocabulary.add("several datasets were used")
    assert join_lines(["the data-", "sets"], vocabulary) == "the datasets"
    assert join_lines(["the data-", "sets"], Vocabulary()) == "the data-sets"  # both halves are words


def test_math_paper_sections_and_no_running_header(corpus: Path) -> None:
    pages = texts(corpus / "arxiv-0807.3577-jcap.pdf")
    assert len(pages) == 15 and all(pages)
    document = "".join(pages)
    assert document.count("\\section{") + document.count("\\subsection{") >= 5
    assert "JCAP10(2008)003" not in document  # the running header on every page
    assert "accelerations" in document


def test_running_footers_and_page_numbers_are_left_out(corpus: Path) -> None:
    pages = texts(corpus / "redp5110_sampled.pdf", page_ranges="2-4")
    assert "Copyright IBM Corp" not in "".join(pages)
    assert not any(re.search(r"(?m)^(?:[ivx]+|\d+)$", p) for p in pages)


def test_a_journal_running_head_is_left_out_and_the_paragraph_goes_on(corpus: Path) -> None:
    pages = texts(corpus / "arxiv-0807.3577-jcap.pdf", page_ranges="2-4")
    assert not any("Apparent and average accelerations of the Universe" in p for p in pages)
    assert pages[1].startswith("\nrarely taken into account")  # page 3 continues page 2's sentence


def test_a_book_foot_that_changes_with_the_chapter_is_left_out(corpus: Path) -> None:
    pages = texts(corpus / "redp5110_sampled.pdf", page_ranges="8-10")
    assert not re.search(r"Chapter [234]\.", "".join(pages))
    assert "Separation of duties helps businesses comply" in pages[0]


def test_text_off_the_visible_page_is_left_out_but_a_contents_page_is_kept(corpus: Path) -> None:
    pages = texts(corpus / "freeculture.pdf", page_ranges="9-10,30,40")
    document = "".join(pages)
    assert "2 3 4 5 6 7 8 9 10" not in document and "PASS PAGES" not in document  # printer's marks
    assert "“PROPERTY” 81" in pages[1] and "CHAPTER SIX: Founders 85" in pages[1]  # the contents' first line
    assert "there are committees that review doujinshi for inclusion" in pages[3]


def test_a_table_the_stream_draws_last_is_read_under_its_caption(corpus: Path) -> None:
    page = texts(corpus / "redp5110_sampled.pdf", page_ranges="8")[0]
    order = ["Table 2-1 FUNCTION_USAGE view", "| Column name | Data type | Description |", "To discover who"]
    order += ["\\section{2.2 Separation of duties}"]
    positions = [page.find(s) for s in order]
    assert -1 not in positions and positions == sorted(positions), positions
    assert "| Table 2-1" not in page


def test_a_literal_dollar_is_escaped_and_opens_no_math(corpus: Path) -> None:
    document = "".join(texts(corpus / "chelsea_pdta.pdf"))
    assert "\\$ < 50 000 \\$" in document  # the cost legend: "$ < 50 000 $"
    assert not re.search(r"(?<!\\)\$", document)  # the converter writes no math here
    legend = next(line for line in document.splitlines() if line.startswith("\\$\\$"))
    assert [b.kind for b in split_blocks(legend)] == ["para"]  # not display math for the chunker


# --- reading order ---------------------------------------------------------------------------


def test_two_column_paper_reads_column_by_column(corpus: Path) -> None:
    page = texts(corpus / "arxiv-1804.07821.pdf", page_ranges="1")[0]
    order = [
        "An Aggregated Multicolumn",
        "Jonathan Ventura",  # the right-hand author comes before the abstract
        "We propose the use of dilated filters",
        "Learning to count the number of objects",
        "such as those counting cells in a microscope",  # one paragraph across the column break
        "Related Work",
    ]
    positions = [page.find(s) for s in order]
    assert -1 not in positions and positions == sorted(positions), positions
    assert "\\section{" in page or "\\subsection{" in page


def test_ocr_layer_two_columns_keeps_its_layer(corpus: Path) -> None:
    """Backus' lecture: a scan with a usable OCR layer in two columns; the layer is used."""
    with PdfPages((corpus / "ocr-a1977-backus-p21.pdf").read_bytes()) as pages:
        assert not pages._page_facts(1).needs_ocr()
        page = next(iter(pages)).text or ""
    assert "functional" in page and page.find("position is that it permits") == 0


# --- tables ----------------------------------------------------------------------------------


def test_results_table_becomes_a_pipe_table(corpus: Path) -> None:
    page = texts(corpus / "arxiv-2305.03393v1-pg9.pdf")[0]
    rows = [line for line in page.splitlines() if line.startswith("|")]
    assert any("OTSL" in r and "0.965" in r and "2.73" in r for r in rows), rows
    assert any(set(r.replace("|", "").split()) == {"---"} for r in rows)
    assert "Quantitative Results" in page


def test_dense_grid_table(corpus: Path) -> None:
    page = texts(corpus / "nics-background-checks-2015-11.pdf")[0]
    alabama = next(line for line in page.splitlines() if line.startswith("| Alabama"))
    assert alabama.count("|") >= 20 and "18,870" in alabama


# --- long documents ----------------------------------------------------------------------------


def test_long_book_holds_memory_flat(corpus: Path) -> None:
    with PdfPages((corpus / "freeculture.pdf").read_bytes(), page_ranges="2-121") as pages:
        iterator = iter(pages)
        for _ in range(20):
            next(iterator)
        gc.collect()
        tracemalloc.start()
        try:
            for _ in range(20):
                next(iterator)
            gc.collect()
            after_40 = tracemalloc.get_traced_memory()[0]
            for _ in range(80):
                assert next(iterator).text is not None
            gc.collect()
            after_120, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert after_120 - after_40 < 1_000_000, (after_40, after_120)  # the vocabulary grows a little
    assert peak < 8_000_000
    assert len(pages._facts) == 0  # closed: nothing held


# --- scans, OCR ------------------------------------------------------------------------------


@needs_tesseract
def test_scanned_english_pages_are_ocrd_in_parallel(corpus: Path) -> None:
    with PdfPages((corpus / "scanned-M_Romney_1040_2011-p15-p16.pdf").read_bytes()) as pages:
        iterator = iter(pages)
        first = next(iterator)
        assert 2 in pages._ocr.futures  # page 2's OCR started while page 1 was awaited
        second = next(iterator)
    text = (first.text or "") + (second.text or "")
    assert re.search(r"(?i)self-employment", text) and "SCHEDULE SE" in text.upper()
    assert second.text and second.text.startswith("\n")


@needs_tesseract
@pytest.mark.skipif("chi_sim" not in installed_languages(), reason="tesseract-ocr-chi-sim is not installed")
def test_scanned_chinese_with_chosen_language(corpus: Path) -> None:
    page = texts(corpus / "scanned-zh-issue-203-decimalize.pdf", page_ranges="1", ocr_languages="chi_sim")[0]
    assert "行政处罚决定书" in page and "当事人" in page
    assert not re.search(r"[\u4e00-\u9fff] [\u4e00-\u9fff]", page)


@needs_tesseract
def test_noisy_ocr_layer_is_read_again(corpus: Path) -> None:
    with PdfPages((corpus / "ocr-ZFN-A-054-0304-0272.pdf").read_bytes(), page_ranges="1") as pages:
        assert pages._page_facts(1).needs_ocr()
        page = next(iter(pages)).text or ""
    assert re.search(r"Solitary.wave", page) and "Shallow Water" in page


def test_unknown_ocr_language_is_an_option_error(corpus: Path) -> None:
    if not installed_languages():
        pytest.skip("tesseract is not installed")
    with pytest.raises(ConversionError) as caught:
        PdfPages((corpus / "arxiv-0908.0054.pdf").read_bytes(), ocr_languages="eng+xx_nope")
    assert caught.value.error_id == "opts_ocr_languages"
    assert parse_options({"ocr_languages": "eng+fra"}).ocr_languages == "eng+fra"


# --- other scripts ----------------------------------------------------------------------------


def test_arabic_right_to_left(corpus: Path) -> None:
    page = texts(corpus / "right_to_left_01.pdf")[0]
    assert "الإنتاجية" in page and "المشكلات" in page  # lam-alef ligatures in logical order
    assert word_f1(page, (corpus / "right_to_left_01.gt.md").read_text(encoding="utf-8")) > 0.8
    assert page.count("\n\n") <= 8  # paragraphs, not one block per line


def test_korean_and_french(corpus: Path) -> None:
    korean = texts(corpus / "korean-text-with-tables.pdf")[0]
    assert "적립 제외 대상" in korean
    french = texts(corpus / "chelsea_pdta.pdf", page_ranges="1-5")
    assert "municipalité de Chelsea" in french[0]
    assert [bool(t) for t in french].count(False) == 1  # page 4 is empty


# --- every corpus file converts or fails clearly -----------------------------------------------


@pytest.mark.parametrize(
    ("name", "options", "error_id"),
    [
        ("broken-unreadablemetadata.pdf", {}, "pdf_invalid"),
        ("arxiv-2206.01062-pg3-password-1234.pdf", {}, "pdf_encrypted"),
        ("arxiv-2206.01062-pg3-password-1234.pdf", {"password": "4321"}, "pdf_encrypted"),
    ],
)
def test_files_that_cannot_be_read(corpus: Path, name: str, options: dict[str, str], error_id: str) -> None:
    with pytest.raises(ConversionError) as caught:
        convert_pdf((corpus / name).read_bytes(), **options)
    assert caught.value.error_id == error_id and caught.value.message
