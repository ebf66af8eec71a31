"""Binance wire messages <-> Wiresens records.

Inbound, :class:`MarketDecoder` and :class:`UserDecoder` turn raw frames into the
fixed-layout records of :mod:`wiresens.records`, written straight into a buffer
the caller owns (a ring slot, or a preallocated one-record array): one
``struct.pack_into`` per record, no numpy field assignment, no allocation beyond
msgspec's decode. Decimal strings become fixed point exactly (never a float).

They never raise into the caller's loop: malformed JSON, truncated frames, wrong
types, unknown streams/events/symbols and unrepresentable numbers are counted in
:class:`DecodeStats` by reason, and the call returns None (or 0 / False).

Outbound, :func:`place_params`, :func:`cancel_params` and :func:`replace_params`
build WebSocket API ``params`` for ``order.place``, ``order.cancel`` and
``order.cancelReplace`` from an ORDER_REQUEST record; :func:`order_from_params`
reads them back into a record (the venue simulator's side). Client order ids
are ``"wsn" + decimal`` (:func:`client_order_id`); ids without the prefix
belong to someone else (the web UI, another program) and map to 0.

Errors the exchange returns become :class:`wiresens.errors.ExchangeError` (or
``RateLimitError``) through :func:`exchange_error`; :data:`ERROR_CODES` names
the documented codes the gateway acts on.
"""

from __future__ import annotations

import struct
from collections import Counter
from collections.abc import Mapping
from typing import Any, Final

import msgspec
import numpy as np

from wiresens.binance.signing import Signer, ws_payload
from wiresens.binance.wire import (
    DECODERS,
    USER_EVENT_DECODER,
    AggTrade,
    BookTicker,
    ErrorBody,
    ExecutionReport,
    OrderResponse,
    OutboundAccountPosition,
    StreamEnvelope,
    Trade,
    UserEvent,
    WsApiRequest,
    WsApiResponse,
    _EventTag,
    stream_type,
)
from wiresens.errors import (
    ConfigError,
    ExchangeError,
    FixedPointError,
    ProtocolError,
    RateLimitError,
)
from wiresens.fixedpoint import from_fixed, to_fixed
from wiresens.instruments import NO_SYMBOL, InstrumentTable
from wiresens.records import (
    ACCOUNT_UPDATE,
    EXECUTION_REPORT,
    ORDER_REQUEST,
    SCHEMA_VERSION,
    TOP_OF_BOOK,
    TRADE,
    TRADE_BUYER_MAKER_FLAG,
    ExecStatus,
    ExecType,
    OrderType,
    RecordKind,
    Side,
    TimeInForce,
)

__all__ = [
    "CLIENT_ID_PREFIX",
    "ERROR_CODES",
    "EXEC_STATUS",
    "EXEC_TYPE",
    "ORDER_TYPE",
    "SIDE",
    "STP_MODE",
    "TIME_IN_FORCE",
    "DecodeStats",
    "MarketDecoder",
    "UserDecoder",
    "cancel_params",
    "client_order_id",
    "encode_request",
    "error_body",
    "error_of",
    "exchange_error",
    "fixed_to_wire",
    "logon_params",
    "order_from_params",
    "order_result",
    "parse_client_order_id",
    "parse_ws_response",
    "place_params",
    "replace_params",
    "signed_params",
    "write_order_response",
    "write_reject",
]

# --------------------------------------------------------------------------- enum maps

SIDE: Final[dict[str, Side]] = {"BUY": Side.BUY, "SELL": Side.SELL}
ORDER_TYPE: Final[dict[str, OrderType]] = {t.name: t for t in OrderType}
TIME_IN_FORCE: Final[dict[str, TimeInForce]] = {
    "GTC": TimeInForce.GTC,
    "IOC": TimeInForce.IOC,
    "FOK": TimeInForce.FOK,
}
EXEC_STATUS: Final[dict[str, ExecStatus]] = {
    s.name: s for s in ExecStatus if s is not ExecStatus.PENDING_NEW
}
EXEC_TYPE: Final[dict[str, ExecType]] = {t.name: t for t in ExecType}
STP_MODE: Final[dict[int, str]] = {
    1: "NONE",
    2: "EXPIRE_TAKER",
    3: "EXPIRE_MAKER",
    4: "EXPIRE_BOTH",
}
"""ORDER_REQUEST ``stp`` -> ``selfTradePreventionMode``; 0 sends nothing (the symbol's default)."""
_STP_CODE: Final[dict[str, int]] = {v: k for k, v in STP_MODE.items()}

CLIENT_ID_PREFIX: Final = "wsn"
"""Prefix of Wiresens client order ids (Binance allows ``[.A-Z:/a-z0-9_-]{1,36}``)."""

# Documented error codes (errors.md) the gateway treats specially: name, retriable.
ERROR_CODES: Final[dict[int, tuple[str, bool]]] = {
    -1000: ("UNKNOWN", False),
    -1001: ("DISCONNECTED", True),
    -1003: ("TOO_MANY_REQUESTS", True),
    -1006: ("UNEXPECTED_RESP", True),  # execution status unknown: query before retrying
    -1007: ("TIMEOUT", True),  # execution status unknown: query before retrying
    -1008: ("SERVER_BUSY", True),
    -1013: ("INVALID_MESSAGE", False),  # a filter failed (PRICE_FILTER, LOT_SIZE, NOTIONAL...)
    -1015: ("TOO_MANY_ORDERS", True),
    -1021: ("INVALID_TIMESTAMP", True),  # clock skew or recvWindow: resync time
    -1022: ("INVALID_SIGNATURE", False),
    -1100: ("ILLEGAL_CHARS", False),
    -1102: ("MANDATORY_PARAM_EMPTY_OR_MALFORMED", False),
    -1111: ("BAD_PRECISION", False),
    -1121: ("BAD_SYMBOL", False),
    -2010: ("NEW_ORDER_REJECTED", False),
    -2011: ("CANCEL_REJECTED", False),
    -2013: ("NO_SUCH_ORDER", False),
    -2014: ("BAD_API_KEY_FMT", False),
    -2015: ("REJECTED_MBX_KEY", False),
    -2021: ("ORDER_CANCEL_REPLACE_PARTIALLY_FAILED", False),
    -2022: ("ORDER_CANCEL_REPLACE_FAILED", False),
    -2026: ("ORDER_ARCHIVED", False),
    -2035: ("SUBSCRIPTION_ACTIVE", False),  # userDataStream.subscribe twice
    -2036: ("SUBSCRIPTION_INACTIVE", False),
    -2039: ("CLIENT_ORDER_ID_INVALID", False),
}


def exchange_error(
    code: int, msg: str, status: int = 400, retry_after: float = 0.0
) -> ExchangeError:
    """The ExchangeError for an error answer; RateLimitError for 429/418 and -1003/-1015.

    ``retriable`` on the returned instance follows :data:`ERROR_CODES`.
    """
    if status in (418, 429) or code in (-1003, -1015):
        return RateLimitError(code, msg, status, retry_after)
    err = ExchangeError(code, msg, status)
    err.retriable = ERROR_CODES.get(code, ("", status >= 500))[1]
    return err


# --------------------------------------------------------------------------- decode stats


class DecodeStats:
    """Per-reason counters of a decoder: ``ok`` per record kind, and every drop reason.

    Reasons: ``json`` (malformed or truncated JSON), ``schema`` (missing field,
    wrong type), ``unknown_stream``, ``unknown_event``, ``unknown_symbol``,
    ``number`` (a decimal that is not exact 8-decimal int64), ``buffer`` (the
    output buffer is too small), ``ignored`` (known, not turned into records).
    """

    __slots__ = ("counts",)

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def count(self, reason: str) -> None:
        self.counts[reason] += 1

    @property
    def errors(self) -> int:
        """Frames dropped for a fault (everything but ``ok:*`` and ``ignored``)."""
        return sum(n for k, n in self.counts.items() if not k.startswith("ok:") and k != "ignored")

    def as_dict(self) -> dict[str, int]:
        """A copy of the counters, for metrics export."""
        return dict(self.counts)

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v}" for k, v in sorted(self.counts.items()))
        return f"DecodeStats({inner})"


# --------------------------------------------------------------------------- packing

_CODES = {("u", 1): "B", ("u", 2): "H", ("u", 4): "I", ("i", 2): "h", ("i", 4): "i", ("i", 8): "q"}


def _packer(dtype: np.dtype[Any]) -> struct.Struct:
    """A struct.Struct covering every named field of ``dtype`` in order; ``_*`` fields
    and gaps are pad bytes (written as zeros)."""
    fmt, pos = "<", 0
    assert dtype.names is not None
    for name in dtype.names:
        sub, off = dtype.fields[name][:2]  # type: ignore[index]
        if off > pos:
            fmt += f"{off - pos}x"
        fmt += f"{sub.itemsize}x" if name.startswith("_") else _CODES[(sub.kind, sub.itemsize)]
        pos = off + sub.itemsize
    if pos < dtype.itemsize:
        fmt += f"{dtype.itemsize - pos}x"
    packer = struct.Struct(fmt)
    assert packer.size == dtype.itemsize
    return packer


_TOB: Final = _packer(TOP_OF_BOOK)
_TRADE: Final = _packer(TRADE)
_EXEC: Final = _packer(EXECUTION_REPORT)
_ACCT: Final = _packer(ACCOUNT_UPDATE)
_ORDER: Final = _packer(ORDER_REQUEST)

_K_TOB: Final = int(RecordKind.TOP_OF_BOOK)
_V_TOB: Final = SCHEMA_VERSION[RecordKind.TOP_OF_BOOK]
_K_TRADE: Final = int(RecordKind.TRADE)
_V_TRADE: Final = SCHEMA_VERSION[RecordKind.TRADE]
_K_EXEC: Final = int(RecordKind.EXECUTION_REPORT)
_V_EXEC: Final = SCHEMA_VERSION[RecordKind.EXECUTION_REPORT]
_K_ACCT: Final = int(RecordKind.ACCOUNT_UPDATE)
_V_ACCT: Final = SCHEMA_VERSION[RecordKind.ACCOUNT_UPDATE]

_MS: Final = 1_000_000
_INT64_MAX: Final = (1 << 63) - 1
_POW10: Final[tuple[int, ...]] = tuple(10 ** (8 - n) for n in range(9))


def _fx(text: str) -> int:
    """Exact fixed point of a plain Binance decimal; anything unusual goes through
    :func:`wiresens.fixedpoint.to_fixed` (which raises FixedPointError)."""
    whole, _, frac = text.partition(".")
    n = len(frac)
    digits = whole + frac
    # isascii: str.isdigit also accepts non-ASCII digits, which int() reads or rejects
    if n <= 8 and digits.isdigit() and digits.isascii():
        value = int(digits) * _POW10[n]
        if value <= _INT64_MAX:
            return value
    return to_fixed(text)


def _fx_opt(text: str | None) -> int:
    return 0 if text is None else _fx(text)


def fixed_to_wire(value: int) -> str:
    """Fixed point as the shortest exact decimal (``5200000000000`` -> ``"52000"``).

    Binance rejects more decimals than a symbol allows even when they are zeros
    on some markets (USD-M), so trailing zeros are never sent.
    """
    if value >= 0:
        whole, frac = divmod(value, 100_000_000)
        return str(whole) if not frac else f"{whole}.{frac:08d}".rstrip("0")
    text = from_fixed(value)
    return text.rstrip("0").rstrip(".")


def client_order_id(cl_ord_id: int) -> str:
    """The Binance ``newClientOrderId`` of a Wiresens order id."""
    return f"{CLIENT_ID_PREFIX}{cl_ord_id}"


def parse_client_order_id(text: str | None) -> int:
    """The Wiresens order id of a Binance client order id; 0 when it is not ours."""
    if text is None or not text.startswith(CLIENT_ID_PREFIX):
        return 0
    digits = text[len(CLIENT_ID_PREFIX) :]
    if not (digits.isdigit() and digits.isascii()) or len(digits) > 18:
        return 0
    return int(digits)


# --------------------------------------------------------------------------- market data


_ENVELOPE = DECODERS[StreamEnvelope]
# msgspec raises UnicodeDecodeError (not DecodeError) for invalid UTF-8 in a string
_BAD = (msgspec.DecodeError, UnicodeDecodeError)


class MarketDecoder:
    """Combined-stream market frames -> TOP_OF_BOOK and TRADE records.

    Parameters
    ----------
    table
        Maps ``s`` (symbol) to the record's ``symbol`` index; unknown symbols are dropped.
    futures
        USD-M streams (``depth`` frames decode as FuturesDepthUpdate).
    stats
        Counters to share between decoders (a new one by default).

    ``decode_into`` writes one record into ``out`` (a writable buffer of at least
    64 bytes, e.g. a ring slot or ``memoryview(np.zeros(1, MARKET_SLOT)).cast("B")``)
    and returns its kind. Frames that carry no record here (depth diffs, klines,
    markPrice) return None after parsing and are left in :attr:`last` for the
    book to consume; ``ok:<Struct>`` counts them.
    """

    __slots__ = ("_decoders", "_futures", "_index", "last", "stats")

    def __init__(
        self, table: InstrumentTable, futures: bool = False, stats: DecodeStats | None = None
    ) -> None:
        self._index = table.index
        self._futures = futures
        self._decoders: dict[str, msgspec.json.Decoder[Any] | None] = {}
        self.stats = stats if stats is not None else DecodeStats()
        self.last: msgspec.Struct | None = None

    def _decoder_for(self, stream: str) -> msgspec.json.Decoder[Any] | None:
        try:
            return self._decoders[stream]
        except KeyError:
            t = stream_type(stream, self._futures)
            dec = DECODERS[t] if t is not None else None
            if len(self._decoders) < 4096:  # bound the cache against junk stream names
                self._decoders[stream] = dec
            return dec

    def parse(self, frame: bytes | str) -> msgspec.Struct | None:
        """Decode a combined-stream frame to its Struct; None (counted) when unusable."""
        try:
            env = _ENVELOPE.decode(frame)
        except msgspec.ValidationError:
            self.stats.count("schema")
            return None
        except (msgspec.DecodeError, UnicodeDecodeError):
            self.stats.count("json")
            return None
        dec = self._decoder_for(env.stream)
        if dec is None:
            self.stats.count("unknown_stream")
            return None
        try:
            msg: msgspec.Struct = dec.decode(env.data)
        except msgspec.ValidationError:
            self.stats.count("schema")
            return None
        except (msgspec.DecodeError, UnicodeDecodeError):
            self.stats.count("json")
            return None
        self.last = msg
        return msg

    def decode_into(self, frame: bytes | str, out: Any, ts_recv: int, offset: int = 0) -> int:
        """Parse ``frame`` and write its record at ``out[offset:]``.

        Returns the RecordKind value written (TOP_OF_BOOK or TRADE), or 0 when
        nothing was written (dropped and counted, or a kind that is not a record
        here: see :attr:`last`).
        """
        msg = self.parse(frame)
        if msg is None:
            return 0
        if isinstance(msg, BookTicker):
            return _K_TOB if self.write_top_of_book(msg, out, ts_recv, offset) else 0
        if isinstance(msg, Trade | AggTrade):
            return _K_TRADE if self.write_trade(msg, out, ts_recv, offset) else 0
        self.stats.count("ok:" + type(msg).__name__)
        return 0

    def write_top_of_book(self, msg: BookTicker, out: Any, ts_recv: int, offset: int = 0) -> bool:
        """Write a TOP_OF_BOOK record; ``ts_exch`` is ``E`` (0 on spot, which has none)."""
        sym = self._index(msg.s)
        if sym == NO_SYMBOL:
            self.stats.count("unknown_symbol")
            return False
        try:
            _TOB.pack_into(
                out,
                offset,
                _K_TOB,
                _V_TOB,
                0,
                sym,
                msg.E * _MS,
                ts_recv,
                0,
                _fx(msg.b),
                _fx(msg.B),
                _fx(msg.a),
                _fx(msg.A),
            )
        except FixedPointError:
            self.stats.count("number")
            return False
        except (struct.error, ValueError, TypeError, IndexError):
            self.stats.count("buffer")
            return False
        self.stats.count("ok:TOP_OF_BOOK")
        return True

    def write_trade(self, msg: Trade | AggTrade, out: Any, ts_recv: int, offset: int = 0) -> bool:
        """Write a TRADE record: ``trade_id`` is ``t`` (trade) or ``a`` (aggTrade)."""
        sym = self._index(msg.s)
        if sym == NO_SYMBOL:
            self.stats.count("unknown_symbol")
            return False
        trade_id = msg.t if isinstance(msg, Trade) else msg.a
        try:
            _TRADE.pack_into(
                out,
                offset,
                _K_TRADE,
                _V_TRADE,
                TRADE_BUYER_MAKER_FLAG if msg.m else 0,
                sym,
                msg.E * _MS,
                ts_recv,
                0,
                trade_id,
                _fx(msg.p),
                _fx(msg.q),
            )
        except FixedPointError:
            self.stats.count("number")
            return False
        except (struct.error, ValueError, TypeError, IndexError):
            self.stats.count("buffer")  # also an id beyond int64
            return False
        self.stats.count("ok:TRADE")
        return True


# --------------------------------------------------------------------------- user data


class _UserFrame(msgspec.Struct, gc=False):
    """Any user-data frame shape: WS API ``{subscriptionId, event}``, a combined
    stream ``{stream, data}`` or a bare event (only ``e`` is read here)."""

    event: msgspec.Raw = msgspec.Raw()
    data: msgspec.Raw = msgspec.Raw()
    e: str = ""


_USER_FRAME = msgspec.json.Decoder(_UserFrame)
_TAG = DECODERS[_EventTag]


class UserDecoder:
    """User-data frames -> EXECUTION_REPORT and ACCOUNT_UPDATE records.

    Accepts the WebSocket API subscription frame (``{"subscriptionId":0,"event":{...}}``),
    the listenKey stream's bare event and its combined-stream envelope. ``account``
    and ``policy`` are stamped into every record (Binance knows neither).
    """

    __slots__ = ("_index", "account", "policy", "stats", "table")

    def __init__(
        self,
        table: InstrumentTable,
        account: int = 0,
        policy: int = 0,
        stats: DecodeStats | None = None,
    ) -> None:
        if not (0 <= account <= 255 and 0 <= policy <= 255):
            raise ConfigError(
                f"account {account} / policy {policy} out of range: EXECUTION_REPORT keeps "
                "them in one byte each (0..255)"
            )
        self.table = table
        self._index = table.index
        self.account = account
        self.policy = policy
        self.stats = stats if stats is not None else DecodeStats()

    def parse(self, frame: bytes | str) -> UserEvent | None:
        """The event of a frame, or None (counted) when malformed or of an unknown kind."""
        try:
            outer = _USER_FRAME.decode(frame)
        except msgspec.ValidationError:
            self.stats.count("schema")
            return None
        except (msgspec.DecodeError, UnicodeDecodeError):
            self.stats.count("json")
            return None
        # an absent Raw is empty (falsy): then the frame is the bare event
        body: Any = outer.event or outer.data or frame
        try:
            ev: UserEvent = USER_EVENT_DECODER.decode(body)
        except msgspec.ValidationError:
            self.stats.count(self._why(body))
            return None
        except (msgspec.DecodeError, UnicodeDecodeError):
            self.stats.count("json")
            return None
        return ev

    @staticmethod
    def _why(body: Any) -> str:
        # Only on the error path: tell an event we do not handle from a broken one.
        try:
            tag = _TAG.decode(body).e
        except _BAD:
            return "schema"
        known = ("executionReport", "outboundAccountPosition", "balanceUpdate")
        return "schema" if tag in known else "unknown_event"

    def decode_into(self, frame: bytes | str, out: Any, ts_recv: int, offset: int = 0) -> int:
        """Parse and write: an executionReport gives one EXECUTION_REPORT (128 bytes),
        an outboundAccountPosition one ACCOUNT_UPDATE (64 bytes) per balance, written
        back to back. Returns the number of records written (0: nothing)."""
        ev = self.parse(frame)
        if ev is None:
            return 0
        if isinstance(ev, ExecutionReport):
            return int(self.write_execution_report(ev, out, ts_recv, offset))
        if isinstance(ev, OutboundAccountPosition):
            return self.write_account_position(ev, out, ts_recv, offset)
        self.stats.count("ignored")  # balanceUpdate: the next outboundAccountPosition has it
        return 0

    def write_execution_report(
        self, ev: ExecutionReport, out: Any, ts_recv: int, offset: int = 0
    ) -> bool:
        """Write one EXECUTION_REPORT record (status, exec type, fill, cumulative values)."""
        sym = self._index(ev.s)
        side = SIDE.get(ev.S)
        status = EXEC_STATUS.get(ev.X)
        exec_type = EXEC_TYPE.get(ev.x)
        if sym == NO_SYMBOL:
            self.stats.count("unknown_symbol")
            return False
        if side is None or status is None or exec_type is None:
            self.stats.count("schema")
            return False
        try:
            _EXEC.pack_into(
                out,
                offset,
                _K_EXEC,
                _V_EXEC,
                0,
                sym,
                ev.E * _MS,
                ts_recv,
                0,
                parse_client_order_id(ev.c),
                parse_client_order_id(ev.C),
                ev.i,
                ev.t,
                _fx(ev.p),
                _fx(ev.q),
                _fx(ev.L),
                _fx(ev.l),
                _fx(ev.z),
                _fx(ev.Z),
                _fx_opt(ev.n),
                self.policy,
                self.account,
                side,
                status,
                exec_type,
                0,
                0,
            )
        except FixedPointError:
            self.stats.count("number")
            return False
        except (struct.error, ValueError, TypeError, IndexError):
            self.stats.count("buffer")
            return False
        self.stats.count("ok:EXECUTION_REPORT")
        return True

    def write_account_position(
        self, ev: OutboundAccountPosition, out: Any, ts_recv: int, offset: int = 0
    ) -> int:
        """Write one ACCOUNT_UPDATE per balance; returns how many (0 on any fault: a
        partial snapshot is worse than none)."""
        pos = offset
        try:
            for bal in ev.B:
                _ACCT.pack_into(
                    out,
                    pos,
                    _K_ACCT,
                    _V_ACCT,
                    0,
                    NO_SYMBOL,
                    ev.E * _MS,
                    ts_recv,
                    0,
                    self.table.asset_index(bal.a),
                    self.account,
                    _fx(bal.f),
                    _fx(bal.l),
                )
                pos += _ACCT.size
        except FixedPointError:
            self.stats.count("number")
            return 0
        except (struct.error, ValueError, TypeError, IndexError):
            self.stats.count("buffer")
            return 0
        self.stats.count("ok:ACCOUNT_UPDATE")
        return len(ev.B)


# --------------------------------------------------------------------------- WS API


_WS_RESPONSE: msgspec.json.Decoder[WsApiResponse] = msgspec.json.Decoder(WsApiResponse)
_ORDER_RESPONSE: msgspec.json.Decoder[OrderResponse] = msgspec.json.Decoder(OrderResponse)
_ERROR_BODY: msgspec.json.Decoder[ErrorBody] = msgspec.json.Decoder(ErrorBody)
_REQUEST_ENCODER = msgspec.json.Encoder()


def signed_params(
    params: Mapping[str, object],
    api_key: str,
    signer: Signer,
    timestamp_ms: int,
    recv_window_ms: int | None = None,
) -> dict[str, object]:
    """``params`` plus ``apiKey``, ``timestamp`` (and ``recvWindow``) and the WS API
    ``signature`` over all of them (sorted, unencoded: :func:`signing.ws_payload`).

    After ``session.logon`` only ``timestamp`` is needed: pass the params without this.
    """
    out: dict[str, object] = dict(params)
    out["apiKey"] = api_key
    out["timestamp"] = timestamp_ms
    if recv_window_ms is not None:
        out["recvWindow"] = recv_window_ms
    out["signature"] = signer.sign(ws_payload(out))
    return out


def logon_params(api_key: str, signer: Signer, timestamp_ms: int) -> dict[str, object]:
    """``session.logon`` params (Binance accepts only Ed25519 keys for it)."""
    return signed_params({}, api_key, signer, timestamp_ms)


def encode_request(request_id: str | int, method: str, params: Mapping[str, object]) -> bytes:
    """A WebSocket API request frame (``params`` must already carry apiKey/signature
    when the method is SIGNED and the session is not logged on)."""
    return _REQUEST_ENCODER.encode(WsApiRequest(request_id, method, dict(params)))


def parse_ws_response(frame: bytes | str, stats: DecodeStats | None = None) -> WsApiResponse | None:
    """A WebSocket API response, or None (counted) when it is not one."""
    try:
        return _WS_RESPONSE.decode(frame)
    except msgspec.ValidationError:
        if stats is not None:
            stats.count("schema")
    except (msgspec.DecodeError, UnicodeDecodeError):
        if stats is not None:
            stats.count("json")
    return None


def write_order_response(
    resp: OrderResponse,
    table: InstrumentTable,
    out: Any,
    ts_recv: int,
    offset: int = 0,
    account: int = 0,
    policy: int = 0,
) -> bool:
    """An ``order.place``/``order.cancel`` result as an EXECUTION_REPORT record.

    ACK responses carry no status: they are written as NEW. ``last_px``/``last_qty``
    are those of the last FULL fill; ``commission`` sums the fills.
    """
    sym = table.index(resp.symbol)
    side = SIDE.get(resp.side, Side.BUY)
    status = EXEC_STATUS.get(resp.status, ExecStatus.NEW)
    exec_type = {
        ExecStatus.CANCELED: ExecType.CANCELED,
        ExecStatus.REJECTED: ExecType.REJECTED,
        ExecStatus.EXPIRED: ExecType.EXPIRED,
        ExecStatus.PARTIALLY_FILLED: ExecType.TRADE,
        ExecStatus.FILLED: ExecType.TRADE,
    }.get(status, ExecType.NEW)
    try:
        last_px = _fx(resp.fills[-1].price) if resp.fills else 0
        last_qty = _fx(resp.fills[-1].qty) if resp.fills else 0
        trade_id = resp.fills[-1].tradeId if resp.fills else -1
        commission = sum(_fx(f.commission) for f in resp.fills)
        _EXEC.pack_into(
            out,
            offset,
            _K_EXEC,
            _V_EXEC,
            0,
            sym,
            (resp.transactTime or resp.updateTime) * _MS,
            ts_recv,
            0,
            parse_client_order_id(resp.clientOrderId),
            parse_client_order_id(resp.origClientOrderId),
            resp.orderId,
            trade_id,
            _fx(resp.price),
            _fx(resp.origQty),
            last_px,
            last_qty,
            _fx(resp.executedQty),
            _fx(resp.cummulativeQuoteQty),
            commission,
            policy,
            account,
            side,
            status,
            exec_type,
            0,
            0,
        )
    except (FixedPointError, struct.error, ValueError, TypeError, IndexError):
        return False
    return True


def write_reject(
    rec: Any, code: int, out: Any, ts_recv: int, offset: int = 0, reason: int = 0
) -> bool:
    """An EXECUTION_REPORT rejecting the ORDER_REQUEST ``rec`` (a buffer or record):
    status REJECTED, ``error_code`` Binance's code (clamped to int16), ``reason``
    a gateway/risk reason."""
    try:
        f = _unpack_order(rec)
        (_, _, _, sym, _, _, _, cl, orig, exch, px, qty, _, _, policy, account, side) = f[:17]
        _EXEC.pack_into(
            out,
            offset,
            _K_EXEC,
            _V_EXEC,
            0,
            sym,
            0,
            ts_recv,
            0,
            cl,
            orig,
            exch,
            -1,
            px,
            qty,
            0,
            0,
            0,
            0,
            0,
            policy & 0xFF,
            account & 0xFF,
            side,
            ExecStatus.REJECTED,
            ExecType.REJECTED,
            reason,
            max(-32768, min(32767, code)),
        )
    except (struct.error, ValueError, TypeError):
        return False
    return True


# --------------------------------------------------------------------------- orders out


def _unpack_order(rec: Any) -> tuple[int, ...]:
    """ORDER_REQUEST fields as Python ints (faster than numpy field access)."""
    if isinstance(rec, np.void):
        rec = rec.tobytes()
    elif isinstance(rec, np.ndarray):
        rec = rec.view(np.uint8)
    values: tuple[int, ...] = _ORDER.unpack_from(rec)
    return values


def _symbol(table: InstrumentTable, index: int) -> str:
    try:
        return table[index].symbol
    except KeyError:
        raise ProtocolError(
            f"order names symbol index {index}, not in the instrument table "
            f"({len(table)} instruments): build orders with table.index(name)"
        ) from None


def place_params(rec: Any, table: InstrumentTable, resp_type: str = "RESULT") -> dict[str, object]:
    """``order.place`` params of an ORDER_NEW record (without timestamp/apiKey/signature).

    Sends ``quantity`` or, for MARKET with ``qty`` 0, ``quoteOrderQty``; ``price``
    and ``timeInForce`` for limit kinds; ``stopPrice`` when set; LIMIT_MAKER never
    gets a timeInForce (Binance rejects it).
    """
    (_, _, _, sym, _, _, _, cl, _, _, px, qty, stop, quote_qty, _, _, side, otype, tif, stp) = (
        _unpack_order(rec)
    )
    order_type = OrderType(otype)
    params: dict[str, object] = {
        "symbol": _symbol(table, sym),
        "side": Side(side).name,
        "type": order_type.name,
    }
    if tif and order_type is not OrderType.LIMIT_MAKER:
        params["timeInForce"] = TimeInForce(tif).name
    if qty:
        params["quantity"] = fixed_to_wire(qty)
    elif quote_qty:
        params["quoteOrderQty"] = fixed_to_wire(quote_qty)
    if px:
        params["price"] = fixed_to_wire(px)
    if stop:
        params["stopPrice"] = fixed_to_wire(stop)
    params["newClientOrderId"] = client_order_id(cl)
    if stp in STP_MODE:
        params["selfTradePreventionMode"] = STP_MODE[stp]
    params["newOrderRespType"] = resp_type
    return params


def cancel_params(rec: Any, table: InstrumentTable) -> dict[str, object]:
    """``order.cancel`` params of an ORDER_CANCEL record: by exchange ``orderId`` when
    known, else by ``origClientOrderId``; ``newClientOrderId`` names the cancel."""
    (_, _, _, sym, _, _, _, cl, orig, exch, *_rest) = _unpack_order(rec)
    params: dict[str, object] = {"symbol": _symbol(table, sym)}
    if exch:
        params["orderId"] = exch
    else:
        params["origClientOrderId"] = client_order_id(orig)
    params["newClientOrderId"] = client_order_id(cl)
    return params


def replace_params(
    rec: Any, table: InstrumentTable, mode: str = "STOP_ON_FAILURE", resp_type: str = "RESULT"
) -> dict[str, object]:
    """``order.cancelReplace`` params of an ORDER_REPLACE record: cancel ``orig_cl_ord_id``
    (or ``exch_order_id``), place the new order as ``cl_ord_id``."""
    fields = _unpack_order(rec)
    exch, orig = fields[9], fields[8]
    new = place_params(rec, table, resp_type)
    params: dict[str, object] = {"symbol": new.pop("symbol"), "cancelReplaceMode": mode}
    if exch:
        params["cancelOrderId"] = exch
    else:
        params["cancelOrigClientOrderId"] = client_order_id(orig)
    params.update(new)
    return params


def order_from_params(
    method: str, params: Mapping[str, object], table: InstrumentTable, out: Any, ts_recv: int = 0
) -> bool:
    """Read ``order.place`` / ``order.cancel`` / ``order.cancelReplace`` params back into an
    ORDER_REQUEST record (kind ORDER_NEW / ORDER_CANCEL / ORDER_REPLACE).

    False when the method is another one, a required value is missing or malformed,
    or the symbol is unknown: the venue then answers -1102/-1121 itself.
    """
    kind = {
        "order.place": RecordKind.ORDER_NEW,
        "order.cancel": RecordKind.ORDER_CANCEL,
        "order.cancelReplace": RecordKind.ORDER_REPLACE,
    }.get(method)
    if kind is None:
        return False

    def text(key: str) -> str | None:
        v = params.get(key)
        return None if v is None else str(v)

    try:
        sym = table.index(str(params.get("symbol", "")))
        if sym == NO_SYMBOL:
            return False
        if kind is RecordKind.ORDER_CANCEL:
            cl = parse_client_order_id(text("newClientOrderId"))
            orig = parse_client_order_id(text("origClientOrderId"))
            exch = int(str(params.get("orderId", 0)))
            side = otype = tif = stp = 0
            px = qty = stop = quote_qty = 0
        else:
            cl = parse_client_order_id(text("newClientOrderId"))
            if kind is RecordKind.ORDER_REPLACE:
                orig = parse_client_order_id(text("cancelOrigClientOrderId"))
                exch = int(str(params.get("cancelOrderId", 0)))
            else:
                orig = exch = 0
            side = SIDE[str(params["side"])]
            otype = ORDER_TYPE[str(params["type"])]
            tif_text = text("timeInForce")
            tif = TIME_IN_FORCE[tif_text] if tif_text is not None else 0
            stp_text = text("selfTradePreventionMode")
            stp = _STP_CODE[stp_text] if stp_text is not None else 0
            px = _fx_opt(text("price"))
            qty = _fx_opt(text("quantity"))
            stop = _fx_opt(text("stopPrice"))
            quote_qty = _fx_opt(text("quoteOrderQty"))
        _ORDER.pack_into(
            out,
            0,
            int(kind),
            SCHEMA_VERSION[kind],
            0,
            sym,
            0,
            ts_recv,
            0,
            cl,
            orig,
            exch,
            px,
            qty,
            stop,
            quote_qty,
            0,
            0,
            side,
            otype,
            tif,
            stp,
        )
    except (KeyError, ValueError, TypeError, struct.error):
        return False
    return True


def error_of(resp: WsApiResponse) -> ExchangeError | None:
    """The ExchangeError of a failed WS API response (None when it succeeded)."""
    if resp.error is None:
        return None
    retry_after = 0.0
    return exchange_error(resp.error.code, resp.error.msg, resp.status, retry_after)


def order_result(resp: WsApiResponse) -> OrderResponse | None:
    """The ``result`` of a successful ``order.place``/``order.cancel`` as OrderResponse."""
    if not resp.result:
        return None
    try:
        return _ORDER_RESPONSE.decode(resp.result)
    except _BAD:
        return None


def error_body(body: bytes | str) -> ErrorBody | None:
    """A REST error body ``{"code":..,"msg":..}``, or None."""
    try:
        return _ERROR_BODY.decode(body)
    except _BAD:
        return None
