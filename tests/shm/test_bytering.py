"""Frame ring: variable-length frames, padding at the wrap, full, and two processes."""

from __future__ import annotations

import multiprocessing as mp
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wiresens.shm import ByteRing
from wiresens.testing.toy_actors import frame_producer


def test_frames_round_trip_across_the_wrap(shm_prefix: str) -> None:
    ring = ByteRing.create(shm_prefix + "b", 4096)
    prod, cons = ring.producer(), ring.consumer()
    sent: list[tuple[int, bytes]] = []
    got: list[tuple[int, bytes]] = []
    for i in range(500):
        data = bytes([i % 251]) * (i % 300)
        while not prod.try_write(i % 7, data[:10], data[10:]):
            got += [(k, bytes(v)) for k, _, v in cons.frames()]
            cons.release()
        sent.append((i % 7, data))
    got += [(k, bytes(v)) for k, _, v in cons.frames()]
    cons.release()
    assert got == sent
    assert ring.stats().fill == 0 and ring.stats().full > 0
    ring.close()
    ring.unlink()


def test_oversized_frame_is_refused_not_split(shm_prefix: str) -> None:
    ring = ByteRing.create(shm_prefix + "b", 4096)
    prod = ring.producer()
    assert not prod.try_write(1, bytes(3000))
    assert prod.too_big == 1
    ring.close()
    ring.unlink()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 100), st.binary(max_size=600)), max_size=80))
def test_model(frames: list[tuple[int, bytes]]) -> None:
    import uuid

    ring = ByteRing.create(f"wiresens-hyp-{uuid.uuid4().hex[:10]}", 4096)
    try:
        prod, cons = ring.producer(), ring.consumer()
        out: list[tuple[int, bytes]] = []
        for kind, data in frames:
            if not prod.try_write(kind, data):
                out += [(k, bytes(v)) for k, _, v in cons.frames()]
                cons.release()
                assert prod.try_write(kind, data)
        out += [(k, bytes(v)) for k, _, v in cons.frames()]
        cons.release()
        assert out == frames
    finally:
        ring.close()
        ring.unlink()


@pytest.mark.slow
def test_two_processes_nothing_lost_or_torn(shm_prefix: str) -> None:
    n = 200_000
    ring = ByteRing.create(shm_prefix + "b", 1 << 16)
    cons = ring.consumer()
    p = mp.get_context("spawn").Process(target=frame_producer, args=(ring.name, n))
    p.start()
    expect = 0
    while expect < n:
        assert p.exitcode is None or expect == n, f"producer exited with {p.exitcode}"
        for kind, _, view in cons.frames():
            assert kind == 1
            body = view[4:]
            assert zlib.crc32(body) == int.from_bytes(view[:4], "little"), f"torn frame {expect}"
            assert int.from_bytes(body[:8], "little") == expect
            expect += 1
        cons.release()
    p.join(30)
    assert p.exitcode == 0
    ring.close()
    ring.unlink()
