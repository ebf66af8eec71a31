"""The policy host and execution actors, driven inline and as spawned processes.

One ``host`` fixture runs each test both ways: ``inline`` calls the actors' hooks
from the test's own loop (what the back-tester does), ``process`` spawns them
under a StrategyMaster. The bench feed writes top-of-book records; the test reads
what execution routes to the gateway's order ring and answers with reports.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from benchmarks.bench_tick_to_order import INSTRUMENT
from wiresens.actors.actor import ActorSpec
from wiresens.actors.execution import Execution
from wiresens.actors.master import StrategyMaster
from wiresens.actors.policy_host import PolicyHost
from wiresens.actors.topology import Topology
from wiresens.records import (
    EXECUTION_REPORT,
    ORDER_REQUEST,
    SCALE,
    ExecStatus,
    ExecType,
    RecordKind,
    new_record,
)
from wiresens.risk import RejectReason
from wiresens.shm import Ring, list_segments, unlink

POLICY = "benchmarks.bench_tick_to_order:TickTaker"


class Harness:
    """Rings of one policy plus a way to run both actors for a while."""

    def __init__(self, host: str, prefix: str) -> None:
        self.host = host
        self.topo = Topology(prefix, 1, 1, md_capacity=1024, order_capacity=1024)
        self.names = self.topo.create()
        kw = {"prefix": prefix, "policies": 1, "symbol_count": 1, "instruments": [INSTRUMENT]}
        self.policy_kw = {
            **kw,
            "policy_index": 0,
            "policy_name": "t",
            "policy_class": POLICY,
            "symbols": [1],
        }
        self.exec_kw = {**kw, "cancel_timeout": 2.0}
        self.md = Ring.attach(self.topo.md(0), None).producer()
        self.orders = Ring.attach(self.topo.orders, None).consumer()
        self.reports = Ring.attach(self.topo.reports, None).producer()
        self.master: StrategyMaster | None = None
        self.actors: list[Any] = []

    def start(self) -> None:
        if self.host == "inline":
            self.actors = [PolicyHost(**self.policy_kw), Execution(**self.exec_kw)]
            for a in self.actors:
                a.on_start()
            return
        specs = [
            ActorSpec(
                name="policy",
                group="policy",
                factory="wiresens.actors.policy_host:PolicyHost",
                idle="yield",
                kwargs=self.policy_kw,
            ),
            ActorSpec(
                name="execution",
                group="execution",
                factory="wiresens.actors.execution:Execution",
                idle="yield",
                kwargs=self.exec_kw,
            ),
        ]
        self.master = StrategyMaster(self.topo.prefix, specs, max_restarts=0)
        self.master.owned_segments.extend(self.names)
        self.master.start()

    def pump(self, until: Callable[[], bool], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not until():
            assert time.monotonic() < deadline, "timed out"
            if self.actors:
                for a in self.actors:
                    a.do_work()
            else:
                assert self.master is not None
                assert not self.master.poll(), self.master.events
                time.sleep(0.001)

    def tick(self, bid: int) -> None:
        rec = new_record(RecordKind.TOP_OF_BOOK)
        rec["symbol"] = 1
        rec["bid_px"], rec["bid_qty"], rec["ask_px"], rec["ask_qty"] = (
            bid,
            SCALE,
            bid + SCALE,
            SCALE,
        )
        rec["ts_recv"] = time.time_ns()
        assert self.md.try_write(memoryview(rec).cast("B"))

    def stop(self) -> None:
        if self.master is not None:
            self.master.stop()
            self.master.close()
        else:
            for a in reversed(self.actors):
                if hasattr(a, "cancel_timeout"):
                    a.cancel_timeout = 0.0
                a.on_stop()
        for n in self.names:
            unlink(n)


@pytest.fixture(params=["inline", "process"])
def harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    prefix = f"wstest.{uuid.uuid4().hex[:8]}"
    h = Harness(request.param, prefix)
    h.start()
    yield h
    h.stop()
    assert list_segments(prefix) == []


def _orders(h: Harness, n: int) -> np.ndarray[Any, Any]:
    out = np.zeros(n, ORDER_REQUEST)
    got = [0]

    def have() -> bool:
        got[0] += h.orders.read_into(out[got[0] :])
        return got[0] >= n

    h.pump(have)
    return out


def _startup_query(h: Harness) -> None:
    """A (re)started execution first asks the gateway for every open order."""
    q = _orders(h, 1)[0]
    assert q["kind"] == RecordKind.ORDER_QUERY and q["orig_cl_ord_id"] == 0


def test_ticks_become_routed_orders_and_reports_reach_the_policy(harness: Harness) -> None:
    h = harness
    _startup_query(h)
    bid = 65_000 * SCALE
    h.tick(bid)
    first = _orders(h, 1)[0]
    assert first["kind"] == RecordKind.ORDER_NEW
    assert first["price"] == bid and first["qty"] == SCALE // 1000
    assert first["ts_recv"] > 0  # the tick's stamp travels with the order
    # Acknowledge it as the gateway would; the policy's next tick then cancels it.
    rep = new_record(RecordKind.EXECUTION_REPORT)
    for f in ("symbol", "cl_ord_id", "price", "qty", "side", "policy"):
        rep[f] = first[f]
    rep["status"], rep["exec_type"], rep["exch_order_id"] = ExecStatus.NEW, ExecType.NEW, 7
    assert h.reports.try_write(memoryview(rep).cast("B"))
    h.tick(bid + SCALE // 100)
    second = _orders(h, 1)[0]
    assert second["kind"] == RecordKind.ORDER_CANCEL
    assert second["orig_cl_ord_id"] == first["cl_ord_id"]


def test_filter_violation_is_rejected_to_the_policy_not_routed(harness: Harness) -> None:
    h = harness
    _startup_query(h)
    # A bid off the 0.01 tick: execution must reject it (PRICE_FILTER) and send nothing.
    h.tick(65_000 * SCALE + 1)
    er = Ring.attach(h.topo.er(0), None)
    h.pump(lambda: er.stats().read >= 1)
    # The report went to the policy (the policy host consumes er.0); nothing to the gateway.
    assert h.orders.available() == 0
    if h.host == "inline":
        execution = h.actors[1]
        assert execution.rejected == 1
        policy = h.actors[0].policy
        assert policy is not None and not policy.open_orders.open
    er.close()


def test_reject_reason_texts_are_complete() -> None:
    assert all(r.text or r is RejectReason.NONE for r in RejectReason)
    assert EXECUTION_REPORT.itemsize == 128
