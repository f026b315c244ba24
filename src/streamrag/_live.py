"""Live answers: questions asked while a document streams, answered as soon as a page is indexed,
answered again whenever new pages change their top results, and finally when the stream ends.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Sequence
from typing import Any, Protocol

import anyio.to_thread
from llama_index.core.schema import QueryBundle

from ._answer import Answerer
from ._index import LiveIndex
from ._models import Answer, PageEvent

__all__ = ["LiveQuestions", "PageSource", "aask", "ask"]


class PageSource(Protocol):
    """Anything with a ``doc_id`` that yields page events (sync, async, or both)."""

    doc_id: str


class LiveQuestions:
    """A set of questions about one document, re-answered as its pages land in ``index``.

    A question is a string, or a ``QueryBundle`` already embedded (e.g. while the index was built).
    """

    def __init__(
        self,
        index: LiveIndex,
        doc_id: str,
        questions: Sequence[str | QueryBundle],
        *,
        top_k: int = 5,
        llm: Any = None,
        started: float | None = None,
    ) -> None:
        self.index = index
        self.doc_id = doc_id
        self.top_k = top_k
        self.answerer = Answerer(llm)
        self.started = time.monotonic() if started is None else started
        self._bundles = [index.query_bundle(q) for q in questions]
        self.questions = [b.query_str for b in self._bundles]
        self._last: list[tuple[str, ...] | None] = [None] * len(self.questions)

    def update(self, *, final: bool = False) -> list[Answer]:
        """Answers whose top results changed since the last update (all of them when ``final``)."""
        out = []
        for i, bundle in enumerate(self._bundles):
            citations, coverage = self.index.retrieve(bundle, self.doc_id, self.top_k)
            key = tuple(c.chunk_id for c in citations)
            if not citations and not final:
                continue
            if key == self._last[i] and not final:
                continue
            self._last[i] = key
            coverage = coverage or self.index.coverage(self.doc_id)
            text = self.answerer.answer(bundle.query_str, citations, coverage.describe())
            out.append(
                Answer(
                    question=bundle.query_str,
                    answer=text,
                    citations=citations,
                    coverage=coverage,
                    final=final,
                    seconds=round(time.monotonic() - self.started, 3),
                )
            )
        return out

    async def aupdate(self, *, final: bool = False) -> list[Answer]:
        return await anyio.to_thread.run_sync(lambda: self.update(final=final))


def ask(
    source: Iterable[PageEvent],
    questions: Sequence[str | QueryBundle],
    index: LiveIndex,
    *,
    top_k: int = 5,
    llm: Any = None,
    started: float | None = None,
) -> Iterator[PageEvent | Answer]:
    """Index ``source`` page by page and yield each page event and each new answer, final ones last.

    A document already complete in the store is answered at once without reading the source.
    """
    doc_id: str = source.doc_id  # type: ignore[attr-defined]
    live = LiveQuestions(index, doc_id, questions, top_k=top_k, llm=llm, started=started)
    if not index.coverage(doc_id).complete:
        for event in source:
            index.add_page(event)
            yield event
            if not index.coverage(doc_id).complete:  # at completion the final answers follow at once
                yield from live.update()
        index.finish(doc_id)
    yield from live.update(final=True)


MAX_BATCH = 32  # pages indexed together at most when they queue up (bounds memory and answer delay)


async def aask(
    source: AsyncIterable[PageEvent],
    questions: Sequence[str | QueryBundle],
    index: LiveIndex,
    *,
    top_k: int = 5,
    llm: Any = None,
    started: float | None = None,
    max_batch: int = MAX_BATCH,
) -> AsyncIterator[PageEvent | Answer]:
    """The async face of :func:`ask`: pages are read on the event loop, indexing runs in a thread.

    The source is read ahead by a task of its own, so pages keep arriving while earlier ones are
    embedded; pages that queued up meanwhile are indexed together (one embedding batch, one write,
    up to ``max_batch``) and the questions re-answered once per batch. The first page is always
    indexed alone, so that the first answer never waits for a backlog. A consumer may stop early
    (``break`` inside ``contextlib.aclosing``, or ``aclose()``): the reader is cancelled quietly.
    An error of the source is raised after the pages that came before it are indexed and yielded.
    """
    doc_id: str = source.doc_id  # type: ignore[attr-defined]
    live = await anyio.to_thread.run_sync(
        lambda: LiveQuestions(index, doc_id, questions, top_k=top_k, llm=llm, started=started)
    )
    if not (await index.acoverage(doc_id)).complete:
        send, receive = anyio.create_memory_object_stream[PageEvent](math.inf)
        failure: list[BaseException] = []

        async def read_ahead() -> None:
            pages = aiter(source)
            async with send:
                try:
                    async for event in pages:
                        await send.send(event)
                except Exception as exc:  # raised by the consumer once the earlier pages are through
                    failure.append(exc)
                finally:  # close the source now (its connection), not when it is garbage-collected
                    if (aclose := getattr(pages, "aclose", None)) is not None:
                        with anyio.CancelScope(shield=True):
                            await aclose()

        stopped = False  # the consumer closed us: GeneratorExit must not cross the task group
        async with receive, anyio.create_task_group() as tg:
            tg.start_soon(read_ahead)
            limit = 1  # the first page alone, answered at once; then whatever queued meanwhile
            try:
                async for first in receive:
                    batch = [first]
                    while len(batch) < limit:
                        try:
                            batch.append(receive.receive_nowait())
                        except (anyio.WouldBlock, anyio.EndOfStream):
                            break
                    await index.aadd_pages(batch)
                    limit = max_batch
                    for event in batch:
                        yield event
                    if not (await index.acoverage(doc_id)).complete:  # at completion the finals follow
                        for answer in await live.aupdate():
                            yield answer
            except GeneratorExit:
                stopped = True
            except Exception as exc:  # raised below, outside the task group, with its own type
                failure.insert(0, exc)
            finally:
                tg.cancel_scope.cancel()  # a consumer that stopped early: stop reading
        if stopped:
            return
        if failure:
            raise failure[0]
        await index.afinish(doc_id)
    for answer in await live.aupdate(final=True):
        yield answer
