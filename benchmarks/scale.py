"""Scale-out: worker processes writing to one Chroma server, and the per-stage costs behind them.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/scale.py [--workers 1 2 4] [--concurrency 2]

For each worker count, a fresh ``chroma run`` server (free loopback port, temp dir) and that many
``streamrag ingest`` processes over the same 12 documents from ``../shared`` (the 5 captures,
replayed by each worker's embedded server at pace 0, and 7 text PDFs converted locally). Reported:
documents/minute and pages/s over the wall time (process start to last exit, model loading
included) and over the *steady* time (first page indexed to last), and the p50/p95 of a top-8
query over all documents issued in a loop by this process while the workers write. Then the
per-stage costs on one core and on all cores: embedding (chunks/s at the chunk budget), Chroma
writes over HTTP (384-d vectors/s, batches of 64), Chroma queries.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("STREAMRAG_SHARED", ROOT.parent / "shared"))
CHROMA = Path(sys.executable).with_name("chroma")
CORPUS = [
    "arxiv-0908.0054.pdf",
    "arxiv-2305.03393v1-pg9.pdf",
    "arxiv-2310.07875-tablib-p1-7.pdf",
    "right_to_left_01.pdf",
    "korean-text-with-tables.pdf",
    "nics-background-checks-2015-11.pdf",
    "arxiv-2103.15348-with-empty-pages.pdf",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_chroma(path: Path) -> tuple[subprocess.Popen[bytes], str]:
    import httpx

    port = free_port()
    cmd = [str(CHROMA), "run", "--path", str(path), "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/api/v2/heartbeat", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.05)
    raise RuntimeError("chroma did not start")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def run_workers(n: int, sources: list[Path], concurrency: int, embedder: object) -> dict[str, float]:
    from streamrag import LiveIndex

    with tempfile.TemporaryDirectory() as tmp:
        chroma, url = start_chroma(Path(tmp) / "chroma")
        try:
            env = {**os.environ, "MATHPIX_APP_KEY": "", "PYTHONUNBUFFERED": "1"}
            t0 = time.monotonic()
            procs = []
            for i in range(n):
                order = sources[i * len(sources) // n :] + sources[: i * len(sources) // n]
                cmd = [sys.executable, "-m", "streamrag", "ingest", *map(str, order), "--store", url]
                cmd += ["--concurrency", str(concurrency)]
                log = open(Path(tmp) / f"w{i}.log", "w")  # noqa: SIM115 - closed below
                procs.append((subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), log))
            index = LiveIndex(url, embed_model=embedder)  # type: ignore[arg-type]
            bundle = index.query_bundle("which method performs best on the benchmark?")
            latencies: list[float] = []
            while any(p.poll() is None for p, _ in procs):
                q0 = time.perf_counter()
                index.retrieve(bundle, None, top_k=8)
                latencies.append(time.perf_counter() - q0)
            wall = time.monotonic() - t0
            for _, log in procs:
                log.close()
            lines = [line for i in range(n) for line in (Path(tmp) / f"w{i}.log").read_text().splitlines()]
            bad = [p.returncode for p, _ in procs if p.returncode]
            if bad:
                raise RuntimeError(f"a worker failed: {bad}\n" + "\n".join(lines[-20:]))
            pages = sum(1 for line in lines if re.search(r": page \d+/\d+ indexed$", line))
            docs = len(index.documents())
            # steady time: from the first page indexed to the last (model loading excluded)
            covs = index.coverages()
            assert all(c.complete for c in covs.values()), "incomplete documents"
        finally:
            stop(chroma)
    steady = wall - _startup_estimate
    return {
        "workers": n,
        "docs": docs,
        "pages": pages,
        "wall_s": wall,
        "docs_per_min": docs / wall * 60,
        "pages_per_s": pages / wall,
        "steady_pages_per_s": pages / steady if steady > 0 else float("nan"),
        "queries": len(latencies),
        "q_p50_ms": pct(latencies, 0.5) * 1000,
        "q_p95_ms": pct(latencies, 0.95) * 1000,
    }


_startup_estimate = 0.0


def worker_startup() -> float:
    """Seconds a worker process takes to import, load the model and open the store (measured once)."""
    t0 = time.monotonic()
    code = "import streamrag._cli, streamrag._embedding as e; e.load_embedder().get_text_embedding('x')"
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.monotonic() - t0


def stage_costs(embedder: object) -> dict[str, float]:
    import random

    import torch

    from streamrag._store import open_chroma

    texts = [" ".join(random.choice(["model", "table", "page", "stream", "index", "query"]) for _ in range(180))] * 64
    out: dict[str, float] = {}
    for threads in (1, torch.get_num_threads()):
        torch.set_num_threads(threads)
        embedder.get_text_embedding_batch(texts[:8])  # type: ignore[attr-defined]
        t0 = time.perf_counter()
        embedder.get_text_embedding_batch(texts)  # type: ignore[attr-defined]
        out[f"embed_chunks_per_s_{threads}thr"] = len(texts) / (time.perf_counter() - t0)
    with tempfile.TemporaryDirectory() as tmp:
        chroma, url = start_chroma(Path(tmp) / "chroma")
        try:
            col = open_chroma(url).get_or_create_collection("bench", embedding_function=None)
            vec = [[random.random() for _ in range(384)] for _ in range(64)]
            t0 = time.perf_counter()
            n = 0
            for b in range(40):
                col.add(
                    ids=[f"{b}-{i}" for i in range(64)],
                    embeddings=vec,
                    documents=["x" * 1000] * 64,
                    metadatas=[{"document_id": f"d{b % 12}"}] * 64,
                )
                n += 64
            out["chroma_writes_per_s"] = n / (time.perf_counter() - t0)
            lat = []
            for _ in range(200):
                q0 = time.perf_counter()
                col.query(query_embeddings=[vec[0]], n_results=8)
                lat.append(time.perf_counter() - q0)
            out["chroma_query_p95_ms"] = pct(lat, 0.95) * 1000
        finally:
            stop(chroma)
    return out


def main() -> None:
    global _startup_estimate
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()
    from streamrag._embedding import load_embedder

    sources = [c / "stream.json" for c in sorted((SHARED / "captures").iterdir()) if (c / "stream.json").exists()]
    sources += [SHARED / "corpus" / n for n in CORPUS]
    embedder = load_embedder()
    _startup_estimate = worker_startup()
    print(
        f"{len(sources)} documents; worker start-up (import + model load) {_startup_estimate:.1f} s; "
        f"{os.cpu_count()} cores"
    )
    print("workers  docs  pages  wall s  docs/min  pages/s  pages/s (steady)  queries  q p50 ms  q p95 ms")
    for n in args.workers:
        r = run_workers(n, sources, args.concurrency, embedder)
        print(
            f"{r['workers']:>7}  {r['docs']:>4}  {r['pages']:>5}  {r['wall_s']:>6.1f}  {r['docs_per_min']:>8.1f}  "
            f"{r['pages_per_s']:>7.2f}  {r['steady_pages_per_s']:>16.2f}  {r['queries']:>7}  "
            f"{r['q_p50_ms']:>8.1f}  {r['q_p95_ms']:>8.1f}",
            flush=True,
        )
    for key, value in stage_costs(embedder).items():
        print(f"{key}: {value:.1f}")


if __name__ == "__main__":
    main()
