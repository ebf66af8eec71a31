"""Wire Structs: every line of every recording parses, counts exact; documented bodies parse."""

from __future__ import annotations

import collections
import gzip
import os
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from wiresens.binance import wire as w

DATA = Path(os.environ.get("WIRESENS_DATA", Path(__file__).parents[3] / "shared" / "data"))
BINANCE = DATA / "binance"


def frames(name: str) -> Iterator[bytes]:
    """The raw messages of a recording (both formats), without the recorder's prefix."""
    path = BINANCE / name
    if not path.exists():
        pytest.skip(f"{path} absent: set WIRESENS_DATA to the recorded Binance data")
    if name.endswith(".gz"):
        with gzip.open(path) as fh:
            for line in fh:
                yield line.rstrip(b"\n").partition(b" ")[2]
        return
    with path.open("rb") as fh:
        for line in fh:
            line = line.rstrip(b"\n")
            if line and not line.startswith((b"configuration:", b"wss://")):
                yield line.partition(b": ")[2]


def replay(name: str, futures: bool) -> tuple[collections.Counter[str], list[msgspec.Struct]]:
    counts: collections.Counter[str] = collections.Counter()
    decoded: list[msgspec.Struct] = []
    snapshot = w.DECODERS[w.FuturesDepthSnapshot if futures else w.DepthSnapshot]
    for msg in frames(name):
        if msg.startswith(b'{"stream"'):
            env = w.DECODERS[w.StreamEnvelope].decode(msg)
            t = w.stream_type(env.stream, futures)
            assert t is not None, env.stream
            obj = w.DECODERS[t].decode(env.data)
            counts[f"{env.stream}"] += 1
        elif b'"serverTime"' in msg[:100]:
            obj = w.DECODERS[w.ExchangeInfo].decode(msg)
            counts["exchangeInfo"] += 1
        else:
            obj = snapshot.decode(msg)
            counts["snapshot"] += 1
        decoded.append(obj)
    return counts, decoded


# (file, futures, expected counts by stream) from the data README.
GOLDEN = [
    (
        "hftbacktest/spot_btcusdt_20240808.gz",
        False,
        {
            "btcusdt@depth@100ms": 3451,
            "btcusdt@bookTicker": 28040,
            "btcusdt@trade": 9757,
            "snapshot": 1,
        },
    ),
    (
        "hftbacktest/spot_btcusdt_20240809.gz",
        False,
        {"btcusdt@depth@100ms": 3044, "btcusdt@bookTicker": 45134, "btcusdt@trade": 10147},
    ),
    (
        "hftbacktest/usdm_btcusdt_20240808.gz",
        True,
        {
            "btcusdt@depth@0ms": 6551,
            "btcusdt@bookTicker": 66089,
            "btcusdt@trade": 21313,
            "snapshot": 1,
        },
    ),
    (
        "hftbacktest/spot_btcusdt_20230405.dat.gz",
        False,
        {"btcusdt@depth@100ms": 3929, "btcusdt@bookTicker": 8015, "btcusdt@trade": 3144},
    ),
    (
        "hftbacktest/usdm_btcusdt_20230404.dat.gz",
        True,
        {
            "btcusdt@depth@0ms": 4322,
            "btcusdt@bookTicker": 6765,
            "btcusdt@trade": 2197,
            "btcusdt@markPrice@1s": 99,
            "snapshot": 1,
        },
    ),
    (
        "cryptofeed/BINANCE-ee25be.0",
        False,
        {
            "btcusdt@depth@100ms": 899,
            "ethusdt@depth@100ms": 909,
            "dotusdt@depth@100ms": 880,
            "btcusdt@aggTrade": 1227,
            "ethusdt@aggTrade": 506,
            "dotusdt@aggTrade": 177,
            "btcusdt@kline_1m": 44,
            "ethusdt@kline_1m": 40,
            "dotusdt@kline_1m": 34,
            "snapshot": 3,
        },
    ),
    ("cryptofeed/BINANCE.0", False, {"exchangeInfo": 1}),
    ("cryptofeed/BINANCE_FUTURES.0", True, {"exchangeInfo": 1}),
    ("cryptofeed/BINANCE.http.0.0", False, {"snapshot": 4}),
    ("cryptofeed/BINANCE_FUTURES.http.0.0", True, {"snapshot": 4}),
]


@pytest.mark.parametrize(("name", "futures", "expected"), GOLDEN, ids=[g[0] for g in GOLDEN])
def test_every_line_parses_with_exact_counts(
    name: str, futures: bool, expected: dict[str, int]
) -> None:
    counts, _ = replay(name, futures)
    assert dict(counts) == expected


@pytest.mark.parametrize(
    ("name", "futures", "per_kind"),
    [
        (
            "cryptofeed/BINANCE.ws.1.0",
            False,
            {"depth": 177, "bookTicker": 84, "aggTrade": 2, "kline": 2},
        ),
        (
            "cryptofeed/BINANCE_FUTURES.ws.1.0",
            True,
            {"depth": 764, "bookTicker": 613, "aggTrade": 91, "kline": 67},
        ),
        (
            "cryptofeed/BINANCE_FUTURES.ws.5.0",
            True,
            {"depth": 1016, "bookTicker": 1959, "aggTrade": 185, "kline": 99},
        ),
    ],
)
def test_multi_symbol_streams_parse(name: str, futures: bool, per_kind: dict[str, int]) -> None:
    counts, _ = replay(name, futures)
    by_kind: collections.Counter[str] = collections.Counter()
    for stream, n in counts.items():
        by_kind[stream.split("@")[1].split("_")[0]] += n
    assert dict(by_kind) == per_kind


def test_diff_ids_are_continuous_per_symbol() -> None:
    # A decoded U/u/pu that were swapped or misnamed would break these invariants.
    for name, futures in [
        ("hftbacktest/spot_btcusdt_20240808.gz", False),
        ("hftbacktest/usdm_btcusdt_20240808.gz", True),
        ("cryptofeed/BINANCE_FUTURES.ws.5.0", True),
    ]:
        _, decoded = replay(name, futures)
        last: dict[str, int] = {}
        checked = 0
        for m in decoded:
            if not isinstance(m, w.DepthUpdate):
                continue
            assert isinstance(m, w.FuturesDepthUpdate) == futures
            if m.s in last:
                prev = m.pu if isinstance(m, w.FuturesDepthUpdate) else m.U - 1
                assert prev == last[m.s]
                checked += 1
            last[m.s] = m.u
        assert checked > 1000


def test_trade_shapes_old_and_new() -> None:
    _, old = replay("hftbacktest/spot_btcusdt_20230405.dat.gz", False)
    _, new = replay("hftbacktest/spot_btcusdt_20240808.gz", False)
    _, usdm = replay("hftbacktest/usdm_btcusdt_20240808.gz", True)
    old_t = [m for m in old if isinstance(m, w.Trade)]
    new_t = [m for m in new if isinstance(m, w.Trade)]
    usdm_t = [m for m in usdm if isinstance(m, w.Trade)]
    assert all(t.b is not None and t.a is not None for t in old_t)
    assert all(t.b is None and t.a is None and t.X == "" for t in new_t)
    assert {t.X for t in usdm_t} == {"MARKET"}
    ids = [t.t for t in new_t]
    assert ids == list(range(3735683259, 3735693016))
    # bookTicker: spot has no event time, USD-M has
    assert all(m.E == 0 for m in new if isinstance(m, w.BookTicker))
    assert all(m.E > 0 and m.T > 0 for m in usdm if isinstance(m, w.BookTicker))


def test_snapshot_shapes() -> None:
    _, spot = replay("hftbacktest/spot_btcusdt_20240808.gz", False)
    _, usdm = replay("hftbacktest/usdm_btcusdt_20240808.gz", True)
    (s,) = [m for m in spot if isinstance(m, w.DepthSnapshot)]
    (f,) = [m for m in usdm if isinstance(m, w.FuturesDepthSnapshot)]
    assert s.lastUpdateId == 50093239218 and len(s.bids) == len(s.asks) == 1000
    assert f.lastUpdateId == 5123107852948 and f.E > 0 and f.T > 0


def test_stream_type() -> None:
    assert w.stream_type("btcusdt@depth@100ms") is w.DepthUpdate
    assert w.stream_type("btcusdt@depth", futures=True) is w.FuturesDepthUpdate
    assert w.stream_type("btcusdt@kline_1m") is w.KlineEvent
    assert w.stream_type("btcusdt@markPrice") is None  # spot has none
    assert w.stream_type("btcusdt@depth20@100ms") is None  # partial book: not handled
    assert w.stream_type("nonsense") is None


def test_futures_depth_requires_pu() -> None:
    with pytest.raises(msgspec.ValidationError, match="pu"):
        w.DECODERS[w.FuturesDepthUpdate].decode(
            b'{"e":"depthUpdate","E":1,"T":1,"s":"X","U":1,"u":2,"b":[],"a":[]}'
        )


# ----------------------------------------------------------------- documented REST / WS API bodies

FULL_ORDER = b"""{"symbol":"BTCUSDT","orderId":28,"orderListId":-1,
"clientOrderId":"6gCrw2kRUAF9CvJDGP16IP","transactTime":1507725176595,"price":"0.00000000",
"origQty":"10.00000000","executedQty":"10.00000000","cummulativeQuoteQty":"10.00000000",
"status":"FILLED","timeInForce":"GTC","type":"MARKET","side":"SELL","workingTime":1507725176595,
"selfTradePreventionMode":"NONE","fills":[
{"price":"4000.00000000","qty":"1.00000000","commission":"4.00000000","commissionAsset":"USDT","tradeId":56},
{"price":"3999.00000000","qty":"5.00000000","commission":"19.99500000","commissionAsset":"USDT","tradeId":57}]}"""


def test_order_responses_ack_result_full() -> None:
    dec = w.DECODERS[w.OrderResponse]
    ack = dec.decode(
        b'{"symbol":"BTCUSDT","orderId":28,"orderListId":-1,'
        b'"clientOrderId":"6gCrw2kRUAF9CvJDGP16IP","transactTime":1507725176595}'
    )
    assert ack.status == "" and ack.fills == ()
    full = dec.decode(FULL_ORDER)
    assert full.status == "FILLED" and [f.tradeId for f in full.fills] == [56, 57]
    assert full.fills[1].commission == "19.99500000"


def test_error_body_and_ws_error_response() -> None:
    err = w.DECODERS[w.ErrorBody].decode(b'{"code":-1121,"msg":"Invalid symbol."}')
    assert (err.code, err.msg) == (-1121, "Invalid symbol.")
    resp = w.DECODERS[w.WsApiResponse].decode(
        b'{"id":null,"status":401,"error":{"code":-2015,'
        b'"msg":"Invalid API-key, IP, or permissions for action."}}'
    )
    assert resp.id is None and resp.error is not None and resp.error.code == -2015
    assert not resp.result
    # an absent result is omitted on encode (the venue simulator encodes these)
    assert b"result" not in msgspec.json.encode(resp)


def test_ws_cancel_replace_partial_failure() -> None:
    resp = w.DECODERS[w.WsApiResponse].decode(
        b'{"id":"81d5","status":409,"error":{"code":-2021,"msg":"Order cancel-replace partially '
        b'failed.","data":{"cancelResult":"FAILURE","newOrderResult":"SUCCESS","cancelResponse":'
        b'{"code":-2011,"msg":"Unknown order sent."},"newOrderResponse":{"symbol":"BTCUSDT",'
        b'"orderId":12,"orderListId":-1,"clientOrderId":"x","transactTime":1}}},'
        b'"rateLimits":[{"rateLimitType":"ORDERS","interval":"SECOND","intervalNum":10,'
        b'"limit":50,"count":1}]}'
    )
    assert resp.error is not None and resp.error.data
    cr = w.DECODERS[w.CancelReplaceResponse].decode(resp.error.data)
    assert cr.cancelResponse and cr.newOrderResponse
    assert w.DECODERS[w.ErrorBody].decode(cr.cancelResponse).code == -2011
    assert w.DECODERS[w.OrderResponse].decode(cr.newOrderResponse).orderId == 12
    assert resp.rateLimits[0].count == 1


def test_ws_logon_and_subscribe_responses_and_request_encoding() -> None:
    logon = w.DECODERS[w.WsApiResponse].decode(
        b'{"id":"c174","status":200,"result":{"apiKey":"vmPU","authorizedSince":1649729878532,'
        b'"connectedSince":1649729873021,"returnRateLimits":false,"serverTime":1649729878630},'
        b'"rateLimits":[{"rateLimitType":"REQUEST_WEIGHT","interval":"MINUTE","intervalNum":1,'
        b'"limit":6000,"count":1}]}'
    )
    assert logon.status == 200 and logon.result
    assert msgspec.json.decode(msgspec.json.encode(logon))["result"]["apiKey"] == "vmPU"
    sub = w.DECODERS[w.WsApiResponse].decode(b'{"id":7,"status":200,"result":{"subscriptionId":0}}')
    assert sub.id == 7
    req = msgspec.json.encode(w.WsApiRequest("a1", "userDataStream.subscribe"))
    assert msgspec.json.decode(req) == {"id": "a1", "method": "userDataStream.subscribe"}


EXECUTION_REPORT = (
    b'{"e":"executionReport","E":1499405658658,"s":"ETHBTC","c":"mUvoqJxFIILMdfAW5iGSOW",'
    b'"S":"BUY","o":"LIMIT","f":"GTC","q":"1.00000000","p":"0.10264410","P":"0.00000000",'
    b'"F":"0.00000000","g":-1,"C":null,"x":"NEW","X":"NEW","r":"NONE","i":4293153,'
    b'"l":"0.00000000","z":"0.00000000","L":"0.00000000","n":"0","N":null,"T":1499405658657,'
    b'"t":-1,"v":3,"I":8641984,"w":true,"m":false,"M":false,"O":1499405658657,'
    b'"Z":"0.00000000","Y":"0.00000000","Q":"0.00000000","W":1499405658657,"V":"NONE"}'
)


def test_user_events_bare_and_in_ws_envelope() -> None:
    ev = w.USER_EVENT_DECODER.decode(EXECUTION_REPORT)
    assert isinstance(ev, w.ExecutionReport) and ev.C is None and ev.i == 4293153
    env = w.DECODERS[w.UserDataEnvelope].decode(
        b'{"subscriptionId":0,"event":{"e":"outboundAccountPosition","E":1564034571105,'
        b'"u":1564034571073,"B":[{"a":"ETH","f":"10000.000000","l":"0.000000"}]}}'
    )
    pos = w.USER_EVENT_DECODER.decode(env.event)
    assert isinstance(pos, w.OutboundAccountPosition) and pos.B[0].f == "10000.000000"
    bal = w.USER_EVENT_DECODER.decode(
        b'{"e":"balanceUpdate","E":1573200697110,"a":"BTC","d":"100.00000000","T":1573200697068}'
    )
    assert isinstance(bal, w.BalanceUpdate) and bal.d == "100.00000000"
    # encoding a tagged event writes "e" back (the venue simulator relies on it)
    assert msgspec.json.decode(msgspec.json.encode(bal))["e"] == "balanceUpdate"


def test_account_info() -> None:
    acct = w.DECODERS[w.AccountInfo].decode(
        b'{"makerCommission":15,"canTrade":true,"updateTime":123456789,"accountType":"SPOT",'
        b'"balances":[{"asset":"BTC","free":"4723846.89208129","locked":"0.00000000"}],'
        b'"permissions":["SPOT"],"uid":354937868}'
    )
    assert acct.balances[0].free == "4723846.89208129" and acct.uid == 354937868


def test_open_orders() -> None:
    orders = w.OPEN_ORDERS_DECODER.decode(
        b'[{"symbol":"LTCBTC","orderId":1,"orderListId":-1,"clientOrderId":"myOrder1",'
        b'"price":"0.1","origQty":"1.0","executedQty":"0.0","cummulativeQuoteQty":"0.0",'
        b'"status":"NEW","timeInForce":"GTC","type":"LIMIT","side":"BUY","stopPrice":"0.0",'
        b'"icebergQty":"0.0","time":1499827319559,"updateTime":1499827319559,"isWorking":true,'
        b'"workingTime":1499827319559,"origQuoteOrderQty":"0.000000",'
        b'"selfTradePreventionMode":"NONE"}]'
    )
    assert len(orders) == 1 and orders[0].time == 1499827319559 and orders[0].isWorking
    assert w.OPEN_ORDERS_DECODER.decode(b"[]") == ()
