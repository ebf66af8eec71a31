"""Execution with two accounts, driven inline through its real rings (fast, no venue).

The test stands in for two policies (policy p is bound to account p) and for the
gateway: it reads what execution routes and writes the reports and balance snapshots
the feed would. Checked: per-account limits reject with their reasons without touching
the other account; a session (re)connect asks that account's orders and balances only;
balance snapshots reconcile per account, a difference is reported to that account's
policy only and corrects its position.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks.bench_tick_to_order import INSTRUMENT
from wiresens.actors.execution import Execution
from wiresens.actors.topology import Topology
from wiresens.instruments import InstrumentTable
from wiresens.policy import ClOrdIdGen
from wiresens.records import (
    ACCOUNT_DIFF_FLAG,
    ACCOUNT_SNAPSHOT_END_FLAG,
    ACCOUNT_SNAPSHOT_FLAG,
    ACCOUNT_UPDATE,
    CONTROL_GATEWAY_CONNECTED,
    EXECUTION_REPORT,
    ORDER_REQUEST,
    POSITION_CORRECTED_FLAG,
    POSITION_UPDATE,
    QUERY_BALANCES_FLAG,
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
from wiresens.risk import AccountLimits, RejectReason
from wiresens.shm import Ring, SeqlockSlots, unlink

MID = 65_000 * SCALE
TABLE = InstrumentTable([INSTRUMENT])
BASE = TABLE.asset_index(INSTRUMENT.base)
QUOTE = TABLE.asset_index(INSTRUMENT.quote)


class Rig:
    def __init__(self, tmp: Path, limits: list[AccountLimits]) -> None:
        self.prefix = f"wstest.{uuid.uuid4().hex[:8]}"
        self.topo = Topology(
            self.prefix, 2, 1, md_capacity=256, order_capacity=256, tap_capacity=1 << 16
        )
        self.names = self.topo.create()
        self.status_file = tmp / "execution.json"
        self.ex = Execution(
            prefix=self.prefix,
            policies=2,
            symbol_count=1,
            instruments=[INSTRUMENT],
            cancel_timeout=0.0,
            accounts=["alpha", "beta"],
            account_limits=limits,
            policy_accounts=[0, 1],
            status_file=str(self.status_file),
        )
        self.ex.on_start()
        self.oq = [Ring.attach(self.topo.oq(p), None).producer() for p in range(2)]
        self.er = [Ring.attach(self.topo.er(p), None).consumer() for p in range(2)]
        self.orders = Ring.attach(self.topo.orders, None).consumer()
        self.reports = Ring.attach(self.topo.reports, None).producer()
        tob = SeqlockSlots.attach(self.topo.tob, TOP_OF_BOOK)
        t = new_record(RecordKind.TOP_OF_BOOK)
        t["bid_px"], t["ask_px"], t["bid_qty"], t["ask_qty"] = MID - SCALE, MID + SCALE, 1, 1
        tob.write(0, memoryview(t).cast("B"))
        tob.close()
        self.ids = [ClOrdIdGen(p) for p in range(2)]
        first = self.routed()
        # A (re)started execution asks every account's open orders.
        assert [(int(r["kind"]), int(r["account"]), int(r["flags"])) for r in first] == [
            (RecordKind.ORDER_QUERY, 0, 0),
            (RecordKind.ORDER_QUERY, 1, 0),
        ]

    def order(self, p: int, *, account: int | None = None, qty: int = SCALE // 1000) -> int:
        r = new_record(RecordKind.ORDER_NEW)
        cid = self.ids[p].next()
        r["symbol"], r["cl_ord_id"], r["policy"] = 1, cid, p
        r["account"] = p if account is None else account
        r["qty"], r["price"], r["side"] = qty, MID - 100 * SCALE, Side.BUY
        r["order_type"], r["tif"] = OrderType.LIMIT, TimeInForce.GTC
        assert self.oq[p].try_write(memoryview(r).cast("B"))
        self.ex.do_work()
        return cid

    def routed(self) -> np.ndarray[Any, Any]:
        out = np.zeros(64, ORDER_REQUEST)
        return out[: self.orders.read_into(out)]

    def policy_records(self, p: int) -> list[bytes]:
        out = []
        buf = bytearray(128)
        while self.er[p].try_read(buf):
            out.append(bytes(buf))
        return out

    def rejects(self, p: int) -> list[RejectReason]:
        return [
            RejectReason(int(r["reason"]))
            for b in self.policy_records(p)
            if b[0] == RecordKind.EXECUTION_REPORT
            for r in [np.frombuffer(b, EXECUTION_REPORT)[0]]
            if r["status"] == ExecStatus.REJECTED
        ]

    def report(self, rec: Any) -> None:
        raw = bytes(memoryview(rec).cast("B"))
        assert self.reports.try_write(raw + bytes(128 - len(raw)))
        self.ex.do_work()

    def ack(self, req: Any, fill: int = 0) -> None:
        rep = new_record(RecordKind.EXECUTION_REPORT)
        for f in ("symbol", "cl_ord_id", "price", "qty", "side", "policy", "account"):
            rep[f] = req[f]
        rep["status"], rep["exec_type"], rep["trade_id"] = ExecStatus.NEW, ExecType.NEW, -1
        self.report(rep)
        if fill:
            rep["status"], rep["exec_type"], rep["trade_id"] = (
                ExecStatus.PARTIALLY_FILLED,
                ExecType.TRADE,
                1,
            )
            rep["last_qty"], rep["last_px"], rep["cum_qty"] = fill, req["price"], fill
            rep["cum_quote"] = fill * int(req["price"]) // SCALE
            self.report(rep)

    def snapshot(self, account: int, balances: dict[int, tuple[int, int]]) -> None:
        items = list(balances.items()) or [(0, (0, 0))]
        for i, (asset, (free, locked)) in enumerate(items):
            a = new_record(RecordKind.ACCOUNT_UPDATE)
            a["flags"] = ACCOUNT_SNAPSHOT_FLAG | (
                ACCOUNT_SNAPSHOT_END_FLAG if i == len(items) - 1 else 0
            )
            a["account"], a["asset"], a["free"], a["locked"] = account, asset, free, locked
            self.report(a)

    def status(self) -> dict[str, Any]:
        return {a["name"]: a for a in json.loads(self.status_file.read_text())["accounts"]}

    def close(self) -> None:
        for n in self.names:
            unlink(n)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    r = Rig(tmp_path, [AccountLimits(), AccountLimits(max_open_orders=2)])
    yield r
    r.close()


def test_account_limits_apply_to_their_account_only(tmp_path: Path) -> None:
    notional = (MID - 100 * SCALE) * (SCALE // 1000) // SCALE  # one order's
    r = Rig(tmp_path, [AccountLimits(max_open_notional=2 * notional), AccountLimits()])
    try:
        r.order(0)
        r.order(0)
        assert r.rejects(0) == []
        r.order(0)
        assert r.rejects(0) == [RejectReason.ACCOUNT_MAX_NOTIONAL]
        for _ in range(4):  # beta has no limits
            r.order(1)
        assert r.rejects(1) == []
        routed = r.routed()
        assert [int(x["account"]) for x in routed] == [0, 0, 1, 1, 1, 1]
        # A fill frees room: leaves, not the original quantity, count.
        r.ack(routed[0], fill=SCALE // 2000)
        r.ack(routed[1])
        r.order(0, qty=SCALE // 2000)
        assert r.rejects(0) == []
    finally:
        r.close()


def test_max_open_orders_per_account_and_unknown_account(rig: Rig) -> None:
    rig.order(1)
    rig.order(1)
    rig.order(1)
    assert rig.rejects(1) == [RejectReason.ACCOUNT_MAX_OPEN_ORDERS]
    rig.order(0)
    rig.order(0)
    rig.order(0)
    assert rig.rejects(0) == []
    rig.order(0, account=7)
    assert rig.rejects(0) == [RejectReason.UNKNOWN_ACCOUNT]
    assert RejectReason.UNKNOWN_ACCOUNT.text.startswith("the request names an account")


def test_connect_reconciles_that_account_only(rig: Rig) -> None:
    beta_order = rig.order(1)
    rig.ack(rig.routed()[0])
    ctl = new_record(RecordKind.CONTROL)
    ctl["command"], ctl["target"] = CONTROL_GATEWAY_CONNECTED, 1
    rig.report(ctl)
    asked = [(int(r["account"]), int(r["orig_cl_ord_id"]), int(r["flags"])) for r in rig.routed()]
    assert asked == [(1, beta_order, 0), (1, 0, 0), (1, 0, QUERY_BALANCES_FLAG)]


def test_balance_differences_are_reported_to_that_accounts_policy(rig: Rig) -> None:
    rig.snapshot(0, {BASE: (2 * SCALE, 0), QUOTE: (100_000 * SCALE, 0)})
    rig.snapshot(1, {BASE: (SCALE, 0), QUOTE: (50_000 * SCALE, 0)})
    assert rig.status()["alpha"]["reconciles"] == 1
    # Alpha's own order fills 0.0005 BTC at its price, part of the rest is locked.
    rig.order(0)
    req = rig.routed()[0]
    half = SCALE // 2000
    rig.ack(req, fill=half)
    paid = half * int(req["price"]) // SCALE
    locked = (SCALE // 1000 - half) * int(req["price"]) // SCALE
    rig.policy_records(0)
    rig.snapshot(0, {BASE: (2 * SCALE + half, 0), QUOTE: (100_000 * SCALE - paid - locked, locked)})
    assert rig.status()["alpha"]["differences"] == 0
    assert rig.policy_records(0) == []
    # Beta: 10 USDT gone and 0.25 BTC more than execution knows of.
    rig.snapshot(1, {BASE: (SCALE + SCALE // 4, 0), QUOTE: (49_990 * SCALE, 0)})
    got = rig.policy_records(1)
    diffs = [
        np.frombuffer(b[:64], ACCOUNT_UPDATE)[0] for b in got if b[0] == RecordKind.ACCOUNT_UPDATE
    ]
    assert sorted((int(d["asset"]), int(d["free"]), int(d["locked"])) for d in diffs) == sorted(
        [(BASE, SCALE + SCALE // 4, SCALE // 4), (QUOTE, 49_990 * SCALE, -10 * SCALE)]
    )
    assert {(int(d["flags"]), int(d["account"])) for d in diffs} == {(ACCOUNT_DIFF_FLAG, 1)}
    (pos,) = [
        np.frombuffer(b[:64], POSITION_UPDATE)[0] for b in got if b[0] == RecordKind.POSITION_UPDATE
    ]
    assert int(pos["flags"]) == POSITION_CORRECTED_FLAG
    assert (int(pos["policy"]), int(pos["qty"]), int(pos["avg_px"])) == (1, SCALE // 4, MID)
    assert rig.ex.positions.get(1, 1).qty == SCALE // 4
    assert rig.policy_records(0) == []
    st = rig.status()
    assert (st["beta"]["differences"], st["beta"]["positions_corrected"]) == (2, 1)
    assert st["alpha"]["differences"] == 0
    # Reported once: the venue's figures are execution's now.
    rig.snapshot(1, {BASE: (SCALE + SCALE // 4, 0), QUOTE: (49_990 * SCALE, 0)})
    assert rig.status()["beta"]["differences"] == 2
    assert rig.policy_records(1) == []
