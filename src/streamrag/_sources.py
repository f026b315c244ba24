"""Sources of page events: the Mathpix API (or ``streamrag serve``), a recorded stream, a local PDF.

Each source is one object with a sync face (``for event in source``) and an async face
(``async for event in source``), and knows its document id before the first page arrives: the
SHA-256 of the PDF's bytes (or of the URL or recording), so the same document is the same in the
store whichever way it is read.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from ._client import AsyncMathpixClient, MathpixClient
from ._models import PageEvent, PageMessage
from ._protocol import Upload
from ._retry import RateGate, RetryPolicy
from ._stream import read_recording

__all__ = ["LocalPDF", "MathpixPDF", "RecordedStream", "document_id"]


def document_id(data: bytes | str) -> str:
    """A stable id for a document: the first 24 hex digits of the SHA-256 of its bytes (or URL)."""
    raw = data.encode() if isinstance(data, str) else data
    return hashlib.sha256(raw).hexdigest()[:24]


class RecordedStream:
    """Replays a recorded stream (``stream.json``) in its recorded order, ``pace`` seconds per page."""

    def __init__(self, path: str | Path, *, pace: float = 0.0, doc_id: str | None = None) -> None:
        self.path = Path(path)
        self.pace = pace
        self.messages: list[PageMessage] = read_recording(self.path)
        pdfs = sorted(self.path.parent.glob("*.pdf"))
        self.doc_id = doc_id or document_id(pdfs[0].read_bytes() if len(pdfs) == 1 else self.path.read_bytes())

    def __iter__(self) -> Iterator[PageEvent]:
        for message in self.messages:
            if self.pace:
                time.sleep(self.pace)  # the recorded pace is the behaviour being reproduced
            yield PageEvent.from_message(message, self.doc_id)

    async def __aiter__(self) -> AsyncIterator[PageEvent]:
        for message in self.messages:
            if self.pace:
                await anyio.sleep(self.pace)
            yield PageEvent.from_message(message, self.doc_id)


class LocalPDF:
    """Converts a local PDF page by page in this process (no HTTP), with the local converter."""

    def __init__(
        self,
        source: str | Path | bytes,
        *,
        password: str | None = None,
        page_ranges: str | None = None,
        doc_id: str | None = None,
    ) -> None:
        self.data = source if isinstance(source, bytes) else Path(source).read_bytes()
        self.password = password
        self.page_ranges = page_ranges
        self.doc_id = doc_id or document_id(self.data)

    def _open(self) -> Any:
        from ._convert import PdfPages

        return PdfPages(self.data, password=self.password, page_ranges=self.page_ranges)

    def __iter__(self) -> Iterator[PageEvent]:
        with self._open() as pages:
            for message in pages:
                yield PageEvent.from_message(message, self.doc_id)

    async def __aiter__(self) -> AsyncIterator[PageEvent]:
        pages = await anyio.to_thread.run_sync(self._open)
        try:
            it = iter(pages)
            while (message := await anyio.to_thread.run_sync(next, it, None)) is not None:
                yield PageEvent.from_message(message, self.doc_id)
        finally:
            pages.close()


class MathpixPDF:
    """Uploads a PDF (path, bytes or URL) to the Mathpix API or a compatible server and streams it.

    ``api_url``, ``app_key`` and ``app_id`` default to ``MATHPIX_API_URL``, ``MATHPIX_APP_KEY`` and
    ``MATHPIX_APP_ID``. ``options`` are extra upload options (``page_ranges``, ``password`` …);
    ``retry`` bounds the retries and reconnects, ``timeout`` the seconds to wait for any byte;
    ``gate`` a :class:`~streamrag._retry.RateGate` shared with other sources, so that a 429's
    ``Retry-After`` holds back every upload and stream that shares it.
    """

    def __init__(
        self,
        source: Upload,
        *,
        api_url: str | None = None,
        app_key: str | None = None,
        app_id: str | None = None,
        options: dict[str, Any] | None = None,
        doc_id: str | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        gate: RateGate | None = None,
    ) -> None:
        self.source = source
        self.options = options or {}
        self._client_args: dict[str, Any] = {
            "api_url": api_url,
            "app_key": app_key,
            "app_id": app_id,
            "retry": retry,
            "gate": gate,
        }
        if timeout is not None:
            self._client_args["timeout"] = timeout
        if isinstance(source, str) and source.startswith(("http://", "https://")):
            ident: bytes | str = source
        else:
            ident = source if isinstance(source, bytes) else Path(source).read_bytes()
        self.doc_id = doc_id or document_id(ident)
        self.pdf_id: str | None = None

    def __repr__(self) -> str:
        return f"MathpixPDF(doc_id={self.doc_id!r}, pdf_id={self.pdf_id!r})"

    def __iter__(self) -> Iterator[PageEvent]:
        with MathpixClient(**self._client_args) as client:
            self.pdf_id = client.submit(self.source, options=self.options)
            for message in client.stream(self.pdf_id):
                yield PageEvent.from_message(message, self.doc_id).model_copy(update={"pdf_id": self.pdf_id})

    async def __aiter__(self) -> AsyncIterator[PageEvent]:
        async with AsyncMathpixClient(**self._client_args) as client:
            self.pdf_id = await client.submit(self.source, options=self.options)
            async for message in client.stream(self.pdf_id):
                yield PageEvent.from_message(message, self.doc_id).model_copy(update={"pdf_id": self.pdf_id})
