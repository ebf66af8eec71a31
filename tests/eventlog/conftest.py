"""Record batches for the event-log tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from wiresens.records import RecordKind, new_record

T0 = 1_764_000_000_000_000_000
"""2025-11-24T16:00:00Z in ns: the time the test batches start at."""

Batch = Callable[..., np.ndarray[Any, Any]]


def batch(
    kind: RecordKind = RecordKind.TRADE,
    n: int = 64,
    *,
    t0: int = T0,
    step: int = 1_000,
    seq0: int = 0,
    pub_only: bool = False,
) -> np.ndarray[Any, Any]:
    """``n`` records of ``kind`` with ascending timestamps and a sequence number in
    ``symbol`` (and prices where the kind has them) so a test can tell records apart."""
    recs = new_record(kind, n)
    ts = t0 + step * np.arange(n, dtype=np.int64)
    if pub_only:
        recs["ts_pub"] = ts
    else:
        recs["ts_recv"] = ts
        recs["ts_pub"] = ts + 7
    recs["symbol"] = seq0 + np.arange(n)
    names = recs.dtype.names or ()
    if "price" in names:
        recs["price"] = 6_543_210_000_000 + seq0 + np.arange(n)
    return recs


@pytest.fixture
def make_batch() -> Batch:
    return batch
