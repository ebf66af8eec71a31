"""Maker/taker fees in exact fixed point.

A rate is kept as an integer in units of 1e-8 (1 bp = 10_000); the commission of a fill
is ``floor(notional * rate / 1e8)`` quote units, ``notional = floor(qty * px / 1e8)``,
charged in the quote asset as ``EXECUTION_REPORT.commission`` (a negative rate is a
rebate).
"""

from __future__ import annotations

from wiresens.fixedpoint import SCALE

__all__ = ["FeeSchedule"]


class FeeSchedule:
    """Maker and taker rates in basis points."""

    __slots__ = ("maker_rate", "taker_rate")

    def __init__(self, maker_bps: float, taker_bps: float) -> None:
        self.maker_rate = round(maker_bps * 10_000)
        self.taker_rate = round(taker_bps * 10_000)

    def commission(self, qty: int, px: int, maker: bool) -> int:
        """The fee of one fill (fixed point quote)."""
        rate: int = self.maker_rate if maker else self.taker_rate
        return int((qty * px // SCALE) * rate // SCALE)
