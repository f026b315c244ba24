"""Answers from retrieved chunks: extractive by default, generated when a LlamaIndex LLM is given.

Extractive: the retrieved chunks are cut into sentences, each embedded (cached) and ranked by
cosine similarity to the question; the best few, each with its page, form the answer. With an LLM,
the same chunks are the context and the same citations are returned.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
from llama_index.core.base.embeddings.base import BaseEmbedding

from ._models import Citation

__all__ = ["Answerer", "sentences"]

_SENTENCE = re.compile(r"[^\n]+?(?:[.!?](?=\s|$)|$)", re.M)
_HEADING_LINE = re.compile(r"\s*(?:#{1,6}\s|\\(?:title|section|subsection|subsubsection)\*?\{)")
_FIGURE = re.compile(r"!\[[^\]]*\]\([^)]*\)")
_MARKUP = re.compile(
    r"\\(?:title|section|subsection|subsubsection|author)\*?\{|\\(?:begin|end)\{[^}]*\}|\\hline|\\\\|[{}]"
)

PROMPT = (
    "Answer the question using only the numbered passages below, which come from a PDF that is still "
    "being read ({coverage}). Cite pages as [p. N]. If the passages do not contain the answer, say so.\n\n"
    "{context}\n\nQuestion: {question}\nAnswer:"
)


def sentences(text: str) -> list[tuple[int, str]]:
    """``(offset, sentence)`` pairs of a chunk's text; headings and markup-only fragments left out."""
    out = []
    for m in _SENTENCE.finditer(text):
        if _HEADING_LINE.match(m.group()):
            continue
        clean = _MARKUP.sub(" ", _FIGURE.sub(" ", m.group())).strip()
        if len(re.findall(r"\w+", clean)) >= 3:
            out.append((m.start(), " ".join(clean.split())))
    return out


class Answerer:
    """Turns a question and its citations into an answer text."""

    def __init__(
        self,
        embed_model: BaseEmbedding,
        llm: Any = None,
        max_sentences: int = 3,
        spread: float = 0.15,
        weak: float = 0.3,
    ) -> None:
        self.embed_model = embed_model
        self.llm = llm
        self.max_sentences = max_sentences
        self.spread = spread
        self.weak = weak  # below this cosine similarity the best sentence is only a guess
        self._cache: dict[str, np.ndarray] = {}

    def answer(
        self,
        question: str,
        citations: list[Citation],
        coverage: str,
        question_embedding: list[float] | None = None,
    ) -> str:
        if not citations:
            return f"Nothing indexed yet answers this ({coverage})."
        if self.llm is not None:
            return self._generate(question, citations, coverage)
        return self._extract(question, citations, question_embedding)

    def _generate(self, question: str, citations: list[Citation], coverage: str) -> str:
        context = "\n\n".join(
            f"[{i}] (p. {', '.join(map(str, c.pages))})\n{c.text}" for i, c in enumerate(citations, 1)
        )
        prompt = PROMPT.format(coverage=coverage, context=context, question=question)
        return str(self.llm.complete(prompt).text).strip()

    def _embed(self, texts: list[str]) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if missing:
            for t, v in zip(missing, self.embed_model.get_text_embedding_batch(missing), strict=True):
                self._cache[t] = np.asarray(v, dtype=np.float32)
        return np.stack([self._cache[t] for t in texts])

    def _extract(self, question: str, citations: list[Citation], q_emb: list[float] | None) -> str:
        found: list[tuple[str, int]] = []
        for c in citations:
            for offset, sentence in sentences(c.text):
                found.append((sentence, c.page_at(offset)))
        if not found:
            return " ".join(c.text.strip()[:300] for c in citations[:1])
        unique = list(dict.fromkeys(found))
        q = np.asarray(q_emb if q_emb is not None else self.embed_model.get_query_embedding(question))
        vectors = self._embed([s for s, _ in unique])
        scores = vectors @ q / (np.linalg.norm(vectors, axis=1) * np.linalg.norm(q) + 1e-9)
        order = np.argsort(-scores)[: self.max_sentences]
        best = [i for i in order if scores[i] >= scores[order[0]] - self.spread]  # near the best only
        text = " ".join(f"{unique[i][0]} [p. {unique[i][1]}]" for i in best)
        if scores[order[0]] < self.weak:
            return f"Nothing indexed so far answers this clearly; the closest passage: {text}"
        return text
