"""Jobs of the server: one uploaded PDF, its status, and its page messages as they are produced.

A job's pages are kept in arrival order (what ``/stream`` replays) and by ``page_idx`` (what
``.mmd`` joins). Readers follow a job with :meth:`Job.follow`, which yields the pages produced so
far and then each new one, and ends when the job is finished, failed or forgotten.

Status: ``loaded`` (opened, pages counted) → ``split`` (producing) → ``completed`` or ``error``.
``received`` is never seen: a job exists only once its PDF opened, since upload errors are
answered by the POST itself.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from typing import Literal

import anyio

from .._models import PageMessage, PdfStatus
from .._stream import error_body, join_pages

__all__ = ["PDF_ID_PATTERN", "Job", "JobStore", "Status", "new_pdf_id"]

Status = Literal["received", "loaded", "split", "completed", "error"]

#: Ids this server hands out: ``YYYY_MM_DD_`` and 20 random hex digits. Anything else is unknown.
PDF_ID_PATTERN = re.compile(r"\d{4}_\d{2}_\d{2}_[0-9a-f]{20}")


def new_pdf_id() -> str:
    """An unguessable id shaped like Mathpix's (``2026_12_04_`` + 80 random bits)."""
    return time.strftime("%Y_%m_%d_", time.gmtime()) + secrets.token_hex(10)


class Job:
    """One uploaded document being converted (or replayed)."""

    def __init__(self, pdf_id: str, *, streaming: bool, num_pages: int) -> None:
        self.pdf_id = pdf_id
        self.streaming = streaming
        self.num_pages = num_pages
        self.status: Status = "loaded"
        self.arrivals: list[PageMessage] = []
        self.pages: dict[int, PageMessage] = {}
        self.error: dict[str, object] | None = None
        self.cancel_scope = anyio.CancelScope()
        self._changed = anyio.Event()
        self._closed = False

    @property
    def finished(self) -> bool:
        """No more pages will come: completed, failed, or forgotten."""
        return self._closed or self.status in ("completed", "error")

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    def start(self) -> None:
        """The producer began splitting the document into pages."""
        if self.status == "loaded":
            self.status = "split"

    def add_page(self, message: PageMessage) -> None:
        """Record one page the moment it exists and wake the readers."""
        self.arrivals.append(message)
        self.pages[message.page_idx] = message
        self._notify()

    def complete(self) -> None:
        self.status = "completed"
        self._notify()

    def fail(self, error_id: str, message: str) -> None:
        self.status = "error"
        self.error = error_body(error_id, message)
        self._notify()

    def close(self) -> None:
        """Forget the job: stop its producer and end every reader."""
        self._closed = True
        self.cancel_scope.cancel()
        self._notify()

    def status_body(self) -> PdfStatus:
        done = len(self.pages)
        percent = round(100.0 * done / self.num_pages, 2) if self.num_pages else 100.0
        if self.status == "completed":
            percent = 100.0
        return PdfStatus(status=self.status, num_pages=self.num_pages, num_pages_completed=done, percent_done=percent)

    def mmd(self) -> str:
        text: str = join_pages(self.pages.values())
        return text

    def lines(self) -> dict[str, object]:
        """``.lines.mmd.json``: per page, its text cut into lines (each keeps its leading newlines),
        so joining a page's lines gives its text exactly; a page without content has no lines."""
        pages = []
        for idx in sorted(self.pages):
            text = self.pages[idx].text or ""
            pieces = [piece for piece in re.split(r"(?<=[^\n])(?=\n)", text) if piece]
            pages.append({"page": idx, "lines": [{"text": piece} for piece in pieces]})
        return {"pages": pages}

    async def follow(self) -> AsyncIterator[PageMessage]:
        """Every page in arrival order: those produced so far, then each new one as it comes."""
        sent = 0
        while True:
            while sent < len(self.arrivals):
                yield self.arrivals[sent]
                sent += 1
            if self.finished:
                return
            changed = self._changed  # no await between the checks above and this wait
            await changed.wait()


class JobStore:
    """The jobs this server knows, by id."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}

    def add(self, job: Job) -> None:
        self._jobs[job.pdf_id] = job

    def __iter__(self) -> Iterator[Job]:
        return iter(list(self._jobs.values()))

    def get(self, pdf_id: str) -> Job | None:
        """The job, or ``None`` for an unknown or malformed id."""
        if not PDF_ID_PATTERN.fullmatch(pdf_id):
            return None
        return self._jobs.get(pdf_id)

    def delete(self, pdf_id: str) -> bool:
        job = self._jobs.pop(pdf_id, None) if PDF_ID_PATTERN.fullmatch(pdf_id) else None
        if job is None:
            return False
        job.close()
        return True

    def close(self) -> None:
        """Stop every producer and end every reader (server shutdown)."""
        for job in self._jobs.values():
            job.close()
        self._jobs.clear()
