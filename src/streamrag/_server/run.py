"""Running the app with uvicorn on a socket bound here: ``serve`` (the CLI) and its building blocks."""

from __future__ import annotations

import signal
import socket
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

import uvicorn
from starlette.applications import Starlette

from .._exceptions import StreamragError
from .app import ServerState, create_app

__all__ = ["UvicornServer", "bind_socket", "format_url", "serve", "uvicorn_config"]


class UvicornServer(uvicorn.Server):
    """A uvicorn server that ends its page streams before waiting for connections to close, and
    tells a thread when start-up is over (``ready``), whether it succeeded or not (``started``)."""

    def __init__(self, config: uvicorn.Config, on_shutdown: Callable[[], None]) -> None:
        super().__init__(config)
        self.ready = threading.Event()
        self._on_shutdown = on_shutdown

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets)
        finally:
            self.ready.set()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._on_shutdown()  # streams end, producers stop: open connections can finish
        await super().shutdown(sockets)


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0 = a free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        sock.set_inheritable(True)
    except OSError:
        sock.close()
        raise
    return sock


def format_url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def uvicorn_config(app: Starlette) -> uvicorn.Config:
    return uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on", timeout_graceful_shutdown=5)


def make_server(app: Starlette) -> UvicornServer:
    state: ServerState = app.state.server
    return UvicornServer(uvicorn_config(app), on_shutdown=state.jobs.close)


def serve(host: str = "127.0.0.1", port: int = 8000, **options: Any) -> None:
    """Serve the Mathpix-compatible API until SIGTERM or SIGINT; prints the URL once it listens.

    ``options`` are :func:`create_app`'s (backend, recordings, pace, framing, app_key, limits …).
    """
    if options.get("backend") == "replay" and options.get("recordings") is None:
        raise SystemExit("streamrag serve: --backend replay needs --recordings DIR")
    if options.get("pace", 0.0) < 0:
        raise SystemExit("streamrag serve: --pace must be >= 0")
    try:
        app = create_app(**options)
        sock = bind_socket(host, port)
    except (OSError, ValueError, StreamragError) as exc:
        raise SystemExit(f"streamrag serve: {exc}") from None
    server = make_server(app)

    def stop(signum: int, frame: FrameType | None) -> None:
        server.should_exit = True

    # uvicorn re-raises a captured signal once it has shut down; this handler makes that a clean exit.
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        print(f"streamrag serve: listening on {format_url(sock)}", flush=True)
        server.run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sock.close()
