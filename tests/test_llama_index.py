"""The LlamaIndex plugin on real parts: `streamrag serve`, the real embedder, real Chroma, real captures.

The only stand-in is llama_index's ``MockLLM`` for the tests of LLM token streaming: no real LLM is
reachable offline. It echoes its prompt, which lets the tests see what the live index gave it.
"""

from __future__ import annotations

import inspect
import logging
import time
from pathlib import Path
from typing import Any

import pytest
from llama_index.core import VectorStoreIndex
from llama_index.core.base.response.schema import AsyncStreamingResponse, Response, StreamingResponse
from llama_index.core.ingestion import DocstoreStrategy, IngestionPipeline
from llama_index.core.llms import MockLLM
from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.storage.docstore import SimpleDocumentStore
from llama_index.core.vector_stores import SimpleVectorStore
from llama_index.vector_stores.chroma import ChromaVectorStore

from conftest import coverage_counts, mmd_pages
from streamrag import AuthenticationError
from streamrag._chunker import StreamChunker
from streamrag._demo import DEMO_QUESTIONS, write_demo_pdf
from streamrag._embedding import token_counter
from streamrag._store import chunk_collection, open_chroma
from streamrag.llama_index import MMDNodeParser, StreamragIndex, StreamragReader
from streamrag.llama_index.node_parser import headings

EVACUATION = DEMO_QUESTIONS[2]  # answered on page 6 of the demo document


def capture_named(captures: list[Path], name: str) -> Path:
    return next(c for c in captures if c.name == name)


@pytest.fixture(scope="module")
def demo_pdf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_demo_pdf(tmp_path_factory.mktemp("demo") / "haldvik-holm.pdf")


@pytest.fixture
def replay(start_server: Any, captures: list[Path]) -> Any:
    return start_server("--backend", "replay", "--recordings", str(captures[0].parent))


# -- reader --------------------------------------------------------------------------------


def test_reader_is_a_serialisable_pydantic_reader_that_hides_its_key(start_server: Any, captures: list[Path]) -> None:
    reader = StreamragReader(api_url="http://127.0.0.1:1", app_key="s3cret-key", options={"page_ranges": "1-2"})
    assert StreamragReader.class_name() == "StreamragReader"
    data = reader.to_dict()
    assert data["class_name"] == "StreamragReader" and data["options"] == {"page_ranges": "1-2"}
    assert "app_key" not in data and "s3cret" not in reader.to_json() and "s3cret" not in repr(reader)
    again = StreamragReader.from_dict(data)
    assert again.api_url == reader.api_url and again.app_key is None
    # the key does reach the server: a server that requires it streams, and refuses without it
    capture = capture_named(captures, "exam-2024-solutions")
    server = start_server("--backend", "replay", "--recordings", str(capture.parent), "--app-key", "s3cret-key")
    docs = StreamragReader(api_url=server.url, app_key="s3cret-key").load_data(capture / f"{capture.name}.pdf")
    assert [d.metadata["page_number"] for d in docs] == list(range(1, 7))
    with pytest.raises(AuthenticationError) as info:
        StreamragReader(api_url=server.url, app_key="wrong").load_data(capture / f"{capture.name}.pdf")
    assert "wrong" not in str(info.value)


def test_one_document_per_page_with_flat_stable_metadata(replay: Any, captures: list[Path]) -> None:
    capture = capture_named(captures, "exam-2019")  # 15 pages, 7 without content, 2 continuing
    pdf = capture / f"{capture.name}.pdf"
    reader = StreamragReader(api_url=replay.url, app_key="")
    docs = reader.load_data(pdf)
    pages = mmd_pages(capture)
    assert [d.metadata["page_number"] for d in docs] == list(range(1, 16))
    doc_id = docs[0].metadata["document_id"]
    for doc in docs:
        meta, page = doc.metadata, doc.metadata["page_number"]
        assert doc.id_ == f"{doc_id}-p{page}" and meta["page_label"] == str(page)
        assert meta["total_pages"] == 15 and meta["file_name"] == pdf.name
        assert all(isinstance(v, str | int | float | bool) for v in meta.values())
        assert doc.text == pages[page]
        assert meta["continues_previous"] == (page in (7, 15))
        assert meta["has_content"] == bool(pages[page])
    empty = [d for d in docs if not d.metadata["has_content"]]
    assert [d.metadata["page_number"] for d in empty] == [2, 4, 6, 8, 10, 12, 14]
    assert all(d.text == "" and d.metadata["error_id"] for d in empty)
    # the same page of the same document: the same id and the same hash (nothing volatile)
    again = StreamragReader(api_url=replay.url, app_key="").load_data(pdf)
    assert [(d.id_, d.hash) for d in again] == [(d.id_, d.hash) for d in docs]


def test_skip_empty_skips_pages_without_content_with_a_warning(
    replay: Any, captures: list[Path], caplog: pytest.LogCaptureFixture
) -> None:
    capture = capture_named(captures, "exam-2019")
    with caplog.at_level(logging.WARNING, logger="streamrag.llama_index"):
        docs = StreamragReader(api_url=replay.url, app_key="", skip_empty=True).load_data(capture / "exam-2019.pdf")
    assert [d.metadata["page_number"] for d in docs] == [1, 3, 5, 7, 9, 11, 13, 15]
    skipped = [r.getMessage() for r in caplog.records if "no content" in r.getMessage()]
    assert len(skipped) == 7 and "page 2 " in skipped[0]


def test_lazy_load_yields_each_page_as_it_arrives(start_server: Any, captures: list[Path]) -> None:
    capture = capture_named(captures, "exam-2024-solutions")  # 6 pages, one every 0.3 s
    server = start_server("--backend", "replay", "--recordings", str(capture.parent), "--pace", "0.3")
    arrivals = [
        time.monotonic() for _ in StreamragReader(api_url=server.url).lazy_load_data(capture / f"{capture.name}.pdf")
    ]
    assert len(arrivals) == 6
    assert arrivals[-1] - arrivals[0] >= 1.2, "pages were handed over one by one, not collected first"


@pytest.mark.anyio
async def test_alazy_load_is_a_true_async_generator(start_server: Any, captures: list[Path]) -> None:
    assert inspect.isasyncgenfunction(StreamragReader.alazy_load_data)
    capture = capture_named(captures, "exam-2024-solutions")
    server = start_server("--backend", "replay", "--recordings", str(capture.parent), "--pace", "0.3")
    reader = StreamragReader(api_url=server.url, app_key="")
    arrivals, docs = [], []
    async for doc in reader.alazy_load_data(capture / f"{capture.name}.pdf"):
        arrivals.append(time.monotonic())
        docs.append(doc)
    assert arrivals[-1] - arrivals[0] >= 1.2
    listed = await reader.aload_data(capture / f"{capture.name}.pdf")
    assert [(d.id_, d.hash) for d in listed] == [(d.id_, d.hash) for d in docs]


def test_embedded_and_local_backends_read_the_same_pages(demo_pdf: Path) -> None:
    embedded = StreamragReader(backend="embedded").load_data(demo_pdf)
    local = StreamragReader(backend="local").load_data(demo_pdf)
    assert len(embedded) == 7 and [(d.id_, d.text) for d in embedded] == [(d.id_, d.text) for d in local]


# -- pipelines -----------------------------------------------------------------------------


def test_ingestion_pipeline_upserts_page_by_page_without_duplicates(
    start_server: Any, demo_pdf: Path, tmp_path: Path, embedder: Any
) -> None:
    server = start_server("--backend", "local")
    reader = StreamragReader(api_url=server.url, app_key="")
    collection = chunk_collection(open_chroma(tmp_path / "chroma"), "pipeline")
    docstore = SimpleDocumentStore()
    pipeline = IngestionPipeline(
        transformations=[MMDNodeParser(embed_model=embedder), embedder],
        docstore=docstore,
        vector_store=ChromaVectorStore(chroma_collection=collection),
        docstore_strategy=DocstoreStrategy.UPSERTS,
    )
    first = [len(pipeline.run(documents=[page])) for page in reader.lazy_load_data(demo_pdf)]
    assert len(first) == 7 and all(first)
    stored = collection.count()
    assert len(docstore.docs) == 7 and stored == sum(first)
    second = [len(pipeline.run(documents=[page])) for page in reader.lazy_load_data(demo_pdf)]
    assert second == [0] * 7 and len(docstore.docs) == 7 and collection.count() == stored
    # a changed page replaces its own nodes only
    page = reader.load_data(demo_pdf)[2]
    before = len(collection.get(where={"ref_doc_id": page.id_})["ids"])
    page.set_content(page.text + "\n\nAn added closing paragraph about the ferry timetable.")
    after = len(pipeline.run(documents=[page]))
    texts = collection.get(where={"ref_doc_id": page.id_}, include=["documents"])["documents"]
    assert len(texts) == after and any("ferry timetable" in t for t in texts)
    assert len(docstore.docs) == 7 and collection.count() == stored - before + after


def test_a_drop_in_for_pdf_reader_in_a_plain_llama_index_pipeline(demo_pdf: Path, embedder: Any) -> None:
    documents = StreamragReader(backend="local", options={"page_ranges": "5-7"}).load_data(demo_pdf)  # one line
    index = VectorStoreIndex.from_documents(
        documents, embed_model=embedder, transformations=[SentenceSplitter(chunk_size=200, chunk_overlap=0)]
    )
    hit = index.as_retriever(similarity_top_k=1).retrieve(EVACUATION)[0]
    assert "Blue Heron" in hit.node.get_content() and hit.node.metadata["page_label"] == "2"


# -- node parser ---------------------------------------------------------------------------


def test_headings_keep_the_section_hierarchy() -> None:
    text = "\\title{T}\n\n\\section{Intro}\n\nText.\n\n\\subsection*{Setup}\n\nMore.\n\n## Aside\n\nEnd."
    assert [(lvl, t) for _, lvl, t in headings(text)] == [(0, "T"), (2, "Intro"), (3, "Setup"), (2, "Aside")]
    from llama_index.core.schema import Document

    nodes = MMDNodeParser(chunk_tokens=8).get_nodes_from_documents([Document(id_="d", text=text)])
    paths = {n.get_content(): n.metadata["header_path"] for n in nodes}
    assert paths["Text."] == "/T/Intro/" and paths["More."] == "/T/Intro/Setup/" and paths["End."] == "/T/Aside/"


def test_node_parser_wraps_the_streaming_chunker(replay: Any, captures: list[Path], embedder: Any) -> None:
    capture = capture_named(captures, "exam-2017-solutions2")  # pages 2, 6 and 7 continue the previous one
    docs = StreamragReader(api_url=replay.url, app_key="").load_data(capture / f"{capture.name}.pdf")
    parser = MMDNodeParser(embed_model=embedder)
    nodes = parser.get_nodes_from_documents(docs)
    assert [n.node_id for n in parser.get_nodes_from_documents(docs)] == [n.node_id for n in nodes]
    # the same chunks (ids, texts) as the live index's chunker makes of the same pages
    doc_id = docs[0].metadata["document_id"]
    chunker = StreamChunker(doc_id, token_counter(embedder), parser.chunk_tokens)
    for doc in docs:
        chunker.add(doc.metadata["page_number"], doc.text or None)
    assert [(n.node_id, n.get_content()) for n in nodes] == [(c.chunk_id, c.text) for c in chunker.all_chunks()]

    class Spans:  # what coverage_counts reads
        def __init__(self, pieces: str) -> None:
            self.pieces = [tuple(int(x) for x in p.split(":")) for p in pieces.split(";")]

    pages = mmd_pages(capture)
    assert set(coverage_counts(pages, [Spans(n.metadata["pieces"]) for n in nodes]).values()) == {1}
    assert any(n.metadata["pages"] == "1,2" for n in nodes), "a paragraph cut by the page break is one node"
    first = nodes[0]
    assert first.ref_doc_id == docs[0].id_ and first.metadata["file_name"] == docs[0].metadata["file_name"]
    assert all(n.metadata["header_path"].startswith("/") for n in nodes)
    assert any(n.metadata["header_path"] != "/" for n in nodes)
    assert first.get_content(metadata_mode="embed") == first.get_content()  # the window is for the text


# -- live index ----------------------------------------------------------------------------


def test_live_index_answers_while_pages_land(start_server: Any, demo_pdf: Path, tmp_path: Path, embedder: Any) -> None:
    server = start_server("--backend", "local")
    index = StreamragIndex(tmp_path / "store", embed_model=embedder)
    engine, retriever, chat = index.as_query_engine(), index.as_retriever(similarity_top_k=3), index.as_chat_engine()
    seen = []
    for doc in StreamragReader(api_url=server.url, app_key="").lazy_load_data(demo_pdf):
        index.insert(doc)
        response = engine.query(EVACUATION)  # engines made before the first page see every page as it lands
        assert isinstance(response, Response) and response.metadata is not None
        cited = {int(p) for n in response.source_nodes for p in n.node.metadata["pages"].split(",")}
        assert cited <= set(range(1, response.metadata["pages_indexed"] + 1))
        seen.append((response.metadata["pages_indexed"], response.metadata["complete"], str(response)))
    assert [s[0] for s in seen] == list(range(1, 8))
    assert seen[0][1] is False and seen[-1][1] is True
    assert "Blue Heron" not in seen[0][2] and "Blue Heron" in seen[-1][2] and "[p. 6]" in seen[-1][2]
    assert retriever.retrieve(EVACUATION)[0].node.metadata["page_number"] == 6
    assert retriever.last is not None and retriever.last.metadata["coverage"] == "pages 1–7 of 7 indexed; complete"
    reply = chat.chat(EVACUATION)
    assert "[p. 6]" in str(reply) and reply.metadata and reply.metadata["complete"]
    chat.chat("How much water do the rainwater cisterns hold?")
    assert len(chat.chat_history) == 4 and "64,000" in str(chat.chat_history[-1].content)


def test_streaming_tokens_with_an_llm_and_without(demo_pdf: Path, tmp_path: Path, embedder: Any) -> None:
    index = StreamragIndex(tmp_path / "store", embed_model=embedder)
    index.feed(StreamragReader(backend="local", options={"page_ranges": "5-7"}).lazy_load_data(demo_pdf))
    streamed = index.as_query_engine(streaming=True, llm=MockLLM()).query(EVACUATION)
    assert isinstance(streamed, StreamingResponse) and streamed.metadata is not None
    tokens = list(streamed.response_gen)
    text = "".join(tokens)
    assert len(tokens) > 100  # MockLLM echoes its prompt token by token
    assert "pages 1–3 of 3 indexed; complete" in text and "Blue Heron" in text and "(p. 2)" in text
    plain = index.as_query_engine(streaming=True).query(EVACUATION)
    assert isinstance(plain, StreamingResponse)
    assert "".join(plain.response_gen) == str(index.as_query_engine().query(EVACUATION))
    chat = index.as_chat_engine(llm=MockLLM())
    reply = chat.stream_chat(EVACUATION)
    assert "Blue Heron" in "".join(reply.response_gen) and chat.last_metadata["complete"]
    assert len(chat.chat_history) == 2


@pytest.mark.anyio
async def test_the_async_face(start_server: Any, demo_pdf: Path, tmp_path: Path, embedder: Any) -> None:
    server = start_server("--backend", "local")
    index = StreamragIndex(tmp_path / "store", embed_model=embedder)
    engine = index.as_query_engine()
    indexed = []
    async for doc in StreamragReader(api_url=server.url, app_key="").alazy_load_data(demo_pdf):
        await index.ainsert(doc)
        response = await engine.aquery(EVACUATION)
        assert response.metadata is not None
        indexed.append(response.metadata["pages_indexed"])
    assert indexed == list(range(1, 8)) and "Blue Heron" in str(response)
    streamed = await index.as_query_engine(streaming=True, llm=MockLLM()).aquery(EVACUATION)
    assert isinstance(streamed, AsyncStreamingResponse)
    assert "Blue Heron" in "".join([t async for t in streamed.async_response_gen()])
    chat = index.as_chat_engine()
    assert "Blue Heron" in str(await chat.achat(EVACUATION))
    reply = await chat.astream_chat("How much water do the rainwater cisterns hold?")
    assert "64,000" in "".join([t async for t in reply.async_response_gen()]) and len(chat.chat_history) == 4
    nodes = await index.as_retriever().aretrieve(EVACUATION)
    assert nodes[0].node.metadata["page_number"] == 6


def test_any_vector_store_that_stores_text(demo_pdf: Path, tmp_path: Path, embedder: Any) -> None:
    collection = chunk_collection(open_chroma(tmp_path / "elsewhere"), "custom")
    index = StreamragIndex(
        tmp_path / "ledger", embed_model=embedder, vector_store=ChromaVectorStore(chroma_collection=collection)
    )
    reader = StreamragReader(backend="local", options={"page_ranges": "5-7"})
    (coverage,) = index.feed(reader.lazy_load_data(demo_pdf))
    assert coverage.complete and collection.count() > 0
    assert index.live._collection.count() == 0, "the chunks went to the store passed in"
    assert "Blue Heron" in str(index.as_query_engine().query(EVACUATION))
    index.delete_document(coverage.doc_id)
    assert collection.count() == 0 and index.coverage(coverage.doc_id)[0].pages_indexed == 0
    with pytest.raises(ValueError, match="does not store text"):
        StreamragIndex(tmp_path / "ledger", embed_model=embedder, vector_store=SimpleVectorStore())
