"""The PostgreSQL sink against a real server, checked with psql."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import psycopg

from wiresens.eventlog import EventLogReader, EventLogWriter
from wiresens.records import DTYPES, RecordKind
from wiresens.sinks import MARKET_TABLES, TABLES, BatchPolicy, PostgresSink, SinkRunner
from wiresens.sinks.postgres import apply_migrations, migrations
from wiresens.testing.services import Service

from .conftest import NODE, append_mix, caught_up, factory, psql, wait_for, write_log


def _fields(kind: RecordKind) -> list[str]:
    return [n for n in DTYPES[kind].names or () if not n.startswith("_")]


def _expected_rows(log: Path, kinds: tuple[RecordKind, ...]) -> list[tuple[int, ...]]:
    """(log_segment, log_position, idx, *fields) of every record of ``kinds``, in log order."""
    fields = _fields(kinds[0])
    rows: list[tuple[int, ...]] = []
    for e in EventLogReader(log).entries(kinds={int(k) for k in kinds}):
        assert e.records is not None
        cols = [e.records[f].tolist() for f in fields]
        for i in range(e.count):
            rows.append((e.offset.segment, e.offset.position, i, *(c[i] for c in cols)))
    return rows


def _table_rows(dsn: str, schema: str, table: str, fields: list[str]) -> list[tuple[int, ...]]:
    cols = ", ".join(["log_segment", "log_position", "idx", *fields])
    text = psql(
        dsn,
        f"COPY (SELECT {cols} FROM {schema}.{table} WHERE node = '{NODE}' "
        "ORDER BY log_segment, log_position, idx) TO STDOUT WITH (FORMAT csv)",
    )
    return [tuple(int(x) for x in line.split(",")) for line in text.splitlines() if line]


def _check_tables(dsn: str, schema: str, log: Path, tables: tuple[Any, ...]) -> int:
    total = 0
    for t in tables:
        want = _expected_rows(log, t.kinds)
        assert want, t.name
        count = int(psql(dsn, f"SELECT count(*) FROM {schema}.{t.name}"))
        assert count == len(want), t.name
        assert _table_rows(dsn, schema, t.name, _fields(t.kinds[0])) == want, t.name
        total += count
    return total


def test_rows_match_the_log(postgres_dsn: str, tmp_path: Path, unique_name: str) -> None:
    log = tmp_path / "log"
    write_log(log, rounds=10)
    sink = PostgresSink(postgres_dsn, node=NODE, schema=unique_name, market_data=True)
    runner = SinkRunner(sink, log, policy=BatchPolicy(max_records=500))
    asyncio.run(runner.run_until_caught_up())
    st = runner.status()
    assert st["caught_up"] and st["batches"] > 1 and st["retries"] == 0, st
    total = _check_tables(postgres_dsn, unique_name, log, TABLES + MARKET_TABLES)
    assert total == st["records"]
    # Heartbeats have no table: the runner never even handed them to the sink.
    assert RecordKind.HEARTBEAT not in sink.kinds
    stored = psql(
        postgres_dsn,
        f"SELECT log_segment || ':' || log_position FROM {unique_name}.sink_offsets "
        f"WHERE node = '{NODE}' AND sink = 'postgres'",
    )
    seg, pos = (int(x) for x in stored.split(":"))
    assert (seg, pos) <= tuple(EventLogReader(log).end_offset())
    assert psql(postgres_dsn, f"SELECT version FROM {unique_name}.schema_version") == "1"


def test_market_data_is_off_by_default(postgres_dsn: str, tmp_path: Path, unique_name: str) -> None:
    log = tmp_path / "log"
    write_log(log, rounds=2)
    runner = SinkRunner(PostgresSink(postgres_dsn, node=NODE, schema=unique_name), log)
    asyncio.run(runner.run_until_caught_up())
    _check_tables(postgres_dsn, unique_name, log, TABLES)
    for t in MARKET_TABLES:
        assert psql(postgres_dsn, f"SELECT count(*) FROM {unique_name}.{t.name}") == "0"


def test_a_replayed_batch_inserts_nothing(
    postgres_dsn: str, tmp_path: Path, unique_name: str
) -> None:
    log = tmp_path / "log"
    write_log(log, rounds=3)
    entries = list(EventLogReader(log).entries())

    async def replays() -> list[int]:
        sink = PostgresSink(postgres_dsn, node=NODE, schema=unique_name)
        await sink.start()
        inserted = []
        try:
            await sink.write(entries)
            inserted.append(sink.rows)
            assert (sink.direct_batches, sink.merged_batches) == (1, 0)
            # A crash replays the tail: it starts before the stored offset.
            await sink.write(entries[len(entries) // 2 :])
            assert await sink.committed_offset() == entries[-1].next_offset
            assert (sink.direct_batches, sink.merged_batches) == (1, 1)
            # The offset row lost (a restore, a hand edit): the direct COPY hits the keys
            # and the batch falls back to ON CONFLICT DO NOTHING.
            psql(postgres_dsn, f"DELETE FROM {unique_name}.sink_offsets")
            await sink.write(entries)
            assert (sink.direct_batches, sink.merged_batches) == (1, 2)
            inserted.append(sink.rows - inserted[0])
            return inserted
        finally:
            await sink.close()

    first, again = asyncio.run(replays())
    assert first > 0 and again == 0
    _check_tables(postgres_dsn, unique_name, log, TABLES)


def test_migrations_apply_once_and_match_the_records(postgres_dsn: str, unique_name: str) -> None:
    async def run() -> list[list[int]]:
        async with await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True) as conn:
            return [await apply_migrations(conn, unique_name) for _ in range(2)]

    first, again = asyncio.run(run())
    assert first == [v for v, _, _ in migrations()] and again == []
    for t in TABLES + MARKET_TABLES:
        cols = psql(
            postgres_dsn,
            "SELECT string_agg(column_name, ',' ORDER BY ordinal_position) FROM "
            f"information_schema.columns WHERE table_schema = '{unique_name}' "
            f"AND table_name = '{t.name}'",
        ).split(",")
        assert cols == ["node", "log_segment", "log_position", "idx", *_fields(t.kinds[0])]


def test_down_at_start_then_catch_up(
    postgres_service: Service, tmp_path: Path, unique_name: str
) -> None:
    log = tmp_path / "log"
    fac = factory(3)
    writer = EventLogWriter(log, NODE)
    append_mix(writer, fac, rounds=3)
    postgres_service.stop()
    sink = PostgresSink(postgres_service.address, node=NODE, schema=unique_name)
    runner = SinkRunner(sink, log, policy=BatchPolicy(backoff_max_s=1.0))

    async def scenario() -> None:
        task = asyncio.create_task(runner.run())
        await wait_for(lambda: runner.status()["retries"] >= 3, 30, "retries", runner=runner)
        st = runner.status()
        assert st["state"] == "connecting" or st["state"] == "retrying"
        assert not st["connected"] and st["committed"] is None and st["lag_bytes"] > 0
        # 3 rounds of 4 table-bound kinds (orders: ORDER_NEW and ORDER_CANCEL) = 5 entries
        assert st["lag_entries"] == 3 * 5 and st["lag_entries_exact"]
        assert "PostgreSQL" in st["last_error"] and "retries" in st["last_error"]
        append_mix(writer, fac, rounds=2)
        await asyncio.to_thread(postgres_service.start)
        await wait_for(lambda: caught_up(runner, log), 60, "the catch-up", runner=runner)
        st = runner.status()
        assert st["connected"] and st["retries"] == 0
        assert st["lag_entries"] == 0 and st["lag_bytes"] == 0
        runner.stop()
        await task

    try:
        asyncio.run(scenario())
    finally:
        writer.close()
    assert runner.status()["total_retries"] >= 3
    _check_tables(postgres_service.address, unique_name, log, TABLES)


def test_outage_mid_stream_reconnects(
    postgres_service: Service, tmp_path: Path, unique_name: str
) -> None:
    log = tmp_path / "log"
    fac = factory(4)
    writer = EventLogWriter(log, NODE)
    append_mix(writer, fac, rounds=2)
    sink = PostgresSink(postgres_service.address, node=NODE, schema=unique_name)
    runner = SinkRunner(sink, log, policy=BatchPolicy(backoff_max_s=1.0))

    async def scenario() -> None:
        task = asyncio.create_task(runner.run())
        await wait_for(lambda: caught_up(runner, log), 30, "the first catch-up", runner=runner)
        await asyncio.to_thread(postgres_service.stop)
        append_mix(writer, fac, rounds=2)
        await wait_for(lambda: runner.status()["retries"] >= 2, 30, "retries", runner=runner)
        assert runner.status()["state"] == "retrying" and runner.status()["pending_entries"] > 0
        await asyncio.to_thread(postgres_service.start)
        await wait_for(lambda: caught_up(runner, log), 60, "the catch-up", runner=runner)
        runner.stop()
        await task

    try:
        asyncio.run(scenario())
    finally:
        writer.close()
    _check_tables(postgres_service.address, unique_name, log, TABLES)


def test_corrupt_entry_fails_the_runner_visibly(
    postgres_dsn: str, tmp_path: Path, unique_name: str
) -> None:
    import pytest

    from wiresens.errors import CorruptEntryError

    log = tmp_path / "log"
    write_log(log, rounds=2)
    entries = list(EventLogReader(log).entries())
    seg = EventLogReader(log).segments()[0].path
    with open(seg, "r+b") as f:  # flip a payload byte of the third entry
        f.seek(entries[2].offset.position + 48)
        b = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([b[0] ^ 0xFF]))
    runner = SinkRunner(PostgresSink(postgres_dsn, node=NODE, schema=unique_name), log)
    with pytest.raises(CorruptEntryError):
        asyncio.run(runner.run())
    st = runner.status()
    assert st["state"] == "failed" and "skip_corrupt" in st["last_error"]
    skipping = SinkRunner(
        PostgresSink(postgres_dsn, node=NODE, schema=unique_name), log, skip_corrupt=True
    )
    asyncio.run(skipping.run_until_caught_up())
    assert skipping.status()["caught_up"] and skipping.status()["corrupt_skipped"] == 1


def test_extreme_field_values_survive(postgres_dsn: str, tmp_path: Path, unique_name: str) -> None:
    """Every field at its type's minimum, then maximum: the column types hold them all."""
    import numpy as np

    from wiresens.records import new_record

    log = tmp_path / "log"
    with EventLogWriter(log, NODE) as w:
        for t in TABLES:
            kind = t.kinds[0]
            recs = new_record(kind, 2)
            for name in _fields(kind):
                info = np.iinfo(DTYPES[kind].fields[name][0])  # type: ignore[index]
                recs[name] = [info.min, info.max]
            recs["ts_recv"] = [1, 2]  # a log timestamp the writer accepts
            w.append_records(kind, recs)
    runner = SinkRunner(PostgresSink(postgres_dsn, node=NODE, schema=unique_name), log)
    asyncio.run(runner.run_until_caught_up())
    _check_tables(postgres_dsn, unique_name, log, TABLES)
