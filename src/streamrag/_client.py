"""Clients of the Mathpix PDF API (and of ``streamrag serve``): sync and async faces of one protocol.

Every request is retried on transient faults within a :class:`RetryPolicy`. ``stream`` survives
broken connections: it reconnects with backoff, skips the pages it already holds, and, when the
stream cannot be resumed, polls the status and downloads the missing pages (``.lines.mmd.json``,
cross-checked against the ``.mmd``).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar

import anyio
import httpx
from httpx_sse import EventSource

from ._exceptions import MathpixError, StreamragError
from ._models import PageMessage, PdfStatus
from ._protocol import (
    DEFAULT_API_URL,
    Config,
    StreamState,
    Upload,
    check,
    json_body,
    text_body,
    transport_error,
    upload_request,
)
from ._retry import Attempts, RateGate, RetryPolicy

__all__ = ["DEFAULT_API_URL", "AsyncMathpixClient", "MathpixClient", "RetryPolicy"]

DEFAULT_TIMEOUT = httpx.Timeout(30.0, read=120.0)
T = TypeVar("T")


def _stream_lines(response: httpx.Response) -> Iterator[str]:
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        return (event.data for event in EventSource(response).iter_sse())
    return response.iter_lines()


def _astream_lines(response: httpx.Response) -> AsyncIterator[str]:
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        return (event.data async for event in EventSource(response).aiter_sse())
    return response.aiter_lines()


def _finished(status: PdfStatus, pdf_id: str) -> bool:
    if status.status == "error":
        raise MathpixError("pdf_error", f"the server failed to process {pdf_id}")
    return status.status == "completed"


class MathpixClient:
    """Blocking client: ``submit`` a PDF, then ``stream`` its pages; ``status``, ``download_mmd``."""

    def __init__(
        self,
        app_key: str | None = None,
        app_id: str | None = None,
        api_url: str | None = None,
        *,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        gate: RateGate | None = None,
    ) -> None:
        self._config = Config(app_key, app_id, api_url)
        self.retry = retry or RetryPolicy()
        self.gate = gate  # a backoff shared with other clients (429 Retry-After), if given
        self._http = httpx.Client(
            base_url=self._config.api_url, headers=self._config.headers(), timeout=timeout, transport=transport
        )

    def __repr__(self) -> str:
        return f"MathpixClient({self._config!r})"

    def __enter__(self) -> MathpixClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _call(self, what: str, method: str, path: str, parse: Callable[[httpx.Response], T], **kw: Any) -> T:
        attempts = Attempts(what, self.retry)
        while True:
            if self.gate is not None:
                time.sleep(self.gate.remaining())
            try:
                return parse(self._http.request(method, path, **kw))
            except httpx.HTTPError as exc:
                error: StreamragError = transport_error(what, exc)
            except StreamragError as exc:
                error = exc
                if self.gate is not None:
                    self.gate.note(exc)
            time.sleep(attempts.delay(error))

    def submit(self, source: Upload, *, options: dict[str, Any] | None = None, filename: str | None = None) -> str:
        """Upload a file (path or bytes) or a URL with ``streaming: true``; returns the ``pdf_id``."""
        request = upload_request(source, options or {}, filename)
        return str(self._call("upload", "POST", "/v3/pdf", json_body, **request)["pdf_id"])

    def status(self, pdf_id: str) -> PdfStatus:
        return PdfStatus.model_validate(self._call(f"status of {pdf_id}", "GET", f"/v3/pdf/{pdf_id}", json_body))

    def download_mmd(self, pdf_id: str) -> str:
        return self._call(f"{pdf_id}.mmd", "GET", f"/v3/pdf/{pdf_id}.mmd", text_body)

    def download_lines(self, pdf_id: str) -> dict[str, Any]:
        """``.lines.mmd.json``: each page's lines, whose texts joined are the page's text."""
        body: dict[str, Any] = self._call(
            f"{pdf_id}.lines.mmd.json", "GET", f"/v3/pdf/{pdf_id}.lines.mmd.json", json_body
        )
        return body

    def delete(self, pdf_id: str) -> None:
        self._call(f"delete of {pdf_id}", "DELETE", f"/v3/pdf/{pdf_id}", json_body)

    def stream(self, pdf_id: str) -> Iterator[PageMessage]:
        """Each new page message as it arrives, keyed by ``page_idx``, until every page of
        ``1..pdf_selected_len`` is in hand. Broken connections are resumed (see the module)."""
        state = StreamState(pdf_id, self.retry)
        while True:
            if self.gate is not None:
                time.sleep(self.gate.remaining())
            try:
                with self._http.stream("GET", f"/v3/pdf/{pdf_id}/stream") as response:
                    if response.status_code != 200:
                        response.read()
                        check(response)
                    for line in _stream_lines(response):
                        if (message := state.feed(line)) is not None:
                            yield message
                        if state.complete:
                            return
                error: StreamragError = state.closed_early()
            except httpx.HTTPError as exc:
                error = transport_error(f"stream of {pdf_id}", exc)
            except StreamragError as exc:
                error = exc
            if self.gate is not None:
                self.gate.note(error)
            delay = state.broken(error)
            if delay is None:
                break
            time.sleep(delay)
        yield from self._recover(state)

    def _recover(self, state: StreamState) -> Iterator[PageMessage]:
        attempts = Attempts(f"waiting for {state.pdf_id} to complete", self.retry)
        while not _finished(status := self.status(state.pdf_id), state.pdf_id):
            time.sleep(attempts.delay(state.closed_early()))
        yield from state.recover(status, self.download_lines(state.pdf_id))
        state.matches(self.download_mmd(state.pdf_id))  # the .mmd cross-checks the pages


class AsyncMathpixClient:
    """The same client for asyncio/trio: pages are yielded on the event loop as they arrive."""

    def __init__(
        self,
        app_key: str | None = None,
        app_id: str | None = None,
        api_url: str | None = None,
        *,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        gate: RateGate | None = None,
    ) -> None:
        self._config = Config(app_key, app_id, api_url)
        self.retry = retry or RetryPolicy()
        self.gate = gate  # a backoff shared with other clients (429 Retry-After), if given
        self._http = httpx.AsyncClient(
            base_url=self._config.api_url, headers=self._config.headers(), timeout=timeout, transport=transport
        )

    def __repr__(self) -> str:
        return f"AsyncMathpixClient({self._config!r})"

    async def __aenter__(self) -> AsyncMathpixClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(self, what: str, method: str, path: str, parse: Callable[[httpx.Response], T], **kw: Any) -> T:
        attempts = Attempts(what, self.retry)
        while True:
            if self.gate is not None:
                await anyio.sleep(self.gate.remaining())
            try:
                return parse(await self._http.request(method, path, **kw))
            except httpx.HTTPError as exc:
                error: StreamragError = transport_error(what, exc)
            except StreamragError as exc:
                error = exc
                if self.gate is not None:
                    self.gate.note(exc)
            await anyio.sleep(attempts.delay(error))

    async def submit(
        self, source: Upload, *, options: dict[str, Any] | None = None, filename: str | None = None
    ) -> str:
        """Upload a file (path or bytes) or a URL with ``streaming: true``; returns the ``pdf_id``."""
        request = upload_request(source, options or {}, filename)
        return str((await self._call("upload", "POST", "/v3/pdf", json_body, **request))["pdf_id"])

    async def status(self, pdf_id: str) -> PdfStatus:
        body = await self._call(f"status of {pdf_id}", "GET", f"/v3/pdf/{pdf_id}", json_body)
        return PdfStatus.model_validate(body)

    async def download_mmd(self, pdf_id: str) -> str:
        return await self._call(f"{pdf_id}.mmd", "GET", f"/v3/pdf/{pdf_id}.mmd", text_body)

    async def download_lines(self, pdf_id: str) -> dict[str, Any]:
        """``.lines.mmd.json``: each page's lines, whose texts joined are the page's text."""
        path = f"/v3/pdf/{pdf_id}.lines.mmd.json"
        body: dict[str, Any] = await self._call(f"{pdf_id}.lines.mmd.json", "GET", path, json_body)
        return body

    async def delete(self, pdf_id: str) -> None:
        await self._call(f"delete of {pdf_id}", "DELETE", f"/v3/pdf/{pdf_id}", json_body)

    async def stream(self, pdf_id: str) -> AsyncIterator[PageMessage]:
        """Each new page message as it arrives; see :meth:`MathpixClient.stream`."""
        state = StreamState(pdf_id, self.retry)
        while True:
            if self.gate is not None:
                await anyio.sleep(self.gate.remaining())
            try:
                async with self._http.stream("GET", f"/v3/pdf/{pdf_id}/stream") as response:
                    if response.status_code != 200:
                        await response.aread()
                        check(response)
                    async for line in _astream_lines(response):
                        if (message := state.feed(line)) is not None:
                            yield message
                        if state.complete:
                            return
                error: StreamragError = state.closed_early()
            except httpx.HTTPError as exc:
                error = transport_error(f"stream of {pdf_id}", exc)
            except StreamragError as exc:
                error = exc
            if self.gate is not None:
                self.gate.note(error)
            delay = state.broken(error)
            if delay is None:
                break
            await anyio.sleep(delay)
        attempts = Attempts(f"waiting for {pdf_id} to complete", self.retry)
        while not _finished(status := await self.status(pdf_id), pdf_id):
            await anyio.sleep(attempts.delay(state.closed_early()))
        for message in state.recover(status, await self.download_lines(pdf_id)):
            yield message
        state.matches(await self.download_mmd(pdf_id))  # the .mmd cross-checks the pages
