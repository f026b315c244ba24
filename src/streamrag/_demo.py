"""The demo document: the project's own field manual, rendered to a multi-page PDF with fpdf2.

The text is package data (``demo_document.md``), so demos and tests need no third-party PDF. Its
facts are spread over the pages so that a question can target an early or a late page.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

__all__ = ["DEMO_QUESTIONS", "demo_markdown", "write_demo_pdf"]

DEMO_QUESTIONS: list[str] = [
    "In which year was the Haldvik Holm Field Station founded, and by whom?",  # page 1
    "How much water do the rainwater cisterns hold?",  # middle
    "What is the code word for evacuating the whole island?",  # a late page
]

_BODY_SIZE = 10.5
_LINE_HEIGHT = 5.3  # mm
_HEADING_SIZES = {1: 15.0, 2: 12.5}


def demo_markdown() -> str:
    """The demo document's Markdown source."""
    return resources.files("streamrag").joinpath("demo_document.md").read_text(encoding="utf-8")


def write_demo_pdf(path: Path) -> Path:
    """Render the demo document to ``path`` (A5, Helvetica, numbered pages) and return ``path``.

    Needs the optional dependency fpdf2 (``pip install 'streamrag[demo]'``).
    """
    try:
        from fpdf import FPDF
    except ImportError:  # pragma: no cover - depends on the environment
        raise RuntimeError("the demo PDF needs fpdf2: pip install 'streamrag[demo]'") from None

    pdf = FPDF(format=(148, 210))  # A5
    pdf.set_margins(14, 14, 14)
    pdf.set_auto_page_break(True, margin=16)
    pdf.set_title("Haldvik Holm Field Station: Field Manual")
    pdf.set_creator("streamrag demo")
    width = pdf.w - pdf.l_margin - pdf.r_margin

    def footer() -> None:  # page numbers, as real documents have; the converter drops them
        pdf.set_y(-11)
        pdf.set_font("Helvetica", size=8)
        pdf.cell(0, 4, str(pdf.page_no()), align="C")

    pdf.footer = footer  # type: ignore[method-assign]
    pdf.add_page()
    for block in re.split(r"\n\s*\n", demo_markdown().strip()):
        lines = [line.strip() for line in block.splitlines() if line.strip()]
        heading = re.match(r"^(#{1,2})\s+(.*)$", lines[0])
        if heading:
            size = _HEADING_SIZES[len(heading[1])]
            pdf.set_font("Helvetica", style="B", size=size)
            pdf.ln(2)
            pdf.multi_cell(width, size * 0.5, heading[2], align="L")
            pdf.ln(1.5)
        elif all(re.match(r"^(-|\d+\.)\s", line) for line in lines):
            pdf.set_font("Helvetica", size=_BODY_SIZE)
            for line in lines:
                marker, text = line.split(None, 1)
                pdf.set_x(pdf.l_margin + 2)
                pdf.cell(5, _LINE_HEIGHT, marker)
                pdf.multi_cell(width - 7, _LINE_HEIGHT, text, align="L")
            pdf.ln(2)
        else:
            pdf.set_font("Helvetica", size=_BODY_SIZE)
            pdf.multi_cell(width, _LINE_HEIGHT, " ".join(lines), align="L")
            pdf.ln(2)
    pdf.output(str(path))
    return path


if __name__ == "__main__":  # python -m streamrag._demo OUT.pdf
    import sys

    out = Path(sys.argv[1] if len(sys.argv) > 1 else "haldvik-holm.pdf")
    out.parent.mkdir(parents=True, exist_ok=True)
    print(write_demo_pdf(out))
