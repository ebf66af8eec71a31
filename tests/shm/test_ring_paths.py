"""The ring's two single-record copy paths (per-slot views, and slicing for big rings)."""

from __future__ import annotations

import numpy as np
import pytest

from wiresens.shm import Ring
from wiresens.shm import ring as ring_module

REC = np.dtype([("seq", "<i8"), ("pad", "V24")])


@pytest.mark.parametrize("views", [True, False], ids=["slot-views", "slices"])
def test_single_records_wrap_and_round_trip(
    views: bool, shm_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not views:
        monkeypatch.setattr(ring_module, "SLOT_VIEWS_MAX", 4)
    with Ring.create(f"{shm_prefix}paths", REC, 8) as ring:
        prod, cons = ring.producer(), ring.consumer()
        assert hasattr(prod, "_views") is views and hasattr(cons, "_views") is views
        rec = np.zeros(1, REC)
        raw = memoryview(rec).cast("B")  # type: ignore[arg-type]
        out = np.zeros(1, REC)
        out_raw = memoryview(out).cast("B")  # type: ignore[arg-type]
        written = read = 0
        # Uneven write and read bursts: every slot wraps several times, the ring fills and empties.
        for burst in (3, 8, 5, 1, 7, 8, 2, 6):
            for _ in range(burst):
                rec["seq"] = written
                if prod.try_write(raw):
                    written += 1
            assert written - read <= 8
            for _ in range(burst - 1):
                if cons.try_read(out_raw):
                    assert int(out["seq"][0]) == read
                    read += 1
        while cons.try_read(out_raw):
            assert int(out["seq"][0]) == read
            read += 1
        assert read == written > 8 * 3
        assert not cons.try_read(out_raw)
        stats = ring.stats()
        assert (stats.written, stats.read) == (written, read)
        assert stats.full > 0
        prod.close()
        cons.close()


def test_batches_mix_with_single_records_across_the_wrap(shm_prefix: str) -> None:
    with Ring.create(f"{shm_prefix}mix", REC, 16) as ring:
        prod, cons = ring.producer(), ring.consumer()
        src = np.zeros(40, REC)
        src["seq"] = np.arange(40)
        dst = np.zeros(16, REC)
        dst_raw = memoryview(dst).cast("B")  # type: ignore[arg-type]
        got: list[int] = []
        assert prod.write_batch(src[:10]) == 10
        assert cons.read_into(dst, 7) == 7
        got += dst["seq"][:7].tolist()
        # 13 of 30 fit (16 - 3 unread): the copy wraps past the end of the slot area.
        assert prod.write_batch(memoryview(src[10:]).cast("B")) == 13  # type: ignore[arg-type]
        assert prod.write_batch(src[23:]) == 0
        assert ring.stats().full == 1
        n = cons.read_into(dst_raw)
        assert n == 16
        got += dst["seq"][:n].tolist()
        one = np.zeros(1, REC)
        assert cons.try_read(memoryview(one).cast("B")) is False  # type: ignore[arg-type]
        assert got == list(range(23))
        with pytest.raises(ValueError, match="whole number"):
            prod.write_batch(memoryview(bytearray(REC.itemsize + 1)))
        prod.close()
        cons.close()
