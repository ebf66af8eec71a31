"""Lock-free single-producer single-consumer ring of fixed-size numpy records.

Layout (after the common 128-byte segment header, see segment.py)::

    offset  line            words (int64)                       written by
    128     producer line   write_pos, full_count,              producer
                            producer_pid, producer_start
    256     consumer line   read_pos, consumer_pid,             consumer
                            consumer_start, doorbell_id
    384     waiting line    waiting                             consumer sets, producer clears
    4096    slots           capacity x record_size bytes
                            slot of position p = p & (capacity - 1)

Positions are monotonic int64 counters (they never wrap in practice: 2**63
records at 10**9/s is 292 years), so ``write_pos - read_pos`` is the fill,
``write_pos`` the number written and ``read_pos`` the number read. Each line is
128 bytes apart so the two sides never share a cache line (nor an adjacent-line
prefetch pair). The producer keeps a private cached copy of ``read_pos`` (as
``read_pos + capacity``, the first position it may not write) and reloads the
shared one only when the ring looks full; the consumer keeps one of ``write_pos``
and reloads it only when the ring looks empty. Neither side touches the other's
line while it has work, which is what makes the ring cheap under load.

Memory model. The ring is correct on x86-64 and refuses other platforms
(:class:`UnsupportedPlatformError`) until validated there:

* x86-64 is TSO: stores become visible to other cores in program order, and
  loads are not reordered with older loads.
* Positions are naturally aligned int64 written with one 8-byte store through
  a ``memoryview`` cast to ``'q'`` (CPython's ``PACK_SINGLE`` is a fixed-size
  ``memcpy`` that compiles to one ``mov``); aligned 8-byte stores and loads are
  single-copy atomic on x86-64, so a reader never sees half a position.
* The producer copies the payload into the slot *before* it stores the new
  ``write_pos``; the consumer loads ``write_pos`` *before* it reads the slot.
  By TSO the consumer that sees the position sees the payload. A cached
  ``write_pos`` is such an earlier load: every slot below it was complete when
  it was loaded.
* The consumer stores ``read_pos`` only after it has finished with the slot;
  the producer reuses a slot only after loading a ``read_pos`` past it.
* Python executes each load and store as a separate, opaque C call, so the C
  compiler cannot reorder them across one another.

The hot methods return bools and counts and never raise for flow control.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from typing import Any

import numpy as np

from .doorbell import BellRinger, Doorbell
from .errors import ShmError, UnsupportedPlatformError
from .process import process_alive, self_id
from .segment import Segment, SegmentInfo, Structure, describe

__all__ = ["Consumer", "Producer", "Ring", "RingStats", "check_platform"]

VALIDATED_MACHINES = frozenset({"x86_64", "amd64"})

# int64 word indexes of the control lines (byte offset / 8).
W_WRITE = 16
W_FULL = 17
W_PRODUCER_PID = 18
W_PRODUCER_START = 19
W_READ = 32
W_CONSUMER_PID = 33
W_CONSUMER_START = 34
W_DOORBELL = 35
W_WAITING = 48

SLOT_VIEWS_MAX = 1 << 16
"""Ends of rings up to this capacity keep a ready byte view of every slot (~200 bytes of
memory per slot): copying a record through one is ~25% cheaper per record than slicing a
view on each call. Larger rings slice."""


def check_platform() -> None:
    machine = platform.machine().lower()
    if machine not in VALIDATED_MACHINES:
        raise UnsupportedPlatformError(
            f"the SPSC ring's memory-ordering argument is validated for x86-64 (TSO) only, "
            f"this machine is {machine!r}; see docs/shm.md before porting"
        )


@dataclass(frozen=True)
class RingStats:
    """A ring's counters, read without stopping either side."""

    name: str
    capacity: int
    written: int
    read: int
    full: int
    producer_pid: int
    producer_alive: bool
    consumer_pid: int
    consumer_alive: bool

    @property
    def fill(self) -> int:
        return self.written - self.read


class Ring:
    """A mapped ring segment. Get the two ends with :meth:`producer` and :meth:`consumer`."""

    def __init__(self, segment: Segment, dtype: np.dtype[Any]) -> None:
        check_platform()
        self.segment = segment
        self.name = segment.name
        self.dtype = dtype
        self.capacity = segment.capacity
        self.mask = self.capacity - 1
        self.record_size = dtype.itemsize
        self.slots: np.ndarray[Any, Any] = segment.data_view(dtype, self.capacity)
        self.words = segment.words

    @classmethod
    def create(
        cls,
        name: str,
        dtype: np.dtype[Any] | type[Any] | str,
        capacity: int,
        *,
        record_kind: int = 0,
        schema_version: int = 0,
    ) -> Ring:
        """Create the ring segment (replacing a stale one whose creator died)."""
        check_platform()
        dt = np.dtype(dtype)
        if capacity < 2 or capacity & (capacity - 1):
            raise ValueError(f"ring {name!r}: capacity {capacity} must be a power of two >= 2")
        seg = Segment.create(
            name,
            structure=Structure.RING,
            dtype=dt,
            capacity=capacity,
            record_kind=record_kind,
            schema_version=schema_version,
        )
        return cls(seg, dt)

    @classmethod
    def attach(
        cls,
        name: str,
        dtype: np.dtype[Any] | type[Any] | str | None,
        *,
        record_kind: int | None = None,
        schema_version: int | None = None,
    ) -> Ring:
        """Attach to an existing ring, checking its dtype, kind and version.

        ``dtype=None`` attaches for inspection: slots are raw bytes of the stored size.
        """
        dt = np.dtype(dtype) if dtype is not None else None
        seg = Segment.attach(
            name,
            structure=Structure.RING,
            dtype=dt,
            record_kind=record_kind,
            schema_version=schema_version,
        )
        if dt is None:
            dt = np.dtype((np.void, int(seg.header[0]["record_size"])))
        return cls(seg, dt)

    def producer(self) -> Producer:
        """Claim the writing end (one live producer process at a time)."""
        return _SlotViewProducer(self) if self.capacity <= SLOT_VIEWS_MAX else Producer(self)

    def consumer(self) -> Consumer:
        """Claim the reading end (one live consumer process at a time)."""
        return _SlotViewConsumer(self) if self.capacity <= SLOT_VIEWS_MAX else Consumer(self)

    def stats(self) -> RingStats:
        w = self.words
        return RingStats(
            name=self.name,
            capacity=self.capacity,
            written=w[W_WRITE],
            read=w[W_READ],
            full=w[W_FULL],
            producer_pid=w[W_PRODUCER_PID],
            producer_alive=process_alive(w[W_PRODUCER_PID], w[W_PRODUCER_START]),
            consumer_pid=w[W_CONSUMER_PID],
            consumer_alive=process_alive(w[W_CONSUMER_PID], w[W_CONSUMER_START]),
        )

    def producer_alive(self) -> bool:
        return process_alive(self.words[W_PRODUCER_PID], self.words[W_PRODUCER_START])

    def consumer_alive(self) -> bool:
        return process_alive(self.words[W_CONSUMER_PID], self.words[W_CONSUMER_START])

    def close(self) -> None:
        self.slots = np.empty(0, self.dtype)
        self.segment.close()

    def unlink(self) -> None:
        self.segment.unlink()

    def __enter__(self) -> Ring:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _claim_role(ring: Ring, pid_word: int, start_word: int, role: str) -> None:
    w = ring.words
    pid, start = w[pid_word], w[start_word]
    me = self_id()
    if pid and (pid, start) != me and process_alive(pid, start):
        raise ShmError(
            f"ring {ring.name!r} already has a live {role} (pid {pid}); an SPSC ring takes "
            f"one {role} at a time"
        )
    w[pid_word], w[start_word] = me


class Producer:
    """The writing end. Only one live process may hold it."""

    __slots__ = (
        "_buf",
        "_doorbell",
        "_limit",
        "_mask",
        "_size",
        "_w",
        "_words",
        "cap",
        "ring",
        "slots",
    )

    def __init__(self, ring: Ring) -> None:
        _claim_role(ring, W_PRODUCER_PID, W_PRODUCER_START, "producer")
        self.ring = ring
        self.slots = ring.slots
        self.cap = ring.capacity
        self._mask = ring.mask
        self._size = ring.record_size
        self._words = ring.words
        # A restarted producer continues from the published position.
        self._w: int = ring.words[W_WRITE]
        # First position that would overwrite an unread slot, by the last read_pos loaded:
        # the cached consumer position plus the capacity, so the fast path is one compare.
        self._limit: int = ring.words[W_READ] + self.cap
        # Byte view of the slot area: copying bytes is ~4x cheaper than numpy void assignment.
        self._buf = ring.segment.buf[
            ring.segment.data_offset : ring.segment.data_offset + self.cap * self._size
        ]
        self._doorbell = BellRinger()

    def try_write(self, record: Any) -> bool:
        """Copy one record (bytes-like of ``itemsize`` bytes) into the ring; False when full.

        Fastest with a preallocated ``memoryview(arr).cast("B")`` of a one-element array.
        """
        w = self._w
        words = self._words
        if w >= self._limit:
            self._limit = words[W_READ] + self.cap
            if w >= self._limit:
                words[W_FULL] += 1
                return False
        size = self._size
        off = (w & self._mask) * size
        # Payload first, then the position (the memory-ordering argument above).
        self._buf[off : off + size] = record
        self._w = w = w + 1
        words[W_WRITE] = w
        if words[W_WAITING]:
            self._ring_doorbell()
        return True

    def try_write_record(self, record: np.void | np.ndarray[Any, Any]) -> bool:
        """Like :meth:`try_write` for a numpy record (a void scalar or a one-element array)."""
        w = self._w
        words = self._words
        if w >= self._limit:
            self._limit = words[W_READ] + self.cap
            if w >= self._limit:
                words[W_FULL] += 1
                return False
        self.slots[w & self._mask] = record
        self._w = w = w + 1
        words[W_WRITE] = w
        if words[W_WAITING]:
            self._ring_doorbell()
        return True

    def claim(self) -> int:
        """Reserve the next slot for writing in place; returns its index in ``slots``, -1 if full.

        Fill ``slots[i]`` (or the bytes of it), then :meth:`commit`. Claims do not nest.
        """
        w = self._w
        if w >= self._limit:
            words = self._words
            self._limit = words[W_READ] + self.cap
            if w >= self._limit:
                words[W_FULL] += 1
                return -1
        return w & self._mask

    def commit(self) -> None:
        """Publish the slot returned by the last successful :meth:`claim`."""
        self._w = w = self._w + 1
        words = self._words
        words[W_WRITE] = w
        if words[W_WAITING]:
            self._ring_doorbell()

    def write_batch(self, records: np.ndarray[Any, Any] | memoryview) -> int:
        """Copy as many of ``records`` as fit; returns the count (0 when full).

        ``records`` is a C-contiguous array of the ring's dtype, or a byte view of one
        (a preallocated ``memoryview(arr).cast("B")`` and slices of it skip the cast).
        """
        size = self._size
        src = records if isinstance(records, memoryview) else memoryview(records).cast("B")  # type: ignore[arg-type]
        nbytes = src.nbytes
        n = nbytes // size
        if n * size != nbytes:
            raise ValueError(
                f"ring {self.ring.name!r}: a batch of {nbytes} bytes is not a whole number of "
                f"{size}-byte records; pass an array of the ring's dtype {self.ring.dtype}"
            )
        if n == 0:
            return 0
        w = self._w
        words = self._words
        free = self._limit - w
        if free < n:
            self._limit = words[W_READ] + self.cap
            free = self._limit - w
            if free <= 0:
                words[W_FULL] += 1
                return 0
            if free < n:
                n = free
        start = w & self._mask
        first = self.cap - start
        if first >= n:
            self._buf[start * size : (start + n) * size] = (
                src[: n * size] if n * size != nbytes else src
            )
        else:
            cut = first * size
            self._buf[start * size :] = src[:cut]
            self._buf[: n * size - cut] = src[cut : n * size]
        self._w = w = w + n
        words[W_WRITE] = w
        if words[W_WAITING]:
            self._ring_doorbell()
        return n

    def free(self) -> int:
        """Slots free now (reloads the consumer position)."""
        self._limit = self._words[W_READ] + self.cap
        return self._limit - self._w

    def _ring_doorbell(self) -> None:
        self._doorbell.ring(self._words, W_WAITING, W_DOORBELL)

    def close(self) -> None:
        self._doorbell.close()
        self._buf.release()


class Consumer:
    """The reading end. Only one live process may hold it; it resumes at ``read_pos``."""

    __slots__ = ("_buf", "_mask", "_r", "_size", "_words", "_written", "cap", "ring", "slots")

    def __init__(self, ring: Ring) -> None:
        _claim_role(ring, W_CONSUMER_PID, W_CONSUMER_START, "consumer")
        self.ring = ring
        self.slots = ring.slots
        self.cap = ring.capacity
        self._mask = ring.mask
        self._size = ring.record_size
        self._words = ring.words
        self._r: int = ring.words[W_READ]
        # The last write_pos loaded: records below it are readable without touching the
        # producer's cache line again (its payloads were visible when it was loaded).
        self._written: int = self._r
        self._buf = ring.segment.buf[
            ring.segment.data_offset : ring.segment.data_offset + self.cap * self._size
        ]

    @property
    def position(self) -> int:
        """Records consumed and released so far."""
        return self._r

    def available(self) -> int:
        """Records written and not yet released."""
        self._written = self._words[W_WRITE]
        return self._written - self._r

    def try_read(self, out: memoryview | bytearray) -> bool:
        """Copy the next record's bytes into ``out`` and release it; False when empty.

        ``out`` is best a preallocated ``memoryview(arr).cast("B")`` of a one-element array
        (a ``bytearray`` costs twice as much, and one of the wrong size is silently resized).
        """
        r = self._r
        words = self._words
        if r >= self._written:
            # Load write_pos before reading the slot (the memory-ordering argument above).
            w = words[W_WRITE]
            if r >= w:
                return False
            self._written = w
        size = self._size
        off = (r & self._mask) * size
        out[:] = self._buf[off : off + size]
        self._r = r = r + 1
        words[W_READ] = r
        return True

    def peek(self, limit: int = 1 << 30) -> np.ndarray[Any, Any]:
        """A zero-copy view of up to ``limit`` unread records, contiguous (stops at the wrap).

        The records stay owned by the ring until :meth:`release`; an empty view when none.
        """
        r = self._r
        self._written = self._words[W_WRITE]
        start = r & self._mask
        n = min(self._written - r, limit, self.cap - start)
        return self.slots[start : start + n]

    def release(self, n: int) -> None:
        """Hand ``n`` records (from :meth:`peek`) back to the producer."""
        self._r = r = self._r + n
        self._words[W_READ] = r

    def read_into(self, out: np.ndarray[Any, Any] | memoryview, limit: int | None = None) -> int:
        """Copy up to ``limit`` (default: as many as fit) records into ``out``, release them.

        ``out`` is a C-contiguous array of the ring's dtype, or a byte view of one (a
        preallocated ``memoryview(arr).cast("B")`` skips the cast). Returns the count.
        """
        size = self._size
        dst = out if isinstance(out, memoryview) else memoryview(out).cast("B")  # type: ignore[arg-type]
        want = dst.nbytes // size
        if limit is not None and limit < want:
            want = limit
        r = self._r
        n = self._written - r
        if n < want:
            self._written = self._words[W_WRITE]
            n = self._written - r
            if n <= 0:
                return 0
            if n > want:
                n = want
        else:
            n = want
        if n <= 0:
            return 0
        start = r & self._mask
        first = self.cap - start
        if first >= n:
            dst[: n * size] = self._buf[start * size : (start + n) * size]
        else:
            cut = first * size
            dst[:cut] = self._buf[start * size :]
            dst[cut : n * size] = self._buf[: n * size - cut]
        self._r = r = r + n
        self._words[W_READ] = r
        return n

    def arm(self, doorbell: Doorbell | None) -> None:
        """Register the doorbell producers should ring when this consumer sleeps."""
        self._words[W_DOORBELL] = doorbell.id if doorbell is not None else 0

    def set_waiting(self) -> bool:
        """Announce a sleep; returns False (and withdraws) if records arrived meanwhile."""
        words = self._words
        words[W_WAITING] = 1
        if words[W_WRITE] != self._r:
            words[W_WAITING] = 0
            return False
        return True

    def clear_waiting(self) -> None:
        self._words[W_WAITING] = 0

    def close(self) -> None:
        self._buf.release()


def _slot_views(buf: memoryview, capacity: int, size: int) -> list[memoryview]:
    return [buf[i * size : (i + 1) * size] for i in range(capacity)]


class _SlotViewProducer(Producer):
    """A :class:`Producer` whose single-record writes copy through per-slot views."""

    __slots__ = ("_views",)

    def __init__(self, ring: Ring) -> None:
        super().__init__(ring)
        self._views = _slot_views(self._buf, self.cap, self._size)

    def try_write(self, record: Any) -> bool:
        w = self._w
        words = self._words
        if w >= self._limit:
            self._limit = words[W_READ] + self.cap
            if w >= self._limit:
                words[W_FULL] += 1
                return False
        # Payload first, then the position (the memory-ordering argument above).
        self._views[w & self._mask][:] = record
        self._w = w = w + 1
        words[W_WRITE] = w
        if words[W_WAITING]:
            self._ring_doorbell()
        return True

    try_write.__doc__ = Producer.try_write.__doc__

    def close(self) -> None:
        for v in self._views:
            v.release()
        self._views = []
        super().close()


class _SlotViewConsumer(Consumer):
    """A :class:`Consumer` whose single-record reads copy through per-slot views."""

    __slots__ = ("_views",)

    def __init__(self, ring: Ring) -> None:
        super().__init__(ring)
        self._views = _slot_views(self._buf, self.cap, self._size)

    def try_read(self, out: memoryview | bytearray) -> bool:
        r = self._r
        words = self._words
        if r >= self._written:
            # Load write_pos before reading the slot (the memory-ordering argument above).
            w = words[W_WRITE]
            if r >= w:
                return False
            self._written = w
        out[:] = self._views[r & self._mask]
        self._r = r = r + 1
        words[W_READ] = r
        return True

    try_read.__doc__ = Consumer.try_read.__doc__

    def close(self) -> None:
        for v in self._views:
            v.release()
        self._views = []
        super().close()


def ring_info(name: str) -> SegmentInfo | None:
    return describe(name)
