"""The demo document renders to a multi-page PDF whose facts the local converter finds again."""

from __future__ import annotations

import re

import pytest

from streamrag._convert import PdfPages
from streamrag._demo import DEMO_QUESTIONS, demo_markdown, write_demo_pdf
from streamrag._models import PageMessage

pytest.importorskip("fpdf")


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> list[PageMessage]:
    path = write_demo_pdf(tmp_path_factory.mktemp("demo") / "demo.pdf")
    with PdfPages(path.read_bytes()) as opened:
        return list(opened)


def page_of(pages: list[PageMessage], fact: str) -> int:
    found = [m.page_idx for m in pages if m.text and fact in m.text]
    assert found, fact
    return found[0]


def flat(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def test_markdown_is_latin1_prose_with_headings_and_lists() -> None:
    source = demo_markdown()
    source.encode("latin-1")
    assert source.startswith("# ") and source.count("\n## ") >= 6
    assert re.search(r"^- ", source, re.M) and re.search(r"^1\. ", source, re.M)
    assert len(DEMO_QUESTIONS) == 3


def test_pdf_has_six_to_eight_pages_of_text(pages: list[PageMessage]) -> None:
    assert 6 <= len(pages) <= 8
    assert all(m.text and m.error_info is None for m in pages)
    assert pages[0].text is not None and pages[0].text.startswith("\\section{Haldvik Holm Field Station")
    assert not any(re.search(r"^\d+$", m.text or "", re.M) for m in pages)  # page numbers dropped


def test_facts_sit_on_different_pages(pages: list[PageMessage]) -> None:
    founded = page_of(pages, "founded in 1987 by the Norrmark Institute")
    cisterns = page_of(pages, "64,000 litres")
    code_word = page_of(pages, "code word Blue Heron")
    assert founded == 1 and founded < cisterns < code_word and code_word >= len(pages) - 1
    assert "\\subsection{Water supply}" in "".join(m.text or "" for m in pages)
    joined = "".join(m.text or "" for m in pages)
    assert "\n- a survival suit that fits" in joined and "\n2. the battery room temperature" in joined


def test_a_paragraph_spanning_a_page_break_continues(pages: list[PageMessage]) -> None:
    source = flat(demo_markdown())
    continued = [m for m in pages if m.text and m.text.startswith("\n") and not m.text.startswith("\n\n")]
    assert continued
    for message in continued:
        previous = pages[message.page_idx - 2].text or ""
        tail = previous.rsplit("\n\n", 1)[-1]
        head = (message.text or "")[1:].split("\n\n", 1)[0]
        assert flat(f"{tail} {head}") in source  # the two halves make one paragraph of the source
