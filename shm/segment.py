"""Named POSIX shared-memory segments with a versioned header.

Every segment Wiresens creates opens with the same 128-byte header, so any tool
(``wiresens shm ls``, a debugger, a C program) can tell what a segment holds::

    offset  size  field
    0       8     magic            b"WIRESENS" (written last: a reader never sees a half-made header)
    8       4     layout_version   version of this header and of the structure layouts
    12      4     structure        1 = SPSC ring, 2 = seqlock slots, 3 = frame ring
    16      4     record_kind      numeric kind of the records held (0 = mixed kinds)
    20      4     schema_version   version of that record kind's dtype
    24      4     record_size      itemsize of one record, bytes
    28      4     flags            reserved, 0
    32      8     capacity         number of record slots
    40      8     creator_pid
    48      8     creator_start    creator's start time, clock ticks since boot (pid reuse guard)
    56      8     created_ns       CLOCK_REALTIME at creation
    64      8     dtype_hash       FNV-1a of the numpy dtype description
    72      8     data_offset      where the record slots start (page aligned)
    80      48    name             the segment's name, NUL padded
    128     ...   structure-specific control lines (see ring.py, seqlock.py)
    4096    ...   data

Attaching compares the header with what the caller expects and raises
:class:`LayoutMismatchError` naming both sides.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import posix_ipc

from .errors import LayoutMismatchError, SegmentExistsError, SegmentNotFoundError
from .process import process_alive, self_id

__all__ = [
    "DATA_OFFSET",
    "HEADER_DTYPE",
    "LAYOUT_VERSION",
    "MAGIC",
    "Segment",
    "SegmentInfo",
    "Structure",
    "dtype_hash",
    "list_segments",
]

MAGIC = b"WIRESENS"
LAYOUT_VERSION = 1
DATA_OFFSET = 4096
SHM_DIR = "/dev/shm"


class Structure:
    """Values of the header's ``structure`` field."""

    RING = 1
    SEQLOCK = 2
    BYTERING = 3
    NAMES = {1: "ring", 2: "seqlock", 3: "bytering"}


HEADER_DTYPE = np.dtype(
    [
        ("magic", "S8"),
        ("layout_version", "<u4"),
        ("structure", "<u4"),
        ("record_kind", "<u4"),
        ("schema_version", "<u4"),
        ("record_size", "<u4"),
        ("flags", "<u4"),
        ("capacity", "<u8"),
        ("creator_pid", "<i8"),
        ("creator_start", "<i8"),
        ("created_ns", "<i8"),
        ("dtype_hash", "<u8"),
        ("data_offset", "<u8"),
        ("name", "S48"),
    ]
)
assert HEADER_DTYPE.itemsize == 128


def dtype_hash(dtype: np.dtype[Any]) -> int:
    """A stable 64-bit FNV-1a hash of a dtype's field names, formats and offsets."""
    text = repr(dtype.descr if dtype.names else dtype.str).encode() + str(dtype.itemsize).encode()
    h = 0xCBF29CE484222325
    for b in text:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def _data_bytes(structure: int, record_size: int, capacity: int) -> int:
    """Bytes of record data a structure needs (seqlock slots carry a sequence word and padding)."""
    if structure == Structure.SEQLOCK:
        return (8 + record_size + 63) // 64 * 64 * capacity
    return record_size * capacity


def _describe_dtype(dtype: np.dtype[Any]) -> str:
    if dtype.names:
        fields = ", ".join(f"{n}:{dtype.fields[n][0].str}" for n in dtype.names)  # type: ignore[index]
        text = f"({fields})"
    else:
        text = dtype.str
    return text if len(text) <= 160 else text[:157] + "..."


def _posix_name(name: str) -> str:
    if "/" in name or not name or len(name) > 47:
        raise ValueError(
            f"segment name {name!r} must be 1-47 characters without '/' "
            "(it becomes /dev/shm/<name>)"
        )
    return "/" + name


@dataclass(frozen=True)
class SegmentInfo:
    """What a segment's header says, for listings."""

    name: str
    structure: str
    record_kind: int
    schema_version: int
    record_size: int
    capacity: int
    creator_pid: int
    creator_alive: bool
    created_ns: int
    size: int
    valid: bool
    """The header carries our magic and this version's layout (attachable)."""
    foreign: bool = False
    """No Wiresens magic at all: someone else's file, or a segment still being created."""


class Segment:
    """One mapped POSIX shared-memory segment: header, control lines and data.

    Use :meth:`create` or :meth:`attach`; :meth:`close` unmaps, :meth:`unlink`
    removes the name (mapped views stay valid until closed).
    """

    def __init__(self, name: str, mm: mmap.mmap, created: bool) -> None:
        self.name = name
        self.created = created
        self._mmap = mm
        self.buf = memoryview(mm)
        self.size = len(mm)
        self.header: np.ndarray[Any, Any] = np.frombuffer(mm, dtype=HEADER_DTYPE, count=1)
        # int64 words of the whole segment, for the control lines (aligned 8-byte loads/stores).
        self.words = self.buf.cast("q")
        self._closed = False

    # -- creation -------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        name: str,
        *,
        structure: int,
        dtype: np.dtype[Any],
        capacity: int,
        record_kind: int = 0,
        schema_version: int = 0,
        data_bytes: int | None = None,
        replace_stale: bool = True,
    ) -> Segment:
        """Create a new segment; a stale one (creator dead) of that name is replaced.

        Raises :class:`SegmentExistsError` when a live process owns the name.
        """
        size = DATA_OFFSET + (data_bytes if data_bytes is not None else dtype.itemsize * capacity)
        size = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE * mmap.PAGESIZE
        pname = _posix_name(name)
        try:
            shm = posix_ipc.SharedMemory(pname, posix_ipc.O_CREX, mode=0o600, size=size)
        except posix_ipc.ExistentialError:
            info = describe(name)
            if info is not None and info.foreign:
                # Not ours, or a creator still writing its header: never delete either.
                raise SegmentExistsError(
                    f"/dev/shm/{name} exists and is not a Wiresens segment (no valid header), "
                    "or another process is creating it right now; choose another shm prefix, "
                    f"or remove it with `wiresens shm rm {name}` if you know it is garbage"
                ) from None
            if replace_stale and info is not None and not info.creator_alive:
                posix_ipc.unlink_shared_memory(pname)
                shm = posix_ipc.SharedMemory(pname, posix_ipc.O_CREX, mode=0o600, size=size)
            else:
                owner = (
                    f"live pid {info.creator_pid}"
                    if info is not None and info.creator_alive
                    else "another process"
                )
                raise SegmentExistsError(
                    f"shared-memory segment {name!r} exists and is owned by {owner}; "
                    "stop that node or choose another shm prefix"
                ) from None
        try:
            mm = mmap.mmap(shm.fd, size)
        finally:
            shm.close_fd()
        seg = cls(name, mm, created=True)
        pid, start = self_id()
        h = seg.header[0]
        h["layout_version"] = LAYOUT_VERSION
        h["structure"] = structure
        h["record_kind"] = record_kind
        h["schema_version"] = schema_version
        h["record_size"] = dtype.itemsize
        h["capacity"] = capacity
        h["creator_pid"] = pid
        h["creator_start"] = start
        h["created_ns"] = time.time_ns()
        h["dtype_hash"] = dtype_hash(dtype)
        h["data_offset"] = DATA_OFFSET
        h["name"] = name.encode()
        # Magic last: an attacher that sees it sees the rest of the header (x86-64 TSO).
        seg.header["magic"] = MAGIC
        return seg

    @classmethod
    def attach(
        cls,
        name: str,
        *,
        structure: int | None = None,
        dtype: np.dtype[Any] | None = None,
        record_kind: int | None = None,
        schema_version: int | None = None,
        capacity: int | None = None,
    ) -> Segment:
        """Map an existing segment and check its header against the expectations given."""
        pname = _posix_name(name)
        try:
            shm = posix_ipc.SharedMemory(pname, 0)
        except posix_ipc.ExistentialError:
            raise SegmentNotFoundError(
                f"no shared-memory segment {name!r} (/dev/shm/{name}); "
                "is the node that creates it running, with the same shm prefix?"
            ) from None
        try:
            if shm.size < DATA_OFFSET:
                raise LayoutMismatchError(
                    f"segment {name!r} is {shm.size} bytes, smaller than a Wiresens header "
                    f"({DATA_OFFSET}): not a Wiresens segment, or its creator is still "
                    f"initialising it (retry); if it is stale, remove it with "
                    f"`wiresens shm rm {name}`"
                )
            mm = mmap.mmap(shm.fd, shm.size)
        finally:
            shm.close_fd()
        seg = cls(name, mm, created=False)
        try:
            seg._check(structure, dtype, record_kind, schema_version, capacity)
        except BaseException:
            seg.close()
            raise
        return seg

    def _check(
        self,
        structure: int | None,
        dtype: np.dtype[Any] | None,
        record_kind: int | None,
        schema_version: int | None,
        capacity: int | None,
    ) -> None:
        h = self.header[0]
        if bytes(h["magic"]) != MAGIC:
            raise LayoutMismatchError(
                f"segment {self.name!r} has magic {bytes(h['magic'])!r}, expected {MAGIC!r}: "
                "not a Wiresens segment, or its creator is still initialising it (retry); "
                f"if it is stale, remove it with `wiresens shm rm {self.name}`"
            )
        pairs: list[tuple[str, int, int | None]] = [
            ("layout version", int(h["layout_version"]), LAYOUT_VERSION),
            ("structure", int(h["structure"]), structure),
            ("record kind", int(h["record_kind"]), record_kind),
            ("schema version", int(h["schema_version"]), schema_version),
            ("capacity", int(h["capacity"]), capacity),
        ]
        for what, have, want in pairs:
            if want is not None and have != want:
                raise LayoutMismatchError(
                    f"segment {self.name!r}: {what} in the segment is {have}, this process "
                    f"expects {want}; both sides must run the same Wiresens version "
                    "(restart the node, or remove the stale segment with `wiresens shm rm`)"
                )
        if dtype is not None:
            size, want_size = int(h["record_size"]), dtype.itemsize
            seg_hash, want_hash = int(h["dtype_hash"]), dtype_hash(dtype)
            if size != want_size or seg_hash != want_hash:
                what = (
                    f"the segment holds {size}-byte records, this process expects {want_size}-byte"
                    if size != want_size
                    else f"the record dtype differs (both {size} bytes)"
                )
                raise LayoutMismatchError(
                    f"segment {self.name!r}: {what}: segment dtype hash {seg_hash:#018x}, "
                    f"this process's dtype {_describe_dtype(dtype)} hashes to {want_hash:#018x}; "
                    "both sides must use the same record dtype (same Wiresens version and "
                    "record kind), or remove the stale segment with `wiresens shm rm`"
                )

        need = int(h["data_offset"]) + _data_bytes(
            int(h["structure"]), int(h["record_size"]), int(h["capacity"])
        )
        if self.size < need or int(h["data_offset"]) < HEADER_DTYPE.itemsize:
            raise LayoutMismatchError(
                f"segment {self.name!r} is {self.size} bytes but its header describes "
                f"{need} (data offset {int(h['data_offset'])}, capacity {int(h['capacity'])} x "
                f"{int(h['record_size'])}-byte records): it is truncated or corrupt; remove it "
                f"with `wiresens shm rm {self.name}` and restart its creator"
            )

    # -- queries --------------------------------------------------------------------
    @property
    def capacity(self) -> int:
        return int(self.header[0]["capacity"])

    @property
    def data_offset(self) -> int:
        return int(self.header[0]["data_offset"])

    def creator_alive(self) -> bool:
        h = self.header[0]
        return process_alive(int(h["creator_pid"]), int(h["creator_start"]))

    def data_view(self, dtype: np.dtype[Any], count: int) -> np.ndarray[Any, Any]:
        """A zero-copy numpy view of ``count`` records of ``dtype`` at the data offset."""
        return np.frombuffer(self._mmap, dtype=dtype, count=count, offset=self.data_offset)

    # -- teardown -------------------------------------------------------------------
    def close(self) -> None:
        """Unmap. Views handed out must be dropped first, or the mapping stays until they are."""
        if self._closed:
            return
        self._closed = True
        self.header = np.empty(0, HEADER_DTYPE)
        self.words.release()
        self.buf.release()
        # A numpy view may still export the buffer; the mapping is then freed with the last view.
        with contextlib.suppress(BufferError):
            self._mmap.close()

    def unlink(self) -> None:
        """Remove the segment's name; processes that have it mapped keep their mapping."""
        unlink(self.name)

    def __enter__(self) -> Segment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def unlink(name: str) -> bool:
    """Remove the named segment; False if it did not exist."""
    try:
        posix_ipc.unlink_shared_memory(_posix_name(name))
    except posix_ipc.ExistentialError:
        return False
    return True


def describe(name: str) -> SegmentInfo | None:
    """Read a segment's header without checking it; None if the name does not exist."""
    path = os.path.join(SHM_DIR, name)
    try:
        with open(path, "rb") as f:
            raw = f.read(HEADER_DTYPE.itemsize)
            size = os.fstat(f.fileno()).st_size
    except OSError:
        return None
    if len(raw) < HEADER_DTYPE.itemsize or not raw.startswith(MAGIC):
        return SegmentInfo(name, "?", 0, 0, 0, 0, 0, False, 0, size, False, foreign=True)
    h = np.frombuffer(raw, dtype=HEADER_DTYPE, count=1)[0]
    pid, start = int(h["creator_pid"]), int(h["creator_start"])
    return SegmentInfo(
        name=name,
        structure=Structure.NAMES.get(int(h["structure"]), str(int(h["structure"]))),
        record_kind=int(h["record_kind"]),
        schema_version=int(h["schema_version"]),
        record_size=int(h["record_size"]),
        capacity=int(h["capacity"]),
        creator_pid=pid,
        creator_alive=process_alive(pid, start),
        created_ns=int(h["created_ns"]),
        size=size,
        valid=int(h["layout_version"]) == LAYOUT_VERSION,
    )


def list_segments(prefix: str = "") -> list[SegmentInfo]:
    """Every segment in /dev/shm whose name starts with ``prefix`` and carries our magic."""
    out: list[SegmentInfo] = []
    try:
        names = sorted(os.listdir(SHM_DIR))
    except OSError:
        return out
    for n in names:
        if not n.startswith(prefix) or n.startswith("sem."):
            continue
        info = describe(n)
        # Other layout versions are listed too (valid False), so stale ones can be removed.
        if info is not None and not info.foreign:
            out.append(info)
    return out
