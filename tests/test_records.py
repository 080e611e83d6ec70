"""The hand-written record classes and fast-built enums equal what they replaced.

bpfload's spec, BTF and info classes were dataclasses and its constants
ordinary IntEnum class statements; both cost a fresh process more than a whole
load (see bpfload/_records.py, bpfload/_enums.py).  These tests hold the
replacements to the originals' behaviour, against references built the slow
way in the test: a dataclass with the same fields (repr, ==, hash,
dataclasses.fields/replace/asdict, copy, pickle) and an IntEnum/IntFlag made by
the functional API (members, repr, str, format, lookup, flags arithmetic,
pickle).  Also the lazy pattern/module stand-ins and kernel_name (a character
set in place of a regular expression) against the real thing.  No kernel needed.
"""
from __future__ import annotations

import copy
import dataclasses
import enum
import inspect
import pickle

import pytest

from bpfload import constants, spec
from bpfload._records import FrozenRecord, Record
from bpfload.btf import format as btf
from bpfload.elf import sections, reader  # noqa: F401  (their record classes are collected below)
from bpfload import loader, programs  # noqa: F401
from bpfload.maps import MapInfo


def _records():
    """Every record class of bpfload (not the dataclasses that extend one, e.g. system.ProgramRecord)."""
    found, todo = set(), [Record]
    while todo:
        for sub in todo.pop().__subclasses__():
            todo.append(sub)
            if (sub.__module__.startswith("bpfload.") and sub is not FrozenRecord
                    and "__dataclass_params__" not in vars(sub)):
                found.add(sub)
    return sorted(found, key=lambda c: (c.__module__, c.__qualname__))


RECORDS = _records()

#: a value per field name, of the field's type, for instances with every field set
SAMPLE = {"kind": spec.RelocKind.DATA, "type": 2, "encoding": btf.IntEncoding.SIGNED,
          "prog_type": constants.ProgType.XDP, "pinning": constants.PinType.BY_NAME}


def _value(cls, name: str, i: int):
    if name in SAMPLE:
        return SAMPLE[name]
    ann = str(inspect.signature(cls.__init__).parameters[name].annotation)
    if "List" in ann:
        return [i]
    if "Dict" in ann:
        return {i: str(i)}
    if "bytes" in ann:
        return bytes([i])
    if "str" in ann:
        return f"s{i}"
    if "bool" in ann:
        return bool(i % 2)
    return i + 1


def _full(cls):
    return {n: _value(cls, n, i) for i, n in enumerate(cls._fields)}


def _reference(cls):
    """The dataclass *cls* used to be: same fields, defaults, repr/compare flags, frozenness."""
    fields = [(f.name, f.type, dataclasses.field(default=f.default, default_factory=f.default_factory,
                                                  repr=f.repr, compare=f.compare))
              for f in dataclasses.fields(cls)]
    return dataclasses.make_dataclass(cls.__name__, fields, frozen=issubclass(cls, FrozenRecord))


def test_every_load_path_class_is_covered():
    names = {c.__name__ for c in RECORDS}
    for want in ("Reloc", "FunctionSpec", "ProgramSpec", "MapSpec", "StructOpsSpec", "GlobalVar",
                 "ObjectSpec", "Int", "Struct", "Enum64", "Member", "EnumValue", "Param", "VarSecinfo",
                 "Datasec", "DeclTag", "BtfMapDef", "FuncInfo", "LineInfo", "CoreRelo", "ExtInfo",
                 "MapInfo", "ProgramInfo", "TestRunResult", "LoadResult", "SectionDef"):
        assert want in names, want


@pytest.mark.parametrize("cls", RECORDS, ids=lambda c: c.__qualname__)
def test_fields_are_the_init_parameters_in_order(cls):
    params = list(inspect.signature(cls.__init__).parameters)[1:]
    assert params == list(cls._fields)
    assert [f.name for f in dataclasses.fields(cls)] == list(cls._fields)
    assert dataclasses.is_dataclass(cls) and cls.__match_args__ == cls._fields


@pytest.mark.parametrize("cls", RECORDS, ids=lambda c: c.__qualname__)
def test_record_behaves_as_its_dataclass(cls):
    ref = _reference(cls)
    kw = _full(cls)
    rec, want = cls(**kw), ref(**kw)
    assert repr(rec) == repr(want)
    positional = cls(*kw.values())
    assert positional == rec and not positional != rec
    for name in cls._fields:
        assert getattr(rec, name) == kw[name]
    # == compares the shown fields only, and only records of the same class
    for i, name in enumerate(cls._fields):
        other = dict(kw, **{name: _value(cls, name, i + 7) if name not in SAMPLE else None})
        assert (cls(**other) == rec) == (ref(**other) == want), name
    assert rec != want and (rec == object()) is False
    # defaults: the dataclass's, with a fresh list/dict per instance
    required = {n: kw[n] for n, p in inspect.signature(cls.__init__).parameters.items()
                if n in kw and p.default is inspect.Parameter.empty}
    a, b, r = cls(**required), cls(**required), ref(**required)
    assert repr(a) == repr(r)
    for name in cls._factories:
        assert getattr(a, name) == cls._factories[name]() and getattr(a, name) is not getattr(b, name)
    # hashing: frozen records hash by value, mutable ones are unhashable (eq dataclasses)
    if issubclass(cls, FrozenRecord):
        assert hash(rec) == hash(cls(**kw)) == hash(want)
        with pytest.raises(AttributeError):
            setattr(rec, cls._fields[0], 1)
        with pytest.raises(AttributeError):
            delattr(rec, cls._fields[0])
    else:
        with pytest.raises(TypeError):
            hash(rec)
    # the dataclasses functions and the copy protocols
    changed = dataclasses.replace(rec, **{cls._fields[-1]: kw[cls._fields[0]]})
    assert type(changed) is cls and getattr(changed, cls._fields[-1]) == kw[cls._fields[0]]
    assert dataclasses.asdict(rec) == dataclasses.asdict(want)
    assert dataclasses.astuple(rec) == dataclasses.astuple(want)
    for dup in (copy.copy(rec), copy.deepcopy(rec), pickle.loads(pickle.dumps(rec))):
        assert type(dup) is cls and dup == rec and repr(dup) == repr(rec)


def test_reprs_and_hidden_fields():
    t = btf.Int(1, "int", False, 99, size=4, encoding=btf.IntEncoding.SIGNED, bits=32)
    assert repr(t) == ("Int(id=1, name='int', kind_flag=False, size=4, "
                       "encoding=<IntEncoding.SIGNED: 1>, offset=0, bits=32)")
    assert t == btf.Int(1, "int", False, 0, size=4, encoding=btf.IntEncoding.SIGNED, bits=32)
    assert btf.Struct(3, "s", members=[btf.Member("a", 1, 0, 0, 17)]) == \
        btf.Struct(3, "s", members=[btf.Member("a", 1, 0)])
    assert repr(btf.Enum64(5, "e")) == "Enum64(id=5, name='e', kind_flag=False, size=8, values=[])"
    assert btf.Ptr(2, type=1) != btf.Const(2, type=1)   # same fields, another class
    r = spec.Reloc(3, spec.RelocKind.CALL, "f")
    assert repr(r) == "Reloc(insn=3, kind=<RelocKind.CALL: 3>, target='f', addend=0)"
    assert {r: 1}[spec.Reloc(3, spec.RelocKind.CALL, "f", 0)] == 1


def test_slots_where_nothing_adds_attributes():
    with pytest.raises(AttributeError):
        btf.Int(1, "int").extra = 1
    with pytest.raises(AttributeError):
        btf.Member("a", 1, 0).extra = 1
    m = spec.MapSpec("m", constants.MapType.ARRAY, 4, 4, 1)    # specs stay open for the caller
    m.note = "mine"
    assert copy.deepcopy(m).note == "mine"


def test_a_dataclass_can_extend_a_record():
    @dataclasses.dataclass(frozen=True)
    class Tagged(MapInfo):
        tag: str = ""

    info = Tagged(constants.MapType.ARRAY, *range(1, 6), "m", *range(6, 14), tag="t")
    assert info.tag == "t" and info.name == "m" and repr(info).startswith("test_a_dataclass")
    assert [f.name for f in dataclasses.fields(info)][-2:] == ["map_extra", "tag"]


ENUMS = [constants.MapType, constants.ProgType, constants.AttachType, constants.MapFlags,
         constants.UpdateFlags, constants.LinkType, constants.PerfEventType, constants.PinType,
         btf.Kind, btf.IntEncoding, btf.FuncLinkage, btf.VarLinkage, btf.CoreReloKind, spec.RelocKind]


def _plain(text: str, name: str) -> str:
    return text.replace(name, "E")


@pytest.mark.parametrize("E", ENUMS, ids=lambda e: e.__name__)
def test_enum_equals_one_made_by_a_class_statement(E):
    base = enum.IntFlag if issubclass(E, enum.IntFlag) else enum.IntEnum
    R = base(E.__name__, [(m.name, m.value) for m in E.__members__.values()], module=E.__module__)
    assert type(E) is type(R) and E.__mro__[1:] == R.__mro__[1:]
    assert [(m.name, m.value) for m in E] == [(m.name, m.value) for m in R]
    assert list(E.__members__) == list(R.__members__) and len(E) == len(R)
    for m, r in zip(E, R):
        assert _plain(repr(m), E.__name__) == _plain(repr(r), E.__name__)
        assert str(m) == str(r) and format(m) == format(r) and f"{m:>5}" == f"{r:>5}"
        assert hash(m) == hash(r) and m == r.value and isinstance(m, int)
        assert E(m.value) is m and E[m.name] is m and getattr(E, m.name) is m
        assert pickle.loads(pickle.dumps(m)) is m and copy.deepcopy(m) is m
    if base is enum.IntFlag:
        bits = [m.value for m in E]
        every = sum(bits)
        for v in {0, every, every | 1 << 30, 1 << 30, *bits, *(a | b for a in bits for b in bits)}:
            assert _plain(repr(E(v)), E.__name__) == _plain(repr(R(v)), E.__name__), v
            assert _plain(repr(~E(v)), E.__name__) == _plain(repr(~R(v)), E.__name__), v
            assert [x.value for x in E(v)] == [x.value for x in R(v)]
    else:
        with pytest.raises(ValueError, match="999 is not a valid"):
            E(999)
        with pytest.raises(KeyError):
            E["NOT_A_MEMBER"]


def test_enum_docstrings_and_members_with_behaviour():
    assert constants.ProgType.__doc__ == "``enum bpf_prog_type``."
    assert constants.LinkType.TCX.is_bpf_link and not constants.LinkType.TC_NETLINK.is_bpf_link
    assert repr(constants.MapFlags(3)) == "<MapFlags.NO_PREALLOC|NO_COMMON_LRU: 3>"
    assert constants.BPF_NOEXIST is constants.UpdateFlags.NOEXIST
    assert constants.ProgType.XDP in constants.ProgType and 6 in constants.ProgType.__members__.values()


def test_lazy_pattern_and_module_are_what_they_stand_for():
    import re

    from bpfload._lazy import Module, Pattern

    p = Pattern(r"(?m)^(\d+): x$")
    text = "1: x\n2: y\n30: x"
    assert [m.group(1) for m in p.finditer(text)] == [m.group(1) for m in re.finditer(r"^(\d+): x$", text, re.M)]
    assert p.sub("-", text) == re.compile(r"(?m)^(\d+): x$").sub("-", text)
    c = Module("copy")
    assert c.deepcopy is copy.deepcopy and c.copy is copy.copy
    with pytest.raises(AttributeError):
        c.not_a_function


@pytest.mark.parametrize("name", ["counter", "a-b.c/d e", "ünïcode_map_name", "x" * 20, "", None, "ok.name_9"])
def test_kernel_name_equals_the_regular_expression(name):
    import re

    from bpfload.maps import kernel_name
    assert kernel_name(name) == re.sub(r"[^A-Za-z0-9_.]", "_", name or "")[:15]
