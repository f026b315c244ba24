"""Where streamrag's CPU goes at full speed: process CPU time inside each stage of the indexing path,
over the process CPU time of the whole run (all threads: torch's, OpenVINO's and Chroma's included).

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/cpu_share.py [--pages 360] [--embed-backend torch]

The pages are ``perf.py``'s throughput pages (real captured pages, repeated with distinct numbers),
streamed by ``aask`` with one question, no pacing. Stages are timed where they run, one at a time on
the indexing thread, so each figure is that stage's CPU (its own threads' included); "the model" is
``HuggingFaceEmbedding._get_text_embeddings`` (tokenising, the transformer, pooling), as in ``perf.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import functools
import os
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import perf

CPU: collections.Counter[str] = collections.Counter()


def timed(owner: Any, name: str, label: str) -> None:
    fn = getattr(owner, name)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t = time.process_time()
        try:
            return fn(*args, **kwargs)
        finally:
            CPU[label] += time.process_time() - t

    setattr(owner, name, wrapper)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pages", type=int, default=360)
    ap.add_argument("--embed-backend", default="openvino-int8", choices=("openvino-int8", "torch"))
    args = ap.parse_args()

    from llama_index.embeddings.huggingface import HuggingFaceEmbedding
    from llama_index.vector_stores.chroma import ChromaVectorStore

    import streamrag
    from streamrag import _chunker, _live, _nodes, _store
    from streamrag._embedding import load_embedder

    timed(HuggingFaceEmbedding, "_get_text_embeddings", "the model (passages)")
    timed(_chunker.StreamChunker, "add", "chunker")
    timed(_nodes.ChunkStore, "add", "Chroma: write chunks")
    timed(ChromaVectorStore, "delete_nodes", "Chroma: delete replaced chunks")
    timed(_store.PageLedger, "record", "Chroma: page ledger")
    timed(_live.LiveQuestions, "update", "answers (retrieve + extract)")

    embedder = load_embedder(backend=args.embed_backend)
    embedder.get_text_embedding_batch(["warm up the model", "and its tokenizer"])
    with tempfile.TemporaryDirectory(prefix="cpu-share-") as name:
        tmp = Path(name)
        stream = perf.write_stream(tmp / "pages", args.pages)
        index = streamrag.LiveIndex(tmp / "store", embed_model=embedder)
        CPU.clear()
        cpu0, t0 = time.process_time(), time.perf_counter()
        asyncio.run(perf.run_streamrag(streamrag.RecordedStream(stream), [perf.QUESTIONS[0]], index))
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    print(
        f"{args.pages} pages, {args.embed_backend}: {args.pages / wall:.1f} pages/s, process CPU {cpu:.2f} s "
        f"in {wall:.2f} s | {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}"
    )
    print("| stage | CPU s | share |\n|---|---:|---:|")
    for label, seconds in CPU.most_common():
        print(f"| {label} | {seconds:.2f} | {100 * seconds / cpu:.1f} % |")
    rest = cpu - sum(CPU.values())
    print(f"| everything else (node building, read-ahead, event loop) | {rest:.2f} | {100 * rest / cpu:.1f} % |")


if __name__ == "__main__":
    main()
