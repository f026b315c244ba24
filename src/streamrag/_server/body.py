"""Request bodies answered early: read and dropped, so the client gets the answer."""

from __future__ import annotations

from starlette.types import Receive

__all__ = ["DRAIN_LIMIT", "drain"]

DRAIN_LIMIT = 32 << 20


async def drain(receive: Receive, limit: int = DRAIN_LIMIT) -> bool:
    """Read and drop a request's body before answering it early, so that a client still sending
    gets the answer rather than a broken connection; False (close the connection) past ``limit``."""
    seen = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return False
        seen += len(message.get("body", b""))
        if not message.get("more_body", False):
            return True
        if seen > limit:
            return False
