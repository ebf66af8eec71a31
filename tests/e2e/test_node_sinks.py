"""A node with both sinks: the event log's order events reach Kafka and PostgreSQL.

Independent readers check the copies: Debian's ``kcat`` for Kafka, ``psql`` for
PostgreSQL. The sink actors are killed with SIGKILL mid-run; they restart from their
committed offsets and nothing is lost or duplicated in PostgreSQL.
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

from wiresens.eventlog import EntryType, EventLogReader
from wiresens.node import read_status
from wiresens.records import RecordKind

HERE = Path(__file__).parent


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


def _count_log(directory: Path, kind: int) -> int:
    return sum(
        e.count
        for e in EventLogReader(directory).entries()
        if e.type == EntryType.RECORDS and e.kind == kind
    )


@pytest.mark.slow
def test_node_sinks_copy_the_event_log(
    tmp_path: Path, kafka_bootstrap: str, postgres_dsn: str
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
class = "{HERE / "policies.py"}:Taker"
timer_interval_ms = 0
""")
    run_dir = tmp_path / "run"
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
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(120) == 0, (tmp_path / "node.out").read_text()

    events = tmp_path / "run" / "events"
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
    res = subprocess.run(
        [
            kcat,
            "-b",
            kafka_bootstrap,
            "-C",
            "-t",
            f"{topic_prefix}.execution_report",
            "-o",
            "beginning",
            "-e",
            "-q",
            "-f",
            "%h\\n",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    headers = {line for line in res.stdout.splitlines() if line}
    assert len(headers) == n_exec  # distinct (offset, idx): every record at least once
