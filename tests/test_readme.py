"""The README's quickstarts run as written: its python blocks are executed against the demo PDF and
the embedded server; its chat block is driven in test_chat.py; its notebook block names the notebook
that test_notebook.py executes."""

from __future__ import annotations

import fcntl
import io
import json
import os
import pty
import re
import shlex
import struct
import subprocess
import sys
import termios
import threading
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
    """A shell block's commands, comments dropped, ``python`` and ``streamrag`` from this interpreter."""
    out = []
    for line in block.splitlines():
        words = shlex.split(line, comments=True)
        if words and words[0] == "streamrag":
            out.append([sys.executable, "-m", "streamrag", *words[1:]])
        elif words:
            out.append([sys.executable if words[0] == "python" else words[0], *words[1:]])
    return out


def test_the_cli_quickstart_runs_as_written_with_a_progress_bar_on_a_terminal(tmp_path: Path) -> None:
    (block,) = readme_blocks("cli")
    write, ask_live, ask_again = commands(block)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MATHPIX_")}
    env["STREAMRAG_STORE"] = str(tmp_path / "store")
    subprocess.run(write, cwd=tmp_path, env=env, check=True, timeout=120, capture_output=True)
    assert (tmp_path / "paper.pdf").is_file()
    # the live ask runs with its stderr on a pseudo-terminal, as in a shell: the progress bar shows
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a 100-column terminal
    screen: list[bytes] = []

    def read_terminal() -> None:  # drained while the command runs, so its writes never block
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # the terminal closed
                return
            if not chunk:
                return
            screen.append(chunk)

    reader = threading.Thread(target=read_terminal)
    reader.start()
    live = subprocess.run(
        ask_live, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=terminal, text=True, timeout=600, check=False
    )
    os.close(terminal)
    reader.join(timeout=30)
    os.close(controller)
    shown = b"".join(screen).decode("utf-8", "replace")
    assert live.returncode == 0
    assert "pages indexed" in shown and "7/7" in shown
    assert "still streaming" in live.stdout and "Blue Heron" in live.stdout.split("final answer")[-1]
    again = subprocess.run(ask_again, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert again.returncode == 0, again.stderr
    (record,) = [json.loads(line) for line in again.stdout.splitlines()]
    assert record["final"] and record["pages_indexed"] == 7 and "64,000" in record["answer"]


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
