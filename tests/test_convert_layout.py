"""The local converter's page layout: wrapped titles and footnotes, on small generated PDFs and real ones.

The generated PDFs place every line with ``fpdf2`` (the ``test`` extra) at an exact position, size
and weight, in a chosen content-stream order (PDFium's, and so the converter's, first reading order).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from streamrag._convert import convert_pdf

fpdf = pytest.importorskip("fpdf")

Text = tuple[float, float, float, str, str]
"""A line to draw: (x, baseline from the page top, font size, style "" or "B", text)."""

BODY = [
    "Counting objects in images is a common problem in computer vision, for example when the",
    "traffic on a street or the pedestrians in a crowd have to be estimated from a single still",
    "frame. Modern approaches to this problem produce a density map by regression, and the",
    "integral of that map over the image is equal to the number of objects that it contains.",
    "Objects can however appear at very different scales because of perspective effects, which",
    "makes it hard for a learning agent to find one model that suits every part of the image and",
]


def make_pdf(pages: list[list[Text]]) -> bytes:
    pdf = fpdf.FPDF(unit="pt", format="letter")
    pdf.set_auto_page_break(False)
    for lines in pages:
        pdf.add_page()
        for x, y, size, style, text in lines:
            pdf.set_font("Helvetica", style, size)
            pdf.text(x, y, text)
    return bytes(pdf.output())


def body(top: float) -> list[Text]:
    return [(72, top + 12 * k, 10, "", line) for k, line in enumerate(BODY)]


def texts(data: bytes) -> list[str]:
    return [m.text or "" for m in convert_pdf(data)]


def test_a_title_wrapped_over_two_lines_is_one_heading() -> None:
    """The first line ends well short of the body's right edge, so paragraph rules alone cut it."""
    title = [(72, 90, 20, "B", "Dilated Convolutions for"), (72, 114, 20, "B", "Crowd Counting")]
    page = texts(make_pdf([[*title, *body(170)]]))[0]
    assert page.startswith("\\section{Dilated Convolutions for Crowd Counting}\n\nCounting objects"), page[:80]
    assert page.count("\\section{") == 1


def test_headings_far_apart_or_of_other_sizes_stay_apart() -> None:
    lines = [
        (72, 90, 20, "B", "Aggregated Dilated Convolutions"),
        (72, 150, 20, "B", "Perspective-Free Counting"),  # a blank band between: another heading
        (72, 174, 13, "B", "A smaller subtitle under it"),  # another size
        *body(220),
    ]
    page = texts(make_pdf([lines]))[0]
    assert "\\section{Aggregated Dilated Convolutions}" in page
    assert "\\section{Perspective-Free Counting}" in page
    assert "\\subsection{A smaller subtitle under it}" in page


def test_a_footnote_goes_to_the_page_end_in_mathpix_shape() -> None:
    """The note is drawn first in the content stream, yet ends the page as ``\\footnotetext``."""
    note = (72, 740, 8, "", "1 The counts were checked by hand on a random sample of the frames.")
    page = texts(make_pdf([[note, *body(100)]]))[0]
    assert page.endswith(
        "\n\n\\footnotetext{${ }^{1}$ The counts were checked by hand on a random sample of the frames.}"
    )
    assert page.startswith("Counting objects in images"), page
    assert page.count("footnotetext") == 1


def test_a_paragraph_continues_across_the_page_break_over_its_footnote() -> None:
    first = [*body(100), (72, 740, 8, "", "2 See the appendix for the details of the regression model used here.")]
    second = [
        (72, 100, 10, "", "the scene; a multicolumn network is one answer to this problem, which we study here."),
        *body(112),
    ]
    first_page, second_page = texts(make_pdf([first, second]))
    assert first_page.endswith(
        "\\footnotetext{${ }^{2}$ See the appendix for the details of the regression model used here.}"
    )
    assert "suits every part of the image and\n\n\\footnotetext" in first_page
    assert second_page.startswith("\nthe scene;"), second_page[:40]  # one newline: the paragraph goes on


def test_small_print_that_is_not_a_footnote_stays_in_place() -> None:
    """A small line near the bottom without a marker, or one with body text below it, is kept."""
    lines = [*body(100), (72, 400, 8, "", "3 cameras were used in total for the recordings."), *body(420)]
    lines += [(72, 740, 8, "", "Printed on recycled paper by the authors themselves.")]
    page = texts(make_pdf([lines]))[0]
    assert "footnotetext" not in page
    assert "3 cameras were used" in page and "Printed on recycled paper" in page


def test_a_table_drawn_last_is_read_where_it_stands() -> None:
    """The stream draws the text above and below first, then the table in the band they leave."""
    rows = [("Camera", "Count"), ("North", "1204"), ("South", "877"), ("East", "1530")]
    cells = [(72 + 150 * c, 250 + 14 * r, 9, "", word) for r, row in enumerate(rows) for c, word in enumerate(row)]
    caption = (72, 230, 9, "", "Table 1 Counts per camera")
    page = texts(make_pdf([[*body(100), caption, *body(340), *cells]]))[0]
    order = ["Counting objects", "Table 1 Counts per camera", "| Camera | Count |", "| East | 1530 |"]
    positions = [page.find(s) for s in order]
    assert -1 not in positions and positions == sorted(positions), page
    assert page.rfind("makes it hard for a learning agent") > page.find("| East | 1530 |")
    assert "| Table 1" not in page  # the caption is not a table row


def test_a_fraction_drawn_out_of_order_is_not_moved() -> None:
    """A numerator drawn after its denominator jumps up a line, not into an emptied band: it stays."""
    formula = [(72, 172, 10, "", "p(b) ="), (110, 181, 10, "", "N"), (110, 163, 10, "", "n(b)")]
    page = texts(make_pdf([[*body(100), *formula]]))[0]
    assert page.find("p(b) =") < page.find("n(b)"), page


def test_a_bold_command_line_is_not_a_heading_but_a_bold_label_is() -> None:
    lines = [
        *body(100),
        (72, 190, 10, "B", "CHGFCNUSG FCNID(QIBM_DB_SECADM) USAGE(*ALLOWED)"),
        *body(220),
        (72, 310, 10, "B", "Path to goal (cost):"),
        *body(340),
    ]
    page = texts(make_pdf([lines]))[0]
    assert "\\subsection{Path to goal (cost):}" in page
    assert "CHGFCNUSG FCNID(QIBM_DB_SECADM) USAGE(*ALLOWED)" in page and "subsection{CHGFCNUSG" not in page


def test_a_run_of_capitalised_labels_is_not_a_run_of_sections() -> None:
    """A bar chart's categories (four or more in a row, no text between) are labels; three are kept."""
    chart = ["JAMAIS", "QUELQUES FOIS PAR MOIS", "UNE FOIS PAR SEMAINE", "TOUS LES JOURS"]
    form = ["NAME:", "STUDENT ID:", "INSTRUCTIONS:"]
    lines = [*body(100), *[(72, 200 + 30 * k, 10, "", label) for k, label in enumerate(chart)]]
    lines += [*body(340), *[(72, 440 + 30 * k, 10, "", label) for k, label in enumerate(form)], *body(560)]
    page = texts(make_pdf([lines]))[0]
    assert all(label in page for label in chart) and "subsection{JAMAIS}" not in page
    assert page.count("\\subsection{") == 3 and "\\subsection{INSTRUCTIONS:}" in page


# --- real PDFs ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus(shared: Path) -> Path:
    return shared / "corpus"


def test_paper_title_over_two_lines_and_authors_apart(corpus: Path) -> None:
    page = next(convert_pdf((corpus / "arxiv-1804.07821.pdf").read_bytes(), page_ranges="1")).text or ""
    title = "An Aggregated Multicolumn Dilated Convolution Network for Perspective-Free Counting"
    assert page.startswith(f"\\section{{{title}}}\n\n")
    assert "\\subsection{Diptodip Deb}" in page  # a name over an affiliation is not a wrapped title


def test_two_column_paper_footnotes_end_the_page(corpus: Path) -> None:
    """REVTeX puts the notes under the left column; Mathpix and the converter put them last."""
    page = next(convert_pdf((corpus / "arxiv-0908.0054.pdf").read_bytes(), page_ranges="1")).text or ""
    notes = re.findall(r"\\footnotetext\{[^\n]*\}", page)
    assert notes == [
        "\\footnotetext{${ }^{*}$ Part of the Instituto Avanzado de Cosmología (IAC) collaboration http://www.iac.edu.mx/}",
        "\\footnotetext{${ }^{\\dagger}$ Electronic address: rrodriguez@fis.cinvestav.mx}",
        "\\footnotetext{${ }^{\\ddagger}$ Electronic address: tmatos@fis.cinvestav.mx}",
    ]
    assert page.endswith(notes[-1]) and page.index("Between the times of decoupling") < page.index(notes[0])


def test_numbered_footnote_of_a_journal_page(corpus: Path) -> None:
    pages = [m.text or "" for m in convert_pdf((corpus / "arxiv-0807.3577-jcap.pdf").read_bytes(), page_ranges="2")]
    assert pages[0].endswith("smallness of the Weyl curvature.}")
    assert "\n\n\\footnotetext{${ }^{5}$ These theorems imply" in pages[0]


# --- fast paths agree with the plain definitions -------------------------------------------------

hypothesis = pytest.importorskip("hypothesis")
st = hypothesis.strategies
coordinate = st.floats(min_value=0, max_value=600, allow_nan=False)


@hypothesis.given(
    st.lists(st.tuples(coordinate, coordinate), min_size=2, max_size=30), st.tuples(coordinate, coordinate)
)
def test_column_lookup_by_bisection_matches_the_full_scan(
    widths: list[tuple[float, float]], cell: tuple[float, float]
) -> None:
    """The bisected column of a cell is the one that overlaps it most (first on a tie), else the nearest."""
    from streamrag._convert._tables import _Columns

    spans, x = [], 0.0
    for gap, width in widths:  # disjoint, increasing, as table columns are
        spans.append((x + gap + 1.5, x + gap + 1.5 + width / 10))
        x = spans[-1][1]
    x0, x1 = sorted(cell)
    overlaps = [min(x1, b) - max(x0, a) for a, b in spans]
    best = max(range(len(spans)), key=lambda k: overlaps[k])
    middle = (x0 + x1) / 2
    nearest = min(range(len(spans)), key=lambda k: abs((spans[k][0] + spans[k][1]) / 2 - middle))
    assert _Columns(spans).of((x0, x1, "")) == (best if overlaps[best] > 0 else nearest)


@hypothesis.given(st.text(alphabet="ab1_ é-\x02\ufffe\xad²", max_size=12))
def test_hyphenated_word_matches_the_anchored_regex(text: str) -> None:
    from streamrag._convert._text import _hyphenated_word

    match = re.search(r"([^\W\d_]+)[\x02\ufffe\xad-]$", text)
    assert _hyphenated_word(text) == (match[1] if match else None)


@hypothesis.given(st.text(alphabet=st.characters(max_codepoint=127), max_size=20))
def test_clean_fast_path_for_ascii_matches_the_full_clean_up(text: str) -> None:
    from streamrag._convert._text import _CJK_SPACE, CONTROL, LIGATURES, clean, fix_accents

    escaped = text.replace("$", "\\$")
    full = re.sub(r"\s+", " ", fix_accents(CONTROL.sub("", escaped.translate(LIGATURES)))).strip()
    assert clean(text) == _CJK_SPACE.sub("", full)
