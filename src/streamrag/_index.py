"""The live index: pages in (any order, any time), chunks embedded and written to Chroma at once,
queries answered over whatever is indexed, with coverage per document.

Built on llama-index-core: chunks are ``TextNode``s, embedded by a ``BaseEmbedding`` and written
through ``VectorStoreIndex`` into a ``ChromaVectorStore`` (:class:`~streamrag._nodes.ChunkStore`).
Writes are serialised; queries run alongside them and always see the latest writes (each query asks
the store afresh).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio.to_thread
from llama_index.core import VectorStoreIndex
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.schema import (
    MetadataMode,
    NodeWithScore,
    QueryBundle,
    TextNode,
)
from llama_index.core.vector_stores.types import (
    BasePydanticVectorStore,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
)

from ._chunker import Chunk, StreamChunker
from ._embedding import load_embedder, token_counter, window, window_splitter
from ._models import Citation, Coverage, PageEvent
from ._nodes import DOC_KEY, ChunkStore, chunk_of, node_of, stored_node
from ._store import DEFAULT_COLLECTION, PageLedger, SearchLock, StoreSpec, chunk_collection, is_server, open_chroma

__all__ = ["DEFAULT_COLLECTION", "LiveIndex", "PageUpdate"]

log = logging.getLogger("streamrag.index")


@dataclass(frozen=True)
class PageUpdate:
    """What indexing one page changed."""

    event: PageEvent
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    duplicate: bool = False


@dataclass
class _Doc:
    chunker: StreamChunker
    pages: dict[int, PageEvent] = field(default_factory=dict)
    total: int | None = None
    finished: bool = False

    def coverage(self, doc_id: str) -> Coverage:
        seen = sorted(self.pages)
        complete = self.total is not None and all(i in self.pages for i in range(1, self.total + 1))
        return Coverage(
            doc_id=doc_id,
            pages_seen=seen,
            pages_without_content=[p for p in seen if not self.pages[p].has_content],
            pages_total=self.total,
            complete=complete,
            finished=complete or self.finished,
        )


class LiveIndex:
    """A Chroma-backed index that grows page by page while it is being queried.

    ``store`` is a directory for an embedded Chroma (default: :func:`~streamrag._store.default_store`),
    or a Chroma server URL ``http://host:port`` (or a :class:`~streamrag._store.StoreSpec` with
    headers, tenant, database) that several processes and machines share: then coverage is read
    from the store on every call, and a query cites only pages whose records have landed.
    ``vector_store``: any LlamaIndex vector store that stores text, to hold the chunks instead of
    Chroma; the page ledger stays in the Chroma ``store`` (see ``docs/scaling.md`` for what that
    store must support);
    ``max_page_chars`` caps one page's text (a longer one is recorded as error ``page_too_large``);
    ``embed_model`` a LlamaIndex embedding or a sentence-transformers model name/path (default: the
    packaged all-MiniLM-L6-v2); ``chunk_tokens`` the chunk budget (default: the model's window);
    ``section_context=False`` keeps each chunk's section path out of what is embedded (it stays in
    the metadata and citations): on PDFs whose headings come from the local converter the path costs
    2–3 MRR points (``benchmarks/README.md``); on Mathpix's headings it is neutral. Keep one setting
    per store: chunks already written keep the vectors they were written with.
    """

    def __init__(
        self,
        store: str | Path | StoreSpec | None = None,
        *,
        collection: str = DEFAULT_COLLECTION,
        embed_model: BaseEmbedding | str | None = None,
        chroma_client: Any = None,
        chunk_tokens: int | None = None,
        max_page_chars: int = 1_000_000,
        vector_store: BasePydanticVectorStore | None = None,
        shared: bool | None = None,
        section_context: bool = True,
    ) -> None:
        self.embed_model = embed_model if isinstance(embed_model, BaseEmbedding) else load_embedder(embed_model)
        client = chroma_client if chroma_client is not None else open_chroma(store)
        # other processes write to a server: read coverage from the store, not from this process's memory
        self.shared = is_server(store) if shared is None else shared
        self._collection = chunk_collection(client, collection)
        if vector_store is not None and not vector_store.stores_text:
            raise ValueError(f"{type(vector_store).__name__} does not store text; a live index needs one that does")
        self.custom_store = vector_store
        self.vector_store: BasePydanticVectorStore = vector_store or ChunkStore(self._collection)
        self._count = token_counter(self.embed_model)
        self.chunk_tokens = chunk_tokens or window(self.embed_model) - 2  # [CLS] and [SEP]
        self.section_context = section_context
        self.index = self.vector_index(self.vector_store)
        self._ledger = PageLedger(client, f"{collection}-pages")
        self.max_page_chars = max_page_chars  # a longer page is bad input: recorded as a page error
        self._docs: dict[str, _Doc] = {}
        self._write_lock = threading.RLock()  # one writer at a time
        self._state_lock = threading.RLock()  # coverage snapshots vs. their updates
        self._search_lock = SearchLock()  # searches vs. deletes (a Chroma race)

    # -- writing ---------------------------------------------------------------------------

    def _doc(self, doc_id: str) -> _Doc:
        """A document's state, loaded from the store on first use (resume after a restart)."""
        with self._state_lock:
            if doc_id in self._docs:
                return self._docs[doc_id]
        with self._write_lock:  # one loader, and no write to the store while it reconciles
            with self._state_lock:
                if doc_id in self._docs:
                    return self._docs[doc_id]
            doc = _Doc(StreamChunker(doc_id, self._count, self.chunk_tokens, section_context=self.section_context))
            for event in self._ledger.load(doc_id):
                doc.chunker.add(event.page_idx, event.text)
                doc.pages[event.page_idx] = event
                doc.total = event.pdf_selected_len or doc.total
            if doc.pages and self.custom_store is None:
                self._reconcile(doc_id, doc.chunker.all_chunks())
            with self._state_lock:
                return self._docs.setdefault(doc_id, doc)

    def _reconcile(self, doc_id: str, wanted: list[Chunk]) -> None:
        """Make the store hold exactly the chunks the recorded pages make: drop chunks written for a
        page whose record never landed (a crash between the two), and write the ones it lacks (pages
        recorded by a version or settings that chunked them differently; a crash after a chunk was
        replaced but before the replacing page's record landed)."""
        stored = set(self._collection.get(where={DOC_KEY: doc_id}, include=[])["ids"])
        orphans = stored - {c.chunk_id for c in wanted}
        missing = self._embedded([c for c in wanted if c.chunk_id not in stored])
        if orphans or missing:
            log.info("document %s: %d chunks written, %d orphans removed", doc_id, len(missing), len(orphans))
            with self._search_lock.writing():
                if missing:
                    self.index.insert_nodes(missing)
                if orphans:
                    self._collection.delete(ids=sorted(orphans))

    def _embedded(self, chunks: list[Chunk]) -> list[TextNode]:
        """The chunks' nodes with their embeddings set, embedded shortest first: the model pads each
        batch to its longest input, so batches of like lengths waste no work on padding (chunks range
        from a line to the window). The chunker's word-piece counts rank them (ranking by characters
        padded 14 % more)."""
        nodes = [node_of(c, self.section_context) for c in chunks]
        if nodes:
            texts = [n.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes]
            sizes = [c.tokens for c in chunks] if all(c.tokens for c in chunks) else self._count(texts)
            order = sorted(range(len(texts)), key=sizes.__getitem__)
            vectors = self.embed_model.get_text_embedding_batch([texts[i] for i in order])
            for i, vector in zip(order, vectors, strict=True):
                nodes[i].embedding = vector
        return nodes

    def add_page(self, event: PageEvent) -> PageUpdate:
        """Chunk, embed and write one page; a page already indexed with the same text is a no-op."""
        return self.add_pages([event])[0]

    def add_pages(self, events: Sequence[PageEvent]) -> list[PageUpdate]:
        """Index several pages with one embedding batch and one write (pages that queued up while
        the previous ones were being embedded). Chunks made and replaced within the batch are
        never written; coverage moves only once everything is in the store."""
        with self._write_lock:
            updates: list[PageUpdate] = []
            to_add: dict[str, Chunk] = {}
            to_delete: dict[str, Chunk] = {}
            landed: list[tuple[_Doc, PageEvent]] = []
            pending: dict[tuple[str, int], PageEvent] = {}
            for event in map(self._admit, events):
                doc = self._doc(event.doc_id)
                old = pending.get((event.doc_id, event.page_idx)) or doc.pages.get(event.page_idx)
                if old is not None and old.text == event.text and old.error_id == event.error_id:
                    updates.append(PageUpdate(event, duplicate=True))
                    continue
                new, stale = doc.chunker.add(event.page_idx, event.text if event.has_content else None)
                for chunk in new:  # a chunk already stored and still wanted stays as it is
                    if to_delete.pop(chunk.chunk_id, None) is None:
                        to_add[chunk.chunk_id] = chunk
                for chunk in stale:  # a chunk made earlier in this batch is simply never written
                    if to_add.pop(chunk.chunk_id, None) is None:
                        to_delete[chunk.chunk_id] = chunk
                pending[(event.doc_id, event.page_idx)] = event
                landed.append((doc, event))
                updates.append(PageUpdate(event, [c.chunk_id for c in new], [c.chunk_id for c in stale]))
            # embedding is slow: done before the lock that queries wait on
            nodes = self._embedded(list(to_add.values()))
            # a query reads coverage under this lock after its search, so whatever it found is covered
            with self._state_lock, self._search_lock.writing():
                if nodes:
                    self.index.insert_nodes(nodes)  # embeddings set: written as they are
                if to_delete:
                    self.vector_store.delete_nodes(list(to_delete))
                if landed:
                    self._ledger.record([event for _, event in landed])
                for doc, event in landed:
                    doc.pages[event.page_idx] = event
                    if event.pdf_selected_len is not None:
                        doc.total = event.pdf_selected_len
            return updates

    def _admit(self, event: PageEvent) -> PageEvent:
        """A page too long to be a real page (megabytes of text) becomes a recorded page error."""
        if event.text is None or len(event.text) <= self.max_page_chars:
            return event
        message = f"page text of {len(event.text)} characters is over the limit of {self.max_page_chars}"
        log.warning("document %s, page %d: %s; not indexed", event.doc_id, event.page_idx, message)
        return event.model_copy(update={"text": None, "error_id": "page_too_large", "error_message": message})

    def finish(self, doc_id: str) -> Coverage:
        """Mark a document's stream as ended (complete or not); returns its coverage."""
        doc = self._doc(doc_id)
        with self._state_lock:
            doc.finished = True
            return doc.coverage(doc_id)

    def delete_document(self, doc_id: str) -> None:
        """Remove a document's chunks and page records; other documents are untouched."""
        with self._write_lock:
            if self.custom_store is not None:
                self.custom_store.delete(doc_id)
            with self._search_lock.writing():
                self._collection.delete(where={DOC_KEY: doc_id})
            self._ledger.delete(doc_id)
            with self._state_lock:
                self._docs.pop(doc_id, None)

    # -- reading ---------------------------------------------------------------------------

    def coverage(self, doc_id: str) -> Coverage:
        if self.shared:
            return self.stored_coverage(doc_id)
        doc = self._doc(doc_id)
        with self._state_lock:
            return doc.coverage(doc_id)

    def stored_coverage(self, doc_id: str) -> Coverage:
        """A document's coverage as the store records it now (whoever wrote it, in any process)."""
        events = {e.page_idx: e for e in self._ledger.load(doc_id)}
        total = next((e.pdf_selected_len for e in events.values() if e.pdf_selected_len is not None), None)
        complete = total is not None and all(i in events for i in range(1, total + 1))
        with self._state_lock:
            local = self._docs.get(doc_id)
            finished = complete or (local is not None and local.finished)
        return Coverage(
            doc_id=doc_id,
            pages_seen=sorted(events),
            pages_without_content=[p for p, e in sorted(events.items()) if not e.has_content],
            pages_total=total,
            complete=complete,
            finished=finished,
        )

    def documents(self) -> list[str]:
        """Every document with pages in the store."""
        return self._ledger.documents()

    def coverages(self, doc_ids: Sequence[str] | None = None) -> dict[str, Coverage]:
        """Coverage of each of ``doc_ids`` (default: every document in the store)."""
        return {d: self.coverage(d) for d in (self.documents() if doc_ids is None else doc_ids)}

    def forget(self, doc_id: str) -> None:
        """Drop what this process remembers of a document, so its next use reloads it from the store
        (before taking over a document another process was writing)."""
        with self._write_lock, self._state_lock:
            self._docs.pop(doc_id, None)

    def page_texts(self, doc_id: str) -> dict[int, str]:
        """Each indexed page's text (empty for pages without content)."""
        doc = self._doc(doc_id)
        with self._state_lock:
            return {p: e.text or "" for p, e in sorted(doc.pages.items())}

    def chunks(self, doc_id: str) -> list[Chunk]:
        """Every chunk of a document as stored in Chroma, in document order."""
        got = self._collection.get(where={DOC_KEY: doc_id}, include=["documents", "metadatas"])
        chunks = [
            chunk_of(stored_node(i, t, m), doc_id)
            for i, t, m in zip(got["ids"], got["documents"], got["metadatas"], strict=True)
        ]
        return sorted(chunks, key=lambda c: c.pieces[0])

    def retrieve(
        self, question: str | QueryBundle, doc_id: str | Sequence[str] | None = None, top_k: int = 5
    ) -> tuple[list[Citation], Coverage | None]:
        """The ``top_k`` chunks nearest the question — in one document (``doc_id`` a string), several
        (a list) or all (``None``) — and the coverage of that one document (``None`` otherwise; see
        :meth:`coverages`).

        Coverage is read after the search, under the lock writers hold while committing a page,
        so every cited page is within it. On a shared store (a server other processes write to) it
        is read from the store after the search, and a chunk whose pages are not all recorded yet
        (its writer is between writing chunks and recording pages) is left out.
        """
        filters = None
        if isinstance(doc_id, str):
            filters = MetadataFilters(filters=[MetadataFilter(key=DOC_KEY, value=doc_id)])
        elif doc_id is not None:
            ids = list(doc_id)
            filters = MetadataFilters(filters=[MetadataFilter(key=DOC_KEY, value=ids, operator=FilterOperator.IN)])
        retriever = self.index.as_retriever(similarity_top_k=top_k, filters=filters)
        hits: list[NodeWithScore] = self._search(retriever, question)
        # a chunk deleted (replaced) while the search ran comes back without its metadata: skip it
        citations = [self._citation(h) for h in hits if "pieces" in h.node.metadata]
        if self.shared:
            wanted = {c.doc_id for c in citations} | ({doc_id} if isinstance(doc_id, str) else set())
            seen = {d: self.stored_coverage(d) for d in wanted}
            citations = [c for c in citations if set(c.pages) <= set(seen[c.doc_id].pages_seen)]
            return citations, seen[doc_id] if isinstance(doc_id, str) else None
        with self._state_lock:
            coverage = self._docs[doc_id].coverage(doc_id) if isinstance(doc_id, str) and doc_id in self._docs else None
        return citations, coverage

    def _search(self, retriever: Any, question: str | QueryBundle) -> list[NodeWithScore]:
        """The search, embedded first and then run under the search lock; on a shared server,
        retried a few times past Chroma's transient internal error while another client's writes
        are being compacted ("Nothing found on disk")."""
        bundle = self.query_bundle(question)
        for attempt in range(5):
            try:
                with self._search_lock.searching():
                    hits: list[NodeWithScore] = retriever.retrieve(bundle)
                return hits
            except Exception as exc:
                if not self.shared or attempt == 4 or type(exc).__name__ != "InternalError":
                    raise
                log.debug("search failed (%s); trying again", exc)
                time.sleep(0.05 * 2**attempt)
        raise AssertionError("unreachable")

    def vector_index(self, vector_store: BasePydanticVectorStore) -> VectorStoreIndex:
        """LlamaIndex's index over ``vector_store``; a ``Document`` inserted into it directly is split
        to the embedder's window (not by LlamaIndex's default 1024-GPT-token splitter)."""
        splitter = window_splitter(self._count, self.chunk_tokens)
        return VectorStoreIndex.from_vector_store(vector_store, self.embed_model, transformations=[splitter])

    def query_bundle(self, question: str | QueryBundle) -> QueryBundle:
        """A question with its embedding, to reuse across repeated live queries (one already
        embedded, e.g. while the index was being built, is used as it is)."""
        if isinstance(question, QueryBundle):
            if question.embedding is not None:
                return question
            question = question.query_str
        return QueryBundle(question, embedding=self.embed_model.get_query_embedding(question))

    @staticmethod
    def _citation(hit: NodeWithScore) -> Citation:
        chunk = chunk_of(hit.node)
        score = hit.score or 0.0
        cosine = 1.0 + math.log(score) if score > 0 else -1.0  # Chroma's score is exp(-cosine distance)
        return Citation(
            page=chunk.page,
            pages=chunk.pages,
            text=chunk.text,
            score=round(cosine, 4),
            doc_id=chunk.doc_id,
            chunk_id=hit.node.node_id,
            pieces=list(chunk.pieces),
            prefix_len=len(chunk.prefix),
        )

    # -- async faces -----------------------------------------------------------------------

    async def aadd_page(self, event: PageEvent) -> PageUpdate:
        return await anyio.to_thread.run_sync(self.add_page, event)

    async def aadd_pages(self, events: Sequence[PageEvent]) -> list[PageUpdate]:
        return await anyio.to_thread.run_sync(self.add_pages, events)

    async def aretrieve(
        self, question: str | QueryBundle, doc_id: str | Sequence[str] | None = None, top_k: int = 5
    ) -> tuple[list[Citation], Coverage | None]:
        return await anyio.to_thread.run_sync(self.retrieve, question, doc_id, top_k)

    async def acoverage(self, doc_id: str) -> Coverage:
        return await anyio.to_thread.run_sync(self.coverage, doc_id)

    async def afinish(self, doc_id: str) -> Coverage:
        return await anyio.to_thread.run_sync(self.finish, doc_id)
