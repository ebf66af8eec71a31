"""Pre-trade checks: plain domain code shared by the execution actor and the back-tester.

* :func:`check_filters`: the exchange filters of the order's instrument
  (PRICE_FILTER tick and range, LOT_SIZE step and range, NOTIONAL/MIN_NOTIONAL),
  so the exchange never sees an order it would reject for them;
* :class:`RiskLimits` / :class:`PolicyRisk`: per-policy limits from TOML - order
  quantity and notional, position per symbol (counting the open orders on that
  side), open orders, a price band around the mid (fat finger), and order rates
  per second and per 10 s (kept below the exchange's own limits);
* :class:`AccountLimits` / :class:`AccountRisk`: per-account limits - open orders and
  open notional (price x remaining quantity of every working order of the account,
  whatever policy sent it), checked after the policy's own limits;
* :class:`KillState`: the kill switch, node-wide or per policy.

A check returns a :class:`RejectReason` (``NONE`` = pass); it never raises on
an order, so the caller's loop stays exception-free. Cancels are never blocked.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from .records import SCALE, OrderType, RecordKind

__all__ = [
    "AccountLimits",
    "AccountRisk",
    "KillState",
    "PolicyRisk",
    "RateWindow",
    "RejectReason",
    "RiskLimits",
    "check_filters",
]


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
    MAX_ORDER_QTY = 14
    MAX_ORDER_NOTIONAL = 15
    MAX_POSITION = 16
    MAX_OPEN_ORDERS = 17
    PRICE_BAND = 18
    RATE_LIMIT = 19
    ACCOUNT_MAX_OPEN_ORDERS = 20
    ACCOUNT_MAX_NOTIONAL = 21
    UNKNOWN_ACCOUNT = 22

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
    RejectReason.MAX_ORDER_QTY: "quantity above the policy's max_order_qty",
    RejectReason.MAX_ORDER_NOTIONAL: "price x quantity above the policy's max_order_notional",
    RejectReason.MAX_POSITION: "a full fill would take the position past max_position",
    RejectReason.MAX_OPEN_ORDERS: "the policy has max_open_orders open already",
    RejectReason.PRICE_BAND: "limit price further from the mid than price_band_bps",
    RejectReason.RATE_LIMIT: "order rate above max_orders_per_s / max_orders_per_10s",
    RejectReason.ACCOUNT_MAX_OPEN_ORDERS: "the account has its max_open_orders open already",
    RejectReason.ACCOUNT_MAX_NOTIONAL: (
        "the account's open notional (price x remaining qty of its working orders) plus this "
        "order would exceed its max_open_notional"
    ),
    RejectReason.UNKNOWN_ACCOUNT: "the request names an account the node has no session for",
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


NO_LIMIT = (1 << 63) - 1


@dataclass(frozen=True)
class RiskLimits:
    """One policy's limits in fixed point (``NO_LIMIT`` / 0 rates = unlimited)."""

    max_order_qty: int = NO_LIMIT
    max_order_notional: int = NO_LIMIT
    max_position: int = NO_LIMIT
    max_open_orders: int = NO_LIMIT
    price_band_bps: int = 0
    max_orders_per_s: int = 0
    max_orders_per_10s: int = 0


class RateWindow:
    """At most ``limit`` events in any ``window_ns``: a ring of the last ``limit`` times."""

    __slots__ = ("limit", "times", "window_ns")

    def __init__(self, limit: int, window_ns: int) -> None:
        self.limit = limit
        self.window_ns = window_ns
        self.times: deque[int] = deque(maxlen=max(1, limit))

    def allows(self, now_ns: int) -> bool:
        return (
            not self.limit
            or len(self.times) < self.limit
            or now_ns - self.times[0] >= self.window_ns
        )

    def add(self, now_ns: int) -> None:
        if self.limit:
            self.times.append(now_ns)


@dataclass
class PolicyRisk:
    """The state the limits of one policy are checked against."""

    limits: RiskLimits
    per_s: RateWindow = field(init=False)
    per_10s: RateWindow = field(init=False)

    def __post_init__(self) -> None:
        self.per_s = RateWindow(self.limits.max_orders_per_s, 1_000_000_000)
        self.per_10s = RateWindow(self.limits.max_orders_per_10s, 10_000_000_000)

    def check(
        self,
        *,
        side_buy: bool,
        order_type: int,
        price: int,
        qty: int,
        position: int,
        open_same_side_qty: int,
        open_orders: int,
        mid: int,
        now_ns: int,
    ) -> RejectReason:
        """Check one new order; on NONE the order counts against the rate windows."""
        lim = self.limits
        if qty > lim.max_order_qty:
            return RejectReason.MAX_ORDER_QTY
        ref = price if order_type != _MARKET else mid
        if ref and ref * qty // SCALE > lim.max_order_notional:
            return RejectReason.MAX_ORDER_NOTIONAL
        exposure = (
            position + open_same_side_qty + qty
            if side_buy
            else -position + open_same_side_qty + qty
        )
        if exposure > lim.max_position:
            return RejectReason.MAX_POSITION
        if open_orders >= lim.max_open_orders:
            return RejectReason.MAX_OPEN_ORDERS
        if (
            lim.price_band_bps
            and mid
            and order_type != _MARKET
            and abs(price - mid) * 10_000 > lim.price_band_bps * mid
        ):
            return RejectReason.PRICE_BAND
        if not (self.per_s.allows(now_ns) and self.per_10s.allows(now_ns)):
            return RejectReason.RATE_LIMIT
        self.per_s.add(now_ns)
        self.per_10s.add(now_ns)
        return RejectReason.NONE


@dataclass(frozen=True)
class AccountLimits:
    """One exchange account's limits, over every policy bound to it (``NO_LIMIT``: off).

    ``max_open_notional`` bounds the quote-asset notional the account has working:
    the sum of price x remaining quantity over its open orders, plus the new order
    (a market order counts at the mid).
    """

    max_open_orders: int = NO_LIMIT
    max_open_notional: int = NO_LIMIT

    @property
    def active(self) -> bool:
        """Any limit set: callers skip summing the account's orders when not."""
        return self.max_open_orders != NO_LIMIT or self.max_open_notional != NO_LIMIT


class AccountRisk:
    """Checks a new order against its account's :class:`AccountLimits`."""

    __slots__ = ("limits",)

    def __init__(self, limits: AccountLimits) -> None:
        self.limits = limits

    def check(
        self,
        *,
        order_type: int,
        price: int,
        qty: int,
        mid: int,
        open_orders: int,
        open_notional: int,
    ) -> RejectReason:
        """``open_orders`` / ``open_notional``: the account's working orders (a replaced
        original already left out). Never raises."""
        lim = self.limits
        if open_orders >= lim.max_open_orders:
            return RejectReason.ACCOUNT_MAX_OPEN_ORDERS
        ref = price if order_type != _MARKET else mid
        if open_notional + ref * qty // SCALE > lim.max_open_notional:
            return RejectReason.ACCOUNT_MAX_NOTIONAL
        return RejectReason.NONE


def open_notional(price: int, leaves_qty: int) -> int:
    """Quote notional (fixed point) of ``leaves_qty`` working at ``price``."""
    return price * leaves_qty // SCALE


class KillState:
    """The kill switch: node-wide or per policy, with the reason it was engaged."""

    def __init__(self) -> None:
        self.node = False
        self.policies: set[int] = set()
        self.reasons: dict[int, str] = {}

    def blocks(self, policy: int) -> bool:
        return self.node or policy in self.policies

    def engage(self, policy: int | None, reason: str) -> None:
        if policy is None:
            self.node = True
            self.reasons[-1] = reason
        else:
            self.policies.add(policy)
            self.reasons[policy] = reason

    def resume(self, policy: int | None) -> None:
        if policy is None:
            self.node = False
            self.policies.clear()
            self.reasons.clear()
        else:
            self.policies.discard(policy)
            self.reasons.pop(policy, None)
