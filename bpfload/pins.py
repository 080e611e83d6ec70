"""bpffs helpers: is a path on a bpffs mount, and a clear error when not."""
from __future__ import annotations

import os

from . import errors
from .spec import pin_name_problem

TYPE_CHECKING = False   # (typing is never imported at run time: start-up cost)
if TYPE_CHECKING:
    from typing import Optional

__all__ = ["bpffs_mount_of", "is_bpffs", "explain_pin_failure", "pin_name", "pin_path",
           "pin_fd", "unpin_path"]


def pin_path(root, name: str, *, object: Optional[str] = None, what: str = "map") -> str:
    """The path of the pin *name* under the bpffs directory *root*: the one place pin paths are made.

    *name* must be a single path component (no ``/``, NUL, ``.``, ``..``, not
    empty): else :class:`bpfload.ElfError` naming *object* and the map.
    *root* is resolved first (a symlinked root gives the real directory), and
    the final path, symlinks included, must stay directly under it: else
    :class:`bpfload.PinError`.  ValueError for a NUL in *root*.
    """
    problem = pin_name_problem(name)
    if problem is not None:
        raise errors.ElfError(f"{what} {name!r}: its pin name {problem}; a pin name must be a "
                              "single bpffs path component", object=object, symbol=name)
    root = os.fspath(root)
    if "\0" in root:
        raise ValueError("embedded null byte in pin_root")
    real_root = os.path.realpath(root)
    path = os.path.join(real_root, name)
    final = os.path.realpath(path)
    if os.path.dirname(path) != real_root or os.path.dirname(final) != real_root:
        raise errors.PinError(f"{what} {name!r}: the pin path leaves pin_root {root!r} "
                              f"(resolves to {final})", path)
    return path


def pin_name(name: str) -> str:
    """A name bpffs accepts for a pin: ``.`` (refused by bpffs) becomes ``_``, like libbpf.

    ``.rodata`` -> ``_rodata``; ``my.map`` -> ``my_map``.
    """
    return name.replace(".", "_").replace("/", "_")


def _mounts():
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                parts = line.split()
                sep = parts.index("-")
                yield parts[4].replace("\\040", " "), parts[sep + 1]
    except (OSError, ValueError):
        return


def bpffs_mount_of(path: str) -> Optional[str]:
    """The mount point of the bpffs *path* lives on, or None if it is on another filesystem."""
    path = os.path.realpath(path)
    best, best_type = "", None
    for mnt, fstype in _mounts():
        if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
            best, best_type = mnt, fstype
    return best if best_type == "bpf" else None


def is_bpffs(path: str) -> bool:
    """True when *path* (or, for a path that does not exist yet, its directory) is on bpffs."""
    probe = path if os.path.exists(path) else os.path.dirname(os.path.abspath(path))
    return bpffs_mount_of(probe) is not None


def explain_pin_failure(path: str, err: int, hint: str) -> str:
    """Why pinning at *path* failed, in words a user can act on."""
    d = os.path.dirname(os.path.abspath(path))
    if os.path.lexists(d) and not os.path.isdir(d):
        return f"{d} is not a directory"
    if not os.path.isdir(d):
        return f"directory {d} does not exist"
    if os.path.islink(path) and not os.path.exists(path):
        return f"a dangling symlink is in the way (-> {os.readlink(path)}); remove it"
    if not is_bpffs(path):
        return (f"{d} is not on a bpffs mount; pin under /sys/fs/bpf, where bpffs belongs "
                "(if it is not mounted: mount -t bpf bpf /sys/fs/bpf)")
    if "." in os.path.basename(path):
        return "bpffs refuses names containing '.' (see pin_name())"
    if os.path.exists(path):
        return "something is already pinned there"
    return hint


def pin_fd(fd, path, what: str) -> str:
    """BPF_OBJ_PIN *fd* (an int or an FD owner, held for the call) at *path*; returns the path.

    *what* names the object in errors (``"map 'counts'"``, ``"program 'xdp'"``,
    ``"link of program 'tp'"``).  The one pin operation of maps, programs
    and links.  Raises :class:`bpfload.PinError` with the reason in words,
    ValueError for a NUL in the path.
    """
    from ._core import syscall as _sys
    path = os.fspath(path)
    try:
        _sys.obj_pin(fd, path, what)
    except errors.SyscallError as e:
        raise errors.PinError(f"cannot pin {what} ({explain_pin_failure(path, e.errno, e.hint)})",
                              path, e.errno) from e
    return path


def unpin_path(path: Optional[str], what: str) -> None:
    """Remove the pin at *path* (None: *what* is not pinned).  Raises :class:`bpfload.PinError`."""
    if path is None:
        raise errors.PinError(f"{what} is not pinned", "")
    try:
        os.unlink(path)
    except OSError as e:
        raise errors.PinError(f"cannot unpin {what} ({e.strerror})", path, e.errno) from e
