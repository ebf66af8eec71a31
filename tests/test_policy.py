"""PolicyObject API: actions as ORDER_REQUEST records, reports into open orders and positions."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
import structlog

from wiresens.logging import configure_logging, log_file_path
from wiresens.oms import Outcome
from wiresens.policy import (
    IOC,
    MARKET,
    BookView,
    BufferSink,
    ClOrdIdGen,
    EmptyParams,
    OrderSink,
    PolicyContext,
    PolicyObject,
    ProducerSink,
    TopOfBook,
)
from wiresens.records import (
    EXECUTION_REPORT,
    ORDER_REQUEST,
    ORDER_SLOT,
    ExecStatus,
    ExecType,
    RecordKind,
    Side,
    TimeInForce,
    new_record,
)
from wiresens.shm import Ring


class Recorder(PolicyObject):
    """Records what reached each hook."""

    class Params(msgspec.Struct, frozen=True):
        size: int = 1

    def on_start(self) -> None:
        self.calls: list[tuple[Any, ...]] = [("start",)]

    def on_book(self, symbol: int, book: BookView) -> None:
        self.calls.append(("book", symbol, book.bid_px, book.ask_px))

    def on_trade(self, symbol: int, trade: Any) -> None:
        self.calls.append(("trade", symbol, int(trade["price"])))

    def on_execution(self, report: Any) -> None:
        self.calls.append(("exec", int(report["status"]), self.order_for(report)))

    def on_timer(self, now_ns: int) -> None:
        self.calls.append(("timer", now_ns))

    def on_stop(self) -> None:
        self.calls.append(("stop",))


def make(sink: Any = None, policy_id: int = 7, cls: type[PolicyObject] = Recorder) -> Any:
    ctx = PolicyContext(
        policy_id=policy_id, name="rec", sink=sink or BufferSink(), account=2, clock=lambda: 123
    )
    obj = cls(None, ctx)
    obj.start()
    return obj


def exec_report(
    cid: int,
    status: ExecStatus,
    exec_type: ExecType,
    *,
    policy: int = 7,
    side: Side = Side.BUY,
    trade_id: int = 0,
    last_qty: int = 0,
    last_px: int = 0,
    cum_qty: int = 0,
) -> np.void:
    r = new_record(RecordKind.EXECUTION_REPORT)[0]
    r["cl_ord_id"], r["policy"], r["side"], r["status"], r["exec_type"] = (
        cid,
        policy,
        side,
        status,
        exec_type,
    )
    r["trade_id"], r["last_qty"], r["last_px"], r["cum_qty"] = trade_id, last_qty, last_px, cum_qty
    return r


def test_cl_ord_id_layout_and_uniqueness() -> None:
    gen = ClOrdIdGen(5, now_s=1_700_000_000)
    ids = [gen.next() for _ in range(1000)]
    assert len(set(ids)) == 1000 and all(0 < i < 2**63 for i in ids)
    assert all(ClOrdIdGen.policy_of(i) == 5 for i in ids)
    assert (ids[0] >> 24) & 0xFFFFFF == 1_700_000_000 & 0xFFFFFF
    assert ids[0] & 0xFFFFFF == 1
    # A restart in the same second is pushed past the previous run's epoch.
    again = ClOrdIdGen(5, min_epoch=gen.epoch + 1, now_s=1_700_000_000)
    assert not set(ids) & {again.next() for _ in range(1000)}
    # Counter exhaustion moves to a later epoch instead of wrapping.
    gen._counter = (1 << 24) - 2
    last, rolled = gen.next(), gen.next()
    assert last & 0xFFFFFF == (1 << 24) - 1 and rolled & 0xFFFFFF == 1
    assert gen.epoch > 1_700_000_000 and rolled != ids[0]
    with pytest.raises(ValueError, match="policy id 256"):
        ClOrdIdGen(256)


def test_params_default_and_type_check() -> None:
    p = make()
    assert p.params == Recorder.Params(size=1)
    assert PolicyObject.Params is EmptyParams
    with pytest.raises(TypeError, match="expects params of type Params"):
        Recorder(EmptyParams(), PolicyContext(policy_id=0, name="x", sink=BufferSink()))


def test_actions_write_order_requests() -> None:
    sink = BufferSink()
    assert isinstance(sink, OrderSink)
    p = make(sink)
    a = p.buy(1, 300, 5000)
    b = p.sell(0, 200, 0, tif=IOC, order_type=MARKET)
    assert a and b and a != b
    recs = sink.records
    assert recs.dtype == ORDER_REQUEST and len(recs) == 2
    assert list(recs["kind"]) == [RecordKind.ORDER_NEW] * 2
    assert list(recs["cl_ord_id"]) == [a, b]
    assert list(recs["side"]) == [Side.BUY, Side.SELL]
    assert list(recs["tif"]) == [TimeInForce.GTC, TimeInForce.IOC]
    assert list(recs["policy"]) == [7, 7] and list(recs["account"]) == [2, 2]
    assert list(recs["ts_pub"]) == [123, 123]
    assert set(p.open_orders.open) == {a, b}

    assert p.cancel(a)
    assert not p.cancel(a)  # already cancelling
    assert not p.cancel(999)
    new = p.replace(b, 150, 10)
    assert new and new not in (a, b)
    cancel, replace = sink.records[2], sink.records[3]
    assert (cancel["kind"], cancel["orig_cl_ord_id"]) == (RecordKind.ORDER_CANCEL, a)
    assert (replace["kind"], replace["orig_cl_ord_id"], replace["cl_ord_id"]) == (
        RecordKind.ORDER_REPLACE,
        b,
        new,
    )
    assert (replace["qty"], replace["price"], replace["side"]) == (150, 10, Side.SELL)
    assert p.open_orders.get(b).status == ExecStatus.PENDING_CANCEL
    assert p.open_orders.get(new).status == ExecStatus.PENDING_NEW
    with pytest.raises(ValueError, match="positive"):
        p.buy(0, 0, 1)


def test_back_pressure_returns_zero_and_tracks_nothing() -> None:
    p = make(BufferSink(capacity=1))
    assert p.buy(0, 1, 1)
    assert p.buy(0, 1, 1) == 0
    assert p.rejected_submits == 1 and len(p.open_orders) == 1
    (cid,) = p.open_orders.open
    assert not p.cancel(cid)
    assert p.open_orders.get(cid).status == ExecStatus.PENDING_NEW


def test_reports_update_orders_positions_then_hook() -> None:
    p = make()
    cid = p.buy(0, 10, 100)
    assert p.deliver_execution(exec_report(cid, ExecStatus.NEW, ExecType.NEW)) == Outcome.APPLIED
    fill = exec_report(
        cid,
        ExecStatus.PARTIALLY_FILLED,
        ExecType.TRADE,
        trade_id=1,
        last_qty=4,
        last_px=99,
        cum_qty=4,
    )
    assert p.deliver_execution(fill) == Outcome.APPLIED
    assert p.deliver_execution(fill) == Outcome.DUPLICATE
    assert p.deliver_execution(exec_report(12345, ExecStatus.NEW, ExecType.NEW)) == (
        Outcome.UNKNOWN_ORDER
    )
    assert p.position(0) == 4 and p.positions.get(7, 0).avg_px == 99
    execs = [c for c in p.calls if c[0] == "exec"]
    assert [c[1] for c in execs] == [ExecStatus.NEW, ExecStatus.PARTIALLY_FILLED]
    assert execs[-1][2].cl_ord_id == cid and execs[-1][2].cum_qty == 4
    # Binance reports a cancel under the cancel request's id, the order's in orig.
    assert p.cancel(cid)
    cancel_id = int(p.context.sink.records[-1]["cl_ord_id"])
    cancel = exec_report(cancel_id, ExecStatus.CANCELED, ExecType.CANCELED, cum_qty=4)
    cancel["orig_cl_ord_id"] = cid
    assert p.deliver_execution(cancel) == Outcome.APPLIED
    assert p.calls[-1][2].cl_ord_id == cid and p.calls[-1][2].status == ExecStatus.CANCELED
    assert len(p.open_orders) == 0


def test_raw_report_path_matches_the_record_path() -> None:
    p, q = make(), make()
    cid_p, cid_q = p.buy(0, 10, 100), q.buy(0, 10, 100)
    assert cid_p & 0xFFFFFF == cid_q & 0xFFFFFF
    arr = np.zeros(1, EXECUTION_REPORT)
    raw = arr.data.cast("B")
    for status, et, tid, last, cum in [
        (ExecStatus.NEW, ExecType.NEW, 0, 0, 0),
        (ExecStatus.PARTIALLY_FILLED, ExecType.TRADE, 1, 4, 4),
        (ExecStatus.PARTIALLY_FILLED, ExecType.TRADE, 1, 4, 4),
        (ExecStatus.FILLED, ExecType.TRADE, 2, 6, 10),
    ]:
        r = exec_report(cid_p, status, et, trade_id=tid, last_qty=last, last_px=100, cum_qty=cum)
        arr[0] = r
        arr[0]["cl_ord_id"] = cid_q
        assert p.deliver_execution(r) == q.deliver_execution(arr[0], raw)
    assert p.position(0) == q.position(0) == 10
    assert [c[:2] for c in p.calls] == [c[:2] for c in q.calls]


def test_hooks_in_order_and_exceptions_propagate() -> None:
    p = make()
    book = TopOfBook(bid_px=1, bid_qty=2, ask_px=3, ask_qty=4)
    p.deliver_book(1, book)
    trade = new_record(RecordKind.TRADE)[0]
    trade["price"] = 77
    p.deliver_trade(1, trade)
    p.deliver_timer(555)
    p.stop()
    assert p.calls == [
        ("start",),
        ("book", 1, 1, 3),
        ("trade", 1, 77),
        ("timer", 555),
        ("stop",),
    ]

    class Broken(PolicyObject):
        def on_book(self, symbol: int, book: BookView) -> None:
            raise RuntimeError("bug in strategy")

    b = make(cls=Broken)
    with pytest.raises(RuntimeError, match="bug in strategy"):
        b.deliver_book(0, book)


def test_cancel_all_and_top_of_book_update() -> None:
    p = make()
    ids = [p.buy(0, 1, 1), p.buy(1, 1, 1), p.sell(1, 1, 2)]
    assert p.cancel_all(symbol=1) == 2
    assert p.open_orders.get(ids[0]).status == ExecStatus.PENDING_NEW
    tob = new_record(RecordKind.TOP_OF_BOOK)[0]
    tob["bid_px"], tob["ask_px"], tob["bid_qty"], tob["ask_qty"], tob["ts_recv"] = 5, 6, 7, 8, 9
    view = TopOfBook()
    view.update(tob)
    assert (view.bid_px, view.ask_px, view.bid_qty, view.ask_qty, view.ts) == (5, 6, 7, 8, 9)


def test_producer_sink_over_a_real_ring() -> None:
    name = f"wiresens-test-policy-{os.getpid()}"
    ring = Ring.create(name, ORDER_SLOT, 4)
    try:
        p = make(ProducerSink(ring.producer()))
        ids = [p.buy(0, 5, 10) for _ in range(5)]
        assert ids[:4] == [i for i in ids[:4] if i] and ids[4] == 0  # the fifth finds it full
        consumer = ring.consumer()
        out = np.zeros(1, ORDER_REQUEST)
        raw = out.data.cast("B")
        got = []
        while consumer.try_read(raw):
            got.append(int(out[0]["cl_ord_id"]))
        assert got == ids[:4]
        assert EXECUTION_REPORT.itemsize == ORDER_REQUEST.itemsize  # one slot type for both
    finally:
        ring.close()
        ring.unlink()


def test_policy_logger_is_bound_to_its_name(tmp_path: Path) -> None:
    configure_logging("n", "policy", policy="rec", target="file", run_dir=tmp_path)
    try:
        p = make()
        p.log.info("quoting", spread=3)
        line = log_file_path(tmp_path, "policy", "rec").read_text()
        assert '"wiresens_policy": "rec"' in line and '"spread": 3' in line
    finally:
        structlog.reset_defaults()
