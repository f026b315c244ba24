"""Ingestion workers: many processes (on many machines) filling one store, each document once.

A worker is given documents (PDFs, recordings, folders of them) and a store every worker shares (a
Chroma server). For each document it checks the page ledger (complete: skip), then claims a lease
(:class:`~streamrag._store.LeaseTable`): the winner streams the document, renewing its lease while
it works; the others move on to other documents and come back to this one only if the lease
expires (its worker died) — then one of them takes it over and resumes from the ledger, the pages
already recorded being duplicates. Within a worker, ``concurrency`` documents stream at once, and
their clients share one :class:`~streamrag._retry.RateGate`, so a 429 ``Retry-After`` holds back
every upload and stream of the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from ._exceptions import StreamragError
from ._index import DEFAULT_COLLECTION, LiveIndex
from ._retry import RateGate
from ._sources import document_id
from ._store import Lease, LeaseTable

__all__ = ["Job", "Worker", "jobs_of", "worker_name"]


@dataclass(frozen=True)
class Job:
    """A document to ingest: its file (PDF or ``stream.json``) and its document id."""

    path: Path
    doc_id: str


def _doc_id_of(path: Path) -> str:
    """The id the sources give this file (a recording: the PDF beside it, else the recording)."""
    if path.suffix.lower() == ".json":
        pdfs = sorted(path.parent.glob("*.pdf"))
        return document_id(pdfs[0].read_bytes() if len(pdfs) == 1 else path.read_bytes())
    return document_id(path.read_bytes())


def jobs_of(paths: list[Path]) -> list[Job]:
    """One job per distinct document among ``paths`` (the same PDF named twice is one job)."""
    jobs: dict[str, Job] = {}
    for path in paths:
        if not path.is_file():
            raise SystemExit(f"streamrag: no such file: {path}")
        doc_id = _doc_id_of(path)
        jobs.setdefault(doc_id, Job(path, doc_id))
    return list(jobs.values())


def worker_name() -> str:
    """This worker's name in leases: host, process id and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


OpenSource = Callable[[Path, RateGate], contextlib.AbstractAsyncContextManager[Any]]


class Worker:
    """Ingests ``jobs`` into ``index``, claiming each through ``leases``; prints progress to ``out``.

    ``leases=None`` (an embedded store, which one process has to itself) claims nothing: a lease
    left by a killed earlier run would only delay the resume.

    ``open_source(path, gate)`` is an async context manager giving the document's page source
    (sharing ``gate``). ``concurrency`` documents are streamed at once.
    """

    def __init__(
        self,
        index: LiveIndex,
        leases: LeaseTable | None,
        open_source: OpenSource,
        *,
        name: str | None = None,
        concurrency: int = 1,
        out: TextIO | None = None,
        err: TextIO | None = None,
        started: float | None = None,
    ) -> None:
        self.index = index
        self.leases = leases
        self.open_source = open_source
        self.name = name or worker_name()
        self.concurrency = max(1, concurrency)
        self.out = out
        self.err = err or out
        self.gate = RateGate()
        self.started = time.monotonic() if started is None else started
        self.failed = 0
        self._pending: dict[str, Job] = {}
        self._busy: set[str] = set()
        self._pick = asyncio.Lock()
        self.ttl = leases.ttl if leases is not None else 30.0

    def say(self, text: str) -> None:
        if self.out is not None:
            print(text, file=self.out, flush=True)

    async def run(self, jobs: list[Job]) -> int:
        """Ingest every job (or see another worker finish it); 1 if any document failed, else 0."""
        self._pending = {job.doc_id: job for job in jobs}
        await asyncio.gather(*(self._loop() for _ in range(self.concurrency)))
        return 1 if self.failed else 0

    async def _loop(self) -> None:
        while (picked := await self._next()) is not None:
            job, lease = picked
            try:
                await self._ingest(job, lease)
            finally:
                self._busy.discard(job.doc_id)

    async def _next(self) -> tuple[Job, Lease] | None:
        """The next document this worker wins a lease on; ``None`` when none is left to do. While
        other workers hold every remaining document, waits (polling the store) for one to finish
        or for its lease to expire."""
        async with self._pick:
            while True:
                wake = time.time() + self.ttl
                for job in list(self._pending.values()):
                    if job.doc_id in self._busy:
                        continue
                    coverage = await asyncio.to_thread(self.index.stored_coverage, job.doc_id)
                    if coverage.complete:
                        self._pending.pop(job.doc_id)
                        self.say(f"{job.path}: already complete ({job.doc_id})")
                        continue
                    if self.leases is None:
                        self._pending.pop(job.doc_id)
                        self._busy.add(job.doc_id)
                        return job, Lease(job.doc_id, 0, self.name, float("inf"))
                    claim = await asyncio.to_thread(self.leases.claim, job.doc_id, self.name)
                    if claim.lease is not None:
                        self._pending.pop(job.doc_id)
                        self._busy.add(job.doc_id)
                        return job, claim.lease
                    if claim.state == "done":  # finished by another worker, though not complete
                        self._pending.pop(job.doc_id)
                        self.say(f"{job.path}: finished by {claim.owner} ({job.doc_id})")
                        continue
                    wake = min(wake, claim.expires)
                if not any(d not in self._busy for d in self._pending):
                    return None
                # every remaining document is leased by another worker: look again when the first
                # lease may expire, and meanwhile every second (a document may complete sooner)
                await asyncio.sleep(min(1.0, max(0.05, wake - time.time())))

    @contextlib.asynccontextmanager
    async def _renewing(self, lease: Lease) -> AsyncIterator[list[Lease | None]]:
        """Keep ``lease`` alive while the block runs; ``held[0]`` turns ``None`` if it was lost."""
        held: list[Lease | None] = [lease]
        leases = self.leases
        if leases is None:
            yield held
            return

        async def renew() -> None:
            assert leases is not None
            while (current := held[0]) is not None:
                await asyncio.sleep(leases.ttl / 3)
                held[0] = await asyncio.to_thread(leases.renew, current)

        task = asyncio.create_task(renew())
        try:
            yield held
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _ingest(self, job: Job, lease: Lease) -> None:
        path, doc_id = job.path, job.doc_id
        if self.leases is not None:
            self.say(f"{path}: claimed by {self.name} (lease {lease.gen}) ({doc_id})")
        await asyncio.to_thread(self.index.forget, doc_id)  # another worker may have written some pages
        done = False
        try:
            async with self._renewing(lease) as held, self.open_source(path, self.gate) as source:
                async for event in source:
                    if held[0] is None:
                        self.say(f"{path}: lease lost to another worker; stopping ({doc_id})")
                        return
                    update = await self.index.aadd_page(event)
                    state = "duplicate" if update.duplicate else "indexed"
                    total = event.pdf_selected_len or "?"
                    self.say(f"{path}: page {event.page_idx}/{total} {state}")
                coverage = await self.index.afinish(doc_id)
                done = True
                self.say(f"{path}: {coverage.describe()} ({doc_id})")
        except StreamragError as exc:
            self.failed += 1
            if self.err is not None:
                print(f"{path}: {type(exc).__name__}: {exc}", file=self.err, flush=True)
        finally:
            if self.leases is not None:
                with contextlib.suppress(Exception):  # an unreleased lease simply expires
                    await asyncio.to_thread(self.leases.release, lease, done=done)


def lease_table(client: Any, collection: str = DEFAULT_COLLECTION, ttl: float = 30.0) -> LeaseTable:
    """The leases of ``collection``'s documents (collection ``{collection}-leases``)."""
    return LeaseTable(client, f"{collection}-leases", ttl=ttl)
