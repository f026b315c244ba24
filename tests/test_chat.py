"""examples/chat.py as a user runs it (the README's commands), driven through real stdin and stdout."""

from __future__ import annotations

import importlib.util
import os
import select
import subprocess
import time
from pathlib import Path
from types import ModuleType

import pytest

from test_readme import ROOT, commands, readme_blocks

PROMPT = "you> "
QUESTION = "What is the code word for evacuating the whole island?"


class Chat:
    """A chat subprocess; ``ask`` sends a line and returns the output up to the next prompt."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            args, cwd=cwd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=(cwd / "stderr.txt").open("w"),
        )  # fmt: skip
        self.fd = self.proc.stdout.fileno()  # type: ignore[union-attr]

    def read_until_prompt(self, timeout: float = 180) -> str:
        data = b""
        deadline = time.monotonic() + timeout
        while not data.endswith(PROMPT.encode()):
            ready, _, _ = select.select([self.fd], [], [], max(0.0, deadline - time.monotonic()))
            chunk = os.read(self.fd, 65536) if ready else b""
            if not chunk:
                raise AssertionError(f"no prompt (exit {self.proc.poll()}); got:\n{data.decode()}")
            data += chunk
        return data.decode()

    def ask(self, line: str) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()
        return self.read_until_prompt()


def test_chat_while_the_document_streams(tmp_path: Path) -> None:
    (block,) = readme_blocks("chat")
    write_pdf, run_chat = commands(block)
    assert run_chat[1:] == ["examples/chat.py", "paper.pdf", "--pace", "1"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MATHPIX_")}
    subprocess.run(write_pdf, cwd=tmp_path, env=env, check=True, capture_output=True)
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    chat = Chat(run_chat, tmp_path, env)
    try:
        assert "/sources" in chat.read_until_prompt()
        status = chat.ask("/wait 1").splitlines()[-2]
        assert "of 7 indexed; still streaming" in status
        early = chat.ask(QUESTION)
        assert "bot> " in early and "[p. " in early and "still streaming)" in early
        assert chat.ask("/wait all").splitlines()[-2] == "[pages 1–7 of 7 indexed; complete]"
        final = chat.ask(QUESTION)
        assert "Blue Heron" in final and "[p. 6]" in final and "(pages 1–7 of 7 indexed; complete)" in final
        sources = chat.ask("/sources")
        assert "[1] p. 6" in sources and "Blue Heron" in sources
        assert chat.proc.stdin is not None
        chat.proc.stdin.write(b"/quit\n")
        chat.proc.stdin.flush()
        assert chat.proc.wait(timeout=60) == 0
    finally:
        if chat.proc.poll() is None:
            chat.proc.kill()
            chat.proc.wait()


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("chat_example", ROOT / "examples" / "chat.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_llms_are_named_on_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    from llama_index.core.llms import MockLLM

    example = load_example()
    assert example.load_llm(None) is None
    assert isinstance(example.load_llm("mock"), MockLLM)
    with pytest.raises(SystemExit, match=r"pip install llama-index-llms-nosuch-provider"):
        example.load_llm("nosuch-provider:some-model")
    assert example.main(["paper.pdf", "--llm", "nosuch-provider:some-model"]) == 2
    assert "not installed" in capsys.readouterr().err
