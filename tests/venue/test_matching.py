"""Matching engine: order types, time in force, STP, balances; conservation by hypothesis."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from wiresens.fixedpoint import SCALE, to_fixed
from wiresens.venue.accounts import AccountConfig, VenueAccounts, build_accounts
from wiresens.venue.filters import DEFAULT_SYMBOLS
from wiresens.venue.matching import (
    BalanceEvent,
    Engine,
    ExecEvent,
    Order,
    OrderRequest,
    PublicTrade,
    Reject,
)

F = to_fixed
SYM = "BTCUSDT"


def _setup(n: int = 2, bps: int = 10) -> tuple[Engine, VenueAccounts]:
    accs = build_accounts(
        [
            AccountConfig(
                f"a{i}",
                balances={"USDT": "1000000", "BTC": "10"},
                maker_commission_bps=bps,
                taker_commission_bps=bps,
            )
            for i in range(n)
        ]
    )
    return Engine({SYM: DEFAULT_SYMBOLS[SYM]}), accs


def _limit(side: str, qty: str, price: str, tif: str = "GTC", **kw: str) -> OrderRequest:
    return OrderRequest(SYM, side, "LIMIT", F(qty), F(price), tif, **kw)  # type: ignore[arg-type]


def _ok(res: Order | Reject) -> Order:
    assert isinstance(res, Order), res
    return res


def test_price_time_priority_and_partial_fills() -> None:
    e, accs = _setup(3)
    a, b, c = accs.accounts
    o1 = _ok(e.place(a, _limit("SELL", "0.5", "100"), 1))
    o2 = _ok(e.place(b, _limit("SELL", "0.5", "100"), 2))
    o3 = _ok(e.place(a, _limit("SELL", "0.5", "99.99"), 3))
    t = _ok(e.place(c, _limit("BUY", "0.8", "100"), 4))
    assert t.status == "FILLED"
    assert [(f.price, f.qty) for f in t.fills] == [(F("99.99"), F("0.5")), (F("100"), F("0.3"))]
    assert o3.status == "FILLED" and o1.status == "PARTIALLY_FILLED" and o2.status == "NEW"
    assert o1.remaining == F("0.2")
    assert e.books[SYM].level_qty(False, F("100")) == F("0.7")


def test_balances_lock_release_and_commission() -> None:
    e, accs = _setup(2)
    a, b = accs.accounts
    o = _ok(e.place(a, _limit("BUY", "1", "100"), 1))
    assert a.balances["USDT"].locked == F("100")
    assert a.balances["USDT"].free == F("1000000") - F("100")
    _ok(e.place(b, _limit("SELL", "0.4", "99"), 2))  # takes at the maker's price
    assert o.status == "PARTIALLY_FILLED"
    assert a.balances["BTC"].free == F("10") + F("0.4") - F("0.0004")  # maker fee 0.1 % in BTC
    assert b.balances["USDT"].free == F("1000000") + F("40") - F("0.04")
    _ok(e.cancel(a, SYM, o.order_id, "", 3))
    assert a.balances["USDT"].locked == 0
    assert a.balances["USDT"].free == F("1000000") - F("40")
    assert e.fees == {"BTC": F("0.0004"), "USDT": F("0.04")}


def test_rejections_use_binance_codes() -> None:
    e, accs = _setup(1)
    a = accs.accounts[0]
    assert e.place(a, _limit("BUY", "1", "100.001"), 1) == Reject(
        -1013, "Filter failure: PRICE_FILTER"
    )
    assert e.place(a, _limit("BUY", "0.000001", "100"), 1) == Reject(
        -1013, "Filter failure: LOT_SIZE"
    )
    assert e.place(a, _limit("BUY", "0.01", "100"), 1) == Reject(-1013, "Filter failure: NOTIONAL")
    r = e.place(a, _limit("BUY", "50", "100000"), 1)
    assert r == Reject(-2010, "Account has insufficient balance for requested action.")
    assert e.cancel(a, SYM, 42, "", 1) == Reject(-2011, "Unknown order sent.")
    _ok(e.place(a, _limit("SELL", "1", "100"), 1))
    lm = OrderRequest(SYM, "BUY", "LIMIT_MAKER", F("1"), F("100"))
    assert e.place(a, lm, 2) == Reject(-2010, "Order would immediately match and take.")
    assert a.balances["USDT"].locked == 0  # nothing left locked by the rejections


def test_ioc_fok_and_market_orders() -> None:
    e, accs = _setup(2)
    a, b = accs.accounts
    _ok(e.place(a, _limit("SELL", "1", "100"), 1))
    fok = _ok(e.place(b, _limit("BUY", "2", "100", "FOK"), 2))
    assert fok.status == "EXPIRED" and fok.executed_qty == 0
    ioc = _ok(e.place(b, _limit("BUY", "2", "100", "IOC"), 3))
    assert ioc.status == "EXPIRED" and ioc.executed_qty == F("1")
    assert b.balances["USDT"].locked == 0
    _ok(e.place(a, _limit("SELL", "1", "101"), 4))
    m = _ok(e.place(b, OrderRequest(SYM, "BUY", "MARKET", quote_order_qty=F("50.5")), 5))
    assert m.status == "FILLED" and m.executed_qty == F("0.5") and m.cum_quote == F("50.5")
    m2 = _ok(e.place(b, OrderRequest(SYM, "BUY", "MARKET", F("0.5")), 6))
    assert m2.status == "FILLED"
    m3 = _ok(e.place(b, OrderRequest(SYM, "BUY", "MARKET", F("0.5")), 7))
    assert m3.status == "EXPIRED" and m3.executed_qty == 0  # empty book


def test_self_trade_prevention_modes() -> None:
    for mode, maker_status, taker_status, taker_qty in (
        ("EXPIRE_TAKER", "NEW", "EXPIRED_IN_MATCH", 0),
        ("EXPIRE_MAKER", "EXPIRED_IN_MATCH", "FILLED", F("1")),
        ("EXPIRE_BOTH", "EXPIRED_IN_MATCH", "EXPIRED_IN_MATCH", 0),
        ("NONE", "FILLED", "FILLED", F("1")),
    ):
        e, accs = _setup(2)
        a, b = accs.accounts
        own = _ok(e.place(a, _limit("SELL", "1", "100"), 1))
        _ok(e.place(b, _limit("SELL", "1", "100"), 2))
        t = _ok(e.place(a, _limit("BUY", "1", "100", stp_mode=mode), 3))
        assert (own.status, t.status, t.executed_qty) == (maker_status, taker_status, taker_qty), (
            mode
        )
        assert a.balances["USDT"].locked == (F("100") if t.status == "NEW" else 0)


def test_market_liquidity_consumed_until_level_updates() -> None:
    e, accs = _setup(1)
    a = accs.accounts[0]
    e.set_market_level(SYM, False, F("100"), F("1"), 1)
    _ok(e.place(a, _limit("BUY", "0.4", "100"), 2))
    assert e.books[SYM].level_qty(False, F("100")) == F("0.6")
    e.set_market_level(SYM, False, F("100"), F("1"), 3)  # the market restates the level
    assert e.books[SYM].level_qty(False, F("100")) == F("1")


def test_resting_order_fills_on_trade_through_and_crossing() -> None:
    e, accs = _setup(1)
    a = accs.accounts[0]
    bid = _ok(e.place(a, _limit("BUY", "1", "100"), 1))
    e.market_trade(SYM, F("100"), F("5"), True, 2)  # at our price: queue unknown, no fill
    assert bid.executed_qty == 0
    e.market_trade(SYM, F("99.5"), F("0.3"), True, 3)  # traded through
    assert bid.executed_qty == F("0.3") and bid.fills[0].price == F("100") and bid.fills[0].is_maker
    e.set_market_level(SYM, False, F("99.9"), F("0.5"), 4)  # an ask moves across our bid
    assert bid.executed_qty == F("0.8")
    assert e.books[SYM].asks.best() == 0  # consumed; the book is not crossed
    trades = [ev for ev in e.events if isinstance(ev, PublicTrade)]
    assert [t.qty for t in trades] == [F("5"), F("0.3"), F("0.3"), F("0.5")]


def test_events_and_update_ids() -> None:
    e, accs = _setup(2)
    a, b = accs.accounts
    seen: set[tuple[bool, int]] = set()
    e.books[SYM].listeners.append(seen)
    u0 = e.books[SYM].update_id
    _ok(e.place(a, _limit("SELL", "1", "100"), 1))
    _ok(e.place(b, _limit("BUY", "1", "100"), 2))
    assert seen == {(False, F("100"))}
    assert e.books[SYM].update_id == u0 + 2
    kinds = [(type(ev).__name__, getattr(ev, "exec_type", "")) for ev in e.events]
    assert ("ExecEvent", "NEW") in kinds and ("PublicTrade", "") in kinds
    reports = [ev for ev in e.events if isinstance(ev, ExecEvent) and ev.exec_type == "TRADE"]
    assert {r.status for r in reports} == {"FILLED"}
    assert any(isinstance(ev, BalanceEvent) and ev.account is b for ev in e.events)


_order = st.tuples(
    st.integers(0, 2),  # account
    st.sampled_from(["BUY", "SELL"]),
    st.sampled_from(["LIMIT", "LIMIT", "MARKET", "LIMIT_MAKER", "CANCEL"]),
    st.sampled_from(["GTC", "IOC", "FOK"]),
    st.integers(1, 300),  # quantity in 0.001
    st.integers(9990, 10010),  # price in 0.01
    st.sampled_from(["NONE", "EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"]),
)


def _check_invariants(e: Engine, accs: VenueAccounts) -> None:
    for acc in accs.accounts:
        for asset, bal in acc.balances.items():
            assert bal.free >= 0 and bal.locked >= 0, (acc.name, asset, bal)
            held = sum(o.locked for o in e.open_orders(acc) if o.lock_asset == asset)
            assert bal.locked == held, (acc.name, asset)
    book = e.books[SYM]
    b, a = book.bids.best(), book.asks.best()
    assert not (b and a and b >= a), "book crossed"


@settings(max_examples=60, deadline=None)
@given(st.lists(_order, min_size=1, max_size=40))
def test_users_only_conserve_assets_and_quantity(
    ops: list[tuple[int, str, str, str, int, int, str]],
) -> None:
    e, accs = _setup(3, bps=7)
    start = {"USDT": 3 * F("1000000"), "BTC": 3 * F("10")}
    for t, (ai, side, typ, tif, q, p, stp) in enumerate(ops):
        acc = accs.accounts[ai]
        if typ == "CANCEL":
            for o in e.open_orders(acc)[:1]:
                _ok(e.cancel(acc, SYM, o.order_id, "", t))
            continue
        qty, price = q * SCALE // 1000, p * SCALE // 100
        if typ == "MARKET":
            req = OrderRequest(SYM, side, typ, qty, 0, "GTC", stp_mode=stp)
        else:
            req = OrderRequest(SYM, side, typ, qty, price, tif, stp_mode=stp)
        e.place(acc, req, t)
        _check_invariants(e, accs)
    for asset, total in start.items():
        held = sum(acc.balances[asset].free + acc.balances[asset].locked for acc in accs.accounts)
        assert held + e.fees.get(asset, 0) == total, asset
    bought = sum(f.qty for o in e.orders.values() if o.is_buy for f in o.fills)
    sold = sum(f.qty for o in e.orders.values() if not o.is_buy for f in o.fills)
    assert bought == sold
    for o in e.orders.values():
        assert 0 <= o.executed_qty <= o.orig_qty


@settings(max_examples=40, deadline=None)
@given(
    st.lists(_order, min_size=1, max_size=30),
    st.lists(
        st.tuples(st.booleans(), st.integers(9990, 10010), st.integers(0, 300), st.booleans()),
        max_size=30,
    ),
)
def test_with_market_liquidity_balances_stay_consistent(
    ops: list[tuple[int, str, str, str, int, int, str]],
    market: list[tuple[bool, int, int, bool]],
) -> None:
    e, accs = _setup(3)
    for t in range(max(len(ops), len(market))):
        if t < len(market):
            is_bid, p, q, trade = market[t]
            price, qty = p * SCALE // 100, q * SCALE // 1000
            book = e.books[SYM]
            # The market itself is never crossed; it may cross resting user orders.
            opp_market = (book.asks if is_bid else book.bids).market
            opp_best = (min if is_bid else max)(opp_market, default=0)
            if trade and qty:
                e.market_trade(SYM, price, qty, is_bid, t)
            elif not opp_best or (price < opp_best if is_bid else price > opp_best):
                e.set_market_level(SYM, is_bid, price, qty, t)
        if t < len(ops):
            ai, side, typ, tif, q, p, stp = ops[t]
            if typ in ("CANCEL", "MARKET"):
                continue
            e.place(
                accs.accounts[ai],
                OrderRequest(
                    SYM, side, typ, q * SCALE // 1000, p * SCALE // 100, tif, stp_mode=stp
                ),
                t,
            )
        _check_invariants(e, accs)


def test_old_finished_orders_are_forgotten_open_ones_kept() -> None:
    e, accs = _setup(1)
    e.keep_orders = 8
    a = accs.accounts[0]
    resting = _ok(e.place(a, _limit("BUY", "0.1", "90"), 0))
    for t in range(1, 30):
        _ok(e.place(a, _limit("BUY", "0.1", "100", "IOC"), t))  # expires at once
    assert len(e.orders) <= 8
    assert e.orders[resting.order_id] is resting
    assert e.find(a, resting.order_id, "") is resting
