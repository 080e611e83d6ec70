"""The suite's own guards fail a test that leaks: run pytest on small leaking tests.

A guard that cannot fail protects nothing: each case here is a test file
written to a temporary directory beside a copy of conftest.py and run in a
child pytest, whose verdict is checked.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap

import pytest

from conftest import REPO

pytestmark = pytest.mark.kernel

CASES = {
    "unclosed_map": ("""
        import bpfload
        def test_it():
            bpfload.Map.create(bpfload.MapType.ARRAY, 4, 4, 1, name="leaky")   # dropped unclosed
        """, "ResourceWarning", "unclosed map 'leaky'"),
    "open_fd": ("""
        import os
        def test_it():
            os.open("/dev/null", os.O_RDONLY)
        """, "leaked 1 fd", "/dev/null"),
    "cycle_held_map": ("""
        import bpfload
        def test_it():
            m = bpfload.Map.create(bpfload.MapType.ARRAY, 4, 4, 1, name="cyclic")
            box = [m]
            box.append(box)             # only the collector can free it
        """, "ResourceWarning", "unclosed map 'cyclic'"),
    "clean": ("""
        import bpfload
        def test_it():
            with bpfload.Map.create(bpfload.MapType.ARRAY, 4, 4, 1, name="tidy") as m:
                m[0] = 1
        """, None, None),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_guards_fail_a_leaking_test(case, tmp_path):
    body, verdict, detail = CASES[case]
    shutil.copy(REPO / "tests" / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_case.py").write_text(textwrap.dedent(body))
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        str(tmp_path / "test_case.py")], cwd=tmp_path, capture_output=True,
                       text=True, timeout=300)
    out = p.stdout + p.stderr
    if verdict is None:
        assert p.returncode == 0, out
        return
    assert p.returncode == 1, out
    assert verdict in out and detail in out, out
