"""Blind random sample of passages (and page breaks) for ``benchmarks/data/questions_sampled.jsonl``.

The hand-written ``questions.jsonl`` is mostly about short exam pages and copies their wording, so
every retrieval method is near the ceiling on it. ``questions_sampled.jsonl`` is a second set over
long, dense documents whose questions were written *blind* -- without running any embedder,
retriever or ``retrieval.py`` on them -- from passages picked at random by this script:

1. Pages are obtained exactly as ``retrieval.py`` obtains corpus pages:
   ``PdfPages((SHARED / "corpus" / file).read_bytes())``, page text ``m.text or ""`` keyed by
   ``m.page_idx`` (1-based, as in the Mathpix stream). For ``freeculture.pdf`` only pages 1-60 of
   352 are used (see ``PAGE_RANGES``) to keep the benchmark fast; the whole file is opened and
   the iteration stops after page 60 -- PdfPages is lazy and a page's text depends only on the
   pages before it and two pages after it, so these are byte for byte the first 60 pages of the
   whole-document conversion (``PdfPages(data, page_ranges="1-60")`` gives the same texts; run
   with ``--check-ranges`` to verify). A loader for the sampled set must restrict the document to
   the same range.
2. One ``random.Random(SEED)`` drives everything, documents taken in the order of ``DOCUMENTS``.
   For each document, ``N + RESERVE`` passages are drawn, each as: a page uniformly at random among
   the pages whose text has >= 400 characters (``len(text.strip())``), then one paragraph uniformly
   at random among that page's eligible paragraphs. A paragraph is a block of the page text
   separated by blank lines (``\\n\\s*\\n``); it is eligible when its stripped text has >= 150
   characters and it is not a heading (``\\section{``, ``\\subsection{``, ``\\title{``, ``#``...),
   a figure (``![](``), a table (``\\begin{tabular``, or every line starting with ``|``) or a
   math block (``$$``/``\\[``/``\\begin{equation|align|...}``, or fewer than 40% of its
   non-space characters are letters once inline math is removed). A page without an eligible
   paragraph, or a (page, paragraph) drawn twice, is redrawn (counted in the output).
   The first ``N`` draws are the sample; the ``RESERVE`` further draws are used, in order, only
   when a sampled passage is unreadable garbage (broken OCR, a reference list); the question file's
   note records any such replacement.
3. Straddling page breaks: after the passages of a document, every page ``p`` (within the range)
   whose text starts with a single ``"\\n"`` (the Mathpix separator for "continues the previous
   page's paragraph or list", not ``"\\n\\n"``) gives the break ``p-1 | p``; ``STRADDLES`` of them
   (all, if fewer) are drawn with ``rng.sample`` over the sorted list.

Output: per document, each passage with its page index, the paragraph's character offset within
the page text (``text.index(paragraph)`` as ``retrieval.py`` holds the text, separator included)
and its text; then the straddling breaks with the end of the previous page and the start of the
next. ``--dump DIR`` also writes every page text to ``DIR/<file>/<page>.md`` to search for other
answering pages.

    .venv/bin/python benchmarks/sample_passages.py [--dump /tmp/pages] [--check-ranges]
"""

from __future__ import annotations

import argparse
import os
import random
import re
from itertools import islice
from pathlib import Path

from streamrag._convert import PdfPages

HERE = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("STREAMRAG_SHARED", HERE.parents[1] / "shared"))

SEED = 20261204
MIN_PAGE_CHARS = 400
MIN_PARA_CHARS = 150
RESERVE = 5
STRADDLES = 2

# document key (as in questions.jsonl) -> passages to sample
DOCUMENTS = {
    "corpus/arxiv-0807.3577-jcap.pdf": 10,
    "corpus/arxiv-1804.07821.pdf": 10,
    "corpus/chelsea_pdta.pdf": 10,
    "corpus/freeculture.pdf": 10,
    "corpus/redp5110_sampled.pdf": 6,
}
# document key -> Mathpix-style page_ranges the benchmark restricts the document to
PAGE_RANGES = {"corpus/freeculture.pdf": "1-60"}

_HEADING = re.compile(r"^\s*(?:\\(?:sub)*section\*?\{|\\title\{|\\author\{|\\chapter\*?\{|#+\s)")
_MATH_BLOCK = re.compile(r"^\s*(?:\$\$|\\\[|\\begin\{(?:equation|align|gather|multline|eqnarray|array)\*?\})")
_INLINE_MATH = re.compile(r"\\\(.*?\\\)|\$[^$]*\$", re.S)
_BLANK = re.compile(r"\n[ \t]*\n")


def last_page(name: str) -> int | None:
    spec = PAGE_RANGES.get(name)
    if spec is None:
        return None
    first, _, last = spec.partition("-")
    assert first == "1", "only leading ranges are supported: page numbers then match the whole file"
    return int(last)


def load_pages(name: str) -> dict[int, str]:
    """page_idx -> text, exactly as retrieval.py's load_docs, cut to PAGE_RANGES."""
    file = name.partition("/")[2]
    pages = PdfPages((SHARED / "corpus" / file).read_bytes())
    msgs = islice(pages, last_page(name))  # None: every page
    try:
        return {m.page_idx: m.text or "" for m in msgs}
    finally:
        pages.close()


def paragraphs(text: str) -> list[tuple[int, str]]:
    """Blank-line separated blocks of ``text`` with their character offsets."""
    out = []
    pos = 0
    for m in [*_BLANK.finditer(text), None]:
        end = m.start() if m else len(text)
        block = text[pos:end]
        if block.strip():
            lead = len(block) - len(block.lstrip())
            out.append((pos + lead, block.strip()))
        pos = m.end() if m else len(text)
    return out


def eligible(block: str) -> bool:
    if len(block) < MIN_PARA_CHARS or _HEADING.match(block) or _MATH_BLOCK.match(block):
        return False
    if block.startswith("![") or "\\begin{tabular" in block:
        return False
    lines = [ln for ln in block.splitlines() if ln.strip()]
    if all(ln.lstrip().startswith("|") for ln in lines):
        return False
    prose = re.sub(r"\s", "", _INLINE_MATH.sub("", block))
    letters = sum(c.isalpha() for c in prose)
    return len(prose) > 0 and letters >= 0.4 * len(prose)


def sample(rng: random.Random, pages: dict[int, str], n: int) -> tuple[list[tuple[int, int, str]], int]:
    rich = [p for p in sorted(pages) if len(pages[p].strip()) >= MIN_PAGE_CHARS]
    picked: list[tuple[int, int, str]] = []
    redraws = 0
    while len(picked) < n:
        page = rng.choice(rich)
        paras = [(off, b) for off, b in paragraphs(pages[page]) if eligible(b)]
        if not paras:
            redraws += 1
            continue
        off, block = rng.choice(paras)
        if any(p == page and o == off for p, o, _ in picked):
            redraws += 1
            continue
        assert pages[page][off : off + len(block)] == block
        picked.append((page, off, block))
    return picked, redraws


def continued_breaks(pages: dict[int, str]) -> list[int]:
    """Pages whose text starts with a single newline: they continue the previous page."""
    return [p for p in sorted(pages) if p > 1 and pages[p].startswith("\n") and not pages[p].startswith("\n\n")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dump", type=Path, help="write every page text to DIR/<file>/<page>.md")
    ap.add_argument("--check-ranges", action="store_true", help="verify PAGE_RANGES against page_ranges=")
    args = ap.parse_args()

    rng = random.Random(SEED)
    for name, n in DOCUMENTS.items():
        pages = load_pages(name)
        if args.check_ranges and name in PAGE_RANGES:
            file = name.partition("/")[2]
            with PdfPages((SHARED / "corpus" / file).read_bytes(), page_ranges=PAGE_RANGES[name]) as pp:
                ranged = {m.page_idx: m.text or "" for m in pp}
            print(f"# check {name} page_ranges={PAGE_RANGES[name]}: identical = {ranged == pages}")
        if args.dump:
            d = args.dump / name.partition("/")[2]
            d.mkdir(parents=True, exist_ok=True)
            for p, t in pages.items():
                (d / f"{p}.md").write_text(t)
        rich = sum(len(t.strip()) >= MIN_PAGE_CHARS for t in pages.values())
        picked, redraws = sample(rng, pages, n + RESERVE)
        rng_note = f", page range {PAGE_RANGES[name]}" if name in PAGE_RANGES else ""
        print(
            f"\n{'=' * 100}\n{name}: {len(pages)} pages{rng_note}, {rich} with >= {MIN_PAGE_CHARS} chars; "
            f"{n} passages + {RESERVE} reserves ({redraws} redraws)"
        )
        for k, (page, off, block) in enumerate(picked, 1):
            tag = f"#{k}" if k <= n else f"reserve #{k - n}"
            print(f"\n--- {tag}: {name} p{page} off{off} ({len(block)} chars)\n{block}")
        breaks = continued_breaks(pages)
        chosen = rng.sample(breaks, min(STRADDLES, len(breaks)))
        print(
            f"\n--- straddling breaks of {name}: {len(breaks)} ({', '.join(f'p{p - 1}-p{p}' for p in breaks)}); "
            f"drawn: {', '.join(f'p{p - 1}-p{p}' for p in chosen) or 'none'}"
        )
        for p in chosen:
            print(
                f"\n--- straddle p{p - 1}-p{p}\n[... end of p{p - 1}]\n{pages[p - 1][-700:]}\n"
                f"[start of p{p} ...]\n{pages[p][:700]}"
            )


if __name__ == "__main__":
    main()
