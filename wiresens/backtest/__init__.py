"""The back-tester: replay market data into a PolicyObject against a simulated venue.

Python API (notebooks)::

    from wiresens.backtest import load_config, run
    result = run(load_config("config/backtest.toml"))
    result.stats["pnl"], result.samples_frame()

Command line: ``wiresens backtest run config/backtest.toml --report out/``. See
``docs/backtest.md``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from wiresens.policy import PolicyContext, PolicyObject

from .config import BacktestConfig, load_config
from .data import (
    MarketData,
    from_csv,
    from_eventlog,
    from_recordings,
    from_synthetic,
    merge_markets,
    read_binance_csv,
)
from .engine import FILL_DTYPE, ORDER_DTYPE, SAMPLE_DTYPE, Simulation
from .parity import ParityReport, check_parity, entry_latencies, policy_factory
from .results import Result, compute_stats

__all__ = [
    "FILL_DTYPE",
    "ORDER_DTYPE",
    "SAMPLE_DTYPE",
    "BacktestConfig",
    "MarketData",
    "ParityReport",
    "Result",
    "Simulation",
    "check_parity",
    "entry_latencies",
    "from_csv",
    "from_eventlog",
    "from_recordings",
    "from_synthetic",
    "load_config",
    "load_market",
    "merge_markets",
    "policy_factory",
    "read_binance_csv",
    "run",
]


def _path(cfg: BacktestConfig, p: str) -> str:
    path = Path(p).expanduser()
    return str(path if path.is_absolute() else Path(cfg.base_dir) / path)


def load_market(cfg: BacktestConfig) -> MarketData:
    """Load ``[data]`` into numpy columns (the loading stage, timed apart from the run).

    Several ``[[instruments]]``: the synthetic source runs one market per symbol (seed
    ``seed + i``), the eventlog source reads each symbol's records (the log's symbol
    ``i + 1``); both are merged in exchange-time order. Recordings and CSV files hold
    one symbol each: use one instrument per run for them.
    """
    d = cfg.data
    insts = cfg.symbols()
    if len(insts) > 1 and d.source in ("recording", "csv"):
        from wiresens.errors import ConfigError

        raise ConfigError(
            f"data.source = {d.source!r} replays one symbol: give one [instrument] "
            "(several [[instruments]] work with the synthetic and eventlog sources)"
        )
    if d.source == "eventlog" and len(d.paths) != 1:
        from wiresens.errors import ConfigError

        raise ConfigError("data.paths: an eventlog source takes exactly one log directory")
    parts = []
    for i, inst in enumerate(insts):
        if d.source == "synthetic":
            md = from_synthetic(
                cfg.seed + i,
                d.steps,
                symbol=inst.symbol,
                mid=d.mid,
                tick=inst.tick_size,
                step=inst.step_size,
                levels=d.levels,
                interval_ms=d.interval_ms,
                start_ms=d.start_ms,
            )
        elif d.source == "recording":
            md = from_recordings([_path(cfg, p) for p in d.paths], inst.symbol, d.market)
        elif d.source == "csv":
            md = from_csv([_path(cfg, p) for p in d.paths], inst.symbol, d.csv_kind)
        else:
            md = from_eventlog(_path(cfg, d.paths[0]), i + 1, inst.symbol)
        parts.append(md)
    md = merge_markets(parts)
    return md.head(d.limit) if d.limit else md


def run(
    config: BacktestConfig,
    market: MarketData | None = None,
    progress: Callable[[int, int], None] | None = None,
    policy_factory: Callable[[PolicyContext], PolicyObject] | None = None,
    progress_every: int = 1 << 16,
    compiled: bool | None = None,
) -> Result:
    """Run one back-test; ``market`` skips loading (reuse data across runs).

    ``policy_factory(context)`` builds the policy instead of ``[policy] class`` (a
    notebook's own object); ``progress(done, total)`` is called as events are replayed,
    every ``progress_every`` rows of the event table (a power of two). ``compiled``
    picks the replay loop (see :class:`Simulation`; ``None``: the C loop when built).
    """
    t0 = time.perf_counter()
    md = market if market is not None else load_market(config)
    load_s = time.perf_counter() - t0 if market is None else 0.0
    sim = Simulation(config, md, policy_factory, compiled=compiled)
    sim.run(progress, progress_every)
    fills = sim.fills_array()
    samples = sim.samples_array()
    stats = compute_stats(fills, samples, sim.counters(), config.sample_interval_ms)
    return Result(
        fills=fills,
        samples=samples,
        stats=stats,
        events=sim.events,
        load_s=load_s,
        run_s=sim.run_s,
        cpu_s=sim.cpu_s,
        policy_calls={"book": sim.book_calls, "trade": sim.trade_calls},
        orders=sim.orders_array(),
        config=config,
        market=md,
        implementation="compiled" if sim.compiled else "python",
    )
