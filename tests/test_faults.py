"""Faults injected into a real ``streamrag serve``: the client recovers, the index ends up identical
to an undisturbed run, and what cannot be recovered fails with a typed error saying what was tried."""

from __future__ import annotations

import json
import logging
import socket
import threading
from pathlib import Path

import pytest

from conftest import ServerProcess
from streamrag import (
    AuthenticationError,
    LiveIndex,
    MathpixClient,
    MathpixError,
    MathpixPDF,
    PageEvent,
    RetryError,
    RetryPolicy,
    ask,
)
from streamrag._stream import read_recording

FAST = RetryPolicy(attempts=6, backoff=0.05, max_backoff=0.5, deadline=30.0, reconnects=5)
NAME = "midterm-old"


@pytest.fixture(scope="module")
def capture(shared: Path) -> Path:
    return shared / "captures" / NAME


@pytest.fixture(scope="module")
def undisturbed(capture: Path, tmp_path_factory: pytest.TempPathFactory, embedder: object) -> list[tuple[str, str]]:
    """Chunk ids and texts of the document indexed straight from its recording."""
    index = LiveIndex(tmp_path_factory.mktemp("clean"), embed_model=embedder)  # type: ignore[arg-type]
    messages = read_recording(capture / "stream.json")
    source = MathpixPDF(capture / f"{NAME}.pdf", api_url="http://127.0.0.1:9")
    for message in messages:
        index.add_page(PageEvent.from_message(message, source.doc_id))
    return [(c.chunk_id, c.text) for c in index.chunks(source.doc_id)]


def faulty_server(start_server, capture: Path, plan: dict, *extra: str) -> ServerProcess:  # type: ignore[no-untyped-def, type-arg]
    args = ["--backend", "replay", "--recordings", str(capture), "--faults", json.dumps(plan), *extra]
    return start_server(*args)  # type: ignore[no-any-return]


def ingest(server: ServerProcess, capture: Path, tmp_path: Path, embedder: object, **source_args: object) -> LiveIndex:
    index = LiveIndex(tmp_path / "store", embed_model=embedder)  # type: ignore[arg-type]
    source = MathpixPDF(capture / f"{NAME}.pdf", api_url=server.url, app_key="", retry=FAST, **source_args)  # type: ignore[arg-type]
    answers = [a for a in ask(source, ["cosine similarity"], index) if not isinstance(a, PageEvent)]
    assert answers[-1].final and answers[-1].coverage.complete  # type: ignore[union-attr]
    return index


def chunks_of(index: LiveIndex, capture: Path) -> list[tuple[str, str]]:
    doc_id = MathpixPDF(capture / f"{NAME}.pdf", api_url="http://127.0.0.1:9").doc_id
    return [(c.chunk_id, c.text) for c in index.chunks(doc_id)]


@pytest.mark.parametrize(
    "stream_fault",
    [
        {"close_after": 3},  # the server closes the stream early, cleanly
        {"close_after": 4, "abort": True, "times": 2},  # the connection drops mid-body, twice
        {"out_of_order": True, "duplicate": True},  # pages swapped in pairs and each sent twice
        {"close_after": 2, "times": 100},  # the stream never completes: poll, then download pages
    ],
    ids=["close", "abort", "order-and-duplicates", "fallback-to-download"],
)
def test_stream_faults_end_in_the_undisturbed_index(
    start_server,
    capture: Path,
    tmp_path: Path,
    embedder: object,
    undisturbed: list,
    stream_fault: dict,  # type: ignore[no-untyped-def, type-arg]
) -> None:
    server = faulty_server(start_server, capture, {"stream": stream_fault})
    index = ingest(server, capture, tmp_path, embedder)
    assert chunks_of(index, capture) == undisturbed


def test_a_stalled_stream_times_out_and_resumes(
    start_server, capture: Path, tmp_path: Path, embedder: object, undisturbed: list
) -> None:  # type: ignore[no-untyped-def, type-arg]
    server = faulty_server(start_server, capture, {"stream": {"stall_after": 3, "stall_seconds": 30}})
    index = ingest(server, capture, tmp_path, embedder, timeout=1.0)  # reads time out after 1 s
    assert chunks_of(index, capture) == undisturbed


def test_malformed_unknown_and_incomplete_messages_are_reported_and_skipped(
    start_server, capture: Path, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    lines = [
        {"after": 1, "line": '{"page_idx": 2, "text": "broken'},  # malformed JSON
        {"after": 2, "line": '{"page_idx": 3, "pdf_selected_len": 10}'},  # neither text nor error
        {"after": 3, "line": '{"kind": "progress", "percent": 40}'},  # not a page at all
    ]
    plan = {"stream": {"lines": lines}}
    server = faulty_server(start_server, capture, plan)
    recorded = read_recording(capture / "stream.json")
    text = recorded[4].text
    plan_unknown = {"stream": {"lines": [{"after": 0, "line": json.dumps({**recorded[4].wire(), "future": 1})}]}}
    with (
        caplog.at_level(logging.INFO, logger="streamrag.client"),
        MathpixClient(api_url=server.url, app_key="", retry=FAST) as client,
    ):
        pdf_id = client.submit(capture / f"{NAME}.pdf")
        messages = list(client.stream(pdf_id))
    assert sorted(m.page_idx for m in messages) == list(range(1, 11))
    assert {m.page_idx: m.text for m in messages} == {m.page_idx: m.text for m in recorded}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(pdf_id in w and "page 2" in w and "not JSON" in w for w in warnings)
    assert any(pdf_id in w and "page 3" in w for w in warnings)
    assert any(pdf_id in w and "unknown page" in w for w in warnings)

    server2 = faulty_server(start_server, capture, plan_unknown)
    caplog.clear()
    with (
        caplog.at_level(logging.INFO, logger="streamrag.client"),
        MathpixClient(api_url=server2.url, app_key="", retry=FAST) as client,
    ):
        messages = list(client.stream(client.submit(capture / f"{NAME}.pdf")))
    assert messages[0].page_idx == 5 and messages[0].text == text and messages[0].model_extra == {"future": 1}
    assert any("unknown fields" in r.getMessage() and "future" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    "fault",
    [
        {"route": "upload", "status": 503, "times": 2},
        {"route": "upload", "status": 500, "times": 1},
        {"route": "upload", "status": 200, "error_id": "sys_exception", "times": 2},
        {"route": "stream", "status": 200, "error_id": "sys_exception", "times": 2},
        {"route": "upload", "status": 429, "error_id": "http_max_requests", "retry_after": 0.2, "times": 2},
        {"route": "status", "status": 503, "times": 3},
    ],
    ids=["503", "500", "sys_exception-upload", "sys_exception-stream", "429-retry-after", "status-503"],
)
def test_transient_errors_are_retried(start_server, capture: Path, fault: dict) -> None:  # type: ignore[no-untyped-def, type-arg]
    server = faulty_server(start_server, capture, {"requests": [fault]})
    with MathpixClient(api_url=server.url, app_key="", retry=FAST) as client:
        pdf_id = client.submit(capture / f"{NAME}.pdf")
        assert len(list(client.stream(pdf_id))) == 10
        assert client.status(pdf_id).status == "completed"


def test_errors_that_are_not_transient_raise_at_once(start_server, capture: Path) -> None:  # type: ignore[no-untyped-def]
    plan = {"requests": [{"route": "stream", "status": 200, "error_id": "pdf_unknown_id", "times": 1}]}
    server = faulty_server(start_server, capture, plan)
    with MathpixClient(api_url=server.url, app_key="", retry=FAST) as client:
        pdf_id = client.submit(capture / f"{NAME}.pdf")
        pages = []
        with pytest.raises(MathpixError) as caught:
            pages.extend(client.stream(pdf_id))  # an error body with HTTP 200 is never a page
        assert caught.value.error_id == "pdf_unknown_id" and pages == []
    plan = {"requests": [{"route": "upload", "status": 401, "error_id": "http_unauthorized", "times": 1}]}
    server = faulty_server(start_server, capture, plan)
    with MathpixClient(api_url=server.url, app_key="", retry=FAST) as client, pytest.raises(AuthenticationError):
        client.submit(capture / f"{NAME}.pdf")


def test_persistent_faults_give_up_in_bounded_time_saying_what_was_tried(start_server, capture: Path) -> None:  # type: ignore[no-untyped-def]
    server = faulty_server(start_server, capture, {"requests": [{"route": "upload", "status": 503, "times": 1000}]})
    policy = RetryPolicy(attempts=4, backoff=0.05, max_backoff=0.2, deadline=10.0)
    with MathpixClient(api_url=server.url, app_key="", retry=policy) as client, pytest.raises(RetryError) as caught:
        client.submit(capture / f"{NAME}.pdf")
    assert caught.value.tried == ["HTTP 503 sys_exception"] * 4
    assert "gave up on upload after 4 tries" in str(caught.value)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_refused_connections_are_retried_until_the_server_is_up(capture: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with MathpixClient(api_url=url, app_key="", retry=RetryPolicy(attempts=3, backoff=0.05, deadline=5.0)) as client:
        with pytest.raises(RetryError) as caught:
            client.submit(capture / f"{NAME}.pdf")
        assert all("ConnectError" in t for t in caught.value.tried)
    result: dict[str, object] = {}
    patient = RetryPolicy(attempts=200, backoff=0.05, max_backoff=0.2, deadline=120.0)

    def upload() -> None:
        with MathpixClient(api_url=url, app_key="", retry=patient) as client:
            result["pages"] = len(list(client.stream(client.submit(capture / f"{NAME}.pdf"))))

    thread = threading.Thread(target=upload)
    thread.start()  # refused until the server below listens
    server = ServerProcess(["--backend", "replay", "--recordings", str(capture)], port=port)
    try:
        thread.join(timeout=120)
    finally:
        server.stop()
    assert result.get("pages") == 10
