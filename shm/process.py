"""Process identity that survives pid reuse.

A pid alone can be recycled by the kernel after its process dies; the pair
(pid, start time in clock ticks since boot, field 22 of ``/proc/PID/stat``)
names one process for the life of the machine.
"""

from __future__ import annotations

import os

__all__ = ["ProcessId", "process_alive", "process_start_ticks", "self_id"]

ProcessId = tuple[int, int]


def process_start_ticks(pid: int) -> int:
    """Return the start time of ``pid`` in clock ticks since boot, or -1 if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return -1
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = stat[stat.rindex(b")") + 2 :].split()
    state = fields[0]
    if state in (b"Z", b"X"):
        return -1
    return int(fields[19])


def self_id() -> ProcessId:
    """The (pid, start ticks) of the calling process."""
    pid = os.getpid()
    return pid, process_start_ticks(pid)


def process_alive(pid: int, start_ticks: int) -> bool:
    """True when the process that had ``pid`` and started at ``start_ticks`` still runs."""
    if pid <= 0:
        return False
    ticks = process_start_ticks(pid)
    return ticks >= 0 and (start_ticks <= 0 or ticks == start_ticks)
