"""The sdist carries what a build needs, installs into a fresh venv and imports.

This is what a user without the git tree gets (``pip install bpfload-X.tar.gz``):
the build runs from the sdist alone, so a file missing from MANIFEST.in
fails here.  Slow (a venv, an isolated build with Cython from the package
index, a compile): about two minutes.  It runs in .ci/run like every test.
"""
from __future__ import annotations

import os
import pathlib
import platform
import subprocess
import sys
import tarfile
import zipfile

import pytest

from conftest import need_module

REPO = pathlib.Path(__file__).resolve().parent.parent


def _run(*cmd, cwd=None, timeout=900):
    p = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True,
                       timeout=timeout)
    assert p.returncode == 0, f"{cmd} failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    return p.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    need_module("build")
    out = tmp_path_factory.mktemp("dist")
    _run(sys.executable, "-m", "build", "--sdist", "--outdir", out, REPO)
    sdist = next(out.glob("bpfload-*.tar.gz"))
    # the wheel is built from the sdist, as pip does for a user
    _run(sys.executable, "-m", "build", "--wheel", "--outdir", out, sdist)
    return sdist, next(out.glob("bpfload-*.whl"))


def test_sdist_holds_sources_not_generated_files(dist):
    sdist, _ = dist
    with tarfile.open(sdist) as t:
        names = {n.split("/", 1)[1] for n in t.getnames() if "/" in n}
    for need in ("LICENSE", "README.md", "pyproject.toml", "setup.py", "csrc/bpf_sys.h",
                 "csrc/perf_sys.h", "bpfload/_core/syscall.pyx", "bpfload/_core/common.pxd",
                 "bpfload/_core/perf.pyx", "bpfload/data/demo.bpf.o", "bpfload/py.typed",
                 "bpfload/link/link.py", "bpfload/btf/format.py"):
        assert need in names, f"{need} missing from the sdist"
    pyx = {p.relative_to(REPO).as_posix() for p in (REPO / "bpfload" / "_core").glob("*.pyx")}
    assert pyx <= names
    generated = sorted(n for n in names if n.endswith((".c", ".so", ".html")))
    assert not generated, f"generated files in the sdist: {generated}"


def test_wheel_is_stripped_and_has_no_generated_c(dist):
    _, wheel = dist
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        assert not [n for n in names if n.endswith(".c")]
        assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names), names
        sos = [n for n in names if n.endswith(".so")]
        assert {pathlib.Path(n).name.split(".")[0] for n in sos} >= {
            "syscall", "insn", "events", "poll", "corepatch", "perf"}
        for n in sos:
            data = z.read(n)
            assert b".debug_info" not in data, f"{n} carries debug info"
            assert b".symtab" not in data, f"{n} is not stripped"


def test_sdist_installs_into_a_fresh_venv_and_imports(dist, tmp_path):
    """The wheel pip builds from the sdist (the dist fixture: extensions compiled from the
    sdist's sources alone) installs into a fresh venv and imports from /."""
    _, wheel = dist
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", venv)
    py = venv / "bin" / "python"
    _run(py, "-m", "pip", "install", "-q", wheel)
    # from / so that the source tree cannot be what gets imported
    code = ("import bpfload, bpfload._core.syscall, bpfload._core.perf, bpfload.link; "
            "import os; print(bpfload.__version__, os.path.dirname(bpfload.__file__))")
    out = _run(py, "-c", code, cwd="/")
    version, where = out.split()
    assert version == _project_version()
    assert where.startswith(str(venv)), where
    out = _run(venv / "bin" / "bpfload", "inspect",
               os.path.join(where, "data", "demo.bpf.o"), cwd="/")
    assert "xdp" in out.lower()
    assert _run(venv / "bin" / "bpfload", "--version", cwd="/").strip() == f"bpfload {version}"


def _project_version() -> str:
    for line in (REPO / "pyproject.toml").read_text().splitlines():
        if line.startswith("version"):
            return line.split("=", 1)[1].strip().strip('"')
    raise AssertionError("no version in pyproject.toml")


def test_editable_install_is_not_shadowed_from_the_parent_directory(tmp_path):
    """A clone named 'bpfload' run from its parent directory: the current directory's
    'bpfload' (the clone, no __init__.py) must not become a namespace package that hides
    the real one (the README installs with editable_mode=compat for that)."""
    (tmp_path / "bpfload").symlink_to(REPO, target_is_directory=True)
    out = _run(sys.executable, "-c", "import bpfload; print(bpfload.__file__, bpfload.Map.__name__)",
               cwd=tmp_path)
    path, name = out.split()
    assert name == "Map" and path.endswith(os.path.join("bpfload", "__init__.py")), out


def _glibc_plat() -> str:
    lib, ver = platform.libc_ver()
    if lib != "glibc":
        pytest.skip("manylinux wheels need glibc")
    major, minor = ver.split(".")[:2]
    return f"manylinux_{major}_{minor}_{platform.machine()}"


@pytest.mark.kernel
def test_manylinux_wheel_installs_and_runs_the_demo_from_root(dist, tmp_path):
    """scripts/build-wheel.sh --repair (auditwheel repair with this machine's glibc tag) on
    the wheel built from the sdist: a manylinux wheel that holds only the package (stripped
    extensions, no generated C, stubs and py.typed) installs into a fresh venv and runs
    `bpfload demo --duration 1` from /, its counters matching the traffic it sent."""
    need_module("auditwheel", "the manylinux repair step (the [test] extra)")
    _, wheel = dist
    out = tmp_path / "wheelhouse"
    env = dict(os.environ, PYTHON=sys.executable,
               PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    p = subprocess.run([str(REPO / "scripts" / "build-wheel.sh"), "--repair", str(wheel), "--out",
                        str(out)], capture_output=True, text=True, timeout=600, env=env)
    assert p.returncode == 0, p.stdout + p.stderr
    (repaired,) = out.glob("bpfload-*.whl")
    plat = _glibc_plat()
    assert repaired.name.endswith(f".{plat}.whl") and "-linux_" not in repaired.name, repaired.name
    with zipfile.ZipFile(repaired) as z:
        names = z.namelist()
        tags = z.read(next(n for n in names if n.endswith(".dist-info/WHEEL"))).decode()
    assert f"Tag: cp{sys.version_info[0]}{sys.version_info[1]}-" in tags and plat in tags, tags
    top = {n.split("/", 1)[0] for n in names}
    # only the package and its metadata: no vendored libraries (bpfload.libs) were needed
    assert top == {"bpfload", repaired.name.split("-")[0] + "-" + _project_version() + ".dist-info"}, top
    assert not [n for n in names if n.endswith((".c", ".pyx"))]
    for need in ("bpfload/py.typed", "bpfload/_core/syscall.pyi", "bpfload/_core/perf.pyi",
                 "bpfload/data/demo.bpf.o"):
        assert need in names, need
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", venv)
    _run(venv / "bin" / "python", "-m", "pip", "install", "-q", repaired)
    p = subprocess.run([str(venv / "bin" / "bpfload"), "demo", "--duration", "1", "--rate", "20000"],
                       cwd="/", capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "counters match the traffic sent: yes" in p.stdout
    out = _run(venv / "bin" / "python", "-c",
               "import bpfload._core.syscall as s; print(s.__file__)", cwd="/")
    assert out.strip().startswith(str(venv)), out
