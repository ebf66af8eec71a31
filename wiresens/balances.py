"""Balance reconciliation: what each account should hold, and where the venue disagrees.

Plain domain code (execution drives it live; a back-test can drive it the same way).
:class:`BalanceBook` keeps, per account and asset, the *total* balance (free +
locked, 8-decimal fixed point) that the account should hold:

* the first venue snapshot of an account (``account.status``) is its baseline;
* every fill of an order the node sent moves it, with the venue's settlement rule:
  a buy pays ``qty * px`` quote and receives ``qty - commission`` base, a sell pays
  ``qty`` base and receives ``qty * px - commission`` quote (the commission is charged
  in the asset received, Binance's rule without BNB fee discounts; the record carries
  no commission asset);
* each later snapshot is compared asset by asset (:meth:`BalanceBook.reconcile`): a
  difference is what the node did not cause (a trade from another program, a
  deposit or withdrawal, a fill whose report was lost) and the book takes the
  venue's figure, so a difference is reported once.

Totals, not free amounts: an order resting at the venue moves balance from free to
locked without changing the total, so orders in flight cannot look like differences.
The comparison assumes the venue's fills reach the node before a snapshot taken after
them: the feed reads both from the same WebSocket API connection, in order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .records import SCALE, Side

__all__ = ["BalanceBook", "BalanceDifference"]


@dataclass(frozen=True, slots=True)
class BalanceDifference:
    """One asset of one account where the venue and the node disagree (fixed point)."""

    account: int
    asset: int
    expected: int
    actual: int

    @property
    def diff(self) -> int:
        """The venue's total minus the node's."""
        return self.actual - self.expected


class BalanceBook:
    """Expected totals per (account, asset) and their reconciliation with the venue.

    Parameters
    ----------
    symbol_assets
        Per record symbol index (1-based; entry 0 unused): ``(base, quote)`` asset
        indices, as :class:`~wiresens.instruments.InstrumentTable` numbers them.
    """

    def __init__(self, symbol_assets: Iterable[tuple[int, int]]) -> None:
        self.symbol_assets = list(symbol_assets)
        self.expected: dict[int, dict[int, int]] = {}
        """account -> asset -> total; an account is absent until its first snapshot."""
        self.reconciles: dict[int, int] = {}
        self.differences: dict[int, int] = {}

    def has_baseline(self, account: int) -> bool:
        return account in self.expected

    def apply_fill(
        self, account: int, symbol: int, side: int, qty: int, price: int, commission: int = 0
    ) -> None:
        """Move the account's expected totals by one fill of an order the node sent."""
        book = self.expected.get(account)
        if book is None or qty <= 0 or not 0 < symbol < len(self.symbol_assets):
            return
        base, quote = self.symbol_assets[symbol]
        notional = price * qty // SCALE
        if side == Side.BUY:
            book[base] = book.get(base, 0) + qty - commission
            book[quote] = book.get(quote, 0) - notional
        else:
            book[base] = book.get(base, 0) - qty
            book[quote] = book.get(quote, 0) + notional - commission

    def reconcile(self, account: int, totals: Mapping[int, int]) -> list[BalanceDifference]:
        """Compare the venue's ``totals`` (asset -> free + locked) of ``account`` with the
        expectation; the expectation becomes the venue's. The first snapshot of an
        account only sets its baseline (no differences)."""
        self.reconciles[account] = self.reconciles.get(account, 0) + 1
        book = self.expected.get(account)
        self.expected[account] = {a: v for a, v in totals.items() if a}
        if book is None:
            return []
        out = []
        for asset in sorted(set(book) | set(totals)):
            if not asset:
                continue
            expected, actual = book.get(asset, 0), totals.get(asset, 0)
            if expected != actual:
                out.append(BalanceDifference(account, asset, expected, actual))
        self.differences[account] = self.differences.get(account, 0) + len(out)
        return out
