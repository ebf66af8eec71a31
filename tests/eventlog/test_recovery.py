"""Crashes and damage: torn tails are cut at the last whole entry, never read as data;
a corrupt entry in the middle is reported with its offset and can be read past."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wiresens.errors import CorruptEntryError, LogLockedError
from wiresens.eventlog import EventLogOffset, EventLogReader, EventLogWriter, recover
from wiresens.records import RecordKind, new_record

T0 = 1_764_000_000_000_000_000


def _write(directory: Path, n: int, **kw: Any) -> list[EventLogOffset]:
    offsets = []
    with EventLogWriter(directory, "n1", **kw) as w:
        for i in range(n):
            recs = new_record(RecordKind.TRADE, 10)
            recs["symbol"] = np.arange(10) + 10 * i
            recs["ts_recv"] = T0 + i
            offsets.append(w.append_records(RecordKind.TRADE, recs))
            # 8 payload bytes: no padding, so every byte of the file belongs to an entry.
            offsets.append(w.append_raw(T0 + i, 1, "src", f"m{i:04d}".encode()))
    return offsets


def _segment(directory: Path, n: int = 0) -> Path:
    return sorted(directory.glob("*.evlog"))[n]


def _symbols(directory: Path, **kw: Any) -> list[int]:
    return EventLogReader(directory).read_records(RecordKind.TRADE, **kw)["symbol"].tolist()


@pytest.mark.parametrize("cut", [1, 39, 40, 41, 200, 679])
def test_a_torn_tail_is_never_read_and_is_cut_on_reopen(tmp_path: Path, cut: int) -> None:
    offsets = _write(tmp_path, 5)
    seg = _segment(tmp_path)
    whole = seg.stat().st_size
    # The start of one more TRADE entry (40 + 640 bytes), as a crash would leave it.
    entry = seg.read_bytes()[offsets[0].position : offsets[1].position]
    assert len(entry) == 680
    with open(seg, "ab") as f:
        f.write(entry[:cut])
    reader = EventLogReader(tmp_path)
    assert len(list(reader.entries())) == 10  # the tail is the writer's edge, not data
    assert reader.end_offset() == EventLogOffset(0, whole)
    assert reader.stats()[0].torn_bytes == cut
    with EventLogWriter(tmp_path, "n1") as w:
        assert (w.recovery.cut_bytes, w.recovery.valid_end, w.recovery.entries) == (cut, whole, 10)
        assert w.recovery.corrupt == [] and w.recovery.continued
        assert w.end_offset() == EventLogOffset(0, whole)
        recs = new_record(RecordKind.TRADE, 1)
        recs["symbol"] = 50
        w.append_records(RecordKind.TRADE, recs)
    assert _symbols(tmp_path) == [*range(50), 50]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_truncation_recovers_exactly_the_whole_entries(data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as d:
        directory = Path(d)
        offsets = _write(directory, 6)
        seg = _segment(directory)
        full = seg.read_bytes()
        first = offsets[0].position
        size = data.draw(st.integers(first, len(full)), label="size")
        garbage = data.draw(st.binary(max_size=64), label="garbage")
        seg.write_bytes(full[:size] + garbage)
        ends = [o.position for o in offsets[1:]] + [len(full)]
        whole = [e for e in ends if e <= size]
        valid_end = whole[-1] if whole else first
        with EventLogWriter(directory, "n1") as w:
            assert w.recovery.valid_end == valid_end
            assert w.recovery.cut_bytes == size + len(garbage) - valid_end
        assert seg.stat().st_size == valid_end
        assert len(list(EventLogReader(directory).entries())) == len(whole)


CRASHER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from wiresens.eventlog import EventLogWriter
    from wiresens.records import RecordKind, new_record

    # A small buffer: flushes cut entries at arbitrary bytes, as a crash mid-write would.
    w = EventLogWriter(sys.argv[1], "crash", buffer_bytes=1000, segment_bytes=1 << 20)
    i = 0
    while True:
        r = new_record(RecordKind.TRADE, 10)
        r["symbol"] = np.arange(10) + 10 * i
        r["ts_recv"] = 1 + i
        w.append_records(RecordKind.TRADE, r)
        i += 1
        if i == 200:
            print("running", flush=True)
    """
)


def test_a_writer_killed_mid_write_leaves_a_log_that_recovers_to_a_prefix(tmp_path: Path) -> None:
    with subprocess.Popen(
        [sys.executable, "-c", CRASHER, str(tmp_path)], stdout=subprocess.PIPE, text=True
    ) as proc:
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "running"
            time.sleep(0.05)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
    before = sum(p.stat().st_size for p in tmp_path.glob("*.evlog"))
    # Readers stop at the torn edge without error, and see only whole entries.
    seen = _symbols(tmp_path)
    assert seen == list(range(len(seen))) and len(seen) >= 2000
    with EventLogWriter(tmp_path, "crash") as w:
        cut = w.recovery.cut_bytes
        assert w.recovery.corrupt == []
    after = sum(p.stat().st_size for p in tmp_path.glob("*.evlog"))
    assert after == before - cut
    assert _symbols(tmp_path) == seen


def _flip(path: Path, position: int) -> None:
    with open(path, "r+b") as f:
        f.seek(position)
        b = f.read(1)
        f.seek(position)
        f.write(bytes([b[0] ^ 0x5A]))


@pytest.mark.parametrize(
    ("where", "reason"), [(300, "CRC mismatch"), (0, "no entry magic"), (9, "damaged length field")]
)
def test_a_corrupt_entry_in_the_middle_is_reported_and_can_be_skipped(
    tmp_path: Path, where: int, reason: str
) -> None:
    offsets = _write(tmp_path, 10)
    seg = _segment(tmp_path)
    bad = offsets[8]  # a TRADE entry in the middle
    _flip(seg, bad.position + where)
    reader = EventLogReader(tmp_path)
    got = []
    with pytest.raises(CorruptEntryError) as info:
        for e in reader.entries():
            got.append(e.offset)
    assert got == offsets[:8]
    err = info.value
    assert (err.path, err.offset, err.segment) == (str(seg), bad.position, 0)
    assert str(seg) in str(err) and f"byte offset {bad.position}" in str(err) and reason in str(err)
    assert "skip_corrupt=True" in str(err)
    skipped = [e.offset for e in reader.entries(skip_corrupt=True)]
    assert skipped == offsets[:8] + offsets[9:]
    (c,) = reader.corrupt
    assert (c.path, c.segment, c.offset, c.resumed_at) == (
        str(seg),
        0,
        bad.position,
        offsets[9].position,
    )
    assert reason in c.reason
    assert _symbols(tmp_path, skip_corrupt=True) == [s for s in range(100) if s // 10 != 4]
    # A writer reopening the log keeps everything after the damage and reports it.
    with EventLogWriter(tmp_path, "n1") as w:
        assert w.recovery.cut_bytes == 0
        assert [x.offset for x in w.recovery.corrupt] == [bad.position]


def test_damage_at_the_end_of_an_older_segment_is_corruption(tmp_path: Path) -> None:
    offsets = _write(tmp_path, 30, segment_bytes=8192)
    first, second = _segment(tmp_path, 0), _segment(tmp_path, 1)
    in_first = [o for o in offsets if o.segment == 0]
    with open(first, "r+b") as f:
        f.truncate(first.stat().st_size - 5)
    with pytest.raises(CorruptEntryError, match="ends inside this entry") as info:
        list(EventLogReader(tmp_path).entries())
    assert info.value.offset == in_first[-1].position
    reader = EventLogReader(tmp_path)
    got = [e.offset for e in reader.entries(skip_corrupt=True)]
    assert got == [o for o in offsets if o != in_first[-1]]
    assert [(c.path, c.resumed_at) for c in reader.corrupt] == [(str(first), None)]
    assert second.exists()


def test_the_index_lets_a_time_range_skip_damage_it_does_not_cover(tmp_path: Path) -> None:
    offsets = _write(tmp_path, 400, index_entries=16)
    # Damage an entry early in the log; the range asked for lies far after it.
    _flip(_segment(tmp_path), offsets[10].position + 100)
    assert _symbols(tmp_path, start_ns=T0 + 300) == list(range(3000, 4000))
    for p in tmp_path.glob("*.evidx"):
        p.unlink()
    with pytest.raises(CorruptEntryError):  # without an index the scan reads the damage
        _symbols(tmp_path, start_ns=T0 + 300)


def test_recover_needs_the_directory_free_and_cuts_the_tail(tmp_path: Path) -> None:
    _write(tmp_path, 3)
    seg = _segment(tmp_path)
    size = seg.stat().st_size
    with open(seg, "ab") as f:
        f.write(b"WSE1" + bytes(20))
    with EventLogWriter(tmp_path, "n1", roll_utc_day=False) as w, pytest.raises(LogLockedError):
        recover(tmp_path)
    # The writer above recovered it already; damage it again for recover() itself.
    with open(seg, "ab") as f:
        f.write(b"\x01\x02\x03")
    rec = recover(tmp_path)
    assert (rec.segment, rec.cut_bytes, rec.valid_end, rec.entries) == (0, 3, size, 6)
    assert seg.stat().st_size == size
    assert w.closed
    assert os.path.exists(tmp_path / ".lock")


FULL_DISK = textwrap.dedent(
    """
    import resource, signal, sys
    import numpy as np
    from wiresens.errors import EventLogError
    from wiresens.eventlog import EventLogWriter
    from wiresens.records import RecordKind, new_record

    # A file-size limit stands in for a full disk: writes past it fail with EFBIG.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, resource.RLIM_INFINITY))
    w = EventLogWriter(sys.argv[1], "full", buffer_bytes=4096)
    i = 0
    try:
        while True:
            r = new_record(RecordKind.TRADE, 10)
            r["symbol"] = np.arange(10) + 10 * i
            w.append_records(RecordKind.TRADE, r)
            i += 1
    except OSError as exc:
        print("failed", i, exc.errno, flush=True)
    try:
        w.append_records(RecordKind.TRADE, new_record(RecordKind.TRADE, 1))
    except EventLogError as exc:
        print("then", "open a new EventLogWriter" in str(exc), w.failed is not None, flush=True)
    resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    with EventLogWriter(sys.argv[1], "full") as w2:  # the lock was released
        print("recovered", w2.recovery.cut_bytes, w2.recovery.valid_end, flush=True)
    """
)


def test_a_failed_write_stops_the_writer_and_a_new_one_recovers(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", FULL_DISK, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.split("\n")
    failed, then, recovered = (line.split() for line in out[:3])
    assert failed[0] == "failed" and int(failed[2]) == 27  # EFBIG
    assert then == ["then", "True", "True"]
    assert recovered[0] == "recovered"
    seen = _symbols(tmp_path)
    assert seen == list(range(len(seen))) and 0 < len(seen) <= 10 * int(failed[1])
    assert _segment(tmp_path).stat().st_size == int(recovered[2]) <= 100_000
