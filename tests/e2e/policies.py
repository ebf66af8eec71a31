"""PolicyObjects for the end-to-end tests (loaded by file path from a node config)."""

from __future__ import annotations

import msgspec

from wiresens.policy import BookView, PolicyObject


class TakerParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    qty: int = 100_000
    max_trades: int = 1_000_000
    stale_books: int = 200
    """Books seen with an order still open before it is cancelled once."""


class Taker(PolicyObject):
    """Crosses the spread: buys at the ask when flat, sells at the bid when long.

    An order that arrives after the price moved away rests; it is cancelled after
    ``stale_books`` books, or the random walk could keep the taker waiting for minutes.
    """

    Params = TakerParams

    def on_start(self) -> None:
        self.sent = 0
        self.waited = 0

    def on_book(self, symbol: int, book: BookView) -> None:
        if len(self.open_orders.open):
            self.waited += 1
            if self.waited == self.params.stale_books:
                self.cancel_all()
            return
        self.waited = 0
        if self.sent >= self.params.max_trades or not book.ask_px:
            return
        if self.position(symbol) <= 0:
            self.buy(symbol, self.params.qty, book.ask_px)
        else:
            self.sell(symbol, self.params.qty, book.bid_px)
        self.sent += 1


class CrasherParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    after: int = 5


class Crasher(PolicyObject):
    """Raises in on_book after ``after`` books: a policy bug."""

    Params = CrasherParams

    def on_start(self) -> None:
        self.books = 0

    def on_book(self, symbol: int, book: BookView) -> None:
        self.books += 1
        if self.books > self.params.after:
            raise RuntimeError("deliberate bug in on_book")
