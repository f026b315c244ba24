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

    serve(
        host=args.host,
        port=args.port,
        backend=args.backend,
        recordings=args.recordings,
        pace=args.pace,
        framing=args.framing,
        app_key=args.app_key or os.environ.get("STREAMRAG_APP_KEY") or None,
        page_quota=args.page_quota,
    )
    return 0


@contextlib.asynccontextmanager
async def _open_source(args: argparse.Namespace) -> AsyncIterator[Any]:
    """The page source for ``ask``: ``--api-url``, else Mathpix if ``MATHPIX_APP_KEY`` is set, else
    the embedded server on a free loopback port (replaying a recording, or converting a PDF)."""
    from ._sources import MathpixPDF, RecordedStream

    path = Path(args.source)
    if not path.is_file():
        raise SystemExit(f"streamrag ask: no such file: {path}")
    options = {k: v for k, v in {"password": args.password, "page_ranges": args.page_ranges}.items() if v}
    recording = path.suffix.lower() == ".json"
    pdf = path
    if recording:
        pdfs = sorted(path.parent.glob("*.pdf"))
        if len(pdfs) != 1:
            if args.api_url or os.environ.get("MATHPIX_APP_KEY"):
                raise SystemExit(f"streamrag ask: no PDF beside {path} to upload")
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
    async with _open_source(args) as source:
        index = await asyncio.to_thread(LiveIndex, args.store, embed_model=args.model)
        async for item in aask(source, args.question, index, top_k=args.top_k, started=STARTED):
            if isinstance(item, Answer):
                if args.json:
                    print(json.dumps(item.to_record(), ensure_ascii=False), file=out, flush=True)
                else:
                    _print_answer(item, out)
            elif not args.json:
                total = item.pdf_selected_len or "?"
                status = "indexed" if item.has_content else f"no content ({item.error_id})"
                print(f"[{time.monotonic() - STARTED:6.2f}s] page {item.page_idx}/{total} {status}", file=err)
    return 0


def _ask(args: argparse.Namespace) -> int:
    from ._exceptions import StreamragError

    logging.basicConfig(level=logging.WARNING, format="streamrag: %(message)s")
    try:
        return asyncio.run(_ask_async(args))
    except StreamragError as exc:
        print(f"streamrag ask: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


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
    serve.set_defaults(func=_serve)

    ask = sub.add_parser("ask", help="ask questions of a PDF (or recorded stream) while it streams")
    ask.add_argument("source", help="a PDF file, or a recorded stream.json")
    ask.add_argument("-q", "--question", action="append", required=True, help="a question (repeatable)")
    ask.add_argument("--json", action="store_true", help="one JSON object per answer on stdout")
    ask.add_argument("--api-url", help="a Mathpix-compatible server (default: Mathpix if MATHPIX_APP_KEY is set)")
    ask.add_argument("--store", help="index directory (default: $STREAMRAG_STORE or ~/.local/share/streamrag)")
    ask.add_argument("--pace", type=float, default=0.0, help="embedded server: seconds per page, at least")
    ask.add_argument("--top-k", type=int, default=5, help="chunks to retrieve per question (default 5)")
    ask.add_argument("--model", help="sentence-transformers model name or path (default: all-MiniLM-L6-v2)")
    ask.add_argument("--password", help="password of an encrypted PDF")
    ask.add_argument("--page-ranges", help='pages to read, Mathpix syntax, e.g. "2,4-6"')
    ask.set_defaults(func=_ask)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result
