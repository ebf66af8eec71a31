"""The node's own decoders (wiresens.binance.wire, instruments) read everything the venue sends."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import msgspec
import requests
from websockets.asyncio.client import connect

from wiresens.binance import wire
from wiresens.binance.signing import Ed25519Signer, ws_payload
from wiresens.instruments import InstrumentTable
from wiresens.venue import RunningVenue
from wiresens.venue.filters import DEFAULT_SYMBOLS

from .conftest import ED_KEY, Keys


def _decode(t: type[Any], raw: bytes | str) -> Any:
    return wire.DECODERS[t].decode(raw)


def test_exchange_info_round_trips_to_the_same_instruments(venue: RunningVenue) -> None:
    body = requests.get(venue.base_url + "/api/v3/exchangeInfo", timeout=5).content
    table = InstrumentTable.from_exchange_info(body)
    for sym in ("BTCUSDT", "ETHUSDT"):
        got, want = table[sym], DEFAULT_SYMBOLS[sym]
        for field in (
            "tick_size",
            "min_price",
            "max_price",
            "step_size",
            "min_qty",
            "max_qty",
            "min_notional",
            "max_notional",
            "min_notional_market",
        ):
            assert getattr(got, field) == getattr(want, field), (sym, field)
    snap = _decode(
        wire.DepthSnapshot,
        requests.get(
            venue.base_url + "/api/v3/depth", params={"symbol": "BTCUSDT"}, timeout=5
        ).content,
    )
    assert snap.lastUpdateId > 0 and snap.bids and snap.asks


def test_streams_and_ws_api_decode_with_wire_structs(venue: RunningVenue, keys: Keys) -> None:
    signer = Ed25519Signer(keys.ed_private_pem.encode())

    async def run() -> None:
        streams = "btcusdt@depth@100ms/btcusdt@trade/btcusdt@aggTrade/btcusdt@bookTicker"
        async with connect(f"{venue.ws_url}/stream?streams={streams}") as ws:
            seen: set[str] = set()
            deadline = time.monotonic() + 10
            while len(seen) < 4 and time.monotonic() < deadline:
                raw = await asyncio.wait_for(ws.recv(), 5)
                env = _decode(wire.StreamEnvelope, raw)
                t = wire.stream_type(env.stream)
                assert t is not None, env.stream
                msgspec.json.decode(env.data, type=t)
                seen.add(env.stream)
            assert len(seen) == 4
        async with connect(f"{venue.ws_url}/ws-api/v3") as ws:
            p: dict[str, Any] = {"apiKey": ED_KEY, "timestamp": int(time.time() * 1000)}
            p["signature"] = signer.sign(ws_payload(p))
            await ws.send(json.dumps({"id": "a", "method": "session.logon", "params": p}))
            r = _decode(wire.WsApiResponse, await ws.recv())
            assert r.status == 200 and r.rateLimits
            msgspec.json.decode(r.result, type=wire.SessionStatus)
            await ws.send(json.dumps({"id": "b", "method": "userDataStream.subscribe"}))
            r = _decode(wire.WsApiResponse, await ws.recv())
            sub = msgspec.json.decode(r.result, type=wire.SubscribeResult)
            await ws.send(json.dumps({"id": "c", "method": "userDataStream.subscribe"}))
            r = _decode(wire.WsApiResponse, await ws.recv())
            assert r.error is not None and r.error.code == -2035
            order = {
                "symbol": "BTCUSDT",
                "side": "BUY",
                "type": "MARKET",
                "quantity": "0.001",
                "newClientOrderId": "wsn42",
                "timestamp": int(time.time() * 1000),
            }
            await ws.send(json.dumps({"id": "d", "method": "order.place", "params": order}))
            events: list[Any] = []
            resp = None
            while resp is None or len(events) < 3:
                raw = await asyncio.wait_for(ws.recv(), 5)
                if "event" in json.loads(raw):
                    env = _decode(wire.UserDataEnvelope, raw)
                    assert env.subscriptionId == sub.subscriptionId
                    events.append(wire.USER_EVENT_DECODER.decode(env.event))
                else:
                    resp = _decode(wire.WsApiResponse, raw)
            o = msgspec.json.decode(resp.result, type=wire.OrderResponse)
            assert o.clientOrderId == "wsn42" and o.status == "FILLED"
            kinds = [type(e).__name__ for e in events]
            assert "ExecutionReport" in kinds and "OutboundAccountPosition" in kinds
            await ws.send(
                json.dumps(
                    {
                        "id": "e",
                        "method": "account.status",
                        "params": {"timestamp": int(time.time() * 1000)},
                    }
                )
            )
            while (r := _decode(wire.WsApiResponse, await ws.recv())).id != "e":
                pass
            msgspec.json.decode(r.result, type=wire.AccountInfo)

    asyncio.run(run())
