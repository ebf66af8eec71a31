"""The node's status segment: one seqlock slot of ``ACTOR_STATUS`` per actor.

Each slot has one writer at a time: the actor's own process while it runs, the
StrategyMaster before a spawn and after the process has exited. Readers
(``wiresens node status``, the master's watchdog) never block either.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from wiresens.records import ACTOR_STATUS, SCHEMA_VERSION, RecordKind
from wiresens.shm import SeqlockSlots

from .lifecycle import ActorState

__all__ = ["StatusBoard", "StatusWriter", "status_segment_name"]

KIND = RecordKind.ACTOR_STATUS


def status_segment_name(prefix: str) -> str:
    return f"{prefix}.status"


class StatusBoard:
    """The whole segment: created by the master, attached by readers."""

    def __init__(self, slots: SeqlockSlots) -> None:
        self.slots = slots
        self._rec = np.zeros(1, ACTOR_STATUS)
        self._raw = memoryview(self._rec).cast("B")  # type: ignore[arg-type]

    @classmethod
    def create(cls, prefix: str, count: int) -> StatusBoard:
        return cls(
            SeqlockSlots.create(
                status_segment_name(prefix),
                ACTOR_STATUS,
                count,
                record_kind=int(KIND),
                schema_version=SCHEMA_VERSION[KIND],
            )
        )

    @classmethod
    def attach(cls, prefix: str) -> StatusBoard:
        return cls(
            SeqlockSlots.attach(
                status_segment_name(prefix),
                ACTOR_STATUS,
                record_kind=int(KIND),
                schema_version=SCHEMA_VERSION[KIND],
            )
        )

    def read(self, index: int) -> np.void | None:
        """A copy of slot ``index``; None if never written or never stable."""
        seq = self.slots.read(index, self._raw)
        if seq <= 0:
            return None
        out: np.void = self._rec.copy()[0]
        return out

    def read_all(self) -> list[np.void | None]:
        return [self.read(i) for i in range(self.slots.count)]

    def writer(self, index: int) -> StatusWriter:
        return StatusWriter(self.slots, index)

    def close(self) -> None:
        self.slots.close()

    def unlink(self) -> None:
        self.slots.unlink()


class StatusWriter:
    """Writes one actor's slot: a preallocated record, so a heartbeat allocates nothing."""

    def __init__(self, slots: SeqlockSlots, index: int) -> None:
        self.slots = slots
        self.index = index
        self.rec: np.ndarray[Any, Any] = np.zeros(1, ACTOR_STATUS)
        self.raw = memoryview(self.rec).cast("B")  # type: ignore[arg-type]
        prev = np.zeros(1, ACTOR_STATUS)
        if slots.read(index, memoryview(prev).cast("B")) > 0:  # type: ignore[arg-type]
            self.rec[:] = prev
        r = self.rec[0]
        r["kind"] = int(KIND)
        r["version"] = SCHEMA_VERSION[KIND]
        r["actor"] = index

    def set(self, **fields: Any) -> None:
        r = self.rec[0]
        for k, v in fields.items():
            r[k] = v
        r["ts_pub"] = time.time_ns()
        self.slots.write(self.index, self.raw)

    def state(self, state: ActorState, **fields: Any) -> None:
        self.set(state=int(state), **fields)

    def heartbeat(self, cycles: int, work: int) -> None:
        r = self.rec[0]
        r["heartbeat_seq"] += 1
        r["cycles"] = cycles
        r["work"] = work
        r["ts_pub"] = time.time_ns()
        self.slots.write(self.index, self.raw)
