"""The README's quickstarts run as written: its python blocks are executed against the demo PDF and
the embedded server; its chat block is driven in test_chat.py; its notebook block names the notebook
that test_notebook.py executes."""

from __future__ import annotations

import io
import re
import shlex
import sys
from pathlib import Path

import pytest

from streamrag._cli import page_progress
from streamrag._demo import write_demo_pdf

ROOT = Path(__file__).resolve().parent.parent
_BLOCK = re.compile(r"<!-- readme-test: (\w+) -->\n```\w+\n(.*?)```", re.S)


def readme_blocks(kind: str) -> list[str]:
    """The README's code blocks marked ``<!-- readme-test: KIND -->``."""
    return [code for k, code in _BLOCK.findall((ROOT / "README.md").read_text(encoding="utf-8")) if k == kind]


def commands(block: str) -> list[list[str]]:
    """A shell block's commands, comments dropped, ``python`` as this interpreter."""
    out = []
    for line in block.splitlines():
        words = shlex.split(line, comments=True)
        if words:
            out.append([sys.executable if words[0] == "python" else words[0], *words[1:]])
    return out


def test_the_llama_index_quickstart_runs_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    blocks = readme_blocks("python")
    assert len(blocks) == 2
    write_demo_pdf(tmp_path / "paper.pdf")
    monkeypatch.chdir(tmp_path)
    exec(compile(blocks[0], "README.md[llama-index]", "exec"), {"__name__": "__readme__"})
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 8 and lines[0].startswith("page 1 of 7 indexed; still streaming → ")
    assert lines[6].startswith("pages 1–7 of 7 indexed; complete → ") and "Blue Heron" in lines[6]
    assert "'6'" in lines[7]
    exec(compile(blocks[1], "README.md[pipeline]", "exec"), {"__name__": "__readme__"})
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == [str(p) for p in range(1, 8)]
    assert lines[0].endswith("/Haldvik Holm Field Station: Field Manual/")


def test_the_notebook_quickstart_names_the_tested_notebook() -> None:
    (block,) = readme_blocks("notebook")
    run = commands(block)[-1]
    assert run[0] == "jupyter" and run[1] == "execute" and (ROOT / run[2]).is_file()
    assert (Path(sys.executable).parent / "jupyter-execute").exists()


def test_the_cli_progress_bar_shows_on_a_terminal_only() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    err = Terminal()
    bar = page_progress(err, quiet=False)
    assert bar is not None
    bar.total = 7
    bar.update(3)
    bar.close()
    assert "pages indexed" in err.getvalue() and "3/7" in err.getvalue()
    assert page_progress(Terminal(), quiet=True) is None  # --json
    assert page_progress(io.StringIO(), quiet=False) is None  # not a terminal
