"""Per-account limits (wiresens.risk.AccountRisk) and balance reconciliation
(wiresens.balances.BalanceBook): plain domain code, checked without actors."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from wiresens.balances import BalanceBook, BalanceDifference
from wiresens.records import SCALE, OrderType, Side
from wiresens.risk import NO_LIMIT, AccountLimits, AccountRisk, RejectReason

PX = 65_000 * SCALE
LIMIT = int(OrderType.LIMIT)
MARKET = int(OrderType.MARKET)


def check(risk: AccountRisk, **kw: int) -> RejectReason:
    args = {"order_type": LIMIT, "price": PX, "qty": SCALE // 100, "mid": PX}
    args.update(kw)
    return risk.check(**args)  # type: ignore[arg-type]


def test_no_limits_pass_everything() -> None:
    risk = AccountRisk(AccountLimits())
    assert not risk.limits.active
    assert check(risk, open_orders=10**6, open_notional=NO_LIMIT // 2) == RejectReason.NONE


def test_max_open_orders_counts_the_accounts_working_orders() -> None:
    risk = AccountRisk(AccountLimits(max_open_orders=2))
    assert risk.limits.active
    assert check(risk, open_orders=1, open_notional=0) == RejectReason.NONE
    assert check(risk, open_orders=2, open_notional=0) == RejectReason.ACCOUNT_MAX_OPEN_ORDERS


def test_max_open_notional_adds_the_new_order() -> None:
    # 0.01 BTC at 65,000 = 650 USDT; the account has 1,000 working.
    risk = AccountRisk(AccountLimits(max_open_notional=1_650 * SCALE))
    assert check(risk, open_orders=0, open_notional=1_000 * SCALE) == RejectReason.NONE
    over = check(risk, open_orders=0, open_notional=1_000 * SCALE + 1)
    assert over == RejectReason.ACCOUNT_MAX_NOTIONAL
    assert "max_open_notional" in over.text


def test_a_market_order_counts_at_the_mid() -> None:
    risk = AccountRisk(AccountLimits(max_open_notional=650 * SCALE))
    ok = check(risk, order_type=MARKET, price=0, mid=PX, open_orders=0, open_notional=0)
    assert ok == RejectReason.NONE
    high = check(risk, order_type=MARKET, price=0, mid=PX + SCALE, open_orders=0, open_notional=0)
    assert high == RejectReason.ACCOUNT_MAX_NOTIONAL


@given(
    limit=st.integers(0, 10**15),
    open_notional=st.integers(0, 10**15),
    qty=st.integers(1, 10**9),
    price=st.integers(1, 10**13),
)
def test_notional_limit_is_exact(limit: int, open_notional: int, qty: int, price: int) -> None:
    risk = AccountRisk(AccountLimits(max_open_notional=limit))
    got = check(risk, price=price, qty=qty, open_orders=0, open_notional=open_notional)
    within = open_notional + price * qty // SCALE <= limit
    assert (got == RejectReason.NONE) == within


# -- balances -----------------------------------------------------------------------------
BTC, USDT = 1, 2
BOOK_ASSETS = [(0, 0), (BTC, USDT)]  # symbol 1 = BTCUSDT


def test_first_snapshot_is_the_baseline() -> None:
    book = BalanceBook(BOOK_ASSETS)
    assert not book.has_baseline(0)
    book.apply_fill(0, 1, Side.BUY, SCALE, PX)  # before the baseline: nothing to move
    assert book.reconcile(0, {BTC: 5 * SCALE, USDT: 100_000 * SCALE}) == []
    assert book.has_baseline(0) and book.reconciles[0] == 1


def test_own_fills_move_the_expectation_with_the_commission_in_the_asset_received() -> None:
    book = BalanceBook(BOOK_ASSETS)
    book.reconcile(0, {BTC: 5 * SCALE, USDT: 100_000 * SCALE})
    fee_btc = SCALE // 1000
    book.apply_fill(0, 1, Side.BUY, SCALE, PX, fee_btc)
    book.apply_fill(0, 1, Side.SELL, SCALE // 2, PX + SCALE, 3 * SCALE)
    btc = 5 * SCALE + SCALE - fee_btc - SCALE // 2
    usdt = 100_000 * SCALE - 65_000 * SCALE + 32_500 * SCALE + SCALE // 2 - 3 * SCALE
    assert book.reconcile(0, {BTC: btc, USDT: usdt}) == []


def test_a_difference_is_reported_once_and_the_venue_wins() -> None:
    book = BalanceBook(BOOK_ASSETS)
    book.reconcile(1, {BTC: 2 * SCALE, USDT: 1_000 * SCALE})
    diffs = book.reconcile(1, {BTC: 2 * SCALE, USDT: 990 * SCALE})
    assert diffs == [BalanceDifference(1, USDT, 1_000 * SCALE, 990 * SCALE)]
    assert diffs[0].diff == -10 * SCALE
    assert book.reconcile(1, {BTC: 2 * SCALE, USDT: 990 * SCALE}) == []
    assert book.differences[1] == 1 and book.reconciles[1] == 3


def test_an_asset_gone_to_zero_is_a_difference() -> None:
    book = BalanceBook(BOOK_ASSETS)
    book.reconcile(0, {BTC: 2 * SCALE, USDT: 1})
    assert book.reconcile(0, {USDT: 1}) == [BalanceDifference(0, BTC, 2 * SCALE, 0)]


def test_accounts_are_independent() -> None:
    book = BalanceBook(BOOK_ASSETS)
    book.reconcile(0, {USDT: 10 * SCALE})
    book.reconcile(1, {USDT: 10 * SCALE})
    book.apply_fill(1, 1, Side.BUY, SCALE // 10, 50 * SCALE)
    assert book.reconcile(0, {USDT: 10 * SCALE}) == []
    assert book.reconcile(1, {USDT: 5 * SCALE, BTC: SCALE // 10}) == []


@given(
    st.lists(
        st.tuples(
            st.sampled_from([Side.BUY, Side.SELL]), st.integers(1, 10**9), st.integers(1, 10**13)
        ),
        max_size=30,
    )
)
def test_replayed_settlement_reconciles_without_differences(
    fills: list[tuple[Side, int, int]],
) -> None:
    """The venue's settlement rule applied independently agrees with the book exactly."""
    book = BalanceBook(BOOK_ASSETS)
    venue = {BTC: 10**12, USDT: 10**18}
    book.reconcile(0, dict(venue))
    for side, qty, px in fills:
        notional = px * qty // SCALE
        fee = (qty if side == Side.BUY else notional) // 1000
        if side == Side.BUY:
            venue[BTC] += qty - fee
            venue[USDT] -= notional
        else:
            venue[BTC] -= qty
            venue[USDT] += notional - fee
        book.apply_fill(0, 1, side, qty, px, fee)
    assert book.reconcile(0, venue) == []
