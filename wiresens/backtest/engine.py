"""The event-driven back-test loop: replayed market, simulated venue, the real policy.

Two clocks run through one merged timeline (nanoseconds)::

    exchange side (ts_exch)                         policy side (local time)
    market event i applied to the venue book ─feed latency─► deliver_book / deliver_trade
    resting orders: queue, trade-through, cross        │ buy/sell/cancel/replace
    request arrives, matched (NEW/TRADE/...) ◄─entry latency─ sink (risk: check_filters)
    execution report ─────────────response latency──► deliver_execution (OMS, positions)

At one instant the venue side goes first (market event, then order arrivals), then
reports, the timer, and last the policy's market delivery. The policy is the same
:class:`~wiresens.policy.PolicyObject` the node runs; its requests pass the same
pre-trade check as in the execution actor (:func:`wiresens.risk.check_filters`) and it
keeps its books through the same OMS and position code. ``on_book`` is called only when
the top of book changed, with a :class:`~wiresens.policy.TopOfBook` updated in place.

The venue: market levels are the replayed book; a request that crosses takes them
(walking levels up to its limit; taken quantity stays taken until the market next sets
that price, as on the built-in venue), the remainder rests behind the displayed
quantity (see :mod:`.queue`). ``LIMIT_MAKER`` that would take is rejected (-2010),
``IOC`` expires its remainder, ``FOK`` fills whole or expires, ``MARKET`` takes up to its
quantity. Cancel and cancel-replace act on the order at the venue; an order no longer
there gives a reject (-2011). Fees per :mod:`.fees`.

Two loops, one result: :meth:`Simulation._run` here is the reference; the C extension
``wiresens.backtest._simcore`` (``_simcore.c``) runs the same loop and venue ~2.7x faster
with a market maker and is used when built (:data:`IMPLEMENTATION`). The policy, its OMS
and positions and the pre-trade check are this Python code either way. A change to the
venue rules here must be made in the C file too: ``tests/backtest/test_compiled.py``
fails until both agree byte for byte.
"""

from __future__ import annotations

import gc
import heapq
import os
import struct
import time
from collections.abc import Callable
from typing import Any

import msgspec
import numpy as np

from wiresens.config import load_policy_class
from wiresens.fixedpoint import SCALE
from wiresens.instruments import InstrumentTable
from wiresens.policy import ClOrdIdGen, PolicyContext, PolicyObject, TopOfBook
from wiresens.records import (
    EXECUTION_REPORT,
    ORDER_REQUEST,
    SCHEMA_VERSION,
    TRADE,
    ExecStatus,
    ExecType,
    OrderType,
    RecordKind,
    Side,
    TimeInForce,
)
from wiresens.risk import RejectReason, check_filters

from .config import BacktestConfig
from .data import RESET, MarketData
from .data import TRADE as TRADE_EVENT
from .fees import FeeSchedule
from .latency import EntryLatency, feed_times
from .queue import make_queue_model

__all__ = ["COMPILED", "FILL_DTYPE", "IMPLEMENTATION", "ORDER_DTYPE", "SAMPLE_DTYPE", "Simulation"]

_core_ext: Any
try:
    if os.environ.get("WIRESENS_PURE_PYTHON"):
        raise ImportError("WIRESENS_PURE_PYTHON is set")
    from . import _simcore as _core_ext
except ImportError:
    _core_ext = None

COMPILED = _core_ext is not None
"""True when the C loop (``wiresens.backtest._simcore``) is built and not disabled by
``WIRESENS_PURE_PYTHON``."""
IMPLEMENTATION = "compiled" if COMPILED else "python"
"""Which loop :class:`Simulation` runs by default: ``"compiled"`` or ``"python"``."""

_BIG = 1 << 62
_SYM = 1  # the replayed symbol's index in the instrument table


def _off(dtype: np.dtype[Any], name: str, size: int) -> int:
    off: int = dtype.fields[name][1]  # type: ignore[index]
    assert off % size == 0
    return off // size


_UNPACK_REQ = struct.Struct("<B3xI24xqq8xqq20x3B").unpack_from
"""ORDER_REQUEST -> (kind, symbol, cl_ord_id, orig_cl_ord_id, price, qty, side, order_type,
tif); the layout is checked at import."""
if [
    ORDER_REQUEST.fields[f][1]  # type: ignore[index]
    for f in (
        "kind",
        "symbol",
        "cl_ord_id",
        "orig_cl_ord_id",
        "price",
        "qty",
        "side",
        "order_type",
        "tif",
    )
] != [0, 4, 32, 40, 56, 64, 92, 93, 94]:
    raise AssertionError("ORDER_REQUEST layout changed: update _UNPACK_REQ")
_PACK_REPORT = struct.Struct("<14q6Bh").pack_into
"""Writes EXECUTION_REPORT from ``ts_exch`` (offset 8) to ``error_code`` in one call
(the layout is checked at import)."""
_PACKED = (
    "ts_exch",
    "ts_recv",
    "ts_pub",
    "cl_ord_id",
    "orig_cl_ord_id",
    "exch_order_id",
    "trade_id",
    "price",
    "qty",
    "last_px",
    "last_qty",
    "cum_qty",
    "cum_quote",
    "commission",
)
if [_off(EXECUTION_REPORT, f, 8) for f in _PACKED] != list(range(1, 15)) or [
    EXECUTION_REPORT.fields[f][1]  # type: ignore[index]
    for f in ("policy", "account", "side", "status", "exec_type", "reason", "error_code")
] != [120, 121, 122, 123, 124, 125, 126]:
    raise AssertionError("EXECUTION_REPORT layout changed: update _PACK_REPORT")
# TRADE words.
_TQ_TS_EXCH, _TQ_TS_RECV = _off(TRADE, "ts_exch", 8), _off(TRADE, "ts_recv", 8)
_TQ_ID, _TQ_PX, _TQ_QTY = (_off(TRADE, f, 8) for f in ("trade_id", "price", "qty"))
_TH_FLAGS = _off(TRADE, "flags", 2)
_TI_SYMBOL = _off(TRADE, "symbol", 4)
_ER_SYMBOL = _off(EXECUTION_REPORT, "symbol", 4)

_NEW, _CANCEL, _REPLACE = (
    int(RecordKind.ORDER_NEW),
    int(RecordKind.ORDER_CANCEL),
    int(RecordKind.ORDER_REPLACE),
)
_BUY = int(Side.BUY)
_NO_REJECT = RejectReason.NONE
_MARKET, _LIMIT_MAKER = int(OrderType.MARKET), int(OrderType.LIMIT_MAKER)
_IOC, _FOK = int(TimeInForce.IOC), int(TimeInForce.FOK)
S_NEW, S_PART, S_FILLED = (
    int(ExecStatus.NEW),
    int(ExecStatus.PARTIALLY_FILLED),
    int(ExecStatus.FILLED),
)
S_CANCELED, S_REJECTED, S_EXPIRED = (
    int(ExecStatus.CANCELED),
    int(ExecStatus.REJECTED),
    int(ExecStatus.EXPIRED),
)
X_NEW, X_CANCELED, X_REJECTED = int(ExecType.NEW), int(ExecType.CANCELED), int(ExecType.REJECTED)
X_TRADE, X_EXPIRED = int(ExecType.TRADE), int(ExecType.EXPIRED)
_C_CONSTANTS = {
    "ORDER_NEW": _NEW,
    "ORDER_CANCEL": _CANCEL,
    "ORDER_REPLACE": _REPLACE,
    "BUY": _BUY,
    "MARKET": _MARKET,
    "LIMIT_MAKER": _LIMIT_MAKER,
    "IOC": _IOC,
    "FOK": _FOK,
    "TRADE_EVENT": TRADE_EVENT,
    "RESET_EVENT": RESET,
    "S_NEW": S_NEW,
    "S_PARTIALLY_FILLED": S_PART,
    "S_FILLED": S_FILLED,
    "S_CANCELED": S_CANCELED,
    "S_REJECTED": S_REJECTED,
    "S_EXPIRED": S_EXPIRED,
    "X_NEW": X_NEW,
    "X_CANCELED": X_CANCELED,
    "X_REJECTED": X_REJECTED,
    "X_TRADE": X_TRADE,
    "X_EXPIRED": X_EXPIRED,
    "R_EXCHANGE": int(RejectReason.EXCHANGE),
    "R_UNKNOWN_ORDER": int(RejectReason.UNKNOWN_ORDER),
}
"""The enum values the C loop has compiled in (its ``CONSTANTS``), by their records."""
if _core_ext is not None and _core_ext.CONSTANTS != _C_CONSTANTS:
    _differ = {
        k: (v, _core_ext.CONSTANTS.get(k))
        for k, v in _C_CONSTANTS.items()
        if _core_ext.CONSTANTS.get(k) != v
    }
    raise AssertionError(
        f"wiresens.records changed: update the constants of _simcore.c (records, C): {_differ}"
    )

FILL_DTYPE = np.dtype(
    [
        ("ts", "<i8"),
        ("cl_ord_id", "<i8"),
        ("side", "u1"),
        ("maker", "u1"),
        ("price", "<i8"),
        ("qty", "<i8"),
        ("fee", "<i8"),
        ("symbol", "<u4"),
    ]
)
"""One fill at the venue (``ts`` exchange time; ``side`` 1 buy, 2 sell; fixed point;
``symbol`` the 1-based instrument index)."""

ORDER_DTYPE = np.dtype(
    [
        ("ts", "<i8"),
        ("arrival", "<i8"),
        ("kind", "u1"),
        ("cl_ord_id", "<i8"),
        ("orig_cl_ord_id", "<i8"),
        ("side", "u1"),
        ("order_type", "u1"),
        ("tif", "u1"),
        ("price", "<i8"),
        ("qty", "<i8"),
        ("symbol", "<u4"),
    ]
)
"""One request that passed the pre-trade check: sent at local ``ts``, at the venue at
``arrival``; ``kind`` is the RecordKind (10 new, 11 cancel, 12 replace)."""

SAMPLE_DTYPE = np.dtype(
    [
        ("ts", "<i8"),
        ("mid", "<i8"),
        ("position", "<i8"),
        ("equity", "<i8"),
        ("fees", "<i8"),
        ("volume", "<i8"),
    ]
)
"""Equity sample: ``equity`` is cash + position x mid - fees (fixed point quote)."""


_CHUNK = 8192


class _Rows:
    """Result rows appended as tuples and packed into numpy chunks every 8,192 rows.

    A packed row costs its dtype's bytes (56 for an order) instead of a tuple of Python
    ints (~300): what the run keeps grows with orders and fills only that much.
    """

    __slots__ = ("chunks", "dtype", "rows")

    def __init__(self, dtype: np.dtype[Any]) -> None:
        self.dtype = dtype
        self.rows: list[tuple[int, ...]] = []
        self.chunks: list[np.ndarray[Any, Any]] = []

    def flush(self) -> None:
        if self.rows:
            self.chunks.append(np.array(self.rows, dtype=self.dtype))
            self.rows.clear()  # the same list: bound ``append``s stay valid

    def array(self) -> np.ndarray[Any, Any]:
        """Every row so far, one structured array."""
        self.flush()
        if not self.chunks:
            return np.zeros(0, self.dtype)
        if len(self.chunks) > 1:
            self.chunks = [np.concatenate(self.chunks)]
        return self.chunks[0]

    def __len__(self) -> int:
        return len(self.rows) + sum(len(c) for c in self.chunks)


class _Clock:
    __slots__ = ("now",)

    def __init__(self) -> None:
        self.now = 0

    def __call__(self) -> int:
        return self.now


class _SimOrder:
    __slots__ = (
        "ahead",
        "cid",
        "cum_qty",
        "cum_quote",
        "exch_id",
        "leaves",
        "price",
        "qty",
        "side",
        "sym",
    )

    def __init__(
        self, cid: int, exch_id: int, side: int, price: int, qty: int, sym: int = _SYM
    ) -> None:
        self.sym = sym
        self.cid = cid
        self.exch_id = exch_id
        self.side = side
        self.price = price
        self.qty = qty
        self.leaves = qty
        self.cum_qty = 0
        self.cum_quote = 0
        self.ahead = 0


class _Book:
    """One symbol's venue state: market levels, our resting orders by price, quantity
    taken at a price since the market last set it, and the replayed top."""

    __slots__ = (
        "asks",
        "best_ask",
        "best_bid",
        "bids",
        "rest_a",
        "rest_b",
        "sym",
        "traded_a",
        "traded_b",
    )

    def __init__(self, sym: int) -> None:
        self.sym = sym
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        self.rest_b: dict[int, list[_SimOrder]] = {}
        self.rest_a: dict[int, list[_SimOrder]] = {}
        self.traded_b: dict[int, int] = {}
        self.traded_a: dict[int, int] = {}
        self.best_bid = 0
        self.best_ask = 0


class _Sink:
    """The policy's OrderSink: pre-trade check, then the request travels to the venue."""

    __slots__ = ("try_submit",)

    def __init__(self, sim: Simulation) -> None:
        # The simulation's own method (or the C core's), bound once: no forwarding frame
        # per request.
        core = sim._core
        self.try_submit: Callable[[memoryview], bool] = sim.submit if core is None else core.submit


class Simulation:
    """One back-test run over preloaded :class:`~wiresens.backtest.data.MarketData`.

    Build it, call :meth:`run`, read the arrays it leaves (``fills``, ``samples``) and
    the counters. ``progress(done, total)`` is called every 65,536 events.

    ``compiled`` picks the loop: the C core (``True``), this module's Python loop
    (``False``) or whichever :data:`IMPLEMENTATION` names (``None``). Both give
    bit-identical results; the Python loop is the reference.
    """

    def __init__(
        self,
        cfg: BacktestConfig,
        md: MarketData,
        policy_factory: Callable[[PolicyContext], PolicyObject] | None = None,
        compiled: bool | None = None,
    ) -> None:
        if compiled is None:
            compiled = COMPILED
        elif compiled and not COMPILED:
            raise ValueError(
                "compiled=True but the C extension wiresens.backtest._simcore is not "
                "available: reinstall with a C compiler and Python headers (pip install -e .) "
                "or unset WIRESENS_PURE_PYTHON"
            )
        self.compiled = compiled
        self.cfg = cfg
        self.md = md
        self.fees = FeeSchedule(cfg.fees.maker_bps, cfg.fees.taker_bps)
        self._maker_rate = self.fees.maker_rate
        self._taker_rate = self.fees.taker_rate
        self.queue = make_queue_model(cfg.queue.model, cfg.queue.power)
        self.entry = EntryLatency(cfg.latency, cfg.seed)
        self._arrival = self.entry.arrival
        self.response_ns = cfg.latency.response_ns
        insts = [i.instrument() for i in cfg.symbols()]
        self.nsym = len(insts)
        md_syms = int(md.sym.max()) if md.sym is not None and len(md) else 1
        if md_syms > self.nsym:
            raise ValueError(
                f"the market data holds symbol {md_syms}, the config names {self.nsym} "
                "instrument(s): add them as [[instruments]]"
            )
        self.instruments = InstrumentTable(insts)
        # check_filters indexes by the records' 1-based symbol; slot 0 is None.
        self._risk_table: list[Any] = [None, *insts]
        self.local_ns = cfg.latency.local_ns
        # Preallocated records handed to the policy.
        self._er = np.zeros(1, EXECUTION_REPORT)
        self._er["kind"] = int(RecordKind.EXECUTION_REPORT)
        self._er["version"] = SCHEMA_VERSION[RecordKind.EXECUTION_REPORT]
        self._er["symbol"] = _SYM
        self._er["policy"] = cfg.policy.policy_id
        self._er["account"] = cfg.policy.account
        self._er_void = self._er[0]
        self._policy_byte = cfg.policy.policy_id
        self._account_byte = cfg.policy.account
        self._er_b = memoryview(self._er).cast("B")  # type: ignore[arg-type]
        self._er_q = self._er_b.cast("q")
        self._er_h = self._er_b.cast("h")
        self._er_i = self._er_b.cast("I")
        self._tr = np.zeros(1, TRADE)
        self._tr["kind"] = int(RecordKind.TRADE)
        self._tr["version"] = SCHEMA_VERSION[RecordKind.TRADE]
        self._tr["symbol"] = _SYM
        self._tr_void = self._tr[0]
        trb = memoryview(self._tr).cast("B")  # type: ignore[arg-type]
        self._tr_q = trb.cast("q")
        self._tr_h = trb.cast("H")
        self._tr_i = trb.cast("I")
        self._core: Any = None
        if compiled:
            self.clock: Any = _core_ext.Clock()
            self._core = self._make_core(cfg, insts)
        else:
            self.clock = _Clock()
        ctx = PolicyContext(
            policy_id=cfg.policy.policy_id,
            name=cfg.policy.name,
            sink=_Sink(self),
            instruments=self.instruments,  # type: ignore[arg-type]
            symbols=list(range(1, self.nsym + 1)),
            account=cfg.policy.account,
            clock=self.clock,
        )
        if policy_factory is None:
            cls = load_policy_class(cfg.policy.class_, cfg.base_dir)
            params = msgspec.convert(cfg.policy.params, cls.Params)
            self.policy: PolicyObject = cls(params, ctx)
        else:
            self.policy = policy_factory(ctx)
        # Client order ids embed the start second: take the data's, not the wall clock's,
        # so two runs of the same inputs produce the same ids (determinism).
        start_s = int(md.ts_exch[0]) // 1_000_000_000 if len(md) else 0
        self.policy._ids = ClOrdIdGen(cfg.policy.policy_id, now_s=start_s)
        # Venue state, one book per symbol (index 0 unused: symbols are 1-based).
        self.books: list[_Book] = [_Book(s) for s in range(self.nsym + 1)]
        self.by_cid: dict[int, _SimOrder] = {}
        self.arrivals: list[tuple[int, int, tuple[int, ...]]] = []
        self.reports: list[tuple[int, int, int, tuple[int, ...]]] = []
        self.seq = 0
        self.exch_seq = 0
        self.trade_seq = 0
        self.now_exch = 0
        # Results.
        self.fills = _Rows(FILL_DTYPE)
        self.orders = _Rows(ORDER_DTYPE)
        self.samples = _Rows(SAMPLE_DTYPE)
        self.pos = [0] * (self.nsym + 1)
        """Position per symbol (fixed point base)."""
        self.mids = [0] * (self.nsym + 1)
        self.cash_raw = 0  # quote x 1e16: exact
        self.fee_total = 0
        self.volume = 0
        self.orders_sent = 0
        self.cancels_sent = 0
        self.replaces_sent = 0
        self.risk_rejects = 0
        self.venue_rejects = 0
        self.sent_qty = 0
        self.book_calls = 0
        self.trade_calls = 0
        self.events = 0
        self.run_s = 0.0
        self._progress_mask = (1 << 16) - 1
        self.cpu_s = 0.0

    # -- the policy side ---------------------------------------------------------------

    def submit(self, rec: memoryview) -> bool:
        """An ORDER_REQUEST (its bytes) from the policy at local time ``clock.now``; the
        policy's :class:`~wiresens.policy.OrderSink` (always takes it: True)."""
        req = _UNPACK_REQ(rec)
        kind, symbol, cid, orig, price, qty, side, otype, _ = req
        now = self.clock.now
        if kind != _CANCEL:
            if kind == _NEW:
                self.orders_sent += 1
            else:
                self.replaces_sent += 1
            reason = check_filters(symbol, otype, price, qty, self._risk_table)
            if reason != _NO_REJECT:
                # Execution rejects locally: a ring hop back, no venue round trip.
                self.risk_rejects += 1
                self._report(
                    symbol,
                    now,
                    now + self.local_ns,
                    cid,
                    orig,
                    0,
                    side,
                    price,
                    qty,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    S_REJECTED,
                    X_REJECTED,
                    int(reason),
                    0,
                )
                return True
            self.sent_qty += qty
        else:
            self.cancels_sent += 1
        self.seq += 1
        arrival = self._arrival(now)
        rows = self.orders.rows
        rows.append((now, arrival, kind, cid, orig, side, otype, req[8], price, qty, symbol))
        if len(rows) >= _CHUNK:
            self.orders.flush()
        heapq.heappush(self.arrivals, (arrival, self.seq, req))
        return True

    def _report(
        self,
        sym: int,
        ts_exch: int,
        deliver: int,
        cid: int,
        orig: int,
        exch_id: int,
        side: int,
        price: int,
        qty: int,
        trade_id: int,
        last_px: int,
        last_qty: int,
        cum_qty: int,
        cum_quote: int,
        commission: int,
        status: int,
        exec_type: int,
        reason: int,
        err: int,
    ) -> None:
        self.seq += 1
        heapq.heappush(
            self.reports,
            (
                deliver,
                self.seq,
                sym,
                (
                    ts_exch,
                    deliver,
                    deliver,
                    cid,
                    orig,
                    exch_id,
                    trade_id,
                    price,
                    qty,
                    last_px,
                    last_qty,
                    cum_qty,
                    cum_quote,
                    commission,
                    self._policy_byte,
                    self._account_byte,
                    side,
                    status,
                    exec_type,
                    reason,
                    err,
                ),
            ),
        )

    def _deliver_report(self, sym: int, fields: tuple[int, ...]) -> None:
        # One struct call writes ts_exch..error_code.
        self._er_i[_ER_SYMBOL] = sym
        _PACK_REPORT(self._er_b, 8, *fields)
        self.clock.now = fields[1]
        self.policy.deliver_execution(self._er_void, self._er_b)

    # -- the venue side ----------------------------------------------------------------

    def _fill(self, o: _SimOrder, qty: int, px: int, maker: bool, ts: int) -> None:
        raw = qty * px
        notional = raw // SCALE
        # FeeSchedule.commission inlined (same integer formula).
        fee = notional * (self._maker_rate if maker else self._taker_rate) // SCALE
        o.leaves -= qty
        o.cum_qty += qty
        o.cum_quote += notional
        self.trade_seq += 1
        rows = self.fills.rows
        rows.append((ts, o.cid, o.side, 1 if maker else 0, px, qty, fee, o.sym))
        if len(rows) >= _CHUNK:
            self.fills.flush()
        if o.side == _BUY:
            self.pos[o.sym] += qty
            self.cash_raw -= raw
        else:
            self.pos[o.sym] -= qty
            self.cash_raw += raw
        self.fee_total += fee
        self.volume += notional
        status = S_FILLED if o.leaves == 0 else S_PART
        self._report(
            o.sym,
            ts,
            ts + self.response_ns,
            o.cid,
            0,
            o.exch_id,
            o.side,
            o.price,
            o.qty,
            self.trade_seq,
            px,
            qty,
            o.cum_qty,
            o.cum_quote,
            fee,
            status,
            X_TRADE,
            0,
            0,
        )

    def _unrest(self, o: _SimOrder) -> None:
        bk = self.books[o.sym]
        rest = bk.rest_b if o.side == _BUY else bk.rest_a
        lst = rest.get(o.price)
        if lst is not None:
            lst.remove(o)
            if not lst:
                del rest[o.price]
                (bk.traded_b if o.side == _BUY else bk.traded_a).pop(o.price, None)
        self.by_cid.pop(o.cid, None)

    def _fill_resting_all(self, o: _SimOrder, ts: int) -> None:
        self._fill(o, o.leaves, o.price, True, ts)
        self._unrest(o)

    def _cross_check(self, bk: _Book, ts: int) -> None:
        """The market moved onto resting orders: they trade as makers at their price."""
        ba = bk.best_ask
        if ba and bk.rest_b:
            for p in [p for p in bk.rest_b if p >= ba]:
                for o in list(bk.rest_b[p]):
                    self._fill_resting_all(o, ts)
        bb = bk.best_bid
        if bb and bk.rest_a:
            for p in [p for p in bk.rest_a if p <= bb]:
                for o in list(bk.rest_a[p]):
                    self._fill_resting_all(o, ts)

    def _level_changed(
        self, rest: dict[int, list[_SimOrder]], traded: dict[int, int], p: int, old: int, new: int
    ) -> None:
        dec = old - new
        t = traded.pop(p, 0)
        if dec <= 0:
            return
        cancelled = dec - t
        if cancelled <= 0:
            return
        for o in rest[p]:
            o.ahead = self.queue.on_cancel(o.ahead, old - t, cancelled, new)

    def _on_trade(self, bk: _Book, px: int, qty: int, buyer_maker: int, ts: int) -> None:
        # The seller took when the buyer was the maker: the trade hit the bids.
        if buyer_maker:
            rest, traded, through = bk.rest_b, bk.traded_b, [p for p in bk.rest_b if p > px]
        else:
            rest, traded, through = bk.rest_a, bk.traded_a, [p for p in bk.rest_a if p < px]
        for p in through:
            for o in list(rest[p]):
                self._fill_resting_all(o, ts)
        lst = rest.get(px)
        if lst is None:
            return
        traded[px] = traded.get(px, 0) + qty
        avail = qty
        for o in list(lst):
            if o.ahead >= avail:
                o.ahead -= avail
                break
            avail -= o.ahead
            o.ahead = 0
            f = min(avail, o.leaves)
            if f:
                avail -= f
                self._fill(o, f, o.price, True, ts)
                if o.leaves == 0:
                    self._unrest(o)
            if avail <= 0:
                break

    def _arrive(self, req: tuple[int, ...], ts: int) -> None:
        kind, sym, cid, orig, price, qty, side, _, _ = req
        back = ts + self.response_ns
        if kind in (_CANCEL, _REPLACE):
            o = self.by_cid.get(orig)
            if o is None:
                self.venue_rejects += 1
                self._report(
                    sym,
                    ts,
                    back,
                    cid,
                    orig,
                    0,
                    side,
                    price,
                    qty,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    S_REJECTED,
                    X_REJECTED,
                    int(RejectReason.UNKNOWN_ORDER),
                    -2011,
                )
                return
            self._unrest(o)
            if kind == _CANCEL:
                self._report(
                    o.sym,
                    ts,
                    back,
                    cid,
                    orig,
                    o.exch_id,
                    o.side,
                    o.price,
                    o.qty,
                    0,
                    0,
                    0,
                    o.cum_qty,
                    o.cum_quote,
                    0,
                    S_CANCELED,
                    X_CANCELED,
                    0,
                    0,
                )
                return
            self._report(
                o.sym,
                ts,
                back,
                orig,
                0,
                o.exch_id,
                o.side,
                o.price,
                o.qty,
                0,
                0,
                0,
                o.cum_qty,
                o.cum_quote,
                0,
                S_CANCELED,
                X_CANCELED,
                0,
                0,
            )
        self._new(req, ts, back)

    def _new(self, req: tuple[int, ...], ts: int, back: int) -> None:
        _, sym, cid, _, px, qty, side, otype, tif = req
        bk = self.books[sym]
        limit = px
        buy = side == _BUY
        book = bk.asks if buy else bk.bids
        if otype == _MARKET:
            px = _BIG if buy else 0
        # The replayed top bounds what can cross (taken levels only move it away).
        top = bk.best_ask if buy else bk.best_bid
        if top and (px < top if buy else px > top):
            crossing: list[int] = []
        else:
            crossing = (
                sorted(p for p in book if p <= px)
                if buy
                else sorted((p for p in book if p >= px), reverse=True)
            )
        self.exch_seq += 1
        o = _SimOrder(cid, self.exch_seq, side, limit, qty, sym)
        if otype == _LIMIT_MAKER and crossing:
            self.venue_rejects += 1
            self._report(
                bk.sym,
                ts,
                back,
                cid,
                0,
                0,
                side,
                o.price,
                qty,
                0,
                0,
                0,
                0,
                0,
                0,
                S_REJECTED,
                X_REJECTED,
                int(RejectReason.EXCHANGE),
                -2010,
            )
            return
        self._report(
            bk.sym,
            ts,
            back,
            cid,
            0,
            o.exch_id,
            side,
            o.price,
            qty,
            0,
            0,
            0,
            0,
            0,
            0,
            S_NEW,
            X_NEW,
            0,
            0,
        )
        if tif == _FOK and sum(book[p] for p in crossing) < qty:
            self._report(
                bk.sym,
                ts,
                back,
                cid,
                0,
                o.exch_id,
                side,
                o.price,
                qty,
                0,
                0,
                0,
                0,
                0,
                0,
                S_EXPIRED,
                X_EXPIRED,
                0,
                0,
            )
            return
        for p in crossing:
            if o.leaves == 0:
                break
            avail = book[p]
            f = min(avail, o.leaves)
            # Taken liquidity stays taken until the market next sets this price.
            if avail == f:
                del book[p]
            else:
                book[p] = avail - f
            self._fill(o, f, p, False, ts)
        if o.leaves == 0:
            return
        if otype == _MARKET or tif in (_IOC, _FOK):
            self._report(
                bk.sym,
                ts,
                back,
                cid,
                0,
                o.exch_id,
                side,
                o.price,
                qty,
                0,
                0,
                0,
                o.cum_qty,
                o.cum_quote,
                0,
                S_EXPIRED,
                X_EXPIRED,
                0,
                0,
            )
            return
        own = bk.bids if buy else bk.asks
        o.ahead = own.get(o.price, 0)
        rest = bk.rest_b if buy else bk.rest_a
        lst = rest.get(o.price)
        if lst is None:
            rest[o.price] = [o]
        else:
            # Earlier orders of ours at this price stand ahead too.
            o.ahead += sum(x.leaves for x in lst)
            lst.append(o)
        self.by_cid[cid] = o

    # -- the loop ----------------------------------------------------------------------

    def run(
        self, progress: Callable[[int, int], None] | None = None, progress_every: int = 1 << 16
    ) -> None:
        """Replay every event, then stop the policy and settle what is in flight.

        ``progress(done, total)`` is called every ``progress_every`` rows (a power of two)
        of the event table.
        """
        if progress_every <= 0 or progress_every & (progress_every - 1):
            raise ValueError(f"progress_every must be a power of two, got {progress_every}")
        self._progress_mask = progress_every - 1
        try:
            md = self.md
            n = len(md)
            t_start = time.perf_counter()
            c_start = time.process_time()
            local = feed_times(md.ts_exch, md.ts_recv, self.cfg.latency)
            sym_col, deliver = self._deliveries()
            # First timer tick and first equity sample: the first delivery's local time.
            first = int(local[0]) if n else 0
            timer_ns = self.cfg.policy.timer_interval_ms * 1_000_000
            next_timer = (first + timer_ns) if (timer_ns and n) else _BIG
            sample_ns = self.cfg.sample_interval_ms * 1_000_000
            next_sample = first if n else _BIG
            loop = self._run_compiled if self._core is not None else self._run
            loop(local, sym_col, deliver, (timer_ns, next_timer, sample_ns, next_sample), progress)
            self._settle(int(local[-1]) if n else 0)
            self.events = md.market_events
            self.run_s = time.perf_counter() - t_start
            self.cpu_s = time.process_time() - c_start
            if progress is not None:
                progress(n, n)
        finally:
            gc.unfreeze()

    def _settle(self, end: int) -> None:
        """After the last event: what is in flight, then the policy's stop (its cancels),
        then again, and a last equity sample."""
        clock = self.clock
        self._drain(end)
        clock.now = max(clock.now, end)
        self.policy.stop()
        self._drain(_BIG)
        self._sample(max(end, clock.now))
        if self._core is not None:
            self._collect()

    def _deliveries(self) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        """(symbol of each event, whether the policy is told of it): a book event only
        when its symbol's top changed, every trade."""
        md = self.md
        n = len(md)
        book_ev = md.kind != 1
        changed = np.zeros(n, dtype=bool)
        sym_col = md.sym if md.sym is not None else np.ones(n, dtype=np.uint32)
        for s in range(1, self.nsym + 1):
            # One symbol's book events in order (all of them: no fancy-index copies).
            idx = (
                np.flatnonzero(book_ev & (sym_col == s))
                if md.sym is not None
                else np.flatnonzero(book_ev)
            )
            if len(idx):
                ch = np.zeros(len(idx), dtype=bool)
                for col in (md.a, md.b, md.c, md.d):
                    v = col[idx]
                    ch[1:] |= v[1:] != v[:-1]
                ch[0] = True
                changed[idx] = ch
        return sym_col, changed | ~book_ev

    def _trades_wanted(self) -> bool:
        # A policy that keeps the base class's no-op trade hook is not called per trade
        # (nothing could observe the call); one that overrides either method is.
        cls = type(self.policy)
        return (
            cls.on_trade is not PolicyObject.on_trade
            or cls.deliver_trade is not PolicyObject.deliver_trade
        )

    def _make_core(self, cfg: BacktestConfig, insts: list[Any]) -> Any:
        lat = cfg.latency
        tr_off = [
            TRADE.fields[f][1]  # type: ignore[index]
            for f in ("ts_exch", "ts_recv", "price", "qty", "trade_id", "flags", "symbol")
        ]
        return _core_ext.Core(
            clock=self.clock,
            er=self._er,
            er_void=self._er_void,
            er_b=self._er_b,
            er_symbol_offset=EXECUTION_REPORT.fields["symbol"][1],  # type: ignore[index]
            tr=self._tr,
            tr_void=self._tr_void,
            tr_offsets=tuple(tr_off),
            nsym=self.nsym,
            maker_rate=self._maker_rate,
            taker_rate=self._taker_rate,
            queue_probabilistic=cfg.queue.model == "probabilistic",
            power=float(cfg.queue.power),
            response_ns=lat.response_ns,
            local_ns=lat.local_ns,
            entry_ns=lat.entry_ns,
            # Constant entry latency is computed in C; other models hand over batches of
            # their seeded draws (the same sequence as one draw per request).
            entry_draws=None if lat.entry == "constant" else self.entry.draws,
            check=check_filters,
            risk_table=self._risk_table,
            policy_byte=self._policy_byte,
            account_byte=self._account_byte,
        )

    def _run_compiled(
        self,
        local: np.ndarray[Any, Any],
        sym_col: np.ndarray[Any, Any],
        deliver: np.ndarray[Any, Any],
        schedule: tuple[int, int, int, int],
        progress: Callable[[int, int], None] | None,
    ) -> None:
        """:meth:`_run` in C (``wiresens.backtest._simcore``): same order of events, same
        results."""
        md = self.md

        def col(a: Any, dt: Any) -> Any:
            return np.ascontiguousarray(a, dtype=dt)

        i8, u1 = np.int64, np.uint8
        cols = (
            col(md.ts_exch, i8),
            col(local, i8),
            col(md.kind, u1),
            col(md.a, i8),
            col(md.b, i8),
            col(md.c, i8),
            col(md.d, i8),
            col(md.lvl_lo, i8),
            col(md.lvl_hi, i8),
            col(md.lvl_px, i8),
            col(md.lvl_qty, i8),
            col(md.lvl_side, u1),
            col(deliver, u1),
            col(md.ts_recv, i8),
            col(sym_col, np.uint32),
        )
        views = [TopOfBook() for _ in range(self.nsym + 1)]
        self.policy.start()
        self._core.run(
            cols,
            len(md),
            len(cols[9]),
            views,
            self.policy,
            self._trades_wanted(),
            *schedule,
            progress,
            self._progress_mask,
        )

    def _collect(self) -> None:
        """Copy the C core's counters, positions, resting orders and rows here, where the
        Python loop keeps them."""
        st = self._core.state()
        if st["overflow"]:
            raise OverflowError(
                "an equity sample's equity, fees or volume exceeds int64 (SAMPLE_DTYPE): "
                "the run's quantities or prices are out of range"
            )
        self.pos = st["pos"]
        self.mids = st["mids"]
        for key in (
            "cash_raw",
            "fee_total",
            "volume",
            "sent_qty",
            "orders_sent",
            "cancels_sent",
            "replaces_sent",
            "risk_rejects",
            "venue_rejects",
            "book_calls",
            "trade_calls",
            "seq",
            "exch_seq",
            "trade_seq",
            "now_exch",
        ):
            setattr(self, key, st[key])
        self.entry._last = st["entry_last"]
        self.by_cid = {}
        for cid, exch_id, side, price, qty, leaves, cum_qty, cum_quote, ahead, sym in sorted(
            st["resting"], key=lambda r: r[1]
        ):
            o = _SimOrder(cid, exch_id, side, price, qty, sym)
            o.leaves, o.cum_qty, o.cum_quote, o.ahead = leaves, cum_qty, cum_quote, ahead
            self.by_cid[cid] = o
        # Still in flight (none after a completed run): counts only, the C heaps hold them.
        self.arrivals = [(0, 0, ())] * st["arrivals"]
        self.reports = [(0, 0, 0, ())] * st["reports"]
        for rows, raw in zip(
            (self.fills, self.orders, self.samples), self._core.results(), strict=True
        ):
            rows.rows.clear()
            rows.chunks = [np.frombuffer(raw, dtype=rows.dtype).copy()] if raw else []

    def _run(
        self,
        local: np.ndarray[Any, Any],
        sym_col: np.ndarray[Any, Any],
        deliver: np.ndarray[Any, Any],
        schedule: tuple[int, int, int, int],
        progress: Callable[[int, int], None] | None,
    ) -> None:
        md = self.md
        n = len(md)
        kind = md.kind
        # Python lists: indexing them is several times cheaper than numpy scalars.
        E = md.ts_exch.tolist()
        L = local.tolist()
        K = kind.tolist()
        A, B, C, D = md.a.tolist(), md.b.tolist(), md.c.tolist(), md.d.tolist()
        LO, HI = md.lvl_lo.tolist(), md.lvl_hi.tolist()
        PX, QT, SD = md.lvl_px.tolist(), md.lvl_qty.tolist(), md.lvl_side.tolist()
        DV = deliver.tolist()
        TSR = md.ts_recv.tolist()
        SY = sym_col.tolist()

        policy = self.policy
        clock = self.clock
        books = self.books
        cur = 1  # the symbol whose book the locals below hold
        bk = books[cur]
        bids, asks = bk.bids, bk.asks
        rest_b, rest_a = bk.rest_b, bk.rest_a
        arrivals, reports = self.arrivals, self.reports
        # One view per symbol, updated in place (as the live host does).
        views = [TopOfBook() for _ in range(self.nsym + 1)]
        mids = self.mids
        tr_q, tr_h, tr_void = self._tr_q, self._tr_h, self._tr_void
        tr_i = self._tr_i
        er_b, er_void, er_i = self._er_b, self._er_void, self._er_i
        pack_report = _PACK_REPORT
        heappop = heapq.heappop
        deliver_execution = policy.deliver_execution
        deliver_book = policy.deliver_book
        trades_wanted = self._trades_wanted()
        timer_ns, next_timer, sample_ns, next_sample = schedule
        tick_mask = self._progress_mask
        # The event lists hold millions of objects: keep them out of the cyclic GC's full
        # collections, which would otherwise walk them again and again during the run.
        gc.freeze()
        policy.start()
        ie = 0
        for il in range(n):
            tl = L[il]
            while True:
                # Venue events due before this delivery, in time order.
                te = E[ie] if ie < n else _BIG
                if arrivals or reports or next_timer <= tl:
                    ta = arrivals[0][0] if arrivals else _BIG
                    tr = reports[0][0] if reports else _BIG
                    m = te if te < ta else ta
                    if tr < m:
                        m = tr
                    if next_timer < m:
                        m = next_timer
                else:
                    # Common case: nothing in flight, only market events can be due.
                    ta = tr = m = te
                if m > tl:
                    break
                if te == m:
                    k = K[ie]
                    self.now_exch = te
                    if SY[ie] != cur:
                        cur = SY[ie]
                        bk = books[cur]
                        bids, asks = bk.bids, bk.asks
                        rest_b, rest_a = bk.rest_b, bk.rest_a
                    if k == 1:
                        if rest_b or rest_a:
                            self._on_trade(bk, A[ie], B[ie], C[ie], te)
                    else:
                        if k == RESET:
                            bids.clear()
                            asks.clear()
                        for j in range(LO[ie], HI[ie]):
                            p = PX[j]
                            q = QT[j]
                            # The level's old quantity matters only where we rest.
                            if SD[j] == 1:
                                if p in rest_b:
                                    old = bids.get(p, 0)
                                    self._level_changed(rest_b, bk.traded_b, p, old, q)
                                if q:
                                    bids[p] = q
                                else:
                                    bids.pop(p, None)
                            else:
                                if p in rest_a:
                                    old = asks.get(p, 0)
                                    self._level_changed(rest_a, bk.traded_a, p, old, q)
                                if q:
                                    asks[p] = q
                                else:
                                    asks.pop(p, None)
                        bk.best_bid = A[ie]
                        bk.best_ask = C[ie]
                        if rest_b or rest_a:
                            self._cross_check(bk, te)
                    ie += 1
                elif ta == m:
                    t_arr, _, req = heappop(arrivals)
                    self._arrive(req, t_arr)
                elif tr == m:
                    # _deliver_report inlined (one frame less per report).
                    _, _, er_i[_ER_SYMBOL], fields = heappop(reports)
                    pack_report(er_b, 8, *fields)
                    clock.now = fields[1]
                    deliver_execution(er_void, er_b)
                else:
                    clock.now = next_timer
                    policy.deliver_timer(next_timer)
                    next_timer += timer_ns
            if tl >= next_sample:
                self._sample(next_sample)
                next_sample += sample_ns
                if tl >= next_sample:
                    next_sample = tl - (tl - next_sample) % sample_ns
            if DV[il]:
                clock.now = tl
                if K[il] == 1:
                    if trades_wanted:
                        tr_q[_TQ_TS_EXCH] = E[il]
                        tr_q[_TQ_TS_RECV] = TSR[il]
                        tr_q[_TQ_PX] = A[il]
                        tr_q[_TQ_QTY] = B[il]
                        tr_h[_TH_FLAGS] = C[il]
                        tr_q[_TQ_ID] = D[il]
                        tr_i[_TI_SYMBOL] = sy = SY[il]
                        self.trade_calls += 1
                        policy.deliver_trade(sy, tr_void)
                else:
                    sy = SY[il]
                    view = views[sy]
                    view.bid_px = bp = A[il]
                    view.bid_qty = B[il]
                    view.ask_px = ap = C[il]
                    view.ask_qty = D[il]
                    view.ts = tl
                    if bp and ap:
                        mids[sy] = (bp + ap) >> 1
                    self.book_calls += 1
                    deliver_book(sy, view)
            if progress is not None and not il & tick_mask:
                progress(il, n)

    def _drain(self, until: int) -> None:
        if self._core is not None:
            self._core.drain(self.policy, until)
            return
        arrivals, reports = self.arrivals, self.reports
        while arrivals or reports:
            ta = arrivals[0][0] if arrivals else _BIG
            tr = reports[0][0] if reports else _BIG
            if min(ta, tr) > until:
                break
            if ta <= tr:
                t_arr, _, req = heapq.heappop(arrivals)
                self._arrive(req, t_arr)
            else:
                _, _, sym, fields = heapq.heappop(reports)
                self._deliver_report(sym, fields)

    def _sample(self, ts: int) -> None:
        # Every symbol's position at its last mid (one quote asset across symbols);
        # ``mid`` and ``position`` columns are the first symbol's.
        if self._core is not None:
            self._core.sample(ts)
            return
        pos, mids = self.pos, self.mids
        marked = sum(pos[s] * mids[s] for s in range(1, self.nsym + 1))
        equity = (self.cash_raw + marked) // SCALE - self.fee_total
        rows = self.samples.rows
        rows.append((ts, mids[1], pos[1], equity, self.fee_total, self.volume))
        if len(rows) >= _CHUNK:
            self.samples.flush()

    @property
    def position(self) -> int:
        """The first symbol's position (fixed point; ``pos[s]`` for symbol ``s``)."""
        return self.pos[1]

    def counters(self) -> dict[str, int]:
        """The run's counters (fees and volume fixed point)."""
        return {
            "orders_sent": self.orders_sent,
            "replaces_sent": self.replaces_sent,
            "cancels_sent": self.cancels_sent,
            "risk_rejects": self.risk_rejects,
            "venue_rejects": self.venue_rejects,
            "sent_qty": self.sent_qty,
            "fees": self.fee_total,
            "volume": self.volume,
        }

    def fills_array(self) -> np.ndarray[Any, Any]:
        return self.fills.array()

    def orders_array(self) -> np.ndarray[Any, Any]:
        return self.orders.array()

    def samples_array(self) -> np.ndarray[Any, Any]:
        return self.samples.array()
