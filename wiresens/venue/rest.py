"""REST endpoints of the venue (Starlette): ``/api/v3/...`` with Binance's auth and limits.

Signed endpoints read ``X-MBX-APIKEY`` and verify the signature over
``totalParams`` (query string then body, exactly as sent, minus ``signature``).
Every response carries ``X-MBX-USED-WEIGHT-1M``; order placement also
``X-MBX-ORDER-COUNT-10S`` and ``-1D``. Exceeding the weight answers 429 with
``Retry-After`` and code -1003.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from wiresens.binance.signing import rest_payload
from wiresens.errors import ConfigError, ExchangeError, RateLimitError
from wiresens.fixedpoint import from_fixed

from .accounts import Account
from .api import VenueApi, now_ms, order_view
from .faults import MALFORMED_FRAME, OrderFault, fault_error

__all__ = ["admin_routes", "routes"]

_encode = msgspec.json.Encoder().encode
Handler = Callable[[dict[str, str], Account | None, int], Any]


def _strip_signature(raw: str) -> str:
    if "signature=" not in raw:
        return raw
    return "&".join(p for p in raw.split("&") if not p.startswith("signature="))


def _json(body: Any, status: int, headers: dict[str, str]) -> Response:
    return Response(_encode(body), status, headers, media_type="application/json")


def _endpoint(
    api: VenueApi,
    weight: int | Callable[[dict[str, str]], int],
    signed: bool,
    fn: Handler,
    counts_order: bool = False,
    cancel: bool = False,
) -> Callable[[Request], Awaitable[Response]]:
    async def handle(request: Request) -> Response:
        faults = api.faults
        if faults is not None:
            await faults.wait_stall()
        t = now_ms()
        query = request.url.query
        body = (await request.body()).decode("utf-8", "replace")
        params = dict(parse_qsl(query, keep_blank_values=True))
        if body:
            params.update(parse_qsl(body, keep_blank_values=True))
        who = request.client.host if request.client else "?"
        w = weight(params) if callable(weight) else weight
        used, wait = api.limiter.add_weight(who, w, t)
        headers = {"X-MBX-USED-WEIGHT-1M": str(used)}
        if wait:
            headers["Retry-After"] = str(max(1, int(wait + 0.999)))
            return _json(
                {
                    "code": -1003,
                    "msg": f"Too much request weight used; current limit is {api.limiter.limits[0]} "
                    "request weight per 1 MINUTE. Please use WebSocket Streams for live updates "
                    "to avoid polling the API.",
                },
                429,
                headers,
            )
        account: Account | None = None
        try:
            if signed:
                key, account = api.key_of(request.headers.get("X-MBX-APIKEY"))
                payload = rest_payload(_strip_signature(query), _strip_signature(body))
                api.check_signed(key, params, payload, t)
            if faults is not None:
                fault = (
                    faults.on_new_order(params.get("newClientOrderId", ""))
                    if counts_order
                    else faults.on_request(cancel)
                )
                if fault is not None:
                    return await _faulty(api, fault, lambda: fn(params, account, t), headers)
            result = fn(params, account, t)
            status = 200
        except ExchangeError as exc:
            result, status = {"code": exc.code, "msg": exc.msg}, exc.status
            data = getattr(exc, "data", None)
            if data is not None:
                result["data"] = data
            if exc.status == 429:
                wait_s = exc.retry_after if isinstance(exc, RateLimitError) else 10.0
                headers["Retry-After"] = str(max(1, int(wait_s + 0.999)))
        if counts_order and account is not None:
            c10, c1d = api.limiter.order_counts(account.id, t)
            headers["X-MBX-ORDER-COUNT-10S"] = str(c10)
            headers["X-MBX-ORDER-COUNT-1D"] = str(c1d)
        return _json(result, status, headers)

    return handle


async def _faulty(
    api: VenueApi, fault: OrderFault, call: Callable[[], Any], headers: dict[str, str]
) -> Response:
    """Answer a request a fault hits (see :mod:`wiresens.venue.faults`)."""
    result: Any = None
    if fault.execute:
        result = api.run_faulty(fault.events, call)
    kind = fault.kind
    if kind == "malformed":
        return Response(MALFORMED_FRAME, 200, headers, media_type="application/json")
    if kind == "delay":
        await asyncio.sleep(fault.delay_s)
    elif kind == "drop_acks":
        await asyncio.sleep(fault.hold_s)
        result = fault_error(fault, api.limiter.limits[1])
    else:
        result = fault_error(fault, api.limiter.limits[1])
    if isinstance(result, ExchangeError):
        body: dict[str, Any] = {"code": result.code, "msg": result.msg}
        data = getattr(result, "data", None)
        if data is not None:
            body["data"] = data
        if result.status in (418, 429) and data is not None:
            wait_ms = int(data["retryAfter"]) - int(data["serverTime"])
            headers["Retry-After"] = str(max(1, (wait_ms + 999) // 1000))
        return _json(body, result.status, headers)
    return _json(result, 200, headers)


def _a(a: Account | None) -> Account:
    assert a is not None, "signed endpoints are authenticated before they run"
    return a


def routes(api: VenueApi) -> list[Route]:
    """The REST routes over ``api``."""
    E = _endpoint

    def open_orders_weight(p: dict[str, str]) -> int:
        return 6 if p.get("symbol") else 80

    return [
        Route("/api/v3/ping", E(api, 1, False, lambda p, a, t: {}), methods=["GET"]),
        Route("/api/v3/time", E(api, 1, False, lambda p, a, t: {"serverTime": t}), methods=["GET"]),
        Route(
            "/api/v3/exchangeInfo",
            E(api, 20, False, lambda p, a, t: api.exchange_info(t)),
            methods=["GET"],
        ),
        Route(
            "/api/v3/depth",
            E(api, api.depth_weight, False, lambda p, a, t: api.depth(p)),
            methods=["GET"],
        ),
        Route(
            "/api/v3/ticker/bookTicker",
            E(api, 2, False, lambda p, a, t: api.book_ticker(api.book_or_fail(p))),
            methods=["GET"],
        ),
        Route(
            "/api/v3/order",
            E(api, 1, True, lambda p, a, t: api.place(_a(a), p, t), counts_order=True),
            methods=["POST"],
        ),
        Route(
            "/api/v3/order/test",
            E(api, 1, True, lambda p, a, t: (api.order_request(p), {})[1]),
            methods=["POST"],
        ),
        Route(
            "/api/v3/order/cancelReplace",
            E(api, 1, True, lambda p, a, t: api.cancel_replace(_a(a), p, t), counts_order=True),
            methods=["POST"],
        ),
        Route(
            "/api/v3/order",
            E(api, 1, True, lambda p, a, t: api.cancel(_a(a), p, t), cancel=True),
            methods=["DELETE"],
        ),
        Route(
            "/api/v3/order", E(api, 4, True, lambda p, a, t: api.query(_a(a), p)), methods=["GET"]
        ),
        Route(
            "/api/v3/openOrders",
            E(api, open_orders_weight, True, lambda p, a, t: api.open_orders(_a(a), p)),
            methods=["GET"],
        ),
        Route(
            "/api/v3/openOrders",
            E(api, 1, True, lambda p, a, t: api.cancel_all(_a(a), p, t)),
            methods=["DELETE"],
        ),
        Route(
            "/api/v3/account",
            E(
                api,
                20,
                True,
                lambda p, a, t: api.account_info(_a(a), t, p.get("omitZeroBalances") == "true"),
            ),
            methods=["GET"],
        ),
        Route(
            "/api/v3/myTrades",
            E(api, 20, True, lambda p, a, t: api.my_trades(_a(a), p)),
            methods=["GET"],
        ),
    ]


def admin_routes(api: VenueApi, drop: Callable[[], int], garbage: Callable[[], int]) -> list[Route]:
    """The fault-injection admin API (``/_venue/...``; :mod:`wiresens.venue.faults`).

    ``drop`` closes every WebSocket connection, ``garbage`` sends each an unparseable
    frame; both return how many connections they hit.
    """
    faults = api.faults
    assert faults is not None, "admin routes exist only on a venue with faults enabled"

    async def arm(request: Request) -> Response:
        try:
            spec = msgspec.json.decode(await request.body())
            if not isinstance(spec, dict):
                raise ConfigError('a fault is a JSON object: {"fault": NAME, ...}')
            now = faults.arm(spec)
        except (msgspec.DecodeError, ConfigError, ValueError, TypeError) as exc:
            return _json({"error": str(exc)}, 400, {})
        if now == "drop":
            faults.dropped_connections += drop()
        elif now == "garbage":
            faults.injected["garbage"] = faults.injected.get("garbage", 0) + garbage()
        return _json(faults.state(), 200, {})

    async def state(request: Request) -> Response:
        return _json(faults.state(), 200, {})

    async def clear(request: Request) -> Response:
        faults.reset()
        return _json(faults.state(), 200, {})

    async def orders(request: Request) -> Response:
        rows = []
        for o in api.engine.orders.values():
            row = order_view(o)
            row["account"] = o.account.name
            rows.append(row)
        return _json(rows, 200, {})

    async def accounts(request: Request) -> Response:
        body = {
            a.name: {
                asset: {"free": from_fixed(b.free), "locked": from_fixed(b.locked)}
                for asset, b in sorted(a.balances.items())
            }
            for a in api.accounts.accounts
        }
        return _json(body, 200, {})

    return [
        Route("/_venue/faults", arm, methods=["POST"]),
        Route("/_venue/faults", state, methods=["GET"]),
        Route("/_venue/faults", clear, methods=["DELETE"]),
        Route("/_venue/orders", orders, methods=["GET"]),
        Route("/_venue/accounts", accounts, methods=["GET"]),
    ]
