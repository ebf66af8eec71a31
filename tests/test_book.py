"""The numpy order book against a dict model (hypothesis), plus edge cases."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from wiresens.book import OrderBook

PRICES = st.integers(min_value=1, max_value=60)
QTYS = st.one_of(st.just(0), st.integers(min_value=1, max_value=10**12))
BATCH = st.lists(st.tuples(PRICES, QTYS), max_size=25)


def _arr(xs: list[int]) -> np.ndarray:
    return np.array(xs, dtype=np.int64)


def _apply_model(model: dict[int, int], batch: list[tuple[int, int]]) -> None:
    for p, q in batch:
        if q == 0:
            model.pop(p, None)
        else:
            model[p] = q


def _check(book: OrderBook, bids: dict[int, int], asks: dict[int, int]) -> None:
    bp, bq = book.bids.levels()
    ap, aq = book.asks.levels()
    assert list(zip(bp.tolist(), bq.tolist(), strict=True)) == sorted(bids.items(), reverse=True)
    assert list(zip(ap.tolist(), aq.tolist(), strict=True)) == sorted(asks.items())
    assert book.best_bid() == (max(bids.items()) if bids else (0, 0))
    assert book.best_ask() == (min(asks.items()) if asks else (0, 0))
    out_b = np.full((5, 2), -1, dtype=np.int64)
    out_a = np.full((5, 2), -1, dtype=np.int64)
    nb, na = book.top(out_b, out_a)
    assert out_b[:nb].tolist() == [list(x) for x in sorted(bids.items(), reverse=True)[:5]]
    assert out_a[:na].tolist() == [list(x) for x in sorted(asks.items())[:5]]
    assert (out_b[nb:] == -1).all() and (out_a[na:] == -1).all()
    crossed = bool(bids and asks and max(bids) >= min(asks))
    assert book.is_crossed() == crossed


@settings(max_examples=300, deadline=None)
@given(
    snap_b=BATCH,
    snap_a=BATCH,
    steps=st.lists(st.tuples(BATCH, BATCH), max_size=12),
    cap=st.sampled_from([16, 64]),
)
def test_book_matches_dict_model(snap_b, snap_a, steps, cap) -> None:
    book = OrderBook("TEST", capacity=cap)
    bids: dict[int, int] = {}
    asks: dict[int, int] = {}
    _apply_model(bids, snap_b)
    _apply_model(asks, snap_a)
    book.load_snapshot(
        _arr([p for p, _ in snap_b]),
        _arr([q for _, q in snap_b]),
        _arr([p for p, _ in snap_a]),
        _arr([q for _, q in snap_a]),
    )
    _check(book, bids, asks)
    for ub, ua in steps:
        _apply_model(bids, ub)
        _apply_model(asks, ua)
        book.apply(
            _arr([p for p, _ in ub]),
            _arr([q for _, q in ub]),
            _arr([p for p, _ in ua]),
            _arr([q for _, q in ua]),
        )
        _check(book, bids, asks)


def test_delete_of_missing_level_is_not_an_error() -> None:
    book = OrderBook()
    book.apply(_arr([100]), _arr([0]), _arr([101]), _arr([0]))
    assert len(book.bids) == 0 and len(book.asks) == 0
    assert book.best_bid() == (0, 0) and not book.is_crossed()


def test_grows_past_capacity_and_clear() -> None:
    book = OrderBook(capacity=16)
    px = np.arange(1, 1001, dtype=np.int64)
    book.apply(px, px, px + 2000, px)
    assert len(book.bids) == 1000 and book.best_bid() == (1000, 1000)
    assert book.best_ask() == (2001, 1)
    book.clear()
    assert len(book.bids) == len(book.asks) == 0


def test_crossed_book_detected() -> None:
    book = OrderBook()
    book.apply(_arr([100]), _arr([1]), _arr([100]), _arr([1]))
    assert book.is_crossed()


WIDE = st.sampled_from([1, 2, 3, 2**40, 2**40 + 1, 2**61, 2**62 + 5, 2**63 - 2])
WIDE_BATCH = st.lists(st.tuples(WIDE, QTYS), max_size=25)


@settings(max_examples=150, deadline=None)
@given(steps=st.lists(st.tuples(WIDE_BATCH, WIDE_BATCH), max_size=8))
def test_book_matches_dict_model_on_wide_prices(steps) -> None:
    # Keys too far apart to pack with an arrival index: the stable-sort path.
    book = OrderBook("WIDE", capacity=16)
    bids: dict[int, int] = {}
    asks: dict[int, int] = {}
    for ub, ua in steps:
        _apply_model(bids, ub)
        _apply_model(asks, ua)
        book.apply(
            _arr([p for p, _ in ub]),
            _arr([q for _, q in ub]),
            _arr([p for p, _ in ua]),
            _arr([q for _, q in ua]),
        )
        _check(book, bids, asks)
