"""Property tests of the streaming chunker over generated MMD (hypothesis), with the real tokenizer.

For any document, page cut, arrival order, strategy, overlap and budget: every non-space character
is in exactly one chunk apart from declared overlap (and repeated environment lines); math, tables,
code and listings are never cut unless too big for the window, and then every piece is well-formed;
the chunks fit the window together with their section context; applying ``(new, stale)`` keeps the
index equal to the chunker's chunks; the final chunk set does not depend on the arrival order.
"""

from __future__ import annotations

import random
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from llama_index.core.schema import MetadataMode

from streamrag._chunker import Chunk, StreamChunker, section_context
from streamrag._embedding import token_counter
from streamrag._mmd import split_blocks
from streamrag._nodes import chunk_of, node_of


@pytest.fixture(scope="module")
def count(embedder: object):  # type: ignore[no-untyped-def]
    return token_counter(embedder)  # type: ignore[arg-type]


WORDS = ["page", "stream", "index", "token", "the", "of", "graph", "vector", "query", "Bayes", "rank", "x", "42"]
words = st.lists(st.sampled_from(WORDS), min_size=1, max_size=30).map(" ".join)
sentence = words.map(lambda w: w[0].upper() + w[1:] + ".")
para = st.lists(sentence, min_size=1, max_size=8).map(" ".join)
para_with_aside = st.tuples(para, st.sampled_from(["\\footnotetext{1 A note.}", "![](https://x/f.jpg?h=1)"]), para).map(
    lambda t: f"{t[0]}\n{t[1]}\n{t[2]}"
)
heading = st.tuples(
    st.sampled_from(["\\title{", "\\section{", "\\subsection{", "\\section*{", "# ", "## "]), words
).map(lambda t: f"{t[0]}{t[1]}}}" if t[0].endswith("{") else f"{t[0]}{t[1]}")
row = st.tuples(words, words).map(lambda t: f"\\hline {t[0]} & {t[1]} \\\\")
table = st.lists(row, min_size=1, max_size=60).map(
    lambda rows: "\\begin{tabular}{|l|l|}\n\\hline Head & Col \\\\\n" + "\n".join(rows) + "\n\\hline\n\\end{tabular}"
)
math_line = words.map(lambda w: "x_{" + w.replace(" ", "} + y_{") + "} \\\\")
display = st.lists(math_line, min_size=1, max_size=40).flatmap(
    lambda lines: st.sampled_from(
        [
            "\\[\n" + "\n".join(lines) + "\n\\]",
            "$$\\begin{aligned}\n" + "\n".join(lines) + "\n\\end{aligned}$$",
            "\\begin{equation}\n" + "\n".join(lines) + "\n\\end{equation}",
        ]
    )
)
code = st.lists(words, min_size=1, max_size=40).flatmap(
    lambda lines: st.sampled_from(
        ["```python\n" + "\n".join(lines) + "\n```", "\\begin{lstlisting}\n" + "\n".join(lines) + "\n\\end{lstlisting}"]
    )
)
footnote = words.map(lambda w: f"\\footnotetext{{{w}}}")
figure = st.just("![](https://cdn.mathpix.com/cropped/x-1.jpg?height=85&width=98)")
block = st.one_of(para, para, para_with_aside, heading, table, display, code, footnote, figure)
ATOMIC_OPEN = re.compile(r"\\begin\{|\\\[|\$\$|```")


@st.composite
def documents(draw: st.DrawFn) -> dict[int, str]:
    """Pages of generated MMD; a page may start with a single newline (continuing a paragraph)."""
    n = draw(st.integers(1, 5))
    pages = {}
    for p in range(1, n + 1):
        blocks = draw(st.lists(block, min_size=0, max_size=6))
        sep = "" if p == 1 else draw(st.sampled_from(["\n", "\n\n"]))
        pages[p] = sep + "\n\n".join(blocks) if blocks else ""
    return pages


def spanned(pages: dict[int, str], chunk: Chunk) -> str:
    return "".join(pages[p][a:b] for p, a, b in chunk.pieces)


def run(pages: dict[int, str], order: list[int], count, **kw) -> StreamChunker:  # type: ignore[no-untyped-def]
    """Feed pages in ``order``, applying each ``(new, stale)`` to a mock index that must stay exact."""
    chunker = StreamChunker("doc", count, **kw)
    index: dict[str, Chunk] = {}
    for p in order:
        new, stale = chunker.add(p, pages[p] or None)
        for c in stale:
            assert index.pop(c.chunk_id, None) is not None, "deleting a chunk never written"
        for c in new:
            assert c.chunk_id not in index, "writing a chunk twice"
            index[c.chunk_id] = c
        assert set(index) == {c.chunk_id for c in chunker.all_chunks()}
    new, stale = chunker.finish()
    for c in stale:
        index.pop(c.chunk_id)
    index.update({c.chunk_id: c for c in new})
    assert set(index) == {c.chunk_id for c in chunker.all_chunks()}
    return chunker


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pages=documents(),
    seed=st.integers(0, 1000),
    strategy=st.sampled_from(["replace", "hold"]),
    overlap=st.sampled_from([0, 0, 24]),
    max_tokens=st.sampled_from([64, 128, 254]),
)
def test_generated_mmd_is_chunked_exactly_once_and_never_cuts_an_environment(  # type: ignore[no-untyped-def]
    count, pages: dict[int, str], seed: int, strategy: str, overlap: int, max_tokens: int
) -> None:
    kw = {"max_tokens": max_tokens, "overlap_tokens": overlap, "strategy": strategy}
    order = sorted(pages)
    random.Random(seed).shuffle(order)
    chunker = run(pages, order, count, **kw)
    chunks = chunker.all_chunks()
    # the same chunks in page order: arrival order does not matter
    assert sorted(c.chunk_id for c in run(pages, sorted(pages), count, **kw).all_chunks()) == sorted(
        c.chunk_id for c in chunks
    )
    # each chunk is its spans, with declared repeated lines around them; it fits the window with its context
    for c in chunks:
        assert c.text == c.prefix + spanned(pages, c) + c.suffix
        assert count([(section_context(c.section) if c.context else "") + c.text])[0] <= max_tokens
    # every non-space character exactly once, apart from each chunk's declared overlap
    seen: dict[tuple[int, int], int] = {}
    for c in chunks:
        skip = c.overlap
        for p, a, b in c.pieces:
            for i in range(a, b):
                if skip > 0:
                    skip -= 1
                    continue
                if not pages[p][i].isspace():
                    seen[(p, i)] = seen.get((p, i), 0) + 1
    expected = {(p, i) for p, t in pages.items() for i, ch in enumerate(t) if not ch.isspace()}
    assert set(seen) == expected
    assert set(seen.values()) <= {1}
    # atomic blocks: whole in one chunk if they fit, else split into well-formed pieces
    for p, text in pages.items():
        for blk in split_blocks(text):
            if blk.kind != "atomic":
                continue
            holders = [c for c in chunks if any(q == p and a < blk.end and b > blk.start for q, a, b in c.pieces)]
            whole = [c for c in holders if any(q == p and a <= blk.start and blk.end <= b for q, a, b in c.pieces)]
            if whole:
                assert len(holders) == 1 or all(h is whole[0] or h.overlap for h in holders)
                continue
            body = text[blk.start : blk.end]
            assert count([body])[0] > max_tokens // 2 - 40, "a small environment was cut"
            if "\n" in body and max(count(body.splitlines()) or [0]) < max_tokens // 2 - 40:
                for h in holders:  # cut at line boundaries, each piece closed and re-opened
                    for name in set(re.findall(r"\\begin\{([^}]*)\}", body)):
                        assert h.text.count(f"\\begin{{{name}}}") == h.text.count(f"\\end{{{name}}}"), h.text
                    assert h.text.count("\\[") == h.text.count("\\]")
                    assert h.text.count("$$") % 2 == 0 and h.text.count("```") % 2 == 0


def test_an_oversized_table_repeats_its_header_row_and_closes_each_piece(count) -> None:  # type: ignore[no-untyped-def]
    rows = "\n".join(f"\\hline row {i} & value {i} & more words here \\\\" for i in range(120))
    head = "\\begin{table}\n\\begin{tabular}{l|c|c}\n\\hline Name & Value & Notes \\\\\n"
    table = f"{head}{rows}\n\\hline\n\\end{{tabular}}\n\\end{{table}}"
    chunker = StreamChunker("doc", count, 100)
    new, _ = chunker.add(1, table)
    assert len(new) > 4
    for c in new:
        assert c.text.startswith("\\begin{table}\n\\begin{tabular}{l|c|c}\n\\hline Name & Value & Notes \\\\\n")
        assert c.text.rstrip().endswith("\\end{tabular}\n\\end{table}")
        assert re.search(r"row \d+ & value \d+ & more words here \\\\\n", c.text)
        assert count([c.text])[0] <= 100


def test_what_the_section_path_leaves_no_room_for_still_fits_the_window(count) -> None:  # type: ignore[no-untyped-def]
    path = "\\title{page page page page page page page page page page stream stream Bayes Bayes stream}"
    url = "![](https://cdn.mathpix.com/cropped/x-1.jpg?height=85&width=98)"
    rows = "\n".join(f"\\hline {w} & {w} \\\\" for w in ["rank graph vector query"] * 12)
    table = f"\\begin{{tabular}}{{|l|l|}}\n\\hline Head & Col \\\\\n{rows}\n\\hline\n\\end{{tabular}}"
    page = f"{path}\n\n\\section{{page page page page page page page}}\n\n\\subsection{{page}}\n\n{url}\n\n{table}"
    chunker = StreamChunker("doc", count, 40)
    chunks, _ = chunker.add(1, page)
    for c in chunks:
        assert count([(section_context(c.section) if c.context else "") + c.text])[0] <= 40, c
    bare = [c for c in chunks if not c.context]
    assert url in [c.text for c in bare]  # whole, without its path: not cut
    for c in bare:  # only runs with no space to cut at, too long to go with their path
        assert not any(ch.isspace() for ch in c.text.strip())
        assert count([section_context(c.section) + c.text])[0] > 40
        assert c.section.endswith(" > page page page page page page page > page")  # kept as metadata
        node = node_of(c)
        assert node.get_content(MetadataMode.EMBED) == c.text and node.metadata["section"] == c.section
        assert not chunk_of(node, "doc").context  # and read back so from a store
    assert sum(c.text.count("\\hline") for c in chunks) >= 14  # the table: cut, every row kept
    huge = "x_{1}+" * 300  # a run longer than the window alone is halved
    chunks, _ = StreamChunker("doc", count, 40).add(1, huge)
    assert len(chunks) > 1 and "".join(c.text for c in chunks) == huge
    assert all(count([c.text])[0] <= 40 for c in chunks)


def test_a_footnote_ending_a_page_does_not_break_the_paragraph_it_interrupts(count) -> None:  # type: ignore[no-untyped-def]
    pages = {
        1: "Intro.\n\nThe ranking of the documents is cut\n\\footnotetext{1 A footnote at the page end.}\n![](https://x/f.jpg)",
        2: "\nby the page break and goes on here.\n\nNext paragraph.",
    }
    for order in ([1, 2], [2, 1]):
        chunker = StreamChunker("doc", count, 254)
        for p in order:
            chunker.add(p, pages[p])
        texts = [c.text for c in chunker.all_chunks()]
        assert any("is cut\nby the page break" in t and "footnote" in t for t in texts), texts


def test_hold_back_waits_for_the_neighbour_and_releases_at_the_end(count) -> None:  # type: ignore[no-untyped-def]
    pages = {1: "First page.\n\nA paragraph cut", 2: "\nacross the break.\n\nMore.", 3: "\n\nLast open paragraph"}
    chunker = StreamChunker("doc", count, 254, strategy="hold")
    new1, _ = chunker.add(1, pages[1])
    assert [c.text for c in new1] == ["First page."]  # the open tail waits for page 2
    new2, stale2 = chunker.add(2, pages[2])
    assert not stale2 and any(c.text == "A paragraph cut\nacross the break." for c in new2)
    new3, _ = chunker.add(3, pages[3])
    assert all("Last open" not in c.text for c in new3)  # page 4 may continue it…
    released, stale = chunker.finish()  # …until the stream ends
    assert [c.text for c in released] == ["Last open paragraph"] and not stale
