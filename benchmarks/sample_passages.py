"""Blind random samples of passages (and page breaks) for the ``sampled`` question sets.

The hand-written ``questions.jsonl`` is mostly about short exam pages and copies their wording, so
every retrieval method is near the ceiling on it. ``questions_sampled.jsonl`` (set ``sampled``) and
``questions_sampled2.jsonl`` (set ``sampled2``) are sets over long, dense documents whose questions
were written *blind* -- without running any embedder, retriever or ``retrieval.py`` on them -- from
passages picked at random by this script (``--set NAME``):

1. Pages are obtained exactly as ``retrieval.py`` obtains corpus pages: a document key
   ``corpus/<file>[#<page_ranges>]`` gives ``PdfPages(data, page_ranges=...)``, page text
   ``m.text or ""`` keyed by ``m.page_idx`` (1-based within the range, as in the Mathpix stream:
   in ``freeculture.pdf#61-120``, p1 is the book's PDF page 61). ``freeculture`` (352 pages) is
   cut into 60-page ranges to keep the benchmark fast.
2. One ``random.Random(seed)`` per set drives everything, documents taken in the set's order.
   For each document, ``N + RESERVE`` passages are drawn, each as: a page uniformly at random among
   the pages whose text has >= 400 characters (``len(text.strip())``), then one paragraph uniformly
   at random among that page's eligible paragraphs. A paragraph is a block of the page text
   separated by blank lines (``\\n\\s*\\n``); it is eligible when its stripped text has >= 150
   characters and it is not a heading (``\\section{``, ``\\subsection{``, ``\\title{``, ``#``...),
   a figure (``![](``), a table (``\\begin{tabular``, or every line starting with ``|``) or a
   math block (``$$``/``\\[``/``\\begin{equation|align|...}``, or fewer than 40% of its
   non-space characters are letters once inline math is removed). A page without an eligible
   paragraph, or a (page, paragraph) drawn twice, is redrawn (counted in the output);
   a document with fewer eligible paragraphs than passages plus reserves gives all it has.
   In ``sampled2``, pages that an earlier set's questions were drawn from (``Sample.exclude``: the
   pages named ``sampled pN`` in its notes) are not drawn again, nor are the page breaks it
   straddles, so the sets do not ask about the same passages. The first ``N`` draws are the
   sample; the ``RESERVE`` further draws are used, in order, only when a sampled passage is
   unreadable garbage (broken OCR, a reference list); the question file's note records any such
   replacement.
3. Straddling page breaks: after the passages of a document, every page ``p`` (within the range)
   whose text starts with a single ``"\\n"`` (the Mathpix separator for "continues the previous
   page's paragraph or list", not ``"\\n\\n"``) gives the break ``p-1 | p``; ``STRADDLES`` of them
   (all, if fewer) are drawn with ``rng.sample`` over the sorted list.

Output: per document, each passage with its page index, the paragraph's character offset within
the page text (``text.index(paragraph)`` as ``retrieval.py`` holds the text, separator included)
and its text; then the straddling breaks with the end of the previous page and the start of the
next. ``--dump DIR`` also writes every page text to ``DIR/<file>/<page>.md`` to search for other
answering pages.

    .venv/bin/python benchmarks/sample_passages.py [--set sampled2] [--dump /tmp/pages]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

from streamrag._convert import PdfPages

HERE = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("STREAMRAG_SHARED", HERE.parents[1] / "shared"))

MIN_PAGE_CHARS = 400
MIN_PARA_CHARS = 150
RESERVE = 5
STRADDLES = 2


@dataclass
class Sample:
    seed: int
    documents: dict[str, int]  # document key (as in the question files) -> passages to sample
    exclude: list[str] = field(default_factory=list)  # question files whose sampled pages are not redrawn


SETS = {
    "sampled": Sample(
        20261204,
        {
            "corpus/arxiv-0807.3577-jcap.pdf": 10,
            "corpus/arxiv-1804.07821.pdf": 10,
            "corpus/chelsea_pdta.pdf": 10,
            "corpus/freeculture.pdf#1-60": 10,
            "corpus/redp5110_sampled.pdf": 6,
        },
    ),
    "sampled2": Sample(
        20261205,
        {
            "corpus/freeculture.pdf#61-120": 12,
            "corpus/chelsea_pdta.pdf": 8,
            "corpus/arxiv-2310.07875-tablib-p1-7.pdf": 6,
            "corpus/arxiv-0807.3577-jcap.pdf": 5,
            "corpus/redp5110_sampled.pdf": 5,
            "corpus/arxiv-0908.0054.pdf": 5,
            "corpus/arxiv-2103.15348-with-empty-pages.pdf": 4,
            "corpus/arxiv-1804.07821.pdf": 4,
        },
        ["questions_sampled.jsonl"],
    ),
}

_HEADING = re.compile(r"^\s*(?:\\(?:sub)*section\*?\{|\\title\{|\\author\{|\\chapter\*?\{|#+\s)")
_MATH_BLOCK = re.compile(r"^\s*(?:\$\$|\\\[|\\begin\{(?:equation|align|gather|multline|eqnarray|array)\*?\})")
_INLINE_MATH = re.compile(r"\\\(.*?\\\)|\$[^$]*\$", re.S)
_BLANK = re.compile(r"\n[ \t]*\n")


def load_pages(name: str) -> dict[int, str]:
    """page_idx -> text of the corpus document ``corpus/<file>[#<page_ranges>]``, as retrieval.py loads it."""
    file, _, ranges = name.partition("/")[2].partition("#")
    with PdfPages((SHARED / "corpus" / file).read_bytes(), page_ranges=ranges or None) as pages:
        return {m.page_idx: m.text or "" for m in pages}


def excluded(files: list[str]) -> tuple[set[tuple[str, int]], set[tuple[str, int]]]:
    """(document, page) pairs the questions in ``files`` were sampled from, and (document, p) for
    the breaks ``p-1 | p`` they straddle."""
    pages, breaks = set(), set()
    for f in files:
        for line in (HERE / "data" / f).read_text(encoding="utf-8").splitlines():
            if line.strip():
                q = json.loads(line)
                pages |= {(q["document"], int(p)) for p in re.findall(r"^sampled p(\d+)", q["note"])}
                breaks |= {(q["document"], int(p)) for p in re.findall(r"^straddles p\d+-p(\d+)", q["note"])}
    return pages, breaks


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


def sample(rng: random.Random, pages: dict[int, str], n: int, skip: set[int]) -> tuple[list[tuple[int, int, str]], int]:
    rich = [p for p in sorted(pages) if len(pages[p].strip()) >= MIN_PAGE_CHARS and p not in skip]
    n = min(n, sum(eligible(b) for p in rich for _, b in paragraphs(pages[p])))  # a short document runs out
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
    ap.add_argument("--set", default="sampled", choices=SETS, help="which question set's sample to draw")
    ap.add_argument("--dump", type=Path, help="write every page text to DIR/<file>/<page>.md")
    args = ap.parse_args()

    spec = SETS[args.set]
    rng = random.Random(spec.seed)
    done_pages, done_breaks = excluded(spec.exclude)
    for name, n in spec.documents.items():
        pages = load_pages(name)
        if args.dump:
            d = args.dump / name.partition("/")[2]
            d.mkdir(parents=True, exist_ok=True)
            for p, t in pages.items():
                (d / f"{p}.md").write_text(t)
        rich = sum(len(t.strip()) >= MIN_PAGE_CHARS for t in pages.values())
        skip = {p for d, p in done_pages if d == name}
        picked, redraws = sample(rng, pages, n + RESERVE, skip)
        print(
            f"\n{'=' * 100}\n{name}: {len(pages)} pages, {rich} with >= {MIN_PAGE_CHARS} chars"
            f"{f', {len(skip)} excluded (earlier sets)' if skip else ''}; "
            f"{n} passages + {RESERVE} reserves ({redraws} redraws)"
        )
        for k, (page, off, block) in enumerate(picked, 1):
            tag = f"#{k}" if k <= n else f"reserve #{k - n}"
            print(f"\n--- {tag}: {name} p{page} off{off} ({len(block)} chars)\n{block}")
        breaks = [p for p in continued_breaks(pages) if (name, p) not in done_breaks]
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
