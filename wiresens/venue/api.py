"""Request operations of the venue, shared by the REST API and the WebSocket API.

Each operation takes already-authenticated ``params`` (a dict of strings, as
Binance receives them) and returns the JSON-ready response body, or raises
:class:`~wiresens.errors.ExchangeError` with Binance's code and message; the
transport turns that into an HTTP status or a WebSocket API error frame.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from wiresens.binance.signing import verify_ed25519, verify_hmac
from wiresens.errors import ExchangeError, FixedPointError, RateLimitError
from wiresens.fixedpoint import from_fixed, to_fixed

from .accounts import Account, ApiKey, VenueAccounts
from .config import VenueConfig
from .faults import Faults
from .filters import exchange_info_symbol
from .matching import (
    FINAL,
    STP_MODES,
    BalanceEvent,
    Engine,
    ExecEvent,
    Order,
    OrderRequest,
    Reject,
)

__all__ = ["RateLimiter", "VenueApi", "now_ms"]

_DECIMAL_RANGE = "^([0-9]{1,20})(\\.[0-9]{1,20})?$"
_SIDES = ("BUY", "SELL")
_TYPES = ("LIMIT", "MARKET", "LIMIT_MAKER")
_TIFS = ("GTC", "IOC", "FOK")
_RESP_TYPES = ("ACK", "RESULT", "FULL")


def now_ms() -> int:
    """Wall-clock time in milliseconds."""
    return time.time_ns() // 1_000_000


def _mandatory(name: str) -> ExchangeError:
    return ExchangeError(
        -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
    )


def _decimal(params: dict[str, str], name: str) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return 0
    try:
        v = to_fixed(raw)
    except FixedPointError:
        raise ExchangeError(
            -1100,
            f"Illegal characters found in parameter '{name}'; legal range is '{_DECIMAL_RANGE}'.",
        ) from None
    if v < 0:
        raise ExchangeError(
            -1100,
            f"Illegal characters found in parameter '{name}'; legal range is '{_DECIMAL_RANGE}'.",
        )
    return v


def _int(params: dict[str, str], name: str, default: int = 0) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    if not raw.lstrip("-").isdigit():
        raise ExchangeError(
            -1100,
            f"Illegal characters found in parameter '{name}'; legal range is '^-?[0-9]{{1,20}}$'.",
        )
    return int(raw)


def _f(v: int) -> str:
    return from_fixed(v)


class CancelReplaceError(ExchangeError):
    """-2021/-2022 of cancelReplace: ``data`` holds both halves' outcomes, as Binance sends."""

    def __init__(self, code: int, msg: str, data: dict[str, Any]) -> None:
        super().__init__(code, msg)
        self.data = data


class RateLimiter:
    """Fixed-window counters: request weight per minute (per caller), orders per 10 s and per day (per account)."""

    def __init__(self, weight_per_minute: int, orders_per_10s: int, orders_per_day: int) -> None:
        self.limits = (weight_per_minute, orders_per_10s, orders_per_day)
        self._weight: dict[str, tuple[int, int]] = {}
        self._orders: dict[int, tuple[int, int, int, int]] = {}

    def add_weight(self, who: str, weight: int, t_ms: int) -> tuple[int, float]:
        """Count ``weight``; return (used in this minute, seconds to wait or 0 when allowed)."""
        minute = t_ms // 60_000
        win, used = self._weight.get(who, (minute, 0))
        if win != minute:
            used = 0
        used += weight
        self._weight[who] = (minute, used)
        if used > self.limits[0]:
            return used, (minute + 1) * 60.0 - t_ms / 1000.0
        return used, 0.0

    def used_weight(self, who: str, t_ms: int) -> int:
        win, used = self._weight.get(who, (0, 0))
        return used if win == t_ms // 60_000 else 0

    def add_order(self, account_id: int, t_ms: int) -> tuple[int, int, float]:
        """Count one new order; return (count in 10 s, count today, seconds to wait or 0)."""
        w10, day = t_ms // 10_000, t_ms // 86_400_000
        a, c10, b, c1d = self._orders.get(account_id, (w10, 0, day, 0))
        c10 = c10 + 1 if a == w10 else 1
        c1d = c1d + 1 if b == day else 1
        self._orders[account_id] = (w10, c10, day, c1d)
        if c10 > self.limits[1]:
            return c10, c1d, (w10 + 1) * 10.0 - t_ms / 1000.0
        if c1d > self.limits[2]:
            return c10, c1d, (day + 1) * 86_400.0 - t_ms / 1000.0
        return c10, c1d, 0.0

    def order_counts(self, account_id: int, t_ms: int) -> tuple[int, int]:
        a, c10, b, c1d = self._orders.get(account_id, (0, 0, 0, 0))
        return (c10 if a == t_ms // 10_000 else 0, c1d if b == t_ms // 86_400_000 else 0)

    def rate_limits(self, who: str, account_id: int | None, t_ms: int) -> list[dict[str, Any]]:
        """The ``rateLimits`` array of WebSocket API responses."""
        out: list[dict[str, Any]] = [
            {
                "rateLimitType": "REQUEST_WEIGHT",
                "interval": "MINUTE",
                "intervalNum": 1,
                "limit": self.limits[0],
                "count": self.used_weight(who, t_ms),
            }
        ]
        if account_id is not None:
            c10, c1d = self.order_counts(account_id, t_ms)
            out.append(
                {
                    "rateLimitType": "ORDERS",
                    "interval": "SECOND",
                    "intervalNum": 10,
                    "limit": self.limits[1],
                    "count": c10,
                }
            )
            out.append(
                {
                    "rateLimitType": "ORDERS",
                    "interval": "DAY",
                    "intervalNum": 1,
                    "limit": self.limits[2],
                    "count": c1d,
                }
            )
        return out


class VenueApi:
    """The operations of the venue over one engine and one set of accounts.

    ``publish`` is called after every operation that may have produced engine
    events, so the transports can push them to streams and user data.
    """

    def __init__(
        self,
        config: VenueConfig,
        engine: Engine,
        accounts: VenueAccounts,
        publish: Callable[[], None],
    ) -> None:
        self.config = config
        self.engine = engine
        self.accounts = accounts
        self.publish = publish
        self.limiter = RateLimiter(
            config.weight_per_minute, config.orders_per_10s, config.orders_per_day
        )
        self.faults: Faults | None = Faults() if config.faults else None
        self.mute_user_events = False
        """Set around a faulty request whose user-data events are withheld."""

    def run_faulty(self, events: bool, call: Callable[[], Any]) -> Any:
        """Run ``call`` (a request the fault lets execute), withholding its user-data events
        unless ``events``; returns its result or the ExchangeError it raised."""
        self.mute_user_events = not events
        try:
            return call()
        except ExchangeError as exc:
            return exc
        finally:
            self.mute_user_events = False

    # -- authentication ---------------------------------------------------------------------
    def key_of(self, api_key: str | None) -> tuple[ApiKey, Account]:
        """Look an API key up: -2014 when missing or malformed, -2015 when unknown."""
        if not api_key or len(api_key) > 256 or not api_key.isprintable():
            raise ExchangeError(-2014, "API-key format invalid.", 401)
        found = self.accounts.by_key(api_key)
        if found is None:
            raise ExchangeError(-2015, "Invalid API-key, IP, or permissions for action.", 401)
        return found

    def check_signed(
        self, key: ApiKey, params: dict[str, str], payload: str, t_ms: int, need_sig: bool = True
    ) -> None:
        """Check ``timestamp``/``recvWindow`` and the signature of ``payload``."""
        ts = params.get("timestamp")
        if not ts or not ts.isdigit():
            raise _mandatory("timestamp")
        window = _int(params, "recvWindow", 5000)
        if window > self.config.max_recv_window_ms or window <= 0:
            raise ExchangeError(-1131, "recvWindow must be less than 60000")
        t = int(ts)
        if t > t_ms + 1000:
            raise ExchangeError(
                -1021, "Timestamp for this request was 1000ms ahead of the server's time."
            )
        if t_ms - t > window:
            raise ExchangeError(-1021, "Timestamp for this request is outside of the recvWindow.")
        if not need_sig:
            return
        sig = params.get("signature")
        if not sig:
            raise _mandatory("signature")
        if not self.verify(key, payload, sig):
            raise ExchangeError(-1022, "Signature for this request is not valid.")

    @staticmethod
    def verify(key: ApiKey, payload: str, signature: str) -> bool:
        if key.type == "HMAC":
            return verify_hmac(key.secret, payload, signature)
        return verify_ed25519(key.public_key.encode(), payload, unquote(signature))

    # -- market data ------------------------------------------------------------------------
    def exchange_info(self, t_ms: int) -> dict[str, Any]:
        c = self.config
        return {
            "timezone": "UTC",
            "serverTime": t_ms,
            "rateLimits": [
                {
                    "rateLimitType": "REQUEST_WEIGHT",
                    "interval": "MINUTE",
                    "intervalNum": 1,
                    "limit": c.weight_per_minute,
                },
                {
                    "rateLimitType": "ORDERS",
                    "interval": "SECOND",
                    "intervalNum": 10,
                    "limit": c.orders_per_10s,
                },
                {
                    "rateLimitType": "ORDERS",
                    "interval": "DAY",
                    "intervalNum": 1,
                    "limit": c.orders_per_day,
                },
            ],
            "exchangeFilters": [],
            "symbols": [
                exchange_info_symbol(b.rules, list(STP_MODES), self.engine.default_stp)
                for b in self.engine.books.values()
            ],
        }

    def book_or_fail(self, params: dict[str, str]) -> str:
        sym = params.get("symbol")
        if not sym:
            raise _mandatory("symbol")
        if sym not in self.engine.books:
            raise ExchangeError(-1121, "Invalid symbol.")
        return sym

    def depth(self, params: dict[str, str]) -> dict[str, Any]:
        sym = self.book_or_fail(params)
        limit = min(max(_int(params, "limit", 100), 1), 5000)
        book = self.engine.books[sym]
        return {
            "lastUpdateId": book.update_id,
            "bids": [[_f(p), _f(q)] for p, q in book.levels(True, limit)],
            "asks": [[_f(p), _f(q)] for p, q in book.levels(False, limit)],
        }

    def book_ticker(self, sym: str) -> dict[str, Any]:
        book = self.engine.books[sym]
        b, a = book.bids.best(), book.asks.best()
        return {
            "symbol": sym,
            "bidPrice": _f(b),
            "bidQty": _f(book.level_qty(True, b) if b else 0),
            "askPrice": _f(a),
            "askQty": _f(book.level_qty(False, a) if a else 0),
        }

    @staticmethod
    def depth_weight(params: dict[str, str]) -> int:
        limit = int(params.get("limit") or 100) if (params.get("limit") or "1").isdigit() else 100
        return 5 if limit <= 100 else 25 if limit <= 500 else 50 if limit <= 1000 else 250

    # -- trading ----------------------------------------------------------------------------
    def order_request(self, params: dict[str, str]) -> OrderRequest:
        """Parse and validate the parameters of a new order."""
        sym = self.book_or_fail(params)
        side = params.get("side")
        if not side:
            raise _mandatory("side")
        if side not in _SIDES:
            raise ExchangeError(-1117, "Invalid side.")
        typ = params.get("type")
        if not typ:
            raise _mandatory("type")
        if typ not in _TYPES:
            raise ExchangeError(-1116, "Invalid orderType.")
        tif = params.get("timeInForce", "")
        qty = _decimal(params, "quantity")
        price = _decimal(params, "price")
        qqty = _decimal(params, "quoteOrderQty")
        if typ == "LIMIT":
            if not tif:
                raise _mandatory("timeInForce")
            if not price:
                raise _mandatory("price")
            if not qty:
                raise _mandatory("quantity")
        elif typ == "LIMIT_MAKER":
            if not price:
                raise _mandatory("price")
            if not qty:
                raise _mandatory("quantity")
        elif typ == "MARKET":
            if tif:
                raise ExchangeError(-1106, "Parameter 'timeInForce' sent when not required.")
            if price:
                raise ExchangeError(-1106, "Parameter 'price' sent when not required.")
            if not qty and not qqty:
                raise ExchangeError(
                    -1102,
                    "Param 'quantity' or 'quoteOrderQty' must be sent, but both were empty/null!",
                )
            if qty and qqty:
                raise ExchangeError(-1106, "Parameter 'quoteOrderQty' sent when not required.")
        if tif and tif not in _TIFS:
            raise ExchangeError(-1115, "Invalid timeInForce.")
        stp = params.get("selfTradePreventionMode", "")
        if stp and stp not in STP_MODES:
            raise ExchangeError(
                -1100,
                "Illegal characters found in parameter 'selfTradePreventionMode'; legal range is "
                f"'{', '.join(STP_MODES)}'.",
            )
        rt = params.get("newOrderRespType", "FULL")
        if rt not in _RESP_TYPES:
            raise ExchangeError(
                -1100,
                f"Illegal characters found in parameter 'newOrderRespType'; legal range is '{', '.join(_RESP_TYPES)}'.",
            )
        cid = params.get("newClientOrderId", "")
        if len(cid) > 36:
            raise ExchangeError(
                -1100,
                "Illegal characters found in parameter 'newClientOrderId'; legal range is '^[a-zA-Z0-9-_.]{1,36}$'.",
            )
        return OrderRequest(sym, side, typ, qty, price, tif or "GTC", qqty, cid, stp)

    def count_order(self, account: Account, t_ms: int) -> tuple[int, int]:
        c10, c1d, wait = self.limiter.add_order(account.id, t_ms)
        if wait:
            if c10 > self.limiter.limits[1]:
                raise RateLimitError(
                    -1015,
                    f"Too many new orders; current limit is {self.limiter.limits[1]} orders per 10 SECOND.",
                    429,
                    wait,
                )
            raise RateLimitError(
                -1015,
                f"Too many new orders; current limit is {self.limiter.limits[2]} orders per DAY.",
                429,
                wait,
            )
        return c10, c1d

    def place(self, account: Account, params: dict[str, str], t_ms: int) -> dict[str, Any]:
        req = self.order_request(params)
        self.count_order(account, t_ms)
        res = self.engine.place(account, req, t_ms)
        self.publish()
        if isinstance(res, Reject):
            raise ExchangeError(res.code, res.msg)
        return order_result(res, params.get("newOrderRespType", "FULL"), t_ms)

    def _find(self, account: Account, params: dict[str, str]) -> tuple[str, Order | None]:
        sym = self.book_or_fail(params)
        oid = _int(params, "orderId")
        cid = params.get("origClientOrderId", "")
        if not oid and not cid:
            raise ExchangeError(
                -1102,
                "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!",
            )
        o = self.engine.find(account, oid, cid)
        return sym, (o if o is not None and o.symbol == sym else None)

    def cancel(self, account: Account, params: dict[str, str], t_ms: int) -> dict[str, Any]:
        sym, o = self._find(account, params)
        if o is None:
            raise ExchangeError(-2011, "Unknown order sent.")
        new_cid = params.get("newClientOrderId") or f"cancel{o.order_id}"
        res = self.engine.cancel(account, sym, o.order_id, "", t_ms, new_cid)
        self.publish()
        if isinstance(res, Reject):
            raise ExchangeError(res.code, res.msg)
        return cancel_view(res, new_cid, t_ms)

    def cancel_all(
        self, account: Account, params: dict[str, str], t_ms: int
    ) -> list[dict[str, Any]]:
        sym = self.book_or_fail(params)
        out = []
        for o in self.engine.open_orders(account, sym):
            res = self.engine.cancel(account, sym, o.order_id, "", t_ms)
            if not isinstance(res, Reject):
                out.append(cancel_view(res, f"cancel{res.order_id}", t_ms))
        self.publish()
        return out

    def cancel_replace(self, account: Account, params: dict[str, str], t_ms: int) -> dict[str, Any]:
        mode = params.get("cancelReplaceMode")
        if not mode:
            raise _mandatory("cancelReplaceMode")
        if mode not in ("STOP_ON_FAILURE", "ALLOW_FAILURE"):
            raise ExchangeError(
                -1100,
                "Illegal characters found in parameter 'cancelReplaceMode'; legal range is 'STOP_ON_FAILURE, ALLOW_FAILURE'.",
            )
        cparams = {
            "symbol": params.get("symbol", ""),
            "orderId": params.get("cancelOrderId", ""),
            "origClientOrderId": params.get("cancelOrigClientOrderId", ""),
        }
        if params.get("cancelNewClientOrderId"):
            cparams["newClientOrderId"] = params["cancelNewClientOrderId"]
        req = self.order_request(params)
        cancel: dict[str, Any] | None = None
        cerr: ExchangeError | None = None
        try:
            cancel = self.cancel(account, cparams, t_ms)
        except ExchangeError as exc:
            cerr = exc
        if cerr is not None and mode == "STOP_ON_FAILURE":
            raise ExchangeError(-2022, "Order cancel-replace failed.")
        new: dict[str, Any] | None = None
        nerr: ExchangeError | None = None
        try:
            self.count_order(account, t_ms)
            res = self.engine.place(account, req, t_ms)
            self.publish()
            if isinstance(res, Reject):
                nerr = ExchangeError(res.code, res.msg)
            else:
                new = order_result(res, params.get("newOrderRespType", "FULL"), t_ms)
        except ExchangeError as exc:
            nerr = exc
        body = {
            "cancelResult": "SUCCESS" if cerr is None else "FAILURE",
            "newOrderResult": "SUCCESS"
            if nerr is None
            else ("NOT_ATTEMPTED" if cerr and mode == "STOP_ON_FAILURE" else "FAILURE"),
            "cancelResponse": cancel if cerr is None else {"code": cerr.code, "msg": cerr.msg},
            "newOrderResponse": new if nerr is None else {"code": nerr.code, "msg": nerr.msg},
        }
        if cerr is None and nerr is None:
            return body
        code, msg = (
            (-2022, "Order cancel-replace failed.")
            if (cerr and nerr)
            else (-2021, "Order cancel-replace partially failed.")
        )
        raise CancelReplaceError(code, msg, body)

    def query(self, account: Account, params: dict[str, str]) -> dict[str, Any]:
        _, o = self._find(account, params)
        if o is None:
            raise ExchangeError(-2013, "Order does not exist.")
        return order_view(o)

    def open_orders(self, account: Account, params: dict[str, str]) -> list[dict[str, Any]]:
        sym = params.get("symbol")
        if sym:
            self.book_or_fail(params)
        return [order_view(o) for o in self.engine.open_orders(account, sym or None)]

    def account_info(self, account: Account, t_ms: int, omit_zero: bool = False) -> dict[str, Any]:
        m, t = account.maker_bps, account.taker_bps
        balances = [
            {"asset": a, "free": _f(b.free), "locked": _f(b.locked)}
            for a, b in sorted(account.balances.items())
            if not (omit_zero and b.free == 0 and b.locked == 0)
        ]
        return {
            "makerCommission": m,
            "takerCommission": t,
            "buyerCommission": 0,
            "sellerCommission": 0,
            "commissionRates": {
                "maker": _f(m * 10_000),
                "taker": _f(t * 10_000),
                "buyer": _f(0),
                "seller": _f(0),
            },
            "canTrade": True,
            "canWithdraw": False,
            "canDeposit": False,
            "brokered": False,
            "requireSelfTradePrevention": False,
            "preventSor": False,
            "updateTime": t_ms,
            "accountType": "SPOT",
            "balances": balances,
            "permissions": ["SPOT"],
            "uid": account.uid,
        }

    def my_trades(self, account: Account, params: dict[str, str]) -> list[dict[str, Any]]:
        sym = self.book_or_fail(params)
        limit = min(max(_int(params, "limit", 500), 1), 1000)
        oid = _int(params, "orderId")
        rows = [
            (o, f)
            for o, f in self.engine.trades.get(account.id, [])
            if o.symbol == sym and (not oid or o.order_id == oid)
        ]
        return [
            {
                "symbol": o.symbol,
                "id": f.trade_id,
                "orderId": o.order_id,
                "orderListId": -1,
                "price": _f(f.price),
                "qty": _f(f.qty),
                "quoteQty": _f(f.price * f.qty // 100_000_000),
                "commission": _f(f.commission),
                "commissionAsset": f.commission_asset,
                "time": o.update_ms,
                "isBuyer": o.is_buy,
                "isMaker": f.is_maker,
                "isBestMatch": True,
            }
            for o, f in rows[-limit:]
        ]


def _base(o: Order) -> dict[str, Any]:
    return {
        "symbol": o.symbol,
        "orderId": o.order_id,
        "orderListId": -1,
        "clientOrderId": o.client_order_id,
    }


def order_result(o: Order, resp_type: str, t_ms: int) -> dict[str, Any]:
    """The response of a new order (ACK, RESULT or FULL)."""
    d = _base(o)
    d["transactTime"] = t_ms
    if resp_type == "ACK":
        return d
    d.update(
        price=_f(o.price),
        origQty=_f(o.orig_qty),
        executedQty=_f(o.executed_qty),
        origQuoteOrderQty=_f(o.quote_order_qty),
        cummulativeQuoteQty=_f(o.cum_quote),
        status=o.status,
        timeInForce=o.time_in_force,
        type=o.type,
        side=o.side,
        workingTime=o.time_ms,
        selfTradePreventionMode=o.stp_mode,
    )
    if resp_type == "FULL":
        d["fills"] = [
            {
                "price": _f(f.price),
                "qty": _f(f.qty),
                "commission": _f(f.commission),
                "commissionAsset": f.commission_asset,
                "tradeId": f.trade_id,
            }
            for f in o.fills
        ]
    return d


def order_view(o: Order) -> dict[str, Any]:
    """``GET /api/v3/order`` shape."""
    d = _base(o)
    d.update(
        price=_f(o.price),
        origQty=_f(o.orig_qty),
        executedQty=_f(o.executed_qty),
        cummulativeQuoteQty=_f(o.cum_quote),
        status=o.status,
        timeInForce=o.time_in_force,
        type=o.type,
        side=o.side,
        stopPrice=_f(0),
        icebergQty=_f(0),
        time=o.time_ms,
        updateTime=o.update_ms,
        isWorking=o.status not in FINAL,
        workingTime=o.time_ms,
        origQuoteOrderQty=_f(o.quote_order_qty),
        selfTradePreventionMode=o.stp_mode,
    )
    return d


def cancel_view(o: Order, new_cid: str, t_ms: int) -> dict[str, Any]:
    """``DELETE /api/v3/order`` shape."""
    return {
        "symbol": o.symbol,
        "origClientOrderId": o.client_order_id,
        "orderId": o.order_id,
        "orderListId": -1,
        "clientOrderId": new_cid,
        "transactTime": t_ms,
        "price": _f(o.price),
        "origQty": _f(o.orig_qty),
        "executedQty": _f(o.executed_qty),
        "origQuoteOrderQty": _f(o.quote_order_qty),
        "cummulativeQuoteQty": _f(o.cum_quote),
        "status": o.status,
        "timeInForce": o.time_in_force,
        "type": o.type,
        "side": o.side,
        "selfTradePreventionMode": o.stp_mode,
    }


def execution_report(ev: ExecEvent) -> dict[str, Any]:
    """The user-data ``executionReport`` of one engine event."""
    o, f = ev.order, ev.fill
    return {
        "e": "executionReport",
        "E": ev.ts_ms,
        "s": o.symbol,
        "c": ev.cancel_client_order_id or o.client_order_id,
        "S": o.side,
        "o": o.type,
        "f": o.time_in_force,
        "q": _f(o.orig_qty if o.orig_qty < (1 << 62) else 0),
        "p": _f(o.price),
        "P": _f(0),
        "F": _f(0),
        "g": -1,
        "C": o.client_order_id if ev.cancel_client_order_id else "",
        "x": ev.exec_type,
        "X": ev.status,
        "r": "NONE",
        "i": o.order_id,
        "l": _f(f.qty if f else 0),
        "z": _f(ev.executed_qty),
        "L": _f(f.price if f else 0),
        "n": _f(f.commission if f else 0),
        "N": f.commission_asset if f else None,
        "T": ev.ts_ms,
        "t": f.trade_id if f else -1,
        "I": 0,
        "w": ev.status in ("NEW", "PARTIALLY_FILLED") and o.type != "MARKET",
        "m": f.is_maker if f else False,
        "M": False,
        "O": o.time_ms,
        "Z": _f(ev.cum_quote),
        "Y": _f(f.price * f.qty // 100_000_000 if f else 0),
        "Q": _f(o.quote_order_qty),
        "W": o.time_ms,
        "V": o.stp_mode,
    }


def account_position(ev: BalanceEvent) -> dict[str, Any]:
    """The user-data ``outboundAccountPosition`` of one balance change."""
    acc = ev.account
    return {
        "e": "outboundAccountPosition",
        "E": ev.ts_ms,
        "u": ev.ts_ms,
        "B": [
            {"a": a, "f": _f(acc.balances[a].free), "l": _f(acc.balances[a].locked)}
            for a in ev.assets
        ],
    }
