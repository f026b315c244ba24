"""streamrag: answer questions about a PDF while its pages are still streaming.

    page stream ──▶ pages ──▶ chunker ──▶ embedder ──▶ index writer ──▶ live index ◀── answers

Sources (each iterable sync and async): :class:`MathpixPDF` (the Mathpix API or ``streamrag
serve``), :class:`RecordedStream`, :class:`LocalPDF`. Index: :class:`LiveIndex` (Chroma), embedding
with :func:`load_embedder` (int8 on OpenVINO by default, ``backend="torch"`` for fp32).
Answers: :func:`ask` / :func:`aask`, or :class:`LiveQuestions` for finer control.
"""

import importlib
from typing import TYPE_CHECKING, Any

from ._client import AsyncMathpixClient, MathpixClient
from ._exceptions import (
    AuthenticationError,
    ConversionError,
    MathpixError,
    RateLimitError,
    RetryError,
    StreamFormatError,
    StreamragError,
    TransportError,
)
from ._models import Answer, Citation, Coverage, PageEvent, PageMessage, PdfStatus
from ._retry import RetryPolicy
from ._sources import LocalPDF, MathpixPDF, RecordedStream, document_id

__version__ = "0.1.0"

# The index stack (llama-index, chromadb, torch) loads on first use, so that ``streamrag serve``
# and the clients start in a fraction of a second.
_LAZY = {
    "LiveIndex": "._index",
    "PageUpdate": "._index",
    "LiveQuestions": "._live",
    "aask": "._live",
    "ask": "._live",
    "load_embedder": "._embedding",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'streamrag' has no attribute {name!r}")


if TYPE_CHECKING:
    from ._embedding import load_embedder
    from ._index import LiveIndex, PageUpdate
    from ._live import LiveQuestions, aask, ask

__all__ = [
    "Answer",
    "AsyncMathpixClient",
    "AuthenticationError",
    "Citation",
    "ConversionError",
    "Coverage",
    "LiveIndex",
    "LiveQuestions",
    "LocalPDF",
    "MathpixClient",
    "MathpixError",
    "MathpixPDF",
    "PageEvent",
    "PageMessage",
    "PageUpdate",
    "PdfStatus",
    "RateLimitError",
    "RecordedStream",
    "RetryError",
    "RetryPolicy",
    "StreamFormatError",
    "StreamragError",
    "TransportError",
    "aask",
    "ask",
    "document_id",
    "load_embedder",
]
