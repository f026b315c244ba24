"""OCR of scanned pages with Tesseract (the Debian ``tesseract`` command), pages in parallel.

Why the command and not a binding: each page runs in its own ``tesseract`` process, so pages OCR in
parallel without the GIL or a process pool, a closed document kills its processes at once, and the
engine is the distribution's, with its language packs. Measured on a dense scanned form at 200 dpi
on 2 busy cores: ``tesseract`` command 4.5 s, ``tesserocr`` (in-process, its own bundled engine)
3.6 s; OpenMP threading is switched off (``OMP_THREAD_LIMIT=1``), which is much faster when several
pages run at once (stack notes: 13–19 s a page with threads, 1.6 s without).

At most :func:`workers` (the core count) ``tesseract`` processes run at once in a process, shared
by every open document. Rendering happens under the PDFium lock; the OCR itself does not.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from ._textlayer import Line

DPI = 200
DEFAULT_LANGUAGES = "eng"
LANGUAGES_ENV = "STREAMRAG_OCR_LANGUAGES"
"""Server-wide default OCR languages (Tesseract codes joined by ``+``, e.g. ``eng+fra``)."""

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


class OcrError(RuntimeError):
    """Tesseract is missing or failed on a page."""


def workers() -> int:
    return max(1, os.cpu_count() or 1)


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=workers(), thread_name_prefix="streamrag-ocr")
        return _pool


@functools.cache
def installed_languages() -> frozenset[str]:
    """The Tesseract languages installed here (empty without Tesseract)."""
    if shutil.which("tesseract") is None:
        return frozenset()
    out = subprocess.run(["tesseract", "--list-langs"], capture_output=True, text=True, check=False).stdout
    return frozenset(line.strip() for line in out.splitlines()[1:] if line.strip())


def resolve_languages(requested: str | None) -> str:
    """``requested`` (or ``$STREAMRAG_OCR_LANGUAGES``, or ``eng``), checked against what is installed.

    Raises ``ValueError`` naming a language that is not installed (only when Tesseract is).
    """
    chosen = (requested or os.environ.get(LANGUAGES_ENV) or DEFAULT_LANGUAGES).replace(",", "+").replace(" ", "")
    names = [n for n in chosen.split("+") if n]
    if not names:
        raise ValueError("no OCR language given")
    installed = installed_languages()
    missing = [n for n in names if installed and n not in installed]
    if missing:
        raise ValueError(
            f"OCR language(s) not installed: {', '.join(missing)} (installed: {', '.join(sorted(installed))})"
        )
    return "+".join(names)


class OcrJobs:
    """One document's OCR work: futures by page number, and the processes to kill on close."""

    def __init__(self, languages: str) -> None:
        self.languages = languages
        self.futures: dict[int, Future[list[tuple[Line, int]]]] = {}
        self._procs: set[subprocess.Popen[bytes]] = set()
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, number: int, render: Callable[[], tuple[bytes, float, float]]) -> None:
        if number not in self.futures:
            self.futures[number] = _executor().submit(self._run, render)

    def running(self) -> int:
        return sum(1 for f in self.futures.values() if not f.done())

    def result(self, number: int) -> list[tuple[Line, int]]:
        return self.futures.pop(number).result()

    def _run(self, render: Callable[[], tuple[bytes, float, float]]) -> list[tuple[Line, int]]:
        if self._closed:
            raise OcrError("the PDF is closed")
        image, scale, height = render()
        if shutil.which("tesseract") is None:
            raise OcrError("this page needs OCR, but Tesseract is not installed (apt-get install tesseract-ocr)")
        cmd = ["tesseract", "stdin", "stdout", "-l", self.languages, "--psm", "3", "tsv"]
        env = {**os.environ, "OMP_THREAD_LIMIT": "1"}
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        with self._lock:
            if self._closed:
                proc.kill()
            self._procs.add(proc)
        try:
            out, err = proc.communicate(image)
        finally:
            with self._lock:
                self._procs.discard(proc)
        if proc.returncode != 0:
            message = err.decode("utf-8", "replace").strip().splitlines()
            raise OcrError(f"tesseract failed ({proc.returncode}): {message[-1] if message else ''}")
        return parse_tsv(out.decode("utf-8", "replace"), scale, height)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for future in self.futures.values():
                future.cancel()
            for proc in self._procs:
                proc.kill()


def parse_tsv(tsv: str, scale: float, height: float) -> list[tuple[Line, int]]:
    """Tesseract's TSV → lines in PDF points (y up), each with its paragraph number."""
    lines: dict[tuple[int, int, int], Line] = {}
    paragraphs: dict[tuple[int, int], int] = {}
    words: dict[tuple[int, int, int], list[str]] = {}
    for row in tsv.splitlines()[1:]:
        cols = row.split("\t")
        if len(cols) < 12:
            continue
        level, block, par, number = (int(c) for c in (cols[0], cols[2], cols[3], cols[4]))
        left, top, width, tall = (int(c) for c in cols[6:10])
        key = (block, par, number)
        if level == 4:
            size = tall / scale
            base = height - (top + tall) / scale + 0.2 * size
            lines[key] = Line("", left / scale, (left + width) / scale, base, size, 0.0)
            paragraphs.setdefault((block, par), len(paragraphs))
        elif level == 5 and cols[11].strip() and key in lines:
            words.setdefault(key, []).append(cols[11].strip())
            if len(words[key]) == 1:
                lines[key].first_word = width / scale
    out = []
    for key, line in lines.items():
        if key in words:
            line.text = " ".join(words[key])
            line.cells = [(line.x0, line.x1, line.text)]
            out.append((line, paragraphs[key[:2]]))
    return out
