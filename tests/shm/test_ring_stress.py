"""Producer and consumer in separate processes: millions of self-checking records.

Each record carries its sequence number, payload words derived from it and a
checksum (``wiresens.testing.SEQ_RECORD``); the consumer proves that none is lost,
duplicated or torn. Run once with spinning ends and once with a consumer that
sleeps on its doorbell (``BlockIdle``).
"""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from wiresens.shm import Ring
from wiresens.testing import SEQ_RECORD, check_seq_records, fill_seq_records

TOTAL = 5_000_000
SINGLE = 200_000  # one record per call (try_write / claim+commit, try_read) before the batches


@pytest.fixture
def workers(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    import ring_workers

    return ring_workers


def test_checker_detects_gap_duplicate_and_torn_record() -> None:
    """The stress tests are only as strong as this check."""
    recs = np.zeros(100, SEQ_RECORD)
    fill_seq_records(recs, 1000)
    assert check_seq_records(recs, 1000) is None
    gap = np.delete(recs, 40)
    assert "expected 1040" in (check_seq_records(gap, 1000) or "")
    dup = np.insert(recs, 41, recs[40])
    assert "expected 1041" in (check_seq_records(dup, 1000) or "")
    for field, row in (("checksum", 7), ("payload", 8)):
        torn = recs.copy()
        # Half of one record from the next one: what a reader racing a writer would copy.
        torn[field][row] = recs[field][row + 1]
        assert "torn" in (check_seq_records(torn, 1000) or "")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("mode", "pause_every", "capacity"),
    # Two sizes: Ring.producer()/consumer() may specialise the ends of small rings.
    [("spin", 0, 1 << 14), ("block", 64, 1 << 17)],
)
def test_five_million_records_cross_process(
    shm_prefix: str, workers: Any, mode: str, pause_every: int, capacity: int
) -> None:
    ctx = mp.get_context("spawn")
    name = f"{shm_prefix}stress"
    ring = Ring.create(name, SEQ_RECORD, capacity)
    results = ctx.Queue()
    consumer = ctx.Process(
        target=workers.stress_consumer, args=(name, TOTAL, SINGLE, 4096, mode, results)
    )
    producer = ctx.Process(
        target=workers.stress_producer, args=(name, TOTAL, SINGLE, 4096, mode, pause_every)
    )
    consumer.start()
    producer.start()
    try:
        report = results.get(timeout=240)
        producer.join(60)
        consumer.join(60)
    finally:
        for p in (producer, consumer):
            if p.is_alive():
                p.kill()
                p.join()
    assert report["error"] is None, report["error"]
    assert report["read"] == TOTAL
    assert report["extra"] == 0
    assert producer.exitcode == 0 and consumer.exitcode == 0
    stats = ring.stats()
    assert stats.written == stats.read == TOTAL
    assert stats.fill == 0
    assert not stats.producer_alive and not stats.consumer_alive
    if mode == "block":
        # The consumer really slept on its doorbell and the producer really rang it.
        assert report["sleeps"] > 0
        assert report["wakeups"] > 0
    ring.close()
    ring.unlink()
