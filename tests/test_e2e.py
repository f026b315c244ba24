"""The whole path over HTTP on 127.0.0.1: a real server streams, the index grows, answers come early."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import coverage_counts, mmd_pages
from streamrag import Answer, LiveIndex, MathpixClient, MathpixPDF, PageEvent, aask

pytestmark = pytest.mark.anyio

QUESTION = "Which question asks about cosine similarity?"


@pytest.mark.parametrize("framing", ["lines", "sse"])
async def test_every_capture_through_the_replay_server(
    start_server, captures: list[Path], tmp_path: Path, embedder: object, framing: str
) -> None:  # type: ignore[no-untyped-def]
    server = start_server(
        "--backend", "replay", "--recordings", str(captures[0].parent), "--pace", "0.05", "--framing", framing
    )
    index = LiveIndex(tmp_path / "store", embed_model=embedder)  # type: ignore[arg-type]
    for capture in captures:
        source = MathpixPDF(capture / f"{capture.name}.pdf", api_url=server.url, app_key="")
        items = [item async for item in aask(source, [QUESTION], index)]
        answers = [i for i in items if isinstance(i, Answer)]
        first_content = next(i for i in items if isinstance(i, PageEvent) and i.has_content)
        assert answers[0].coverage.pages_indexed < answers[0].coverage.pages_total  # type: ignore[operator]
        assert items.index(answers[0]) == items.index(first_content) + 1
        assert answers[-1].final and answers[-1].coverage.complete
        # the final index holds every page's text exactly once, and the pages rebuild the .mmd
        pages = mmd_pages(capture)
        assert set(coverage_counts(pages, index.chunks(source.doc_id)).values()) == {1}
        mmd = (capture / "result.mmd").read_text(encoding="utf-8")
        assert "".join(index.page_texts(source.doc_id).values()) == mmd


async def test_local_backend_answers_before_the_last_page_is_converted(
    start_server, shared: Path, tmp_path: Path, embedder: object
) -> None:  # type: ignore[no-untyped-def]
    pdf = shared / "corpus" / "arxiv-0807.3577-jcap.pdf"  # 15 pages, a math paper
    server = start_server("--backend", "local", "--pace", "0.4")
    index = LiveIndex(tmp_path / "store", embed_model=embedder)  # type: ignore[arg-type]
    source = MathpixPDF(pdf, api_url=server.url, app_key="")
    converted_at_first_answer = None
    answers = []
    question = "Can an inhomogeneous model without dark energy explain the accelerated expansion?"
    async for item in aask(source, [question], index):
        if isinstance(item, Answer):
            answers.append(item)
            if converted_at_first_answer is None:
                with MathpixClient(api_url=server.url, app_key="") as client:
                    status = client.status(source.pdf_id)  # type: ignore[arg-type]
                converted_at_first_answer = (status.num_pages_completed, status.num_pages)
    assert converted_at_first_answer is not None
    done, total = converted_at_first_answer
    assert total == 15 and done is not None and done < total
    assert answers[0].coverage.pages_indexed < 15 and answers[-1].coverage.complete
    assert answers[-1].final and "dark energy" in answers[-1].answer.lower()
