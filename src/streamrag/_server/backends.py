"""Where a job's pages come from: the local converter, or recorded Mathpix streams.

``local``: the uploaded PDF is opened with :class:`streamrag._convert.PdfPages` at upload time (a
broken, encrypted or empty PDF, or bad ``page_ranges``, is answered with the converter's error id),
then each page is added to the job the moment it is converted; ``pace`` is the least time between
two pages.

``replay``: recordings are folders holding ``NAME.pdf`` beside ``stream.json`` (like
``shared/captures/*``), indexed by the SHA-256 of the PDF bytes. An upload with the same bytes gets
the recorded messages unchanged (page errors such as ``image_no_content`` included), in recorded
order, one every ``pace`` seconds (the first after ``pace``). ``page_ranges`` and ``password`` are
ignored. An upload that matches no recording is answered with the error id
``pdf_unknown_recording`` (not a Mathpix id: Mathpix has no such case).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import anyio
import anyio.lowlevel

from .._exceptions import ConversionError
from .._models import PageMessage
from .._stream import read_recording
from .jobs import Job
from .options import ApiError, UploadOptions

if TYPE_CHECKING:
    from .._convert import PdfPages

__all__ = ["Backend", "LocalBackend", "Recording", "ReplayBackend", "Source", "find_recordings", "run_job"]

logger = logging.getLogger("streamrag.server")


class Source(Protocol):
    """The pages of one opened upload."""

    num_pages: int

    async def produce(self, job: Job) -> None:
        """Add every page to ``job``, paced."""

    async def aclose(self) -> None:
        """Release what the source holds."""


class Backend(Protocol):
    """Opens uploads; raises :class:`ApiError` for one it cannot take."""

    async def open(self, data: bytes, options: UploadOptions) -> Source: ...


async def run_job(job: Job, source: Source) -> None:
    """Produce a job's pages until done, failed or cancelled (DELETE, shutdown)."""
    with job.cancel_scope:
        try:
            job.start()
            await source.produce(job)
            job.complete()
        except ConversionError as exc:
            job.fail(exc.error_id, exc.message)
        except Exception:
            logger.exception("job %s failed", job.pdf_id)
            job.fail("sys_exception", "Internal error while converting the PDF")
        finally:
            with anyio.CancelScope(shield=True):
                await source.aclose()


# --- local ---------------------------------------------------------------------------------------


class LocalSource:
    """Pages of an opened PDF, converted one by one in a worker thread."""

    def __init__(self, pages: PdfPages, num_pages: int, pace: float) -> None:
        self._pages = pages
        self.num_pages = num_pages
        self._pace = pace

    async def produce(self, job: Job) -> None:
        pages: Iterator[PageMessage] = await anyio.to_thread.run_sync(iter, self._pages)
        last: float | None = None
        while True:
            message = await anyio.to_thread.run_sync(next, pages, None)
            if message is None:
                return
            if last is not None and self._pace > 0:
                await anyio.sleep(max(0.0, last + self._pace - anyio.current_time()))
            job.add_page(message)
            last = anyio.current_time()

    async def aclose(self) -> None:
        await anyio.to_thread.run_sync(self._pages.close)


def _open_pdf(data: bytes, options: UploadOptions) -> tuple[PdfPages, int]:
    from .._convert import PdfPages  # imported on first use: the server starts without pdfium

    pages = PdfPages(
        data, password=options.password, page_ranges=options.page_ranges, ocr_languages=options.ocr_languages
    )
    return pages, len(pages)


def _warm_converter() -> None:
    from .._convert._text import english_words

    english_words()


class LocalBackend:
    """Converts uploads with the local converter."""

    def __init__(self, pace: float = 0.0) -> None:
        self.pace = pace
        # the converter's word list (~0.2 s to load) is read now, not during the first upload's page 1
        threading.Thread(target=_warm_converter, name="streamrag-warm-converter", daemon=True).start()

    async def open(self, data: bytes, options: UploadOptions) -> Source:
        try:
            pages, num_pages = await anyio.to_thread.run_sync(_open_pdf, data, options)
        except ConversionError as exc:
            raise ApiError(exc.error_id, exc.message) from None
        return LocalSource(pages, num_pages, self.pace)


# --- replay --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recording:
    """A recorded stream and the PDF it was made from."""

    folder: Path
    messages: tuple[PageMessage, ...]

    @property
    def num_pages(self) -> int:
        lengths = [m.pdf_selected_len for m in self.messages if m.pdf_selected_len is not None]
        return max(lengths) if lengths else len(self.messages)


def find_recordings(path: str | Path) -> list[Path]:
    """``path`` itself if it holds ``stream.json``, else its sub-folders that do."""
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"recordings folder not found: {root}")
    if (root / "stream.json").is_file():
        return [root]
    return sorted(p for p in root.iterdir() if (p / "stream.json").is_file())


class ReplaySource:
    """A recording replayed at a pace."""

    def __init__(self, recording: Recording, pace: float) -> None:
        self._recording = recording
        self.num_pages = recording.num_pages
        self._pace = pace

    async def produce(self, job: Job) -> None:
        start = anyio.current_time()
        for k, message in enumerate(self._recording.messages, 1):
            if self._pace > 0:
                await anyio.sleep(max(0.0, start + k * self._pace - anyio.current_time()))
            else:
                await anyio.lowlevel.checkpoint()
            job.add_page(message)

    async def aclose(self) -> None:
        return None


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ReplayBackend:
    """Answers uploads with recorded streams, matched by the PDF's bytes."""

    def __init__(self, recordings: Iterable[str | Path] = (), pace: float = 0.0) -> None:
        self.pace = pace
        self._by_digest: dict[str, Recording] = {}
        for path in recordings:
            self.add(path)

    def add(self, path: str | Path) -> int:
        """Load one recording folder, or every recording folder inside ``path``; returns how many."""
        folders = find_recordings(path)
        for folder in folders:
            recording = Recording(folder, tuple(read_recording(folder / "stream.json")))
            for pdf in sorted(folder.glob("*.pdf")):
                self._by_digest[_sha256(pdf.read_bytes())] = recording
        return len(folders)

    def __len__(self) -> int:
        return len(self._by_digest)

    async def open(self, data: bytes, options: UploadOptions) -> Source:
        digest = await anyio.to_thread.run_sync(_sha256, data)
        recording = self._by_digest.get(digest)
        if recording is None:
            raise ApiError("pdf_unknown_recording", "No recording matches this PDF")
        return ReplaySource(recording, self.pace)
