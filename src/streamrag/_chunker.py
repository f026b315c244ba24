"""Streaming, MMD-aware chunking: pages in, chunks (with their page spans and section path) out.

A page is split into blocks (:mod:`streamrag._mmd`) — paragraphs, headings, asides and atomic blocks
(display math, environments, fenced code) that are never cut, except an oversized one at row or line
boundaries with its opening (and a table's header row) repeated and its closing appended. Blocks are
packed into chunks that fit the embedder's window *together with* the section path the embedder sees
as context (``section: Final Exam > Game Playing``); a heading starts a new chunk.

Page breaks: a page whose text starts with a single ``"\\n"`` continues the previous page's paragraph
(footnotes and figure links ending that page do not interrupt it). When both pages are present, that
paragraph becomes one block owned by the earlier page, so a sentence cut by the break is one chunk.

Two strategies, chosen by measurement (``benchmarks/retrieval.py``, recorded in
``benchmarks/README.md``):

- ``replace`` (default): a page is chunked the moment it arrives; when a neighbour arrives later the
  affected chunks are replaced (:meth:`StreamChunker.add` returns what to add and what to delete).
- ``hold``: a page's open tail (its last paragraph) and a continuing page's head are held back until
  the neighbour arrives or :meth:`StreamChunker.finish` releases them.

Section paths: a page's path starts where the previous present page's path ends, so headings on
earlier pages reach later chunks. When an earlier page arrives late, the chunks whose path changes are
replaced. With every page present the chunk set is the same for any arrival order; a missing page
never blocks the others. Chunk ids are deterministic (document, spans, section, text).
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import itertools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ._mmd import Block, frame, heading_of, split_blocks

__all__ = ["SECTION_KEY", "Block", "Chunk", "StreamChunker", "section_context", "split_blocks"]

TokenCounter = Callable[[Sequence[str]], list[int]]

SECTION_KEY = "section"  # the node metadata key the embedder reads as context
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=\S)|\n+")
_MAX_LEVELS = 4  # a section path keeps its last few levels


def section_context(section: str) -> str:
    """The text LlamaIndex puts before a chunk for the embedder (its default metadata template)."""
    return f"{SECTION_KEY}: {section}\n\n" if section else ""


@dataclass(frozen=True)
class Chunk:
    """A piece of a document to embed. ``pieces`` are its spans: ``(page, start, end)`` slices of
    page texts, in order. ``text`` is ``prefix`` + the spanned text + ``suffix``: ``prefix``/``suffix``
    are the repeated opening/closing lines of a split environment. The first ``overlap`` characters
    of the spanned text repeat the end of the previous chunk (declared overlap). ``section`` is the
    heading path the chunk sits under; ``context`` is false for a chunk that fills the window alone
    (a run with no space to cut at, such as a long URL): its path is kept in the metadata, not
    embedded. ``tokens``: the word pieces the embedder reads (section context included) as the
    chunker counted them, 0 when not known (a chunk read back from a store)."""

    doc_id: str
    text: str
    pieces: tuple[tuple[int, int, int], ...]
    prefix: str = ""
    section: str = ""
    suffix: str = ""
    overlap: int = 0
    context: bool = field(default=True, compare=False)
    tokens: int = field(default=0, compare=False)

    @property
    def pages(self) -> list[int]:
        return sorted({p for p, _, _ in self.pieces})

    @property
    def page(self) -> int:
        return self.pieces[0][0]

    @functools.cached_property
    def chunk_id(self) -> str:
        """Deterministic: same document, spans, section and text → same id (re-writes are no-ops)."""
        key = f"{self.doc_id}|{self.pieces}|{self.section}|{self.text}".encode()
        return f"{self.doc_id}-p{self.page}-{hashlib.sha256(key).hexdigest()[:16]}"


@dataclass
class _Unit:
    """A block ready to pack: its spans, text, kind, section path and token count."""

    pieces: list[tuple[int, int, int]]
    text: str
    kind: str
    path: tuple[str, ...] = ()
    tokens: int = 0
    tail: bool = False  # the page's open tail (a paragraph that may go on on the next page)


Path = tuple[tuple[int, str], ...]


def _push(path: Path, heading: tuple[int, str]) -> Path:
    level = heading[0]
    kept = tuple(h for h in path if h[0] < level)
    return (*kept, heading)


@dataclass
class StreamChunker:
    """Chunks of one document, kept up to date as its pages arrive in any order.

    ``max_tokens`` is the embedder's budget per input (section context included); ``overlap_tokens``
    repeats up to that many tokens of whole sentences from the previous chunk of the same page;
    ``strategy`` is ``"replace"`` or ``"hold"``; ``section_context=False`` keeps the section path as
    metadata only, for an embedder that does not read it (no room is kept for it in ``max_tokens``);
    ``tables_apart=True`` gives each table a chunk of its own (measured as a wash, so off by default).
    """

    doc_id: str
    count_tokens: TokenCounter
    max_tokens: int
    overlap_tokens: int = 0
    strategy: str = "replace"
    section_context: bool = True
    tables_apart: bool = False
    pages: dict[int, str] = field(default_factory=dict)
    chunks: dict[int, list[Chunk]] = field(default_factory=dict)
    finished: bool = False
    _blocks: dict[int, list[Block]] = field(default_factory=dict)
    _heads: dict[int, list[tuple[int, str]]] = field(default_factory=dict)
    _start: dict[int, Path] = field(default_factory=dict)
    _ctx_tokens: dict[str, int] = field(default_factory=dict)
    # word pieces of the texts counted while chunking each page last time: a page is chunked again
    # when a neighbour arrives, mostly into the same units (kept only for the pages chunked last)
    _memo: dict[int, dict[str, int]] = field(default_factory=dict, init=False, repr=False, compare=False)
    _known: dict[str, int] = field(default_factory=dict, init=False, repr=False, compare=False)
    _fresh: dict[str, int] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.strategy not in ("replace", "hold"):
            raise ValueError(f"unknown strategy {self.strategy!r}")

    def add(self, page_idx: int, text: str | None) -> tuple[list[Chunk], list[Chunk]]:
        """Take a page (``None`` text for a page without content); returns ``(new, stale)`` chunks."""
        text = text or ""
        self.pages[page_idx] = text
        blocks = split_blocks(text)
        self._blocks[page_idx] = blocks
        heads = [heading_of(text[b.start : b.end]) for b in blocks if b.kind == "heading"]
        self._heads[page_idx] = [h for h in heads if h is not None]
        first = page_idx - 1
        while self._continues(first):  # the chain owning page_idx's paragraph starts earlier
            first -= 1
        todo = {p for p in range(first, page_idx + 2) if p in self.pages}
        todo |= self._update_paths(page_idx)
        return self._rechunk(sorted(todo))

    def finish(self) -> tuple[list[Chunk], list[Chunk]]:
        """The stream ended: release anything held back; returns ``(new, stale)`` chunks."""
        self.finished = True
        return self._rechunk(sorted(self.pages))

    def all_chunks(self) -> list[Chunk]:
        return [c for p in sorted(self.chunks) for c in self.chunks[p]]

    # -- internals -------------------------------------------------------------------------

    def _rechunk(self, pages: list[int]) -> tuple[list[Chunk], list[Chunk]]:
        new: list[Chunk] = []
        stale: list[Chunk] = []
        memo, self._memo = self._memo, {}
        for p in pages:
            before = {c.chunk_id: c for c in self.chunks.get(p, [])}
            self._known, self._fresh = memo.get(p, {}), {}
            after = self._chunk_page(p)
            if not self.finished:
                self._memo[p] = self._fresh
            self.chunks[p] = after
            after_ids = {c.chunk_id for c in after}
            new += [c for c in after if c.chunk_id not in before]
            stale += [c for cid, c in before.items() if cid not in after_ids]
        return new, stale

    def _update_paths(self, since: int) -> set[int]:
        """Recompute the starting section path of page ``since`` and the pages after it (those before
        keep theirs); pages whose path changed."""
        order = sorted(self.pages)
        k = bisect.bisect_left(order, since)
        changed = set()
        path: Path = ()
        if k:
            path = self._start[order[k - 1]]
            for h in self._heads[order[k - 1]]:
                path = _push(path, h)
        for p in order[k:]:
            if self._start.get(p) != path:
                changed.add(p)
                self._start[p] = path
            for h in self._heads[p]:
                path = _push(path, h)
        return changed

    def _last_para(self, p: int) -> int | None:
        """Index of page ``p``'s last paragraph if only asides follow it (its open tail), else None."""
        blocks = self._blocks.get(p) or []
        for k in range(len(blocks) - 1, -1, -1):
            if blocks[k].kind == "para":
                return k
            if blocks[k].kind != "aside":
                return None
        return None

    def _opens(self, p: int) -> bool:
        """Page ``p`` starts with a paragraph that may go on from page ``p - 1``."""
        text = self.pages.get(p)
        blocks = self._blocks.get(p)
        return bool(text and blocks and text.startswith("\n") and not text.startswith("\n\n"))

    def _continues(self, p: int) -> bool:
        """Page ``p``'s first paragraph goes on from page ``p - 1``'s last one (both present)."""
        if not self._opens(p) or p - 1 not in self.pages:
            return False
        return self._blocks[p][0].kind == "para" and self._last_para(p - 1) is not None

    def _held(self, p: int) -> bool:
        """Hold strategy: is a paragraph at the edge of page ``p`` waiting for its neighbour?"""
        return self.strategy == "hold" and not self.finished and p not in self.pages

    def _units(self, p: int) -> list[_Unit]:
        text, blocks = self.pages[p], list(self._blocks[p])
        skip_first = self._continues(p) or (
            self._opens(p) and blocks[0].kind == "para" and self._held(p - 1)
        )  # owned by page p - 1 (or waiting for it)
        path = self._start.get(p, ())
        units: list[_Unit] = []
        tail_k = self._last_para(p)
        for k, b in enumerate(blocks):
            if b.kind == "heading" and (h := heading_of(text[b.start : b.end])) is not None:
                path = _push(path, h)
            if skip_first and (k == 0 or tail_k == 0):  # the head (and asides after it) belong elsewhere
                continue
            names = tuple(t for _, t in path)
            units.append(_Unit([(p, b.start, b.end)], text[b.start : b.end], b.kind, names, tail=k == tail_k))
        tail = next((u for u in units if u.tail), None)
        q = p
        asides: list[tuple[int, int, int]] = []  # of pages whose only paragraph is the chain's
        while tail is not None and self._continues(q + 1):  # the paragraph runs on across the break
            head = self._blocks[q + 1][0]
            tail.pieces.append((q + 1, 0, head.end))
            tail.text += self.pages[q + 1][: head.end]
            if self._last_para(q + 1) != 0:  # the head is not also the page's tail: the chain ends
                break
            if len(self._blocks[q + 1]) > 1:
                asides.append((q + 1, head.end, self._blocks[q + 1][-1].end))
            q += 1
        if tail is not None and not self._held(q + 1):
            for page, start, end in asides:
                tail.pieces.append((page, start, end))
                tail.text += self.pages[page][start:end]
        if tail is not None:
            k = units.index(tail)
            if self._held(q + 1):  # hold: the open tail (and the asides after it) waits
                return units[:k]
            for aside in units[k + 1 :]:  # footnotes/figures ending the page follow the whole paragraph
                _, start, end = aside.pieces[0]
                last = tail.pieces[-1]
                gap = last[2] if last[0] == p else start  # the blank between joins in when contiguous
                tail.pieces.append((p, gap, end))
                tail.text += text[gap:end]
            units = units[: k + 1]
        return units

    def _tokens(self, texts: list[str]) -> list[int]:
        """``count_tokens``, counting only texts not counted when this page was chunked last."""
        known, fresh = self._known, self._fresh
        missing = [t for t in dict.fromkeys(texts) if t not in fresh and t not in known]
        if missing:
            fresh.update(zip(missing, self.count_tokens(missing), strict=True))
        for t in texts:
            if t not in fresh:
                fresh[t] = known[t]
        return [fresh[t] for t in texts]

    def _section(self, path: tuple[str, ...]) -> str:
        return " > ".join(path[-_MAX_LEVELS:])

    def _budget(self, section: str) -> int:
        if section not in self._ctx_tokens:
            ctx = section_context(section) if self.section_context else ""
            self._ctx_tokens[section] = self.count_tokens([ctx])[0] if ctx else 0
        room = self.max_tokens - self._ctx_tokens[section]
        return max(room - self.overlap_tokens, room // 2, 1)

    def _chunk_page(self, p: int) -> list[Chunk]:
        units = self._units(p)
        if not units:
            return []
        for unit, n in zip(units, self._tokens([u.text for u in units]), strict=True):
            unit.tokens = n
        chunks: list[Chunk] = []
        group: list[_Unit] = []
        size = 0

        def flush() -> None:
            nonlocal group, size
            if group:
                chunks.append(self._join(group))
            group, size = [], 0

        for unit in units:
            content = [u for u in group if u.kind != "heading"]
            if unit.kind == "heading" and content:
                flush()  # a heading starts a chunk
            elif self.tables_apart and content and (_is_table(unit.text) or _is_table(content[-1].text)):
                flush()  # a table is a chunk of its own: its cells would blur the prose's vector
            elif unit.tail and self.strategy == "hold":
                flush()  # hold: the open tail starts a chunk, so releasing it replaces nothing
            section = self._section(content[0].path if content else unit.path)
            budget = self._budget(section)
            if unit.tokens > budget:
                flush()
                chunks += self._split(unit, self._section(unit.path))
                continue
            if group and size + unit.tokens > budget:
                flush()
            group.append(unit)
            size += unit.tokens
        flush()
        if self.overlap_tokens:
            chunks = self._overlap(chunks)
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
        content = [u for u in group if u.kind != "heading"] or group
        section = self._section(content[0].path)
        tokens = sum(u.tokens for u in group) + self._ctx_tokens.get(section, 0)
        return Chunk(self.doc_id, text, tuple(pieces), section=section, tokens=tokens)

    def _overlap(self, chunks: list[Chunk]) -> list[Chunk]:
        """Each chunk after the first starts with the previous chunk's last sentences (whole ones that
        fit ``overlap_tokens``), unless it opens a section or is a piece of a split environment."""
        out = chunks[:1]
        for prev, chunk in itertools.pairwise(chunks):
            page, a, b = prev.pieces[-1]
            first = chunk.pieces[0]
            split = prev.prefix or prev.suffix or chunk.prefix or chunk.suffix
            if split or chunk.section != prev.section or first[0] != page:
                out.append(chunk)
                continue
            text = self.pages[page]
            starts = [a + m.end() for m in _SENTENCE_END.finditer(text[a:b]) if a + m.end() < b]
            best = None
            for s in reversed(starts):  # longer and longer tails
                if self.count_tokens([text[s:b]])[0] > self.overlap_tokens:
                    break
                best = s
            if best is None or not text[best:b].strip() or first[0] != page or b > first[1]:
                out.append(chunk)
                continue
            if not text[b : first[1]].strip():  # only blank lines between: one span
                pieces = ((page, best, first[2]), *chunk.pieces[1:])
            else:
                pieces = ((page, best, b), *chunk.pieces)
            spanned = "".join(self.pages[q][x:y] for q, x, y in pieces)
            overlap = len(spanned) - sum(y - x for _, x, y in chunk.pieces)
            tokens = self.count_tokens([section_context(chunk.section) + spanned])[0]
            if tokens > self.max_tokens:
                out.append(chunk)  # no room left for the overlap
                continue
            out.append(Chunk(self.doc_id, spanned, pieces, section=chunk.section, overlap=overlap, tokens=tokens))
        return out

    def _split(self, unit: _Unit, section: str) -> list[Chunk]:
        """An oversized unit cut at row/line (atomic) or sentence boundaries, then at words; pieces
        of an environment repeat its opening and get its closing, so each is well-formed."""
        text = unit.text
        prefix = suffix = ""
        if unit.kind == "atomic":
            fr = frame(text)
            prefix, suffix = fr.prefix, fr.suffix
            if len(prefix) > len(text) // 2:  # a frame that is most of the block: repeat nothing
                prefix = suffix = ""
            cuts = fr.cuts
        else:
            cuts = [m.end() for m in _SENTENCE_END.finditer(text)]
        cuts = [c for c in cuts if 0 < c < len(text)]
        spans = _cut(text, cuts)
        extra = self._tokens([prefix + suffix])[0] if prefix or suffix else 0
        if extra and self._budget(section) - extra < 8:  # no room to repeat the frame: cut without it
            prefix = suffix = ""
            extra = 0
        budget = max(self._budget(section) - extra, 1)
        # pieces still too long: cut at spaces
        final: list[tuple[int, int]] = []
        sizes = self._tokens([text[a:b] for a, b in spans])
        for (a, b), n in zip(spans, sizes, strict=True):
            if n <= budget:
                final.append((a, b))
            else:
                words = [a + m.end() for m in re.finditer(r"\s+", text[a:b])]  # re-packed below
                final += _cut(text, [c for c in words if a < c < b], a, b)
        # a run with no space to cut at that is too long for the path: a chunk without the path, halved
        # only if even the window alone cannot hold it
        alone = max(self.max_tokens - extra, 1)
        final = [half for a, b in final for half in self._halves(text, a, b, alone)]
        # greedy re-pack of the pieces
        sizes = self._tokens([text[a:b] for a, b in final])
        groups: list[tuple[int, int]] = []
        group_sizes: list[int] = []
        for (a, b), n in zip(final, sizes, strict=True):
            if groups and group_sizes[-1] <= budget and group_sizes[-1] + n <= budget:
                groups[-1] = (groups[-1][0], b)
                group_sizes[-1] += n
            else:
                groups.append((a, b))
                group_sizes.append(n)
        ctx = self._ctx_tokens.get(section, 0)
        chunks = []
        for k, (a, b) in enumerate(groups):
            spans_ = _spans(unit.pieces, a, b)
            rep = prefix if k > 0 else ""
            end = ""
            if suffix and k < len(groups) - 1:
                end = suffix if text[a:b].endswith("\n") else "\n" + suffix
            body = rep + text[a:b] + end
            context = group_sizes[k] <= budget
            tokens = group_sizes[k] + (ctx if context else 0) + (extra if rep or end else 0)
            chunks.append(Chunk(self.doc_id, body, spans_, rep, section, end, context=context, tokens=tokens))
        return chunks

    def _halves(self, text: str, a: int, b: int, budget: int) -> list[tuple[int, int]]:
        """``[a, b)``, halved until each half fits ``budget`` (a run longer than the window)."""
        if b - a <= 1 or self._tokens([text[a:b]])[0] <= budget:
            return [(a, b)]
        m = (a + b) // 2
        return self._halves(text, a, m, budget) + self._halves(text, m, b, budget)


def _is_table(text: str) -> bool:
    return text.startswith(("\\begin{tabular", "\\begin{table", "|"))


def _spans(pieces: list[tuple[int, int, int]], a: int, b: int) -> tuple[tuple[int, int, int], ...]:
    """The page spans of characters ``[a, b)`` of a unit whose text is its ``pieces`` end to end."""
    spans: list[tuple[int, int, int]] = []
    pos = 0
    for page, start, end in pieces:
        lo, hi = max(a, pos), min(b, pos + end - start)
        if lo < hi:
            first, last = start + lo - pos, start + hi - pos
            if spans and spans[-1][0] == page and spans[-1][2] == first:
                spans[-1] = (page, spans[-1][1], last)
            else:
                spans.append((page, first, last))
        pos += end - start
    return tuple(spans)


def _cut(text: str, cuts: list[int], start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """``[start, end)`` cut at the given offsets into non-empty spans."""
    end = len(text) if end is None else end
    bounds = [start, *sorted(set(cuts)), end]
    return [(a, b) for a, b in itertools.pairwise(bounds) if b > a]
