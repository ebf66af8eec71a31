"""Child-process bodies for the multi-process shm tests (spawned, so module-level functions).

The tests put this folder on ``sys.path`` before spawning: a spawned child re-imports
the target by module name and inherits the parent's ``sys.path``.
"""

from __future__ import annotations

import os
import time
from multiprocessing.queues import Queue
from typing import Any

import numpy as np

from wiresens.shm import Ring, SeqlockSlots, SpinIdle, YieldIdle, make_idle
from wiresens.testing import SEQ_RECORD, check_seq_records, fill_seq_records


def stress_producer(
    name: str, total: int, single: int, batch: int, mode: str, pause_every: int
) -> None:
    """Write ``total`` sequence records: ``single`` one at a time, the rest in batches.

    ``pause_every`` > 0 sleeps briefly after that many batches, so a blocking consumer
    drains the ring, goes to sleep on its doorbell and must be woken by this producer.
    """
    ring = Ring.attach(name, SEQ_RECORD)
    prod = ring.producer()
    idle = SpinIdle() if mode == "spin" else YieldIdle(spins=100)
    one = np.zeros(1, SEQ_RECORD)
    one_bytes = memoryview(one).cast("B")
    seq = 0
    while seq < single:
        fill_seq_records(one, seq)
        if seq % 3 == 2:
            idx = prod.claim()
            if idx >= 0:
                prod.slots[idx] = one[0]
                prod.commit()
                ok = True
            else:
                ok = False
        else:
            ok = prod.try_write(one_bytes)
        if ok:
            seq += 1
        idle.idle(int(ok))
    block = np.zeros(batch, SEQ_RECORD)
    batches = 0
    while seq < total:
        n = min(batch, total - seq)
        fill_seq_records(block[:n], seq)
        done = 0
        while done < n:
            got = prod.write_batch(block[done:n])
            done += got
            idle.idle(got)
        seq += n
        batches += 1
        if pause_every and batches % pause_every == 0:
            time.sleep(0.0002)
    prod.close()
    ring.close()


def stress_consumer(
    name: str, total: int, single: int, batch: int, mode: str, results: Queue[dict[str, Any]]
) -> None:
    """Read and verify ``total`` sequence records; report counts and the first problem."""
    ring = Ring.attach(name, SEQ_RECORD)
    cons = ring.consumer()
    idle = make_idle(mode, [cons], spins=200, timeout=0.001)
    error: str | None = None
    pos = 0
    chunk = np.zeros(1024, SEQ_RECORD)
    chunk_bytes = memoryview(chunk).cast("B")
    size = SEQ_RECORD.itemsize
    filled = 0
    while pos < single and error is None:
        ok = cons.try_read(chunk_bytes[filled * size : (filled + 1) * size])
        if ok:
            filled += 1
            if filled == len(chunk) or pos + filled == single:
                error = check_seq_records(chunk[:filled], pos)
                pos += filled
                filled = 0
        idle.idle(int(ok))
    out = np.zeros(batch, SEQ_RECORD)
    calls = 0
    while pos < total and error is None:
        calls += 1
        if calls % 2:
            n = cons.read_into(out, total - pos)
            if n:
                error = check_seq_records(out[:n], pos)
        else:
            view = cons.peek(min(batch, total - pos))
            n = len(view)
            if n:
                error = check_seq_records(view, pos)
                cons.release(n)
        pos += n
        idle.idle(n)
    extra = cons.available()
    report: dict[str, Any] = {
        "error": error,
        "read": pos,
        "extra": extra,
        "sleeps": getattr(idle, "sleeps", 0),
        "wakeups": getattr(idle, "wakeups", 0),
    }
    idle.close()
    cons.close()
    ring.close()
    results.put(report)


def plain_producer(name: str, total: int, batch: int) -> None:
    """Write ``total`` sequence records in batches, yielding while the ring is full."""
    ring = Ring.attach(name, SEQ_RECORD)
    prod = ring.producer()
    idle = YieldIdle(spins=50)
    block = np.zeros(batch, SEQ_RECORD)
    seq = prod.ring.stats().written
    while seq < total:
        n = min(batch, total - seq)
        fill_seq_records(block[:n], seq)
        done = 0
        while done < n:
            got = prod.write_batch(block[done:n])
            done += got
            idle.idle(got)
        seq += n
    prod.close()
    ring.close()


def at_least_once_consumer(
    name: str, total: int, batch: int, counts_path: str, work_s: float = 0.0
) -> None:
    """Process records in place (peek), count each sequence in a file, then release.

    ``work_s`` of further "processing" between counting and releasing makes a kill
    likely to land in that window. Killed there, the batch is counted again by the next
    consumer: at-least-once delivery. Exits 3 on a gap or torn record.
    """
    ring = Ring.attach(name, SEQ_RECORD)
    cons = ring.consumer()
    counts = np.memmap(counts_path, dtype=np.int32, mode="r+", shape=(total,))
    idle = YieldIdle(spins=100)
    while cons.position < total:
        view = cons.peek(batch)
        n = len(view)
        if n:
            problem = check_seq_records(view, cons.position)
            if problem is not None:
                os.write(2, f"consumer: {problem}\n".encode())
                os._exit(3)
            counts[view["seq"]] += 1
            if work_s:
                time.sleep(work_s)
            cons.release(n)
        idle.idle(n)
    counts.flush()
    cons.close()
    ring.close()


def hold_ring(name: str, capacity: int, write: int, read: int, ready: Queue[int]) -> None:
    """Create a ring, hold both ends, move some records, then wait to be killed."""
    ring = Ring.create(name, SEQ_RECORD, capacity)
    prod = ring.producer()
    cons = ring.consumer()
    recs = np.zeros(write, SEQ_RECORD)
    fill_seq_records(recs, 0)
    prod.write_batch(recs)
    out = np.zeros(read, SEQ_RECORD)
    cons.read_into(out)
    ready.put(os.getpid())
    time.sleep(600)


def seqlock_writer(name: str, stop: Any, seconds: float) -> None:
    """Publish values 1, 2, 3, ... into slot 0 until ``stop`` is set; every word is the value."""
    slots = SeqlockSlots.attach(name, np.dtype(("<u8", (15,))))
    rec = np.zeros(15, np.uint64)
    raw = memoryview(rec).cast("B")
    deadline = time.monotonic() + seconds
    k = 0
    while not stop.is_set() and time.monotonic() < deadline:
        for _ in range(256):
            k += 1
            rec.fill(k)
            slots.write(0, raw)
    slots.close()


def seqlock_reader(name: str, seconds: float, results: Queue[dict[str, int]]) -> None:
    """Read slot 0 for ``seconds``; count torn copies, sequence/value mismatches, regressions."""
    slots = SeqlockSlots.attach(name, np.dtype(("<u8", (15,))))
    raw = bytearray(120)
    words = np.frombuffer(raw, dtype=np.uint64)
    stats = {"reads": 0, "unstable": 0, "torn": 0, "seq_mismatch": 0, "backwards": 0}
    distinct = 0
    last = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for _ in range(256):
            seq = slots.read(0, raw, max_spins=10_000)
            if seq < 0:
                stats["unstable"] += 1
                continue
            stats["reads"] += 1
            v = int(words[0])
            if not bool(np.all(words == words[0])):
                stats["torn"] += 1
            if seq != 2 * v:
                stats["seq_mismatch"] += 1
            if v < last:
                stats["backwards"] += 1
            elif v > last:
                distinct += 1
            last = v
    stats["distinct"] = distinct
    slots.close()
    results.put(stats)
