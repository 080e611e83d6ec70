"""Externs: ``.kconfig`` values and ``__ksym`` kernel symbols, resolved at load.

libbpf users write::

    extern unsigned int LINUX_KERNEL_VERSION __kconfig;
    extern int CONFIG_HZ __kconfig;
    extern bool CONFIG_BPF_JIT __kconfig __weak;
    extern const struct rq runqueues __ksym;          /* typed: BTF id */
    extern const void init_task __ksym;               /* untyped: address */
    extern void bpf_rcu_read_lock(void) __ksym;       /* kfunc */

and the loader must (1) lay ``.kconfig`` externs out in a frozen,
single-entry ``.kconfig`` ARRAY map filled from the running kernel's config
(``/proc/config.gz`` or ``/boot/config-$(uname -r)``), (2) rewrite the
object's BTF so the kernel accepts it (extern VARs become allocated VARs
with real offsets, extern FUNCs global functions with named parameters),
and (3) patch each instruction that references an extern: a ``.kconfig``
load becomes a map-value load, a typed ksym a ``BPF_PSEUDO_BTF_ID`` load, an
untyped ksym its address from ``/proc/kallsyms``, and a kfunc call a
``BPF_PSEUDO_KFUNC_CALL`` with the function's vmlinux BTF id.

Weak externs that cannot be resolved read as zero; a strong one is an
:class:`bpfload.ElfError` naming the object and symbol.
"""
from __future__ import annotations

import copy
import os
import struct
import sys

from . import errors
from ._records import Record
from .btf import Array, Btf, Enum, Func, FuncLinkage, FuncProto, Int, IntEncoding, \
    Kind, Var, VarLinkage, Void
from .constants import MapFlags, MapType
from .spec import MapSpec, ObjectSpec, Reloc, RelocKind

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: loading an object with externs never imports typing
    from typing import Callable, Dict, List, Optional

__all__ = ["ExternPlan", "plan_externs", "kernel_config", "kernel_version_code"]

KCONFIG = ".kconfig"
KSYMS = ".ksyms"

_LD_IMM64 = 0x18
_CALL = 0x85
_PSEUDO_BTF_ID = 3
_PSEUDO_KFUNC_CALL = 2

# A kernel config string value is a line of text (CONFIG_DEFAULT_HOSTNAME, CONFIG_LSM, ...);
# the whole .kconfig map stays far below the kernel's array value limit (KMALLOC_MAX_SIZE).
_MAX_KCONFIG_STRING = 64 << 10
_MAX_KCONFIG_SIZE = 1 << 20

_config_cache: Optional[Dict[str, str]] = None


def kernel_version_code(release: Optional[str] = None) -> int:
    """``KERNEL_VERSION(a, b, c)`` of the running kernel (c capped at 255, as the kernel does)."""
    release = release or os.uname().release
    nums = []
    for part in release.split("-")[0].split(".")[:3]:
        digits = "".join(ch for ch in part if ch.isdigit())
        nums.append(int(digits or 0))
    while len(nums) < 3:
        nums.append(0)
    return (nums[0] << 16) | (nums[1] << 8) | min(nums[2], 255)


def kernel_config() -> Dict[str, str]:
    """The running kernel's config: ``CONFIG_X -> value`` (``y``, ``m``, a number, a quoted string).

    Read once per process from ``/proc/config.gz`` or ``/boot/config-$(uname -r)``;
    an empty mapping when neither exists.
    """
    global _config_cache
    if _config_cache is None:
        text = ""
        try:
            import gzip   # only when the object has .kconfig externs
            with gzip.open("/proc/config.gz", "rt") as f:
                text = f.read()
        except OSError:
            try:
                with open(f"/boot/config-{os.uname().release}") as f:
                    text = f.read()
            except OSError:
                text = ""
        cfg = {}
        for line in text.splitlines():
            if line.startswith("CONFIG_") and "=" in line:
                k, v = line.split("=", 1)
                cfg[k] = v
            elif line.startswith("# CONFIG_") and line.endswith(" is not set"):
                cfg[line[2:-len(" is not set")]] = "n"
        _config_cache = cfg
    return _config_cache


def _kallsyms() -> Dict[str, int]:
    out = {}
    try:
        with open("/proc/kallsyms") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and parts[2] not in out:
                    out[parts[2]] = int(parts[0], 16)
    except OSError:
        pass
    return out


class _Kcfg(Record):
    """One ``.kconfig`` extern: its BTF VAR type, size, alignment and offset in the map."""

    __slots__ = _fields = ("name", "type_id", "size", "align", "weak", "offset")

    def __init__(self, name: str, type_id: int, size: int, align: int, weak: bool,
                 offset: int = 0) -> None:
        self.name = name
        self.type_id = type_id
        self.size = size
        self.align = align
        self.weak = weak
        self.offset = offset


class ExternPlan:
    """What the loader needs for an object's externs.

    ``kconfig_map``: the ``.kconfig`` map to create (already filled and
    frozen), or None; ``btf``: a BTF the kernel accepts (externs rewritten),
    or the object's own; ``kcfg``: ``.kconfig`` externs by name; ``ksyms``:
    ``__ksym`` name -> local BTF id of the VAR/FUNC; ``typed``: ksym VARs
    with a type (BPF_PSEUDO_BTF_ID) vs untyped ones (an address).
    """

    def __init__(self, kconfig_map: Optional[MapSpec], btf: Optional[Btf],
                 kcfg: Dict[str, _Kcfg], ksyms: Dict[str, int], weak: Dict[str, bool], obj: str,
                 typed: Optional[Dict[str, bool]] = None,
                 _vmlinux: Optional[Callable[[], Btf]] = None,
                 _kallsyms: Optional[Dict[str, int]] = None) -> None:
        self.kconfig_map = kconfig_map
        self.btf = btf
        self.kcfg = kcfg
        self.ksyms = ksyms
        self.weak = weak
        self.obj = obj
        self.typed: Dict[str, bool] = {} if typed is None else typed
        self._vmlinux = _vmlinux
        self._kallsyms = _kallsyms

    def __repr__(self) -> str:
        return (f"ExternPlan(obj={self.obj!r}, kconfig_map={self.kconfig_map!r}, "
                f"kcfg={self.kcfg!r}, ksyms={self.ksyms!r}, weak={self.weak!r}, "
                f"typed={self.typed!r})")

    def relocate(self, linked) -> None:
        """Turn EXTERN relocations of a linked program into DATA relocs or patched instructions."""
        out: List[Reloc] = []
        for r in linked.relocs:
            if r.kind != RelocKind.EXTERN:
                out.append(r)
                continue
            if r.target in self.kcfg:
                out.append(Reloc(r.insn, RelocKind.DATA, KCONFIG, self.kcfg[r.target].offset))
            else:
                self._ksym(linked, r)
        linked.relocs = out

    def _find(self, name: str, kind: Kind):
        if self._vmlinux is None:
            return None
        from .btf.kernel import find_kernel_type, vmlinux
        if self._vmlinux is vmlinux:
            return find_kernel_type(name, kind)     # the fast index of the running kernel
        return self._vmlinux().find(name, kind)

    def _ksym(self, linked, r: Reloc) -> None:
        insns = linked.insns
        off = r.insn * 8
        code = insns[off]
        weak = self.weak.get(r.target, False)
        if r.target not in self.ksyms and r.target not in self.weak:
            raise errors.ElfError(f"extern {r.target!r} is neither a .kconfig nor a __ksym extern",
                                  object=self.obj, symbol=r.target)
        if code == _CALL:
            t = self._find(r.target, Kind.FUNC)
            if t is None:
                if not weak:
                    raise errors.ElfError(f"kfunc {r.target!r} not found in kernel BTF",
                                          object=self.obj, symbol=r.target)
                # unresolved weak kfunc: libbpf's poison call, so only a guarded
                # (never executed) call verifies
                struct.pack_into("=BBhi", insns, off, _CALL, 0, 0, 2002000000)
                return
            insns[off + 1] = (insns[off + 1] & 0x0F) | (_PSEUDO_KFUNC_CALL << 4)
            struct.pack_into("=hi", insns, off + 2, 0, t.id)
            return
        if code != _LD_IMM64:
            raise errors.ElfError(f"extern {r.target!r} referenced by opcode {code:#04x}",
                                  object=self.obj, symbol=r.target)
        if self.typed.get(r.target, False):
            t = self._find(r.target, Kind.VAR)
            if t is None:
                if not weak:
                    raise errors.ElfError(f"typed __ksym {r.target!r} not found in kernel BTF",
                                          object=self.obj, symbol=r.target)
                lo = hi = 0
                src = 0
            else:
                lo, hi, src = t.id, 0, _PSEUDO_BTF_ID
        else:
            if self._kallsyms is None:
                self._kallsyms = _kallsyms()
            addr = self._kallsyms.get(r.target)
            if addr is None and not weak:
                raise errors.ElfError(f"__ksym {r.target!r} not found in /proc/kallsyms",
                                      object=self.obj, symbol=r.target)
            addr = addr or 0
            lo, hi, src = addr & 0xFFFFFFFF, addr >> 32, 0
        insns[off + 1] = (insns[off + 1] & 0x0F) | (src << 4)
        struct.pack_into("=I", insns, off + 4, lo)
        struct.pack_into("=I", insns, off + 12, hi)


def _kcfg_value(ext: _Kcfg, btf: Btf, raw: Optional[str], obj: str) -> bytes:
    t = btf.resolve(ext.type_id)
    size = ext.size
    if raw is None:
        return bytes(size)

    def bad(why: str):
        return errors.ElfError(f".kconfig extern {ext.name}={raw!r}: {why}", object=obj,
                               symbol=ext.name)

    if isinstance(t, Enum):  # enum libbpf_tristate
        tri = {"n": 0, "y": 1, "m": 2}
        if raw not in tri:
            raise bad("not a tristate value")
        return tri[raw].to_bytes(size, sys.byteorder)
    if isinstance(t, Int) and t.encoding & IntEncoding.BOOL:
        if raw not in ("y", "n"):
            raise bad("a bool extern takes y or n")
        return (1 if raw == "y" else 0).to_bytes(size, sys.byteorder)
    if isinstance(t, Int) and t.encoding & IntEncoding.CHAR and size == 1:
        if raw in ("y", "n", "m"):
            return raw.encode()
        raise bad("a char extern takes y, n or m")
    if isinstance(t, Array):
        if not (raw.startswith('"') and raw.endswith('"')):
            raise bad("a char array extern takes a string value")
        s = raw[1:-1].encode()
        if len(s) >= size:
            s = s[:size - 1]
        return s.ljust(size, b"\0")
    if isinstance(t, Int):
        if raw in ("y", "m", "n"):
            return {"y": 1, "n": 0, "m": 2}[raw].to_bytes(size, sys.byteorder)
        try:
            v = int(raw, 0)
        except ValueError:
            raise bad("not a number") from None
        try:
            return v.to_bytes(size, sys.byteorder, signed=t.signed or v < 0)
        except OverflowError:
            raise bad(f"does not fit {size} bytes") from None
    raise bad(f"unsupported extern type {t.kind.name}")


def _special_value(name: str, cfg: Dict[str, str]) -> Optional[str]:
    if name == "LINUX_KERNEL_VERSION":
        return str(kernel_version_code())
    if name == "LINUX_HAS_BPF_COOKIE":
        return "y"  # true on every kernel bpfload supports (x86-64, >= 5.15)
    if name == "LINUX_HAS_SYSCALL_WRAPPER":
        from .link.tracefs import has_syscall_wrapper
        return "y" if has_syscall_wrapper() else "n"
    return cfg.get(name)


def plan_externs(spec: ObjectSpec, vmlinux: Optional[Callable[[], Btf]] = None) -> Optional[ExternPlan]:
    """Lay out and resolve *spec*'s externs; None when it has none.

    Returns the ``.kconfig`` map spec to create, a kernel-acceptable copy of
    the BTF, and the relocation step.  Raises :class:`bpfload.ElfError` for a
    strong extern the running kernel cannot satisfy.
    """
    btf = spec.btf
    if btf is None or not spec.externs:
        return None
    kc = btf.find(KCONFIG, Kind.DATASEC)
    ks = btf.find(KSYMS, Kind.DATASEC)
    if kc is None and ks is None:
        return None
    btf = copy.deepcopy(btf)
    kc = btf.find(KCONFIG, Kind.DATASEC)
    ks = btf.find(KSYMS, Kind.DATASEC)
    kcfg: Dict[str, _Kcfg] = {}
    ksyms: Dict[str, int] = {}
    typed: Dict[str, bool] = {}
    kmap = None
    if kc is not None:
        for vsi in kc.vars:
            var = btf[vsi.type]
            if not isinstance(var, Var):
                raise errors.BtfError(f"DATASEC {KCONFIG!r}: member [{vsi.type}] is {var.kind.name}, "
                                      "not VAR", object=spec.name, section=KCONFIG)
            size = btf.size_of(var.type)
            _check_kcfg_size(var.name, btf.resolve(var.type), size, spec.name)
            align = min(size, 8) if size in (1, 2, 4, 8) else (8 if size >= 8 else 1)
            kcfg[var.name] = _Kcfg(var.name, var.type, size, align,
                                   spec.externs.get(var.name, False))
        off = 0
        for ext in sorted(kcfg.values(), key=lambda e: -e.align):
            off = (off + ext.align - 1) // ext.align * ext.align
            ext.offset = off
            off += ext.size
        if off > _MAX_KCONFIG_SIZE:
            raise errors.BtfError(f"{KCONFIG!r} externs take {off} bytes, over the "
                                  f"{_MAX_KCONFIG_SIZE}-byte limit", object=spec.name, section=KCONFIG)
        total = max(off, 1)
        cfg = kernel_config()
        image = bytearray(total)
        for ext in kcfg.values():
            raw = _special_value(ext.name, cfg)
            if raw is None and not ext.weak:
                raise errors.ElfError(f"unresolved .kconfig extern {ext.name!r} (not in the "
                                      "kernel config; declare it __weak to default to zero)",
                                      object=spec.name, symbol=ext.name)
            image[ext.offset:ext.offset + ext.size] = _kcfg_value(ext, btf, raw, spec.name)
        # BTF the kernel accepts: allocated vars at their real offsets
        for vsi in kc.vars:
            var = btf[vsi.type]
            var.linkage = VarLinkage.GLOBAL_ALLOCATED
            vsi.offset = kcfg[var.name].offset
            vsi.size = kcfg[var.name].size
        kc.vars.sort(key=lambda v: v.offset)
        kc.size = total
        kmap = MapSpec(name=KCONFIG, type=MapType.ARRAY, key_size=4, value_size=total,
                       max_entries=1, flags=int(MapFlags.RDONLY_PROG | MapFlags.MMAPABLE), form="data",
                       section=KCONFIG, data=bytes(image), freeze=True,
                       btf_value_type_id=kc.id)
    if ks is not None:
        # Every entry becomes a 4-byte allocated int VAR (the kernel refuses
        # extern linkage and non-VAR DATASEC members); an extern FUNC is
        # represented by one shared dummy VAR and itself becomes a global
        # function with named parameters.
        int_id = _find_int(btf)
        dummy = None
        off = 0
        for vsi in ks.vars:
            t = btf[vsi.type]
            if not isinstance(t, (Var, Func)):
                raise errors.BtfError(f"DATASEC {KSYMS!r}: member [{vsi.type}] is {t.kind.name}, "
                                      "not VAR or FUNC", object=spec.name, section=KSYMS)
            ksyms[t.name] = t.id
            if isinstance(t, Func):
                t.linkage = FuncLinkage.GLOBAL
                proto = btf[t.type]
                if isinstance(proto, FuncProto):
                    for i, p in enumerate(proto.params):
                        if p.type and not p.name:
                            p.name = f"arg{i}"
                if dummy is None:
                    dummy = btf.add(Var(name="bpfload_dummy_ksym", type=int_id,
                                        linkage=VarLinkage.GLOBAL_ALLOCATED))
                vsi.type = dummy
            else:
                typed[t.name] = not isinstance(btf.skip_modifiers(t.type), Void)
                t.linkage = VarLinkage.GLOBAL_ALLOCATED
                t.type = int_id
            vsi.offset = off
            vsi.size = 4
            off += 4
        ks.size = off
    plan = ExternPlan(kconfig_map=kmap, btf=btf, kcfg=kcfg, ksyms=ksyms, typed=typed,
                      weak=dict(spec.externs), obj=spec.name, _vmlinux=vmlinux)
    return plan


def _check_kcfg_size(name: str, t, size: int, obj: str) -> None:
    """A ``.kconfig`` extern is an integer, bool, char, tristate enum or char array (libbpf's
    kinds): bound its size by what such a value can be before anything is allocated for it."""
    if isinstance(t, Array):
        ok = 0 < size <= _MAX_KCONFIG_STRING
        what = f"at most {_MAX_KCONFIG_STRING} bytes"
    else:
        ok = size in (1, 2, 4, 8)
        what = "1, 2, 4 or 8 bytes"
    if not ok:
        raise errors.BtfError(f".kconfig extern {name!r} is {size} bytes ({t.kind.name}); a "
                              f"{'char array' if isinstance(t, Array) else 'scalar'} extern takes {what}",
                              object=obj, section=KCONFIG, symbol=name)


def _find_int(btf: Btf) -> int:
    for t in btf:
        if isinstance(t, Int) and t.size == 4 and t.bits == 32:
            return t.id
    return btf.add(Int(name="int", size=4, encoding=IntEncoding.SIGNED, bits=32))
