"""Type stub for the compiled ``bpfload._core.btf`` (pure-Python twins in ``bpfload.btf.format``)."""
import array
from typing import List, Optional, Tuple

from typing_extensions import Buffer

__all__ = ["scan", "check", "of_kind"]

def scan(buf: Buffer) -> "array.array[int]": ...
def check(types: Buffer, offsets: Buffer, strings: Buffer, cache: List[object], start_id: int,
          ntypes: int, name_limit: int) -> Optional[Tuple[int, str, int, object]]: ...
def of_kind(types: Buffer, offsets: Buffer, kind: int) -> List[int]: ...
