"""Where a uprobe goes: find a binary like the dynamic loader, and a function's file offset in it.

* :func:`resolve_binary` turns ``"c"``, ``"libc"``, ``"libc.so.6"`` or a path
  into the path of an existing regular file: a name with a slash is used as
  is; a bare library name is looked up in ``/etc/ld.so.cache`` (glibc's
  ``glibc-ld.so.cache1.1`` format, entries of this machine's architecture
  only), then in the standard library directories; a bare program name
  falls back to ``$PATH``.
* :func:`symbol_offset` gives the FILE offset of a function symbol (what the
  uprobe PMU's ``config2`` wants): the symbol is looked up in ``.symtab``
  then ``.dynsym`` (``name``, ``name@VERSION`` or ``name@@VERSION``), and its
  virtual address translated through the ``PT_LOAD`` program header that
  contains it, which works for PIE and non-PIE executables and shared
  libraries alike.

The ELF is read with :mod:`struct` (32/64-bit, either byte order), reading
only the headers and symbol tables, each offset and size checked against
the file first: a truncated or malformed file raises
:class:`~bpfload.errors.ElfError` naming the file, never ``struct.error``
or ``IndexError``.  No syscalls besides reading files; no privileges.
"""
from __future__ import annotations

import difflib
import functools
import os
import platform
import shutil
import stat
import struct
from typing import Dict, List, NamedTuple, Optional, Tuple

from ..errors import ElfError
from .binary import ElfBinary

__all__ = ["resolve_binary", "symbol_offset", "ld_cache_entries", "SymbolMatch", "find_symbol",
           "LD_SO_CACHE", "LIBRARY_DIRS"]

LD_SO_CACHE = "/etc/ld.so.cache"

#: searched, in this order, after the cache (the loader's trusted directories)
LIBRARY_DIRS = ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64",
                "/lib", "/usr/lib")

# ---------------------------------------------------------------------------
# /etc/ld.so.cache

_CACHE_MAGIC_NEW = b"glibc-ld.so.cache1.1"
_CACHE_MAGIC_OLD = b"ld.so-1.7.0"
_CACHE_HDR = struct.Struct("<20sII")          # magic+version, nlibs, len_strings (+ 24 more bytes)
_CACHE_HDR_SIZE = 48
_CACHE_ENTRY = struct.Struct("<iIIIQ")        # flags, key, value, osversion, hwcap
_CACHE_OLD_ENTRY_SIZE = 12
_HWCAP_EXTENSION = 1 << 62                    # DL_CACHE_HWCAP_EXTENSION: hwcap is a subdir index

#: the one cache-entry flags value the loader of these machines accepts (glibc's
#: _DL_CACHE_DEFAULT_ID: FLAG_ELF_LIBC6 | the architecture's FLAG_*_LIB64 bits)
_CACHE_NATIVE_FLAGS = {"x86_64": 0x0303, "aarch64": 0x0a03}


def _native_cache_flags() -> Tuple[int, ...]:
    """Cache-entry flags this machine's loader accepts: the architecture's own id where glibc
    defines one (x86_64 refuses the i386 ``libc6`` and the plain ``ELF`` entries), else the
    generic rule (FLAG_ELF or FLAG_ELF_LIBC6)."""
    own = _CACHE_NATIVE_FLAGS.get(platform.machine())
    return (own,) if own is not None else (1, 3)


def ld_cache_entries(path: str = LD_SO_CACHE, *, native: bool = True) -> List[Tuple[str, int, str]]:
    """The entries of an ``ld.so.cache`` file, in file order: ``(name, flags, path)``.

    Reads the ``glibc-ld.so.cache1.1`` format (glibc 2.2+), alone or after
    the old ``ld.so-1.7.0`` table.  With *native* (the default) only entries
    this machine's loader would use are returned (``libc6,x86-64`` on
    x86_64, not the ``/lib32`` ``libc6`` or plain ``ELF`` ones), and
    ``glibc-hwcaps`` variants come after the plain entries (the loader may
    prefer one on a CPU that supports it; pass its path to probe it).  Raises :class:`ElfError` for a file
    in no known format or with entries pointing outside it; :class:`OSError`
    when it cannot be read.
    """
    with open(path, "rb") as f:
        data = f.read()
    base = 0
    if data.startswith(_CACHE_MAGIC_OLD):
        if len(data) < 16:
            raise ElfError("truncated old-format header", object=path)
        n_old = struct.unpack_from("<I", data, 12)[0]
        base = 16 + n_old * _CACHE_OLD_ENTRY_SIZE
        base = (base + 7) & ~7                     # the new header is 8-byte aligned
    if len(data) < base + _CACHE_HDR_SIZE or data[base:base + 20] != _CACHE_MAGIC_NEW:
        raise ElfError("not a glibc-ld.so.cache1.1 file", object=path)
    _, nlibs, _ = _CACHE_HDR.unpack_from(data, base)
    first = base + _CACHE_HDR_SIZE
    if first + nlibs * _CACHE_ENTRY.size > len(data):
        raise ElfError(f"{nlibs} entries do not fit in the file", object=path)
    accept = _native_cache_flags()
    out: List[Tuple[str, int, str]] = []
    later: List[Tuple[str, int, str]] = []
    for i in range(nlibs):
        flags, key, value, _, hwcap = _CACHE_ENTRY.unpack_from(data, first + i * _CACHE_ENTRY.size)
        if native and flags not in accept:
            continue
        if native and hwcap & _HWCAP_EXTENSION:     # a glibc-hwcaps/ variant: after the others
            later.append((_cache_str(data, base + key, path), flags,
                          _cache_str(data, base + value, path)))
            continue
        out.append((_cache_str(data, base + key, path), flags, _cache_str(data, base + value, path)))
    return out + later


def _cache_str(data: bytes, off: int, path: str) -> str:
    end = data.find(b"\0", off) if 0 <= off < len(data) else -1
    if end < 0:
        raise ElfError("string index outside the file", object=path, offset=off)
    return os.fsdecode(data[off:end])


# ---------------------------------------------------------------------------
# binaries

def _candidates(name: str) -> List[str]:
    """Library file names *name* may mean, best first (``"c"`` -> ``libc.so``, ``libc.so.*``)."""
    out = [name]
    stem = name if name.startswith("lib") else "lib" + name
    if ".so" not in stem:
        out.append(stem + ".so")
    elif stem != name:
        out.append(stem)
    return out


def _version_key(name: str, stem: str) -> Tuple[int, ...]:
    rest = name[len(stem):].lstrip(".")
    return tuple(int(p) if p.isdigit() else -1 for p in rest.split(".") if p)


def _is_native_elf(path: str) -> bool:
    """True for a regular ELF file of this machine's class and data encoding (not a linker script)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return False
        with open(path, "rb") as f:
            ident = f.read(20)
    except OSError:
        return False
    if len(ident) < 20 or ident[:4] != b"\x7fELF":
        return False
    want_class = 2 if struct.calcsize("P") == 8 else 1
    want_data = 1 if struct.pack("=H", 1) == b"\x01\x00" else 2
    if ident[4] != want_class or ident[5] != want_data:
        return False
    machine = struct.unpack_from("<H" if want_data == 1 else ">H", ident, 18)[0]
    return machine == _native_machine()


@functools.lru_cache(maxsize=None)
def _native_machine() -> int:
    try:
        with open("/proc/self/exe", "rb") as f:
            ident = f.read(20)
        return struct.unpack_from("<H" if ident[5] == 1 else ">H", ident, 18)[0]
    except (OSError, struct.error, IndexError):
        return {"x86_64": 62, "aarch64": 183}.get(platform.machine(), 62)


def resolve_binary(name_or_path, *, cache: str = LD_SO_CACHE) -> str:
    """The file a uprobe on *name_or_path* goes to.

    * A path (any name with a ``/``) is used as is, made absolute; it must
      be an existing regular file (symlinks are followed).
    * A bare library name (``"c"``, ``"libc"``, ``"libc.so"``, ``"libc.so.6"``)
      is looked up like the dynamic loader does: in *cache*
      (``/etc/ld.so.cache``, entries of this architecture only), then in
      :data:`LIBRARY_DIRS`.  ``"c"``/``"libc"`` match ``libc.so`` or, failing
      that, the highest ``libc.so.N``; files that are not ELF of this
      machine (linker scripts such as the ``libc.so`` of libc6-dev) are
      skipped.
    * Failing that, a bare program name is searched in ``$PATH``.

    Returns the path (as the cache or directory names it; not resolved
    through symlinks).  Raises :class:`ElfError` naming *name_or_path* when
    nothing matches.  Reads files only; any kernel.
    """
    name = os.fsdecode(os.fspath(name_or_path))
    if not name:
        raise ElfError("empty binary name")
    if "/" in name:
        try:
            st = os.stat(name)
        except OSError as e:
            raise ElfError(f"cannot use the binary: {e.strerror}", object=name) from None
        if not stat.S_ISREG(st.st_mode):
            raise ElfError("the binary is not a regular file", object=name)
        return os.path.abspath(name)
    cands = _candidates(name)
    try:
        entries = ld_cache_entries(cache)
    except (OSError, ElfError):
        entries = []
    by_name: Dict[str, List[str]] = {}
    for key, _, path in entries:
        by_name.setdefault(key, []).append(path)
    # exact names first (cache, then directories), then versioned libX.so.N
    for cand in cands:
        for path in by_name.get(cand, ()):
            if _is_native_elf(path):
                return path
        for d in LIBRARY_DIRS:
            path = os.path.join(d, cand)
            if _is_native_elf(path):
                return path
    for cand in cands:
        if not cand.endswith(".so"):
            continue
        versioned = sorted((k for k in by_name if k.startswith(cand + ".")),
                           key=lambda k: _version_key(k, cand), reverse=True)
        for key in versioned:
            for path in by_name[key]:
                if _is_native_elf(path):
                    return path
        for d in LIBRARY_DIRS:
            try:
                names = os.listdir(d)
            except OSError:
                continue
            for key in sorted((n for n in names if n.startswith(cand + ".")),
                              key=lambda k: _version_key(k, cand), reverse=True):
                path = os.path.join(d, key)
                if _is_native_elf(path):
                    return path
    exe = shutil.which(name)
    if exe is not None:
        return exe
    raise ElfError(f"no library or program of that name (looked in {cache}, "
                   f"{', '.join(LIBRARY_DIRS)} and $PATH)", object=name)


# ---------------------------------------------------------------------------
# ELF symbols

_SHT_SYMTAB, _SHT_DYNSYM = 2, 11


class SymbolMatch(NamedTuple):
    """A function symbol :func:`find_symbol` chose."""

    name: str            # as in the table (without the version)
    version: Optional[str]
    default: bool        # the default version (name@@VERSION), or unversioned
    table: str           # ".symtab" or ".dynsym"
    address: int         # st_value
    size: int
    offset: int          # file offset of address


def find_symbol(path, symbol: str) -> SymbolMatch:
    """The function *symbol* of the ELF file *path* (see :func:`symbol_offset`) with its details.

    Raises :class:`ElfError` (malformed file, no such function, or an
    ambiguous name) naming the file and the symbol; :class:`OSError`
    subclasses never escape.
    """
    path = os.fsdecode(os.fspath(path))
    want, _, want_ver = symbol.partition("@")
    want_default = want_ver.startswith("@")
    want_ver = want_ver.lstrip("@")
    if not want:
        raise ElfError("empty symbol name", object=path, symbol=symbol)
    try:
        with open(path, "rb") as f:
            elf = ElfBinary(f, path)
            all_names: List[str] = []
            for sh_type, table in ((_SHT_SYMTAB, ".symtab"), (_SHT_DYNSYM, ".dynsym")):
                syms = elf.symbols(sh_type)
                all_names.extend(s[0] for s in syms)
                hits = [s for s in syms if s[0] == want and
                        (not want_ver or (s[5] == want_ver and (s[6] or not want_default)))]
                if not hits:
                    continue
                if len({s[1] for s in hits}) > 1:          # prefer the default version
                    hits = [s for s in hits if s[6]] or hits
                addrs = sorted({s[1] for s in hits})
                if len(addrs) > 1:
                    vers = ", ".join(f"{s[0]}@{s[5] or '?'} at {s[1]:#x}" for s in hits[:6])
                    raise ElfError(f"ambiguous: {len(addrs)} functions of that name ({vers}); "
                                   "name the version (name@VERSION)", object=path, symbol=symbol)
                name, value, size, _, _, ver, default = hits[0]
                return SymbolMatch(name, ver, default, table, value, size,
                                   elf.file_offset(value, symbol))
    except OSError as e:
        raise ElfError(f"cannot read the binary: {e.strerror or e}", object=path,
                       symbol=symbol) from None
    except struct.error as e:                   # defensive: every read is sized first
        raise ElfError(f"malformed ELF: {e}", object=path, symbol=symbol) from None
    close = difflib.get_close_matches(want, sorted(set(all_names)), n=5, cutoff=0.6)
    hint = f"; close names: {', '.join(close)}" if close else ""
    tables = "no .symtab or .dynsym function symbols at all" if not all_names else \
        f"not among {len(set(all_names))} function symbols of .symtab/.dynsym"
    raise ElfError(f"no function of that name ({tables}){hint}", object=path, symbol=symbol)


def symbol_offset(path, symbol: str) -> int:
    """The file offset of function *symbol* in the ELF executable or shared object *path*.

    The symbol is looked up in ``.symtab`` first, then ``.dynsym`` (defined
    ``STT_FUNC``/``STT_GNU_IFUNC`` symbols only).  *symbol* may carry a
    version: ``getpid@@GLIBC_2.2.5`` (the default version) or
    ``memcpy@GLIBC_2.2.5`` (that version); a plain name matches any
    version and, when several versions are defined at different addresses,
    the default one.  Its address is translated to a file offset through
    the ``PT_LOAD`` segment that contains it, which is what the uprobe PMU
    expects for PIE, non-PIE and shared objects alike.

    Raises :class:`ElfError` naming *path* and *symbol*: unreadable or
    malformed (e.g. truncated) file, not ET_EXEC/ET_DYN, no such function
    (with a few close names), an ambiguous name, or an address outside
    every loadable segment.  Reads the file only; any kernel.
    """
    return find_symbol(path, symbol).offset
