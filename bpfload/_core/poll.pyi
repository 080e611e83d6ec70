"""Type stub for the compiled ``bpfload._core.poll`` (map snapshots, deltas, rates)."""
from typing import Any, Callable, Dict, Tuple

from typing_extensions import Buffer

def monotonic_ns() -> int: ...

class PollerCore:
    key_size: int
    capacity: int
    fields: int
    sum_cpus: bool
    percpu: bool
    ncpus: int
    deltas_buf: bytearray
    rates_buf: bytearray
    generation: int
    new_keys: int
    removed_keys: int
    reordered: int
    def _setup(self, map: Any, sum_cpus: bool) -> None: ...
    def _buffers(self) -> Tuple[bytearray, bytearray]: ...
    @property
    def count(self) -> int: ...
    @property
    def timestamp_ns(self) -> int: ...
    @property
    def elapsed_ns(self) -> int: ...
    def _take(self) -> Tuple[int, bytearray, bytearray, bytearray, bytearray]: ...
    def _close(self) -> None: ...
    @property
    def closed(self) -> bool: ...

def to_dict(keys: Buffer, values: Buffer, deltas: Buffer, rates: Buffer, count: int,
            key_size: int, fields: int, int_keys: bool,
            factory: Callable[[Any, Any, Any], Any]) -> Dict[Any, Any]: ...
