"""The on-disk format: offsets, segment headers, schemas; a file built by hand from the
documented layout is read back, including one written with an older record layout."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from wiresens.errors import CorruptEntryError, LogFormatError, WiresensError
from wiresens.eventlog import EventLogOffset, EventLogReader, SegmentHeader
from wiresens.eventlog.format import (
    ENTRY_HEADER,
    ENTRY_MAGIC,
    FORMAT_VERSION,
    KindSchema,
    dtype_from_json,
    dtype_to_json,
    entry_crc,
    parse_segment_name,
    read_segment_header,
    segment_name,
)
from wiresens.records import DTYPES, SCHEMA_VERSION, TRADE, RecordKind

T0 = 1_764_000_000_000_000_000

offsets = st.builds(EventLogOffset, st.integers(0, 999_999), st.integers(0, 9_999_999_999))


@given(offsets, offsets)
def test_offsets_encode_decode_and_order_as_strings(a: EventLogOffset, b: EventLogOffset) -> None:
    assert EventLogOffset.decode(a.encode()) == a
    assert (a < b) == (a.encode() < b.encode())
    assert (a == b) == (a.encode() == b.encode())


def test_offset_encoding_is_the_documented_one() -> None:
    assert EventLogOffset(12, 1234).encode() == "000012:0000001234"
    for bad in ("", "12", "a:1", "1:-2", "1;2"):
        with pytest.raises(ValueError, match="not an event-log offset"):
            EventLogOffset.decode(bad)


@pytest.mark.parametrize("kind", list(RecordKind))
def test_every_record_dtype_survives_its_json_form(kind: RecordKind) -> None:
    dt = DTYPES[kind]
    again = dtype_from_json(dtype_to_json(dt))
    assert again == dt and again.itemsize == dt.itemsize
    assert again.fields == dt.fields


def test_segment_header_round_trip_carries_every_schema() -> None:
    head = SegmentHeader.current(7, "node-a", T0)
    data = head.encode()
    assert len(data) % 8 == 0
    got = read_segment_header("x", data + b"entries follow")
    assert (got.segment, got.node, got.created_ns, got.version) == (7, "node-a", T0, FORMAT_VERSION)
    assert got.header_len == len(data)
    assert set(got.kinds) == {int(k) for k in RecordKind}
    for k in RecordKind:
        s = got.kinds[int(k)]
        assert (s.name, s.version, s.dtype) == (k.name, SCHEMA_VERSION[k], DTYPES[k])


def test_foreign_newer_and_damaged_headers_are_refused() -> None:
    data = bytearray(SegmentHeader.current(0, "n", T0).encode())
    with pytest.raises(LogFormatError, match="not an event-log segment"):
        read_segment_header("f", b"PK\x03\x04" + bytes(60))
    newer = bytearray(data)
    struct.pack_into("<H", newer, 8, FORMAT_VERSION + 1)
    with pytest.raises(LogFormatError, match="newer than this Wiresens reads"):
        read_segment_header("f", bytes(newer))
    damaged = bytearray(data)
    damaged[40] ^= 0x20
    with pytest.raises(LogFormatError, match="CRC"):
        read_segment_header("f", bytes(damaged))


def test_segment_names() -> None:
    assert segment_name(12, T0) == "000012-20251124.evlog"
    assert parse_segment_name("000012-20251124.evlog") == 12
    for other in ("000012-20251124.evidx", "000012-20251124.evlog.tmp", ".lock", "x.evlog"):
        assert parse_segment_name(other) is None


def _entry(kind: int, version: int, payload: bytes, count: int, t_first: int, t_last: int) -> bytes:
    head = bytearray(
        ENTRY_HEADER.pack(
            ENTRY_MAGIC, 0, len(payload), 1, kind, version, count, 0, 0, t_first, t_last
        )
    )
    struct.pack_into("<I", head, 4, entry_crc(head, payload))
    pad = (-len(payload)) % 8
    return bytes(head) + payload + bytes(pad)


def test_a_hand_built_segment_with_an_old_layout_is_read_and_converted(tmp_path: Path) -> None:
    # An older TRADE layout: no trade_id, price and qty in other places, 48 bytes.
    old = np.dtype(
        [
            ("kind", "u1"),
            ("version", "u1"),
            ("flags", "<u2"),
            ("symbol", "<u4"),
            ("ts_exch", "<i8"),
            ("ts_recv", "<i8"),
            ("ts_pub", "<i8"),
            ("qty", "<i8"),
            ("price", "<i8"),
        ]
    )
    header = SegmentHeader(1, 0, T0, 0, "old-node", {3: KindSchema(3, "TRADE", 0, old)}).encode()
    recs = np.zeros(3, old)
    recs["kind"] = 3
    recs["ts_recv"] = [T0 + 1, T0 + 2, T0 + 3]
    recs["price"] = [100, 200, 300]
    recs["qty"] = [1, 2, 3]
    entry = _entry(3, 0, recs.tobytes(), 3, T0 + 1, T0 + 3)
    (tmp_path / "000000-20251124.evlog").write_bytes(header + entry)
    reader = EventLogReader(tmp_path)
    (e,) = list(reader.entries())
    assert e.records is not None and e.records.dtype == old
    assert (e.offset, e.next_offset) == ((0, len(header)), (0, len(header) + len(entry)))
    got = reader.read_records(RecordKind.TRADE)
    assert got.dtype == TRADE
    assert got["price"].tolist() == [100, 200, 300]
    assert got["qty"].tolist() == [1, 2, 3]
    assert got["trade_id"].tolist() == [0, 0, 0]
    # The CRC covers the header fields after it: a flipped count is caught.
    bad = bytearray(entry)
    bad[16] = 2
    (tmp_path / "000000-20251124.evlog").write_bytes(header + bytes(bad))
    with pytest.raises(CorruptEntryError) as info:
        list(EventLogReader(tmp_path).entries())
    assert isinstance(info.value, WiresensError) and isinstance(info.value, ValueError)
    assert info.value.offset == len(header)
