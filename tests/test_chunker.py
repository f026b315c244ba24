"""The MMD chunker on real captured pages: exact coverage, page spans, atomic blocks, the window."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from conftest import coverage_counts, mmd_pages
from streamrag._chunker import StreamChunker, split_blocks
from streamrag._embedding import token_counter, window
from streamrag._mmd import heading_of


@pytest.fixture(scope="module")
def count(embedder: object):  # type: ignore[no-untyped-def]
    return token_counter(embedder)  # type: ignore[arg-type]


def chunk_all(doc: dict[int, str], count, max_tokens: int, order: list[int]) -> StreamChunker:  # type: ignore[no-untyped-def]
    chunker = StreamChunker("doc", count, max_tokens)
    for p in order:
        chunker.add(p, doc[p] or None)
    return chunker


def test_every_character_is_in_exactly_one_chunk_in_any_arrival_order(captures: list[Path], count) -> None:  # type: ignore[no-untyped-def]
    for capture in captures:
        doc = mmd_pages(capture)
        in_order = chunk_all(doc, count, 120, sorted(doc))
        ids = sorted(c.chunk_id for c in in_order.all_chunks())
        counts = coverage_counts(doc, in_order.all_chunks())
        assert set(counts.values()) == {1}, capture.name
        for seed in range(3):
            order = sorted(doc)
            random.Random(seed).shuffle(order)
            shuffled = chunk_all(doc, count, 120, order)
            assert sorted(c.chunk_id for c in shuffled.all_chunks()) == ids, (capture.name, order)


def test_chunk_text_is_the_page_text_it_spans(captures: list[Path], count) -> None:  # type: ignore[no-untyped-def]
    for capture in captures:
        doc = mmd_pages(capture)
        for chunk in chunk_all(doc, count, 254, sorted(doc)).all_chunks():
            spanned = "".join(doc[p][a:b] for p, a, b in chunk.pieces)
            assert chunk.text == chunk.prefix + spanned
            assert chunk.pages == sorted({p for p, _, _ in chunk.pieces})


def test_chunks_fit_the_models_window(captures: list[Path], embedder: object, count) -> None:  # type: ignore[no-untyped-def]
    limit = window(embedder) - 2  # type: ignore[arg-type]
    assert limit == 254  # all-MiniLM-L6-v2 reads 256 word pieces, two of them special
    for capture in captures:
        doc = mmd_pages(capture)
        chunks = chunk_all(doc, count, limit, sorted(doc)).all_chunks()
        assert max(count([c.text for c in chunks])) <= limit


def test_a_sentence_cut_by_the_page_break_is_one_chunk(captures: list[Path], count) -> None:  # type: ignore[no-untyped-def]
    stitched = 0
    for capture in captures:
        doc = mmd_pages(capture)
        chunks = chunk_all(doc, count, 254, sorted(doc)).all_chunks()
        for p, text in doc.items():
            continued = text.startswith("\n") and not text.startswith("\n\n") and doc.get(p - 1)
            # a paragraph runs across the break (a table ending the page is not cut: nothing to join)
            if continued and split_blocks(doc[p - 1])[-1].kind == split_blocks(text)[0].kind == "para":
                # the page's first words share a chunk with the previous page's last words
                head = text.strip().split()[0]
                tail = doc[p - 1].rstrip().split()[-1]
                assert any(
                    {p - 1, p} <= set(c.pages) and tail + text[: text.index(head) + len(head)] in c.text for c in chunks
                ), (capture.name, p)
                stitched += 1
    assert stitched >= 3  # the captures hold several continued pages


def test_continuation_arriving_first_is_indexed_then_replaced(captures: list[Path], count) -> None:  # type: ignore[no-untyped-def]
    doc = mmd_pages(next(c for c in captures if c.name == "midterm-old"))
    assert doc[2].startswith("\n") and not doc[2].startswith("\n\n")
    chunker = StreamChunker("doc", count, 254)
    new2, stale2 = chunker.add(2, doc[2])
    assert new2 and not stale2 and all(c.pages[0] == 2 for c in new2)
    new1, stale1 = chunker.add(1, doc[1])
    assert {c.chunk_id for c in stale1} <= {c.chunk_id for c in new2} and stale1
    assert any(c.pages[:2] == [1, 2] for c in new1)


def test_display_math_and_tabular_are_never_cut(captures: list[Path], count) -> None:  # type: ignore[no-untyped-def]
    atomic = 0
    for capture in captures:
        doc = mmd_pages(capture)
        chunks = chunk_all(doc, count, 254, sorted(doc)).all_chunks()
        for text in doc.values():
            for block in split_blocks(text):
                if block.kind != "atomic":
                    continue
                atomic += 1
                body = text[block.start : block.end]
                if max(count([body])) <= 254:
                    assert any(body in c.text for c in chunks), body[:60]
    assert atomic >= 10


def test_blocks_of_mmd_constructs() -> None:
    text = (
        "\\title{\nFinal Exam\n}\n\nIntro line one\nline two.\n\\begin{tabular}{l|c}\na & b \\\\\n\n"
        "c & d\n\\end{tabular}\n\\[\nx^2\n\n+ y\n\\]\n$$a=b$$\n```\ncode\n\nmore\n```\n## Heading\ntext"
    )
    kinds = [(b.kind, text[b.start : b.end].split("\n")[0]) for b in split_blocks(text)]
    assert kinds == [
        ("heading", "\\title{"),
        ("para", "Intro line one"),
        ("atomic", "\\begin{tabular}{l|c}"),
        ("atomic", "\\["),
        ("atomic", "$$a=b$$"),
        ("atomic", "```"),
        ("heading", "## Heading"),
        ("para", "text"),
    ]


def test_a_heading_without_a_letter_names_no_section(count) -> None:  # type: ignore[no-untyped-def]
    # a figure's lone symbol and a row of ornament glyphs, read as headings by a converter (arXiv 1804.07821
    # p. 2, Free Culture's chapter openings): the text under them stays in the section before
    assert heading_of("\\subsection{∑}") is None
    assert heading_of("## ❚❘❙❚❘❙ ❚❘❙") is None
    assert heading_of("\\section*{2. Related Work}") == (2, "2. Related Work")
    text = "\\section{2. Related Work}\n\nCounting by regression.\n\n\\subsection{∑}\n\nDensity maps are summed."
    new, _ = StreamChunker("doc", count, 254).add(1, text)
    assert {c.section for c in new} == {"2. Related Work"}


def test_oversized_blocks_are_split_within_the_window(count) -> None:  # type: ignore[no-untyped-def]
    rows = "\n".join(f"row {i} & value {i} & more words here \\\\" for i in range(200))
    table = f"\\begin{{tabular}}{{l|c|c}}\n{rows}\n\\end{{tabular}}"
    prose = " ".join(f"Sentence number {i} says something about streaming." for i in range(200))
    chunker = StreamChunker("doc", count, 100)
    new, _ = chunker.add(1, prose + "\n\n" + table)
    assert len(new) > 4
    assert max(count([c.text for c in new])) <= 100
    table_chunks = [c for c in new if "row " in c.text]
    assert all(c.text.startswith("\\begin{tabular}{l|c|c}") for c in table_chunks)
    assert set(coverage_counts({1: prose + "\n\n" + table}, new).values()) == {1}


def test_section_path_reaches_later_pages_and_is_recomputed_when_an_earlier_page_is_late(
    captures: list[Path], count
) -> None:  # type: ignore[no-untyped-def]
    doc = mmd_pages(next(c for c in captures if c.name == "exam-2017-solutions2"))
    in_order = chunk_all(doc, count, 254, sorted(doc))
    sections = {p: {c.section for c in in_order.chunks[p]} for p in in_order.chunks}
    assert sections[8] == sections[9] == {"Final Exam > Game Playing"}  # the heading is on page 5
    assert sections[3] == {"Final Exam > determinate"}
    chunker = StreamChunker("doc", count, 254)
    index: dict[str, object] = {}
    for p in [9, 8, 7, 6, 1, 2, 3, 4, 5]:  # page 5, holding the heading, arrives last
        new, stale = chunker.add(p, doc[p] or None)
        for c in stale:
            del index[c.chunk_id]
        index.update({c.chunk_id: c for c in new})
        if p == 4:
            assert {c.section for c in chunker.chunks[9]} == {"Final Exam > determinate"}
    assert set(index) == {c.chunk_id for c in in_order.all_chunks()}  # replaced, nothing lost or doubled


def test_a_page_sent_again_with_other_headings_moves_the_pages_after_it(count) -> None:  # type: ignore[no-untyped-def]
    pages = {1: "\\section{Intro}\n\nOpening words.", 2: "\\section{Method}\n\nWe count.", 3: "More counting."}
    chunker = StreamChunker("doc", count, 254)
    for p in (1, 3, 2):
        chunker.add(p, pages[p])
    assert {c.section for c in chunker.chunks[3]} == {"Method"}
    new, stale = chunker.add(2, "\\section{Results}\n\nWe counted.")  # a corrected page 2
    assert {c.section for c in chunker.chunks[3]} == {"Results"}
    assert {c.section for c in chunker.chunks[1]} == {"Intro"}
    assert {c.page for c in stale} == {2, 3} and {c.page for c in new} == {2, 3}


def test_a_question_naming_a_section_finds_chunks_under_it(captures: list[Path], index) -> None:  # type: ignore[no-untyped-def]
    from streamrag._models import PageEvent

    doc = mmd_pages(next(c for c in captures if c.name == "exam-2017-solutions2"))
    for p, text in doc.items():
        index.add_page(PageEvent(doc_id="d", page_idx=p, text=text or None, pdf_selected_len=len(doc)))
    citations, _ = index.retrieve("Game Playing", "d", 3)
    # every hit sits under the "Game Playing" section (pages 5-9), though not every hit holds the heading
    assert all(c.page >= 5 for c in citations), [c.pages for c in citations]
    assert any("Game Playing" not in c.text for c in citations)
    stored = {c.chunk_id: c for c in index.chunks("d")}
    assert all(stored[c.chunk_id].section == "Final Exam > Game Playing" for c in citations)


def test_tables_apart_gives_a_table_a_chunk_of_its_own(count) -> None:  # type: ignore[no-untyped-def]
    page = (
        "\\section{Roles}\n\nSeparation of duties keeps one user from holding every authority.\n\n"
        "| Column | Type |\n| --- | --- |\n| USER_NAME | VARCHAR(10) |\n\n"
        "\\begin{tabular}{ll}\nA & B \\\\\n\\end{tabular}\n\nThe function usage view lists who may act."
    )
    together = StreamChunker("d", count, 254)
    apart = StreamChunker("d", count, 254, tables_apart=True)
    (one,), _ = together.add(1, page)
    chunks, _ = apart.add(1, page)
    texts = [c.text for c in chunks]
    assert one.text.count("|") and len(texts) == 4
    assert texts[0].endswith("every authority.") and texts[1].startswith("| Column")
    assert texts[2].startswith("\\begin{tabular}") and texts[3].startswith("The function usage")
    assert "".join(texts).replace("\n", "") == one.text.replace("\n", "")  # the same text, cut apart
