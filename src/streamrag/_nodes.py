"""Chunks as the LlamaIndex nodes the store holds, and back.

A node carries its chunk's page spans as flat string metadata (Chroma's kind), hidden from the
embedder and the LLM; the section path is shown to both (to the embedder unless
``section_context=False``): the embedder reads ``section: Final Exam > Game Playing`` before the text.
"""

from __future__ import annotations

from typing import Any

from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode

from ._chunker import SECTION_KEY, Chunk

__all__ = ["DOC_KEY", "chunk_of", "node_of"]

_META_KEYS = ["page", "pages", "pieces", "prefix_len", "suffix_len", "overlap"]  # bookkeeping, hidden
DOC_KEY = "document_id"
"""Where LlamaIndex writes a node's source document id in the store (also ``doc_id``, ``ref_doc_id``);
streamrag filters and deletes by it."""


def node_of(chunk: Chunk, section_context: bool = True) -> TextNode:
    """The node a chunk is stored as; ``section_context=False`` keeps its section path from the embedder."""
    meta: dict[str, Any] = {
        "page": chunk.page,
        "pages": ",".join(map(str, chunk.pages)),
        "pieces": ";".join(f"{p}:{a}:{b}" for p, a, b in chunk.pieces),
        "prefix_len": len(chunk.prefix),
        "suffix_len": len(chunk.suffix),
        "overlap": chunk.overlap,
    }
    if chunk.section:  # absent rather than empty, so the embed text has no stub
        meta[SECTION_KEY] = chunk.section
    return TextNode(
        id_=chunk.chunk_id,
        text=chunk.text,
        metadata=meta,
        excluded_embed_metadata_keys=_META_KEYS if section_context else [*_META_KEYS, SECTION_KEY],
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
    )
