"""The simulated venue and the loop, on hand-made markets and a scripted PolicyObject."""

from __future__ import annotations

from typing import Any

import msgspec
import numpy as np
import pytest

from wiresens.backtest import BacktestConfig, Simulation
from wiresens.backtest.config import FeeConfig, LatencyConfig, QueueConfig
from wiresens.backtest.data import MarketBuilder, MarketData
from wiresens.fixedpoint import SCALE
from wiresens.policy import (
    FOK,
    IOC,
    LIMIT,
    LIMIT_MAKER,
    MARKET,
    BookView,
    PolicyContext,
    PolicyObject,
)
from wiresens.records import ExecStatus

MS = 1_000_000
T0 = 1_700_000_000_000 * MS


def px(v: float) -> int:
    return round(v * 100) * (SCALE // 100)


def qty(v: float) -> int:
    return round(v * 1000) * (SCALE // 1000)


class Scripted(PolicyObject):
    """Sends ``script[k]`` on its k-th book delivery: (action, args...)."""

    script: list[tuple[Any, ...]]

    def on_start(self) -> None:
        self.books = 0
        self.reports: list[tuple[int, int, int, int, int]] = []
        self.ids: list[int] = []
        self.report_times: list[int] = []

    def on_book(self, symbol: int, book: BookView) -> None:
        for step in self.script:
            if step[0] == self.books:
                self._do(symbol, step[1:])
        self.books += 1

    def _do(self, symbol: int, step: tuple[Any, ...]) -> None:
        action = step[0]
        if action == "buy":
            self.ids.append(self.buy(symbol, *step[1:]))
        elif action == "sell":
            self.ids.append(self.sell(symbol, *step[1:]))
        elif action == "cancel":
            self.cancel(self.ids[step[1]])
        elif action == "replace":
            self.ids.append(self.replace(self.ids[step[1]], *step[2:]))

    def on_execution(self, report: Any) -> None:
        self.reports.append(
            (
                int(report["cl_ord_id"]),
                int(report["status"]),
                int(report["last_qty"]),
                int(report["last_px"]),
                int(report["commission"]),
            )
        )
        self.report_times.append(self.clock())


def simulate(
    md: MarketData, script: list[tuple[Any, ...]], **cfg_kw: Any
) -> tuple[Simulation, Scripted]:
    cfg = BacktestConfig(
        latency=LatencyConfig(feed_ns=0, entry_ns=MS, response_ns=MS),
        fees=FeeConfig(maker_bps=1.0, taker_bps=5.0),
        **cfg_kw,
    )
    holder: list[Scripted] = []

    def factory(ctx: PolicyContext) -> PolicyObject:
        p = Scripted(None, ctx)
        p.script = script
        holder.append(p)
        return p

    sim = Simulation(cfg, md, factory)
    sim.run()
    return sim, holder[0]


def base_market() -> MarketBuilder:
    """Bids 99.98..100.00 (1.0 each), asks 100.01..100.03 (1.0 each) at T0."""
    b = MarketBuilder("TEST")
    b.book(
        T0,
        T0,
        [(px(100.00 - i / 100), qty(1)) for i in range(3)],
        [(px(100.01 + i / 100), qty(1)) for i in range(3)],
        reset=True,
    )
    return b


def statuses(pol: Scripted, cid: int) -> list[int]:
    return [r[1] for r in pol.reports if r[0] == cid]


def test_limit_maker_that_would_take_is_rejected() -> None:
    b = base_market()
    b.book(T0 + 10 * MS, T0 + 10 * MS, [(px(99.97), qty(1))], [])
    _, pol = simulate(b.build(), [(0, "buy", qty(0.5), px(100.01), 1, LIMIT_MAKER)])
    assert statuses(pol, pol.ids[0]) == [ExecStatus.REJECTED]


def test_ioc_takes_what_crosses_then_expires_and_pays_taker_fee() -> None:
    b = base_market()
    b.book(T0 + 10 * MS, T0 + 10 * MS, [(px(99.97), qty(1))], [])
    sim, pol = simulate(b.build(), [(0, "buy", qty(1.5), px(100.01), IOC, LIMIT)])
    cid = pol.ids[0]
    assert statuses(pol, cid) == [ExecStatus.NEW, ExecStatus.PARTIALLY_FILLED, ExecStatus.EXPIRED]
    fill = next(r for r in pol.reports if r[2])
    assert fill[2:4] == (qty(1), px(100.01))
    # Taker: 5 bp of 100.01.
    assert fill[4] == (qty(1) * px(100.01) // SCALE) * 50_000 // SCALE
    assert sim.position == qty(1)
    assert pol.position(1) == qty(1)  # the policy's own PositionBook agrees


def test_fok_fills_whole_or_nothing() -> None:
    for size, want in ((2.5, ExecStatus.FILLED), (3.5, ExecStatus.EXPIRED)):
        b = base_market()
        b.book(T0 + 10 * MS, T0 + 10 * MS, [(px(99.97), qty(1))], [])
        sim, pol = simulate(b.build(), [(0, "buy", qty(size), px(100.03), FOK, LIMIT)])
        assert statuses(pol, pol.ids[0])[-1] == want
        assert sim.position == (qty(size) if want == ExecStatus.FILLED else 0)


def test_market_order_walks_the_book() -> None:
    b = base_market()
    b.book(T0 + 10 * MS, T0 + 10 * MS, [(px(99.97), qty(1))], [])
    sim, pol = simulate(b.build(), [(0, "sell", qty(2.5), 0, IOC, MARKET)])
    fills = sim.fills_array()
    assert fills["price"].tolist() == [px(100.00), px(99.99), px(99.98)]
    assert fills["qty"].tolist() == [qty(1), qty(1), qty(0.5)]
    assert statuses(pol, pol.ids[0])[-1] == ExecStatus.FILLED


def test_taken_liquidity_stays_taken_until_the_market_resets_the_level() -> None:
    b = base_market()
    b.book(T0 + 10 * MS, T0 + 10 * MS, [(px(100.00), qty(2))], [])  # top changes: book 1
    b.book(T0 + 20 * MS, T0 + 20 * MS, [(px(99.96), qty(1))], [])
    script = [
        (0, "buy", qty(1), px(100.01), IOC, LIMIT),
        (1, "buy", qty(1), px(100.01), IOC, LIMIT),
    ]
    sim, pol = simulate(b.build(), script)
    assert sim.position == qty(1)  # the second IOC found 100.01 already taken
    assert statuses(pol, pol.ids[1])[-1] == ExecStatus.EXPIRED


def resting_market(model: str, cancel_to: float) -> tuple[Simulation, Scripted]:
    """A bid joins 1.0 at 100.00; trades 0.4 there; the level shrinks; trades 0.5 there."""
    b = base_market()
    b.book(T0 + 10 * MS, T0 + 10 * MS, [(px(99.97), qty(1))], [])
    b.trade(T0 + 20 * MS, T0 + 20 * MS, px(100.00), qty(0.4), True, 1)
    b.book(T0 + 21 * MS, T0 + 21 * MS, [(px(100.00), qty(cancel_to))], [])
    b.trade(T0 + 30 * MS, T0 + 30 * MS, px(100.00), qty(0.5), True, 2)
    b.book(T0 + 40 * MS, T0 + 40 * MS, [(px(99.96), qty(1))], [])
    return simulate(
        b.build(), [(0, "buy", qty(0.3), px(100.00), 1, LIMIT)], queue=QueueConfig(model=model)
    )


def test_conservative_queue_advances_by_trades_only() -> None:
    # ahead 1.0 -> 0.6 after the trade; the level falls 0.6 -> 0.3 by trade 0.0, cancel
    # 0.3: conservative keeps ahead = min(0.6, 0.3) = 0.3, then the 0.5 trade fills 0.2.
    sim, _pol = resting_market("conservative", 0.3)
    assert sim.fills_array()["qty"].tolist() == [qty(0.2)]
    assert sim.fills_array()["maker"].tolist() == [1]
    # Level shrinks only to 0.5 (cancel 0.1 behind us): ahead stays 0.6, no fill by 0.5.
    sim, _ = resting_market("conservative", 0.5)
    assert len(sim.fills_array()) == 0


def test_probabilistic_queue_moves_up_on_cancels() -> None:
    # Level 0.6 (all ahead of us) shrinks to 0.5: the whole cancel is ahead (behind = 0),
    # ahead 0.5; the 0.5 trade then leaves nothing for us. Shrink to 0.2: ahead 0.2, fill 0.3.
    sim, _ = resting_market("probabilistic", 0.5)
    assert len(sim.fills_array()) == 0
    sim, pol = resting_market("probabilistic", 0.2)
    assert sim.fills_array()["qty"].tolist() == [qty(0.3)]
    assert statuses(pol, pol.ids[0])[-1] == ExecStatus.FILLED


def test_trade_through_fills_a_resting_order_whole_at_its_price() -> None:
    b = base_market()
    b.book(T0 + 10 * MS, T0 + 10 * MS, [(px(99.97), qty(1))], [])
    b.trade(T0 + 20 * MS, T0 + 20 * MS, px(99.98), qty(0.01), True, 1)
    b.book(T0 + 30 * MS, T0 + 30 * MS, [(px(99.96), qty(1))], [])
    sim, _ = simulate(b.build(), [(0, "buy", qty(0.7), px(99.99), 1, LIMIT)])
    f = sim.fills_array()
    assert f["price"].tolist() == [px(99.99)] and f["qty"].tolist() == [qty(0.7)]
    assert sim.fee_total == (qty(0.7) * px(99.99) // SCALE) * 10_000 // SCALE  # maker 1 bp


def test_market_moving_onto_a_resting_order_fills_it() -> None:
    b = base_market()
    b.book(T0 + 10 * MS, T0 + 10 * MS, [(px(99.97), qty(1))], [])
    # Asks drop to 99.99: the resting bid at 99.99 would have been hit.
    b.book(T0 + 20 * MS, T0 + 20 * MS, [], [(px(99.99), qty(2))])
    b.book(T0 + 30 * MS, T0 + 30 * MS, [(px(99.96), qty(1))], [])
    sim, _ = simulate(b.build(), [(0, "buy", qty(0.4), px(99.99), 1, LIMIT)])
    assert sim.fills_array()["qty"].tolist() == [qty(0.4)]


def test_entry_latency_decides_what_the_order_meets() -> None:
    # The ask at 100.01 is gone 0.5 ms after the policy's book; with 1 ms entry latency
    # the IOC arrives after that and finds 100.02 above its limit.
    b = base_market()
    b.book(T0 + 10 * MS, T0 + 10 * MS, [(px(100.00), qty(2))], [])  # top changes: book 1
    b.book(T0 + 10 * MS + MS // 2, T0, [], [(px(100.01), 0)])
    b.book(T0 + 20 * MS, T0 + 20 * MS, [(px(99.96), qty(1))], [])
    sim, pol = simulate(b.build(), [(1, "buy", qty(1), px(100.01), IOC, LIMIT)])
    assert sim.position == 0
    assert statuses(pol, pol.ids[0])[-1] == ExecStatus.EXPIRED
    # Reports come back after entry + response latency.
    assert pol.report_times[0] == T0 + 10 * MS + 2 * MS


def test_cancel_and_replace() -> None:
    b = base_market()
    for i in range(1, 5):
        b.book(T0 + i * 10 * MS, T0 + i * 10 * MS, [(px(100.00), qty(1 + i))], [])
    script = [
        (0, "buy", qty(0.1), px(99.50), 1, LIMIT),
        (0, "buy", qty(0.1), px(99.40), 1, LIMIT),
        (1, "cancel", 0),
        (1, "replace", 1, qty(0.2), px(99.45)),
        (3, "cancel", 0),  # already cancelled: the policy does not even send it
    ]
    sim, pol = simulate(b.build(), script)
    # Binance reports a cancel under the cancel request's id, the order's in orig: the
    # policy's OMS resolves it to the order.
    first = pol.open_orders.get(pol.ids[0])
    assert first is not None and first.status == ExecStatus.CANCELED
    assert statuses(pol, pol.ids[1]) == [ExecStatus.NEW, ExecStatus.CANCELED]
    new_id = pol.ids[2]
    # The base class's on_stop cancels nothing: the replacement is still open at the end.
    assert statuses(pol, new_id) == [ExecStatus.NEW]
    assert sim.by_cid[new_id].price == px(99.45) and sim.by_cid[new_id].qty == qty(0.2)
    assert sim.cancels_sent == 1 and sim.replaces_sent == 1
    assert set(sim.by_cid) == {new_id}


def test_risk_check_rejects_before_the_venue() -> None:
    b = base_market()
    b.book(T0 + 10 * MS, T0 + 10 * MS, [(px(99.97), qty(1))], [])
    # 99.995 is off the 0.01 tick (PRICE_FILTER).
    sim, pol = simulate(b.build(), [(0, "buy", qty(0.1), px(99.99) + SCALE // 1000, 1, LIMIT)])
    assert statuses(pol, pol.ids[0]) == [ExecStatus.REJECTED]
    assert sim.risk_rejects == 1 and not sim.arrivals


def test_on_book_only_when_the_top_changes() -> None:
    b = base_market()
    b.book(T0 + 10 * MS, T0 + 10 * MS, [(px(99.90), qty(1))], [])  # deep: top unchanged
    b.book(T0 + 20 * MS, T0 + 20 * MS, [(px(100.00), qty(2))], [])  # top qty changed
    sim, pol = simulate(b.build(), [])
    assert pol.books == 2 == sim.book_calls


def test_result_arrays_are_structured_and_consistent() -> None:
    b = base_market()
    b.book(T0 + 10 * MS, T0 + 10 * MS, [(px(99.97), qty(1))], [])
    sim, _ = simulate(b.build(), [(0, "buy", qty(1.5), px(100.02), IOC, LIMIT)])
    f = sim.fills_array()
    assert int(f["qty"].sum()) == sim.position == qty(1.5)
    s = sim.samples_array()
    assert s["position"][-1] == qty(1.5)
    mid = int(s["mid"][-1])
    cost = int((f["qty"].astype(object) * f["price"].astype(object)).sum())
    assert s["equity"][-1] == (qty(1.5) * mid - cost) // SCALE - int(f["fee"].sum())
    assert np.all(np.diff(s["ts"]) >= 0)


def test_config_struct_rejects_unknown_queue_model() -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"queue": {"model": "optimistic"}}, BacktestConfig)


def test_orders_log_records_each_request_with_its_arrival() -> None:
    b = base_market()
    b.book(T0 + 10 * MS, T0 + 10 * MS, [(px(100.00), qty(2))], [])
    sim, pol = simulate(b.build(), [(0, "buy", qty(0.1), px(99.50), 1, LIMIT), (1, "cancel", 0)])
    o = sim.orders_array()
    assert o["kind"].tolist() == [10, 11]
    assert o["ts"].tolist() == [T0, T0 + 10 * MS]
    assert (o["arrival"] - o["ts"]).tolist() == [MS, MS]
    assert o["cl_ord_id"][0] == pol.ids[0] == o["orig_cl_ord_id"][1]
