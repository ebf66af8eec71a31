"""The feed gateway: Binance connections in, records out; order requests out, reports in.

Connections (all to one venue: Binance, its testnet, or the built-in venue):

* market streams (one combined-stream WebSocket): diff depth, bookTicker, trade;
* REST depth snapshots, fetched when a symbol's book needs one;
* the WebSocket API: ``session.logon`` (Ed25519), ``userDataStream.subscribe``,
  and the orders execution sends on its ring.

The books are kept with the documented snapshot + diff procedure
(:class:`wiresens.binance.fastdepth.DepthFeed`); a gap discards the book and
fetches a new snapshot while diffs keep being buffered. Records published:

* TOP_OF_BOOK to every policy subscribed to the symbol (from ``@bookTicker``
  when streamed, the fastest top-of-book source; else from the synced book after
  each applied diff) and into the seqlock slot of the symbol;
* TRADE to the subscribed policies;
* EXECUTION_REPORT (user data stream, and rejects of order requests) to execution.

Market data to a policy whose ring is full is not waited for: the ring's
``full`` counter counts it and the next top of book supersedes it (the seqlock
slot always has the latest). Reports to execution are never dropped: they wait
in a backlog.

The feed is an I/O actor: it owns an asyncio (uvloop) loop instead of the
runner's duty cycle. The tick-to-order path starts when a record is in a
policy's ring, so no asyncio runs on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import urllib.request
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
import numpy as np
import structlog
import websockets

from wiresens.binance.codec import (
    DecodeStats,
    MarketDecoder,
    UserDecoder,
    encode_request,
    order_result,
    parse_client_order_id,
    parse_ws_response,
    write_order_response,
    write_reject,
)
from wiresens.binance.fastdepth import DepthFeed
from wiresens.binance.orders import OrderEncoder
from wiresens.binance.ratelimit import RateLimitState
from wiresens.binance.signing import Ed25519Signer, HmacSigner, ws_payload
from wiresens.binance.sync import Action
from wiresens.binance.wire import (
    DECODERS,
    OPEN_ORDERS_DECODER,
    BookTicker,
    ExchangeInfo,
    StreamEnvelope,
    Trade,
)
from wiresens.instruments import InstrumentTable
from wiresens.policy import ClOrdIdGen
from wiresens.records import (
    CONTROL_GATEWAY_CONNECTED,
    EXECUTION_REPORT,
    ORDER_REQUEST,
    SCHEMA_VERSION,
    TOP_OF_BOOK,
    ExecStatus,
    ExecType,
    RecordKind,
    new_record,
)
from wiresens.shm import Consumer, Producer, Ring, SeqlockSlots
from wiresens.taps import RawSource, Tap

from .actor import Actor
from .status import StatusWriter
from .topology import Topology

__all__ = ["FeedActor", "FeedEndpoints"]

_ENVELOPE = DECODERS[StreamEnvelope]
_BOOK_TICKER = DECODERS[BookTicker]
_TRADE = DECODERS[Trade]
_TOB = int(RecordKind.TOP_OF_BOOK)
_EXEC = int(RecordKind.EXECUTION_REPORT)
_QUERY = int(RecordKind.ORDER_QUERY)
_CANCEL = int(RecordKind.ORDER_CANCEL)
_REPLACE = int(RecordKind.ORDER_REPLACE)
_REASON_UNKNOWN_ORDER = 9  # wiresens.risk.RejectReason.UNKNOWN_ORDER
_FIELDS: Any = EXECUTION_REPORT.fields
_POLICY_BYTE: int = _FIELDS["policy"][1]
STREAM_SUFFIX = {"depth": "depth@100ms", "bookTicker": "bookTicker", "trade": "trade"}


class FeedEndpoints(msgspec.Struct, frozen=True):
    """Where the venue is: ``rest`` (http://host:port), ``ws`` (ws://host:port), ``ws_api``."""

    rest: str
    ws: str
    ws_api: str


class FeedActor(Actor):
    name = "feed"

    def __init__(
        self,
        *,
        prefix: str,
        policies: int,
        symbol_count: int,
        instruments: Sequence[Any],
        policy_symbols: Sequence[Sequence[int]],
        endpoints: dict[str, str],
        api_key: str = "",
        secret: str = "",
        private_key_pem: bytes = b"",
        streams: Sequence[str] = ("depth", "bookTicker", "trade"),
        account: int = 0,
        market: str = "spot",
        spin: bool = False,
    ) -> None:
        self.topo = Topology(prefix, policies, symbol_count)
        self.instruments = list(instruments)
        self.policy_symbols = [list(s) for s in policy_symbols]
        self.endpoints = FeedEndpoints(**endpoints)
        self.api_key = api_key
        self.secret = secret
        self.private_key_pem = private_key_pem
        self.streams = list(streams)
        self.account = account
        self.market = market
        self.spin = spin
        self.log: Any = structlog.get_logger("feed")
        # Counters (copied into the status heartbeat as work).
        self.messages = 0
        self.published = 0
        self.snapshots = 0
        self.resyncs = 0
        self.reconnects = 0
        self.orders_sent = 0
        self.rejects = 0

    # -- setup -------------------------------------------------------------------------
    def on_start(self) -> None:
        self.table = InstrumentTable(self.instruments)
        self.symbols = self.table.symbols()
        t = self.topo
        self.md: list[Producer] = [Ring.attach(t.md(p), None).producer() for p in range(t.policies)]
        self.subs: dict[int, list[Producer]] = {i + 1: [] for i in range(len(self.symbols))}
        for p, syms in enumerate(self.policy_symbols):
            for s in syms:
                self.subs.setdefault(s, []).append(self.md[p])
        self.reports: Producer = Ring.attach(t.reports, None).producer()
        self.orders: Consumer = Ring.attach(t.orders, None).consumer()
        self.tob = SeqlockSlots.attach(
            t.tob,
            TOP_OF_BOOK,
            record_kind=int(RecordKind.TOP_OF_BOOK),
            schema_version=SCHEMA_VERSION[RecordKind.TOP_OF_BOOK],
        )
        self.tap = Tap(t.tap("feed"))
        self.stats = DecodeStats()
        self.decoder = MarketDecoder(self.table, futures=self.market == "usdm", stats=self.stats)
        self.user = UserDecoder(self.table, account=self.account, stats=self.stats)
        self.books: dict[str, DepthFeed] = {}
        self.last_top: dict[int, tuple[int, int, int, int]] = {}
        self.use_book_ticker = "bookTicker" in self.streams
        self._md = np.zeros(1, TOP_OF_BOOK)
        self._md_raw = memoryview(self._md).cast("B")  # type: ignore[arg-type]
        self._md_words = self._md_raw.cast("q")
        self._rep = np.zeros(1, EXECUTION_REPORT)
        self._rep_raw = memoryview(self._rep).cast("B")  # type: ignore[arg-type]
        self._ord = bytearray(128)
        self._ord_raw = memoryview(self._ord)
        self.report_backlog: deque[bytes] = deque()
        self.waiting_cancels: deque[bytes] = deque()
        self.waiting_orders: deque[bytes] = deque()
        self.paced = 0
        self.rate: RateLimitState | None = None
        self._cxl = np.zeros(1, EXECUTION_REPORT)
        self._cxl_raw = memoryview(self._cxl).cast("B")  # type: ignore[arg-type]
        c = self._cxl[0]
        c["kind"] = _EXEC
        c["version"] = SCHEMA_VERSION[RecordKind.EXECUTION_REPORT]
        c["status"] = int(ExecStatus.CANCELED)
        c["exec_type"] = int(ExecType.CANCELED)
        c["trade_id"] = -1
        self.api_ws: Any = None
        self.logged_on = False
        self.snapshot_tasks: dict[str, asyncio.Task[None]] = {}
        sign: Callable[[str], str] | None = None
        if self.private_key_pem:
            sign = Ed25519Signer(self.private_key_pem).sign
        elif self.secret:
            sign = HmacSigner(self.secret).sign
        self.sign = sign
        self.encoder = OrderEncoder(self.table, logged_on=False, api_key=self.api_key, sign=sign)

    # -- market data -------------------------------------------------------------------
    def _publish(self, sym: int, raw: memoryview) -> None:
        self.tap.record(raw[0], raw)
        for prod in self.subs.get(sym, ()):
            if prod.try_write(raw):
                self.published += 1

    def _publish_top(self, sym: int, ts_recv: int, ts_exch: int) -> None:
        """Top of book from the synced book, when it changed."""
        book = self.books[self.symbols[sym - 1]].book
        bid_px, bid_qty = book.best_bid()
        ask_px, ask_qty = book.best_ask()
        top = (bid_px, bid_qty, ask_px, ask_qty)
        if self.last_top.get(sym) == top:
            return
        self.last_top[sym] = top
        w = self._md_words
        self._md[0]["kind"] = _TOB
        self._md[0]["version"] = SCHEMA_VERSION[RecordKind.TOP_OF_BOOK]
        self._md[0]["symbol"] = sym
        w[1], w[2], w[3] = ts_exch, ts_recv, time.time_ns()
        w[4], w[5], w[6], w[7] = top
        self.tob.write(sym - 1, self._md_raw)
        self._publish(sym, self._md_raw)

    def on_market_frame(self, frame: bytes | str, ts_recv: int) -> None:
        """One combined-stream frame. Never raises on bad input (counted in ``stats``)."""
        self.messages += 1
        self.tap.raw(RawSource.MARKET_STREAM, ts_recv, b"", frame)
        try:
            env = _ENVELOPE.decode(frame)
        except (msgspec.DecodeError, UnicodeDecodeError):
            self.stats.count("json")
            return
        name, _, kind = env.stream.partition("@")
        symbol = name.upper()
        sym = self.table.index(symbol)
        if not sym:
            self.stats.count("unknown_symbol")
            return
        if kind.startswith("depth"):
            feed = self.books.get(symbol)
            if feed is None:
                feed = self.books[symbol] = DepthFeed(self.market, symbol)  # type: ignore[arg-type]
            was_synced = feed.synced
            action = feed.on_diff(env.data)
            if action is Action.NEED_SNAPSHOT:
                if was_synced:
                    self.resyncs += 1
                    self.log.warning("depth gap: resync", symbol=symbol)
                self._want_snapshot(symbol)
            elif action is Action.APPLIED and not self.use_book_ticker:
                head = feed.last_head
                self._publish_top(sym, ts_recv, (head.E if head is not None else 0) * 1_000_000)
            elif action is Action.BUFFERED and symbol not in self.snapshot_tasks:
                self._want_snapshot(symbol)
            return
        raw = self._md_raw
        try:
            if kind == "bookTicker":
                msg = _BOOK_TICKER.decode(env.data)
                if self.decoder.write_top_of_book(msg, raw, ts_recv):
                    self._md_words[3] = time.time_ns()
                    self.tob.write(sym - 1, raw)
                    self._publish(sym, raw)
            elif kind == "trade":
                tmsg = _TRADE.decode(env.data)
                if self.decoder.write_trade(tmsg, raw, ts_recv):
                    self._md_words[3] = time.time_ns()
                    self._publish(sym, raw)
            else:
                self.stats.count("unknown_stream")
        except (msgspec.DecodeError, UnicodeDecodeError):
            self.stats.count("schema")

    def _want_snapshot(self, symbol: str) -> None:
        task = self.snapshot_tasks.get(symbol)
        if task is None or task.done():
            self.snapshot_tasks[symbol] = asyncio.get_running_loop().create_task(
                self._snapshot(symbol)
            )

    async def _snapshot(self, symbol: str) -> None:
        url = f"{self.endpoints.rest}/api/v3/depth?symbol={symbol}&limit=1000"
        delay = 0.05
        while True:
            try:
                body = await asyncio.to_thread(_http_get, url)
            except OSError as exc:
                self.log.warning("snapshot failed", symbol=symbol, error=str(exc), retry_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            self.tap.raw(RawSource.REST, time.time_ns(), url.encode(), body)
            feed = self.books.get(symbol)
            if feed is None:
                feed = self.books[symbol] = DepthFeed(self.market, symbol)  # type: ignore[arg-type]
            action = feed.on_snapshot(body)
            self.snapshots += 1
            if action is Action.NEED_SNAPSHOT or action is None:
                # Older than the buffered diffs (or malformed): fetch again.
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            if feed.synced and not self.use_book_ticker:
                self._publish_top(self.table.index(symbol), time.time_ns(), 0)
            return

    def stream_url(self) -> str:
        names = [
            f"{s.lower()}@{STREAM_SUFFIX[k]}"
            for s in self.symbols
            for k in self.streams
            if k in STREAM_SUFFIX
        ]
        return f"{self.endpoints.ws}/stream?streams={'/'.join(names)}"

    async def _market(self) -> None:
        delay = 0.1
        while True:
            try:
                async with websockets.connect(
                    self.stream_url(), max_size=None, compression=None
                ) as ws:
                    self.log.info("market streams connected", url=self.stream_url())
                    delay = 0.1
                    # A new connection: every book must be rebuilt from a fresh snapshot.
                    self.books.clear()
                    self.last_top.clear()
                    async for frame in ws:
                        self.on_market_frame(frame, time.time_ns())
            except (OSError, websockets.WebSocketException) as exc:
                self.reconnects += 1
                self.log.warning("market streams lost", error=str(exc), retry_s=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    # -- orders and user data ----------------------------------------------------------
    def _report(self, raw: memoryview | bytes) -> None:
        if self.report_backlog or not self.reports.try_write(raw):
            self.report_backlog.append(bytes(raw))

    def _flush_reports(self) -> int:
        n = 0
        while self.report_backlog and self.reports.try_write(self.report_backlog[0]):
            self.report_backlog.popleft()
            n += 1
        return n

    def on_api_frame(self, frame: bytes | str, ts_recv: int) -> None:
        """A WebSocket API frame: a user-data event or the response to a request."""
        text = frame if isinstance(frame, bytes) else frame.encode()
        self.tap.raw(RawSource.WS_API_IN, ts_recv, b"", text)
        if b'"event"' in text[:64]:
            n = self.user.decode_into(text, self._rep_raw, ts_recv)
            if n == 1 and self._rep_raw[0] == _EXEC:
                cl = int(self._rep[0]["cl_ord_id"]) or int(self._rep[0]["orig_cl_ord_id"])
                self._rep_raw[_POLICY_BYTE] = ClOrdIdGen.policy_of(cl) & 0xFF
                self._report(self._rep_raw)
            return
        resp = parse_ws_response(text, self.stats)
        if resp is None:
            return
        if self.rate is not None:
            self.rate.update_from_ws(resp.rateLimits, resp.status)
            if resp.status in (418, 429):
                retry = _retry_after_ms(resp)
                if retry:
                    self.rate.block_until(retry / 1000, banned=resp.status == 418)
                self.log.error(
                    "rate limited by the exchange",
                    status=resp.status,
                    headroom=self.rate.headroom(),
                    retry_after_ms=retry,
                )
        if not isinstance(resp.id, int):
            return
        rec = self.encoder.resolve(resp.id)
        if rec is None:
            return
        if resp.status == 200:
            if rec[0] == _QUERY and not int.from_bytes(rec[40:48], "little"):
                self._report_open_orders(resp, ts_recv)
                return
            if rec[0] == _QUERY:
                order = order_result(resp)
                cl = int.from_bytes(rec[40:48], "little", signed=True)
                if order is not None and write_order_response(
                    order,
                    self.table,
                    self._rep_raw,
                    ts_recv,
                    account=self.account,
                    policy=ClOrdIdGen.policy_of(cl) & 0xFF,
                ):
                    self._report(self._rep_raw)
            return
        code = resp.error.code if resp.error is not None else -1
        self.rejects += 1
        self.log.warning("order rejected", code=code, msg=resp.error.msg if resp.error else "")
        reason = _REASON_UNKNOWN_ORDER if rec[0] == _QUERY else 11
        if write_reject(rec, code, self._rep_raw, ts_recv, reason=reason):
            self._report(self._rep_raw)

    def _report_open_orders(self, resp: Any, ts_recv: int) -> None:
        """``openOrders.status``: one report per open order, for execution to reconcile."""
        try:
            orders = OPEN_ORDERS_DECODER.decode(resp.result) if resp.result else ()
        except (msgspec.DecodeError, UnicodeDecodeError):
            self.stats.count("schema")
            return
        for order in orders:
            cl = parse_client_order_id(order.clientOrderId)
            if write_order_response(
                order,
                self.table,
                self._rep_raw,
                ts_recv,
                account=self.account,
                policy=ClOrdIdGen.policy_of(cl) & 0xFF,
            ):
                self._report(self._rep_raw)
        self.log.info("open orders at the exchange", count=len(orders))

    async def _request(self, ws: Any, method: str, params: dict[str, object]) -> Any:
        rid = f"{method}-{time.time_ns()}"
        await ws.send(encode_request(rid, method, params), text=True)
        while True:
            frame = await asyncio.wait_for(ws.recv(), 10)
            resp = parse_ws_response(frame, self.stats)
            if resp is not None and resp.id == rid:
                return resp
            self.on_api_frame(frame, time.time_ns())

    async def _api(self) -> None:
        delay = 0.1
        while True:
            try:
                async with websockets.connect(
                    f"{self.endpoints.ws_api}/ws-api/v3", max_size=None
                ) as ws:
                    if self.private_key_pem:
                        params: dict[str, object] = {
                            "apiKey": self.api_key,
                            "timestamp": time.time_ns() // 1_000_000,
                        }
                        assert self.sign is not None
                        params["signature"] = self.sign(ws_payload(params))
                        resp = await self._request(ws, "session.logon", params)
                        if resp.status != 200:
                            raise ConnectionError(f"session.logon refused: {resp.error}")
                        self.encoder.logged_on = True
                        sub = await self._request(ws, "userDataStream.subscribe", {})
                    else:
                        p2: dict[str, object] = {
                            "apiKey": self.api_key,
                            "timestamp": time.time_ns() // 1_000_000,
                        }
                        if self.sign is not None:
                            p2["signature"] = self.sign(ws_payload(p2))
                        sub = await self._request(ws, "userDataStream.subscribe.signature", p2)
                    if sub.status != 200:
                        self.log.error("user data subscription refused", error=str(sub.error))
                    self.log.info("websocket api connected", logged_on=self.encoder.logged_on)
                    self.api_ws = ws
                    delay = 0.1
                    # Execution answers with order.status queries for every open order.
                    ctl = new_record(RecordKind.CONTROL)
                    ctl["command"] = CONTROL_GATEWAY_CONNECTED
                    ctl["ts_pub"] = time.time_ns()
                    self._report(bytes(memoryview(ctl).cast("B")) + bytes(64))  # type: ignore[arg-type]
                    async for frame in ws:
                        self.on_api_frame(frame, time.time_ns())
            except (OSError, websockets.WebSocketException, TimeoutError, ConnectionError) as exc:
                self.reconnects += 1
                self.log.warning("websocket api lost", error=str(exc), retry_s=delay)
            self.api_ws = None
            self.encoder.logged_on = False
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _order_pump(self) -> None:
        """Orders from execution to the WebSocket API, paced by the exchange's rate limits.

        Records wait here as records (encoded, with a fresh timestamp, only when sent):
        cancels and status queries first, never held back by the order-count limits;
        new orders when the rate-limit state has room. A cancel for an order still
        waiting here (a disconnect, or pacing) removes both and reports the order
        CANCELED: it never reached the exchange.
        """
        raw = self._ord_raw
        pause = 0 if self.spin else 0.0002
        while True:
            n = self._flush_reports()
            if self.tap.backlog:
                n += self.tap.flush()
            while self.orders.try_read(raw):
                n += 1
                self._queue_order(bytes(raw))
            ws = self.api_ws
            if ws is not None and (self.waiting_cancels or self.waiting_orders):
                n += await self._send_waiting(ws)
            if not n:
                await asyncio.sleep(pause)

    def _queue_order(self, rec: bytes) -> None:
        kind = rec[0]
        if kind == _CANCEL:
            orig = int.from_bytes(rec[40:48], "little", signed=True)
            for i, queued in enumerate(self.waiting_orders):
                if int.from_bytes(queued[32:40], "little", signed=True) == orig:
                    del self.waiting_orders[i]
                    self._report_unsent_cancel(queued)
                    if queued[0] == _REPLACE:
                        # The replace never left: its original still works at the
                        # exchange, and cancelling the replacement means cancelling it.
                        cxl = bytearray(queued)
                        cxl[0] = _CANCEL
                        cxl[32:40] = bytes(8)
                        self.waiting_cancels.append(bytes(cxl))
                    return
            self.waiting_cancels.append(rec)
        elif kind == _QUERY:
            self.waiting_cancels.append(rec)
        else:
            self.waiting_orders.append(rec)

    def _report_unsent_cancel(self, rec: bytes) -> None:
        r = self._cxl[0]
        q = np.frombuffer(rec, ORDER_REQUEST)[0]
        for f in ("symbol", "cl_ord_id", "price", "qty", "side", "policy", "account"):
            r[f] = q[f]
        r["ts_recv"] = time.time_ns()
        self._report(self._cxl_raw)

    async def _send_waiting(self, ws: Any) -> int:
        sent = 0
        rate = self.rate
        while self.waiting_cancels:
            if rate is not None and rate.banned and rate.should_wait(1, 0) > 0:
                return sent
            if not await self._send(ws, self.waiting_cancels[0]):
                return sent
            self.waiting_cancels.popleft()
            sent += 1
        while self.waiting_orders:
            if rate is not None and rate.should_wait(1, 1) > 0:
                self.paced += 1
                return sent
            if not await self._send(ws, self.waiting_orders[0]):
                return sent
            self.waiting_orders.popleft()
            if rate is not None:
                rate.record(1, 1)
            sent += 1
        return sent

    async def _send(self, ws: Any, rec: bytes) -> bool:
        frame = self.encoder.encode(rec)
        if frame is None:
            return True
        try:
            await ws.send(frame, text=True)
        except websockets.WebSocketException:
            return False
        self.tap.raw(RawSource.WS_API_OUT, time.time_ns(), b"", frame)
        self.orders_sent += 1
        return True

    # -- the loop ------------------------------------------------------------------------
    def run(self, should_stop: Callable[[], bool], status: StatusWriter | None, idle: str) -> bool:
        self.spin = self.spin or idle == "spin"
        try:
            import uvloop

            uvloop.run(self._main(should_stop, status))
        except ImportError:  # pragma: no cover - uvloop is a dependency
            asyncio.run(self._main(should_stop, status))
        return True

    async def _load_rate_limits(self) -> None:
        try:
            body = await asyncio.to_thread(_http_get, f"{self.endpoints.rest}/api/v3/exchangeInfo")
            info = msgspec.json.decode(body, type=ExchangeInfo)
        except (OSError, msgspec.DecodeError) as exc:
            self.log.warning("no exchangeInfo rate limits; orders are not paced", error=str(exc))
            return
        # 90 %: the rest is left for cancels and for other programs on the same account.
        self.rate = RateLimitState.from_exchange_info(info, safety=0.9)

    async def _main(self, should_stop: Callable[[], bool], status: StatusWriter | None) -> None:
        await self._load_rate_limits()
        tasks = [
            asyncio.create_task(self._market(), name="market"),
            asyncio.create_task(self._api(), name="ws-api"),
            asyncio.create_task(self._order_pump(), name="orders"),
        ]
        cycles = 0
        try:
            while not should_stop():
                await asyncio.sleep(0.1)
                cycles += 1
                for t in tasks:
                    if t.done() and t.exception() is not None:
                        raise t.exception()  # type: ignore[misc]
                if status is not None:
                    status.heartbeat(cycles, self.messages)
        finally:
            # Let the last orders (execution's cancels at stop) and reports out first.
            self._flush_reports()
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
            for st in self.snapshot_tasks.values():
                st.cancel()


def _retry_after_ms(resp: Any) -> int:
    """``retryAfter`` (epoch ms) from a WebSocket API 429/418 error's ``data``."""
    data = getattr(resp.error, "data", None) if resp.error is not None else None
    if isinstance(data, dict):
        value = data.get("retryAfter")
        if isinstance(value, int):
            return value
    return 0


def _http_get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as resp:
        body: bytes = resp.read()
        return body
