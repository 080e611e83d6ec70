"""Compiled core: ``syscall`` (the only code calling bpf(2)) and ``insn`` (compute only)."""
