"""A quoting market maker: one bid and one ask around the mid, skewed by inventory.

Run it from ``config/node.toml`` (``class = "examples.market_maker:MarketMaker"``) or
in the back-tester; it is a plain :class:`~wiresens.policy.PolicyObject`.

Quotes, per symbol, in fixed point::

    mid   = (best_bid + best_ask) / 2
    half  = mid * spread_bps / 20_000
    skew  = mid * skew_bps / 10_000 * position / max_position   (long: quote lower)
    bid   = floor_to_tick(mid - half - skew)     at most best_ask - tick (never crosses)
    ask   = ceil_to_tick(mid + half - skew)      at least best_bid + tick

The bid is sized so a full fill keeps ``position <= max_position`` (no bid at the limit),
the ask likewise for ``-max_position``. A working quote is cancel-replaced when its
target moved by ``requote_ticks`` ticks or more or its size must change; a quote still
awaiting its acknowledgement (or a cancel) is left alone, so at most one request per
side is in flight.
"""

from __future__ import annotations

from typing import Any

import msgspec

from wiresens.policy import BookView, PolicyObject
from wiresens.records import ExecStatus

__all__ = ["MarketMaker", "MarketMakerParams"]

_WORKING = frozenset({int(ExecStatus.NEW), int(ExecStatus.PARTIALLY_FILLED)})


class MarketMakerParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``[policy.params]`` of :class:`MarketMaker` (quantities and prices fixed point)."""

    qty: int
    """Size of each quote."""
    max_position: int
    """Absolute inventory limit per symbol."""
    spread_bps: int = 10
    """Full quoted spread around the mid, in basis points."""
    skew_bps: int = 5
    """Shift of both quotes at full inventory, in basis points (0: no skew)."""
    requote_ticks: int = 2
    """Replace a working quote when its target moved at least this many ticks."""
    tick_size: int = 1_000_000
    """Price tick used when the instrument table has none (0.01)."""

    def __post_init__(self) -> None:
        if self.qty <= 0 or self.max_position <= 0:
            raise ValueError("qty and max_position must be positive")
        if self.spread_bps <= 0 or self.skew_bps < 0 or self.requote_ticks < 1:
            raise ValueError("spread_bps must be > 0, skew_bps >= 0 and requote_ticks >= 1")
        if self.tick_size <= 0:
            raise ValueError("tick_size must be positive")


class _Quotes:
    """Per-symbol state: the working quote ids and the last book seen."""

    __slots__ = ("ask_id", "best_ask", "best_bid", "bid_id", "tick")

    def __init__(self, tick: int) -> None:
        self.bid_id = 0
        self.ask_id = 0
        self.best_bid = 0
        self.best_ask = 0
        self.tick = tick


class MarketMaker(PolicyObject):
    """Quote both sides of each subscribed symbol, inventory-limited and skewed."""

    Params = MarketMakerParams

    def on_start(self) -> None:
        self.quotes: dict[int, _Quotes] = {sym: _Quotes(self._tick(sym)) for sym in self.symbols}
        self.requotes = 0

    def _tick(self, symbol: int) -> int:
        try:
            inst = self.instruments[symbol]
        except (KeyError, IndexError):
            return int(self.params.tick_size)
        return int(getattr(inst, "tick_size", 0)) or int(self.params.tick_size)

    def on_book(self, symbol: int, book: BookView) -> None:
        q = self.quotes.get(symbol)
        if q is None:
            q = self.quotes[symbol] = _Quotes(self._tick(symbol))
        q.best_bid = book.bid_px
        q.best_ask = book.ask_px
        self._quote(symbol, q)

    def on_execution(self, report: Any) -> None:
        order = self.order_for(report)
        if order is None:
            return
        q = self.quotes.get(order.symbol)
        if q is None:
            return
        if not order.is_open:
            if q.bid_id == order.cl_ord_id:
                q.bid_id = 0
            elif q.ask_id == order.cl_ord_id:
                q.ask_id = 0
        # Inventory changed or a slot freed: quote again on the last book (unless stopping,
        # when these reports are the cancels of on_stop).
        if self.running:
            self._quote(order.symbol, q)

    def on_stop(self) -> None:
        self.cancel_all()

    # -- quoting ----------------------------------------------------------------------

    def targets(self, symbol: int) -> tuple[int, int, int, int]:
        """(bid_px, bid_qty, ask_px, ask_qty) wanted now; a side with qty 0 is not quoted."""
        q = self.quotes[symbol]
        p: MarketMakerParams = self.params
        bid, ask, tick = q.best_bid, q.best_ask, q.tick
        if bid <= 0 or ask <= 0 or ask <= bid:
            return 0, 0, 0, 0
        pos = self.position(symbol)
        mid2 = bid + ask  # twice the mid: keeps the half tick exact
        # Both terms in units of price/2 * 1/10_000, floor-divided once.
        half = mid2 * p.spread_bps // 40_000
        skew = mid2 * p.skew_bps * pos // (20_000 * p.max_position)
        bid_px = (mid2 // 2 - half - skew) // tick * tick
        ask_px = -((-(mid2 - mid2 // 2) - half + skew) // tick) * tick  # ceil to tick
        bid_px = min(bid_px, ask - tick)
        ask_px = max(ask_px, bid + tick)
        bid_qty = min(p.qty, p.max_position - pos)
        ask_qty = min(p.qty, p.max_position + pos)
        return bid_px, max(bid_qty, 0), ask_px, max(ask_qty, 0)

    def _quote(self, symbol: int, q: _Quotes) -> None:
        bid_px, bid_qty, ask_px, ask_qty = self.targets(symbol)
        if bid_px <= 0 and ask_px <= 0:
            return
        q.bid_id = self._side(symbol, q.bid_id, True, bid_px, bid_qty, q.tick)
        q.ask_id = self._side(symbol, q.ask_id, False, ask_px, ask_qty, q.tick)

    def _side(self, symbol: int, cid: int, buy: bool, px: int, qty: int, tick: int) -> int:
        order = self.open_orders.open.get(cid) if cid else None
        if order is None:
            if qty <= 0 or px <= 0:
                return 0
            return self.buy(symbol, qty, px) if buy else self.sell(symbol, qty, px)
        if order.status not in _WORKING:
            return cid  # awaiting an ack or a cancel: one request in flight per side
        if qty <= 0 or px <= 0:
            self.cancel(cid)
            return cid
        moved = abs(order.price - px) >= self.params.requote_ticks * tick
        if moved or order.leaves_qty != qty:
            new_id = self.replace(cid, qty, px)
            if new_id:
                self.requotes += 1
                return new_id
        return cid
