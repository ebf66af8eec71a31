"""Appending to an event log: numpy record batches and raw exchange messages.

One writer per directory (an ``flock`` on ``<dir>/.lock``). Entries go through a
buffered file (1 MiB by default); readers see them after :meth:`EventLogWriter.flush`
(or when the buffer fills). With ``fsync=True`` every flush, roll and close also
``fsync``s the segment and its index, so a flushed entry survives a power loss.

Opening a directory that holds segments recovers the newest one: every entry is
CRC-checked; a torn tail (an entry the previous writer did not finish, or garbage
after the last whole entry) is cut and counted in ``writer.recovery.cut_bytes``;
a damaged entry followed by valid ones is left in place (readers report it) and
listed in ``writer.recovery.corrupt``. The writer then continues that segment, unless
it was written with other record layouts, by another node name, or on an earlier UTC
day (with ``roll_utc_day``), in which case a new segment starts.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
import struct
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, BinaryIO

import numpy as np

from wiresens.errors import EventLogError, LogLockedError
from wiresens.records import DTYPES, SCHEMA_VERSION, RecordKind

from .format import (
    DAY_NS,
    ENTRY_MAGIC,
    ENTRY_SIZE,
    EntryType,
    EventLogOffset,
    SegmentHeader,
    parse_segment_name,
    segment_name,
)
from .index import IndexBuilder, index_path, open_for_append, write_index
from .reader import (
    _BAD,
    _END,
    _OK,
    DEFAULT_INDEX_BYTES,
    DEFAULT_INDEX_ENTRIES,
    CorruptEntry,
    _Segment,
)

__all__ = ["EventLogWriter", "Recovery", "recover"]

_BODY = struct.Struct("<IBBHIHHqq")  # entry header bytes 8..40
_CRC = struct.Struct("<I")
_ZEROS = bytes(8)
_RECORDS = int(EntryType.RECORDS)
_RAW = int(EntryType.RAW)
# Every record starts with the 32-byte header of wiresens.records: ts_recv and ts_pub are
# its int64 words 2 and 3, which lets one int64 view of a batch give both columns.
_TS_RECV_WORD, _TS_PUB_WORD = 2, 3


@dataclass
class Recovery:
    """What opening an existing log found in its newest segment."""

    segment: int | None = None
    path: str | None = None
    valid_end: int = 0
    cut_bytes: int = 0
    entries: int = 0
    corrupt: list[CorruptEntry] = field(default_factory=list)
    continued: bool = False


def _same_schemas(a: SegmentHeader, b: SegmentHeader) -> bool:
    if a.kinds.keys() != b.kinds.keys():
        return False
    return all(
        (s.name, s.version, s.dtype) == (b.kinds[k].name, b.kinds[k].version, b.kinds[k].dtype)
        for k, s in a.kinds.items()
    )


def _lock_directory(directory: str) -> int:
    path = os.path.join(directory, ".lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise LogLockedError(
            f"{directory}: another event-log writer (pid {holder}) holds this directory; "
            "stop it or give this writer its own directory"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _recover_segment(
    path: str, n: int, index_bytes: int, index_entries: int, fsync: bool
) -> tuple[Recovery, SegmentHeader, IndexBuilder]:
    """CRC-check a segment, cut its torn tail, rewrite its index (open block left open)."""
    seg = _Segment(path, n)
    try:
        builder = IndexBuilder(seg.first, index_bytes=index_bytes, index_entries=index_entries)
        rec = Recovery(segment=n, path=path)
        limit = seg.size()
        pos = seg.first
        while True:
            status, h, _ = seg.parse(pos, limit)
            if status == _OK and h is not None:
                nxt = seg.next_position(h, pos)
                builder.add(nxt, h[6], h[9], h[10])
                rec.entries += 1
                pos = nxt
                continue
            if status == _END:
                break
            reason = seg.reason if status == _BAD else "its length runs past valid entries"
            found = seg.find_next(pos, limit)
            if found is None:
                break  # a torn tail: nothing whole follows
            rec.corrupt.append(CorruptEntry(path, n, pos, reason, found))
            pos = found
        rec.valid_end = pos
        rec.cut_bytes = limit - pos
        header = seg.header
    finally:
        seg.close()
    if rec.cut_bytes:
        with open(path, "r+b") as f:
            f.truncate(rec.valid_end)
            if fsync:
                os.fsync(f.fileno())
    write_index(index_path(path), n, builder.blocks)
    return rec, header, builder


def recover(directory: str | os.PathLike[str]) -> Recovery:
    """Recover the newest segment of a log no writer holds (what opening a writer does),
    without starting a new segment: cut a torn tail, rewrite the index.

    Raises
    ------
    LogLockedError
        A writer holds the directory (it recovered the log when it opened it).
    """
    d = os.fspath(directory)
    numbers = sorted(
        (n, name) for name in os.listdir(d) if (n := parse_segment_name(name)) is not None
    )
    fd = _lock_directory(d)
    try:
        if not numbers:
            return Recovery()
        n, name = numbers[-1]
        path = os.path.join(d, name)
        rec, _, builder = _recover_segment(
            path, n, DEFAULT_INDEX_BYTES, DEFAULT_INDEX_ENTRIES, True
        )
        builder.close_block()
        write_index(index_path(path), n, builder.blocks)
        return rec
    finally:
        os.close(fd)


class EventLogWriter:
    """Append entries to the event log in ``directory`` (created when missing).

    Parameters
    ----------
    directory
        The log directory (one per node; one writer at a time).
    node
        Node name, written into every segment header.
    segment_bytes
        Roll to a new segment before an entry would take the segment past this size.
    fsync
        ``fsync`` the segment and index at every :meth:`flush`, roll and close.
    roll_utc_day
        Also roll when the UTC day (of the writer's wall clock) changes.
    index_bytes, index_entries
        Close an index block after this many bytes or entries (see ``index.py``).
    buffer_bytes
        Size of the write buffer in front of the segment file.
    clock
        Wall clock in ns (UTC); tests pass a fake one to cross midnight.

    Raises
    ------
    LogLockedError
        Another writer holds the directory.
    LogFormatError
        The newest segment is not readable by this version (foreign or newer format).
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        node: str,
        *,
        segment_bytes: int = 256 << 20,
        fsync: bool = False,
        roll_utc_day: bool = True,
        index_bytes: int = DEFAULT_INDEX_BYTES,
        index_entries: int = DEFAULT_INDEX_ENTRIES,
        buffer_bytes: int = 1 << 20,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        if segment_bytes < 4096:
            raise ValueError(f"segment_bytes must be at least 4096, got {segment_bytes}")
        self.directory = os.fspath(directory)
        self.node = node
        self.segment_bytes = segment_bytes
        self.fsync = fsync
        self.roll_utc_day = roll_utc_day
        self._index_bytes = index_bytes
        self._index_entries = index_entries
        self._buffer_bytes = buffer_bytes
        self._clock = clock
        self._dtypes: dict[int, tuple[np.dtype[Any], int]] = {
            int(k): (DTYPES[k], SCHEMA_VERSION[k]) for k in RecordKind
        }
        self._streams: dict[str, bytes] = {}
        self._hdr = bytearray(ENTRY_SIZE)
        self._hdr[0:4] = ENTRY_MAGIC
        self._hdr_body = memoryview(self._hdr)[8:]
        self._f: BinaryIO | None = None
        self._idx: BinaryIO | None = None
        self._index: IndexBuilder | None = None
        self._segment = -1
        self._path = ""
        self._pos = 0
        self._first = 0
        self._day_end = 0
        self.recovery = Recovery()
        self.failed: OSError | None = None
        """The error that stopped this writer (None while it works)."""
        os.makedirs(self.directory, exist_ok=True)
        self._lock = self._take_lock()
        try:
            self._open_latest()
        except BaseException:
            self._release_lock()
            raise

    # -- lifecycle --------------------------------------------------------------------

    def _take_lock(self) -> int:
        return _lock_directory(self.directory)

    def _release_lock(self) -> None:
        if self._lock >= 0:
            os.close(self._lock)  # closing the descriptor drops the flock
            self._lock = -1

    def _open_latest(self) -> None:
        numbers = sorted(
            (n, name)
            for name in os.listdir(self.directory)
            if (n := parse_segment_name(name)) is not None
        )
        if not numbers:
            self._new_segment(0)
            return
        n, name = numbers[-1]
        path = os.path.join(self.directory, name)
        rec, header, builder = _recover_segment(
            path, n, self._index_bytes, self._index_entries, self.fsync
        )
        self.recovery = rec
        pos = rec.valid_end
        now = self._clock()
        current = SegmentHeader.current(n, self.node, now)
        same_day = header.created_ns // DAY_NS == now // DAY_NS
        if (
            header.version != current.version
            or header.node != self.node
            or not _same_schemas(header, current)
            or (self.roll_utc_day and not same_day)
            or pos >= self.segment_bytes
        ):
            builder.close_block()
            write_index(index_path(path), n, builder.blocks)
            self._new_segment(n + 1)
            return
        self._f = open(path, "ab", buffering=self._buffer_bytes)  # noqa: SIM115
        self._idx = open_for_append(index_path(path), n)
        builder.attach(self._idx)
        self._index = builder
        self._segment, self._path, self._pos, self._first = n, path, pos, header.header_len
        self._day_end = (header.created_ns // DAY_NS + 1) * DAY_NS
        rec.continued = True

    def _new_segment(self, number: int) -> None:
        now = self._clock()
        path = os.path.join(self.directory, segment_name(number, now))
        head = SegmentHeader.current(number, self.node, now).encode()
        if os.path.exists(path):
            raise FileExistsError(f"{path}: segment exists already; is another writer active?")
        # Header first, under a temporary name, then renamed: a reader never sees a segment
        # without its whole header, and a crash leaves no half-made segment behind.
        tmp = f"{path}.tmp"
        with open(tmp, "wb") as f:
            f.write(head)
            if self.fsync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
        ipath = index_path(path)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(ipath)  # a stale index of an earlier segment file of that number
        self._idx = open_for_append(ipath, number)
        self._f = open(path, "ab", buffering=self._buffer_bytes)  # noqa: SIM115
        self._index = IndexBuilder(
            len(head),
            index_bytes=self._index_bytes,
            index_entries=self._index_entries,
            out=self._idx,
        )
        self._segment, self._path, self._pos, self._first = number, path, len(head), len(head)
        self._day_end = (now // DAY_NS + 1) * DAY_NS
        if self.fsync:
            dfd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)

    def _finish_segment(self) -> None:
        if self._index is not None:
            self._index.close_block()
        self.flush()
        if self._f is not None:
            self._f.close()
            self._f = None
        if self._idx is not None:
            self._idx.close()
            self._idx = None

    def _roll(self) -> None:
        self._finish_segment()
        self._new_segment(self._segment + 1)

    def flush(self) -> None:
        """Hand buffered entries to the OS (readers see them); ``fsync`` them with ``fsync``."""
        f = self._f
        if f is None:
            return
        try:
            f.flush()
            if self._idx is not None:
                self._idx.flush()
            if self.fsync:
                os.fsync(f.fileno())
                if self._idx is not None:
                    os.fsync(self._idx.fileno())
        except OSError as exc:
            self._fail(exc)
            raise

    def _fail(self, exc: OSError) -> None:
        """A write failed (disk full, I/O error): where the file ends is unknown now, so
        stop writing; a new writer recovers the log to its last whole entry."""
        self.failed = exc
        for fh in (self._f, self._idx):
            if fh is not None:
                # close() tries to flush the rest and may fail again; it closes the file
                # either way, and whatever it left at the end is cut by the next writer.
                with contextlib.suppress(OSError):
                    fh.close()
        self._f = self._idx = None
        self._release_lock()

    def _closed_error(self) -> Exception:
        if self.failed is not None:
            return EventLogError(
                f"event-log writer of {self.directory} stopped after a failed write "
                f"({self.failed}); free the disk or fix the error, then open a new "
                "EventLogWriter, which recovers the log to its last whole entry"
            )
        return ValueError(f"event-log writer of {self.directory} is closed")

    def close(self) -> None:
        """Close the open block of the index, flush, close the files, release the lock."""
        if self._f is not None:
            self._finish_segment()
        self._release_lock()

    def __enter__(self) -> EventLogWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return self._f is None

    @property
    def segment(self) -> int:
        """Number of the segment being written."""
        return self._segment

    def end_offset(self) -> EventLogOffset:
        """Where the next entry goes (the current segment's end, roll aside)."""
        return EventLogOffset(self._segment, self._pos)

    # -- appending --------------------------------------------------------------------

    def _append(
        self,
        etype: int,
        kind: int,
        version: int,
        count: int,
        source: int,
        aux: int,
        ts_first: int,
        ts_last: int,
        length: int,
        part1: Any,
        part2: Any,
    ) -> EventLogOffset:
        f = self._f
        if f is None:
            raise self._closed_error()
        total = ENTRY_SIZE + ((length + 7) & ~7)
        if (self._pos + total > self.segment_bytes and self._pos > self._first) or (
            self.roll_utc_day and self._clock() >= self._day_end
        ):
            self._roll()
            f = self._f
            assert f is not None
        _BODY.pack_into(
            self._hdr, 8, length, etype, kind, version, count, source, aux, ts_first, ts_last
        )
        crc = zlib.crc32(part1, zlib.crc32(self._hdr_body))
        if part2 is not None:
            crc = zlib.crc32(part2, crc)
        _CRC.pack_into(self._hdr, 4, crc)
        try:
            f.write(self._hdr)
            f.write(part1)
            if part2 is not None:
                f.write(part2)
            pad = total - ENTRY_SIZE - length
            if pad:
                f.write(_ZEROS[:pad])
        except OSError as exc:
            self._fail(exc)
            raise
        pos = self._pos
        self._pos = pos + total
        index = self._index
        assert index is not None
        index.add(self._pos, count, ts_first, ts_last)
        return EventLogOffset(self._segment, pos)

    def append_records(self, kind: RecordKind | int, records: Any) -> EventLogOffset:
        """Append a batch of records of one kind as one entry; returns the entry's offset.

        Parameters
        ----------
        kind
            The RecordKind of every record of the batch.
        records
            A 1-D array of ``DTYPES[kind]`` (or of an unstructured slot dtype of the same
            itemsize, as read from a ring), or a bytes-like of whole records.

        Raises
        ------
        ValueError
            An unknown kind, a dtype of another layout, a partial record, or a closed writer.
        """
        k = int(kind)
        spec = self._dtypes.get(k)
        if spec is None:
            raise ValueError(
                f"unknown record kind {kind!r}: use a wiresens.records.RecordKind "
                f"({', '.join(f'{m.name}={m.value}' for m in RecordKind)})"
            )
        dt, version = spec
        size = dt.itemsize
        if isinstance(records, np.ndarray):
            if records.dtype != dt and (
                records.dtype.names is not None or records.dtype.itemsize != size
            ):
                raise ValueError(
                    f"records of {RecordKind(k).name} must have dtype DTYPES[{RecordKind(k).name}] "
                    f"({size} bytes), got {records.dtype} ({records.dtype.itemsize} bytes)"
                )
            if not records.flags.c_contiguous:
                records = np.ascontiguousarray(records)
            n = records.size
            data: Any = records
        else:
            data = memoryview(records).cast("B")
            nbytes = data.nbytes
            if nbytes % size:
                raise ValueError(
                    f"{nbytes} bytes are not whole {RecordKind(k).name} records of {size} bytes"
                )
            n = nbytes // size
        if n == 0:
            return EventLogOffset(self._segment, self._pos)
        words = np.frombuffer(data, np.int64, n * (size >> 3)).reshape(n, size >> 3)
        t = words[:, _TS_RECV_WORD]
        lo = int(t.min())
        # Receive times are positive: only a batch whose minimum is not needs the slower
        # per-record fallback to ts_pub (records that never crossed a gateway).
        if lo <= 0 and not t.all():
            t = np.where(t != 0, t, words[:, _TS_PUB_WORD])
            lo = int(t.min())
        return self._append(_RECORDS, k, version, n, 0, 0, lo, int(t.max()), n * size, data, None)

    def append_slots(self, slots: np.ndarray[Any, Any]) -> EventLogOffset | None:
        """Append ring slots of mixed kinds (each record's ``kind`` byte says which), one
        entry per run of equal kinds; returns the first entry's offset (None when empty)."""
        n = len(slots)
        if n == 0:
            return None
        if not slots.flags.c_contiguous:
            slots = np.ascontiguousarray(slots)
        kinds = np.frombuffer(slots, np.uint8).reshape(n, slots.dtype.itemsize)[:, 0]
        cuts = [0, *(np.flatnonzero(kinds[1:] != kinds[:-1]) + 1).tolist(), n]
        first: EventLogOffset | None = None
        for a, b in itertools.pairwise(cuts):
            off = self.append_records(int(kinds[a]), slots[a:b])
            if first is None:
                first = off
        return first

    def append_raw(self, ts_recv_ns: int, source: int, stream: str, data: Any) -> EventLogOffset:
        """Append one raw exchange message, as received; returns the entry's offset.

        Parameters
        ----------
        ts_recv_ns
            When the gateway read the message (wall clock, ns).
        source
            A u16 id of the connection or gateway it came from.
        stream
            The stream name or URL (UTF-8, at most 65535 bytes).
        data
            The message bytes (any bytes-like).
        """
        sb = self._streams.get(stream)
        if sb is None:
            sb = stream.encode()
            if len(sb) > 0xFFFF:
                raise ValueError(f"stream name of {len(sb)} bytes is longer than 65535")
            if len(self._streams) < 4096:
                self._streams[stream] = sb
        if not 0 <= source <= 0xFFFF:
            raise ValueError(f"source must be a u16 (0..65535), got {source}")
        length = len(sb) + (len(data) if type(data) is bytes else memoryview(data).nbytes)
        return self._append(
            _RAW, 0, 0, 1, source, len(sb), ts_recv_ns, ts_recv_ns, length, sb, data
        )
