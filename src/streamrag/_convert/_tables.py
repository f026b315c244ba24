"""Tables: runs of lines whose words stand in aligned columns, written as Markdown pipe tables.

A row is one visual line (lines sharing a baseline are merged) split into cells at wide gaps (see
:func:`streamrag._convert._textlayer.read_lines`). Three or more consecutive rows with two or more
cells each, whose cells line up in columns that are mostly filled, become a table. Columns are the
merged x-extents of the cells of the rows with the most common cell count; every cell goes to the
column it overlaps most. Mathpix writes ``tabular`` or pipe tables; both are MMD.
"""

from __future__ import annotations

import re
import statistics
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from itertools import pairwise

from ._text import clean
from ._textlayer import Line

_CAPTION = re.compile(r"\s*(?:Table|Tableau|Tabla|Tabelle|Figure|Fig\.|Example)\s+[A-Z]?\d", re.IGNORECASE)
"""A caption line ("Table 2-1 FUNCTION_USAGE view") is never a table row, though its words may align."""


@dataclass(slots=True)
class Table:
    lines: list[Line]
    markdown: str


def _rows(lines: list[Line]) -> list[list[Line]]:
    rows: list[list[Line]] = []
    for line in lines:
        if rows and abs(rows[-1][0].base - line.base) < 0.4 * max(line.size, 1.0):
            rows[-1].append(line)
        else:
            rows.append([line])
    return rows


def _cells(row: list[Line]) -> list[tuple[float, float, str]]:
    return sorted((c for line in row for c in line.cells), key=lambda c: c[0])


def _columns(rows: list[list[tuple[float, float, str]]]) -> list[tuple[float, float]]:
    counts = [len(r) for r in rows]
    common = max(set(counts), key=lambda n: (counts.count(n), n))
    spans: list[tuple[float, float]] = []
    for x0, x1, _ in sorted(c for r in rows if len(r) == common for c in r):
        if spans and x0 <= spans[-1][1] + 1.0:
            spans[-1] = (spans[-1][0], max(spans[-1][1], x1))
        else:
            spans.append((x0, x1))
    return spans


class _Columns:
    """The column spans (sorted, disjoint) with bisect look-ups: a cell finds its column in O(log n)."""

    def __init__(self, spans: list[tuple[float, float]]) -> None:
        self.spans = spans
        self.starts = [a for a, _ in spans]
        self.ends = [b for _, b in spans]
        self.middles = [(a + b) / 2 for a, b in spans]
        self.ordered = all(
            a0 < a1 and b0 < b1 and m0 < m1
            for (a0, b0, m0), (a1, b1, m1) in pairwise(zip(self.starts, self.ends, self.middles, strict=True))
        )
        """Starts, ends and middles all increase (always, unless a cell runs right to left)."""

    def of(self, cell: tuple[float, float, str]) -> int:
        """The column ``cell`` overlaps most (the first on a tie), else the one with the nearest middle."""
        x0, x1, _ = cell
        spans = self.spans
        if not self.ordered:
            overlaps = [min(x1, b) - max(x0, a) for a, b in spans]
            top = max(range(len(spans)), key=lambda k: overlaps[k])
            if overlaps[top] > 0:
                return top
            middle = (x0 + x1) / 2
            return min(range(len(spans)), key=lambda k: abs(self.middles[k] - middle))
        # only the spans with a positive overlap can win, and they are consecutive: end > x0, start < x1
        best, most = -1, 0.0
        for k in range(bisect_right(self.ends, x0), bisect_left(self.starts, x1)):
            a, b = spans[k]
            overlap = min(x1, b) - max(x0, a)
            if overlap > most:
                best, most = k, overlap
        if best >= 0:
            return best
        middle = (x0 + x1) / 2
        k = bisect_left(self.middles, middle)
        candidates = [j for j in (k - 1, k) if 0 <= j < len(spans)]
        return min(candidates, key=lambda j: abs(self.middles[j] - middle))


def _table(rows: list[list[Line]], cell_rows: list[list[tuple[float, float, str]]]) -> Table | None:
    spans = _columns(cell_rows)
    if len(spans) < 2:
        return None
    columns = _Columns(spans)
    grid = []
    for cells in cell_rows:
        row = [""] * len(spans)
        for cell in cells:
            k = columns.of(cell)
            row[k] = f"{row[k]} {cell[2]}".strip()
        grid.append([clean(c).replace("|", "\\|") for c in row])
    filled = sum(1 for row in grid for c in row if c) / (len(grid) * len(spans))
    lengths = [len(c) for row in grid for c in row if c]
    if filled < 0.5 or statistics.mean(lengths) > 40 or (len(spans) == 2 and len(grid) < 4):
        return None
    header, *body = grid
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(spans)]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return Table([ln for r in rows for ln in r], "\n".join(lines))


def find_tables(lines: list[Line]) -> list[Line | Table]:
    """``lines`` with each run of table rows replaced by one :class:`Table`."""
    out: list[Line | Table] = []
    rows = _rows(lines)
    cell_rows = [_cells(r) for r in rows]
    i = 0
    while i < len(rows):
        j = i
        while j < len(rows) and len(cell_rows[j]) >= 2 and not _CAPTION.match(rows[j][0].text):
            j += 1
        table = _table(rows[i:j], cell_rows[i:j]) if j - i >= 3 else None
        if table is not None:
            out.append(table)
            i = j
        else:
            out.extend(rows[i])
            i += 1
    return out
