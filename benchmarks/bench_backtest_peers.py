"""The back-tester beside its peers: the same market maker on the same market, one run.

The seeded synthetic market of ``bench_backtest`` (1,000,000 level updates + ~105,000
trades at full size) is replayed by

* **Wiresens** (the C loop; the Python ``examples/market_maker.py`` called on every
  top-of-book change, its orders through the node's OMS, positions and pre-trade check);
* **hftbacktest** (``pip install hftbacktest``): the same quoting rule written for it, as
  its users write strategies, in a Numba-compiled function that wakes on every feed
  timestamp and order response and re-quotes on a top-of-book change (a cancel and a new
  order for a replace: its ``modify`` keeps a partly filled order's remaining quantity);
* **NautilusTrader** (``pip install nautilus_trader``): the same rule as a Python
  ``Strategy`` on ``OrderBookDeltas`` (L2), re-quoting on a top-of-book change
  (``modify_order``), its ``BacktestEngine`` with an L2 venue.

Each peer gets the market converted to its own format first (timed apart, like
Wiresens' loading), 1 ms feed latency, 1 ms order latency, 1 bp fees, a conservative
queue model where it has one. A peer that is not installed is reported as skipped, with
the command that installs it: they are not test dependencies (NautilusTrader alone is
~1 GB), and hftbacktest's Numba wants an older numpy than the project's venv may have,
so ``make bench-peers`` runs this module in a venv of its own (``.venv-peers``).

The strategies match in rule, not in every decision: the venues differ in matching
details (queue models, partial fills, what a modify does to queue position), so requests
and fills differ a little; the table gives each one's counts beside its rate.
"""

from __future__ import annotations

import gc
import math
import time
from typing import Any

import msgspec
import numpy as np

from benchmarks.bench_backtest import LEVELS_PER_STEP, MM_PARAMS
from benchmarks.common import fmt_rate, machine_info, print_table, spread, write_json
from wiresens.backtest import BacktestConfig, MarketData, load_market, run
from wiresens.backtest.data import TRADE
from wiresens.fixedpoint import SCALE

__all__ = ["SMOKE", "main"]

SMOKE: dict[str, Any] = {"records": 3_000, "runs": 1}

FEED_NS = 1_000_000
ORDER_NS = 1_000_000
FEE = 0.0001  # 1 bp maker and taker
TICK = 0.01
LOT = 0.00001


def _config(records: int) -> BacktestConfig:
    steps = max(10, int(records / LEVELS_PER_STEP))
    return msgspec.convert(
        {
            "seed": 7,
            "data": {"steps": steps, "mid": "100"},
            "instrument": {"min_notional": "0.001"},
            "latency": {"feed_ns": FEED_NS, "entry_ns": ORDER_NS, "response_ns": ORDER_NS},
            "policy": {"params": MM_PARAMS},
        },
        BacktestConfig,
    )


def _wiresens(cfg: BacktestConfig, md: MarketData, runs: int) -> dict[str, Any]:
    rates, secs = [], []
    res = None
    for _ in range(runs):
        gc.collect()
        res = run(cfg, md)
        rates.append(res.events_per_s)
        secs.append(res.run_s)
    assert res is not None
    return {
        "peer": f"wiresens ({res.implementation})",
        "version": "this checkout",
        "events": res.events,
        "strategy_calls": res.policy_calls["book"],
        "requests": res.stats["orders_sent"]
        + res.stats["replaces_sent"]
        + res.stats["cancels_sent"],
        "fills": res.stats["fills"],
        "convert_s": 0.0,
        "run_s": spread(secs).median,
        "events_per_s": spread(rates).median,
        "events_per_s_spread": [min(rates), max(rates)],
    }


def _row(
    peer: str, version: str, events: int, convert_s: float, timed: list[tuple[float, int, int, int]]
) -> dict[str, Any]:
    """One table row from the runs' (seconds, strategy calls, requests, fills); the counts
    are the last run's (every run makes the same)."""
    secs = [t[0] for t in timed]
    rates = [events / s if s > 0 else 0.0 for s in secs]
    _, calls, requests, fills = timed[-1]
    return {
        "peer": peer,
        "version": version,
        "events": events,
        "strategy_calls": calls,
        "requests": requests,
        "fills": fills,
        "convert_s": convert_s,
        "run_s": spread(secs).median,
        "events_per_s": spread(rates).median,
        "events_per_s_spread": [min(rates), max(rates)],
    }


# -- hftbacktest ---------------------------------------------------------------------------


def _hbt_events(md: MarketData) -> np.ndarray[Any, Any]:
    """The market as hftbacktest events: one row per level update or trade, in order."""
    import hftbacktest as hb
    from hftbacktest.types import event_dtype

    if int(np.count_nonzero(md.kind[1:] == 2)):
        raise ValueError("book resets after the first event are not converted")
    n = len(md)
    book = md.kind != TRADE
    counts = np.where(book, md.lvl_hi - md.lvl_lo, 1).astype(np.int64)
    parent = np.repeat(np.arange(n), counts)
    starts = np.cumsum(counts) - counts
    within = np.arange(int(counts.sum())) - np.repeat(starts, counts)
    is_book = book[parent]
    lvl = np.where(is_book, md.lvl_lo[parent] + within, 0)
    out = np.zeros(len(parent), dtype=event_dtype)
    local = md.ts_exch + FEED_NS
    np.maximum.accumulate(local, out=local)
    out["exch_ts"] = md.ts_exch[parent]
    out["local_ts"] = local[parent]
    both = hb.EXCH_EVENT | hb.LOCAL_EVENT
    side = md.lvl_side[lvl]
    depth_ev = np.where(side == 1, hb.DEPTH_EVENT | hb.BUY_EVENT, hb.DEPTH_EVENT | hb.SELL_EVENT)
    # A trade's side is its taker's: the buyer was the maker when the seller took.
    trade_ev = np.where(
        md.c[parent] != 0, hb.TRADE_EVENT | hb.SELL_EVENT, hb.TRADE_EVENT | hb.BUY_EVENT
    )
    out["ev"] = np.where(is_book, depth_ev, trade_ev) | both
    out["px"] = np.where(is_book, md.lvl_px[lvl], md.a[parent]) / SCALE
    out["qty"] = np.where(is_book, md.lvl_qty[lvl], md.b[parent]) / SCALE
    return out


_HBT_ALGOS: dict[bool, Any] = {}


def _hbt_algo(compiled: bool) -> Any:
    """The market maker of ``examples/market_maker.py`` written for hftbacktest: compiled
    by Numba, or the same functions as plain Python."""
    if compiled in _HBT_ALGOS:
        return _HBT_ALGOS[compiled]
    from hftbacktest import GTC, LIMIT
    from numba import njit

    def quote_side(
        hbt: Any, orders: Any, oid: int, next_id: int, buy: bool, px: float, qty: float, tick: float
    ) -> tuple[int, int, int]:
        """One side's pass: (its order id, the next free id, requests sent)."""
        if oid != 0 and orders.__contains__(oid):
            o = orders.get(oid)
            if not o.cancellable:
                return oid, next_id, 0  # a request is in flight for it
            if qty < 1e-9:
                hbt.cancel(0, oid, False)
                return oid, next_id, 1
            if abs(o.price - px) <= tick / 2 and abs(o.leaves_qty - qty) <= 1e-9:
                return oid, next_id, 0
            # Cancel-replace, as Binance's (one request in Wiresens): hftbacktest's modify
            # keeps a partly filled order's leaves, so the size would never reach the target.
            hbt.cancel(0, oid, False)
        elif qty < 1e-9:
            return oid, next_id, 0
        if buy:
            hbt.submit_buy_order(0, next_id, px, qty, GTC, LIMIT, False)
        else:
            hbt.submit_sell_order(0, next_id, px, qty, GTC, LIMIT, False)
        return next_id, next_id + 1, 1

    side = njit(quote_side) if compiled else quote_side

    def algo(hbt: Any, qty: float, max_pos: float, spread_bps: float, skew_bps: float) -> Any:
        tick = hbt.depth(0).tick_size
        last_bid = 0.0
        last_ask = 0.0
        bid_id = 0
        ask_id = 0
        next_id = 1
        calls = 0
        requests = 0
        while True:
            r = hbt.wait_next_feed(True, 3_600_000_000_000)
            if r == 1:
                break
            if r != 2 and r != 3:
                continue
            depth = hbt.depth(0)
            bb = depth.best_bid
            ba = depth.best_ask
            if r == 2:
                if bb == last_bid and ba == last_ask:
                    continue
                last_bid = bb
                last_ask = ba
                calls += 1
            if not (bb > 0.0 and ba > bb and ba < 1e15):
                continue
            hbt.clear_inactive_orders(0)
            pos = hbt.position(0)
            mid = (bb + ba) / 2.0
            half = mid * spread_bps / 20_000.0
            skew = mid * skew_bps / 10_000.0 * pos / max_pos
            bid_px = min(math.floor((mid - half - skew) / tick + 1e-9) * tick, ba - tick)
            ask_px = max(math.ceil((mid + half - skew) / tick - 1e-9) * tick, bb + tick)
            orders = hbt.orders(0)
            bid_id, next_id, sent = side(
                hbt, orders, bid_id, next_id, True, bid_px, min(qty, max_pos - pos), tick
            )
            requests += sent
            ask_id, next_id, sent = side(
                hbt, orders, ask_id, next_id, False, ask_px, min(qty, max_pos + pos), tick
            )
            requests += sent
        return calls, requests

    _HBT_ALGOS[compiled] = njit(algo) if compiled else algo
    return _HBT_ALGOS[compiled]


def _hftbacktest(md: MarketData, events: int, runs: int, compiled: bool = True) -> dict[str, Any]:
    import hftbacktest as hb

    t0 = time.perf_counter()
    data = _hbt_events(md)
    convert_s = time.perf_counter() - t0
    algo = _hbt_algo(compiled)
    p = MM_PARAMS
    args = (
        p["qty"] / SCALE,
        p["max_position"] / SCALE,
        float(p["spread_bps"]),
        float(p["skew_bps"]),
    )

    def once() -> tuple[float, int, int, int]:
        gc.collect()
        asset = (
            hb.BacktestAsset()
            .data(data)
            .linear_asset(1.0)
            .constant_order_latency(ORDER_NS, ORDER_NS)
            .risk_adverse_queue_model()
            .partial_fill_exchange()
            .trading_value_fee_model(FEE, FEE)
            .tick_size(TICK)
            .lot_size(LOT)
        )
        hbt = hb.HashMapMarketDepthBacktest([asset])
        t = time.perf_counter()
        calls, requests = algo(hbt, *args)
        secs = time.perf_counter() - t
        fills = int(hbt.state_values(0).num_trades)
        hbt.close()
        return secs, int(calls), int(requests), fills

    # The first call compiles (Numba: the strategy, or the bindings a plain-Python
    # strategy calls): run it once on a short prefix, untimed.
    saved = data
    data = data[: min(len(data), 5_000)]
    once()
    data = saved
    return _row(
        "hftbacktest (Numba strategy)",
        getattr(hb, "__version__", "?"),
        events,
        convert_s,
        [once() for _ in range(runs)],
    )


def _hftbacktest_python(md: MarketData, events: int, runs: int) -> dict[str, Any]:
    """The same hftbacktest strategy not compiled: a Python strategy, as the Wiresens
    PolicyObject is."""
    row = _hftbacktest(md, events, runs, compiled=False)
    row["peer"] = "hftbacktest (same strategy, plain Python)"
    return row


# -- NautilusTrader ------------------------------------------------------------------------


def _nautilus_data(md: MarketData, instrument: Any) -> list[Any]:
    """The market as NautilusTrader OrderBookDelta (one per level, F_LAST closing each
    message; a CLEAR before a reset's levels) and TradeTick objects."""
    from nautilus_trader.model.data import OrderBookDelta, TradeTick
    from nautilus_trader.model.enums import AggressorSide, BookAction, OrderSide
    from nautilus_trader.model.identifiers import TradeId
    from nautilus_trader.model.objects import FIXED_SCALAR

    up = int(FIXED_SCALAR) // SCALE  # our 1e8 fixed point to theirs
    iid = instrument.id
    pp, sp = instrument.price_precision, instrument.size_precision
    f_last = 128
    out: list[Any] = []
    local = md.ts_exch + FEED_NS
    np.maximum.accumulate(local, out=local)
    E, L, K = md.ts_exch.tolist(), local.tolist(), md.kind.tolist()
    A, B, C, D = md.a.tolist(), md.b.tolist(), md.c.tolist(), md.d.tolist()
    LO, HI = md.lvl_lo.tolist(), md.lvl_hi.tolist()
    PX, QT, SD = md.lvl_px.tolist(), md.lvl_qty.tolist(), md.lvl_side.tolist()
    add, upd, dele, clear = BookAction.ADD, BookAction.UPDATE, BookAction.DELETE, BookAction.CLEAR
    buy, sell = OrderSide.BUY, OrderSide.SELL
    raw = OrderBookDelta.from_raw
    seq = 0
    for i in range(len(E)):
        te, tl = E[i], L[i]
        if K[i] == TRADE:
            side = AggressorSide.SELLER if C[i] else AggressorSide.BUYER
            out.append(
                TradeTick.from_raw(
                    iid, A[i] * up, pp, B[i] * up, sp, side, TradeId(str(D[i])), te, tl
                )
            )
            continue
        lo, hi = LO[i], HI[i]
        reset = K[i] == 2
        if reset:
            out.append(raw(iid, clear, 0, 0, pp, 0, sp, 0, f_last if lo == hi else 0, seq, te, tl))
        for j in range(lo, hi):
            q = QT[j]
            act = (add if reset else upd) if q else dele
            flag = f_last if j == hi - 1 else 0
            seq += 1
            out.append(
                raw(
                    iid,
                    act,
                    buy if SD[j] == 1 else sell,
                    PX[j] * up,
                    pp,
                    q * up,
                    sp,
                    0,
                    flag,
                    seq,
                    te,
                    tl,
                )
            )
    return out


def _nautilus_strategy_class() -> Any:
    from decimal import Decimal

    from nautilus_trader.model.enums import BookType, OrderSide, OrderStatus, TimeInForce
    from nautilus_trader.model.objects import Price, Quantity
    from nautilus_trader.trading.strategy import Strategy

    working = (OrderStatus.ACCEPTED, OrderStatus.PARTIALLY_FILLED)

    class NautilusMarketMaker(Strategy):  # type: ignore[misc,unused-ignore]
        """examples/market_maker.py's rule as a NautilusTrader Strategy."""

        def __init__(self, instrument: Any) -> None:
            super().__init__()
            self.instrument = instrument
            self.iid = instrument.id
            p = MM_PARAMS
            self.qty = Decimal(p["qty"]) / SCALE
            self.max_pos = Decimal(p["max_position"]) / SCALE
            self.tick = Decimal("0.01")
            self.last = (None, None)
            self.bid: Any = None
            self.ask: Any = None
            self.calls = 0
            self.requests = 0
            self.fills = 0

        def on_start(self) -> None:
            self.subscribe_order_book_deltas(self.iid, BookType.L2_MBP)

        def on_order_book_deltas(self, deltas: Any) -> None:
            book = self.cache.order_book(self.iid)
            top = (book.best_bid_price(), book.best_ask_price())
            if top == self.last:
                return
            self.last = top
            self.calls += 1
            self._quote()

        def on_order_filled(self, event: Any) -> None:
            self.fills += 1
            self._quote()

        def on_order_canceled(self, event: Any) -> None:
            self._quote()

        def _side(self, order: Any, side: Any, px: Decimal, qty: Decimal) -> Any:
            if order is not None and order.is_closed:
                order = None
            if order is None:
                if qty <= 0:
                    return None
                o = self.order_factory.limit(
                    self.iid, side, Quantity(qty, 6), Price(px, 2), TimeInForce.GTC
                )
                self.submit_order(o)
                self.requests += 1
                return o
            if order.status not in working:
                return order  # a request is in flight for it
            if qty <= 0:
                self.cancel_order(order)
                self.requests += 1
                return order
            if (
                abs(order.price.as_decimal() - px) >= self.tick
                or order.leaves_qty.as_decimal() != qty
            ):
                # Cancel-replace (one request in Wiresens).
                self.cancel_order(order)
                o = self.order_factory.limit(
                    self.iid, side, Quantity(qty, 6), Price(px, 2), TimeInForce.GTC
                )
                self.submit_order(o)
                self.requests += 1
                return o
            return order

        def _quote(self) -> None:
            bb, ba = self.last
            if bb is None or ba is None:
                return
            bid, ask = bb.as_decimal(), ba.as_decimal()
            if ask <= bid:
                return
            pos = self.portfolio.net_position(self.iid)
            p = MM_PARAMS
            mid = (bid + ask) / 2
            half = mid * p["spread_bps"] / 20_000
            skew = mid * p["skew_bps"] / 10_000 * pos / self.max_pos
            tick = self.tick
            bid_px = min(
                ((mid - half - skew) / tick).to_integral_value("ROUND_FLOOR") * tick, ask - tick
            )
            ask_px = max(
                ((mid + half - skew) / tick).to_integral_value("ROUND_CEILING") * tick, bid + tick
            )
            bid_qty = min(self.qty, self.max_pos - pos)
            ask_qty = min(self.qty, self.max_pos + pos)
            self.bid = self._side(self.bid, OrderSide.BUY, bid_px, bid_qty)
            self.ask = self._side(self.ask, OrderSide.SELL, ask_px, ask_qty)

    return NautilusMarketMaker


def _nautilus(md: MarketData, events: int, runs: int) -> dict[str, Any]:
    import nautilus_trader
    from nautilus_trader.backtest.engine import BacktestEngine, BacktestEngineConfig
    from nautilus_trader.backtest.models import LatencyModel
    from nautilus_trader.config import DataEngineConfig, LoggingConfig
    from nautilus_trader.model.currencies import BTC, USDT
    from nautilus_trader.model.enums import AccountType, BookType, OmsType
    from nautilus_trader.model.identifiers import Venue
    from nautilus_trader.model.instruments import CurrencyPair
    from nautilus_trader.model.objects import Money
    from nautilus_trader.test_kit.providers import TestInstrumentProvider

    spec = CurrencyPair.to_dict(TestInstrumentProvider.btcusdt_binance())
    spec.update({"min_notional": None, "maker_fee": str(FEE), "taker_fee": str(FEE)})
    instrument = CurrencyPair.from_dict(spec)
    t0 = time.perf_counter()
    data = _nautilus_data(md, instrument)
    convert_s = time.perf_counter() - t0
    cls = _nautilus_strategy_class()
    timed: list[tuple[float, int, int, int]] = []
    for _ in range(runs):
        gc.collect()
        engine = BacktestEngine(
            BacktestEngineConfig(
                logging=LoggingConfig(log_level="ERROR", bypass_logging=True),
                # One book message applied whole (F_LAST), as the other two replay it.
                data_engine=DataEngineConfig(buffer_deltas=True),
            )
        )
        engine.add_venue(
            venue=Venue("BINANCE"),
            oms_type=OmsType.NETTING,
            account_type=AccountType.CASH,
            starting_balances=[Money(10_000_000, USDT), Money(1_000, BTC)],
            book_type=BookType.L2_MBP,
            latency_model=LatencyModel(base_latency_nanos=ORDER_NS),
        )
        engine.add_instrument(instrument)
        engine.add_data(data, sort=False)
        strat = cls(instrument)
        engine.add_strategy(strat)
        t = time.perf_counter()
        engine.run()
        timed.append((time.perf_counter() - t, strat.calls, strat.requests, strat.fills))
        engine.dispose()
    return _row(
        "NautilusTrader (Python strategy)", nautilus_trader.__version__, events, convert_s, timed
    )


# -- the table -----------------------------------------------------------------------------

PEERS = {
    "hftbacktest": ("hftbacktest", "make bench-peers, or pip install hftbacktest", _hftbacktest),
    "hftbacktest-python": (
        "hftbacktest",
        "make bench-peers, or pip install hftbacktest",
        _hftbacktest_python,
    ),
    "nautilus": ("nautilus_trader", "make bench-peers, or pip install nautilus_trader", _nautilus),
}


def _available(module: str) -> str | None:
    """None when importable, else why not."""
    try:
        __import__(module)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def main(
    *,
    json_out: str | None = None,
    runs: int = 1,
    records: int | None = None,
    quiet: bool = False,
    peers: tuple[str, ...] = ("hftbacktest", "hftbacktest-python", "nautilus"),
) -> dict[str, Any]:
    """Run Wiresens and every installed peer on one synthetic market (``records`` level
    updates, default 1,000,000)."""
    cfg = _config(records or 1_000_000)
    t0 = time.perf_counter()
    md = load_market(cfg)
    load_s = time.perf_counter() - t0
    rows = [_wiresens(cfg, md, runs)]
    rows[0]["convert_s"] = load_s
    ours = rows[0]["events_per_s"]
    skipped: dict[str, str] = {}
    for name in peers:
        if name not in PEERS:
            raise ValueError(f"unknown peer {name!r}; choose from {', '.join(PEERS)}")
        module, install, bench = PEERS[name]
        why = _available(module)
        if why is not None:
            skipped[name] = f"not installed ({why}): {install}"
            continue
        rows.append(bench(md, rows[0]["events"], runs))
    for r in rows:
        r["wiresens_ratio"] = ours / r["events_per_s"] if r["events_per_s"] else None
    doc = {
        "benchmark": "backtest_peers",
        "machine": machine_info(),
        "runs": runs,
        "market": {"level_updates": md.level_updates, "trades": md.trades},
        "cases": rows,
        "skipped": skipped,
    }
    if not quiet:
        print_table(
            f"market maker, same synthetic market (median of {runs}; conversion apart)",
            [
                "back-tester",
                "version",
                "events",
                "strategy calls",
                "requests",
                "fills",
                "load/convert s",
                "run s",
                "events/s",
                "wiresens / it",
            ],
            [
                [
                    r["peer"],
                    r["version"],
                    f"{r['events']:,}",
                    f"{r['strategy_calls']:,}",
                    f"{r['requests']:,}",
                    f"{r['fills']:,}",
                    f"{r['convert_s']:.2f}",
                    f"{r['run_s']:.2f}",
                    fmt_rate(r["events_per_s"]),
                    f"{r['wiresens_ratio']:.2f}x" if r["wiresens_ratio"] else "-",
                ]
                for r in rows
            ],
        )
        for name, why in skipped.items():
            print(f"skipped {name}: {why}")
    write_json(doc, json_out)
    return doc


if __name__ == "__main__":
    main()
