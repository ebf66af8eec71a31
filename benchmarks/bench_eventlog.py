"""Event log: records/s appending numpy batches, raw messages/s, vs plain ``file.write``.

``python -m benchmarks eventlog [--records N] [--runs R] [--json FILE]``. Each case writes the
same bytes twice into a fresh directory, timed from the first append to the end of
``close()`` (so the last buffered bytes are handed to the OS; no ``fsync``):

* ``eventlog``: :class:`~wiresens.eventlog.EventLogWriter` (entry header, CRC32 over
  header and payload, timestamps min/max, index rows, roll checks);
* ``baseline``: ``open(path, "wb", buffering=1 MiB).write`` of the bare payload bytes,
  without framing or CRC: the floor the log is measured against.

Record cases append one preallocated batch again and again (64 and 1024 records per
entry; 64-byte TRADE and 128-byte EXECUTION_REPORT records); the raw case appends
a 180-byte JSON message per entry, the size of a Binance depth diff. ``read`` reports
``EventLogReader.read_records`` over the log the 64-byte, 1024-per-entry case wrote.
The target of issue 6 is >= 1,000,000 records/s written from numpy batches.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from typing import Any

import numpy as np

from benchmarks.common import fmt_rate, machine_info, print_table, spread, write_json
from wiresens.eventlog import EventLogReader, EventLogWriter
from wiresens.records import RecordKind, new_record

__all__ = ["CASES", "SMOKE", "TARGET_RATE", "main", "run_once"]

TARGET_RATE = 1_000_000.0
DEFAULT_RECORDS = 1_000_000
BUFFER = 1 << 20
CASES: tuple[tuple[str, RecordKind | None, int], ...] = (
    ("64B x64", RecordKind.TRADE, 64),
    ("64B x1024", RecordKind.TRADE, 1024),
    ("128B x64", RecordKind.EXECUTION_REPORT, 64),
    ("128B x1024", RecordKind.EXECUTION_REPORT, 1024),
    ("raw 180B", None, 1),
)
RAW_MESSAGE = (
    b'{"e":"depthUpdate","E":1764000000000,"s":"BTCUSDT","U":1,"u":2,'
    b'"b":[["65432.10000000","0.00100000"],["65432.00000000","1.20000000"]],'
    b'"a":[["65433.00000000","0.50000000"]]}'
).ljust(180, b" ")

SMOKE: dict[str, Any] = {"records": 20_000, "runs": 1}
"""Arguments of :func:`main` that finish in about a second (tests/benchmarks)."""


def _batch(kind: RecordKind, n: int) -> np.ndarray[Any, Any]:
    recs = new_record(kind, n)
    recs["ts_recv"] = 1_764_000_000_000_000_000 + np.arange(n, dtype=np.int64)
    recs["symbol"] = 1
    return recs


def _records_case(
    base: str, kind: RecordKind, batch: int, records: int
) -> tuple[float, float, int, int]:
    recs = _batch(kind, batch)
    loops = max(1, records // batch)
    d = tempfile.mkdtemp(dir=base)
    try:
        w = EventLogWriter(d, "bench", roll_utc_day=False)
        append = w.append_records
        t0 = time.perf_counter()
        for _ in range(loops):
            append(kind, recs)
        w.close()
        t_log = time.perf_counter() - t0
        payload = recs.data.cast("B")
        t0 = time.perf_counter()
        with open(os.path.join(d, "baseline.bin"), "wb", buffering=BUFFER) as f:
            write = f.write
            for _ in range(loops):
                write(payload)
        t_base = time.perf_counter() - t0
        size = sum(e.stat().st_size for e in os.scandir(d) if e.name.endswith((".evlog", ".evidx")))
    finally:
        shutil.rmtree(d, ignore_errors=True)
    return t_log, t_base, loops * batch, size


def _raw_case(base: str, messages: int) -> tuple[float, float, int, int]:
    d = tempfile.mkdtemp(dir=base)
    msg = RAW_MESSAGE
    try:
        w = EventLogWriter(d, "bench", roll_utc_day=False)
        append = w.append_raw
        ts = 1_764_000_000_000_000_000
        t0 = time.perf_counter()
        for i in range(messages):
            append(ts + i, 1, "btcusdt@depth@100ms", msg)
        w.close()
        t_log = time.perf_counter() - t0
        t0 = time.perf_counter()
        with open(os.path.join(d, "baseline.bin"), "wb", buffering=BUFFER) as f:
            write = f.write
            for _ in range(messages):
                write(msg)
        t_base = time.perf_counter() - t0
        size = sum(e.stat().st_size for e in os.scandir(d) if e.name.endswith(".evlog"))
    finally:
        shutil.rmtree(d, ignore_errors=True)
    return t_log, t_base, messages, size


def _read_case(base: str, records: int) -> tuple[float, int]:
    d = tempfile.mkdtemp(dir=base)
    try:
        recs = _batch(RecordKind.TRADE, 1024)
        with EventLogWriter(d, "bench", roll_utc_day=False) as w:
            for _ in range(max(1, records // 1024)):
                w.append_records(RecordKind.TRADE, recs)
        t0 = time.perf_counter()
        n = len(EventLogReader(d).read_records(RecordKind.TRADE))
        return time.perf_counter() - t0, n
    finally:
        shutil.rmtree(d, ignore_errors=True)


def run_once(records: int, directory: str | None = None) -> dict[str, Any]:
    """One run of every case: seconds for the log and the baseline, counts, bytes."""
    base = directory or tempfile.gettempdir()
    out: dict[str, Any] = {"cases": {}}
    for name, kind, batch in CASES:
        if kind is None:
            t_log, t_base, n, size = _raw_case(base, max(1, records // 4))
        else:
            t_log, t_base, n, size = _records_case(base, kind, batch, records)
        out["cases"][name] = {
            "seconds": t_log,
            "baseline_seconds": t_base,
            "count": n,
            "bytes": size,
        }
    t_read, n_read = _read_case(base, records)
    out["read"] = {"seconds": t_read, "count": n_read}
    return out


def main(
    *,
    json_out: str | None = None,
    runs: int = 1,
    records: int | None = None,
    directory: str | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """Run the event-log benchmark ``runs`` times, print and return the figures.

    ``records`` is the number of records per record case (raw messages: a quarter);
    ``directory`` where the logs are written (the system temp directory by default:
    on tmpfs the figures are CPU cost, on a disk they include the page cache).
    """
    if runs < 1:
        raise ValueError(f"--runs must be at least 1, got {runs}")
    n = records or DEFAULT_RECORDS
    all_runs = [run_once(n, directory) for _ in range(runs)]
    names = [c[0] for c in CASES]
    rate = {
        c: spread(r["cases"][c]["count"] / r["cases"][c]["seconds"] for r in all_runs)
        for c in names
    }
    base = {
        c: spread(r["cases"][c]["count"] / r["cases"][c]["baseline_seconds"] for r in all_runs)
        for c in names
    }
    ratio = {
        c: spread(r["cases"][c]["baseline_seconds"] / r["cases"][c]["seconds"] for r in all_runs)
        for c in names
    }
    mbps = {
        c: spread(r["cases"][c]["bytes"] / r["cases"][c]["seconds"] / 1e6 for r in all_runs)
        for c in names
    }
    read = spread(r["read"]["count"] / r["read"]["seconds"] for r in all_runs)
    record_cases = [c for c, kind, _ in CASES if kind is not None]
    doc: dict[str, Any] = {
        "benchmark": "eventlog",
        "machine": machine_info(),
        "config": {
            "records": n,
            "raw_messages": max(1, n // 4),
            "raw_bytes": len(RAW_MESSAGE),
            "buffer_bytes": BUFFER,
            "directory": directory or tempfile.gettempdir(),
            "runs": runs,
            "crc": "zlib.crc32",
        },
        "summary": {
            "rate_per_s": rate,
            "baseline_per_s": base,
            "ratio_vs_baseline": ratio,
            "mb_per_s": mbps,
            "read_records_per_s": read,
        },
        "targets": [
            {"case": c, "rate": rate[c].median, "met_rate": rate[c].median >= TARGET_RATE}
            for c in record_cases
        ],
        "runs": all_runs,
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
    }
    if not quiet:
        _print(doc)
    write_json(doc, json_out)
    return doc


def _print(doc: dict[str, Any]) -> None:
    s = doc["summary"]
    rows = [
        [
            c,
            fmt_rate(s["rate_per_s"][c].median),
            fmt_rate(s["baseline_per_s"][c].median),
            f"{s['ratio_vs_baseline'][c].median:.2f}x",
            f"{s['mb_per_s'][c].median:,.0f}",
        ]
        for c in s["rate_per_s"]
    ]
    print_table(
        f"Event log append ({doc['config']['records']:,} records per case, raw: "
        f"{doc['config']['raw_messages']:,} messages of {doc['config']['raw_bytes']} B; "
        "median of runs)",
        ["case", "eventlog", "file.write", "log/baseline", "log MB/s"],
        rows,
    )
    print(f"\nread_records (64 B, 1024/entry): {fmt_rate(s['read_records_per_s'].median)}")
    met = all(t["met_rate"] for t in doc["targets"])
    worst = min(doc["targets"], key=lambda t: t["rate"])
    print(
        f"target >= {TARGET_RATE:,.0f} records/s written from numpy batches: "
        f"{'met' if met else 'NOT met'} (slowest case {worst['case']}: {fmt_rate(worst['rate'])})"
    )
