"""Golden layouts: every record dtype's itemsize, field offsets and formats, the
RecordKind numbers and the schema versions, written out literally.

A failure here means a layout changed. That breaks every ring, seqlock slot and
event log written by the previous version: bump that kind's SCHEMA_VERSION, then
update this table in the same commit so the change is a visible diff.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from wiresens import records
from wiresens.records import DTYPES, SCHEMA_VERSION, RecordKind

HEADER_FIELDS = [
    ("kind", 0, "|u1"),
    ("version", 1, "|u1"),
    ("flags", 2, "<u2"),
    ("symbol", 4, "<u4"),
    ("ts_exch", 8, "<i8"),
    ("ts_recv", 16, "<i8"),
    ("ts_pub", 24, "<i8"),
]

ORDER_REQUEST_FIELDS = [
    ("cl_ord_id", 32, "<i8"),
    ("orig_cl_ord_id", 40, "<i8"),
    ("exch_order_id", 48, "<i8"),
    ("price", 56, "<i8"),
    ("qty", 64, "<i8"),
    ("stop_price", 72, "<i8"),
    ("quote_qty", 80, "<i8"),
    ("policy", 88, "<u2"),
    ("account", 90, "<u2"),
    ("side", 92, "|u1"),
    ("order_type", 93, "|u1"),
    ("tif", 94, "|u1"),
    ("stp", 95, "|u1"),
    ("_pad", 96, "|V32"),
]

# name -> (itemsize, fields after the common 32-byte header)
GOLDEN: dict[str, tuple[int, list[tuple[str, int, str]]]] = {
    "DEPTH_UPDATE": (
        64,
        [
            ("update_id", 32, "<i8"),
            ("price", 40, "<i8"),
            ("qty", 48, "<i8"),
            ("side", 56, "|u1"),
            ("_pad", 57, "|V7"),
        ],
    ),
    "TOP_OF_BOOK": (
        64,
        [
            ("bid_px", 32, "<i8"),
            ("bid_qty", 40, "<i8"),
            ("ask_px", 48, "<i8"),
            ("ask_qty", 56, "<i8"),
        ],
    ),
    "TRADE": (
        64,
        [
            ("trade_id", 32, "<i8"),
            ("price", 40, "<i8"),
            ("qty", 48, "<i8"),
            ("_pad", 56, "|V8"),
        ],
    ),
    "ORDER_REQUEST": (128, ORDER_REQUEST_FIELDS),
    "EXECUTION_REPORT": (
        128,
        [
            ("cl_ord_id", 32, "<i8"),
            ("orig_cl_ord_id", 40, "<i8"),
            ("exch_order_id", 48, "<i8"),
            ("trade_id", 56, "<i8"),
            ("price", 64, "<i8"),
            ("qty", 72, "<i8"),
            ("last_px", 80, "<i8"),
            ("last_qty", 88, "<i8"),
            ("cum_qty", 96, "<i8"),
            ("cum_quote", 104, "<i8"),
            ("commission", 112, "<i8"),
            ("policy", 120, "|u1"),
            ("account", 121, "|u1"),
            ("side", 122, "|u1"),
            ("status", 123, "|u1"),
            ("exec_type", 124, "|u1"),
            ("reason", 125, "|u1"),
            ("error_code", 126, "<i2"),
        ],
    ),
    "ACCOUNT_UPDATE": (
        64,
        [
            ("asset", 32, "<u4"),
            ("account", 36, "<u2"),
            ("_r", 38, "<u2"),
            ("free", 40, "<i8"),
            ("locked", 48, "<i8"),
            ("_pad", 56, "|V8"),
        ],
    ),
    "POSITION_UPDATE": (
        64,
        [
            ("policy", 32, "<u2"),
            ("account", 34, "<u2"),
            ("_r", 36, "<u4"),
            ("qty", 40, "<i8"),
            ("avg_px", 48, "<i8"),
            ("realized_pnl", 56, "<i8"),
        ],
    ),
    "CONTROL": (
        64,
        [
            ("command", 32, "<u2"),
            ("target", 34, "<u2"),
            ("_r", 36, "<u4"),
            ("arg0", 40, "<i8"),
            ("arg1", 48, "<i8"),
            ("arg2", 56, "<i8"),
        ],
    ),
    "HEARTBEAT": (
        64,
        [
            ("actor", 32, "<u2"),
            ("state", 34, "<u2"),
            ("pid", 36, "<i4"),
            ("seq", 40, "<i8"),
            ("work", 48, "<i8"),
            ("load", 56, "<i8"),
        ],
    ),
    "ACTOR_STATUS": (
        128,
        [
            ("actor", 32, "<u2"),
            ("state", 34, "<u2"),
            ("pid", 36, "<i4"),
            ("cpu", 40, "<i4"),
            ("restarts", 44, "<u4"),
            ("heartbeat_seq", 48, "<i8"),
            ("cycles", 56, "<i8"),
            ("work", 64, "<i8"),
            ("errors", 72, "<i8"),
            ("started_ns", 80, "<i8"),
            ("name", 88, "|S24"),
            ("_pad", 112, "|V16"),
        ],
    ),
    "POLICY_STATUS": (
        128,
        [
            ("policy", 32, "<u2"),
            ("account", 34, "<u2"),
            ("open_orders", 36, "<u4"),
            ("orders", 40, "<i8"),
            ("fills", 48, "<i8"),
            ("rejects", 56, "<i8"),
            ("position", 64, "<i8"),
            ("avg_px", 72, "<i8"),
            ("realized_pnl", 80, "<i8"),
            ("unrealized_pnl", 88, "<i8"),
            ("lat_p50_ns", 96, "<i8"),
            ("lat_p99_ns", 104, "<i8"),
            ("_pad", 112, "|V16"),
        ],
    ),
}

KIND_NUMBERS = {
    "DEPTH_UPDATE": 1,
    "TOP_OF_BOOK": 2,
    "TRADE": 3,
    "ORDER_NEW": 10,
    "ORDER_CANCEL": 11,
    "ORDER_REPLACE": 12,
    "ORDER_QUERY": 13,
    "EXECUTION_REPORT": 20,
    "ACCOUNT_UPDATE": 30,
    "POSITION_UPDATE": 31,
    "CONTROL": 40,
    "HEARTBEAT": 41,
    "ACTOR_STATUS": 42,
    "POLICY_STATUS": 43,
}

# kind -> (name of its dtype in wiresens.records, schema version)
KIND_LAYOUT = {
    "DEPTH_UPDATE": ("DEPTH_UPDATE", 1),
    "TOP_OF_BOOK": ("TOP_OF_BOOK", 1),
    "TRADE": ("TRADE", 1),
    "ORDER_NEW": ("ORDER_REQUEST", 1),
    "ORDER_CANCEL": ("ORDER_REQUEST", 1),
    "ORDER_REPLACE": ("ORDER_REQUEST", 1),
    "ORDER_QUERY": ("ORDER_REQUEST", 1),
    "EXECUTION_REPORT": ("EXECUTION_REPORT", 1),
    "ACCOUNT_UPDATE": ("ACCOUNT_UPDATE", 1),
    "POSITION_UPDATE": ("POSITION_UPDATE", 1),
    "CONTROL": ("CONTROL", 1),
    "HEARTBEAT": ("HEARTBEAT", 1),
    "ACTOR_STATUS": ("ACTOR_STATUS", 1),
    "POLICY_STATUS": ("POLICY_STATUS", 1),
}


def _layout(dt: np.dtype[Any]) -> list[tuple[str, int, str]]:
    fields = dt.fields
    assert fields is not None
    return [(n, fields[n][1], fields[n][0].str) for n in dt.names or ()]


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_dtype_layout(name: str) -> None:
    size, tail = GOLDEN[name]
    dt = getattr(records, name)
    assert dt.itemsize == size
    assert _layout(dt) == HEADER_FIELDS + tail
    assert not dt.isalignedstruct  # packed: offsets are exactly the table, on every platform


def test_common_header() -> None:
    assert records.HEADER.itemsize == 32
    assert _layout(records.HEADER) == HEADER_FIELDS
    assert (records.MARKET_SLOT.itemsize, records.ORDER_SLOT.itemsize) == (64, 128)


def test_record_kind_numbers() -> None:
    assert {k.name: int(k) for k in RecordKind} == KIND_NUMBERS


def test_every_kind_has_its_dtype_and_schema_version() -> None:
    assert set(DTYPES) == set(RecordKind) == set(SCHEMA_VERSION)
    for kind in RecordKind:
        dtype_name, version = KIND_LAYOUT[kind.name]
        assert DTYPES[kind] is getattr(records, dtype_name), kind.name
        assert SCHEMA_VERSION[kind] == version, kind.name


def test_every_record_is_64_bytes_or_a_multiple() -> None:
    for kind, dt in DTYPES.items():
        assert dt.itemsize % 64 == 0, kind.name


def test_new_record_fills_kind_and_version() -> None:
    for kind in RecordKind:
        arr = records.new_record(kind, 3)
        assert arr.dtype == DTYPES[kind]
        assert arr["kind"].tolist() == [int(kind)] * 3
        assert arr["version"].tolist() == [SCHEMA_VERSION[kind]] * 3
        assert arr[["symbol", "ts_exch", "ts_recv", "ts_pub"]][0].tolist() == (0, 0, 0, 0)


def test_same_size_kinds_share_a_slot() -> None:
    """A consumer of a mixed ring reads ``kind`` from the slot bytes and views the right dtype."""
    tob = records.new_record(RecordKind.TOP_OF_BOOK)
    tob["bid_px"] = 123
    slot = tob.view(records.MARKET_SLOT)
    kind = RecordKind(slot.view(np.uint8)[0])
    assert kind is RecordKind.TOP_OF_BOOK
    assert int(slot.view(DTYPES[kind])["bid_px"][0]) == 123
