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

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import structlog

from wiresens.eventlog import EventLogOffset, EventLogReader, EventLogWriter
from wiresens.records import CONTROL_TAP_CHECKPOINT, DTYPES, RecordKind, new_record
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
        rings = [ByteRing.attach(n) for n in self.tap_names]
        self.consumers = [r.consumer() for r in rings]
        self.created = [int(r.segment.header[0]["created_ns"]) for r in rings]
        self._checkpoint = new_record(RecordKind.CONTROL)
        self._checkpoint["command"] = CONTROL_TAP_CHECKPOINT
        self.skipped_bytes = self._resume_from_checkpoints()

    def _resume_from_checkpoints(self) -> int:
        """Skip tap frames the log already holds (a sidecar killed between writing a batch
        and releasing it), so the log gets each frame exactly once."""
        reader = EventLogReader(self.dir)
        segs = reader.segments()
        if not segs:
            return 0
        last: dict[int, int] = {}
        start = (
            EventLogOffset(segs[-1].segment, 0)
            if len(segs) == 1
            else EventLogOffset(segs[-2].segment, 0)
        )
        for entry in reader.entries(start, kinds=[int(RecordKind.CONTROL)], skip_corrupt=True):
            assert entry.records is not None
            for rec in entry.records:
                t = int(rec["target"])
                if (
                    int(rec["command"]) == CONTROL_TAP_CHECKPOINT
                    and t < len(self.created)
                    and int(rec["arg1"]) == self.created[t]
                ):
                    last[t] = max(last.get(t, 0), int(rec["arg0"]))
        skipped = 0
        for t, pos in last.items():
            before = self.consumers[t].position
            self.consumers[t].skip_to(pos)
            skipped += self.consumers[t].position - before
        if skipped:
            self.log.warning("skipped tap frames the event log already has", bytes=skipped)
        return skipped

    def idle_consumers(self) -> list[Any]:
        return list(self.consumers)

    def do_work(self) -> int:
        writer = self.writer
        assert writer is not None
        work = 0
        for i, cons in enumerate(self.consumers):
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
            cp = self._checkpoint
            cp["target"] = i
            cp["arg0"] = cons.pending_position
            cp["arg1"] = self.created[i]
            cp["ts_pub"] = time.time_ns()
            writer.append_records(RecordKind.CONTROL, cp)
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
