"""What ``import bpfload`` and a load import: only what the call needs.

Each case runs in a fresh interpreter (a subprocess) and reads ``sys.modules``
afterwards: ``import bpfload`` binds its public names on first use, so the
import alone loads no submodule, and ``bpfload.load(obj).close()`` loads
neither pyelftools nor the typed-value layer, the event readers, the attach
modules or the uprobe ELF lookups.  Behaviour, not timing: the times are in
benchmarks/bench_libbpf_load.py (cold start) and docs/benchmarks.md.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import BPF_DIR, REPO

#: never imported by a load of an object without attach, events or typed access
NOT_FOR_LOAD = ("elftools", "bpfload.btf.typed", "bpfload.events", "bpfload.link", "bpfload.system",
                "bpfload.elf.symbols", "bpfload.cli", "ctypes", "logging",
                # start-up cost (issue 11): annotations are strings, records hand-written, regexes lazy
                "typing", "dataclasses", "inspect", "re", "importlib",
                # the kernel type index (CO-RE, attach targets) and the threading it brings
                "bpfload.btf.targets", "bpfload._core.corepatch", "threading",
                # the loader's spec copy is made without the copy module
                "copy", "weakref",
                # the loader's rollback suppresses OSError with try/except
                "contextlib")


def _modules_after(code: str) -> dict:
    # (the module list is taken before json is imported: json imports re)
    script = code + "\nimport sys\n_mods = sorted(sys.modules)\nimport json\nprint(json.dumps(_mods))\n"
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1])


def _loaded(mods, prefix: str) -> list:
    return [m for m in mods if m == prefix or m.startswith(prefix + ".")]


def test_import_bpfload_imports_only_the_package_and_its_version():
    mods = _modules_after("import bpfload")
    assert _loaded(mods, "bpfload") == ["bpfload", "bpfload._version"]
    for prefix in NOT_FOR_LOAD + ("bpfload.btf", "bpfload.loader", "bpfload._core"):
        assert not _loaded(mods, prefix), prefix


@pytest.mark.kernel
def test_load_imports_no_attach_events_typed_or_pyelftools():
    code = (f"import bpfload\n"
            f"with bpfload.load({str(BPF_DIR / 'globals.bpf.o')!r}) as o:\n"
            f"    assert o.loaded and o.programs and all(p.fd > 0 for p in o.programs.values())\n")
    mods = _modules_after(code)
    assert "bpfload.loader" in mods and "bpfload.elf.file" in mods   # it did load
    for prefix in NOT_FOR_LOAD:
        assert not _loaded(mods, prefix), f"a load imported {_loaded(mods, prefix)}"


def test_every_public_name_resolves_to_its_module_object():
    code = """
import importlib, bpfload
out = {}
for name in bpfload.__all__:
    obj = getattr(bpfload, name)
    mod = importlib.import_module("bpfload." + bpfload._LAZY[name])
    out[name] = obj is getattr(mod, name)
ns = {}
exec("from bpfload import *", ns)
out["star"] = sorted(set(bpfload.__all__) - set(ns)) == []
out["dir"] = set(bpfload.__all__) <= set(dir(bpfload))
print(json.dumps(out))
"""
    p = subprocess.run([sys.executable, "-c", "import json\n" + code], capture_output=True, text=True,
                       cwd=REPO, timeout=120)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out.pop("star") and out.pop("dir")
    import bpfload
    assert set(out) == set(bpfload.__all__) and all(out.values()), [k for k, v in out.items() if not v]
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        bpfload.no_such_name


def test_maps_and_programs_stay_the_listing_functions_whatever_is_imported_first():
    """The submodules bpfload.maps / bpfload.programs, imported by a load, never replace
    the functions bpfload.maps() / bpfload.programs() as package attributes."""
    code = """
import bpfload, bpfload.maps, bpfload.programs, json
from bpfload.maps import Map
from bpfload.programs import Program
import sys
first = [callable(bpfload.maps), bpfload.maps.__module__, bpfload.programs.__module__]
m = sys.modules["bpfload.maps"]
print(json.dumps(first + [m.Map is Map, bpfload.Map is Map, bpfload.Program is Program]))
"""
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == [True, "bpfload.system", "bpfload.system", True, True, True]


@pytest.mark.kernel
@pytest.mark.parametrize("enabled", [True, False])
def test_first_load_leaves_garbage_collection_as_the_caller_had_it(enabled):
    """The first ``bpfload.load`` pauses collection while it imports, and resumes it only if it ran."""
    code = (f"import gc, bpfload\n"
            f"{'gc.enable()' if enabled else 'gc.disable()'}\n"
            f"bpfload.load({str(BPF_DIR / 'globals.bpf.o')!r}).close()\n"
            f"state = [gc.isenabled()]\n"
            f"gc.enable()\n"
            f"a = []; a.append(a); del a\n"      # a cycle the next collection must free
            f"state.append(gc.collect() >= 1)\n"
            f"print(state)\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == [f"[{enabled},", "True]"]
