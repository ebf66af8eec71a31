"""The sidecar: drains every tap ring into the event log, then feeds the sinks.

Duty cycle: for each tap ring, take the frames written since the last cycle,
append them to the event log (runs of records of one kind become one RECORDS
entry, raw messages RAW entries), flush the log to the OS, and only then release
the frames. A sidecar killed mid-cycle therefore re-reads the frames it had not
released: the event log is at-least-once, and the sinks' idempotent keys make
their copies exactly-once.

Sinks (Kafka, PostgreSQL) read the event log files by offset on their own
thread; they never touch the tap rings, so a sink that is down or slow cannot
slow the trading actors.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import structlog

from wiresens.eventlog import EventLogWriter
from wiresens.records import DTYPES, RecordKind
from wiresens.shm import ByteRing, FrameConsumer
from wiresens.taps import RAW_BASE, unpack_raw

from .actor import Actor

__all__ = ["Sidecar"]

_ITEMSIZE = {int(k): dt.itemsize for k, dt in DTYPES.items()}


class Sidecar(Actor):
    name = "sidecar"

    def __init__(
        self,
        *,
        taps: Sequence[str],
        event_log_dir: str,
        node: str,
        sinks: dict[str, Any] | None = None,
    ) -> None:
        self.tap_names = list(taps)
        self.dir = Path(event_log_dir)
        self.node = node
        self.sink_config = sinks or {}
        self.consumers: list[FrameConsumer] = []
        self.writer: EventLogWriter | None = None
        self.frames = 0
        self.records = 0
        self.raw = 0
        self.sink_thread: Any = None
        self.log: Any = structlog.get_logger("sidecar")

    def on_start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.writer = EventLogWriter(self.dir, self.node)
        self.consumers = [ByteRing.attach(n).consumer() for n in self.tap_names]

    def idle_consumers(self) -> list[Any]:
        return list(self.consumers)

    def do_work(self) -> int:
        writer = self.writer
        assert writer is not None
        work = 0
        for cons in self.consumers:
            frames = cons.frames(4096)
            if not frames:
                continue
            run_kind = -1
            run: list[memoryview] = []
            for kind, _flags, payload in frames:
                if kind >= RAW_BASE:
                    if run:
                        self._write_run(run_kind, run)
                        run = []
                        run_kind = -1
                    ts, stream, data = unpack_raw(payload)
                    writer.append_raw(ts, kind - RAW_BASE, stream, bytes(data))
                    self.raw += 1
                    continue
                if kind != run_kind and run:
                    self._write_run(run_kind, run)
                    run = []
                run_kind = kind
                run.append(payload)
            if run:
                self._write_run(run_kind, run)
            writer.flush()
            cons.release()
            self.frames += len(frames)
            work += len(frames)
        return work

    def _write_run(self, kind: int, payloads: list[memoryview]) -> None:
        assert self.writer is not None
        size = _ITEMSIZE.get(kind)
        data = b"".join(payloads)
        if size is None or len(data) % size:
            self.log.error("tap frame of unknown kind or size dropped", kind=kind, bytes=len(data))
            return
        self.writer.append_records(RecordKind(kind), data)
        self.records += len(data) // size

    def on_stop(self) -> None:
        # Drain what the other actors wrote while they stopped (they stop first).
        while self.do_work():
            pass
        if self.writer is not None:
            self.writer.close()
        self.log.info("sidecar stopped", frames=self.frames, records=self.records, raw=self.raw)
