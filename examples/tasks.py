#!/usr/bin/env python3
"""A tiny ``ps``: list processes with a BPF task iterator.

    sudo python3 examples/tasks.py [OBJECT]

Loads the ``ps_task`` program (``iter/task``) from bpf/attach_iter.bpf.o
(or OBJECT), attaches it, reads one pass of the iterator and prints
``PID PPID COMM`` sorted by pid.  The kernel walks its task list and the
program formats each thread-group leader with ``BPF_SEQ_PRINTF``; nothing
is read from /proc.  Needs root (or CAP_BPF + CAP_PERFMON) and Linux 5.8+.
"""
import os
import pathlib
import sys
from typing import List, Tuple, Union

import bpfload

DEFAULT = pathlib.Path(__file__).resolve().parent.parent / "bpf" / "attach_iter.bpf.o"


def tasks(path: Union[str, "os.PathLike[str]"] = DEFAULT) -> List[Tuple[int, int, str]]:
    """-> [(pid, ppid, comm)] for every process, from one pass of the iterator."""
    obj = bpfload.BpfObject.open(path)
    for name, prog in obj.spec.programs.items():   # load only the program we use
        prog.autoload = name == "ps_task"
    with obj.load():
        with obj.programs["ps_task"].attach_iter() as link:
            text = link.read().decode(errors="replace")
    rows = []
    for line in text.splitlines():
        pid, ppid, comm = line.split(" ", 2)
        rows.append((int(pid), int(ppid), comm))
    return sorted(rows)


def main(argv: List[str]) -> int:
    rows = tasks(argv[1] if len(argv) > 1 else DEFAULT)
    print(f"{'PID':>7} {'PPID':>7} COMM")
    for pid, ppid, comm in rows:
        print(f"{pid:>7} {ppid:>7} {comm}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
