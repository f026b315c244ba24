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
from typing import Any, TextIO

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
async def _open_source(path: Path, args: argparse.Namespace) -> AsyncIterator[Any]:
    """The page source for ``ask``: ``--api-url``, else Mathpix if ``MATHPIX_APP_KEY`` is set, else
    the embedded server on a free loopback port (replaying a recording, or converting a PDF)."""
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
        yield MathpixPDF(pdf, api_url=args.api_url, options=options)
        return
    from ._server import EmbeddedServer

    server = EmbeddedServer(
        backend="replay" if recording else "local", recordings=[path.parent] if recording else None, pace=args.pace
    )
    with server:
        yield MathpixPDF(pdf, api_url=server.url, app_key="", options=options)


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


async def _ask_async(args: argparse.Namespace) -> int:
    from ._index import LiveIndex
    from ._live import aask
    from ._models import Answer

    out, err = sys.stdout, sys.stderr
    bar = page_progress(err, quiet=args.json)
    async with _open_source(Path(args.source), args) as source:
        index = await asyncio.to_thread(LiveIndex, args.store, embed_model=args.model)
        async for item in aask(source, args.question, index, top_k=args.top_k, started=STARTED):
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
    if bar is not None:
        bar.close()
    return 0


def page_progress(err: TextIO, *, quiet: bool) -> Any:
    """A tqdm bar of pages indexed on ``err`` when it is a terminal; ``None`` when ``quiet`` (``--json``)
    or when ``err`` is not a terminal (then each page is a plain line instead)."""
    if quiet or not err.isatty():
        return None
    from tqdm import tqdm

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


async def _ingest_async(args: argparse.Namespace) -> int:
    from ._exceptions import StreamragError
    from ._index import LiveIndex

    index = await asyncio.to_thread(LiveIndex, args.store, embed_model=args.model)
    failed = 0
    for path in _sources_of(args.sources):
        try:
            async with _open_source(path, args) as source:
                if (await index.acoverage(source.doc_id)).complete:
                    print(f"{path}: already complete ({source.doc_id})", flush=True)
                    continue
                async for event in source:
                    update = await index.aadd_page(event)
                    state = "duplicate" if update.duplicate else "indexed"
                    total = event.pdf_selected_len or "?"
                    print(f"{path}: page {event.page_idx}/{total} {state}", flush=True)
                coverage = await index.afinish(source.doc_id)
                print(f"{path}: {coverage.describe()} ({source.doc_id})", flush=True)
        except StreamragError as exc:
            failed += 1
            print(f"{path}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
    return 1 if failed else 0


def _run(main: Any, args: argparse.Namespace) -> int:
    from ._exceptions import StreamragError

    logging.basicConfig(level=logging.WARNING, format="streamrag: %(message)s")
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
    _source_options(ask)
    ask.set_defaults(func=_ask)

    ingest = sub.add_parser("ingest", help="index PDFs or recorded streams into the store (resumable)")
    ingest.add_argument("sources", nargs="+", help="PDF files, stream.json recordings, or folders of them")
    _source_options(ingest)
    ingest.set_defaults(func=_ingest)
    return parser


def _source_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--api-url", help="a Mathpix-compatible server (default: Mathpix if MATHPIX_APP_KEY is set)")
    parser.add_argument("--store", help="index directory (default: $STREAMRAG_STORE or ~/.local/share/streamrag)")
    parser.add_argument("--pace", type=float, default=0.0, help="embedded server: seconds per page, at least")
    parser.add_argument("--model", help="sentence-transformers model name or path (default: all-MiniLM-L6-v2)")
    parser.add_argument("--password", help="password of an encrypted PDF")
    parser.add_argument("--page-ranges", help='pages to read, Mathpix syntax, e.g. "2,4-6"')


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result
