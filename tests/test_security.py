"""The shipped server is safe to run: loopback by default, keys checked in constant time and never
shown, uploads bounded while they stream in, limits on pages and jobs, owner-only store."""

from __future__ import annotations

import json
import logging
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from streamrag import AuthenticationError, LiveIndex, MathpixClient, MathpixPDF, RetryError, RetryPolicy
from streamrag._server.options import ApiError, parse_options

SECRET = "mpx-5ecret-7d1b3c0ffee4a9"
ONCE = RetryPolicy(attempts=1, reconnects=0)


def test_serve_binds_loopback_by_default(start_server, captures: list[Path]) -> None:  # type: ignore[no-untyped-def]
    server = start_server("--backend", "replay", "--recordings", str(captures[0]))
    assert server.url.startswith("http://127.0.0.1:")


def http_exchange(url: str, head: bytes, body_parts: list[bytes]) -> tuple[bytes, int]:
    """Send a raw request part by part; stop as soon as the server answers. Returns the answer and
    how many parts were sent before it came."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head)
        sent = 0
        sock.setblocking(False)
        for part in body_parts:
            try:
                answer = sock.recv(65536)
                if answer:
                    break
            except BlockingIOError:
                pass
            try:
                sock.sendall(part)
            except (BlockingIOError, BrokenPipeError, ConnectionResetError):
                break
            sent += 1
        sock.setblocking(True)
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    return answer, sent


def test_upload_limit_is_enforced_while_the_body_streams(start_server, captures: list[Path]) -> None:  # type: ignore[no-untyped-def]
    server = start_server("--backend", "replay", "--recordings", str(captures[0]), "--max-upload-mb", "1")
    declared = (
        b"POST /v3/pdf HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
        b"Content-Length: 10737418240\r\n\r\n"
    )
    answer, _ = http_exchange(server.url, declared, [])  # 10 GB announced, nothing sent
    assert b"pdf_too_large" in answer
    chunked = (
        b"POST /v3/pdf HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    start = b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.pdf"\r\n\r\n%PDF-1.4\n'
    part = b"x" * 65536
    parts = [f"{len(start):x}\r\n".encode() + start + b"\r\n"]
    parts += [f"{len(part):x}\r\n".encode() + part + b"\r\n"] * 400  # 25 MB offered, 1 MB allowed
    answer, sent = http_exchange(server.url, chunked, parts)
    assert b"pdf_too_large" in answer
    assert sent < 100  # refused long before the whole body was sent


def test_page_and_job_limits(start_server, captures: list[Path]) -> None:  # type: ignore[no-untyped-def]
    capture = next(c for c in captures if c.name == "final-old")  # 15 pages
    server = start_server("--backend", "replay", "--recordings", str(capture), "--max-pages", "10")
    with MathpixClient(api_url=server.url, app_key="", retry=ONCE) as client, pytest.raises(Exception) as caught:
        client.submit(capture / "final-old.pdf")
    assert getattr(caught.value, "error_id", "") == "pdf_page_limit_exceeded"
    server = start_server("--backend", "replay", "--recordings", str(capture), "--max-jobs", "1", "--pace", "30")
    with MathpixClient(api_url=server.url, app_key="", retry=ONCE) as client:
        client.submit(capture / "final-old.pdf")  # still producing pages for minutes
        with pytest.raises(RetryError) as busy:
            client.submit(capture / "final-old.pdf")
    assert busy.value.tried == ["HTTP 429 http_max_requests"]


@pytest.mark.parametrize(
    ("options", "error_id"),
    [
        ({"streaming": True, "no_such_option": 1}, "opts_unknown"),
        ({"streaming": "yes"}, "opts_streaming"),
        ({"page_ranges": 3}, "opts_page_ranges"),
        ({"password": ["x"]}, "opts_password"),
        ([1, 2], "opts_invalid"),
    ],
)
def test_bad_options_get_opts_errors(options: object, error_id: str) -> None:
    with pytest.raises(ApiError) as caught:
        parse_options(options)
    assert caught.value.error_id == error_id
    assert parse_options({"streaming": True, "rm_spaces": False, "conversion_formats": {"md": True}}).streaming


def test_bad_page_ranges_over_http(start_server, shared: Path) -> None:  # type: ignore[no-untyped-def]
    server = start_server("--backend", "local")
    pdf = shared / "corpus" / "arxiv-0908.0054.pdf"
    for ranges in ["9-12", "a-b", "0"]:
        with MathpixClient(api_url=server.url, app_key="", retry=ONCE) as client, pytest.raises(Exception) as caught:
            client.submit(pdf, options={"page_ranges": ranges})
        assert getattr(caught.value, "error_id", "") == "opts_page_ranges"


def test_store_directory_is_owner_only(tmp_path: Path, embedder: object) -> None:
    store = tmp_path / "new" / "store"
    LiveIndex(store, embed_model=embedder)  # type: ignore[arg-type]
    assert stat.S_IMODE(store.stat().st_mode) == 0o700


def test_the_key_never_appears(
    start_server, captures: list[Path], caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    capture = captures[0]
    server = start_server("--backend", "replay", "--recordings", str(capture), "--app-key", SECRET)
    pdf = next(capture.glob("*.pdf"))
    seen: list[str] = []
    with caplog.at_level(logging.DEBUG):
        with MathpixClient(api_url=server.url, app_key=SECRET + "-wrong", retry=ONCE) as client:
            seen.append(repr(client))
            with pytest.raises(AuthenticationError) as caught:
                client.submit(pdf)
            seen += [str(caught.value), repr(caught.value), json.dumps(caught.value.info)]
        source = MathpixPDF(pdf, api_url=server.url, app_key=SECRET)
        seen.append(repr(source))
        assert len(list(source)) > 0
        with httpx.Client() as raw:  # the server's own answer to a bad key does not echo it
            seen.append(raw.post(f"{server.url}/v3/pdf", headers={"app_key": SECRET + "x"}).text)
    seen += [r.getMessage() for r in caplog.records]
    env = {**os.environ, "MATHPIX_APP_KEY": SECRET + "-cli"}
    run = subprocess.run(
        [sys.executable, "-m", "streamrag", "ask", str(pdf), "-q", "what?", "--api-url", server.url],
        capture_output=True, text=True, timeout=600, env=env, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 1 and "http_unauthorized" in run.stderr
    seen += [run.stdout, run.stderr]
    server.stop()
    seen += server.output + (
        [server.proc.stdout.read()] if server.proc.stdout and not server.proc.stdout.closed else []
    )
    leaks = [text for text in seen if SECRET in text]
    assert not leaks, leaks[:2]
