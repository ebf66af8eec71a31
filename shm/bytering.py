"""Lock-free SPSC ring of variable-length frames (the actors' tap rings).

Same segment header and control lines as :mod:`.ring` (positions count bytes
here); the data area is ``capacity`` bytes, a power of two. Each frame::

    offset 0   u32  length      header + payload, bytes (frames start 8-byte aligned)
    offset 4   u16  kind        caller's frame kind; 0xFFFF = padding to the wrap point
    offset 6   u16  flags       caller's
    offset 8   payload

A frame never wraps: when it does not fit before the end of the data area, the
producer writes a padding frame to the end and the frame at offset 0, and
publishes both with one position store. The memory-ordering argument is the
ring's (payload before position, aligned 8-byte position stores, x86-64 TSO).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from .doorbell import BellRinger, Doorbell
from .errors import ShmError
from .process import process_alive, self_id
from .ring import (
    W_CONSUMER_PID,
    W_CONSUMER_START,
    W_DOORBELL,
    W_FULL,
    W_PRODUCER_PID,
    W_PRODUCER_START,
    W_READ,
    W_WAITING,
    W_WRITE,
    check_platform,
)
from .segment import Segment, Structure

__all__ = ["ByteRing", "ByteRingStats", "FrameConsumer", "FrameProducer"]

PAD = 0xFFFF
HEADER = struct.Struct("<IHH")
_pack = HEADER.pack_into
_unpack = HEADER.unpack_from


@dataclass(frozen=True)
class ByteRingStats:
    name: str
    capacity: int
    written_bytes: int
    read_bytes: int
    full: int
    producer_alive: bool
    consumer_alive: bool

    @property
    def fill(self) -> int:
        return self.written_bytes - self.read_bytes


class ByteRing:
    """A mapped frame ring. ``capacity`` is in bytes (power of two, >= 4096)."""

    def __init__(self, segment: Segment) -> None:
        check_platform()
        self.segment = segment
        self.name = segment.name
        self.capacity = segment.capacity
        self.words = segment.words
        off = segment.data_offset
        self.data = segment.buf[off : off + self.capacity]

    @classmethod
    def create(cls, name: str, capacity: int) -> ByteRing:
        if capacity < 4096 or capacity & (capacity - 1):
            raise ValueError(
                f"byte ring {name!r}: capacity {capacity} must be a power of two >= 4096"
            )
        import numpy as np

        seg = Segment.create(
            name, structure=Structure.BYTERING, dtype=np.dtype("u1"), capacity=capacity
        )
        return cls(seg)

    @classmethod
    def attach(cls, name: str) -> ByteRing:
        return cls(Segment.attach(name, structure=Structure.BYTERING))

    def producer(self) -> FrameProducer:
        return FrameProducer(self)

    def consumer(self) -> FrameConsumer:
        return FrameConsumer(self)

    def stats(self) -> ByteRingStats:
        w = self.words
        return ByteRingStats(
            self.name,
            self.capacity,
            w[W_WRITE],
            w[W_READ],
            w[W_FULL],
            process_alive(w[W_PRODUCER_PID], w[W_PRODUCER_START]),
            process_alive(w[W_CONSUMER_PID], w[W_CONSUMER_START]),
        )

    def close(self) -> None:
        self.data.release()
        self.segment.close()

    def unlink(self) -> None:
        self.segment.unlink()


def _claim(ring: ByteRing, pid_word: int, start_word: int, role: str) -> None:
    w = ring.words
    pid, start = w[pid_word], w[start_word]
    me = self_id()
    if pid and (pid, start) != me and process_alive(pid, start):
        raise ShmError(f"byte ring {ring.name!r} already has a live {role} (pid {pid})")
    w[pid_word], w[start_word] = me


class FrameProducer:
    """The writing end: ``try_write(kind, *parts)`` never blocks; False when full."""

    def __init__(self, ring: ByteRing) -> None:
        _claim(ring, W_PRODUCER_PID, W_PRODUCER_START, "producer")
        self.ring = ring
        self.cap = ring.capacity
        self.mask = ring.capacity - 1
        self.data = ring.data
        self.words = ring.words
        self._w: int = ring.words[W_WRITE]
        self._limit: int = ring.words[W_READ] + self.cap
        self._doorbell = BellRinger()
        self.too_big = 0

    def try_write(self, kind: int, *parts: Any, flags: int = 0) -> bool:
        """Write one frame whose payload is the concatenation of ``parts`` (bytes-likes)."""
        n = 8
        for p in parts:
            n += len(p)
        size = (n + 7) & ~7
        w = self._w
        off = w & self.mask
        tail = self.cap - off
        need = size if size <= tail else tail + size
        if size > self.cap >> 1:
            self.too_big += 1
            return False
        if w + need > self._limit:
            self._limit = self.words[W_READ] + self.cap
            if w + need > self._limit:
                self.words[W_FULL] += 1
                return False
        data = self.data
        if size > tail:
            _pack(data, off, tail, PAD, 0)
            off = 0
        _pack(data, off, n, kind, flags)
        pos = off + 8
        for p in parts:
            m = len(p)
            data[pos : pos + m] = p
            pos += m
        self._w = w = w + need
        self.words[W_WRITE] = w
        if self.words[W_WAITING]:
            self._ring()
        return True

    def _ring(self) -> None:
        self._doorbell.ring(self.words, W_WAITING, W_DOORBELL)

    def close(self) -> None:
        self._doorbell.close()


class FrameConsumer:
    """The reading end: :meth:`frames` gives zero-copy views until :meth:`release`."""

    def __init__(self, ring: ByteRing) -> None:
        _claim(ring, W_CONSUMER_PID, W_CONSUMER_START, "consumer")
        self.ring = ring
        self.cap = ring.capacity
        self.mask = ring.capacity - 1
        self.data = ring.data
        self.words = ring.words
        self._r: int = ring.words[W_READ]
        self._next: int = self._r

    def frames(self, limit: int = 4096) -> list[tuple[int, int, memoryview]]:
        """Up to ``limit`` unread frames as (kind, flags, payload view); valid until release."""
        out: list[tuple[int, int, memoryview]] = []
        r = self._next
        end = self.words[W_WRITE]
        data = self.data
        while r < end and len(out) < limit:
            off = r & self.mask
            n, kind, flags = _unpack(data, off)
            if kind == PAD:
                r += n
                continue
            out.append((kind, flags, data[off + 8 : off + n]))
            r += (n + 7) & ~7
        self._next = r
        return out

    @property
    def position(self) -> int:
        """Bytes consumed and released so far (monotonic)."""
        return self._r

    @property
    def pending_position(self) -> int:
        """Where the ring will stand after :meth:`release` (past every frame read)."""
        return self._next

    def skip_to(self, position: int) -> None:
        """Release everything before ``position`` (a frame boundary this consumer reached
        before, e.g. recorded in a checkpoint) without reading it."""
        if self._r < position <= self.words[W_WRITE]:
            self._r = self._next = position
            self.words[W_READ] = position

    def release(self) -> None:
        """Hand every frame returned so far back to the producer."""
        self._r = self._next
        self.words[W_READ] = self._r

    def available(self) -> int:
        return self.words[W_WRITE] - self._next

    # The idle strategies' handshake (see ring.Consumer).
    def arm(self, doorbell: Doorbell | None) -> None:
        self.words[W_DOORBELL] = doorbell.id if doorbell is not None else 0

    def set_waiting(self) -> bool:
        self.words[W_WAITING] = 1
        if self.words[W_WRITE] != self._next:
            self.words[W_WAITING] = 0
            return False
        return True

    def clear_waiting(self) -> None:
        self.words[W_WAITING] = 0
