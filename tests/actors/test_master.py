"""StrategyMaster with real spawned processes: ordering, restarts, give-up, cleanup."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator

import numpy as np
import pytest

from wiresens.actors.actor import ActorSpec, run_inline
from wiresens.actors.lifecycle import ActorState
from wiresens.actors.master import StrategyMaster
from wiresens.actors.status import StatusBoard
from wiresens.shm import Ring, list_segments
from wiresens.shm.doorbell import doorbell_pid, stale_doorbells
from wiresens.testing.toy_actors import SEQ_DTYPE, CrashingActor, EchoActor, SourceActor


@pytest.fixture
def prefix() -> Iterator[str]:
    p = f"wstest.{uuid.uuid4().hex[:8]}"
    yield p
    for info in list_segments(p):
        os.unlink(f"/dev/shm/{info.name}")


def _wait(cond, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


@pytest.mark.parametrize("host", ["inline", "process"])
def test_echo_pipeline_restarts_after_kill(prefix: str, host: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    count = 20_000
    a = Ring.create(f"{prefix}.a", SEQ_DTYPE, 1024)
    b = Ring.create(f"{prefix}.b", SEQ_DTYPE, 32768)
    out = b.consumer()
    got = np.zeros(count * 2, SEQ_DTYPE)
    n = 0
    if host == "inline":
        src = SourceActor(f"{prefix}.a", count)
        echo = EchoActor(f"{prefix}.a", f"{prefix}.b")
        src.on_start()
        echo.on_start()
        while n < count:
            src.do_work()
            echo.do_work()
            n += out.read_into(got[n:])
    else:
        specs = [
            ActorSpec(
                name="source",
                group="feed",
                factory="wiresens.testing.toy_actors:SourceActor",
                kwargs={"out": f"{prefix}.a", "count": count},
                idle="yield",
            ),
            ActorSpec(
                name="echo",
                group="policy",
                factory="wiresens.testing.toy_actors:EchoActor",
                kwargs={
                    "inp": f"{prefix}.a",
                    "out": f"{prefix}.b",
                    "die_at": count // 2,
                    "marker": str(tmp_path / "died"),
                },
                idle="block",
            ),
        ]
        master = StrategyMaster(prefix, specs)
        master.start()
        try:
            deadline = time.monotonic() + 60
            while n < count and time.monotonic() < deadline:
                master.poll()
                n += out.read_into(got[n:])
                time.sleep(0.001)
            rows = {r["name"]: r for r in master.status()}
            assert rows["echo"]["restarts"] == 1, master.events
            assert rows["echo"]["state"] == "RUNNING"
            # The killed echo was blocking on its doorbell and could not unlink it: the
            # master removes what a process killed by a signal left in /dev/shm.
            dead = int((tmp_path / "died").read_text())
            left = [b for b in stale_doorbells() if doorbell_pid(b) == dead]
            assert left == [], f"doorbells of the killed pid {dead} left behind"
        finally:
            master.stop()
            master.close()
    seqs = got["seq"][:n]
    # Nothing lost, in order; the killed echo re-sends at most the batch it had not released.
    uniq = np.unique(seqs)
    assert len(uniq) == count and uniq[0] == 0 and uniq[-1] == count - 1
    assert n - count <= 64
    a.unlink()
    b.unlink()


def test_crashing_actor_gives_up_and_others_keep_running(prefix: str) -> None:
    specs = [
        ActorSpec(
            name="crash",
            group="policy",
            factory="wiresens.testing.toy_actors:CrashingActor",
            kwargs={"after": 5},
        ),
        ActorSpec(
            name="steady",
            group="feed",
            factory="wiresens.testing.toy_actors:CrashingActor",
            kwargs={"after": 10**12},
            idle="yield",
        ),
    ]
    master = StrategyMaster(prefix, specs, max_restarts=2, restart_window=60)
    master.start()
    try:
        _wait(lambda: (master.poll() or True) and master.handles[0].gave_up)
        rows = {r["name"]: r for r in master.status()}
        assert rows["crash"]["state"] == "GAVE_UP"
        assert rows["crash"]["restarts"] == 2
        assert rows["steady"]["state"] == "RUNNING"
        reader = StatusBoard.attach(prefix)
        rec = reader.read(1)
        assert rec is not None and ActorState(int(rec["state"])) is ActorState.RUNNING
        reader.close()
    finally:
        master.stop()
        master.close()
    assert list_segments(prefix) == []


def test_run_inline_reports_failure() -> None:
    assert run_inline(CrashingActor(after=3), max_cycles=100) == 1
