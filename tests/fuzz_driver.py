"""Structure-aware mutator and child-process driver for tests/test_fuzz.py.

The mutator knows the ELF64 (little-endian) header, section header, symbol
and relocation layouts and the BTF / BTF.ext header and type-record layouts,
so most edits land on a field the loader reads (an offset, a count, an
index, a kind) rather than on instruction bytes.  Every case is a pure
function of ``(object bytes, seed, index)``: ``case_bytes()`` replays one.

Run as a script, this module is the CHILD of the fuzz test: it caps its own
address space (``RLIMIT_AS``), then opens -- and for a sample, loads -- each
case it is given, printing one JSON line per case start and per failure, so
the parent can tell which case a signal or a hang belongs to.  Replay one
case by hand::

    python tests/fuzz_driver.py --replay bpf/maps_btf.bpf.o SEED INDEX out.o
"""
from __future__ import annotations

import json
import os
import random
import struct
import sys

# -- layouts -----------------------------------------------------------------

EHDR_FIELDS = [  # (name, offset, size) of the ELF64 header fields after e_ident
    ("e_type", 16, 2), ("e_machine", 18, 2), ("e_version", 20, 4), ("e_entry", 24, 8),
    ("e_phoff", 32, 8), ("e_shoff", 40, 8), ("e_flags", 48, 4), ("e_ehsize", 52, 2),
    ("e_phentsize", 54, 2), ("e_phnum", 56, 2), ("e_shentsize", 58, 2), ("e_shnum", 60, 2),
    ("e_shstrndx", 62, 2), ("ei_class", 4, 1), ("ei_data", 5, 1), ("ei_version", 6, 1),
]
SHDR_FIELDS = [("sh_name", 0, 4), ("sh_type", 4, 4), ("sh_flags", 8, 8), ("sh_addr", 16, 8),
               ("sh_offset", 24, 8), ("sh_size", 32, 8), ("sh_link", 40, 4), ("sh_info", 44, 4),
               ("sh_addralign", 48, 8), ("sh_entsize", 56, 8)]
SYM_FIELDS = [("st_name", 0, 4), ("st_info", 4, 1), ("st_other", 5, 1), ("st_shndx", 6, 2),
              ("st_value", 8, 8), ("st_size", 16, 8)]
REL_FIELDS = [("r_offset", 0, 8), ("r_sym", 12, 4), ("r_type", 8, 4)]
BTF_HDR_FIELDS = [("magic", 0, 2), ("version", 2, 1), ("flags", 3, 1), ("hdr_len", 4, 4),
                  ("type_off", 8, 4), ("type_len", 12, 4), ("str_off", 16, 4), ("str_len", 20, 4)]
BTF_EXT_HDR_FIELDS = [("magic", 0, 2), ("version", 2, 1), ("flags", 3, 1), ("hdr_len", 4, 4),
                      ("func_info_off", 8, 4), ("func_info_len", 12, 4), ("line_info_off", 16, 4),
                      ("line_info_len", 20, 4), ("core_relo_off", 24, 4), ("core_relo_len", 28, 4)]
# BTF kinds: (fixed bytes after the 12-byte common header, bytes per vlen entry)
BTF_KIND_LAYOUT = {1: (4, 0), 2: (0, 0), 3: (12, 0), 4: (0, 12), 5: (0, 12), 6: (0, 8), 7: (0, 0),
                   8: (0, 0), 9: (0, 0), 10: (0, 0), 11: (0, 0), 12: (0, 0), 13: (0, 8),
                   14: (4, 0), 15: (0, 12), 16: (0, 0), 17: (4, 0), 18: (0, 0), 19: (0, 12)}
LEGACY_MAP_FIELDS = [("type", 0, 4), ("key_size", 4, 4), ("value_size", 8, 4),
                     ("max_entries", 12, 4), ("map_flags", 16, 4)]


class Layout:
    """Where the fields of one ELF object are: a list of (what, offset, size)."""

    def __init__(self, data: bytes):
        self.fields: list = []       # (label, offset, size)
        self.counts: list = []       # fields that are counts/sizes/offsets: oversize targets
        self.sections: dict = {}     # name -> (offset, size, index)
        n = len(data)
        for name, off, size in EHDR_FIELDS:
            self.fields.append((f"ehdr.{name}", off, size))
        self.counts += [f for f in self.fields if f[0] in ("ehdr.e_shoff", "ehdr.e_shnum",
                                                             "ehdr.e_shstrndx", "ehdr.e_shentsize")]
        try:
            shoff, = struct.unpack_from("<Q", data, 0x28)
            shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
            if shentsize != 64 or shoff + shnum * 64 > n:
                return
            hdrs = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + 64 * i) for i in range(shnum)]
            stro = hdrs[shstrndx][4]
        except (struct.error, IndexError):
            return
        for i, h in enumerate(hdrs):
            try:
                name = data[stro + h[0]:data.index(b"\0", stro + h[0])].decode()
            except (ValueError, UnicodeDecodeError):
                name = f"#{i}"
            self.sections[name] = (h[4], h[5], i, h[1], h[9])
            base = shoff + 64 * i
            for fname, off, size in SHDR_FIELDS:
                f = (f"shdr[{name}].{fname}", base + off, size)
                self.fields.append(f)
                if fname in ("sh_offset", "sh_size", "sh_link", "sh_info", "sh_entsize", "sh_name"):
                    self.counts.append(f)
        for name, (off, size, idx, stype, entsize) in self.sections.items():
            if off + size > n or stype == 8:  # NOBITS
                continue
            if stype == 2:  # SYMTAB
                for k in range(size // 24):
                    for fname, o, s in SYM_FIELDS:
                        f = (f"sym[{k}].{fname}", off + 24 * k + o, s)
                        self.fields.append(f)
                        if fname in ("st_shndx", "st_value", "st_size", "st_name"):
                            self.counts.append(f)
            elif stype == 9 and not name.startswith(".rel.debug") and not name.startswith(".rel.BTF"):
                for k in range(size // 16):
                    for fname, o, s in REL_FIELDS:
                        f = (f"rel[{name}][{k}].{fname}", off + 16 * k + o, s)
                        self.fields.append(f)
                        self.counts.append(f)
            elif name == "maps":
                for k in range(size // 20):
                    for fname, o, s in LEGACY_MAP_FIELDS:
                        f = (f"maps[{k}].{fname}", off + 20 * k + o, s)
                        self.fields.append(f)
                        self.counts.append(f)
            elif name == ".BTF":
                self._btf(data, off, size)
            elif name == ".BTF.ext":
                for fname, o, s in BTF_EXT_HDR_FIELDS:
                    f = (f"btf_ext.{fname}", off + o, s)
                    self.fields.append(f)
                    if o >= 4:
                        self.counts.append(f)
                self._btf_ext(data, off, size)

    def _btf(self, data: bytes, off: int, size: int) -> None:
        for fname, o, s in BTF_HDR_FIELDS:
            f = (f"btf.{fname}", off + o, s)
            self.fields.append(f)
            if o >= 4:
                self.counts.append(f)
        try:
            hdr_len, type_off, type_len = struct.unpack_from("<III", data, off + 4)
        except struct.error:
            return
        pos = off + hdr_len + type_off
        end = min(pos + type_len, off + size)
        tid = 1
        while pos + 12 <= end:
            name_off, info, size_type = struct.unpack_from("<III", data, pos)
            kind, vlen = (info >> 24) & 0x1F, info & 0xFFFF
            if kind not in BTF_KIND_LAYOUT:
                return
            fixed, per = BTF_KIND_LAYOUT[kind]
            self.fields += [(f"btf[{tid}].name_off", pos, 4), (f"btf[{tid}].info", pos + 4, 4),
                            (f"btf[{tid}].vlen", pos + 4, 2), (f"btf[{tid}].kind", pos + 7, 1)]
            f = (f"btf[{tid}].size_type", pos + 8, 4)
            self.fields.append(f)
            self.counts += [f, (f"btf[{tid}].vlen", pos + 4, 2), (f"btf[{tid}].name_off", pos, 4)]
            body = pos + 12
            for k in range(fixed // 4):
                f = (f"btf[{tid}].fixed{k}", body + 4 * k, 4)   # array type/index/nelems, int bits, var linkage
                self.fields.append(f)
                self.counts.append(f)
            for k in range(min(vlen, 64)):
                for j in range(per // 4):
                    f = (f"btf[{tid}].vlen[{k}].{j}", body + fixed + per * k + 4 * j, 4)
                    self.fields.append(f)
                    self.counts.append(f)
            pos = body + fixed + per * vlen
            tid += 1

    def _btf_ext(self, data: bytes, off: int, size: int) -> None:
        try:
            hdr_len, = struct.unpack_from("<I", data, off + 4)
            subs = struct.unpack_from("<6I", data, off + 8)
        except struct.error:
            return
        for k in range(0, 6, 2):
            start = off + hdr_len + subs[k]
            if start + 4 > off + size:
                continue
            f = (f"btf_ext.sub{k // 2}.rec_size", start, 4)
            self.fields.append(f)
            self.counts.append(f)
            pos, end = start + 4, min(start + subs[k + 1], off + size)
            for _ in range(8):  # the first few per-section info blocks
                if pos + 8 > end:
                    break
                f = (f"btf_ext.sub{k // 2}.num_info@{pos - off}", pos + 4, 4)
                self.fields.append(f)
                self.counts.append(f)
                self.fields.append((f"btf_ext.sub{k // 2}.sec_name@{pos - off}", pos, 4))
                rec, = struct.unpack_from("<I", data, start)
                num, = struct.unpack_from("<I", data, pos + 4)
                if rec == 0 or rec > 64:
                    break
                for r in range(min(num, 4)):
                    for j in range(rec // 4):
                        self.fields.append((f"btf_ext.sub{k // 2}.rec{r}.{j}@{pos - off}",
                                            pos + 8 + rec * r + 4 * j, 4))
                pos += 8 + rec * num


def _interesting(rng: random.Random, old: int, size: int, n: int) -> int:
    top = (1 << (8 * size)) - 1
    choices = [0, 1, 2, 3, 4, 7, 8, 12, 16, 24, 64, 255, top, top - 1, top >> 1, (top >> 1) + 1,
               old + 1, old - 1, old * 2, old ^ (1 << rng.randrange(8 * size)), n, n + 1, n - 1,
               n // 2, 0xFFFF, 0x10000, 0xFFFFFFFF, 1 << 31, 1 << 32, rng.randrange(top + 1),
               rng.randrange(min(top, max(n, 1)) + 1)]
    return rng.choice(choices) & top


def _oversized(rng: random.Random, old: int, size: int, n: int) -> int:
    top = (1 << (8 * size)) - 1
    return rng.choice([top, top >> 1, (top >> 1) + 1, top - 7, n * 16, n * 4096, 1 << 30,
                       0xFFFFFFF0, 0x7FFFFFFF, 0x10000000]) & top


def mutate(data: bytes, rng: random.Random):
    """One mutation of *data*: (mutated bytes, what was done)."""
    lay = Layout(data)
    blob = bytearray(data)
    n = len(blob)
    how = rng.choices(["bitflip", "truncate", "field", "oversize", "multi", "bytes"],
                      weights=[3, 1, 6, 3, 2, 1])[0]
    if how == "truncate":
        cut = rng.choice([rng.randrange(n), rng.randrange(min(n, 4096))]
                         + [o for o, s, *_ in lay.sections.values() if 0 < o < n]
                         + [o + s for o, s, *_ in lay.sections.values() if 0 < o + s < n])
        return bytes(blob[:cut]), f"truncate to {cut}"
    if how == "bitflip" or not lay.fields:
        out = []
        for _ in range(rng.randint(1, 4)):
            label, off, size = rng.choice(lay.fields) if lay.fields and rng.random() < 0.7 \
                else ("byte", rng.randrange(n), 1)
            pos = off + rng.randrange(size)
            if pos < n:
                bit = rng.randrange(8)
                blob[pos] ^= 1 << bit
                out.append(f"{label}@{pos} bit {bit}")
        return bytes(blob), "bitflip " + ", ".join(out)
    if how == "bytes":
        pos = rng.randrange(n)
        length = rng.randint(1, 16)
        val = rng.choice([b"\0", b"\xff", bytes([rng.randrange(256)])]) * length
        blob[pos:pos + length] = val[:max(0, min(length, n - pos))]
        return bytes(blob), f"bytes {pos}+{length}={val[:1].hex()}"
    edits = []
    for _ in range(1 if how in ("field", "oversize") else rng.randint(2, 5)):
        pool = lay.counts if (how == "oversize" and lay.counts) else lay.fields
        label, off, size = rng.choice(pool)
        if off + size > n:
            continue
        old = int.from_bytes(blob[off:off + size], "little")
        pick = _oversized if how == "oversize" else _interesting
        new = pick(rng, old, size, n)
        blob[off:off + size] = new.to_bytes(size, "little")
        edits.append(f"{label}@{off} {old:#x}->{new:#x}")
    return bytes(blob), f"{how} " + ", ".join(edits)


def case_bytes(data: bytes, obj_name: str, seed: str, index: int):
    """The mutated bytes and description of case *index* of *obj_name* under *seed*."""
    rng = random.Random(f"{seed}/{obj_name}/{index}")
    return mutate(data, rng)


# -- child ---------------------------------------------------------------------

class _Hang(BaseException):
    pass


def _fds() -> set:
    """Open fd numbers (without the one listdir itself used, closed again by now)."""
    out = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        out.add(fd)
    return out


def _fd_what(fds) -> list:
    out = []
    for fd in sorted(fds):
        try:
            out.append(f"{fd}->{os.readlink(f'/proc/self/fd/{fd}')}")
        except OSError:
            out.append(str(fd))
    return out


def _clear_pins(root: str) -> None:
    for dirpath, dirs, files in os.walk(root, topdown=False):
        for f in files:
            os.unlink(os.path.join(dirpath, f))
        for d in dirs:
            os.rmdir(os.path.join(dirpath, d))


_leaked: list = []


def _inject(fault: str) -> None:
    """Faults the harness must report (tests/test_fuzz.py::test_harness_reports_every_failure)."""
    import signal
    import time
    if fault == "segv":
        os.kill(os.getpid(), signal.SIGSEGV)
    elif fault == "hang":           # interruptible: the child's own timer catches it
        time.sleep(3600)
    elif fault == "stuck":          # the timer is blocked: the parent must kill the child
        signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGALRM])
        time.sleep(3600)
    elif fault == "memory":
        bytearray(8 << 30)
    elif fault == "leak":
        _leaked.append(os.open("/dev/null", os.O_RDONLY))
    elif fault == "keyerror":
        raise KeyError("injected")


# Kernel memory a case's maps may ask for.  A mutated max_entries or value_size is a
# legitimate request the kernel grants (a 63 M-entry hash map took 25 s and gigabytes of
# kernel memory to create): that tests the kernel, not bpfload, which passes the (bounded,
# u32) numbers through.  Loads clamp what an object asks for; open() sees it unclamped.
_MAP_BYTES = 32 << 20
_RINGBUF_BYTES = 4 << 20


def _clamp_kernel_memory(specs) -> int:
    """Lower max_entries of map specs (and their templates) so none needs over _MAP_BYTES."""
    clamped = 0
    todo = list(specs)
    while todo:
        ms = todo.pop()
        if ms.inner is not None:
            todo.append(ms.inner)
        if not isinstance(ms.max_entries, int) or ms.max_entries <= 0:
            continue
        if "RINGBUF" in getattr(ms.type, "name", ""):
            limit = _RINGBUF_BYTES
        else:
            ncpu = (os.cpu_count() or 1) if "PERCPU" in getattr(ms.type, "name", "") else 1
            per = max(0, ms.key_size or 0) + max(0, ms.value_size or 0) * ncpu + 64
            limit = max(1, _MAP_BYTES // per)
        if ms.max_entries > limit:
            ms.max_entries = limit
            clamped += 1
    return clamped


def child(cfg: dict) -> None:
    import gc
    import resource
    import signal
    import traceback
    import warnings

    import bpfload

    cap = cfg["rlimit_as"]
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    def on_alarm(signum, frame):
        raise _Hang()

    signal.signal(signal.SIGALRM, on_alarm)
    warnings.simplefilter("always", ResourceWarning)
    resource_warnings: list = []
    warnings.showwarning = lambda msg, cat, *a, **k: resource_warnings.append(f"{cat.__name__}: {msg}")

    def emit(**kw):
        sys.stdout.write(json.dumps(kw) + "\n")
        sys.stdout.flush()

    objects = {p: open(p, "rb").read() for p in cfg["objects"]}
    inject = cfg.get("inject", {})   # tests of the harness itself: case position -> fault
    pin_root = cfg.get("pin_root")
    load_every = cfg["load_every"]
    # warm up: caches that legitimately keep an fd (vmlinux BTF, probes) are filled by a
    # clean load of each object before fds are counted
    if cfg["load"]:
        for p, data in objects.items():
            try:
                with bpfload.BpfObject.open(data, name="warm").load(pin_root=pin_root):
                    pass
            except bpfload.BpfError:
                pass
            if pin_root:
                _clear_pins(pin_root)
    gc.collect()
    stats = {"cases": 0, "opened": 0, "open_errors": 0, "loads": 0, "loaded": 0, "load_errors": 0,
             "clamped": 0}
    for pos in range(cfg["start"], len(cfg["cases"])):
        path, index = cfg["cases"][pos]
        blob, what = case_bytes(objects[path], os.path.basename(path), cfg["seed"], index)
        emit(start=pos)
        resource_warnings.clear()
        before = _fds()
        phase = "open"
        obj = None
        stats["cases"] += 1
        signal.setitimer(signal.ITIMER_REAL, cfg["timeout"])
        try:
            try:
                fault = inject.get(str(pos))
                if fault:
                    _inject(fault)
                obj = bpfload.BpfObject.open(blob, name="fuzz")
                stats["opened"] += 1
                if cfg["load"] and index % load_every == 0:
                    phase = "load"
                    stats["loads"] += 1
                    stats["clamped"] += _clamp_kernel_memory(obj.spec.maps.values())
                    try:
                        obj.load(pin_root=pin_root)
                        stats["loaded"] += 1
                    finally:
                        obj.close()
            except bpfload.BpfError:
                stats["open_errors" if phase == "open" else "load_errors"] += 1
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
        except _Hang:
            emit(fail="hang", pos=pos, phase=phase, error=f"over {cfg['timeout']} s")
            continue
        except BaseException as e:  # MemoryError, RecursionError, anything not a BpfError
            signal.setitimer(signal.ITIMER_REAL, 0)
            emit(fail="exception", pos=pos, phase=phase,
                 error="".join(traceback.format_exception(type(e), e, e.__traceback__))[-3000:])
            continue
        finally:
            obj = None
        left = _fds() - before
        if left:
            gc.collect()
            still = _fds() - before
            emit(fail="fd", pos=pos, phase=phase,
                 error=f"fds left after the case: {_fd_what(left)}; after gc: {_fd_what(still)}")
        if resource_warnings:
            emit(fail="ResourceWarning", pos=pos, phase=phase, error="; ".join(resource_warnings[:3]))
        if pin_root and phase == "load":
            _clear_pins(pin_root)
    emit(done=stats)


def main(argv) -> int:
    if len(argv) >= 2 and argv[1] == "--replay":
        path, seed, index, out = argv[2], argv[3], int(argv[4]), argv[5]
        with open(path, "rb") as f:
            blob, what = case_bytes(f.read(), os.path.basename(path), seed, index)
        with open(out, "wb") as f:
            f.write(blob)
        print(what)
        return 0
    child(json.loads(sys.stdin.read()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
