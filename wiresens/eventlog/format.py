"""On-disk format of the event log: segment header, entry framing, offsets, names.

A log is a directory of segment files ``<segment:06d>-<YYYYMMDD>.evlog`` (the UTC day
the segment was created) and one sidecar index per segment (``.evidx``, see
:mod:`wiresens.eventlog.index`). Every structure is little-endian and 8-byte aligned.

Segment header (``header_len`` bytes, a multiple of 8)::

    0   magic        8s   b"WSEVLOG\\0"
    8   version      u2   FORMAT_VERSION (readers refuse newer versions)
    10  flags        u2   0
    12  header_len   u4   offset of the first entry
    16  created_ns   i8   wall clock at creation (UTC ns)
    24  segment      u4   segment number (also in the file name)
    28  json_crc     u4   zlib.crc32 of the JSON document
    32  json         utf-8 {"node", "created_ns", "segment", "kinds": {"<id>": {"name",
                     "version", "dtype": {"names", "formats", "offsets", "itemsize"}}}}
    ..  zero padding to a multiple of 8

Entry (header 40 bytes, then the payload, zero padded to a multiple of 8)::

    0   magic     4s   b"WSE1"
    4   crc       u4   zlib.crc32 over bytes 8..40 of this header, then the payload
    8   length    u4   payload bytes (without padding)
    12  type      u1   1 RECORDS, 2 RAW
    13  kind      u1   RecordKind (RECORDS), 0 (RAW)
    14  version   u2   the kind's schema version (RECORDS), 0 (RAW)
    16  count     u4   records (RECORDS), 1 (RAW)
    20  source    u2   RAW: source id; RECORDS: 0
    22  aux       u2   RAW: bytes of the UTF-8 stream name; RECORDS: 0
    24  ts_first  i8   earliest timestamp in the entry (ns)
    32  ts_last   i8   latest timestamp in the entry (ns)
    40  payload   RECORDS: count * itemsize bytes of records
                  RAW: stream name (aux bytes), then the message as received

A record's timestamp is its ``ts_recv``, or ``ts_pub`` when ``ts_recv`` is 0; a RAW
entry's is its receive time. Entries start at 8-aligned offsets, so a reader that
lost its place (a corrupt entry) scans forward 8 bytes at a time for the magic and
accepts a candidate only when its CRC holds.
"""

from __future__ import annotations

import json
import re
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import IntEnum
from typing import Any, NamedTuple

import numpy as np

from wiresens.errors import LogFormatError
from wiresens.records import DTYPES, SCHEMA_VERSION, RecordKind

__all__ = [
    "DAY_NS",
    "ENTRY_HEADER",
    "ENTRY_MAGIC",
    "FORMAT_VERSION",
    "MAX_PAYLOAD",
    "RAW_KIND",
    "SEGMENT_MAGIC",
    "EntryType",
    "EventLogOffset",
    "KindSchema",
    "SegmentHeader",
    "align8",
    "dtype_from_json",
    "dtype_to_json",
    "entry_crc",
    "parse_segment_name",
    "read_segment_header",
    "segment_name",
]

SEGMENT_MAGIC = b"WSEVLOG\0"
ENTRY_MAGIC = b"WSE1"
FORMAT_VERSION = 1
DAY_NS = 86_400 * 1_000_000_000
RAW_KIND = 0
"""The ``kind`` of RAW entries; pass it in ``kinds=`` filters to select raw messages."""
MAX_PAYLOAD = (1 << 31) - 1
"""Largest payload an entry may carry; a header claiming more is corrupt."""

SEGMENT_FIXED = struct.Struct("<8sHHIqII")
ENTRY_HEADER = struct.Struct("<4sIIBBHIHHqq")
"""magic, crc, length, type, kind, version, count, source, aux, ts_first, ts_last."""
ENTRY_SIZE = ENTRY_HEADER.size
assert ENTRY_SIZE == 40

_NAME = re.compile(r"^(\d{6,})-(\d{8})\.evlog$")


class EntryType(IntEnum):
    """What an entry's payload holds."""

    RECORDS = 1
    RAW = 2


class EventLogOffset(NamedTuple):
    """An entry's place in the log: (segment number, byte offset in that segment file).

    Offsets order totally (segment first) and encode to a fixed-width string that sorts
    the same way, e.g. ``"000012:0000001234"``: what a sink stores as "committed up to".
    """

    segment: int
    position: int

    def encode(self) -> str:
        """``"SSSSSS:PPPPPPPPPP"`` (zero padded; wider numbers are written in full)."""
        return f"{self.segment:06d}:{self.position:010d}"

    @classmethod
    def decode(cls, text: str) -> EventLogOffset:
        """The offset :meth:`encode` wrote; ``ValueError`` naming the text otherwise."""
        seg, sep, pos = text.strip().partition(":")
        if not sep or not seg.isdigit() or not pos.isdigit():
            raise ValueError(
                f"{text!r} is not an event-log offset (expected 'segment:position' like "
                "'000012:0000001234')"
            )
        return cls(int(seg), int(pos))


def align8(n: int) -> int:
    return (n + 7) & ~7


def entry_crc(header: bytes | bytearray | memoryview, *payload: Any) -> int:
    """CRC of an entry: zlib.crc32 over header bytes 8..40, then each payload part."""
    crc = zlib.crc32(memoryview(header)[8:ENTRY_SIZE])
    for part in payload:
        crc = zlib.crc32(part, crc)
    return crc


def segment_name(segment: int, created_ns: int) -> str:
    day = datetime.fromtimestamp(created_ns / 1e9, UTC).strftime("%Y%m%d")
    return f"{segment:06d}-{day}.evlog"


def parse_segment_name(name: str) -> int | None:
    """The segment number of a segment file name, None for any other file."""
    m = _NAME.match(name)
    return int(m[1]) if m else None


def dtype_to_json(dt: np.dtype[Any]) -> dict[str, Any]:
    """A structured dtype as JSON that rebuilds it exactly (names, formats, offsets, size)."""
    names = list(dt.names or ())
    fields: Mapping[str, Any] = dt.fields or {}
    return {
        "names": names,
        "formats": [fields[n][0].str for n in names],
        "offsets": [int(fields[n][1]) for n in names],
        "itemsize": dt.itemsize,
    }


def dtype_from_json(doc: Mapping[str, Any]) -> np.dtype[Any]:
    return np.dtype(
        {
            "names": list(doc["names"]),
            "formats": list(doc["formats"]),
            "offsets": list(doc["offsets"]),
            "itemsize": int(doc["itemsize"]),
        }
    )


@dataclass(frozen=True)
class KindSchema:
    """A record kind as a segment file recorded it."""

    kind: int
    name: str
    version: int
    dtype: np.dtype[Any]


@dataclass(frozen=True)
class SegmentHeader:
    """The decoded header of one segment file."""

    version: int
    header_len: int
    created_ns: int
    segment: int
    node: str
    kinds: dict[int, KindSchema]

    @classmethod
    def current(cls, segment: int, node: str, created_ns: int) -> SegmentHeader:
        """The header a writer of this code version writes (every RecordKind's schema)."""
        kinds = {
            int(k): KindSchema(int(k), k.name, SCHEMA_VERSION[k], DTYPES[k]) for k in RecordKind
        }
        return cls(FORMAT_VERSION, 0, created_ns, segment, node, kinds)

    def encode(self) -> bytes:
        doc = {
            "node": self.node,
            "created_ns": self.created_ns,
            "segment": self.segment,
            "kinds": {
                str(k): {"name": s.name, "version": s.version, "dtype": dtype_to_json(s.dtype)}
                for k, s in sorted(self.kinds.items())
            },
        }
        body = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
        total = align8(SEGMENT_FIXED.size + len(body))
        fixed = SEGMENT_FIXED.pack(
            SEGMENT_MAGIC,
            FORMAT_VERSION,
            0,
            total,
            self.created_ns,
            self.segment,
            zlib.crc32(body),
        )
        return (fixed + body).ljust(total, b"\0")


def read_segment_header(path: str, data: bytes) -> SegmentHeader:
    """Decode the header at the start of ``data`` (the file's first bytes).

    Raises
    ------
    LogFormatError
        Not a segment file, a newer format version, or a damaged header.
    """
    if len(data) < SEGMENT_FIXED.size or not data.startswith(SEGMENT_MAGIC):
        raise LogFormatError(
            f"{path}: not an event-log segment (no {SEGMENT_MAGIC!r} magic); move foreign files "
            "out of the log directory"
        )
    _, version, _, header_len, created_ns, segment, crc = SEGMENT_FIXED.unpack_from(data)
    if version > FORMAT_VERSION:
        raise LogFormatError(
            f"{path}: segment format version {version} is newer than this Wiresens reads "
            f"({FORMAT_VERSION}); upgrade Wiresens to read it"
        )
    if header_len > len(data) or header_len < SEGMENT_FIXED.size:
        raise LogFormatError(
            f"{path}: segment header claims {header_len} bytes but the file has {len(data)}; "
            "the header is damaged (the segment cannot be read)"
        )
    body = bytes(data[SEGMENT_FIXED.size : header_len]).rstrip(b"\0")
    if zlib.crc32(body) != crc:
        raise LogFormatError(f"{path}: segment header fails its CRC; the header is damaged")
    doc = json.loads(body)
    kinds = {
        int(k): KindSchema(int(k), v["name"], int(v["version"]), dtype_from_json(v["dtype"]))
        for k, v in doc["kinds"].items()
    }
    return SegmentHeader(version, header_len, created_ns, segment, str(doc.get("node", "")), kinds)
