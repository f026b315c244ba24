"""Chunks as the LlamaIndex nodes the store holds, and back.

A node carries its chunk's page spans as flat string metadata (Chroma's kind), hidden from the
embedder and the LLM; the section path is shown to both (to the embedder unless
``section_context=False``): the embedder reads ``section: Final Exam > Game Playing`` before the text.
In Chroma a node's text is part of its record (LlamaIndex's ``_node_content``), not a Chroma
document: see :class:`ChunkStore`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llama_index.core.schema import BaseNode, NodeRelationship, RelatedNodeInfo, TextNode
from llama_index.core.vector_stores.utils import metadata_dict_to_node, node_to_metadata_dict
from llama_index.vector_stores.chroma import ChromaVectorStore
from llama_index.vector_stores.chroma.base import MAX_CHUNK_SIZE

from ._chunker import SECTION_KEY, Chunk

__all__ = ["DOC_KEY", "ChunkStore", "chunk_of", "node_of", "stored_node"]

_META_KEYS = ["page", "pages", "pieces", "prefix_len", "suffix_len", "overlap", "context"]  # bookkeeping, hidden
DOC_KEY = "document_id"
"""Where LlamaIndex writes a node's source document id in the store (also ``doc_id``, ``ref_doc_id``);
streamrag filters and deletes by it."""


def node_of(chunk: Chunk, section_context: bool = True) -> TextNode:
    """The node a chunk is stored as; ``section_context=False`` keeps its section path from the embedder."""
    meta: dict[str, Any] = {
        "page": chunk.page,
        "pages": ",".join(map(str, chunk.pages)),
        "pieces": ";".join(f"{p}:{a}:{b}" for p, a, b in chunk.pieces),
    }
    # mostly 0, and then left out: each metadata key is a row Chroma writes and indexes
    extras = {"prefix_len": len(chunk.prefix), "suffix_len": len(chunk.suffix), "overlap": chunk.overlap}
    meta.update((k, v) for k, v in extras.items() if v)
    if not chunk.context:  # too long to go with its section path: embedded without it
        meta["context"] = 0
    if chunk.section:  # absent rather than empty, so the embed text has no stub
        meta[SECTION_KEY] = chunk.section
    return TextNode(
        id_=chunk.chunk_id,
        text=chunk.text,
        metadata=meta,
        excluded_embed_metadata_keys=_META_KEYS if section_context and chunk.context else [*_META_KEYS, SECTION_KEY],
        excluded_llm_metadata_keys=_META_KEYS,
        relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=chunk.doc_id)},
    )


def chunk_of(node: Any, doc_id: str | None = None) -> Chunk:
    """The :class:`Chunk` a stored node holds (page spans rebuilt from its metadata)."""
    meta = node.metadata
    doc_id = doc_id or node.ref_doc_id or str(meta.get(DOC_KEY, ""))
    pieces = tuple(tuple(int(x) for x in part.split(":")) for part in str(meta["pieces"]).split(";"))
    text = node.get_content()
    suffix_len = int(meta.get("suffix_len", 0))
    return Chunk(
        doc_id,
        text,
        pieces,  # type: ignore[arg-type]
        prefix=text[: int(meta.get("prefix_len", 0))],
        section=str(meta.get(SECTION_KEY) or ""),
        suffix=text[len(text) - suffix_len :] if suffix_len else "",
        overlap=int(meta.get("overlap", 0)),
        context=bool(meta.get("context", 1)),
    )


def stored_node(node_id: str, document: str | None, metadata: dict[str, Any]) -> BaseNode:
    """The node a Chroma record holds: its text is the record's document if it has one (written by
    LlamaIndex's own ``ChromaVectorStore``, or by earlier streamrag versions), else its node content's."""
    node = metadata_dict_to_node(metadata, text=document)
    node.id_ = node_id
    return node


class ChunkStore(ChromaVectorStore):
    """LlamaIndex's ``ChromaVectorStore``, writing each node's text inside its record's node content
    instead of as a Chroma document. Chroma full-text-indexes documents, which streamrag never
    searches, and that index was over a third of the CPU of writing a chunk (``benchmarks/README.md``).
    Reading is unchanged: LlamaIndex takes a node's text from its node content when the record has no
    document, so the stock ``ChromaVectorStore`` opens a streamrag store as it is. (Chroma's
    ``where_document`` filters find nothing in these records.)"""

    def __init__(self, collection: Any) -> None:
        super().__init__(chroma_collection=collection)

    def add(self, nodes: Sequence[BaseNode], **add_kwargs: Any) -> list[str]:
        ids: list[str] = []
        for start in range(0, len(nodes), MAX_CHUNK_SIZE):
            batch = nodes[start : start + MAX_CHUNK_SIZE]
            metadatas: Any = []
            for node in batch:
                meta = node_to_metadata_dict(node, remove_text=False, flat_metadata=self.flat_metadata)
                metadatas.append({k: "" if v is None else v for k, v in meta.items()})
            embeddings: Any = [n.get_embedding() for n in batch]
            self._collection.add(ids=[n.node_id for n in batch], embeddings=embeddings, metadatas=metadatas)
            ids += [n.node_id for n in batch]
        return ids
