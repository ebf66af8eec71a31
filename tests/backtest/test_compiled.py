"""The C loop (``wiresens.backtest._simcore``) against the Python loop, its reference.

Both must give bit-identical results: the same fills, requests and equity samples
byte for byte, the same counters and positions, the same reports delivered to the
policy at the same simulated times, and the same orders left resting. Random order
flow (hypothesis) covers every order type, cancels, replaces, timers and trades, both
queue models and every entry-latency model; the market maker covers a long run; the
recordings in ``../shared/data`` cover a real book with gaps and resets.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wiresens.backtest import BacktestConfig, Simulation, from_synthetic, merge_markets, run
from wiresens.backtest import engine as engine_mod
from wiresens.backtest.data import MarketData, from_recordings
from wiresens.fixedpoint import SCALE
from wiresens.policy import (
    FOK,
    GTC,
    IOC,
    LIMIT,
    LIMIT_MAKER,
    MARKET,
    BookView,
    PolicyContext,
    PolicyObject,
)

if not engine_mod.COMPILED:
    pytest.skip(
        "the C back-test loop is not built (or WIRESENS_PURE_PYTHON is set): reinstall with "
        "`pip install -e .` to test it",
        allow_module_level=True,
    )

TICK = SCALE // 100
LOT = SCALE // 1000
MM = {"qty": 5_000_000, "max_position": 20_000_000, "spread_bps": 2, "skew_bps": 1}

ONE = from_synthetic(11, 150, mid="100")
TWO = merge_markets(
    [
        from_synthetic(21, 120, symbol="AAAUSDT", mid="100"),
        from_synthetic(22, 120, symbol="BBBUSDT", mid="250"),
    ]
)

action = st.tuples(
    st.sampled_from(["buy", "sell", "cancel", "replace", "none"]),
    st.integers(-4, 4),  # ticks from the touch (negative: crossing)
    st.integers(1, 40),  # lots of 0.001
    st.sampled_from([(GTC, LIMIT), (IOC, LIMIT), (FOK, LIMIT), (GTC, LIMIT_MAKER), (GTC, MARKET)]),
    st.integers(0, 5),  # which earlier order a cancel or replace names (from the end)
)


class Recorder(PolicyObject):
    """Acts on book, trade and timer deliveries from a plan; records all it is told."""

    plan: list[tuple[Any, ...]]

    def on_start(self) -> None:
        self.k = 0
        self.ids: list[int] = []
        self.seen: list[tuple[int, ...]] = []

    def _act(self, symbol: int, book: BookView | None) -> None:
        if self.k >= len(self.plan):
            return
        what, ticks, lots, (tif, otype), back = self.plan[self.k]
        self.k += 1
        bid = book.bid_px if book is not None else 100 * SCALE
        ask = book.ask_px if book is not None else 100 * SCALE + TICK
        if what == "buy" and ask > 0:
            self.ids.append(self.buy(symbol, lots * LOT, ask - ticks * TICK, tif, otype))
        elif what == "sell" and bid > 0:
            self.ids.append(self.sell(symbol, lots * LOT, bid + ticks * TICK, tif, otype))
        elif what in ("cancel", "replace") and self.ids:
            cid = self.ids[-1 - back % len(self.ids)]
            if what == "cancel":
                self.cancel(cid)
            else:
                order = self.open_orders.open.get(cid)
                if order is not None and bid > 0:
                    px = bid - ticks * TICK if order.side == 1 else ask + ticks * TICK
                    self.ids.append(self.replace(cid, lots * LOT, max(px, TICK)))

    def on_book(self, symbol: int, book: BookView) -> None:
        self.seen.append((0, self.clock(), symbol, book.bid_px, book.bid_qty, book.ask_px))
        self._act(symbol, book)

    def on_trade(self, symbol: int, trade: Any) -> None:
        self.seen.append((1, self.clock(), symbol, int(trade["price"]), int(trade["qty"])))

    def on_timer(self, now_ns: int) -> None:
        self.seen.append((2, self.clock(), now_ns))
        self._act(1, None)

    def on_execution(self, report: Any) -> None:
        self.seen.append(
            (
                3,
                self.clock(),
                int(report["cl_ord_id"]),
                int(report["symbol"]),
                int(report["status"]),
                int(report["exec_type"]),
                int(report["last_qty"]),
                int(report["last_px"]),
                int(report["cum_qty"]),
                int(report["commission"]),
                int(report["error_code"]),
                int(report["ts_exch"]),
            )
        )

    def on_stop(self) -> None:
        self.cancel_all()


def _both(cfg: BacktestConfig, md: MarketData, plan: list[tuple[Any, ...]] | None) -> None:
    """Run the Python and the C loop; assert every observable result is identical."""
    sims: list[Simulation] = []
    pols: list[PolicyObject] = []

    def factory(ctx: PolicyContext) -> PolicyObject:
        p = Recorder(None, ctx)
        p.plan = plan or []
        pols.append(p)
        return p

    for compiled in (False, True):
        sim = Simulation(cfg, md, factory if plan is not None else None, compiled=compiled)
        if plan is None:
            pols.append(sim.policy)
        sim.run()
        sims.append(sim)
    py, c = sims
    assert py.compiled is False and c.compiled is True
    for name in ("fills_array", "orders_array", "samples_array"):
        a, b = getattr(py, name)(), getattr(c, name)()
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), name
    assert py.counters() == c.counters()
    for key in ("pos", "mids", "cash_raw", "book_calls", "trade_calls", "seq", "exch_seq"):
        assert getattr(py, key) == getattr(c, key), key
    assert [
        (o.cid, o.side, o.price, o.qty, o.leaves, o.cum_qty, o.cum_quote, o.ahead, o.sym)
        for o in py.by_cid.values()
    ] == [
        (o.cid, o.side, o.price, o.qty, o.leaves, o.cum_qty, o.cum_quote, o.ahead, o.sym)
        for o in c.by_cid.values()
    ]
    assert not c.arrivals and not c.reports
    pp, pc = pols
    if plan is not None:
        assert isinstance(pp, Recorder) and isinstance(pc, Recorder)
        assert pp.seen == pc.seen
        assert pp.ids == pc.ids
    assert pp.open_orders.outcomes == pc.open_orders.outcomes
    assert pp.position(1) == pc.position(1)


LATENCIES = [
    {"entry": "constant", "entry_ns": 1_000_000},
    {"entry": "lognormal", "entry_ns": 1_000_000, "sigma": 0.5},
    {"entry": "normal", "entry_ns": 2_000_000, "entry_jitter_ns": 1_500_000},
    {"entry": "recorded", "entry_recorded_ns": [300_000, 5_000_000, 100, 2_000_000]},
    {"entry": "constant", "entry_ns": 0, "response_ns": 0, "feed_ns": 0},
]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    plan=st.lists(action, max_size=60),
    model=st.sampled_from(["conservative", "probabilistic"]),
    power=st.sampled_from([0.5, 1.0, 2.0, 3.0]),
    latency=st.sampled_from(LATENCIES),
    timer=st.sampled_from([0, 250, 1000]),
    two=st.booleans(),
    maker_bps=st.sampled_from([1.0, -0.5, 0.0, 2.5]),
)
def test_random_order_flow_gives_identical_results(
    plan: list[tuple[Any, ...]],
    model: str,
    power: float,
    latency: dict[str, Any],
    timer: int,
    two: bool,
    maker_bps: float,
) -> None:
    instruments = (
        {
            "instruments": [
                {"symbol": "AAAUSDT", "min_notional": "0.01"},
                {"symbol": "BBBUSDT", "min_notional": "0.01"},
            ]
        }
        if two
        else {"instrument": {"min_notional": "0.01"}}
    )
    cfg = msgspec.convert(
        {
            "seed": 5,
            "sample_interval_ms": 700,
            "queue": {"model": model, "power": power},
            "latency": latency,
            "fees": {"maker_bps": maker_bps, "taker_bps": 4.0},
            "policy": {"timer_interval_ms": timer},
            **instruments,
        },
        BacktestConfig,
    )
    _both(cfg, TWO if two else ONE, plan)


@pytest.mark.parametrize("model", ["conservative", "probabilistic"])
def test_market_maker_long_run_is_identical(model: str) -> None:
    cfg = msgspec.convert(
        {
            "seed": 9,
            "data": {"steps": 3_000, "mid": "100"},
            "latency": {"entry": "lognormal", "sigma": 0.3},
            "queue": {"model": model},
            "instrument": {"min_notional": "0.001"},
            "policy": {"params": MM},
        },
        BacktestConfig,
    )
    md = from_synthetic(9, 3_000, mid="100")
    _both(cfg, md, None)


def _recordings() -> list[Path] | None:
    base = os.environ.get("WIRESENS_DATA")
    root = Path(base) if base else Path(__file__).parents[3] / "shared" / "data"
    files = [root / "binance" / "hftbacktest" / f"spot_btcusdt_2024080{d}.gz" for d in (8, 9)]
    return files if all(f.exists() for f in files) else None


def test_recorded_market_is_identical() -> None:
    """The spot BTCUSDT recordings: a real book, resets, recorded feed latency."""
    files = _recordings()
    if files is None:
        pytest.skip("../shared/data/binance/hftbacktest recordings absent (or $WIRESENS_DATA)")
    md = from_recordings([str(f) for f in files], "BTCUSDT")
    cfg = msgspec.convert(
        {
            "latency": {"feed": "recorded"},
            "queue": {"model": "probabilistic"},
            "policy": {"params": {"qty": 100_000, "max_position": 1_000_000, "spread_bps": 1}},
        },
        BacktestConfig,
    )
    _both(cfg, md.head(60_000), None)


class Raises(PolicyObject):
    def on_book(self, symbol: int, book: BookView) -> None:
        if book.bid_px:
            raise RuntimeError("a bug in the policy")


def test_a_policy_exception_leaves_the_compiled_loop() -> None:
    cfg = BacktestConfig()
    sim = Simulation(cfg, ONE, lambda ctx: Raises(None, ctx), compiled=True)
    with pytest.raises(RuntimeError, match="a bug in the policy"):
        sim.run()


def test_run_picks_the_loop_and_says_which(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = msgspec.convert(
        {"data": {"steps": 200, "mid": "100"}, "policy": {"params": MM}}, BacktestConfig
    )
    a = run(cfg, compiled=False)
    b = run(cfg, compiled=True)
    assert a.stats == b.stats and a.fills.tobytes() == b.fills.tobytes()
    assert (a.implementation, b.implementation) == ("python", "compiled")
    monkeypatch.setattr(engine_mod, "COMPILED", False)
    with pytest.raises(ValueError, match=r"pip install -e \."):
        Simulation(cfg, ONE, compiled=True)


def test_pure_python_environment_runs_the_python_loop() -> None:
    code = (
        "import msgspec, json;"
        "from wiresens.backtest import engine, BacktestConfig, run;"
        "cfg = msgspec.convert({'data': {'steps': 100, 'mid': '100'}, 'policy': "
        "{'params': {'qty': 5000000, 'max_position': 20000000}}}, BacktestConfig);"
        "r = run(cfg);"
        "print(json.dumps([engine.IMPLEMENTATION, r.implementation]))"
    )
    env = dict(os.environ, WIRESENS_PURE_PYTHON="1")
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == '["python", "python"]'


def test_bad_market_columns_are_refused_not_read() -> None:
    """A level range past the level columns is an error, never an out-of-bounds read."""
    md = from_synthetic(3, 20, mid="100")
    bad = MarketData(
        md.symbol,
        md.ts_exch,
        md.ts_recv,
        md.kind,
        md.a,
        md.b,
        md.c,
        md.d,
        md.lvl_lo,
        md.lvl_hi + 1_000,
        md.lvl_px,
        md.lvl_qty,
        md.lvl_side,
    )
    sim = Simulation(BacktestConfig(), bad, lambda ctx: Raises(None, ctx), compiled=True)
    with pytest.raises(ValueError, match="level range out of bounds"):
        sim.run()
    assert np.all(md.lvl_hi <= len(md.lvl_px))


def test_the_random_flow_exercises_every_path() -> None:
    """A fixed plan of the kind hypothesis draws reaches fills (maker and taker), partial
    fills, cancels, replaces, venue rejects, expiries, timers and trades: the comparison
    above is not comparing empty runs."""
    plan = [
        ("buy", 0, 5, (GTC, LIMIT), 0),
        ("sell", -1, 30, (IOC, LIMIT), 0),
        ("buy", 2, 20, (GTC, LIMIT), 0),
        ("replace", 1, 10, (GTC, LIMIT), 0),
        ("buy", -2, 40, (FOK, LIMIT), 0),
        ("sell", -1, 3, (GTC, LIMIT_MAKER), 0),
        ("sell", 0, 3, (GTC, MARKET), 0),
        ("cancel", 0, 1, (GTC, LIMIT), 1),
        ("cancel", 0, 1, (GTC, LIMIT), 4),
    ] * 8
    holder: list[Recorder] = []

    def factory(ctx: PolicyContext) -> PolicyObject:
        p = Recorder(None, ctx)
        p.plan = plan
        holder.append(p)
        return p

    cfg = msgspec.convert(
        {"instrument": {"min_notional": "0.01"}, "policy": {"timer_interval_ms": 500}},
        BacktestConfig,
    )
    sim = Simulation(cfg, ONE, factory, compiled=True)
    sim.run()
    seen = holder[0].seen
    kinds = {s[0] for s in seen}
    statuses = {s[4] for s in seen if s[0] == 3}
    fills = sim.fills_array()
    assert kinds == {0, 1, 2, 3}
    assert set(fills["maker"].tolist()) == {0, 1}
    assert {1, 2, 3, 4, 6, 7} <= statuses  # NEW, PARTIAL, FILLED, CANCELED, REJECTED, EXPIRED
    assert sim.cancels_sent and sim.replaces_sent and sim.venue_rejects
