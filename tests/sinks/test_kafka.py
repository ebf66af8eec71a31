"""The Kafka sink against a real broker, checked with kcat."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import pytest

from wiresens.eventlog import RAW_KIND, EventLogWriter
from wiresens.records import RecordKind
from wiresens.sinks import BatchPolicy, KafkaSink, SinkRunner, topic_for
from wiresens.testing.services import Service

from .conftest import (
    LOG_KINDS,
    NODE,
    append_mix,
    caught_up,
    factory,
    kcat_messages,
    log_records,
    wait_for,
    write_log,
)


def _all_topics(prefix: str) -> list[tuple[int, str]]:
    return [(int(k), topic_for(prefix, int(k))) for k in LOG_KINDS] + [
        (RAW_KIND, topic_for(prefix, RAW_KIND))
    ]


def test_topic_names() -> None:
    assert topic_for("wiresens", RecordKind.TOP_OF_BOOK) == "wiresens.top_of_book"
    assert topic_for("wiresens", RecordKind.EXECUTION_REPORT) == "wiresens.execution_report"
    assert topic_for("x", RAW_KIND) == "x.raw"


def test_every_record_arrives_byte_for_byte(
    kafka_bootstrap: str, tmp_path: Path, unique_name: str
) -> None:
    log = tmp_path / "log"
    write_log(log, rounds=12)
    sink = KafkaSink(kafka_bootstrap, prefix=unique_name)
    runner = SinkRunner(sink, log, policy=BatchPolicy(max_records=700))
    asyncio.run(runner.run_until_caught_up())
    st = runner.status()
    assert st["caught_up"] and st["retries"] == 0 and st["batches"] > 1, st

    expected = log_records(log)
    got_total = 0
    for kind, topic in _all_topics(unique_name):
        want = [r for r in expected if r.kind == kind]
        got = kcat_messages(kafka_bootstrap, topic)
        assert len(got) == len(want), topic
        got_total += len(got)
        # One partition: Kafka order is log order.
        for w, g in zip(want, got, strict=True):
            assert g.value == w.data, (topic, w.offset, w.idx)
            assert g.key == w.key
            assert g.ts_ms == w.ts_ms
            assert g.headers["offset"] == w.offset and int(g.headers["idx"]) == w.idx
        if kind == RAW_KIND:
            assert all(g.headers["source"] == "3" for g in got)
    assert got_total == len(expected) == st["records"]
    assert (log / "sinks" / "kafka.offset").read_text().strip() == st["committed"]


def test_keys_pick_partitions_and_keep_order(
    kafka_bootstrap: str, tmp_path: Path, unique_name: str
) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # type: ignore[import-untyped]

    topic = topic_for(unique_name, RecordKind.EXECUTION_REPORT)

    async def create() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
        finally:
            await admin.close()

    asyncio.run(create())
    log = tmp_path / "log"
    with EventLogWriter(log, NODE) as w:
        f = factory(5)
        for _ in range(6):
            recs = f.records(RecordKind.EXECUTION_REPORT, 50)
            recs["cl_ord_id"] = recs["cl_ord_id"] % 17  # several reports per order
            w.append_records(RecordKind.EXECUTION_REPORT, recs)
    runner = SinkRunner(KafkaSink(kafka_bootstrap, prefix=unique_name), log)
    asyncio.run(runner.run_until_caught_up())
    got = kcat_messages(kafka_bootstrap, topic)
    want = log_records(log)
    assert sorted(g.value for g in got) == sorted(w.data for w in want)
    partition_of: dict[bytes, int] = {}
    for g in got:
        assert partition_of.setdefault(g.key, g.partition) == g.partition, g.key
    assert len(set(partition_of.values())) > 1  # 17 keys over 3 partitions
    for p in set(partition_of.values()):
        # Within a partition, log order: (offset, idx) ascending.
        seq = [(g.headers["offset"], int(g.headers["idx"])) for g in got if g.partition == p]
        assert seq == sorted(seq)


def test_outage_then_catch_up(kafka_service: Service, tmp_path: Path, unique_name: str) -> None:
    """Kafka stops for ~10 s while the log grows: the sink retries, reports it, and once
    the broker is back delivers everything (duplicates allowed, nothing lost)."""
    log = tmp_path / "log"
    fac = factory(7)
    writer = EventLogWriter(log, NODE)
    append_mix(writer, fac, rounds=3)
    sink = KafkaSink(kafka_service.address, prefix=unique_name, timeout_s=3.0)
    runner = SinkRunner(sink, log, policy=BatchPolicy(backoff_max_s=2.0))

    async def scenario() -> None:
        task = asyncio.create_task(runner.run())
        await wait_for(lambda: caught_up(runner, log), 60, "the first catch-up", runner=runner)
        await asyncio.to_thread(kafka_service.stop)
        stopped = time.monotonic()
        while time.monotonic() - stopped < 10:
            append_mix(writer, fac, rounds=1)
            await asyncio.sleep(0.5)
        await wait_for(lambda: runner.status()["retries"] > 0, 30, "a failed write", runner=runner)
        st = runner.status()
        assert not st["connected"] and st["state"] == "retrying"
        assert "Kafka" in st["last_error"] and st["lag_bytes"] > 0
        await asyncio.to_thread(kafka_service.start)
        append_mix(writer, fac, rounds=2)
        await wait_for(lambda: caught_up(runner, log), 90, "the catch-up", runner=runner)
        assert runner.status()["retries"] == 0 and runner.status()["connected"]
        runner.stop()
        await task

    try:
        asyncio.run(scenario())
    finally:
        writer.close()
    expected = log_records(log)
    seen: Counter[tuple[str, int, int]] = Counter()
    for kind, topic in _all_topics(unique_name):
        want = {(w.offset, w.idx): w.data for w in expected if w.kind == kind}
        for g in kcat_messages(kafka_service.address, topic):
            key = (g.headers["offset"], int(g.headers["idx"]))
            assert want[key] == g.value
            seen[(key[0], key[1], kind)] += 1
    assert len(seen) == len(expected)  # every record, counted once per distinct (offset, idx)
    assert runner.status()["total_retries"] > 0


@pytest.mark.parametrize("kinds", [{int(RecordKind.EXECUTION_REPORT)}])
def test_kinds_filter_commits_past_other_entries(
    kafka_bootstrap: str, tmp_path: Path, unique_name: str, kinds: set[int]
) -> None:
    log = tmp_path / "log"
    write_log(log, rounds=2)
    runner = SinkRunner(KafkaSink(kafka_bootstrap, prefix=unique_name, kinds=kinds), log)
    asyncio.run(runner.run_until_caught_up())
    assert caught_up(runner, log)
    want = log_records(log, kinds)
    assert runner.status()["records"] == len(want)
    got = kcat_messages(kafka_bootstrap, topic_for(unique_name, RecordKind.EXECUTION_REPORT))
    assert [g.value for g in got] == [w.data for w in want]


def test_drain_gives_up_at_its_bound_when_kafka_is_unreachable(tmp_path: Path) -> None:
    """Nothing listens at the address: drain() returns False after its bound, the runner
    has stopped, and no offset was committed (nothing was acknowledged)."""
    import socket

    with socket.socket() as s:  # a free port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path / "log"
    write_log(log, rounds=1)
    sink = KafkaSink(f"127.0.0.1:{port}", prefix="unreachable", timeout_s=1.0)
    runner = SinkRunner(sink, log, policy=BatchPolicy(backoff_min_s=30.0, backoff_max_s=30.0))

    async def scenario() -> bool:
        task = asyncio.create_task(runner.run())
        await wait_for(lambda: runner.status()["retries"] > 0, 30, "a failed connect")
        st = runner.status()
        assert st["state"] == "retrying" and not st["caught_up"] and not st["connected"]
        drained = await runner.drain(1.0)
        assert await runner.wait_finished(10.0)
        await task
        return drained

    assert asyncio.run(scenario()) is False
    st = runner.status()
    # The drain retried at once instead of sleeping out the 30 s backoff.
    assert st["state"] == "stopped" and st["total_retries"] >= 2 and not st["drained"]
    assert st["committed"] is None and not (log / "sinks" / "kafka.offset").exists()


_SINK_ACTOR = """
import signal, sys
from wiresens.actors.sink import SinkActor

stopping = []
signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
log, bootstrap, prefix = sys.argv[1:]
actor = SinkActor(
    sink="kafka",
    event_log_dir=log,
    node="node-t",
    options={"bootstrap_servers": [bootstrap], "topic_prefix": prefix},
    backoff_s=(60.0, 60.0),
)
actor.run(lambda: bool(stopping), None, "block")
"""


@pytest.mark.slow
def test_sink_actor_stopped_during_a_retry_wait_copies_everything(
    kafka_service: Service, tmp_path: Path, unique_name: str
) -> None:
    """Regression: a node stopped soon after a Kafka outage left Kafka short of what came
    after the outage. Its sink actor was sleeping out a retry backoff (up to 10 s after
    a 30 s outage) longer than its 7 s drain on stop, so it exited without writing.

    Here the retry wait (60 s) certainly outlasts the drain: the broker is down when the
    actor starts, comes back, and the actor is stopped. The drain must retry at once and
    copy the whole log, including entries the "sidecar" appends after the stop signal
    and before it closes the log."""
    import json
    import signal
    import subprocess
    import sys

    log = tmp_path / "log"
    fac = factory(11)
    writer = EventLogWriter(log, NODE)  # stands for the sidecar: holds the log open
    proc = None
    try:
        append_mix(writer, fac, rounds=3)
        status = log / "sinks" / "kafka.status.json"
        kafka_service.stop()
        try:
            proc = subprocess.Popen(
                [sys.executable, "-c", _SINK_ACTOR, str(log), kafka_service.address, unique_name]
            )
            deadline = time.monotonic() + 60
            while not (status.exists() and json.loads(status.read_text())["retries"] > 0):
                assert time.monotonic() < deadline, "the sink actor never reported a failure"
                assert proc.poll() is None, f"the sink actor exited with {proc.returncode}"
                time.sleep(0.1)
        finally:
            kafka_service.start()
        append_mix(writer, fac, rounds=1)
        proc.send_signal(signal.SIGTERM)  # as the master stops the sidecar group
        time.sleep(0.5)
        append_mix(writer, fac, rounds=1)  # the sidecar's last taps, then it closes the log
    finally:
        writer.close()
        if proc is not None:
            try:
                proc.wait(30)
            finally:
                proc.kill()
    assert proc.returncode == 0
    st = json.loads(status.read_text())
    expected = log_records(log)
    seen: set[tuple[str, int, int]] = set()
    for kind, topic in _all_topics(unique_name):
        want = {(w.offset, w.idx): w.data for w in expected if w.kind == kind}
        for g in kcat_messages(kafka_service.address, topic):
            key = (g.headers["offset"], int(g.headers["idx"]))
            assert want[key] == g.value
            seen.add((key[0], key[1], kind))
    assert len(seen) == len(expected), f"{len(expected) - len(seen)} records missing; {st}"
    assert st["drained"] and st["committed"] == (log / "sinks" / "kafka.offset").read_text().strip()
