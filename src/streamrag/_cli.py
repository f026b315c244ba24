"""The ``streamrag`` command: ``serve`` a Mathpix-compatible server, ``ask`` questions of a PDF."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from ._embedding import Backend

STARTED = time.monotonic()


def _serve(args: argparse.Namespace) -> int:
    from ._server import serve
    from ._server.app import Limits
    from ._server.faults import FaultPlan

    serve(
        host=args.host,
        port=args.port,
        backend=args.backend,
        recordings=args.recordings,
        pace=args.pace,
        framing=args.framing,
        app_key=args.app_key or os.environ.get("STREAMRAG_APP_KEY") or None,
        page_quota=args.page_quota,
        limits=Limits(int(args.max_upload_mb * 2**20), args.max_pages, args.max_jobs),
        faults=FaultPlan.model_validate_json(args.faults) if args.faults else None,
    )
    return 0


@contextlib.asynccontextmanager
async def _open_source(path: Path, args: argparse.Namespace, gate: Any = None) -> AsyncIterator[Any]:
    """The page source for ``ask``: ``--api-url``, else Mathpix if ``MATHPIX_APP_KEY`` is set, else
    the embedded server on a free loopback port (replaying a recording, or converting a PDF).
    ``gate``: a :class:`~streamrag._retry.RateGate` shared with the worker's other sources."""
    from ._sources import MathpixPDF, RecordedStream

    if not path.is_file():
        raise SystemExit(f"streamrag: no such file: {path}")
    options = {k: v for k, v in {"password": args.password, "page_ranges": args.page_ranges}.items() if v}
    recording = path.suffix.lower() == ".json"
    pdf = path
    if recording:
        pdfs = sorted(path.parent.glob("*.pdf"))
        if len(pdfs) != 1:
            if args.api_url or os.environ.get("MATHPIX_APP_KEY"):
                raise SystemExit(f"streamrag: no PDF beside {path} to upload")
            yield RecordedStream(path, pace=args.pace)  # nothing to upload: replay in-process
            return
        pdf = pdfs[0]
    if args.api_url or os.environ.get("MATHPIX_APP_KEY"):
        yield MathpixPDF(pdf, api_url=args.api_url, options=options, gate=gate)
        return
    from ._server import EmbeddedServer

    server = EmbeddedServer(
        backend="replay" if recording else "local", recordings=[path.parent] if recording else None, pace=args.pace
    )
    with server:
        yield MathpixPDF(pdf, api_url=server.url, app_key="", options=options, gate=gate)


def _print_answer(answer: Any, out: TextIO) -> None:
    label = "final answer" if answer.final else "answer"
    print(f"\n[{answer.seconds:6.2f}s] {label} ({answer.coverage.describe()})", file=out)
    print(f"  Q: {answer.question}", file=out)
    print(f"  A: {answer.answer}", file=out)
    for c in answer.citations[:3]:
        pages = ", ".join(map(str, c.pages))
        snippet = " ".join(c.text.split())[:100]
        print(f"     - p. {pages} ({c.score:.2f}): {snippet}", file=out)
    out.flush()


class _Prefetched:
    """A page source already being read (uploaded, streamed) by a task, while the model still loads."""

    def __init__(self, doc_id: str, receive: Any) -> None:
        self.doc_id = doc_id
        self._receive = receive

    async def __aiter__(self) -> AsyncIterator[Any]:
        async with self._receive:
            async for event in self._receive:
                if isinstance(event, BaseException):
                    raise event
                yield event


def _stored_complete(client: Any, doc_id: str) -> bool:
    """Whether the store's page ledger holds every page of ``doc_id`` (read without any model)."""
    from ._store import DEFAULT_COLLECTION, PageLedger  # not ._index: the model thread imports that

    pages: set[int] = set()
    total = None
    for event in PageLedger(client, f"{DEFAULT_COLLECTION}-pages").load(doc_id):
        pages.add(event.page_idx)
        total = event.pdf_selected_len or total
    return total is not None and all(i in pages for i in range(1, total + 1))


def _ready_embedder(model: str | None, backend: Backend, questions: Sequence[str]) -> tuple[Any, list[Any]]:
    """The embedder loaded, the index stack imported and the questions embedded (run in a thread at
    start-up; embedding the questions is also the warm-up that pays the first forward pass's costs)."""
    from llama_index.core.schema import QueryBundle

    from . import _index, _live  # noqa: F401
    from ._embedding import load_embedder

    embedder = load_embedder(model, backend=backend)
    return embedder, [QueryBundle(q, embedding=embedder.get_query_embedding(q)) for q in questions]


async def _ask_async(args: argparse.Namespace) -> int:
    """Cold start overlapped: the model loads in a thread while the store is opened, the source
    uploads and the first page is awaited; a document complete in the store is never uploaded."""
    import anyio

    from ._store import open_chroma

    err = sys.stderr
    timings = getattr(args, "timings", False)
    spec = _store_spec(args)
    loading = asyncio.ensure_future(asyncio.to_thread(_ready_embedder, args.model, args.embed_backend, args.question))
    client = await asyncio.to_thread(open_chroma, spec)
    bar = page_progress(err, quiet=args.json)
    reading: asyncio.Future[None] | None = None
    async with _open_source(Path(args.source), args) as source:
        if not await asyncio.to_thread(_stored_complete, client, source.doc_id):
            send, receive = anyio.create_memory_object_stream[Any](float("inf"))

            async def prefetch(pages: Any) -> None:
                async with send:
                    try:
                        async for event in pages:
                            if timings:
                                print(f"timing arrived {event.page_idx} {time.monotonic() - STARTED:.3f}", file=err)
                            await send.send(event)
                    except Exception as exc:  # handed to the reader, raised after the pages before it
                        await send.send(exc)

            reading = asyncio.ensure_future(prefetch(source))  # not a task group: errors keep their type
            source = _Prefetched(source.doc_id, receive)
        embedder, questions = await loading
        if timings:
            print(f"timing model_ready {time.monotonic() - STARTED:.3f}", file=err)
        from ._index import LiveIndex
        from ._live import aask

        index = await asyncio.to_thread(
            LiveIndex, spec, embed_model=embedder, chroma_client=client, section_context=args.section_context
        )
        try:
            await _print_items(aask(source, questions, index, top_k=args.top_k, started=STARTED), args, bar)
        finally:
            if reading is not None:
                reading.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reading
    if bar is not None:
        bar.close()
    return 0


async def _print_items(items: AsyncIterator[Any], args: argparse.Namespace, bar: Any) -> None:
    """Each answer on stdout (JSON or human), each page on stderr (a bar, or a line)."""
    from ._models import Answer

    out, err = sys.stdout, sys.stderr
    async with contextlib.aclosing(items):  # type: ignore[type-var]
        async for item in items:
            if isinstance(item, Answer):
                if args.json:
                    print(json.dumps(item.to_record(), ensure_ascii=False), file=out, flush=True)
                elif bar is not None:
                    bar.clear()
                    _print_answer(item, out)
                    bar.refresh()
                else:
                    _print_answer(item, out)
            elif bar is not None:
                bar.total = item.pdf_selected_len
                bar.set_postfix_str(f"page {item.page_idx}" + ("" if item.has_content else " (no content)"))
                bar.update(1)
            elif not args.json:
                total = item.pdf_selected_len or "?"
                status = "indexed" if item.has_content else f"no content ({item.error_id})"
                print(f"[{time.monotonic() - STARTED:6.2f}s] page {item.page_idx}/{total} {status}", file=err)


def page_progress(err: TextIO, *, quiet: bool) -> Any:
    """A tqdm bar of pages indexed on ``err`` when it is a terminal; ``None`` when ``quiet`` (``--json``)
    or when ``err`` is not a terminal (then each page is a plain line instead)."""
    if quiet or not err.isatty():
        return None
    from tqdm import tqdm

    try:
        width = os.get_terminal_size(err.fileno()).columns
    except (OSError, ValueError):
        width = 0
    if width <= 0:  # a terminal that reports no size (a fresh pty): a fixed width, not an empty bar
        return tqdm(desc="pages indexed", unit="page", file=err, ncols=80)
    return tqdm(desc="pages indexed", unit="page", file=err, dynamic_ncols=True)


def _sources_of(paths: list[str]) -> list[Path]:
    """PDFs and recordings named, a folder standing for the PDFs and ``stream.json`` files in it."""
    found: list[Path] = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.suffix.lower() == ".pdf" or p.name == "stream.json")
        else:
            found.append(path)
    return found


def _store_spec(args: argparse.Namespace) -> Any:
    """The store named by ``--store`` (a directory or a Chroma server URL) and its server options."""
    from ._store import StoreSpec

    try:
        return StoreSpec.of(
            args.store, headers=args.store_header or None, tenant=args.store_tenant, database=args.store_database
        )
    except ValueError as exc:
        raise SystemExit(f"streamrag: {exc}") from None


async def _ingest_async(args: argparse.Namespace) -> int:
    from ._index import LiveIndex
    from ._store import open_chroma
    from ._workers import Worker, jobs_of, lease_table

    spec = _store_spec(args)
    jobs = jobs_of(_sources_of(args.sources))
    from ._embedding import load_embedder

    embedder = await asyncio.to_thread(load_embedder, args.model, backend=args.embed_backend)
    index = await asyncio.to_thread(LiveIndex, spec, embed_model=embedder, section_context=args.section_context)
    # leases only matter when several processes share a server; a directory has one process at a time
    leases = await asyncio.to_thread(lease_table, open_chroma(spec), ttl=args.lease_ttl) if spec.is_server else None
    worker = Worker(
        index,
        leases,
        lambda path, gate: _open_source(path, args, gate),
        name=args.worker_name,
        concurrency=args.concurrency,
        out=sys.stdout,
        err=sys.stderr,
    )
    print(f"worker {worker.name}: {len(jobs)} documents, store {spec.describe()}", flush=True)
    return await worker.run(jobs)


def _run(main: Any, args: argparse.Namespace) -> int:
    from ._exceptions import StreamragError

    logging.basicConfig(level=logging.WARNING, format="streamrag: %(message)s")
    logging.getLogger("streamrag.embedding").setLevel(logging.INFO)  # why the first run waits ~20 s
    try:
        result: int = asyncio.run(main(args))
    except StreamragError as exc:
        print(f"streamrag {args.command}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return result


def _ask(args: argparse.Namespace) -> int:
    return _run(_ask_async, args)


def _ingest(args: argparse.Namespace) -> int:
    return _run(_ingest_async, args)


def _demo(args: argparse.Namespace) -> int:
    from ._demo import write_demo_pdf

    print(write_demo_pdf(Path(args.path)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="streamrag", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run a Mathpix-compatible PDF API server")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    serve.add_argument("--port", type=int, default=8000, help="port; 0 picks a free one (default 8000)")
    serve.add_argument("--backend", choices=["local", "replay"], default="local")
    serve.add_argument("--recordings", help="folder of recorded streams (replay backend)")
    serve.add_argument("--pace", type=float, default=0.0, help="seconds per page, at least (default 0)")
    serve.add_argument("--framing", choices=["lines", "sse"], default="lines")
    serve.add_argument("--app-key", help="require this app_key header (or set STREAMRAG_APP_KEY)")
    serve.add_argument("--page-quota", type=int, help="pages accepted in all; beyond it uploads get HTTP 429")
    serve.add_argument("--max-upload-mb", type=float, default=1024, help="largest upload in MiB (default 1024)")
    serve.add_argument("--max-pages", type=int, default=10_000, help="most pages per document (default 10000)")
    serve.add_argument("--max-jobs", type=int, default=16, help="most documents in progress at once (default 16)")
    serve.add_argument("--faults", help=argparse.SUPPRESS)  # test-only fault injection (JSON FaultPlan)
    serve.set_defaults(func=_serve)

    ask = sub.add_parser("ask", help="ask questions of a PDF (or recorded stream) while it streams")
    ask.add_argument("source", help="a PDF file, or a recorded stream.json")
    ask.add_argument("-q", "--question", action="append", required=True, help="a question (repeatable)")
    ask.add_argument("--json", action="store_true", help="one JSON object per answer on stdout")
    ask.add_argument("--top-k", type=int, default=5, help="chunks to retrieve per question (default 5)")
    ask.add_argument("--timings", action="store_true", help=argparse.SUPPRESS)  # benchmark: arrivals, model ready
    _source_options(ask)
    ask.set_defaults(func=_ask)

    ingest = sub.add_parser("ingest", help="index PDFs or recorded streams into the store (resumable)")
    ingest.add_argument("sources", nargs="+", help="PDF files, stream.json recordings, or folders of them")
    ingest.add_argument("--concurrency", type=int, default=2, help="documents streamed at once (default 2)")
    ingest.add_argument(
        "--lease-ttl", type=float, default=30.0, help="seconds a worker's claim on a document lasts unrenewed"
    )
    ingest.add_argument("--worker-name", help="this worker's name in leases (default host:pid:random)")
    _source_options(ingest)
    ingest.set_defaults(func=_ingest)

    demo = sub.add_parser("demo", help="write the demo document (a 7-page PDF the project authors)")
    demo.add_argument("path", nargs="?", default="streamrag-demo.pdf", help="where to write it")
    demo.set_defaults(func=_demo)
    return parser


def _source_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--api-url", help="a Mathpix-compatible server (default: Mathpix if MATHPIX_APP_KEY is set)")
    parser.add_argument(
        "--store",
        help="index directory, or a Chroma server URL http://host:port[?tenant=T&database=D] "
        "(default: $STREAMRAG_STORE or ~/.local/share/streamrag)",
    )
    parser.add_argument(
        "--store-header",
        action="append",
        metavar="'NAME: VALUE'",
        help="a header for the Chroma server, e.g. 'Authorization: Bearer …' (repeatable; "
        "or STREAMRAG_STORE_HEADERS, STREAMRAG_STORE_TOKEN)",
    )
    parser.add_argument("--store-tenant", help="Chroma server tenant (default: the server's default)")
    parser.add_argument("--store-database", help="Chroma server database (default: the server's default)")
    parser.add_argument("--pace", type=float, default=0.0, help="embedded server: seconds per page, at least")
    parser.add_argument("--model", help="sentence-transformers model name or path (default: all-MiniLM-L6-v2)")
    parser.add_argument(
        "--embed-backend",
        choices=("openvino-int8", "torch"),
        default="openvino-int8",
        help="how the model runs: its transformer quantized to int8 by OpenVINO, ~2.5x faster on CPU "
        "(default; converted once and cached under $STREAMRAG_CACHE or ~/.cache/streamrag), or fp32 torch. "
        "Use one setting per store",
    )
    parser.add_argument(
        "--no-section-context",
        dest="section_context",
        action="store_false",
        help="embed each chunk's text without its section path (kept as metadata); measured better on PDFs "
        "whose headings come from the local converter. Use one setting per store",
    )
    parser.add_argument("--password", help="password of an encrypted PDF")
    parser.add_argument("--page-ranges", help='pages to read, Mathpix syntax, e.g. "2,4-6"')


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result
