"""Where the index lives: a Chroma client, the chunk collection, and a ledger of pages received.

The ledger is a second Chroma collection with one record per page (its text, or its error), so the
store alone says which pages of a document are indexed, out of how many — a later process resumes
from it and a finished document is answered at once.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ._models import PageEvent

__all__ = ["PageLedger", "default_store", "open_chroma"]

_LEDGER_VECTOR = [0.0]  # the ledger is looked up by id and metadata only; Chroma wants a vector


def default_store() -> Path:
    """``$STREAMRAG_STORE``, else ``$XDG_DATA_HOME/streamrag`` (``~/.local/share/streamrag``)."""
    if env := os.environ.get("STREAMRAG_STORE"):
        return Path(env)
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "streamrag"


def open_chroma(store: str | Path | None = None) -> Any:
    """An embedded Chroma ``PersistentClient`` under ``store`` (created owner-only), telemetry off."""
    import chromadb
    from chromadb.config import Settings

    path = Path(store) if store is not None else default_store()
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(path), settings=Settings(anonymized_telemetry=False))


def chunk_collection(client: Any, name: str) -> Any:
    """The collection of chunks, compared by cosine distance."""
    return client.get_or_create_collection(name, metadata={"hnsw:space": "cosine"}, embedding_function=None)


class PageLedger:
    """Page records of every document: ``{doc_id}:{page_idx}`` → text or error, and the page total."""

    def __init__(self, client: Any, name: str) -> None:
        self._collection = client.get_or_create_collection(name, embedding_function=None)

    def record(self, events: list[PageEvent]) -> None:
        """Record pages (an upsert: a page recorded again is replaced)."""
        self._collection.upsert(
            ids=[f"{e.doc_id}:{e.page_idx}" for e in events],
            embeddings=[_LEDGER_VECTOR] * len(events),
            documents=[e.text or "" for e in events],
            metadatas=[
                {
                    "doc_id": e.doc_id,
                    "page_idx": e.page_idx,
                    "pages_total": e.pdf_selected_len if e.pdf_selected_len is not None else -1,
                    "error_id": e.error_id or "",
                    "error_message": e.error_message or "",
                }
                for e in events
            ],
        )

    def load(self, doc_id: str) -> list[PageEvent]:
        """Every recorded page of a document, in page order."""
        got = self._collection.get(where={"doc_id": doc_id}, include=["documents", "metadatas"])
        events = []
        for text, meta in zip(got["documents"], got["metadatas"], strict=True):
            total = int(meta["pages_total"])
            events.append(
                PageEvent(
                    doc_id=doc_id,
                    page_idx=int(meta["page_idx"]),
                    pdf_selected_len=None if total < 0 else total,
                    text=None if meta["error_id"] else text,
                    error_id=str(meta["error_id"]) or None,
                    error_message=str(meta["error_message"]) or None,
                )
            )
        return sorted(events, key=lambda e: e.page_idx)

    def documents(self) -> list[str]:
        got = self._collection.get(include=["metadatas"])
        return sorted({str(m["doc_id"]) for m in got["metadatas"]})

    def delete(self, doc_id: str) -> None:
        self._collection.delete(where={"doc_id": doc_id})
