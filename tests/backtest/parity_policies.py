"""A PolicyObject for the live/back-test parity test (loaded by path by a real node).

Its requests are a function of the top-of-book stream alone (not of its reports, its
position or the clock), so the requests a live node logged can be compared one for one
with the back-tester's, whatever the timing of the reports.
"""

from __future__ import annotations

import msgspec

from wiresens.policy import IOC, BookView, PolicyObject


class BandTakerParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    qty: int = 100_000
    band_ticks: int = 2
    tick: int = 1_000_000
    max_orders: int = 1_000_000
    """Per symbol."""


class BandTaker(PolicyObject):
    """Takes the touch with an IOC when the mid enters another band of ``band_ticks``
    ticks: buys at the ask when it went up, sells at the bid when it went down."""

    Params = BandTakerParams

    def on_start(self) -> None:
        self.band: dict[int, int] = {}
        self.sent: dict[int, int] = {}

    def on_book(self, symbol: int, book: BookView) -> None:
        bid, ask = book.bid_px, book.ask_px
        if bid <= 0 or ask <= bid:
            return
        p: BandTakerParams = self.params
        band = (bid + ask) // 2 // (p.band_ticks * p.tick)
        last = self.band.get(symbol, -1)
        self.band[symbol] = band
        sent = self.sent.get(symbol, 0)
        if last < 0 or band == last or sent >= p.max_orders:
            return
        self.sent[symbol] = sent + 1
        if band > last:
            self.buy(symbol, p.qty, ask, tif=IOC)
        else:
            self.sell(symbol, p.qty, bid, tif=IOC)
