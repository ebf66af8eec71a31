"""Codec: real frames -> records exactly, user events, order params both ways, fuzzing."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import msgspec
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wiresens.binance import codec
from wiresens.binance.codec import DecodeStats, MarketDecoder, UserDecoder
from wiresens.binance.signing import HmacSigner, verify_hmac, ws_payload
from wiresens.binance.wire import DECODERS, OrderResponse
from wiresens.errors import (
    ConfigError,
    ExchangeError,
    FixedPointError,
    ProtocolError,
    RateLimitError,
)
from wiresens.fixedpoint import from_fixed, to_fixed
from wiresens.instruments import Instrument, InstrumentTable
from wiresens.records import (
    ACCOUNT_UPDATE,
    EXECUTION_REPORT,
    MARKET_SLOT,
    ORDER_REQUEST,
    ORDER_SLOT,
    TOP_OF_BOOK,
    TRADE,
    TRADE_BUYER_MAKER_FLAG,
    ExecStatus,
    ExecType,
    OrderType,
    RecordKind,
    Side,
    TimeInForce,
    new_record,
)

DATA = Path(os.environ.get("WIRESENS_DATA", Path(__file__).parents[3] / "shared" / "data"))
HFT = DATA / "binance" / "hftbacktest"

TABLE = InstrumentTable(
    Instrument(s, b, q, "TRADING")
    for s, b, q in [
        ("BTCUSDT", "BTC", "USDT"),
        ("ETHBTC", "ETH", "BTC"),
        ("BNBUSDT", "BNB", "USDT"),
    ]
)
BTC = TABLE.index("BTCUSDT")


def recording(name: str) -> list[bytes]:
    path = HFT / name
    if not path.exists():
        pytest.skip(f"{path} absent: set WIRESENS_DATA to the recorded Binance data")
    with gzip.open(path) as fh:
        return [line.rstrip(b"\n").partition(b" ")[2] for line in fh]


def slot() -> tuple[np.ndarray, memoryview]:
    buf = np.zeros(1, MARKET_SLOT)
    return buf, memoryview(buf).cast("B")


@pytest.mark.parametrize(
    ("name", "futures", "n_tob", "n_trade"),
    [
        ("spot_btcusdt_20240808.gz", False, 28040, 9757),
        ("spot_btcusdt_20230405.dat.gz", False, 8015, 3144),
        ("usdm_btcusdt_20240808.gz", True, 66089, 21313),
    ],
)
def test_replay_writes_exact_records(name: str, futures: bool, n_tob: int, n_trade: int) -> None:
    dec = MarketDecoder(TABLE, futures=futures)
    buf, mv = slot()
    tob, trade = buf.view(TOP_OF_BOOK)[0], buf.view(TRADE)[0]
    seen = {int(RecordKind.TOP_OF_BOOK): 0, int(RecordKind.TRADE): 0}
    for i, frame in enumerate(recording(name)):
        kind = dec.decode_into(frame, mv, ts_recv=i)
        if not kind:
            continue
        seen[kind] += 1
        d = msgspec.json.decode(frame)["data"]  # an untyped parse to compare with
        if kind == RecordKind.TOP_OF_BOOK:
            assert (int(tob["kind"]), int(tob["symbol"]), int(tob["ts_recv"])) == (kind, BTC, i)
            assert int(tob["bid_px"]) == to_fixed(d["b"]) and int(tob["bid_qty"]) == to_fixed(
                d["B"]
            )
            assert int(tob["ask_px"]) == to_fixed(d["a"]) and int(tob["ask_qty"]) == to_fixed(
                d["A"]
            )
            assert int(tob["ts_exch"]) == d.get("E", 0) * 1_000_000
        else:
            assert int(trade["trade_id"]) == d["t"]
            assert int(trade["price"]) == to_fixed(d["p"]) and int(trade["qty"]) == to_fixed(d["q"])
            assert bool(int(trade["flags"]) & TRADE_BUYER_MAKER_FLAG) == d["m"]
            assert int(trade["ts_exch"]) == d["E"] * 1_000_000
    assert seen == {int(RecordKind.TOP_OF_BOOK): n_tob, int(RecordKind.TRADE): n_trade}
    # the one non-stream line is the REST snapshot (not an envelope): counted as schema
    assert dec.stats.errors == (1 if "20230405" not in name else 0)


def test_agg_trade_and_unknown_symbol_and_other_streams() -> None:
    dec = MarketDecoder(TABLE)
    buf, mv = slot()
    agg = (
        b'{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","E":1617566591315,"s":"BTCUSDT",'
        b'"a":665076760,"p":"58001.03000000","q":"0.08620500","f":745522877,"l":745522877,'
        b'"T":1617566591314,"m":true,"M":true}}'
    )
    assert dec.decode_into(agg, mv, 5) == RecordKind.TRADE
    rec = buf.view(TRADE)[0]
    assert int(rec["trade_id"]) == 665076760 and int(rec["price"]) == 5800103000000
    assert dec.decode_into(agg.replace(b"BTCUSDT", b"DOGEUSDT"), mv, 5) == 0
    kline = (
        b'{"stream":"btcusdt@kline_1m","data":{"e":"kline","E":1,"s":"BTCUSDT","k":{"t":1,"T":2,'
        b'"s":"BTCUSDT","i":"1m","f":1,"L":2,"o":"1","c":"1","h":"1","l":"1","v":"1","n":1,'
        b'"x":false,"q":"1"}}}'
    )
    assert dec.decode_into(kline, mv, 5) == 0 and dec.last is not None
    assert dec.decode_into(b'{"stream":"btcusdt@depth20","data":{}}', mv, 5) == 0
    assert dec.stats.as_dict() == {
        "ok:TRADE": 1,
        "unknown_symbol": 1,
        "ok:KlineEvent": 1,
        "unknown_stream": 1,
    }


def test_bad_numbers_are_counted_not_raised() -> None:
    dec = MarketDecoder(TABLE)
    _, mv = slot()
    tmpl = b'{"stream":"btcusdt@bookTicker","data":{"u":1,"s":"BTCUSDT","b":"%s","B":"1","a":"2","A":"1"}}'
    for bad in [b"1.123456789", b"-", b"1e5", b"\xef\xbc\x91", b"99999999999999", b"", b"1_0"]:
        assert dec.decode_into(tmpl % bad, mv, 0) == 0
    assert dec.stats.as_dict() == {"number": 7}
    # exact 8-decimal values are fine, including trailing zeros beyond 8
    assert dec.decode_into(tmpl % b"0.123456780000", mv, 0) == RecordKind.TOP_OF_BOOK


def test_output_buffer_too_small_is_counted() -> None:
    dec = MarketDecoder(TABLE)
    frame = b'{"stream":"btcusdt@bookTicker","data":{"u":1,"s":"BTCUSDT","b":"1","B":"1","a":"2","A":"1"}}'
    assert dec.decode_into(frame, bytearray(32), 0) == 0
    assert dec.decode_into(frame, bytes(64), 0) == 0  # read-only
    assert dec.stats.as_dict() == {"buffer": 2}


EXEC_REPORT = (
    b'{"e":"executionReport","E":1499405658658,"s":"ETHBTC","c":"wsn42","S":"BUY","o":"LIMIT",'
    b'"f":"GTC","q":"1.00000000","p":"0.10264410","P":"0.00000000","F":"0.00000000","g":-1,'
    b'"C":null,"x":"TRADE","X":"PARTIALLY_FILLED","r":"NONE","i":4293153,"l":"0.25000000",'
    b'"z":"0.50000000","L":"0.10264400","n":"0.00012","N":"BNB","T":1499405658657,"t":77,'
    b'"I":8641984,"w":false,"m":true,"M":true,"O":1499405658657,"Z":"0.05132200",'
    b'"Y":"0.02566100","Q":"0.00000000","W":1499405658657,"V":"NONE"}'
)


def test_execution_report_bare_and_ws_envelope() -> None:
    dec = UserDecoder(TABLE, account=3, policy=7)
    out = np.zeros(1, ORDER_SLOT)
    rec = out.view(EXECUTION_REPORT)[0]
    for frame in (EXEC_REPORT, b'{"subscriptionId":0,"event":' + EXEC_REPORT + b"}"):
        out[:] = np.zeros(1, ORDER_SLOT)
        assert dec.decode_into(frame, out, ts_recv=9) == 1
        assert int(rec["kind"]) == RecordKind.EXECUTION_REPORT
        assert int(rec["symbol"]) == TABLE.index("ETHBTC")
        assert (int(rec["cl_ord_id"]), int(rec["orig_cl_ord_id"])) == (42, 0)
        assert (int(rec["exch_order_id"]), int(rec["trade_id"])) == (4293153, 77)
        assert int(rec["price"]) == 10264410 and int(rec["qty"]) == 100000000
        assert (int(rec["last_px"]), int(rec["last_qty"])) == (10264400, 25000000)
        assert (int(rec["cum_qty"]), int(rec["cum_quote"])) == (50000000, 5132200)
        assert int(rec["commission"]) == 12000
        assert (int(rec["side"]), int(rec["status"]), int(rec["exec_type"])) == (
            Side.BUY,
            ExecStatus.PARTIALLY_FILLED,
            ExecType.TRADE,
        )
        assert (int(rec["account"]), int(rec["policy"])) == (3, 7)
        assert int(rec["ts_exch"]) == 1499405658658 * 1_000_000
    # a cancel: c is the cancel's id, C the original order's
    cancel = EXEC_REPORT.replace(b'"c":"wsn42"', b'"c":"wsn43"').replace(
        b'"C":null', b'"C":"wsn42"'
    )
    assert dec.decode_into(cancel.replace(b'"X":"PARTIALLY_FILLED"', b'"X":"CANCELED"'), out, 0)
    assert (int(rec["cl_ord_id"]), int(rec["orig_cl_ord_id"])) == (43, 42)
    # someone else's order (web UI id) still decodes, with cl_ord_id 0
    assert dec.decode_into(EXEC_REPORT.replace(b"wsn42", b"web_abc"), out, 0) == 1
    assert int(rec["cl_ord_id"]) == 0


def test_account_position_writes_one_record_per_balance() -> None:
    dec = UserDecoder(TABLE, account=2)
    frame = (
        b'{"subscriptionId":0,"event":{"e":"outboundAccountPosition","E":1564034571105,'
        b'"u":1564034571073,"B":[{"a":"ETH","f":"10000.000000","l":"0.000000"},'
        b'{"a":"NEWCOIN","f":"1.5","l":"0.25"}]}}'
    )
    out = new_record(RecordKind.ACCOUNT_UPDATE, 4)
    assert dec.decode_into(frame, out, 1) == 2
    assert [TABLE.asset(int(a)) for a in out["asset"][:2]] == ["ETH", "NEWCOIN"]
    assert out["free"][:2].tolist() == [to_fixed("10000"), to_fixed("1.5")]
    assert out["locked"][:2].tolist() == [0, to_fixed("0.25")]
    assert out["account"][:2].tolist() == [2, 2]
    assert out["kind"][:2].tolist() == [RecordKind.ACCOUNT_UPDATE] * 2
    assert dec.decode_into(frame, np.zeros(1, ACCOUNT_UPDATE), 1) == 0  # room for one only
    assert dec.stats.as_dict() == {"ok:ACCOUNT_UPDATE": 1, "buffer": 1}


def test_user_events_ignored_unknown_and_broken() -> None:
    dec = UserDecoder(TABLE)
    out = np.zeros(1, ORDER_SLOT)
    balance = b'{"e":"balanceUpdate","E":1,"a":"BTC","d":"100.00000000","T":1}'
    terminated = b'{"subscriptionId":0,"event":{"e":"eventStreamTerminated","E":1}}'
    broken = EXEC_REPORT.replace(b'"i":4293153', b'"i":"x"')
    for frame in (balance, terminated, broken, EXEC_REPORT[:-20], b"[]", b"\xff"):
        assert dec.decode_into(frame, out, 0) == 0
    assert dec.stats.as_dict() == {"ignored": 1, "unknown_event": 1, "schema": 2, "json": 2}
    with pytest.raises(ConfigError, match=r"0\.\.255"):
        UserDecoder(TABLE, account=300)


def order(kind: RecordKind, **fields: int) -> np.ndarray:
    rec = new_record(kind)
    rec["symbol"] = BTC
    for k, v in fields.items():
        rec[k] = v
    return rec


def test_place_params_limit_and_signature() -> None:
    rec = order(
        RecordKind.ORDER_NEW,
        cl_ord_id=1001,
        side=Side.SELL,
        order_type=OrderType.LIMIT,
        tif=TimeInForce.GTC,
        price=to_fixed("52000.00"),
        qty=to_fixed("0.01"),
        stp=2,
    )
    params = codec.place_params(rec, TABLE)
    assert params == {
        "symbol": "BTCUSDT",
        "side": "SELL",
        "type": "LIMIT",
        "timeInForce": "GTC",
        "quantity": "0.01",
        "price": "52000",
        "newClientOrderId": "wsn1001",
        "selfTradePreventionMode": "EXPIRE_TAKER",
        "newOrderRespType": "RESULT",
    }
    signed = {**params, "apiKey": "k", "timestamp": 1645423376532}
    sig = HmacSigner("s").sign(ws_payload(signed))
    frame = codec.encode_request("r1", "order.place", {**signed, "signature": sig})
    sent = msgspec.json.decode(frame)
    assert sent["method"] == "order.place" and sent["id"] == "r1"
    assert verify_hmac("s", ws_payload(sent["params"]), sent["params"]["signature"])


def test_place_params_market_quote_qty_and_limit_maker() -> None:
    market = order(
        RecordKind.ORDER_NEW,
        cl_ord_id=5,
        side=Side.BUY,
        order_type=OrderType.MARKET,
        quote_qty=to_fixed("100.5"),
    )
    p = codec.place_params(market, TABLE, resp_type="FULL")
    assert p["quoteOrderQty"] == "100.5" and "quantity" not in p and "price" not in p
    assert "timeInForce" not in p and p["newOrderRespType"] == "FULL"
    maker = order(
        RecordKind.ORDER_NEW,
        side=Side.BUY,
        order_type=OrderType.LIMIT_MAKER,
        tif=TimeInForce.GTC,
        price=1,
        qty=to_fixed("1"),
    )
    assert "timeInForce" not in codec.place_params(maker, TABLE)
    with pytest.raises(ProtocolError, match="symbol index 99"):
        codec.place_params(order(RecordKind.ORDER_NEW, symbol=99, side=1, order_type=1), TABLE)


def test_cancel_and_replace_params() -> None:
    by_client = order(RecordKind.ORDER_CANCEL, cl_ord_id=8, orig_cl_ord_id=7)
    assert codec.cancel_params(by_client, TABLE) == {
        "symbol": "BTCUSDT",
        "origClientOrderId": "wsn7",
        "newClientOrderId": "wsn8",
    }
    by_id = order(RecordKind.ORDER_CANCEL, cl_ord_id=8, exch_order_id=123)
    assert codec.cancel_params(by_id, TABLE)["orderId"] == 123
    rep = order(
        RecordKind.ORDER_REPLACE,
        cl_ord_id=9,
        orig_cl_ord_id=7,
        side=Side.BUY,
        order_type=OrderType.LIMIT,
        tif=TimeInForce.IOC,
        price=to_fixed("1.5"),
        qty=to_fixed("2"),
    )
    p = codec.replace_params(rep, TABLE)
    assert list(p)[:3] == ["symbol", "cancelReplaceMode", "cancelOrigClientOrderId"]
    assert (p["cancelOrigClientOrderId"], p["newClientOrderId"], p["price"]) == (
        "wsn7",
        "wsn9",
        "1.5",
    )


ORDER_FIELDS = st.fixed_dictionaries(
    {
        "cl_ord_id": st.integers(0, 10**18 - 1),
        "orig_cl_ord_id": st.integers(0, 10**18 - 1),
        "exch_order_id": st.integers(0, 2**63 - 1),
        "price": st.integers(0, 2**63 - 1),
        "qty": st.integers(1, 2**63 - 1),
        "stop_price": st.integers(0, 2**63 - 1),
        "side": st.sampled_from([int(s) for s in Side]),
        "order_type": st.sampled_from(
            [int(t) for t in OrderType if t is not OrderType.LIMIT_MAKER]
        ),
        "tif": st.sampled_from([int(t) for t in TimeInForce]),
        "stp": st.integers(0, 4),
    }
)


@settings(max_examples=200, deadline=None)
@given(ORDER_FIELDS, st.sampled_from(["order.place", "order.cancel", "order.cancelReplace"]))
def test_params_round_trip_through_json(fields: dict[str, int], method: str) -> None:
    kind = {
        "order.place": RecordKind.ORDER_NEW,
        "order.cancel": RecordKind.ORDER_CANCEL,
        "order.cancelReplace": RecordKind.ORDER_REPLACE,
    }[method]
    rec = order(kind, **fields)
    build = {
        "order.place": codec.place_params,
        "order.cancel": codec.cancel_params,
        "order.cancelReplace": codec.replace_params,
    }[method]
    params = msgspec.json.decode(msgspec.json.encode(build(rec, TABLE)))  # as the venue sees them
    back = np.zeros(1, ORDER_REQUEST)
    assert codec.order_from_params(method, params, TABLE, back, ts_recv=0)
    assert int(back["kind"][0]) == kind and int(back["symbol"][0]) == BTC
    assert int(back["cl_ord_id"][0]) == fields["cl_ord_id"]
    if kind is RecordKind.ORDER_CANCEL:
        if fields["exch_order_id"]:
            assert int(back["exch_order_id"][0]) == fields["exch_order_id"]
        else:
            assert int(back["orig_cl_ord_id"][0]) == fields["orig_cl_ord_id"]
        return
    for f in ("price", "qty", "stop_price", "side", "order_type", "tif", "stp"):
        assert int(back[f][0]) == fields[f], f


def test_order_from_params_refuses_bad_input() -> None:
    out = np.zeros(1, ORDER_REQUEST)
    ok = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "quantity": "1", "price": "1"}
    assert codec.order_from_params("order.place", ok, TABLE, out)
    for bad in (
        {**ok, "symbol": "NOPE"},
        {**ok, "side": "UP"},
        {**ok, "price": "1.000000001"},
        {k: v for k, v in ok.items() if k != "type"},
    ):
        assert not codec.order_from_params("order.place", bad, TABLE, out)
    assert not codec.order_from_params("order.status", ok, TABLE, out)


def test_order_response_full_and_reject() -> None:
    full = DECODERS[OrderResponse].decode(
        b'{"symbol":"BTCUSDT","orderId":28,"orderListId":-1,"clientOrderId":"wsn5",'
        b'"transactTime":1507725176595,"price":"0.00000000","origQty":"10.00000000",'
        b'"executedQty":"10.00000000","cummulativeQuoteQty":"39989.00000000","status":"FILLED",'
        b'"timeInForce":"GTC","type":"MARKET","side":"SELL","fills":['
        b'{"price":"4000.00000000","qty":"1.00000000","commission":"4.00000000",'
        b'"commissionAsset":"USDT","tradeId":56},{"price":"3999.00000000","qty":"9.00000000",'
        b'"commission":"35.99100000","commissionAsset":"USDT","tradeId":57}]}'
    )
    out = np.zeros(1, EXECUTION_REPORT)
    assert codec.write_order_response(full, TABLE, out, ts_recv=1)
    r = out[0]
    assert (int(r["cl_ord_id"]), int(r["exch_order_id"]), int(r["trade_id"])) == (5, 28, 57)
    assert (int(r["status"]), int(r["exec_type"]), int(r["side"])) == (
        ExecStatus.FILLED,
        ExecType.TRADE,
        Side.SELL,
    )
    assert int(r["commission"]) == to_fixed("39.991") and int(r["last_px"]) == to_fixed("3999")
    req = order(RecordKind.ORDER_NEW, cl_ord_id=5, side=Side.BUY, price=3, qty=4)
    assert codec.write_reject(req, -2010, out, ts_recv=2, reason=1)
    assert (int(r["status"]), int(r["error_code"]), int(r["cl_ord_id"]), int(r["qty"])) == (
        ExecStatus.REJECTED,
        -2010,
        5,
        4,
    )


def test_exchange_errors() -> None:
    assert isinstance(codec.exchange_error(-1003, "Too many requests", 429, 7.0), RateLimitError)
    banned = codec.exchange_error(-1003, "banned", 418, 120.0)
    assert isinstance(banned, RateLimitError) and banned.retry_after == 120.0
    timeout = codec.exchange_error(-1007, "Timeout", 503)
    assert isinstance(timeout, ExchangeError) and timeout.retriable
    assert not codec.exchange_error(-1121, "Invalid symbol.").retriable
    resp = codec.parse_ws_response(
        b'{"id":"x","status":400,"error":{"code":-2010,"msg":"Account has insufficient balance"}}'
    )
    assert resp is not None
    err = codec.error_of(resp)
    assert err is not None and err.code == -2010 and "insufficient" in str(err)
    body = codec.error_body(b'{"code":-1121,"msg":"Invalid symbol."}')
    assert body is not None and body.code == -1121
    stats = DecodeStats()
    assert codec.parse_ws_response(b'{"status":', stats) is None
    assert stats.as_dict() == {"json": 1}


def test_signed_params_reproduce_doc_signature() -> None:
    # web-socket-api.md, SIGNED request example (HMAC), ASCII symbol
    params = {
        "symbol": "BTCUSDT",
        "side": "SELL",
        "type": "LIMIT",
        "timeInForce": "GTC",
        "quantity": "0.01000000",
        "price": "52000.00",
    }
    signer = HmacSigner("NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j")
    key = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
    out = codec.signed_params(params, key, signer, 1645423376532, recv_window_ms=100)
    assert out["signature"] == "aa1b5712c094bc4e57c05a1a5c1fd8d88dcd628338ea863fec7b88e59fe2db24"
    logon = codec.logon_params(key, signer, 1)
    assert set(logon) == {"apiKey", "timestamp", "signature"}


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**63 - 1) | st.text(alphabet="0123456789.-+e_ \uff11", max_size=14))
def test_fast_fixed_point_agrees_with_fixedpoint(value: int | str) -> None:
    text = from_fixed(value) if isinstance(value, int) else value
    try:
        expected: int | None = to_fixed(text)
    except FixedPointError:
        expected = None
    try:
        got: int | None = codec._fx(text)
    except FixedPointError:
        got = None
    assert got == expected


def test_fixed_to_wire_and_client_ids() -> None:
    assert codec.fixed_to_wire(to_fixed("52000.00")) == "52000"
    assert codec.fixed_to_wire(to_fixed("0.00000001")) == "0.00000001"
    assert codec.fixed_to_wire(0) == "0"
    assert codec.parse_client_order_id(codec.client_order_id(123)) == 123
    for foreign in (None, "", "wsn", "wsnx1", "web_1", "wsn\uff11", "wsn1234567890123456789"):
        assert codec.parse_client_order_id(foreign) == 0


# ----------------------------------------------------------------- fuzzing: never raise, always count

SAMPLES = [
    b'{"stream":"btcusdt@bookTicker","data":{"u":36090299876,"s":"BTCUSDT","b":"28165.47000000",'
    b'"B":"7.98680000","a":"28165.48000000","A":"3.26888000"}}',
    b'{"stream":"btcusdt@trade","data":{"e":"trade","E":1680652800000,"s":"BTCUSDT","t":3071245454,'
    b'"p":"28165.47000000","q":"0.00056000","b":20720542158,"a":20720542592,"T":1680652799999,'
    b'"m":true,"M":true}}',
    b'{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1,"s":"BTCUSDT","U":1,"u":2,'
    b'"b":[["1.0","2"]],"a":[]}}',
    EXEC_REPORT,
    b'{"subscriptionId":0,"event":{"e":"outboundAccountPosition","E":1,"u":2,'
    b'"B":[{"a":"ETH","f":"1.5","l":"0"}]}}',
]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    frame = bytearray(draw(st.sampled_from(SAMPLES)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["cut", "flip", "insert", "delete"]))
        i = draw(st.integers(0, max(0, len(frame) - 1)))
        if op == "cut":
            del frame[i:]
        elif op == "flip" and frame:
            frame[i] = draw(st.integers(0, 255))
        elif op == "insert":
            frame[i:i] = draw(
                st.sampled_from([b'"', b"-", b"9" * 20, b"null", b"{", b"]", b".", b"\xff"])
            )
        elif frame:
            del frame[i : i + draw(st.integers(1, 8))]
    return bytes(frame)


def _never_raises(frame: bytes) -> None:
    m, u = MarketDecoder(TABLE), UserDecoder(TABLE)
    _, mv = slot()
    out = np.zeros(4, ORDER_SLOT)
    m.decode_into(frame, mv, 0)
    u.decode_into(frame, out, 0)
    m.decode_into(frame, bytearray(8), 0)
    # every call is accounted for exactly once
    assert sum(m.stats.counts.values()) == 2 and sum(u.stats.counts.values()) == 1


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_fuzz_mutated_real_frames(frame: bytes) -> None:
    _never_raises(frame)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_random_bytes(frame: bytes) -> None:
    _never_raises(frame)


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False)
        | st.text(max_size=12),
        lambda c: (
            st.lists(c, max_size=4)
            | st.dictionaries(
                st.sampled_from(list("eEsStpqbBaAmcuXxi")) | st.text(max_size=3), c, max_size=6
            )
        ),
        max_leaves=20,
    ),
    st.sampled_from(["btcusdt@bookTicker", "btcusdt@trade", "btcusdt@aggTrade", "x@depth"]),
)
def test_fuzz_wrong_types_inside_valid_envelopes(data: object, stream: str) -> None:
    _never_raises(msgspec.json.encode({"stream": stream, "data": data}))
    _never_raises(msgspec.json.encode({"subscriptionId": 0, "event": data}))
