"""OMS: the one transition table, duplicate and out-of-order reports, and its invariants."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from wiresens.oms import TERMINAL, TRANSITIONS, Order, OrderTable, Outcome, can_transition
from wiresens.records import (
    ExecStatus,
    ExecType,
    RecordKind,
    Side,
    new_record,
)

S = ExecStatus
QTY = 10


def table_with_order(qty: int = QTY, cid: int = 1, policy: int = 2, account: int = 0) -> OrderTable:
    t = OrderTable()
    assert t.add(
        Order(cid, policy=policy, symbol=0, side=Side.BUY, qty=qty, price=100, account=account)
    )
    return t


def report(
    cid: int,
    status: ExecStatus,
    exec_type: ExecType,
    *,
    trade_id: int = 0,
    last_qty: int = 0,
    cum_qty: int = 0,
    last_px: int = 100,
    orig: int = 0,
) -> np.void:
    r = new_record(RecordKind.EXECUTION_REPORT)[0]
    r["cl_ord_id"] = cid
    r["orig_cl_ord_id"] = orig
    r["status"] = status
    r["exec_type"] = exec_type
    r["trade_id"] = trade_id
    r["last_qty"] = last_qty
    r["last_px"] = last_px
    r["cum_qty"] = cum_qty
    r["side"] = Side.BUY
    return r


def fill(cid: int, trade_id: int, last: int, cum: int, qty: int = QTY) -> np.void:
    status = S.FILLED if cum == qty else S.PARTIALLY_FILLED
    return report(cid, status, ExecType.TRADE, trade_id=trade_id, last_qty=last, cum_qty=cum)


def test_table_shape() -> None:
    assert set(TRANSITIONS) == set(ExecStatus)
    assert {S.FILLED, S.CANCELED, S.REJECTED, S.EXPIRED, S.EXPIRED_IN_MATCH} == TERMINAL
    # Only an unacknowledged order can be rejected; every status is reachable from PENDING_NEW.
    assert [s for s, nxt in TRANSITIONS.items() if S.REJECTED in nxt] == [S.PENDING_NEW]
    reach, frontier = {S.PENDING_NEW}, [S.PENDING_NEW]
    while frontier:
        for nxt in TRANSITIONS[frontier.pop()]:
            if nxt not in reach:
                reach.add(nxt)
                frontier.append(nxt)
    assert reach == set(ExecStatus)
    assert can_transition(S.NEW, S.FILLED) and not can_transition(S.FILLED, S.NEW)
    assert not can_transition(99, S.NEW)


def test_lifecycle_and_views() -> None:
    t = table_with_order(policy=3, account=1)
    assert t.apply(report(1, S.NEW, ExecType.NEW)) == Outcome.APPLIED
    assert t.apply(fill(1, 11, 4, 4)) == Outcome.APPLIED
    order = t.get(1)
    assert order is not None
    assert (order.status, order.cum_qty, order.leaves_qty) == (S.PARTIALLY_FILLED, 4, 6)
    assert list(t.for_policy(3)) == [1] and list(t.for_account(1)) == [1]
    assert t.for_symbol(0) == [order]
    assert t.apply(fill(1, 12, 6, 10)) == Outcome.APPLIED
    assert order.status == S.FILLED and not order.is_open and order.leaves_qty == 0
    assert 1 not in t and t.for_policy(3) == {} and t.get(1) is order
    assert t.outcomes[Outcome.APPLIED] == 3


def test_duplicates_are_idempotent_on_trade_id() -> None:
    t = table_with_order()
    t.apply(report(1, S.NEW, ExecType.NEW))
    assert t.apply(report(1, S.NEW, ExecType.NEW)) == Outcome.DUPLICATE
    assert t.apply(fill(1, 11, 4, 4)) == Outcome.APPLIED
    assert t.apply(fill(1, 11, 4, 4)) == Outcome.DUPLICATE
    order = t.get(1)
    assert order is not None and order.filled_qty == 4
    assert t.outcomes[Outcome.DUPLICATE] == 2


def test_out_of_order_fill_after_terminal_counts_but_keeps_status() -> None:
    t = table_with_order()
    assert t.apply(fill(1, 12, 6, 10)) == Outcome.APPLIED  # FILLED raced ahead
    assert t.apply(fill(1, 11, 4, 4)) == Outcome.STALE_FILL
    assert t.apply(report(1, S.NEW, ExecType.NEW)) == Outcome.DUPLICATE  # late ack
    order = t.get(1)
    assert order is not None
    assert (order.status, order.filled_qty, order.cum_qty) == (S.FILLED, 10, 10)


def test_late_ack_does_not_move_back() -> None:
    t = table_with_order()
    assert t.apply(fill(1, 11, 4, 4)) == Outcome.APPLIED
    assert t.apply(report(1, S.NEW, ExecType.NEW)) == Outcome.DUPLICATE
    assert t.get(1).status == S.PARTIALLY_FILLED  # type: ignore[union-attr]


def test_illegal_reports_change_nothing() -> None:
    t = table_with_order()
    t.apply(fill(1, 11, 4, 4))
    assert t.apply(fill(1, 12, 7, 11)) == Outcome.ILLEGAL  # overfill
    assert t.apply(report(1, S.REJECTED, ExecType.REJECTED, cum_qty=4)) == Outcome.ILLEGAL
    assert t.apply(report(1, S.FILLED, ExecType.NEW, cum_qty=4)) == Outcome.ILLEGAL  # no qty
    t.apply(report(1, S.CANCELED, ExecType.CANCELED, cum_qty=4))
    assert t.apply(report(1, S.EXPIRED, ExecType.EXPIRED, cum_qty=4)) == Outcome.ILLEGAL
    order = t.get(1)
    assert order is not None and (order.status, order.filled_qty) == (S.CANCELED, 4)
    assert t.apply(report(999, S.NEW, ExecType.NEW)) == Outcome.UNKNOWN_ORDER


def test_cancel_report_found_by_orig_id_and_requests() -> None:
    t = table_with_order()
    req = new_record(RecordKind.ORDER_CANCEL)[0]
    req["cl_ord_id"], req["orig_cl_ord_id"] = 50, 1
    assert t.on_request(req)
    assert t.get(1).status == S.PENDING_CANCEL  # type: ignore[union-attr]
    assert t.apply(report(50, S.CANCELED, ExecType.CANCELED, orig=1)) == Outcome.APPLIED
    assert t.get(1).status == S.CANCELED  # type: ignore[union-attr]
    assert not t.on_request(req)  # cancel of a finished order


def test_replace_request_tracks_both_orders() -> None:
    t = table_with_order()
    t.apply(report(1, S.NEW, ExecType.NEW))
    req = new_record(RecordKind.ORDER_REPLACE)[0]
    req["cl_ord_id"], req["orig_cl_ord_id"], req["qty"], req["price"] = 2, 1, 5, 99
    req["side"] = Side.BUY
    assert t.on_request(req)
    assert t.get(1).status == S.PENDING_CANCEL  # type: ignore[union-attr]
    new = t.get(2)
    assert new is not None and (new.status, new.qty, new.orig_cl_ord_id) == (S.PENDING_NEW, 5, 1)
    assert not t.on_request(req)  # the id is taken and the original is already cancelling
    # A cancel rejected by the venue puts the order back to NEW.
    assert t.apply(report(1, S.NEW, ExecType.REJECTED)) == Outcome.APPLIED


def test_done_memory_is_bounded() -> None:
    t = OrderTable(keep_done=3)
    for cid in range(1, 8):
        t.add(Order(cid, policy=0, symbol=0, side=Side.SELL, qty=1, price=1))
        t.apply(report(cid, S.REJECTED, ExecType.REJECTED))
    assert len(t) == 0
    assert [cid for cid in range(1, 8) if t.get(cid) is not None] == [5, 6, 7]


# -- properties ---------------------------------------------------------------------------

reports = st.lists(
    st.tuples(
        st.sampled_from(list(ExecStatus)),
        st.sampled_from(list(ExecType)),
        st.integers(1, 6),  # trade id: a small pool makes duplicates likely
        st.integers(0, 6),  # last qty
        st.integers(0, 14),  # cum qty, sometimes over the order quantity
    ),
    max_size=40,
)


def snapshot(o: Order) -> tuple[Any, ...]:
    return (o.status, o.cum_qty, o.filled_qty, frozenset(o.trade_ids), o.commission)


@settings(max_examples=400, deadline=None)
@given(reports)
def test_no_illegal_transition_is_ever_accepted(seq: list[tuple[Any, ...]]) -> None:
    t = table_with_order()
    order = t.get(1)
    assert order is not None
    for status, exec_type, trade_id, last, cum in seq:
        before = snapshot(order)
        outcome = t.apply(
            report(1, status, exec_type, trade_id=trade_id, last_qty=last, cum_qty=cum)
        )
        after = snapshot(order)
        if outcome in (Outcome.DUPLICATE, Outcome.ILLEGAL):
            assert after == before
        if after[0] != before[0]:
            assert outcome == Outcome.APPLIED
            assert after[0] in TRANSITIONS[ExecStatus(before[0])], (before, after)
        if before[0] in TERMINAL:
            assert after[0] == before[0]
        assert after[1] >= before[1]  # cum_qty monotonic
        assert after[2] >= before[2]
        assert order.filled_qty <= order.qty and order.cum_qty <= order.qty
        assert order.leaves_qty >= 0


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(1, 5), min_size=1, max_size=8),
    st.randoms(use_true_random=False),
)
def test_shuffled_and_duplicated_fills_end_exact(parts: list[int], rng: random.Random) -> None:
    qty = sum(parts)
    t = table_with_order(qty=qty)
    msgs = [report(1, S.NEW, ExecType.NEW)]
    cum = 0
    for i, part in enumerate(parts):
        cum += part
        msgs.append(fill(1, 100 + i, part, cum, qty))
    msgs += [msgs[rng.randrange(len(msgs))] for _ in range(len(parts))]
    rng.shuffle(msgs)
    for m in msgs:
        t.apply(m)
    order = t.get(1)
    assert order is not None
    assert (order.status, order.filled_qty, order.cum_qty) == (S.FILLED, qty, qty)
    assert order.trade_ids == {100 + i for i in range(len(parts))}


@settings(max_examples=200, deadline=None)
@given(reports)
def test_apply_raw_matches_apply(seq: list[tuple[Any, ...]]) -> None:
    by_field, by_bytes = table_with_order(), table_with_order()
    for status, exec_type, trade_id, last, cum in seq:
        r = report(1, status, exec_type, trade_id=trade_id, last_qty=last, cum_qty=cum, orig=3)
        raw = np.array([r]).data.cast("B")
        assert by_field.apply(r) == by_bytes.apply_raw(raw)
        a, b = by_field.get(1), by_bytes.get(1)
        assert a is not None and b is not None and snapshot(a) == snapshot(b)
    assert by_field.outcomes == by_bytes.outcomes
