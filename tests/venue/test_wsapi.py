"""Fidelity: the WebSocket API (python-binance's ws_* calls and user data, and raw frames)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from websockets.asyncio.client import connect

from wiresens.binance.signing import Ed25519Signer, HmacSigner, ws_payload
from wiresens.venue import RunningVenue

from .conftest import ED_KEY, HMAC_KEY, HMAC_SECRET, Keys
from .pybinance import AsyncClient, BinanceAPIException, BinanceSocketManager

# python-binance drives the legacy websockets client; its deprecation warnings are the library's.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def venue_client_class(v: RunningVenue) -> type[AsyncClient]:
    """python-binance's URL attributes pointed at the venue (as one does for the testnet)."""
    return type(
        "VenueAsyncClient",
        (AsyncClient,),
        {"API_URL": v.base_url + "/api", "WS_API_URL": v.ws_url + "/ws-api/v3"},
    )


async def _recv(ws: Any, timeout: float = 5.0) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))  # type: ignore[no-any-return]


def test_python_binance_ws_api_orders_and_user_data(venue: RunningVenue) -> None:
    async def run() -> None:
        client = await venue_client_class(venue).create(HMAC_KEY, HMAC_SECRET)
        # The library's read loop notices a close only after TIMEOUT s without a message.
        client.ws_api.TIMEOUT = 0.5
        try:
            bm = BinanceSocketManager(client)
            async with bm.user_socket() as us:
                o = await client.ws_create_order(
                    symbol="BTCUSDT",
                    side="BUY",
                    type="LIMIT",
                    timeInForce="GTC",
                    quantity="0.001",
                    price="50000",
                )
                assert o["status"] == "NEW"
                got = await client.ws_get_order(symbol="BTCUSDT", orderId=o["orderId"])
                assert got["orderId"] == o["orderId"]
                open_ = await client.ws_get_open_orders(symbol="BTCUSDT")
                assert o["orderId"] in [x["orderId"] for x in open_]
                c = await client.ws_cancel_order(symbol="BTCUSDT", orderId=o["orderId"])
                assert c["status"] == "CANCELED"
                acct = await client.ws_get_account()
                assert acct["accountType"] == "SPOT"
                events: list[dict[str, Any]] = []
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    ev = await asyncio.wait_for(us.recv(), 5)
                    events.append(ev)
                    if ev.get("e") == "executionReport" and ev["x"] == "CANCELED":
                        break
                reports = [
                    (e["x"], e["X"], e["i"], e["c"], e["C"])
                    for e in events
                    if e["e"] == "executionReport"
                ]
                cid = o["clientOrderId"]
                assert reports == [
                    ("NEW", "NEW", o["orderId"], cid, ""),
                    ("CANCELED", "CANCELED", o["orderId"], c["clientOrderId"], cid),
                ]
                positions = [e for e in events if e["e"] == "outboundAccountPosition"]
                assert positions and positions[0]["B"][0]["a"] == "USDT"
                with pytest.raises(BinanceAPIException) as exc:
                    await client.ws_cancel_order(symbol="BTCUSDT", orderId=o["orderId"])
                assert exc.value.code == -2011
        finally:
            await client.close_connection()

    asyncio.run(run())


def test_session_logon_ed25519_and_user_data_subscribe(venue: RunningVenue, keys: Keys) -> None:
    signer = Ed25519Signer(keys.ed_private_pem.encode())

    async def run() -> None:
        async with connect(f"{venue.ws_url}/ws-api/v3") as ws:
            params: dict[str, Any] = {"apiKey": ED_KEY, "timestamp": int(time.time() * 1000)}
            params["signature"] = signer.sign(ws_payload(params))
            await ws.send(json.dumps({"id": "logon", "method": "session.logon", "params": params}))
            r = await _recv(ws)
            assert r["status"] == 200 and r["result"]["apiKey"] == ED_KEY
            assert r["rateLimits"][0]["rateLimitType"] == "REQUEST_WEIGHT"
            await ws.send(json.dumps({"id": "sub", "method": "userDataStream.subscribe"}))
            sub = await _recv(ws)
            sid = sub["result"]["subscriptionId"]
            place = {
                "symbol": "BTCUSDT",
                "side": "SELL",
                "type": "MARKET",
                "quantity": "0.001",
                "timestamp": int(time.time() * 1000),
            }
            await ws.send(json.dumps({"id": 1, "method": "order.place", "params": place}))
            frames: list[dict[str, Any]] = []
            while not any(f.get("id") == 1 for f in frames) or len(frames) < 4:
                frames.append(await _recv(ws))
            resp = next(f for f in frames if f.get("id") == 1)
            assert resp["status"] == 200 and resp["result"]["status"] == "FILLED"
            assert {x["rateLimitType"] for x in resp["rateLimits"]} == {"REQUEST_WEIGHT", "ORDERS"}
            events = [f["event"] for f in frames if f.get("subscriptionId") == sid]
            assert [e["x"] for e in events if e["e"] == "executionReport"][:2] == ["NEW", "TRADE"]
            # Unsigned request with a stale timestamp, still on the session: -1021.
            stale = {"timestamp": int(time.time() * 1000) - 600_000}
            await ws.send(json.dumps({"id": 2, "method": "account.status", "params": stale}))
            while (f := await _recv(ws)).get("id") != 2:
                pass
            assert f["status"] == 400 and f["error"]["code"] == -1021

    asyncio.run(run())


def test_signed_ws_request_errors(venue: RunningVenue) -> None:
    async def run() -> None:
        async with connect(f"{venue.ws_url}/ws-api/v3") as ws:
            p: dict[str, Any] = {"apiKey": HMAC_KEY, "timestamp": int(time.time() * 1000)}
            p["signature"] = HmacSigner("not-the-secret").sign(ws_payload(p))
            await ws.send(json.dumps({"id": 1, "method": "account.status", "params": p}))
            r = await _recv(ws)
            assert r["error"] == {"code": -1022, "msg": "Signature for this request is not valid."}
            p = {"apiKey": HMAC_KEY, "timestamp": int(time.time() * 1000)}
            p["signature"] = HmacSigner(HMAC_SECRET).sign(ws_payload(p))
            await ws.send(json.dumps({"id": 2, "method": "session.logon", "params": p}))
            r = await _recv(ws)
            assert r["status"] == 400  # session.logon takes Ed25519 keys only
            p = {
                "apiKey": HMAC_KEY,
                "timestamp": int(time.time() * 1000),
                "symbol": "BTCUSDT",
                "side": "BUY",
                "type": "LIMIT",
                "timeInForce": "GTC",
                "quantity": "0.001",
                "price": "50000.005",
            }
            p["signature"] = HmacSigner(HMAC_SECRET).sign(ws_payload(p))
            await ws.send(json.dumps({"id": 3, "method": "order.place", "params": p}))
            r = await _recv(ws)
            assert r["error"] == {"code": -1013, "msg": "Filter failure: PRICE_FILTER"}

    asyncio.run(run())


def test_python_binance_socket_manager_streams(venue: RunningVenue) -> None:
    async def run() -> None:
        client = await venue_client_class(venue).create(HMAC_KEY, HMAC_SECRET)
        try:
            bm = BinanceSocketManager(client)
            bm.STREAM_URL = venue.ws_url + "/"  # the library's stream base URL attribute
            ts = bm.multiplex_socket(["btcusdt@trade", "btcusdt@depth@100ms"])
            ts.TIMEOUT = 0.5  # see above: lets the read loop notice the close quickly
            async with ts as s:
                seen: set[str] = set()
                deadline = time.monotonic() + 10
                while len(seen) < 2 and time.monotonic() < deadline:
                    msg = await asyncio.wait_for(s.recv(), 5)
                    seen.add(msg["stream"])
                    assert msg["data"]["s"] == "BTCUSDT"
                assert seen == {"btcusdt@trade", "btcusdt@depth@100ms"}
        finally:
            await client.close_connection()

    asyncio.run(run())
