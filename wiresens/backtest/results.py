"""What a back-test leaves: fills, equity samples, counters, and the statistics.

Statistics (fixed-point values converted to floats for reading only):

* ``pnl`` - final equity: cash + position x last mid - fees (quote); ``fees`` their sum;
* ``sharpe`` / ``sortino`` - mean over standard deviation (Sortino: over the downside
  deviation, returns below 0) of the *equity changes per sampling interval*
  (``sample_interval_ms``), not annualised; ``per`` names the interval;
* ``max_drawdown`` - largest fall of equity from a running peak (quote);
* ``turnover`` - traded notional (quote); ``fill_ratio`` - filled quantity over the
  quantity of orders sent (new + replace); ``order_to_trade`` - requests (new, replace,
  cancel) per fill; ``inventory_min/max`` - position range (base).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from wiresens.fixedpoint import SCALE

__all__ = ["Result", "compute_stats"]


def compute_stats(
    fills: np.ndarray[Any, Any],
    samples: np.ndarray[Any, Any],
    counters: dict[str, int],
    sample_interval_ms: int,
) -> dict[str, Any]:
    """The statistics of one run (see the module doc)."""
    eq = samples["equity"].astype(np.float64) / SCALE if len(samples) else np.zeros(0)
    rets = np.diff(eq)
    sharpe = sortino = 0.0
    if len(rets) > 1:
        sd = float(rets.std(ddof=1))
        mean = float(rets.mean())
        sharpe = mean / sd if sd > 0 else 0.0
        down = rets[rets < 0]
        dd = math.sqrt(float((down**2).sum()) / len(rets)) if len(down) else 0.0
        sortino = mean / dd if dd > 0 else 0.0
    max_dd = float((np.maximum.accumulate(eq) - eq).max()) if len(eq) else 0.0
    pos = samples["position"] if len(samples) else np.zeros(1, np.int64)
    filled = int(fills["qty"].sum()) if len(fills) else 0
    sent_qty = counters.get("sent_qty", 0)
    requests = counters["orders_sent"] + counters["replaces_sent"] + counters["cancels_sent"]
    n_fills = len(fills)
    return {
        "pnl": float(eq[-1]) if len(eq) else 0.0,
        "fees": counters["fees"] / SCALE,
        "sharpe": sharpe,
        "sortino": sortino,
        "per": f"{sample_interval_ms} ms",
        "max_drawdown": max_dd,
        "turnover": counters["volume"] / SCALE,
        "fills": n_fills,
        "maker_fills": int(fills["maker"].sum()) if n_fills else 0,
        "filled_qty": filled / SCALE,
        "fill_ratio": filled / sent_qty if sent_qty else 0.0,
        "orders_sent": counters["orders_sent"],
        "replaces_sent": counters["replaces_sent"],
        "cancels_sent": counters["cancels_sent"],
        "order_to_trade": requests / n_fills if n_fills else float("inf") if requests else 0.0,
        "risk_rejects": counters["risk_rejects"],
        "venue_rejects": counters["venue_rejects"],
        "inventory_min": int(pos.min()) / SCALE,
        "inventory_max": int(pos.max()) / SCALE,
        "final_position": int(pos[-1]) / SCALE,
    }


@dataclass
class Result:
    """A finished back-test: arrays (numpy structured), statistics and timings.

    ``fills`` (:data:`~wiresens.backtest.engine.FILL_DTYPE`): every fill at the venue;
    ``orders``: every request sent past the pre-trade check; ``samples`` (:data:`~wiresens.backtest.engine.SAMPLE_DTYPE`): mid, position, equity,
    fees and traded notional every ``sample_interval_ms``; ``stats``: see the module doc;
    ``events``: market events replayed (level updates + trades); ``load_s``/``run_s``:
    seconds spent loading the data and in the replay (wall clock), ``cpu_s`` the replay's
    CPU time (what a loaded machine does not inflate).
    """

    fills: np.ndarray[Any, Any]
    samples: np.ndarray[Any, Any]
    stats: dict[str, Any]
    events: int
    load_s: float
    run_s: float
    cpu_s: float = 0.0
    policy_calls: dict[str, int] = field(default_factory=dict)
    orders: Any = None
    """Requests that reached the venue side (:data:`~wiresens.backtest.engine.ORDER_DTYPE`)."""
    config: Any = None
    market: Any = None
    """The :class:`~wiresens.backtest.data.MarketData` replayed (for plots)."""
    implementation: str = "python"
    """The loop that ran: ``"compiled"`` (C) or ``"python"``; results are identical."""

    @property
    def events_per_s(self) -> float:
        return self.events / self.run_s if self.run_s > 0 else 0.0

    def digest(self) -> str:
        """SHA-256 of the fills and samples bytes: equal digests mean identical results."""
        import hashlib

        h = hashlib.sha256()
        h.update(self.fills.tobytes())
        h.update(self.samples.tobytes())
        return h.hexdigest()

    def fills_frame(self) -> Any:
        """``fills`` as a pandas DataFrame (prices and quantities as floats; needs pandas)."""
        import pandas as pd  # type: ignore[import-untyped,unused-ignore]

        df = pd.DataFrame(self.fills)
        for c in ("price", "qty", "fee"):
            df[c] = df[c] / SCALE
        df["ts"] = pd.to_datetime(df["ts"], unit="ns", utc=True)
        return df

    def samples_frame(self) -> Any:
        """``samples`` as a pandas DataFrame indexed by time (needs pandas)."""
        import pandas as pd  # type: ignore[import-untyped,unused-ignore]

        df = pd.DataFrame(self.samples)
        for c in ("mid", "position", "equity", "fees", "volume"):
            df[c] = df[c] / SCALE
        df["ts"] = pd.to_datetime(df["ts"], unit="ns", utc=True)
        return df.set_index("ts")
