"""Streaming, MMD-aware chunking: pages in, chunks (with their page spans) out.

A page is split into blocks — paragraphs, headings, and atomic blocks (display math, ``\\begin{…}``
environments, fenced code) that are never cut, except an oversized one at line boundaries with its
opening repeated. Blocks are packed into chunks that fit the embedder's window.

Page breaks: a page whose text starts with a single ``"\\n"`` continues the previous page's paragraph.
When both pages are present, that paragraph becomes one block owned by the earlier page, so a
sentence cut by the break is one chunk. Pages are chunked the moment they arrive; when a neighbour
arrives later the affected chunks are replaced (:meth:`StreamChunker.add` returns what to add and
what to delete), so the index never holds a page's text twice and never waits for a page.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

__all__ = ["Block", "Chunk", "StreamChunker", "split_blocks"]

TokenCounter = Callable[[Sequence[str]], list[int]]

_HEADING = re.compile(r"\\(?:title|section|subsection|subsubsection|chapter|paragraph)\*?\{")
_ENV = re.compile(r"\\begin\{([A-Za-z*]+)\}")
_LINE_OPENERS = re.compile(
    r"(?:\\begin\{|\\\[|\$\$|```|~~~|#{1,6}\s|\\(?:title|section|subsection|subsubsection|chapter)\*?\{)"
)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=\S)|\n+")


@dataclass(frozen=True)
class Block:
    """A span ``[start, end)`` of one page's text; ``kind`` is ``para``, ``heading`` or ``atomic``."""

    start: int
    end: int
    kind: str


def _match_brace(text: str, i: int) -> int:
    """Index after the ``}`` closing the ``{`` at ``i`` (or the text's end if unclosed)."""
    depth = 0
    while i < len(text):
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return len(text)


def _find_or_end(text: str, needle: str, start: int) -> int:
    j = text.find(needle, start)
    return len(text) if j < 0 else j + len(needle)


def _env_end(text: str, i: int, name: str) -> int:
    """Index after the ``\\end{name}`` matching the ``\\begin{name}`` at ``i`` (nesting counted)."""
    opener, closer = f"\\begin{{{name}}}", f"\\end{{{name}}}"
    depth, j = 0, i
    while j < len(text):
        nb, ne = text.find(opener, j), text.find(closer, j)
        if ne < 0:
            return len(text)
        if 0 <= nb < ne:
            depth, j = depth + 1, nb + len(opener)
        else:
            depth, j = depth - 1, ne + len(closer)
            if depth == 0:
                return j
    return len(text)


def _para_end(text: str, i: int) -> int:
    """End of a paragraph starting at ``i``: a blank line or a line that opens another block."""
    j = i
    while True:
        nl = text.find("\n", j)
        if nl < 0:
            return len(text)
        nxt = nl + 1
        if nxt >= len(text) or text[nxt] == "\n" or _LINE_OPENERS.match(text, nxt):
            return nl
        j = nxt


def split_blocks(text: str) -> list[Block]:
    """Blocks of one page's MMD, in order, covering every non-space character exactly once."""
    blocks: list[Block] = []
    i, n = 0, len(text)
    while i < n:
        if text[i].isspace():
            i += 1
            continue
        if text.startswith("\\[", i):
            end, kind = _find_or_end(text, "\\]", i + 2), "atomic"
        elif text.startswith("$$", i):
            end, kind = _find_or_end(text, "$$", i + 2), "atomic"
        elif text.startswith(("```", "~~~"), i):
            fence = text[i : i + 3]
            end, kind = _find_or_end(text, "\n" + fence, i + 3), "atomic"
        elif (m := _ENV.match(text, i)) is not None:
            end, kind = _env_end(text, i, m.group(1)), "atomic"
        elif (m := _HEADING.match(text, i)) is not None:
            end, kind = _match_brace(text, m.end() - 1), "heading"
        elif text.startswith("#", i) and re.match(r"#{1,6}\s", text[i : i + 7]):
            nl = text.find("\n", i)
            end, kind = (n if nl < 0 else nl), "heading"
        else:
            end, kind = _para_end(text, i), "para"
        # trailing spaces belong to the gap, not the block
        while end > i and text[end - 1].isspace():
            end -= 1
        blocks.append(Block(i, max(end, i + 1), kind))
        i = max(end, i + 1)
    return blocks


@dataclass(frozen=True)
class Chunk:
    """A piece of a document to embed. ``pieces`` are its spans: ``(page, start, end)`` slices of
    page texts, in order; ``prefix``/``suffix`` are repeated environment lines of a split block."""

    doc_id: str
    text: str
    pieces: tuple[tuple[int, int, int], ...]
    prefix: str = ""

    @property
    def pages(self) -> list[int]:
        return sorted({p for p, _, _ in self.pieces})

    @property
    def page(self) -> int:
        return self.pieces[0][0]

    @property
    def chunk_id(self) -> str:
        """Deterministic: same document, same spans, same text → same id (re-writes are no-ops)."""
        key = f"{self.doc_id}|{self.pieces}|{self.text}".encode()
        return f"{self.doc_id}-p{self.page}-{hashlib.sha256(key).hexdigest()[:16]}"


@dataclass
class _Unit:
    """A block ready to pack: its spans, text and token count."""

    pieces: list[tuple[int, int, int]]
    text: str
    kind: str
    tokens: int = 0


@dataclass
class StreamChunker:
    """Chunks of one document, kept up to date as its pages arrive in any order."""

    doc_id: str
    count_tokens: TokenCounter
    max_tokens: int
    pages: dict[int, str] = field(default_factory=dict)
    chunks: dict[int, list[Chunk]] = field(default_factory=dict)
    _blocks: dict[int, list[Block]] = field(default_factory=dict)

    def add(self, page_idx: int, text: str | None) -> tuple[list[Chunk], list[Chunk]]:
        """Take a page (``None`` text for a page without content); returns ``(new, stale)`` chunks."""
        self.pages[page_idx] = text or ""
        self._blocks[page_idx] = split_blocks(text or "")
        new: list[Chunk] = []
        stale: list[Chunk] = []
        first = page_idx - 1
        while self._continues(first):  # the chain owning page_idx's paragraph starts earlier
            first -= 1
        for p in range(first, page_idx + 2):
            if p not in self.pages:
                continue
            before = {c.chunk_id: c for c in self.chunks.get(p, [])}
            after = self._chunk_page(p)
            self.chunks[p] = after
            after_ids = {c.chunk_id for c in after}
            new += [c for c in after if c.chunk_id not in before]
            stale += [c for cid, c in before.items() if cid not in after_ids]
        return new, stale

    def all_chunks(self) -> list[Chunk]:
        return [c for p in sorted(self.chunks) for c in self.chunks[p]]

    # -- internals -------------------------------------------------------------------------

    def _continues(self, p: int) -> bool:
        """Page ``p``'s first paragraph goes on from page ``p - 1``'s last one (both present)."""
        text, prev = self.pages.get(p), self._blocks.get(p - 1)
        if text is None or not prev or not text.startswith("\n") or text.startswith("\n\n"):
            return False
        blocks = self._blocks[p]
        return bool(blocks) and blocks[0].kind == "para" and prev[-1].kind == "para"

    def _units(self, p: int) -> list[_Unit]:
        text, blocks = self.pages[p], list(self._blocks[p])
        if self._continues(p):
            blocks = blocks[1:]  # owned by page p - 1
        units = [_Unit([(p, b.start, b.end)], text[b.start : b.end], b.kind) for b in blocks]
        q = p
        while units and self._continues(q + 1):  # the paragraph runs on; a one-block page passes it on
            head = self._blocks[q + 1][0]
            units[-1].pieces.append((q + 1, 0, head.end))
            units[-1].text += self.pages[q + 1][: head.end]
            if len(self._blocks[q + 1]) > 1:
                break
            q += 1
        return units

    def _chunk_page(self, p: int) -> list[Chunk]:
        units = self._units(p)
        if not units:
            return []
        for unit, n in zip(units, self.count_tokens([u.text for u in units]), strict=True):
            unit.tokens = n
        chunks: list[Chunk] = []
        group: list[_Unit] = []
        size = 0
        for unit in units:
            if unit.tokens > self.max_tokens:
                if group:
                    chunks.append(self._join(group))
                    group, size = [], 0
                chunks += self._split(unit)
                continue
            if group and size + unit.tokens > self.max_tokens:
                chunks.append(self._join(group))
                group, size = [], 0
            group.append(unit)
            size += unit.tokens
        if group:
            chunks.append(self._join(group))
        return chunks

    def _join(self, group: list[_Unit]) -> Chunk:
        """Units packed into one chunk; the text between them is kept as it is in the page."""
        pieces: list[tuple[int, int, int]] = []
        for unit in group:
            for page, start, end in unit.pieces:
                if pieces and pieces[-1][0] == page and pieces[-1][2] <= start:
                    pieces[-1] = (page, pieces[-1][1], end)  # gap text (blank lines) joins in
                else:
                    pieces.append((page, start, end))
        text = "".join(self.pages[page][start:end] for page, start, end in pieces)
        return Chunk(self.doc_id, text, tuple(pieces))

    def _split(self, unit: _Unit) -> list[Chunk]:
        """An oversized unit cut at line (atomic) or sentence boundaries, then at words."""
        flat = [(page, i) for page, start, end in unit.pieces for i in range(start, end)]
        text = unit.text
        prefix = ""
        if unit.kind == "atomic":
            first_nl = text.find("\n")
            prefix = text[: first_nl + 1] if 0 < first_nl < 200 else ""
            cuts = [m.end() for m in re.finditer(r"\n", text)]
        else:
            cuts = [m.end() for m in _SENTENCE_END.finditer(text)]
        cuts = [c for c in cuts if 0 < c < len(text)]
        pieces_text = _cut(text, cuts)
        # pieces still too long: cut at spaces
        final: list[tuple[int, int]] = []
        sizes = self.count_tokens([text[a:b] for a, b in pieces_text])
        for (a, b), n in zip(pieces_text, sizes, strict=True):
            if n <= self.max_tokens:
                final.append((a, b))
            else:
                words = [m.end() for m in re.finditer(r"\s+", text[a:b])]
                per = max(1, len(words) * self.max_tokens // max(n, 1) - 1)
                sub = [a + w for w in words[per - 1 :: per]] if words else []
                final += _cut(text, [c for c in sub if a < c < b], a, b)
        # greedy re-pack of the pieces
        sizes = self.count_tokens([text[a:b] for a, b in final])
        budget = self.max_tokens - (self.count_tokens([prefix])[0] if prefix else 0)
        groups: list[tuple[int, int]] = []
        size = 0
        for (a, b), n in zip(final, sizes, strict=True):
            if groups and size + n <= budget:
                groups[-1] = (groups[-1][0], b)
                size += n
            else:
                groups.append((a, b))
                size = n
        chunks = []
        for k, (a, b) in enumerate(groups):
            spans: list[tuple[int, int, int]] = []
            for page, i in flat[a:b]:
                if spans and spans[-1][0] == page and spans[-1][2] == i:
                    spans[-1] = (page, spans[-1][1], i + 1)
                else:
                    spans.append((page, i, i + 1))
            rep = prefix if k > 0 else ""
            chunks.append(Chunk(self.doc_id, rep + text[a:b], tuple(spans), prefix=rep))
        return chunks


def _cut(text: str, cuts: list[int], start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """``[start, end)`` cut at the given offsets into non-empty spans."""
    end = len(text) if end is None else end
    bounds = [start, *sorted(set(cuts)), end]
    return [(a, b) for a, b in itertools.pairwise(bounds) if b > a]
