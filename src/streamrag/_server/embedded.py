"""The server in a daemon thread of this process, for the CLI and notebooks."""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from .._stream import Framing
from .app import ServerState, create_app
from .backends import Backend, ReplayBackend
from .run import UvicornServer, bind_socket, format_url, make_server

__all__ = ["EmbeddedServer"]


class EmbeddedServer:
    """The Mathpix-compatible server on 127.0.0.1 and a free port, in a background thread.

    ``with EmbeddedServer(backend="replay", recordings=[folder]) as server: ... server.url``
    """

    def __init__(
        self,
        *,
        backend: Literal["local", "replay"] | Backend = "local",
        recordings: str | Path | list[str | Path] | None = None,
        pace: float = 0.0,
        framing: Framing = "lines",
        app_key: str | None = None,
        host: str = "127.0.0.1",
        **options: Any,
    ) -> None:
        self.app = create_app(
            backend=backend, recordings=recordings, pace=pace, framing=framing, app_key=app_key, **options
        )
        self._host = host
        self._server: UvicornServer | None = None
        self._thread: threading.Thread | None = None
        self._url: str | None = None
        self._sock: socket.socket | None = None

    @property
    def state(self) -> ServerState:
        state: ServerState = self.app.state.server
        return state

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:40123`` (only while running)."""
        if self._url is None:
            raise RuntimeError("the server is not running")
        return self._url

    def add_recording(self, folder: str | Path) -> int:
        """Load a recording folder (or a folder of them) into the replay backend; returns how many."""
        backend = self.state.backend
        if not isinstance(backend, ReplayBackend):
            raise TypeError("add_recording needs backend='replay'")
        return backend.add(folder)

    def start(self) -> EmbeddedServer:
        """Start serving; returns once the server accepts connections."""
        if self._thread is not None:
            raise RuntimeError("the server is already running")
        sock = bind_socket(self._host, 0)
        server = make_server(self.app)

        def run() -> None:
            try:
                server.run(sockets=[sock])
            finally:
                server.ready.set()  # also when start-up never began

        thread = threading.Thread(target=run, name="streamrag-server", daemon=True)
        thread.start()
        server.ready.wait()
        if not server.started:
            thread.join()
            sock.close()
            raise RuntimeError("the embedded server failed to start")
        self._server, self._thread, self._url, self._sock = server, thread, format_url(sock), sock
        return self

    def stop(self) -> None:
        """Shut the server down and wait for its thread."""
        if self._server is None or self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join()
        if self._sock is not None:
            self._sock.close()
        self._server = self._thread = self._url = self._sock = None

    def __enter__(self) -> EmbeddedServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
