"""Upload options of ``POST /v3/pdf``: parsing, type checks, and the error that answers a request.

Error ids chosen here (HTTP 200 bodies, like Mathpix):
``json_syntax`` (body or ``options_json`` is not JSON), ``opts_invalid`` (the options are not a JSON
object), ``opts_<name>`` (option ``<name>`` has the wrong type, e.g. ``opts_streaming``,
``opts_page_ranges``, ``opts_password``, ``opts_url``). Unknown options are accepted and ignored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

__all__ = ["ApiError", "UploadOptions", "parse_options", "parse_options_json"]


class ApiError(Exception):
    """A request that is answered with a Mathpix error body (``status_code`` 200 unless said)."""

    def __init__(self, error_id: str, message: str, status_code: int = 200) -> None:
        super().__init__(f"{error_id}: {message}")
        self.error_id = error_id
        self.message = message
        self.status_code = status_code


@dataclass(frozen=True)
class UploadOptions:
    """The options the server honours; everything else is accepted and ignored."""

    streaming: bool = False
    page_ranges: str | None = None
    password: str | None = None
    url: str | None = None


_TYPES: dict[str, type] = {"streaming": bool, "page_ranges": str, "password": str, "url": str}


def parse_options(obj: Any) -> UploadOptions:
    """Check a decoded options object; raise :class:`ApiError` for a wrong shape or type."""
    if not isinstance(obj, dict):
        raise ApiError("opts_invalid", "Options must be a JSON object")
    values: dict[str, Any] = {}
    for name, kind in _TYPES.items():
        value = obj.get(name)
        if value is None:
            continue
        if not isinstance(value, kind):
            raise ApiError(f"opts_{name}", f"Option {name!r} must be a {kind.__name__}")
        values[name] = value
    return UploadOptions(**values)


def parse_options_json(text: str | bytes | None) -> UploadOptions:
    """Parse the ``options_json`` string of a multipart upload (absent or empty = defaults)."""
    if text is None or not text.strip():
        return UploadOptions()
    return parse_options(loads(text))


def loads(text: str | bytes) -> Any:
    """``json.loads`` that raises ``json_syntax``."""
    try:
        return json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError("json_syntax", f"Invalid JSON: {exc}") from None
