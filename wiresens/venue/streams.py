"""Market data streams of the venue: ``/ws/<stream>``, ``/stream?streams=a/b`` and SUBSCRIBE.

Streams per symbol: ``<sym>@trade``, ``<sym>@aggTrade``, ``<sym>@bookTicker``,
``<sym>@depth`` (= ``@depth@1000ms``) and ``<sym>@depth@100ms``. Diff depth
events carry the levels that changed since the previous event of that stream
with ``U`` = previous ``u`` + 1 and ``u`` = the book's update id, so a client
that fetched ``GET /api/v3/depth`` (``lastUpdateId``) syncs exactly as on
Binance. Every client owns a bounded queue; one that falls too far behind is
disconnected rather than slowing the venue.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import msgspec

from wiresens.fixedpoint import from_fixed

from .matching import Engine, PublicTrade

__all__ = ["Client", "StreamHub"]

_encode = msgspec.json.Encoder().encode
KINDS = ("trade", "aggTrade", "bookTicker", "depth", "depth@100ms", "depth@1000ms")


class Client:
    """One WebSocket connection's outgoing side: a bounded queue drained by a writer task."""

    __slots__ = ("closed", "combined", "queue", "streams")

    def __init__(self, combined: bool, queue_size: int) -> None:
        self.combined = combined
        self.queue: asyncio.Queue[str | None] = asyncio.Queue(queue_size)
        self.streams: set[str] = set()
        self.closed = False

    def send(self, text: str) -> None:
        if self.closed:
            return
        try:
            self.queue.put_nowait(text)
        except asyncio.QueueFull:
            self.close()  # a slow consumer is cut, as Binance does

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            with contextlib.suppress(asyncio.QueueFull):
                self.queue.put_nowait(None)


class _DepthFeed:
    __slots__ = ("dirty", "last_u", "stream")

    def __init__(self, stream: str, update_id: int) -> None:
        self.stream = stream
        self.dirty: set[tuple[bool, int]] = set()
        self.last_u = update_id


class StreamHub:
    """Routes engine output to the clients subscribed to each stream."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.subs: dict[str, set[Client]] = {}
        self._feeds: dict[str, _DepthFeed] = {}
        self._tops: dict[str, tuple[int, int, int, int]] = {}
        self._lower = {s.lower(): s for s in engine.books}

    # -- subscriptions ----------------------------------------------------------------------
    def parse(self, stream: str) -> tuple[str, str] | None:
        """``(SYMBOL, kind)`` of a stream name, or ``None`` when the venue has no such stream."""
        sym, _, kind = stream.partition("@")
        symbol = self._lower.get(sym)
        if symbol is None or kind not in KINDS:
            return None
        return symbol, kind

    def subscribe(self, client: Client, stream: str) -> bool:
        parsed = self.parse(stream)
        if parsed is None:
            return False
        symbol, kind = parsed
        self.subs.setdefault(stream, set()).add(client)
        client.streams.add(stream)
        if kind.startswith("depth") and stream not in self._feeds:
            book = self.engine.books[symbol]
            feed = _DepthFeed(stream, book.update_id)
            book.listeners.append(feed.dirty)
            self._feeds[stream] = feed
        return True

    def unsubscribe(self, client: Client, stream: str) -> None:
        client.streams.discard(stream)
        subs = self.subs.get(stream)
        if subs is None:
            return
        subs.discard(client)
        if not subs:
            del self.subs[stream]
            feed = self._feeds.pop(stream, None)
            if feed is not None:
                parsed = self.parse(stream)
                assert parsed is not None
                listeners = self.engine.books[parsed[0]].listeners
                listeners[:] = [s for s in listeners if s is not feed.dirty]

    def drop(self, client: Client) -> None:
        for s in list(client.streams):
            self.unsubscribe(client, s)
        client.close()

    # -- output -----------------------------------------------------------------------------
    def _emit(self, stream: str, data: dict[str, Any]) -> None:
        subs = self.subs.get(stream)
        if not subs:
            return
        raw: str | None = None
        wrapped: str | None = None
        for c in subs:
            if c.combined:
                if wrapped is None:
                    wrapped = _encode({"stream": stream, "data": data}).decode()
                c.send(wrapped)
            else:
                if raw is None:
                    raw = _encode(data).decode()
                c.send(raw)

    def on_trade(self, t: PublicTrade, event_ms: int) -> None:
        low = t.symbol.lower()
        p, q = from_fixed(t.price), from_fixed(t.qty)
        s_trade, s_agg = f"{low}@trade", f"{low}@aggTrade"
        if s_trade in self.subs:
            self._emit(
                s_trade,
                {
                    "e": "trade",
                    "E": event_ms,
                    "s": t.symbol,
                    "t": t.trade_id,
                    "p": p,
                    "q": q,
                    "T": t.ts_ms,
                    "m": t.buyer_is_maker,
                    "M": True,
                },
            )
        if s_agg in self.subs:
            self._emit(
                s_agg,
                {
                    "e": "aggTrade",
                    "E": event_ms,
                    "s": t.symbol,
                    "a": t.trade_id,
                    "p": p,
                    "q": q,
                    "f": t.trade_id,
                    "l": t.trade_id,
                    "T": t.ts_ms,
                    "m": t.buyer_is_maker,
                    "M": True,
                },
            )

    def check_book_tickers(self) -> None:
        """Send ``@bookTicker`` for every subscribed symbol whose top of book changed."""
        for sym, book in self.engine.books.items():
            stream = f"{sym.lower()}@bookTicker"
            if stream not in self.subs:
                continue
            b, a = book.bids.best(), book.asks.best()
            top = (b, book.level_qty(True, b) if b else 0, a, book.level_qty(False, a) if a else 0)
            if self._tops.get(sym) == top:
                continue
            self._tops[sym] = top
            self._emit(
                stream,
                {
                    "u": book.update_id,
                    "s": sym,
                    "b": from_fixed(top[0]),
                    "B": from_fixed(top[1]),
                    "a": from_fixed(top[2]),
                    "A": from_fixed(top[3]),
                },
            )

    def flush_depth(self, fast: bool, event_ms: int) -> None:
        """Send one diff event per depth stream of the given speed that has changes."""
        for stream, feed in self._feeds.items():
            if stream.endswith("@100ms") != fast or not feed.dirty:
                continue
            parsed = self.parse(stream)
            assert parsed is not None
            book = self.engine.books[parsed[0]]
            bids: list[list[str]] = []
            asks: list[list[str]] = []
            for is_bid, price in sorted(feed.dirty):
                (bids if is_bid else asks).append(
                    [from_fixed(price), from_fixed(book.level_qty(is_bid, price))]
                )
            feed.dirty.clear()
            u = book.update_id
            self._emit(
                stream,
                {
                    "e": "depthUpdate",
                    "E": event_ms,
                    "s": book.symbol,
                    "U": feed.last_u + 1,
                    "u": u,
                    "b": bids,
                    "a": asks,
                },
            )
            feed.last_u = u
