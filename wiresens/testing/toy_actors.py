"""Small actors for exercising the runtime (runner, StrategyMaster) without trading logic."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import numpy as np

from wiresens.actors.actor import Actor
from wiresens.shm import Consumer, Producer, Ring

__all__ = ["CrashingActor", "EchoActor", "SourceActor"]

SEQ_DTYPE = np.dtype([("seq", "<i8"), ("pad", "V56")])


class SourceActor(Actor):
    """Writes ``count`` sequence numbers into ring ``out`` (created by the test)."""

    name = "source"

    def __init__(self, out: str, count: int) -> None:
        self.out_name = out
        self.count = count
        self.sent = 0
        self.producer: Producer | None = None
        self.rec = np.zeros(1, SEQ_DTYPE)
        self.raw = memoryview(self.rec).cast("B")  # type: ignore[arg-type]

    def on_start(self) -> None:
        self.producer = Ring.attach(self.out_name, SEQ_DTYPE).producer()
        self.sent = self.producer.ring.words[16]  # resume after a restart

    def do_work(self) -> int:
        assert self.producer is not None
        if self.sent >= self.count:
            return 0
        self.rec["seq"] = self.sent
        if self.producer.try_write(self.raw):
            self.sent += 1
            return 1
        return 0


class EchoActor(Actor):
    """Copies ring ``inp`` to ring ``out``; optionally dies (SIGKILL itself) at ``die_at``."""

    name = "echo"

    def __init__(self, inp: str, out: str, die_at: int = -1, marker: str = "") -> None:
        self.inp_name, self.out_name = inp, out
        self.die_at = die_at
        self.marker = marker
        self.buf = bytearray(SEQ_DTYPE.itemsize)
        self.consumer: Consumer | None = None
        self.producer: Producer | None = None

    def on_start(self) -> None:
        self.consumer = Ring.attach(self.inp_name, SEQ_DTYPE).consumer()
        self.producer = Ring.attach(self.out_name, SEQ_DTYPE).producer()

    def idle_consumers(self) -> list[Consumer]:
        return [self.consumer] if self.consumer is not None else []

    def do_work(self) -> int:
        assert self.consumer is not None and self.producer is not None
        view = self.consumer.peek(64)
        n = len(view)
        if not n:
            return 0
        if (
            self.die_at >= 0
            and self.consumer.position + n > self.die_at
            and not (self.marker and os.path.exists(self.marker))
        ):
            if self.marker:
                with open(self.marker, "w") as f:
                    f.write(str(os.getpid()))  # tests look for what the dead process left
            os.kill(os.getpid(), signal.SIGKILL)
        written = self.producer.write_batch(view)
        self.consumer.release(written)
        return written


class CrashingActor(Actor):
    """Raises in ``do_work`` after ``after`` cycles (a policy bug)."""

    name = "crash"

    def __init__(self, after: int = 10, **_: Any) -> None:
        self.after = after
        self.cycles = 0

    def do_work(self) -> int:
        self.cycles += 1
        if self.cycles > self.after:
            raise RuntimeError("deliberate failure in do_work")
        time.sleep(0.001)
        return 1


def frame_producer(name: str, n: int) -> None:
    """Write ``n`` frames of varied size into byte ring ``name``: crc32 then the body."""
    import zlib

    from wiresens.shm import ByteRing

    ring = ByteRing.attach(name)
    prod = ring.producer()
    for i in range(n):
        body = i.to_bytes(8, "little") * (1 + i % 40)
        crc = zlib.crc32(body).to_bytes(4, "little")
        while not prod.try_write(1, crc, body):
            pass
    ring.close()
