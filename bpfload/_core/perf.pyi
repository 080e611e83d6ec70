"""Type stub for the compiled ``bpfload._core.perf`` (perf_event_open, its ioctls, mount)."""
import os
from typing import Optional, Union

from typing_extensions import TypeAlias

from bpfload._core.syscall import FD

_Path: TypeAlias = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]

def build_perf_event_attr(type: int, config: int = 0, *, config1: int = 0, config2: int = 0,
                          name: Union[str, bytes, None] = None, sample_period: int = 0,
                          sample_freq: int = 0, sample_type: int = 0, wakeup_events: int = 0,
                          disabled: bool = False) -> bytes: ...
def perf_event_open(type: int, config: int = 0, *, pid: int = -1, cpu: int = -1, group_fd: int = -1,
                    config1: int = 0, config2: int = 0, name: Union[str, bytes, None] = None,
                    sample_period: int = 0, sample_freq: int = 0, sample_type: int = 0,
                    wakeup_events: int = 0, disabled: bool = False, target: Optional[str] = None,
                    what: Optional[str] = None) -> FD: ...
def perf_set_bpf(pfd: int, prog_fd: int, target: Optional[str] = None) -> None: ...
def perf_enable(pfd: int, target: Optional[str] = None) -> None: ...
def perf_disable(pfd: int, target: Optional[str] = None) -> None: ...
def mount(source: _Path, target: _Path, fstype: _Path, flags: int = 0) -> None: ...
def umount(target: _Path, flags: int = 0) -> None: ...
