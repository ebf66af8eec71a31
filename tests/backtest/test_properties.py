"""Invariants of the simulated venue under random orders (hypothesis)."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wiresens.backtest import BacktestConfig, Simulation
from wiresens.backtest.config import InstrumentConfig, QueueConfig
from wiresens.backtest.data import MarketData, from_synthetic
from wiresens.fixedpoint import SCALE
from wiresens.policy import FOK, GTC, IOC, LIMIT, LIMIT_MAKER, BookView, PolicyContext, PolicyObject

MARKET: MarketData = from_synthetic(11, 150, mid="100")
TICK = SCALE // 100
LOT = SCALE // 1000

order = st.tuples(
    st.booleans(),  # buy
    st.integers(-4, 4),  # ticks from the touch (negative: crossing)
    st.integers(1, 40),  # lots of 0.001
    st.sampled_from([(GTC, LIMIT), (IOC, LIMIT), (FOK, LIMIT), (GTC, LIMIT_MAKER)]),
    st.booleans(),  # cancel the previous order too
)


class RandomOrders(PolicyObject):
    plan: list[tuple[Any, ...]]

    def on_start(self) -> None:
        self.k = 0
        self.last = 0

    def on_book(self, symbol: int, book: BookView) -> None:
        if self.k >= len(self.plan):
            return
        buy, ticks, lots, (tif, otype), cancel = self.plan[self.k]
        self.k += 1
        if cancel and self.last:
            self.cancel(self.last)
        if buy:
            self.last = self.buy(symbol, lots * LOT, book.ask_px - ticks * TICK, tif, otype)
        else:
            self.last = self.sell(symbol, lots * LOT, book.bid_px + ticks * TICK, tif, otype)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=st.lists(order, max_size=40), model=st.sampled_from(["conservative", "probabilistic"]))
def test_books_agree_and_nothing_overfills(plan: list[tuple[Any, ...]], model: str) -> None:
    holder: list[RandomOrders] = []

    def factory(ctx: PolicyContext) -> PolicyObject:
        p = RandomOrders(None, ctx)
        p.plan = plan
        holder.append(p)
        return p

    cfg = BacktestConfig(
        queue=QueueConfig(model=model), instrument=InstrumentConfig(min_notional="0.01")
    )
    sim = Simulation(cfg, MARKET, factory)
    sim.run()
    pol = holder[0]
    fills = sim.fills_array()
    signed = np.where(fills["side"] == 1, fills["qty"], -fills["qty"])
    # The venue's position, the fills and the policy's own PositionBook agree.
    assert int(signed.sum()) == sim.position == pol.position(1)
    # No order filled beyond its quantity; its fills sum to what the OMS tracked.
    for cid in set(fills["cl_ord_id"].tolist()):
        o = pol.open_orders.get(cid)
        assert o is not None
        assert int(fills["qty"][fills["cl_ord_id"] == cid].sum()) == o.filled_qty <= o.qty
    # LIMIT_MAKER never takes; only resting orders are makers.
    makers = {
        cid
        for cid, m in zip(fills["cl_ord_id"].tolist(), fills["maker"].tolist(), strict=True)
        if m
    }
    for cid in makers:
        o = pol.open_orders.get(cid)
        assert o is not None and o.tif == GTC
    # Nothing left in flight and the venue holds only orders the policy thinks open.
    assert not sim.arrivals and not sim.reports
    assert sim.risk_rejects == 0
    assert set(sim.by_cid) <= set(pol.open_orders.open)
