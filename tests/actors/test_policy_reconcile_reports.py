"""Reconciliation's reports reach the PolicyObject through the policy host.

Execution sends a policy an ACCOUNT_UPDATE (ACCOUNT_DIFF_FLAG) when the exchange's
balance differs from the node's, and a POSITION_UPDATE (POSITION_CORRECTED_FLAG) when
it corrected the policy's position; the host must hand both to the object
(``on_account`` / ``on_position``) and the object's ``positions`` must show the
correction. The host runs inline; the test writes the records into its report ring as
execution would.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from benchmarks.bench_tick_to_order import INSTRUMENT
from wiresens.actors.policy_host import PolicyHost
from wiresens.actors.topology import Topology
from wiresens.policy import PolicyObject
from wiresens.records import (
    ACCOUNT_DIFF_FLAG,
    ACCOUNT_SNAPSHOT_FLAG,
    POSITION_CORRECTED_FLAG,
    SCALE,
    RecordKind,
    new_record,
)
from wiresens.shm import Producer, Ring, list_segments, unlink


class Recorder(PolicyObject):
    """Keeps what the reconciliation hooks received."""

    def on_start(self) -> None:
        self.accounts: list[tuple[int, int, int]] = []
        self.corrections: list[tuple[int, int]] = []

    def on_account(self, update: Any) -> None:
        self.accounts.append((int(update["asset"]), int(update["free"]), int(update["locked"])))

    def on_position(self, update: Any) -> None:
        sym = int(update["symbol"])
        self.corrections.append((sym, self.positions.get(self.policy_id, sym).qty))


@pytest.fixture
def host() -> Iterator[tuple[PolicyHost, Producer]]:
    prefix = f"wstest.{uuid.uuid4().hex[:8]}"
    topo = Topology(prefix, 1, 1, md_capacity=64, order_capacity=64)
    names = topo.create()
    h = PolicyHost(
        prefix=prefix,
        policies=1,
        symbol_count=1,
        instruments=[INSTRUMENT],
        policy_index=0,
        policy_name="rec",
        policy_class=f"{__file__}:Recorder",
        symbols=[1],
    )
    h.on_start()
    er = Ring.attach(topo.er(0), None).producer()
    try:
        yield h, er
    finally:
        h.on_stop()
        for n in names:
            unlink(n)
    assert list_segments(prefix) == []


def _send(er: Producer, rec: Any) -> None:
    raw = bytes(memoryview(rec).cast("B"))
    assert er.try_write(memoryview(raw + bytes(128 - len(raw))))


def test_balance_difference_and_position_correction_reach_the_policy(
    host: tuple[PolicyHost, Producer],
) -> None:
    h, er = host
    policy: Any = h.policy
    # Loaded by path as the node loads it: a class of another module object than ours.
    assert type(policy).__name__ == "Recorder"
    pid = policy.policy_id
    # A user-data balance event (no diff flag) is not a reconciliation result.
    plain = new_record(RecordKind.ACCOUNT_UPDATE)
    plain["flags"], plain["asset"], plain["free"] = ACCOUNT_SNAPSHOT_FLAG, 2, SCALE
    _send(er, plain)
    diff = new_record(RecordKind.ACCOUNT_UPDATE)
    diff["flags"], diff["asset"], diff["free"], diff["locked"] = (
        ACCOUNT_DIFF_FLAG,
        2,
        3 * SCALE // 2,
        SCALE // 2,
    )
    _send(er, diff)
    pos = new_record(RecordKind.POSITION_UPDATE)
    pos["flags"], pos["symbol"], pos["policy"] = POSITION_CORRECTED_FLAG, 1, pid
    pos["qty"], pos["avg_px"], pos["realized_pnl"] = SCALE // 2, 65_000 * SCALE, 7 * SCALE
    _send(er, pos)
    assert h.do_work() >= 3
    assert policy.accounts == [(2, 3 * SCALE // 2, SCALE // 2)]
    assert policy.corrections == [(1, SCALE // 2)]
    corrected = policy.positions.get(pid, 1)
    assert corrected.avg_px == 65_000 * SCALE
    assert corrected.realized_pnl == 7 * SCALE
    # The corrected position goes on from there: selling it all at 65,100 realizes 50.
    corrected.apply_fill(2, SCALE // 2, 65_100 * SCALE)
    assert corrected.qty == 0 and corrected.realized_pnl == 57 * SCALE
