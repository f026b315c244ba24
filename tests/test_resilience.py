"""Crashes, concurrency and bad input: every page exactly once, failures visible, nothing half-written."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import ServerProcess, coverage_counts, mmd_pages
from streamrag import LiveIndex, MathpixError, MathpixPDF, PageEvent, RecordedStream, RetryPolicy
from streamrag._stream import read_recording

NAME = "final-old"
ONCE = RetryPolicy(attempts=1, reconnects=0)


def chunk_set(index: LiveIndex, doc_id: str) -> list[tuple[str, str]]:
    return [(c.chunk_id, c.text) for c in index.chunks(doc_id)]


@pytest.fixture(scope="module")
def capture(shared: Path) -> Path:
    return shared / "captures" / NAME


@pytest.fixture(scope="module")
def reference(capture: Path, tmp_path_factory: pytest.TempPathFactory, embedder: object) -> list[tuple[str, str]]:
    """The chunks of an undisturbed run."""
    index = LiveIndex(tmp_path_factory.mktemp("ref"), embed_model=embedder)  # type: ignore[arg-type]
    source = RecordedStream(capture / "stream.json")
    index.add_pages(list(source))
    return chunk_set(index, source.doc_id)


def test_sigkill_mid_document_then_resume(
    start_server, capture: Path, tmp_path: Path, embedder: object, reference: list
) -> None:  # type: ignore[no-untyped-def, type-arg]
    server = start_server("--backend", "replay", "--recordings", str(capture), "--pace", "0.3")
    store = tmp_path / "store"
    cmd = [sys.executable, "-m", "streamrag", "ingest", str(capture / "stream.json"), "--api-url", server.url]
    cmd += ["--store", str(store)]
    env = {**os.environ, "MATHPIX_APP_KEY": ""}
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    assert first.stdout is not None
    for line in first.stdout:  # wait until a few pages are in the store, then kill without warning
        if " page 5/15 indexed" in line:
            break
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    first.stdout.close()

    partial = LiveIndex(store, embed_model=embedder)  # type: ignore[arg-type]
    doc_id = RecordedStream(capture / "stream.json").doc_id
    seen = partial.coverage(doc_id).pages_seen
    assert 5 <= len(seen) < 15
    del partial

    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, check=False)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("duplicate") == len(seen)  # what the store held was not indexed again
    resumed = LiveIndex(store, embed_model=embedder)  # type: ignore[arg-type]
    assert resumed.coverage(doc_id).complete
    assert chunk_set(resumed, doc_id) == reference


def test_two_ingesters_on_one_document_never_duplicate(
    capture: Path, tmp_path: Path, embedder: object, reference: list
) -> None:  # type: ignore[no-untyped-def, type-arg]
    events = list(RecordedStream(capture / "stream.json"))
    a = LiveIndex(tmp_path / "store", embed_model=embedder)  # type: ignore[arg-type]
    b = LiveIndex(tmp_path / "store", embed_model=embedder)  # type: ignore[arg-type]
    barrier = threading.Barrier(2)

    def run(index: LiveIndex, order: list[PageEvent]) -> None:
        barrier.wait()
        for event in order:
            index.add_page(event)

    threads = [threading.Thread(target=run, args=(a, events)), threading.Thread(target=run, args=(b, events[::-1]))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    doc_id = events[0].doc_id
    assert chunk_set(a, doc_id) == reference
    counts = coverage_counts(mmd_pages(capture), a.chunks(doc_id))
    assert set(counts.values()) == {1}


def test_queries_during_ingestion_cite_only_indexed_pages(capture: Path, tmp_path: Path, embedder: object) -> None:
    index = LiveIndex(tmp_path / "store", embed_model=embedder)  # type: ignore[arg-type]
    source = RecordedStream(capture / "stream.json")
    questions = [index.query_bundle(q) for q in ("PageRank", "naive Bayes smoothing", "TF-IDF", "exam time")]
    done = threading.Event()
    checked: list[int] = []
    problems: list[str] = []

    def hammer(bundle: object) -> None:
        while not done.is_set() and len(checked) < 2000:
            try:
                citations, coverage = index.retrieve(bundle, source.doc_id, top_k=5)  # type: ignore[arg-type]
            except Exception as exc:  # reported by the assertion below, not lost in a thread
                problems.append(repr(exc))
                return
            seen = set(coverage.pages_seen) if coverage else set()
            cited = {p for c in citations for p in c.pages}
            if not cited <= seen:
                problems.append(f"cited {sorted(cited - seen)} with only {sorted(seen)} indexed")
            checked.append(1)

    async def ahammer() -> int:
        n = 0
        while not done.is_set() and n < 500:
            try:
                citations, coverage = await index.aretrieve(questions[0], source.doc_id, top_k=5)
            except Exception as exc:
                problems.append(f"async: {exc!r}")
                break
            seen = set(coverage.pages_seen) if coverage else set()
            if not {p for c in citations for p in c.pages} <= seen:
                problems.append("async query cited an unindexed page")
            n += 1
        return n

    threads = [threading.Thread(target=hammer, args=(q,)) for q in questions]
    for t in threads:
        t.start()
    loop_result: dict[str, int] = {}
    looper = threading.Thread(target=lambda: loop_result.setdefault("n", asyncio.run(ahammer())))
    looper.start()
    for event in source:
        index.add_page(event)
    done.set()
    for t in [*threads, looper]:
        t.join()
    assert not problems, problems[:3]
    assert len(checked) > len(questions) and loop_result["n"] > 0
    assert index.coverage(source.doc_id).complete


def test_no_search_runs_while_chunks_are_deleted(capture: Path, tmp_path: Path, embedder: object) -> None:
    """Chroma can fail a filtered search that overlaps a delete of ids it filters ("Error finding
    id"), so replacing chunks and searching must take turns; watched at the collection itself."""
    index = LiveIndex(tmp_path / "store", embed_model=embedder)  # type: ignore[arg-type]
    pages = [e for e in RecordedStream(capture / "stream.json") if e.text]
    index.add_pages(pages)
    collection, guard = index._collection, threading.Lock()
    active = {"query": 0, "delete": 0}
    overlaps: list[str] = []
    counts = {"query": 0, "delete": 0}

    def watched(name: str, call: Callable[..., Any]) -> Callable[..., Any]:
        other = "delete" if name == "query" else "query"

        def run(*args: Any, **kwargs: Any) -> Any:
            with guard:
                if active[other]:
                    overlaps.append(f"{name} began during a {other}")
                active[name] += 1
                counts[name] += 1
            try:
                return call(*args, **kwargs)
            finally:
                with guard:
                    active[name] -= 1

        return run

    collection.query = watched("query", collection.query)
    collection.delete = watched("delete", collection.delete)
    question = index.query_bundle("inverted index postings")
    done = threading.Event()
    errors: list[str] = []

    def hammer() -> None:
        while not done.is_set():
            try:
                index.retrieve(question, pages[0].doc_id, top_k=5)
            except Exception as exc:
                errors.append(repr(exc))
                return

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for t in threads:
        t.start()
    for round_ in range(3):  # every page edited: each round replaces the document's chunks
        index.add_pages([e.model_copy(update={"text": f"{e.text} (revision {round_})"}) for e in pages])
    done.set()
    for t in threads:
        t.join()
    assert not errors and not overlaps, (errors[:2], overlaps[:2])
    assert counts["delete"] >= 3 and counts["query"] > 3
    texts = index.page_texts(pages[0].doc_id)
    assert all(t.endswith("(revision 2)") for t in texts.values() if t)
    assert set(coverage_counts(texts, index.chunks(pages[0].doc_id)).values()) == {1}  # nothing stale left


def blank_pdf(pages: int) -> bytes:
    import pypdfium2

    pdf = pypdfium2.PdfDocument.new()
    for _ in range(pages):
        pdf.new_page(100, 100)
    buffer = io.BytesIO()
    pdf.save(buffer)
    pdf.close()
    return buffer.getvalue()


@pytest.fixture(scope="module")
def local_server(shared: Path) -> object:
    server = ServerProcess(["--backend", "local", "--max-pages", "500"])
    yield server
    server.stop()


@pytest.mark.parametrize(
    ("name", "error_id"),
    [
        ("empty", "pdf_invalid"),
        ("not-a-pdf", "pdf_invalid"),
        ("truncated", "pdf_invalid"),
        ("broken", "pdf_invalid"),
        ("encrypted", "pdf_encrypted"),
        ("zero-pages", "pdf_no_pages"),
        ("too-many-pages", "pdf_page_limit_exceeded"),
    ],
)
def test_bad_pdfs_are_refused_at_upload_and_leave_nothing(
    local_server: ServerProcess, shared: Path, tmp_path: Path, embedder: object, name: str, error_id: str
) -> None:
    corpus = shared / "corpus"
    data = {
        "empty": lambda: b"",
        "not-a-pdf": lambda: b"GIF89a not a pdf at all",
        "truncated": lambda: (corpus / "arxiv-0908.0054.pdf").read_bytes()[:40_000],
        "broken": lambda: (corpus / "broken-unreadablemetadata.pdf").read_bytes(),
        "encrypted": lambda: (corpus / "arxiv-2206.01062-pg3-password-1234.pdf").read_bytes(),
        "zero-pages": lambda: blank_pdf(0),
        "too-many-pages": lambda: blank_pdf(501),
    }[name]()
    index = LiveIndex(tmp_path / "store", embed_model=embedder)  # type: ignore[arg-type]
    source = MathpixPDF(data, api_url=local_server.url, app_key="", retry=ONCE)
    with pytest.raises(MathpixError) as caught:
        for event in source:
            index.add_page(event)
    assert caught.value.error_id == error_id
    assert caught.value.message  # a clear message, not just an id
    assert index.chunks(source.doc_id) == [] and index.coverage(source.doc_id).pages_seen == []


def test_bad_stream_text_is_handled(tmp_path: Path, embedder: object) -> None:
    index = LiveIndex(tmp_path / "store", embed_model=embedder, max_page_chars=1_000_000)  # type: ignore[arg-type]
    pages = {
        1: "Intro with a NUL\x00 byte inside. " * 3,
        2: "\n\n" + "{" * 5000 + "deep" + "}" * 4000,  # deeply nested, unbalanced braces
        3: "\n\n\\[ x = 1 \n\nunterminated display math " + "and more words " * 300,
        4: "\n\n" + "A five megabyte page. " * 240_000,  # ~5 MB: over the page limit
        5: "\n\nThe last page is fine.",
    }
    events = [PageEvent(doc_id="bad", page_idx=i, pdf_selected_len=5, text=t) for i, t in pages.items()]
    for event in events:
        index.add_page(event)
    coverage = index.coverage("bad")
    assert coverage.complete and coverage.pages_without_content == [4]
    stored = index.page_texts("bad")
    assert stored[4] == "" and stored[1] == pages[1]
    chunks = index.chunks("bad")
    kept = {i: t for i, t in pages.items() if i != 4}
    assert set(coverage_counts(kept, chunks).values()) == {1}
    citations, _ = index.retrieve("the last page", "bad", top_k=1)
    assert citations and citations[0].page == 5
    ledger = index._ledger.load("bad")
    assert ledger[3].error_id == "page_too_large" and "over the limit" in (ledger[3].error_message or "")


def test_recorded_pages_round_trip_invalid_utf8_lines_are_skipped(capture: Path) -> None:
    from streamrag._protocol import StreamState

    state = StreamState("p", ONCE)
    good = [m.wire() for m in read_recording(capture / "stream.json")][:2]
    import json

    lines: list[bytes] = [json.dumps(good[0]).encode(), b"\xff\xfe\x00garbage", json.dumps(good[1]).encode()]
    got = [state.feed(line) for line in lines]
    assert [m.page_idx if m else None for m in got] == [1, None, 2] and state.skipped == 1


def test_a_page_of_10_mb_text_is_a_page_error_and_the_rest_streams(
    local_server: ServerProcess, tmp_path: Path, embedder: object
) -> None:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_auto_page_break(False)
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    pdf.text(20, 20, "The first page is an ordinary page about lighthouses.")
    pdf.add_page()
    pdf.set_font("Helvetica", size=2)
    line = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor " * 2
    for i in range(10_000_000 // len(line)):  # ~10 MB of text drawn on one page
        pdf.text(5, 5 + (i % 280), line)
    index = LiveIndex(tmp_path / "store", embed_model=embedder)  # type: ignore[arg-type]
    source = MathpixPDF(bytes(pdf.output()), api_url=local_server.url, app_key="", retry=ONCE)
    events = list(source)
    for event in events:
        index.add_page(event)
    assert [e.error_id for e in events] == [None, "page_too_large"]
    coverage = index.coverage(source.doc_id)
    assert coverage.complete and coverage.pages_without_content == [2]
    assert [c.pages for c in index.chunks(source.doc_id)] == [[1]]
