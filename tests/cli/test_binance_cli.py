"""``wiresens binance replay`` on a synthetic capture (and the real sample when present)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import msgspec
import pytest
from typer.testing import CliRunner

from wiresens.cli import app


def _diff(first: int, final: int, bid: str, ask: str) -> dict[str, object]:
    return {"e": "depthUpdate", "E": 1, "s": "BTCUSDT", "U": first, "u": final,
            "b": [[bid, "1.00000000"]], "a": [[ask, "2.00000000"]]}  # fmt: skip


def _capture(tmp_path: Path, drop: int | None = None) -> Path:
    lines = []
    ts = 1_700_000_000
    snap = {"lastUpdateId": 10, "bids": [["99.00", "5"]], "asks": [["101.00", "5"]]}
    lines.append(f"{ts}.0: " + msgspec.json.encode({"stream": "btcusdt@depth@100ms",
                 "data": _diff(9, 11, "100.00", "102.00")}).decode())  # fmt: skip
    lines.append(
        f"https://api.binance.com/api/v3/depth?symbol=BTCUSDT&limit=1000 -> {ts}.1: "
        + msgspec.json.encode(snap).decode()
    )
    for i in range(12, 20):
        if i == drop:
            continue
        data = _diff(i, i, f"{100 + i}.00", f"{200 + i}.00")
        lines.append(f"{ts}.{i}: " + msgspec.json.encode({"stream": "btcusdt@depth@100ms",
                     "data": data}).decode())  # fmt: skip
        ticker = {"u": i, "s": "BTCUSDT", "b": f"{100 + i}.00", "B": "1", "a": "101.00", "A": "5"}
        lines.append(f"{ts}.{i}5: " + msgspec.json.encode({"stream": "btcusdt@bookTicker",
                     "data": ticker}).decode())  # fmt: skip
    lines.append("this line is not a recording")
    p = tmp_path / "BINANCE.ws.1.0"
    p.write_text("\n".join(lines) + "\n")
    return p


def test_replay_json_counts(tmp_path: Path) -> None:
    p = _capture(tmp_path)
    res = CliRunner().invoke(app, ["binance", "replay", str(p), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    r = doc["symbols"]["BTCUSDT"]
    assert doc["bad_lines"] == 1
    assert r["streams"] == {"btcusdt@depth@100ms": 9, "btcusdt@bookTicker": 8, "rest": 1}
    assert (r["applied"], r["gaps"], r["resyncs"], r["synced"]) == (9, 0, 0, True)
    assert (r["ticker_matched"], r["ticker_mismatched"]) == (8, 0)


def test_replay_table_and_strict_exit_on_gap(tmp_path: Path) -> None:
    p = _capture(tmp_path, drop=15)
    res = CliRunner().invoke(app, ["binance", "replay", str(p)])
    assert res.exit_code == 0, res.output
    assert "BTCUSDT" in res.output and "btcusdt@depth@100ms" in res.output
    res = CliRunner().invoke(app, ["binance", "replay", str(p), "--strict"])
    assert res.exit_code == 1


def test_replay_refuses_unknown_file(tmp_path: Path) -> None:
    p = tmp_path / "x.txt"
    p.write_text("hello\n")
    res = CliRunner().invoke(app, ["binance", "replay", str(p)], env={"COLUMNS": "400"})
    assert res.exit_code == 2
    assert "not a recording" in res.output


def _data_dir() -> Path | None:
    env = os.environ.get("WIRESENS_DATA")
    base = Path(env) if env else Path(__file__).resolve().parents[2].parent / "shared" / "data"
    d = base / "binance"
    return d if d.is_dir() else None


@pytest.mark.skipif(
    _data_dir() is None,
    reason="real Binance recordings not found in ../shared/data/binance or $WIRESENS_DATA/binance",
)
def test_replay_real_session_strict() -> None:
    d = _data_dir()
    assert d is not None
    files = [str(d / "cryptofeed" / "BINANCE.http.0.0"), str(d / "cryptofeed" / "BINANCE.ws.1.0")]
    res = CliRunner().invoke(app, ["binance", "replay", *files, "--json", "--strict"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["symbols"]["NKNUSDT"]["ticker_matched"] == 19
