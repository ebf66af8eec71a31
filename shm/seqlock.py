"""Seqlock slots: one writer publishes the latest value; readers never block it.

Layout (after the common 128-byte segment header)::

    4096 + i * stride   slot i:  seq (int64) | payload (record_size bytes) | pad to 64
    stride = round_up(8 + record_size, 64)

Writer: ``seq += 1`` (odd: write in progress), copy the payload, ``seq += 1``
(even). Reader: load ``seq`` (retry while odd), copy the payload, load ``seq``
again; equal means the copy is whole. On x86-64 TSO the writer's three stores
become visible in order and the reader's loads are not reordered, so a copy
bracketed by two equal even sequence numbers is never torn. The writer is never
delayed by readers; a reader retries at most ``max_spins`` times per call. A
writer that dies mid-write leaves its slot odd (readers get -1); the next write
resumes from the odd value and makes it even again.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .ring import check_platform
from .segment import DATA_OFFSET, Segment, Structure

__all__ = ["SeqlockSlots"]


class SeqlockSlots:
    """``count`` seqlock-protected records of one dtype in one segment."""

    def __init__(self, segment: Segment, dtype: np.dtype[Any]) -> None:
        check_platform()
        self.segment = segment
        self.dtype = dtype
        self.count = segment.capacity
        self.record_size = dtype.itemsize
        self.stride = (8 + dtype.itemsize + 63) // 64 * 64
        self._words = segment.words
        self._buf = segment.buf
        self._seq_word = [(DATA_OFFSET + i * self.stride) // 8 for i in range(self.count)]
        self._payload = [DATA_OFFSET + i * self.stride + 8 for i in range(self.count)]

    @classmethod
    def create(
        cls,
        name: str,
        dtype: np.dtype[Any] | str,
        count: int,
        *,
        record_kind: int = 0,
        schema_version: int = 0,
    ) -> SeqlockSlots:
        dt = np.dtype(dtype)
        stride = (8 + dt.itemsize + 63) // 64 * 64
        seg = Segment.create(
            name,
            structure=Structure.SEQLOCK,
            dtype=dt,
            capacity=count,
            record_kind=record_kind,
            schema_version=schema_version,
            data_bytes=stride * count,
        )
        return cls(seg, dt)

    @classmethod
    def attach(
        cls,
        name: str,
        dtype: np.dtype[Any] | str,
        *,
        record_kind: int | None = None,
        schema_version: int | None = None,
    ) -> SeqlockSlots:
        dt = np.dtype(dtype)
        seg = Segment.attach(
            name,
            structure=Structure.SEQLOCK,
            dtype=dt,
            record_kind=record_kind,
            schema_version=schema_version,
        )
        return cls(seg, dt)

    def write(self, i: int, record: Any) -> None:
        """Publish ``record`` (bytes-like of ``record_size`` bytes) into slot ``i``."""
        sw = self._seq_word[i]
        off = self._payload[i]
        words = self._words
        # `| 1`: a writer that died mid-write left the sequence odd; staying odd (not
        # stepping to even) keeps readers away from the half-written payload until we finish.
        odd = words[sw] | 1
        words[sw] = odd
        self._buf[off : off + self.record_size] = record
        words[sw] = odd + 1

    def read(self, i: int, out: memoryview | bytearray, max_spins: int = 1_000_000) -> int:
        """Copy slot ``i`` into ``out``; returns its (even) sequence, or -1 if never stable.

        Sequence 0 means the slot was never written.
        """
        sw = self._seq_word[i]
        off = self._payload[i]
        words = self._words
        buf = self._buf
        size = self.record_size
        for _ in range(max_spins):
            s1 = words[sw]
            if s1 & 1:
                continue
            out[:] = buf[off : off + size]
            if words[sw] == s1:
                return s1
        return -1

    def sequence(self, i: int) -> int:
        return self._words[self._seq_word[i]]

    def close(self) -> None:
        self.segment.close()

    def unlink(self) -> None:
        self.segment.unlink()
