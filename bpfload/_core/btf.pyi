"""Type stub for the compiled ``bpfload._core.btf`` (pure-Python twins in ``bpfload.btf.format``)."""
import array
from typing import Any, Callable, Dict, List, Optional, Tuple

from typing_extensions import Buffer

__all__ = ["scan", "check", "of_kind", "ext_index", "ext_records"]

def scan(buf: Buffer) -> "array.array[int]": ...
def check(types: Buffer, offsets: Buffer, strings: Buffer, cache: List[object], start_id: int,
          ntypes: int, name_limit: int) -> Optional[Tuple[int, str, int, object]]: ...
def of_kind(types: Buffer, offsets: Buffer, kind: int) -> List[int]: ...
def ext_index(sub: Buffer, rec_size: int, strings: Buffer, str_fields: int
              ) -> Tuple[List[Tuple[int, int, int]], Optional[Tuple[str, int, int]]]: ...
def ext_records(sub: Buffer, rec_size: int, index: List[Tuple[Any, int, int]], what: int,
                cls: Callable[..., Any], strings: Buffer, limit: int, kinds: Dict[int, Any]
                ) -> Dict[Any, List[Any]]: ...
