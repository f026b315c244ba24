"""The page stream's wire format: decoding lines into page messages, encoding them back, recordings.

Mathpix sends one JSON object per line (bare); some servers frame them as SSE ``data:`` lines.
Both decode here. An object with ``page_idx`` is a page (its text, or a page error such as
``image_no_content``); an object with ``error_info`` and no ``page_idx`` is an API error body.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from ._exceptions import AuthenticationError, MathpixError, RateLimitError, StreamFormatError
from ._models import PageMessage

__all__ = ["Framing", "decode_line", "encode_message", "error_body", "raise_for_error_body", "read_recording"]

Framing = Literal["lines", "sse"]


def error_body(error_id: str, message: str, **extra: Any) -> dict[str, Any]:
    """A Mathpix error body."""
    return {"error": message, "error_info": {"id": error_id, "message": message, **extra}}


def raise_for_error_body(body: Any, status_code: int = 200, retry_after: float | None = None) -> None:
    """Raise the typed exception for an API error body; return if ``body`` is not one."""
    if not isinstance(body, dict) or "page_idx" in body:
        return
    info = body.get("error_info")
    if not isinstance(info, dict) and "error" not in body:
        return
    info = info if isinstance(info, dict) else {}
    error_id = str(info.get("id") or "unknown_error")
    message = str(info.get("message") or body.get("error") or error_id)
    if status_code == 401 or error_id == "http_unauthorized":
        raise AuthenticationError(error_id, message, status_code=status_code, info=info)
    if status_code == 429 or error_id == "http_max_requests":
        raise RateLimitError(error_id, message, status_code=status_code, info=info, retry_after=retry_after)
    raise MathpixError(error_id, message, status_code=status_code, info=info)


def decode_line(line: str | bytes) -> PageMessage | None:
    """Decode one stream line (bare JSON or ``data: {...}``); ``None`` for blank/keep-alive lines.

    Raises the typed :class:`MathpixError` for an error body and :class:`StreamFormatError` for
    anything that is not a page message.
    """
    if isinstance(line, bytes):
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise StreamFormatError(f"stream line is not UTF-8: {exc}") from None
    line = line.strip()
    if line.startswith("data:"):
        line = line[5:].strip()
    elif line.startswith((":", "event:", "id:", "retry:")):
        return None  # other SSE fields carry no page
    if not line:
        return None
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise StreamFormatError(f"stream line is not JSON ({exc.msg}): {line[:80]!r}") from None
    return decode_object(obj)


def decode_object(obj: Any) -> PageMessage:
    """Validate a decoded JSON object as a page message (raising on error bodies)."""
    raise_for_error_body(obj)
    try:
        return PageMessage.model_validate(obj)
    except ValidationError as exc:
        errors = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'message'}: {e['msg']}" for e in exc.errors())
        raise StreamFormatError(f"not a page message ({errors})") from None


def encode_message(message: PageMessage | dict[str, Any], framing: Framing = "lines") -> bytes:
    """One message as the server writes it: a JSON line, or an SSE ``data:`` event."""
    obj = message.wire() if isinstance(message, PageMessage) else message
    data = json.dumps(obj, ensure_ascii=False)
    return (f"data: {data}\n\n" if framing == "sse" else data + "\n").encode("utf-8")


def read_recording(path: str | Path) -> list[PageMessage]:
    """Read a recorded stream: a JSON list of page messages (``stream.json``) or JSON lines."""
    raw = Path(path).read_text(encoding="utf-8")
    try:
        data = json.loads(raw)
    except json.JSONDecodeError:
        return [m for m in map(decode_line, raw.splitlines()) if m is not None]
    if not isinstance(data, list):
        raise StreamFormatError(f"{Path(path).name}: a recording is a JSON list of page messages")
    return [decode_object(obj) for obj in data]


def join_pages(messages: Iterable[PageMessage]) -> str:
    """The document's MMD: page texts joined in ``page_idx`` order (pages without text add nothing)."""
    by_page = {m.page_idx: m.text or "" for m in messages}
    return "".join(by_page[i] for i in sorted(by_page))
