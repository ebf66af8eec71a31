"""The feed gateway: Binance connections in, records out; order requests out, reports in.

Connections (all to one venue: Binance, its testnet, or the built-in venue):

* market streams (one combined-stream WebSocket): diff depth, bookTicker, trade;
* REST depth snapshots, fetched when a symbol's book needs one;
* the WebSocket API, one connection per account (:class:`AccountSession`):
  ``session.logon`` (Ed25519), ``userDataStream.subscribe``, the orders execution
  sends on its ring (routed by the request's ``account``), ``openOrders.status``
  and ``account.status`` for execution's reconciliation. Each account has its
  own keys and its own rate governor; its reports carry its index.

A key the exchange refuses at logon is fatal: the feed writes the error (naming
the account) to its status file and fails, and the node stops on it; retrying
a wrong key forever would only look like a silent outage.

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
import json
import os
import time
import urllib.request
from collections import deque
from collections.abc import Callable, Mapping, Sequence
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
    AccountInfo,
    BookTicker,
    ExchangeInfo,
    StreamEnvelope,
    Trade,
)
from wiresens.errors import ConfigError
from wiresens.fixedpoint import to_fixed
from wiresens.instruments import InstrumentTable
from wiresens.policy import ClOrdIdGen
from wiresens.records import (
    ACCOUNT_SNAPSHOT_END_FLAG,
    ACCOUNT_SNAPSHOT_FLAG,
    ACCOUNT_UPDATE,
    CONTROL_GATEWAY_CONNECTED,
    EXECUTION_REPORT,
    ORDER_REQUEST,
    QUERY_BALANCES_FLAG,
    SCHEMA_VERSION,
    TOP_OF_BOOK,
    ExecStatus,
    ExecType,
    RecordKind,
    new_record,
)
from wiresens.shm import Consumer, Producer, Ring, SeqlockSlots
from wiresens.shm.doorbell import Doorbell
from wiresens.taps import RawSource, Tap

from .actor import Actor
from .status import StatusWriter
from .topology import Topology

__all__ = ["AccountSession", "FeedActor", "FeedEndpoints"]

_ENVELOPE = DECODERS[StreamEnvelope]
_BOOK_TICKER = DECODERS[BookTicker]
_TRADE = DECODERS[Trade]
_TOB = int(RecordKind.TOP_OF_BOOK)
_EXEC = int(RecordKind.EXECUTION_REPORT)
_QUERY = int(RecordKind.ORDER_QUERY)
_CANCEL = int(RecordKind.ORDER_CANCEL)
_REPLACE = int(RecordKind.ORDER_REPLACE)
_REASON_UNKNOWN_ORDER = 9  # wiresens.risk.RejectReason.UNKNOWN_ORDER
_REASON_UNKNOWN_ACCOUNT = 22  # wiresens.risk.RejectReason.UNKNOWN_ACCOUNT
_ACCOUNT_INFO = DECODERS[AccountInfo]
_ACCT_KIND = int(RecordKind.ACCOUNT_UPDATE)
# Binance answers a refused key with these; any other error at logon is retried.
_KEY_REFUSED = frozenset((-1002, -1022, -2008, -2014, -2015, -4056))
STATUS_EVERY_S = 1.0
ORDER_WAIT_S = 0.001
"""Longest sleep of the idle order pump (it also flushes report and tap backlogs)."""
_FIELDS: Any = EXECUTION_REPORT.fields
_POLICY_BYTE: int = _FIELDS["policy"][1]
STREAM_SUFFIX = {"depth": "depth@100ms", "bookTicker": "bookTicker", "trade": "trade"}


class FeedEndpoints(msgspec.Struct, frozen=True):
    """Where the venue is: ``rest`` (http://host:port), ``ws`` (ws://host:port), ``ws_api``."""

    rest: str
    ws: str
    ws_api: str


class AccountSession:
    """One exchange account's WebSocket API session and everything kept per account:
    keys and signer, order encoder (request ids), user-data decoder (stamps the
    account index), rate governor, the orders waiting to be sent, counters."""

    def __init__(
        self,
        index: int,
        name: str,
        table: InstrumentTable,
        stats: DecodeStats,
        *,
        api_key: str = "",
        secret: str = "",
        private_key_pem: bytes = b"",
    ) -> None:
        self.index = index
        self.name = name
        self.api_key = api_key
        self.private_key_pem = private_key_pem
        sign: Callable[[str], str] | None = None
        if private_key_pem:
            sign = Ed25519Signer(private_key_pem).sign
        elif secret:
            sign = HmacSigner(secret).sign
        self.sign = sign
        self.encoder = OrderEncoder(table, logged_on=False, api_key=api_key, sign=sign)
        self.user = UserDecoder(table, account=index, stats=stats)
        # No windows until exchangeInfo is read: 429/418 back-offs are honoured from the
        # first request on, the per-window pacing once the limits are known.
        self.rate: RateLimitState | None = RateLimitState((), safety=0.9)
        self.ws: Any = None
        self.waiting_cancels: deque[bytes] = deque()
        self.waiting_orders: deque[bytes] = deque()
        self.paced = 0
        self.orders_sent = 0
        self.rejects = 0
        self.reconnects = 0
        self.fatal = ""

    def __repr__(self) -> str:
        return f"AccountSession({self.index}, {self.name!r}, logged_on={self.encoder.logged_on})"

    def status(self) -> dict[str, Any]:
        """What ``node status`` shows for the account (JSON-ready)."""
        rate = self.rate
        return {
            "name": self.name,
            "index": self.index,
            "connected": self.ws is not None,
            "logged_on": self.encoder.logged_on,
            "orders_sent": self.orders_sent,
            "rejects": self.rejects,
            "reconnects": self.reconnects,
            "paced": self.paced,
            "waiting": len(self.waiting_orders) + len(self.waiting_cancels),
            "headroom": rate.headroom() if rate is not None else {},
            "blocked_s": round(max(0.0, rate.blocked_until - time.time()), 1) if rate else 0.0,
            "banned": bool(rate and rate.banned),
            "fatal": self.fatal,
        }


class FeedActor(Actor):
    """The gateway. ``accounts`` lists one mapping per account (``name``, ``api_key``
    and ``secret`` or ``private_key_pem``), in index order (the records' ``account``);
    without it the single account of ``api_key``/``secret``/``private_key_pem`` has
    index ``account``. ``status_file``: where the per-account state (logon, rate
    headroom, counters, a fatal error) is written every second as JSON."""

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
        accounts: Sequence[Mapping[str, Any]] | None = None,
        status_file: str = "",
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
        self.account_specs = [dict(a) for a in accounts] if accounts else []
        self.status_file = status_file
        self.log: Any = structlog.get_logger("feed")
        # Counters (copied into the status heartbeat as work).
        self.messages = 0
        self.published = 0
        self.snapshots = 0
        self.resyncs = 0
        self.reconnects = 0
        self.orders_sent = 0
        self.rejects = 0
        self.paced = 0

    # -- setup -------------------------------------------------------------------------
    def on_start(self) -> None:
        self.table = InstrumentTable(self.instruments)
        self.symbols = self.table.symbols()
        # Balances are reconciled for the assets the node trades (base and quote), with
        # the indices every actor's table gives them.
        self.asset_ids = {
            a: self.table.asset_index(a) for inst in self.table for a in (inst.base, inst.quote)
        }
        t = self.topo
        self.md: list[Producer] = [Ring.attach(t.md(p), None).producer() for p in range(t.policies)]
        self.subs: dict[int, list[Producer]] = {i + 1: [] for i in range(len(self.symbols))}
        for p, syms in enumerate(self.policy_symbols):
            for s in syms:
                self.subs.setdefault(s, []).append(self.md[p])
        # Spare slots (policies the control plane starts at run time): their symbols are
        # rows of the `subs` segment, followed every 0.1 s by _refresh_subs.
        self._static_slots = len(self.policy_symbols)
        self._subs_seen = [0] * t.policies
        self._subs_slots: SeqlockSlots | None = None
        if t.policies > self._static_slots:
            self._subs_slots = SeqlockSlots.attach(t.subs, t.subs_dtype())
            self._subs_row = np.zeros(1, t.subs_dtype())
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
        self._acct = np.zeros(1, ACCOUNT_UPDATE)
        self._acct_raw = memoryview(self._acct).cast("B")  # type: ignore[arg-type]
        self._cxl = np.zeros(1, EXECUTION_REPORT)
        self._cxl_raw = memoryview(self._cxl).cast("B")  # type: ignore[arg-type]
        c = self._cxl[0]
        c["kind"] = _EXEC
        c["version"] = SCHEMA_VERSION[RecordKind.EXECUTION_REPORT]
        c["status"] = int(ExecStatus.CANCELED)
        c["exec_type"] = int(ExecType.CANCELED)
        c["trade_id"] = -1
        self.snapshot_tasks: dict[str, asyncio.Task[None]] = {}
        specs = self.account_specs or [
            {
                "name": "default",
                "index": self.account,
                "api_key": self.api_key,
                "secret": self.secret,
                "private_key_pem": self.private_key_pem,
            }
        ]
        self.sessions: list[AccountSession] = []
        for i, spec in enumerate(specs):
            self.sessions.append(
                AccountSession(
                    int(spec.get("index", i)),
                    str(spec.get("name") or f"account{i}"),
                    self.table,
                    self.stats,
                    api_key=str(spec.get("api_key", "")),
                    secret=str(spec.get("secret") or ""),
                    private_key_pem=bytes(spec.get("private_key_pem") or b""),
                )
            )
        # Route by the request's account index (two bytes): a list, no hashing per order.
        self.by_account: list[AccountSession | None] = [None] * (
            max(s.index for s in self.sessions) + 1
        )
        for sess in self.sessions:
            self.by_account[sess.index] = sess

    def _refresh_subs(self) -> None:
        """Re-read the spare slots' rows of ``subs``; rebuild the routing if one changed.

        A slot that gains a symbol gets its current top of book at once (the feed only
        publishes a top of book when it changes).
        """
        slots = self._subs_slots
        if slots is None:
            return
        raw = memoryview(self._subs_row).cast("B")  # type: ignore[arg-type]
        changed = False
        for p in range(self._static_slots, self.topo.policies):
            seq = slots.sequence(p)
            if seq == self._subs_seen[p] or seq & 1 or slots.read(p, raw) != seq:
                continue
            self._subs_seen[p] = seq
            row = self._subs_row[0]["symbols"]
            syms = [s for s in range(1, len(self.symbols) + 1) if row[s]]
            while len(self.policy_symbols) <= p:
                self.policy_symbols.append([])
            for s in syms:
                if s not in self.policy_symbols[p] and self.tob.read(s - 1, self._md_raw) > 0:
                    self.md[p].try_write(self._md_raw)
            self.policy_symbols[p] = syms
            changed = True
        if changed:
            subs: dict[int, list[Producer]] = {i + 1: [] for i in range(len(self.symbols))}
            for p, syms in enumerate(self.policy_symbols):
                for s in syms:
                    subs.setdefault(s, []).append(self.md[p])
            self.subs = subs

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

    def on_api_frame(
        self, frame: bytes | str, ts_recv: int, session: AccountSession | None = None
    ) -> None:
        """A WebSocket API frame of ``session`` (default: the first account): a user-data
        event or the response to a request."""
        sess = session if session is not None else self.sessions[0]
        text = frame if isinstance(frame, bytes) else frame.encode()
        self.tap.raw(RawSource.WS_API_IN, ts_recv, b"", text)
        if b'"event"' in text[:64]:
            n = sess.user.decode_into(text, self._rep_raw, ts_recv)
            if n == 1 and self._rep_raw[0] == _EXEC:
                cl = int(self._rep[0]["cl_ord_id"]) or int(self._rep[0]["orig_cl_ord_id"])
                self._rep_raw[_POLICY_BYTE] = ClOrdIdGen.policy_of(cl) & 0xFF
                self._report(self._rep_raw)
            return
        resp = parse_ws_response(text, self.stats)
        if resp is None:
            return
        rate = sess.rate
        if rate is not None:
            rate.update_from_ws(resp.rateLimits, resp.status)
            if resp.status in (418, 429):
                retry = _retry_after_ms(resp)
                if retry:
                    rate.block_until(retry / 1000, banned=resp.status == 418)
                self.log.error(
                    "rate limited by the exchange",
                    account=sess.name,
                    status=resp.status,
                    headroom=rate.headroom(),
                    retry_after_ms=retry,
                )
        if not isinstance(resp.id, int):
            return
        rec = sess.encoder.resolve(resp.id)
        if rec is None:
            return
        if resp.status == 200:
            if rec[0] == _QUERY and rec[2] & QUERY_BALANCES_FLAG:
                self._report_balances(sess, resp, ts_recv)
                return
            if rec[0] == _QUERY and not int.from_bytes(rec[40:48], "little"):
                self._report_open_orders(sess, resp, ts_recv)
                return
            if rec[0] == _QUERY:
                order = order_result(resp)
                cl = int.from_bytes(rec[40:48], "little", signed=True)
                if order is not None and write_order_response(
                    order,
                    self.table,
                    self._rep_raw,
                    ts_recv,
                    account=sess.index,
                    policy=ClOrdIdGen.policy_of(cl) & 0xFF,
                ):
                    self._report(self._rep_raw)
            return
        code = resp.error.code if resp.error is not None else -1
        self.rejects += 1
        sess.rejects += 1
        self.log.warning(
            "order rejected",
            account=sess.name,
            code=code,
            msg=resp.error.msg if resp.error else "",
        )
        if rec[0] == _QUERY and rec[2] & QUERY_BALANCES_FLAG:
            return  # the next reconnect or timer asks again
        reason = _REASON_UNKNOWN_ORDER if rec[0] == _QUERY else 11
        if write_reject(rec, code, self._rep_raw, ts_recv, reason=reason):
            self._report(self._rep_raw)

    def _report_open_orders(self, sess: AccountSession, resp: Any, ts_recv: int) -> None:
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
                account=sess.index,
                policy=ClOrdIdGen.policy_of(cl) & 0xFF,
            ):
                self._report(self._rep_raw)
        self.log.info("open orders at the exchange", account=sess.name, count=len(orders))

    def _report_balances(self, sess: AccountSession, resp: Any, ts_recv: int) -> None:
        """``account.status``: one ACCOUNT_UPDATE per asset the node knows, the last one
        flagged, for execution to reconcile balances against its own."""
        try:
            info = _ACCOUNT_INFO.decode(resp.result) if resp.result else None
        except (msgspec.DecodeError, UnicodeDecodeError):
            info = None
        if info is None:
            self.stats.count("schema")
            return
        rows: list[tuple[int, int, int]] = []
        for bal in info.balances:
            asset = self.asset_ids.get(bal.asset, 0)
            if not asset:
                continue  # an asset no symbol of the node uses: nothing to reconcile
            try:
                rows.append((asset, to_fixed(bal.free), to_fixed(bal.locked)))
            except ValueError:
                self.stats.count("number")
                return
        if not rows:
            rows.append((0, 0, 0))
        a = self._acct[0]
        a["kind"] = _ACCT_KIND
        a["version"] = SCHEMA_VERSION[RecordKind.ACCOUNT_UPDATE]
        a["account"] = sess.index
        a["ts_exch"] = info.updateTime * 1_000_000
        a["ts_recv"] = ts_recv
        for i, (asset, free, locked) in enumerate(rows):
            last = i == len(rows) - 1
            a["flags"] = ACCOUNT_SNAPSHOT_FLAG | (ACCOUNT_SNAPSHOT_END_FLAG if last else 0)
            a["asset"], a["free"], a["locked"] = asset, free, locked
            a["ts_pub"] = time.time_ns()
            self._report(bytes(self._acct_raw) + bytes(64))
        self.log.info("balances at the exchange", account=sess.name, assets=len(rows))

    async def _request(
        self, ws: Any, method: str, params: dict[str, object], sess: AccountSession
    ) -> Any:
        rid = f"{method}-{time.time_ns()}"
        await ws.send(encode_request(rid, method, params), text=True)
        while True:
            frame = await asyncio.wait_for(ws.recv(), 10)
            resp = parse_ws_response(frame, self.stats)
            if resp is not None and resp.id == rid:
                return resp
            self.on_api_frame(frame, time.time_ns(), sess)

    def _refused(self, sess: AccountSession, what: str, resp: Any) -> None:
        """Raise the fatal error for a key the exchange refuses (else return: retried)."""
        code = resp.error.code if resp.error is not None else 0
        if resp.status in (418, 429) or resp.status >= 500 or code not in _KEY_REFUSED:
            raise ConnectionError(f"{what} failed for account {sess.name!r}: {resp.error}")
        msg = resp.error.msg if resp.error is not None else ""
        sess.fatal = (
            f"account {sess.name!r}: the exchange refused its API key at {what} "
            f"(code {code}: {msg}). Check the key in the account's key_file (api_key, and the "
            "secret or private_key that belongs to it), its permissions (spot trading, "
            "WebSocket API) and IP whitelist at the exchange, then start the node again"
        )
        self.log.error("api key refused", account=sess.name, code=code, msg=msg)
        self.write_status()
        raise ConfigError(sess.fatal)

    async def _api(self, sess: AccountSession) -> None:
        delay = 0.1
        while True:
            try:
                async with websockets.connect(
                    f"{self.endpoints.ws_api}/ws-api/v3", max_size=None
                ) as ws:
                    if sess.private_key_pem:
                        params: dict[str, object] = {
                            "apiKey": sess.api_key,
                            "timestamp": time.time_ns() // 1_000_000,
                        }
                        assert sess.sign is not None
                        params["signature"] = sess.sign(ws_payload(params))
                        resp = await self._request(ws, "session.logon", params, sess)
                        if resp.status != 200:
                            self._refused(sess, "session.logon", resp)
                        sess.encoder.logged_on = True
                        sub = await self._request(ws, "userDataStream.subscribe", {}, sess)
                    else:
                        p2: dict[str, object] = {
                            "apiKey": sess.api_key,
                            "timestamp": time.time_ns() // 1_000_000,
                        }
                        if sess.sign is not None:
                            p2["signature"] = sess.sign(ws_payload(p2))
                        sub = await self._request(
                            ws, "userDataStream.subscribe.signature", p2, sess
                        )
                        if sub.status != 200:
                            self._refused(sess, "userDataStream.subscribe.signature", sub)
                    if sub.status != 200:
                        self.log.error(
                            "user data subscription refused",
                            account=sess.name,
                            error=str(sub.error),
                        )
                    self.log.info(
                        "websocket api connected",
                        account=sess.name,
                        logged_on=sess.encoder.logged_on,
                    )
                    sess.ws = ws
                    delay = 0.1
                    self.write_status()
                    # Execution answers with order.status queries for every open order
                    # of the account and asks for its balances.
                    ctl = new_record(RecordKind.CONTROL)
                    ctl["command"] = CONTROL_GATEWAY_CONNECTED
                    ctl["target"] = sess.index
                    ctl["ts_pub"] = time.time_ns()
                    self._report(bytes(memoryview(ctl).cast("B")) + bytes(64))  # type: ignore[arg-type]
                    async for frame in ws:
                        self.on_api_frame(frame, time.time_ns(), sess)
            except (OSError, websockets.WebSocketException, TimeoutError, ConnectionError) as exc:
                self.reconnects += 1
                sess.reconnects += 1
                self.log.warning(
                    "websocket api lost", account=sess.name, error=str(exc), retry_s=delay
                )
            sess.ws = None
            sess.encoder.logged_on = False
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _order_pump(self) -> None:
        """Orders from execution to each account's WebSocket API session, paced by that
        account's rate limits.

        Records wait here as records (encoded, with a fresh timestamp, only when sent):
        cancels and status queries first, never held back by the order-count limits;
        new orders when the rate-limit state has room. A cancel for an order still
        waiting here (a disconnect, or pacing) removes both and reports the order
        CANCELED: it never reached the exchange. A request for an account the node
        has no session for is rejected (UNKNOWN_ACCOUNT).
        """
        raw = self._ord_raw
        by_account = self.by_account
        # Idle without spinning: a thread sleeps on the orders ring's doorbell (execution
        # rings it on write) while the loop serves the sockets. asyncio.sleep cannot
        # do it: uvloop's timers have 1 ms steps and a 0.2 ms sleep returns at once, so
        # the pump used to spin a whole CPU away from the policy and execution actors.
        bell = None if self.spin else Doorbell.create()
        self.orders.arm(bell)
        try:
            await self._pump_loop(raw, by_account, bell)
        finally:
            self.orders.arm(None)
            if bell is not None:
                bell.close()

    async def _pump_loop(
        self, raw: memoryview, by_account: list[AccountSession | None], bell: Doorbell | None
    ) -> None:
        orders = self.orders
        while True:
            n = self._flush_reports()
            if self.tap.backlog:
                n += self.tap.flush()
            while self.orders.try_read(raw):
                n += 1
                acct = raw[90] | raw[91] << 8  # ORDER_REQUEST.account
                sess = by_account[acct] if acct < len(by_account) else None
                if sess is None:
                    self._reject_unrouted(bytes(raw))
                    continue
                self._queue_order(sess, bytes(raw))
            for sess in self.sessions:
                ws = sess.ws
                if ws is not None and (sess.waiting_cancels or sess.waiting_orders):
                    n += await self._send_waiting(sess, ws)
            if not n:
                if bell is None:
                    await asyncio.sleep(0)
                elif orders.set_waiting():
                    try:
                        await asyncio.to_thread(bell.wait, ORDER_WAIT_S)
                    finally:
                        orders.clear_waiting()

    def _reject_unrouted(self, rec: bytes) -> None:
        self.rejects += 1
        if rec[0] == _QUERY:
            return
        self.log.error(
            "order for an unknown account",
            account=rec[90] | rec[91] << 8,
            accounts=len(self.sessions),
        )
        if write_reject(rec, 0, self._rep_raw, time.time_ns(), reason=_REASON_UNKNOWN_ACCOUNT):
            self._report(self._rep_raw)

    def _queue_order(self, sess: AccountSession, rec: bytes) -> None:
        kind = rec[0]
        if kind == _CANCEL:
            orig = int.from_bytes(rec[40:48], "little", signed=True)
            for i, queued in enumerate(sess.waiting_orders):
                if int.from_bytes(queued[32:40], "little", signed=True) == orig:
                    del sess.waiting_orders[i]
                    self._report_unsent_cancel(queued)
                    if queued[0] == _REPLACE:
                        # The replace never left: its original still works at the
                        # exchange, and cancelling the replacement means cancelling it.
                        cxl = bytearray(queued)
                        cxl[0] = _CANCEL
                        cxl[32:40] = bytes(8)
                        sess.waiting_cancels.append(bytes(cxl))
                    return
            sess.waiting_cancels.append(rec)
        elif kind == _QUERY:
            orig = int.from_bytes(rec[40:48], "little", signed=True)
            if orig and any(
                int.from_bytes(q[32:40], "little", signed=True) == orig for q in sess.waiting_orders
            ):
                # Not sent yet: queries go out first, so this one would find nothing
                # (-2013) and close an order that is about to be placed. Its own answer
                # resolves it once it is sent.
                return
            sess.waiting_cancels.append(rec)
        else:
            sess.waiting_orders.append(rec)

    def _report_unsent_cancel(self, rec: bytes) -> None:
        r = self._cxl[0]
        q = np.frombuffer(rec, ORDER_REQUEST)[0]
        for f in ("symbol", "cl_ord_id", "price", "qty", "side", "policy", "account"):
            r[f] = q[f]
        r["ts_recv"] = time.time_ns()
        self._report(self._cxl_raw)

    async def _send_waiting(self, sess: AccountSession, ws: Any) -> int:
        sent = 0
        rate = sess.rate
        while sess.waiting_cancels:
            if rate is not None and rate.banned and rate.should_wait(1, 0) > 0:
                return sent
            if not await self._send(sess, ws, sess.waiting_cancels[0]):
                return sent
            sess.waiting_cancels.popleft()
            sent += 1
        while sess.waiting_orders:
            if rate is not None and rate.should_wait(1, 1) > 0:
                self.paced += 1
                sess.paced += 1
                return sent
            if not await self._send(sess, ws, sess.waiting_orders[0]):
                return sent
            sess.waiting_orders.popleft()
            if rate is not None:
                rate.record(1, 1)
            sent += 1
        return sent

    def _balances_request(self, sess: AccountSession, rec: bytes) -> bytes:
        """``account.status`` for a balances query (tied to ``rec`` like an order)."""
        enc = sess.encoder
        params: dict[str, object] = {
            "omitZeroBalances": "true",
            "timestamp": enc.clock_ms(),
            "recvWindow": enc.recv_window,
        }
        if not enc.logged_on:
            if sess.sign is None:
                raise ConfigError(
                    f"account {sess.name!r} has no secret or private key: it cannot sign "
                    "account.status"
                )
            params["apiKey"] = sess.api_key
            params["signature"] = sess.sign(ws_payload(params))
        rid = enc.next_id
        enc.next_id = rid + 1
        enc.pending[rid] = rec
        return encode_request(rid, "account.status", params)

    async def _send(self, sess: AccountSession, ws: Any, rec: bytes) -> bool:
        if rec[0] == _QUERY and rec[2] & QUERY_BALANCES_FLAG:
            frame: bytes | None = self._balances_request(sess, rec)
        else:
            frame = sess.encoder.encode(rec)
        if frame is None:
            return True
        try:
            await ws.send(frame, text=True)
        except websockets.WebSocketException:
            return False
        self.tap.raw(RawSource.WS_API_OUT, time.time_ns(), b"", frame)
        self.orders_sent += 1
        sess.orders_sent += 1
        return True

    # -- status --------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """The feed's per-account state, as written to ``status_file``."""
        return {
            "ts_ns": time.time_ns(),
            "pid": os.getpid(),
            "accounts": [s.status() for s in self.sessions],
            "fatal": next((s.fatal for s in self.sessions if s.fatal), ""),
        }

    def write_status(self) -> None:
        """Write :meth:`status` to ``status_file`` atomically (readers never see half)."""
        if not self.status_file:
            return
        tmp = f"{self.status_file}.tmp"
        try:
            with open(tmp, "w") as f:
                json.dump(self.status(), f)
            os.replace(tmp, self.status_file)
        except OSError as exc:
            self.log.warning("cannot write the feed status", file=self.status_file, error=str(exc))

    # -- the loop ------------------------------------------------------------------------
    def run(self, should_stop: Callable[[], bool], status: StatusWriter | None, idle: str) -> bool:
        self.spin = self.spin or idle == "spin"
        try:
            import uvloop

            uvloop.run(self._main(should_stop, status))
        except ImportError:  # pragma: no cover - uvloop is a dependency
            asyncio.run(self._main(should_stop, status))
        return True

    async def _load_rate_limits(self, retry: bool = False) -> bool:
        """Read the published limits from exchangeInfo into every account's governor;
        with ``retry``, keep trying (backing off to 30 s) until it works."""
        delay = 0.5
        while True:
            try:
                url = f"{self.endpoints.rest}/api/v3/exchangeInfo"
                body = await asyncio.to_thread(_http_get, url)
                info = msgspec.json.decode(body, type=ExchangeInfo)
            except (OSError, msgspec.DecodeError) as exc:
                if not retry:
                    self.log.warning(
                        "no exchangeInfo rate limits yet: orders are not paced by window "
                        "until they are read (429/418 back-offs are honoured); retrying",
                        error=str(exc),
                    )
                    return False
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
                continue
            # One governor per account: the order counts are the account's. 90 %: the rest
            # is left for cancels and for other programs on the same account. A back-off
            # already running carries over.
            for sess in self.sessions:
                rate = RateLimitState.from_exchange_info(info, safety=0.9)
                if sess.rate is not None:
                    rate.blocked_until = sess.rate.blocked_until
                    rate.banned = sess.rate.banned
                sess.rate = rate
            if retry:
                self.log.info("exchangeInfo rate limits read: orders are paced")
            return True

    async def _main(self, should_stop: Callable[[], bool], status: StatusWriter | None) -> None:
        loaded = await self._load_rate_limits()
        tasks = [
            *([] if loaded else [asyncio.create_task(self._load_rate_limits(retry=True))]),
            asyncio.create_task(self._market(), name="market"),
            *(asyncio.create_task(self._api(s), name=f"ws-api:{s.name}") for s in self.sessions),
            asyncio.create_task(self._order_pump(), name="orders"),
        ]
        cycles = 0
        next_status = 0.0
        try:
            while not should_stop():
                await asyncio.sleep(0.1)
                self._refresh_subs()
                cycles += 1
                for t in tasks:
                    if t.done() and t.exception() is not None:
                        raise t.exception()  # type: ignore[misc]
                if status is not None:
                    status.heartbeat(cycles, self.messages)
                now = time.monotonic()
                if now >= next_status:
                    next_status = now + STATUS_EVERY_S
                    self.write_status()
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
            self.write_status()


def _retry_after_ms(resp: Any) -> int:
    """``retryAfter`` (epoch ms) from a WebSocket API 429/418 error's ``data``; 0 when
    absent or malformed. ``data`` arrives undecoded (``msgspec.Raw``: its shape differs per
    error), so it is decoded here."""
    raw = resp.error.data if resp.error is not None else None
    if not raw:
        return 0
    try:
        data = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return 0
    value = data.get("retryAfter") if isinstance(data, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _http_get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as resp:
        body: bytes = resp.read()
        return body
