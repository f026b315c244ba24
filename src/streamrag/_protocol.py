"""The client side of the protocol, free of I/O: requests to build, responses to check, and the
state of one page stream across reconnects. The sync and async clients share all of it.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import httpx

from ._exceptions import MathpixError, RetryError, StreamFormatError, StreamragError, TransportError
from ._models import ErrorInfo, PageMessage, PdfStatus
from ._retry import Attempts, RetryPolicy, is_transient
from ._stream import decode_line, error_body, raise_for_error_body

__all__ = ["DEFAULT_API_URL", "Config", "StreamState", "Upload", "check", "json_body", "upload_request"]

log = logging.getLogger("streamrag.client")

DEFAULT_API_URL = "https://api.mathpix.com"
Upload = str | Path | bytes


class Config:
    """Credentials and address: arguments, else ``MATHPIX_APP_KEY``/``MATHPIX_APP_ID``/``MATHPIX_API_URL``."""

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


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return float(response.headers["retry-after"])
    except (KeyError, ValueError):
        return None


def check(response: httpx.Response) -> None:
    """Raise the typed exception for an error body (any status) or an error status."""
    try:
        body = response.json() if response.headers.get("content-type", "").startswith("application/json") else None
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    raise_for_error_body(body, response.status_code, _retry_after(response))
    if response.is_error:  # an error status without a Mathpix body is still typed
        error_id = {401: "http_unauthorized", 429: "http_max_requests"}.get(
            response.status_code, f"http_{response.status_code}"
        )
        raise_for_error_body(error_body(error_id, response.reason_phrase), response.status_code, _retry_after(response))


def json_body(response: httpx.Response) -> Any:
    check(response)
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise MathpixError("invalid_response", f"not a JSON body from {response.request.url.path}") from None


def text_body(response: httpx.Response) -> str:
    check(response)
    return response.text


def upload_request(source: Upload, options: dict[str, Any], filename: str | None) -> dict[str, Any]:
    """httpx arguments for ``POST /v3/pdf``: a URL as a JSON body, a file as multipart."""
    opts = {"streaming": True, **options}
    if isinstance(source, str) and source.startswith(("http://", "https://")):
        return {"json": {"url": source, **opts}}
    if isinstance(source, bytes):
        data, name = source, filename or "document.pdf"
    else:
        path = Path(source)
        data, name = path.read_bytes(), filename or path.name
    return {"files": {"file": (name, data, "application/pdf")}, "data": {"options_json": json.dumps(opts)}}


def transport_error(what: str, exc: httpx.HTTPError) -> TransportError:
    return TransportError(f"{what}: {type(exc).__name__}: {exc}")


_PAGE_IDX = re.compile(rb'"page_idx"\s*:\s*(\d+)')


class StreamState:
    """One document's page stream across connections: pages keyed by ``page_idx`` (duplicates
    dropped), when it is complete, what a broken connection means, and the pages a download recovers.
    """

    def __init__(self, pdf_id: str, policy: RetryPolicy) -> None:
        self.pdf_id = pdf_id
        self.policy = policy
        self.pages: dict[int, PageMessage] = {}
        self.total: int | None = None
        self.skipped = 0
        self.reconnects = 0
        self._attempts = Attempts(f"stream of {pdf_id}", policy)
        self._unknown_fields: set[str] = set()

    @property
    def complete(self) -> bool:
        return self.total is not None and all(i in self.pages for i in range(1, self.total + 1))

    def feed(self, line: str | bytes) -> PageMessage | None:
        """The page a line brings, if new. A malformed line is logged and skipped (the stream goes
        on); an error body raises its typed exception (fatal unless transient)."""
        try:
            message = decode_line(line)
        except StreamFormatError as exc:
            self.skipped += 1
            raw = line.encode("utf-8", "replace") if isinstance(line, str) else line
            page = _PAGE_IDX.search(raw)
            where = f"page {int(page.group(1))}" if page else "unknown page"
            log.warning("pdf %s, %s: skipped a stream message: %s", self.pdf_id, where, exc)
            return None
        if message is None:
            return None
        if message.model_extra and (new := set(message.model_extra) - self._unknown_fields):
            self._unknown_fields |= new
            log.info("pdf %s, page %d: unknown fields kept: %s", self.pdf_id, message.page_idx, sorted(new))
        if message.pdf_selected_len is not None:
            self.total = message.pdf_selected_len
        if message.page_idx in self.pages:
            return None
        self.pages[message.page_idx] = message
        return message

    def broken(self, exc: StreamragError) -> float | None:
        """A connection ended before every page: seconds to wait before reconnecting, or ``None``
        to fall back to polling; raises what cannot be retried."""
        if not is_transient(exc):
            raise exc
        self.reconnects += 1
        try:
            if self.reconnects > self.policy.reconnects:
                raise RetryError(f"stream of {self.pdf_id}", [str(exc)], 0.0)
            delay = self._attempts.delay(exc)
        except RetryError:
            log.warning("pdf %s: stream broke %d times; polling instead", self.pdf_id, self.reconnects)
            return None
        log.info("pdf %s: stream broke after %d pages (%s); reconnecting", self.pdf_id, len(self.pages), exc)
        return delay

    def closed_early(self) -> TransportError:
        return TransportError(f"stream of {self.pdf_id} closed with {len(self.pages)} of {self.total or '?'} pages")

    def recover(self, status: PdfStatus, lines: dict[str, Any]) -> list[PageMessage]:
        """The missing pages that the ``.lines.mmd.json`` download holds: its lines joined are each
        page's text exactly; a page listed with no lines is Mathpix's ``image_no_content``. A page
        the download does not list stays missing (and is logged): nothing is made up."""
        total = status.num_pages or self.total or 0
        self.total = total
        texts: dict[int, str] = {}
        for page in lines.get("pages", []):
            texts[int(page["page"])] = "".join(str(line.get("text", "")) for line in page.get("lines", []))
        recovered = []
        for idx in sorted(set(texts) - set(self.pages)):
            if texts[idx]:
                message = PageMessage(page_idx=idx, pdf_selected_len=total, text=texts[idx])
            else:
                info = ErrorInfo(id="image_no_content", message="Content not found")
                message = PageMessage(page_idx=idx, pdf_selected_len=total, error=info.message, error_info=info)
            self.pages[idx] = message
            recovered.append(message)
        if not self.complete:
            missing = [i for i in range(1, total + 1) if i not in self.pages]
            log.warning("pdf %s: the server completed without pages %s", self.pdf_id, missing)
        return recovered

    def matches(self, mmd: str) -> bool:
        """Whether the pages in hand rebuild the ``.mmd`` download (logged when they do not)."""
        joined = "".join(m.text or "" for _, m in sorted(self.pages.items()))
        if joined != mmd:
            log.warning("pdf %s: the pages in hand do not rebuild the .mmd download", self.pdf_id)
        return joined == mmd
