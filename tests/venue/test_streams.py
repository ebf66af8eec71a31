"""Fidelity: market streams (raw, combined, SUBSCRIBE), diff-depth sync, keep-alive."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from typing import Any

import requests
from websockets.asyncio.client import connect

from wiresens.venue import RunningVenue

from .conftest import BOB_KEY, BOB_SECRET
from .pybinance import sync_client


async def _recv(ws: Any, timeout: float = 5.0) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))  # type: ignore[no-any-return]


def _apply(book: dict[str, dict[str, str]], ev: dict[str, Any]) -> None:
    for key, side in (("b", "bids"), ("a", "asks")):
        for p, q in ev[key]:
            if float(q) == 0:
                book[side].pop(p, None)
            else:
                book[side][p] = q


def test_combined_stream_depth_sync_and_continuity(venue: RunningVenue) -> None:
    """Binance's documented local-book procedure works against the venue's diff events."""

    async def run() -> None:
        url = f"{venue.ws_url}/stream?streams=btcusdt@depth@100ms/btcusdt@trade/btcusdt@bookTicker"
        async with connect(url) as ws:
            events: list[dict[str, Any]] = []
            kinds: set[str] = set()
            while len(events) < 3:
                msg = await _recv(ws)
                kinds.add(msg["stream"])
                if msg["stream"] == "btcusdt@depth@100ms":
                    events.append(msg["data"])
            snap = await asyncio.to_thread(
                requests.get,
                venue.base_url + "/api/v3/depth",
                params={"symbol": "BTCUSDT", "limit": 1000},
                timeout=5,
            )
            s = snap.json()
            book = {"bids": {p: q for p, q in s["bids"]}, "asks": {p: q for p, q in s["asks"]}}
            last = s["lastUpdateId"]
            synced = False
            prev_u = events[0]["u"]
            for ev in events[1:]:
                assert ev["U"] == prev_u + 1
                prev_u = ev["u"]
            deadline = time.monotonic() + 10
            applied = 0
            while applied < 10 and time.monotonic() < deadline:
                if not events:
                    msg = await _recv(ws)
                    kinds.add(msg["stream"])
                    if msg["stream"] != "btcusdt@depth@100ms":
                        if msg["stream"] == "btcusdt@bookTicker" and synced:
                            bt = msg["data"]
                            # bookTicker is sent after the engine changed; our book may lag one diff.
                            assert float(bt["b"]) < float(bt["a"])
                        continue
                    ev = msg["data"]
                    assert ev["U"] == prev_u + 1, "diff events must be contiguous"
                    prev_u = ev["u"]
                    events.append(ev)
                ev = events.pop(0)
                if ev["u"] <= last:
                    continue
                if not synced:
                    assert ev["U"] <= last + 1 <= ev["u"]
                    synced = True
                _apply(book, ev)
                applied += 1
                best_bid = max(float(p) for p in book["bids"])
                best_ask = min(float(p) for p in book["asks"])
                assert best_bid < best_ask
            assert applied >= 10
            assert kinds == {"btcusdt@depth@100ms", "btcusdt@trade", "btcusdt@bookTicker"}

    asyncio.run(run())


def test_quiet_book_rebuilt_exactly_from_snapshot_and_diffs(quiet_venue: RunningVenue) -> None:
    """With only user orders moving it, the streamed book equals the REST book exactly."""

    async def run() -> None:
        async with connect(f"{quiet_venue.ws_url}/ws/btcusdt@depth@100ms") as ws:
            c = sync_client(quiet_venue.base_url, BOB_KEY, BOB_SECRET)
            s0 = await asyncio.to_thread(c.get_order_book, symbol="BTCUSDT", limit=1000)
            book = {"bids": dict(s0["bids"]), "asks": dict(s0["asks"])}
            orders = [
                ("BUY", "59990", "0.1"),
                ("BUY", "59991", "0.2"),
                ("SELL", "60010", "0.3"),
                ("SELL", "60010", "0.1"),
                ("BUY", "59990", "0.05"),
            ]
            ids = []
            for side, price, qty in orders:
                o = await asyncio.to_thread(
                    c.create_order,
                    symbol="BTCUSDT",
                    side=side,
                    type="LIMIT",
                    timeInForce="GTC",
                    quantity=qty,
                    price=price,
                )
                ids.append(o["orderId"])
            await asyncio.to_thread(c.cancel_order, symbol="BTCUSDT", orderId=ids[1])
            await asyncio.to_thread(
                c.create_order,
                symbol="BTCUSDT",
                side="BUY",
                type="LIMIT",
                timeInForce="IOC",
                quantity="0.15",
                price="60010",
                selfTradePreventionMode="NONE",
            )
            await asyncio.sleep(0.3)
            s1 = await asyncio.to_thread(c.get_order_book, symbol="BTCUSDT", limit=1000)
            u = s0["lastUpdateId"]
            while u < s1["lastUpdateId"]:
                ev = await _recv(ws)
                assert ev["e"] == "depthUpdate" and ev["U"] == u + 1
                u = ev["u"]
                _apply(book, ev)
            assert u == s1["lastUpdateId"]
            assert sorted(book["bids"].items()) == sorted(map(tuple, s1["bids"]))
            assert sorted(book["asks"].items()) == sorted(map(tuple, s1["asks"]))
            assert s1["asks"] == [["60010.00000000", "0.25000000"]]

    asyncio.run(run())


def test_raw_streams_and_subscribe_method(venue: RunningVenue) -> None:
    async def run() -> None:
        async with connect(f"{venue.ws_url}/ws/btcusdt@trade") as ws:
            t = await _recv(ws)
            assert (
                t["e"] == "trade" and t["s"] == "BTCUSDT" and {"p", "q", "t", "m", "T"} <= t.keys()
            )
            await ws.send(
                json.dumps({"method": "SUBSCRIBE", "params": ["ethusdt@aggTrade"], "id": 7})
            )
            await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 8}))
            seen: dict[Any, Any] = {}
            agg = None
            deadline = time.monotonic() + 10
            while (8 not in seen or agg is None) and time.monotonic() < deadline:
                m = await _recv(ws)
                if "id" in m:
                    seen[m["id"]] = m
                elif m.get("e") == "aggTrade":
                    agg = m
            assert seen[7] == {"result": None, "id": 7}
            assert seen[8] == {"result": ["btcusdt@trade", "ethusdt@aggTrade"], "id": 8}
            assert agg is not None and agg["s"] == "ETHUSDT"
            await ws.send(json.dumps({"method": "SUBSCRIBE", "params": ["nosuch@trade"], "id": 9}))
            while True:
                m = await _recv(ws)
                if m.get("id") == 9:
                    assert "error" in m
                    break

    asyncio.run(run())


def test_client_that_never_pongs_is_dropped(venue: RunningVenue) -> None:
    """The venue pings (every 0.3 s here, 20 s by default) and closes a silent client."""
    s = socket.create_connection(("127.0.0.1", venue.port), timeout=5)
    try:
        s.sendall(
            b"GET /ws/btcusdt@bookTicker HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )
        s.settimeout(10)
        got = b""
        saw_ping = False
        start = time.monotonic()
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
            saw_ping = saw_ping or b"\x89" in got  # FIN + opcode 9 (ping)
        assert got.startswith(b"HTTP/1.1 101")
        assert saw_ping
        assert time.monotonic() - start < 8
    finally:
        s.close()
