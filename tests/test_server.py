"""The Mathpix-compatible server, through real ``streamrag serve`` processes and real HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import httpx_sse
import pytest

from streamrag._models import PageMessage
from streamrag._server import EmbeddedServer
from streamrag._stream import decode_line

TIMEOUT = httpx.Timeout(30.0)
SECRET = "sk-test-7f3a9c0e5b2d4e61"
SLOW = "600"  # --pace for jobs that must still be running while the test looks at them


# --- helpers -------------------------------------------------------------------------------------


def upload(base: str, pdf: Path | bytes, options: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
    data = pdf.read_bytes() if isinstance(pdf, Path) else pdf
    files = {"file": ("doc.pdf", data, "application/pdf")}
    form = {"options_json": json.dumps(options or {})}
    response = httpx.post(f"{base}/v3/pdf", files=files, data=form, timeout=TIMEOUT, **kw)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def pdf_id_of(body: dict[str, Any]) -> str:
    assert "pdf_id" in body, body
    return str(body["pdf_id"])


def error_id(response: httpx.Response) -> str:
    body = response.json()
    assert body["error"] == body["error_info"]["message"]
    return str(body["error_info"]["id"])


def parse_stream(raw: bytes, framing: str) -> list[dict[str, Any]]:
    """Messages of a whole stream body, checking the framing strictly."""
    text = raw.decode("utf-8")
    if framing == "sse":
        events = [e for e in text.split("\n\n") if e]
        assert text.endswith("\n\n")
        assert all(e.startswith("data: ") and "\n" not in e for e in events)
        return [json.loads(e[len("data: ") :]) for e in events]
    assert text.endswith("\n")
    lines = text.splitlines()
    assert all(line.startswith("{") for line in lines)
    return [json.loads(line) for line in lines]


def read_stream(base: str, pdf_id: str, framing: str = "lines", **kw: Any) -> list[dict[str, Any]]:
    response = httpx.get(f"{base}/v3/pdf/{pdf_id}/stream", timeout=TIMEOUT, **kw)
    assert response.status_code == 200
    expected = "text/event-stream" if framing == "sse" else "application/x-ndjson"
    assert response.headers["content-type"].split(";")[0] == expected
    return parse_stream(response.content, framing)


def recording(folder: Path) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = json.loads((folder / "stream.json").read_text(encoding="utf-8"))
    return data


def pdf_in(folder: Path) -> Path:
    return next(folder.glob("*.pdf"))


def joined(messages: list[dict[str, Any]]) -> str:
    return "".join(m.get("text", "") for m in sorted(messages, key=lambda m: m["page_idx"]))


@pytest.fixture
def corpus(shared: Path) -> Path:
    return shared / "corpus"


@pytest.fixture
def file_server() -> Iterator[Callable[[Path], str]]:
    """Serve a folder over HTTP on 127.0.0.1 (a free port); gives the URL of a file in it."""
    servers: list[ThreadingHTTPServer] = []

    def serve(path: Path) -> str:
        handler = partial(SimpleHTTPRequestHandler, directory=str(path.parent))
        handler.log_message = lambda *a: None  # type: ignore[attr-defined]
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/{path.name}"

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


# --- replay --------------------------------------------------------------------------------------


@pytest.mark.parametrize("framing", ["lines", "sse"])
def test_every_capture_replays_exactly(start_server, shared: Path, captures: list[Path], framing: str) -> None:
    assert len(captures) == 5
    server = start_server("--backend", "replay", "--recordings", str(shared / "captures"), "--framing", framing)
    for folder in captures:
        expected = recording(folder)
        pdf_id = pdf_id_of(upload(server.url, pdf_in(folder), {"streaming": True}))
        messages = read_stream(server.url, pdf_id, framing)
        assert messages == expected, folder.name
        mmd = (folder / "result.mmd").read_text(encoding="utf-8")
        assert joined(messages) == mmd
        status = httpx.get(f"{server.url}/v3/pdf/{pdf_id}", timeout=TIMEOUT).json()
        n = expected[0]["pdf_selected_len"]
        assert status == {
            "status": "completed",
            "num_pages": n,
            "num_pages_completed": n,
            "percent_done": 100.0,
        }
        download = httpx.get(f"{server.url}/v3/pdf/{pdf_id}.mmd", timeout=TIMEOUT)
        assert download.status_code == 200
        assert download.headers["content-type"] == "text/plain; charset=utf-8"
        assert download.text == mmd


def test_sse_framing_reads_with_httpx_sse_and_decode_line(start_server, shared: Path, captures: list[Path]) -> None:
    server = start_server("--backend", "replay", "--recordings", str(shared / "captures"), "--framing", "sse")
    folder = captures[1]
    pdf_id = pdf_id_of(upload(server.url, pdf_in(folder), {"streaming": True}))
    with (
        httpx.Client(timeout=TIMEOUT) as client,
        httpx_sse.connect_sse(client, "GET", f"{server.url}/v3/pdf/{pdf_id}/stream") as source,
    ):
        events = [json.loads(event.data) for event in source.iter_sse()]
    assert events == recording(folder)
    # the project's own decoder reads the bare framing too
    lines_server = start_server("--backend", "replay", "--recordings", str(folder))
    pdf_id = pdf_id_of(upload(lines_server.url, pdf_in(folder), {"streaming": True}))
    with httpx.stream("GET", f"{lines_server.url}/v3/pdf/{pdf_id}/stream", timeout=TIMEOUT) as response:
        decoded = [m for m in map(decode_line, response.iter_lines()) if m is not None]
    assert [m.wire() for m in decoded] == recording(folder)


def test_page_errors_pass_through_unchanged(start_server, shared: Path) -> None:
    folder = shared / "captures" / "exam-2019"
    server = start_server("--backend", "replay", "--recordings", str(folder))
    pdf_id = pdf_id_of(upload(server.url, pdf_in(folder), {"streaming": True}))
    messages = read_stream(server.url, pdf_id)
    blanks = [m for m in messages if "text" not in m]
    assert len(blanks) == 7
    assert all(m["error_info"] == {"id": "image_no_content", "message": "Content not found"} for m in blanks)
    assert all(m["version"] == "SuperNet-101" and m["pdf_selected_len"] == 15 for m in blanks)


def test_running_job_has_no_mmd_and_delete_forgets_it(start_server, captures: list[Path]) -> None:
    folder = captures[0]
    server = start_server("--backend", "replay", "--recordings", str(folder), "--pace", SLOW)
    pdf_id = pdf_id_of(upload(server.url, pdf_in(folder), {"streaming": True}))
    status = httpx.get(f"{server.url}/v3/pdf/{pdf_id}", timeout=TIMEOUT).json()
    assert status["status"] in ("loaded", "split")
    assert (status["num_pages"], status["num_pages_completed"], status["percent_done"]) == (9, 0, 0.0)
    early = httpx.get(f"{server.url}/v3/pdf/{pdf_id}.mmd", timeout=TIMEOUT)
    assert early.status_code == 404
    assert error_id(early) == "pdf_not_ready"

    deleted = httpx.delete(f"{server.url}/v3/pdf/{pdf_id}", timeout=TIMEOUT)
    assert deleted.status_code == 200 and deleted.json() == {}
    gone = httpx.get(f"{server.url}/v3/pdf/{pdf_id}.mmd", timeout=TIMEOUT)
    assert gone.status_code == 404
    assert error_id(gone) == "pdf_unknown_id"
    assert error_id(httpx.get(f"{server.url}/v3/pdf/{pdf_id}", timeout=TIMEOUT)) == "pdf_unknown_id"
    assert error_id(httpx.get(f"{server.url}/v3/pdf/{pdf_id}/stream", timeout=TIMEOUT)) == "pdf_unknown_id"
    assert error_id(httpx.delete(f"{server.url}/v3/pdf/{pdf_id}", timeout=TIMEOUT)) == "pdf_unknown_id"


def test_unmatched_replay_upload(start_server, captures: list[Path], corpus: Path) -> None:
    server = start_server("--backend", "replay", "--recordings", str(captures[0]))
    body = upload(server.url, corpus / "arxiv-0908.0054.pdf", {"streaming": True})
    assert body["error_info"]["id"] == "pdf_unknown_recording"
    assert "pdf_id" not in body


def test_concurrent_readers(start_server, captures: list[Path]) -> None:
    folder = captures[0]
    expected = recording(folder)
    server = start_server("--backend", "replay", "--recordings", str(folder), "--pace", "0.05")
    pdf_id = pdf_id_of(upload(server.url, pdf_in(folder), {"streaming": True}))
    url = f"{server.url}/v3/pdf/{pdf_id}/stream"
    with httpx.stream("GET", url, timeout=TIMEOUT) as first:
        lines = first.iter_lines()
        head = json.loads(next(lines))  # the job is running: page 1 exists
        assert head == expected[0]
        with ThreadPoolExecutor(3) as pool:  # more readers join while pages are still coming
            others = [pool.submit(read_stream, server.url, pdf_id) for _ in range(3)]
            rest = [json.loads(line) for line in lines if line]
            results = [f.result() for f in others]
    assert [head, *rest] == expected
    assert all(r == expected for r in results)
    # a reader that comes after completion gets every page, then the close
    assert read_stream(server.url, pdf_id) == expected


# --- requests and errors -------------------------------------------------------------------------


def test_url_upload(start_server, captures: list[Path], file_server) -> None:
    folder = captures[2]
    server = start_server("--backend", "replay", "--recordings", str(folder))
    url = file_server(pdf_in(folder))
    response = httpx.post(f"{server.url}/v3/pdf", json={"url": url, "streaming": True}, timeout=TIMEOUT)
    pdf_id = pdf_id_of(response.json())
    assert read_stream(server.url, pdf_id) == recording(folder)

    missing = httpx.post(f"{server.url}/v3/pdf", json={"url": url + ".nope"}, timeout=TIMEOUT)
    assert error_id(missing) == "pdf_download_error"
    assert url not in missing.text
    not_http = httpx.post(f"{server.url}/v3/pdf", json={"url": "file:///etc/passwd"}, timeout=TIMEOUT)
    assert error_id(not_http) == "opts_url"


def test_ids_are_unguessable_and_checked(start_server, captures: list[Path]) -> None:
    folder = captures[0]
    server = start_server("--backend", "replay", "--recordings", str(folder))
    ids = {pdf_id_of(upload(server.url, pdf_in(folder))) for _ in range(3)}
    assert len(ids) == 3
    assert all(len(i) == len("2026_12_04_") + 20 for i in ids)
    base = f"{server.url}/v3/pdf"
    for bad in ("2026_12_04_00000000000000000000", "nope", "..%2F..%2F..%2Fetc%2Fpasswd", "%2E%2E"):
        for response in (
            httpx.get(f"{base}/{bad}", timeout=TIMEOUT),
            httpx.get(f"{base}/{bad}/stream", timeout=TIMEOUT),
            httpx.delete(f"{base}/{bad}", timeout=TIMEOUT),
        ):
            assert response.status_code == 200, (bad, response.text)
            assert error_id(response) == "pdf_unknown_id"
        mmd = httpx.get(f"{base}/{bad}.mmd", timeout=TIMEOUT)
        assert mmd.status_code == 404
        assert error_id(mmd) == "pdf_unknown_id"


def test_stream_needs_streaming_true(start_server, captures: list[Path]) -> None:
    folder = captures[0]
    server = start_server("--backend", "replay", "--recordings", str(folder))
    pdf_id = pdf_id_of(upload(server.url, pdf_in(folder), {"streaming": False}))
    response = httpx.get(f"{server.url}/v3/pdf/{pdf_id}/stream", timeout=TIMEOUT)
    assert response.status_code == 200
    assert error_id(response) == "opts_streaming_required"


@pytest.mark.parametrize(
    ("options_json", "expected"),
    [
        ("{not json", "json_syntax"),
        ("[1, 2]", "opts_invalid"),
        ('"streaming"', "opts_invalid"),
        ('{"streaming": "yes"}', "opts_streaming"),
        ('{"page_ranges": 3}', "opts_page_ranges"),
        ('{"password": 1234}', "opts_password"),
    ],
)
def test_bad_options_json(start_server, captures: list[Path], options_json: str, expected: str) -> None:
    folder = captures[0]
    server = start_server("--backend", "replay", "--recordings", str(folder))
    files = {"file": ("doc.pdf", pdf_in(folder).read_bytes(), "application/pdf")}
    response = httpx.post(f"{server.url}/v3/pdf", files=files, data={"options_json": options_json}, timeout=TIMEOUT)
    assert response.status_code == 200
    assert error_id(response) == expected


def test_bad_bodies(start_server, captures: list[Path]) -> None:
    server = start_server("--backend", "replay", "--recordings", str(captures[0]))
    post = partial(httpx.post, f"{server.url}/v3/pdf", timeout=TIMEOUT)
    headers = {"content-type": "application/json"}
    assert error_id(post(content=b"{bad", headers=headers)) == "json_syntax"
    assert error_id(post(content=b"", headers=headers)) == "json_syntax"
    assert error_id(post(json=[1])) == "opts_invalid"
    assert error_id(post(json={"streaming": True})) == "pdf_missing"
    assert error_id(post(json={"url": 5})) == "opts_url"
    assert error_id(post(data={"options_json": "{}"}, files={"other": ("x", b"x")})) == "pdf_missing"


# --- auth ----------------------------------------------------------------------------------------


def stop_and_collect(server: Any) -> tuple[int, str]:
    """SIGTERM the server; its exit code and everything it printed."""
    os.kill(server.proc.pid, signal.SIGTERM)
    rest = server.proc.stdout.read()
    return server.proc.wait(timeout=10), "".join(server.output) + rest


def test_app_key_from_env(start_server, captures: list[Path]) -> None:
    folder = captures[0]
    server = start_server("--backend", "replay", "--recordings", str(folder), env={"STREAMRAG_APP_KEY": SECRET})
    base = f"{server.url}/v3/pdf"
    for headers in ({}, {"app_key": "wrong"}, {"app_key": SECRET[:-1]}, {"app_id": SECRET}):
        for response in (
            httpx.post(base, json={"url": "http://127.0.0.1:1/x.pdf"}, headers=headers, timeout=TIMEOUT),
            httpx.get(f"{base}/2026_12_04_00000000000000000000", headers=headers, timeout=TIMEOUT),
            httpx.get(f"{base}/x.mmd", headers=headers, timeout=TIMEOUT),
        ):
            assert response.status_code == 401
            assert response.json() == {
                "error": "Invalid credentials",
                "error_info": {"id": "http_unauthorized", "message": "Invalid credentials"},
            }
            assert SECRET not in response.text
    good = {"app_key": SECRET}
    pdf_id = pdf_id_of(upload(server.url, pdf_in(folder), {"streaming": True}, headers=good))
    assert read_stream(server.url, pdf_id, headers=good) == recording(folder)
    assert error_id(httpx.get(f"{base}/{pdf_id}", timeout=TIMEOUT)) == "http_unauthorized"
    code, output = stop_and_collect(server)
    assert code == 0, output
    assert SECRET not in output


def test_app_key_flag(start_server, captures: list[Path]) -> None:
    server = start_server("--backend", "replay", "--recordings", str(captures[0]), "--app-key", SECRET)
    response = httpx.get(f"{server.url}/v3/pdf/x", timeout=TIMEOUT)
    assert response.status_code == 401
    assert error_id(response) == "http_unauthorized"
    ok = httpx.get(f"{server.url}/v3/pdf/x", headers={"app_key": SECRET}, timeout=TIMEOUT)
    assert ok.status_code == 200
    assert error_id(ok) == "pdf_unknown_id"


# --- local backend -------------------------------------------------------------------------------


def test_local_backend_converts_pages(start_server, corpus: Path) -> None:
    server = start_server("--backend", "local")
    pdf_id = pdf_id_of(upload(server.url, corpus / "arxiv-0908.0054.pdf", {"streaming": True}))
    messages = read_stream(server.url, pdf_id)
    assert [m["page_idx"] for m in messages] == [1, 2, 3, 4]
    assert all(m["pdf_selected_len"] == 4 and m["text"].strip() for m in messages)
    mmd = httpx.get(f"{server.url}/v3/pdf/{pdf_id}.mmd", timeout=TIMEOUT)
    assert mmd.status_code == 200 and mmd.text == joined(messages)
    status = httpx.get(f"{server.url}/v3/pdf/{pdf_id}", timeout=TIMEOUT).json()
    assert status == {"status": "completed", "num_pages": 4, "num_pages_completed": 4, "percent_done": 100.0}

    ranged = pdf_id_of(upload(server.url, corpus / "arxiv-0908.0054.pdf", {"streaming": True, "page_ranges": "2-3"}))
    pages = read_stream(server.url, ranged)
    assert [(m["page_idx"], m["pdf_selected_len"]) for m in pages] == [(1, 2), (2, 2)]
    assert [m["text"] for m in pages] != [m["text"] for m in messages[:2]]

    blank = pdf_id_of(upload(server.url, corpus / "arxiv-2103.15348-with-empty-pages.pdf", {"streaming": True}))
    ids = [m.get("error_info", {}).get("id") for m in read_stream(server.url, blank)]
    assert ids == [None, "image_no_content", "image_no_content", None]


def test_local_backend_status_while_running(start_server, corpus: Path) -> None:
    server = start_server("--backend", "local", "--pace", SLOW)
    pdf_id = pdf_id_of(upload(server.url, corpus / "arxiv-0908.0054.pdf", {"streaming": True}))
    with httpx.stream("GET", f"{server.url}/v3/pdf/{pdf_id}/stream", timeout=TIMEOUT) as response:
        lines = response.iter_lines()
        first = json.loads(next(lines))
        assert (first["page_idx"], first["pdf_selected_len"]) == (1, 4)
        status = httpx.get(f"{server.url}/v3/pdf/{pdf_id}", timeout=TIMEOUT).json()
        assert status == {"status": "split", "num_pages": 4, "num_pages_completed": 1, "percent_done": 25.0}
        assert httpx.get(f"{server.url}/v3/pdf/{pdf_id}.mmd", timeout=TIMEOUT).status_code == 404
        # DELETE stops the producer and ends the open stream after the pages it had
        assert httpx.delete(f"{server.url}/v3/pdf/{pdf_id}", timeout=TIMEOUT).json() == {}
        assert [line for line in lines if line] == []
    assert httpx.get(f"{server.url}/v3/pdf/{pdf_id}.mmd", timeout=TIMEOUT).status_code == 404


def test_local_backend_upload_errors(start_server, corpus: Path) -> None:
    server = start_server()  # local is the default backend
    encrypted = corpus / "arxiv-2206.01062-pg3-password-1234.pdf"
    assert upload(server.url, encrypted)["error_info"]["id"] == "pdf_encrypted"
    assert upload(server.url, encrypted, {"password": "4321"})["error_info"]["id"] == "pdf_encrypted"
    opened = pdf_id_of(upload(server.url, encrypted, {"password": "1234", "streaming": True}))
    [page] = read_stream(server.url, opened)
    assert page["page_idx"] == 1 and "DocLayNet" in page["text"]

    assert upload(server.url, corpus / "broken-unreadablemetadata.pdf")["error_info"]["id"] == "pdf_invalid"
    assert upload(server.url, b"hello, not a pdf")["error_info"]["id"] == "pdf_invalid"
    bad_range = upload(server.url, corpus / "arxiv-0908.0054.pdf", {"page_ranges": "3-99"})
    assert bad_range["error_info"]["id"] == "opts_page_ranges"


# --- process and embedding -----------------------------------------------------------------------


def test_sigterm_ends_open_streams_and_exits_cleanly(start_server, captures: list[Path]) -> None:
    folder = captures[0]
    server = start_server("--backend", "replay", "--recordings", str(folder), "--pace", SLOW)
    pdf_id = pdf_id_of(upload(server.url, pdf_in(folder), {"streaming": True}))
    with httpx.stream("GET", f"{server.url}/v3/pdf/{pdf_id}/stream", timeout=TIMEOUT) as response:
        assert response.status_code == 200
        code, output = stop_and_collect(server)  # waits at most 10 s, though a page is 600 s away
        assert response.read() == b""
    assert code == 0, output
    assert "graceful shutdown exceeded" not in output  # the stream ended at once, not by timeout


def test_server_imports_no_heavy_libraries() -> None:
    code = "import sys, streamrag._server; print(sorted({m.split('.')[0] for m in sys.modules}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = set(json.loads(out.replace("'", '"')))
    assert not loaded & {"torch", "chromadb", "llama_index", "sentence_transformers"}


def test_replay_needs_recordings() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "streamrag", "serve", "--port", "0", "--backend", "replay"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0
    assert "--recordings" in result.stderr


def test_embedded_server(captures: list[Path]) -> None:
    folder = captures[3]
    server = EmbeddedServer(backend="replay", framing="sse", app_key=SECRET)
    assert server.add_recording(folder) == 1
    with server:
        base = server.url
        assert base.startswith("http://127.0.0.1:")
        headers = {"app_key": SECRET}
        pdf_id = pdf_id_of(upload(base, pdf_in(folder), {"streaming": True}, headers=headers))
        assert read_stream(base, pdf_id, "sse", headers=headers) == recording(folder)
        assert httpx.get(f"{base}/v3/pdf/{pdf_id}", timeout=TIMEOUT).status_code == 401
    with pytest.raises(RuntimeError):
        _ = server.url
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{base}/v3/pdf/{pdf_id}", timeout=TIMEOUT)
    # it can start again, on a new port, with the same recordings
    with server:
        assert server.url.startswith("http://127.0.0.1:")
        assert pdf_id_of(upload(server.url, pdf_in(folder), headers=headers))


class _FailingSource:
    """Produces one page, then breaks."""

    num_pages = 3
    closed = False

    async def produce(self, job: Any) -> None:
        job.add_page(PageMessage(page_idx=1, pdf_selected_len=3, text="page one"))
        raise RuntimeError("converter crashed")

    async def aclose(self) -> None:
        type(self).closed = True


class _FailingBackend:
    async def open(self, data: bytes, options: Any) -> _FailingSource:
        return _FailingSource()


def test_failed_job_reports_error() -> None:
    with EmbeddedServer(backend=_FailingBackend()) as server:
        pdf_id = pdf_id_of(upload(server.url, b"%PDF-1.4 anything", {"streaming": True}))
        messages = read_stream(server.url, pdf_id)  # ends: the job failed after page 1
        assert messages[0] == {"page_idx": 1, "pdf_selected_len": 3, "text": "page one"}
        assert messages[1]["error_info"]["id"] == "sys_exception"
        assert len(messages) == 2
        status = httpx.get(f"{server.url}/v3/pdf/{pdf_id}", timeout=TIMEOUT).json()
        assert (status["status"], status["num_pages_completed"]) == ("error", 1)
        assert status["error_info"]["id"] == "sys_exception"
        assert httpx.get(f"{server.url}/v3/pdf/{pdf_id}.mmd", timeout=TIMEOUT).status_code == 404
    assert _FailingSource.closed
