"""Sustained rate of the sinks (event log -> Kafka, event log -> PostgreSQL) beside raw baselines.

Cases, all on the same records (TOP_OF_BOOK, 64 bytes, from the seeded factory):

* ``kafka sink``: :class:`~wiresens.sinks.SinkRunner` + :class:`~wiresens.sinks.KafkaSink`
  copying an event log of ``records`` records to a fresh topic (idempotent producer,
  acks=all, key and two headers per message), timed from the first read to the last
  acknowledged batch;
* ``kafka baseline``: Kafka's own ``ProducerPerformance`` (kafka-producer-perf-test, from
  the same jars as the broker) sending ``records`` messages of the same size with
  acks=all, idempotence, and the sink's linger and batch size (no key, no headers);
* ``postgres sink``: SinkRunner + :class:`~wiresens.sinks.PostgresSink` (market data on)
  copying the same log into ``top_of_book`` (binary COPY into a temp table, INSERT ...
  ON CONFLICT DO NOTHING, offset upsert, one transaction per batch);
* ``postgres baseline``: one plain binary ``COPY`` of the same rows, already encoded,
  into an identical table (same primary key);
* the event-log write rate, from ``benchmarks.bench_eventlog`` when it exists.

Needs Kafka and PostgreSQL: ``WIRESENS_KAFKA_BOOTSTRAP`` and ``WIRESENS_PG_DSN`` (set by
``bash scripts/test-services.sh CMD``); when they are unset the benchmark starts its own
with ``scripts/services/up.sh`` and stops them at the end.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql

from benchmarks.common import (
    fmt_rate,
    machine_info,
    print_table,
    spread,
    started_services,
    write_json,
)
from wiresens.eventlog import EventLogReader, EventLogWriter
from wiresens.records import RecordKind
from wiresens.sinks import KafkaSink, PostgresSink, SinkRunner, copy_payload
from wiresens.testing.records import RecordFactory

__all__ = ["SMOKE", "main", "run_once"]

SMOKE: dict[str, Any] = {"records": 2000, "runs": 1}
"""Arguments of :func:`main` that finish in a few seconds (tests/benchmarks)."""
DEFAULT_RECORDS = 200_000
ENTRY_RECORDS = 500
KIND = RecordKind.TOP_OF_BOOK
LINGER_MS = 5
BATCH_BYTES = 1 << 20
TARGET_RATIO = 0.5
KIND_SIZE = 64


@contextmanager
def services() -> Iterator[tuple[str, str, str]]:
    """(Kafka bootstrap, PostgreSQL DSN, how they were found); starts them when unset."""
    kafka = os.environ.get("WIRESENS_KAFKA_BOOTSTRAP")
    dsn = os.environ.get("WIRESENS_PG_DSN")
    if kafka and dsn:
        yield kafka, dsn, "environment"
        return
    with started_services("sidecar", "postgres", "kafka") as found:
        yield found["WIRESENS_KAFKA_BOOTSTRAP"], found["WIRESENS_PG_DSN"], "started by up.sh"


def _write_log(directory: str, records: int) -> float:
    """Write the benchmark's log; return the seconds the appends took."""
    factory = RecordFactory(42, start_ns=time.time_ns())
    batches = []
    left = records
    while left > 0:
        n = min(ENTRY_RECORDS, left)
        batches.append(factory.records(KIND, n))
        left -= n
    t0 = time.perf_counter()
    with EventLogWriter(directory, "bench") as w:
        for b in batches:
            w.append_records(KIND, b)
    return time.perf_counter() - t0


async def _create_topic(bootstrap: str, topic: str) -> None:
    """Create ``topic`` (1 partition) so neither case times the broker's auto-creation."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # type: ignore[import-untyped]

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()


async def _kafka_sink(bootstrap: str, log: str, prefix: str) -> float:
    sink = KafkaSink(
        bootstrap, prefix=prefix, linger_ms=LINGER_MS, max_batch_bytes=BATCH_BYTES, timeout_s=60
    )
    await _create_topic(bootstrap, f"{prefix}.{KIND.name.lower()}")
    await sink.start()
    runner = SinkRunner(sink, log)
    t0 = time.perf_counter()
    await runner.run_until_caught_up()
    return time.perf_counter() - t0


def _kafka_baseline(bootstrap: str, records: int, topic: str) -> float:
    """Records/s that ProducerPerformance reports for ``records`` 64-byte messages."""
    from wiresens.testing.services import kafka_classpath

    java = shutil.which("java")
    if java is None:
        raise RuntimeError("java is not on PATH: install OpenJDK 17 (scripts/services/install.sh)")
    props = [
        f"bootstrap.servers={bootstrap}",
        "acks=all",
        "enable.idempotence=true",
        f"linger.ms={LINGER_MS}",
        f"batch.size={BATCH_BYTES}",
    ]
    cmd = [java, "-Xmx256m", "-cp", kafka_classpath(), "org.apache.kafka.tools.ProducerPerformance"]
    cmd += ["--topic", topic, "--num-records", str(records), "--record-size", str(KIND_SIZE)]
    cmd += ["--throughput", "-1", "--producer-props", *props]
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    found = re.findall(r"(\d+) records sent, ([\d.]+) records/sec", proc.stdout)
    if proc.returncode != 0 or not found:
        raise RuntimeError(
            f"ProducerPerformance failed:\n{proc.stdout[-1000:]}{proc.stderr[-2000:]}"
        )
    return float(found[-1][1])


async def _postgres_sink(dsn: str, log: str, schema: str) -> tuple[float, int]:
    sink = PostgresSink(dsn, node="bench", schema=schema, market_data=True)
    await sink.start()  # migrations before timing
    runner = SinkRunner(sink, log)  # the sink's own batch policy, as in a node
    t0 = time.perf_counter()
    await runner.run_until_caught_up()
    return time.perf_counter() - t0, runner.status()["records"]


async def _postgres_baseline(dsn: str, log: str, schema: str) -> float:
    """Seconds of one plain binary COPY of the same rows into a copy of the table."""
    entries = list(EventLogReader(log).entries())
    cols, payload, _ = copy_payload("bench", entries)
    ident = sql.Identifier(schema)
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute(
            sql.SQL("CREATE TABLE {}.plain_copy (LIKE {}.top_of_book INCLUDING ALL)").format(
                ident, ident
            )
        )
        col_list = sql.SQL(", ").join(map(sql.Identifier, cols))
        t0 = time.perf_counter()
        async with (
            conn.transaction(),
            conn.cursor() as cur,
            cur.copy(
                sql.SQL("COPY {}.plain_copy ({}) FROM STDIN (FORMAT BINARY)").format(
                    ident, col_list
                )
            ) as copy,
        ):
            await copy.write(payload)
        return time.perf_counter() - t0


async def _drop_schema(dsn: str, schema: str) -> None:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
        )


def run_once(bootstrap: str, dsn: str, records: int) -> dict[str, Any]:
    """One run of every case: records/s of each."""
    tag = f"bench{os.getpid()}_{time.monotonic_ns() % 10**9}"
    with tempfile.TemporaryDirectory(prefix="wiresens-bench-sidecar-") as tmp:
        log = os.path.join(tmp, "log")
        write_s = _write_log(log, records)
        kafka_s = asyncio.run(_kafka_sink(bootstrap, log, tag))
        asyncio.run(_create_topic(bootstrap, f"{tag}.baseline"))
        kafka_base = _kafka_baseline(bootstrap, records, f"{tag}.baseline")
        try:
            pg_s, pg_rows = asyncio.run(_postgres_sink(dsn, log, tag))
            if pg_rows != records:
                raise RuntimeError(f"the PostgreSQL sink wrote {pg_rows} of {records} records")
            pg_base_s = asyncio.run(_postgres_baseline(dsn, log, tag))
        finally:
            asyncio.run(_drop_schema(dsn, tag))
    return {
        "eventlog_append_per_s": records / write_s,
        "kafka_sink_per_s": records / kafka_s,
        "kafka_baseline_per_s": kafka_base,
        "postgres_sink_per_s": records / pg_s,
        "postgres_baseline_per_s": records / pg_base_s,
    }


def _eventlog_figures(records: int) -> dict[str, Any] | None:
    try:
        mod = importlib.import_module("benchmarks.bench_eventlog")
    except ImportError:
        return None
    doc = mod.main(records=records, quiet=True)
    rates: dict[str, Any] = doc["summary"]["rate_per_s"]
    return rates


def main(
    *,
    json_out: str | None = None,
    runs: int = 1,
    records: int | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """Run the sidecar benchmark ``runs`` times, print and return the figures.

    ``records`` is the number of records each case moves (default 200,000).
    """
    if runs < 1:
        raise ValueError(f"--runs must be at least 1, got {runs}")
    n = records or DEFAULT_RECORDS
    with services() as (bootstrap, dsn, how):
        all_runs = [run_once(bootstrap, dsn, n) for _ in range(runs)]
    figures = list(all_runs[0])
    summary = {f: spread(r[f] for r in all_runs) for f in figures}
    ratio = {
        "kafka": spread(r["kafka_sink_per_s"] / r["kafka_baseline_per_s"] for r in all_runs),
        "postgres": spread(
            r["postgres_sink_per_s"] / r["postgres_baseline_per_s"] for r in all_runs
        ),
    }
    doc: dict[str, Any] = {
        "benchmark": "sidecar",
        "machine": machine_info(),
        "config": {
            "records": n,
            "record_kind": KIND.name,
            "record_bytes": KIND_SIZE,
            "entry_records": ENTRY_RECORDS,
            "linger_ms": LINGER_MS,
            "batch_bytes": BATCH_BYTES,
            "runs": runs,
            "services": how,
        },
        "summary": {"rate_per_s": summary, "ratio_vs_baseline": ratio},
        "eventlog_rate_per_s": _eventlog_figures(n),
        "targets": [
            {
                "case": c,
                "ratio": ratio[c].median,
                "target": TARGET_RATIO,
                "met": ratio[c].median >= TARGET_RATIO,
            }
            for c in ratio
        ],
        "runs": all_runs,
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
    }
    if not quiet:
        _print(doc)
    write_json(doc, json_out)
    return doc


def _print(doc: dict[str, Any]) -> None:
    s = doc["summary"]["rate_per_s"]
    r = doc["summary"]["ratio_vs_baseline"]
    rows = [
        ["event log append", fmt_rate(s["eventlog_append_per_s"].median), "", ""],
        ["kafka sink", fmt_rate(s["kafka_sink_per_s"].median), "", ""],
        [
            "kafka baseline (ProducerPerformance)",
            fmt_rate(s["kafka_baseline_per_s"].median),
            r["kafka"].text("{:.2f}"),
            f">= {TARGET_RATIO}",
        ],
        ["postgres sink", fmt_rate(s["postgres_sink_per_s"].median), "", ""],
        [
            "postgres baseline (plain COPY)",
            fmt_rate(s["postgres_baseline_per_s"].median),
            r["postgres"].text("{:.2f}"),
            f">= {TARGET_RATIO}",
        ],
    ]
    cfg = doc["config"]
    print_table(
        f"Sidecar sinks ({cfg['records']:,} {cfg['record_kind']} records of "
        f"{cfg['record_bytes']} B, {cfg['runs']} run(s); services: {cfg['services']})",
        ["case", "records/s", "sink/baseline", "target"],
        rows,
    )
    ev = doc["eventlog_rate_per_s"]
    if ev:
        print(
            "event log write rate (bench_eventlog): "
            + ", ".join(f"{k} {fmt_rate(v['median'])}" for k, v in ev.items())
        )
    for t in doc["targets"]:
        print(f"{t['case']}: {t['ratio']:.2f} of baseline ({'met' if t['met'] else 'NOT met'})")
