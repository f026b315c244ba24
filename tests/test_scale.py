"""Beyond one machine: a real Chroma server, many documents in one collection, many worker processes."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import coverage_counts, stop_process
from streamrag import LiveIndex, PageEvent
from streamrag._exceptions import RateLimitError
from streamrag._retry import RateGate
from streamrag._store import LeaseTable, StoreSpec, open_chroma
from streamrag._workers import jobs_of

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


class ChromaServer:
    """``chroma run`` on a free loopback port, stopped by its PID."""

    def __init__(self, path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [str(CHROMA), "run", "--path", str(path), "--host", "127.0.0.1", "--port", str(self.port)]
        env = {**os.environ, "ANONYMIZED_TELEMETRY": "False"}
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + 30
        while True:  # wait for the condition "the server answers", bounded
            try:
                if httpx.get(f"{self.url}/api/v2/heartbeat", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("chroma run did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        stop_process(self.proc)


@pytest.fixture
def chroma(tmp_path: Path) -> Iterator[ChromaServer]:
    if not CHROMA.exists():
        pytest.skip("the chroma CLI is not installed")
    server = ChromaServer(tmp_path / "chroma")
    yield server
    server.stop()


def worker_cmd(store: str, sources: list[Path], *extra: str, pace: float = 0.05) -> list[str]:
    cmd = [sys.executable, "-m", "streamrag", "ingest", *map(str, sources), "--store", store]
    return [*cmd, "--pace", str(pace), *extra]


WORKER_ENV = {**os.environ, "MATHPIX_APP_KEY": "", "ANONYMIZED_TELEMETRY": "False"}


def ingested_exactly_once(index: LiveIndex, doc_id: str) -> None:
    coverage = index.coverage(doc_id)
    assert coverage.complete, coverage.describe()
    pages = index.page_texts(doc_id)
    assert sorted(pages) == list(range(1, (coverage.pages_total or 0) + 1))
    counts = coverage_counts(pages, index.chunks(doc_id))
    assert set(counts.values()) <= {1}, f"{doc_id}: some text indexed twice or never"


# -- store selection ----------------------------------------------------------------------------


def test_store_spec_from_url_keeps_secrets_out_of_reprs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMRAG_STORE_TOKEN", "s3cret-token")
    spec = StoreSpec.of("http://chroma.internal:8123?tenant=team&database=papers", headers=["X-Extra: hush-hush"])
    assert spec.is_server and spec.tenant == "team" and spec.database == "papers"
    assert spec.headers == {"Authorization": "Bearer s3cret-token", "X-Extra": "hush-hush"}
    shown = repr(spec) + spec.describe() + str(spec)
    assert "s3cret" not in shown and "hush" not in shown and "Authorization" in repr(spec)
    assert not StoreSpec.of("/some/dir").is_server and StoreSpec.of("/some/dir").headers == {}
    with pytest.raises(ValueError):
        StoreSpec.of("http://h:1", headers=["no colon here"])


def test_many_documents_in_one_server_collection(chroma: ChromaServer, captures: list[Path], embedder: object) -> None:
    from streamrag import RecordedStream

    index = LiveIndex(chroma.url, embed_model=embedder)  # type: ignore[arg-type]
    assert index.shared
    sources = [RecordedStream(c / "stream.json") for c in captures[:3]]
    for source in sources:
        index.add_pages(list(source))
    a, b, c = (s.doc_id for s in sources)
    assert set(index.documents()) == {a, b, c}
    assert all(cov.complete for cov in index.coverages().values())
    question = index.query_bundle("exam instructions and time allowed")
    cited, coverage = index.retrieve(question, a, top_k=8)
    assert cited and {x.doc_id for x in cited} == {a} and coverage is not None and coverage.complete
    cited, coverage = index.retrieve(question, [a, b], top_k=20)
    assert {x.doc_id for x in cited} <= {a, b} and coverage is None
    assert {x.doc_id for x in index.retrieve(question, None, top_k=40)[0]} == {a, b, c}

    before_b, before_c = index.chunks(b), index.chunks(c)
    index.delete_document(a)  # deleting one document touches no other
    assert index.chunks(a) == [] and index.coverage(a).pages_seen == []
    assert index.chunks(b) == before_b and index.chunks(c) == before_c
    index.add_pages(list(sources[0]))  # re-ingesting it neither
    assert index.chunks(b) == before_b and index.chunks(c) == before_c
    ingested_exactly_once(index, a)
    # a second process (here: a second client) sees the same store
    other = LiveIndex(StoreSpec.of(chroma.url), embed_model=embedder)  # type: ignore[arg-type]
    assert other.coverage(b).complete and len(other.chunks(b)) == len(before_b)


# -- leases -------------------------------------------------------------------------------------


def test_lease_race_has_one_winner_and_expiry_hands_over(chroma: ChromaServer) -> None:
    now = [1000.0]
    tables = [LeaseTable(open_chroma(chroma.url), "t-leases", ttl=10, clock=lambda: now[0]) for _ in range(4)]
    barrier = threading.Barrier(4)
    claims: dict[str, object] = {}

    def race(i: int) -> None:
        barrier.wait()
        claims[f"w{i}"] = tables[i].claim("doc", f"w{i}")

    threads = [threading.Thread(target=race, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [name for name, c in claims.items() if c.lease is not None]  # type: ignore[attr-defined]
    assert len(winners) == 1
    winner = claims[winners[0]].lease  # type: ignore[attr-defined]
    loser = tables[(int(winners[0][1:]) + 1) % 4]
    assert loser.claim("doc", "late").state == "held"
    now[0] += 5
    renewed = tables[0].renew(winner)
    assert renewed is not None and renewed.expires == 1015.0
    now[0] += 11  # the winner died: its lease expires, someone else takes over
    taken = loser.claim("doc", "late")
    assert taken.lease is not None and taken.lease.gen == 2
    assert tables[0].renew(renewed) is None  # the old holder learns it lost the document
    loser.release(taken.lease, done=True)
    assert loser.claim("doc", "again").state == "done"


# -- the Mathpix client side --------------------------------------------------------------------


def test_retry_after_holds_back_every_request_sharing_the_gate() -> None:
    from streamrag import AsyncMathpixClient

    calls: list[tuple[str, float]] = []
    limited = asyncio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        who = request.headers["x-who"]
        calls.append((who, time.monotonic()))
        if who == "a" and sum(1 for w, _ in calls if w == "a") == 1:
            limited.set()
            return httpx.Response(
                429, headers={"Retry-After": "1"}, json={"error": "too many", "error_info": {"id": "http_max_requests"}}
            )
        return httpx.Response(200, json={"status": "completed", "num_pages": 1})

    async def main() -> None:
        gate = RateGate()
        clients = [
            AsyncMathpixClient(app_key="", api_url="http://x", transport=httpx.MockTransport(handler), gate=gate)
            for _ in range(2)
        ]
        for who, client in zip("ab", clients, strict=True):
            client._http.headers["x-who"] = who

        async def b() -> None:
            await limited.wait()  # b asks only after a has been told to wait
            await clients[1].status("p")

        await asyncio.gather(clients[0].status("p"), b())
        assert gate.holds == 1

    asyncio.run(main())
    a_limited = calls[0][1]
    b_first = next(t for w, t in calls if w == "b")
    assert b_first - a_limited >= 0.9  # b waited out a's Retry-After instead of hitting the limit too
    assert RateLimitError  # the error the gate reacts to


# -- many worker processes ----------------------------------------------------------------------


def test_three_workers_twelve_documents_each_page_once(
    chroma: ChromaServer, shared: Path, captures: list[Path], embedder: object
) -> None:
    sources = [c / "stream.json" for c in captures] + [shared / "corpus" / n for n in CORPUS]
    assert len(sources) == 12
    jobs = jobs_of(sources)
    # each worker gets the list in a different order, as from a directory listing on another machine
    orders = [sources, sources[::-1], sources[6:] + sources[:6]]
    procs = [
        subprocess.Popen(
            worker_cmd(chroma.url, order, "--concurrency", "2"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=WORKER_ENV,
        )
        for order in orders
    ]
    index = LiveIndex(chroma.url, embed_model=embedder)  # type: ignore[arg-type]
    questions = [index.query_bundle(q) for q in ("PageRank", "table structure", "background checks", "exam")]
    problems: list[str] = []
    queries = 0
    while any(p.poll() is None for p in procs):  # query while the workers write
        for bundle in questions:
            citations, _ = index.retrieve(bundle, None, top_k=8)
            for c in citations:
                recorded = set(index.stored_coverage(c.doc_id).pages_seen)
                if not set(c.pages) <= recorded:
                    problems.append(f"{c.doc_id}: cited {c.pages}, recorded {sorted(recorded)}")
            queries += 1
    outputs = [p.communicate(timeout=60) for p in procs]
    for p, (out, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, out[-2000:] + err[-3000:]
    assert not problems, problems[:3]
    assert queries > 4

    lines = [line for out, _ in outputs for line in out.splitlines()]
    claims = Counter(line.rsplit("(", 1)[1].rstrip(")") for line in lines if ": claimed by " in line)
    assert sorted(claims) == sorted(j.doc_id for j in jobs) and set(claims.values()) == {1}
    busy = [sum(": claimed by " in line for line in out.splitlines()) for out, _ in outputs]
    assert sum(busy) == 12 and sum(1 for n in busy if n) >= 2, busy  # the work was shared
    assert not any(" duplicate" in line for line in lines)
    for job in jobs:
        ingested_exactly_once(index, job.doc_id)


def test_a_killed_worker_leaves_work_another_finishes(
    chroma: ChromaServer, captures: list[Path], embedder: object
) -> None:
    capture = next(c for c in captures if c.name == "final-old")
    source = capture / "stream.json"
    common = ("--lease-ttl", "2", "--concurrency", "1")
    first = subprocess.Popen(
        worker_cmd(chroma.url, [source], *common, pace=0.3),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=WORKER_ENV,
    )
    assert first.stdout is not None
    for line in first.stdout:  # a few pages in, kill it without warning
        if " page 5/15 indexed" in line:
            break
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    first.stdout.close()

    doc_id = jobs_of([source])[0].doc_id
    index = LiveIndex(chroma.url, embed_model=embedder)  # type: ignore[arg-type]
    seen = index.coverage(doc_id).pages_seen
    assert 5 <= len(seen) < 15
    second = subprocess.run(
        worker_cmd(chroma.url, [source], *common), capture_output=True, text=True, env=WORKER_ENV, timeout=300
    )
    assert second.returncode == 0, second.stderr[-3000:]
    assert "(lease 2)" in second.stdout  # it took over the dead worker's expired lease
    assert second.stdout.count(" duplicate") == len(seen)  # and resumed: what was stored is not redone
    ingested_exactly_once(index, doc_id)
    history = LeaseTable(open_chroma(chroma.url), "streamrag-leases").history(doc_id)
    assert [h["state"] for h in history] == ["held", "done"]


def test_page_events_from_two_documents_interleave(chroma: ChromaServer, embedder: object) -> None:
    index = LiveIndex(chroma.url, embed_model=embedder)  # type: ignore[arg-type]
    events = [
        PageEvent(doc_id=d, page_idx=i, pdf_selected_len=2, text=f"\n\nDocument {d} page {i} talks about {d}s.")
        for i in (1, 2)
        for d in ("apple", "pear")
    ]
    index.add_pages(events)
    assert index.coverage("apple").complete and index.coverage("pear").complete
    cited, _ = index.retrieve("pears", "pear", top_k=5)
    assert cited and {c.doc_id for c in cited} == {"pear"}
