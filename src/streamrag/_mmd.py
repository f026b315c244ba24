"""Mathpix Markdown (MMD) blocks: paragraphs, headings, asides and atomic blocks of one page's text.

- ``heading``: ``\\title{…}``, ``\\chapter``/``\\section``/``\\subsection``/``\\subsubsection``/``\\paragraph``
  (starred too; braces may hold newlines) and Markdown ``#`` headings. :func:`heading_of` gives
  ``(level, title)``.
- ``atomic``: display math (``\\[…\\]``, ``$$…$$``), any ``\\begin{…}…\\end{…}`` environment (equation,
  align, tabular, table, figure, lstlisting, …) and fenced code: never cut, except an oversized one at
  row or line boundaries with its opening (and a table's header row) repeated and its closing lines
  appended, so every piece is well-formed (:func:`frame`).
- ``aside``: ``\\footnotetext{…}`` and lines holding only figure links (``![](…)``) that end a
  paragraph. Mathpix puts footnotes at the end of a page, possibly inside a paragraph that goes on
  on the next page: an aside does not end that paragraph (the chunker stitches across it).
- ``para``: everything else, up to a blank line or a line opening another block. A footnote or
  figure link *inside* a paragraph stays in it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Block", "frame", "heading_of", "split_blocks"]

HEADING_LEVELS = {"title": 0, "chapter": 1, "section": 2, "subsection": 3, "subsubsection": 4, "paragraph": 5}
_HEADING = re.compile(r"\\(title|section|subsection|subsubsection|chapter|paragraph)\*?\{")
_MD_HEADING = re.compile(r"(#{1,6})[ \t]+")
_ENV = re.compile(r"\\begin\{([A-Za-z*]+)\}")
_FOOTNOTE = re.compile(r"\\footnotetext\{")
_FIGURE_LINE = re.compile(r"(?:!\[[^\]\n]*\]\([^)\n]*\)[ \t]*)+(?=\n|$)")
_LINE_OPENERS = re.compile(
    r"(?:\\begin\{|\\\[|\$\$|```|~~~|#{1,6}[ \t]|\\(?:title|section|subsection|subsubsection|chapter|paragraph)\*?\{)"
)
_OPEN_LINE = re.compile(r"\s*(?:\\begin\{[^}]*\}(?:\{[^}]*\}|\[[^\]]*\])*\s*)+$")
_CLOSE_LINE = re.compile(r"\s*(?:\\hline\s*)*(?:(?:\\end\{[^}]*\}\s*)+(?:\\\]|\$\$)?|\\\]|\$\$|```|~~~)\s*$")


@dataclass(frozen=True)
class Block:
    """A span ``[start, end)`` of one page's text; ``kind`` is ``para``, ``heading``, ``atomic`` or
    ``aside``."""

    start: int
    end: int
    kind: str


def match_brace(text: str, i: int) -> int:
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


def _line_end(text: str, i: int) -> int:
    nl = text.find("\n", i)
    return len(text) if nl < 0 else nl


def _aside_end(text: str, i: int) -> int:
    """End of an aside starting at ``i`` (a footnote's closing brace, a figure line's end), or -1."""
    if _FOOTNOTE.match(text, i):
        return match_brace(text, text.index("{", i))
    m = _FIGURE_LINE.match(text, i)
    return m.end() if m else -1


def _para_end(text: str, i: int) -> int:
    """End of a paragraph starting at ``i``: a blank line or a line that opens another block."""
    j = i
    while True:
        if _FOOTNOTE.match(text, j):  # a footnote inside the paragraph is read whole (it may hold blank lines)
            j = match_brace(text, text.index("{", j))
        nl = text.find("\n", j)
        if nl < 0:
            return len(text)
        nxt = nl + 1
        if nxt >= len(text) or text[nxt] == "\n" or _LINE_OPENERS.match(text, nxt):
            return nl
        j = nxt


def _trailing_asides(text: str, start: int, end: int) -> int:
    """Where the run of aside lines ending paragraph ``[start, end)`` begins (``end`` if none)."""
    cut = end
    while True:
        nl = text.rfind("\n", start, cut)
        if nl < 0:
            return cut
        line_start = nl + 1
        aside = _aside_end(text, line_start)
        if aside < 0 or text[aside:cut].strip():
            return cut
        cut = nl


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
            end = _line_end(text, end) if end < n else end  # the closing fence's line
        elif (m := _ENV.match(text, i)) is not None:
            end, kind = _env_end(text, i, m.group(1)), "atomic"
        elif (m := _HEADING.match(text, i)) is not None:
            end, kind = match_brace(text, m.end() - 1), "heading"
        elif _MD_HEADING.match(text, i):
            end, kind = _line_end(text, i), "heading"
        elif (end := _aside_end(text, i)) >= 0:
            kind = "aside"
        else:
            end, kind = _para_end(text, i), "para"
            cut = _trailing_asides(text, i, end)
            if cut < end and text[i:cut].strip():  # footnotes/figures ending a paragraph are asides
                end = cut
        # trailing spaces belong to the gap, not the block
        while end > i and text[end - 1].isspace():
            end -= 1
        blocks.append(Block(i, max(end, i + 1), kind))
        i = max(end, i + 1)
    return blocks


def _clean_title(raw: str) -> str:
    title = re.sub(r"\\\(|\\\)|\$|\\[a-zA-Z]+\*?(?=\{)|[{}]", " ", raw)
    title = " ".join(title.split())
    return title[:80].rstrip()


def heading_of(text: str) -> tuple[int, str] | None:
    """``(level, title)`` of a heading block's text (``\\title`` 0 … ``\\paragraph`` 5; ``#`` 1 … ``######`` 6).
    A title without a letter (a lone ``∑`` from a figure, a row of ornament glyphs) names no section: None."""
    m = _HEADING.match(text)
    if m is not None:
        end = match_brace(text, m.end() - 1)
        level, title = HEADING_LEVELS[m.group(1)], _clean_title(text[m.end() : end - 1])
    elif (m := _MD_HEADING.match(text)) is not None:
        level, title = len(m.group(1)), _clean_title(text[m.end() :].strip().rstrip("#"))
    else:
        return None
    return (level, title) if any(c.isalpha() for c in title) else None


@dataclass(frozen=True)
class Frame:
    """How an atomic block is cut: ``body`` is ``[body_start, body_end)``; pieces after the first
    repeat ``prefix`` (opening lines, a table's header row), pieces before the last get ``suffix``
    (closing lines); ``cuts`` are the offsets where a piece may end (row or line ends)."""

    body_start: int
    body_end: int
    prefix: str
    suffix: str
    cuts: list[int]


def frame(text: str) -> Frame:
    """The frame of an atomic block's text (see :class:`Frame`)."""
    lines = text.splitlines(keepends=True)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))
    # opening: the first line, more lines that only open environments, then a table's header row
    k = 1 if lines else 0
    while k < len(lines) - 1 and _OPEN_LINE.match(lines[k]):
        k += 1
    tabular = "\\begin{tabular" in text[: starts[k]] or "\\begin{array" in text[: starts[k]]
    if tabular and k < len(lines) - 1 and "&" in lines[k] and lines[k].rstrip().endswith("\\\\"):
        k += 1
    # closing: the last lines that only close environments (or display math, a fence)
    last = len(lines)
    while last - 1 > k and _CLOSE_LINE.match(lines[last - 1]):
        last -= 1
    body_start, body_end = starts[k], starts[last]
    prefix, suffix = text[:body_start], text[body_end:]
    rows = [m.end() for m in re.finditer(r"\\\\[ \t]*\n", text) if body_start < m.end() < body_end]
    lines_cuts = [s for s in starts if body_start < s < body_end]
    cuts = rows if tabular and rows else lines_cuts
    return Frame(body_start, body_end, prefix, suffix, cuts)
