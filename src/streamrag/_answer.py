"""Answers from retrieved chunks: extractive by default, generated when a LlamaIndex LLM is given.

Extractive: the retrieved chunks are cut into sentences, ranked by how much of the question's
vocabulary they hold (IDF-weighted, crude stems) plus their chunk's similarity to the question; the
best few, each with its page, form the answer. It costs no model call, so answers can be refreshed
after every page. With an LLM, the same chunks are the context and the same citations returned.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Any

from ._models import Citation

__all__ = ["Answerer", "sentences"]

_SENTENCE = re.compile(r"[^\n]+?(?:[.!?](?=\s|$)|$)", re.M)
_HEADING_LINE = re.compile(r"\s*(?:#{1,6}\s|\\(?:title|section|subsection|subsubsection)\*?\{)")
_FIGURE = re.compile(r"!\[[^\]]*\]\([^)]*\)")
_MARKUP = re.compile(
    r"\\(?:title|section|subsection|subsubsection|author)\*?\{|\\(?:begin|end)\{[^}]*\}|\\hline|\\\\|[{}]"
)

_WORD = re.compile(r"[^\W_]+")
_STOP = frozenset(
    "a an and are as at be by can do does for from has have how in into is it its of on or that the their "
    "there this to was were what when where which who whom why will with".split()
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


def terms(text: str) -> set[str]:
    """Content words of a text, cut to 5-letter stems so that inflections meet."""
    return {w[:5] for w in _WORD.findall(text.lower()) if w not in _STOP}


class Answerer:
    """Turns a question and its citations into an answer text."""

    def __init__(self, llm: Any = None, max_sentences: int = 3, spread: float = 0.25, weak: float = 0.35) -> None:
        self.llm = llm
        self.max_sentences = max_sentences
        self.spread = spread  # keep sentences scoring within this of the best one
        self.weak = weak  # below this score the best sentence is only a guess

    def answer(self, question: str, citations: list[Citation], coverage: str) -> str:
        if not citations:
            return f"Nothing indexed yet answers this ({coverage})."
        if self.llm is not None:
            return self._generate(question, citations, coverage)
        return self._extract(question, citations)

    def _generate(self, question: str, citations: list[Citation], coverage: str) -> str:
        context = "\n\n".join(
            f"[{i}] (p. {', '.join(map(str, c.pages))})\n{c.text}" for i, c in enumerate(citations, 1)
        )
        prompt = PROMPT.format(coverage=coverage, context=context, question=question)
        return str(self.llm.complete(prompt).text).strip()

    def _extract(self, question: str, citations: list[Citation]) -> str:
        found: dict[str, tuple[int, float, set[str]]] = {}
        for c in citations:
            for offset, sentence in sentences(c.text):
                if sentence not in found:
                    found[sentence] = (c.page_at(offset), c.score, terms(sentence))
        if not found:
            return " ".join(c.text.strip()[:300] for c in citations[:1])
        asked = terms(question)
        df = Counter(t for _, _, ts in found.values() for t in ts & asked)
        weight = {t: math.log(1 + len(found) / (1 + df[t])) for t in asked}
        total = sum(weight.values()) or 1.0

        def score(item: tuple[int, float, set[str]]) -> float:
            _, chunk_score, ts = item
            return sum(weight[t] for t in ts & asked) / total + 0.5 * chunk_score

        ranked = sorted(found.items(), key=lambda kv: -score(kv[1]))[: self.max_sentences]
        best = score(ranked[0][1])
        text = " ".join(f"{s} [p. {page}]" for s, (page, *_) in ranked if score(found[s]) >= best - self.spread)
        if best < self.weak:
            return f"Nothing indexed so far answers this clearly; the closest passage: {text}"
        return text
