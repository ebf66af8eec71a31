"""Reading an event log: entries from an offset, time ranges as arrays, following a live log.

A reader never takes a lock and never writes a segment; it may write a missing index
of a closed segment (best effort). Entries are read through 1 MiB chunks with
``os.pread``; a RECORDS entry's ``records`` is a read-only numpy view into its chunk,
so copy it (``entry.records.copy()``) to keep a few records of a large log alive
without holding their chunk.

The end of the newest segment is the writer's working edge: an entry that is not yet
whole there ends the iteration (the writer is writing it, or crashed while writing it
and will cut it on restart). In any older segment it is corruption.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import time
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from wiresens.errors import CorruptEntryError
from wiresens.records import DTYPES, RecordKind

from .format import (
    ENTRY_HEADER,
    ENTRY_MAGIC,
    ENTRY_SIZE,
    MAX_PAYLOAD,
    RAW_KIND,
    EntryType,
    EventLogOffset,
    SegmentHeader,
    parse_segment_name,
    read_segment_header,
)
from .index import Block, IndexBuilder, index_path, read_index, write_index

__all__ = [
    "CorruptEntry",
    "Entry",
    "EventLogReader",
    "KindStats",
    "RawMessage",
    "SegmentInfo",
    "SegmentStats",
    "record_times",
]

_CHUNK = 1 << 20
_OK, _END, _INCOMPLETE, _BAD = 0, 1, 2, 3
_RECORDS = int(EntryType.RECORDS)
_RAW = int(EntryType.RAW)
DEFAULT_INDEX_BYTES = 1 << 20
DEFAULT_INDEX_ENTRIES = 4096


class RawMessage(NamedTuple):
    """One exchange message as received."""

    ts_recv: int
    source: int
    stream: str
    data: bytes


@dataclass(slots=True)
class Entry:
    """One entry of the log.

    ``records`` (RECORDS) is a read-only view of ``count`` records of the kind's dtype
    as the segment recorded it; ``raw`` (RAW) the message. ``next_offset`` is where the
    following entry starts: what a sink commits after handling this one.
    """

    offset: EventLogOffset
    next_offset: EventLogOffset
    type: EntryType
    kind: int
    count: int
    ts_first: int
    ts_last: int
    records: np.ndarray[Any, Any] | None = None
    raw: RawMessage | None = None


@dataclass(frozen=True, slots=True)
class CorruptEntry:
    """A corrupt entry a reader skipped: where, why, and where reading resumed (None: it
    stopped at the end of that segment)."""

    path: str
    segment: int
    offset: int
    reason: str
    resumed_at: int | None


@dataclass(frozen=True)
class SegmentInfo:
    """A segment file of the log."""

    segment: int
    path: str
    size: int
    created_ns: int
    node: str
    format_version: int


@dataclass
class KindStats:
    entries: int = 0
    records: int = 0


@dataclass
class SegmentStats:
    """What a full scan of one segment found (``wiresens log ls``)."""

    info: SegmentInfo
    entries: int = 0
    ts_min: int | None = None
    ts_max: int | None = None
    end: int = 0
    kinds: dict[int, KindStats] = field(default_factory=dict)
    corrupt: list[CorruptEntry] = field(default_factory=list)
    torn_bytes: int = 0


def record_times(records: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Each record's log timestamp: ``ts_recv``, or ``ts_pub`` where ``ts_recv`` is 0."""
    recv = records["ts_recv"]
    return np.where(recv != 0, recv, records["ts_pub"])


class _Segment:
    """One open segment file read through a chunk buffer."""

    def __init__(self, path: str, number: int) -> None:
        self.path = path
        self.number = number
        self.fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            head = os.pread(self.fd, 64 * 1024, 0)
            self.header: SegmentHeader = read_segment_header(path, head)
            if len(head) < self.header.header_len:
                self.header = read_segment_header(
                    path, os.pread(self.fd, self.header.header_len, 0)
                )
        except BaseException:
            os.close(self.fd)
            raise
        self.first = self.header.header_len
        self.itemsize = {k: s.dtype.itemsize for k, s in self.header.kinds.items()}
        # Today's dtype objects where the segment's layout equals them, so views of one
        # kind share one dtype object across segments (cheap identity checks, concatenation).
        self.dtypes: dict[int, np.dtype[Any]] = {}
        for k, s in self.header.kinds.items():
            try:
                current = DTYPES[RecordKind(k)]
            except ValueError:
                current = s.dtype
            self.dtypes[k] = current if current == s.dtype else s.dtype
        self._buf = b""
        self._base = 0
        self.reason = ""

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def size(self) -> int:
        size: int = os.fstat(self.fd).st_size
        return size

    def _load(self, pos: int, n: int, limit: int) -> bool:
        """Make bytes [pos, pos+n) available in the buffer; False when past ``limit``."""
        base = self._base
        if pos >= base and pos + n <= base + len(self._buf):
            return True
        if pos + n > limit:
            return False
        self._buf = os.pread(self.fd, min(max(n, _CHUNK), limit - pos), pos)
        self._base = pos
        return len(self._buf) >= n

    def parse(self, pos: int, limit: int) -> tuple[int, tuple[Any, ...] | None, int]:
        """Check the entry at ``pos``: (status, header fields, payload index in buffer).

        The reason of a _BAD status is left in ``self.reason``.
        """
        if pos >= limit:
            return _END, None, 0
        if not self._load(pos, ENTRY_SIZE, limit):
            return _INCOMPLETE, None, 0
        off = pos - self._base
        buf = self._buf
        h = ENTRY_HEADER.unpack_from(buf, off)
        if h[0] != ENTRY_MAGIC:
            self.reason = f"no entry magic (found {bytes(buf[off : off + 4])!r})"
            return _BAD, None, 0
        length: int = h[2]
        if length > MAX_PAYLOAD:
            self.reason = f"entry length {length} is impossible"
            return _BAD, None, 0
        total = ENTRY_SIZE + ((length + 7) & ~7)
        if not self._load(pos, total, limit):
            return _INCOMPLETE, None, 0
        off = pos - self._base
        mv = memoryview(self._buf)
        crc = zlib.crc32(
            mv[off + ENTRY_SIZE : off + ENTRY_SIZE + length],
            zlib.crc32(mv[off + 8 : off + ENTRY_SIZE]),
        )
        if crc != h[1]:
            self.reason = f"CRC mismatch (stored {h[1]:#010x}, computed {crc:#010x})"
            return _BAD, None, 0
        etype, kind, count = h[3], h[4], h[6]
        if etype == _RECORDS:
            size = self.itemsize.get(kind)
            if size is None or count * size != length:
                self.reason = (
                    f"RECORDS entry of kind {kind} with {count} records in {length} bytes does "
                    "not match the segment's schema"
                )
                return _BAD, None, 0
        elif etype != _RAW or h[8] > length:
            self.reason = f"unknown entry type {etype} or bad RAW framing"
            return _BAD, None, 0
        return _OK, h, off + ENTRY_SIZE

    def next_position(self, h: tuple[Any, ...], pos: int) -> int:
        end: int = pos + ENTRY_SIZE + ((h[2] + 7) & ~7)
        return end

    def find_next(self, pos: int, limit: int) -> int | None:
        """The first whole, CRC-valid entry after ``pos`` (8-aligned scan), None if none."""
        p = (pos + 8) & ~7
        while p < limit:
            chunk = os.pread(self.fd, min(_CHUNK + ENTRY_SIZE, limit - p), p)
            i = chunk.find(ENTRY_MAGIC)
            while i >= 0:
                cand = p + i
                if cand % 8 == 0 and self.parse(cand, limit)[0] == _OK:
                    return cand
                i = chunk.find(ENTRY_MAGIC, i + 1)
            p += _CHUNK
        return None

    def build(self, h: tuple[Any, ...], payload: int, pos: int, nxt: int) -> Entry:
        etype = EntryType(h[3])
        seg = self.number
        entry = Entry(
            EventLogOffset(seg, pos),
            EventLogOffset(seg, nxt),
            etype,
            h[4],
            h[6],
            h[9],
            h[10],
        )
        if etype is EntryType.RECORDS:
            entry.records = np.frombuffer(self._buf, self.dtypes[h[4]], h[6], payload)
        else:
            n = h[8]
            buf = self._buf
            entry.raw = RawMessage(
                h[9],
                h[7],
                buf[payload : payload + n].decode("utf-8", "replace"),
                buf[payload + n : payload + h[2]],
            )
        return entry

    def blocks(self, limit: int, *, rebuild: bool) -> list[Block]:
        """The index of this segment; rebuilt (and written) when absent and ``rebuild``."""
        path = index_path(self.path)
        blocks = read_index(path, self.number, self.first, limit)
        covered = blocks[-1].end if blocks else self.first
        if rebuild and covered < limit:
            builder = IndexBuilder(
                self.first, index_bytes=DEFAULT_INDEX_BYTES, index_entries=DEFAULT_INDEX_ENTRIES
            )
            pos = self.first
            while True:
                status, h, _ = self.parse(pos, limit)
                if status != _OK or h is None:
                    break
                nxt = self.next_position(h, pos)
                builder.add(nxt, h[6], h[9], h[10])
                pos = nxt
            if pos == limit:  # only a clean segment gets a written index
                builder.close_block()
                # A read-only log: the index then lives in this reader's memory only.
                with contextlib.suppress(OSError):
                    write_index(path, self.number, builder.blocks)
                return builder.blocks
        return blocks


class _Cursor:
    __slots__ = ("pos",)

    def __init__(self, pos: EventLogOffset) -> None:
        self.pos = pos


class EventLogReader:
    """Read the event log in ``directory`` (any number of readers, beside one writer).

    Parameters
    ----------
    directory
        The log directory the :class:`~wiresens.eventlog.EventLogWriter` writes.

    Attributes
    ----------
    corrupt
        Every corrupt entry skipped by a ``skip_corrupt=True`` read, in order.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = os.fspath(directory)
        if not os.path.isdir(self.directory):
            raise FileNotFoundError(
                f"{self.directory}: no such event-log directory (give the directory the "
                "sidecar writes, e.g. <run_dir>/events)"
            )
        self.corrupt: list[CorruptEntry] = []
        self._indexed: dict[int, list[Block]] = {}

    # -- segments ---------------------------------------------------------------------

    def _numbers(self) -> list[tuple[int, str]]:
        out = []
        for name in os.listdir(self.directory):
            n = parse_segment_name(name)
            if n is not None:
                out.append((n, os.path.join(self.directory, name)))
        out.sort()
        return out

    def segments(self) -> list[SegmentInfo]:
        """Every segment file, oldest first."""
        infos = []
        for n, path in self._numbers():
            seg = _Segment(path, n)
            try:
                h = seg.header
                infos.append(SegmentInfo(n, path, seg.size(), h.created_ns, h.node, h.version))
            finally:
                seg.close()
        return infos

    def stats(self) -> list[SegmentStats]:
        """Scan every segment (CRC checked): entries, records per kind, time range, damage."""
        out = []
        numbers = self._numbers()
        for i, (n, path) in enumerate(numbers):
            seg = _Segment(path, n)
            try:
                limit = seg.size()
                h = seg.header
                st = SegmentStats(SegmentInfo(n, path, limit, h.created_ns, h.node, h.version))
                pos = seg.first
                while True:
                    status, eh, _ = seg.parse(pos, limit)
                    if status == _OK and eh is not None:
                        ks = st.kinds.setdefault(RAW_KIND if eh[3] == _RAW else eh[4], KindStats())
                        ks.entries += 1
                        ks.records += eh[6]
                        st.entries += 1
                        st.ts_min = eh[9] if st.ts_min is None else min(st.ts_min, eh[9])
                        st.ts_max = eh[10] if st.ts_max is None else max(st.ts_max, eh[10])
                        pos = seg.next_position(eh, pos)
                        continue
                    if status == _END:
                        break
                    bad = seg.reason
                    nxt = seg.find_next(pos, limit)
                    if status == _INCOMPLETE and i == len(numbers) - 1 and nxt is None:
                        st.torn_bytes = limit - pos
                        break
                    reason = bad if status == _BAD else _incomplete_reason(nxt)
                    st.corrupt.append(CorruptEntry(path, n, pos, reason, nxt))
                    if nxt is None:
                        break
                    pos = nxt
                st.end = pos
                out.append(st)
            finally:
                seg.close()
        return out

    # -- entries ----------------------------------------------------------------------

    def entries(
        self,
        start: EventLogOffset | None = None,
        *,
        kinds: Iterable[int] | None = None,
        start_ns: int | None = None,
        end_ns: int | None = None,
        skip_corrupt: bool = False,
    ) -> Iterator[Entry]:
        """Entries from ``start`` (the beginning when None) to the end of the log.

        Parameters
        ----------
        start
            An entry's offset or ``next_offset`` (what a sink committed).
        kinds
            Record kinds to keep; include ``RAW_KIND`` (0) for raw messages. All when None.
        start_ns, end_ns
            Keep entries whose [ts_first, ts_last] meets [start_ns, end_ns): filtering is
            per entry (whole batches), :meth:`read_records` trims to records. The index
            skips blocks outside the range without reading them.
        skip_corrupt
            Record a corrupt entry in :attr:`corrupt` and continue at the next valid
            entry, instead of raising.

        Raises
        ------
        CorruptEntryError
            An entry fails its CRC or framing; the message names the file and byte offset.
        """
        return self._iter(
            _Cursor(start or EventLogOffset(0, 0)), kinds, start_ns, end_ns, skip_corrupt
        )

    def _iter(
        self,
        cur: _Cursor,
        kinds: Iterable[int] | None,
        start_ns: int | None,
        end_ns: int | None,
        skip_corrupt: bool,
    ) -> Iterator[Entry]:
        want = None if kinds is None else frozenset(int(k) for k in kinds)
        lo = -(1 << 63) if start_ns is None else start_ns
        hi = (1 << 63) - 1 if end_ns is None else end_ns
        timed = start_ns is not None or end_ns is not None
        numbers = [(n, p) for n, p in self._numbers() if n >= cur.pos.segment]
        for i, (n, path) in enumerate(numbers):
            last = i == len(numbers) - 1
            seg = _Segment(path, n)
            try:
                limit = seg.size()
                pos = cur.pos.position if n == cur.pos.segment else 0
                pos = max(pos, seg.first)
                skip: dict[int, Block] = {}
                if timed:
                    for blk in self._blocks(seg, limit, last):
                        if blk.ts_max < lo or blk.ts_min >= hi:
                            skip[blk.start] = blk
                while True:
                    b = skip.get(pos)
                    if b is not None:
                        pos = b.end
                        cur.pos = EventLogOffset(n, pos)
                        continue
                    status, h, payload = seg.parse(pos, limit)
                    if status == _OK and h is not None:
                        nxt = seg.next_position(h, pos)
                        cur.pos = EventLogOffset(n, nxt)
                        if (want is None or (RAW_KIND if h[3] == _RAW else h[4]) in want) and (
                            h[10] >= lo and h[9] < hi
                        ):
                            yield seg.build(h, payload, pos, nxt)
                        pos = nxt
                        continue
                    if status == _END:
                        break
                    bad = seg.reason
                    nxt_pos = seg.find_next(pos, limit)
                    if status == _INCOMPLETE and last and nxt_pos is None:
                        break  # the writer's edge (being written, or torn by a crash)
                    reason = bad if status == _BAD else _incomplete_reason(nxt_pos)
                    if not skip_corrupt:
                        raise CorruptEntryError(
                            f"{path}: corrupt entry at byte offset {pos} (offset "
                            f"{EventLogOffset(n, pos).encode()}): {reason}; read past it with "
                            "skip_corrupt=True (CLI: --skip-corrupt)",
                            path=path,
                            offset=pos,
                            segment=n,
                        )
                    self.corrupt.append(CorruptEntry(path, n, pos, reason, nxt_pos))
                    if nxt_pos is None:
                        # Nothing valid follows: resume after this segment's end.
                        cur.pos = EventLogOffset(n, limit)
                        break
                    pos = nxt_pos
                    cur.pos = EventLogOffset(n, pos)
            finally:
                seg.close()
            if not last:
                cur.pos = EventLogOffset(numbers[i + 1][0], 0)

    def _blocks(self, seg: _Segment, limit: int, last: bool) -> list[Block]:
        if not last:
            cached = self._indexed.get(seg.number)
            if cached is None:
                cached = seg.blocks(limit, rebuild=True)
                self._indexed[seg.number] = cached
            return cached
        return seg.blocks(limit, rebuild=False)

    def end_offset(self) -> EventLogOffset:
        """Where the next entry will go: past the last whole entry of the newest segment."""
        numbers = self._numbers()
        if not numbers:
            return EventLogOffset(0, 0)
        n, path = numbers[-1]
        seg = _Segment(path, n)
        try:
            limit = seg.size()
            blocks = seg.blocks(limit, rebuild=False)
            pos = blocks[-1].end if blocks else seg.first
            while True:
                status, h, _ = seg.parse(pos, limit)
                if status != _OK or h is None:
                    return EventLogOffset(n, pos)
                pos = seg.next_position(h, pos)
        finally:
            seg.close()

    def tail(
        self,
        start: EventLogOffset | None = None,
        poll_s: float = 0.05,
        *,
        kinds: Iterable[int] | None = None,
        skip_corrupt: bool = False,
        idle_timeout_s: float | None = None,
    ) -> Iterator[Entry]:
        """Follow a live log: every entry from ``start`` (the beginning when None; pass
        :meth:`end_offset` for new entries only), then new ones as the writer flushes
        them, across segment rolls. Polls every ``poll_s`` when idle; ends after
        ``idle_timeout_s`` without a new entry (never when None).
        """
        cur = _Cursor(start or EventLogOffset(0, 0))
        idle_since = time.monotonic()
        while True:
            got = False
            for entry in self._iter(cur, kinds, None, None, skip_corrupt):
                got = True
                yield entry
            if got:
                idle_since = time.monotonic()
            elif idle_timeout_s is not None and time.monotonic() - idle_since >= idle_timeout_s:
                return
            else:
                time.sleep(poll_s)

    # -- arrays -----------------------------------------------------------------------

    def read_records(
        self,
        kind: RecordKind | int,
        start_ns: int | None = None,
        end_ns: int | None = None,
        *,
        skip_corrupt: bool = False,
    ) -> np.ndarray[Any, Any]:
        """All records of ``kind`` with a timestamp in [start_ns, end_ns), in log order.

        The result has today's ``DTYPES[kind]``; segments written with another layout of
        the kind are converted field by field (fields they lack stay zero).
        """
        kind = int(kind)
        target: np.dtype[Any] | None
        try:
            target = DTYPES[RecordKind(kind)]
        except ValueError:
            target = None  # a kind this code does not know: the segments' own layout
        parts: list[np.ndarray[Any, Any]] = []
        for e in self.entries(
            kinds=(kind,), start_ns=start_ns, end_ns=end_ns, skip_corrupt=skip_corrupt
        ):
            recs = e.records
            if recs is None:
                continue
            if (start_ns is not None and e.ts_first < start_ns) or (
                end_ns is not None and e.ts_last >= end_ns
            ):
                t = record_times(recs)
                mask = np.ones(len(recs), bool)
                if start_ns is not None:
                    mask &= t >= start_ns
                if end_ns is not None:
                    mask &= t < end_ns
                recs = recs[mask]
            if target is None:
                target = recs.dtype
            if recs.dtype is not target and recs.dtype != target:
                recs = _convert(recs, target)
            parts.append(recs)
        if target is None:
            raise ValueError(f"kind {kind} is not a RecordKind and is not in this log")
        out = np.empty(sum(len(p) for p in parts), target)
        # Copy bytes, not fields: np.concatenate of structured arrays promotes field by
        # field, several times slower than moving the bytes.
        flat = out.view(np.uint8)
        at = 0
        for p in parts:
            b = np.ascontiguousarray(p).view(np.uint8)
            flat[at : at + len(b)] = b
            at += len(b)
        return out

    def to_pandas(
        self,
        kind: RecordKind | int,
        start_ns: int | None = None,
        end_ns: int | None = None,
        *,
        skip_corrupt: bool = False,
    ) -> Any:
        """:meth:`read_records` as a pandas DataFrame (padding fields dropped).

        Raises
        ------
        ImportError
            pandas is not installed (``pip install pandas``).
        """
        try:
            pd = importlib.import_module("pandas")
        except ImportError:
            raise ImportError(
                "EventLogReader.to_pandas needs pandas, which is not installed: pip install pandas"
            ) from None
        arr = self.read_records(kind, start_ns, end_ns, skip_corrupt=skip_corrupt)
        return pd.DataFrame({name: arr[name] for name in _public_fields(arr.dtype)})

    def to_arrow(
        self,
        kind: RecordKind | int,
        start_ns: int | None = None,
        end_ns: int | None = None,
        *,
        skip_corrupt: bool = False,
        decimals: bool = False,
    ) -> Any:
        """:meth:`read_records` as a pyarrow Table (padding fields dropped; fixed-point
        fields as exact ``decimal128(20, 8)`` with ``decimals``, else int64).

        Raises
        ------
        ImportError
            pyarrow is not installed (``pip install pyarrow``).
        """
        from .export import arrow_table

        arr = self.read_records(kind, start_ns, end_ns, skip_corrupt=skip_corrupt)
        return arrow_table(arr, decimals=decimals)


def _incomplete_reason(next_valid: int | None) -> str:
    if next_valid is not None:
        return "its length runs past valid entries that follow (a damaged length field)"
    return "the segment ends inside this entry"


def _public_fields(dt: np.dtype[Any]) -> list[str]:
    return [n for n in dt.names or () if not n.startswith("_")]


def _convert(recs: np.ndarray[Any, Any], target: np.dtype[Any]) -> np.ndarray[Any, Any]:
    out = np.zeros(len(recs), target)
    names = set(recs.dtype.names or ())
    for name in target.names or ():
        if name in names and not name.startswith("_"):
            out[name] = recs[name]
    return out
