"""Record and check that every committed BPF object was built from its source.

MANIFEST has one line an object: ``<object> <source-sha256> <object-sha256>``.
The source hash covers the ``.bpf.c`` file and every header in ``include/``
(a header change must rebuild everything).  ``python3 manifest.py write``
rewrites it after ``make``; ``check`` (and tests/test_manifest.py) fail when
an object is missing, stale or edited by hand.
"""
from __future__ import annotations

import hashlib
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
MANIFEST = HERE / "MANIFEST"


def _sha(*paths: pathlib.Path) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.name.encode() + b"\0")
        h.update(p.read_bytes())
    return h.hexdigest()


def source_hash(src: pathlib.Path) -> str:
    headers = sorted((HERE / "include").glob("*.h"))
    return _sha(src, *headers)


def expected() -> dict[str, tuple[str, str]]:
    out = {}
    for src in sorted(HERE.glob("*.bpf.c")):
        obj = src.with_name(src.name[: -len(".c")] + ".o")
        out[obj.name] = (source_hash(src), _sha(obj) if obj.exists() else "missing")
    return out


def write() -> None:
    lines = [f"{name} {s} {o}" for name, (s, o) in expected().items()]
    MANIFEST.write_text("\n".join(lines) + "\n")


def problems() -> list[str]:
    """Human-readable list of mismatches; empty when all objects are fresh."""
    recorded = {}
    if MANIFEST.exists():
        for line in MANIFEST.read_text().splitlines():
            name, s, o = line.split()
            recorded[name] = (s, o)
    out = []
    for name, (s, o) in expected().items():
        if o == "missing":
            out.append(f"{name}: object missing (run make -C bpf)")
        elif name not in recorded:
            out.append(f"{name}: not in MANIFEST (run make -C bpf)")
        elif recorded[name][0] != s:
            out.append(f"{name}: source or headers changed since the object was built (run make -C bpf)")
        elif recorded[name][1] != o:
            out.append(f"{name}: object differs from the one recorded (rebuilt by hand? run make -C bpf)")
    return out


if __name__ == "__main__":
    if sys.argv[1:] == ["write"]:
        write()
    elif sys.argv[1:] == ["check"]:
        bad = problems()
        print("\n".join(bad) or "all BPF objects match their sources")
        sys.exit(1 if bad else 0)
    else:
        sys.exit("usage: manifest.py write|check")
