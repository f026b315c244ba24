"""streamrag's exceptions, as one tree:

StreamragError
├── MathpixError            an error body from a Mathpix(-compatible) API; ``error_id`` is
│   │                       ``error_info.id`` (``pdf_unknown_id``, ``opts_*``, ``sys_exception`` …)
│   ├── AuthenticationError    HTTP 401 (``http_unauthorized``)
│   └── RateLimitError         HTTP 429 (``http_max_requests``); ``retry_after`` in seconds
├── TransportError          the connection failed, timed out or closed before the job finished
├── RetryError              transient faults went on past the retry policy's bounds; says what was tried
├── StreamFormatError       a stream line is not a page message (bad JSON, wrong shape)
└── ConversionError         the local converter cannot open a PDF; carries a Mathpix-style ``error_id``

Messages never contain API keys: they are built only from server bodies and request paths.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AuthenticationError",
    "ConversionError",
    "MathpixError",
    "RateLimitError",
    "RetryError",
    "StreamFormatError",
    "StreamragError",
    "TransportError",
]


class StreamragError(Exception):
    """Base of every error streamrag raises on purpose."""


class MathpixError(StreamragError):
    """An API error body: ``{"error": ..., "error_info": {"id": ..., "message": ...}}``."""

    def __init__(
        self,
        error_id: str,
        message: str,
        *,
        status_code: int = 200,
        info: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{error_id}: {message} (HTTP {status_code})")
        self.error_id = error_id
        self.message = message
        self.status_code = status_code
        self.info = info or {}


class AuthenticationError(MathpixError):
    """The server refused the credentials (HTTP 401)."""


class RateLimitError(MathpixError):
    """Too many requests or pages (HTTP 429); ``retry_after`` is the server's hint, if any."""

    def __init__(
        self,
        error_id: str,
        message: str,
        *,
        status_code: int = 429,
        info: dict[str, Any] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(error_id, message, status_code=status_code, info=info)
        self.retry_after = retry_after


class TransportError(StreamragError):
    """The HTTP connection failed, timed out, or closed before every page arrived."""


class RetryError(StreamragError):
    """Retries of a transient fault ran out; ``tried`` lists each failure, oldest first."""

    def __init__(self, what: str, tried: list[str], seconds: float) -> None:
        super().__init__(f"gave up on {what} after {len(tried)} tries in {seconds:.1f} s: {'; '.join(tried)}")
        self.what = what
        self.tried = list(tried)
        self.seconds = seconds


class StreamFormatError(StreamragError):
    """A line of the page stream is not a valid page message."""


class ConversionError(StreamragError):
    """The local converter cannot read a PDF (broken, encrypted, empty)."""

    def __init__(self, error_id: str, message: str) -> None:
        super().__init__(f"{error_id}: {message}")
        self.error_id = error_id
        self.message = message
