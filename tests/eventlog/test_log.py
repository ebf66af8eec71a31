"""Writer and reader together: round trips, offsets, rolls, locking, tailing, time ranges."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from wiresens.errors import LogLockedError
from wiresens.eventlog import (
    RAW_KIND,
    EntryType,
    EventLogOffset,
    EventLogReader,
    EventLogWriter,
    record_times,
)
from wiresens.eventlog.format import DAY_NS
from wiresens.records import DTYPES, MARKET_SLOT, TRADE, RecordKind

T0 = 1_764_000_000_000_000_000


def test_records_and_raw_round_trip_with_chained_offsets(tmp_path: Path, make_batch: Any) -> None:
    trades = make_batch(RecordKind.TRADE, 100)
    tops = make_batch(RecordKind.TOP_OF_BOOK, 3, seq0=1000)
    orders = make_batch(RecordKind.ORDER_NEW, 2, seq0=2000)
    with EventLogWriter(tmp_path, "n1") as w:
        o1 = w.append_records(RecordKind.TRADE, trades)
        o2 = w.append_raw(T0 + 5, 7, "btcusdt@depth@100ms", b'{"e":"depthUpdate"}')
        o3 = w.append_records(int(RecordKind.TOP_OF_BOOK), tops.tobytes())
        o4 = w.append_records(RecordKind.ORDER_NEW, orders)
        o5 = w.append_raw(T0 + 6, 8, "wss://stream.binance.com:9443/ws", bytearray(b"\x00\xff"))
        end = w.end_offset()
    assert o1 < o2 < o3 < o4 < o5 < end
    reader = EventLogReader(tmp_path)
    got = list(reader.entries())
    assert [e.offset for e in got] == [o1, o2, o3, o4, o5]
    assert [e.next_offset for e in got] == [o2, o3, o4, o5, end]
    assert reader.end_offset() == end
    e1, e2, e3, e4, e5 = got
    assert (e1.type, e1.kind, e1.count) == (EntryType.RECORDS, RecordKind.TRADE, 100)
    assert e1.records is not None and e1.records.dtype == TRADE
    assert np.array_equal(e1.records, trades)
    assert (e1.ts_first, e1.ts_last) == (T0, T0 + 99_000)
    assert e3.records is not None and np.array_equal(e3.records, tops)
    assert e4.records is not None and np.array_equal(e4.records, orders)
    assert e4.records.dtype.itemsize == 128
    assert e2.type is EntryType.RAW and e2.kind == RAW_KIND and e2.raw is not None
    assert e2.raw == (T0 + 5, 7, "btcusdt@depth@100ms", b'{"e":"depthUpdate"}')
    assert e5.raw == (T0 + 6, 8, "wss://stream.binance.com:9443/ws", b"\x00\xff")
    # A sink resumes from what it committed: the next_offset of the last entry it handled.
    assert [e.offset for e in reader.entries(e2.next_offset)] == [o3, o4, o5]
    assert list(reader.entries(end)) == []
    assert [e.kind for e in reader.entries(kinds=[RAW_KIND])] == [RAW_KIND, RAW_KIND]
    assert [
        e.offset for e in reader.entries(kinds=[RecordKind.TOP_OF_BOOK, RecordKind.ORDER_NEW])
    ] == [o3, o4]


def test_timestamps_fall_back_to_ts_pub(tmp_path: Path, make_batch: Any) -> None:
    recs = make_batch(RecordKind.HEARTBEAT, 10, pub_only=True)
    recs["ts_recv"][4] = T0 - 50  # one record with a receive time, earlier than the rest
    with EventLogWriter(tmp_path, "n1") as w:
        w.append_records(RecordKind.HEARTBEAT, recs)
    (e,) = EventLogReader(tmp_path).entries()
    assert (e.ts_first, e.ts_last) == (T0 - 50, T0 + 9_000)
    assert record_times(recs).tolist()[3:6] == [T0 + 3_000, T0 - 50, T0 + 5_000]


def test_bad_input_is_refused_with_the_reason(tmp_path: Path, make_batch: Any) -> None:
    with EventLogWriter(tmp_path, "n1") as w:
        with pytest.raises(ValueError, match="unknown record kind 99"):
            w.append_records(99, make_batch())
        with pytest.raises(ValueError, match=r"dtype DTYPES\[TRADE\]"):
            w.append_records(RecordKind.TRADE, make_batch(RecordKind.ORDER_NEW, 2))
        with pytest.raises(ValueError, match="not whole TRADE records"):
            w.append_records(RecordKind.TRADE, bytes(65))
        with pytest.raises(ValueError, match="u16"):
            w.append_raw(T0, 70_000, "s", b"x")
        start = w.end_offset()
        assert w.append_records(RecordKind.TRADE, make_batch(n=0)) == start
        # Ring slots (unstructured, same size) and strided views are accepted.
        slots = make_batch(n=8).view(MARKET_SLOT)
        w.append_records(RecordKind.TRADE, slots)
        w.append_records(RecordKind.TRADE, make_batch(n=8)[::2])
    w2 = list(EventLogReader(tmp_path).entries())
    assert [e.count for e in w2] == [8, 4]
    assert w2[1].records is not None
    assert w2[1].records["symbol"].tolist() == [0, 2, 4, 6]
    with pytest.raises(ValueError, match="closed"):
        w.append_raw(T0, 1, "s", b"x")


def test_append_slots_splits_mixed_kinds_into_runs(tmp_path: Path, make_batch: Any) -> None:
    a = make_batch(RecordKind.TRADE, 3)
    b = make_batch(RecordKind.DEPTH_UPDATE, 2, seq0=10)
    c = make_batch(RecordKind.TRADE, 1, seq0=20)
    slots = np.concatenate([x.view(MARKET_SLOT) for x in (a, b, c)])
    with EventLogWriter(tmp_path, "n1") as w:
        first = w.append_slots(slots)
        assert w.append_slots(slots[:0]) is None
    got = list(EventLogReader(tmp_path).entries())
    assert first == got[0].offset
    assert [(e.kind, e.count) for e in got] == [(3, 3), (1, 2), (3, 1)]
    assert got[1].records is not None and got[1].records.dtype == DTYPES[RecordKind.DEPTH_UPDATE]
    assert got[1].records["symbol"].tolist() == [10, 11]


def test_rolls_by_size_and_reads_across_segments(tmp_path: Path, make_batch: Any) -> None:
    with EventLogWriter(tmp_path, "n1", segment_bytes=20_000) as w:
        offsets = [
            w.append_records(RecordKind.TRADE, make_batch(n=32, seq0=32 * i)) for i in range(40)
        ]
    reader = EventLogReader(tmp_path)
    segs = reader.segments()
    assert len(segs) > 5 and [s.segment for s in segs] == list(range(len(segs)))
    assert all(s.size <= 20_000 for s in segs)
    assert {o.segment for o in offsets} == {s.segment for s in segs}
    got = reader.read_records(RecordKind.TRADE)
    assert got["symbol"].tolist() == list(range(32 * 40))
    assert [e.offset for e in reader.entries(offsets[17])] == offsets[17:]
    # A committed offset at the very end of a segment moves on to the next one.
    ends = [e.next_offset for e in reader.entries() if e.next_offset.segment == 0]
    assert next(iter(reader.entries(ends[-1]))).offset == offsets[len(ends)]
    assert reader.end_offset() == w.end_offset()


def test_an_entry_larger_than_a_segment_gets_a_segment_of_its_own(
    tmp_path: Path, make_batch: Any
) -> None:
    with EventLogWriter(tmp_path, "n1", segment_bytes=8192) as w:
        a = w.append_records(RecordKind.TRADE, make_batch(n=2))
        b = w.append_records(RecordKind.TRADE, make_batch(n=500))
        c = w.append_records(RecordKind.TRADE, make_batch(n=2))
    assert (a.segment, b.segment, c.segment) == (0, 1, 2)
    assert EventLogReader(tmp_path).read_records(RecordKind.TRADE).size == 504


def test_rolls_at_utc_midnight_of_the_writers_clock(tmp_path: Path, make_batch: Any) -> None:
    now = [T0 // DAY_NS * DAY_NS + DAY_NS - 1_000]  # 1 us before midnight

    def clock() -> int:
        return now[0]

    with EventLogWriter(tmp_path, "n1", clock=clock) as w:
        a = w.append_records(RecordKind.TRADE, make_batch(n=2))
        now[0] += 2_000
        b = w.append_records(RecordKind.TRADE, make_batch(n=2))
    names = sorted(p.name for p in tmp_path.glob("*.evlog"))
    assert names == ["000000-20251124.evlog", "000001-20251125.evlog"]
    assert (a.segment, b.segment) == (0, 1)
    # Reopening the next day starts a new segment; with roll_utc_day=False it continues.
    now[0] += DAY_NS
    with EventLogWriter(tmp_path, "n1", clock=clock) as w:
        assert w.segment == 2 and w.recovery.continued is False
    with EventLogWriter(tmp_path, "n1", clock=clock, roll_utc_day=False) as w:
        assert w.segment == 2 and w.recovery.continued is True


def test_reopening_continues_the_newest_segment(tmp_path: Path, make_batch: Any) -> None:
    with EventLogWriter(tmp_path, "n1") as w:
        a = w.append_records(RecordKind.TRADE, make_batch(n=4))
    with EventLogWriter(tmp_path, "n1") as w:
        assert w.recovery.continued and w.recovery.cut_bytes == 0 and w.recovery.entries == 1
        b = w.append_records(RecordKind.TRADE, make_batch(n=4, seq0=4))
    assert b.segment == a.segment and b > a
    with EventLogWriter(tmp_path, "other-node") as w:
        c = w.append_records(RecordKind.TRADE, make_batch(n=4, seq0=8))
    assert c.segment == a.segment + 1
    got = EventLogReader(tmp_path).read_records(RecordKind.TRADE)
    assert got["symbol"].tolist() == list(range(12))
    assert [s.node for s in EventLogReader(tmp_path).segments()] == ["n1", "other-node"]


def test_one_writer_per_directory(tmp_path: Path) -> None:
    with (
        EventLogWriter(tmp_path, "n1"),
        pytest.raises(LogLockedError, match=f"pid {os.getpid()}"),
    ):
        EventLogWriter(tmp_path, "n1")
    with EventLogWriter(tmp_path, "n1") as w:  # released by close()
        assert not w.closed


def test_flushed_entries_are_visible_to_a_reader_and_the_tail_follows_rolls(
    tmp_path: Path, make_batch: Any
) -> None:
    w = EventLogWriter(tmp_path, "n1", segment_bytes=10_000)
    reader = EventLogReader(tmp_path)
    tail = reader.tail(poll_s=0.005, idle_timeout_s=5.0)
    seen: list[int] = []
    try:
        for i in range(12):
            w.append_records(RecordKind.TRADE, make_batch(n=20, seq0=20 * i))
            w.append_raw(T0 + i, 1, "s", str(i).encode())
            w.flush()
            for _ in range(2):
                e = next(tail)
                seen.extend(e.records["symbol"].tolist() if e.records is not None else [-1])
    finally:
        w.close()
    assert w.segment > 2  # the tail crossed rolls
    expect: list[int] = []
    for i in range(12):
        expect.extend([*range(20 * i, 20 * i + 20), -1])
    assert seen == expect
    # Nothing more arrives: the tail ends after its idle timeout.
    quiet = EventLogReader(tmp_path).tail(w.end_offset(), poll_s=0.01, idle_timeout_s=0.05)
    assert list(quiet) == []


WRITER = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from wiresens.eventlog import EventLogWriter
    from wiresens.records import RecordKind, new_record

    with EventLogWriter(sys.argv[1], "proc", segment_bytes=16384) as w:
        for i in range(int(sys.argv[2])):
            r = new_record(RecordKind.TRADE, 10)
            r["symbol"] = np.arange(10) + 10 * i
            r["ts_recv"] = 1 + i
            w.append_records(RecordKind.TRADE, r)
            if i % 7 == 0:
                w.flush()
                time.sleep(0.001)
    """
)


def test_tail_reads_a_log_another_process_writes(tmp_path: Path) -> None:
    n = 300
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), str(n)])
    try:
        got: list[int] = []
        # The directory may not exist yet when the tail starts.
        while not any(tmp_path.glob("*.evlog")):
            assert proc.poll() in (None, 0)
            time.sleep(0.01)
        for e in EventLogReader(tmp_path).tail(poll_s=0.005, idle_timeout_s=10.0):
            assert e.records is not None
            got.extend(e.records["symbol"].tolist())
            if len(got) == 10 * n:
                break
    finally:
        assert proc.wait(timeout=60) == 0
    assert got == list(range(10 * n))
    assert len(EventLogReader(tmp_path).segments()) > 3


@pytest.mark.parametrize("index_entries", [1, 3, 4096])
def test_time_ranges_match_a_full_scan_with_unordered_batches(
    tmp_path: Path, make_batch: Any, index_entries: int
) -> None:
    rng = np.random.default_rng(5)
    everything = []
    with EventLogWriter(
        tmp_path, "n1", segment_bytes=30_000, index_entries=index_entries, index_bytes=4096
    ) as w:
        for i in range(120):
            recs = make_batch(n=int(rng.integers(1, 30)), seq0=1000 * i)
            # Batches drift forward but overlap and arrive out of order (merged taps).
            recs["ts_recv"] = T0 + i * 10_000 + rng.integers(-40_000, 40_000, len(recs))
            recs["ts_recv"][rng.random(len(recs)) < 0.1] = 0  # some only have ts_pub
            recs["ts_pub"] = T0 + i * 10_000
            w.append_records(RecordKind.TRADE, recs)
            everything.append(recs)
            if i % 9 == 0:
                w.append_raw(T0 + i * 10_000, 2, "raw", b"m")
    allrecs = np.concatenate(everything)
    t = record_times(allrecs)
    reader = EventLogReader(tmp_path)
    for lo, hi in [
        (None, None),
        (T0 + 333_333, None),
        (None, T0 + 500_000),
        (T0 + 600_000, T0 + 610_000),
        (T0 + 10**9, None),
    ]:
        got = reader.read_records(RecordKind.TRADE, lo, hi)
        mask = np.ones(len(allrecs), bool)
        if lo is not None:
            mask &= t >= lo
        if hi is not None:
            mask &= t < hi
        assert np.array_equal(got, allrecs[mask]), (lo, hi)
        raws = [
            e.raw.ts_recv for e in reader.entries(kinds=[RAW_KIND], start_ns=lo, end_ns=hi) if e.raw
        ]
        assert raws == [
            T0 + i * 10_000
            for i in range(0, 120, 9)
            if (lo is None or T0 + i * 10_000 >= lo) and (hi is None or T0 + i * 10_000 < hi)
        ]


def test_the_index_skips_blocks_and_is_rebuilt_when_missing(
    tmp_path: Path, make_batch: Any
) -> None:
    with EventLogWriter(tmp_path, "n1", segment_bytes=50_000, index_entries=4) as w:
        for i in range(200):
            w.append_records(RecordKind.TRADE, make_batch(n=4, t0=T0 + i * 100_000, seq0=4 * i))
    reader = EventLogReader(tmp_path)
    # Entries wholly before start_ns are never yielded, and the first one yielded is the
    # first that reaches it (the index jumped over whole blocks to get near it).
    first = next(iter(reader.entries(start_ns=T0 + 150 * 100_000)))
    assert first.ts_first == T0 + 150 * 100_000
    expect = reader.read_records(RecordKind.TRADE, T0 + 7_000_000, T0 + 9_000_000)
    assert expect["symbol"].tolist() == list(range(280, 360))
    indexes = sorted(tmp_path.glob("*.evidx"))
    assert len(indexes) == len(reader.segments())
    sizes = [p.stat().st_size for p in indexes]
    for p in indexes[:-1]:
        p.unlink()
    indexes[-1].write_bytes(indexes[-1].read_bytes()[:40] + b"\xff" * 48)  # a garbled row
    again = EventLogReader(tmp_path)
    assert np.array_equal(
        again.read_records(RecordKind.TRADE, T0 + 7_000_000, T0 + 9_000_000), expect
    )
    # Rebuilt by the reader (with the default block size, so fewer rows than the writer's).
    assert all(16 < p.stat().st_size <= size for p, size in zip(indexes, sizes, strict=True))


def test_pandas_and_arrow_views(tmp_path: Path, make_batch: Any) -> None:
    pd = pytest.importorskip("pandas", reason="pandas not installed (optional)")
    pa = pytest.importorskip("pyarrow", reason="pyarrow not installed (optional)")
    with EventLogWriter(tmp_path, "n1") as w:
        w.append_records(RecordKind.TRADE, make_batch(n=5))
        w.append_records(RecordKind.ACTOR_STATUS, make_batch(RecordKind.ACTOR_STATUS, n=2))
    reader = EventLogReader(tmp_path)
    df = reader.to_pandas(RecordKind.TRADE, T0 + 1_000)
    assert isinstance(df, pd.DataFrame)
    assert df["symbol"].tolist() == [1, 2, 3, 4] and "_pad" not in df.columns
    table = reader.to_arrow(RecordKind.TRADE)
    assert isinstance(table, pa.Table) and table.num_rows == 5
    assert table.column("price").to_pylist() == [6_543_210_000_000 + i for i in range(5)]
    exact = reader.to_arrow(RecordKind.TRADE, decimals=True).column("price").to_pylist()
    assert [str(p) for p in exact] == [f"65432.1000000{i}" for i in range(5)]
    status = reader.to_arrow(RecordKind.ACTOR_STATUS)
    assert status.schema.field("name").type == pa.binary()


def test_missing_pandas_or_pyarrow_says_what_to_install(
    tmp_path: Path, make_batch: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    with EventLogWriter(tmp_path, "n1") as w:
        w.append_records(RecordKind.TRADE, make_batch(n=1))
    monkeypatch.setitem(sys.modules, "pandas", None)
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    reader = EventLogReader(tmp_path)
    with pytest.raises(ImportError, match="pip install pandas"):
        reader.to_pandas(RecordKind.TRADE)
    with pytest.raises(ImportError, match="pip install pyarrow"):
        reader.to_arrow(RecordKind.TRADE)
    assert reader.read_records(RecordKind.TRADE).size == 1


def test_reader_of_a_missing_directory_names_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such event-log directory"):
        EventLogReader(tmp_path / "nope")
    assert EventLogReader(tmp_path).end_offset() == EventLogOffset(0, 0)
    assert EventLogReader(tmp_path).read_records(RecordKind.TRADE).dtype == TRADE
