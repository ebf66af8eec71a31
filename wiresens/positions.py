"""Positions and PnL per (policy, symbol), from fills, in exact integer arithmetic.

Prices and quantities are int64 fixed point with 8 decimals (``SCALE``). The product of a
quantity and a price therefore carries 16 decimals; this module keeps every such product
as an unbounded Python ``int`` in *raw* units of ``1e-16`` quote, so no sum ever rounds:

* ``cost_raw`` is the signed cost basis of the open quantity (``sum(qty * px)`` of the
  fills that opened it, minus what closes released);
* ``realized_raw`` is the realized PnL;
* both are converted to 8-decimal fixed point only when read (``realized_pnl``,
  ``avg_px``, :meth:`Position.unrealized_pnl`), rounding half to even.

Average-cost method. A fill that reduces the position releases the share
``cost_raw * closed / open_qty`` of the basis. That one division is the only rounding
(floor, at most ``1e-16`` quote per fill), and what it leaves behind stays in
``cost_raw``: when the position returns to flat the whole basis has been released, so
over a round trip ``realized_raw`` equals ``sum(sell qty*px) - sum(buy qty*px)``
exactly. A fill that flips the position (sell 3 while long 2) closes the 2 and opens
1 short at the fill price.

Fees. ``EXECUTION_REPORT.commission`` is taken as charged in the quote asset (the
record carries no commission asset; the feed converts a fee in another asset before
publishing, or publishes it as 0 and reports it through ACCOUNT_UPDATE). ``fees`` is
their sum, kept apart from ``realized_pnl``; ``net_pnl = realized_pnl - fees``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .records import EXECUTION_REPORT, SCALE, Side

__all__ = ["Position", "PositionBook", "round_half_even"]


def _offset(name: str, size: int) -> int:
    off: int = EXECUTION_REPORT.fields[name][1]  # type: ignore[index]
    if off % size:
        raise AssertionError(f"EXECUTION_REPORT.{name} at {off} is not {size}-byte aligned")
    return off // size


_RQ_LAST_QTY = _offset("last_qty", 8)
_RQ_LAST_PX = _offset("last_px", 8)
_RQ_COMMISSION = _offset("commission", 8)
_RB_POLICY = _offset("policy", 1)
_RB_SIDE = _offset("side", 1)
_RI_SYMBOL = _offset("symbol", 4)


def round_half_even(num: int, den: int) -> int:
    """``num / den`` rounded to the nearest integer, ties to even (``den > 0``)."""
    q, r = divmod(num, den)
    twice = 2 * r
    if twice > den or (twice == den and q & 1):
        q += 1
    return q


class Position:
    """One policy's position in one symbol.

    Attributes
    ----------
    qty : int
        Signed open quantity (fixed point): positive long, negative short.
    cost_raw : int
        Signed cost basis of the open quantity in ``1e-16`` quote units.
    realized_raw : int
        Realized PnL in ``1e-16`` quote units.
    fees : int
        Sum of commissions (fixed point, quote asset).
    bought, sold : int
        Gross quantities bought and sold (fixed point).
    fills : int
        Number of fills applied.
    """

    __slots__ = (
        "account",
        "bought",
        "cost_raw",
        "fees",
        "fills",
        "policy",
        "qty",
        "realized_raw",
        "sold",
        "symbol",
    )

    def __init__(self, policy: int = 0, symbol: int = 0, account: int = 0) -> None:
        self.policy = policy
        self.symbol = symbol
        self.account = account
        self.qty = 0
        self.cost_raw = 0
        self.realized_raw = 0
        self.fees = 0
        self.bought = 0
        self.sold = 0
        self.fills = 0

    def apply_fill(self, side: int, qty: int, price: int, fee: int = 0) -> None:
        """Apply one fill of ``qty`` at ``price`` (``side`` is :class:`Side`)."""
        if qty <= 0:
            return
        self.fills += 1
        self.fees += fee
        if side == Side.BUY:
            self.bought += qty
            signed = qty
        else:
            self.sold += qty
            signed = -qty
        pos = self.qty
        if pos == 0 or (pos > 0) == (signed > 0):
            self.qty = pos + signed
            self.cost_raw += signed * price
            return
        # Reducing (and maybe flipping): close min(|pos|, qty) at the average cost.
        closed = min(abs(pos), qty)
        if closed == abs(pos):
            released = self.cost_raw
        else:
            # Floor division of a signed basis; the remainder stays in cost_raw (see module doc).
            released = self.cost_raw * closed // abs(pos)
        close_signed = closed if pos > 0 else -closed
        # Long: proceeds closed*price minus basis; short: basis minus the buy-back.
        self.realized_raw += close_signed * price - released
        self.cost_raw -= released
        self.qty = pos - close_signed
        rest = qty - closed
        if rest:
            opened = rest if signed > 0 else -rest
            self.qty += opened
            self.cost_raw += opened * price

    @property
    def avg_px(self) -> int:
        """Average entry price of the open quantity (fixed point, half-even), 0 when flat."""
        if self.qty == 0:
            return 0
        return (
            round_half_even(self.cost_raw, self.qty)
            if self.qty > 0
            else round_half_even(-self.cost_raw, -self.qty)
        )

    @property
    def realized_pnl(self) -> int:
        """Realized PnL in quote fixed point (half-even)."""
        return round_half_even(self.realized_raw, SCALE)

    @property
    def net_pnl(self) -> int:
        """Realized PnL minus fees (fixed point)."""
        return self.realized_pnl - self.fees

    def unrealized_raw(self, mark_px: int) -> int:
        """Mark-to-market PnL of the open quantity at ``mark_px`` in ``1e-16`` units."""
        return self.qty * mark_px - self.cost_raw

    def unrealized_pnl(self, mark_px: int) -> int:
        """Mark-to-market PnL of the open quantity at ``mark_px`` (fixed point, half-even)."""
        return round_half_even(self.qty * mark_px - self.cost_raw, SCALE)

    def total_pnl(self, mark_px: int) -> int:
        """Realized plus unrealized, minus fees (fixed point)."""
        return (
            round_half_even(self.realized_raw + self.qty * mark_px - self.cost_raw, SCALE)
            - self.fees
        )

    def __repr__(self) -> str:
        return (
            f"Position(policy={self.policy}, symbol={self.symbol}, qty={self.qty}, "
            f"avg_px={self.avg_px}, realized_pnl={self.realized_pnl}, fees={self.fees})"
        )


class PositionBook:
    """Positions keyed by (policy, symbol), fed with fills or EXECUTION_REPORT records.

    Execution keeps one for the whole node; a policy keeps one for itself (its own
    ``policy`` id only). Lookups never allocate once a position exists.
    """

    __slots__ = ("_positions",)

    def __init__(self) -> None:
        self._positions: dict[tuple[int, int], Position] = {}

    def get(self, policy: int, symbol: int) -> Position:
        """The position of ``policy`` in ``symbol`` (created flat on first use)."""
        key = (policy, symbol)
        pos = self._positions.get(key)
        if pos is None:
            pos = self._positions[key] = Position(policy, symbol)
        return pos

    def apply_fill(
        self, policy: int, symbol: int, side: int, qty: int, price: int, fee: int = 0
    ) -> Position:
        """Apply one fill and return the updated position."""
        pos = self.get(policy, symbol)
        pos.apply_fill(side, qty, price, fee)
        return pos

    def apply_report(self, report: Any) -> Position | None:
        """Apply the fill of an EXECUTION_REPORT record; None when it carries no fill.

        Call it only for reports the OMS accepted as new fills (``Fill.NEW``), so a
        duplicate report is never counted twice.
        """
        last_qty = int(report["last_qty"])
        if last_qty <= 0:
            return None
        return self.apply_fill(
            int(report["policy"]),
            int(report["symbol"]),
            int(report["side"]),
            last_qty,
            int(report["last_px"]),
            int(report["commission"]),
        )

    def apply_raw(self, raw: memoryview) -> Position | None:
        """:meth:`apply_report` for the raw bytes of an EXECUTION_REPORT (``"B"`` view)."""
        q = raw.cast("q")
        last_qty = q[_RQ_LAST_QTY]
        if last_qty <= 0:
            return None
        return self.apply_fill(
            raw[_RB_POLICY],
            raw.cast("I")[_RI_SYMBOL],
            raw[_RB_SIDE],
            last_qty,
            q[_RQ_LAST_PX],
            q[_RQ_COMMISSION],
        )

    def __iter__(self) -> Iterator[Position]:
        return iter(self._positions.values())

    def __len__(self) -> int:
        return len(self._positions)

    def for_policy(self, policy: int) -> dict[int, Position]:
        """Positions of one policy keyed by symbol."""
        return {s: p for (pol, s), p in self._positions.items() if pol == policy}
