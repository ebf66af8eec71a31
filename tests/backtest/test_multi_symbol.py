"""Several symbols in one back-test: one timeline, one policy object, a book per symbol."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest

from wiresens.backtest import (
    BacktestConfig,
    from_synthetic,
    load_config,
    load_market,
    merge_markets,
    run,
)
from wiresens.errors import ConfigError

PARAMS = {"qty": 5_000_000, "max_position": 20_000_000, "spread_bps": 2, "skew_bps": 1}
COMPARED = ("ts", "side", "maker", "price", "qty", "fee")


def _cfg(**extra: Any) -> BacktestConfig:
    base: dict[str, Any] = {
        "seed": 3,
        "data": {"steps": 400, "mid": "100"},
        "instrument": {"min_notional": "0.001"},
        "policy": {"params": PARAMS},
    }
    base.update(extra)
    return msgspec.convert(base, BacktestConfig)


def _rows(a: np.ndarray[Any, Any], fields: tuple[str, ...]) -> list[tuple[int, ...]]:
    return [tuple(int(r[f]) for f in fields) for r in a]


def test_two_symbols_trade_as_two_independent_runs() -> None:
    """The market maker quotes each symbol on its own: the merged run's fills and
    requests per symbol equal those of a run on that symbol's market alone."""
    a = from_synthetic(11, 400, symbol="AAAUSDT", mid="100")
    b = from_synthetic(12, 400, symbol="BBBUSDT", mid="250")
    both = _cfg(
        instruments=[
            {"symbol": "AAAUSDT", "min_notional": "0.001"},
            {"symbol": "BBBUSDT", "min_notional": "0.001"},
        ]
    )
    res = run(both, merge_markets([a, b]))
    assert res.policy_calls["book"] > 0
    assert res.events == a.market_events + b.market_events
    for sym, md, name in ((1, a, "AAAUSDT"), (2, b, "BBBUSDT")):
        alone = run(_cfg(instrument={"symbol": name, "min_notional": "0.001"}), md)
        fills = res.fills[res.fills["symbol"] == sym]
        assert len(alone.fills) > 10
        assert _rows(fills, COMPARED) == _rows(alone.fills, COMPARED)
        orders = res.orders[res.orders["symbol"] == sym]
        fields = ("ts", "arrival", "kind", "side", "price", "qty")
        assert _rows(orders, fields) == _rows(alone.orders, fields)
        assert set(alone.fills["symbol"].tolist()) == {1}
    # Equity marks both positions: fees of both symbols are in it.
    assert res.stats["fees"] == pytest.approx(float(res.fills["fee"].sum()) / 1e8, rel=0, abs=1e-8)


def test_merge_keeps_time_order_and_levels() -> None:
    a = from_synthetic(1, 50, symbol="A", mid="100")
    b = from_synthetic(2, 50, symbol="B", mid="100", start_ms=1_700_000_000_050)
    m = merge_markets([a, b])
    assert len(m) == len(a) + len(b) and m.sym is not None
    assert bool((np.diff(m.ts_exch) >= 0).all())
    assert m.level_updates == a.level_updates + b.level_updates
    # Each symbol's events keep their levels: symbol 2's rows point at b's levels.
    rows = np.flatnonzero(m.sym == 2)
    got = [m.lvl_px[m.lvl_lo[i] : m.lvl_hi[i]].tolist() for i in rows]
    want = [b.lvl_px[b.lvl_lo[i] : b.lvl_hi[i]].tolist() for i in range(len(b))]
    assert got == want


def test_synthetic_source_loads_one_market_per_symbol() -> None:
    cfg = _cfg(
        instruments=[{"symbol": "AAAUSDT"}, {"symbol": "BBBUSDT"}],
        data={"steps": 30, "mid": "100"},
    )
    md = load_market(cfg)
    assert md.sym is not None and set(md.sym.tolist()) == {1, 2}
    one = from_synthetic(cfg.seed + 1, 30, symbol="BBBUSDT", mid="100")
    assert int((md.sym == 2).sum()) == len(one)


def test_config_errors_name_the_problem(tmp_path: Path) -> None:
    p = tmp_path / "bt.toml"
    p.write_text(
        '[data]\nsource = "recording"\npaths = ["x.gz"]\n'
        '[[instruments]]\nsymbol = "BTCUSDT"\n[[instruments]]\nsymbol = "ETHUSDT"\n'
    )
    cfg = load_config(p)
    assert [i.symbol for i in cfg.symbols()] == ["BTCUSDT", "ETHUSDT"]
    with pytest.raises(ConfigError, match="one symbol"):
        load_market(cfg)
    with pytest.raises(msgspec.ValidationError, match="listed twice"):
        _cfg(instruments=[{"symbol": "X"}, {"symbol": "X"}])
    two = merge_markets(
        [from_synthetic(1, 20, symbol="A", mid="100"), from_synthetic(2, 20, symbol="B")]
    )
    with pytest.raises(ValueError, match=r"\[\[instruments\]\]"):
        run(_cfg(), two)
