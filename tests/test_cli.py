"""The ``streamrag`` command, run as a user runs it: a child process, its stdout and stderr."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from streamrag._demo import DEMO_QUESTIONS, write_demo_pdf


def streamrag(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MATHPIX_")}
    return subprocess.run(
        [sys.executable, "-m", "streamrag", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**environ, **(env or {})},
        check=False,
    )


def test_ask_json_against_a_server_then_from_the_store(start_server, captures: list[Path], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    capture = next(c for c in captures if c.name == "final-old")
    server = start_server("--backend", "replay", "--recordings", str(capture), "--pace", "0.05")
    questions = ["What is the purpose of the E(p) term in the PageRank algorithm?", "What is TF-IDF?"]
    args = ["ask", str(capture / "stream.json"), "--json", "--store", str(tmp_path / "store")]
    for q in questions:
        args += ["-q", q]
    run = streamrag(*args, "--api-url", server.url)
    assert run.returncode == 0, run.stderr
    records = [json.loads(line) for line in run.stdout.splitlines()]
    keys = {"question", "answer", "citations", "pages_indexed", "pages_total", "final", "seconds"}
    assert all(keys <= set(r) for r in records)
    assert records[0]["pages_indexed"] < records[0]["pages_total"] == 15 and not records[0]["final"]
    assert [r["question"] for r in records if r["final"]] == questions
    assert all(r["pages_indexed"] == 15 for r in records if r["final"])
    seconds = [r["seconds"] for r in records]
    assert seconds == sorted(seconds)
    for r in records:
        for c in r["citations"]:
            assert set(c) == {"page", "pages", "text", "score"} and c["page"] == c["pages"][0]
    final = next(r for r in records if r["final"])
    assert "[p. 14]" in final["answer"]

    server.stop()  # a complete document is answered from the store, without the server
    again = streamrag(*args, "--api-url", server.url)
    assert again.returncode == 0, again.stderr
    records = [json.loads(line) for line in again.stdout.splitlines()]
    assert len(records) == 2 and all(r["final"] and r["pages_indexed"] == 15 for r in records)


def test_ask_a_pdf_through_the_embedded_server_in_human_form(tmp_path: Path) -> None:
    pdf = write_demo_pdf(tmp_path / "demo.pdf")
    run = streamrag("ask", str(pdf), "-q", DEMO_QUESTIONS[2], "--store", str(tmp_path / "store"), "--pace", "0.1")
    assert run.returncode == 0, run.stderr
    assert "page 1/7 indexed" in run.stderr and "page 7/7 indexed" in run.stderr
    assert "final answer (pages 1–7 of 7 indexed; complete)" in run.stdout
    assert "still streaming" in run.stdout  # an answer came before the last page
    assert "Blue Heron" in run.stdout.split("final answer")[-1]


def test_ask_reports_errors_without_a_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "broken.pdf"
    bad.write_bytes(b"%PDF-1.7\nthis is not really a pdf")
    run = streamrag("ask", str(bad), "-q", "anything?", "--store", str(tmp_path / "store"))
    assert run.returncode == 1
    assert "pdf_invalid" in run.stderr and "Traceback" not in run.stderr
    missing = streamrag("ask", str(tmp_path / "nope.pdf"), "-q", "x")
    assert missing.returncode != 0 and "no such file" in missing.stderr


def test_ingest_without_section_context_embeds_the_text_alone(captures: list[Path], tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    import numpy as np

    from streamrag import LiveIndex

    capture = next(c for c in captures if c.name == "exam-2017-solutions2")
    run = streamrag("ingest", str(capture / "stream.json"), "--store", str(tmp_path / "store"), "--no-section-context")
    assert run.returncode == 0, run.stderr
    index = LiveIndex(tmp_path / "store", embed_model=embedder, section_context=False)
    doc_id = index.documents()[0]
    chunk = next(c for c in index.chunks(doc_id) if c.section == "Final Exam > Game Playing")  # kept as metadata
    got = index._collection.get(ids=[chunk.chunk_id], include=["embeddings"])["embeddings"][0]
    assert np.allclose(got, embedder.get_text_embedding(chunk.text), atol=1e-5)


def test_ingest_with_the_torch_backend_stores_the_fp32_models_vectors(
    captures: list[Path], tmp_path: Path, embedder
) -> None:  # type: ignore[no-untyped-def]
    import numpy as np

    from streamrag import LiveIndex
    from streamrag._embedding import load_embedder

    capture = next(c for c in captures if c.name == "exam-2017-solutions2")
    store = str(tmp_path / "store")
    run = streamrag(
        "ingest", str(capture / "stream.json"), "--store", store, "--no-section-context", "--embed-backend", "torch"
    )
    assert run.returncode == 0, run.stderr
    fp32 = load_embedder(backend="torch")
    index = LiveIndex(tmp_path / "store", embed_model=fp32, section_context=False)
    chunks = index.chunks(index.documents()[0])[:8]
    got = np.asarray(index._collection.get(ids=[c.chunk_id for c in chunks], include=["embeddings"])["embeddings"])
    want = np.asarray(fp32.get_text_embedding_batch([c.text for c in chunks]))
    int8 = np.asarray(embedder.get_text_embedding_batch([c.text for c in chunks]))
    assert np.allclose(got, want, atol=1e-5)
    assert not np.allclose(got, int8, atol=1e-3)  # the default backend's vectors would differ
