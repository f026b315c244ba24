"""Time to first answer: streamrag (answers while pages stream) vs. the batch way (wait, index, query).

Both read a real Mathpix capture replayed by streamrag's HTTP replay server at ``--pace`` s/page, with
the embedding model loaded and warm before timing. Times are seconds from t0 (just before the upload).

    .venv/bin/python benchmarks/ttfa.py [--capture final-old] [--pace 0.5] [--runs 3] [--torch-threads N]
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before any import that may reach for a model hub
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse
import asyncio
import functools
import json
import math
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import chromadb
import torch
from chromadb.config import Settings
from llama_index.core import Document, StorageContext, VectorStoreIndex
from llama_index.embeddings.huggingface import HuggingFaceEmbedding
from llama_index.vector_stores.chroma import ChromaVectorStore

import streamrag
from streamrag import _answer, _chunker, _index, _live, _store
from streamrag._embedding import default_model_path, load_embedder
from streamrag._server import EmbeddedServer

CAPTURES = Path(__file__).resolve().parents[2] / "shared" / "captures"
QUESTIONS = {  # capture -> questions whose answers are on its pages (page in the comment)
    "final-old": [
        "How long do students have to complete the exam?",  # p. 1: 2 hours
        "In how many documents does the word Austin occur?",  # p. 2: 100
        "What smoothing is used to estimate the naive Bayes parameters, with which m and p?",  # p. 11
    ],
}
TARGET = 0.5  # seconds: first answer after first page, final answer after last page
COLUMNS = ("first_page", "first_answer", "last_page", "final_answer")
Row = dict[str, float]

# -- stage timing: class methods wrapped once; times collected per method ("streamrag"/"batch") --
STAGES: dict[tuple[str, str], list[float]] = defaultdict(list)
CURRENT = ["warmup"]


def _instrument(owner: Any, name: str, label: str) -> None:
    fn: Callable[..., Any] | None = getattr(owner, name, None)
    if fn is None:  # a stage that no longer exists (e.g. the answers' sentence embedding, now lexical)
        return

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            STAGES[(CURRENT[0], label)].append(time.perf_counter() - t)

    setattr(owner, name, wrapper)


_WRAPPED = [
    (_index.LiveIndex, "add_page", "add_page (whole per-page path)"),
    (_chunker.StreamChunker, "add", "  chunking (StreamChunker.add)"),
    (VectorStoreIndex, "insert_nodes", "  insert_nodes (embed + chroma write)"),
    (ChromaVectorStore, "add", "    chroma write (ChromaVectorStore.add)"),
    (ChromaVectorStore, "delete_nodes", "  chroma delete of stale chunks"),
    (_store.PageLedger, "record", "  page ledger upsert"),
    (_index.LiveIndex, "coverage", "coverage()"),
    (_live.LiveQuestions, "update", "LiveQuestions.update (answers)"),
    (_index.LiveIndex, "retrieve", "  retrieve (chroma query)"),
    (_answer.Answerer, "_embed", "  answer sentence embedding"),
    (VectorStoreIndex, "from_documents", "from_documents (split + embed + write)"),
    (HuggingFaceEmbedding, "_get_text_embeddings", "model forward: passages (all callers)"),
    (HuggingFaceEmbedding, "_get_query_embedding", "model forward: queries"),
]
for _owner, _name, _label in _WRAPPED:
    _instrument(_owner, _name, _label)


def _at(t0: float) -> float:
    return time.perf_counter() - t0


class _Fed:
    """A page source fed by a task that reads the real source ahead, stamping true arrival times."""

    def __init__(self, doc_id: str, receive: Any) -> None:
        self.doc_id = doc_id
        self._receive = receive

    async def __aiter__(self) -> AsyncIterator[streamrag.PageEvent]:
        async with self._receive:
            async for event in self._receive:
                yield event


async def run_streamrag(url: str, pdf: Path, questions: list[str], embedder: Any, store: Path) -> tuple[Row, Any]:
    index = streamrag.LiveIndex(store, embed_model=embedder)  # built before t0: the app is up
    source = streamrag.MathpixPDF(pdf, api_url=url, app_key="")
    send, receive = anyio.create_memory_object_stream[streamrag.PageEvent](math.inf)
    arrivals: list[float] = []
    answers: list[float] = []
    indexed: list[float] = []  # when aask yields each page: it is indexed; its answers follow
    finals: list[streamrag.Answer] = []

    async def read_ahead() -> None:
        async with send:
            async for event in source:
                arrivals.append(_at(t0))
                await send.send(event)

    t0 = time.perf_counter()
    async with anyio.create_task_group() as tg:
        tg.start_soon(read_ahead)
        async for item in streamrag.aask(_Fed(source.doc_id, receive), questions, index):
            if isinstance(item, streamrag.Answer):
                answers.append(_at(t0))
                if item.final:
                    finals.append(item)
            else:
                indexed.append(_at(t0))
    lag = max(i - a for i, a in zip(indexed, arrivals, strict=True))
    return _row(arrivals, answers) | {"max_page_lag": lag}, [
        (",".join(map(str, a.citations[0].pages)) if a.citations else None, a.answer) for a in finals
    ]


def run_batch(
    url: str, pdf: Path, questions: list[str], embedder: HuggingFaceEmbedding, store: Path
) -> tuple[Row, Any]:
    client = chromadb.PersistentClient(path=str(store), settings=Settings(anonymized_telemetry=False))
    vector_store = ChromaVectorStore(chroma_collection=client.get_or_create_collection("batch"))
    arrivals: list[float] = []
    pages: dict[int, str] = {}
    t0 = time.perf_counter()
    with streamrag.MathpixClient(api_url=url, app_key="") as mathpix:
        for message in mathpix.stream(mathpix.submit(pdf)):
            arrivals.append(_at(t0))
            pages[message.page_idx] = message.text or ""
    documents = [Document(text=text, metadata={"page": n}) for n, text in sorted(pages.items()) if text.strip()]
    index = VectorStoreIndex.from_documents(
        documents, storage_context=StorageContext.from_defaults(vector_store=vector_store), embed_model=embedder
    )
    retriever = index.as_retriever(similarity_top_k=5)
    answers, tops = [], []
    for question in questions:
        hits = retriever.retrieve(question)  # no LLM: the retrieved passages are the answer's grounding
        answers.append(_at(t0))
        tops.append(
            (hits[0].node.metadata.get("page") if hits else None, " ".join(hits[0].node.get_content().split())[:90])
        )
    return _row(arrivals, answers), tops


def _row(arrivals: list[float], answers: list[float]) -> Row:
    return dict(zip(COLUMNS, (arrivals[0], answers[0], arrivals[-1], answers[-1]), strict=True))


def pages_with_text(folder: Path) -> int:
    return sum(1 for m in json.loads((folder / "stream.json").read_text()) if (m.get("text") or "").strip())


def median_row(rows: list[Row]) -> Row:
    return {c: statistics.median(r[c] for r in rows) for c in COLUMNS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default = max(sorted(p for p in CAPTURES.iterdir() if (p / "stream.json").is_file()), key=pages_with_text).name
    parser.add_argument("--capture", default=default, help=f"folder of shared/captures (default {default})")
    parser.add_argument("--pace", type=float, default=0.5, help="replay pace, seconds per page (default 0.5)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each method; the median is reported")
    parser.add_argument("--torch-threads", type=int, help="torch.set_num_threads (default: torch's, one per core)")
    parser.add_argument("-q", "--question", action="append", help="a question (default: built-in per capture)")
    args = parser.parse_args()
    folder = CAPTURES / args.capture
    pdf = next(folder.glob("*.pdf"))
    questions = args.question or QUESTIONS.get(args.capture)
    if not questions:
        parser.error(f"no built-in questions for {args.capture}: pass -q")
    with_text = pages_with_text(folder)

    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    print(f"capture {args.capture}: {with_text} pages with text, pace {args.pace} s/page, ", end="")
    print(f"torch threads {torch.get_num_threads()}; loading models (untimed)")
    ours = load_embedder()  # streamrag's packaged all-MiniLM-L6-v2 (HuggingFaceEmbedding, batch 32)
    theirs = HuggingFaceEmbedding(model_name=default_model_path())  # LlamaIndex defaults, same model files
    for model in (ours, theirs):
        model.get_text_embedding_batch(["warm up the model", "and its tokenizer"])

    rows: dict[str, list[Row]] = {"streamrag": [], "batch": []}
    with tempfile.TemporaryDirectory(prefix="ttfa-") as tmp:
        with EmbeddedServer(backend="replay", recordings=[folder], pace=0.0) as fast:  # untimed warm-up pass
            asyncio.run(run_streamrag(fast.url, pdf, questions, ours, Path(tmp, "warm-s")))
            run_batch(fast.url, pdf, questions, theirs, Path(tmp, "warm-b"))
        STAGES.clear()
        with EmbeddedServer(backend="replay", recordings=[folder], pace=args.pace) as server:
            for run in range(1, args.runs + 1):
                CURRENT[0] = "streamrag"
                row, ours_out = asyncio.run(run_streamrag(server.url, pdf, questions, ours, Path(tmp, f"s{run}")))
                rows["streamrag"].append(row)
                CURRENT[0] = "batch"
                brow, batch_out = run_batch(server.url, pdf, questions, theirs, Path(tmp, f"b{run}"))
                rows["batch"].append(brow)
                line = "  ".join(
                    f"{m} " + " ".join(f"{r[c]:.2f}" for c in COLUMNS) for m, r in [("streamrag", row), ("batch", brow)]
                )
                print(f"run {run}: {line}  (streamrag max lag page arrival -> indexed {row['max_page_lag']:.2f} s)")

    med = {m: median_row(r) for m, r in rows.items()}
    print(f"\nmedian of {args.runs} runs, seconds from t0 (just before the upload); {os.cpu_count()} CPUs, shared")
    print(f"{'method':<10}" + "".join(f"{c:>14}" for c in COLUMNS))
    for m, r in med.items():
        print(f"{m:<10}" + "".join(f"{r[c]:>14.2f}" for c in COLUMNS))
    s, b = med["streamrag"], med["batch"]
    print(
        f"batch / streamrag: first answer {b['first_answer'] / s['first_answer']:.1f}x, "
        f"final answer {b['final_answer'] / s['final_answer']:.2f}x"
    )
    print("(batch: LlamaIndex defaults, retrieval only, no LLM, first answer = final answer; streamrag: extractive)")
    for label, got in [
        ("first answer - first page", s["first_answer"] - s["first_page"]),
        ("final answer - last page", s["final_answer"] - s["last_page"]),
    ]:
        verdict = "PASS" if got <= TARGET else "MISS"
        print(f"streamrag {label}: {got:.3f} s (target <= {TARGET} s) {verdict}, margin {TARGET - got:+.3f} s")

    print("\nfinal answers (top cited page):")
    for q, (page, text), (bpage, btext) in zip(questions, ours_out, batch_out, strict=True):
        print(f"  Q: {q}\n    streamrag p.{page}: {text[:110]}\n    batch     p.{bpage}: {btext}")

    print(f"\nwhere the time goes, per run (mean of {args.runs}; nested stages indented):")
    print(f"{'method':<10}{'stage':<42}{'calls':>7}{'total s':>9}{'ms/call':>9}")
    for method, label in [(m, w[2]) for m in ("streamrag", "batch") for w in _WRAPPED if (m, w[2]) in STAGES]:
        times = STAGES[(method, label)]
        n = len(times) / args.runs
        total = sum(times) / args.runs
        print(f"{method:<10}{label:<42}{n:>7.0f}{total:>9.3f}{1000 * total / max(n, 1):>9.1f}")


if __name__ == "__main__":
    main()
