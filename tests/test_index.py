"""The live index on a real embedded Chroma with the real embedder."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from llama_index.core import VectorStoreIndex
from llama_index.core.schema import MetadataMode
from llama_index.vector_stores.chroma import ChromaVectorStore

from conftest import coverage_counts, mmd_pages
from streamrag import LiveIndex, PageEvent, RecordedStream
from streamrag._nodes import node_of, stored_node
from streamrag._stream import read_recording


def events(capture: Path, doc_id: str = "doc") -> list[PageEvent]:
    return [PageEvent.from_message(m, doc_id) for m in read_recording(capture / "stream.json")]


def capture_named(captures: list[Path], name: str) -> Path:
    return next(c for c in captures if c.name == name)


def test_index_holds_every_page_exactly_once(index: LiveIndex, captures: list[Path]) -> None:
    capture = capture_named(captures, "exam-2019")
    for event in events(capture):
        index.add_page(event)
    coverage = index.coverage("doc")
    assert coverage.complete and coverage.pages_indexed == 15 and len(coverage.pages_without_content) == 7
    pages = mmd_pages(capture)
    chunks = index.chunks("doc")
    assert set(coverage_counts(pages, chunks).values()) == {1}
    for chunk in chunks:
        assert chunk.text == chunk.prefix + "".join(pages[p][a:b] for p, a, b in chunk.pieces)
    assert "".join(index.page_texts("doc").values()) == (capture / "result.mmd").read_text(encoding="utf-8")


def test_any_arrival_order_with_duplicates_ends_in_the_same_index(
    tmp_path: Path, embedder: object, captures: list[Path]
) -> None:
    capture = capture_named(captures, "final-old")
    in_order = LiveIndex(tmp_path / "a", embed_model=embedder)  # type: ignore[arg-type]
    for event in events(capture):
        in_order.add_page(event)
    shuffled = LiveIndex(tmp_path / "b", embed_model=embedder)  # type: ignore[arg-type]
    messy = events(capture) * 2
    random.Random(7).shuffle(messy)
    updates = [shuffled.add_page(e) for e in messy]
    assert sum(u.duplicate for u in updates) == 15
    assert sum(bool(u.removed) for u in updates) > 0  # neighbours arrived later and replaced chunks

    def snapshot(index: LiveIndex) -> list[tuple[str, str]]:
        got = index._collection.get(include=["documents", "metadatas"])
        records = zip(got["ids"], got["documents"], got["metadatas"], strict=True)
        return sorted((i, stored_node(i, d, m).get_content()) for i, d, m in records)

    assert snapshot(shuffled) == snapshot(in_order)
    assert len(snapshot(in_order)) == len(in_order.chunks("doc"))


def test_a_new_process_resumes_from_the_store(tmp_path: Path, embedder: object, captures: list[Path]) -> None:
    capture = capture_named(captures, "midterm-old")
    first = LiveIndex(tmp_path / "store", embed_model=embedder)  # type: ignore[arg-type]
    all_events = events(capture)
    for event in all_events[:6]:
        first.add_page(event)
    # a crash between writing a page's chunks and recording the page leaves orphans behind
    orphan = RecordedStream(capture / "stream.json", doc_id="doc")
    from streamrag._chunker import StreamChunker

    chunker = StreamChunker("doc", first._count, first.chunk_tokens)
    for message in orphan.messages[:8]:
        chunker.add(message.page_idx, message.text)
    written_ids = {c.chunk_id for c in first.chunks("doc")}
    orphans = [c for c in chunker.chunks[7] if c.chunk_id not in written_ids]
    assert orphans
    first.index.insert_nodes([node_of(c) for c in orphans])

    second = LiveIndex(tmp_path / "store", embed_model=embedder)  # type: ignore[arg-type]
    coverage = second.coverage("doc")
    assert coverage.pages_seen == [1, 2, 3, 4, 5, 6] and not coverage.complete
    assert not {c.chunk_id for c in orphans} & {c.chunk_id for c in second.chunks("doc")}
    assert second.add_page(all_events[0]).duplicate
    for event in all_events[6:]:
        second.add_page(event)
    assert second.coverage("doc").complete
    assert set(coverage_counts(mmd_pages(capture), second.chunks("doc")).values()) == {1}


def test_a_store_chunked_differently_is_rewritten_on_resume(
    tmp_path: Path, embedder: object, captures: list[Path]
) -> None:
    # pages recorded by a run that chunked them otherwise (another version, another budget): on resume
    # the old chunks go and the ones the pages make now are written, not lost
    capture = capture_named(captures, "final-old")
    small = LiveIndex(tmp_path / "store", embed_model=embedder, chunk_tokens=80)  # type: ignore[arg-type]
    for event in events(capture):
        small.add_page(event)
    old_ids = {c.chunk_id for c in small.chunks("doc")}
    fresh = LiveIndex(tmp_path / "fresh", embed_model=embedder)  # type: ignore[arg-type]
    for event in events(capture):
        fresh.add_page(event)
    want = sorted((c.chunk_id, c.text) for c in fresh.chunks("doc"))
    want_ids = {i for i, _ in want}
    assert len(want_ids - old_ids) > 5 and len(old_ids - want_ids) > 5  # to write, and to drop

    resumed = LiveIndex(tmp_path / "store", embed_model=embedder)  # type: ignore[arg-type]
    assert resumed.coverage("doc").complete
    assert sorted((c.chunk_id, c.text) for c in resumed.chunks("doc")) == want
    assert all(resumed.add_page(e).duplicate for e in events(capture))
    citations, _ = resumed.retrieve("information retrieval", "doc", 3)
    assert citations and {c.chunk_id for c in citations} <= want_ids


def test_the_store_opens_in_llama_index_as_it_is_and_reads_older_records(
    tmp_path: Path, embedder: Any, captures: list[Path]
) -> None:
    capture = capture_named(captures, "final-old")
    index = LiveIndex(tmp_path / "store", embed_model=embedder)
    for event in events(capture):
        index.add_page(event)
    texts = {c.chunk_id: c.text for c in index.chunks("doc")}
    pages = index.page_texts("doc")
    got = index._collection.get(include=["documents"])
    assert set(got["ids"]) == set(texts) and not any(got["documents"])  # no Chroma documents to full-text-index
    assert not any(index._ledger._collection.get(include=["documents"])["documents"])
    stock = VectorStoreIndex.from_vector_store(ChromaVectorStore(chroma_collection=index._collection), embedder)
    hits = stock.as_retriever(similarity_top_k=3).retrieve("PageRank")
    assert len(hits) == 3 and all(h.node.get_content() == texts[h.node.node_id] for h in hits)

    # the same store as earlier versions wrote it (and LlamaIndex's own store writes chunks): texts as documents
    ledger = index._ledger._collection
    old = ledger.get(include=["metadatas", "embeddings"])
    ledger.delete(ids=old["ids"])
    metas = [dict(m) for m in old["metadatas"]]
    ledger.add(ids=old["ids"], embeddings=old["embeddings"], documents=[m.pop("text") for m in metas], metadatas=metas)
    old = index._collection.get(include=["metadatas", "embeddings", "documents"])
    nodes = [stored_node(i, d, m) for i, d, m in zip(old["ids"], old["documents"], old["metadatas"], strict=True)]
    for node, vector in zip(nodes, old["embeddings"], strict=True):
        node.embedding = list(vector)
    index._collection.delete(ids=old["ids"])
    ChromaVectorStore(chroma_collection=index._collection).add(nodes)
    assert all(index._collection.get(include=["documents"])["documents"])

    resumed = LiveIndex(tmp_path / "store", embed_model=embedder)
    assert resumed.coverage("doc").complete and resumed.page_texts("doc") == pages
    assert {c.chunk_id: c.text for c in resumed.chunks("doc")} == texts
    assert all(resumed.add_page(e).duplicate for e in events(capture))
    citations, _ = resumed.retrieve("What is the purpose of the E(p) term in the PageRank algorithm?", "doc", 1)
    assert citations[0].page == 14 and "E(p)" in citations[0].text


def test_retrieval_sees_pages_written_after_the_retriever_was_made(index: LiveIndex, captures: list[Path]) -> None:
    capture = capture_named(captures, "final-old")
    retriever = index.index.as_retriever(similarity_top_k=3)
    assert retriever.retrieve("PageRank") == []
    question = "What is the purpose of the E(p) term in the PageRank algorithm?"
    for event in events(capture):
        index.add_page(event)
        citations, coverage = index.retrieve(question, "doc", top_k=3)
        assert coverage is not None
        assert {p for c in citations for p in c.pages} <= set(coverage.pages_seen)
    assert [n.node.node_id for n in retriever.retrieve(question)]
    citations, _ = index.retrieve(question, "doc", top_k=1)
    assert citations[0].page == 14 and "E(p)" in citations[0].text


def test_documents_are_separate(index: LiveIndex, captures: list[Path]) -> None:
    a, b = capture_named(captures, "midterm-old"), capture_named(captures, "exam-2024-solutions")
    for event in events(a, "a") + events(b, "b"):
        index.add_page(event)
    citations, _ = index.retrieve("cosine similarity of two documents", "b", top_k=5)
    assert citations and {c.doc_id for c in citations} == {"b"}
    before = len(index.chunks("b"))
    index.delete_document("a")
    assert index.chunks("a") == [] and index.coverage("a").pages_indexed == 0
    assert len(index.chunks("b")) == before and index.coverage("b").complete


def test_a_document_inserted_directly_is_split_to_the_models_window(index: LiveIndex, captures: list[Path]) -> None:
    """``LiveIndex.index`` is a plain ``VectorStoreIndex``; its own splitter counts the model's word
    pieces, so no inserted text lies beyond what the model reads (LlamaIndex's default would not)."""
    from llama_index.core import Document

    text = "\n\n".join(t for t in mmd_pages(next(c for c in captures if c.name == "final-old")).values() if t)
    index.index.insert(Document(text=text, id_="whole-file"))
    got = index._collection.get(where={"ref_doc_id": "whole-file"}, include=["documents", "metadatas"])
    records = zip(got["ids"], got["documents"], got["metadatas"], strict=True)
    sizes = index._count([stored_node(i, d, m).get_content() for i, d, m in records])
    assert len(sizes) > 1 and max(sizes) <= index.chunk_tokens
    assert sum(sizes) >= 0.95 * index._count([text])[0]  # the whole text, split rather than cut off


def test_section_context_off_embeds_the_text_alone_and_keeps_the_path(
    tmp_path: Path, embedder: object, captures: list[Path]
) -> None:
    import numpy as np

    capture = capture_named(captures, "exam-2017-solutions2")
    on = LiveIndex(tmp_path / "on", embed_model=embedder)  # type: ignore[arg-type]
    off = LiveIndex(tmp_path / "off", embed_model=embedder, section_context=False)  # type: ignore[arg-type]
    for index in (on, off):
        for event in events(capture):
            index.add_page(event)
    chunk = next(c for c in off.chunks("doc") if c.section == "Final Exam > Game Playing" and c.page == 8)
    assert chunk.section not in chunk.text  # the path is not in the text: only context can carry it

    def stored(index: LiveIndex, chunk_id: str) -> np.ndarray:
        got = index._collection.get(ids=[chunk_id], include=["embeddings", "metadatas"])
        assert got["metadatas"][0]["section"] == "Final Exam > Game Playing"  # metadata either way
        return np.asarray(got["embeddings"][0])

    def embedded(text: str) -> np.ndarray:
        return np.asarray(embedder.get_text_embedding(text))  # type: ignore[attr-defined]

    with_path = embedded(node_of(chunk).get_content(MetadataMode.EMBED))
    assert node_of(chunk).get_content(MetadataMode.EMBED).startswith("section: Final Exam > Game Playing")
    assert np.allclose(stored(off, chunk.chunk_id), embedded(chunk.text), atol=1e-5)
    assert not np.allclose(stored(off, chunk.chunk_id), with_path, atol=1e-3)
    on_chunk = next(c for c in on.chunks("doc") if c.page == 8 and c.section == chunk.section)
    assert np.allclose(
        stored(on, on_chunk.chunk_id), embedded(node_of(on_chunk).get_content(MetadataMode.EMBED)), atol=1e-5
    )
