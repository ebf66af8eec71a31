"""The seeded synthetic market (wiresens.testing.synthetic)."""

from __future__ import annotations

from wiresens.fixedpoint import to_fixed
from wiresens.testing.synthetic import SyntheticMarket


def test_same_seed_same_events_other_seed_other_events() -> None:
    a = [(e.stream, e.data) for e in SyntheticMarket(3).events(50)]
    b = [(e.stream, e.data) for e in SyntheticMarket(3).events(50)]
    c = [(e.stream, e.data) for e in SyntheticMarket(4).events(50)]
    assert a == b and a != c


def test_snapshot_plus_diffs_rebuild_the_book_with_continuous_ids() -> None:
    m = SyntheticMarket(11, levels=10)
    for _ in m.events(5):
        pass
    snap = m.snapshot()
    bids = {to_fixed(p): to_fixed(q) for p, q in snap["bids"]}
    asks = {to_fixed(p): to_fixed(q) for p, q in snap["asks"]}
    prev_u = snap["lastUpdateId"]
    trades = 0
    mids: set[int] = set()
    for ev in m.events(300):
        d = ev.data
        if d["e"] == "trade":
            trades += 1
            continue
        assert d["U"] == prev_u + 1 and d["u"] >= d["U"]
        assert d["u"] - d["U"] + 1 == len(d["b"]) + len(d["a"])
        prev_u = d["u"]
        for key, side in (("b", bids), ("a", asks)):
            for p, q in d[key]:
                if to_fixed(q):
                    side[to_fixed(p)] = to_fixed(q)
                else:
                    side.pop(to_fixed(p), None)
        assert max(bids) < min(asks)
        mids.add(SyntheticMarket.mid_of(bids, asks))
    assert (bids, asks) == m.book()
    assert trades > 50
    assert len(mids) > 20  # the mid moves
