"""Where the index lives: a Chroma client, the chunk collection, a ledger of pages received, the
leases that let several workers share one store, and the lock that keeps searches and deletes apart.

``store`` is a directory (an embedded Chroma ``PersistentClient``, one process at a time) or the URL
of a Chroma server (``http://host:port``, ``https://…``; ``HttpClient``), optionally with
``?tenant=…&database=…``. Headers for the server (e.g. ``Authorization: Bearer …``) come from
:class:`StoreSpec`, ``STREAMRAG_STORE_HEADERS`` (``Name: value`` pairs, one per line or ``;``-separated)
or ``STREAMRAG_STORE_TOKEN`` (sent as ``Authorization: Bearer``); their values never appear in reprs
or messages. Telemetry is off either way.

The ledger is a second Chroma collection with one record per page (its text, or its error), so the
store alone says which pages of a document are indexed, out of how many — a later process resumes
from it and a finished document is answered at once. A page's text is a metadata value, not a Chroma
document: Chroma full-text-indexes documents, which the ledger is never searched by, and that index
was half the cost of recording a page (``benchmarks/README.md``). Records written as documents by
earlier versions are read as before.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

from ._models import PageEvent

__all__ = [
    "DEFAULT_COLLECTION",
    "Claim",
    "Lease",
    "LeaseTable",
    "PageLedger",
    "SearchLock",
    "StoreSpec",
    "default_store",
    "is_server",
    "open_chroma",
]

DEFAULT_COLLECTION = "streamrag"  # chunks; the page ledger is "<name>-pages"
_LEDGER_VECTOR = [0.0]  # the ledger is looked up by id and metadata only; Chroma wants a vector
# Chroma keeps a collection's records in its write log until its vector index is saved, every
# sync_threshold records (default 1000), and each write costs more the longer that log is: saving
# every 200 cut the CPU of writing chunks by a quarter and of deletes by two thirds (benchmarks/README.md)
_HNSW = {"hnsw:sync_threshold": 200}


def default_store() -> Path:
    """``$STREAMRAG_STORE``, else ``$XDG_DATA_HOME/streamrag`` (``~/.local/share/streamrag``)."""
    if env := os.environ.get("STREAMRAG_STORE"):
        return Path(env)
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "streamrag"


def is_server(store: object) -> bool:
    """Whether ``store`` names a Chroma server (an ``http(s)://`` URL) rather than a directory."""
    if isinstance(store, StoreSpec):
        return store.is_server
    return isinstance(store, str) and store.startswith(("http://", "https://"))


def parse_headers(lines: str | list[str] | None) -> dict[str, str]:
    """``"Name: value"`` pairs (a list, or one string of lines or ``;``-separated pairs) as a dict."""
    if not lines:
        return {}
    items = lines if isinstance(lines, list) else [p for chunk in lines.splitlines() for p in chunk.split(";")]
    headers = {}
    for item in items:
        if not item.strip():
            continue
        name, sep, value = item.partition(":")
        if not sep or not name.strip():
            raise ValueError("a store header must look like 'Name: value'")
        headers[name.strip()] = value.strip()
    return headers


@dataclass(frozen=True)
class StoreSpec:
    """A store: ``location`` is a directory or a Chroma server URL; ``headers``, ``tenant`` and
    ``database`` apply to a server (the URL's ``?tenant=&database=`` and the environment fill in
    what is not given). The repr shows header names, never their values."""

    location: str
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    tenant: str | None = None
    database: str | None = None

    @classmethod
    def of(
        cls,
        store: str | Path | StoreSpec | None,
        *,
        headers: Mapping[str, str] | list[str] | None = None,
        tenant: str | None = None,
        database: str | None = None,
    ) -> StoreSpec:
        if isinstance(store, StoreSpec):
            return store
        location = str(store) if store is not None else str(default_store())
        given = parse_headers(headers) if isinstance(headers, list) else dict(headers or {})
        if location.startswith(("http://", "https://")):
            env = parse_headers(os.environ.get("STREAMRAG_STORE_HEADERS"))
            if token := os.environ.get("STREAMRAG_STORE_TOKEN"):
                env.setdefault("Authorization", f"Bearer {token}")
            given = {**env, **given}
            query = parse_qs(urlsplit(location).query)
            tenant = tenant or next(iter(query.get("tenant", [])), None)
            database = database or next(iter(query.get("database", [])), None)
        return cls(location, given, tenant, database)

    @property
    def is_server(self) -> bool:
        return self.location.startswith(("http://", "https://"))

    def __repr__(self) -> str:
        return f"StoreSpec({self.describe()!r}, headers={sorted(self.headers)!r})"

    def describe(self) -> str:
        """Where the store is, for messages: the server's scheme://host:port (tenant, database) or the path."""
        if not self.is_server:
            return self.location
        url = urlsplit(self.location)
        where = f"{url.scheme}://{url.hostname}:{url.port or (443 if url.scheme == 'https' else 8000)}"
        extra = ", ".join(f"{k} {v}" for k, v in (("tenant", self.tenant), ("database", self.database)) if v)
        return f"{where} ({extra})" if extra else where

    def client(self) -> Any:
        import chromadb
        from chromadb.config import Settings

        settings = Settings(anonymized_telemetry=False)
        if not self.is_server:
            path = Path(self.location)
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
            return chromadb.PersistentClient(path=str(path), settings=settings)
        url = urlsplit(self.location)
        if url.path not in ("", "/"):
            raise ValueError(f"a Chroma server URL has no path: {self.describe()}")
        options: dict[str, Any] = {}
        if self.tenant:
            options["tenant"] = self.tenant
        if self.database:
            options["database"] = self.database
        return chromadb.HttpClient(
            host=url.hostname or "127.0.0.1",
            port=url.port or (443 if url.scheme == "https" else 8000),
            ssl=url.scheme == "https",
            headers=dict(self.headers),
            settings=settings,
            **options,
        )


def open_chroma(store: str | Path | StoreSpec | None = None) -> Any:
    """A Chroma client for ``store``: a ``PersistentClient`` under a directory (created owner-only),
    or an ``HttpClient`` for a server URL; telemetry off."""
    return StoreSpec.of(store).client()


def chunk_collection(client: Any, name: str) -> Any:
    """The collection of chunks, compared by cosine distance."""
    return client.get_or_create_collection(name, metadata={"hnsw:space": "cosine", **_HNSW}, embedding_function=None)


class SearchLock:
    """Searches share it; writes of chunks (inserts and deletes) take it alone, and go first.

    Chroma (1.5, embedded) can fail a filtered search that runs while ids of the filtered set are
    being deleted — ``InternalError: Error finding id``: its metadata and vector segments disagree
    for a moment. Writes are short next to embedding, so searches wait for them only briefly.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._searches = 0
        self._writers = 0  # waiting or writing: new searches wait behind them
        self._writing = False

    @contextmanager
    def searching(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: not self._writers)
            self._searches += 1
        try:
            yield
        finally:
            with self._cond:
                self._searches -= 1
                self._cond.notify_all()

    @contextmanager
    def writing(self) -> Iterator[None]:
        with self._cond:
            self._writers += 1
            self._cond.wait_for(lambda: not self._searches and not self._writing)
            self._writing = True
        try:
            yield
        finally:
            with self._cond:
                self._writing = False
                self._writers -= 1
                self._cond.notify_all()


class PageLedger:
    """Page records of every document: ``{doc_id}:{page_idx}`` → text or error, and the page total."""

    def __init__(self, client: Any, name: str) -> None:
        self._collection = client.get_or_create_collection(name, metadata=_HNSW, embedding_function=None)

    def record(self, events: list[PageEvent]) -> None:
        """Record pages (an upsert: a page recorded again is replaced)."""
        self._collection.upsert(
            ids=[f"{e.doc_id}:{e.page_idx}" for e in events],
            embeddings=[_LEDGER_VECTOR] * len(events),
            metadatas=[
                {
                    "doc_id": e.doc_id,
                    "page_idx": e.page_idx,
                    "pages_total": e.pdf_selected_len if e.pdf_selected_len is not None else -1,
                    "error_id": e.error_id or "",
                    "error_message": e.error_message or "",
                    "text": e.text or "",
                }
                for e in events
            ],
        )

    def load(self, doc_id: str) -> list[PageEvent]:
        """Every recorded page of a document, in page order."""
        got = self._collection.get(where={"doc_id": doc_id}, include=["documents", "metadatas"])
        events = []
        for document, meta in zip(got["documents"], got["metadatas"], strict=True):
            total = int(meta["pages_total"])
            text = str(meta["text"]) if "text" in meta else document or ""  # a document: an older record
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


# -- leases: which worker is ingesting which document ---------------------------------------------


@dataclass(frozen=True)
class Lease:
    """A worker's claim on a document: generation ``gen`` of its lease records, held until ``expires``."""

    doc_id: str
    gen: int
    owner: str
    expires: float

    @property
    def record_id(self) -> str:
        return f"{self.doc_id}#{self.gen}"


@dataclass(frozen=True)
class Claim:
    """The outcome of :meth:`LeaseTable.claim`: a ``lease`` when won, else why not and who holds it."""

    lease: Lease | None
    state: Literal["won", "held", "done"]
    owner: str = ""
    expires: float = 0.0


class LeaseTable:
    """Leases on documents, in a Chroma collection shared by every worker of a store.

    Each document has numbered lease records ``{doc_id}#{gen}`` (owner, expiry, state ``held`` /
    ``done`` / ``released``). To claim, a worker reads the newest record; if there is none, or it
    has expired, was released, or is an old ``done``, the worker *creates* record ``gen + 1`` with
    ``collection.add`` — which never overwrites an existing id, so of two racing workers exactly one
    record lands — and reads it back: the lease is won only if the record's owner is this worker.
    The holder renews its own record (nobody else writes it) and finds out it lost the lease if a
    record ``gen + 1`` exists. Expiry is wall-clock time: workers on several machines need clocks
    within a small fraction of ``ttl`` of each other.
    """

    def __init__(self, client: Any, name: str, *, ttl: float = 30.0, clock: Callable[[], float] = time.time) -> None:
        self._collection = client.get_or_create_collection(name, embedding_function=None)
        self.ttl = ttl
        self._clock = clock

    def _latest(self, doc_id: str) -> tuple[int, dict[str, Any]] | None:
        got = self._collection.get(where={"doc_id": doc_id}, include=["metadatas"])
        records = [(int(m["gen"]), dict(m)) for m in got["metadatas"]]
        return max(records, key=lambda r: r[0]) if records else None

    def claim(self, doc_id: str, owner: str) -> Claim:
        now = self._clock()
        latest = self._latest(doc_id)
        if latest is not None:
            _, meta = latest
            live = float(meta["expires"]) > now
            if live and meta["state"] == "held" and meta["owner"] != owner:
                return Claim(None, "held", str(meta["owner"]), float(meta["expires"]))
            if live and meta["state"] == "done":
                return Claim(None, "done", str(meta["owner"]), float(meta["expires"]))
        lease = Lease(doc_id, (latest[0] if latest else 0) + 1, owner, now + self.ttl)
        self._collection.add(  # create-if-absent: of racing workers, one record lands
            ids=[lease.record_id], embeddings=[_LEDGER_VECTOR], metadatas=[self._meta(lease, "held")]
        )
        got = self._collection.get(ids=[lease.record_id], include=["metadatas"])
        meta = got["metadatas"][0]
        if meta["owner"] == owner:
            return Claim(lease, "won", owner, lease.expires)
        return Claim(None, "held", str(meta["owner"]), float(meta["expires"]))

    def renew(self, lease: Lease) -> Lease | None:
        """The lease with a new expiry, or ``None`` if another worker has taken the document over."""
        if self._collection.get(ids=[f"{lease.doc_id}#{lease.gen + 1}"], include=[])["ids"]:
            return None
        renewed = Lease(lease.doc_id, lease.gen, lease.owner, self._clock() + self.ttl)
        self._collection.update(ids=[lease.record_id], metadatas=[self._meta(renewed, "held")])
        return renewed

    def release(self, lease: Lease, *, done: bool) -> None:
        """Give the document up: ``done`` (others skip it for ``ttl``) or not (anyone may take it now)."""
        if done:
            final = Lease(lease.doc_id, lease.gen, lease.owner, self._clock() + self.ttl)
            self._collection.update(ids=[lease.record_id], metadatas=[self._meta(final, "done")])
        else:
            self._collection.update(ids=[lease.record_id], metadatas=[self._meta(lease, "released")])

    def history(self, doc_id: str) -> list[dict[str, Any]]:
        """Every lease record of a document, oldest first (for tests and operators)."""
        got = self._collection.get(where={"doc_id": doc_id}, include=["metadatas"])
        return sorted((dict(m) for m in got["metadatas"]), key=lambda m: int(m["gen"]))

    def delete(self, doc_id: str) -> None:
        self._collection.delete(where={"doc_id": doc_id})

    @staticmethod
    def _meta(lease: Lease, state: str) -> dict[str, Any]:
        return {
            "doc_id": lease.doc_id,
            "gen": lease.gen,
            "owner": lease.owner,
            "expires": lease.expires,
            "state": state,
        }
