"""Type stub for the compiled ``bpfload._core.corepatch`` (pure-Python twin: ``TargetBtf(compiled=False)``)."""
from typing import List, Sequence, Tuple

from typing_extensions import Buffer

__all__ = ["EssentialIndex", "essential_len"]

def essential_len(name: str | bytes) -> int: ...

class EssentialIndex:
    start_id: int
    named: int
    def __init__(self, types: Buffer, offsets: Buffer,
                 segments: Sequence[Tuple[int, Buffer]], start_id: int) -> None: ...
    def lookup(self, name: str) -> List[int]: ...
    def __len__(self) -> int: ...
