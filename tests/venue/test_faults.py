"""The venue's fault hooks, armed through the admin API while it serves (raw frames)."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from wiresens.binance.signing import HmacSigner, ws_payload
from wiresens.venue import RunningVenue
from wiresens.venue.faults import FaultClient

from .conftest import HMAC_KEY, HMAC_SECRET, Keys, run_venue

_sign = HmacSigner(HMAC_SECRET).sign
_ids = itertools.count(1)


@pytest.fixture
def fv(keys: Keys) -> Iterator[RunningVenue]:
    """A venue with faults enabled and no market liquidity (orders rest where placed)."""
    v = run_venue(keys, market="none", symbols=("BTCUSDT",), faults=True)
    yield v
    v.stop()


def _order_params(cid: str, price: str = "50000") -> dict[str, Any]:
    return {
        "symbol": "BTCUSDT",
        "side": "BUY",
        "type": "LIMIT",
        "timeInForce": "GTC",
        "quantity": "0.001",
        "price": price,
        "newClientOrderId": cid,
        "newOrderRespType": "RESULT",
    }


def _signed(params: dict[str, Any]) -> dict[str, Any]:
    p = {**params, "apiKey": HMAC_KEY, "timestamp": int(time.time() * 1000)}
    p["signature"] = _sign(ws_payload(p))
    return p


def _rest_order(v: RunningVenue, cid: str) -> tuple[int, Any, Any]:
    q = {**_order_params(cid), "timestamp": int(time.time() * 1000)}
    body = urlencode(q)
    body += "&signature=" + _sign(body)
    req = urllib.request.Request(
        v.base_url + "/api/v3/order",
        data=body.encode(),
        method="POST",
        headers={"X-MBX-APIKEY": HMAC_KEY},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, e.headers, e.read()


class Session:
    """A WebSocket API connection subscribed to its account's user data."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.events: list[dict[str, Any]] = []
        self.responses: dict[Any, Any] = {}
        self.arrivals: list[Any] = []  # ("event", client order id) or ("response", id)

    @classmethod
    async def open(cls, v: RunningVenue) -> Session:
        s = cls(await connect(v.ws_url + "/ws-api/v3"))
        await s.request("userDataStream.subscribe.signature", _signed({}))
        return s

    async def send(self, method: str, params: dict[str, Any]) -> int:
        rid = next(_ids)
        await self.ws.send(json.dumps({"id": rid, "method": method, "params": params}))
        return rid

    async def pump(self, seconds: float) -> list[str]:
        """Read frames for ``seconds``; returns those that are not JSON."""
        bad = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                text = await asyncio.wait_for(self.ws.recv(), left)
            except TimeoutError:
                break
            try:
                msg = json.loads(text)
            except ValueError:
                bad.append(text)
                continue
            if "event" in msg:
                self.events.append(msg["event"])
                self.arrivals.append(("event", msg["event"].get("c")))
            else:
                self.responses[msg["id"]] = msg
                self.arrivals.append(("response", msg["id"]))
        return bad

    async def request(self, method: str, params: dict[str, Any]) -> Any:
        rid = await self.send(method, params)
        deadline = time.monotonic() + 15
        while rid not in self.responses and time.monotonic() < deadline:
            await self.pump(0.05)
        return self.responses.pop(rid)

    async def place(self, cid: str) -> int:
        return await self.send("order.place", _signed(_order_params(cid)))


def _venue_order(fc: FaultClient, cid: str) -> dict[str, Any] | None:
    return next((o for o in fc.orders() if o["clientOrderId"] == cid), None)


async def _placed(fc: FaultClient, cid: str) -> dict[str, Any]:
    """The venue's order ``cid``, once it has placed it (it reads the frame when it can)."""
    deadline = time.monotonic() + 10
    while (o := _venue_order(fc, cid)) is None:
        assert time.monotonic() < deadline, f"the venue never placed {cid}"
        await asyncio.sleep(0.02)
    return o


def test_faults_are_off_unless_enabled(keys: Keys) -> None:
    v = run_venue(keys, market="none", symbols=("BTCUSDT",))
    try:
        with pytest.raises(urllib.error.HTTPError) as exc:
            FaultClient(v.base_url).state()
        exc.value.close()
        assert exc.value.code == 404
    finally:
        v.stop()


def test_bad_fault_names_the_problem(fv: RunningVenue) -> None:
    fc = FaultClient(fv.base_url)
    with pytest.raises(urllib.error.HTTPError) as exc:
        fc.arm("melt")
    with exc.value as e:
        assert e.code == 400 and "unknown fault 'melt'" in e.read().decode()
    with pytest.raises(urllib.error.HTTPError) as exc:
        fc.arm("reject", m=2)
    with exc.value as e:
        assert "has no parameter 'm'" in e.read().decode()


def test_rest_reject_error_storm_and_ban(fv: RunningVenue) -> None:
    fc = FaultClient(fv.base_url)
    fc.reject(1)
    status, _, body = _rest_order(fv, "r1")
    assert status == 400 and json.loads(body)["code"] == -2010
    assert _venue_order(fc, "r1") is None

    fc.error(1, execute=True)
    status, _, body = _rest_order(fv, "e1")
    assert status == 500 and json.loads(body)["code"] == -1000
    placed = _venue_order(fc, "e1")
    assert placed is not None and placed["status"] == "NEW"  # executed: the outcome was unknown

    fc.storm(1, retry_after_s=2.0, grace_s=0.0, ban_s=3.0)
    status, headers, body = _rest_order(fv, "s1")
    assert status == 429 and json.loads(body)["code"] == -1015
    assert headers["Retry-After"] == "2"
    # Not backing off: banned.
    status, headers, body = _rest_order(fv, "s2")
    assert status == 418 and json.loads(body)["code"] == -1003
    state = fc.state()
    assert (state["answered_429"], state["answered_418"], state["violations"]) == (1, 1, 1)
    assert state["new_orders"] == {"r1": 1, "e1": 1, "s1": 1, "s2": 1}
    fc.clear()
    assert fc.state()["armed"]["banned_s"] == 0


def test_ws_api_order_faults(fv: RunningVenue) -> None:
    fc = FaultClient(fv.base_url)

    async def run() -> None:
        s = await Session.open(fv)
        try:
            # drop_acks without events: placed, but nothing at all comes back.
            fc.drop_acks(1, events=False)
            rid = await s.place("d1")
            d1 = await _placed(fc, "d1")
            assert d1["status"] == "NEW"
            assert await s.pump(0.3) == []
            assert rid not in s.responses and s.events == []

            # malformed with events: the order's events arrive, its response does not parse.
            fc.malformed(1, events=True)
            rid = await s.place("m1")
            bad: list[str] = []
            deadline = time.monotonic() + 10
            while not (bad and s.events) and time.monotonic() < deadline:
                bad += await s.pump(0.05)
            assert len(bad) == 1 and str(rid) in bad[0]
            assert [(e["c"], e["X"]) for e in s.events if e["e"] == "executionReport"] == [
                ("m1", "NEW")
            ]

            # delay: the order is placed (its event comes) before its response, 300 ms later.
            fc.delay(300, 1)
            t0 = time.monotonic()
            rid = await s.place("y1")
            while rid not in s.responses:
                await s.pump(0.02)
            assert time.monotonic() - t0 >= 0.3
            assert s.responses[rid]["result"]["status"] == "NEW"
            assert s.arrivals.index(("event", "y1")) < s.arrivals.index(("response", rid))

            # internal error, not executed; then a storm answered with retryAfter.
            fc.error(1)
            resp = await s.request("order.place", _signed(_order_params("e1")))
            assert resp["status"] == 500 and resp["error"]["code"] == -1000
            assert _venue_order(fc, "e1") is None
            fc.storm(1, retry_after_s=1.0)
            resp = await s.request("order.place", _signed(_order_params("s1")))
            assert (
                resp["status"] == 429 and resp["error"]["data"]["retryAfter"] > time.time() * 1000
            )
            await asyncio.sleep(1.05)  # backing off as told: no ban
            resp = await s.request("order.place", _signed(_order_params("s1b")))
            assert resp["status"] == 200
            # scope "cancels": a new order passes, the cancel fails (and is not executed).
            fc.error(1, scope="cancels")
            resp = await s.request("order.place", _signed(_order_params("c1")))
            assert resp["status"] == 200
            cancel = {"symbol": "BTCUSDT", "origClientOrderId": "c1"}
            resp = await s.request("order.cancel", _signed(cancel))
            assert resp["status"] == 500 and _venue_order(fc, "c1")["status"] == "NEW"  # type: ignore[index]
            resp = await s.request("order.cancel", _signed(cancel))
            assert resp["status"] == 200 and resp["result"]["status"] == "CANCELED"
        finally:
            await s.ws.close()

    asyncio.run(run())
    state = fc.state()
    assert state["answered_418"] == 0 and state["violations"] == 0
    assert state["injected"] == {"drop_acks": 1, "malformed": 1, "delay": 1, "error": 2, "storm": 1}
    assert all(n == 1 for n in state["new_orders"].values())


def test_drop_refuse_stall_and_garbage(fv: RunningVenue) -> None:
    fc = FaultClient(fv.base_url)

    async def run() -> None:
        s = await Session.open(fv)
        stream = await connect(fv.ws_url + "/ws/btcusdt@trade")
        fc.garbage()
        assert (await asyncio.wait_for(s.ws.recv(), 5)).startswith('{"id":0')
        assert (await asyncio.wait_for(stream.recv(), 5)).startswith('{"id":0')
        assert fc.drop(refuse_s=1.0)["dropped_connections"] == 2
        for ws in (s.ws, stream):
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 2)
        with pytest.raises(InvalidStatus):
            await connect(fv.ws_url + "/ws-api/v3")
        await asyncio.sleep(1.05)
        s = await Session.open(fv)  # accepted again
        # A stall holds the answer, then serves it (it ends 0.5 s after it was armed,
        # which is after t0: a lower bound whatever the load).
        t0 = time.monotonic()
        await asyncio.to_thread(fc.stall, 0.5)
        try:
            resp = await s.request("ping", {})
            assert resp["status"] == 200 and time.monotonic() - t0 >= 0.5
        finally:
            await s.ws.close()
            await stream.close()

    asyncio.run(run())


def test_real_order_limit_429_says_when_to_retry(keys: Keys) -> None:
    """Not a fault: the venue's own order-count 429 carries Binance's ``data.retryAfter``
    (WebSocket API) and a ``Retry-After`` up to the window's end (REST)."""
    v = run_venue(keys, orders_per_10s=1, market="none", symbols=("BTCUSDT",))
    try:

        async def run() -> None:
            s = await Session.open(v)
            codes = []
            try:
                for i in range(3):
                    resp = await s.request("order.place", _signed(_order_params(f"w{i}")))
                    codes.append(resp["status"])
                    if resp["status"] == 429:
                        data = resp["error"]["data"]
                        assert resp["error"]["code"] == -1015
                        assert (
                            data["serverTime"] < data["retryAfter"] <= data["serverTime"] + 10_000
                        )
            finally:
                await s.ws.close()
            assert codes.count(429) >= 1

        asyncio.run(run())
        status, headers, _ = _rest_order(v, "w9")
        if status == 429:
            assert 1 <= int(headers["Retry-After"]) <= 10
    finally:
        v.stop()


def test_storm_window_is_the_retry_after_it_announces(monkeypatch: pytest.MonkeyPatch) -> None:
    """The 429's retryAfter and the window the venue enforces are one clock reading: an
    order just after retryAfter is accepted, one just before it is a violation. (They were
    two clocks converted with two readings; a thread switch between the readings made the
    announced time early, so a client that honoured it could be banned.)"""
    from wiresens.venue.faults import Faults

    now = [1_700_000_000.0]
    ticks = itertools.count()
    # Every monotonic reading is 0.2 s after the previous one (a thread switch between
    # two readings): the storm window must not depend on it.
    monkeypatch.setattr(time, "monotonic", lambda: 0.2 * next(ticks))
    monkeypatch.setattr(time, "time", lambda: now[0])
    for offset_ms, expect, log in ((+1, None, ["429"]), (-1, "ban", ["429", "violation"])):
        f = Faults()
        f.arm({"fault": "storm", "n": 1, "retry_after_s": 2.5, "grace_s": 0.5})
        t0 = now[0]
        fault = f.on_new_order("a")
        assert fault is not None and fault.kind == "storm"
        assert fault.retry_after_ms == int((t0 + 2.5) * 1000)
        now[0] = fault.retry_after_ms / 1000 + offset_ms / 1000
        late = f.on_new_order("b")
        assert (late.kind if late is not None else None) == expect
        assert [e["event"] for e in f.rate_log] == log
        now[0] = t0
