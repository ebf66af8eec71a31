"""OrderEncoder: the fast ``order.place`` path sends exactly what the general path sends."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from wiresens.binance.codec import encode_request, place_params
from wiresens.binance.orders import OrderEncoder
from wiresens.instruments import Instrument, InstrumentTable
from wiresens.records import OrderType, RecordKind, Side, TimeInForce, new_record

TABLE = InstrumentTable(
    [
        Instrument(symbol="BTCUSDT", base="BTC", quote="USDT", status="TRADING"),
        Instrument(symbol="ETHUSDT", base="ETH", quote="USDT", status="TRADING"),
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    sym=st.sampled_from([1, 2]),
    side=st.sampled_from(list(Side)),
    otype=st.sampled_from([OrderType.LIMIT, OrderType.LIMIT_MAKER, OrderType.MARKET]),
    tif=st.sampled_from(list(TimeInForce)),
    qty=st.integers(1, 10**15),
    price=st.integers(0, 10**16),
    cl=st.integers(1, 2**62),
)
def test_fast_place_equals_general(
    sym: int, side: Side, otype: OrderType, tif: TimeInForce, qty: int, price: int, cl: int
) -> None:
    rec = new_record(RecordKind.ORDER_NEW)
    rec["symbol"], rec["side"], rec["order_type"], rec["tif"] = sym, side, otype, tif
    rec["qty"], rec["price"], rec["cl_ord_id"] = qty, price, cl
    raw = memoryview(rec).cast("B")
    enc = OrderEncoder(TABLE, clock_ms=lambda: 1_700_000_000_000)
    fast = enc.encode(raw)
    assert fast is not None
    general = place_params(bytes(raw), TABLE)
    general["timestamp"] = 1_700_000_000_000
    general["recvWindow"] = 5000
    want = json.loads(encode_request(1, "order.place", general))
    assert json.loads(fast) == want
    assert enc.resolve(1) == bytes(raw)


def test_stop_orders_and_stp_take_the_general_path() -> None:
    rec = new_record(RecordKind.ORDER_NEW)
    rec["symbol"], rec["side"], rec["order_type"], rec["tif"] = (
        1,
        Side.SELL,
        OrderType.LIMIT,
        TimeInForce.GTC,
    )
    rec["qty"], rec["price"], rec["cl_ord_id"], rec["stp"] = 1000, 10**12, 5, 3
    frame = OrderEncoder(TABLE).encode(memoryview(rec).cast("B"))
    assert frame is not None
    assert json.loads(frame)["params"]["selfTradePreventionMode"] == "EXPIRE_MAKER"
