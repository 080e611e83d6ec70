"""Types: the README's and docs/' Python examples and examples/ pass ``mypy --strict``, and the
hand-written stubs of the compiled modules equal the modules (``mypy.stubtest``).

The README's blocks are read from README.md at test time (so they cannot drift),
each becomes the body of one function in a generated module, and the few names the
README's fragments take as given (an ``obj`` loaded earlier, a ``packet``) are
declared with their types in ``PRELUDE``.  ``--follow-imports=silent`` checks the
user's code against bpfload's annotations and stubs without holding the library's
own internals to ``--strict``.  No kernel needed: mypy reads, it runs nothing.
"""
from __future__ import annotations

import pathlib
import re
import subprocess
import sys

import pytest

from conftest import REPO, need_module
from docs_runner import blocks as blocks_of

CORE = REPO / "bpfload" / "_core"

#: the names the README's fragments use without defining them, with their types
PRELUDE = '''\
import bpfload
from bpfload import BpfObject, Map

obj: BpfObject            # an object loaded by an earlier example
m: Map                    # the map the "Maps" example created
other_map: Map
packet: bytes
fd: int


def handle(data: bytes) -> None: ...
'''


def _indent(src: str) -> str:
    return "".join("    " + line if line.strip() else line for line in src.splitlines(True))


def readme_module() -> str:
    """Every ```python block of README.md as the body of its own function, after PRELUDE;
    each page of docs/ as one function holding its blocks in order (a page's examples
    build on each other, as tests/test_docs.py runs them)."""
    text = (REPO / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) >= 2, "the README's python examples were not found"
    out = [PRELUDE]
    for i, block in enumerate(blocks):
        out.append(f"\ndef readme_example_{i}() -> None:\n{_indent(block)}")
    pages = 0
    for page in sorted((REPO / "docs").glob("*.md")):
        found = [b for _, b in blocks_of(page.read_text())]
        if found:
            pages += 1
            name = re.sub(r"\W", "_", page.stem)
            out.append(f"\ndef docs_{name}() -> None:\n{_indent(''.join(found))}")
    assert pages >= 10, "the docs' python examples were not found"
    return "".join(out)


@pytest.fixture(scope="module")
def mypy_cache(tmp_path_factory):
    need_module("mypy")
    return tmp_path_factory.mktemp("mypy-cache")


def _mypy(cache: pathlib.Path, *paths) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--follow-imports=silent", "--no-error-summary",
         "--config-file", "", "--cache-dir", str(cache), *map(str, paths)],
        cwd=REPO, capture_output=True, text=True, timeout=600)


def test_readme_examples_pass_mypy_strict(mypy_cache, tmp_path):
    mod = tmp_path / "readme_examples.py"
    mod.write_text(readme_module())
    p = _mypy(mypy_cache, mod)
    assert p.returncode == 0, f"mypy --strict on the README's examples:\n{p.stdout}{p.stderr}"


def test_examples_pass_mypy_strict(mypy_cache):
    files = sorted((REPO / "examples").glob("*.py"))
    assert len(files) >= 5
    p = _mypy(mypy_cache, *files)
    assert p.returncode == 0, f"mypy --strict on examples/:\n{p.stdout}{p.stderr}"


def test_mypy_catches_misuse_of_the_api(mypy_cache, tmp_path):
    """The check can fail: a misspelt Map method, a wrong argument type, a map from
    obj.maps used as a program and a test_run result used as a str are each reported."""
    bad = tmp_path / "misuse.py"
    bad.write_text(PRELUDE + (
        "m.lokup(1)\n"                                   # no such method
        "m.update(1, 2, flags='x')\n"                    # flags is an int
        "obj.maps['a'].attach()\n"                       # a Map has no attach
        "x: str = obj.programs['p'].test_run(packet).retval\n"   # retval is an int
        "obj.links['p'].pin(3)\n"))                      # a path, not an int
    p = _mypy(mypy_cache, bad)
    lines = {int(n) for n in re.findall(r"misuse\.py:(\d+): error", p.stdout)}
    first = PRELUDE.count("\n") + 1
    assert lines == set(range(first, first + 5)), p.stdout
    assert '"Map" has no attribute "lokup"' in p.stdout


def test_stubs_equal_the_compiled_modules():
    """mypy.stubtest imports each compiled module and compares every name and signature
    with its .pyi (Cython's pickling hooks aside: tests/stubtest-allowlist.txt)."""
    need_module("mypy")
    modules = sorted(f"bpfload._core.{p.stem}" for p in CORE.glob("*.pyx"))
    p = subprocess.run([sys.executable, "-m", "mypy.stubtest", "--ignore-disjoint-bases",
                        "--allowlist", str(REPO / "tests" / "stubtest-allowlist.txt"), *modules],
                       cwd=REPO, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, f"stubs differ from the compiled modules:\n{p.stdout}{p.stderr}"


def test_every_compiled_module_has_a_stub_and_py_typed_ships():
    missing = [p.name for p in CORE.glob("*.pyx") if not p.with_suffix(".pyi").exists()]
    assert not missing, f"compiled modules without a .pyi: {missing}"
    assert (REPO / "bpfload" / "py.typed").exists()
    text = (REPO / "pyproject.toml").read_text()
    assert '"py.typed"' in text and '"_core/*.pyi"' in text
