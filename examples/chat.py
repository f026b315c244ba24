"""Chat with a PDF while it is still streaming: ``python examples/chat.py paper.pdf [--llm openai:gpt-4o-mini]``.

Pages stream in the background (the embedded server, ``--api-url``, or Mathpix when
``MATHPIX_APP_KEY`` is set) and are indexed as they land; every question is answered over what is
indexed at that moment. A status line before each prompt shows pages indexed/total. Answers cite
pages as ``[p. N]``. Commands: ``/sources`` (the chunks the last answer rests on), ``/wait [N|all]``
(until N pages, or all, are indexed), ``/help``, ``/quit``.

Without ``--llm`` answers are extractive (the most relevant sentences, each with its page). With
``--llm PROVIDER:MODEL`` any LlamaIndex LLM whose integration package is installed answers
(``openai:gpt-4o-mini`` needs ``pip install llama-index-llms-openai``; ``mock`` is LlamaIndex's MockLLM).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

PROMPT = "you> "
HELP = "commands: /sources  /wait [N|all]  /help  /quit — anything else is a question"


def load_llm(spec: str | None) -> Any:
    """``PROVIDER[:MODEL]`` → an instance of that LlamaIndex LLM (``llama_index.llms.PROVIDER``)."""
    if not spec:
        return None
    provider, _, model = spec.partition(":")
    if provider == "mock":
        from llama_index.core.llms import MockLLM

        return MockLLM()
    from llama_index.core.llms import LLM

    name = provider.replace("-", "_")
    try:
        module = importlib.import_module(f"llama_index.llms.{name}")
    except ImportError:
        package = "llama-index-llms-" + provider.replace("_", "-")
        raise SystemExit(
            f"chat: --llm {spec}: the LlamaIndex integration is not installed (pip install {package})"
        ) from None
    classes = [getattr(module, n) for n in getattr(module, "__all__", dir(module))]
    classes = [c for c in classes if isinstance(c, type) and issubclass(c, LLM)]
    if not classes:
        raise SystemExit(f"chat: --llm {spec}: no LLM class in llama_index.llms.{name}")
    cls = next((c for c in classes if c.__name__.lower() == name.replace("_", "")), classes[0])
    return cls(model=model) if model else cls()


class Feed:
    """Streams the document into the index in a background thread; ``wait`` blocks until pages land."""

    def __init__(self, reader: Any, index: Any, source: str) -> None:
        self.reader, self.index, self.source = reader, index, source
        self.doc_id: str | None = None
        self.pages = 0
        self.done = False
        self.error: BaseException | None = None
        self._changed = threading.Condition()
        threading.Thread(target=self._run, name="feed", daemon=True).start()

    def _run(self) -> None:
        try:
            for page in self.reader.lazy_load_data(self.source):
                self.index.insert(page)
                with self._changed:
                    self.doc_id = page.metadata["document_id"]
                    self.pages += 1
                    self._changed.notify_all()
            if self.doc_id:
                self.index.finish(self.doc_id)
        except Exception as exc:  # shown in the status line; the chat goes on over what landed
            self.error = exc
        with self._changed:
            self.done = True
            self._changed.notify_all()

    def wait(self, pages: int | None) -> None:
        with self._changed:
            self._changed.wait_for(lambda: self.done or (pages is not None and self.pages >= pages))

    def status(self) -> str:
        with self._changed:
            doc_id, error = self.doc_id, self.error
        if doc_id is None:
            return "[no page indexed yet]" if error is None else f"[stream failed: {error}]"
        text = self.index.coverage(doc_id)[0].describe()
        return f"[{text}]" if error is None else f"[{text}; stream failed: {type(error).__name__}: {error}]"


def answer(chat: Any, question: str, streaming: bool) -> Any:
    print("bot> ", end="", flush=True)
    if streaming:
        reply = chat.stream_chat(question)
        for token in reply.response_gen:
            print(token, end="", flush=True)
        print()
    else:
        reply = chat.chat(question)
        print(reply.response)
    print(f"     ({chat.last_metadata['coverage']})", flush=True)
    return reply


def show_sources(reply: Any) -> None:
    if reply is None:
        print("no answer yet")
        return
    for i, hit in enumerate(reply.source_nodes, 1):
        text = " ".join(hit.node.get_content().split())
        print(f"[{i}] p. {hit.node.metadata['pages']} (score {hit.score:.2f}): {text[:400]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="a PDF file or URL")
    parser.add_argument("--api-url", help="a Mathpix-compatible server (default: Mathpix if MATHPIX_APP_KEY is set)")
    parser.add_argument("--pace", type=float, default=0.0, help="embedded server: seconds per page, at least")
    parser.add_argument("--store", help="index directory (default: a temporary one)")
    parser.add_argument("--llm", help="PROVIDER[:MODEL] of a LlamaIndex LLM, e.g. openai:gpt-4o-mini")
    parser.add_argument("--top-k", type=int, default=5, help="chunks per answer (default 5)")
    args = parser.parse_args(argv)
    try:
        llm = load_llm(args.llm)  # before anything slow: a missing integration fails at once
    except SystemExit as exc:
        print(exc, file=sys.stderr)
        return 2

    from streamrag.llama_index import StreamragIndex, StreamragReader

    if args.api_url or os.environ.get("MATHPIX_APP_KEY"):
        reader = StreamragReader(api_url=args.api_url)
    else:
        reader = StreamragReader(backend="embedded", pace=args.pace)
    print("loading the embedder and the index …", flush=True)
    index = StreamragIndex(args.store or tempfile.mkdtemp(prefix="streamrag-chat-"), similarity_top_k=args.top_k)
    chat = index.as_chat_engine(llm=llm)
    source = args.source if args.source.startswith(("http://", "https://")) else str(Path(args.source))
    feed = Feed(reader, index, source)
    print(HELP)
    last = None
    while True:
        print(feed.status())
        print(PROMPT, end="", flush=True)
        line = sys.stdin.readline()
        if not line:  # end of input
            print()
            return 0
        line = line.strip()
        if line in ("/quit", "/exit"):
            return 0
        if line == "/sources":
            show_sources(last)
        elif line.startswith("/wait"):
            arg = line[len("/wait") :].strip()
            feed.wait(None if arg in ("", "all") else int(arg))
        elif line.startswith("/"):
            print(HELP)
        elif line:
            last = answer(chat, line, streaming=llm is not None)


if __name__ == "__main__":
    sys.exit(main())
