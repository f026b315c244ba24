"""Upload options of ``POST /v3/pdf``: parsing, type checks, and the error that answers a request.

Error ids chosen here (HTTP 200 bodies, like Mathpix):
``json_syntax`` (body or ``options_json`` is not JSON), ``opts_invalid`` (the options are not a JSON
object), ``opts_<name>`` (option ``<name>`` has the wrong type, e.g. ``opts_streaming``,
``opts_page_ranges``, ``opts_password``, ``opts_url``), ``opts_unknown`` (a key that is neither
honoured nor one of Mathpix's documented options). Documented options not honoured are ignored.
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
    ocr_languages: str | None = None
    """streamrag's own option: Tesseract languages for scanned pages (``"eng+fra"``)."""


_TYPES: dict[str, type] = {"streaming": bool, "page_ranges": str, "password": str, "url": str, "ocr_languages": str}

#: Mathpix's documented v3/pdf options: accepted, not honoured (the local converter has one style).
IGNORED = frozenset(
    {
        "math_inline_delimiters",
        "math_display_delimiters",
        "rm_spaces",
        "rm_fonts",
        "idiomatic_eqn_arrays",
        "include_equation_tags",
        "include_smiles",
        "include_chemistry_as_image",
        "include_diagram_text",
        "include_page_info",
        "enable_tables_fallback",
        "enable_spell_check",
        "conversion_formats",
        "metadata",
        "alphabets_allowed",
        "auto_number_sections",
        "remove_section_numbering",
        "preserve_section_numbering",
        "numbers_default_to_math",
        "ocr_languages",
    }
)


def parse_options(obj: Any) -> UploadOptions:
    """Check a decoded options object; raise :class:`ApiError` for a wrong shape or type."""
    if not isinstance(obj, dict):
        raise ApiError("opts_invalid", "Options must be a JSON object")
    unknown = sorted(k for k in obj if k not in _TYPES and k not in IGNORED)
    if unknown:
        raise ApiError("opts_unknown", f"Unknown option(s): {', '.join(map(repr, unknown))[:200]}")
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
