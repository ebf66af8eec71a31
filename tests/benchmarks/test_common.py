"""The shared benchmark helpers and the ring benchmark's own correctness check."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from benchmarks import bench_ring
from benchmarks.common import fmt_rate, histogram_from_ns, latency_figures, spread
from wiresens.shm import Ring


def test_latency_figures_are_percentiles_in_microseconds() -> None:
    # 1..10,000 µs, once each: p50 is 5,000 µs, p99 9,900 µs (HdrHistogram: 3 digits).
    samples = np.arange(1, 10_001, dtype=np.int64) * 1000
    figs = latency_figures(histogram_from_ns(samples))
    assert figs["count"] == 10_000
    for name, want in (("p50", 5000), ("p90", 9000), ("p99", 9900), ("p99.9", 9990)):
        assert figs[name] == pytest.approx(want, rel=2e-3), name
    assert figs["max"] == pytest.approx(10_000, rel=2e-3)
    assert figs["mean"] == pytest.approx(5000.5, rel=2e-3)


def test_histogram_clips_non_positive_samples_to_one_ns() -> None:
    figs = latency_figures(histogram_from_ns(np.array([0, -5, 1000], dtype=np.int64)))
    assert figs["count"] == 3
    assert figs["p50"] == pytest.approx(0.001)


def test_spread_and_rates() -> None:
    s = spread([3.0, 1.0, 2.0, 10.0])
    assert (s.median, s["min"], s["max"]) == (2.5, 1.0, 10.0)
    assert s.text() == "2.50 (1.00-10.00)"
    with pytest.raises(ValueError, match="no runs"):
        spread([])
    assert fmt_rate(20_500_000) == "20.50 M/s"
    assert fmt_rate(999) == "999 /s"


@pytest.fixture
def ring_name(shm_prefix: str) -> str:
    return f"{shm_prefix}bench"


def _consume(name: str, n: int, batch: bool) -> dict[str, object]:
    ready = threading.Event()
    deadline = time.perf_counter_ns() + 2_000_000_000
    return bench_ring._ring_tput_consumer(name, n, batch, ready, deadline)


def test_single_record_check_catches_a_lost_record(ring_name: str) -> None:
    ring = Ring.create(ring_name, bench_ring.RECORD, 64)
    try:
        prod = ring.producer()
        rec = np.zeros(1, bench_ring.RECORD)
        for seq in (0, 1, 3, 4):  # 2 is lost
            rec["seq"] = seq
            assert prod.try_write(memoryview(rec).cast("B"))  # type: ignore[arg-type]
        res = _consume(ring_name, 4, batch=False)
        assert res["received"] == 4
        assert res["bad"] == 2 and res["first_bad"] == 2
        prod.close()
    finally:
        ring.close()
        ring.unlink()


def test_batch_check_catches_a_stale_slot(ring_name: str) -> None:
    n = 2 * bench_ring.BATCH
    ring = Ring.create(ring_name, bench_ring.RECORD, 256)
    try:
        prod = ring.producer()
        img = np.zeros(n, bench_ring.RECORD)
        img["seq"] = np.arange(n)
        img["seq"][70] = 70 - ring.capacity  # what the slot held one lap earlier
        assert prod.write_batch(img) == n
        res = _consume(ring_name, n, batch=True)
        assert res["received"] == n
        assert res["bad"] == 1 and res["first_bad"] == bench_ring.BATCH
        prod.close()
    finally:
        ring.close()
        ring.unlink()


def test_batch_check_passes_a_clean_stream(ring_name: str) -> None:
    n = 3 * bench_ring.BATCH
    ring = Ring.create(ring_name, bench_ring.RECORD, 256)
    try:
        prod = ring.producer()
        img = np.zeros(n, bench_ring.RECORD)
        img["seq"] = np.arange(n) % bench_ring.IMAGE
        assert prod.write_batch(img) == n
        res = _consume(ring_name, n, batch=True)
        assert (res["received"], res["bad"]) == (n, 0)
        prod.close()
    finally:
        ring.close()
        ring.unlink()
