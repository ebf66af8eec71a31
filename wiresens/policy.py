"""The PolicyObject API: a trading strategy as a plain class, with no I/O of its own.

A strategy subclasses :class:`PolicyObject`, declares its parameters as a msgspec
``Params`` Struct and overrides hooks. The live policy host (``wiresens.actors``) and the
back-tester drive the *same* object through its ``deliver_*`` methods; the object
answers by calling :meth:`~PolicyObject.buy`, :meth:`~PolicyObject.sell`,
:meth:`~PolicyObject.cancel` and :meth:`~PolicyObject.replace`, which write
ORDER_REQUEST records into an :class:`OrderSink` (a ring to execution, live; the
simulator, in back-test)::

    feed ──book/trade──► host ──deliver_book/deliver_trade──► PolicyObject.on_book/on_trade
                                                                  │ buy/sell/cancel/replace
    execution ◄──ORDER_REQUEST── OrderSink.try_submit ◄───────────┘
    execution ──EXECUTION_REPORT──► host ──deliver_execution──► open_orders, positions,
                                                               then on_execution

Inside the object: ``self.params`` (the validated Params), ``self.open_orders`` (its
working orders, an :class:`~wiresens.oms.OrderTable` fed by its own reports),
``self.positions`` (:class:`~wiresens.positions.PositionBook`, position and PnL per
symbol), ``self.instruments`` (the node's instrument table, indexed by the record's
``symbol``) and ``self.log`` (a structlog logger, created on first use: logging is I/O,
call it off the hot path).

Client order ids
----------------
A ``cl_ord_id`` is a positive int64, unique per node and across restarts::

    bit 63    62..48        47..24                        23..0
        0     policy id     epoch: start time in seconds  counter (per run)
              (15 bits)     (low 24 bits, ~194 days)      (16.7 M orders)

The epoch is the second the id generator started; when the counter runs out it takes
a fresh epoch. Two runs of one policy collide only if they start in the same second
(the host passes ``min_epoch`` = last run's epoch + 1 to rule it out) or 194 days
apart with the same low bits while the old orders are still known. Binance's
``newClientOrderId`` is this number in decimal.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Protocol, runtime_checkable

import msgspec
import numpy as np

from .oms import Order, OrderTable, Outcome
from .positions import PositionBook
from .records import (
    EXECUTION_REPORT,
    ORDER_REQUEST,
    SCALE,
    ExecStatus,
    ExecType,
    OrderType,
    RecordKind,
    Side,
    TimeInForce,
    new_record,
)

__all__ = [
    "FOK",
    "GTC",
    "IOC",
    "LIMIT",
    "LIMIT_MAKER",
    "MARKET",
    "MAX_POLICY_ID",
    "BookView",
    "BufferSink",
    "ClOrdIdGen",
    "EmptyParams",
    "Instrument",
    "OrderSink",
    "PolicyContext",
    "PolicyObject",
    "ProducerSink",
    "TopOfBook",
]

GTC = TimeInForce.GTC
IOC = TimeInForce.IOC
FOK = TimeInForce.FOK
LIMIT = OrderType.LIMIT
MARKET = OrderType.MARKET
LIMIT_MAKER = OrderType.LIMIT_MAKER

_POLICY_BITS = 15
_EPOCH_BITS = 24
_COUNTER_BITS = 24
_COUNTER_MAX = (1 << _COUNTER_BITS) - 1
_EPOCH_MASK = (1 << _EPOCH_BITS) - 1
_PENDING_CANCEL = int(ExecStatus.PENDING_CANCEL)
_STALE_FILL = Outcome.STALE_FILL  # APPLIED (0) and STALE_FILL (1) carry news for the policy


def _offset(name: str, size: int) -> int:
    off: int = ORDER_REQUEST.fields[name][1]  # type: ignore[index]
    if off % size:
        raise AssertionError(f"ORDER_REQUEST.{name} at {off} is not {size}-byte aligned")
    return off // size


# Actions write the preallocated request through typed memoryviews at these indexes:
# ~10x cheaper than numpy structured-field assignment (see docs/decisions.md).
_B_KIND = _offset("kind", 1)
_B_SIDE = _offset("side", 1)
_B_TYPE = _offset("order_type", 1)
_B_TIF = _offset("tif", 1)
_I_SYMBOL = _offset("symbol", 4)
_Q_TS_PUB = _offset("ts_pub", 8)
_Q_CL_ORD_ID = _offset("cl_ord_id", 8)
_Q_ORIG = _offset("orig_cl_ord_id", 8)
_Q_PRICE = _offset("price", 8)
_Q_QTY = _offset("qty", 8)
_K_NEW = int(RecordKind.ORDER_NEW)
_K_CANCEL = int(RecordKind.ORDER_CANCEL)
_K_REPLACE = int(RecordKind.ORDER_REPLACE)
# Plain ints: an IntEnum stored in the request and the Order is slower to compare later.
_BUY = int(Side.BUY)
_SELL = int(Side.SELL)
_RB_EXEC_TYPE: int = EXECUTION_REPORT.fields["exec_type"][1]  # type: ignore[index]
_X_TRADE = int(ExecType.TRADE)
MAX_POLICY_ID = 255
"""EXECUTION_REPORT carries the policy id in one byte."""


# -- what the host hands in ---------------------------------------------------------


@runtime_checkable
class OrderSink(Protocol):
    """Where a policy's ORDER_REQUEST records go.

    ``try_submit`` copies the 128 bytes of one record and returns False when it cannot
    take it now (ring full): the policy sees ``0`` from the action and may retry.
    """

    def try_submit(self, record: memoryview) -> bool: ...


class ProducerSink:
    """An :class:`OrderSink` over an SPSC ring :class:`~wiresens.shm.ring.Producer`."""

    __slots__ = ("producer", "try_submit")

    def __init__(self, producer: Any) -> None:
        self.producer = producer
        # Bound once: one attribute lookup less per order.
        self.try_submit: Callable[[memoryview], bool] = producer.try_write


class BufferSink:
    """An :class:`OrderSink` keeping submitted records in memory (tests, back-tester).

    ``records`` is a numpy array of ORDER_REQUEST; ``capacity`` bounds it so a test can
    exercise back-pressure (``try_submit`` returns False when full).
    """

    def __init__(self, capacity: int = 1 << 16) -> None:
        self._buf = np.zeros(capacity, ORDER_REQUEST)
        self._bytes = self._buf.data.cast("B")
        self.capacity = capacity
        self.count = 0

    def try_submit(self, record: memoryview) -> bool:
        n = self.count
        if n >= self.capacity:
            return False
        size = ORDER_REQUEST.itemsize
        self._bytes[n * size : (n + 1) * size] = record
        self.count = n + 1
        return True

    @property
    def records(self) -> np.ndarray[Any, Any]:
        """The records submitted so far (a view)."""
        return self._buf[: self.count]

    def drain(self) -> np.ndarray[Any, Any]:
        """A copy of the records submitted since the last drain; empties the buffer."""
        out = self._buf[: self.count].copy()
        self.count = 0
        return out


class BookView(Protocol):
    """What ``on_book`` sees of one symbol's book: the top, in fixed point.

    A side with no level has price and quantity 0. The host owns the object and updates
    it in place; a policy must not keep references to its values across calls expecting
    them to stay.
    """

    @property
    def bid_px(self) -> int: ...
    @property
    def bid_qty(self) -> int: ...
    @property
    def ask_px(self) -> int: ...
    @property
    def ask_qty(self) -> int: ...


class TopOfBook:
    """A mutable :class:`BookView`, updated from TOP_OF_BOOK records or by hand."""

    __slots__ = ("ask_px", "ask_qty", "bid_px", "bid_qty", "ts")

    def __init__(
        self, bid_px: int = 0, bid_qty: int = 0, ask_px: int = 0, ask_qty: int = 0, ts: int = 0
    ) -> None:
        self.bid_px = bid_px
        self.bid_qty = bid_qty
        self.ask_px = ask_px
        self.ask_qty = ask_qty
        self.ts = ts

    def update(self, rec: Any) -> None:
        """Copy a TOP_OF_BOOK record (numpy void) into this view."""
        self.bid_px = int(rec["bid_px"])
        self.bid_qty = int(rec["bid_qty"])
        self.ask_px = int(rec["ask_px"])
        self.ask_qty = int(rec["ask_qty"])
        self.ts = int(rec["ts_recv"])

    def __repr__(self) -> str:
        return (
            f"TopOfBook({self.bid_qty}@{self.bid_px} / {self.ask_qty}@{self.ask_px}, ts={self.ts})"
        )


class Instrument(Protocol):
    """What a policy needs of an instrument (fixed point; Binance's PRICE_FILTER and LOT_SIZE).

    :class:`wiresens.instruments.Instrument` is one.
    """

    @property
    def symbol(self) -> str: ...
    @property
    def tick_size(self) -> int: ...
    @property
    def step_size(self) -> int: ...


class EmptyParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Parameters of a policy that declares none."""


class ClOrdIdGen:
    """Client order ids ``(policy << 48) | (epoch << 24) | counter`` (see module doc)."""

    __slots__ = ("_base", "_counter", "epoch", "policy_id")

    def __init__(self, policy_id: int, min_epoch: int = 0, now_s: int | None = None) -> None:
        if not 0 <= policy_id <= MAX_POLICY_ID:
            raise ValueError(f"policy id {policy_id} is outside 0..{MAX_POLICY_ID}")
        self.policy_id = policy_id
        self.epoch = max(int(time.time()) if now_s is None else now_s, min_epoch)
        self._counter = 0
        self._base = self._make_base()

    def _make_base(self) -> int:
        return (self.policy_id << (_EPOCH_BITS + _COUNTER_BITS)) | (
            (self.epoch & _EPOCH_MASK) << _COUNTER_BITS
        )

    def next(self) -> int:
        """The next id (never 0)."""
        c = self._counter + 1
        if c > _COUNTER_MAX:
            # Counter exhausted: move to a later epoch (at least one second on).
            self.epoch = max(int(time.time()), self.epoch + 1)
            self._base = self._make_base()
            c = 1
        self._counter = c
        return self._base | c

    @staticmethod
    def policy_of(cl_ord_id: int) -> int:
        """The policy id encoded in a ``cl_ord_id``."""
        return (cl_ord_id >> (_EPOCH_BITS + _COUNTER_BITS)) & ((1 << _POLICY_BITS) - 1)


class PolicyContext(msgspec.Struct, kw_only=True):
    """What the host tells a policy about where it runs.

    Parameters
    ----------
    policy_id : int
        The node-wide index of this policy (0..255); it tags its orders and reports.
    name : str
        The ``[[policy]] name`` from the node config.
    sink : OrderSink
        Where ORDER_REQUEST records go.
    instruments : sequence of Instrument
        The node's instrument table, indexed by the records' ``symbol``.
    symbols : sequence of int
        The instrument indexes this policy subscribes to.
    account : int
        The account index its orders go to.
    min_epoch : int
        Lower bound of the client-order-id epoch (the host passes the previous run's + 1).
    clock : callable
        Nanosecond wall clock (the back-tester passes simulated time).
    """

    policy_id: int
    name: str
    sink: Any
    instruments: Sequence[Any] = ()
    symbols: Sequence[int] = ()
    account: int = 0
    min_epoch: int = 0
    clock: Callable[[], int] = time.time_ns


# -- the policy object ---------------------------------------------------------------


class PolicyObject:
    """Base class of trading strategies.

    Subclasses override the ``on_*`` hooks and declare ``Params``; they should not
    override ``__init__`` (do set-up in :meth:`on_start`). The host creates the object,
    calls :meth:`start`, then the ``deliver_*`` methods from its loop, and :meth:`stop`.

    When a hook raises, the exception propagates out of the ``deliver_*`` call: the
    host logs it with the policy's name, stops feeding the object, and restarts the
    policy as a new object (new ``cl_ord_id`` epoch; its open orders are cancelled by
    execution). A hook must therefore not rely on state surviving an exception.
    """

    Params: ClassVar[type[msgspec.Struct]] = EmptyParams
    """The msgspec Struct of this policy's ``params`` table (validated when the node loads)."""

    def __init__(self, params: msgspec.Struct | None, context: PolicyContext) -> None:
        if params is None:
            params = msgspec.convert({}, type(self).Params)
        if not isinstance(params, type(self).Params):
            raise TypeError(
                f"{type(self).__name__} expects params of type {type(self).Params.__name__}, "
                f"got {type(params).__name__}"
            )
        self.params: Any = params
        self.context = context
        self.name = context.name
        self.policy_id = context.policy_id
        self.account = context.account
        self.instruments: Sequence[Any] = context.instruments
        self.symbols: Sequence[int] = context.symbols
        self.clock = context.clock
        self.open_orders = OrderTable()
        self.positions = PositionBook()
        self.running = False
        self.rejected_submits = 0
        """Actions refused by the sink (back-pressure)."""
        self._sink_submit: Callable[[memoryview], bool] = context.sink.try_submit
        self._ids = ClOrdIdGen(context.policy_id, context.min_epoch)
        # One preallocated request; actions fill it and hand its bytes to the sink.
        self._req = new_record(RecordKind.ORDER_NEW)
        self._req["policy"] = context.policy_id
        self._req["account"] = context.account
        self._req_bytes = self._req.data.cast("B")
        self._req_q = self._req_bytes.cast("q")
        self._req_i = self._req_bytes.cast("I")
        self._log: Any = None

    # -- hooks (override) -------------------------------------------------------------

    def on_start(self) -> None:
        """Called once before any other hook. If it raises, the policy does not start
        (the host reports the error and retries with back-off)."""

    def on_book(self, symbol: int, book: BookView) -> None:
        """The top of ``symbol``'s book changed. If it raises, the host reports it and
        restarts the policy."""

    def on_trade(self, symbol: int, trade: Any) -> None:
        """A public trade in ``symbol`` (a TRADE record: ``price``, ``qty``,
        ``trade_id``, ``flags``). If it raises, the host reports it and restarts the
        policy."""

    def on_execution(self, report: Any) -> None:
        """One of this policy's orders changed (an EXECUTION_REPORT record), after
        ``open_orders`` and ``positions`` were updated; :meth:`order_for` gives the
        tracked order. Duplicates are not delivered. If it raises, the host reports it
        and restarts the policy."""

    def on_account(self, update: Any) -> None:
        """Reconciliation found that the exchange's balance of an asset of this policy's
        account differs from what the node expected (an ACCOUNT_UPDATE record with
        ``ACCOUNT_DIFF_FLAG``: ``asset``, ``free`` = the exchange's total and ``locked`` =
        the difference, fixed point). Where the difference belongs to one of this
        policy's positions, :meth:`on_position` follows. If it raises, the host reports
        it and restarts the policy."""

    def on_position(self, update: Any) -> None:
        """Execution corrected this policy's position in ``update["symbol"]`` to what the
        exchange holds (a POSITION_UPDATE record: ``qty``, ``avg_px``,
        ``realized_pnl``); ``positions`` already shows it. If it raises, the host
        reports it and restarts the policy."""

    def on_timer(self, now_ns: int) -> None:
        """Every ``timer_interval_ms`` of the config (wall clock live, simulated time in
        back-test). If it raises, the host reports it and restarts the policy."""

    def on_stop(self) -> None:
        """Called once when the policy stops (node down, restart, reconfiguration); open
        orders are still known and may be cancelled here. If it raises, the host reports
        it; execution cancels the policy's open orders either way."""

    # -- driving (the host and the back-tester call these) ----------------------------

    def start(self) -> None:
        self.on_start()
        self.running = True

    def stop(self) -> None:
        self.running = False
        self.on_stop()

    def deliver_book(self, symbol: int, book: BookView) -> None:
        self.on_book(symbol, book)

    def deliver_trade(self, symbol: int, trade: Any) -> None:
        self.on_trade(symbol, trade)

    def deliver_timer(self, now_ns: int) -> None:
        self.on_timer(now_ns)

    def deliver_account(self, update: Any) -> None:
        self.on_account(update)

    def deliver_position(self, update: Any) -> None:
        """Take execution's corrected position (a POSITION_UPDATE record), then call
        :meth:`on_position`. The cost basis is rebuilt from ``avg_px``, so the policy's
        average price may differ from execution's by the rounding of one tick."""
        pos = self.positions.get(int(update["policy"]), int(update["symbol"]))
        pos.qty = int(update["qty"])
        pos.cost_raw = pos.qty * int(update["avg_px"])
        pos.realized_raw = int(update["realized_pnl"]) * SCALE
        self.on_position(update)

    def deliver_execution(self, report: Any, raw: memoryview | None = None) -> Outcome:
        """Apply an EXECUTION_REPORT to ``open_orders`` and ``positions``, then call
        :meth:`on_execution` unless it was a duplicate or unknown. Returns the outcome.

        ``report`` is the record (numpy void) the hook receives; pass ``raw``, the same
        record's bytes (``memoryview`` cast to ``"B"``), and the bookkeeping reads int64
        words instead of numpy fields (~5 µs less per report in CPython).
        """
        if raw is not None:
            outcome = self.open_orders.apply_raw(raw)
            if outcome <= _STALE_FILL:
                if raw[_RB_EXEC_TYPE] == _X_TRADE:  # only a fill moves the position
                    self.positions.apply_raw(raw)
                self.on_execution(report)
            return outcome
        outcome = self.open_orders.apply(report)
        if outcome <= _STALE_FILL:
            self.positions.apply_report(report)
            self.on_execution(report)
        return outcome

    def order_for(self, report: Any) -> Order | None:
        """The tracked order an EXECUTION_REPORT is about (open or recently finished)."""
        order = self.open_orders.get(int(report["cl_ord_id"]))
        if order is None:
            orig = int(report["orig_cl_ord_id"])
            order = self.open_orders.get(orig) if orig else None
        return order

    # -- actions ----------------------------------------------------------------------

    def buy(
        self,
        symbol: int,
        qty: int,
        price: int,
        tif: int = GTC,
        order_type: int = LIMIT,
    ) -> int:
        """Send a buy order; returns its ``cl_ord_id``, 0 when the sink is full.

        ``qty`` and ``price`` are fixed point (``price`` ignored for MARKET). Raises
        ValueError for a non-positive quantity (a bug in the policy, not flow control).
        """
        return self._new(symbol, _BUY, qty, price, tif, order_type)

    def sell(
        self,
        symbol: int,
        qty: int,
        price: int,
        tif: int = GTC,
        order_type: int = LIMIT,
    ) -> int:
        """Send a sell order; as :meth:`buy`."""
        return self._new(symbol, _SELL, qty, price, tif, order_type)

    def cancel(self, cl_ord_id: int) -> bool:
        """Ask to cancel an open order; False if it is not open or the sink is full."""
        order = self.open_orders.open.get(cl_ord_id)
        if order is None or order.status == _PENDING_CANCEL:  # already asked
            return False
        b, q = self._req_bytes, self._req_q
        b[_B_KIND] = _K_CANCEL
        b[_B_SIDE] = order.side
        self._req_i[_I_SYMBOL] = order.symbol
        q[_Q_CL_ORD_ID] = self._ids.next()
        q[_Q_ORIG] = cl_ord_id
        q[_Q_QTY] = 0
        q[_Q_PRICE] = 0
        q[_Q_TS_PUB] = self.clock()
        if not self._sink_submit(self._req_bytes):
            self.rejected_submits += 1
            return False
        self.open_orders.mark_pending_cancel(cl_ord_id)
        return True

    def replace(self, cl_ord_id: int, qty: int, price: int) -> int:
        """Cancel-replace an open order with a new quantity and price; returns the new
        order's ``cl_ord_id``, 0 if the order is not open or the sink is full."""
        order = self.open_orders.open.get(cl_ord_id)
        if order is None or order.status == _PENDING_CANCEL:
            return 0
        if qty <= 0:
            raise ValueError(f"replace quantity must be positive, got {qty}")
        b, q = self._req_bytes, self._req_q
        new_id = self._ids.next()
        b[_B_KIND] = _K_REPLACE
        b[_B_SIDE] = order.side
        b[_B_TYPE] = order.order_type
        b[_B_TIF] = order.tif
        self._req_i[_I_SYMBOL] = order.symbol
        q[_Q_CL_ORD_ID] = new_id
        q[_Q_ORIG] = cl_ord_id
        q[_Q_QTY] = qty
        q[_Q_PRICE] = price
        q[_Q_TS_PUB] = self.clock()
        if not self._sink_submit(self._req_bytes):
            self.rejected_submits += 1
            return 0
        self.open_orders.mark_pending_cancel(cl_ord_id)
        self.open_orders.add(
            # By position (see Order.__init__): policy, symbol, side, qty, price,
            # order_type, tif, account, orig_cl_ord_id.
            Order(
                new_id,
                self.policy_id,
                order.symbol,
                order.side,
                qty,
                price,
                order.order_type,
                order.tif,
                self.account,
                cl_ord_id,
            )
        )
        return new_id

    def _new(self, symbol: int, side: int, qty: int, price: int, tif: int, order_type: int) -> int:
        if qty <= 0:
            raise ValueError(f"order quantity must be positive, got {qty}")
        b, q = self._req_bytes, self._req_q
        cid = self._ids.next()
        b[_B_KIND] = _K_NEW
        b[_B_SIDE] = side
        b[_B_TYPE] = order_type
        b[_B_TIF] = tif
        self._req_i[_I_SYMBOL] = symbol
        q[_Q_CL_ORD_ID] = cid
        q[_Q_ORIG] = 0
        q[_Q_QTY] = qty
        q[_Q_PRICE] = price
        q[_Q_TS_PUB] = self.clock()
        if not self._sink_submit(self._req_bytes):
            self.rejected_submits += 1
            return 0
        self.open_orders.add(
            Order(cid, self.policy_id, symbol, side, qty, price, order_type, tif, self.account)
        )
        return cid

    def cancel_all(self, symbol: int | None = None) -> int:
        """Cancel every open order (of ``symbol``); returns how many cancels were sent."""
        ids = [o.cl_ord_id for o in self.open_orders if symbol is None or o.symbol == symbol]
        return sum(1 for cid in ids if self.cancel(cid))

    # -- helpers ----------------------------------------------------------------------

    @property
    def log(self) -> Any:
        """A structlog logger bound to this policy (I/O: keep it off the hot path)."""
        if self._log is None:
            import structlog

            self._log = structlog.get_logger("wiresens.policy").bind(wiresens_policy=self.name)
        return self._log

    def position(self, symbol: int) -> int:
        """Signed open quantity in ``symbol`` (fixed point)."""
        return self.positions.get(self.policy_id, symbol).qty
