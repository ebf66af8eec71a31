"""The snapshot/diff sync state machine, spot and USD-M rules."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from wiresens.binance.sync import Action, DepthSync, SyncState
from wiresens.book import OrderBook

Diff = tuple[int, int, int]  # U, u, pu


def _machine(market: str) -> tuple[DepthSync[Diff], list[Diff]]:
    applied: list[Diff] = []
    return DepthSync(market, OrderBook(), applied.append), applied  # type: ignore[arg-type]


def _offer(sync: DepthSync[Diff], d: Diff) -> Action:
    return sync.on_diff(d[0], d[1], d[2], d)


def test_spot_procedure() -> None:
    sync, applied = _machine("spot")
    early = [(90, 95, -1), (96, 101, -1)]
    for d in early:
        assert _offer(sync, d) is Action.BUFFERED
    assert not sync.synced and sync.state is SyncState.NEED_SNAPSHOT
    assert sync.on_snapshot(100) is Action.APPLIED
    assert applied == [(96, 101, -1)]  # 90..95 <= lastUpdateId dropped; 96 <= 101 <= 101
    assert sync.synced and sync.last_u == 101
    assert _offer(sync, (102, 105, -1)) is Action.APPLIED
    assert _offer(sync, (100, 105, -1)) is Action.DROPPED  # replayed old frame
    assert _offer(sync, (107, 110, -1)) is Action.NEED_SNAPSHOT  # 106 missing
    assert not sync.synced
    c = sync.counters
    assert (c.applied, c.dropped, c.gaps, c.resyncs, c.snapshots) == (2, 2, 1, 1, 1)


def test_spot_snapshot_waits_for_bridging_diff() -> None:
    sync, applied = _machine("spot")
    assert sync.on_snapshot(100) is Action.WAITING
    assert not sync.synced
    assert _offer(sync, (95, 100, -1)) is Action.DROPPED
    assert _offer(sync, (101, 103, -1)) is Action.APPLIED
    assert sync.synced and applied == [(101, 103, -1)]


def test_snapshot_older_than_buffered_diffs_asks_again() -> None:
    sync, applied = _machine("spot")
    for d in [(200, 210, -1), (211, 220, -1), (221, 230, -1)]:
        _offer(sync, d)
    sync.book.bids.apply(*_one(5))
    assert sync.on_snapshot(100) is Action.NEED_SNAPSHOT
    assert not sync.synced and len(sync.book.bids) == 0  # the stale snapshot is discarded
    assert sync.counters.resyncs == 1 and sync.counters.gaps == 0
    # Every buffered diff is kept for the next snapshot.
    assert sync.on_snapshot(215) is Action.APPLIED
    assert applied == [(211, 220, -1), (221, 230, -1)]


def _one(p: int) -> tuple:
    import numpy as np

    return np.array([p], dtype=np.int64), np.array([1], dtype=np.int64)


def test_usdm_procedure() -> None:
    sync, applied = _machine("usdm")
    _offer(sync, (80, 99, 79))
    _offer(sync, (95, 105, 99))
    assert sync.on_snapshot(100) is Action.APPLIED
    assert applied == [(95, 105, 99)]  # u < 100 dropped; U <= 100 <= u
    assert _offer(sync, (110, 120, 105)) is Action.APPLIED  # ids may skip; pu links
    assert _offer(sync, (125, 130, 121)) is Action.NEED_SNAPSHOT
    assert sync.counters.gaps == 1


def test_usdm_keeps_diff_whose_u_equals_snapshot() -> None:
    # USD-M drops only u < lastUpdateId: u == lastUpdateId bridges.
    sync, applied = _machine("usdm")
    _offer(sync, (90, 100, 89))
    assert sync.on_snapshot(100) is Action.APPLIED and applied == [(90, 100, 89)]
    spot, spot_applied = _machine("spot")
    _offer(spot, (90, 100, -1))
    assert spot.on_snapshot(100) is Action.WAITING and spot_applied == []


def test_reset_and_invalidate() -> None:
    sync, _ = _machine("spot")
    sync.on_snapshot(1)
    _offer(sync, (2, 2, -1))
    assert sync.synced
    assert sync.invalidate() is Action.NEED_SNAPSHOT and not sync.synced
    sync.reset()
    assert sync.state is SyncState.NEED_SNAPSHOT and sync.last_update_id == -1


@st.composite
def _chains(draw: st.DrawFn) -> tuple[str, list[Diff], int, int, int]:
    market = draw(st.sampled_from(["spot", "usdm"]))
    start = draw(st.integers(1, 1000))
    n = draw(st.integers(1, 30))
    diffs: list[Diff] = []
    prev_u = start - 1
    for _ in range(n):
        hole = draw(st.integers(0, 3)) if market == "usdm" else 0
        first = prev_u + 1 + hole
        final = first + draw(st.integers(0, 5))
        diffs.append((first, final, prev_u))
        prev_u = final
    snapshot = draw(st.integers(start - 3, prev_u + 2))
    at = draw(st.integers(0, n))  # diffs received before the snapshot
    removed = draw(st.integers(-1, n - 1))  # a diff lost in transit (-1: none)
    return market, diffs, snapshot, at, removed


@settings(max_examples=400, deadline=None)
@given(_chains(), st.booleans())
def test_applied_diffs_are_a_contiguous_chain(
    case: tuple[str, list[Diff], int, int, int], hot_path: bool
) -> None:
    # hot_path: the gateway's way, advance() first and on_diff() only when it says no;
    # the outcome must be the same as on_diff() alone.
    market, diffs, lid, at, removed = case
    sync, applied = _machine(market)
    received = [d for i, d in enumerate(diffs) if i != removed]
    published_before_apply = False
    actions = []
    for i, d in enumerate(received):
        if i == at:
            actions.append(sync.on_snapshot(lid))
        if hot_path and sync.advance(*d):
            applied.append(d)
            continue
        actions.append(_offer(sync, d))
        published_before_apply |= sync.synced and not applied
    if at >= len(received):
        actions.append(sync.on_snapshot(lid))
    assert not published_before_apply
    # Whatever was applied links up under the market's rule, starting across the snapshot.
    if applied:
        first = applied[0]
        if market == "spot":
            assert first[0] <= lid + 1 <= first[1]
        else:
            assert first[0] <= lid <= first[1]
        for a, b in itertools.pairwise(applied):
            assert b[0] == a[1] + 1 if market == "spot" else b[2] == a[1]
    # Every diff is accounted for exactly once (a gap keeps the offending diff buffered).
    c = sync.counters
    assert c.applied == len(applied)
    assert c.gaps <= c.resyncs <= 1 + (removed >= 0)
    stale = [d for d in diffs if (d[1] <= lid if market == "spot" else d[1] < lid)]
    if removed < 0 and stale and len(stale) < len(diffs) and sync.counters.resyncs == 0:
        # Intact chain and a snapshot inside it: sync succeeds and applies the rest.
        assert applied == [d for d in diffs if d not in stale]
    if 0 <= removed < len(diffs) - 1 and applied and diffs[removed][1] > applied[0][1]:
        # Lost after sync began, and a later diff shows it: detected exactly once,
        # then nothing more applied.
        assert c.gaps == 1 and c.resyncs == 1
        assert applied[-1][1] < diffs[removed][0]
        assert not sync.synced and len(sync.book.bids) == 0
