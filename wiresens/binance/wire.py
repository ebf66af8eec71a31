"""Binance wire types: msgspec Structs with Binance's own field names.

Every message Wiresens reads from or writes to Binance (spot and USD-M futures
market streams, REST bodies, the WebSocket API and user-data events) has a
Struct here. Field names are Binance's (``E`` event time, ``u`` final update id,
``pu`` previous final update id ...), so a Struct reads like the documentation.

Rules shared by all of them:

- prices and quantities stay ``str``: the codec converts them exactly to fixed
  point (``wiresens.fixedpoint``), never through float;
- unknown fields are ignored (Binance adds fields without notice), fields that
  only one market or one API version carries have defaults (spot ``trade`` lost
  ``b``/``a`` on 2024-06-18; USD-M adds ``T``, ``pu``, ``X``);
- market-data Structs are frozen and ``gc=False`` (they hold no cycles).

A combined stream frame ``{"stream": "btcusdt@depth@100ms", "data": {...}}``
is read as :class:`StreamEnvelope` whose ``data`` stays raw; :func:`stream_type`
then names the Struct for the stream, and the decoders in :data:`DECODERS`
finish the job without a second parse of the envelope.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec
from msgspec import Raw, Struct

__all__ = [
    "DECODERS",
    "OPEN_ORDERS_DECODER",
    "USER_EVENTS",
    "USER_EVENT_DECODER",
    "AccountBalance",
    "AccountInfo",
    "AccountPositionBalance",
    "AggTrade",
    "BalanceUpdate",
    "BookTicker",
    "CancelReplaceResponse",
    "DepthSnapshot",
    "DepthUpdate",
    "ErrorBody",
    "ExchangeFilter",
    "ExchangeInfo",
    "ExecutionReport",
    "Fill",
    "FuturesDepthSnapshot",
    "FuturesDepthUpdate",
    "Kline",
    "KlineEvent",
    "MarkPriceUpdate",
    "Market",
    "OrderResponse",
    "OutboundAccountPosition",
    "PriceLevel",
    "RateLimit",
    "RateLimitUsage",
    "SessionStatus",
    "StreamEnvelope",
    "SubscribeResult",
    "SymbolInfo",
    "Trade",
    "UserDataEnvelope",
    "UserEvent",
    "WsApiError",
    "WsApiRequest",
    "WsApiResponse",
    "stream_type",
]

PriceLevel = tuple[str, str]
"""One ``[price, quantity]`` pair of a depth message."""


# --------------------------------------------------------------------------- market streams


class DepthUpdate(Struct, frozen=True, gc=False):
    """Spot diff depth (``<symbol>@depth`` / ``@depth@100ms``), event ``depthUpdate``.

    ``U`` is the first and ``u`` the final update id in the event; ``b``/``a`` are
    the changed bid/ask levels (quantity ``"0"`` removes a level).
    """

    E: int
    s: str
    U: int
    u: int
    b: tuple[PriceLevel, ...]
    a: tuple[PriceLevel, ...]
    e: str = "depthUpdate"


class FuturesDepthUpdate(DepthUpdate, frozen=True, gc=False, kw_only=True):
    """USD-M diff depth: adds transaction time ``T`` and ``pu``, the previous event's ``u``.

    Both are required (keyword-only when built by hand): a missing ``pu`` would
    silently defeat the futures continuity check.
    """

    T: int
    pu: int


class DepthSnapshot(Struct, frozen=True, gc=False):
    """REST ``GET /api/v3/depth`` body (also the legacy ``/api/v1/depth``)."""

    lastUpdateId: int
    bids: tuple[PriceLevel, ...]
    asks: tuple[PriceLevel, ...]


class FuturesDepthSnapshot(DepthSnapshot, frozen=True, gc=False):
    """REST ``GET /fapi/v1/depth`` body: adds message time ``E`` and transaction time ``T``."""

    E: int = 0
    T: int = 0


class BookTicker(Struct, frozen=True, gc=False):
    """Best bid/ask (``<symbol>@bookTicker``): ``u`` update id, ``b``/``B`` bid price/qty,
    ``a``/``A`` ask price/qty. Spot carries no event time (``E`` = 0); USD-M adds ``e``,
    ``E`` and ``T``."""

    u: int
    s: str
    b: str
    B: str
    a: str
    A: str
    e: str = "bookTicker"
    E: int = 0
    T: int = 0


class Trade(Struct, frozen=True, gc=False):
    """A raw trade (``<symbol>@trade``): ``t`` trade id, ``T`` trade time, ``m`` buyer is maker.

    Spot carried buyer/seller order ids ``b``/``a`` until 2024-06-18 (``None`` after);
    ``M`` is spot only (ignore it), ``X`` is USD-M's order type (``MARKET``, ``LIQUIDATION``...).
    """

    E: int
    s: str
    t: int
    p: str
    q: str
    T: int
    m: bool
    e: str = "trade"
    M: bool = True
    b: int | None = None
    a: int | None = None
    X: str = ""


class AggTrade(Struct, frozen=True, gc=False):
    """An aggregate trade (``<symbol>@aggTrade``): ``a`` aggregate id covering trade ids ``f..l``."""

    E: int
    s: str
    a: int
    p: str
    q: str
    f: int
    l: int  # noqa: E741 - Binance's name
    T: int
    m: bool
    e: str = "aggTrade"
    M: bool = True


class Kline(Struct, frozen=True, gc=False):
    """The candle inside a ``kline`` event (open/close time, OHLC, volume, closed flag ``x``)."""

    t: int
    T: int
    s: str
    i: str
    o: str
    c: str
    h: str
    l: str  # noqa: E741 - Binance's name
    v: str
    n: int
    x: bool
    q: str = "0"
    f: int = -1
    L: int = -1


class KlineEvent(Struct, frozen=True, gc=False):
    """``<symbol>@kline_<interval>`` event."""

    E: int
    s: str
    k: Kline
    e: str = "kline"


class MarkPriceUpdate(Struct, frozen=True, gc=False):
    """USD-M ``<symbol>@markPrice`` event: mark ``p``, index ``i``, funding rate ``r``,
    next funding time ``T``."""

    E: int
    s: str
    p: str
    r: str
    T: int
    i: str = "0"
    P: str = "0"
    e: str = "markPriceUpdate"


class StreamEnvelope(Struct, frozen=True, gc=False):
    """Combined-stream frame ``{"stream": "<name>", "data": {...}}``; ``data`` is left raw."""

    stream: str
    data: Raw


_SPOT_STREAMS: dict[str, type[Struct]] = {
    "depth": DepthUpdate,
    "bookTicker": BookTicker,
    "trade": Trade,
    "aggTrade": AggTrade,
    "kline": KlineEvent,
}
_FUTURES_STREAMS: dict[str, type[Struct]] = {
    **_SPOT_STREAMS,
    "depth": FuturesDepthUpdate,
    "markPrice": MarkPriceUpdate,
}


def stream_type(stream: str, futures: bool = False) -> type[Struct] | None:
    """The Struct of a stream name (``btcusdt@depth@100ms`` -> DepthUpdate), None if unknown.

    The kind is the part after the first ``@`` up to the next ``@`` or ``_``
    (``kline_1m`` -> ``kline``, ``depth20@100ms`` -> partial book, not handled).
    """
    _, _, rest = stream.partition("@")
    kind = rest.partition("@")[0].partition("_")[0]
    return (_FUTURES_STREAMS if futures else _SPOT_STREAMS).get(kind)


# --------------------------------------------------------------------------- REST


class RateLimit(Struct, frozen=True):
    """One entry of exchangeInfo ``rateLimits`` (and of WebSocket API ``rateLimits``,
    which adds ``count``, the usage so far)."""

    rateLimitType: str
    interval: str
    intervalNum: int
    limit: int
    count: int | None = None


RateLimitUsage = RateLimit
"""WS API responses report usage with the same shape (``count`` filled in)."""


class ExchangeFilter(Struct, frozen=True):
    """A symbol or exchange filter, tolerant of every ``filterType``.

    Binance adds filter types over time (NOTIONAL replaced MIN_NOTIONAL in 2023,
    TRAILING_DELTA, MAX_NUM_ORDER_AMENDS ...), so one Struct with every field
    optional reads them all; a tagged union would reject the next new type.
    USD-M spells ``minNotional`` as ``notional`` and ``maxNumOrders`` as ``limit``.
    """

    filterType: str
    minPrice: str | None = None
    maxPrice: str | None = None
    tickSize: str | None = None
    minQty: str | None = None
    maxQty: str | None = None
    stepSize: str | None = None
    minNotional: str | None = None
    maxNotional: str | None = None
    notional: str | None = None
    applyToMarket: bool | None = None
    applyMinToMarket: bool | None = None
    applyMaxToMarket: bool | None = None
    avgPriceMins: int | None = None
    multiplierUp: str | None = None
    multiplierDown: str | None = None
    multiplierDecimal: str | int | None = None
    bidMultiplierUp: str | None = None
    bidMultiplierDown: str | None = None
    askMultiplierUp: str | None = None
    askMultiplierDown: str | None = None
    limit: int | None = None
    maxNumOrders: int | None = None
    maxNumAlgoOrders: int | None = None
    maxNumIcebergOrders: int | None = None
    maxPosition: str | None = None


class SymbolInfo(Struct, frozen=True):
    """One ``symbols`` entry of exchangeInfo (spot or USD-M; fields of the other ignored)."""

    symbol: str
    status: str
    baseAsset: str
    quoteAsset: str
    filters: tuple[ExchangeFilter, ...] = ()
    orderTypes: tuple[str, ...] = ()
    baseAssetPrecision: int = 8
    quotePrecision: int = 8
    quoteAssetPrecision: int = 8
    permissions: tuple[str, ...] = ()
    # USD-M only
    contractType: str = ""
    pricePrecision: int = 8
    quantityPrecision: int = 8
    marginAsset: str = ""
    timeInForce: tuple[str, ...] = ()


class ExchangeInfo(Struct, frozen=True):
    """``GET /api/v3/exchangeInfo`` or ``GET /fapi/v1/exchangeInfo`` body."""

    serverTime: int
    symbols: tuple[SymbolInfo, ...]
    rateLimits: tuple[RateLimit, ...] = ()
    exchangeFilters: tuple[ExchangeFilter, ...] = ()
    timezone: str = "UTC"
    futuresType: str = ""


class ErrorBody(Struct, frozen=True):
    """An error response ``{"code": -1121, "msg": "Invalid symbol."}``."""

    code: int
    msg: str


class Fill(Struct, frozen=True):
    """One fill of a FULL order response."""

    price: str
    qty: str
    commission: str
    commissionAsset: str
    tradeId: int = -1


class OrderResponse(Struct, frozen=True):
    """``POST /api/v3/order`` (and WS ``order.place``) result, any ``newOrderRespType``.

    ACK carries only the ids and ``transactTime``; RESULT adds prices, quantities
    and status; FULL adds ``fills``. Also the shape of ``order.cancel``,
    ``openOrders`` entries and ``GET /api/v3/order`` (``time``/``updateTime``).
    """

    symbol: str
    orderId: int
    clientOrderId: str = ""
    orderListId: int = -1
    transactTime: int = 0
    origClientOrderId: str = ""
    price: str = "0"
    origQty: str = "0"
    executedQty: str = "0"
    cummulativeQuoteQty: str = "0"
    status: str = ""
    timeInForce: str = ""
    type: str = ""
    side: str = ""
    stopPrice: str = "0"
    icebergQty: str = "0"
    time: int = 0
    updateTime: int = 0
    isWorking: bool = True
    workingTime: int = 0
    origQuoteOrderQty: str = "0"
    selfTradePreventionMode: str = ""
    fills: tuple[Fill, ...] = ()


class CancelReplaceResponse(Struct, frozen=True, omit_defaults=True):
    """``order.cancelReplace`` / ``POST /api/v3/order/cancelReplace`` result.

    On partial failure Binance answers an error whose ``data`` has this shape. Each
    response stays raw: decode it as :class:`OrderResponse` when its result is
    ``SUCCESS`` and as :class:`ErrorBody` when ``FAILURE`` (``NOT_ATTEMPTED``: absent,
    an empty Raw).
    """

    cancelResult: str
    newOrderResult: str
    cancelResponse: Raw = Raw()
    newOrderResponse: Raw = Raw()


class AccountBalance(Struct, frozen=True):
    """One ``balances`` entry of ``GET /api/v3/account``."""

    asset: str
    free: str
    locked: str


class AccountInfo(Struct, frozen=True):
    """``GET /api/v3/account`` / WS ``account.status`` body (fields Wiresens reads)."""

    balances: tuple[AccountBalance, ...]
    canTrade: bool = True
    canWithdraw: bool = True
    canDeposit: bool = True
    updateTime: int = 0
    accountType: str = "SPOT"
    permissions: tuple[str, ...] = ()
    uid: int = 0


# --------------------------------------------------------------------------- WebSocket API


class WsApiRequest(Struct, frozen=True, omit_defaults=True):
    """A WebSocket API request ``{"id": ..., "method": "order.place", "params": {...}}``.

    Request ids are strings or integers chosen by the client and echoed back.
    """

    id: str | int
    method: str
    params: dict[str, Any] = {}


class WsApiError(Struct, frozen=True, omit_defaults=True):
    """The ``error`` member of a failed WS API response (``data`` on cancelReplace)."""

    code: int
    msg: str
    data: Raw = Raw()


class WsApiResponse(Struct, frozen=True, omit_defaults=True):
    """A WebSocket API response: ``status`` is the HTTP-like status (200 OK, 4xx/5xx).

    ``result`` stays raw so the caller decodes it with the Struct of the method it
    sent (:class:`OrderResponse` for ``order.place``...); it is an empty Raw (falsy)
    when absent (msgspec cannot put Raw in a union with None). ``id`` is None when
    the server could not read the request's id.
    """

    status: int
    id: str | int | None = None
    result: Raw = Raw()
    error: WsApiError | None = None
    rateLimits: tuple[RateLimit, ...] = ()


class SessionStatus(Struct, frozen=True):
    """Result of ``session.logon`` / ``session.status`` / ``session.logout``."""

    connectedSince: int
    serverTime: int
    apiKey: str | None = None
    authorizedSince: int | None = None
    returnRateLimits: bool = True
    userDataStream: bool = False


class SubscribeResult(Struct, frozen=True):
    """Result of ``userDataStream.subscribe``: events arrive tagged with this id."""

    subscriptionId: int = 0


# --------------------------------------------------------------------------- user data


class ExecutionReport(Struct, frozen=True, gc=False, tag_field="e", tag="executionReport"):
    """User-data ``executionReport``: an order changed (new, trade, canceled, ...).

    ``c`` client order id, ``C`` original client order id (cancels), ``S`` side,
    ``o`` type, ``f`` time in force, ``q``/``p``/``P`` qty/price/stop price,
    ``x`` execution type, ``X`` order status, ``r`` reject reason, ``i`` order id,
    ``l``/``L`` last fill qty/price, ``z`` cumulative qty, ``Z`` cumulative quote,
    ``n``/``N`` commission and its asset, ``T`` transaction time, ``t`` trade id (-1).
    """

    E: int
    s: str
    c: str
    S: str
    o: str
    f: str
    q: str
    p: str
    x: str
    X: str
    i: int
    l: str  # noqa: E741 - Binance's name
    z: str
    L: str
    T: int
    t: int = -1
    P: str = "0"
    F: str = "0"
    g: int = -1
    C: str | None = None
    r: str = "NONE"
    n: str | None = None
    N: str | None = None
    Z: str = "0"
    Y: str = "0"
    Q: str = "0"
    w: bool = False
    m: bool = False
    O: int = 0  # noqa: E741 - Binance's name
    W: int = 0
    V: str = ""


class AccountPositionBalance(Struct, frozen=True, gc=False):
    """One ``B`` entry of ``outboundAccountPosition``: asset ``a``, free ``f``, locked ``l``."""

    a: str
    f: str
    l: str  # noqa: E741 - Binance's name


class OutboundAccountPosition(
    Struct, frozen=True, gc=False, tag_field="e", tag="outboundAccountPosition"
):
    """User-data ``outboundAccountPosition``: balances that changed (``u`` last update time)."""

    E: int
    u: int
    B: tuple[AccountPositionBalance, ...]


class BalanceUpdate(Struct, frozen=True, gc=False, tag_field="e", tag="balanceUpdate"):
    """User-data ``balanceUpdate``: deposit/withdrawal/transfer ``d`` of asset ``a``."""

    E: int
    a: str
    d: str
    T: int


UserEvent = ExecutionReport | OutboundAccountPosition | BalanceUpdate
"""User-data events, a union tagged by ``e`` (decode in one pass; an unknown ``e`` fails)."""


class UserDataEnvelope(Struct, frozen=True, gc=False):
    """WS API subscription frame ``{"subscriptionId": 0, "event": {...}}``; ``event`` raw."""

    event: Raw
    subscriptionId: int = -1


class _EventTag(Struct, gc=False):
    """Reads only ``e`` to dispatch an event without decoding the rest twice."""

    e: str = ""


DECODERS: dict[type[Any], msgspec.json.Decoder[Any]] = {
    t: msgspec.json.Decoder(t)
    for t in (
        DepthUpdate,
        FuturesDepthUpdate,
        DepthSnapshot,
        FuturesDepthSnapshot,
        BookTicker,
        Trade,
        AggTrade,
        KlineEvent,
        MarkPriceUpdate,
        StreamEnvelope,
        ExchangeInfo,
        ErrorBody,
        OrderResponse,
        CancelReplaceResponse,
        AccountInfo,
        WsApiResponse,
        ExecutionReport,
        OutboundAccountPosition,
        BalanceUpdate,
        UserDataEnvelope,
        _EventTag,
    )
}
"""One reusable ``msgspec.json.Decoder`` per Struct (building one per message is slow)."""

OPEN_ORDERS_DECODER: msgspec.json.Decoder[tuple[OrderResponse, ...]] = msgspec.json.Decoder(
    tuple[OrderResponse, ...]
)
"""``GET /api/v3/openOrders`` / WS ``openOrders.status`` result: a list of orders."""

USER_EVENT_DECODER: msgspec.json.Decoder[UserEvent] = msgspec.json.Decoder(UserEvent)
"""Decodes any :data:`UserEvent` in one pass, dispatching on ``e``."""

USER_EVENTS: dict[str, type[Struct]] = {
    "executionReport": ExecutionReport,
    "outboundAccountPosition": OutboundAccountPosition,
    "balanceUpdate": BalanceUpdate,
}
"""User-data event name (``e``) -> Struct."""

Market = Literal["spot", "usdm"]
