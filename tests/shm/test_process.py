"""Process identity (pid, start ticks): liveness that survives pid reuse and odd names."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from wiresens.shm import process_alive, self_id
from wiresens.shm.process import process_start_ticks


def _now_ticks() -> int:
    # /proc/uptime has two decimals: rounded, 17948.51 s is 1794851 ticks, not the float
    # 1794850.9999999998 that failed a test started in that very tick.
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    return round(uptime * os.sysconf("SC_CLK_TCK"))


def test_self_identity() -> None:
    pid, start = self_id()
    assert pid == os.getpid()
    assert 0 < start <= _now_ticks()
    assert process_alive(pid, start)
    assert process_alive(pid, 0)  # unknown start time: the pid alone decides
    assert not process_alive(pid, start + 1)  # same pid, other start: a recycled pid
    assert not process_alive(0, start)
    assert not process_alive(-1, 0)


def test_zombie_and_reaped_children_are_dead() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    start = process_start_ticks(child.pid)
    # Not yet reaped, the exited child is a zombie: it must count as dead.
    deadline = time.monotonic() + 30
    while process_start_ticks(child.pid) != -1 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert Path(f"/proc/{child.pid}").exists()
    assert not process_alive(child.pid, start)
    child.wait()
    assert process_start_ticks(child.pid) == -1


def test_command_names_with_spaces_and_parentheses(tmp_path: Path) -> None:
    """/proc/PID/stat field 2 is the raw command name; it may contain ') ' itself."""
    odd = tmp_path / "we) ird (x"
    odd.symlink_to("/bin/sleep")
    child = subprocess.Popen([str(odd), "30"])
    try:
        deadline = time.monotonic() + 30
        while b"ird" not in Path(f"/proc/{child.pid}/comm").read_bytes():
            assert time.monotonic() < deadline
            time.sleep(0.005)
        ticks = process_start_ticks(child.pid)
        assert self_id()[1] <= ticks <= _now_ticks()
        assert process_alive(child.pid, ticks)
    finally:
        child.kill()
        child.wait()
    assert not process_alive(child.pid, ticks)
