"""Retrieval quality: streamrag's streaming chunker vs. the LlamaIndex default recipe, same embedder.

Three question sets (document, question, answer page(s), note):

- ``written`` (``benchmarks/data/questions.jsonl``, 67): written by hand over the real Mathpix captures
  in ``../shared/captures`` (pages from ``stream.json``, in arrival order) and three ``../shared/corpus``
  PDFs; mostly short exam pages, worded like the exams;
- ``sampled`` (``benchmarks/data/questions_sampled.jsonl``, 51) and ``sampled2``
  (``questions_sampled2.jsonl``, 56): written blind from passages and page breaks drawn at random by
  ``sample_passages.py`` from long, dense corpus PDFs (``freeculture`` cut into page ranges).

Corpus pages come from streamrag's local converter (``streamrag._convert.PdfPages``); a document key
``corpus/<file>#<page_ranges>`` converts only that range, numbered from 1 as Mathpix numbers it.

Variants, each embedded with the packaged all-MiniLM-L6-v2 and searched by cosine similarity:

- ``streamrag`` and its ablations: ``StreamChunker`` fed page by page in arrival order, chunks turned
  into LlamaIndex nodes by ``streamrag._nodes.node_of`` and embedded as ``node.get_content(EMBED)``
  (exactly what ``LiveIndex`` writes), replaced chunks removed as they are replaced;
- ``li-per-page``: ``SentenceSplitter()`` defaults (1024 tokens, 200 overlap) over one ``Document``
  per page (``file_name``, ``page_label`` metadata, as LlamaIndex's PDF reader sets them);
- ``li-whole-file``: the same over one ``Document`` per file, chunks mapped to pages by character
  offsets.

Ranks are computed two ways: over chunks (a question is hit at rank r when the r-th chunk comes from
its document and spans an answer page: what an engine showing the top k chunks shows) and over
distinct pages (the ranked chunks' pages, each listed once: the rank of the first answer page).
Reported: hit@1/3/5, MRR@10, per document-scoped index and for one shared index of every document,
for all questions and per set; for streaming variants also when each question first becomes
answerable (an answer page in the top 5 chunks) relative to the arrival of its last answer page,
and the embedding work.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/retrieval.py [--variants streamrag,hold,...] \
        [--sets written,sampled] [--backend openvino-int8|torch] [--json out.json]
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from llama_index.core import Document
from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.schema import MetadataMode
from sample_passages import load_pages

from streamrag._chunker import Chunk, StreamChunker
from streamrag._embedding import BACKENDS, load_embedder, token_counter, window
from streamrag._nodes import node_of
from streamrag._stream import read_recording

HERE = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("STREAMRAG_SHARED", HERE.parents[1] / "shared"))
QUESTION_SETS = {  # name -> file; see the module docstring
    "written": HERE / "data" / "questions.jsonl",
    "sampled": HERE / "data" / "questions_sampled.jsonl",
    "sampled2": HERE / "data" / "questions_sampled2.jsonl",
}
K = 5


@dataclass
class Doc:
    name: str
    pages: dict[int, str]  # page_idx -> text ("" without content)
    arrival: list[int]  # page_idx in arrival order


@dataclass
class Item:
    """A retrievable chunk: its document, pages and the text the embedder reads."""

    doc: str
    pages: frozenset[int]
    embed_text: str
    key: str = ""


@dataclass
class Embeddings:
    model: Any
    cache: dict[str, np.ndarray] = field(default_factory=dict)
    seconds: float = 0.0

    def __call__(self, texts: list[str]) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in self.cache]
        if missing:
            t0 = time.perf_counter()
            vecs = self.model.get_text_embedding_batch(missing)
            self.seconds += time.perf_counter() - t0
            for t, v in zip(missing, vecs, strict=True):
                a = np.asarray(v, dtype=np.float32)
                self.cache[t] = a / (np.linalg.norm(a) + 1e-12)
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        return np.stack([self.cache[t] for t in texts])


def load_docs(names: list[str]) -> dict[str, Doc]:
    docs = {}
    for name in names:
        kind, _, file = name.partition("/")
        if kind == "captures":
            msgs = read_recording(SHARED / "captures" / file / "stream.json")
            docs[name] = Doc(name, {m.page_idx: m.text or "" for m in msgs}, [m.page_idx for m in msgs])
        else:  # corpus/<file>[#<page_ranges>] through the local converter, pages in order
            pages = load_pages(name)
            docs[name] = Doc(name, pages, sorted(pages))
    return docs


def ranks(q: np.ndarray, items: list[Item], vecs: np.ndarray, doc: str, answer: set[int]) -> int | None:
    """1-based rank of the first chunk of ``doc`` spanning an answer page (None beyond 10)."""
    if not items:
        return None
    order = np.argsort(-(vecs @ q))[:10]
    for r, i in enumerate(order, 1):
        if items[i].doc == doc and items[i].pages & answer:
            return r
    return None


def page_ranks(q: np.ndarray, items: list[Item], vecs: np.ndarray, doc: str, answer: set[int]) -> int | None:
    """1-based rank of the first answer page in the ranked list of distinct pages (None beyond 10).
    Chunks in score order list the pages they span that are not listed yet; the pages one chunk adds
    share one rank (as they share its score), so only repeats of a listed page stop counting."""
    seen: set[tuple[str, int]] = set()
    for i in np.argsort(-(vecs @ q)) if items else []:
        new = {(items[i].doc, p) for p in items[i].pages} - seen
        if not new:
            continue
        if items[i].doc == doc and any(p in answer for _, p in new):
            return len(seen) + 1
        seen |= new
        if len(seen) >= 10:
            return None
    return None


def metrics(rs: list[int | None]) -> dict[str, float]:
    n = len(rs)
    return {
        "hit@1": sum(r is not None and r <= 1 for r in rs) / n,
        "hit@3": sum(r is not None and r <= 3 for r in rs) / n,
        "hit@5": sum(r is not None and r <= 5 for r in rs) / n,
        "MRR": sum(1 / r for r in rs if r is not None) / n,
    }


# -- streamrag: streamed page by page -------------------------------------------------------------


def stream_streamrag(
    doc: Doc, make: Callable[[str], StreamChunker], embed: Embeddings, questions: list[dict[str, Any]], qv: np.ndarray
) -> tuple[list[Item], dict[str, Any]]:
    """Feed pages in arrival order; after each arrival, when is each question first answerable?"""
    chunker = make(doc.name)
    live: dict[str, Chunk] = {}
    embedded_tokens = 0
    count = chunker.count_tokens
    first_seen: list[int | None] = [None] * len(questions)
    first_page_seconds = 0.0
    steps = [*((p, doc.pages[p]) for p in doc.arrival), (None, None)]
    for step, (page, text) in enumerate(steps, 1):
        if page is None:  # the stream ends: held chunks are released
            new, stale = chunker.finish()
            step = len(doc.arrival)
        else:
            new, stale = chunker.add(page, text or None)
        for c in stale:
            live.pop(c.chunk_id, None)
        texts = [_item(doc.name, c, chunker.section_context).embed_text for c in new]
        embedded_tokens += sum(count(texts)) if texts else 0
        if step == 1 and page is not None:
            t0 = time.perf_counter()
            embed.model.get_text_embedding_batch(texts)  # uncached: time to index the first page
            first_page_seconds = time.perf_counter() - t0
        embed(texts)
        for c in new:
            live[c.chunk_id] = c
        items = [_item(doc.name, c, chunker.section_context) for c in live.values()]
        vecs = embed([it.embed_text for it in items])
        for i, q in enumerate(questions):
            if first_seen[i] is None:
                r = ranks(qv[i], items, vecs, doc.name, set(q["pages"]))
                if r is not None and r <= K:
                    first_seen[i] = step
    final = [_item(doc.name, c, chunker.section_context) for c in chunker.all_chunks()]
    assert {c.chunk_id for c in chunker.all_chunks()} == set(live), "index and chunker disagree"
    pos = {p: k for k, p in enumerate(doc.arrival, 1)}
    delays = []
    for i, q in enumerate(questions):
        last = max(pos[p] for p in q["pages"])
        delays.append(None if first_seen[i] is None else first_seen[i] - last)
    return final, {"delays": delays, "tokens": embedded_tokens, "first_page_s": first_page_seconds}


def _item(doc: str, c: Chunk, section_context: bool = True) -> Item:
    return Item(doc, frozenset(c.pages), node_of(c, section_context).get_content(MetadataMode.EMBED), c.chunk_id)


# -- LlamaIndex default recipe --------------------------------------------------------------------


def li_per_page(doc: Doc) -> list[Item]:
    splitter = SentenceSplitter()
    name = doc.name.rsplit("/", 1)[-1].partition("#")[0]
    items = []
    for p in sorted(doc.pages):
        if not doc.pages[p].strip():
            continue
        d = Document(text=doc.pages[p], metadata={"file_name": name, "page_label": str(p)})
        for n in splitter.get_nodes_from_documents([d]):
            items.append(Item(doc.name, frozenset([p]), n.get_content(MetadataMode.EMBED)))
    return items


def li_whole_file(doc: Doc) -> list[Item]:
    splitter = SentenceSplitter()
    order = sorted(doc.pages)
    text = "".join(doc.pages[p] for p in order)
    bounds = []
    pos = 0
    for p in order:
        bounds.append((pos, pos + len(doc.pages[p]), p))
        pos += len(doc.pages[p])
    d = Document(text=text, metadata={"file_name": doc.name.rsplit("/", 1)[-1].partition("#")[0]})
    items = []
    for n in splitter.get_nodes_from_documents([d]):
        a = n.start_char_idx if n.start_char_idx is not None else text.find(n.get_content())
        b = n.end_char_idx if n.end_char_idx is not None else a + len(n.get_content())
        pages = frozenset(p for s, e, p in bounds if s < b and e > a and doc.pages[p][max(a - s, 0) : b - s].strip())
        items.append(Item(doc.name, pages, n.get_content(MetadataMode.EMBED)))
    return items


# -- the run --------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", default="streamrag,hold,overlap32,overlap64,no-sections,size128,tables-apart")
    ap.add_argument("--sets", default=",".join(QUESTION_SETS), help="question sets: written,sampled")
    ap.add_argument("--json", type=Path, help="write all figures here")
    ap.add_argument("--backend", default="openvino-int8", choices=BACKENDS, help="the embedder's backend (both sides)")
    args = ap.parse_args()

    questions = []
    for s in args.sets.split(","):
        for line in QUESTION_SETS[s].read_text(encoding="utf-8").splitlines():
            if line.strip():
                questions.append({**json.loads(line), "set": s})
    names = list(dict.fromkeys(q["document"] for q in questions))
    t0 = time.perf_counter()
    docs = load_docs(names)
    model = load_embedder(backend=args.backend)
    embed = Embeddings(model)
    count = token_counter(model)
    size = window(model) - 2
    print(
        f"{len(questions)} questions over {len(docs)} documents "
        f"({sum(bool(q['note'].startswith('straddles')) for q in questions)} straddle a page break); "
        f"chunk budget {size} word pieces; loaded in {time.perf_counter() - t0:.1f} s"
    )
    qv = np.stack([np.asarray(model.get_query_embedding(q["question"]), dtype=np.float32) for q in questions])
    qv /= np.linalg.norm(qv, axis=1, keepdims=True)
    sets = list(dict.fromkeys(q["set"] for q in questions))
    by_doc = {n: [i for i, q in enumerate(questions) if q["document"] == n] for n in names}

    configs: dict[str, dict[str, Any]] = {
        "streamrag": {},
        "hold": {"strategy": "hold"},
        "overlap32": {"overlap_tokens": 32},
        "overlap64": {"overlap_tokens": 64},
        "no-sections": {"section_context": False},
        "size128": {"max_tokens": 128},
        "tables-apart": {"tables_apart": True},
    }
    variants = [v for v in args.variants.split(",") if v]
    results: dict[str, Any] = {}
    all_items: dict[str, list[Item]] = {}
    for v in variants:
        kw = {"max_tokens": size, **configs[v]}
        t1 = time.perf_counter()
        items: list[Item] = []
        delays: list[int | None] = [None] * len(questions)
        tokens = 0
        first_s = []
        for name, doc in docs.items():
            idx = by_doc[name]
            final, info = stream_streamrag(
                doc, lambda d, kw=kw: StreamChunker(d, count, **kw), embed, [questions[i] for i in idx], qv[idx]
            )
            items += final
            for i, d in zip(idx, info["delays"], strict=True):
                delays[i] = d
            tokens += info["tokens"]
            first_s.append(info["first_page_s"])
        all_items[v] = items
        results[v] = {
            "delays": delays,
            "tokens": tokens,
            "first_page_s": statistics.mean(first_s),
            "chunks": len(items),
            "seconds": time.perf_counter() - t1,
        }
    for v, fn in (("li-per-page", li_per_page), ("li-whole-file", li_whole_file)):
        all_items[v] = [it for doc in docs.values() for it in fn(doc)]
        results[v] = {"chunks": len(all_items[v]), "tokens": sum(count([it.embed_text for it in all_items[v]]))}

    # quality: document-scoped and one shared index
    for v, items in all_items.items():
        vecs = embed([it.embed_text for it in items])
        scoped, shared, scoped_p, shared_p = [], [], [], []
        for i, q in enumerate(questions):
            mine = [k for k, it in enumerate(items) if it.doc == q["document"]]
            args_scoped = (qv[i], [items[k] for k in mine], vecs[mine], q["document"], set(q["pages"]))
            args_shared = (qv[i], items, vecs, q["document"], set(q["pages"]))
            scoped.append(ranks(*args_scoped))
            shared.append(ranks(*args_shared))
            scoped_p.append(page_ranks(*args_scoped))
            shared_p.append(page_ranks(*args_shared))
        for key, rs in (("scoped", scoped), ("shared", shared), ("pages-scoped", scoped_p), ("pages-shared", shared_p)):
            results[v][key] = metrics(rs)
            for s in sets:
                mine = [i for i, q in enumerate(questions) if q["set"] == s]
                results[v][f"{key}:{s}"] = metrics([rs[i] for i in mine])
        results[v]["ranks"] = scoped
        results[v]["shared_ranks"] = shared

    def table(key: str) -> None:
        where = "each document alone" if "scoped" in key else "all documents together"
        which = key.partition(":")[2] or "all"
        unit = "distinct pages" if key.startswith("pages") else "chunks"
        print(f"\n{key.partition(':')[0]} index ({where}), {which} questions, ranked {unit}")
        print("| variant | hit@1 | hit@3 | hit@5 | MRR@10 | chunks |")
        print("|---|---:|---:|---:|---:|---:|")
        for v in all_items:
            m = results[v][key]
            print(
                f"| {v} | {m['hit@1']:.3f} | {m['hit@3']:.3f} | {m['hit@5']:.3f} | {m['MRR']:.3f} | "
                f"{results[v]['chunks']} |"
            )

    for key in ("scoped", "shared", "pages-scoped", "pages-shared"):
        table(key)
        if len(sets) > 1:
            for s in sets:
                table(f"{key}:{s}")
    print("\nstreaming: first arrival with an answer page in the top 5, relative to the last answer page's arrival")
    print("| variant | before | same page | +1 | later | never | embedded word pieces | index page 1 (s, mean) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for v in variants:
        d = results[v]["delays"]
        print(
            f"| {v} | {sum(x is not None and x < 0 for x in d)} | {sum(x == 0 for x in d)} | "
            f"{sum(x == 1 for x in d)} | {sum(x is not None and x > 1 for x in d)} | {sum(x is None for x in d)} | "
            f"{results[v]['tokens']} | {results[v]['first_page_s']:.3f} |"
        )
    base = variants[0] if variants else None
    if base:
        print(f"\nmisses of {base} (scoped rank > 5 or late): document | question | pages | rank | delay")
        for i, q in enumerate(questions):
            r, d = results[base]["ranks"][i], results[base]["delays"][i]
            if r is None or r > K or d is None or d > 1:
                print(
                    f"  {q['document']} | {q['question'][:70]} | {q['pages']} | {r} | {d}"
                    f" | li-per-page rank {results['li-per-page']['ranks'][i]}"
                )
        straddle = [i for i, q in enumerate(questions) if q["note"].startswith("straddles")]
        print(
            "\nstraddling questions, scoped rank: "
            + "; ".join(
                f"{questions[i]['document'].split('/')[-1]} {questions[i]['pages']}: "
                + ", ".join(f"{v} {results[v]['ranks'][i]}" for v in (base, "li-per-page", "li-whole-file"))
                for i in straddle
            )
        )
    print(f"\nembedding time {embed.seconds:.1f} s; total {time.perf_counter() - t0:.1f} s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
