"""Type stub for the compiled ``bpfload._core.insn`` (twin: ``bpfload._pyinsn``)."""
from array import array
from typing import Any, Iterable, List, Mapping, Sequence, Tuple

from typing_extensions import Buffer

from bpfload.spec import FunctionSpec, Reloc

__all__ = ["INSN_SIZE", "LD_IMM64", "CALL", "PSEUDO_MAP_FD", "PSEUDO_MAP_VALUE", "PSEUDO_CALL",
           "PSEUDO_FUNC", "KIND_MAP", "KIND_DATA", "KIND_CALL", "KIND_FUNC_ADDR", "KIND_EXTERN",
           "RECORD_INTS", "decode", "find_ld_imm64", "LinkedProgram", "link", "build_relocs",
           "patch_maps", "apply", "pack_ext_records"]

INSN_SIZE: int
LD_IMM64: int
CALL: int
PSEUDO_MAP_FD: int
PSEUDO_MAP_VALUE: int
PSEUDO_CALL: int
PSEUDO_FUNC: int
KIND_MAP: int
KIND_DATA: int
KIND_CALL: int
KIND_FUNC_ADDR: int
KIND_EXTERN: int
RECORD_INTS: int

def decode(insns: Buffer) -> List[Tuple[int, int, int, int, int]]: ...
def find_ld_imm64(insns: Buffer) -> List[int]: ...

class LinkedProgram:
    name: str
    insns: bytearray
    layout: List[Tuple[str, int]]
    #: MAP, DATA and EXTERN relocations with ``insn`` absolute
    relocs: List[Reloc]
    def __init__(self, name: str, insns: bytearray, layout: List[Tuple[str, int]],
                 relocs: List[Reloc]) -> None: ...
    @property
    def insn_count(self) -> int: ...
    def __eq__(self, other: object) -> bool: ...
    __hash__: None  # type: ignore[assignment]

def link(entry_name: str, functions: Mapping[str, FunctionSpec]) -> LinkedProgram: ...
def build_relocs(relocs: Iterable[Reloc], fd_of: Mapping[str, int]) -> "array[int]": ...
def patch_maps(insns: Buffer, relocs: Buffer) -> int: ...
def apply(linked: LinkedProgram, fd_of: Mapping[str, int]) -> int: ...
def pack_ext_records(records: Sequence[Any], offset: int, start: int, width: int, out: "array[int]",
                     last: int = ...) -> Tuple[int, bool]: ...
