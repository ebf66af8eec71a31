"""The SPSC ring against a model (a deque), driven by hypothesis in one process.

Every operation of both ends is a rule; after each step the ring's counters must
equal the model's. Small capacities make wrap-around and full rings frequent.
Restarting either end (a new Producer/Consumer on the same mapping) must resume
at the published positions; records peeked and not released are read again.
"""

from __future__ import annotations

import itertools
import os
from collections import deque
from typing import Any

import numpy as np
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from wiresens.shm import Consumer, Producer, Ring

_names = itertools.count()


def _dtype(extra_words: int) -> np.dtype[Any]:
    # Record sizes 8, 16, 32, 72 bytes: not all powers of two, so offsets are exercised.
    if extra_words == 0:
        return np.dtype([("seq", "<i8")])
    return np.dtype([("seq", "<i8"), ("tag", "<u8", (extra_words,))])


class RingMachine(RuleBasedStateMachine):
    ring: Ring
    producer: Producer
    consumer: Consumer

    def __init__(self) -> None:
        super().__init__()
        self.model: deque[int] = deque()
        self.next_seq = 0
        self.written = 0
        self.read = 0
        self.full = 0
        self.name = ""

    @initialize(
        capacity=st.sampled_from([2, 4, 8, 16]),
        extra=st.sampled_from([0, 1, 3, 8]),
        direct=st.booleans(),
    )
    def setup(self, capacity: int, extra: int, direct: bool) -> None:
        self.name = f"wiresens-model-{os.getpid()}-{next(_names)}"
        self.capacity = capacity
        self.dtype = _dtype(extra)
        self.extra = extra
        # Ring.producer()/consumer() may pick a specialised end for small rings; the plain
        # classes (what large rings get) must behave the same, so the model drives both.
        self.direct = direct
        self.ring = Ring.create(self.name, self.dtype, capacity)
        self.producer = self._new_producer()
        self.consumer = self._new_consumer()

    def _new_producer(self) -> Producer:
        return Producer(self.ring) if self.direct else self.ring.producer()

    def _new_consumer(self) -> Consumer:
        return Consumer(self.ring) if self.direct else self.ring.consumer()

    def teardown(self) -> None:
        if self.name:
            self.producer.close()
            self.consumer.close()
            self.ring.close()
            self.ring.unlink()

    # -- helpers ------------------------------------------------------------------------
    def _make(self, n: int) -> np.ndarray[Any, Any]:
        recs = np.zeros(n, self.dtype)
        recs["seq"] = np.arange(self.next_seq, self.next_seq + n)
        if self.extra:
            recs["tag"] = (recs["seq"] * 7 + 3)[:, None]
        return recs

    def _accept(self, n: int) -> None:
        self.model.extend(range(self.next_seq, self.next_seq + n))
        self.next_seq += n
        self.written += n

    def _check_records(self, recs: np.ndarray[Any, Any], expected: list[int]) -> None:
        assert recs["seq"].tolist() == expected
        if self.extra:
            assert np.all(recs["tag"] == (recs["seq"] * 7 + 3)[:, None])

    def _free(self) -> int:
        return self.capacity - len(self.model)

    # -- producer -----------------------------------------------------------------------
    @rule()
    def try_write(self) -> None:
        rec = self._make(1)
        ok = self.producer.try_write(memoryview(rec).cast("B"))
        assert ok == (self._free() > 0)
        if ok:
            self._accept(1)
        else:
            self.full += 1

    @rule()
    def try_write_record(self) -> None:
        rec = self._make(1)
        ok = self.producer.try_write_record(rec[0])
        assert ok == (self._free() > 0)
        if ok:
            self._accept(1)
        else:
            self.full += 1

    @rule()
    def claim_commit(self) -> None:
        idx = self.producer.claim()
        if self._free() == 0:
            assert idx == -1
            self.full += 1
            return
        assert idx == self.written % self.capacity
        self.producer.slots[idx] = self._make(1)[0]
        self.producer.commit()
        self._accept(1)

    @rule(n=st.integers(0, 40))
    def write_batch(self, n: int) -> None:
        recs = self._make(n)
        got = self.producer.write_batch(recs)
        assert got == min(n, self._free())
        if n and got == 0:
            self.full += 1
        self._accept(got)

    @rule()
    def free(self) -> None:
        assert self.producer.free() == self._free()

    @rule()
    def abandon_claim(self) -> None:
        """A producer that dies between claim and commit publishes nothing."""
        idx = self.producer.claim()
        if idx >= 0:
            self.producer.slots[idx] = self._make(1)[0]
        else:
            self.full += 1
        self.producer.close()
        self.producer = self._new_producer()

    @rule()
    def restart_producer(self) -> None:
        self.producer.close()
        self.producer = self._new_producer()

    # -- consumer -----------------------------------------------------------------------
    @rule()
    def try_read(self) -> None:
        out = np.zeros(1, self.dtype)
        ok = self.consumer.try_read(memoryview(out).cast("B"))
        assert ok == bool(self.model)
        if ok:
            self._check_records(out, [self.model.popleft()])
            self.read += 1

    @rule(size=st.integers(0, 40), limit=st.none() | st.integers(0, 40))
    def read_into(self, size: int, limit: int | None) -> None:
        out = np.zeros(size, self.dtype)
        got = self.consumer.read_into(out, limit)
        want = min(len(self.model), size if limit is None else min(size, limit))
        assert got == want
        self._check_records(out[:got], [self.model.popleft() for _ in range(got)])
        self.read += got

    @rule(limit=st.integers(0, 40), keep=st.integers(0, 40))
    def peek_release(self, limit: int, keep: int) -> None:
        view = self.consumer.peek(limit)
        # A peek is contiguous: it stops at the end of the slot array.
        contiguous = self.capacity - self.read % self.capacity
        want = min(len(self.model), limit, contiguous)
        assert len(view) == want
        self._check_records(view, list(itertools.islice(self.model, want)))
        n = min(keep, len(view))
        self.consumer.release(n)
        for _ in range(n):
            self.model.popleft()
        self.read += n

    @rule(limit=st.integers(1, 40))
    def peek_then_restart(self, limit: int) -> None:
        """Peeked but unreleased records are not consumed: a new consumer sees them again."""
        first = self.consumer.peek(limit)
        seen = first["seq"].tolist()
        self.consumer.close()
        self.consumer = self._new_consumer()
        again = self.consumer.peek(limit)
        assert again["seq"].tolist() == seen

    @rule()
    def restart_consumer(self) -> None:
        self.consumer.close()
        self.consumer = self._new_consumer()

    # -- invariants ---------------------------------------------------------------------
    @precondition(lambda self: bool(self.name))
    @invariant()
    def counters(self) -> None:
        s = self.ring.stats()
        assert (s.written, s.read, s.full) == (self.written, self.read, self.full)
        assert s.fill == len(self.model)
        assert self.consumer.available() == len(self.model)
        assert self.consumer.position == self.read
        assert s.producer_pid == s.consumer_pid == os.getpid()
        assert s.producer_alive and s.consumer_alive


RingMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=60, deadline=None)
TestRingModel = RingMachine.TestCase
