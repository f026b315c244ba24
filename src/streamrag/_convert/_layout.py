"""From a page's body lines to Markdown blocks: reading order, paragraphs, lists, headings, tables.

Reading order: PDFium gives lines in content-stream order, which within a column is nearly always
the reading order. When a page has two columns (a vertical gutter near the middle that the narrow
lines leave empty), lines are regrouped: full-width lines (titles, abstracts, wide figures and
tables) cut the page into bands, and within each band the left column is read before the right one,
each in stream order. On a one-column page, a run of lines the stream draws after the text around it
(a table or a figure's labels, drawn last) is put back into the empty band it fills.

Headings are written as ``\\section{…}`` (clearly larger than body text) or ``\\subsection{…}``
(slightly larger, or a short bold or upper-case line) — Mathpix's own convention; the chunker reads
these and ``#`` headings alike. A title set in a large font that wraps over two or more lines is
one heading, even when the paragraph rules cut between its lines.

Footnotes (:mod:`._footnotes`) are taken out of the reading order and written at the page's end.
"""

from __future__ import annotations

import re
import statistics
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from itertools import pairwise

from ._footnotes import footnote_text, note_text, split_footnotes
from ._furniture import PAGE_NUMBER
from ._tables import Table, find_tables
from ._text import Vocabulary, join_lines
from ._textlayer import Line, is_rtl

_BULLET = re.compile(r"^(?:[•◦▪▫‣⁃∙●○■□➢►\x80-\x9f\ue000-\uf8ff]\s*|[-–—*]\s+)(?=\S)")
_NUMBERED = re.compile(r"^(\d{1,2})[.)]\s+(?=\S)")
SENTENCE_END = re.compile(r"[.!?:][\"'”’)\]]*$")
_CODE_LIKE = re.compile(r"[=*;{}<>\[\]]|\w_\w|\w\(")


@dataclass(slots=True)
class Block:
    kind: str  # "para" | "item" | "heading" | "table" | "footnote"
    lines: list[Line]
    text: str = ""


def reading_order(lines: list[Line]) -> list[Line]:
    """``lines`` in reading order, regrouped by column when the page has two columns."""
    gutter = _gutter(lines)
    if gutter is None:
        return _back_in_place(lines)
    g0, g1 = gutter
    spanning = sorted((ln for ln in lines if ln.x0 < g0 - 2 and ln.x1 > g1 + 2), key=lambda ln: -ln.base)
    tops = [ln.base for ln in spanning] + _gaps(lines)
    position = {id(ln): 2 * k + 1 for k, ln in enumerate(spanning)}

    def key(line: Line) -> tuple[int, int]:
        if id(line) in position:
            return position[id(line)], 0
        band = sum(1 for top in tops if top > line.base + 0.3 * line.size)
        return 2 * band, 0 if line.x1 <= g1 + 2 else 1

    return sorted(lines, key=key)


def _back_in_place(lines: list[Line]) -> list[Line]:
    """Stream order, except that a run drawn later that jumps back up the page into a band the text
    before it left empty is read there (where Mathpix, reading the page image, reads it)."""
    runs: list[list[Line]] = []
    for line in lines:  # a run goes down the page (a superscript's small rise stays in it)
        if runs and line.base <= runs[-1][-1].base + 0.7 * line.size:
            runs[-1].append(line)
        else:
            runs.append([line])
    if len(runs) == 1:
        return lines
    placed = runs[0]
    for run in runs[1:]:
        top, bottom = max(ln.base for ln in run), min(ln.base for ln in run)
        at = next(
            (
                k + 1
                for k, (a, b) in enumerate(pairwise(placed))
                if a.base > top and b.base < bottom and a.base - b.base > 3 * a.size  # an emptied band, not a fraction
            ),
            len(placed),
        )
        placed = placed[:at] + run + placed[at:]
    return placed


def _gaps(lines: list[Line]) -> list[float]:
    """Heights (y) of full-width empty bands at least two font sizes tall: cuts between bands."""
    spans = sorted((ln.base - 0.3 * ln.size, ln.base + ln.size) for ln in lines)
    size = statistics.median(ln.size for ln in lines)
    cuts, reach = [], spans[0][1]
    for low, high in spans[1:]:
        if low - reach > 2.0 * size:
            cuts.append((low + reach) / 2)
        reach = max(reach, high)
    return cuts


def _gutter(lines: list[Line]) -> tuple[float, float] | None:
    if len(lines) < 12:
        return None
    x_min, x_max = min(ln.x0 for ln in lines), max(ln.x1 for ln in lines)
    width = x_max - x_min
    narrow = [ln for ln in lines if ln.x1 - ln.x0 < 0.55 * width and len(ln.text) > 3]
    if width < 100 or len(narrow) < 10:
        return None
    bins = int(width) + 2
    diff = [0] * (bins + 1)
    for ln in narrow:
        diff[int(ln.x0 - x_min)] += 1
        diff[int(ln.x1 - x_min) + 1] -= 1
    cover, running = [], 0
    for d in diff[:bins]:
        running += d
        cover.append(running)
    limit = max(1, len(narrow) // 30)
    best: tuple[int, int] | None = None
    start = None
    for x in range(int(0.3 * width), int(0.7 * width) + 1):
        if cover[x] <= limit:
            start = x if start is None else start
            if best is None or x - start > best[1] - best[0]:
                best = (start, x)
        else:
            start = None
    if best is None or best[1] - best[0] < 5:
        return None
    g0, g1 = x_min + best[0], x_min + best[1]
    left = sum(1 for ln in narrow if ln.x1 <= g0 + 2)
    right = sum(1 for ln in narrow if ln.x0 >= g1 - 2)
    return (g0, g1) if left >= 5 and right >= 5 else None


def _size_mode(lines: list[Line]) -> float:
    """The most common font size (to half a point) by characters; the first seen on a tie."""
    weights: dict[float, int] = {}
    for ln in lines:
        size = round(ln.size * 2) / 2
        weights[size] = weights.get(size, 0) + len(ln.text)
    return max(weights, key=lambda size: weights[size])


class Layout:
    """Groups a page's lines into Markdown blocks (paragraphs, list items, headings, tables)."""

    def __init__(self, lines: list[Line], body: float, vocabulary: Vocabulary) -> None:
        self.lines = [ln for ln in lines if ln.text.strip()]
        self.vocabulary = vocabulary
        self._by_x0 = sorted(self.lines, key=lambda ln: ln.x0)
        self._x0s = [ln.x0 for ln in self._by_x0]
        chars = sum(len(ln.text) for ln in self.lines)
        self.body = _size_mode(self.lines) if chars >= 300 or (chars and not body) else body
        text_lines, self.notes = split_footnotes(reading_order(lines), self.body)
        self.items = find_tables(text_lines)
        deltas = [
            p.base - c.base
            for p, c in zip(self.lines, self.lines[1:], strict=False)
            if abs(p.size - c.size) < 0.5 and 0.9 * c.size < p.base - c.base < 2.2 * c.size
        ]
        self.leading = sorted(deltas)[len(deltas) // 4] if deltas else 1.2 * (self.body or 10.0)

    def _right_edge(self, line: Line) -> float:
        """Where lines of this line's column usually end (90th percentile of overlapping lines)."""
        # the lines with line.x0 - 40 < x0 < line.x1, found by bisection, that end right of line.x0
        near = self._by_x0[bisect_right(self._x0s, line.x0 - 40) : bisect_left(self._x0s, line.x1)]
        overlapping = [o for o in near if o.x1 > line.x0]
        size = line.size
        ends = sorted([o.x1 for o in overlapping if abs(o.size - size) < 0.5])
        if len(ends) < 3:
            ends = sorted([o.x1 for o in overlapping])
        return ends[int(0.9 * (len(ends) - 1))] if ends else line.x1

    def _breaks(self, prev: Line, cur: Line, block: Block) -> bool:
        size = max(prev.size, cur.size, 1.0)
        delta = prev.base - cur.base
        if abs(delta) < 0.7 * size and cur.x0 >= prev.x1 - 2:
            return False  # same visual line: a superscript, subscript or the text after it
        if abs(prev.size - cur.size) > 0.12 * size or (prev.bold != cur.bold and size < 1.15 * self.body):
            return True
        if _BULLET.match(cur.text) or _NUMBERED.match(cur.text):
            return True
        if abs(delta) < 0.3 * size:  # same visual line, split by PDFium
            return False
        if delta < 0 and cur.x0 > prev.x1 and abs(prev.size - cur.size) < 0.5 and cur.text[:1].islower():
            return bool(SENTENCE_END.search(prev.text.strip()))  # the paragraph goes on in the next column
        if delta < 0 or delta > 1.45 * self.leading * max(1.0, size / (self.body or size)):
            return True
        if block.kind == "item":
            return cur.x0 < block.lines[0].x0 + 0.5 * size
        if is_rtl(prev.text):  # right-to-left: only spacing and size separate paragraphs
            return False
        if self._right_edge(prev) - prev.x1 > cur.first_word + 0.6 * size:
            return True  # the next line's first word would have fitted: prev ends its paragraph
        return cur.x0 - prev.x0 > 0.8 * size and len(block.lines) > 1  # first-line indent

    def blocks(self) -> list[Block]:
        blocks: list[Block] = []
        for item in self.items:
            if isinstance(item, Table):
                blocks.append(Block("table", item.lines, item.markdown))
            elif not blocks or blocks[-1].kind == "table" or self._breaks(blocks[-1].lines[-1], item, blocks[-1]):
                kind = "item" if _BULLET.match(item.text) or _NUMBERED.match(item.text) else "para"
                blocks.append(Block(kind, [item]))
            else:
                blocks[-1].lines.append(item)
        out: list[Block] = []
        for block in blocks:
            if block.kind == "table":
                out.append(block)
                continue
            text = join_lines([ln.text for ln in block.lines], self.vocabulary)
            if block.kind == "item" and len(block.lines) == 1 and block.lines[0].size >= 1.1 * self.body:
                block.kind = "para"  # "1. Introduction": a numbered heading, not a list
            if block.kind == "item":
                numbered = _NUMBERED.match(text)
                text = f"{numbered[1]}. {text[numbered.end() :]}" if numbered else "- " + _BULLET.sub("", text)
            elif self._is_heading(block, text):
                if out and self._wraps_heading(out[-1], block):  # a title's second line: one heading
                    out[-1].lines += block.lines
                    out[-1].text = self._heading(out[-1].lines)
                    continue
                block.kind = "heading"
                text = self._heading(block.lines)
            block.text = text
            out.append(block)
        _labels_apart(out, self.body, self.vocabulary)
        for mark, lines in self.notes:  # at the page's end, as Mathpix puts them
            text = join_lines(note_text([ln.text for ln in lines]), self.vocabulary)
            out.append(Block("footnote", lines, footnote_text(mark, text)))
        return [b for b in out if b.text and b.text != "-"]

    def _heading(self, lines: list[Line]) -> str:
        level = "section" if lines[0].size >= 1.4 * self.body else "subsection"
        return f"\\{level}{{{join_lines([ln.text for ln in lines], self.vocabulary)}}}"

    def _wraps_heading(self, prev: Block, cur: Block) -> bool:
        """Does the heading ``cur`` continue the heading ``prev``: a title wrapped over lines?

        Only headings set in a larger font (not bold or capitalised body-size labels, which stand in
        lists): same size and weight, the next line down at the title's own line spacing, overlapping
        it horizontally, and ``prev`` not ending a sentence. Below section size, ``prev`` must be at
        least as wide as ``cur`` (text that wraps fills its first line; an author's name over their
        affiliation does not).
        """
        if prev.kind != "heading" or len(prev.lines) + len(cur.lines) > 4:
            return False
        a, b = prev.lines[-1], cur.lines[0]
        if not self.body or min(a.size, b.size) < 1.15 * self.body:
            return False
        if a.size < 1.4 * self.body and a.x1 - a.x0 < b.x1 - b.x0:
            return False
        if abs(a.size - b.size) > 0.05 * a.size or a.bold != b.bold or SENTENCE_END.search(a.text.strip()):
            return False
        return 0.6 * a.size < a.base - b.base < 1.7 * a.size and min(a.x1, b.x1) > max(a.x0, b.x0)

    def _is_heading(self, block: Block, text: str) -> bool:
        words = len(text.split())
        if not 0 < words <= 14 or len(block.lines) > 2 or text.endswith((".", ",", ";")):
            return False
        if self.body and block.lines[0].size >= 1.15 * self.body:
            return True
        if _CODE_LIKE.search(text):  # "CHGFCNUSG FCNID(QIBM_DB_SECADM) USAGE(*ALLOWED)": a command, bold
            return False
        letters = [c for c in text if c.isalpha()]
        title_like = all(ln.bold for ln in block.lines) or (len(letters) >= 4 and text.upper() == text)
        return len(block.lines) == 1 and words <= 10 and title_like and text[:1].isupper()


def _labels_apart(blocks: list[Block], body: float, vocabulary: Vocabulary) -> None:
    """Four or more body-size "headings" in a row, with no text between them, are labels (a chart's
    categories, a legend), not sections: they become plain lines, so no chunk takes one as its path."""
    run: list[Block] = []
    for block in [*blocks, Block("para", [])]:
        if block.kind == "heading" and (not body or block.lines[0].size < 1.15 * body):
            run.append(block)
            continue
        if len(run) >= 4:
            for label in run:
                label.kind = "para"
                label.text = join_lines([ln.text for ln in label.lines], vocabulary)
        run = []


def markdown(blocks: list[Block]) -> str:
    parts: list[str] = []
    for prev, block in zip([None, *blocks], blocks, strict=False):
        if prev is not None:
            parts.append("\n" if prev.kind == block.kind == "item" else "\n\n")
        parts.append(block.text)
    return "".join(parts)


def separator(last: Block | None, first: Block) -> str:
    """Mathpix's page separator: ``"\\n"`` continues the previous page's paragraph or list."""
    if last is None:
        return ""
    open_ended = last.kind in ("para", "item") and not SENTENCE_END.search(last.text)
    lowercase = first.kind == "para" and (first.text[:1].islower() or first.text[:1] in ",;)]}%")
    if (open_ended and lowercase) or (last.kind == "item" and first.kind == "item"):
        return "\n"
    return "\n\n"


def ocr_blocks(lines: list[tuple[Line, int]], vocabulary: Vocabulary) -> list[Block]:
    """Blocks from OCR'd lines, grouped by Tesseract's paragraphs (it has already found the columns)."""
    if not lines:
        return []
    sizes = sorted(ln.size for ln, _ in lines)
    median = sizes[len(sizes) // 2]
    groups: dict[int, list[Line]] = {}
    for line, paragraph in lines:
        groups.setdefault(paragraph, []).append(line)
    blocks = []
    for group in groups.values():
        text = join_lines([ln.text for ln in group], vocabulary)
        if not text or not any(ch.isalnum() for ch in text) or (len(group) == 1 and PAGE_NUMBER.match(text)):
            continue
        if _BULLET.match(text) or _NUMBERED.match(text):
            numbered = _NUMBERED.match(text)
            text = f"{numbered[1]}. {text[numbered.end() :]}" if numbered else "- " + _BULLET.sub("", text)
            blocks.append(Block("item", group, text))
        elif len(group) <= 2 and len(text.split()) <= 12 and group[0].size >= 1.3 * median and text[-1:] not in ".,;":
            level = "section" if group[0].size >= 1.8 * median else "subsection"
            blocks.append(Block("heading", group, f"\\{level}{{{text}}}"))
        else:
            blocks.append(Block("para", group, text))
    return blocks
