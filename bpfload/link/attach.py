"""Attach by section name: what ``Program.attach()`` and ``BpfObject.attach_all()`` do.

libbpf's conventions decide where a section attaches:

=====================================  ==========================================
section                                attach function (module)
=====================================  ==========================================
``tracepoint/CAT/NAME``, ``tp/...``     :func:`~.tracing.attach_tracepoint`
``raw_tracepoint/NAME``, ``raw_tp/...`` :func:`~.tracing.attach_raw_tracepoint`
``tp_btf/``, ``fentry/``, ``fexit/``,   :func:`~.tracing.attach_trace`
``fmod_ret/``, ``lsm/``
``kprobe/FUNC[+OFF]``, ``kretprobe/``   :func:`~.tracing.attach_kprobe`
``uprobe/PATH:SYM[+OFF]``, ``uretprobe``:func:`~.uprobe.attach_uprobe`
``usdt/PATH:PROVIDER:NAME``             :func:`~.usdt.attach_usdt`
``perf_event``                          :func:`~.tracing.attach_perf_event`
``xdp``                                 :func:`~.net.attach_xdp`
``tc``, ``tcx/ingress``, ``tcx/egress`` :func:`~.net.attach_tc`
``cgroup_skb/...``, ``cgroup/...``,     :func:`~.cgroup.attach_cgroup`
``sockops``
``sk_msg``, ``sk_skb/...``              :func:`~.net.attach_sockmap`
``netfilter``                           :func:`~.net.attach_netfilter`
``socket``                              :func:`~.net.attach_socket`
``iter/KIND``                           :func:`~.iter.attach_iter`
=====================================  ==========================================

Keyword arguments supply what a section cannot say (an interface, a
cgroup, a socket, a map, a pid); they are passed on to the function.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Tuple

from .. import errors
from .link import Link

__all__ = ["attach", "auto_attach_reason", "section_kind"]

# section prefix (without a trailing "/", ".s" variants folded) -> kind
_KINDS: Tuple[Tuple[str, str], ...] = (
    ("tracepoint", "tracepoint"), ("tp", "tracepoint"),
    ("raw_tracepoint.w", "raw_tracepoint"), ("raw_tp.w", "raw_tracepoint"),
    ("raw_tracepoint", "raw_tracepoint"), ("raw_tp", "raw_tracepoint"),
    ("tp_btf", "trace"), ("fentry", "trace"), ("fexit", "trace"), ("fmod_ret", "trace"),
    ("lsm", "trace"),
    ("kprobe", "kprobe"), ("kretprobe", "kretprobe"),
    ("ksyscall", "kprobe"), ("kretsyscall", "kretprobe"),
    ("uprobe", "uprobe"), ("uretprobe", "uretprobe"),
    ("usdt", "usdt"),
    ("perf_event", "perf_event"),
    ("xdp", "xdp"), ("xdp.frags", "xdp"),
    ("tcx", "tc"), ("tc", "tc"), ("classifier", "tc"),
    ("cgroup_skb", "cgroup"), ("cgroup", "cgroup"), ("sockops", "cgroup"),
    ("sk_msg", "sockmap"), ("sk_skb", "sockmap"),
    ("netfilter", "netfilter"),
    ("socket", "socket"),
    ("iter", "iter"),
)

#: iterator targets that need an argument (so attach_all leaves them alone)
_ITER_NEEDS = {"bpf_map_elem": "map", "bpf_sk_storage_map": "map", "sockmap": "map",
               "cgroup": "cgroup"}


def _split(section: Optional[str]) -> Tuple[str, str]:
    """``"tracepoint/syscalls/sys_enter_x"`` -> (``"tracepoint"``, ``"syscalls/sys_enter_x"``)."""
    sec = (section or "").lstrip("?")
    head, _, rest = sec.partition("/")
    if head.endswith(".s"):
        head = head[:-2]
    return head, rest


def section_kind(section: Optional[str]) -> Optional[str]:
    """The attach kind of a section name (``"tracepoint"``, ``"xdp"`` ...), or None."""
    head, _ = _split(section)
    for prefix, kind in _KINDS:
        if head == prefix:
            return kind
    return None


def _target(prog: Any) -> str:
    return getattr(prog, "attach_target", None) or _split(prog.section)[1]


def _offset(text: str) -> Tuple[str, int]:
    """``"func+0x10"`` -> (``"func"``, 16)."""
    name, plus, off = text.partition("+")
    if not plus:
        return name, 0
    try:
        return name, int(off, 0)
    except ValueError:
        raise errors.AttachError(f"bad offset {off!r} in {text!r}") from None


def _need(prog: Any, what: str, kind: str) -> errors.AttachError:
    return errors.AttachError(f"section {prog.section!r} does not name the {what}; pass it "
                              f"(e.g. prog.attach({what.split()[0]}=...)) or use the explicit "
                              f"attach_{kind}()", program=prog.name)


def _tracepoint(prog: Any, kw: Dict[str, Any]) -> Link:
    from .tracing import attach_tracepoint
    target = _target(prog)
    cat, _, name = target.partition("/")
    if "category" in kw or "name" in kw:
        cat, name = kw.pop("category", cat), kw.pop("name", name)
    if not cat or not name:
        raise _need(prog, "category and name (tracepoint/CAT/NAME)", "tracepoint")
    return attach_tracepoint(prog, cat, name, **kw)


def _raw_tracepoint(prog: Any, kw: Dict[str, Any]) -> Link:
    from .tracing import attach_raw_tracepoint
    name = kw.pop("name", None) or _target(prog)
    if not name:
        raise _need(prog, "name (raw_tp/NAME)", "raw_tracepoint")
    return attach_raw_tracepoint(prog, name, **kw)


def _trace(prog: Any, kw: Dict[str, Any]) -> Link:
    from .tracing import attach_trace
    return attach_trace(prog, **kw)


def _kprobe(prog: Any, kw: Dict[str, Any], retprobe: bool) -> Link:
    from .tracing import attach_kprobe
    target = kw.pop("func", None) or _target(prog)
    if not target:
        raise _need(prog, "func (kprobe/FUNC)", "kprobe")
    func, off = _offset(target)
    if prog.section and prog.section.lstrip("?").split("/")[0] in ("ksyscall", "kretsyscall"):
        kw.setdefault("syscall", True)
    kw.setdefault("offset", off)
    return attach_kprobe(prog, func, retprobe=retprobe, **kw)


def _uprobe(prog: Any, kw: Dict[str, Any], retprobe: bool) -> Link:
    from .uprobe import attach_uprobe
    target = _target(prog)
    binary = kw.pop("binary", None)
    symbol = kw.pop("symbol", None)
    if target and binary is None:
        path, colon, sym = target.rpartition(":")
        if not colon:
            raise _need(prog, "binary and symbol (uprobe/PATH:SYMBOL)", "uprobe")
        binary = path
        if symbol is None and sym:
            symbol, off = _offset(sym)
            kw.setdefault("offset", off)
    if binary is None:
        raise _need(prog, "binary (uprobe/PATH:SYMBOL)", "uprobe")
    return attach_uprobe(prog, binary, symbol, retprobe=retprobe, **kw)


def _usdt(prog: Any, kw: Dict[str, Any]) -> Link:
    from .usdt import attach_usdt
    path, provider, name = _usdt_target(_target(prog))
    binary = kw.pop("binary", None) or path
    provider = kw.pop("provider", None) or provider
    name = kw.pop("name", None) or name
    if not (binary and provider and name):
        raise _need(prog, "binary, provider and name (usdt/PATH:PROVIDER:NAME)", "usdt")
    return attach_usdt(prog, binary, provider, name, **kw)


def _usdt_target(target: str) -> Tuple[str, str, str]:
    """``"/usr/bin/x:prov:name"`` -> (path, provider, name); empty parts when absent."""
    rest, _, name = target.rpartition(":")
    path, _, provider = rest.rpartition(":")
    if not (path and provider and name):
        return "", "", ""
    return path, provider, name


def _perf_event(prog: Any, kw: Dict[str, Any]) -> Link:
    from .tracing import attach_perf_event
    if not kw:
        raise errors.AttachError("a perf_event program needs the event: pass pfd=..., or "
                                 "type=..., config=... and sample_period=/sample_freq=",
                                 program=prog.name)
    return attach_perf_event(prog, **kw)


def _with(arg: str, kind: str, fn_name: str, module: str) -> Callable[[Any, Dict[str, Any]], Link]:
    def run(prog: Any, kw: Dict[str, Any]) -> Link:
        import importlib
        fn = getattr(importlib.import_module(f"{__package__}.{module}"), fn_name)
        if arg not in kw:
            raise _need(prog, arg, kind)
        return fn(prog, kw.pop(arg), **kw)
    return run


def _iter(prog: Any, kw: Dict[str, Any]) -> Link:
    from .iter import attach_iter
    return attach_iter(prog, **kw)


def _netfilter(prog: Any, kw: Dict[str, Any]) -> Link:
    from .net import attach_netfilter
    missing = [k for k in ("pf", "hooknum", "priority") if k not in kw]
    if missing:
        raise _need(prog, " and ".join(missing), "netfilter")
    return attach_netfilter(prog, **kw)


_DISPATCH: Dict[str, Callable[[Any, Dict[str, Any]], Link]] = {
    "tracepoint": _tracepoint,
    "raw_tracepoint": _raw_tracepoint,
    "trace": _trace,
    "kprobe": lambda p, kw: _kprobe(p, kw, False),
    "kretprobe": lambda p, kw: _kprobe(p, kw, True),
    "uprobe": lambda p, kw: _uprobe(p, kw, False),
    "uretprobe": lambda p, kw: _uprobe(p, kw, True),
    "usdt": _usdt,
    "perf_event": _perf_event,
    "xdp": _with("iface", "xdp", "attach_xdp", "net"),
    "tc": _with("iface", "tc", "attach_tc", "net"),
    "cgroup": _with("cgroup", "cgroup", "attach_cgroup", "cgroup"),
    "sockmap": _with("map", "sockmap", "attach_sockmap", "net"),
    "socket": _with("sock", "socket", "attach_socket", "net"),
    "netfilter": _netfilter,
    "iter": _iter,
}


def attach(prog: Any, **kw: Any) -> Link:
    """Attach *prog* where its section says; *kw* supplies what the section cannot.

    Raises :class:`bpfload.AttachError` naming what is missing when neither
    the section nor *kw* gives the target, and for sections that name no
    attachable hook.
    """
    kind = section_kind(prog.section)
    if kind is None:
        raise errors.AttachError(f"section {prog.section!r} names no hook bpfload can attach to; "
                                 "use an explicit attach_*() method", program=prog.name)
    return _DISPATCH[kind](prog, dict(kw))


def auto_attach_reason(prog: Any) -> Optional[str]:
    """None when the section alone is enough to attach *prog*, else why not (for attach_all)."""
    kind = section_kind(prog.section)
    if kind is None:
        return f"section {prog.section!r} names no attachable hook"
    target = _target(prog)
    if kind in ("tracepoint",) and "/" not in target:
        return "the section does not name CAT/NAME"
    if kind in ("raw_tracepoint", "kprobe", "kretprobe") and not target:
        return "the section does not name the target"
    if kind in ("uprobe", "uretprobe") and ":" not in target:
        return "the section does not name PATH:SYMBOL"
    if kind == "usdt" and not _usdt_target(target)[0]:
        return "the section does not name PATH:PROVIDER:NAME"
    if kind == "iter":
        need = _ITER_NEEDS.get(target)
        if need:
            return f"iter/{target} needs a {need} (attach_iter({need}=...))"
        return None
    if kind in ("tracepoint", "raw_tracepoint", "trace", "kprobe", "kretprobe", "uprobe",
                "uretprobe", "usdt"):
        return None
    what = {"perf_event": "a perf event (pfd= or type=/config=)", "xdp": "an interface",
            "tc": "an interface", "cgroup": "a cgroup", "sockmap": "a sockmap",
            "socket": "a socket", "netfilter": "pf/hooknum/priority"}[kind]
    return f"{kind} programs need {what}"
