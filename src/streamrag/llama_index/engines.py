"""LlamaIndex retriever, query engine and chat engine over a live index.

Every call asks the store afresh, so answers see the pages indexed at that moment; each response's
``metadata`` says what that was (``coverage``, ``pages_indexed``, ``pages_total``, ``complete``).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio.to_thread
from llama_index.core.base.base_query_engine import BaseQueryEngine
from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.base.llms.types import ChatMessage, ChatResponse, MessageRole
from llama_index.core.base.response.schema import (
    RESPONSE_TYPE,
    AsyncStreamingResponse,
    Response,
    StreamingResponse,
)
from llama_index.core.chat_engine.types import AgentChatResponse, BaseChatEngine, StreamingAgentChatResponse
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

from .._answer import PROMPT, Answerer
from .._models import Citation, Coverage

if TYPE_CHECKING:
    from .index import StreamragIndex

__all__ = ["LiveChatEngine", "LiveQueryEngine", "LiveRetriever", "Search", "coverage_metadata"]

_HIDDEN = ["document_id", "page_number", "pages", "score"]


def coverage_metadata(coverages: Sequence[Coverage], citations: Sequence[Citation] = ()) -> dict[str, Any]:
    """Response metadata: what was indexed when the answer was made, and the pages it cites."""
    totals = [c.pages_total for c in coverages]
    return {
        "coverage": "; ".join(c.describe() for c in coverages) or "nothing indexed yet",
        "pages_indexed": sum(c.pages_indexed for c in coverages),
        "pages_total": None if not totals or None in totals else sum(t or 0 for t in totals),
        "complete": bool(coverages) and all(c.complete for c in coverages),
        "pages_cited": sorted({p for c in citations for p in c.pages}),
        "documents": [c.model_dump() for c in coverages],
    }


def citation_node(citation: Citation) -> NodeWithScore:
    """A citation as LlamaIndex's ``NodeWithScore`` (score: cosine similarity)."""
    node = TextNode(
        id_=citation.chunk_id,
        text=citation.text,
        metadata={
            "document_id": citation.doc_id,
            "page_label": str(citation.page),
            "page_number": citation.page,
            "pages": ",".join(map(str, citation.pages)),
        },
        excluded_embed_metadata_keys=list(_HIDDEN),
        excluded_llm_metadata_keys=list(_HIDDEN),
    )
    return NodeWithScore(node=node, score=citation.score)


@dataclass
class Search:
    """One retrieval: the question (with its embedding), what it found, and the coverage then."""

    query: QueryBundle
    citations: list[Citation]
    coverages: list[Coverage]

    @property
    def nodes(self) -> list[NodeWithScore]:
        return [citation_node(c) for c in self.citations]

    @property
    def metadata(self) -> dict[str, Any]:
        return coverage_metadata(self.coverages, self.citations)


class LiveRetriever(BaseRetriever):
    """Retrieves from the live store at each call; ``last`` is the latest :class:`Search`."""

    def __init__(self, index: StreamragIndex, *, doc_id: str | None = None, top_k: int = 5) -> None:
        super().__init__()
        self.index = index
        self.doc_id = doc_id
        self.top_k = top_k
        self.last: Search | None = None

    def search(self, query: str | QueryBundle) -> Search:
        bundle = QueryBundle(query) if isinstance(query, str) else query
        if bundle.embedding is None:
            bundle = self.index.live.query_bundle(bundle.query_str)
        citations, _ = self.index.live.retrieve(bundle, self.doc_id, self.top_k)
        # read after the search: pages only grow, so every cited page is within this coverage
        self.last = Search(bundle, citations, self.index.coverage(self.doc_id))
        return self.last

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return self.search(query_bundle).nodes

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return (await anyio.to_thread.run_sync(self.search, query_bundle)).nodes


def _prompt(search: Search, history: Sequence[ChatMessage]) -> str:
    context = "\n\n".join(
        f"[{i}] (p. {', '.join(map(str, c.pages))})\n{c.text}" for i, c in enumerate(search.citations, 1)
    )
    prompt = PROMPT.format(coverage=search.metadata["coverage"], context=context, question=search.query.query_str)
    if history:
        talk = "\n".join(f"{m.role.value}: {m.content}" for m in history)
        prompt = f"The conversation so far:\n{talk}\n\n{prompt}"
    return prompt


class LiveQueryEngine(BaseQueryEngine):
    """Answers over what is indexed at each query: extractive without an LLM, generated with one."""

    def __init__(self, retriever: LiveRetriever, *, llm: Any = None, streaming: bool = False) -> None:
        super().__init__(callback_manager=None)
        self.retriever = retriever
        self.llm = llm
        self.streaming = streaming
        self._answerer = Answerer()  # extractive; the LLM is used below

    def _get_prompt_modules(self) -> dict[str, Any]:
        return {}

    def answer(self, search: Search, history: Sequence[ChatMessage] = ()) -> str:
        """The whole answer to a :class:`Search`."""
        return "".join(self.tokens(search, history))

    def tokens(self, search: Search, history: Sequence[ChatMessage] = ()) -> Generator[str, None, None]:
        """The answer as it is made: an LLM's deltas, or the extractive answer in one piece."""
        if self.llm is None or not search.citations:
            yield self._answerer.answer(search.query.query_str, search.citations, search.metadata["coverage"])
            return
        for part in self.llm.stream_complete(_prompt(search, history)):
            yield part.delta or ""

    async def atokens(self, search: Search, history: Sequence[ChatMessage] = ()) -> AsyncGenerator[str, None]:
        if self.llm is None or not search.citations:
            yield await anyio.to_thread.run_sync(self.answer, search, history)
            return
        async for part in await self.llm.astream_complete(_prompt(search, history)):
            yield part.delta or ""

    def _query(self, query_bundle: QueryBundle) -> RESPONSE_TYPE:
        search = self.retriever.search(query_bundle)
        if self.streaming:
            return StreamingResponse(self.tokens(search), source_nodes=search.nodes, metadata=search.metadata)
        return Response(self.answer(search), source_nodes=search.nodes, metadata=search.metadata)

    async def _aquery(self, query_bundle: QueryBundle) -> RESPONSE_TYPE:
        search = await anyio.to_thread.run_sync(self.retriever.search, query_bundle)
        if self.streaming:
            return AsyncStreamingResponse(self.atokens(search), source_nodes=search.nodes, metadata=search.metadata)
        text = "".join([t async for t in self.atokens(search)])
        return Response(text, source_nodes=search.nodes, metadata=search.metadata)


class LiveChatEngine(BaseChatEngine):
    """A chat over the live index: each message is answered over the pages indexed at that moment.

    ``last_metadata`` holds the coverage of the latest answer (streamed answers have no ``metadata``).
    """

    def __init__(self, query_engine: LiveQueryEngine) -> None:
        self.query_engine = query_engine
        self._history: list[ChatMessage] = []
        self.last_metadata: dict[str, Any] = {}

    @property
    def chat_history(self) -> list[ChatMessage]:
        return list(self._history)

    def reset(self) -> None:
        self._history = []

    def _search(self, message: str, chat_history: list[ChatMessage] | None) -> tuple[Search, list[ChatMessage]]:
        if chat_history is not None:
            self._history = list(chat_history)
        search = self.query_engine.retriever.search(message)
        self.last_metadata = search.metadata
        return search, list(self._history)

    def _remember(self, message: str, answer: str) -> None:
        self._history += [ChatMessage(role=MessageRole.USER, content=message),
                          ChatMessage(role=MessageRole.ASSISTANT, content=answer)]  # fmt: skip

    def chat(self, message: str, chat_history: list[ChatMessage] | None = None) -> AgentChatResponse:
        search, history = self._search(message, chat_history)
        text = self.query_engine.answer(search, history)
        self._remember(message, text)
        return AgentChatResponse(response=text, source_nodes=search.nodes, metadata=search.metadata)

    def stream_chat(self, message: str, chat_history: list[ChatMessage] | None = None) -> StreamingAgentChatResponse:
        search, history = self._search(message, chat_history)

        def stream() -> Generator[ChatResponse, None, None]:
            text = ""
            for delta in self.query_engine.tokens(search, history):
                text += delta
                yield ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=text), delta=delta)
            self._remember(message, text)

        return StreamingAgentChatResponse(chat_stream=stream(), source_nodes=search.nodes, is_writing_to_memory=False)

    async def achat(self, message: str, chat_history: list[ChatMessage] | None = None) -> AgentChatResponse:
        search, history = await anyio.to_thread.run_sync(self._search, message, chat_history)
        text = "".join([t async for t in self.query_engine.atokens(search, history)])
        self._remember(message, text)
        return AgentChatResponse(response=text, source_nodes=search.nodes, metadata=search.metadata)

    async def astream_chat(
        self, message: str, chat_history: list[ChatMessage] | None = None
    ) -> StreamingAgentChatResponse:
        search, history = await anyio.to_thread.run_sync(self._search, message, chat_history)

        async def stream() -> AsyncGenerator[ChatResponse, None]:
            text = ""
            async for delta in self.query_engine.atokens(search, history):
                text += delta
                yield ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=text), delta=delta)
            self._remember(message, text)

        return StreamingAgentChatResponse(achat_stream=stream(), source_nodes=search.nodes, is_writing_to_memory=False)
