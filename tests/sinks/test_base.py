"""The offset file, the lag figure and the sink protocols (no services needed)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wiresens.eventlog import Entry, EventLogOffset, EventLogReader, EventLogWriter
from wiresens.records import RecordKind
from wiresens.sinks import (
    FileOffsetStore,
    KafkaSink,
    OffsetKeepingSink,
    PostgresSink,
    Sink,
    lag_bytes,
)

from .conftest import NODE, factory, records_of


def test_offset_file_round_trip_and_atomic_replace(tmp_path: Path) -> None:
    store = FileOffsetStore(tmp_path, "kafka")
    assert store.load() is None
    store.save(EventLogOffset(3, 4096))
    store.save(EventLogOffset(12, 1234))
    assert store.path == str(tmp_path / "sinks" / "kafka.offset")
    assert (tmp_path / "sinks" / "kafka.offset").read_text() == "000012:0000001234\n"
    assert store.load() == EventLogOffset(12, 1234)
    assert os.listdir(tmp_path / "sinks") == ["kafka.offset"]  # no temp file left


@given(st.integers(0, 10**7), st.integers(0, 10**12))
def test_offset_file_keeps_any_offset(segment: int, position: int) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        store = FileOffsetStore(d, "s")
        store.save(EventLogOffset(segment, position))
        assert FileOffsetStore(d, "s").load() == EventLogOffset(segment, position)


def test_damaged_offset_file_names_the_path_and_the_fix(tmp_path: Path) -> None:
    store = FileOffsetStore(tmp_path, "pg")
    os.makedirs(tmp_path / "sinks")
    (tmp_path / "sinks" / "pg.offset").write_text("garbage")
    with pytest.raises(ValueError, match=r"pg\.offset.*delete the file"):
        store.load()


@pytest.mark.parametrize("name", ["", "a/b", ".hidden"])
def test_sink_names_that_cannot_name_a_file(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="cannot name an offset file"):
        FileOffsetStore(tmp_path, name)


def test_lag_bytes_counts_every_segment_past_the_offset(tmp_path: Path) -> None:
    f = factory(1)
    with EventLogWriter(tmp_path, NODE, segment_bytes=64 * 1024) as w:
        for _ in range(40):
            w.append_records(
                RecordKind.EXECUTION_REPORT, records_of(f, RecordKind.EXECUTION_REPORT, 30)
            )
    reader = EventLogReader(tmp_path)
    segs = reader.segments()
    assert len(segs) > 2
    total = sum(s.size for s in segs)
    assert lag_bytes(str(tmp_path), None) == total
    assert lag_bytes(str(tmp_path), reader.end_offset()) == 0
    entries = list(reader.entries())
    mid = entries[len(entries) // 2].offset
    behind = sum(s.size for s in segs if s.segment > mid.segment)
    behind += next(s.size for s in segs if s.segment == mid.segment) - mid.position
    assert lag_bytes(str(tmp_path), mid) == behind


def test_sinks_implement_the_protocols() -> None:
    kafka = KafkaSink("127.0.0.1:1")
    pg = PostgresSink("postgresql://127.0.0.1:1/x", node=NODE)
    assert isinstance(kafka, Sink) and isinstance(pg, Sink)
    assert isinstance(pg, OffsetKeepingSink) and not isinstance(kafka, OffsetKeepingSink)
    assert RecordKind.TRADE not in pg.kinds
    assert RecordKind.TRADE in PostgresSink("x", node=NODE, market_data=True).kinds


def test_unreachable_services_raise_retriable_errors_without_secrets() -> None:
    import asyncio

    from wiresens.errors import ServiceUnavailableError

    # Port 1 on loopback: nothing listens, the connection is refused at once.
    pg = PostgresSink("postgresql://user:s3cret@127.0.0.1:1/db", node=NODE)
    with pytest.raises(ServiceUnavailableError) as pg_err:
        asyncio.run(pg.start())
    assert pg_err.value.retriable and "s3cret" not in str(pg_err.value)
    assert "PostgreSQL" in str(pg_err.value) and "127.0.0.1" in str(pg_err.value)
    kafka = KafkaSink("127.0.0.1:1", timeout_s=5)
    with pytest.raises(ServiceUnavailableError, match=r"Kafka at 127\.0\.0\.1:1"):
        asyncio.run(kafka.start())


class _ListSink:
    """A sink that keeps what it is given (the runner's contract, no service behind it)."""

    name = "list"

    def __init__(self) -> None:
        self.entries: list[str] = []
        self.then: Callable[[], None] = lambda: None

    async def start(self) -> None:
        pass

    async def write(self, entries: Sequence[Entry]) -> None:
        self.entries.extend(e.offset.encode() for e in entries)
        self.then()

    async def close(self) -> None:
        pass


@settings(max_examples=40, deadline=None)
@given(
    steps=st.lists(st.tuples(st.integers(0, 30), st.integers(0, 4)), min_size=1, max_size=8),
    kinds=st.sampled_from([None, (int(RecordKind.EXECUTION_REPORT),)]),
    batch=st.integers(1, 12),
)
def test_lag_entries_equals_a_fresh_count_as_the_log_grows_and_commits(
    steps: list[tuple[int, int]], kinds: tuple[int, ...] | None, batch: int
) -> None:
    """The incremental count in status() always equals counting the log afresh, as the
    log grows and the runner commits some batches (0 to 3, or 4: all) between looks."""
    import asyncio
    import tempfile

    from wiresens.sinks import BatchPolicy, SinkRunner

    f = factory(3)
    with tempfile.TemporaryDirectory() as d, EventLogWriter(d, NODE) as w:
        sink = _ListSink()
        runner = SinkRunner(sink, d, kinds=kinds, policy=BatchPolicy(max_entries=batch))
        loop = asyncio.new_event_loop()
        try:
            for appended, writes in steps:
                for i in range(appended):
                    kind = (RecordKind.EXECUTION_REPORT, RecordKind.TRADE)[i % 2]
                    w.append_records(kind, records_of(f, kind, 1 + i % 3))
                w.flush()
                if writes:
                    left = [writes if writes < 4 else -1]  # -1: never stop, copy all

                    def then(left: list[int] = left) -> None:
                        left[0] -= 1
                        if left[0] == 0:
                            runner.stop()  # a partial copy: commit some batches only

                    sink.then = then
                    runner._stopping.clear()
                    loop.run_until_complete(runner._loop(until_caught_up=True))
                fresh = sum(1 for _ in EventLogReader(d).entries(runner.committed, kinds=kinds))
                assert runner.status()["lag_entries"] == fresh
        finally:
            loop.close()


def test_a_runner_without_a_policy_takes_the_sinks_own(tmp_path: Path) -> None:
    from wiresens.sinks import BatchPolicy, SinkRunner

    pg = SinkRunner(PostgresSink("postgresql://127.0.0.1:1/x", node=NODE), tmp_path)
    assert pg.policy is PostgresSink.batch_policy and pg.policy.max_records == 20_000
    assert SinkRunner(KafkaSink("127.0.0.1:1"), tmp_path).policy == BatchPolicy()
    mine = BatchPolicy(max_records=7)
    assert SinkRunner(PostgresSink("x", node=NODE), tmp_path, policy=mine).policy is mine
