"""Shared test fixtures: kernel gate, fd-leak check, private bpffs.

* ``kernel``: skip (with the reason) when bpf(2) is not permitted, unless
  ``BPFLOAD_REQUIRE_KERNEL=1`` (set by .ci/run), which makes it a failure:
  CI can never pass without touching the kernel.
* every test is checked for leaked fds: /proc/self/fd is counted before and
  after (after a gc pass), and a test that leaves a new fd open fails with
  what the fd points at.
* ``bpffs``: a private bpffs mounted in a temporary directory, unmounted
  after the test.
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import gc
import importlib
import os
import pathlib
import queue
import shutil
import subprocess
import tempfile
import threading
import warnings

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
BPF_DIR = REPO / "bpf"
REQUIRE_KERNEL = os.environ.get("BPFLOAD_REQUIRE_KERNEL") == "1"

_kernel_state: list = []


def _probe_kernel() -> str | None:
    """None when bpf(2) works here, else why not."""
    if not _kernel_state:
        try:
            import bpfload
            with bpfload.Map.create(bpfload.MapType.ARRAY, 4, 4, 1, name="probe"):
                pass
            _kernel_state.append(None)
        except bpfload.PermissionDeniedError as e:
            _kernel_state.append(f"bpf(2) not permitted here: {e}")
        except OSError as e:
            _kernel_state.append(f"bpf(2) unavailable: {e}")
    return _kernel_state[0]


def unavailable(why: str):
    """Skip for a missing tool, file or kernel feature -- or fail under
    BPFLOAD_REQUIRE_KERNEL=1 (CI), where everything the tests need is
    installed and a skip could hide a regression.  The one way a test skips."""
    if REQUIRE_KERNEL:
        pytest.fail(f"BPFLOAD_REQUIRE_KERNEL=1 but {why}")
    pytest.skip(why)


def need_tool(name: str, package: str) -> str:
    """The path of command *name*, or unavailable() naming the package that provides it."""
    path = shutil.which(name)
    if path is None:
        unavailable(f"{name} is not installed ({package})")
    return path


def need_module(name: str, why: str = "it is in the [test] extra"):
    """Import and return module *name*, or unavailable()."""
    try:
        return importlib.import_module(name)
    except ImportError as e:
        unavailable(f"cannot import {name!r} ({why}): {e}")


@pytest.fixture
def kernel():
    """Require a kernel that lets this process use bpf(2)."""
    why = _probe_kernel()
    if why:
        unavailable(why)


def pytest_collection_modifyitems(config, items):
    # Tests in modules that declare `pytestmark = pytest.mark.kernel` get the gate.
    for item in items:
        if item.get_closest_marker("kernel") and "kernel" not in item.fixturenames:
            item.fixturenames.insert(0, "kernel")


def pytest_configure(config):
    config.addinivalue_line("markers", "kernel: needs bpf(2) permission (gated by the kernel fixture)")


def _open_fds() -> dict[int, str]:
    out = {}
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            out[fd] = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
    return out


@pytest.fixture(autouse=True)
def no_fd_leak(request):
    """Fail a test that leaves an fd open that it did not have before, or that leaves an
    object to be closed by the collector (a ResourceWarning).

    The fd lists are compared first; only when a new fd shows up is the
    garbage collector run (an unreferenced owner closes its fd then) and the
    list read again.  A full collection costs ~60 ms once the kernel BTF is
    cached, so doing it for every test dominated the suite's time.

    ResourceWarnings are recorded around the whole test (a warning raised in
    a destructor is swallowed as "Exception ignored" by -W error, so it is
    recorded instead) and fail the test that caused them.  Other warnings are
    passed on to pytest unchanged.  A test that checks a ResourceWarning
    itself records it in its own ``warnings.catch_warnings`` block.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        before = _open_fds()
        yield
        leaked = _new_fds(before)
        if leaked:
            gc.collect()
            leaked = _new_fds(before)
    unclosed = []
    for w in caught:
        if issubclass(w.category, ResourceWarning):
            unclosed.append(str(w.message))
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)
    if leaked:
        pytest.fail(f"test leaked {len(leaked)} fd(s): " +
                    ", ".join(f"{fd} -> {t}" for fd, t in sorted(leaked.items())))
    if unclosed:
        pytest.fail(f"test left {len(unclosed)} object(s) for the collector to close "
                    f"(ResourceWarning): " + "; ".join(unclosed[:5]))


def _new_fds(before: dict[int, str]) -> dict[int, str]:
    after = _open_fds()
    leaked = {fd: t for fd, t in after.items() if fd not in before or before[fd] != t}
    # /proc/self/fd itself shows up as the listing fd of the call above; ignore dir fds
    return {fd: t for fd, t in leaked.items() if not t.startswith("/proc/")}


_libc = ctypes.CDLL(None, use_errno=True)


def mount_bpffs(path: str) -> None:
    if _libc.mount(b"bpf", os.fsencode(path), b"bpf", 0, None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount -t bpf {path}: {os.strerror(err)}")


def umount(path: str) -> None:
    if _libc.umount2(os.fsencode(path), 2) != 0:  # MNT_DETACH
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOENT):
            raise OSError(err, f"umount {path}: {os.strerror(err)}")


@pytest.fixture
def bpffs(tmp_path, kernel):
    """A private bpffs mounted at a temporary directory (unmounted after)."""
    root = tmp_path / "bpffs"
    root.mkdir()
    try:
        mount_bpffs(str(root))
    except OSError as e:
        unavailable(f"cannot mount bpffs: {e}")
    try:
        yield root
    finally:
        umount(str(root))


@contextlib.contextmanager
def on_cpu(cpu: int):
    """Pin this thread to *cpu* (BPF programs run by test_run run here)."""
    old = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, old)


def bpf_mappings() -> int:
    """How many of this process's mappings are of BPF or perf objects."""
    with open("/proc/self/maps") as f:
        return sum(1 for line in f if "anon_inode:bpf" in line or "anon_inode:[perf_event]" in line)


def pins(root) -> list:
    """Entries of a bpffs mount, without the kernel's own maps.debug/progs.debug."""
    return sorted(p for p in os.listdir(root) if p not in ("maps.debug", "progs.debug"))


def cgroup2_root() -> str:
    """The first cgroup2 mount in /proc/self/mounts (this machine: /sys/fs/cgroup/unified)."""
    with open("/proc/self/mounts") as f:
        for line in f:
            fields = line.split()
            if len(fields) > 2 and fields[2] == "cgroup2":
                return fields[1]
    unavailable("no cgroup2 mount on this machine")


def sysfs_cpus(which: str) -> list[int]:
    """CPU ids from /sys/devices/system/cpu/{possible,online}, parsed here (the tests'
    own reference, independent of bpfload.possible_cpus()/online_cpus())."""
    text = pathlib.Path(f"/sys/devices/system/cpu/{which}").read_text().strip()
    out: list[int] = []
    for part in filter(None, text.split(",")):
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def bpf_object(name: str) -> pathlib.Path:
    """Path of a committed object in bpf/ (``"globals"`` -> bpf/globals.bpf.o)."""
    p = BPF_DIR / (name if name.endswith(".o") else f"{name}.bpf.o")
    if not p.exists():
        raise FileNotFoundError(f"{p} is missing: run make -C bpf")
    return p


@pytest.fixture
def obj_path():
    return bpf_object


def readelf_loads(binary) -> list:
    """The PT_LOAD headers of *binary* as readelf -lW prints them (the reference the ELF
    readers are checked against): (offset, vaddr, filesz, memsz, flags) each, flags as
    readelf spells them ("R E")."""
    need_tool("readelf", "binutils")
    out = subprocess.run(["readelf", "-lW", str(binary)], check=True, capture_output=True,
                         text=True).stdout
    loads = []
    for line in out.splitlines():
        f = line.split()
        if f and f[0] == "LOAD":
            loads.append((int(f[1], 16), int(f[2], 16), int(f[4], 16), int(f[5], 16),
                          " ".join(f[6:-1])))
    assert loads, f"readelf shows no LOAD segment in {binary}"
    return loads


class CliProcess:
    """A command (the bpfload CLI) as a subprocess whose stdout lines are read by a thread
    (select() on a buffered pipe misses lines that already sit in the buffer).

    *argv* is the whole command; *line_timeout* bounds each :meth:`readline`.  A context
    manager: leaving it kills the process if it still runs and closes the pipes.
    """

    def __init__(self, argv, *, cwd=None, line_timeout: float = 30.0):
        self.line_timeout = line_timeout
        self.err = tempfile.TemporaryFile(mode="w+")
        self.p = subprocess.Popen([str(a) for a in argv], stdout=subprocess.PIPE, stderr=self.err,
                                  text=True, cwd=cwd)
        self.q: queue.Queue = queue.Queue()
        self.t = threading.Thread(target=self._pump, daemon=True)
        self.t.start()

    def _pump(self):
        for line in self.p.stdout:
            self.q.put(line)
        self.q.put(None)

    def readline(self, timeout: float | None = None) -> str:
        """The next stdout line; AssertionError if none comes in time or the process ended."""
        try:
            line = self.q.get(timeout=self.line_timeout if timeout is None else timeout)
        except queue.Empty:
            raise AssertionError(f"{self.p.args[2:4]} printed nothing in time") from None
        assert line is not None, f"{self.p.args[2:4]} ended early: {self.finish()}"
        return line

    def until(self, prefix: str) -> list:
        """Lines read up to and including the first that starts with *prefix*."""
        lines = []
        while True:
            line = self.readline()
            lines.append(line)
            if line.startswith(prefix):
                return lines

    def finish(self, timeout: float = 30.0):
        """Wait for the exit -> (rest of stdout, stderr); returncode in ``self.p``."""
        self.p.wait(timeout=timeout)
        self.t.join(timeout)
        lines = []
        while True:
            line = self.q.get(timeout=timeout)
            if line is None:
                break
            lines.append(line)
        self.q.put(None)
        self.err.seek(0)
        return "".join(lines), self.err.read()

    def close(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()
        self.t.join(10)
        self.p.stdout.close()
        self.err.close()

    def __enter__(self) -> "CliProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
