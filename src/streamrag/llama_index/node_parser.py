"""``MMDNodeParser``: streamrag's MMD-aware chunker as a LlamaIndex ``NodeParser``.

It wraps :class:`streamrag._chunker.StreamChunker`: blocks (paragraphs, headings; display math,
environments and code never cut) packed to the embedder's window. Pages of one document given
together are chunked together, so a paragraph cut by a page break becomes one node spanning both
pages. Node ids are the chunker's deterministic chunk ids.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from typing import Any

from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.node_parser.interface import NodeParser
from llama_index.core.schema import BaseNode, Document, NodeRelationship, TextNode

from .._chunker import Chunk, StreamChunker, split_blocks

__all__ = ["MMDNodeParser", "headings"]

TokenCounter = Callable[[Sequence[str]], list[int]]

_LATEX_LEVELS = {"title": 0, "chapter": 1, "section": 2, "subsection": 3, "subsubsection": 4, "paragraph": 5}
_LATEX_HEADING = re.compile(r"\\(title|chapter|section|subsection|subsubsection|paragraph)\*?\{(.*)\}\s*$", re.S)
_MD_HEADING = re.compile(r"(#{1,6})\s+(.*)$", re.S)
_NODE_KEYS = ["page_number", "pages", "pieces", "header_path"]


def headings(text: str) -> list[tuple[int, int, str]]:
    """``(offset, level, title)`` of each heading of one page's MMD (``\\section{}`` or ``#``)."""
    out = []
    for block in split_blocks(text):
        if block.kind != "heading":
            continue
        raw = text[block.start : block.end]
        if m := _LATEX_HEADING.match(raw):
            level, title = _LATEX_LEVELS[m.group(1)], m.group(2)
        elif m := _MD_HEADING.match(raw):
            level, title = len(m.group(1)), m.group(2)
        else:
            continue
        out.append((block.start, level, " ".join(title.split())))
    return out


def _packaged_counter() -> TokenCounter:
    """Word pieces of the packaged all-MiniLM-L6-v2 tokenizer (no torch, no special tokens)."""
    from tokenizers import Tokenizer

    from .._embedding import default_model_path

    tokenizer = Tokenizer.from_file(os.path.join(default_model_path(), "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.no_truncation()

    def count(texts: Sequence[str]) -> list[int]:
        return [len(e.ids) for e in tokenizer.encode_batch(list(texts), add_special_tokens=False)] if texts else []

    return count


def _page_of(node: BaseNode) -> int:
    page = node.metadata.get("page_number")
    return page if isinstance(page, int) and page >= 1 else 1


class MMDNodeParser(NodeParser):
    """Splits page Documents (from :class:`~streamrag.llama_index.StreamragReader`, or any
    Document — taken as page 1 of itself) into chunks that fit the embedder's window.

    Each node carries ``page_label``/``page_number`` (its first page), ``pages`` (``"3,4"``),
    ``pieces`` (``page:start:end`` spans) and ``header_path`` (the ``\\section{}``/``#`` headings in
    effect where it starts, e.g. ``"/Results/Setup/"``; carried across the pages given in one
    call). With ``embed_metadata=False`` (default) no metadata is embedded. The chunks are the ones
    ``LiveIndex`` makes of the same pages (same ids), so each leaves room in the window for the
    section path that ``LiveIndex`` embeds with it.
    """

    chunk_tokens: int = Field(default=254, gt=0, description="word pieces per chunk (the model's window − 2)")
    header_path_separator: str = Field(default="/", description="separator of header_path")
    embed_metadata: bool = Field(default=False, description="embed metadata along with the text")
    _count: TokenCounter = PrivateAttr()

    def __init__(self, *, embed_model: BaseEmbedding | None = None, **kwargs: Any) -> None:
        if embed_model is not None and "chunk_tokens" not in kwargs:
            from .._embedding import window

            kwargs["chunk_tokens"] = window(embed_model) - 2
        super().__init__(**kwargs)
        if embed_model is not None:
            from .._embedding import token_counter

            self._count = token_counter(embed_model)
        else:
            self._count = _packaged_counter()

    @classmethod
    def class_name(cls) -> str:
        return "MMDNodeParser"

    def _parse_nodes(self, nodes: Sequence[BaseNode], show_progress: bool = False, **kwargs: Any) -> list[BaseNode]:
        groups: dict[str, dict[int, BaseNode]] = {}
        for node in nodes:
            key = str(node.metadata.get("document_id") or node.ref_doc_id or node.node_id)
            groups.setdefault(key, {})[_page_of(node)] = node
        out: list[BaseNode] = []
        for doc_id, pages in groups.items():
            chunker = StreamChunker(doc_id, self._count, self.chunk_tokens)
            for page in sorted(pages):
                text = pages[page].get_content()
                chunker.add(page, text if text.strip() else None)
            out += self._nodes(chunker, pages)
        return out

    def _nodes(self, chunker: StreamChunker, pages: dict[int, BaseNode]) -> list[BaseNode]:
        marks = [
            (page, offset, level, title)
            for page in sorted(pages)
            for offset, level, title in headings(chunker.pages[page])
        ]
        out: list[BaseNode] = []
        for chunk in chunker.all_chunks():
            owner = pages[chunk.page]
            node = TextNode(
                id_=chunk.chunk_id,
                text=chunk.text,
                metadata={
                    "page_label": str(chunk.page),
                    "page_number": chunk.page,
                    "pages": ",".join(map(str, chunk.pages)),
                    "pieces": ";".join(f"{p}:{a}:{b}" for p, a, b in chunk.pieces),
                    "header_path": self._header_path(marks, chunk),
                },
                excluded_embed_metadata_keys=[*owner.excluded_embed_metadata_keys, *_NODE_KEYS],
                excluded_llm_metadata_keys=[*owner.excluded_llm_metadata_keys, "page_number", "pages", "pieces"],
            )
            if isinstance(owner, Document):
                node.relationships[NodeRelationship.SOURCE] = owner.as_related_node_info()
            else:
                node.relationships[NodeRelationship.SOURCE] = owner.relationships.get(
                    NodeRelationship.SOURCE, owner.as_related_node_info()
                )
            out.append(node)
        return out

    def _header_path(self, marks: list[tuple[int, int, int, str]], chunk: Chunk) -> str:
        start = chunk.pieces[0][:2]
        stack: list[tuple[int, str]] = []
        for page, offset, level, title in marks:
            if (page, offset) > start:
                break
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, title))
        sep = self.header_path_separator
        return sep + sep.join(t for _, t in stack) + sep if stack else sep

    def _postprocess_parsed_nodes(self, nodes: list[BaseNode], parent_doc_map: dict[str, Document]) -> list[BaseNode]:
        nodes = super()._postprocess_parsed_nodes(nodes, parent_doc_map)
        if not self.embed_metadata:
            for node in nodes:
                node.excluded_embed_metadata_keys = sorted(node.metadata)
        return nodes
