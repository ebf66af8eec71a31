"""The WebSocket API of the venue (``/ws-api/v3``) and user data delivery.

Requests are ``{"id", "method", "params"}``; responses carry ``status``,
``result`` or ``error`` and ``rateLimits`` like Binance's. A request is signed
by its own ``apiKey``/``timestamp``/``signature`` params (payload: params but
``signature``, sorted, unencoded: :func:`wiresens.binance.signing.ws_payload`),
or rides on a session authenticated with ``session.logon`` (Ed25519 keys only).
``userDataStream.subscribe`` (logged-on session) and
``userDataStream.subscribe.signature`` deliver ``executionReport`` and
``outboundAccountPosition`` events as ``{"subscriptionId", "event"}``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import msgspec

from wiresens.binance.signing import ws_payload
from wiresens.errors import ExchangeError, RateLimitError

from .accounts import Account, ApiKey
from .api import VenueApi, account_position, execution_report, now_ms
from .faults import MALFORMED_FRAME, OrderFault, fault_error
from .matching import BalanceEvent, ExecEvent
from .streams import Client

__all__ = ["UserHub", "WsApiSession"]

_encode = msgspec.json.Encoder().encode

_WEIGHTS = {
    "ping": 1,
    "time": 1,
    "exchangeInfo": 20,
    "depth": 5,
    "ticker.book": 2,
    "session.logon": 2,
    "session.status": 2,
    "session.logout": 2,
    "order.place": 1,
    "order.cancel": 1,
    "order.cancelReplace": 1,
    "order.status": 4,
    "openOrders.status": 6,
    "openOrders.cancelAll": 1,
    "account.status": 20,
    "myTrades": 20,
    "userDataStream.subscribe": 2,
    "userDataStream.subscribe.signature": 2,
    "userDataStream.unsubscribe": 2,
}
_NEW_ORDER = frozenset(("order.place", "order.cancelReplace"))
# Session setup is never hit by a fault: a fault test needs the session it breaks.
_SETUP = frozenset(("userDataStream.subscribe.signature", "userDataStream.unsubscribe"))
_SIGNED = frozenset(
    (
        "order.place",
        "order.cancel",
        "order.cancelReplace",
        "order.status",
        "openOrders.status",
        "openOrders.cancelAll",
        "account.status",
        "myTrades",
        "userDataStream.subscribe.signature",
    )
)


class UserHub:
    """Which WebSocket API sessions receive which account's user data."""

    def __init__(self) -> None:
        self._subs: dict[int, dict[int, Client]] = {}  # account id -> subscription id -> client
        self._next = 0

    def subscribe(self, account: Account, client: Client) -> int:
        sid = self._next
        self._next += 1
        self._subs.setdefault(account.id, {})[sid] = client
        return sid

    def unsubscribe(self, sid: int | None, client: Client) -> list[int]:
        gone = []
        for subs in self._subs.values():
            for k, c in list(subs.items()):
                if c is client and (sid is None or k == sid):
                    del subs[k]
                    gone.append(k)
        return gone

    def on_event(self, ev: ExecEvent | BalanceEvent) -> None:
        acc = ev.order.account if isinstance(ev, ExecEvent) else ev.account
        subs = self._subs.get(acc.id)
        if not subs:
            return
        body = execution_report(ev) if isinstance(ev, ExecEvent) else account_position(ev)
        for sid, c in subs.items():
            c.send(_encode({"subscriptionId": sid, "event": body}).decode())


def _params(raw: Any) -> dict[str, str]:
    if not isinstance(raw, dict):
        return {}
    out: dict[str, str] = {}
    for k, v in raw.items():
        if isinstance(v, bool):
            out[k] = "true" if v else "false"
        elif isinstance(v, str):
            out[k] = v
        else:
            out[k] = str(v)
    return out


class WsApiSession:
    """State of one WebSocket API connection; :meth:`handle` answers one text frame."""

    def __init__(self, api: VenueApi, users: UserHub, client: Client, peer: str) -> None:
        self.api = api
        self.users = users
        self.client = client
        self.peer = peer
        self.session: tuple[ApiKey, Account] | None = None
        self.session_sub: int | None = None
        self._methods: dict[str, Callable[[dict[str, str], Account | None, int], Any]] = {
            "ping": lambda p, a, t: {},
            "time": lambda p, a, t: {"serverTime": t},
            "exchangeInfo": lambda p, a, t: self.api.exchange_info(t),
            "depth": lambda p, a, t: self.api.depth(p),
            "ticker.book": lambda p, a, t: self.api.book_ticker(self.api.book_or_fail(p)),
            "session.status": self._session_status,
            "session.logout": self._logout,
            "order.place": lambda p, a, t: self.api.place(_acc(a), p, t),
            "order.cancel": lambda p, a, t: self.api.cancel(_acc(a), p, t),
            "order.cancelReplace": lambda p, a, t: self.api.cancel_replace(_acc(a), p, t),
            "order.status": lambda p, a, t: self.api.query(_acc(a), p),
            "openOrders.status": lambda p, a, t: self.api.open_orders(_acc(a), p),
            "openOrders.cancelAll": lambda p, a, t: self.api.cancel_all(_acc(a), p, t),
            "account.status": lambda p, a, t: self.api.account_info(
                _acc(a), t, p.get("omitZeroBalances") == "true"
            ),
            "myTrades": lambda p, a, t: self.api.my_trades(_acc(a), p),
            "userDataStream.subscribe.signature": self._subscribe,
            "userDataStream.unsubscribe": self._unsubscribe,
        }

    def close(self) -> None:
        self.users.unsubscribe(None, self.client)

    def handle(self, text: str) -> str | None:
        """The response frame to one request frame (None: no response now, a fault)."""
        t = now_ms()
        try:
            req = msgspec.json.decode(text)
        except msgspec.DecodeError:
            return self._error(None, ExchangeError(-1135, "Invalid JSON Request"), t, None)
        if not isinstance(req, dict):
            return self._error(None, ExchangeError(-1135, "Invalid JSON Request"), t, None)
        rid = req.get("id")
        method = req.get("method")
        params = _params(req.get("params"))
        account: Account | None = None
        weight = _WEIGHTS.get(method, 1) if isinstance(method, str) else 1
        _, wait = self.api.limiter.add_weight(self.peer, weight, t)
        try:
            if wait:
                raise RateLimitError(
                    -1003,
                    f"Too much request weight used; current limit is {self.api.limiter.limits[0]} "
                    "request weight per 1 MINUTE. Please use WebSocket Streams for live updates "
                    "to avoid polling the API.",
                    429,
                    wait,
                )
            if not isinstance(method, str):
                raise ExchangeError(
                    -1102,
                    "Mandatory parameter 'method' was not sent, was empty/null, or malformed.",
                )
            if method == "session.logon":
                return self._ok(rid, self._logon(params, t), t, None)
            if method == "userDataStream.subscribe":
                if self.session is None:
                    raise ExchangeError(
                        -2015, "Invalid API-key, IP, or permissions for action.", 401
                    )
                account = self.session[1]
                if self.session_sub is not None:
                    raise ExchangeError(-2035, "User Data Stream subscription already active.")
                self.session_sub = self.users.subscribe(account, self.client)
                return self._ok(rid, {"subscriptionId": self.session_sub}, t, account)
            fn = self._methods.get(method)
            if fn is None:
                raise ExchangeError(-1020, "This operation is not supported.")
            if method in _SIGNED:
                account = self._authenticate(params, t)
            faults = self.api.faults
            if faults is not None and method not in _SETUP:
                fault = (
                    faults.on_new_order(params.get("newClientOrderId", ""))
                    if method in _NEW_ORDER
                    else faults.on_request(method == "order.cancel")
                )
                if fault is not None:
                    acc = account
                    return self._faulty(rid, fault, lambda: fn(params, acc, t), t, account)
            return self._ok(rid, fn(params, account, t), t, account)
        except ExchangeError as exc:
            return self._error(rid, exc, t, account)

    # -- auth -------------------------------------------------------------------------------
    def _authenticate(self, params: dict[str, str], t: int) -> Account:
        if "signature" in params or self.session is None:
            key, account = self.api.key_of(params.get("apiKey"))
            self.api.check_signed(key, params, ws_payload(params), t)
            return account
        key, account = self.session
        self.api.check_signed(key, params, "", t, need_sig=False)
        return account

    def _logon(self, params: dict[str, str], t: int) -> dict[str, Any]:
        key, account = self.api.key_of(params.get("apiKey"))
        if key.type != "ED25519":
            raise ExchangeError(-4056, "HMAC_SHA256 API key is not supported.")
        self.api.check_signed(key, params, ws_payload(params), t)
        self.session = (key, account)
        return self._session_status(params, account, t)

    def _session_status(self, p: dict[str, str], a: Account | None, t: int) -> dict[str, Any]:
        return {
            "apiKey": self.session[0].api_key if self.session else None,
            "authorizedSince": t if self.session else None,
            "connectedSince": t,
            "returnRateLimits": True,
            "serverTime": t,
            "userDataStream": self.session_sub is not None,
        }

    def _logout(self, p: dict[str, str], a: Account | None, t: int) -> dict[str, Any]:
        self.session = None
        if self.session_sub is not None:
            self.users.unsubscribe(self.session_sub, self.client)
            self.session_sub = None
        return self._session_status(p, a, t)

    def _subscribe(self, p: dict[str, str], a: Account | None, t: int) -> dict[str, Any]:
        return {"subscriptionId": self.users.subscribe(_acc(a), self.client)}

    def _unsubscribe(self, p: dict[str, str], a: Account | None, t: int) -> dict[str, Any]:
        sid = p.get("subscriptionId")
        gone = self.users.unsubscribe(int(sid) if sid and sid.isdigit() else None, self.client)
        if self.session_sub in gone:
            self.session_sub = None
        return {}

    def _faulty(
        self, rid: Any, fault: OrderFault, call: Callable[[], Any], t: int, account: Account | None
    ) -> str | None:
        """Answer a request a fault hits (see :mod:`wiresens.venue.faults`)."""
        result: Any = None
        if fault.execute:
            result = self.api.run_faulty(fault.events, call)
        kind = fault.kind
        if kind == "drop_acks":
            return None
        if kind == "malformed":
            return MALFORMED_FRAME.replace('"id":0', f'"id":{_encode(rid).decode()}', 1)
        if kind == "delay":
            text = (
                self._error(rid, result, t, account)
                if isinstance(result, ExchangeError)
                else self._ok(rid, result, t, account)
            )
            asyncio.get_running_loop().call_later(fault.delay_s, self.client.send, text)
            return None
        return self._error(rid, fault_error(fault, self.api.limiter.limits[1]), t, account)

    # -- frames -----------------------------------------------------------------------------
    def _limits(self, account: Account | None, t: int) -> list[dict[str, Any]]:
        return self.api.limiter.rate_limits(self.peer, account.id if account else None, t)

    def _ok(self, rid: Any, result: Any, t: int, account: Account | None) -> str:
        return _encode(
            {"id": rid, "status": 200, "result": result, "rateLimits": self._limits(account, t)}
        ).decode()

    def _error(self, rid: Any, exc: ExchangeError, t: int, account: Account | None) -> str:
        err: dict[str, Any] = {"code": exc.code, "msg": exc.msg}
        data = getattr(exc, "data", None)
        if data is None and isinstance(exc, RateLimitError):
            # As Binance: when to retry, epoch ms (the client must not send before).
            data = {"serverTime": t, "retryAfter": t + int(exc.retry_after * 1000 + 0.999)}
        if data is not None:
            err["data"] = data
        return _encode(
            {"id": rid, "status": exc.status, "error": err, "rateLimits": self._limits(account, t)}
        ).decode()


def _acc(a: Account | None) -> Account:
    assert a is not None, "signed methods are authenticated before they run"
    return a
