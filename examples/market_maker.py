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

from wiresens.oms import TERMINAL
from wiresens.policy import BookView, PolicyObject
from wiresens.positions import Position
from wiresens.records import ExecStatus
from wiresens.risk import RejectReason

__all__ = ["MarketMaker", "MarketMakerParams"]

_NEW = int(ExecStatus.NEW)
_PARTIAL = int(ExecStatus.PARTIALLY_FILLED)
_REJECTED = int(ExecStatus.REJECTED)
_UNKNOWN_ORDER = int(RejectReason.UNKNOWN_ORDER)
_TERMINAL = frozenset(int(s) for s in TERMINAL)


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
    reject_backoff_ms: int = 1_000
    """After a reject, leave that side unquoted this long (doubling on each further
    reject of the side, up to 64x; an acknowledgement resets it)."""

    def __post_init__(self) -> None:
        if self.qty <= 0 or self.max_position <= 0:
            raise ValueError("qty and max_position must be positive")
        if self.spread_bps <= 0 or self.skew_bps < 0 or self.requote_ticks < 1:
            raise ValueError("spread_bps must be > 0, skew_bps >= 0 and requote_ticks >= 1")
        if self.tick_size <= 0:
            raise ValueError("tick_size must be positive")
        if self.reject_backoff_ms < 0:
            raise ValueError("reject_backoff_ms must be >= 0")


class _Quotes:
    """Per-symbol state: the working quote ids, the last book seen, reject back-off."""

    __slots__ = (
        "ask_backoff",
        "ask_id",
        "ask_retry",
        "band",
        "best_ask",
        "best_bid",
        "bid_backoff",
        "bid_id",
        "bid_retry",
        "clean",
        "pos",
        "pos_seen",
        "t_ask_px",
        "t_ask_qty",
        "t_bid_px",
        "t_bid_qty",
        "tick",
    )

    def __init__(self, tick: int, pos: Position, band: int) -> None:
        self.bid_id = 0
        self.ask_id = 0
        self.best_bid = 0
        self.best_ask = 0
        self.tick = tick
        # The PositionBook keeps one object per (policy, symbol): read its qty directly.
        self.pos = pos
        # True when the last quoting pass left nothing to do and nothing changed since:
        # a book with the same best prices then needs no pass (targets depend only on
        # them and the position, which moves only through reports, which clear it).
        self.clean = False
        self.bid_retry = 0
        self.ask_retry = 0
        self.bid_backoff = 0
        self.ask_backoff = 0
        # The last pass's targets and the position they were computed for.
        self.pos_seen = 0
        self.t_bid_px = self.t_bid_qty = self.t_ask_px = self.t_ask_qty = 0
        self.band = band  # requote_ticks * tick


class MarketMaker(PolicyObject):
    """Quote both sides of each subscribed symbol, inventory-limited and skewed."""

    Params = MarketMakerParams

    def on_start(self) -> None:
        self.quotes: dict[int, _Quotes] = {sym: self._new_quotes(sym) for sym in self.symbols}
        self.requotes = 0
        self.rejects = 0
        p: MarketMakerParams = self.params
        self._backoff_ns = p.reject_backoff_ms * 1_000_000

    def _new_quotes(self, symbol: int) -> _Quotes:
        tick = self._tick(symbol)
        pos = self.positions.get(self.policy_id, symbol)
        return _Quotes(tick, pos, tick * self.params.requote_ticks)

    def _tick(self, symbol: int) -> int:
        try:
            inst = self.instruments[symbol]
        except (KeyError, IndexError):
            return int(self.params.tick_size)
        return int(getattr(inst, "tick_size", 0)) or int(self.params.tick_size)

    def on_book(self, symbol: int, book: BookView) -> None:
        q = self.quotes.get(symbol)
        if q is None:
            q = self.quotes[symbol] = self._new_quotes(symbol)
        bid = book.bid_px
        ask = book.ask_px
        if q.clean and bid == q.best_bid and ask == q.best_ask:
            return  # same targets, same orders: the pass would do nothing
        q.best_bid = bid
        q.best_ask = ask
        self._quote(symbol, q)

    def on_execution(self, report: Any) -> None:
        # The order the OMS just applied this report to (what order_for would look up).
        order = self.open_orders.last
        if order is None:
            return
        q = self.quotes.get(order.symbol)
        if q is None:
            return
        cid = order.cl_ord_id
        status = order.status
        if q.clean and q.pos.qty == q.pos_seen and self.running:
            # Nothing but this order's status changed since the last pass, whose answer
            # did not depend on time: the pass would do nothing when the change is an
            # acknowledgement matching the side's target, or the end of an order that is
            # no longer a quote (the cancel leg of a replace).
            if status == _NEW:
                if cid == q.bid_id:
                    d = order.price - q.t_bid_px
                    cum = order.cum_qty if order.cum_qty > order.filled_qty else order.filled_qty
                    if (
                        (d if d >= 0 else -d) < q.band
                        and order.qty - cum == q.t_bid_qty > 0
                        and q.t_bid_px > 0
                    ):
                        q.bid_backoff = 0
                        return
                elif cid == q.ask_id:
                    d = order.price - q.t_ask_px
                    cum = order.cum_qty if order.cum_qty > order.filled_qty else order.filled_qty
                    if (
                        (d if d >= 0 else -d) < q.band
                        and order.qty - cum == q.t_ask_qty > 0
                        and q.t_ask_px > 0
                    ):
                        q.ask_backoff = 0
                        return
            elif status in _TERMINAL and cid != q.bid_id and cid != q.ask_id:
                return
        q.clean = False
        if status == _REJECTED and order.reason != _UNKNOWN_ORDER:
            # Back off before sending this side again: a reject that repeats (a filter
            # the order breaks) would otherwise be re-sent on every report. A replace of
            # an order that just filled or went (unknown order) is a race, not a loop.
            self.rejects += 1
            if q.bid_id == cid:
                q.bid_backoff = min(q.bid_backoff * 2, 64 * self._backoff_ns) or self._backoff_ns
                q.bid_retry = self.clock() + q.bid_backoff
            elif q.ask_id == cid:
                q.ask_backoff = min(q.ask_backoff * 2, 64 * self._backoff_ns) or self._backoff_ns
                q.ask_retry = self.clock() + q.ask_backoff
        elif status == _NEW:
            if q.bid_id == cid:
                q.bid_backoff = 0
            elif q.ask_id == cid:
                q.ask_backoff = 0
        if status in _TERMINAL:
            if q.bid_id == cid:
                q.bid_id = 0
            elif q.ask_id == cid:
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
        return self._targets(self.quotes[symbol])

    def _targets(self, q: _Quotes) -> tuple[int, int, int, int]:
        p: MarketMakerParams = self.params
        bid, ask, tick = q.best_bid, q.best_ask, q.tick
        if bid <= 0 or ask <= 0 or ask <= bid:
            return 0, 0, 0, 0
        pos = q.pos.qty
        mid2 = bid + ask  # twice the mid: keeps the half tick exact
        # Both terms in units of price/2 * 1/10_000, floor-divided once.
        half = mid2 * p.spread_bps // 40_000
        skew = mid2 * p.skew_bps * pos // (20_000 * p.max_position)
        bid_px = (mid2 // 2 - half - skew) // tick * tick
        ask_px = -((-(mid2 - mid2 // 2) - half + skew) // tick) * tick  # ceil to tick
        if bid_px > ask - tick:
            bid_px = ask - tick
        if ask_px < bid + tick:
            ask_px = bid + tick
        bid_qty = p.max_position - pos
        if bid_qty > p.qty:
            bid_qty = p.qty
        ask_qty = p.max_position + pos
        if ask_qty > p.qty:
            ask_qty = p.qty
        return bid_px, bid_qty if bid_qty > 0 else 0, ask_px, ask_qty if ask_qty > 0 else 0

    def _quote(self, symbol: int, q: _Quotes) -> None:
        # One pass per book change or report: _targets and both sides inlined (a method
        # call costs about as much as the arithmetic).
        p: MarketMakerParams = self.params
        bid, ask, tick = q.best_bid, q.best_ask, q.tick
        q.clean = True
        pos = q.pos_seen = q.pos.qty
        if bid <= 0 or ask <= 0 or ask <= bid:
            q.t_bid_px = q.t_bid_qty = q.t_ask_px = q.t_ask_qty = 0
            return
        mid2 = bid + ask
        half = mid2 * p.spread_bps // 40_000
        skew = mid2 * p.skew_bps * pos // (20_000 * p.max_position)
        bid_px = (mid2 // 2 - half - skew) // tick * tick
        ask_px = -((-(mid2 - mid2 // 2) - half + skew) // tick) * tick
        if bid_px > ask - tick:
            bid_px = ask - tick
        if ask_px < bid + tick:
            ask_px = bid + tick
        bid_qty = p.max_position - pos
        if bid_qty > p.qty:
            bid_qty = p.qty
        ask_qty = p.max_position + pos
        if ask_qty > p.qty:
            ask_qty = p.qty
        q.t_bid_px, q.t_bid_qty, q.t_ask_px, q.t_ask_qty = bid_px, bid_qty, ask_px, ask_qty
        if bid_px <= 0 and ask_px <= 0:
            return
        band = q.band
        open_get = self.open_orders.open.get
        # Bid side.
        cid = q.bid_id
        order = open_get(cid) if cid else None
        if order is None:
            if bid_qty > 0 and bid_px > 0:
                if q.bid_retry and self.clock() < q.bid_retry:
                    q.clean = False  # the answer changes with time
                    q.bid_id = 0
                else:
                    q.bid_id = self.buy(symbol, bid_qty, bid_px)
                    if not q.bid_id:
                        q.clean = False  # sink full: try again on the next book
            else:
                q.bid_id = 0
        else:
            st = order.status
            # Not NEW/PARTIALLY_FILLED: awaiting an ack or a cancel, one request in flight.
            if st in (_NEW, _PARTIAL):
                if bid_qty <= 0 or bid_px <= 0:
                    self.cancel(cid)
                else:
                    d = order.price - bid_px
                    cum = order.cum_qty if order.cum_qty > order.filled_qty else order.filled_qty
                    if (d if d >= 0 else -d) >= band or order.qty - cum != bid_qty:
                        new_id = self.replace(cid, bid_qty, bid_px)
                        if new_id:
                            self.requotes += 1
                            q.bid_id = new_id
                        else:
                            q.clean = False
        # Ask side (the mirror image).
        cid = q.ask_id
        order = open_get(cid) if cid else None
        if order is None:
            if ask_qty > 0 and ask_px > 0:
                if q.ask_retry and self.clock() < q.ask_retry:
                    q.clean = False
                    q.ask_id = 0
                else:
                    q.ask_id = self.sell(symbol, ask_qty, ask_px)
                    if not q.ask_id:
                        q.clean = False
            else:
                q.ask_id = 0
        else:
            st = order.status
            if st in (_NEW, _PARTIAL):
                if ask_qty <= 0 or ask_px <= 0:
                    self.cancel(cid)
                else:
                    d = order.price - ask_px
                    cum = order.cum_qty if order.cum_qty > order.filled_qty else order.filled_qty
                    if (d if d >= 0 else -d) >= band or order.qty - cum != ask_qty:
                        new_id = self.replace(cid, ask_qty, ask_px)
                        if new_id:
                            self.requotes += 1
                            q.ask_id = new_id
                        else:
                            q.clean = False
