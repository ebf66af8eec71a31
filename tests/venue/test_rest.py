"""Fidelity: the unmodified python-binance client against the venue's REST API."""

from __future__ import annotations

import time

import pytest
import requests

from wiresens.binance.signing import HmacSigner
from wiresens.venue import RunningVenue
from wiresens.venue.accounts import ApiKey
from wiresens.venue.api import VenueApi

from .conftest import BOB_KEY, BOB_SECRET, ED_KEY, HMAC_KEY, HMAC_SECRET, Keys, run_venue
from .pybinance import BinanceAPIException, Client, sync_client


def client(
    v: RunningVenue, key: str = HMAC_KEY, secret: str | None = HMAC_SECRET, **kw: object
) -> Client:
    return sync_client(v.base_url, key, secret, **kw)


def _code(exc: pytest.ExceptionInfo[BinanceAPIException]) -> tuple[int, str]:
    return exc.value.code, exc.value.message


def test_public_endpoints(venue: RunningVenue) -> None:
    c = client(venue)
    assert c.ping() == {}
    assert abs(c.get_server_time()["serverTime"] - time.time() * 1000) < 5000
    info = c.get_symbol_info("BTCUSDT")
    assert info is not None
    filters = {f["filterType"]: f for f in info["filters"]}
    assert filters["PRICE_FILTER"]["tickSize"] == "0.01000000"
    assert filters["LOT_SIZE"]["stepSize"] == "0.00001000"
    book = c.get_order_book(symbol="BTCUSDT", limit=10)
    assert len(book["bids"]) == 10 and len(book["asks"]) == 10
    assert float(book["bids"][0][0]) < float(book["asks"][0][0])
    assert int(c.response.headers["X-MBX-USED-WEIGHT-1M"]) > 0


def test_place_query_cancel_and_fill(venue: RunningVenue) -> None:
    c = client(venue)
    book = c.get_order_book(symbol="BTCUSDT", limit=5)
    far = f"{float(book['bids'][0][0]) - 500:.2f}"
    o = c.create_order(
        symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC", quantity="0.01", price=far
    )
    assert o["status"] == "NEW" and o["price"] == f"{far}000000"
    assert c.response.headers["X-MBX-ORDER-COUNT-10S"] == "1"
    got = c.get_order(symbol="BTCUSDT", orderId=o["orderId"])
    assert got["status"] == "NEW" and got["clientOrderId"] == o["clientOrderId"]
    assert [x["orderId"] for x in c.get_open_orders(symbol="BTCUSDT")] == [o["orderId"]]
    locked = {b["asset"]: b for b in c.get_account()["balances"]}["USDT"]["locked"]
    assert float(locked) == pytest.approx(float(far) * 0.01)
    cancelled = c.cancel_order(symbol="BTCUSDT", orderId=o["orderId"])
    assert cancelled["status"] == "CANCELED"
    assert c.get_open_orders(symbol="BTCUSDT") == []

    before = {b["asset"]: float(b["free"]) for b in c.get_account()["balances"]}
    m = c.create_order(symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.002")
    assert m["status"] == "FILLED" and m["fills"]
    spent = sum(float(f["price"]) * float(f["qty"]) for f in m["fills"])
    after = {b["asset"]: float(b["free"]) for b in c.get_account()["balances"]}
    assert before["USDT"] - after["USDT"] == pytest.approx(spent, abs=1e-6)
    assert after["BTC"] - before["BTC"] == pytest.approx(0.002 * 0.999, abs=1e-8)
    trades = c.get_my_trades(symbol="BTCUSDT", orderId=m["orderId"])
    assert sum(float(t["qty"]) for t in trades) == pytest.approx(0.002)


def test_users_trade_with_each_other(quiet_venue: RunningVenue) -> None:
    alice, bob = client(quiet_venue), client(quiet_venue, BOB_KEY, BOB_SECRET)
    ask = bob.create_order(
        symbol="BTCUSDT",
        side="SELL",
        type="LIMIT",
        timeInForce="GTC",
        quantity="0.5",
        price="60000",
    )
    bid = alice.create_order(
        symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="IOC", quantity="0.2", price="60001"
    )
    assert bid["status"] == "FILLED" and bid["fills"][0]["price"] == "60000.00000000"
    assert bob.get_order(symbol="BTCUSDT", orderId=ask["orderId"])["executedQty"] == "0.20000000"
    maker = bob.create_order(
        symbol="BTCUSDT", side="SELL", type="LIMIT_MAKER", quantity="0.1", price="60000.5"
    )
    assert maker["status"] == "NEW"
    with pytest.raises(BinanceAPIException) as exc:
        bob.create_order(
            symbol="BTCUSDT", side="BUY", type="LIMIT_MAKER", quantity="0.1", price="60000"
        )
    assert _code(exc) == (-2010, "Order would immediately match and take.")


@pytest.mark.parametrize(
    ("price", "qty", "message"),
    [
        ("60000.001", "0.01", "Filter failure: PRICE_FILTER"),
        ("60000", "0.000001", "Filter failure: LOT_SIZE"),
        ("60000", "0.00002", "Filter failure: NOTIONAL"),
    ],
)
def test_filter_failures(venue: RunningVenue, price: str, qty: str, message: str) -> None:
    with pytest.raises(BinanceAPIException) as exc:
        client(venue).create_order(
            symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC", quantity=qty, price=price
        )
    assert _code(exc) == (-1013, message)
    assert exc.value.status_code == 400


def test_auth_and_order_errors(venue: RunningVenue) -> None:
    with pytest.raises(BinanceAPIException) as exc:
        client(venue, secret="wrong-secret").get_account()
    assert _code(exc) == (-1022, "Signature for this request is not valid.")
    stale = client(venue)
    stale.timestamp_offset = -120_000
    with pytest.raises(BinanceAPIException) as exc:
        stale.get_account()
    assert _code(exc) == (-1021, "Timestamp for this request is outside of the recvWindow.")
    with pytest.raises(BinanceAPIException) as exc:
        client(venue, key="no-such-key").get_account()
    assert _code(exc) == (-2015, "Invalid API-key, IP, or permissions for action.")
    assert exc.value.status_code == 401
    with pytest.raises(BinanceAPIException) as exc:
        client(venue).cancel_order(symbol="BTCUSDT", orderId=987654321)
    assert _code(exc) == (-2011, "Unknown order sent.")
    with pytest.raises(BinanceAPIException) as exc:
        client(venue).create_order(
            symbol="BTCUSDT",
            side="BUY",
            type="LIMIT",
            timeInForce="GTC",
            quantity="5",
            price="59000",
        )
    assert _code(exc) == (-2010, "Account has insufficient balance for requested action.")
    with pytest.raises(BinanceAPIException) as exc:
        client(venue).create_order(symbol="BTCUSDT", side="BUY", type="LIMIT", quantity="1")
    assert exc.value.code == -1102 and "timeInForce" in exc.value.message
    # No API key header at all.
    r = requests.get(venue.base_url + "/api/v3/account", params={"timestamp": 1}, timeout=5)
    assert (r.status_code, r.json()["code"]) == (401, -2014)


def test_ed25519_key_signs_rest(venue: RunningVenue, keys: Keys) -> None:
    c = client(venue, key=ED_KEY, secret=None, private_key=keys.ed_private_pem)
    acct = c.get_account()
    assert {b["asset"] for b in acct["balances"]} >= {"USDT", "BTC"}
    assert acct["commissionRates"]["maker"] == "0.00100000"


def test_binance_documented_hmac_vector() -> None:
    # The HMAC example of Binance's REST documentation (secret, totalParams, signature).
    secret = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
    payload = (
        "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1"
        "&recvWindow=5000&timestamp=1499827319559"
    )
    sig = "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"
    key = ApiKey("k", "HMAC", secret=secret)
    assert VenueApi.verify(key, payload, sig)
    assert not VenueApi.verify(key, payload.replace("price=0.1", "price=0.2"), sig)
    assert HmacSigner(secret).sign(payload) == sig


def test_request_weight_limit_gives_429(keys: Keys) -> None:
    v = run_venue(keys, weight_per_minute=30, market="none", symbols=("BTCUSDT",))
    try:
        c = client(v)
        c.get_exchange_info()  # weight 20
        with pytest.raises(BinanceAPIException) as exc:
            c.get_exchange_info()
        assert exc.value.status_code == 429 and exc.value.code == -1003
        assert int(exc.value.response.headers["Retry-After"]) >= 1
        assert int(exc.value.response.headers["X-MBX-USED-WEIGHT-1M"]) == 40
    finally:
        v.stop()


def test_order_rate_limit(keys: Keys) -> None:
    v = run_venue(keys, orders_per_10s=2, market="none", symbols=("BTCUSDT",))
    try:
        c = client(v)
        outcomes: list[tuple[int, str]] = []
        # Two orders fit a 10 s window; five attempts cross at most one window edge.
        for _ in range(5):
            try:
                c.create_order(
                    symbol="BTCUSDT",
                    side="BUY",
                    type="LIMIT",
                    timeInForce="GTC",
                    quantity="0.001",
                    price="50000",
                )
                outcomes.append((200, c.response.headers["X-MBX-ORDER-COUNT-10S"]))
            except BinanceAPIException as exc:
                assert exc.code == -1015 and exc.status_code == 429
                assert "2 orders per 10 SECOND" in exc.message
                outcomes.append((429, exc.response.headers["X-MBX-ORDER-COUNT-10S"]))
        assert outcomes[0] == (200, "1")
        assert (429, "3") in outcomes
        assert sum(1 for status, _ in outcomes if status == 200) <= 4
    finally:
        v.stop()
