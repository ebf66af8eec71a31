"""``wiresens log ls|cat|export|recover`` on real logs."""

from __future__ import annotations

import csv
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from wiresens.cli import app
from wiresens.cli.log import parse_kinds, parse_time
from wiresens.eventlog import RAW_KIND, EventLogWriter
from wiresens.fixedpoint import from_fixed
from wiresens.records import RecordKind, new_record

T0 = 1_764_000_000_000_000_000  # 2025-11-24T16:00:00Z
runner = CliRunner(env={"COLUMNS": "400"})


def _text(output: str) -> str:
    """Output with rich's error box and line wrapping undone."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", output).split())


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    d = tmp_path / "eventlog"
    with EventLogWriter(d, "node-a", segment_bytes=8192) as w:
        for i in range(20):
            t = new_record(RecordKind.TRADE, 5)
            t["ts_recv"] = T0 + i * 1_000_000_000 + np.arange(5)
            t["symbol"] = 1
            t["trade_id"] = 5 * i + np.arange(5)
            t["price"] = 6_543_210_000_000 + t["trade_id"]
            t["qty"] = 123_456
            w.append_records(RecordKind.TRADE, t)
            w.append_raw(T0 + i * 1_000_000_000, 3, "btcusdt@trade", b'{"p":"65432.10"}')
        s = new_record(RecordKind.ACTOR_STATUS, 1)
        s["ts_pub"] = T0
        s["name"] = b"feed"
        w.append_records(RecordKind.ACTOR_STATUS, s)
    return d


def test_parse_helpers() -> None:
    assert parse_kinds(["trade", "DEPTH_UPDATE,raw", "20"]) == [3, 1, RAW_KIND, 20]
    assert parse_kinds(None) is None
    assert parse_time("2025-11-24T16:00:00Z") == T0
    assert parse_time("2025-11-24T16:00:00.5") == T0 + 500_000_000
    assert parse_time(str(T0 + 1)) == T0 + 1


def test_ls_shows_segments_kinds_and_totals(log_dir: Path) -> None:
    res = runner.invoke(app, ["log", "ls", str(log_dir)])
    assert res.exit_code == 0, res.output
    assert "000000-" in res.output and "node-a" in res.output
    assert "2025-11-24T16:00:00.000Z" in res.output
    totals = res.output.split("segments,")[1]
    assert "TRADE" in totals and "100 records" in totals and "20 entries" in totals
    res = runner.invoke(app, ["log", "ls", str(log_dir), "--json"])
    docs = [json.loads(line) for line in res.output.splitlines()]
    assert len(docs) > 1
    assert sum(d["kinds"].get("TRADE", {}).get("records", 0) for d in docs) == 100
    assert sum(d["kinds"].get("RAW", {}).get("entries", 0) for d in docs) == 20
    assert all(d["corrupt"] == [] and d["torn_bytes"] == 0 for d in docs)


def test_cat_prints_json_lines_with_decimal_prices(log_dir: Path) -> None:
    res = runner.invoke(app, ["log", "cat", str(log_dir), "--kind", "trade", "--limit", "7"])
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in res.output.splitlines()]
    assert len(rows) == 7
    assert rows[0]["kind"] == "TRADE" and rows[0]["price"] == "65432.10000000"
    assert rows[6]["price"] == from_fixed(6_543_210_000_006) and rows[6]["qty"] == "0.00123456"
    assert "_pad" not in rows[0]
    since = "2025-11-24T16:00:03Z"
    until = str(T0 + 5 * 1_000_000_000 + 2)  # ns: the first two trades of second 5
    res = runner.invoke(
        app,
        [
            "log",
            "cat",
            str(log_dir),
            "-k",
            "trade",
            "-k",
            "raw",
            "--since",
            since,
            "--until",
            until,
        ],
    )
    rows = [json.loads(line) for line in res.output.splitlines()]
    assert [r["trade_id"] for r in rows if r["kind"] == "TRADE"] == [*range(15, 25), 25, 26]
    raws = [r for r in rows if r["kind"] == "RAW"]
    assert [r["ts_recv"] for r in raws] == [T0 + s * 1_000_000_000 for s in (3, 4, 5)]
    assert raws[0]["stream"] == "btcusdt@trade" and raws[0]["data"] == '{"p":"65432.10"}'
    res = runner.invoke(app, ["log", "cat", str(log_dir), "-k", "actor_status"])
    (status,) = [json.loads(line) for line in res.output.splitlines()]
    assert status["name"] == "feed"


def test_cat_reports_bad_input(log_dir: Path, tmp_path: Path) -> None:
    res = runner.invoke(app, ["log", "cat", str(log_dir), "--kind", "trades"])
    assert res.exit_code == 2 and "not a record kind" in _text(res.output)
    res = runner.invoke(app, ["log", "cat", str(tmp_path / "missing")])
    assert res.exit_code == 2 and "no such event-log directory" in _text(res.output)


def test_corruption_fails_cat_with_the_offset_unless_skipped(log_dir: Path) -> None:
    seg = sorted(log_dir.glob("*.evlog"))[0]
    data = bytearray(seg.read_bytes())
    first = data.find(b"WSE1")
    data[first + 100] ^= 0xFF
    seg.write_bytes(bytes(data))
    res = runner.invoke(app, ["log", "cat", str(log_dir), "-k", "trade"])
    assert res.exit_code == 1
    assert f"byte offset {first}" in res.output and "CRC mismatch" in res.output
    res = runner.invoke(app, ["log", "cat", str(log_dir), "-k", "trade", "--skip-corrupt"])
    assert res.exit_code == 0
    lines = [line for line in res.output.splitlines() if line.startswith("{")]
    assert len(lines) == 95
    assert f"corrupt entry skipped: {seg} byte offset {first}" in res.output
    ls = runner.invoke(app, ["log", "ls", str(log_dir)])
    assert f"CORRUPT at byte offset {first}" in ls.output


def test_export_jsonl_and_csv(log_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "x.jsonl"
    res = runner.invoke(
        app,
        [
            "log",
            "export",
            str(log_dir),
            "--format",
            "jsonl",
            "--out",
            str(out),
            "--kind",
            "trade",
            "--progress",
        ],
    )
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["trade_id"] for r in rows] == list(range(100))
    assert "100 rows" in res.output
    out = tmp_path / "all.csv"
    res = runner.invoke(app, ["log", "export", str(log_dir), "--format", "csv", "-o", str(out)])
    assert res.exit_code == 0, res.output
    with open(tmp_path / "all.TRADE.csv", newline="") as f:
        trades = list(csv.DictReader(f))
    assert len(trades) == 100 and trades[3]["price"] == "65432.10000003"
    with open(tmp_path / "all.RAW.csv", newline="") as f:
        raws = list(csv.DictReader(f))
    assert len(raws) == 20 and raws[0]["stream"] == "btcusdt@trade"
    assert (tmp_path / "all.ACTOR_STATUS.csv").exists()


def test_export_parquet(log_dir: Path, tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet", reason="pyarrow not installed (optional)")
    out = tmp_path / "t.parquet"
    until = "2025-11-24T16:00:10Z"
    res = runner.invoke(
        app,
        [
            "log",
            "export",
            str(log_dir),
            "--format",
            "parquet",
            "-o",
            str(out),
            "-k",
            "trade",
            "--until",
            until,
        ],
    )
    assert res.exit_code == 0, res.output
    table = pq.read_table(out)
    assert table.num_rows == 50
    assert str(table.schema.field("price").type) == "decimal128(20, 8)"
    assert str(table.column("price")[1].as_py()) == "65432.10000001"
    assert table.column("trade_id").to_pylist() == list(range(50))


def test_export_parquet_without_pyarrow_says_how_to_get_it(
    log_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    res = runner.invoke(
        app,
        ["log", "export", str(log_dir), "--format", "parquet", "-o", str(tmp_path / "t.parquet")],
    )
    assert res.exit_code == 2
    assert "pip install pyarrow" in _text(res.output)
    res = runner.invoke(
        app, ["log", "export", str(log_dir), "--format", "xml", "-o", str(tmp_path / "t")]
    )
    assert res.exit_code == 2 and "jsonl, csv, parquet" in _text(res.output)


def test_recover_cuts_a_torn_tail(log_dir: Path) -> None:
    seg = sorted(log_dir.glob("*.evlog"))[-1]
    size = seg.stat().st_size
    with open(seg, "ab") as f:
        f.write(b"WSE1\x00\x00")
    res = runner.invoke(app, ["log", "ls", str(log_dir)])
    assert "6 bytes after the last whole entry" in res.output
    res = runner.invoke(app, ["log", "recover", str(log_dir)])
    assert res.exit_code == 0, res.output
    assert "6 torn bytes cut" in res.output
    assert seg.stat().st_size == size
