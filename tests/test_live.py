"""Live answers: early, refined when the top results change, final at the end, always cited."""

from __future__ import annotations

import itertools
import socket
from pathlib import Path

import pytest
from llama_index.core.llms import MockLLM

from streamrag import Answer, LiveIndex, LiveQuestions, LocalPDF, MathpixPDF, PageEvent, RecordedStream, aask, ask
from streamrag._demo import DEMO_QUESTIONS, write_demo_pdf

QUESTIONS = [
    "What is the purpose of the E(p) term in the PageRank algorithm?",
    "How is the TF-IDF weighted term vector calculated?",
]


def check_answers(items: list[PageEvent | Answer], questions: list[str]) -> list[Answer]:
    answers = [i for i in items if isinstance(i, Answer)]
    pages = [i for i in items if isinstance(i, PageEvent)]
    assert pages, "the source was read"
    first = answers[0]
    assert first.coverage.pages_indexed < (first.coverage.pages_total or 0), "answered while streaming"
    assert items.index(first) == 1, "answered right after the first page"
    for answer in answers:
        assert answer.citations
        assert {p for c in answer.citations for p in c.pages} <= set(answer.coverage.pages_seen)
        assert "[p. " in answer.answer  # each extracted sentence names its page
    for q in questions:
        mine = [a for a in answers if a.question == q]
        assert mine[-1].final and mine[-1].coverage.complete
        assert sum(a.final for a in mine) == 1
        refinements = [tuple(c.chunk_id for c in a.citations) for a in mine if not a.final]
        assert len(set(refinements)) == len(refinements), "re-answered only when the top results changed"
    return answers


def test_ask_answers_early_and_refines(index: LiveIndex, captures: list[Path]) -> None:
    capture = next(c for c in captures if c.name == "final-old")
    items = list(ask(RecordedStream(capture / "stream.json"), QUESTIONS, index))
    answers = check_answers(items, QUESTIONS)
    final = next(a for a in answers if a.final and a.question == QUESTIONS[0])
    assert "[p. 14]" in final.answer and final.citations[0].page == 14
    assert final.coverage.describe() == "pages 1–15 of 15 indexed; complete"
    assert answers[0].coverage.describe().endswith("still streaming")


@pytest.mark.anyio
async def test_aask_over_a_local_pdf(index: LiveIndex, tmp_path: Path) -> None:
    pdf = write_demo_pdf(tmp_path / "demo.pdf")
    items = [item async for item in aask(LocalPDF(pdf), DEMO_QUESTIONS, index)]
    answers = check_answers(items, DEMO_QUESTIONS)
    finals = {a.question: a for a in answers if a.final}
    assert "1987" in finals[DEMO_QUESTIONS[0]].answer
    assert "64,000" in finals[DEMO_QUESTIONS[1]].answer
    assert "Blue Heron" in finals[DEMO_QUESTIONS[2]].answer


def test_a_complete_document_is_answered_from_the_store(index: LiveIndex, captures: list[Path]) -> None:
    capture = next(c for c in captures if c.name == "midterm-old")
    list(ask(RecordedStream(capture / "stream.json"), QUESTIONS, index))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"  # reading this source would fail
    source = MathpixPDF(capture / "midterm-old.pdf", api_url=dead, app_key="")
    assert source.doc_id == RecordedStream(capture / "stream.json").doc_id
    items = list(ask(source, QUESTIONS, index))
    assert all(isinstance(i, Answer) and i.final and i.coverage.complete for i in items)
    assert len(items) == len(QUESTIONS)


def test_an_llm_answers_over_the_same_citations(index: LiveIndex, captures: list[Path]) -> None:
    capture = next(c for c in captures if c.name == "final-old")
    list(ask(RecordedStream(capture / "stream.json"), QUESTIONS, index))
    doc_id = RecordedStream(capture / "stream.json").doc_id
    extractive = LiveQuestions(index, doc_id, QUESTIONS[:1]).update(final=True)[0]
    generated = LiveQuestions(index, doc_id, QUESTIONS[:1], llm=MockLLM()).update(final=True)[0]
    assert [c.chunk_id for c in generated.citations] == [c.chunk_id for c in extractive.citations]
    # MockLLM echoes its prompt: the context is the cited text, labelled with pages, and the coverage
    assert extractive.citations[0].text in generated.answer
    assert "(p. 14)" in generated.answer and "pages 1–15 of 15 indexed; complete" in generated.answer
    assert generated.answer != extractive.answer


def test_pages_without_content_are_counted_not_indexed(index: LiveIndex, captures: list[Path]) -> None:
    capture = next(c for c in captures if c.name == "exam-2019")
    items = list(ask(RecordedStream(capture / "stream.json"), ["What is depth-first search?"], index))
    final = items[-1]
    assert isinstance(final, Answer)
    assert final.coverage.pages_without_content == [2, 4, 6, 8, 10, 12, 14]
    assert "(7 without content)" in final.coverage.describe()
    assert not {2, 4, 6, 8, 10, 12, 14} & {p for c in final.citations for p in c.pages}


class _Pages:
    """An async source of a recording's pages, all available at once; optionally endless or failing."""

    def __init__(self, capture: Path, *, endless: bool = False, fail_after: int | None = None) -> None:
        self.stream = RecordedStream(capture / "stream.json")
        self.doc_id = self.stream.doc_id
        self.endless = endless
        self.fail_after = fail_after
        self.read = 0
        self.closed = False

    async def __aiter__(self):  # type: ignore[no-untyped-def]
        try:
            while True:
                async for event in self.stream:
                    if self.fail_after is not None and self.read == self.fail_after:
                        raise ValueError("the source broke")
                    self.read += 1
                    yield event
                if not self.endless:
                    return
                self.stream = RecordedStream(self.stream.path, doc_id=self.doc_id)
        finally:
            self.closed = True


@pytest.mark.anyio
async def test_aask_indexes_queued_pages_in_batches_and_answers_once_per_batch(
    index: LiveIndex, captures: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    capture = next(c for c in captures if c.name == "final-old")
    batches: list[list[int]] = []
    add_pages = index.aadd_pages

    async def spy(events):  # type: ignore[no-untyped-def]
        batches.append([e.page_idx for e in events])
        return await add_pages(events)

    monkeypatch.setattr(index, "aadd_pages", spy)
    items = [item async for item in aask(_Pages(capture), QUESTIONS, index)]
    pages = [i.page_idx for i in items if isinstance(i, PageEvent)]
    assert pages == list(range(1, 16)), "every page, once, in order"
    assert [p for b in batches for p in b] == pages
    assert len(batches) < len(pages), "pages that queued up were indexed together"
    # answers come only between batches: never between two pages of one batch
    ends = {b[-1] for b in batches}
    for before, item in itertools.pairwise(items):
        if isinstance(item, Answer) and not item.final:
            assert isinstance(before, Answer) or before.page_idx in ends
    rounds = {a.seconds for a in items if isinstance(a, Answer) and not a.final}
    assert len([a for a in items if isinstance(a, Answer) and a.final]) == len(QUESTIONS)
    assert len(rounds) <= len(batches) * len(QUESTIONS)


@pytest.mark.anyio
async def test_aask_stops_quietly_when_the_consumer_stops_early(index: LiveIndex, captures: list[Path]) -> None:
    import contextlib

    capture = next(c for c in captures if c.name == "final-old")
    source = _Pages(capture, endless=True)
    async with contextlib.aclosing(aask(source, QUESTIONS, index)) as items:
        async for item in items:
            if isinstance(item, Answer):
                break
    assert source.closed, "the read-ahead task was stopped"

    other = _Pages(capture, endless=True)
    gen = aask(other, QUESTIONS, index)
    assert isinstance(await gen.__anext__(), PageEvent)
    await gen.aclose()  # no error, the reader cancelled
    assert other.closed


@pytest.mark.anyio
async def test_aask_raises_a_source_error_after_the_pages_before_it(index: LiveIndex, captures: list[Path]) -> None:
    capture = next(c for c in captures if c.name == "final-old")
    seen: list[int] = []
    with pytest.raises(ValueError, match="the source broke"):
        async for item in aask(_Pages(capture, fail_after=3), QUESTIONS, index):
            if isinstance(item, PageEvent):
                seen.append(item.page_idx)
    assert seen == [1, 2, 3]
    assert not index.coverage(RecordedStream(capture / "stream.json").doc_id).finished


def test_questions_already_embedded_are_not_embedded_again(index: LiveIndex, captures: list[Path]) -> None:
    """``streamrag ask`` embeds its questions while the model warms up; the vector given is used."""
    from llama_index.core.schema import QueryBundle

    capture = next(c for c in captures if c.name == "final-old")
    # the PageRank question's vector under another wording: retrieval must follow the vector
    vector = index.embed_model.get_query_embedding(QUESTIONS[0])
    bundle = QueryBundle("Which page is this?", embedding=vector)
    items = list(ask(RecordedStream(capture / "stream.json"), [bundle], index))
    final = next(a for a in items if isinstance(a, Answer) and a.final)
    assert final.question == "Which page is this?"
    assert final.citations[0].page == 14  # where the E(p) term is, as for QUESTIONS[0] itself
    plain = LiveQuestions(index, "unused", ["Which page is this?"])
    assert plain._bundles[0].embedding != vector  # a string is embedded as itself
