"""Back-tester throughput: market events per second and peak memory.

Cases, each on data loaded once (loading timed apart from the replay):

* ``synthetic mm`` - ``examples/market_maker.py`` on the seeded synthetic market
  (``records`` level updates, ~0.1 trade per level update: 1,000,000 + ~105,000 at full
  size), the policy called on every top-of-book change;
* ``synthetic noop`` - the same market with a PolicyObject that does nothing (the
  baseline: the replay loop and the policy call alone);
* ``recording mm`` - the market maker on the spot BTCUSDT recordings 2024-08-08/09
  (skipped when ``../shared/data`` is absent).

Events are level updates plus trades. Peak memory is the process's maximum resident
set (``getrusage``) after loading and after the replay. Memory over the replay: the
resident set sampled every 4,096 rows of the event table (``/proc/self/statm``), reported
as start / end / peak of the replay and as growth per 100,000 events (least-squares slope
over the samples after the first quarter, whose start holds the one-off allocations). events/s is over the replay's
wall time, events/CPU s over its CPU time (less inflated on a shared machine). Figures
are medians over ``runs``.
"""

from __future__ import annotations

import gc
import os
import resource
import time
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from benchmarks.common import fmt_rate, machine_info, print_table, spread, write_json
from wiresens.backtest import BacktestConfig, MarketData, load_market, run
from wiresens.policy import PolicyObject

__all__ = ["SMOKE", "main"]

SMOKE: dict[str, Any] = {"records": 3_000, "runs": 1, "recordings": False}
LEVELS_PER_STEP = 11.1  # measured mean of the synthetic market (levels=20)

MM_PARAMS = {"qty": 5_000_000, "max_position": 20_000_000, "spread_bps": 2, "skew_bps": 1}


class NoopPolicy(PolicyObject):
    """Receives every delivery, does nothing: the baseline."""


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _rss_now_mb() -> float:
    """The current resident set (not the maximum), MB; 0 where /proc is absent."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE / 1e6
    except OSError:
        return 0.0


class RssSampler:
    """A ``progress`` callback that samples the resident set: (rows done, MB)."""

    def __init__(self) -> None:
        self.samples: list[tuple[int, float]] = []

    def __call__(self, done: int, total: int) -> None:
        self.samples.append((done, _rss_now_mb()))

    def figures(self, events_per_row: float) -> dict[str, float]:
        """start/end/peak MB of the replay and growth in MB per 100,000 events."""
        if not self.samples:
            return {"start_mb": 0.0, "end_mb": 0.0, "peak_mb": 0.0, "growth_mb_per_100k": 0.0}
        rows = np.array([r for r, _ in self.samples], dtype=np.float64)
        mb = np.array([m for _, m in self.samples], dtype=np.float64)
        tail = rows >= rows[-1] / 4
        slope = 0.0
        if tail.sum() >= 3 and events_per_row > 0:
            slope = float(np.polyfit(rows[tail] * events_per_row, mb[tail], 1)[0]) * 100_000
        return {
            "start_mb": float(mb[0]),
            "end_mb": float(mb[-1]),
            "peak_mb": float(mb.max()),
            "growth_mb_per_100k": slope,
        }


def _data_dir() -> Path | None:
    base = os.environ.get("WIRESENS_DATA")
    d = (
        Path(base) / "binance"
        if base
        else Path(__file__).parents[2] / "shared" / "data" / "binance"
    )
    return d if d.exists() else None


def _case(
    name: str, cfg: BacktestConfig, md: MarketData, load_s: float, runs: int, noop: bool
) -> dict[str, Any]:
    rates, secs, cpu_rates = [], [], []
    res = None
    mem: dict[str, float] = {}
    for _ in range(runs):
        gc.collect()
        sampler = RssSampler()
        res = run(
            cfg,
            md,
            policy_factory=(lambda ctx: NoopPolicy(None, ctx)) if noop else None,
            progress=sampler,
            progress_every=1 << 12,
        )
        mem = sampler.figures(res.events / max(len(md), 1))
        rates.append(res.events_per_s)
        cpu_rates.append(res.events / res.cpu_s if res.cpu_s > 0 else 0.0)
        secs.append(res.run_s)
    assert res is not None
    return {
        "case": name,
        "events": res.events,
        "level_updates": md.level_updates,
        "trades": md.trades,
        "book_calls": res.policy_calls["book"],
        "trade_calls": res.policy_calls["trade"],
        "fills": res.stats["fills"],
        "requests": res.stats["orders_sent"]
        + res.stats["replaces_sent"]
        + res.stats["cancels_sent"],
        "load_s": load_s,
        "run_s": spread(secs).median,
        "events_per_s": spread(rates).median,
        "events_per_s_spread": [min(rates), max(rates)],
        "events_per_cpu_s": spread(cpu_rates).median,
        "data_mb": md.nbytes / 1e6,
        "peak_rss_mb": _rss_mb(),
        "replay_rss_mb": mem,
    }


def main(
    *,
    json_out: str | None = None,
    runs: int = 1,
    records: int | None = None,
    quiet: bool = False,
    recordings: bool = True,
) -> dict[str, Any]:
    """Run the cases; ``records`` = synthetic level updates (default 1,000,000)."""
    n = records or 1_000_000
    steps = max(10, int(n / LEVELS_PER_STEP))
    cfg = msgspec.convert(
        {
            "seed": 7,
            "data": {"steps": steps, "mid": "100"},
            "instrument": {"min_notional": "0.001"},
            "policy": {"params": MM_PARAMS},
        },
        BacktestConfig,
    )
    cases = []
    t0 = time.perf_counter()
    md = load_market(cfg)
    load_s = time.perf_counter() - t0
    rss_load = _rss_mb()
    cases.append(_case("synthetic noop", cfg, md, load_s, runs, noop=True))
    cases.append(_case("synthetic mm", cfg, md, load_s, runs, noop=False))
    del md
    data = _data_dir() if recordings else None
    if data is not None:
        files = [data / "hftbacktest" / f"spot_btcusdt_2024080{d}.gz" for d in (8, 9)]
        if all(f.exists() for f in files):
            rcfg = msgspec.convert(
                {
                    "data": {"source": "recording", "paths": [str(f) for f in files]},
                    "latency": {"feed": "recorded"},
                    "policy": {
                        "params": {"qty": 100_000, "max_position": 1_000_000, "spread_bps": 1}
                    },
                },
                BacktestConfig,
            )
            t0 = time.perf_counter()
            rmd = load_market(rcfg)
            cases.append(
                _case("recording mm", rcfg, rmd, time.perf_counter() - t0, runs, noop=False)
            )
    doc = {
        "benchmark": "backtest",
        "machine": machine_info(),
        "runs": runs,
        "peak_rss_after_load_mb": rss_load,
        "cases": cases,
    }
    if not quiet:
        print_table(
            f"back-test replay (median of {runs})",
            [
                "case",
                "events",
                "on_book",
                "requests",
                "fills",
                "load s",
                "run s",
                "events/s",
                "events/CPU s",
                "peak RSS MB",
                "replay RSS start/end/peak MB",
                "MB per 100k ev",
            ],
            [
                [
                    c["case"],
                    f"{c['events']:,}",
                    f"{c['book_calls']:,}",
                    f"{c['requests']:,}",
                    f"{c['fills']:,}",
                    f"{c['load_s']:.2f}",
                    f"{c['run_s']:.2f}",
                    fmt_rate(c["events_per_s"]),
                    fmt_rate(c["events_per_cpu_s"]),
                    f"{c['peak_rss_mb']:.0f}",
                    "{start_mb:.0f}/{end_mb:.0f}/{peak_mb:.0f}".format(**c["replay_rss_mb"]),
                    f"{c['replay_rss_mb']['growth_mb_per_100k']:+.2f}",
                ]
                for c in cases
            ],
        )
    write_json(doc, json_out)
    return doc


if __name__ == "__main__":
    main()
