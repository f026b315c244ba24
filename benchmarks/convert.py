"""Converter benchmark: streamrag's local converter vs LlamaIndex PDFReader vs pdfplumber.

Run: ``.venv/bin/python benchmarks/convert.py [--shared ../shared] [--skip-ocr] [--repeat N]`` (needs the
``bench`` extra: ``pip install -e '.[bench]'``).

Speed, for every PDF in ``shared/corpus`` and ``shared/captures``: time to first page (streamrag
and pdfplumber hand out pages one by one; PDFReader returns the whole document at once, so its
first page comes with the last) and pages per second over the whole file.

Fidelity, after stripping markup to lower-case word sequences: word F1 (bag of words: what was
read) and normalised edit similarity of the word sequences (1 - Levenshtein/longer length: in what
order). Per page against Mathpix's own pages for the five captures (averaged over the pages where
Mathpix has text), and per document against the corpus ``*.gt.md`` references.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from rapidfuzz.distance import Levenshtein  # noqa: E402

from streamrag._convert import convert_pdf  # noqa: E402
from streamrag._exceptions import ConversionError  # noqa: E402

PASSWORDS = {"arxiv-2206.01062-pg3-password-1234.pdf": "1234"}
TWO_COLUMN = {"arxiv-0908.0054.pdf", "arxiv-1804.07821.pdf", "ocr-a1977-backus-p21.pdf", "ocr-ZFN-A-054-0304-0272.pdf"}
SCANNED = {"scanned-M_Romney_1040_2011-p15-p16.pdf", "scanned-calculus00marciala_p43.pdf",
           "scanned-zh-issue-203-decimalize.pdf", "ocr-ZFN-A-054-0304-0272.pdf"}  # fmt: skip
LANGUAGES = {"scanned-zh-issue-203-decimalize.pdf": "chi_sim"}
Pages = Callable[[Path], Iterator[str]]


def words(text: str) -> list[str]:
    """Lower-case words of ``text`` without markup: LaTeX command names, Markdown and table syntax."""
    text = re.sub(r"\\[a-zA-Z]+\*?", " ", text)
    text = re.sub(r"!\[[^\]]*\]\([^)]*\)", " ", text)
    return re.findall(r"[^\W_]+", text.lower())


def word_f1(ours: list[str], ref: list[str]) -> float:
    a, b = Counter(ours), Counter(ref)
    common = sum((a & b).values())
    if not common:
        return 0.0
    p, r = common / sum(a.values()), common / sum(b.values())
    return 2 * p * r / (p + r)


def order_similarity(ours: list[str], ref: list[str]) -> float:
    if not ours and not ref:
        return 1.0
    return float(Levenshtein.normalized_similarity(ours, ref))


def streamrag_pages(path: Path) -> Iterator[str]:
    for message in convert_pdf(
        path.read_bytes(), password=PASSWORDS.get(path.name), ocr_languages=LANGUAGES.get(path.name)
    ):
        yield message.text or ""


def pdfreader_pages(path: Path) -> Iterator[str]:
    from llama_index.readers.file import PDFReader

    if path.name in PASSWORDS:
        raise RuntimeError("PDFReader takes no password")
    for document in PDFReader().load_data(file=path):
        yield document.text


def pdfplumber_pages(path: Path) -> Iterator[str]:
    import pdfplumber

    with pdfplumber.open(path, password=PASSWORDS.get(path.name, "")) as pdf:
        for page in pdf.pages:
            yield page.extract_text() or ""
            page.close()


CONVERTERS: dict[str, Pages] = {
    "streamrag": streamrag_pages,
    "PDFReader": pdfreader_pages,
    "pdfplumber": pdfplumber_pages,
}


def run(convert: Pages, path: Path) -> tuple[list[str], float, float] | str:
    """(page texts, seconds to first page, total seconds) or an error message."""
    start = time.perf_counter()
    first = None
    pages: list[str] = []
    try:
        for text in convert(path):
            first = first if first is not None else time.perf_counter() - start
            pages.append(text)
    except (ConversionError, Exception) as exc:  # every converter's failure is a table cell
        return f"{type(exc).__name__}: {str(exc)[:60]}"
    return pages, first or 0.0, time.perf_counter() - start


def best_of(repeat: int, convert: Pages, path: Path) -> tuple[list[str], float, float] | str:
    """:func:`run` ``repeat`` times: the fastest outcome (first page and total timed separately)."""
    outcomes = [run(convert, path) for _ in range(max(1, repeat))]
    timed = [o for o in outcomes if not isinstance(o, str)]
    if not timed:
        return outcomes[0]
    return timed[0][0], min(o[1] for o in timed), min(o[2] for o in timed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--skip-ocr", action="store_true", help="leave out the scanned PDFs")
    parser.add_argument(
        "--repeat", type=int, default=1, help="convert each file N times and keep the fastest (for a busy machine)"
    )
    args = parser.parse_args()
    os.environ.setdefault("OMP_THREAD_LIMIT", "1")
    # once per process, before timing: the server loads it at start (LocalBackend), not per upload
    from streamrag._convert._text import english_words

    english_words()
    files = sorted((args.shared / "corpus").glob("*.pdf")) + sorted((args.shared / "captures").glob("*/*.pdf"))
    if args.skip_ocr:
        files = [f for f in files if f.name not in SCANNED]
    results: dict[tuple[str, str], tuple[list[str], float, float] | str] = {}
    print(f"{'file':44} {'pages':>5}  " + "  ".join(f"{n:>24}" for n in CONVERTERS))
    print(f"{'':44} {'':>5}  " + "  ".join(f"{'first s':>8} {'pages/s':>8} {'total s':>6}" for _ in CONVERTERS))
    for path in files:
        cells = []
        n_pages = 0
        for name, convert in CONVERTERS.items():
            outcome = results[(name, path.name)] = best_of(args.repeat, convert, path)
            if isinstance(outcome, str):
                cells.append(f"{'error':>24}")
                continue
            pages, first, total = outcome
            n_pages = max(n_pages, len(pages))
            cells.append(f"{first:8.3f} {len(pages) / total if total else 0:8.1f} {total:6.2f}")
        print(f"{path.name[:44]:44} {n_pages:>5}  " + "  ".join(cells), flush=True)
    for (name, file), outcome in results.items():
        if isinstance(outcome, str):
            print(f"  {name} on {file}: {outcome}")

    text_files = [f.name for f in files if f.name not in SCANNED]
    print("\nText PDFs together (streamrag): ", end="")
    ok = [results[("streamrag", f)] for f in text_files if not isinstance(results[("streamrag", f)], str)]
    firsts = [o[1] for o in ok if not isinstance(o, str)]
    pages = sum(len(o[0]) for o in ok if not isinstance(o, str))
    seconds = sum(o[2] for o in ok if not isinstance(o, str))
    print(f"{pages} pages in {seconds:.2f} s = {pages / seconds:.1f} pages/s; first page median "
          f"{statistics.median(firsts):.3f} s, max {max(firsts):.3f} s")  # fmt: skip

    print("\nFidelity vs Mathpix (captures, mean over pages with Mathpix text): word F1 / order similarity")
    print(f"{'capture':24} " + "  ".join(f"{n:>15}" for n in CONVERTERS))
    from streamrag._stream import read_recording

    for folder in sorted(p for p in (args.shared / "captures").iterdir() if (p / "stream.json").is_file()):
        reference = {m.page_idx: m.text for m in read_recording(folder / "stream.json") if m.text}
        pdf = next(folder.glob("*.pdf")).name
        cells = []
        for name in CONVERTERS:
            outcome = results.get((name, pdf))
            if outcome is None or isinstance(outcome, str):
                cells.append(f"{'error':>15}")
                continue
            ours = outcome[0]
            pairs = [(words(ours[i - 1]) if i <= len(ours) else [], words(ref)) for i, ref in reference.items()]
            f1 = statistics.mean(word_f1(a, b) for a, b in pairs)
            order = statistics.mean(order_similarity(a, b) for a, b in pairs)
            cells.append(f"{f1:7.3f}/{order:7.3f}")
        print(f"{folder.name:24} " + "  ".join(cells))

    print("\nFidelity vs corpus references (whole document): word F1 / order similarity")
    print(f"{'reference':44} " + "  ".join(f"{n:>15}" for n in CONVERTERS))
    for ref in sorted((args.shared / "corpus").glob("*.gt.md")) + sorted((args.shared / "corpus").glob("*.ref-*.md")):
        pdf = re.sub(r"\.(gt|ref-[a-z]+)\.md$", ".pdf", ref.name)
        target = words(ref.read_text(encoding="utf-8"))
        cells = []
        for name in CONVERTERS:
            outcome = results.get((name, pdf))
            if outcome is None or isinstance(outcome, str):
                cells.append(f"{'error':>15}")
                continue
            ours = words("\n\n".join(outcome[0]))
            cells.append(f"{word_f1(ours, target):7.3f}/{order_similarity(ours, target):7.3f}")
        two = " (two-column)" if pdf in TWO_COLUMN else ""
        print(f"{(ref.name + two)[:44]:44} " + "  ".join(cells))


if __name__ == "__main__":
    main()
