"""The sidecar index of a segment: one row per block of entries, for seeking by time.

``<segment>.evidx`` beside each ``.evlog``. The writer closes a block every
``index_bytes`` of entries or ``index_entries`` entries (whichever first) and at
every roll and close, and appends one row::

    header (16 bytes)          row (48 bytes)
    0  magic   8s b"WSEVIDX\\0"  0   start    u8  offset of the block's first entry
    8  version u2               8   end      u8  offset just past its last entry
    10 _       u2               16  entries  u4
    12 segment u4               20  records  u4  records in RECORDS entries (RAW count 1)
                                24  ts_min   i8  min ts_first of the block's entries
                                32  ts_max   i8  max ts_last of the block's entries
                                40  crc      u4  zlib.crc32 of bytes 0..40 of the row
                                44  _        u4

Entries need not be in time order (several taps merge into one log), so a block
carries its min and max: a reader skips every block whose [ts_min, ts_max] misses the
requested range and scans the rest. Rows are trusted only as a chain (the first
starts at the segment's first entry, each starts where the previous ended, none
reaches past the file's end, each CRC holds); the first row that breaks the chain
ends the index and the reader scans from there. A missing index of a closed
segment is rebuilt by the reader; a writer reopening a segment rewrites its index.
"""

from __future__ import annotations

import contextlib
import os
import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import BinaryIO

from wiresens.errors import LogFormatError

__all__ = ["INDEX_MAGIC", "Block", "IndexBuilder", "index_path", "read_index", "write_index"]

INDEX_MAGIC = b"WSEVIDX\0"
INDEX_VERSION = 1
_HEAD = struct.Struct("<8sHHI")
_ROW = struct.Struct("<QQIIqqII")
_ROW_BODY = 40


@dataclass(frozen=True)
class Block:
    """One index row: entries ``[start, end)`` of a segment and their time range."""

    start: int
    end: int
    entries: int
    records: int
    ts_min: int
    ts_max: int

    def pack(self) -> bytes:
        body = _ROW.pack(
            self.start, self.end, self.entries, self.records, self.ts_min, self.ts_max, 0, 0
        )
        return body[:_ROW_BODY] + struct.pack("<II", zlib.crc32(body[:_ROW_BODY]), 0)


def index_path(segment_path: str) -> str:
    return segment_path[: -len(".evlog")] + ".evidx"


def _head(segment: int) -> bytes:
    return _HEAD.pack(INDEX_MAGIC, INDEX_VERSION, 0, segment)


class IndexBuilder:
    """Accumulates entries into blocks; rows go to ``out`` (an open index file) or a list."""

    def __init__(
        self,
        start: int,
        *,
        index_bytes: int,
        index_entries: int,
        out: BinaryIO | None = None,
    ) -> None:
        self.blocks: list[Block] = []
        self._out = out
        self._bytes = index_bytes
        self._entries = index_entries
        self._start = start
        self._end = start
        self._n = 0
        self._records = 0
        self._min = 0
        self._max = 0

    def attach(self, out: BinaryIO) -> None:
        """Send rows of blocks closed from now on to ``out``."""
        self._out = out

    def add(self, end: int, records: int, ts_first: int, ts_last: int) -> None:
        """Note one entry ending at ``end``; closes the block when it is full."""
        if self._n == 0:
            self._min, self._max = ts_first, ts_last
        else:
            if ts_first < self._min:
                self._min = ts_first
            if ts_last > self._max:
                self._max = ts_last
        self._n += 1
        self._records += records
        self._end = end
        if self._n >= self._entries or end - self._start >= self._bytes:
            self.close_block()

    def close_block(self) -> None:
        """Emit the open block (if it holds any entry) as a row."""
        if self._n == 0:
            return
        block = Block(self._start, self._end, self._n, self._records, self._min, self._max)
        self.blocks.append(block)
        if self._out is not None:
            self._out.write(block.pack())
        self._start = self._end
        self._n = 0
        self._records = 0


def write_index(path: str, segment: int, blocks: Iterable[Block]) -> None:
    """Write a whole index atomically (a temporary file renamed over ``path``)."""
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(_head(segment))
            for b in blocks:
                f.write(b.pack())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def open_for_append(path: str, segment: int) -> BinaryIO:
    """Open (creating with its header when new or empty) an index for appending rows."""
    f = open(path, "ab")  # noqa: SIM115 - the writer owns it until close()
    if f.tell() == 0:
        f.write(_head(segment))
    return f


def read_index(path: str, segment: int, first: int, file_size: int) -> list[Block]:
    """The trustworthy prefix of an index (see the module docstring); [] when absent.

    Raises
    ------
    LogFormatError
        The file exists but is not an index of ``segment`` (a misplaced file).
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return []
    if len(data) < _HEAD.size:
        return []
    magic, version, _, seg = _HEAD.unpack_from(data)
    if magic != INDEX_MAGIC or seg != segment:
        raise LogFormatError(
            f"{path}: not the index of segment {segment}; delete it and it will be rebuilt"
        )
    if version > INDEX_VERSION:
        return []
    blocks: list[Block] = []
    expect = first
    for pos in range(_HEAD.size, len(data) - _ROW.size + 1, _ROW.size):
        start, end, entries, records, ts_min, ts_max, crc, _ = _ROW.unpack_from(data, pos)
        if (
            zlib.crc32(data[pos : pos + _ROW_BODY]) != crc
            or start != expect
            or end <= start
            or end > file_size
        ):
            break
        blocks.append(Block(start, end, entries, records, ts_min, ts_max))
        expect = end
    return blocks
