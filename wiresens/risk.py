"""Pre-trade checks: plain domain code shared by the execution actor and the back-tester.

Today: the exchange filters of the order's instrument (PRICE_FILTER tick and
range, LOT_SIZE step and range, NOTIONAL/MIN_NOTIONAL), checked before an order
leaves the node, so the exchange never sees an order it would reject for them.
The execution-safety issue adds per-policy and per-account limits, the price
band, order-rate limits and the kill switch here.

A check returns a :class:`RejectReason` (``NONE`` = pass); it never raises on
an order, so the caller's loop stays exception-free.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import IntEnum
from typing import Any

from .records import SCALE, OrderType, RecordKind

__all__ = ["RejectReason", "check_filters"]


class RejectReason(IntEnum):
    """The ``reason`` byte of a REJECTED execution report raised inside the node."""

    NONE = 0
    UNKNOWN_SYMBOL = 1
    PRICE_TICK = 2
    PRICE_RANGE = 3
    QTY_STEP = 4
    QTY_RANGE = 5
    MIN_NOTIONAL = 6
    MAX_NOTIONAL = 7
    QUEUE_FULL = 8
    UNKNOWN_ORDER = 9
    BAD_REQUEST = 10
    EXCHANGE = 11
    KILL_SWITCH = 12
    SHUTDOWN = 13

    @property
    def text(self) -> str:
        return _TEXT[self]


_TEXT = {
    RejectReason.NONE: "",
    RejectReason.UNKNOWN_SYMBOL: "symbol is not in the node's instrument table",
    RejectReason.PRICE_TICK: "price is not a multiple of the tick size (PRICE_FILTER)",
    RejectReason.PRICE_RANGE: "price outside minPrice..maxPrice (PRICE_FILTER)",
    RejectReason.QTY_STEP: "quantity is not a multiple of the step size (LOT_SIZE)",
    RejectReason.QTY_RANGE: "quantity outside minQty..maxQty (LOT_SIZE)",
    RejectReason.MIN_NOTIONAL: "price x quantity below the minimum notional (NOTIONAL)",
    RejectReason.MAX_NOTIONAL: "price x quantity above the maximum notional (NOTIONAL)",
    RejectReason.QUEUE_FULL: "the ring to the gateway is full; the order was not sent",
    RejectReason.UNKNOWN_ORDER: "cancel or replace of an order that is not open",
    RejectReason.BAD_REQUEST: "malformed order request",
    RejectReason.EXCHANGE: "rejected by the exchange (see error_code)",
    RejectReason.KILL_SWITCH: "kill switch engaged: no new orders",
    RejectReason.SHUTDOWN: "node is stopping: no new orders",
}

_MARKET = int(OrderType.MARKET)
_NEW = int(RecordKind.ORDER_NEW)
_REPLACE = int(RecordKind.ORDER_REPLACE)


def check_filters(
    symbol: int, order_type: int, price: int, qty: int, instruments: Sequence[Any]
) -> RejectReason:
    """The exchange filters of ``instruments[symbol]`` for one new order (fixed point).

    ``instruments`` is indexed by the records' ``symbol`` (1-based; slot 0 is None).
    """
    if not 0 < symbol < len(instruments):
        return RejectReason.UNKNOWN_SYMBOL
    inst = instruments[symbol]
    if inst is None:
        return RejectReason.UNKNOWN_SYMBOL
    if qty <= 0:
        return RejectReason.QTY_RANGE
    if order_type != _MARKET:
        if price <= 0:
            return RejectReason.PRICE_RANGE
        if inst.tick_size and price % inst.tick_size:
            return RejectReason.PRICE_TICK
        if (inst.min_price and price < inst.min_price) or price > inst.max_price:
            return RejectReason.PRICE_RANGE
    if inst.step_size and qty % inst.step_size:
        return RejectReason.QTY_STEP
    if qty < inst.min_qty or qty > inst.max_qty:
        return RejectReason.QTY_RANGE
    if order_type != _MARKET:
        notional = price * qty // SCALE
        if notional < inst.min_notional:
            return RejectReason.MIN_NOTIONAL
        if notional > inst.max_notional:
            return RejectReason.MAX_NOTIONAL
    return RejectReason.NONE
