"""Run the Python examples of one Markdown page, in order, in one namespace.

Used by tests/test_docs.py, which starts it in a private mount namespace
with a fresh bpffs on /sys/fs/bpf, so the examples can use the paths a user
would.  ``python tests/docs_runner.py PAGE.md`` runs from the repository root;
it exits 0 when every block ran, and every fd the page opened was closed
(ResourceWarning is an error); otherwise it prints which block failed (its
line in the page) and exits 1.
"""
from __future__ import annotations

import gc
import os
import re
import sys
import traceback
import warnings

FENCE = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def blocks(text: str):
    """(first line number, source) of every ```python block of a Markdown text."""
    for m in FENCE.finditer(text):
        yield text.count("\n", 0, m.start(1)) + 1, m.group(1)


def _fds() -> set:
    """The fds open now (the one listdir used to list them is closed again)."""
    return {fd for fd in os.listdir("/proc/self/fd") if os.path.exists(f"/proc/self/fd/{fd}")}


def main(page: str) -> int:
    warnings.simplefilter("error", ResourceWarning)
    with open(page) as f:
        text = f.read()
    namespace: dict = {"__name__": "__docs__"}
    before = _fds()
    ran = 0
    for line, src in blocks(text):
        code = compile("\n" * (line - 1) + src, page, "exec")
        try:
            exec(code, namespace)
        except BaseException:
            print(f"{page}:{line}: the example starting here failed:", file=sys.stderr)
            traceback.print_exc()
            return 1
        ran += 1
    namespace.clear()
    gc.collect()
    leaked = _fds() - before
    if leaked:
        targets = {fd: os.readlink(f"/proc/self/fd/{fd}") for fd in leaked}
        print(f"{page}: examples left fds open: {targets}", file=sys.stderr)
        return 1
    print(f"{page}: {ran} examples ran")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
