"""The seeded record factory (``wiresens.testing``) other tests build on."""

from __future__ import annotations

import numpy as np
import pytest

from wiresens.records import DTYPES, HEADER, MARKET_SLOT, SCHEMA_VERSION, RecordKind
from wiresens.testing import RecordFactory


@pytest.mark.parametrize("kind", list(RecordKind))
def test_records_are_well_formed(kind: RecordKind) -> None:
    recs = RecordFactory(seed=3).records(kind, 50)
    assert recs.dtype == DTYPES[kind]
    assert (recs["kind"] == int(kind)).all()
    assert (recs["version"] == SCHEMA_VERSION[kind]).all()
    assert (np.diff(recs["ts_exch"]) > 0).all()
    assert (recs["ts_exch"] < recs["ts_recv"]).all()
    assert (recs["ts_recv"] < recs["ts_pub"]).all()


def test_same_seed_same_records_other_seed_other_records() -> None:
    a = RecordFactory(seed=7).records(RecordKind.TRADE, 20)
    b = RecordFactory(seed=7).records(RecordKind.TRADE, 20)
    c = RecordFactory(seed=8).records(RecordKind.TRADE, 20)
    assert a.tobytes() == b.tobytes()
    assert a.tobytes() != c.tobytes()


def test_market_fields_are_plausible() -> None:
    f = RecordFactory(seed=1)
    tob = f.records(RecordKind.TOP_OF_BOOK, 200)
    assert (tob["bid_px"] < tob["ask_px"]).all()
    assert (tob["bid_px"] % f.tick == 0).all()
    trades = f.records(RecordKind.TRADE, 100)
    more = f.records(RecordKind.TRADE, 100)
    ids = np.concatenate([trades["trade_id"], more["trade_id"]])
    assert (np.diff(ids) == 1).all()  # contiguous across calls, like Binance trade ids
    assert (trades["qty"] > 0).all() and (trades["qty"] % f.step == 0).all()
    depth = f.records(RecordKind.DEPTH_UPDATE, 100)
    assert set(np.unique(depth["side"]).tolist()) <= {1, 2}


def test_market_mix_dispatches_by_kind_and_is_time_ordered() -> None:
    mix = RecordFactory(seed=2).market_mix(300)
    assert mix.dtype == MARKET_SLOT
    head = mix.view(np.uint8).reshape(300, 64)[:, : HEADER.itemsize].copy().view(HEADER)[:, 0]
    assert set(np.unique(head["kind"]).tolist()) == {1, 2, 3}
    assert (np.diff(head["ts_exch"]) >= 0).all()
    assert (head["ts_exch"] < head["ts_recv"]).all() and (head["ts_recv"] < head["ts_pub"]).all()
    for slot, kind in zip(mix[:20], head["kind"][:20], strict=True):
        rec = np.frombuffer(slot.tobytes(), DTYPES[RecordKind(int(kind))])
        assert rec["version"][0] == SCHEMA_VERSION[RecordKind(int(kind))]
