"""The Jupyter demo, executed headless with nbclient in a real kernel (its own model load)."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "streaming_qa.ipynb"


def outputs_text(cell: nbformat.NotebookNode) -> str:
    parts = []
    for out in cell.get("outputs", []):
        parts.append(out.get("text", ""))
        parts += [str(v) for k, v in out.get("data", {}).items() if k.startswith("text/")]
    return "".join(parts)


def test_the_notebook_is_saved_without_outputs() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.outputs == [] and c.execution_count is None for c in code)
    assert "../shared" not in NOTEBOOK.read_text(encoding="utf-8")


def test_the_notebook_streams_answers_and_plots(tmp_path: Path) -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    texts = [outputs_text(c) for c in code]
    stream_cell = next(c for c in code if "tqdm(" in c.source)
    progress = json.dumps(stream_cell.outputs)
    assert "pages indexed" in progress and "7/7" in progress, "a progress bar showed the pages arriving"
    after_page_1 = next(t for t in texts if t.startswith("After page 1"))
    assert "page 1 of 7 indexed; still streaming" in after_page_1 and "p. 1" in after_page_1
    at_the_end = next(t for t in texts if t.startswith("At the end"))
    assert "pages 1–7 of 7 indexed; complete" in at_the_end
    assert "Blue Heron" in at_the_end and "[p. 6]" in at_the_end and "p. 6" in at_the_end.split("answer:")[1]
    plot_cell = code[-1]
    assert any("image/png" in o.get("data", {}) for o in plot_cell.outputs), "the plot was drawn"
    assert "the answer changed" in texts[-1]
