"""Latency models: when the policy sees market data and when its orders reach the venue.

Feed: the policy sees market event ``i`` at ``ts_exch[i] + feed[i]``. ``constant`` adds
``feed_ns``; ``recorded`` uses ``ts_recv - ts_exch`` less its session minimum (the
recorder's clock offset; the 2024 recordings run ~1.27 s behind the exchange) plus
``feed_ns``. Delivery keeps the stream order (one TCP connection): times are made
non-decreasing.

Order entry: a request sent at local time ``t`` reaches the matching engine at
``t + entry`` where ``entry`` is constant, drawn (seeded) from a normal or log-normal
distribution, or replayed from latencies a live node recorded (in send order); arrivals
keep the send order (one connection), so a cancel never overtakes the order it cancels.
"""

from __future__ import annotations

import math
import random

import numpy as np
from numpy.typing import NDArray

from .config import LatencyConfig

__all__ = ["EntryLatency", "feed_times"]


def feed_times(
    ts_exch: NDArray[np.int64], ts_recv: NDArray[np.int64], cfg: LatencyConfig
) -> NDArray[np.int64]:
    """Local delivery time of every market event (non-decreasing, ``>= ts_exch``)."""
    if cfg.feed == "recorded" and len(ts_exch):
        lat = ts_recv - ts_exch
        lat = lat - lat.min() + cfg.feed_ns
    else:
        lat = np.full(ts_exch.shape, cfg.feed_ns, dtype=np.int64)
    out: NDArray[np.int64] = ts_exch + np.maximum(lat, 0)
    np.maximum.accumulate(out, out=out)
    return out


class EntryLatency:
    """Seeded order-entry latency draws (nanoseconds)."""

    __slots__ = ("_base", "_i", "_jitter", "_kind", "_last", "_min", "_recorded", "_rng", "_sigma")

    def __init__(self, cfg: LatencyConfig, seed: int) -> None:
        self._kind = cfg.entry
        self._base = cfg.entry_ns
        self._jitter = cfg.entry_jitter_ns
        self._sigma = cfg.sigma
        self._min = cfg.entry_min_ns
        self._rng = random.Random(seed)
        self._last = 0
        self._recorded = list(cfg.entry_recorded_ns)
        self._i = 0

    def draw(self) -> int:
        if self._kind == "constant":
            return self._base
        if self._kind == "recorded":
            v = self._recorded[self._i % len(self._recorded)]
            self._i += 1
            return max(v, self._min)
        if self._kind == "normal":
            v = self._base + int(self._rng.gauss(0.0, float(self._jitter)))
        else:
            v = int(self._base * math.exp(self._rng.gauss(0.0, self._sigma)))
        return max(v, self._min)

    def draws(self, n: int) -> list[int]:
        """The next ``n`` draws, as ``n`` calls of :meth:`draw` would give them (the C
        loop takes them in batches)."""
        draw = self.draw
        return [draw() for _ in range(n)]

    def arrival(self, now: int) -> int:
        """When a request sent at ``now`` reaches the venue (never before the previous one)."""
        t = max(now + self.draw(), self._last)
        self._last = t
        return t
