"""Positions and PnL: exact integer arithmetic, average cost, flips, fees."""

from __future__ import annotations

from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from wiresens.fixedpoint import to_fixed
from wiresens.positions import Position, PositionBook, round_half_even
from wiresens.records import SCALE, ExecType, RecordKind, Side, new_record

BUY, SELL = Side.BUY, Side.SELL


def fx(text: str) -> int:
    return to_fixed(text)


def test_round_half_even() -> None:
    assert [round_half_even(n, 2) for n in (1, 3, 5, -1, -3, 4)] == [0, 2, 2, 0, -2, 2]
    assert round_half_even(7, 3) == 2 and round_half_even(-7, 3) == -2


def test_long_round_trip_exact() -> None:
    p = Position()
    p.apply_fill(BUY, fx("0.5"), fx("100.10"), fee=fx("0.01"))
    p.apply_fill(BUY, fx("0.25"), fx("100.40"))
    assert p.qty == fx("0.75")
    assert p.avg_px == fx("100.2")  # (50.05 + 25.10) / 0.75
    assert p.unrealized_pnl(fx("101")) == fx("0.6")
    p.apply_fill(SELL, fx("0.5"), fx("101"))
    assert p.realized_pnl == fx("0.4")
    assert p.avg_px == fx("100.2")  # closing leaves the average alone
    p.apply_fill(SELL, fx("0.25"), fx("99"), fee=fx("0.02"))
    assert (p.qty, p.cost_raw) == (0, 0)
    assert p.realized_pnl == fx("0.1")  # 0.4 - 0.3
    assert p.fees == fx("0.03") and p.net_pnl == fx("0.07")
    assert (p.bought, p.sold, p.fills) == (fx("0.75"), fx("0.75"), 4)


def test_short_and_flip() -> None:
    p = Position()
    p.apply_fill(SELL, fx("2"), fx("50"))
    assert p.qty == -fx("2") and p.avg_px == fx("50")
    assert p.unrealized_pnl(fx("48")) == fx("4")
    p.apply_fill(BUY, fx("3"), fx("45"))  # close 2 short at +5 each, open 1 long at 45
    assert p.realized_pnl == fx("10")
    assert p.qty == fx("1") and p.avg_px == fx("45")
    assert p.total_pnl(fx("46")) == fx("11")


def test_avg_rounding_is_half_even_and_only_at_read() -> None:
    p = Position()
    for price in ("0.00000001", "0.00000002", "0.00000002"):
        p.apply_fill(BUY, 1, fx(price))
    # average 5/3 e-8: the raw basis keeps it exact, the read rounds to 2e-8.
    assert p.cost_raw == 5 and p.avg_px == 2


def test_book_and_report() -> None:
    book = PositionBook()
    r = new_record(RecordKind.EXECUTION_REPORT)[0]
    r["policy"], r["symbol"], r["side"] = 3, 1, BUY
    r["exec_type"], r["last_qty"], r["last_px"], r["commission"] = ExecType.TRADE, 2, 7, 1
    pos = book.apply_report(r)
    assert pos is book.get(3, 1) and (pos.qty, pos.avg_px, pos.fees) == (2, 7, 1)
    r["last_qty"] = 0
    assert book.apply_report(r) is None
    assert list(book.for_policy(3)) == [1] and len(book) == 1


fills = st.lists(
    st.tuples(
        st.sampled_from([BUY, SELL]),
        st.integers(1, 5 * SCALE),
        st.integers(1, 100_000 * SCALE),
        st.integers(0, 10**6),
    ),
    max_size=50,
)


@settings(max_examples=300, deadline=None)
@given(fills, st.integers(1, 100_000 * SCALE))
def test_pnl_identity_is_exact(seq: list[tuple[Side, int, int, int]], mark: int) -> None:
    p = Position()
    buys = sells = fees = 0
    for side, qty, px, fee in seq:
        p.apply_fill(side, qty, px, fee)
        if side == BUY:
            buys += qty * px
        else:
            sells += qty * px
        fees += fee
        # Cash flow plus marked inventory, with no rounding anywhere in the raw units.
        assert p.realized_raw + p.unrealized_raw(mark) == sells - buys + p.qty * mark
        assert p.qty == p.bought - p.sold
        assert p.fees == fees
    if p.qty == 0:
        assert p.cost_raw == 0 and p.realized_raw == sells - buys


@settings(max_examples=300, deadline=None)
@given(fills)
def test_average_price_within_one_raw_unit_of_the_exact_average(
    seq: list[tuple[Side, int, int, int]],
) -> None:
    p = Position()
    for side, qty, px, fee in seq:
        p.apply_fill(side, qty, px, fee)
        if p.qty:
            exact = Fraction(abs(p.cost_raw), abs(p.qty))
            assert abs(p.avg_px - exact) <= Fraction(1, 2)
            assert p.avg_px > 0


def test_apply_raw_matches_apply_report() -> None:
    a, b = PositionBook(), PositionBook()
    arr = new_record(RecordKind.EXECUTION_REPORT)
    r = arr[0]
    raw = arr.data.cast("B")
    for side, qty, px, fee in [
        (BUY, 5, 100, 1),
        (SELL, 7, 103, 2),
        (BUY, 0, 1, 0),
        (BUY, 2, 99, 0),
    ]:
        r["policy"], r["symbol"], r["side"] = 4, 70000, side
        r["last_qty"], r["last_px"], r["commission"] = qty, px, fee
        assert (a.apply_report(r) is None) == (b.apply_raw(raw) is None)
    pa, pb = a.get(4, 70000), b.get(4, 70000)
    assert (pa.qty, pa.cost_raw, pa.realized_raw, pa.fees) == (
        pb.qty,
        pb.cost_raw,
        pb.realized_raw,
        pb.fees,
    )
    # +3 on the 5 closed, then the 2 opened short at 103 bought back at 99.
    assert pa.qty == 0 and pa.realized_raw == 5 * 3 + 2 * 4 and len(b) == 1
