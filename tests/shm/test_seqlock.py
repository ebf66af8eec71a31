"""Seqlock slots: sequence semantics, and no torn read under a hammering writer process."""

from __future__ import annotations

import multiprocessing as mp
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from wiresens.records import TOP_OF_BOOK, RecordKind
from wiresens.shm import SeqlockSlots
from wiresens.testing import RecordFactory

WORDS15 = np.dtype(("<u8", (15,)))


@pytest.fixture
def workers(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    import ring_workers

    return ring_workers


def test_sequence_semantics(shm_prefix: str) -> None:
    slots = SeqlockSlots.create(f"{shm_prefix}tob", TOP_OF_BOOK, 3)
    try:
        assert slots.stride == 128  # 8-byte sequence + 64-byte record, rounded to cache lines
        out = bytearray(64)
        assert [slots.sequence(i) for i in range(3)] == [0, 0, 0]
        assert slots.read(1, out) == 0  # never written: sequence 0, zero bytes
        assert out == bytes(64)
        recs = RecordFactory(seed=5).records(RecordKind.TOP_OF_BOOK, 3)
        slots.write(1, memoryview(recs[0:1]).cast("B"))
        assert slots.sequence(1) == 2
        slots.write(1, memoryview(recs[1:2]).cast("B"))
        assert slots.read(1, out) == 4
        assert bytes(out) == recs[1:2].tobytes()
        # Slots are independent.
        assert slots.sequence(0) == slots.sequence(2) == 0
        # An odd sequence is a write in progress: the reader never returns a copy during it.
        word = slots._seq_word[1]
        slots._words[word] = 5
        assert slots.read(1, out, max_spins=1000) == -1
        slots._words[word] = 6
        assert slots.read(1, out) == 6
        # A writer that died mid-write left 7 (odd): the next write must not step to an even
        # value while it copies, and must leave the slot even and readable.
        slots._words[word] = 7
        slots.write(1, memoryview(recs[2:3]).cast("B"))
        assert slots.read(1, out) == 8
        assert bytes(out) == recs[2:3].tobytes()
        slots._words[word] = 6
        slots.write(1, memoryview(recs[1:2]).cast("B"))
        # Another process's view: attach and read the same slot.
        other = SeqlockSlots.attach(slots.segment.name, TOP_OF_BOOK)
        assert other.read(1, out) == 8 and bytes(out) == recs[1:2].tobytes()
        other.close()
    finally:
        slots.close()


@pytest.mark.slow
def test_reader_never_sees_a_torn_value(shm_prefix: str, workers: Any) -> None:
    name = f"{shm_prefix}hammer"
    slots = SeqlockSlots.create(name, WORDS15, 1)
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    stop = ctx.Event()
    writer = ctx.Process(target=workers.seqlock_writer, args=(name, stop, 120.0))
    reader = ctx.Process(target=workers.seqlock_reader, args=(name, 3.0, results))
    writer.start()
    try:
        deadline = time.monotonic() + 60
        while slots.sequence(0) == 0 and time.monotonic() < deadline:
            time.sleep(0.001)
        reader.start()
        stats = results.get(timeout=60)
        stop.set()
        reader.join(10)
        writer.join(30)
    finally:
        for p in (writer, reader):
            if p.is_alive():
                p.kill()
                p.join()
    assert writer.exitcode == 0 and reader.exitcode == 0
    assert stats["reads"] > 0
    assert stats["distinct"] > 1, "the writer must have been writing while the reader read"
    assert stats["torn"] == 0
    assert stats["seq_mismatch"] == 0  # sequence 2k always carries value k
    assert stats["backwards"] == 0  # one writer: values never go back
    slots.close()
