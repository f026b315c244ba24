"""The Mathpix client (sync and async) against a real ``streamrag serve`` on 127.0.0.1."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import ServerProcess, mmd_pages
from streamrag import (
    AsyncMathpixClient,
    AuthenticationError,
    MathpixClient,
    MathpixError,
    RateLimitError,
    RetryError,
    RetryPolicy,
)
from streamrag._stream import read_recording

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def make_recording(tmp_path: Path, capture: Path, order: list[int], name: str = "rec") -> Path:
    """A recording folder holding a capture's real page messages in ``order`` (repeats allowed),
    beside a copy of its PDF made unique so that only this recording matches it."""
    folder = tmp_path / name
    folder.mkdir()
    messages = {m.page_idx: m.wire() for m in read_recording(capture / "stream.json")}
    (folder / "stream.json").write_text(json.dumps([messages[i] for i in order]), encoding="utf-8")
    pdf = folder / "doc.pdf"
    pdf.write_bytes((capture / f"{capture.name}.pdf").read_bytes() + f"\n%{name}\n".encode())
    return pdf


@pytest.fixture
def replay(start_server, shared: Path) -> ServerProcess:  # type: ignore[no-untyped-def]
    return start_server("--backend", "replay", "--recordings", str(shared / "captures"))  # type: ignore[no-any-return]


@pytest.mark.parametrize("framing", ["lines", "sse"])
def test_sync_client_streams_every_capture_in_both_framings(start_server, captures: list[Path], framing: str) -> None:  # type: ignore[no-untyped-def]
    server = start_server("--backend", "replay", "--recordings", str(captures[0].parent), "--framing", framing)
    with MathpixClient(api_url=server.url, app_key="") as client:
        for capture in captures:
            pdf_id = client.submit(capture / f"{capture.name}.pdf")
            messages = list(client.stream(pdf_id))
            recorded = read_recording(capture / "stream.json")
            assert [m.page_idx for m in messages] == [m.page_idx for m in recorded]
            assert [m.text for m in messages] == [m.text for m in recorded]
            assert client.status(pdf_id).status == "completed"
            assert client.download_mmd(pdf_id) == (capture / "result.mmd").read_text(encoding="utf-8")
            client.delete(pdf_id)
            with pytest.raises(MathpixError) as gone:
                client.status(pdf_id)
            assert gone.value.error_id == "pdf_unknown_id"


@pytest.mark.parametrize("framing", ["lines", "sse"])
async def test_async_client_streams_pages_as_they_arrive(start_server, captures: list[Path], framing: str) -> None:  # type: ignore[no-untyped-def]
    capture = next(c for c in captures if c.name == "exam-2019")
    server = start_server("--backend", "replay", "--recordings", str(capture), "--framing", framing)
    async with AsyncMathpixClient(api_url=server.url, app_key="") as client:
        pdf_id = await client.submit((capture / "exam-2019.pdf").read_bytes(), filename="exam.pdf")
        seen = []
        async for message in client.stream(pdf_id):
            seen.append(message)
        blank = [m.page_idx for m in seen if m.error_info is not None]
        assert len(seen) == 15 and len(blank) == 7
        assert all(m.error_info.id == "image_no_content" for m in seen if m.error_info)  # type: ignore[union-attr]
        assert "".join(m.text or "" for m in sorted(seen, key=lambda m: m.page_idx)) == (
            capture / "result.mmd"
        ).read_text(encoding="utf-8")


def test_out_of_order_and_duplicate_pages_are_keyed_by_page_idx(
    start_server, captures: list[Path], tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    capture = next(c for c in captures if c.name == "midterm-old")
    order = [2, 1, 1, 4, 3, 2, 5, 7, 6, 6, 9, 8, 10, 10]
    pdf = make_recording(tmp_path, capture, order)
    server = start_server("--backend", "replay", "--recordings", str(pdf.parent))
    with MathpixClient(api_url=server.url, app_key="") as client:
        messages = list(client.stream(client.submit(pdf)))
    assert [m.page_idx for m in messages] == [2, 1, 4, 3, 5, 7, 6, 9, 8, 10]
    pages = mmd_pages(capture)
    assert {m.page_idx: m.text for m in messages} == pages


def test_stream_ends_when_all_pages_are_in_hand_or_the_server_closes(
    start_server, captures: list[Path], tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    capture = next(c for c in captures if c.name == "midterm-old")
    short = make_recording(tmp_path, capture, [1, 2, 3], name="short")
    server = start_server("--backend", "replay", "--recordings", str(tmp_path))
    quick = RetryPolicy(backoff=0.01, max_backoff=0.05)
    with MathpixClient(api_url=server.url, app_key="", retry=quick) as client:
        messages = list(client.stream(client.submit(short)))
    # the server closed at 3 of 10 pages: the client reconnected, then polled and downloaded what the
    # server has; it makes up no page, raises nothing, and does not hang
    assert [m.page_idx for m in messages] == [1, 2, 3]


def test_error_bodies_with_http_200_are_typed(replay: ServerProcess, shared: Path) -> None:
    with MathpixClient(api_url=replay.url, app_key="") as client:
        with pytest.raises(MathpixError) as unknown:
            client.status("2026_01_01_00000000000000000000")
        assert unknown.value.error_id == "pdf_unknown_id" and unknown.value.status_code == 200
        with pytest.raises(MathpixError) as stream_unknown:
            list(client.stream("2026_01_01_00000000000000000000"))
        assert stream_unknown.value.error_id == "pdf_unknown_id"
        with pytest.raises(MathpixError) as unmatched:
            client.submit(b"%PDF-1.4 not a recorded document")
        assert unmatched.value.error_id == "pdf_unknown_recording"
        pdf = next((shared / "captures" / "midterm-old").glob("*.pdf"))
        with pytest.raises(MathpixError) as bad_opts:
            client.submit(pdf, options={"page_ranges": 7})
        assert bad_opts.value.error_id.startswith("opts_")


def test_401_is_an_authentication_error_and_never_shows_the_key(start_server, captures: list[Path]) -> None:  # type: ignore[no-untyped-def]
    secret = "sk-test-5d41402abc4b2a76b9719d911017c592"
    server = start_server("--backend", "replay", "--recordings", str(captures[0]), env={"STREAMRAG_APP_KEY": secret})
    pdf = next(captures[0].glob("*.pdf"))
    with MathpixClient(api_url=server.url, app_key="wrong-key") as client:
        assert secret not in repr(client) and "wrong-key" not in repr(client)
        with pytest.raises(AuthenticationError) as caught:
            client.submit(pdf)
    assert caught.value.error_id == "http_unauthorized" and caught.value.status_code == 401
    assert "wrong-key" not in str(caught.value)
    with MathpixClient(api_url=server.url, app_key=secret) as client:
        assert len(list(client.stream(client.submit(pdf)))) > 0


def test_429_is_a_rate_limit_error_with_retry_after(start_server, captures: list[Path]) -> None:  # type: ignore[no-untyped-def]
    capture = next(c for c in captures if c.name == "midterm-old")
    server = start_server("--backend", "replay", "--recordings", str(capture), "--page-quota", "15")
    pdf = capture / "midterm-old.pdf"
    with MathpixClient(api_url=server.url, app_key="", retry=RetryPolicy(attempts=1)) as client:
        client.submit(pdf)  # 10 pages: within the quota
        with pytest.raises(RetryError) as caught:
            client.submit(pdf)  # 20 > 15
    limited = caught.value.__cause__
    assert isinstance(limited, RateLimitError)
    assert limited.status_code == 429 and limited.error_id == "http_max_requests"
    assert limited.retry_after == 60.0
    assert limited.info["limit_name"] == "page_monthly_limit" and limited.info["count"] == 20


def test_url_upload_uses_a_json_body(replay: ServerProcess, shared: Path, tmp_path: Path) -> None:
    import http.server
    import threading
    from functools import partial

    capture = shared / "captures" / "exam-2024-solutions"
    shutil.copy(capture / "exam-2024-solutions.pdf", tmp_path / "doc.pdf")
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        with MathpixClient(api_url=replay.url, app_key="") as client:
            pdf_id = client.submit(f"http://127.0.0.1:{httpd.server_address[1]}/doc.pdf")
            texts = {m.page_idx: m.text for m in client.stream(pdf_id)}
    finally:
        httpd.shutdown()
        thread.join()
    assert texts == mmd_pages(capture)


def test_client_reads_its_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MATHPIX_APP_KEY", "env-secret-key")
    monkeypatch.setenv("MATHPIX_APP_ID", "my-app")
    monkeypatch.setenv("MATHPIX_API_URL", "http://127.0.0.1:9/")
    client = MathpixClient()
    assert client._http.headers["app_key"] == "env-secret-key"
    assert client._http.headers["app_id"] == "my-app"
    assert str(client._http.base_url) == "http://127.0.0.1:9"
    assert "env-secret-key" not in repr(client)
    client.close()
    monkeypatch.delenv("MATHPIX_API_URL")
    default = MathpixClient()
    assert str(default._http.base_url) == "https://api.mathpix.com"
    default.close()
