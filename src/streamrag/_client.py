"""Clients of the Mathpix PDF API (and of ``streamrag serve``): sync and async faces of one protocol.

Request building and response checking are shared; each client method only performs the I/O.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
from httpx_sse import EventSource

from ._exceptions import MathpixError, StreamFormatError, TransportError
from ._models import PageMessage, PdfStatus
from ._stream import decode_line, error_body, raise_for_error_body

__all__ = ["DEFAULT_API_URL", "AsyncMathpixClient", "MathpixClient", "PageTracker"]

log = logging.getLogger("streamrag.client")

DEFAULT_API_URL = "https://api.mathpix.com"
DEFAULT_TIMEOUT = httpx.Timeout(30.0, read=120.0)

Upload = str | Path | bytes


class PageTracker:
    """Pages of one stream keyed by ``page_idx``: drops duplicates, knows when all are in hand."""

    def __init__(self) -> None:
        self.pages: dict[int, PageMessage] = {}
        self.total: int | None = None

    def add(self, message: PageMessage) -> bool:
        """Record a message; False if that page was already in hand."""
        if message.pdf_selected_len is not None:
            self.total = message.pdf_selected_len
        if message.page_idx in self.pages:
            return False
        self.pages[message.page_idx] = message
        return True

    @property
    def complete(self) -> bool:
        return self.total is not None and all(i in self.pages for i in range(1, self.total + 1))


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return float(response.headers["retry-after"])
    except (KeyError, ValueError):
        return None


def _check(response: httpx.Response) -> Any:
    """The JSON body of a response, or the typed exception for an error body or bad status."""
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    raise_for_error_body(body, response.status_code, _retry_after(response))
    if response.is_error:  # an error status without a Mathpix body is still typed
        error_id = {401: "http_unauthorized", 429: "http_max_requests"}.get(
            response.status_code, f"http_{response.status_code}"
        )
        raise_for_error_body(error_body(error_id, response.reason_phrase), response.status_code, _retry_after(response))
    if body is None:
        raise MathpixError("invalid_response", f"not a JSON body from {response.request.url.path}")
    return body


def _upload_request(source: Upload, options: dict[str, Any], filename: str | None) -> dict[str, Any]:
    """httpx request arguments for ``POST /v3/pdf``: a URL as JSON, or a file as multipart."""
    opts = {"streaming": True, **options}
    if isinstance(source, str) and source.startswith(("http://", "https://")):
        return {"json": {"url": source, **opts}}
    if isinstance(source, bytes):
        data, name = source, filename or "document.pdf"
    else:
        path = Path(source)
        data, name = path.read_bytes(), filename or path.name
    return {
        "files": {"file": (name, data, "application/pdf")},
        "data": {"options_json": json.dumps(opts)},
    }


def _message(line: str | bytes, pdf_id: str) -> PageMessage | None:
    """Decode one line; a malformed one is logged and skipped so one bad line loses nothing else."""
    try:
        return decode_line(line)
    except StreamFormatError as exc:
        log.warning("pdf %s: skipped a stream line: %s", pdf_id, exc)
        return None


class _Config:
    """Credentials and address, from arguments or ``MATHPIX_APP_KEY``/``MATHPIX_APP_ID``/``MATHPIX_API_URL``."""

    def __init__(self, app_key: str | None, app_id: str | None, api_url: str | None) -> None:
        self._app_key = app_key if app_key is not None else os.environ.get("MATHPIX_APP_KEY")
        self.app_id = app_id if app_id is not None else os.environ.get("MATHPIX_APP_ID")
        self.api_url = (api_url or os.environ.get("MATHPIX_API_URL") or DEFAULT_API_URL).rstrip("/")

    def headers(self) -> dict[str, str]:
        headers = {}
        if self._app_key:
            headers["app_key"] = self._app_key
        if self.app_id:
            headers["app_id"] = self.app_id
        return headers

    def __repr__(self) -> str:  # the key never appears
        return f"api_url={self.api_url!r}, app_key={'***' if self._app_key else None}"


class MathpixClient:
    """Blocking client: ``submit`` a PDF, then ``stream`` its pages, ``status``, ``download_mmd``."""

    def __init__(
        self,
        app_key: str | None = None,
        app_id: str | None = None,
        api_url: str | None = None,
        *,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._config = _Config(app_key, app_id, api_url)
        self._http = httpx.Client(
            base_url=self._config.api_url,
            headers=self._config.headers(),
            timeout=timeout,
            transport=transport,
        )

    def __repr__(self) -> str:
        return f"MathpixClient({self._config!r})"

    def __enter__(self) -> MathpixClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def submit(self, source: Upload, *, options: dict[str, Any] | None = None, filename: str | None = None) -> str:
        """Upload a file (path or bytes) or a URL with ``streaming: true``; returns the ``pdf_id``."""
        try:
            body = _check(self._http.post("/v3/pdf", **_upload_request(source, options or {}, filename)))
        except httpx.TransportError as exc:
            raise TransportError(f"upload failed: {exc}") from None
        return str(body["pdf_id"])

    def status(self, pdf_id: str) -> PdfStatus:
        try:
            return PdfStatus.model_validate(_check(self._http.get(f"/v3/pdf/{pdf_id}")))
        except httpx.TransportError as exc:
            raise TransportError(f"status of {pdf_id} failed: {exc}") from None

    def download_mmd(self, pdf_id: str) -> str:
        try:
            response = self._http.get(f"/v3/pdf/{pdf_id}.mmd")
        except httpx.TransportError as exc:
            raise TransportError(f"download of {pdf_id}.mmd failed: {exc}") from None
        if response.status_code != 200 or response.headers.get("content-type", "").startswith("application/json"):
            _check(response)
        return response.text

    def delete(self, pdf_id: str) -> None:
        try:
            _check(self._http.delete(f"/v3/pdf/{pdf_id}"))
        except httpx.TransportError as exc:
            raise TransportError(f"delete of {pdf_id} failed: {exc}") from None

    def stream(self, pdf_id: str) -> Iterator[PageMessage]:
        """Each new page message, keyed by ``page_idx`` (duplicates dropped), until every page of
        ``1..pdf_selected_len`` is in hand or the server closes the stream."""
        tracker = PageTracker()
        try:
            with self._http.stream("GET", f"/v3/pdf/{pdf_id}/stream") as response:
                if response.status_code != 200:
                    response.read()
                    _check(response)
                lines: Iterator[str]
                if response.headers.get("content-type", "").startswith("text/event-stream"):
                    lines = (event.data for event in EventSource(response).iter_sse())
                else:
                    lines = response.iter_lines()
                yield from self._pages(lines, tracker, pdf_id)
        except httpx.TransportError as exc:
            raise TransportError(f"stream of {pdf_id} broke after {len(tracker.pages)} pages: {exc}") from None

    @staticmethod
    def _pages(lines: Iterator[str], tracker: PageTracker, pdf_id: str) -> Iterator[PageMessage]:
        for line in lines:
            message = _message(line, pdf_id)
            if message is not None and tracker.add(message):
                yield message
                if tracker.complete:
                    return
        if not tracker.complete:
            log.warning("pdf %s: stream closed with %d pages in hand", pdf_id, len(tracker.pages))


class AsyncMathpixClient:
    """The same client for asyncio/trio: pages are yielded on the event loop as they arrive."""

    def __init__(
        self,
        app_key: str | None = None,
        app_id: str | None = None,
        api_url: str | None = None,
        *,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._config = _Config(app_key, app_id, api_url)
        self._http = httpx.AsyncClient(
            base_url=self._config.api_url,
            headers=self._config.headers(),
            timeout=timeout,
            transport=transport,
        )

    def __repr__(self) -> str:
        return f"AsyncMathpixClient({self._config!r})"

    async def __aenter__(self) -> AsyncMathpixClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def submit(
        self, source: Upload, *, options: dict[str, Any] | None = None, filename: str | None = None
    ) -> str:
        """Upload a file (path or bytes) or a URL with ``streaming: true``; returns the ``pdf_id``."""
        try:
            response = await self._http.post("/v3/pdf", **_upload_request(source, options or {}, filename))
        except httpx.TransportError as exc:
            raise TransportError(f"upload failed: {exc}") from None
        return str(_check(response)["pdf_id"])

    async def status(self, pdf_id: str) -> PdfStatus:
        try:
            return PdfStatus.model_validate(_check(await self._http.get(f"/v3/pdf/{pdf_id}")))
        except httpx.TransportError as exc:
            raise TransportError(f"status of {pdf_id} failed: {exc}") from None

    async def download_mmd(self, pdf_id: str) -> str:
        try:
            response = await self._http.get(f"/v3/pdf/{pdf_id}.mmd")
        except httpx.TransportError as exc:
            raise TransportError(f"download of {pdf_id}.mmd failed: {exc}") from None
        if response.status_code != 200 or response.headers.get("content-type", "").startswith("application/json"):
            _check(response)
        return response.text

    async def delete(self, pdf_id: str) -> None:
        try:
            _check(await self._http.delete(f"/v3/pdf/{pdf_id}"))
        except httpx.TransportError as exc:
            raise TransportError(f"delete of {pdf_id} failed: {exc}") from None

    async def stream(self, pdf_id: str) -> AsyncIterator[PageMessage]:
        """Each new page message as it arrives; see :meth:`MathpixClient.stream`."""
        tracker = PageTracker()
        try:
            async with self._http.stream("GET", f"/v3/pdf/{pdf_id}/stream") as response:
                if response.status_code != 200:
                    await response.aread()
                    _check(response)
                lines: AsyncIterator[str]
                if response.headers.get("content-type", "").startswith("text/event-stream"):
                    lines = (event.data async for event in EventSource(response).aiter_sse())
                else:
                    lines = response.aiter_lines()
                async for message in self._pages(lines, tracker, pdf_id):
                    yield message
        except httpx.TransportError as exc:
            raise TransportError(f"stream of {pdf_id} broke after {len(tracker.pages)} pages: {exc}") from None

    @staticmethod
    async def _pages(lines: AsyncIterator[str], tracker: PageTracker, pdf_id: str) -> AsyncIterator[PageMessage]:
        async for line in lines:
            message = _message(line, pdf_id)
            if message is not None and tracker.add(message):
                yield message
                if tracker.complete:
                    return
        if not tracker.complete:
            log.warning("pdf %s: stream closed with %d pages in hand", pdf_id, len(tracker.pages))
