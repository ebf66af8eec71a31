"""Event logs of known records, and independent readers of what the sinks delivered.

The expected side is read back from the log files with ``EventLogReader``; the
delivered side with Debian's ``kcat`` (Kafka) and ``psql`` (PostgreSQL), never with
the sinks' own client code.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from wiresens.eventlog import RAW_KIND, EventLogReader, EventLogWriter
from wiresens.records import RecordKind
from wiresens.sinks import SinkRunner
from wiresens.testing.records import RecordFactory

NODE = "node-t"
LOG_KINDS = (
    RecordKind.TOP_OF_BOOK,
    RecordKind.TRADE,
    RecordKind.ORDER_NEW,
    RecordKind.ORDER_CANCEL,
    RecordKind.EXECUTION_REPORT,
    RecordKind.POSITION_UPDATE,
    RecordKind.ACCOUNT_UPDATE,
    RecordKind.HEARTBEAT,
)


def factory(seed: int) -> RecordFactory:
    """A seeded factory whose records carry today's timestamps: the Kafka message time is
    the record's, and the broker's retention (7 days) deletes older messages at its next
    check, under the test's feet."""
    return RecordFactory(seed, start_ns=time.time_ns() - 60 * 10**9)


def records_of(factory: RecordFactory, kind: RecordKind, n: int) -> np.ndarray[Any, Any]:
    """``n`` records of ``kind``, with every numeric field of the kinds the factory leaves
    zero filled too, so a sink that drops or swaps a column is caught."""
    recs = factory.records(kind, n)
    rng = factory.rng
    if kind == RecordKind.POSITION_UPDATE:
        recs["policy"] = rng.integers(0, 60_000, n)
        recs["account"] = rng.integers(0, 60_000, n)
        recs["qty"] = rng.integers(-(10**12), 10**12, n)
        recs["avg_px"] = rng.integers(1, 10**13, n)
        recs["realized_pnl"] = rng.integers(-(10**12), 10**12, n)
    elif kind == RecordKind.ACCOUNT_UPDATE:
        recs["asset"] = rng.integers(0, 2**32, n, dtype=np.uint64)
        recs["account"] = rng.integers(0, 2**16, n)
        recs["free"] = rng.integers(0, 2**62, n)
        recs["locked"] = rng.integers(0, 2**62, n)
    elif kind == RecordKind.EXECUTION_REPORT:
        recs["commission"] = rng.integers(0, 10**8, n)
        recs["error_code"] = rng.integers(-2100, 0, n)
        recs["policy"] = rng.integers(0, 256, n)
    elif kind in (RecordKind.ORDER_NEW, RecordKind.ORDER_CANCEL):
        recs["account"] = rng.integers(0, 2**16, n)
        recs["stp"] = rng.integers(0, 4, n)
    recs["flags"] = rng.integers(0, 2**16, n)
    return recs


def append_mix(writer: EventLogWriter, factory: RecordFactory, rounds: int, per: int = 40) -> None:
    """``rounds`` rounds of one entry of each kind in LOG_KINDS (``per`` records each)
    and one raw message."""
    for r in range(rounds):
        for kind in LOG_KINDS:
            writer.append_records(kind, records_of(factory, kind, per))
        writer.append_raw(
            factory._clock, 3, f"sym{r % 3}@depth", b'{"e":"depthUpdate","r":%d}\n\x00' % r
        )
    writer.flush()


def write_log(directory: Path, rounds: int, *, seed: int = 0, per: int = 40) -> None:
    with EventLogWriter(directory, NODE, segment_bytes=1 << 20) as w:
        append_mix(w, factory(seed), rounds, per)


@dataclass(frozen=True)
class Rec:
    """One record (or raw message) as the log holds it."""

    kind: int
    offset: str
    idx: int
    data: bytes
    key: bytes
    ts_ms: int


def log_records(directory: Path, kinds: set[int] | None = None) -> list[Rec]:
    """Every record of the log, in log order, read back from its files."""
    from wiresens.eventlog.reader import record_times
    from wiresens.sinks import key_field

    out = []
    for e in EventLogReader(directory).entries():
        kind = RAW_KIND if e.raw is not None else e.kind
        if kinds is not None and kind not in kinds:
            continue
        off = e.offset.encode()
        if e.raw is not None:
            out.append(Rec(kind, off, 0, e.raw.data, e.raw.stream.encode(), e.raw.ts_recv // 10**6))
            continue
        assert e.records is not None
        keys = e.records[key_field(kind)].tolist()
        times = (record_times(e.records) // 10**6).tolist()
        for i in range(e.count):
            out.append(
                Rec(kind, off, i, e.records[i : i + 1].tobytes(), str(keys[i]).encode(), times[i])
            )
    return out


_KCAT_FORMAT = ("-f", "%p|%S|%k|%h|%T|%s\n")


@dataclass(frozen=True)
class KafkaMessage:
    partition: int
    key: bytes
    headers: dict[str, str]
    ts_ms: int
    value: bytes


def kcat_messages(bootstrap: str, topic: str) -> list[KafkaMessage]:
    """Every message of ``topic``, read with kcat (partition by partition, in order)."""
    kcat = shutil.which("kcat")
    if kcat is None:
        pytest.skip("kcat is not installed (apt-get install kcat); it is the independent reader")
    proc = subprocess.run(
        [kcat, "-b", bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-q", *_KCAT_FORMAT],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    data = proc.stdout
    out = []
    pos = 0
    while pos < len(data):
        fields = []
        for _ in range(5):
            bar = data.index(b"|", pos)
            fields.append(data[pos:bar])
            pos = bar + 1
        size = int(fields[1])
        value = data[pos : pos + size]
        pos += size
        assert data[pos : pos + 1] == b"\n"
        pos += 1
        headers = dict(
            h.split("=", 1) for h in fields[3].decode().split(",") if h
        )  # kcat prints name=value,name=value
        out.append(KafkaMessage(int(fields[0]), fields[2], headers, int(fields[4]), value))
    return out


def psql(dsn: str, query: str) -> str:
    """Run ``query`` with psql and return its unaligned, tuples-only output."""
    exe = shutil.which("psql")
    if exe is None:
        pytest.skip("psql is not installed (apt-get install postgresql-client)")
    proc = subprocess.run(
        [exe, dsn, "-X", "-v", "ON_ERROR_STOP=1", "-Atc", query],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


async def wait_for(
    cond: Callable[[], bool], timeout: float, what: str, *, runner: SinkRunner | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            status = runner.status() if runner is not None else None
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; {status}")
        await asyncio.sleep(0.05)


def caught_up(runner: SinkRunner, directory: Path) -> bool:
    st = runner.status()
    end = EventLogReader(directory).end_offset()
    return bool(st["caught_up"]) and st["committed"] == end.encode()


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> str:
    """A schema / topic-prefix name unique to this test run."""
    base = "".join(c if c.isalnum() else "_" for c in request.node.name.lower())[:30]
    return f"t{os.getpid()}_{base}_{time.monotonic_ns() % 10**6}"
