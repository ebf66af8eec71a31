"""Replay recorded Binance traffic through the decoder, the sync procedure and the book.

For every symbol the replay keeps a :class:`~wiresens.binance.fastdepth.DepthFeed`
(decode, :class:`~wiresens.binance.sync.DepthSync`, :class:`~wiresens.book.OrderBook`)
and counts, per symbol and stream: messages, applied diffs, drops, gaps and
resyncs, raw id breaks (``U != prev u + 1`` spot, ``pu != prev u`` USD-M, over
every diff, synced or not), crossed books, trade/aggTrade id breaks, and the
top-of-book check: once the book is in sync, its best bid/ask price and quantity
must equal every ``@bookTicker`` carrying the same update id ``u`` as an applied
diff. A bookTicker may arrive before the diff with its ``u`` (separate streams),
so tickers newer than the book wait in a short queue until that diff is applied;
tickers whose ``u`` never matches a diff's ``u`` are not checked.

Bad input never stops a replay: unreadable lines and malformed messages are
counted in ``errors``. Used by ``wiresens binance replay`` and the golden tests.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from wiresens.book import OrderBook
from wiresens.errors import FixedPointError
from wiresens.fixedpoint import to_fixed

from .fastdepth import DepthFeed
from .recordings import RecordedMessage, iter_session, market_of
from .sync import Action, Market

__all__ = ["Replay", "SymbolReport", "TickerMismatch", "replay_event_log", "replay_files"]


class _Ticker(msgspec.Struct, gc=False):
    u: int
    b: str
    B: str
    a: str
    A: str


class _TradeId(msgspec.Struct, gc=False):
    t: int


class _AggId(msgspec.Struct, gc=False):
    a: int
    f: int
    l: int  # noqa: E741 - Binance's name


class _SnapProbe(msgspec.Struct, gc=False):
    lastUpdateId: int | None = None
    E: int = 0


_TICKER = msgspec.json.Decoder(_Ticker)
_TRADE = msgspec.json.Decoder(_TradeId)
_AGG = msgspec.json.Decoder(_AggId)
_SNAP = msgspec.json.Decoder(_SnapProbe)


@dataclass(slots=True)
class TickerMismatch:
    """A bookTicker that disagreed with the rebuilt book (kept for diagnostics)."""

    u: int
    ticker: tuple[int, int, int, int]
    book: tuple[int, int, int, int]


@dataclass(slots=True)
class SymbolReport:
    """Counters of one symbol (all streams); ``streams`` counts messages per stream."""

    symbol: str
    market: str = ""
    streams: dict[str, int] = field(default_factory=dict)
    snapshots: int = 0
    applied: int = 0
    dropped: int = 0
    buffered: int = 0
    gaps: int = 0
    resyncs: int = 0
    diff_breaks: int = 0
    crossed: int = 0
    ticker_matched: int = 0
    ticker_mismatched: int = 0
    trade_breaks: int = 0
    agg_breaks: int = 0
    errors: int = 0
    synced: bool = False
    first_u: int = -1
    last_u: int = -1
    mismatches: list[TickerMismatch] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (mismatch details limited to the first few)."""
        d = {k: getattr(self, k) for k in self.__slots__ if k != "mismatches"}
        d["mismatches"] = [
            {"u": m.u, "ticker": list(m.ticker), "book": list(m.book)} for m in self.mismatches
        ]
        return d


class _SymbolState:
    __slots__ = (
        "feed",
        "last_agg",
        "last_agg_l",
        "last_trade",
        "pending",
        "prev_u",
        "report",
    )

    def __init__(self, report: SymbolReport) -> None:
        self.report = report
        self.feed: DepthFeed | None = None
        self.pending: deque[_Ticker] = deque(maxlen=100_000)
        self.prev_u = -1
        self.last_trade = -1
        self.last_agg = -1
        self.last_agg_l = -1


def _stream_kind(stream: str) -> str:
    kind = stream.partition("@")[2]
    return kind.partition("@")[0].partition("_")[0]


class Replay:
    """Feed :class:`RecordedMessage` objects in order; read :attr:`reports` at the end.

    Parameters
    ----------
    market:
        Force ``"spot"`` or ``"usdm"``; by default each symbol's market is told
        from the URL (``fapi``/``fstream``), the diff (``pu`` present) or the
        snapshot (``E`` present).
    keep_mismatches:
        How many top-of-book mismatches to keep per symbol for diagnostics.
    """

    def __init__(self, market: Market | None = None, keep_mismatches: int = 5) -> None:
        self.market = market
        self.keep_mismatches = keep_mismatches
        self.messages = 0
        self.bad_lines = 0
        self._symbols: dict[str, _SymbolState] = {}

    @property
    def reports(self) -> dict[str, SymbolReport]:
        """Per-symbol reports, counters brought up to date."""
        for st in self._symbols.values():
            feed = st.feed
            if feed is not None:
                c = feed.sync.counters
                r = st.report
                r.applied, r.dropped, r.buffered = c.applied, c.dropped, c.buffered
                r.gaps, r.resyncs, r.snapshots = c.gaps, c.resyncs, c.snapshots
                r.synced = feed.synced
                r.errors = st.report.errors + feed.errors
                feed.errors = 0
        return {k: v.report for k, v in sorted(self._symbols.items())}

    def book(self, symbol: str) -> OrderBook | None:
        """The book being rebuilt for ``symbol`` (None before its first depth message)."""
        st = self._symbols.get(symbol)
        return st.feed.book if st is not None and st.feed is not None else None

    def on_bad_line(self, path: str, lineno: int, reason: str) -> None:
        """``on_error`` handler for :func:`iter_session`: count and go on."""
        self.bad_lines += 1

    def _state(self, symbol: str) -> _SymbolState:
        st = self._symbols.get(symbol)
        if st is None:
            st = self._symbols[symbol] = _SymbolState(SymbolReport(symbol))
        return st

    def _ensure_feed(self, st: _SymbolState, market: str) -> DepthFeed:
        if st.feed is None:
            m: Market = "usdm" if market == "usdm" else "spot"
            st.feed = DepthFeed(m, st.report.symbol)
            st.report.market = m
        return st.feed

    def feed(self, msg: RecordedMessage) -> None:
        """Process one message."""
        self.messages += 1
        symbol = msg.symbol or "?"
        st = self._state(symbol)
        streams = st.report.streams
        key = msg.stream if msg.stream is not None else "rest"
        streams[key] = streams.get(key, 0) + 1
        if msg.source == "rest":
            self._on_rest(st, msg)
            return
        if msg.stream is None:
            return
        kind = _stream_kind(msg.stream)
        if kind == "depth":
            self._on_diff(st, msg)
        elif kind == "bookTicker":
            self._on_ticker(st, msg.payload)
        elif kind == "trade":
            self._on_trade(st, msg.payload)
        elif kind == "aggTrade":
            self._on_agg(st, msg.payload)

    def _market(self, msg: RecordedMessage, usdm_hint: bool) -> str:
        if self.market is not None:
            return self.market
        return market_of(msg) or ("usdm" if usdm_hint else "spot")

    def _on_rest(self, st: _SymbolState, msg: RecordedMessage) -> None:
        if msg.url is not None and "depth" not in msg.url:
            return  # exchangeInfo and other REST bodies: counted only
        try:
            probe = _SNAP.decode(msg.payload)
        except msgspec.DecodeError:
            st.report.errors += 1
            return
        if probe.lastUpdateId is None:
            st.report.errors += 1
            return
        feed = self._ensure_feed(st, self._market(msg, probe.E != 0))
        feed.on_snapshot(msg.payload)
        self._after_apply(st, feed)

    def _on_diff(self, st: _SymbolState, msg: RecordedMessage) -> None:
        payload = msg.payload
        feed = st.feed
        if feed is None:
            feed = self._ensure_feed(st, self._market(msg, b'"pu":' in payload))
        action = feed.on_diff(payload)
        if action is None:
            return
        head = feed.last_head
        assert head is not None
        r = st.report
        if st.prev_u >= 0:
            if feed.sync.market == "usdm":
                broken = head.pu != st.prev_u
            else:
                broken = st.prev_u + 1 != head.U
            if broken:
                r.diff_breaks += 1
        else:
            r.first_u = head.U
        if head.u > st.prev_u:
            st.prev_u = head.u
            r.last_u = head.u
        if action is Action.APPLIED:
            self._after_apply(st, feed)

    def _after_apply(self, st: _SymbolState, feed: DepthFeed) -> None:
        if not feed.synced:
            return
        if feed.book.is_crossed():
            st.report.crossed += 1
        u = feed.sync.last_u
        pending = st.pending
        while pending and pending[0].u < u:
            pending.popleft()
        if pending and pending[0].u == u:
            self._compare(st, feed, pending.popleft())

    def _on_ticker(self, st: _SymbolState, payload: bytes) -> None:
        try:
            t = _TICKER.decode(payload)
        except msgspec.DecodeError:
            st.report.errors += 1
            return
        feed = st.feed
        if feed is not None and feed.synced and t.u == feed.sync.last_u:
            self._compare(st, feed, t)
        elif feed is None or not feed.synced or t.u > feed.sync.last_u:
            st.pending.append(t)

    def _compare(self, st: _SymbolState, feed: DepthFeed, t: _Ticker) -> None:
        r = st.report
        try:
            want = (to_fixed(t.b), to_fixed(t.B), to_fixed(t.a), to_fixed(t.A))
        except FixedPointError:
            r.errors += 1
            return
        book = feed.book
        have = (*book.best_bid(), *book.best_ask())
        if have == want:
            r.ticker_matched += 1
        else:
            r.ticker_mismatched += 1
            if len(r.mismatches) < self.keep_mismatches:
                r.mismatches.append(TickerMismatch(t.u, want, have))

    def _on_trade(self, st: _SymbolState, payload: bytes) -> None:
        try:
            t = _TRADE.decode(payload).t
        except msgspec.DecodeError:
            st.report.errors += 1
            return
        if st.last_trade >= 0 and t != st.last_trade + 1:
            st.report.trade_breaks += 1
        st.last_trade = t

    def _on_agg(self, st: _SymbolState, payload: bytes) -> None:
        try:
            a = _AGG.decode(payload)
        except msgspec.DecodeError:
            st.report.errors += 1
            return
        if st.last_agg >= 0 and (a.a != st.last_agg + 1 or a.f != st.last_agg_l + 1):
            st.report.agg_breaks += 1
        st.last_agg = a.a
        st.last_agg_l = a.l

    def as_dict(self) -> dict[str, Any]:
        """The whole result, JSON-ready."""
        return {
            "messages": self.messages,
            "bad_lines": self.bad_lines,
            "symbols": {k: v.as_dict() for k, v in self.reports.items()},
        }


def replay_files(
    paths: Iterable[str],
    market: Market | None = None,
    progress: Callable[[int], None] | None = None,
    every: int = 50_000,
    messages: Callable[[Iterable[RecordedMessage]], Iterable[RecordedMessage]] | None = None,
) -> Replay:
    """Replay recordings of one session (merged by time) and return the :class:`Replay`.

    ``progress(n)`` is called every ``every`` messages; ``messages`` may filter or
    alter the message stream (tests use it to inject gaps).
    """
    rp = Replay(market)
    stream: Iterable[RecordedMessage] = iter_session(list(paths), rp.on_bad_line)
    if messages is not None:
        stream = messages(stream)
    for n, msg in enumerate(stream, 1):
        rp.feed(msg)
        if progress is not None and n % every == 0:
            progress(n)
    return rp


class _Envelope(msgspec.Struct, gc=False):
    stream: str
    data: msgspec.Raw


_ENVELOPE_DECODER = msgspec.json.Decoder(_Envelope)


def replay_event_log(directory: str | os.PathLike[str], market: Market | None = None) -> Replay:
    """Replay the raw exchange messages a node's event log holds (market streams and REST
    depth snapshots, as the feed received them) through the same checks as a recording:
    the books rebuilt by the sync procedure against every bookTicker at the same id."""
    from urllib.parse import parse_qs, urlparse

    from wiresens.eventlog import EntryType, EventLogReader
    from wiresens.taps import RawSource

    replay = Replay(market)
    for entry in EventLogReader(directory).entries():
        raw = entry.raw
        if entry.type != EntryType.RAW or raw is None:
            continue
        if raw.source == RawSource.MARKET_STREAM:
            try:
                env = _ENVELOPE_DECODER.decode(raw.data)
            except msgspec.DecodeError:
                replay.on_bad_line(str(directory), 0, "malformed stream frame")
                continue
            symbol = env.stream.partition("@")[0].upper()
            replay.feed(
                RecordedMessage(raw.ts_recv, "ws", env.stream, symbol, None, bytes(env.data))
            )
        elif raw.source == RawSource.REST:
            rest_symbol = parse_qs(urlparse(raw.stream).query).get("symbol", [""])[0] or None
            replay.feed(
                RecordedMessage(raw.ts_recv, "rest", None, rest_symbol, raw.stream, raw.data)
            )
    return replay
