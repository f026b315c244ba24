"""Fault injection, for tests only: ``streamrag serve --faults JSON`` (or ``create_app(faults=…)``).

A :class:`FaultPlan` makes the server misbehave the way real networks and servers do, a bounded
number of times, so that tests can check the client survives it against a real HTTP server:

- ``requests``: answer the first ``times`` matching requests with an error body and HTTP
  ``status`` (200 with an error body, 401, 429 with ``Retry-After``, 500, 503 …);
- ``stream``: on the first ``times`` connections to ``/stream``: stop after ``close_after`` pages
  (cleanly, or ``abort`` the connection mid-body), ``stall_after`` pages for ``stall_seconds``,
  swap neighbouring pages (``out_of_order``), send each page twice (``duplicate``), and insert raw
  ``lines`` (malformed JSON, unknown or missing fields) after a given number of pages.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Literal

import anyio
from pydantic import BaseModel, Field
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from .._models import PageMessage
from .._stream import Framing, encode_message, error_body
from .body import drain

__all__ = ["FaultPlan", "FaultyRequests", "RequestFault", "StreamFault", "faulty_stream"]

Route = Literal["upload", "status", "stream", "mmd", "lines", "delete", "any"]


class RequestFault(BaseModel):
    route: Route = "any"
    status: int = 200
    error_id: str = "sys_exception"
    retry_after: float | None = None
    times: int = 1


class InjectedLine(BaseModel):
    after: int = 0  # pages sent before it
    line: str


class StreamFault(BaseModel):
    times: int = 1
    close_after: int | None = None
    abort: bool = False
    stall_after: int | None = None
    stall_seconds: float = 0.0
    out_of_order: bool = False
    duplicate: bool = False
    lines: list[InjectedLine] = Field(default_factory=list)


class FaultPlan(BaseModel):
    requests: list[RequestFault] = Field(default_factory=list)
    stream: StreamFault | None = None


def _route(method: str, path: str) -> Route:
    if method == "POST":
        return "upload"
    if method == "DELETE":
        return "delete"
    if path.endswith("/stream"):
        return "stream"
    if path.endswith(".lines.mmd.json"):
        return "lines"
    return "mmd" if path.endswith(".mmd") else "status"


class FaultyRequests:
    """ASGI middleware answering planned requests with planned errors."""

    def __init__(self, app: ASGIApp, faults: list[RequestFault]) -> None:
        self.app = app
        self.faults = [f.model_copy() for f in faults]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and str(scope["path"]).startswith("/v3/pdf"):
            route = _route(scope["method"], scope["path"])
            for fault in self.faults:
                if fault.times > 0 and fault.route in (route, "any"):
                    fault.times -= 1
                    headers = {} if await drain(receive) else {"Connection": "close"}
                    if fault.retry_after is not None:
                        headers["Retry-After"] = f"{fault.retry_after:g}"
                    body = error_body(fault.error_id, f"injected fault ({fault.error_id})")
                    await JSONResponse(body, fault.status, headers=headers)(scope, receive, send)
                    return
        await self.app(scope, receive, send)


class StreamAborted(Exception):
    """Raised inside a response body: the server drops the connection mid-stream."""


class _Close(Exception):
    """Ends a faulty stream cleanly (the server closes after the last byte)."""


async def faulty_stream(
    pages: AsyncIterator[PageMessage], fault: StreamFault, framing: Framing
) -> AsyncIterator[bytes]:
    """A stream's body with ``fault`` applied to the pages as they come."""
    sent = 0
    held: PageMessage | None = None
    injected = sorted(fault.lines, key=lambda item: item.after)

    async def emit(message: PageMessage) -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(2 if fault.duplicate else 1):
            yield encode_message(message, framing)
        sent += 1
        while injected and injected[0].after <= sent:
            line = injected.pop(0).line
            yield (f"data: {line}\n\n" if framing == "sse" else line + "\n").encode()
        if fault.stall_after is not None and sent == fault.stall_after:
            await anyio.sleep(fault.stall_seconds)
        if fault.close_after is not None and sent >= fault.close_after:
            if fault.abort:
                raise StreamAborted(f"injected abort after {sent} pages")
            raise _Close

    try:
        while injected and injected[0].after <= 0:
            yield (injected.pop(0).line + "\n").encode()
        async for message in pages:
            if fault.out_of_order and held is None:
                held = message
                continue
            batch = [message, held] if held is not None else [message]
            held = None
            for item in batch:
                async for chunk in emit(item):
                    yield chunk
        if held is not None:
            async for chunk in emit(held):
                yield chunk
    except _Close:
        return
