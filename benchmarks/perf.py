"""Performance of streamrag vs. the batch LlamaIndex recipe, all measured in one run, side by side.

    .venv/bin/python benchmarks/perf.py [--quick] [--plot benchmarks/perf-timelines.png]

Sections (see benchmarks/README.md, "perf.py"):
  ttfa        first/final answer vs. the batch recipe on 30 real captured pages at 0.3/0.7/1.5 s/page,
              with per-page index lag (arrival -> retrievable) p50/p95/max
  book        the same on freeculture.pdf (352 pages) through the local converter (skipped by --quick)
  throughput  full-speed ingest, pages/s and word pieces/s vs. IngestionPipeline, CPU share in the model,
              and query latency p50/p95 while ingesting vs. idle
  cold        `streamrag ask` process start -> first answer, vs. first page arrival and model ready
  rss         peak RSS streaming 50/500 replayed pages (and 5,000 with --full), each in a child process
Every figure line carries the 1-minute load average at the time (2 shared cores here).
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse
import asyncio
import functools
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
CAPTURES = SHARED / "captures"
BOOK = SHARED / "corpus" / "freeculture.pdf"
ORDER = ["final-old", "midterm-old", "exam-2017-solutions2", "exam-2024-solutions", "exam-2019"]
QUESTIONS = [
    "How long do students have to complete the exam?",  # final-old p. 1
    "What smoothing is used to estimate the naive Bayes parameters, with which m and p?",  # final-old p. 11
    "What is the purpose of the E(p) term in the PageRank algorithm?",
]
BOOK_QUESTIONS = ["What is the Causby case about?", "What does the author say about piracy?"]
TARGET = 0.3


def load() -> str:
    return f"load {os.getloadavg()[0]:.2f}"


def real_pages() -> list[dict[str, Any]]:
    """Every captured page with text, in a fixed order (final-old first)."""
    out = []
    for name in ORDER:
        for m in json.loads((CAPTURES / name / "stream.json").read_text()):
            if (m.get("text") or "").strip():
                out.append(m)
    return out


def write_stream(folder: Path, n: int) -> Path:
    """A recording of ``n`` real pages (repeated as needed), numbered 1..n: a generated stream.json."""
    pages = real_pages()
    folder.mkdir(parents=True, exist_ok=True)
    msgs = [{**pages[i % len(pages)], "page_idx": str(i + 1), "pdf_selected_len": str(n)} for i in range(n)]
    path = folder / "stream.json"
    path.write_text(json.dumps(msgs))
    return path


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


# -- CPU time inside the model: process CPU time (all threads, torch's included) around each forward --
MODEL_CPU = [0.0]
EMBEDDED = [0]  # word pieces the model read (each text cut at its 256-piece window), passages only
PROBE_CPU = [0.0]  # CPU of counting those word pieces: the benchmark's own, left out of the shares
COUNTER: list[Callable[[list[str]], list[int]]] = []


def _count_cpu(owner: Any, name: str) -> None:
    fn: Callable[..., Any] = getattr(owner, name)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if COUNTER and name == "_get_text_embeddings":
            t = time.process_time()
            EMBEDDED[0] += sum(min(n + 2, 256) for n in COUNTER[0](list(args[1])))
            PROBE_CPU[0] += time.process_time() - t
        t = time.process_time()
        try:
            return fn(*args, **kwargs)
        finally:
            MODEL_CPU[0] += time.process_time() - t

    setattr(owner, name, wrapper)


class Stamped:
    """Wraps a page source, stamping each page's arrival (when the source produced it)."""

    def __init__(self, source: Any, t0: Callable[[], float]) -> None:
        self.source = source
        self.doc_id = source.doc_id
        self.t0 = t0
        self.arrivals: dict[int, float] = {}

    async def __aiter__(self) -> AsyncIterator[Any]:
        async for event in self.source:
            self.arrivals[event.page_idx] = self.t0()
            yield event

    def __iter__(self) -> Iterator[Any]:
        for event in self.source:
            self.arrivals[event.page_idx] = self.t0()
            yield event


async def run_streamrag(source: Any, questions: list[str], index: Any) -> dict[str, Any]:
    import streamrag

    start = time.perf_counter()
    clock = lambda: time.perf_counter() - start  # noqa: E731
    stamped = Stamped(source, clock)
    indexed: dict[int, float] = {}
    answers: list[float] = []
    finals: list[Any] = []
    async for item in streamrag.aask(stamped, questions, index):
        if isinstance(item, streamrag.Answer):
            answers.append(clock())
            if item.final:
                finals.append(item)
        else:
            indexed[item.page_idx] = clock()
    arr = stamped.arrivals
    lags = [indexed[p] - arr[p] for p in indexed]
    return {
        "first_page": min(arr.values()),
        "last_page": max(arr.values()),
        "first_answer": answers[0],
        "final_answer": answers[-1],
        "lags": lags,
        "answers": answers,
        "arrivals": sorted(arr.values()),
        "finals": finals,
    }


def run_batch(source: Any, questions: list[str], embedder: Any, store: Path) -> dict[str, Any]:
    """LlamaIndex batch recipe: wait for the whole stream, VectorStoreIndex.from_documents, retrieve."""
    import chromadb
    from chromadb.config import Settings
    from llama_index.core import Document, StorageContext, VectorStoreIndex
    from llama_index.vector_stores.chroma import ChromaVectorStore

    start = time.perf_counter()
    clock = lambda: time.perf_counter() - start  # noqa: E731
    client = chromadb.PersistentClient(path=str(store), settings=Settings(anonymized_telemetry=False))
    vs = ChromaVectorStore(chroma_collection=client.get_or_create_collection("batch"))
    stamped = Stamped(source, clock)
    pages = {e.page_idx: e.text or "" for e in stamped}
    docs = [Document(text=t, metadata={"page": p}) for p, t in sorted(pages.items()) if t.strip()]
    index = VectorStoreIndex.from_documents(
        docs, storage_context=StorageContext.from_defaults(vector_store=vs), embed_model=embedder
    )
    retriever = index.as_retriever(similarity_top_k=5)
    answers = []
    for q in questions:
        retriever.retrieve(q)
        answers.append(clock())
    arr = sorted(stamped.arrivals.values())
    return {
        "first_page": arr[0],
        "last_page": arr[-1],
        "first_answer": answers[0],
        "final_answer": answers[-1],
        "answers": answers,
        "arrivals": arr,
    }


def section_ttfa(tmp: Path, ours: Any, theirs: Any, paces: list[float], n: int) -> list[dict[str, Any]]:
    import streamrag

    stream = write_stream(tmp / f"gen{n}", n)
    rows = []
    for pace in paces:
        index = streamrag.LiveIndex(tmp / f"s-{pace}", embed_model=ours)
        s = asyncio.run(run_streamrag(streamrag.RecordedStream(stream, pace=pace), QUESTIONS, index))
        b = run_batch(streamrag.RecordedStream(stream, pace=pace), QUESTIONS, theirs, tmp / f"b-{pace}")
        rows.append({"name": f"{n} pages @ {pace} s/page", "s": s, "b": b, "load": load()})
        print_row(rows[-1])
    return rows


def section_book(tmp: Path, ours: Any, theirs: Any) -> dict[str, Any]:
    import streamrag

    index = streamrag.LiveIndex(tmp / "book-s", embed_model=ours)
    s = asyncio.run(run_streamrag(streamrag.LocalPDF(BOOK), BOOK_QUESTIONS, index))
    b = run_batch(streamrag.LocalPDF(BOOK), BOOK_QUESTIONS, theirs, tmp / "book-b")
    row = {"name": "freeculture.pdf, 352 pages, local converter", "s": s, "b": b, "load": load()}
    print_row(row)
    return row


def print_row(row: dict[str, Any]) -> None:
    s, b = row["s"], row["b"]
    lags = s["lags"]
    print(
        f"{row['name']:<44} streamrag first page {s['first_page']:.2f} first answer {s['first_answer']:.2f} "
        f"last page {s['last_page']:.2f} final {s['final_answer']:.2f} | batch first answer {b['first_answer']:.2f} "
        f"final {b['final_answer']:.2f} | ratio first {b['first_answer'] / s['first_answer']:.1f}x "
        f"final {b['final_answer'] / s['final_answer']:.2f}x | first-ans - first-page "
        f"{s['first_answer'] - s['first_page']:.3f} final - last page {s['final_answer'] - s['last_page']:.3f} | "
        f"lag p50 {pct(lags, 0.5):.3f} p95 {pct(lags, 0.95):.3f} max {max(lags):.3f} | {row['load']}",
        flush=True,
    )


def section_throughput(tmp: Path, ours: Any, theirs: Any, n: int, repeats: int = 1) -> dict[str, Any]:
    import chromadb
    from chromadb.config import Settings
    from llama_index.core import Document
    from llama_index.core.ingestion import IngestionPipeline
    from llama_index.core.node_parser import SentenceSplitter
    from llama_index.vector_stores.chroma import ChromaVectorStore

    import streamrag
    from streamrag._embedding import token_counter

    stream = write_stream(tmp / f"tp{n}", n)
    texts = [m.get("text") or "" for m in json.loads(stream.read_text())]
    tokens = sum(token_counter(ours)(texts))
    COUNTER[:] = [token_counter(ours)]
    out: dict[str, Any] = {"pages": n, "tokens": tokens}
    source = streamrag.RecordedStream(stream)

    def timed(run: Callable[[], Any]) -> dict[str, Any]:
        MODEL_CPU[0], EMBEDDED[0], PROBE_CPU[0] = 0.0, 0, 0.0
        cpu0, t0 = time.process_time(), time.perf_counter()
        run()
        wall = time.perf_counter() - t0
        cpu = time.process_time() - cpu0 - PROBE_CPU[0]
        return {"wall": wall, "cpu_model_share": MODEL_CPU[0] / cpu, "cpu": cpu, "embedded": EMBEDDED[0]}

    def ours_run(k: int) -> dict[str, Any]:  # aask at full speed (read-ahead + batching), alone
        index = streamrag.LiveIndex(tmp / f"tp-s{k}", embed_model=ours)
        return timed(lambda: asyncio.run(run_streamrag(source, [QUESTIONS[0]], index)))

    def recipe_run(k: int) -> dict[str, Any]:  # the IngestionPipeline recipe on the same pages
        client = chromadb.PersistentClient(path=str(tmp / f"tp-b{k}"), settings=Settings(anonymized_telemetry=False))
        vs = ChromaVectorStore(chroma_collection=client.get_or_create_collection("pipe"))
        pipeline = IngestionPipeline(transformations=[SentenceSplitter(), theirs], vector_store=vs)
        docs = [Document(text=t, metadata={"page": i + 1}) for i, t in enumerate(texts)]
        return timed(lambda: pipeline.run(documents=docs))

    runs: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for k in range(repeats):  # alternating which way goes first, so drifts of the machine fall on both
        if k % 2:
            p = recipe_run(k)
            runs.append((ours_run(k), p))
        else:
            runs.append((ours_run(k), recipe_run(k)))
    ratios = sorted(p["wall"] / s["wall"] for s, p in runs)
    out["streamrag"], out["pipeline"] = runs[0]
    out["ratios"] = ratios

    # again into a fresh store, with one question re-answered every 20 ms alongside: query latency
    index = streamrag.LiveIndex(tmp / "tp-q", embed_model=ours)
    busy: list[float] = []
    done = threading.Event()

    def query_loop() -> None:
        live = streamrag.LiveQuestions(index, source.doc_id, [QUESTIONS[0]])
        while not done.is_set():
            t = time.perf_counter()
            live.update(final=True)
            busy.append(time.perf_counter() - t)
            time.sleep(0.02)

    querier = threading.Thread(target=query_loop)
    querier.start()
    asyncio.run(run_streamrag(source, [QUESTIONS[0]], index))
    done.set()
    querier.join()
    idle = []
    live = streamrag.LiveQuestions(index, source.doc_id, [QUESTIONS[0]])
    for _ in range(100):
        t = time.perf_counter()
        live.update(final=True)
        idle.append(time.perf_counter() - t)
        time.sleep(0.02)
    out["query"] = {"busy": busy, "idle": idle}
    COUNTER.clear()
    out["load"] = load()
    for k, (s, p) in enumerate(runs, 1):
        print(
            f"throughput {n} pages ({tokens} word pieces), run {k}/{repeats}: streamrag {n / s['wall']:.1f} pages/s "
            f"{tokens / s['wall']:.0f} wp/s, model read {s['embedded']} wp, CPU in model "
            f"{100 * s['cpu_model_share']:.0f}% | pipeline {n / p['wall']:.1f} pages/s {tokens / p['wall']:.0f} wp/s, "
            f"model read {p['embedded']} wp, CPU in model {100 * p['cpu_model_share']:.0f}% "
            f"| ratio {p['wall'] / s['wall']:.2f}x",
            flush=True,
        )
    if repeats > 1:
        print(
            f"throughput ratio over {repeats} runs: median {statistics.median(ratios):.2f}x, "
            f"min {ratios[0]:.2f}x, max {ratios[-1]:.2f}x | {out['load']}",
            flush=True,
        )
    q = out["query"]
    print(
        f"query (retrieve + answer, 1 question): under ingestion p50 {1000 * pct(q['busy'], 0.5):.1f} ms "
        f"p95 {1000 * pct(q['busy'], 0.95):.1f} ms (n={len(q['busy'])}) | idle p50 {1000 * pct(q['idle'], 0.5):.1f} "
        f"ms p95 {1000 * pct(q['idle'], 0.95):.1f} ms | ratio p95 {pct(q['busy'], 0.95) / pct(q['idle'], 0.95):.1f}x "
        f"| {out['load']}",
        flush=True,
    )
    return out


def section_cold(tmp: Path, runs: int) -> list[dict[str, float]]:
    capture = CAPTURES / "final-old"
    rows = []
    for run in range(runs):
        cmd = [
            sys.executable,
            "-m",
            "streamrag",
            "ask",
            str(capture / "stream.json"),
            "--json",
            "--timings",
            "--pace",
            "0.7",
            "--store",
            str(tmp / f"cold{run}"),
            "-q",
            QUESTIONS[0],
        ]
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        first_line = proc.stdout.readline()
        wall_first = time.perf_counter() - t0
        _rest, err = proc.communicate()
        rec = json.loads(first_line)
        timing = [line.split() for line in err.splitlines() if line.startswith("timing ")]
        arrival = next(float(t[3]) for t in timing if t[1] == "arrived")
        ready = next(float(t[2]) for t in timing if t[1] == "model_ready")
        row = {
            "wall_first_answer": wall_first,
            "first_answer": rec["seconds"],
            "first_arrival": arrival,
            "model_ready": ready,
        }
        row["over"] = row["first_answer"] - max(arrival, ready)
        rows.append(row)
        print(
            f"cold start run {run + 1}: process start -> first answer {wall_first:.2f} s (wall); from CLI import: "
            f"first page arrived {arrival:.2f}, model ready {ready:.2f}, first answer {rec['seconds']:.2f} "
            f"-> {row['over']:+.3f} s over max(arrival, ready) | {load()}",
            flush=True,
        )
    return rows


def rss_child(n: int, tmp: Path) -> None:
    """Child process: stream ``n`` generated pages at full speed into a fresh store; print peak RSS."""
    import streamrag

    stream = write_stream(tmp / f"rss{n}", n)
    index = streamrag.LiveIndex(tmp / f"rss-store{n}")
    index.embed_model.get_text_embedding_batch(["warm"])
    import psutil

    me = psutil.Process()
    base = me.memory_info().rss // 1024  # resident now: model loaded and warm, nothing streamed
    samples = [base]
    done = threading.Event()

    def sample() -> None:  # ru_maxrss would be the model-loading spike; sample the streaming itself
        while not done.wait(0.05):
            samples.append(me.memory_info().rss // 1024)

    sampler = threading.Thread(target=sample)
    sampler.start()
    t0 = time.perf_counter()
    asyncio.run(run_streamrag(streamrag.RecordedStream(stream), [QUESTIONS[0]], index))
    done.set()
    sampler.join()
    peak = max(samples)
    store = sum(f.stat().st_size for f in (tmp / f"rss-store{n}").rglob("*") if f.is_file())
    print(
        json.dumps(
            {"n": n, "peak_kb": peak, "base_kb": base, "store_bytes": store, "seconds": time.perf_counter() - t0}
        )
    )


def section_rss(tmp: Path, sizes: list[int]) -> list[dict[str, Any]]:
    rows = []
    for n in sizes:
        run = subprocess.run(
            [sys.executable, __file__, "--rss-child", str(n), "--tmp", str(tmp)],
            capture_output=True,
            text=True,
            check=True,
        )
        row = json.loads(run.stdout.strip().splitlines()[-1]) | {"load": load()}
        rows.append(row)
        print(
            f"peak RSS {n:>5} pages: {row['peak_kb'] / 1024:.0f} MB (before streaming {row['base_kb'] / 1024:.0f} MB), "
            f"store on disk {row['store_bytes'] / 2**20:.1f} MB, {row['seconds']:.1f} s | {row['load']}",
            flush=True,
        )
    return rows


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(rows), 1, figsize=(11, 1.9 * len(rows) + 0.6), squeeze=False)
    for ax, row in zip(axes[:, 0], rows, strict=True):
        s, b = row["s"], row["b"]
        ax.eventplot(
            [s["arrivals"], s["answers"], b["answers"]],
            lineoffsets=[2, 1, 0],
            linelengths=0.7,
            colors=["grey", "tab:blue", "tab:red"],
        )
        ax.set_yticks([2, 1, 0], ["page arrivals", "streamrag answers", "batch answers"])
        ax.set_title(row["name"], fontsize=9)
        ax.set_xlim(left=0)
    axes[-1, 0].set_xlabel("seconds from the start of the stream")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"timeline plot: {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="skip the 352-page book")
    parser.add_argument("--full", action="store_true", help="add the 5,000-page RSS run (~15 min on 2 cores)")
    parser.add_argument("--sections", default="ttfa,book,throughput,cold,rss")
    parser.add_argument("--paces", default="0.3,0.7,1.5")
    parser.add_argument("--pages", type=int, default=30, help="pages of the replayed stream (default 30)")
    parser.add_argument("--throughput-pages", type=int, default=120)
    parser.add_argument("--repeats", type=int, default=1, help="throughput: runs of each way, alternating")
    parser.add_argument("--batch-size", type=int, help="streamrag's embedding batch (default: load_embedder's)")
    parser.add_argument(
        "--embed-backend", default="openvino-int8", choices=("openvino-int8", "torch"), help="streamrag's embedder"
    )
    parser.add_argument("--plot", default=str(ROOT / "benchmarks" / "perf-timelines.png"))
    parser.add_argument("--rss-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--tmp", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        rss_child(args.rss_child, Path(args.tmp))
        return
    sections = set(args.sections.split(","))
    if args.quick:
        sections.discard("book")

    import torch
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding

    from streamrag._embedding import default_model_path, load_embedder

    _count_cpu(HuggingFaceEmbedding, "_get_text_embeddings")
    _count_cpu(HuggingFaceEmbedding, "_get_query_embedding")
    print(
        f"{os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, streamrag's embedder {args.embed_backend}, "
        f"{load()}; loading models (untimed)"
    )
    batch = {} if args.batch_size is None else {"batch_size": args.batch_size}
    ours = load_embedder(backend=args.embed_backend, **batch)
    theirs = HuggingFaceEmbedding(model_name=default_model_path())  # LlamaIndex defaults, same model files
    for model in (ours, theirs):
        model.get_text_embedding_batch(["warm up the model", "and its tokenizer"])
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="perf-") as name:
        tmp = Path(name)
        if "ttfa" in sections:
            rows += section_ttfa(tmp, ours, theirs, [float(p) for p in args.paces.split(",")], args.pages)
        if "book" in sections and BOOK.is_file():
            rows.append(section_book(tmp, ours, theirs))
        if "throughput" in sections:
            section_throughput(tmp, ours, theirs, args.throughput_pages, args.repeats)
        if "cold" in sections:
            section_cold(tmp, 2)
        if "rss" in sections:
            section_rss(tmp, [50, 500, 5000] if args.full else [50, 500])
    if rows:
        plot(rows, Path(args.plot))


if __name__ == "__main__":
    main()
