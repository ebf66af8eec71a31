"""Execution's pre-trade limits and kill switch, driven inline through its real rings.

The test stands in for a policy (it writes ORDER_REQUEST records into the Opportunity
Queue) and for the gateway (it reads the order ring and writes execution reports).
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from benchmarks.bench_tick_to_order import INSTRUMENT
from wiresens.actors.execution import Execution
from wiresens.actors.topology import Topology
from wiresens.records import (
    CONTROL_KILL,
    CONTROL_RESUME,
    EXECUTION_REPORT,
    ORDER_REQUEST,
    SCALE,
    TOP_OF_BOOK,
    ExecStatus,
    ExecType,
    OrderType,
    RecordKind,
    Side,
    TimeInForce,
    new_record,
)
from wiresens.risk import RejectReason, RiskLimits
from wiresens.shm import Ring, SeqlockSlots, unlink

MID = 65_000 * SCALE
_ids = itertools.count(1)


class Rig:
    def __init__(self, limits: RiskLimits, **kill: Any) -> None:
        self.prefix = f"wstest.{uuid.uuid4().hex[:8]}"
        self.topo = Topology(
            self.prefix, 1, 1, md_capacity=256, order_capacity=256, tap_capacity=1 << 16
        )
        self.names = self.topo.create()
        self.ex = Execution(
            prefix=self.prefix,
            policies=1,
            symbol_count=1,
            instruments=[INSTRUMENT],
            limits=[limits],
            cancel_timeout=0.0,
            **kill,
        )
        self.ex.on_start()
        self.oq = Ring.attach(self.topo.oq(0), None).producer()
        self.er = Ring.attach(self.topo.er(0), None).consumer()
        self.orders = Ring.attach(self.topo.orders, None).consumer()
        self.reports = Ring.attach(self.topo.reports, None).producer()
        self.ctl = Ring.attach(self.topo.ctl, None).producer()
        tob = SeqlockSlots.attach(self.topo.tob, TOP_OF_BOOK)
        t = new_record(RecordKind.TOP_OF_BOOK)
        t["bid_px"], t["ask_px"], t["bid_qty"], t["ask_qty"] = (
            MID - SCALE,
            MID + SCALE,
            SCALE,
            SCALE,
        )
        tob.write(0, memoryview(t).cast("B"))
        # A (re)started execution first asks the gateway for the exchange's open orders.
        first = self.routed()
        assert len(first) == 1 and first[0]["kind"] == RecordKind.ORDER_QUERY
        assert first[0]["orig_cl_ord_id"] == 0

    def order(
        self,
        *,
        qty: int = SCALE // 1000,
        price: int = MID,
        side: int = Side.BUY,
        kind: RecordKind = RecordKind.ORDER_NEW,
        orig: int = 0,
    ) -> int:
        r = new_record(kind)
        cid = next(_ids)
        r["symbol"], r["cl_ord_id"], r["orig_cl_ord_id"] = 1, cid, orig
        r["qty"], r["price"], r["side"] = qty, price, side
        r["order_type"], r["tif"] = OrderType.LIMIT, TimeInForce.GTC
        assert self.oq.try_write(memoryview(r).cast("B"))
        self.ex.do_work()
        return cid

    def control(self, command: int, target: int = 0) -> None:
        r = new_record(RecordKind.CONTROL)
        r["command"], r["target"] = command, target
        assert self.ctl.try_write(memoryview(r).cast("B"))
        self.ex.do_work()

    def routed(self) -> np.ndarray[Any, Any]:
        out = np.zeros(256, ORDER_REQUEST)
        return out[: self.orders.read_into(out)]

    def rejects(self) -> list[RejectReason]:
        out = np.zeros(256, EXECUTION_REPORT)
        n = self.er.read_into(out)
        return [
            RejectReason(int(r["reason"])) for r in out[:n] if r["status"] == ExecStatus.REJECTED
        ]

    def ack(self, req: Any, status: ExecStatus = ExecStatus.NEW) -> None:
        rep = new_record(RecordKind.EXECUTION_REPORT)
        for f in ("symbol", "cl_ord_id", "price", "qty", "side", "policy"):
            rep[f] = req[f]
        rep["status"], rep["exec_type"] = (
            status,
            ExecType.NEW if status == ExecStatus.NEW else ExecType.CANCELED,
        )
        rep["trade_id"] = -1
        assert self.reports.try_write(memoryview(rep).cast("B"))
        self.ex.do_work()

    def close(self) -> None:
        for n in self.names:
            unlink(n)


@pytest.fixture
def rig_factory() -> Iterator[Any]:
    made: list[Rig] = []

    def make(limits: RiskLimits = RiskLimits(), **kill: Any) -> Rig:
        made.append(Rig(limits, **kill))
        return made[-1]

    yield make
    for r in made:
        r.close()


@pytest.mark.parametrize(
    ("limits", "order", "reason"),
    [
        (RiskLimits(max_order_qty=SCALE // 100), {"qty": SCALE // 10}, RejectReason.MAX_ORDER_QTY),
        (
            RiskLimits(max_order_notional=1000 * SCALE),
            {"qty": SCALE // 10},
            RejectReason.MAX_ORDER_NOTIONAL,
        ),
        (RiskLimits(max_position=SCALE // 1000), {"qty": SCALE // 500}, RejectReason.MAX_POSITION),
        (RiskLimits(price_band_bps=100), {"price": MID * 90 // 100}, RejectReason.PRICE_BAND),
        (RiskLimits(), {"price": MID + 1}, RejectReason.PRICE_TICK),
        (RiskLimits(), {"qty": 1}, RejectReason.QTY_STEP),
        (RiskLimits(), {"qty": SCALE // 100_000, "price": SCALE}, RejectReason.MIN_NOTIONAL),
    ],
)
def test_each_limit_rejects_with_its_reason(
    rig_factory: Any, limits: RiskLimits, order: dict[str, int], reason: RejectReason
) -> None:
    rig = rig_factory(limits)
    rig.order(**order)
    assert rig.rejects() == [reason]
    assert len(rig.routed()) == 0
    rig.order()  # a plain order within every limit still goes out
    assert len(rig.routed()) == 1 and rig.rejects() == []


def test_open_orders_and_position_count_working_orders(rig_factory: Any) -> None:
    rig = rig_factory(RiskLimits(max_open_orders=2, max_position=3 * SCALE // 1000))
    for _ in range(2):
        rig.order()
    assert len(rig.routed()) == 2
    rig.order()
    assert rig.rejects() == [RejectReason.MAX_OPEN_ORDERS]
    # A sell is on the other side: the position limit does not stop it, max_open_orders does.
    rig.order(side=Side.SELL)
    assert rig.rejects() == [RejectReason.MAX_OPEN_ORDERS]


def test_order_rate_windows(rig_factory: Any) -> None:
    rig = rig_factory(RiskLimits(max_orders_per_s=3))
    for _ in range(5):
        rig.order()
    assert len(rig.routed()) == 3
    assert rig.rejects() == [RejectReason.RATE_LIMIT] * 2


def test_kill_switch_cancels_blocks_and_resumes(rig_factory: Any) -> None:
    rig = rig_factory()
    rig.order()
    rig.order()
    sent = rig.routed()
    for req in sent:
        rig.ack(req)
    rig.control(CONTROL_KILL, 1)
    cancels = rig.routed()
    assert sorted(int(c["orig_cl_ord_id"]) for c in cancels) == sorted(
        int(c["cl_ord_id"]) for c in sent
    )
    assert all(c["kind"] == RecordKind.ORDER_CANCEL for c in cancels)
    rig.order()
    assert rig.rejects() == [RejectReason.KILL_SWITCH]
    assert rig.ex.kill.blocks(0)
    rig.control(CONTROL_RESUME, 1)
    rig.order()
    assert len(rig.routed()) == 1 and rig.rejects() == []


def test_reject_storm_engages_the_kill_switch(rig_factory: Any) -> None:
    rig = rig_factory(reject_storm=5)
    for _ in range(5):
        rig.order(price=MID + 1)  # off tick: rejected
    rig.ex._auto_kill(__import__("time").time_ns())
    assert rig.ex.kill.blocks(0)
    rig.rejects()
    rig.order()
    assert rig.rejects() == [RejectReason.KILL_SWITCH]
