"""Idle strategies and doorbells: the sleep/wake handshake between a consumer and producers."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import numpy as np
import pytest

from wiresens.shm import BlockIdle, Doorbell, Ring, SpinIdle, YieldIdle, make_idle
from wiresens.shm.doorbell import doorbell_name, doorbell_pid, remove_doorbell, stale_doorbells
from wiresens.shm.ring import W_DOORBELL, W_WAITING


def _sem_path(bell: Doorbell) -> str:
    # Linux keeps POSIX semaphores as /dev/shm/sem.<name without the slash>.
    return "/dev/shm/sem." + doorbell_name(bell.id).lstrip("/")


@pytest.fixture
def ring(shm_prefix: str) -> Iterator[Ring]:
    with Ring.create(f"{shm_prefix}idle", np.dtype("<i8"), 8) as r:
        yield r


def test_make_idle_by_name(ring: Ring) -> None:
    cons = ring.consumer()
    assert isinstance(make_idle("spin"), SpinIdle)
    assert isinstance(make_idle("yield", spins=3), YieldIdle)
    block = make_idle("block", [cons])
    assert isinstance(block, BlockIdle)
    block.close()
    with pytest.raises(ValueError, match="'sleep' is not one of spin, yield, block"):
        make_idle("sleep")


def test_doorbell_posts_coalesce_and_close_unlinks() -> None:
    bell = Doorbell.create()
    try:
        assert os.path.exists(_sem_path(bell))
        other = Doorbell.open(bell.id)
        assert other is not None
        for _ in range(5):
            other.ring()
        # A sleeper needs one pending post; the count never runs away.
        assert bell.wait(0) and bell.wait(0)
        assert not bell.wait(0)
        other.close()
        assert os.path.exists(_sem_path(bell))  # only the owner unlinks
    finally:
        bell.close()
    assert not os.path.exists(_sem_path(bell))
    assert Doorbell.open(bell.id) is None


def test_block_idle_sleeps_after_spins_and_times_out(ring: Ring) -> None:
    cons = ring.consumer()
    idle = BlockIdle([cons], spins=5, timeout=0.001)
    try:
        assert ring.words[W_DOORBELL] == idle.doorbell.id
        for _ in range(5):
            idle.idle(0)
        assert idle.sleeps == 0  # still spinning
        idle.idle(0)
        assert (idle.sleeps, idle.wakeups) == (1, 0)  # nobody rang: the timeout ended it
        assert ring.words[W_WAITING] == 0  # withdrawn after the sleep
        idle.idle(1)  # work resets the spin count
        idle.idle(0)
        assert idle.sleeps == 1
    finally:
        idle.close()
    assert ring.words[W_DOORBELL] == 0


def test_producer_rings_a_waiting_consumer(ring: Ring) -> None:
    cons = ring.consumer()
    prod = ring.producer()
    idle = BlockIdle([cons], spins=0, timeout=0.001)
    try:
        assert cons.set_waiting()
        assert ring.words[W_WAITING] == 1
        assert prod.try_write(np.int64(7).tobytes())
        assert ring.words[W_WAITING] == 0  # the producer cleared it and posted
        assert idle.doorbell.wait(0)
        # With a record pending, announcing a sleep is withdrawn at once.
        assert not cons.set_waiting()
        assert ring.words[W_WAITING] == 0
        idle.idle(0)
        assert idle.sleeps == 0
        # No waiting flag, no post: a busy consumer costs the producer one load.
        assert prod.try_write(np.int64(8).tobytes())
        assert not idle.doorbell.wait(0)
    finally:
        prod.close()
        idle.close()


def test_block_idle_over_several_rings(shm_prefix: str) -> None:
    """One doorbell serves every ring of a consumer; data on any ring cancels the sleep."""
    a = Ring.create(f"{shm_prefix}a", np.dtype("<i8"), 4)
    b = Ring.create(f"{shm_prefix}b", np.dtype("<i8"), 4)
    ca, cb = a.consumer(), b.consumer()
    idle = BlockIdle([ca], spins=0)
    idle.add(cb)
    try:
        assert a.words[W_DOORBELL] == b.words[W_DOORBELL] == idle.doorbell.id
        pb = b.producer()
        pb.try_write(np.int64(1).tobytes())
        idle.idle(0)
        assert idle.sleeps == 0  # b had a record: no sleep, and a's flag was withdrawn
        assert a.words[W_WAITING] == 0 and b.words[W_WAITING] == 0
        pb.close()
    finally:
        idle.close()
        a.close()
        b.close()


def test_a_killed_consumers_doorbell_is_found_stale_and_removed() -> None:
    code = (
        "import os, sys\n"
        "from wiresens.shm import Doorbell\n"
        "bell = Doorbell.create()\n"
        "print(bell.id, flush=True)\n"
        "os._exit(0)  # like SIGKILL: no close(), the semaphore stays\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    bell_id = int(out.stdout)
    mine = Doorbell.create()
    try:
        assert doorbell_pid(mine.id) == os.getpid()
        assert os.path.exists("/dev/shm/sem." + doorbell_name(bell_id).lstrip("/"))
        stale = stale_doorbells()
        assert bell_id in stale
        assert mine.id not in stale  # its creator (this process) is alive
        assert remove_doorbell(bell_id)
        assert not remove_doorbell(bell_id)
        assert bell_id not in stale_doorbells()
    finally:
        mine.close()
