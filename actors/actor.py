"""The actor template and the one loop that drives every actor.

An actor overrides hooks; the runner owns the loop, the idle strategy, CPU
pinning, signals and heartbeats (Agrona's agent / duty-cycle model)::

    on_start()          once; raising marks the actor FAILED (the master restarts it)
    do_work() -> int    one duty cycle; returns the work done (0 = idle). Raising
                        calls on_failure(exc) and ends the run as FAILED
    on_stop()           once on a clean stop (SIGTERM/SIGINT or request_stop());
                        raising marks the actor FAILED, the stop still completes
    on_failure(exc)     last words after a hook raised; must not raise

Hosts: :func:`run_inline` drives an actor in the calling process (tests, the
back-tester's style), :func:`run_process` is the body of a spawned actor process.
"""

from __future__ import annotations

import importlib
import os
import signal
import time
import traceback
from collections.abc import Callable
from typing import Any

from wiresens.shm import Consumer, IdleStrategy, make_idle

from .lifecycle import ActorState
from .status import StatusWriter

__all__ = ["Actor", "ActorSpec", "pin_cpu", "run_inline", "run_loop", "run_process"]

HEARTBEAT_NS = 100_000_000


class Actor:
    """Base class: override the hooks. Subclasses keep business logic in domain modules."""

    name: str = "actor"

    def on_start(self) -> None:
        """Open rings and sockets. Raising marks the actor FAILED."""

    def do_work(self) -> int:
        """One duty cycle; return the amount of work done (0 when there was none)."""
        return 0

    def on_stop(self) -> None:
        """Finish cleanly (cancel, flush, close)."""

    def on_failure(self, exc: BaseException) -> None:
        """Called after a hook raised, before the process exits. Must not raise."""

    def idle_consumers(self) -> list[Consumer]:
        """The ring consumers a blocking idle strategy should sleep on."""
        return []

    def run(self, should_stop: Callable[[], bool], status: StatusWriter | None, idle: str) -> bool:
        """Own the loop instead of the runner (an I/O actor on an event loop, like the feed).

        Return False (the default) to have the runner drive ``do_work``; an override runs
        until ``should_stop()`` and returns True. It must publish heartbeats itself.
        """
        return False


class ActorSpec(dict[str, Any]):
    """A picklable description of an actor: ``factory`` ("module:callable") and its kwargs."""


def pin_cpu(cpu: int | None) -> None:
    if cpu is None or cpu < 0:
        return
    os.sched_setaffinity(0, {cpu})


def run_loop(
    actor: Actor,
    idle: IdleStrategy,
    status: StatusWriter | None,
    should_stop: Callable[[], bool],
    max_cycles: int = -1,
) -> tuple[int, int]:
    """Drive ``do_work`` until ``should_stop()`` (checked every 64 cycles) or ``max_cycles``."""
    cycles = 0
    total = 0
    last_hb = time.monotonic_ns()
    do_work = actor.do_work
    idle_fn = idle.idle
    while True:
        work = do_work()
        total += work
        idle_fn(work)
        cycles += 1
        if cycles == max_cycles:
            break
        if not cycles & 63:
            if should_stop():
                break
            now = time.monotonic_ns()
            if status is not None and now - last_hb >= HEARTBEAT_NS:
                last_hb = now
                status.heartbeat(cycles, total)
    if status is not None:
        status.heartbeat(cycles, total)
    return cycles, total


def _run(
    actor: Actor,
    idle_name: str,
    status: StatusWriter | None,
    should_stop: Callable[[], bool],
    max_cycles: int,
    cpu: int,
) -> int:
    if status is not None:
        status.state(ActorState.STARTING, pid=os.getpid(), cpu=cpu, started_ns=time.time_ns())
    try:
        actor.on_start()
        if status is not None:
            status.state(ActorState.RUNNING)
        if not actor.run(should_stop, status, idle_name):
            idle = make_idle(idle_name, actor.idle_consumers())
            try:
                run_loop(actor, idle, status, should_stop, max_cycles)
            finally:
                idle.close()
        if status is not None:
            status.state(ActorState.STOPPING)
        actor.on_stop()
    except Exception as exc:
        try:
            actor.on_failure(exc)
        except Exception:  # on_failure must not raise; its failure must not hide the first
            traceback.print_exc()
        if status is not None:
            status.set(state=int(ActorState.FAILED), errors=int(status.rec[0]["errors"]) + 1)
        traceback.print_exc()
        return 1
    if status is not None:
        status.state(ActorState.STOPPED)
    return 0


def run_inline(
    actor: Actor, idle: str = "spin", max_cycles: int = 1000, status: StatusWriter | None = None
) -> int:
    """Run ``actor`` in this process for ``max_cycles`` duty cycles; returns 0 or 1 (failed)."""
    return _run(actor, idle, status, lambda: False, max_cycles, -1)


def _load(factory: str) -> Callable[..., Actor]:
    module, _, attr = factory.partition(":")
    obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj  # type: ignore[return-value]


def run_process(spec: ActorSpec) -> int:
    """Body of a spawned actor process: pin, build the actor, loop until SIGTERM/SIGINT."""
    stop = [False]

    def _on_signal(signum: int, frame: object) -> None:
        stop[0] = True

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    cpu = int(spec.get("cpu", -1))
    pin_cpu(cpu)
    if spec.get("log"):
        from wiresens.logging import configure_logging

        configure_logging(**spec["log"])
    status: StatusWriter | None = None
    if spec.get("status_prefix") is not None:
        from .status import StatusBoard

        board = StatusBoard.attach(spec["status_prefix"])
        status = board.writer(int(spec["index"]))
    actor = _load(spec["factory"])(**spec.get("kwargs", {}))
    return _run(actor, spec.get("idle", "spin"), status, lambda: stop[0], -1, cpu)
