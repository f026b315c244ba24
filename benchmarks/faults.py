"""Faults against a real server: pages lost, pages duplicated, time to recover; and fuzzing counts.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/faults.py [--runs 3] [--capture final-old] [--fuzz 20000]

Each fault is injected into streamrag's own server (replay backend, the capture at ``--pace``) and
the document is ingested through ``MathpixPDF`` into a fresh ``LiveIndex``. *Lost* counts pages of
the recording missing from the index's ledger; *duplicated* counts chunks beyond those of an
undisturbed run plus chunk ids that differ from it; *recovery* is the run's time minus the median
undisturbed time. Fuzzing feeds random and mutated stream lines to the stream parser and random MMD
to the chunker and counts inputs that raised anything other than the documented typed errors.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

from streamrag import LiveIndex, MathpixError, MathpixPDF, RetryPolicy, StreamFormatError
from streamrag._chunker import StreamChunker
from streamrag._embedding import load_embedder
from streamrag._protocol import StreamState
from streamrag._server import EmbeddedServer
from streamrag._server.faults import FaultPlan
from streamrag._stream import read_recording

SHARED = Path(__file__).resolve().parents[2] / "shared"
POLICY = RetryPolicy(attempts=8, backoff=0.05, max_backoff=1.0, deadline=60.0, reconnects=5)

FAULTS: dict[str, dict[str, Any]] = {
    "none (baseline)": {},
    "close after 3 pages": {"stream": {"close_after": 3}},
    "connection dropped mid-body (x2)": {"stream": {"close_after": 4, "abort": True, "times": 2}},
    "stall 30 s (read timeout 1 s)": {"stream": {"stall_after": 3, "stall_seconds": 30}},
    "out of order + duplicates": {"stream": {"out_of_order": True, "duplicate": True}},
    "malformed/unknown/missing-field lines": {
        "stream": {
            "lines": [
                {"after": 1, "line": '{"page_idx": 2, "text": "cut'},
                {"after": 2, "line": '{"page_idx": 3}'},
                {"after": 3, "line": '{"kind": "progress"}'},
            ]
        }
    },
    "stream never completes (poll + download)": {"stream": {"close_after": 2, "times": 100}},
    "HTTP 200 sys_exception on upload (x2)": {"requests": [{"route": "upload", "status": 200, "times": 2}]},
    "HTTP 429 Retry-After 0.5 (x2)": {
        "requests": [
            {"route": "upload", "status": 429, "error_id": "http_max_requests", "retry_after": 0.5, "times": 2}
        ]
    },
    "HTTP 500 on stream (x2)": {"requests": [{"route": "stream", "status": 500, "times": 2}]},
    "HTTP 503 on upload (x3)": {"requests": [{"route": "upload", "status": 503, "times": 3}]},
}


def run_once(capture: Path, plan: dict[str, Any], pace: float, embedder: Any) -> tuple[set[int], list[str], float]:
    with (
        tempfile.TemporaryDirectory() as store,
        EmbeddedServer(
            backend="replay", recordings=[capture], pace=pace, faults=FaultPlan.model_validate(plan)
        ) as server,
    ):
        index = LiveIndex(store, embed_model=embedder)
        timeout = 1.0 if "stall" in str(plan) else None
        source = MathpixPDF(next(capture.glob("*.pdf")), api_url=server.url, app_key="", retry=POLICY, timeout=timeout)
        started = time.perf_counter()
        for event in source:
            index.add_page(event)
        seconds = time.perf_counter() - started
        pages = set(index.coverage(source.doc_id).pages_seen)
        return pages, [c.chunk_id for c in index.chunks(source.doc_id)], seconds


def fuzz(n: int, capture: Path, seed: int = 0) -> tuple[int, int, int]:
    """Random and mutated stream lines through the parser, random MMD through the chunker."""
    rng = random.Random(seed)
    lines = [m.model_dump_json(exclude_none=True) for m in read_recording(capture / "stream.json")]
    alphabet = '{}[]":,\\$ \n\tab01\x00é€' + "\\begin{tabular}\\end{tabular}\\[\\]$$```\\section{"
    parser_crashes = chunker_crashes = 0
    for i in range(n):
        base = rng.choice(lines)
        cut = rng.randrange(len(base) + 1)
        junk = "".join(rng.choice(alphabet) for _ in range(rng.randrange(30)))
        line = (base[:cut] + junk + base[cut + rng.randrange(20) :]).encode("utf-8", "surrogatepass")
        if i % 7 == 0:
            line = bytes(rng.randrange(256) for _ in range(rng.randrange(60)))
        try:
            StreamState("fuzz", POLICY).feed(line)
        except (StreamFormatError, MathpixError):
            pass
        except Exception:
            parser_crashes += 1
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(400)))
        chunker = StreamChunker("fuzz", lambda ts: [len(t.split()) + 1 for t in ts], 40)
        try:
            chunker.add(1 + i % 3, text)
            chunker.add(2 + i % 3, "\n" + text[::-1])
        except Exception:
            chunker_crashes += 1
    return n, parser_crashes, chunker_crashes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--capture", default="final-old")
    parser.add_argument("--pace", type=float, default=0.05)
    parser.add_argument("--fuzz", type=int, default=20000)
    args = parser.parse_args()
    capture = SHARED / "captures" / args.capture
    if not capture.is_dir():
        print(f"no capture at {capture}", file=sys.stderr)
        return 2
    embedder = load_embedder()
    total = {m.page_idx for m in read_recording(capture / "stream.json")}
    reference: list[str] | None = None
    baseline = 0.0
    print(f"{args.capture}: {len(total)} pages, pace {args.pace} s/page, {args.runs} runs per fault\n")
    print(f"{'fault':42} {'runs':>4} {'lost':>5} {'dup':>5} {'recovery s (median)':>20}")
    for name, plan in FAULTS.items():
        lost = dup = 0
        times = []
        for _ in range(args.runs):
            pages, chunk_ids, seconds = run_once(capture, plan, args.pace, embedder)
            reference = reference or chunk_ids
            lost += len(total - pages)
            dup += max(0, len(chunk_ids) - len(reference)) + len(set(chunk_ids) ^ set(reference))
            times.append(seconds)
        if not plan:
            baseline = statistics.median(times)
        print(f"{name:42} {args.runs:>4} {lost:>5} {dup:>5} {statistics.median(times) - baseline:>20.2f}")
    n, parser_crashes, chunker_crashes = fuzz(args.fuzz, capture)
    print(f"\nfuzz: {n} stream lines -> {parser_crashes} crashes; {n} MMD pages (x2) -> {chunker_crashes} crashes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
