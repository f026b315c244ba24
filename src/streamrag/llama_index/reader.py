"""``StreamragReader``: a LlamaIndex reader that yields one ``Document`` per page as each page arrives."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, Literal

import anyio.to_thread
from llama_index.core.bridge.pydantic import Field, SecretStr
from llama_index.core.readers.base import BasePydanticReader
from llama_index.core.schema import Document

from .._models import PageEvent
from .._sources import LocalPDF, MathpixPDF

__all__ = ["BOOKKEEPING_KEYS", "StreamragReader", "page_document", "page_event"]

log = logging.getLogger("streamrag.llama_index")

Source = str | Path | bytes
# Metadata that is bookkeeping, not content: kept out of the text that is embedded or shown to an LLM.
BOOKKEEPING_KEYS = ["document_id", "page_number", "total_pages", "continues_previous", "has_content", "error_id", "url"]


def page_document(event: PageEvent, *, file_name: str | None = None, url: str | None = None) -> Document:
    """A page as a ``Document``: id ``{document_id}-p{page}``, flat and stable metadata."""
    meta: dict[str, Any] = {
        "page_label": str(event.page_idx),
        "page_number": event.page_idx,
        "document_id": event.doc_id,
        "continues_previous": event.continues_previous,
        "has_content": event.has_content,
    }
    if event.pdf_selected_len is not None:
        meta["total_pages"] = event.pdf_selected_len
    if event.error_id:
        meta["error_id"] = event.error_id
    if url is not None:
        meta["url"] = url
    elif file_name is not None:
        meta["file_name"] = file_name
    return Document(
        id_=f"{event.doc_id}-p{event.page_idx}",
        text=event.text if event.has_content and event.text is not None else "",
        metadata=meta,
        excluded_embed_metadata_keys=list(BOOKKEEPING_KEYS),
        excluded_llm_metadata_keys=list(BOOKKEEPING_KEYS),
    )


def page_event(document: Document) -> PageEvent:
    """The inverse of :func:`page_document`: the page event a reader's ``Document`` stands for."""
    meta = document.metadata
    if "document_id" not in meta or "page_number" not in meta:
        raise ValueError(f"document {document.id_!r} is not a streamrag page (no document_id/page_number)")
    has_content = bool(meta.get("has_content", True))
    error_id = meta.get("error_id") or (None if has_content else "image_no_content")
    return PageEvent(
        doc_id=str(meta["document_id"]),
        page_idx=int(meta["page_number"]),
        pdf_selected_len=meta.get("total_pages"),
        text=document.text if has_content else None,
        error_id=None if has_content else str(error_id),
    )


class StreamragReader(BasePydanticReader):
    """Reads a PDF through a Mathpix-style page stream, one ``Document`` per page, as pages arrive.

    ``backend``: ``"mathpix"`` — the Mathpix API or any compatible server at ``api_url`` (default
    ``MATHPIX_API_URL``, else Mathpix); ``"embedded"`` — streamrag's own compatible server started on
    a free loopback port for each load (local converter, ``pace`` seconds per page at least);
    ``"local"`` — the local converter in this process, no HTTP.

    Pages without content (blank or image-only) are yielded as empty Documents with
    ``has_content=False`` by default, so page numbering and coverage stay whole; with
    ``skip_empty=True`` they are skipped with a logged warning.
    """

    is_remote: bool = True
    backend: Literal["mathpix", "embedded", "local"] = Field(default="mathpix", description="where pages come from")
    api_url: str | None = Field(default=None, description="a Mathpix-compatible server (mathpix backend)")
    app_key: SecretStr | None = Field(default=None, exclude=True, repr=False, description="or MATHPIX_APP_KEY")
    app_id: str | None = Field(default=None, description="or MATHPIX_APP_ID")
    options: dict[str, Any] = Field(default_factory=dict, description="upload options: page_ranges, …")
    pace: float = Field(default=0.0, ge=0.0, description="embedded backend: seconds per page, at least")
    skip_empty: bool = Field(default=False, description="skip pages without content (with a warning)")

    @classmethod
    def class_name(cls) -> str:
        return "StreamragReader"

    # -- sources ---------------------------------------------------------------------------

    def _source(self, file: Source, api_url: str | None) -> MathpixPDF | LocalPDF:
        if self.backend == "local":
            if isinstance(file, str) and file.startswith(("http://", "https://")):
                raise ValueError("the local backend reads files, not URLs")
            return LocalPDF(file, password=self.options.get("password"), page_ranges=self.options.get("page_ranges"))
        key = "" if self.backend == "embedded" else (self.app_key.get_secret_value() if self.app_key else None)
        return MathpixPDF(file, api_url=api_url, app_key=key, app_id=self.app_id, options=dict(self.options))

    def _server(self) -> Any:
        from .._server import EmbeddedServer

        return EmbeddedServer(backend="local", pace=self.pace)

    def _document(self, event: PageEvent, file: Source, extra_info: dict[str, Any] | None) -> Document | None:
        if not event.has_content and self.skip_empty:
            log.warning(
                "document %s: page %d has no content (%s); skipped", event.doc_id, event.page_idx, event.error_id
            )
            return None
        if isinstance(file, str) and file.startswith(("http://", "https://")):
            doc = page_document(event, url=file)
        else:
            doc = page_document(event, file_name="document.pdf" if isinstance(file, bytes) else Path(file).name)
        if extra_info:
            doc.metadata.update(extra_info)
        return doc

    # -- loading ---------------------------------------------------------------------------

    def lazy_load_data(self, file_path_or_url: Source, extra_info: dict[str, Any] | None = None) -> Iterator[Document]:
        """Each page's ``Document``, yielded the moment the page arrives."""
        with contextlib.ExitStack() as stack:
            api_url = self.api_url
            if self.backend == "embedded":
                api_url = stack.enter_context(self._server()).url
            for event in self._source(file_path_or_url, api_url):
                if (doc := self._document(event, file_path_or_url, extra_info)) is not None:
                    yield doc

    async def alazy_load_data(  # type: ignore[override]
        self, file_path_or_url: Source, extra_info: dict[str, Any] | None = None
    ) -> AsyncIterator[Document]:
        """The async face: pages are read on the event loop and yielded as they arrive."""
        server = None
        api_url = self.api_url
        if self.backend == "embedded":
            server = await anyio.to_thread.run_sync(self._server().start)
            api_url = server.url
        try:
            async for event in self._source(file_path_or_url, api_url):
                if (doc := self._document(event, file_path_or_url, extra_info)) is not None:
                    yield doc
        finally:
            if server is not None:
                await anyio.to_thread.run_sync(server.stop)

    def load_data(self, file_path_or_url: Source, extra_info: dict[str, Any] | None = None) -> list[Document]:
        return list(self.lazy_load_data(file_path_or_url, extra_info))

    async def aload_data(self, file_path_or_url: Source, extra_info: dict[str, Any] | None = None) -> list[Document]:
        return [doc async for doc in self.alazy_load_data(file_path_or_url, extra_info)]
