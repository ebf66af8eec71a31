"""StrategyMaster: spawns, pins, watches, restarts and stops the node's actor processes.

The master owns the node's shared memory: it reclaims stale segments of its
prefix at start (their creator is dead), refuses to start over a live node,
creates the status segment, and unlinks everything it created at a clean stop.

Restarts: a process that exits non-zero (or is killed) while the node runs is
restarted after a backoff (0.1 s doubling to 5 s). More than ``max_restarts``
failures within ``restart_window`` seconds leave the actor GAVE_UP and reported;
the node keeps running without it (a policy crash never takes the node down).

Stop order: actors stop group by group in ``stop_order`` (policies first, so
they stop quoting; then execution, which cancels open orders; then the feed;
the sidecar last, so it drains every tap); each group gets ``stop_timeout``
seconds after SIGTERM before SIGKILL.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from typing import Any

from wiresens.errors import ConfigError
from wiresens.shm import list_segments, unlink
from wiresens.shm.doorbell import remove_doorbells_of

from .actor import ActorSpec, run_process
from .lifecycle import ActorState
from .status import StatusBoard, status_segment_name

__all__ = ["ActorHandle", "StrategyMaster"]

DEFAULT_STOP_ORDER = ("policy", "execution", "feed", "sidecar", "other")


def _child(spec: ActorSpec) -> None:
    sys.exit(run_process(spec))


@dataclass
class ActorHandle:
    """The master's view of one actor."""

    index: int
    spec: ActorSpec
    process: BaseProcess | None = None
    restarts: int = 0
    failures: list[float] = field(default_factory=list)
    next_start: float = 0.0
    gave_up: bool = False
    stopped: bool = False
    restart_requested: bool = False

    @property
    def name(self) -> str:
        return str(self.spec["name"])

    @property
    def group(self) -> str:
        return str(self.spec.get("group", "other"))


class StrategyMaster:
    """Supervise the actors described by ``specs`` (each an :class:`ActorSpec`)."""

    def __init__(
        self,
        prefix: str,
        specs: list[ActorSpec],
        *,
        max_restarts: int = 5,
        restart_window: float = 60.0,
        stop_timeout: float = 10.0,
        stop_order: tuple[str, ...] = DEFAULT_STOP_ORDER,
        spare: int = 0,
    ) -> None:
        self.prefix = prefix
        # status-board rows kept free for actors added at run time (add_actor)
        self.spare = spare
        self.max_restarts = max_restarts
        self.restart_window = restart_window
        self.stop_timeout = stop_timeout
        self.stop_order = stop_order
        self.handles = [ActorHandle(i, s) for i, s in enumerate(specs)]
        self._ctx = mp.get_context("spawn")
        self.board: StatusBoard | None = None
        self.owned_segments: list[str] = []
        self.events: list[str] = []

    # -- start -----------------------------------------------------------------------
    def reclaim_stale(self) -> list[str]:
        """Remove segments of this prefix whose creator died (a killed node)."""
        removed = []
        for info in list_segments(self.prefix + "."):
            if not info.creator_alive and unlink(info.name):
                removed.append(info.name)
        return removed

    def start(self) -> None:
        stale = self.reclaim_stale()
        if stale:
            self.events.append(f"reclaimed {len(stale)} stale segment(s) of a previous node")
        self.board = StatusBoard.create(self.prefix, max(1, len(self.handles) + self.spare))
        self.owned_segments.append(status_segment_name(self.prefix))
        for h in self.handles:
            h.spec["status_prefix"] = self.prefix
            h.spec["index"] = h.index
            w = self.board.writer(h.index)
            w.set(
                state=int(ActorState.NEW), name=h.name.encode()[:24], cpu=int(h.spec.get("cpu", -1))
            )
        for group in reversed(self.stop_order):
            for h in self.handles:
                if h.group == group or (group == "other" and h.group not in self.stop_order):
                    self._spawn(h)

    def _spawn(self, h: ActorHandle) -> None:
        p = self._ctx.Process(
            target=_child, args=(h.spec,), name=f"wiresens-{h.name}", daemon=False
        )
        p.start()
        h.process = p
        h.stopped = False

    # -- supervise ---------------------------------------------------------------------
    def poll(self) -> int:
        """Reap exited actors and restart them per the policy; returns how many exited."""
        assert self.board is not None
        now = time.monotonic()
        exited = 0
        for h in self.handles:
            p = h.process
            if p is not None and not p.is_alive():
                p.join(0)
                exited += 1
                code = p.exitcode
                if code is not None and code < 0 and p.pid is not None:
                    # Killed by a signal: it could not unlink its doorbells.
                    remove_doorbells_of(p.pid)
                h.process = None
                if h.stopped:
                    continue
                if h.restart_requested:
                    # An operator's restart (e.g. new params): no failure, no backoff.
                    h.restart_requested = False
                    h.restarts += 1
                    self.board.writer(h.index).set(restarts=h.restarts)
                    self._spawn(h)
                    continue
                h.failures = [t for t in h.failures if now - t < self.restart_window] + [now]
                w = self.board.writer(h.index)
                w.set(state=int(ActorState.FAILED), pid=0)
                if len(h.failures) > self.max_restarts:
                    h.gave_up = True
                    w.set(state=int(ActorState.GAVE_UP))
                    self.events.append(
                        f"{h.name}: exited with {code}; gave up after {len(h.failures)} failures"
                    )
                    continue
                backoff = min(0.1 * 2 ** (len(h.failures) - 1), 5.0)
                h.next_start = now + backoff
                w.set(state=int(ActorState.RESTARTING))
                self.events.append(f"{h.name}: exited with {code}; restarting in {backoff:.1f}s")
            elif (
                p is None
                and not h.gave_up
                and not h.stopped
                and h.next_start
                and now >= h.next_start
            ):
                h.restarts += 1
                h.next_start = 0.0
                self.board.writer(h.index).set(restarts=h.restarts)
                self._spawn(h)
        return exited

    def status(self) -> list[dict[str, Any]]:
        assert self.board is not None
        out = []
        now = time.time_ns()
        for h in self.handles:
            rec = self.board.read(h.index)
            row: dict[str, Any] = {"name": h.name, "group": h.group}
            if rec is not None:
                row.update(
                    pid=int(rec["pid"]),
                    cpu=int(rec["cpu"]),
                    state=ActorState(int(rec["state"])).name,
                    restarts=int(rec["restarts"]),
                    heartbeat_age_ms=round((now - int(rec["ts_pub"])) / 1e6, 1),
                    cycles=int(rec["cycles"]),
                    work=int(rec["work"]),
                )
            out.append(row)
        return out

    # -- operator actions ---------------------------------------------------------------
    def handle(self, name: str) -> ActorHandle | None:
        return next((h for h in self.handles if h.name == name), None)

    def restart_actor(self, name: str, kwargs: dict[str, Any] | None = None) -> bool:
        """Restart one actor (with updated kwargs): SIGTERM now, respawned by :meth:`poll`.
        A stopped or given-up actor is started again."""
        h = self.handle(name)
        if h is None:
            return False
        if kwargs:
            h.spec["kwargs"] = {**h.spec.get("kwargs", {}), **kwargs}
        h.gave_up = False
        h.failures = []
        if h.process is not None and h.process.is_alive() and h.process.pid:
            h.restart_requested = True
            h.stopped = False
            os.kill(h.process.pid, signal.SIGTERM)
        else:
            h.stopped = False
            self._spawn(h)
        self.events.append(f"{name}: restarted by request")
        return True

    def add_actor(self, spec: ActorSpec) -> ActorHandle:
        """Start one more actor on a spare status row (the node must be started).

        Raises
        ------
        ConfigError
            An actor of that name exists, or every spare row is taken.
        """
        assert self.board is not None
        if self.handle(str(spec["name"])) is not None:
            raise ConfigError(f"an actor named {spec['name']!r} already runs in this node")
        used = {h.index for h in self.handles}
        free = [i for i in range(self.board.slots.count) if i not in used]
        if not free:
            raise ConfigError(
                f"no spare actor slot left ({self.spare} kept at start): remove an actor first"
            )
        h = ActorHandle(free[0], spec)
        spec["status_prefix"] = self.prefix
        spec["index"] = h.index
        self.board.writer(h.index).set(
            state=int(ActorState.NEW),
            name=h.name.encode()[:24],
            cpu=int(spec.get("cpu", -1)),
            restarts=0,
            pid=0,
        )
        self.handles.append(h)
        self._spawn(h)
        self.events.append(f"{h.name}: added")
        return h

    def remove_actor(self, name: str, timeout: float = 10.0) -> bool:
        """Stop an actor and free its status row for :meth:`add_actor` (the row shows
        it STOPPED until reused)."""
        if not self.stop_actor(name, timeout):
            return False
        self.handles = [h for h in self.handles if h.name != name]
        self.events.append(f"{name}: removed")
        return True

    def stop_actor(self, name: str, timeout: float = 10.0) -> bool:
        """Stop one actor and keep it stopped (until :meth:`restart_actor`)."""
        h = self.handle(name)
        if h is None:
            return False
        h.stopped = True
        if h.process is not None and h.process.is_alive() and h.process.pid:
            os.kill(h.process.pid, signal.SIGTERM)
            h.process.join(timeout)
            if h.process.is_alive():
                h.process.kill()
                h.process.join(5)
                remove_doorbells_of(h.process.pid)
        h.process = None
        assert self.board is not None
        self.board.writer(h.index).set(state=int(ActorState.STOPPED), pid=0)
        self.events.append(f"{name}: stopped by request")
        return True

    # -- stop ------------------------------------------------------------------------
    def stop(self) -> None:
        for group in self.stop_order:
            members = [
                h
                for h in self.handles
                if h.group == group or (group == "other" and h.group not in self.stop_order)
            ]
            for h in members:
                h.stopped = True
                if h.process is not None and h.process.pid is not None and h.process.is_alive():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(h.process.pid, signal.SIGTERM)
            deadline = time.monotonic() + self.stop_timeout
            for h in members:
                if h.process is None:
                    continue
                h.process.join(max(0.0, deadline - time.monotonic()))
                if h.process.is_alive():
                    self.events.append(f"{h.name}: did not stop in {self.stop_timeout}s; killed")
                    h.process.kill()
                    h.process.join(5)
                    if h.process.pid is not None:
                        remove_doorbells_of(h.process.pid)
                h.process = None

    def close(self) -> None:
        """Unlink every segment this node owns (call after :meth:`stop`)."""
        if self.board is not None:
            self.board.close()
            self.board = None
        for name in self.owned_segments:
            unlink(name)
        for info in list_segments(self.prefix + "."):
            if info.creator_pid == os.getpid() or not info.creator_alive:
                unlink(info.name)
