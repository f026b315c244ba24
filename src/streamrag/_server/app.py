"""The Starlette app: Mathpix's PDF routes, app_key auth, and the jobs' producer tasks.

Every error is a Mathpix error body with HTTP 200, except ``http_unauthorized`` (401),
``http_max_requests`` (429) and the
``.mmd`` download (404 until completed, for unknown ids and after DELETE). Error ids of this server
beyond :mod:`.options` and :mod:`.backends`: ``pdf_unknown_id`` (unknown or malformed id),
``pdf_missing`` (no ``file``, no ``url``, or a malformed multipart body), ``pdf_download_error``
(the ``url`` could not be fetched), ``pdf_too_large`` (over 1 GB, Mathpix's limit),
``opts_streaming_required`` (``/stream`` of a job uploaded without ``"streaming": true``),
``pdf_not_ready`` (``.mmd`` before completion), ``http_max_requests`` (429 with ``Retry-After``,
past ``page_quota``, with Mathpix's ``limit_name``/``limit_value``/``count``), ``sys_exception``
(a failure of the server; also sent as the last line of a stream whose job failed).

Stream framing: bare JSON lines (``application/x-ndjson``) or SSE ``data:`` events
(``text/event-stream``). Other result formats (``.md``, ``.lines.json`` …) are not served.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import anyio
import anyio.abc
import httpx
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .._stream import Framing, encode_message, error_body
from .backends import Backend, LocalBackend, ReplayBackend, run_job
from .body import drain
from .faults import FaultPlan, FaultyRequests, StreamFault, faulty_stream
from .jobs import Job, JobStore, new_pdf_id
from .options import ApiError, UploadOptions, loads, parse_options, parse_options_json

__all__ = ["MAX_PDF_BYTES", "Limits", "ServerState", "create_app"]

MAX_PDF_BYTES = 1 << 30
MEDIA_TYPES: dict[str, str] = {"lines": "application/x-ndjson", "sse": "text/event-stream"}


@dataclass(frozen=True)
class Limits:
    """What one server accepts: upload bytes (checked while the body streams in), pages per
    document, and jobs still producing pages at once."""

    max_upload_bytes: int = MAX_PDF_BYTES
    max_pages: int = 10_000
    max_jobs: int = 16


@dataclass
class ServerState:
    """What the routes share: the backend, the jobs, the framing, the producers' task group."""

    backend: Backend
    framing: Framing = "lines"
    jobs: JobStore = field(default_factory=JobStore)
    task_group: anyio.abc.TaskGroup | None = None
    page_quota: int | None = None  # pages this server converts in its lifetime (Mathpix: per month)
    pages_used: int = 0
    limits: Limits = field(default_factory=lambda: Limits())
    stream_fault: StreamFault | None = None


def error_response(error_id: str, message: str, status_code: int = 200, *, close: bool = False) -> JSONResponse:
    """A Mathpix error body. ``close``: answered before the request body was read, so the
    connection is closed after the answer (a client still sending then stops, instead of waiting)."""
    headers = {"Connection": "close"} if close else None
    return JSONResponse(error_body(error_id, message), status_code=status_code, headers=headers)


def unknown_id(status_code: int = 200) -> JSONResponse:
    return error_response("pdf_unknown_id", "Unknown pdf_id", status_code)


class AppKeyMiddleware:
    """Refuse every HTTP request whose ``app_key`` header is not the configured key (401)."""

    def __init__(self, app: ASGIApp, app_key: str) -> None:
        self.app = app
        self._key = app_key.encode("utf-8")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            supplied = next((v for k, v in scope["headers"] if k == b"app_key"), b"")
            if not hmac.compare_digest(supplied, self._key):
                drained = await drain(receive)
                response = error_response("http_unauthorized", "Invalid credentials", 401, close=not drained)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class BodyLimit:
    """Refuse an upload as soon as its body passes ``limit`` bytes, without reading the rest."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        too_large = error_response("pdf_too_large", f"The upload is larger than {self.limit} bytes", close=True)
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await too_large(scope, receive, send)
            return
        seen = 0

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise _TooLarge
            return message

        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _TooLarge:
            if not started:
                await too_large(scope, receive, send)


class _TooLarge(Exception):
    pass


async def fetch_pdf(url: str, limit: int = MAX_PDF_BYTES) -> bytes:
    """Download the PDF an upload names by URL (http or https; at most ``MAX_PDF_BYTES``)."""
    if urlsplit(url).scheme not in ("http", "https"):
        raise ApiError("opts_url", "Option 'url' must be an http(s) URL")
    chunks: list[bytes] = []
    size = 0
    try:
        async with (
            httpx.AsyncClient(follow_redirects=True, timeout=30.0) as client,
            client.stream("GET", url) as response,
        ):
            if response.status_code != 200:
                raise ApiError("pdf_download_error", f"Fetching the url failed: HTTP {response.status_code}")
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > limit:
                    raise ApiError("pdf_too_large", f"The PDF is larger than {limit} bytes")
                chunks.append(chunk)
    except httpx.HTTPError as exc:
        raise ApiError("pdf_download_error", f"Fetching the url failed ({type(exc).__name__})") from None
    return b"".join(chunks)


async def read_upload(request: Request) -> tuple[bytes | None, UploadOptions]:
    """The uploaded bytes (``None`` if only a URL or nothing was given) and the options."""
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        try:
            async with request.form(max_files=4, max_fields=64) as form:
                raw_options = form.get("options_json")
                if isinstance(raw_options, UploadFile):
                    raw_options = (await raw_options.read()).decode("utf-8", "replace")
                options = parse_options_json(raw_options)
                upload = form.get("file")
                if not isinstance(upload, UploadFile):
                    return None, options
                return await upload.read(), options
        except MultiPartException:
            raise ApiError("pdf_missing", "Malformed multipart/form-data body") from None
    return None, parse_options(loads(await request.body()))


def create_app(
    *,
    backend: Literal["local", "replay"] | Backend = "local",
    recordings: str | Path | list[str | Path] | None = None,
    pace: float = 0.0,
    framing: Framing = "lines",
    app_key: str | None = None,
    page_quota: int | None = None,
    limits: Limits | None = None,
    faults: FaultPlan | None = None,
) -> Starlette:
    """The server's ASGI app. ``recordings``: a folder (or folders) of recordings for ``replay``.
    ``page_quota``: pages accepted in all; an upload beyond it gets Mathpix's 429 body.
    ``limits``: see :class:`Limits`. ``faults``: test-only fault injection (:mod:`.faults`).

    The app's :class:`ServerState` is ``app.state.server``; its lifespan must run (uvicorn does).
    """
    if framing not in MEDIA_TYPES:
        raise ValueError(f"framing must be 'lines' or 'sse', not {framing!r}")
    if backend == "local":
        chosen: Backend = LocalBackend(pace)
    elif backend == "replay":
        folders = [] if recordings is None else recordings if isinstance(recordings, list) else [recordings]
        chosen = ReplayBackend(folders, pace)
    elif isinstance(backend, str):
        raise ValueError(f"backend must be 'local' or 'replay', not {backend!r}")
    else:
        chosen = backend
    state = ServerState(chosen, framing, page_quota=page_quota, limits=limits or Limits())
    if faults is not None and faults.stream is not None:
        state.stream_fault = faults.stream.model_copy()

    def job_or_none(request: Request) -> Job | None:
        return state.jobs.get(str(request.path_params["pdf_id"]))

    async def upload(request: Request) -> Response:
        try:
            data, options = await read_upload(request)
            if data is None:
                if options.url is None:
                    raise ApiError("pdf_missing", "No 'file' and no 'url' given")
                data = await fetch_pdf(options.url, state.limits.max_upload_bytes)
            if len(data) > state.limits.max_upload_bytes:
                raise ApiError("pdf_too_large", f"The upload is larger than {state.limits.max_upload_bytes} bytes")
            running = sum(1 for job in state.jobs if not job.finished)
            if running >= state.limits.max_jobs:
                body = error_body("http_max_requests", f"Too many documents in progress (at most {running})")
                return JSONResponse(body, status_code=429, headers={"Retry-After": "5"})
            source = await state.backend.open(data, options)
        except ApiError as exc:
            return error_response(exc.error_id, exc.message, exc.status_code)
        if source.num_pages > state.limits.max_pages:
            await source.aclose()
            limit = state.limits.max_pages
            return error_response("pdf_page_limit_exceeded", f"The PDF has more than {limit} pages")
        if state.page_quota is not None and state.pages_used + source.num_pages > state.page_quota:
            await source.aclose()
            count = state.pages_used + source.num_pages
            body = error_body(
                "http_max_requests",
                "Page limit exceeded",
                limit_name="page_monthly_limit",
                limit_value=state.page_quota,
                count=count,
            )
            return JSONResponse(body, status_code=429, headers={"Retry-After": "60"})
        state.pages_used += source.num_pages
        if state.task_group is None:  # pragma: no cover - the lifespan did not run
            await source.aclose()
            return error_response("sys_exception", "The server is not running")
        job = Job(new_pdf_id(), streaming=options.streaming, num_pages=source.num_pages)
        state.jobs.add(job)
        state.task_group.start_soon(run_job, job, source)
        return JSONResponse({"pdf_id": job.pdf_id})

    async def status(request: Request) -> Response:
        job = job_or_none(request)
        if job is None:
            return unknown_id()
        body: dict[str, Any] = job.status_body().model_dump(exclude_none=True)
        if job.error is not None:
            body.update(job.error)
        return JSONResponse(body)

    async def stream(request: Request) -> Response:
        job = job_or_none(request)
        if job is None:
            return unknown_id()
        if not job.streaming:
            return error_response("opts_streaming_required", 'Upload with "streaming": true to stream pages')

        async def lines(job: Job) -> AsyncIterator[bytes]:
            async for message in job.follow():
                yield encode_message(message, state.framing)
            if job.error is not None:
                yield encode_message(job.error, state.framing)

        fault = state.stream_fault
        if fault is not None and fault.times > 0:
            fault.times -= 1
            body = faulty_stream(job.follow(), fault, state.framing)
            headers = {"Cache-Control": "no-cache"}
            return StreamingResponse(body, media_type=MEDIA_TYPES[state.framing], headers=headers)

        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return StreamingResponse(lines(job), media_type=MEDIA_TYPES[state.framing], headers=headers)

    async def mmd(request: Request) -> Response:
        job = job_or_none(request)
        if job is None:
            return unknown_id(404)
        if job.status != "completed":
            return error_response("pdf_not_ready", "The document is not completed", 404)
        return PlainTextResponse(job.mmd(), media_type="text/plain; charset=utf-8")

    async def lines_json(request: Request) -> Response:
        job = job_or_none(request)
        if job is None:
            return unknown_id(404)
        if job.status != "completed":
            return error_response("pdf_not_ready", "The document is not completed", 404)
        return JSONResponse(job.lines())

    async def delete(request: Request) -> Response:
        if not state.jobs.delete(str(request.path_params["pdf_id"])):
            return unknown_id()
        return JSONResponse({})

    async def other(request: Request) -> Response:
        """Any other path under ``/v3/pdf/`` (e.g. ``..%2F..``) names no job."""
        return unknown_id(404 if request.url.path.endswith((".mmd", ".json")) else 200)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with anyio.create_task_group() as task_group:
            state.task_group = task_group
            try:
                yield
            finally:
                state.task_group = None
                state.jobs.close()
                task_group.cancel_scope.cancel()

    app = Starlette(
        routes=[
            Route("/v3/pdf", upload, methods=["POST"]),
            Route("/v3/pdf/{pdf_id}/stream", stream, methods=["GET"]),
            Route("/v3/pdf/{pdf_id}.lines.mmd.json", lines_json, methods=["GET"]),
            Route("/v3/pdf/{pdf_id}.mmd", mmd, methods=["GET"]),
            Route("/v3/pdf/{pdf_id}", status, methods=["GET"]),
            Route("/v3/pdf/{pdf_id}", delete, methods=["DELETE"]),
            Route("/v3/pdf/{rest:path}", other, methods=["GET", "DELETE"]),
        ],
        lifespan=lifespan,
    )
    app.add_middleware(BodyLimit, limit=state.limits.max_upload_bytes)
    if faults is not None and faults.requests:
        app.add_middleware(FaultyRequests, faults=faults.requests)
    if app_key:
        app.add_middleware(AppKeyMiddleware, app_key=app_key)
    app.state.server = state
    return app
