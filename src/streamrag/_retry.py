"""When to try again: transient faults are retried with bounded backoff, the rest raise at once.

Transient: a failed or broken connection (:class:`TransportError`), HTTP 5xx, a ``sys_exception``
body (even with HTTP 200), and 429 (waiting ``Retry-After`` when the server gives it). Everything
else — 401, ``opts_*``, ``pdf_unknown_id``, a PDF the server cannot read — is the caller's to fix.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ._exceptions import MathpixError, RateLimitError, RetryError, StreamragError, TransportError

__all__ = ["Attempts", "RateGate", "RetryPolicy", "is_transient"]


@dataclass(frozen=True)
class RetryPolicy:
    """Bounds on retrying. ``attempts`` tries per request (1: never retry); delays start at
    ``backoff`` seconds and double up to ``max_backoff``; nothing is retried past ``deadline``
    seconds after the first try; a broken page stream is re-opened up to ``reconnects`` times
    before the client falls back to polling the status and downloading the pages."""

    attempts: int = 6
    backoff: float = 0.25
    max_backoff: float = 8.0
    deadline: float = 120.0
    reconnects: int = 5


NO_RETRY = RetryPolicy(attempts=1, reconnects=0, deadline=0.0)


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, TransportError | RateLimitError):
        return True
    if isinstance(exc, MathpixError):
        return exc.error_id == "sys_exception" or exc.status_code >= 500
    return False


@dataclass
class Attempts:
    """The tries of one operation: decides each delay, and gives up with what was tried."""

    what: str
    policy: RetryPolicy
    clock: Callable[[], float] = time.monotonic
    tried: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.started = self.clock()

    def delay(self, exc: StreamragError) -> float:
        """Seconds to wait before the next try; raises ``exc`` itself if it is not transient,
        or :class:`RetryError` once the tries or the time are used up."""
        if not is_transient(exc):
            raise exc
        self.tried.append(_describe(exc))
        n = len(self.tried)
        if isinstance(exc, RateLimitError) and exc.retry_after is not None:
            wait = exc.retry_after
        else:
            wait = min(self.policy.max_backoff, self.policy.backoff * 2 ** (n - 1)) * random.uniform(0.75, 1.0)
        elapsed = self.clock() - self.started
        if n >= self.policy.attempts or elapsed + wait > self.policy.deadline:
            raise RetryError(self.what, self.tried, elapsed) from exc
        return wait


class RateGate:
    """A backoff shared by every request of a worker: when one request is told to wait (429 with
    ``Retry-After``), the others hold their next request until then too, instead of each finding out
    for itself. Share one gate between the clients of concurrent uploads and streams."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._until = 0.0
        self.holds = 0  # how many times the gate was closed (for tests and reports)

    def hold(self, seconds: float) -> None:
        """Close the gate for ``seconds`` from now (never shortening an existing hold)."""
        self._until = max(self._until, self._clock() + seconds)
        self.holds += 1

    def remaining(self) -> float:
        return max(0.0, self._until - self._clock())

    def note(self, exc: BaseException) -> None:
        """Close the gate if ``exc`` is a rate limit with a ``Retry-After``."""
        if isinstance(exc, RateLimitError) and exc.retry_after is not None:
            self.hold(exc.retry_after)


def _describe(exc: StreamragError) -> str:
    if isinstance(exc, MathpixError):
        return f"HTTP {exc.status_code} {exc.error_id}"
    text = str(exc)
    return text if len(text) < 120 else text[:117] + "..."
