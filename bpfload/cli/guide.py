"""Errors that guide: what the command line tells a user who can act on it.

Privileges (bpf(2) refused for want of CAP_BPF), a pin root that is not on a
bpffs mount (and the directories ``load --pin-root`` creates under one, as
bpftool does), pins already in the way of a load, and rates in human units.
No kernel version needed beyond what the commands themselves need.
"""
from __future__ import annotations

import contextlib
import os
from typing import Iterable, Iterator, List, Optional, Tuple

from .. import errors
from ..pins import bpffs_mount_of

__all__ = ["UsageError", "CAP_NET_ADMIN", "CAP_SYS_ADMIN", "CAP_PERFMON", "CAP_BPF",
           "effective_caps", "missing_privilege", "PrivilegeError", "kernel_step",
           "BPFFS_MOUNT_HINT", "prepare_pin_root", "remove_created_dirs", "describe_pin",
           "check_no_pins", "PinsInTheWayError", "human_rate"]


class UsageError(Exception):
    """A bad command-line value: printed as ``bpfload: ...``, exit status 2."""


CAP_NET_ADMIN = 12
CAP_SYS_ADMIN = 21
CAP_PERFMON = 38
CAP_BPF = 39

#: how to get a bpffs: at its conventional place, never a scratch directory
BPFFS_MOUNT_HINT = ("bpffs is mounted at /sys/fs/bpf by most distributions; if it is not: "
                    "mount -t bpf bpf /sys/fs/bpf (as root), then use a directory under it, "
                    "e.g. --pin-root /sys/fs/bpf/myapp")


def effective_caps(status: str = "/proc/self/status") -> Optional[int]:
    """This process's effective capability mask (``CapEff``), or None when unreadable."""
    try:
        with open(status) as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return int(line.split()[1], 16)
    except (OSError, ValueError, IndexError):
        pass
    return None


def missing_privilege(caps: Optional[int] = None) -> Optional[str]:
    """A sentence saying what bpf(2) needs when this process has neither CAP_BPF nor
    CAP_SYS_ADMIN (root has both), else None."""
    if caps is None:
        caps = effective_caps()
    if caps is None or caps & (1 << CAP_BPF | 1 << CAP_SYS_ADMIN):
        return None
    uid = os.geteuid()
    who = "root without capabilities" if uid == 0 else f"uid {uid}"
    return ("bpf(2) needs root or CAP_BPF (plus CAP_PERFMON for tracing programs and "
            "CAP_NET_ADMIN for XDP, tc, cgroup and socket programs); this process "
            f"({who}) has neither CAP_BPF nor CAP_SYS_ADMIN: run it as root (sudo), or with "
            "those capabilities (e.g. systemd's AmbientCapabilities=CAP_BPF CAP_PERFMON "
            "CAP_NET_ADMIN)")


class PrivilegeError(errors.BpfError):
    """The kernel refused because the process lacks the capabilities bpf(2) needs."""


class PinsInTheWayError(errors.BpfError):
    """``load`` would pin where pins already are (exit status 1: the system refuses, the
    arguments are fine)."""


@contextlib.contextmanager
def kernel_step() -> Iterator[None]:
    """Around a step that asks the kernel (a load, the demo): when it fails with a
    :class:`bpfload.BpfError` and this process lacks CAP_BPF and CAP_SYS_ADMIN, raise
    :class:`PrivilegeError` saying so (the kernel's own error appended and chained)."""
    try:
        yield
    except errors.ObjectFileError:
        raise
    except errors.BpfError as e:
        why = missing_privilege()
        if why is None:
            raise
        raise PrivilegeError(f"{why}\n  (the kernel said: {e})") from e


def _nearest_existing(path: str) -> str:
    p = path
    while not os.path.lexists(p):
        parent = os.path.dirname(p)
        if parent == p:
            break
        p = parent
    return p


def prepare_pin_root(text: str) -> Tuple[str, List[str]]:
    """The absolute pin root for ``load --pin-root``, and the directories made for it.

    An existing directory must be on a bpffs mount.  A missing one is created
    (with its missing parents) when its nearest existing ancestor is a
    directory on a bpffs, as bpftool does; the caller removes what was made
    if the load fails (:func:`remove_created_dirs`).  Raises
    :class:`UsageError` saying how to mount bpffs at /sys/fs/bpf otherwise.
    """
    root = os.path.abspath(text)
    if os.path.isdir(root):
        if bpffs_mount_of(root) is None:
            raise UsageError(f"--pin-root {text}: not on a bpffs mount (pins live only on "
                             f"bpffs); {BPFFS_MOUNT_HINT}")
        return root, []
    if os.path.lexists(root):
        raise UsageError(f"--pin-root {text}: not a directory")
    base = _nearest_existing(root)
    if not os.path.isdir(base):
        raise UsageError(f"--pin-root {text}: {base} is not a directory")
    if bpffs_mount_of(base) is None:
        raise UsageError(f"--pin-root {text}: no such directory, and {base} is not on a bpffs "
                         f"mount to create it in; {BPFFS_MOUNT_HINT}")
    made: List[str] = []
    p = root
    todo = []
    while p != base:
        todo.append(p)
        p = os.path.dirname(p)
    try:
        for d in reversed(todo):
            os.mkdir(d, 0o755)
            made.append(d)
    except OSError as e:
        remove_created_dirs(made)
        raise UsageError(f"--pin-root {text}: cannot create {e.filename}: {e.strerror}") from None
    return root, made


def remove_created_dirs(made: Iterable[str]) -> None:
    """Remove the directories :func:`prepare_pin_root` made (deepest first) if still empty."""
    for d in reversed(list(made)):
        try:
            os.rmdir(d)
        except OSError:
            pass


def describe_pin(path: str) -> str:
    """What is pinned at *path*, in words (``map 'counts' (HASH, id 12)``)."""
    from ..link.link import Link
    from ..maps import Map
    from ..programs import Program
    if os.path.isdir(path) and not os.path.islink(path):
        return "a directory"
    for kind, opener in (("map", Map.from_pin), ("program", Program.from_pin)):
        try:
            with opener(path) as obj:
                t = getattr(obj.type, "name", obj.type)
                return f"{kind} {obj.name!r} ({t}, id {obj.id})"
        except errors.PinError:
            continue
    try:
        link = Link.from_pin(path)
    except errors.BpfError:
        return "something that is not a BPF pin"
    with link:
        return f"a link (id {link.id}, program id {link.info().prog_id})"


def check_no_pins(paths: Iterable[str], root: str) -> None:
    """Raise :class:`PinsInTheWayError` listing what is pinned at any of *paths*, and how
    to reuse or remove it, before a load that would pin there."""
    taken = [(p, describe_pin(p)) for p in paths if os.path.lexists(p)]
    if not taken:
        return
    lines = [f"{p}: {what}" for p, what in taken]
    raise PinsInTheWayError(
        f"{len(taken)} pin{'s' if len(taken) > 1 else ''} already under {root}, where this load "
        "would pin:\n  " + "\n  ".join(lines) + "\n"
        f"  Reuse what is loaded (bpfload map list --pin-root {root}; bpfload prog list "
        f"--pin-root {root}; bpfload map dump PIN), remove the pins to load again "
        f"(rm {' '.join(p for p, _ in taken)}), or give another --pin-root.")


def human_rate(per_second: object) -> str:
    """A rate in a few significant digits with k/M/G: ``1990.4`` -> ``1.99k/s``.

    A tuple or list of rates (values of several counters, or one per CPU) gives
    ``[1.99k/s, 0/s]``.
    """
    if isinstance(per_second, (list, tuple)):
        return "[" + ", ".join(human_rate(x) for x in per_second) + "]"
    v = float(per_second)  # type: ignore[arg-type]
    sign = "-" if v < 0 else ""
    v = abs(v)
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if v >= scale * 0.9995:
            return f"{sign}{_three(v / scale)}{unit}/s"
    return f"{sign}{_three(v)}/s"


def _three(x: float) -> str:
    """Three significant digits, no trailing zeros: 1.99, 19.9, 199, 0.5, 0."""
    if x == 0:
        return "0"
    if x >= 99.95:
        return f"{x:.0f}"
    if x >= 9.995:
        return f"{x:.1f}".rstrip("0").rstrip(".")
    return f"{x:.2f}".rstrip("0").rstrip(".")
