"""A node with both sinks: the event log's order events reach Kafka and PostgreSQL.

Independent readers check the copies: Debian's ``kcat`` for Kafka, ``psql`` for
PostgreSQL. The sink actors are killed with SIGKILL mid-run; they restart from their
committed offsets and nothing is lost or duplicated in PostgreSQL. Then Kafka is stopped
for 30 s while the node trades; once it is back the sink catches up, the node is
stopped (the sink drains to the log's end), and kcat finds every record of the log.
(A stop that lands in the sink's retry wait is tests/sinks/test_kafka.py's case.)
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from wiresens.eventlog import RAW_KIND, EntryType, EventLogOffset, EventLogReader
from wiresens.node import read_status
from wiresens.records import RecordKind
from wiresens.sinks import topic_for
from wiresens.testing.services import Service


def _wait(what: str, cond: Any, timeout: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = cond()
        except Exception as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


# Crosses the spread like policies.py's Taker, but with IOC orders: an order whose price
# the market left expires instead of resting, so the policy never stalls waiting for it
# (a resting order stopped the Taker for good in a loaded run, failing "trading after
# the outage" for a reason that has nothing to do with Kafka).
_IOC_TAKER = """
from wiresens.policy import IOC, BookView, PolicyObject


class IocTaker(PolicyObject):
    def on_book(self, symbol: int, book: BookView) -> None:
        if len(self.open_orders.open) or not book.ask_px:
            return
        if self.position(symbol) <= 0:
            self.buy(symbol, 100_000, book.ask_px, tif=IOC)
        else:
            self.sell(symbol, 100_000, book.bid_px, tif=IOC)
"""


def _log_keys(directory: Path, prefix: str) -> dict[str, set[tuple[str, int]]]:
    """(offset, idx) of every record of the log, by the Kafka topic it goes to."""
    out: dict[str, set[tuple[str, int]]] = {}
    for e in EventLogReader(directory).entries():
        kind = RAW_KIND if e.type == EntryType.RAW else e.kind
        keys = out.setdefault(topic_for(prefix, kind), set())
        off = e.offset.encode()
        keys.update((off, i) for i in range(e.count if e.type == EntryType.RECORDS else 1))
    return out


def _kcat_keys(kcat: str, bootstrap: str, topic: str) -> set[tuple[str, int]]:
    """(offset, idx) headers of every message of ``topic``, read with kcat."""
    res = subprocess.run(
        [kcat, "-b", bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%h\\n"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    out = set()
    for line in res.stdout.splitlines():
        if line:
            h = dict(kv.split("=", 1) for kv in line.split(","))
            out.add((h["offset"], int(h["idx"])))
    return out


def _sink_status(directory: Path) -> str:
    path = directory / "sinks" / "kafka.status.json"
    return path.read_text() if path.exists() else "(no status file)"


def _count_log(directory: Path, kind: int) -> int:
    return sum(
        e.count
        for e in EventLogReader(directory).entries()
        if e.type == EntryType.RECORDS and e.kind == kind
    )


@pytest.mark.slow
def test_node_sinks_copy_the_event_log(
    tmp_path: Path, kafka_bootstrap: str, postgres_dsn: str, kafka_service: Service
) -> None:
    kcat = shutil.which("kcat")
    psql = shutil.which("psql")
    if kcat is None or psql is None:
        pytest.skip(
            "kcat and psql are the independent readers (apt-get install kcat postgresql-client)"
        )
    name = f"snk{uuid.uuid4().hex[:6]}"
    schema = f"ws_{name}"
    topic_prefix = f"ws{name}"
    policy = tmp_path / "ioc_taker.py"
    policy.write_text(_IOC_TAKER)
    cfg = tmp_path / "node.toml"
    cfg.write_text(f"""
[node]
name = "{name}"
shm_prefix = "wstest"
run_dir = "{tmp_path / "run"}"
log_target = "file"

[feed]
symbols = ["BTCUSDT"]

[feed.local]
market = "synthetic:3:100"

[sidecar.kafka]
bootstrap_servers = ["{kafka_bootstrap}"]
topic_prefix = "{topic_prefix}"

[sidecar.postgres]
dsn = "{postgres_dsn}"
schema = "{schema}"

[[policy]]
name = "taker"
class = "{policy}:IocTaker"
timer_interval_ms = 0
""")
    run_dir = tmp_path / "run"
    events = run_dir / "events"
    with open(tmp_path / "node.out", "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "wiresens", "node", "up", "--config", str(cfg), "--quiet"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:

        def sink_records(st: dict[str, Any], sink: str) -> int:
            return int(st["sinks"].get(sink, {}).get("records", 0))

        _wait(
            "fills and both sinks copying",
            lambda: (
                (s := read_status(run_dir))
                and next(p for p in s["policies"] if p["policy"] == "taker")["fills"] >= 3
                and sink_records(s, "kafka") > 0
                and sink_records(s, "postgres") > 0
            ),
        )
        # SIGKILL both sink actors mid-stream: restarted, they resume from their offsets.
        for a in read_status(run_dir)["actors"]:
            if a["name"].startswith("sink:"):
                os.kill(a["pid"], signal.SIGKILL)
        _wait(
            "sinks restarted",
            lambda: all(
                a["restarts"] >= 1 and a["state"] == "RUNNING"
                for a in read_status(run_dir)["actors"]
                if a["name"].startswith("sink:")
            ),
        )
        fills = next(p for p in read_status(run_dir)["policies"] if p["policy"] == "taker")["fills"]
        _wait(
            "more trading",
            lambda: (
                next(p for p in read_status(run_dir)["policies"] if p["policy"] == "taker")["fills"]
                > fills + 2
            ),
        )
        # Kafka down for 30 s while the node trades: the Kafka sink retries (backing off
        # up to 10 s), and the clean stop right after the restart drains it to the log's
        # end: kcat then finds every record (checked below).
        kafka_service.stop()
        try:
            time.sleep(30)
            st = read_status(run_dir)
            assert (
                st["sinks"]["kafka"]["state"] != "running" or st["sinks"]["kafka"]["total_retries"]
            )
        finally:
            kafka_service.start()
        # The sink catches up: everything logged until the broker came back is committed
        # (acknowledged by Kafka) soon after; the node keeps trading meanwhile.
        restarted_at = EventLogReader(events).end_offset()
        fills = next(p for p in read_status(run_dir)["policies"] if p["policy"] == "taker")["fills"]
        _wait(
            "trading after the outage",
            lambda: (
                next(p for p in read_status(run_dir)["policies"] if p["policy"] == "taker")["fills"]
                > fills
            ),
        )
        _wait(
            "the Kafka sink's catch-up after the outage",
            lambda: (
                (c := read_status(run_dir)["sinks"]["kafka"]["committed"]) is not None
                and EventLogOffset.decode(c) >= restarted_at
            ),
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(120) == 0, (tmp_path / "node.out").read_text()

    n_exec = _count_log(events, RecordKind.EXECUTION_REPORT)
    n_new = _count_log(events, RecordKind.ORDER_NEW)
    assert n_exec > 0 and n_new > 0
    # Exactly once in the log, even across the sidecar's SIGKILL: no order request twice.
    ids = [
        int(r["cl_ord_id"])
        for e in EventLogReader(events).entries()
        if e.type == EntryType.RECORDS and e.kind == RecordKind.ORDER_NEW
        for r in (e.records if e.records is not None else ())
    ]
    assert len(ids) == len(set(ids)) == n_new
    # The node has stopped; the sinks stopped last. Their copies equal the log.
    out = subprocess.run(
        [
            psql,
            postgres_dsn,
            "-At",
            "-c",
            f"select count(*), count(distinct (log_segment, log_position, idx)) from {schema}.executions",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    total, distinct = (int(x) for x in out.stdout.strip().split("|"))
    assert total == distinct == n_exec
    # Kafka: every record of the log, of every kind (raw messages too), is in its topic,
    # the outage and both SIGKILLs notwithstanding (at least once: repeats are allowed).
    want = _log_keys(events, topic_prefix)
    assert want[topic_for(topic_prefix, RecordKind.EXECUTION_REPORT)]
    for topic, keys in want.items():
        got = _kcat_keys(kcat, kafka_bootstrap, topic)
        missing = keys - got
        assert not missing, (
            f"{topic}: {len(missing)} of {len(keys)} records missing, first "
            f"{sorted(missing)[:3]}; the Kafka sink's status: {_sink_status(events)}"
        )
        assert got == keys  # nothing the log does not hold
