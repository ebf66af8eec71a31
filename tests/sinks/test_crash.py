"""A sink process killed with SIGKILL mid-stream resumes from its committed offset."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from wiresens.eventlog import EventLogOffset, EventLogReader, EventLogWriter
from wiresens.sinks import TABLES, topic_for

from .conftest import LOG_KINDS, NODE, append_mix, factory, kcat_messages, log_records, psql


def _sink_cmd(sink: str, address: str, log: Path, name: str, *extra: str) -> list[str]:
    where = ["--bootstrap", address, "--prefix", name] if sink == "kafka" else ["--dsn", address]
    return [
        sys.executable,
        "-m",
        "wiresens.sinks",
        sink,
        str(log),
        *where,
        "--node",
        NODE,
        "--schema",
        name,
        "--batch-records",
        "200",
        *extra,
    ]


@pytest.mark.parametrize("sink", ["postgres", "kafka"])
def test_sigkill_mid_stream_then_resume(
    sink: str, request: pytest.FixtureRequest, tmp_path: Path, unique_name: str
) -> None:
    address = request.getfixturevalue("postgres_dsn" if sink == "postgres" else "kafka_bootstrap")
    log = tmp_path / "log"
    writer = EventLogWriter(log, NODE)
    fac = factory(11)
    append_mix(writer, fac, rounds=5)
    stop = threading.Event()

    def keep_writing() -> None:
        while not stop.is_set():
            append_mix(writer, fac, rounds=1, per=20)
            time.sleep(0.01)

    feeder = threading.Thread(target=keep_writing)
    feeder.start()
    offset_file = log / "sinks" / f"{sink}.offset"
    proc = subprocess.Popen(
        _sink_cmd(sink, address, log, unique_name),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        # Kill it once it has committed a few batches, while the log keeps growing.
        while time.monotonic() < deadline and proc.poll() is None:
            if offset_file.exists():
                off = EventLogOffset.decode(offset_file.read_text())
                if off.position > 200_000:
                    break
            time.sleep(0.02)
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        killed_at = EventLogOffset.decode(offset_file.read_text())
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        stop.set()
        feeder.join()
        writer.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()
    end = EventLogReader(log).end_offset()
    assert killed_at < end  # it really was mid-stream
    done = subprocess.run(
        _sink_cmd(sink, address, log, unique_name, "--until-caught-up"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert EventLogOffset.decode(offset_file.read_text()) == end

    if sink == "postgres":
        for t in TABLES:
            want = [(r.offset, r.idx) for r in log_records(log, {int(k) for k in t.kinds})]
            got = psql(
                address,
                f"SELECT count(*), count(DISTINCT (log_segment, log_position, idx)) "
                f"FROM {unique_name}.{t.name}",
            )
            assert got == f"{len(want)}|{len(want)}", t.name
    else:
        expected = log_records(log)
        seen: Counter[tuple[str, int, int]] = Counter()
        per_topic = {}
        for kind in [int(k) for k in LOG_KINDS] + [0]:
            got = kcat_messages(address, topic_for(unique_name, kind))
            per_topic[kind] = (len(got), sum(1 for r in expected if r.kind == kind))
            for g in got:
                seen[(g.headers["offset"], int(g.headers["idx"]), kind)] += 1
        # At-least-once: every record at least once; the batch in flight at the kill
        # may arrive twice.
        missing = sorted({(r.offset, r.idx, r.kind) for r in expected} - set(seen))
        assert not missing, (len(missing), missing[:3], killed_at, per_topic)
        assert {(r.offset, r.idx, r.kind) for r in expected} == set(seen)
        duplicates = sum(seen.values()) - len(seen)
        assert duplicates <= 200 * 2  # at most the (batch-records=200) batches in flight
