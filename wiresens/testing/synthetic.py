"""A seeded synthetic Binance spot market: a moving mid, a depth book, trades.

Deterministic for a seed. The book has ``levels`` price levels per side around a
mid that random-walks in ticks; every step (``interval_ms``) yields one
Binance-shaped diff depth event (``depthUpdate`` with ``U``/``u`` continuing the
previous ``u``) carrying only the levels that changed (quantity ``"0"`` removes
one), and zero or more ``trade`` events at the touch. :meth:`snapshot` returns
the body of ``GET /api/v3/depth`` consistent with the events: replaying the
snapshot then the events with ``u > lastUpdateId`` rebuilds :meth:`book`.

Used by tests, the venue (``--market synthetic:SEED``) and the back-tester.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from wiresens.fixedpoint import from_fixed, to_fixed

__all__ = ["SyntheticEvent", "SyntheticMarket"]


@dataclass(frozen=True, slots=True)
class SyntheticEvent:
    """One event: its time, the stream it belongs to and the ``data`` object."""

    ts_ms: int
    stream: str
    data: dict[str, Any]


class SyntheticMarket:
    """A seeded random market for one symbol.

    Parameters
    ----------
    seed:
        Random seed; the same seed gives the same events.
    symbol, mid, tick, step:
        Symbol, starting mid price, tick size and lot step (decimal strings).
    levels:
        Price levels kept on each side.
    interval_ms:
        Time between two diff events.
    move_ticks:
        Scale of the mid's random walk: each step moves it by -2..2 times this many
        ticks. 1 (the default) is a calm market; about 100 gives BTCUSDT's typical
        volatility at a 0.01 tick (a few dollars a second).
    """

    def __init__(
        self,
        seed: int = 0,
        symbol: str = "BTCUSDT",
        mid: str = "60000",
        tick: str = "0.01",
        step: str = "0.00001",
        levels: int = 20,
        interval_ms: int = 100,
        start_ms: int = 1_700_000_000_000,
        move_ticks: int = 1,
    ) -> None:
        self.symbol = symbol
        self.move_ticks = move_ticks
        self._rng = random.Random(seed)
        self.tick = to_fixed(tick)
        self.step = to_fixed(step)
        self.levels = levels
        self.interval_ms = interval_ms
        self.now_ms = start_ms
        self._mid_ticks = to_fixed(mid) // self.tick
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        self.last_update_id = 1000
        self._trade_id = 1
        self._stream = symbol.lower()
        self._reshape()

    # -- state -----------------------------------------------------------------------------
    def book(self) -> tuple[dict[int, int], dict[int, int]]:
        """Copies of the bid and ask levels (fixed point price -> quantity)."""
        return dict(self.bids), dict(self.asks)

    def best(self) -> tuple[int, int]:
        """Best bid and best ask price, fixed point."""
        return max(self.bids), min(self.asks)

    def snapshot(self, limit: int = 1000) -> dict[str, Any]:
        """The ``GET /api/v3/depth`` body for the current book."""
        bids = sorted(self.bids.items(), reverse=True)[:limit]
        asks = sorted(self.asks.items())[:limit]
        return {
            "lastUpdateId": self.last_update_id,
            "bids": [[from_fixed(p), from_fixed(q)] for p, q in bids],
            "asks": [[from_fixed(p), from_fixed(q)] for p, q in asks],
        }

    # -- evolution -------------------------------------------------------------------------
    def _qty(self) -> int:
        lots = int(self._rng.expovariate(1.0) * 2000) + 1
        return lots * self.step

    def _reshape(self) -> dict[tuple[bool, int], int]:
        """Move the book to the current mid; return changed levels (side, price) -> qty."""
        changes: dict[tuple[bool, int], int] = {}
        half = 1 + self._rng.randrange(3)
        best_bid = (self._mid_ticks - half) * self.tick
        best_ask = (self._mid_ticks + half) * self.tick
        for is_bid, side, best in ((True, self.bids, best_bid), (False, self.asks, best_ask)):
            sign = -1 if is_bid else 1
            wanted = {best + sign * i * self.tick for i in range(self.levels)}
            for p in list(side):
                if p not in wanted:
                    del side[p]
                    changes[(is_bid, p)] = 0
            for p in sorted(wanted):
                if p not in side or self._rng.random() < 0.15:
                    q = self._qty()
                    side[p] = q
                    changes[(is_bid, p)] = q
        return changes

    def step_events(self) -> list[SyntheticEvent]:
        """Advance one interval; return its trades then its diff depth event."""
        self.now_ms += self.interval_ms
        out: list[SyntheticEvent] = []
        changes: dict[tuple[bool, int], int] = {}
        for _ in range(self._rng.choice((0, 0, 1, 1, 2, 3))):
            buyer_is_maker = self._rng.random() < 0.5
            side = self.bids if buyer_is_maker else self.asks
            p = max(side) if buyer_is_maker else min(side)
            q = min(side[p], self._qty())
            left = side[p] - q
            if left:
                side[p] = left
            else:
                del side[p]
            changes[(buyer_is_maker, p)] = left
            out.append(
                SyntheticEvent(
                    self.now_ms,
                    f"{self._stream}@trade",
                    {
                        "e": "trade",
                        "E": self.now_ms,
                        "s": self.symbol,
                        "t": self._trade_id,
                        "p": from_fixed(p),
                        "q": from_fixed(q),
                        "T": self.now_ms,
                        "m": buyer_is_maker,
                        "M": True,
                    },
                )
            )
            self._trade_id += 1
        self._mid_ticks += self._rng.choice((-2, -1, -1, 0, 0, 0, 0, 1, 1, 2)) * self.move_ticks
        changes.update(self._reshape())
        if changes:
            first = self.last_update_id + 1
            self.last_update_id += len(changes)
            bids = [[from_fixed(p), from_fixed(q)] for (b, p), q in sorted(changes.items()) if b]
            asks = [
                [from_fixed(p), from_fixed(q)] for (b, p), q in sorted(changes.items()) if not b
            ]
            out.append(
                SyntheticEvent(
                    self.now_ms,
                    f"{self._stream}@depth@100ms",
                    {
                        "e": "depthUpdate",
                        "E": self.now_ms,
                        "s": self.symbol,
                        "U": first,
                        "u": self.last_update_id,
                        "b": bids,
                        "a": asks,
                    },
                )
            )
        return out

    def events(self, steps: int) -> Iterator[SyntheticEvent]:
        """The events of the next ``steps`` intervals."""
        for _ in range(steps):
            yield from self.step_events()

    @staticmethod
    def mid_of(bids: dict[int, int], asks: dict[int, int]) -> int:
        """Mid price of a book, fixed point."""
        return (max(bids) + min(asks)) // 2 if bids and asks else 0
