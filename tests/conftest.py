"""Fixtures shared by the suite: the ``../shared`` material and real servers on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

ROOT = Path(__file__).resolve().parent.parent


def find_shared() -> Path | None:
    """``../shared`` beside the project root (or ``$STREAMRAG_SHARED``), if present."""
    candidate = Path(os.environ.get("STREAMRAG_SHARED", ROOT.parent / "shared"))
    return candidate if (candidate / "captures").is_dir() else None


@pytest.fixture(scope="session")
def shared() -> Path:
    """The read-only shared material; skips without it, fails without it under ``CI=true``."""
    found = find_shared()
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("../shared is missing, and CI=true requires it")
        pytest.skip("../shared is not present")
    return found


@pytest.fixture(scope="session")
def captures(shared: Path) -> list[Path]:
    return sorted(p for p in (shared / "captures").iterdir() if (p / "stream.json").is_file())


def stop_process(proc: subprocess.Popen) -> None:  # type: ignore[type-arg]
    """Stop a child by its PID: SIGTERM, then SIGKILL if it has not exited in 10 s."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


class ServerProcess:
    """A ``streamrag serve`` child process; ``url`` is read from its first line of output."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None, port: int = 0) -> None:
        cmd = [sys.executable, "-m", "streamrag", "serve", "--port", str(port), *args]
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **(env or {})},
        )
        assert self.proc.stdout is not None
        self.output: list[str] = []
        for line in self.proc.stdout:
            self.output.append(line)
            if "listening on " in line:
                self.url = line.split("listening on ", 1)[1].strip()
                break
        else:
            raise RuntimeError("server exited before listening:\n" + "".join(self.output))

    def stop(self) -> None:
        stop_process(self.proc)
        if self.proc.stdout and not self.proc.stdout.closed:
            self.output.append(self.proc.stdout.read())  # everything it printed, for tests to inspect
            self.proc.stdout.close()


@pytest.fixture
def start_server() -> Iterator[Callable[..., ServerProcess]]:
    """Start ``streamrag serve`` with the given arguments on a free loopback port."""
    started: list[ServerProcess] = []

    def start(*args: str, env: dict[str, str] | None = None) -> ServerProcess:
        server = ServerProcess(list(args), env)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def embedder() -> object:
    """The real default embedder (packaged all-MiniLM-L6-v2), loaded once per test session."""
    from streamrag._embedding import load_embedder

    return load_embedder()


@pytest.fixture
def index(tmp_path: Path, embedder: object) -> object:
    """A fresh live index in an embedded Chroma under a temporary store."""
    from streamrag import LiveIndex

    return LiveIndex(tmp_path / "store", embed_model=embedder)  # type: ignore[arg-type]


def mmd_pages(capture: Path) -> dict[int, str]:
    """A capture's page texts by ``page_idx`` (empty for pages without content)."""
    from streamrag._stream import read_recording

    return {m.page_idx: m.text or "" for m in read_recording(capture / "stream.json")}


def coverage_counts(pages: dict[int, str], chunks: list) -> dict[tuple[int, int], int]:  # type: ignore[type-arg]
    """How many chunks cover each non-space character of each page (should be exactly 1)."""
    counts = {(p, i): 0 for p, t in pages.items() for i, c in enumerate(t) if not c.isspace()}
    for chunk in chunks:
        for page, start, end in chunk.pieces:
            for i in range(start, end):
                if (page, i) in counts:
                    counts[(page, i)] += 1
    return counts
