"""Every fixed-layout record Wiresens moves through rings, slots and event logs.

All prices and quantities are int64 fixed point with 8 decimals (``SCALE``),
Binance's precision: ``"65432.10"`` is ``6543210000000``. All timestamps are
int64 nanoseconds since the Unix epoch: ``ts_exch`` (the exchange's event
time, 0 when the message has none, e.g. spot ``@bookTicker``), ``ts_recv``
(when the gateway read the frame) and ``ts_pub`` (when the record was
published on a ring).

Every record starts with the same 32-byte header::

    0  kind     u1   RecordKind
    1  version  u1   schema version of that kind
    2  flags    u2   kind-specific bits (see the *_FLAG constants)
    4  symbol   u4   instrument index in the node's instrument table
    8  ts_exch  i8
    16 ts_recv  i8
    24 ts_pub   i8

Market-data and control records are 64 bytes (one cache line); order and
execution records are 128. Records of the same size can share a ring: the
consumer reads ``kind`` and views the slot with that kind's dtype
(``slot.view(DTYPES[kind])``). ``tests/records/test_layout.py`` pins every
itemsize and offset: a layout change must show there and bump the version.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any

import numpy as np

__all__ = [
    "ACCOUNT_UPDATE",
    "ACTOR_STATUS",
    "CONTROL",
    "DEPTH_UPDATE",
    "DTYPES",
    "EXECUTION_REPORT",
    "HEADER",
    "HEARTBEAT",
    "MARKET_SLOT",
    "ORDER_REQUEST",
    "ORDER_SLOT",
    "POLICY_STATUS",
    "POSITION_UPDATE",
    "SCALE",
    "SCHEMA_VERSION",
    "TOP_OF_BOOK",
    "TRADE",
    "ExecStatus",
    "ExecType",
    "OrderType",
    "RecordKind",
    "Side",
    "TimeInForce",
    "new_record",
]

SCALE = 100_000_000
"""Fixed-point scale: 8 decimals."""


class RecordKind(IntEnum):
    """Stable numeric ids of record kinds (never reuse a number)."""

    DEPTH_UPDATE = 1
    TOP_OF_BOOK = 2
    TRADE = 3
    ORDER_NEW = 10
    ORDER_CANCEL = 11
    ORDER_REPLACE = 12
    ORDER_QUERY = 13
    EXECUTION_REPORT = 20
    ACCOUNT_UPDATE = 30
    POSITION_UPDATE = 31
    CONTROL = 40
    HEARTBEAT = 41
    ACTOR_STATUS = 42
    POLICY_STATUS = 43


class Side(IntEnum):
    BUY = 1
    SELL = 2


class OrderType(IntEnum):
    LIMIT = 1
    MARKET = 2
    LIMIT_MAKER = 3
    STOP_LOSS = 4
    STOP_LOSS_LIMIT = 5
    TAKE_PROFIT = 6
    TAKE_PROFIT_LIMIT = 7


class TimeInForce(IntEnum):
    NONE = 0
    GTC = 1
    IOC = 2
    FOK = 3


class ExecStatus(IntEnum):
    """Binance order statuses, plus PENDING_NEW for an order sent and not yet acknowledged."""

    PENDING_NEW = 0
    NEW = 1
    PARTIALLY_FILLED = 2
    FILLED = 3
    CANCELED = 4
    PENDING_CANCEL = 5
    REJECTED = 6
    EXPIRED = 7
    EXPIRED_IN_MATCH = 8


class ExecType(IntEnum):
    """Binance ``executionReport`` execution types."""

    NEW = 1
    CANCELED = 2
    REPLACED = 3
    REJECTED = 4
    TRADE = 5
    EXPIRED = 6
    TRADE_PREVENTION = 7


# Flags of DEPTH_UPDATE.
DEPTH_LAST_FLAG = 0x1
"""Last level of one exchange event: the book is consistent after this record."""
DEPTH_SNAPSHOT_FLAG = 0x2
"""Level from a snapshot; the first record of a snapshot also carries DEPTH_CLEAR_FLAG."""
DEPTH_CLEAR_FLAG = 0x4
"""Clear the consumer's book before applying this record (resync)."""
# CONTROL commands.
CONTROL_GATEWAY_CONNECTED = 1
"""Feed -> execution: the WebSocket API session of account ``target`` is (re)established;
reconcile its open orders and balances."""
CONTROL_KILL = 2
"""Operator -> execution: engage the kill switch; ``target`` = policy index + 1, 0 = node."""
CONTROL_RESUME = 3
"""Operator -> execution: lift the kill switch; ``target`` as for CONTROL_KILL."""
CONTROL_TAP_CHECKPOINT = 4
"""Sidecar -> event log: tap ``target`` is in the log up to byte ``arg0`` of the ring
created at ``arg1`` (ns): a restarted sidecar skips what the log already has."""
# Flags of ORDER_QUERY.
QUERY_BALANCES_FLAG = 0x1
"""ORDER_QUERY: ask for the account's balances (WebSocket API ``account.status``), not orders."""
# Flags of ACCOUNT_UPDATE.
ACCOUNT_SNAPSHOT_FLAG = 0x1
"""The balance comes from an ``account.status`` answer (the venue's whole account)."""
ACCOUNT_SNAPSHOT_END_FLAG = 0x2
"""The last record of one ``account.status`` snapshot (``asset`` 0: the account holds nothing)."""
ACCOUNT_DIFF_FLAG = 0x4
"""Execution -> policy: reconciliation found the venue's balance of ``asset`` differs from
execution's own; under this flag ``free`` is the venue's total (free + locked) and ``locked``
the difference (venue minus execution), and execution now uses the venue's total."""
# Flags of POSITION_UPDATE.
POSITION_CORRECTED_FLAG = 0x1
"""Execution -> policy: reconciliation corrected the policy's position (``qty`` is the new one)."""
STATUS_KILLED_FLAG = 0x1
"""POLICY_STATUS ``flags``: the kill switch blocks this policy (or the whole node)."""
# Flags of TRADE.
TRADE_BUYER_MAKER_FLAG = 0x1

_HEADER_FIELDS: list[tuple[str, str]] = [
    ("kind", "u1"),
    ("version", "u1"),
    ("flags", "<u2"),
    ("symbol", "<u4"),
    ("ts_exch", "<i8"),
    ("ts_recv", "<i8"),
    ("ts_pub", "<i8"),
]

HEADER = np.dtype(_HEADER_FIELDS)


def _record(fields: list[tuple[str, str]], size: int) -> np.dtype[Any]:
    dt = np.dtype(_HEADER_FIELDS + fields)
    if dt.itemsize > size:
        raise AssertionError(f"record of {dt.itemsize} bytes exceeds {size}")
    if dt.itemsize < size:
        dt = np.dtype([*_HEADER_FIELDS, *fields, ("_pad", f"V{size - dt.itemsize}")])
    return dt


DEPTH_UPDATE = _record([("update_id", "<i8"), ("price", "<i8"), ("qty", "<i8"), ("side", "u1")], 64)
"""One price level changed (qty 0 deletes it). ``update_id`` is Binance's ``u``."""

TOP_OF_BOOK = _record(
    [("bid_px", "<i8"), ("bid_qty", "<i8"), ("ask_px", "<i8"), ("ask_qty", "<i8")], 64
)
"""Best bid and ask after an event (0 quantity: that side is empty)."""

TRADE = _record([("trade_id", "<i8"), ("price", "<i8"), ("qty", "<i8")], 64)
"""A public trade; ``flags & TRADE_BUYER_MAKER_FLAG`` when the buyer was the maker."""

ORDER_REQUEST = _record(
    [
        ("cl_ord_id", "<i8"),
        ("orig_cl_ord_id", "<i8"),
        ("exch_order_id", "<i8"),
        ("price", "<i8"),
        ("qty", "<i8"),
        ("stop_price", "<i8"),
        ("quote_qty", "<i8"),
        ("policy", "<u2"),
        ("account", "<u2"),
        ("side", "u1"),
        ("order_type", "u1"),
        ("tif", "u1"),
        ("stp", "u1"),
    ],
    128,
)
"""ORDER_NEW, ORDER_CANCEL, ORDER_REPLACE and ORDER_QUERY (execution asking the gateway for
an order's status at the exchange) share this layout (``kind`` tells them apart)."""

EXECUTION_REPORT = _record(
    [
        ("cl_ord_id", "<i8"),
        ("orig_cl_ord_id", "<i8"),
        ("exch_order_id", "<i8"),
        ("trade_id", "<i8"),
        ("price", "<i8"),
        ("qty", "<i8"),
        ("last_px", "<i8"),
        ("last_qty", "<i8"),
        ("cum_qty", "<i8"),
        ("cum_quote", "<i8"),
        ("commission", "<i8"),
        ("policy", "u1"),
        ("account", "u1"),
        ("side", "u1"),
        ("status", "u1"),
        ("exec_type", "u1"),
        ("reason", "u1"),
        ("error_code", "<i2"),
    ],
    128,
)
"""An order event: ``status`` is an ExecStatus, ``reason`` a risk/gateway reject reason,
``error_code`` Binance's error code (negative) when the exchange rejected."""

ACCOUNT_UPDATE = _record(
    [("asset", "<u4"), ("account", "<u2"), ("_r", "<u2"), ("free", "<i8"), ("locked", "<i8")], 64
)
"""One asset balance of one account (Binance ``outboundAccountPosition`` entry)."""

POSITION_UPDATE = _record(
    [
        ("policy", "<u2"),
        ("account", "<u2"),
        ("_r", "<u4"),
        ("qty", "<i8"),
        ("avg_px", "<i8"),
        ("realized_pnl", "<i8"),
    ],
    64,
)
"""A policy's position in one symbol; PnL in quote-asset fixed point."""

CONTROL = _record(
    [
        ("command", "<u2"),
        ("target", "<u2"),
        ("_r", "<u4"),
        ("arg0", "<i8"),
        ("arg1", "<i8"),
        ("arg2", "<i8"),
    ],
    64,
)
"""A command to an actor (stop, kill switch, resume, reparameterise)."""

HEARTBEAT = _record(
    [
        ("actor", "<u2"),
        ("state", "<u2"),
        ("pid", "<i4"),
        ("seq", "<i8"),
        ("work", "<i8"),
        ("load", "<i8"),
    ],
    64,
)
"""An actor's liveness and duty-cycle counters."""

ACTOR_STATUS = _record(
    [
        ("actor", "<u2"),
        ("state", "<u2"),
        ("pid", "<i4"),
        ("cpu", "<i4"),
        ("restarts", "<u4"),
        ("heartbeat_seq", "<i8"),
        ("cycles", "<i8"),
        ("work", "<i8"),
        ("errors", "<i8"),
        ("started_ns", "<i8"),
        ("name", "S24"),
    ],
    128,
)
"""An actor's published lifecycle state and counters (``ts_pub`` = last heartbeat), one
seqlock slot per actor in the node's status segment, read by ``wiresens node status``."""

POLICY_STATUS = _record(
    [
        ("policy", "<u2"),
        ("account", "<u2"),
        ("open_orders", "<u4"),
        ("orders", "<i8"),
        ("fills", "<i8"),
        ("rejects", "<i8"),
        ("position", "<i8"),
        ("avg_px", "<i8"),
        ("realized_pnl", "<i8"),
        ("unrealized_pnl", "<i8"),
        ("lat_p50_ns", "<i8"),
        ("lat_p99_ns", "<i8"),
    ],
    128,
)
"""Execution's view of one policy in one symbol (``symbol`` in the header): orders,
fills, position and PnL (quote fixed point), and tick-to-route latency percentiles over
its recent orders. One seqlock slot per (policy, symbol), read by ``wiresens node status``."""

MARKET_SLOT = np.dtype((np.void, 64))
"""Slot type of rings that carry several 64-byte kinds (depth, top of book, trade)."""
ORDER_SLOT = np.dtype((np.void, 128))
"""Slot type of rings that carry 128-byte kinds (order requests, execution reports)."""

DTYPES: dict[RecordKind, np.dtype[Any]] = {
    RecordKind.DEPTH_UPDATE: DEPTH_UPDATE,
    RecordKind.TOP_OF_BOOK: TOP_OF_BOOK,
    RecordKind.TRADE: TRADE,
    RecordKind.ORDER_NEW: ORDER_REQUEST,
    RecordKind.ORDER_CANCEL: ORDER_REQUEST,
    RecordKind.ORDER_REPLACE: ORDER_REQUEST,
    RecordKind.ORDER_QUERY: ORDER_REQUEST,
    RecordKind.EXECUTION_REPORT: EXECUTION_REPORT,
    RecordKind.ACCOUNT_UPDATE: ACCOUNT_UPDATE,
    RecordKind.POSITION_UPDATE: POSITION_UPDATE,
    RecordKind.CONTROL: CONTROL,
    RecordKind.HEARTBEAT: HEARTBEAT,
    RecordKind.ACTOR_STATUS: ACTOR_STATUS,
    RecordKind.POLICY_STATUS: POLICY_STATUS,
}

SCHEMA_VERSION: dict[RecordKind, int] = {kind: 1 for kind in RecordKind}
"""Schema version per kind; bump it with any change to that kind's layout."""


def new_record(kind: RecordKind, count: int = 1) -> np.ndarray[Any, Any]:
    """A zeroed array of ``count`` records of ``kind`` with kind and version filled in."""
    arr = np.zeros(count, DTYPES[kind])
    arr["kind"] = int(kind)
    arr["version"] = SCHEMA_VERSION[kind]
    return arr
