"""tracefs and the perf event-source sysfs: what tracing attachments read before perf_event_open.

* :func:`tracefs` yields a tracefs directory: ``/sys/kernel/tracing``,
  ``/sys/kernel/debug/tracing`` or any tracefs in ``/proc/self/mounts``;
  when none is mounted it mounts one at a private temporary directory and,
  on exit, unmounts it lazily (``MNT_DETACH``) and removes the directory,
  so nothing is left behind.
* :func:`tracepoint_id` reads ``events/CAT/NAME/id`` (cached per process).
* :class:`ProbeEvent` is a kprobe or uprobe event created by writing to
  ``kprobe_events``/``uprobe_events`` (the legacy path for kernels without
  the kprobe/uprobe PMU); :meth:`ProbeEvent.close` removes it.
* :func:`pmu_type` and :func:`pmu_format_bit` read a dynamic PMU's type and
  a config bit (``kprobe``/``uprobe`` and ``retprobe``) from sysfs; the
  sysfs root is a parameter so tests can point them at a fake tree.

Every failure is a :class:`bpfload.AttachError` with a hint.
"""
from __future__ import annotations

import contextlib
import difflib
import errno as _errno
import itertools
import logging
import os
import platform
import re
import tempfile
import threading
from typing import Dict, Iterator, List, Optional, Tuple

from .. import errors
from .._core import perf as _perf

__all__ = ["tracefs", "find_tracefs", "tracepoint_id", "clear_cache", "ProbeEvent",
           "pmu_type", "pmu_format_field", "pmu_format_bit", "syscall_function"]

log = logging.getLogger("bpfload.link")

_CANDIDATES = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
_MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 2, 4, 8
_MNT_DETACH = 2

_tp_ids: Dict[Tuple[str, str], int] = {}
_lock = threading.Lock()
_probe_seq = itertools.count()


def _unescape(field: str) -> str:
    """Undo /proc/self/mounts octal escapes (``\\040`` is a space)."""
    if "\\" not in field:
        return field
    out, i = [], 0
    while i < len(field):
        esc = field[i + 1:i + 4]
        if field[i] == "\\" and len(esc) == 3 and esc.isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def find_tracefs(mounts: str = "/proc/self/mounts") -> Optional[str]:
    """The path of a mounted tracefs, or None.

    The usual places (``/sys/kernel/tracing``, ``/sys/kernel/debug/tracing``)
    count when they hold ``events/``; otherwise any ``tracefs`` line of
    *mounts*.  Never mounts anything.
    """
    for path in _CANDIDATES:
        if os.path.isdir(os.path.join(path, "events")):
            return path
    try:
        with open(mounts) as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split()
        if len(parts) >= 3 and parts[2] == "tracefs":
            path = _unescape(parts[1])
            if os.path.isdir(os.path.join(path, "events")):
                return path
    return None


@contextlib.contextmanager
def tracefs(*, program: Optional[str] = None, hook: Optional[str] = None) -> Iterator[str]:
    """Yield the path of a tracefs for the duration of the block.

    Uses a mounted one when there is one; else mounts tracefs at a private
    temporary directory (``bpfload-tracefs-<pid>-*``), and after the block
    unmounts it with ``MNT_DETACH`` and removes the directory.  Raises
    :class:`bpfload.AttachError` when none is mounted and mounting fails
    (no privileges, or a kernel without ``CONFIG_TRACING``); *program* and
    *hook* name what needed it in that error.
    """
    found = find_tracefs()
    if found is not None:
        yield found
        return
    tmp = tempfile.mkdtemp(prefix=f"bpfload-tracefs-{os.getpid()}-")
    try:
        try:
            _perf.mount("tracefs", tmp, "tracefs", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC)
        except errors.SyscallError as e:
            hint = ("the kernel has no tracefs (CONFIG_TRACING)" if e.errno == _errno.ENODEV else
                    "mount it (mount -t tracefs tracefs /sys/kernel/tracing) or run as root")
            raise errors.AttachError("tracefs is not mounted and a private mount failed",
                                     program=program, hook=hook, command="mount", err=e.errno,
                                     hint=hint) from e
        try:
            yield tmp
        finally:
            try:
                _perf.umount(tmp, _MNT_DETACH)
            except errors.SyscallError as e:  # pragma: no cover - we mounted it
                log.warning("cannot unmount the private tracefs at %s: %s", tmp, e)
    finally:
        try:
            os.rmdir(tmp)
        except OSError as e:  # pragma: no cover - only if the unmount failed
            log.warning("cannot remove %s: %s", tmp, e)


def _read_id(root: str, category: str, name: str) -> Optional[int]:
    try:
        with open(os.path.join(root, "events", category, name, "id")) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def _similar(root: str, category: str, name: str) -> List[str]:
    events = os.path.join(root, "events")
    try:
        cats = os.listdir(events)
    except OSError:
        return []
    if category not in cats:
        return [f"{c}/" for c in difflib.get_close_matches(category, cats, n=5)]
    try:
        names = os.listdir(os.path.join(events, category))
    except OSError:
        return []
    return [f"{category}/{n}" for n in difflib.get_close_matches(name, names, n=5, cutoff=0.7)]


def _check_part(what: str, value: str, program: Optional[str], hook: str) -> None:
    if not isinstance(value, str) or not value or "/" in value or value in (".", "..") \
            or "\0" in value:
        raise errors.AttachError(f"invalid tracepoint {what} {value!r}", program=program,
                                 hook=hook, err=_errno.EINVAL)


def tracepoint_id(category: str, name: str, *, program: Optional[str] = None) -> int:
    """The perf event id of tracepoint *category*/*name* (``events/CAT/NAME/id`` in tracefs).

    Ids are cached for the life of the process.  Raises
    :class:`bpfload.AttachError` naming the tracepoint (with similar names
    when there are some) when it does not exist, or when no tracefs is
    mounted and none can be mounted; *program* is named in the error.
    Needs a kernel with tracefs (4.1+).
    """
    hook = f"tracepoint {category}/{name}"
    _check_part("category", category, program, hook)
    _check_part("name", name, program, hook)
    key = (category, name)
    with _lock:
        if key in _tp_ids:
            return _tp_ids[key]
    with tracefs(program=program, hook=hook) as root:
        tp_id = _read_id(root, category, name)
        if tp_id is None:
            similar = _similar(root, category, name)
            hint = (f"similar: {', '.join(similar)}" if similar else
                    "see the directories under events/ in tracefs")
            raise errors.AttachError("no such tracepoint", program=program, hook=hook,
                                     err=_errno.ENOENT, hint=hint)
    with _lock:
        _tp_ids[key] = tp_id
    return tp_id


def clear_cache() -> None:
    """Forget the cached tracepoint ids (tests; kernels whose modules come and go)."""
    with _lock:
        _tp_ids.clear()


class ProbeEvent:
    """A kprobe or uprobe event created through tracefs (``kprobe_events``/``uprobe_events``).

    The legacy way to probe on kernels without the kprobe/uprobe PMU (before
    Linux 4.17): the event is named ``bpfload_<pid>_<n>`` in the group
    ``kprobes``/``uprobes`` and is a tracepoint whose :attr:`id` a
    ``PERF_TYPE_TRACEPOINT`` perf event opens.  The event outlives the perf
    event: :meth:`close` removes it (idempotent; a pinned link that outlives
    the process leaves it behind, as with libbpf).
    """

    def __init__(self, kind: str, target: str, *, retprobe: bool = False,
                 program: Optional[str] = None, hook: Optional[str] = None):
        """Create the event: *kind* is ``"kprobe"`` (*target* ``FUNC`` or ``FUNC+OFF``) or
        ``"uprobe"`` (*target* ``PATH:0xOFFSET``).

        Raises :class:`bpfload.AttachError` when tracefs has no
        ``<kind>_events`` (the kernel lacks ``CONFIG_KPROBE_EVENTS`` /
        ``CONFIG_UPROBE_EVENTS``) or the kernel refuses the probe; *program*
        and *hook* name the attachment in errors.
        """
        if kind not in ("kprobe", "uprobe"):
            raise ValueError(f"kind must be 'kprobe' or 'uprobe', not {kind!r}")
        if any(c in target for c in "\n\0") or not target:
            raise errors.AttachError(f"invalid {kind} target {target!r}", program=program,
                                     hook=hook or kind, err=_errno.EINVAL)
        self.kind = kind
        self.group = f"{kind}s"
        self.name = f"bpfload_{os.getpid()}_{next(_probe_seq)}"
        self.target = target
        self.retprobe = retprobe
        self._closed = True
        hook = hook or f"{kind} {target}"
        line = f"{'r' if retprobe else 'p'}:{self.group}/{self.name} {target}\n"
        with tracefs(program=program, hook=hook) as root:
            path = os.path.join(root, f"{kind}_events")
            if not os.path.exists(path):
                raise errors.AttachError(f"tracefs has no {kind}_events", program=program,
                                         hook=hook,
                                         err=_errno.EOPNOTSUPP,
                                         hint=f"the kernel has no {kind} events "
                                         f"(CONFIG_{kind.upper()}_EVENTS)")
            _append(path, line, program, hook, kind)
            self._closed = False
            tp_id = _read_id(root, self.group, self.name)
            if tp_id is None:  # pragma: no cover - the kernel just created it
                self._remove(root)
                raise errors.AttachError(f"the {kind} event {self.name} has no id",
                                         program=program, hook=hook)
        self.id = tp_id

    def _remove(self, root: str) -> None:
        self._closed = True
        path = os.path.join(root, f"{self.kind}_events")
        try:
            _append(path, f"-:{self.group}/{self.name}\n", None, f"{self.kind} {self.target}",
                    self.kind)
        except errors.AttachError as e:
            log.warning("cannot remove %s event %s: %s", self.kind, self.name, e)

    def close(self) -> None:
        """Remove the event (after the perf events on it are closed).  Never raises."""
        if self._closed:
            return
        try:
            with tracefs() as root:
                self._remove(root)
        except errors.AttachError as e:
            self._closed = True
            log.warning("cannot remove %s event %s: %s", self.kind, self.name, e)

    @property
    def closed(self) -> bool:
        return self._closed

    def __repr__(self) -> str:
        state = "removed" if self._closed else f"id={getattr(self, 'id', '?')}"
        return f"<ProbeEvent {self.group}/{self.name} {self.target!r} {state}>"


def _append(path: str, line: str, program: Optional[str], hook: str, family: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
    except OSError as e:
        raise errors.attach_error("open", e.errno or _errno.EIO, program=program, hook=hook,
                                  family=family, message=f"cannot open {path}") from e
    try:
        os.write(fd, line.encode())
    except OSError as e:
        raise errors.attach_error("write", e.errno or _errno.EIO, program=program, hook=hook,
                                  family=family, message=f"the kernel refused {line.strip()!r} in "
                                  f"{os.path.basename(path)}") from e
    finally:
        os.close(fd)


# -- dynamic PMUs (sysfs) -------------------------------------------------------

def pmu_type(pmu: str, *, sysfs: str = "/sys") -> Optional[int]:
    """The perf ``type`` of the dynamic PMU *pmu* (``"kprobe"``, ``"uprobe"``), or None.

    Reads ``<sysfs>/bus/event_source/devices/<pmu>/type`` (Linux 4.17+ has
    the kprobe and uprobe PMUs).
    """
    try:
        with open(os.path.join(sysfs, "bus/event_source/devices", pmu, "type")) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


_FORMAT = re.compile(r"^config:(\d+)(?:-(\d+))?$")


def pmu_format_field(pmu: str, field: str, *, sysfs: str = "/sys") -> Optional[Tuple[int, int]]:
    """(first bit, width) of format *field* of *pmu* in ``config``, or None when the PMU
    does not describe it (``retprobe`` -> ``"config:0"`` -> (0, 1); ``ref_ctr_offset`` ->
    ``"config:32-63"`` -> (32, 32))."""
    try:
        with open(os.path.join(sysfs, "bus/event_source/devices", pmu, "format", field)) as f:
            text = f.read().strip()
    except OSError:
        return None
    m = _FORMAT.match(text)
    if not m:
        return None
    lo = int(m.group(1))
    hi = int(m.group(2)) if m.group(2) else lo
    if not 0 <= lo <= hi <= 63:
        return None
    return lo, hi - lo + 1


def pmu_format_bit(pmu: str, field: str, *, sysfs: str = "/sys") -> Optional[int]:
    """The config bit of one-bit format *field* of *pmu* (``retprobe`` -> 0), or None."""
    f = pmu_format_field(pmu, field, sysfs=sysfs)
    return f[0] if f is not None and f[1] == 1 else None


# -- syscall wrappers ------------------------------------------------------------

_ARCH_SYSCALL_PREFIX = {
    "x86_64": "__x64_sys_", "i386": "__ia32_sys_", "i686": "__ia32_sys_",
    "aarch64": "__arm64_sys_", "arm64": "__arm64_sys_", "s390x": "__s390x_sys_",
    "riscv64": "__riscv_sys_", "ppc64le": "__powerpc64_sys_", "ppc64": "__powerpc64_sys_",
    "armv7l": "__arm_sys_", "mips64": "__mips_sys_", "loongarch64": "sys_",
}


_wrapper_cache: Dict[Tuple[str, str], bool] = {}


def _kallsyms_has(names, kallsyms: str) -> Optional[set]:
    """Which of *names* /proc/kallsyms (or *kallsyms*) lists; None when it cannot be read."""
    want = set(names)
    found = set()
    try:
        with open(kallsyms) as f:
            for line in f:
                sym = line.split(maxsplit=3)[2:3]
                if sym and sym[0] in want:
                    found.add(sym[0])
                    if found == want:
                        break
    except OSError:
        return None
    return found


def has_syscall_wrapper(*, kallsyms: str = "/proc/kallsyms", machine: Optional[str] = None) -> bool:
    """True when the kernel enters system calls through arch wrappers (``__x64_sys_bpf``).

    What libbpf's ``LINUX_HAS_SYSCALL_WRAPPER`` kconfig extern says: with
    wrappers (x86_64 since Linux 4.17, arm64 since 4.19, ...) a system
    call's function receives one ``struct pt_regs *`` holding the user's
    registers.  Detected from the wrapper symbol of bpf(2) in *kallsyms*;
    when that cannot be read (no root), True on architectures that have a
    wrapper prefix.  Cached per (kallsyms, machine).  Never raises.
    """
    arch = machine or platform.machine()
    key = (kallsyms, arch)
    if key not in _wrapper_cache:
        prefix = _ARCH_SYSCALL_PREFIX.get(arch)
        if prefix is None or prefix == "sys_":
            _wrapper_cache[key] = False
        else:
            found = _kallsyms_has([prefix + "bpf"], kallsyms)
            _wrapper_cache[key] = True if found is None else bool(found)
    return _wrapper_cache[key]


def syscall_function(name: str, *, kallsyms: str = "/proc/kallsyms",
                     machine: Optional[str] = None) -> str:
    """The kernel function that implements system call *name* (``getppid`` ->
    ``__x64_sys_getppid`` on x86_64), for ``ksyscall/`` programs.

    The arch wrapper when the kernel has wrappers (:func:`has_syscall_wrapper`,
    or the wrapper of *name* itself is in *kallsyms*), else ``sys_NAME``;
    the wrapper when *kallsyms* cannot be read (kernels since 4.17 use
    them).  Never raises.
    """
    arch = machine or platform.machine()
    prefix = _ARCH_SYSCALL_PREFIX.get(arch, "sys_")
    wrapped, plain = prefix + name, "sys_" + name
    found = _kallsyms_has([wrapped, plain, prefix + "bpf"], kallsyms)
    if found is None:
        return wrapped
    if prefix != "sys_" and (wrapped in found or prefix + "bpf" in found):
        return wrapped
    return plain if plain in found else wrapped
