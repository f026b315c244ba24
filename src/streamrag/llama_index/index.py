"""``StreamragIndex``: a live LlamaIndex index fed page by page while it is being queried.

It wraps :class:`streamrag.LiveIndex` (``VectorStoreIndex`` over ``ChromaVectorStore``, or any
LlamaIndex vector store that stores text) and gives LlamaIndex's faces over it: ``as_retriever()``,
``as_query_engine()`` and ``as_chat_engine()``, which ask the store afresh on every call (so they see
pages as they land) and report coverage in their response metadata.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Iterable
from pathlib import Path
from typing import Any

import anyio.to_thread
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.schema import Document
from llama_index.core.vector_stores.types import BasePydanticVectorStore

from .._index import DEFAULT_COLLECTION, LiveIndex, PageUpdate
from .._models import Coverage
from .._store import StoreSpec
from .engines import LiveChatEngine, LiveQueryEngine, LiveRetriever
from .reader import page_event

__all__ = ["StreamragIndex"]


class StreamragIndex:
    """A live index of page Documents (from :class:`~streamrag.llama_index.StreamragReader`).

    ``store``: directory of the embedded Chroma (chunks and the page ledger), or a Chroma server URL
    ``http://host:port`` (or a :class:`~streamrag._store.StoreSpec` with headers, tenant, database)
    shared by many processes; ``vector_store``: any
    LlamaIndex vector store that stores text, to hold the chunks instead (the page ledger stays in
    ``store``); ``live``: an existing :class:`streamrag.LiveIndex` to wrap. ``llm``: the default LLM
    of the engines (``None``: extractive answers, each sentence with its page).
    """

    def __init__(
        self,
        store: str | Path | StoreSpec | None = None,
        *,
        live: LiveIndex | None = None,
        vector_store: BasePydanticVectorStore | None = None,
        embed_model: BaseEmbedding | str | None = None,
        collection: str = DEFAULT_COLLECTION,
        chroma_client: Any = None,
        llm: Any = None,
        similarity_top_k: int = 5,
    ) -> None:
        self.live = live or LiveIndex(
            store,
            collection=collection,
            embed_model=embed_model,
            chroma_client=chroma_client,
            vector_store=vector_store,
        )
        self.custom_store = vector_store
        if vector_store is not None and live is not None:
            if not vector_store.stores_text:
                raise ValueError(f"{type(vector_store).__name__} does not store text; a live index needs one that does")
            self.live.vector_store = vector_store
            self.live.index = self.live.vector_index(vector_store)
        self.llm = llm
        self.similarity_top_k = similarity_top_k
        self._doc_ids: dict[str, None] = {}

    @classmethod
    def from_documents(cls, documents: Iterable[Document], **kwargs: Any) -> StreamragIndex:
        """An index holding ``documents`` (fed as they are iterated)."""
        index = cls(**kwargs)
        index.feed(documents)
        return index

    @property
    def vector_store(self) -> BasePydanticVectorStore:
        return self.live.vector_store

    @property
    def doc_ids(self) -> list[str]:
        """The documents fed through this object, in the order they first arrived."""
        return list(self._doc_ids)

    # -- feeding ---------------------------------------------------------------------------

    def insert(self, document: Document) -> PageUpdate:
        """Index one page Document now (an already indexed, unchanged page is a no-op)."""
        event = page_event(document)
        self._doc_ids.setdefault(event.doc_id)
        return self.live.add_page(event)

    async def ainsert(self, document: Document) -> PageUpdate:
        return await anyio.to_thread.run_sync(self.insert, document)

    def feed(self, documents: Iterable[Document]) -> list[Coverage]:
        """Index each Document as it is iterated (e.g. ``reader.lazy_load_data(...)``), then mark
        the documents seen as finished; returns their coverage."""
        seen: dict[str, None] = {}
        for document in documents:
            seen.setdefault(self.insert(document).event.doc_id)
        return [self.live.finish(doc_id) for doc_id in seen]

    async def afeed(self, documents: AsyncIterable[Document]) -> list[Coverage]:
        """The async face of :meth:`feed` (e.g. ``reader.alazy_load_data(...)``)."""
        seen: dict[str, None] = {}
        async for document in documents:
            seen.setdefault((await self.ainsert(document)).event.doc_id)
        return [await self.live.afinish(doc_id) for doc_id in seen]

    def finish(self, doc_id: str) -> Coverage:
        """Mark a document's stream as ended (complete or not)."""
        return self.live.finish(doc_id)

    def delete_document(self, doc_id: str) -> None:
        """Remove a document's chunks and page records."""
        if self.custom_store is not None and self.live.custom_store is None:  # LiveIndex deletes its own
            self.custom_store.delete(doc_id)
        self.live.delete_document(doc_id)
        self._doc_ids.pop(doc_id, None)

    # -- reading ---------------------------------------------------------------------------

    def coverage(self, doc_id: str | None = None) -> list[Coverage]:
        """Coverage of ``doc_id``, or of every document fed through this object."""
        return [self.live.coverage(d) for d in ([doc_id] if doc_id else self._doc_ids)]

    def as_retriever(self, *, doc_id: str | None = None, similarity_top_k: int | None = None) -> LiveRetriever:
        """A retriever over the live store (one document, or all); see :class:`LiveRetriever`."""
        return LiveRetriever(self, doc_id=doc_id, top_k=similarity_top_k or self.similarity_top_k)

    def as_query_engine(
        self,
        *,
        doc_id: str | None = None,
        llm: Any = None,
        streaming: bool = False,
        similarity_top_k: int | None = None,
    ) -> LiveQueryEngine:
        """A query engine answering over what is indexed at each query, coverage in ``metadata``.

        With ``streaming=True`` it returns ``StreamingResponse``\\ s: an LLM's tokens as they come (the
        extractive answer arrives as one piece)."""
        retriever = self.as_retriever(doc_id=doc_id, similarity_top_k=similarity_top_k)
        return LiveQueryEngine(retriever, llm=llm if llm is not None else self.llm, streaming=streaming)

    def as_chat_engine(
        self, *, doc_id: str | None = None, llm: Any = None, similarity_top_k: int | None = None
    ) -> LiveChatEngine:
        """A chat engine over the live index: each message is answered over the pages indexed then."""
        return LiveChatEngine(self.as_query_engine(doc_id=doc_id, llm=llm, similarity_top_k=similarity_top_k))
