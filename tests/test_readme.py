"""The README's attach example runs as written (from the repository root), so it cannot rot."""
from __future__ import annotations

import re

import pytest

from conftest import REPO

pytestmark = pytest.mark.kernel


def _block(section: str) -> str:
    text = (REPO / "README.md").read_text()
    body = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", body, re.S)
    assert blocks, f"no python example under '## {section}'"
    return blocks[0]


def test_attaching_programs_example_runs(monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    exec(compile("import bpfload\n" + _block("Attaching programs"), "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert out.startswith("sys_enter {")
