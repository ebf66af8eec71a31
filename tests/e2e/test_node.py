"""A real node against the built-in venue: trading, crashes and restarts, ordered stop.

The node runs as ``python -m wiresens node up`` in its own process tree; the test
reads its state the way an operator does (``read_status``: shared memory and the
manifest) and kills actor processes with SIGKILL.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from wiresens.node import read_status
from wiresens.records import RecordKind
from wiresens.shm import list_segments

HERE = Path(__file__).parent


def _config(tmp: Path, name: str) -> Path:
    text = f"""
[node]
name = "{name}"
shm_prefix = "wstest"
run_dir = "{tmp / "run"}"
data_dir = "{tmp / "data"}"
log_target = "file"

[node.idle]
strategy = "block"
spins = 200
timeout_ms = 1.0

[feed]
venue = "local"
symbols = ["BTCUSDT"]
streams = ["depth", "bookTicker", "trade"]

[feed.local]
market = "synthetic:7"

[[policy]]
name = "taker"
class = "{HERE / "policies.py"}:Taker"
timer_interval_ms = 0

[[policy]]
name = "mm"
class = "examples.market_maker:MarketMaker"
timer_interval_ms = 500

[policy.params]
qty = 100000
max_position = 1000000
spread_bps = 10

[[policy]]
name = "crasher"
class = "{HERE / "policies.py"}:Crasher"
timer_interval_ms = 0
"""
    path = tmp / "node.toml"
    path.write_text(text)
    return path


def _wait(what: str, cond: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = cond()
        except Exception as exc:  # the node may still be starting
            last = exc
        else:
            if last:
                return last
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


@pytest.fixture
def node(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path, str]]:
    name = f"e2e{uuid.uuid4().hex[:6]}"
    cfg = _config(tmp_path, name)
    with open(tmp_path / "node.out", "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "wiresens", "node", "up", "--config", str(cfg), "--quiet"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    yield proc, tmp_path / "run", f"wstest.{name}"
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _actor(st: dict[str, Any], name: str) -> dict[str, Any]:
    return next(a for a in st["actors"] if a["name"] == name)


def _policy(st: dict[str, Any], name: str) -> dict[str, Any]:
    return next(p for p in st["policies"] if p["policy"] == name)


@pytest.mark.slow
def test_node_trades_survives_kills_and_stops_cleanly(node: Any) -> None:
    proc, run_dir, prefix = node
    st = _wait(
        "taker fills and mm quotes",
        lambda: (
            (s := read_status(run_dir))
            and _policy(s, "taker")["fills"] >= 2
            and _policy(s, "mm")["orders"] >= 2
            and s
        ),
        timeout=90,
    )
    assert st["books"][0]["bid"] is not None

    # A policy that raises in on_book is reported and restarted; the others are untouched.
    st = _wait(
        "crasher restarted",
        lambda: (s := read_status(run_dir)) and _actor(s, "policy:crasher")["restarts"] >= 1 and s,
    )
    assert _actor(st, "policy:taker")["restarts"] == 0
    assert _actor(st, "policy:mm")["restarts"] == 0

    # kill -9 of a policy actor: restarted, the node keeps trading.
    mm = _actor(st, "policy:mm")
    os.kill(mm["pid"], signal.SIGKILL)
    st = _wait(
        "mm restarted and running",
        lambda: (
            (s := read_status(run_dir))
            and _actor(s, "policy:mm")["restarts"] == 1
            and _actor(s, "policy:mm")["state"] == "RUNNING"
            and s
        ),
    )
    fills = _policy(st, "taker")["fills"]
    _wait("taker keeps trading", lambda: _policy(read_status(run_dir), "taker")["fills"] > fills)

    # kill -9 of the feed: restarted, books resynced, trading resumes.
    feed = _actor(read_status(run_dir), "feed")
    os.kill(feed["pid"], signal.SIGKILL)
    st = _wait(
        "feed restarted",
        lambda: (
            (s := read_status(run_dir))
            and _actor(s, "feed")["restarts"] == 1
            and _actor(s, "feed")["state"] == "RUNNING"
            and s
        ),
    )
    fills = _policy(st, "taker")["fills"]
    _wait(
        "fresh book after the feed restart",
        lambda: read_status(run_dir)["books"][0].get("age_ms", 1e9) < 2000,
    )
    _wait(
        "taker trades after the feed restart",
        lambda: _policy(read_status(run_dir), "taker")["fills"] > fills,
    )

    # Kill switch from the CLI: the taker's orders are cancelled and blocked, then resumed.
    cli = [sys.executable, "-m", "wiresens", "node"]
    out = subprocess.run(
        [*cli, "kill", "--policy", "taker", "--run-dir", str(run_dir)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    st = _wait(
        "taker killed", lambda: (s := read_status(run_dir)) and _policy(s, "taker")["killed"] and s
    )
    assert not _policy(st, "mm")["killed"]
    _wait(
        "taker has no open order",
        lambda: _policy(read_status(run_dir), "taker")["open_orders"] == 0,
    )
    rejects = _policy(read_status(run_dir), "taker")["rejects"]
    _wait(
        "taker's new orders rejected",
        lambda: _policy(read_status(run_dir), "taker")["rejects"] > rejects,
    )
    out = subprocess.run(
        [*cli, "resume", "--policy", "taker", "--run-dir", str(run_dir)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    fills = _wait(
        "taker resumed",
        lambda: (s := read_status(run_dir)) and not _policy(s, "taker")["killed"] and s,
    )
    fills = _policy(fills, "taker")["fills"]
    _wait("taker trades again", lambda: _policy(read_status(run_dir), "taker")["fills"] > fills)
    bad = subprocess.run(
        [*cli, "kill", "--policy", "nope", "--run-dir", str(run_dir)],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 1 and "no policy 'nope'" in bad.stderr

    # Ordered stop: execution cancels every open order and waits for the answers.
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(90) == 0, (run_dir.parent / "node.out").read_text()
    events = [
        json.loads(line) for line in (run_dir / "logs" / "execution.jsonl").read_text().splitlines()
    ]
    stops = [e for e in events if e.get("event") == "execution stopped"]
    assert stops and stops[-1]["open_orders_left"] == 0, stops
    assert list_segments(prefix) == []
    assert not (run_dir / "node.pid").exists()
    _check_event_log(run_dir / "events")


def _check_event_log(directory: Path) -> None:
    """The sidecar's event log holds what the node saw, and replaying its order requests and
    execution reports through a fresh OMS reproduces the final order states (all closed)."""
    from wiresens.eventlog import EntryType, EventLogReader
    from wiresens.oms import OrderTable
    from wiresens.taps import RawSource

    reader = EventLogReader(directory)
    oms = OrderTable()
    sources: dict[int, int] = {}
    kinds: dict[int, int] = {}
    for entry in reader.entries():
        if entry.type == EntryType.RAW:
            assert entry.raw is not None
            sources[entry.raw.source] = sources.get(entry.raw.source, 0) + 1
            continue
        assert entry.records is not None
        kinds[entry.kind] = kinds.get(entry.kind, 0) + entry.count
        for rec in entry.records:
            if entry.kind in (
                RecordKind.ORDER_NEW,
                RecordKind.ORDER_CANCEL,
                RecordKind.ORDER_REPLACE,
            ):
                oms.on_request(rec)
            elif entry.kind == RecordKind.EXECUTION_REPORT:
                oms.apply(rec)
    assert sources.get(RawSource.MARKET_STREAM, 0) > 10
    assert sources.get(RawSource.WS_API_OUT, 0) >= kinds.get(RecordKind.ORDER_NEW, 0) > 0
    assert kinds.get(RecordKind.TOP_OF_BOOK, 0) > 0
    assert kinds.get(RecordKind.EXECUTION_REPORT, 0) > 0
    still_open = [o for o in oms if o.is_open]
    assert still_open == [], still_open[:5]
    # The raw market messages in the log rebuild the same books: every bookTicker at an
    # applied diff's id equals the rebuilt top of book (the feed's restart is a resync).
    from wiresens.binance.replay import replay_event_log

    report = replay_event_log(directory).reports["BTCUSDT"]
    assert report.ticker_matched > 10, report.as_dict()
    assert report.ticker_mismatched == 0 and report.crossed == 0, report.as_dict()


def test_bad_config_names_the_key(tmp_path: Path) -> None:
    cfg = tmp_path / "node.toml"
    cfg.write_text(
        '[[policy]]\nname = "x"\nclass = "examples.market_maker:MarketMaker"\ncpuu = 1\n'
    )
    out = subprocess.run(
        [sys.executable, "-m", "wiresens", "node", "check", "--config", str(cfg)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2
    assert "policy[0].cpuu" in out.stderr and "cpu" in out.stderr
