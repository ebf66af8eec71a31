"""What actors write to their tap rings, and how the sidecar reads it.

A tap ring is a frame ring (:class:`wiresens.shm.ByteRing`). Each frame is one of:

* records: ``kind`` = the RecordKind; payload = one or more whole records of it;
* a raw exchange message: ``kind`` = ``RAW_BASE + source``; payload::

      0  i8   ts_recv (ns)
      8  u2   length of ``stream``
      10 ...  stream (UTF-8: stream name or URL), then the message bytes as received

An actor never waits for the sidecar: a frame that does not fit its tap ring
goes to a backlog in the actor's memory, written first when room returns, so
nothing is lost while the sidecar restarts; only a backlog past ``max_backlog``
frames drops (counted and logged), which protects the trading process's memory.
"""

from __future__ import annotations

import struct
from collections import deque
from enum import IntEnum

from wiresens.shm import ByteRing, FrameProducer

__all__ = ["RAW_BASE", "RawSource", "Tap", "pack_raw_head", "unpack_raw"]

RAW_BASE = 0x8000
_RAW_HEAD = struct.Struct("<qH")


class RawSource(IntEnum):
    """Where a raw message came from (the event log's RAW ``source``)."""

    MARKET_STREAM = 1
    WS_API_IN = 2
    REST = 3
    WS_API_OUT = 4


def pack_raw_head(ts_recv: int, stream: bytes) -> bytes:
    return _RAW_HEAD.pack(ts_recv, len(stream)) + stream


def unpack_raw(payload: memoryview) -> tuple[int, str, memoryview]:
    ts, n = _RAW_HEAD.unpack_from(payload, 0)
    stream = bytes(payload[10 : 10 + n]).decode("utf-8", "replace")
    return ts, stream, payload[10 + n :]


class Tap:
    """An actor's tap: records and raw messages to the sidecar, never blocking."""

    def __init__(self, ring_name: str, max_backlog: int = 1_000_000) -> None:
        self.ring = ByteRing.attach(ring_name)
        self.producer: FrameProducer = self.ring.producer()
        self.backlog: deque[tuple[int, bytes]] = deque()
        self.max_backlog = max_backlog
        self.dropped = 0

    def record(self, kind: int, data: memoryview | bytes) -> None:
        if self.backlog or not self.producer.try_write(kind, data):
            self._queue(kind, bytes(data))

    def raw(self, source: int, ts_recv: int, stream: bytes, data: bytes | str) -> None:
        body = data.encode() if isinstance(data, str) else data
        head = pack_raw_head(ts_recv, stream)
        if self.backlog or not self.producer.try_write(RAW_BASE + source, head, body):
            self._queue(RAW_BASE + source, head + body)

    def _queue(self, kind: int, payload: bytes) -> None:
        if len(self.backlog) >= self.max_backlog:
            self.dropped += 1
            return
        self.backlog.append((kind, payload))

    def flush(self) -> int:
        """Move backlog frames into the ring while it has room; returns how many."""
        n = 0
        backlog = self.backlog
        while backlog and self.producer.try_write(backlog[0][0], backlog[0][1]):
            backlog.popleft()
            n += 1
        return n
