"""Segment headers: what attaching checks, and what it refuses, with messages naming both sides."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from wiresens.records import DEPTH_UPDATE, ORDER_REQUEST, TRADE, RecordKind
from wiresens.shm import (
    LayoutMismatchError,
    Ring,
    SegmentExistsError,
    SegmentNotFoundError,
    SeqlockSlots,
    ShmError,
    describe,
    list_segments,
    unlink,
)
from wiresens.shm.segment import DATA_OFFSET, HEADER_DTYPE, LAYOUT_VERSION, MAGIC


def test_header_layout_is_pinned() -> None:
    expected = [
        ("magic", 0, "|S8"),
        ("layout_version", 8, "<u4"),
        ("structure", 12, "<u4"),
        ("record_kind", 16, "<u4"),
        ("schema_version", 20, "<u4"),
        ("record_size", 24, "<u4"),
        ("flags", 28, "<u4"),
        ("capacity", 32, "<u8"),
        ("creator_pid", 40, "<i8"),
        ("creator_start", 48, "<i8"),
        ("created_ns", 56, "<i8"),
        ("dtype_hash", 64, "<u8"),
        ("data_offset", 72, "<u8"),
        ("name", 80, "|S48"),
    ]
    fields = HEADER_DTYPE.fields
    assert fields is not None
    got = [(n, fields[n][1], fields[n][0].str) for n in HEADER_DTYPE.names or ()]
    assert got == expected
    assert HEADER_DTYPE.itemsize == 128


def test_header_of_a_new_ring(shm_prefix: str) -> None:
    name = f"{shm_prefix}hdr"
    with Ring.create(name, TRADE, 32, record_kind=RecordKind.TRADE, schema_version=1) as ring:
        h = ring.segment.header[0]
        assert bytes(h["magic"]) == MAGIC
        assert int(h["layout_version"]) == LAYOUT_VERSION
        assert int(h["structure"]) == 1
        assert (int(h["record_kind"]), int(h["schema_version"])) == (3, 1)
        assert int(h["record_size"]) == 64 and int(h["capacity"]) == 32
        assert int(h["creator_pid"]) == os.getpid()
        assert int(h["data_offset"]) == DATA_OFFSET
        assert bytes(h["name"]).rstrip(b"\0").decode() == name
        info = describe(name)
        assert info is not None and info.valid and info.creator_alive
        assert (info.structure, info.record_kind, info.capacity) == ("ring", 3, 32)
        assert [i.name for i in list_segments(shm_prefix)] == [name]


@pytest.fixture
def trade_ring(shm_prefix: str) -> Iterator[Ring]:
    with Ring.create(
        f"{shm_prefix}trades", TRADE, 16, record_kind=RecordKind.TRADE, schema_version=1
    ) as ring:
        yield ring


def test_same_size_other_dtype_is_refused_naming_both(trade_ring: Ring) -> None:
    with pytest.raises(LayoutMismatchError) as err:
        Ring.attach(trade_ring.name, DEPTH_UPDATE)
    msg = str(err.value)
    assert trade_ring.name in msg
    assert "record dtype differs (both 64 bytes)" in msg
    assert "update_id" in msg  # this process's side, spelled out
    assert msg.count("0x") == 2  # both hashes


def test_other_record_size_is_refused_naming_both(trade_ring: Ring) -> None:
    with pytest.raises(
        LayoutMismatchError, match="holds 64-byte records, this process expects 128-byte"
    ):
        Ring.attach(trade_ring.name, ORDER_REQUEST)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        (
            {"record_kind": int(RecordKind.DEPTH_UPDATE)},
            "record kind in the segment is 3, this process expects 1",
        ),
        ({"schema_version": 2}, "schema version in the segment is 1, this process expects 2"),
    ],
)
def test_kind_and_version_mismatch(trade_ring: Ring, kwargs: dict[str, int], fragment: str) -> None:
    with pytest.raises(LayoutMismatchError, match=fragment):
        Ring.attach(trade_ring.name, TRADE, **kwargs)


def test_matching_attach_and_structure_mismatch(trade_ring: Ring) -> None:
    with Ring.attach(
        trade_ring.name, TRADE, record_kind=int(RecordKind.TRADE), schema_version=1
    ) as ring:
        assert ring.capacity == 16
    with pytest.raises(
        LayoutMismatchError, match="structure in the segment is 1, this process expects 2"
    ):
        SeqlockSlots.attach(trade_ring.name, TRADE)


def test_layout_mismatch_is_a_value_error_and_shm_error() -> None:
    assert issubclass(LayoutMismatchError, ValueError)
    assert issubclass(LayoutMismatchError, ShmError)


def test_missing_segment(shm_prefix: str) -> None:
    with pytest.raises(SegmentNotFoundError, match="no shared-memory segment") as err:
        Ring.attach(f"{shm_prefix}absent", TRADE)
    assert err.value.retriable
    assert isinstance(err.value, FileNotFoundError)


@pytest.mark.parametrize("size", [0, 100, 8192])
def test_foreign_file_is_refused_and_kept(shm_prefix: str, size: int) -> None:
    name = f"{shm_prefix}foreign"
    path = Path("/dev/shm") / name
    path.write_bytes(b"not ours " * (size // 9) + b"x" * (size % 9))
    with pytest.raises(LayoutMismatchError, match=r"not made by Wiresens|not a Wiresens segment"):
        Ring.attach(name, TRADE)
    # Creating over it must not delete someone else's data.
    with pytest.raises(SegmentExistsError, match="not a Wiresens segment"):
        Ring.create(name, TRADE, 16)
    assert path.stat().st_size == size
    info = describe(name)
    assert info is not None and not info.valid
    assert list_segments(shm_prefix) == []
    assert unlink(name)
    assert not unlink(name)


@pytest.mark.parametrize("name", ["", "a/b", "x" * 48])
def test_bad_names(name: str) -> None:
    with pytest.raises(ValueError, match="1-47 characters"):
        Ring.create(name, TRADE, 16)


@pytest.mark.parametrize("capacity", [0, 1, 3, 100])
def test_capacity_must_be_a_power_of_two(shm_prefix: str, capacity: int) -> None:
    with pytest.raises(ValueError, match="power of two"):
        Ring.create(f"{shm_prefix}cap", TRADE, capacity)


def test_raw_attach_for_inspection(trade_ring: Ring) -> None:
    with Ring.attach(trade_ring.name, None) as raw:
        assert raw.dtype == np.dtype((np.void, 64))
        assert raw.stats().capacity == 16


def test_truncated_segment_is_refused(shm_prefix: str) -> None:
    """A header promising more slots than the file holds must not reach numpy (or SIGBUS)."""
    name = f"{shm_prefix}short"
    with Ring.create(name, TRADE, 16) as ring:
        header = bytes(ring.segment.buf[: HEADER_DTYPE.itemsize])
    unlink(name)
    forged = np.frombuffer(bytearray(header), HEADER_DTYPE).copy()
    forged["capacity"] = 1 << 20
    Path("/dev/shm", name).write_bytes(forged.tobytes().ljust(DATA_OFFSET + 16 * 64, b"\0"))
    with pytest.raises(
        LayoutMismatchError, match=r"is 5120 bytes but its header describes 67112960"
    ):
        Ring.attach(name, TRADE)


def test_seqlock_segment_size_is_checked_with_its_stride(shm_prefix: str) -> None:
    slots = SeqlockSlots.create(f"{shm_prefix}sl", TRADE, 3)
    other = SeqlockSlots.attach(f"{shm_prefix}sl", TRADE)
    assert other.count == 3 and other.stride == 128
    other.close()
    slots.close()


def _forge_old_layout(name: str, creator_pid: int) -> None:
    """A ring as an older Wiresens would have left it: our magic, another layout version."""
    with Ring.create(name, TRADE, 16) as ring:
        ring.segment.header[0]["layout_version"] = LAYOUT_VERSION + 98
        ring.segment.header[0]["creator_pid"] = creator_pid
        ring.segment.header[0]["creator_start"] = 0


def test_other_layout_version_is_listed_refused_and_replaced_when_stale(shm_prefix: str) -> None:
    name = f"{shm_prefix}old"
    _forge_old_layout(name, creator_pid=0)  # pid 0: its creator is gone
    [info] = list_segments(shm_prefix)
    assert (info.name, info.valid, info.foreign, info.creator_alive) == (name, False, False, False)
    with pytest.raises(
        LayoutMismatchError,
        match=rf"layout version in the segment is {LAYOUT_VERSION + 98}, this process expects {LAYOUT_VERSION}",
    ):
        Ring.attach(name, TRADE)
    with Ring.create(name, TRADE, 16) as fresh:  # stale: replaced like any dead creator's
        assert fresh.segment.header[0]["layout_version"] == LAYOUT_VERSION
    unlink(name)
    _forge_old_layout(name, creator_pid=os.getpid())  # a live owner is still protected
    with pytest.raises(SegmentExistsError, match="owned by live pid"):
        Ring.create(name, TRADE, 16)
