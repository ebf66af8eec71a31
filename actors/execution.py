"""The execution actor: between the policies' Opportunity Queues and the gateway.

Duty cycle: drain the gateway's reports first (fills free risk room and tell
policies what happened), then each policy's Opportunity Queue: check the
request (exchange filters today; risk limits with the execution-safety issue),
track it in the node-wide :class:`~wiresens.oms.OrderTable`, and forward the
same 128 bytes to the feed's order ring. A rejected request becomes a REJECTED
execution report to its policy with the reason. Reports from the gateway update
the table and positions and are routed to the owning policy's ring.

Nothing is dropped: a report that does not fit its policy's ring waits in a
per-policy backlog that is retried first on the next cycle; a request that
does not fit the order ring is rejected to its policy (QUEUE_FULL), never lost.

Accounts: each request names its account (the policy's); execution checks that
account's limits (:class:`~wiresens.risk.AccountRisk`) and the feed routes the
request to that account's session. When a session (re)connects (CONTROL
GATEWAY_CONNECTED, ``target`` = account) and on the periodic timer, execution
asks for the account's open orders and balances (``account.status``), and
reconciles the balances with its own (:class:`~wiresens.balances.BalanceBook`):
each difference is logged, counted (``status_file``, shown by ``node status``),
reported to the account's policies (ACCOUNT_UPDATE with ACCOUNT_DIFF_FLAG) and,
where it maps to one policy's position, corrects that position (POSITION_UPDATE
with POSITION_CORRECTED_FLAG).

Stop: cancel every open order of the node, then keep draining reports until
none is open or ``cancel_timeout`` passes.
"""

from __future__ import annotations

import json
import os
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np
import structlog

from wiresens.balances import BalanceBook, BalanceDifference
from wiresens.instruments import InstrumentTable
from wiresens.oms import Order, OrderTable
from wiresens.positions import PositionBook
from wiresens.records import (
    ACCOUNT_DIFF_FLAG,
    ACCOUNT_SNAPSHOT_END_FLAG,
    ACCOUNT_SNAPSHOT_FLAG,
    ACCOUNT_UPDATE,
    CONTROL_GATEWAY_CONNECTED,
    CONTROL_KILL,
    CONTROL_RESUME,
    EXECUTION_REPORT,
    ORDER_REQUEST,
    POLICY_STATUS,
    POSITION_CORRECTED_FLAG,
    POSITION_UPDATE,
    QUERY_BALANCES_FLAG,
    SCALE,
    SCHEMA_VERSION,
    STATUS_KILLED_FLAG,
    TOP_OF_BOOK,
    ExecStatus,
    ExecType,
    RecordKind,
    Side,
)
from wiresens.risk import (
    AccountLimits,
    AccountRisk,
    KillState,
    PolicyRisk,
    RateWindow,
    RejectReason,
    RiskLimits,
    check_filters,
)
from wiresens.shm import Consumer, Producer, Ring, SeqlockSlots
from wiresens.taps import Tap

from .actor import Actor
from .topology import Topology

__all__ = ["Execution"]

_NEW = int(RecordKind.ORDER_NEW)
_CANCEL = int(RecordKind.ORDER_CANCEL)
_REPLACE = int(RecordKind.ORDER_REPLACE)
_EXEC = int(RecordKind.EXECUTION_REPORT)
_CONTROL = int(RecordKind.CONTROL)
_ACCT = int(RecordKind.ACCOUNT_UPDATE)
_QUERY = int(RecordKind.ORDER_QUERY)
# int64 word indexes of ORDER_REQUEST fields (records.py).
_W_SYMBOL = 0
_W_CL_ORD_ID, _W_ORIG, _W_EXCH_ID, _W_PRICE, _W_QTY = 4, 5, 6, 7, 8
# Byte offsets of the small ORDER_REQUEST fields.
_FIELDS: Any = ORDER_REQUEST.fields
_B_ORDER_TYPE: int = _FIELDS["order_type"][1]
_B_SIDE: int = _FIELDS["side"][1]
_B_ACCOUNT: int = _FIELDS["account"][1]
_BUY = 1
_TRADE_EXEC = int(ExecType.TRADE)
_PENDING_NEW = int(ExecStatus.PENDING_NEW)
_PENDING_CANCEL = int(ExecStatus.PENDING_CANCEL)
# Binance's codes for "execution status unknown" (an internal error or a timeout behind
# its gateway): the request may have been executed, so the order is queried, never
# assumed rejected.
UNKNOWN_OUTCOME_CODES = frozenset((-1000, -1001, -1006, -1007))
STATUS_EVERY_NS = 250_000_000
LAT_WINDOW = 1024


RESUME_FRESH_SLOT = 1
"""``arg0`` of a policy's CONTROL_RESUME when the node gives the slot to a new policy."""


class Execution(Actor):
    name = "execution"

    def __init__(
        self,
        *,
        prefix: str,
        policies: int,
        symbol_count: int,
        instruments: Sequence[Any] = (),
        cancel_timeout: float = 5.0,
        gateway_stage: str | None = None,
        gateway_kwargs: dict[str, Any] | None = None,
        limits: Sequence[RiskLimits] | None = None,
        loss_limit: int = 0,
        reject_storm: int = 0,
        feed_stale_s: float = 0.0,
        reconcile_interval_s: float = 60.0,
        accounts: Sequence[str] = ("default",),
        account_limits: Sequence[AccountLimits] | None = None,
        policy_accounts: Sequence[int] | None = None,
        status_file: str = "",
        ack_timeout_s: float = 5.0,
    ) -> None:
        self.topo = Topology(prefix, policies, symbol_count)
        self.policies = policies
        self.table = InstrumentTable(instruments)
        # Indexed by the records' symbol (1-based), for the filter checks.
        self.instruments: list[Any] = [None, *self.table]
        self.cancel_timeout = cancel_timeout
        self.gateway_stage_path = gateway_stage
        self.gateway_kwargs = gateway_kwargs or {}
        lims = list(limits or [])
        self.risk = [
            PolicyRisk(lims[p] if p < len(lims) else RiskLimits()) for p in range(policies)
        ]
        self.kill = KillState()
        self.loss_limit = loss_limit
        self.reject_storm = reject_storm
        self.recent_rejects = [
            RateWindow(max(1, reject_storm), 10_000_000_000) for _ in range(policies)
        ]
        self.feed_stale_ns = int(feed_stale_s * 1e9)
        self.kill_events: list[str] = []
        self.reconcile_ns = int(reconcile_interval_s * 1e9)
        self.ack_timeout_ns = int(ack_timeout_s * 1e9)
        self.chased = 0
        self.account_names = list(accounts) or ["default"]
        alims = list(account_limits or [])
        self.account_risk = [
            AccountRisk(alims[a] if a < len(alims) else AccountLimits())
            for a in range(len(self.account_names))
        ]
        # Slots past the list (spare ones a control plane fills later) use account 0.
        pa = list(policy_accounts or [])
        self.policy_accounts = pa + [0] * (policies - len(pa))
        self.status_file = status_file
        self.balances = BalanceBook(
            [(0, 0)]
            + [
                (self.table.asset_index(i.base), self.table.asset_index(i.quote))
                for i in self.table
            ]
        )
        self._snap: dict[int, dict[int, int]] = {}
        self.corrections = [0] * len(self.account_names)
        self.last_differences: list[dict[str, Any]] = []
        self._next_status_file = 0
        self._next_reconcile = time.time_ns() + self.reconcile_ns
        self.oms = OrderTable()
        self.positions = PositionBook()
        self.oq: list[Consumer] = []
        self.er: list[Producer] = []
        self.backlog: list[deque[bytes]] = []
        self.orders: Producer | None = None
        self.reports: Consumer | None = None
        self.stopping = False
        self.restored = 0
        self.queries = 0
        self.adopted = 0
        self._synthetic_trade_id = 0
        self.rejected = 0
        self.forwarded = 0
        self._req = np.zeros(1, ORDER_REQUEST)
        self._req_raw = memoryview(self._req).cast("B")  # type: ignore[arg-type]
        self._req_words = self._req_raw.cast("q")
        self._rep = np.zeros(1, EXECUTION_REPORT)
        self._rep_raw = memoryview(self._rep).cast("B")  # type: ignore[arg-type]
        self._rej = np.zeros(1, EXECUTION_REPORT)
        self._rej_raw = memoryview(self._rej).cast("B")  # type: ignore[arg-type]
        r = self._rej[0]
        r["kind"] = _EXEC
        r["version"] = SCHEMA_VERSION[RecordKind.EXECUTION_REPORT]
        r["status"] = int(ExecStatus.REJECTED)
        r["exec_type"] = int(ExecType.REJECTED)
        self.gateway_stage: Any = None
        self.symbol_count = symbol_count
        # Per (policy, symbol): orders sent, fills, rejects. Per policy: recent latencies.
        self.counts: dict[tuple[int, int], list[int]] = {}
        self.lat = np.zeros((max(1, policies), LAT_WINDOW), np.int64)
        self.lat_n = [0] * max(1, policies)
        self._next_status = 0
        self._ps = np.zeros(1, POLICY_STATUS)
        self._ps_raw = memoryview(self._ps).cast("B")  # type: ignore[arg-type]
        self._tob = np.zeros(1, TOP_OF_BOOK)
        self._tob_raw = memoryview(self._tob).cast("B")  # type: ignore[arg-type]
        self._tob_words = self._tob_raw.cast("q")
        self._acct = np.zeros(1, ACCOUNT_UPDATE)
        self._acct_raw = memoryview(self._acct).cast("B")  # type: ignore[arg-type]
        self._pos = np.zeros(1, POSITION_UPDATE)
        self._pos_raw = memoryview(self._pos).cast("B")  # type: ignore[arg-type]

    def on_start(self) -> None:
        t = self.topo
        self.oq = [Ring.attach(t.oq(p), None).consumer() for p in range(self.policies)]
        self.er = [Ring.attach(t.er(p), None).producer() for p in range(self.policies)]
        self.backlog = [deque() for _ in range(self.policies)]
        self.orders = Ring.attach(t.orders, None).producer()
        self.reports = Ring.attach(t.reports, None).consumer()
        self.ctl = Ring.attach(t.ctl, None).consumer()
        self._ctl = bytearray(64)
        self.tap = Tap(t.tap("execution"))
        # A restarted execution knows no order: the exchange's open orders rebuild the table.
        for a in range(len(self.account_names)):
            self.query_exchange_open_orders(a)
        self.write_status()
        self.pstatus = SeqlockSlots.attach(t.pstatus, POLICY_STATUS)
        self.restored = self._restore_from_status()
        self.tob_slots = SeqlockSlots.attach(t.tob, TOP_OF_BOOK)
        if self.gateway_stage_path:
            # Benchmarks only: run the gateway's socket-side stage in this process.
            from .actor import _load

            self.gateway_stage = _load(self.gateway_stage_path)(**self.gateway_kwargs)
            self.gateway_stage.attach(t.orders, self.table)

    def idle_consumers(self) -> list[Consumer]:
        out = list(self.oq)
        if self.reports is not None:
            out.append(self.reports)
        return out

    # -- duty cycle -------------------------------------------------------------------
    def do_work(self) -> int:
        work = self._drain_reports()
        req_raw = self._req_raw
        for p in range(self.policies):
            q = self.oq[p]
            for _ in range(64):
                if not q.try_read(req_raw):
                    break
                # Tapped before handling: the log has each request before its reject.
                self.tap.record(req_raw[0], req_raw)
                self._handle_request(p)
                work += 1
        if self.gateway_stage is not None:
            work += self.gateway_stage.poll()
        if self.tap.backlog:
            work += self.tap.flush()
        if self.ctl.try_read(self._ctl):
            self._on_control(self._ctl)
            work += 1
        if not work:
            now = time.time_ns()
            if now >= self._next_status:
                self._next_status = now + STATUS_EVERY_NS
                self._auto_kill(now)
                self._enforce_kill()
                self.publish_status()
                if self.ack_timeout_ns:
                    self._chase_unanswered(now)
                if self.reconcile_ns and now >= self._next_reconcile:
                    # Periodic: catch what a silent failure (a lost report) left behind.
                    self._next_reconcile = now + self.reconcile_ns
                    self.query_open_orders()
                    for a in range(len(self.account_names)):
                        self.query_exchange_open_orders(a)
                        self.query_balances(a)
        return work

    def _count(self, p: int, sym: int, i: int) -> None:
        c = self.counts.get((p, sym))
        if c is None:
            c = self.counts[(p, sym)] = [0, 0, 0]
        c[i] += 1

    def publish_status(self) -> None:
        """Write each (policy, symbol) slot: counts, position, PnL, latency percentiles."""
        open_by: dict[tuple[int, int], int] = {}
        for o in self.oms:
            if o.is_open:
                open_by[(o.policy, o.symbol)] = open_by.get((o.policy, o.symbol), 0) + 1
        rec = self._ps[0]
        for p in range(self.policies):
            n = min(self.lat_n[p], LAT_WINDOW)
            p50 = p99 = 0
            if n:
                window = self.lat[p, :n]
                p50, p99 = (int(v) for v in np.percentile(window, [50, 99]))
            for sym in range(1, self.symbol_count + 1):
                pos = self.positions.get(p, sym)
                c = self.counts.get((p, sym), [0, 0, 0])
                mid = 0
                if self.tob_slots.read(sym - 1, self._tob_raw) > 0:
                    t = self._tob[0]
                    if t["bid_px"] and t["ask_px"]:
                        mid = (int(t["bid_px"]) + int(t["ask_px"])) // 2
                rec["flags"] = STATUS_KILLED_FLAG if self.kill.blocks(p) else 0
                rec["kind"] = int(RecordKind.POLICY_STATUS)
                rec["version"] = SCHEMA_VERSION[RecordKind.POLICY_STATUS]
                rec["symbol"] = sym
                rec["policy"] = p
                rec["open_orders"] = open_by.get((p, sym), 0)
                rec["orders"], rec["fills"], rec["rejects"] = c
                rec["position"] = pos.qty
                rec["avg_px"] = pos.avg_px
                rec["realized_pnl"] = pos.realized_pnl
                rec["unrealized_pnl"] = pos.unrealized_pnl(mid) if mid else 0
                rec["lat_p50_ns"] = p50
                rec["lat_p99_ns"] = p99
                rec["ts_pub"] = time.time_ns()
                self.pstatus.write(p * self.symbol_count + sym - 1, self._ps_raw)

    def _handle_request(self, p: int) -> None:
        raw = self._req_raw
        words = self._req_words
        kind = raw[0]
        reason = RejectReason.NONE
        if self.stopping:
            reason = RejectReason.SHUTDOWN
        elif kind in (_NEW, _REPLACE):
            if self.kill.blocks(p):
                reason = RejectReason.KILL_SWITCH
            else:
                reason = check_filters(
                    words[_W_SYMBOL] >> 32,
                    raw[_B_ORDER_TYPE],
                    words[_W_PRICE],
                    words[_W_QTY],
                    self.instruments,
                )
                if reason == RejectReason.NONE:
                    reason = self._check_risk(p, words, raw)
        elif kind != _CANCEL:
            reason = RejectReason.BAD_REQUEST
        if reason == RejectReason.NONE and not self.oms.on_request_raw(raw):
            reason = RejectReason.UNKNOWN_ORDER if kind != _NEW else RejectReason.BAD_REQUEST
        if reason == RejectReason.NONE:
            assert self.orders is not None
            if self.orders.try_write(raw):
                self.forwarded += 1
                self._sent_now(words[_W_CL_ORD_ID] if kind != _CANCEL else 0, words[_W_ORIG])
                ts = words[2]
                if ts:  # caused by a market record (not a timer or a report)
                    i = self.lat_n[p]
                    self.lat[p, i & (LAT_WINDOW - 1)] = time.time_ns() - ts
                    self.lat_n[p] = i + 1
                self._count(p, words[_W_SYMBOL] >> 32, 0)
                return
            reason = RejectReason.QUEUE_FULL
            self._reject(p, reason, tracked=True)
            return
        self._reject(p, reason)

    def _check_account(self, words: memoryview, raw: memoryview) -> RejectReason:
        acct = raw[_B_ACCOUNT] | raw[_B_ACCOUNT + 1] << 8
        if acct >= len(self.account_risk):
            return RejectReason.UNKNOWN_ACCOUNT
        risk = self.account_risk[acct]
        if not risk.limits.active:
            return RejectReason.NONE
        n_open = 0
        notional = 0
        orig = words[_W_ORIG] if raw[0] == _REPLACE else 0
        for o in self.oms.for_account(acct).values():
            if o.is_open and o.cl_ord_id != orig:
                n_open += 1
                notional += o.price * o.leaves_qty // SCALE
        return risk.check(
            order_type=raw[_B_ORDER_TYPE],
            price=words[_W_PRICE],
            qty=words[_W_QTY],
            mid=self._mid(words[_W_SYMBOL] >> 32),
            open_orders=n_open,
            open_notional=notional,
        )

    def _sent_now(self, cl_ord_id: int, orig_cl_ord_id: int) -> None:
        """Stamp the orders a request just sent went pending for: the ack timeout runs
        from here (``ts_update``: the last time this side heard of or acted on them)."""
        now = time.time_ns()
        for cid in (cl_ord_id, orig_cl_ord_id):
            if cid:
                order = self.oms.open.get(cid)
                if order is not None:
                    order.ts_update = now

    def _chase_unanswered(self, now: int) -> None:
        """Query every order whose new or cancel request got no answer within the ack
        timeout (a lost or unreadable response): its outcome is asked, never assumed."""
        limit = now - self.ack_timeout_ns
        for order in self.oms.open.values():
            if order.ts_update < limit and order.status in (_PENDING_NEW, _PENDING_CANCEL):
                order.ts_update = now  # one query per timeout, not one per tick
                if self._request_about(_QUERY, order):
                    self.queries += 1
                    self.chased += 1
                    structlog.get_logger("execution").warning(
                        "no answer within the ack timeout: querying the order",
                        cl_ord_id=order.cl_ord_id,
                        status=ExecStatus(order.status).name,
                    )

    def _check_risk(self, p: int, words: memoryview, raw: memoryview) -> RejectReason:
        reason = self._check_account(words, raw)
        if reason != RejectReason.NONE:
            return reason
        sym = words[_W_SYMBOL] >> 32
        side_buy = raw[_B_SIDE] == _BUY
        same_side = 0
        n_open = 0
        for o in self.oms.for_policy(p).values():
            if o.is_open:
                n_open += 1
                if o.symbol == sym and o.is_buy == side_buy:
                    same_side += o.leaves_qty
        if raw[0] == _REPLACE:
            orig = self.oms.get(words[_W_ORIG])
            if orig is not None and orig.is_open:
                n_open -= 1
                if orig.is_buy == side_buy:
                    same_side -= orig.leaves_qty
        return self.risk[p].check(
            side_buy=side_buy,
            order_type=raw[_B_ORDER_TYPE],
            price=words[_W_PRICE],
            qty=words[_W_QTY],
            position=self.positions.get(p, sym).qty,
            open_same_side_qty=same_side,
            open_orders=n_open,
            mid=self._mid(sym),
            now_ns=time.time_ns(),
        )

    def _mid(self, sym: int) -> int:
        if 0 < sym <= self.symbol_count and self.tob_slots.read(sym - 1, self._tob_raw) > 0:
            w = self._tob_words
            if w[4] and w[6]:  # bid_px, ask_px
                return (w[4] + w[6]) // 2
        return 0

    # -- kill switch ------------------------------------------------------------------
    def _on_control(self, raw: bytearray) -> None:
        command = int.from_bytes(raw[32:34], "little")
        target = int.from_bytes(raw[34:36], "little")
        policy = None if target == 0 else target - 1
        if command == CONTROL_KILL:
            self.engage_kill(policy, "operator")
        elif command == CONTROL_RESUME:
            if policy is not None and int.from_bytes(raw[40:48], "little") == RESUME_FRESH_SLOT:
                self._fresh_slot(policy)
            self.kill.resume(policy)
            self.kill_events.append(f"resumed {'node' if policy is None else f'policy {policy}'}")
            structlog.get_logger("execution").warning("kill switch lifted", policy=policy)
            self.publish_status()

    def _fresh_slot(self, p: int) -> None:
        """A spare slot handed to a new policy: forget the previous policy's counters
        and position (its open orders were cancelled when the slot was freed)."""
        for sym in range(1, self.symbol_count + 1):
            self.counts.pop((p, sym), None)
            pos = self.positions.get(p, sym)
            pos.qty = pos.cost_raw = pos.realized_raw = pos.fees = 0
            pos.bought = pos.sold = pos.fills = 0
        self.lat_n[p] = 0

    def engage_kill(self, policy: int | None, reason: str) -> None:
        """Block new orders of the scope and cancel its open orders."""
        if (policy is None and self.kill.node) or (
            policy is not None and policy in self.kill.policies
        ):
            return
        self.kill.engage(policy, reason)
        sent = self.cancel_all(policy)
        self.kill_events.append(
            f"kill {'node' if policy is None else f'policy {policy}'}: {reason}"
        )
        structlog.get_logger("execution").error(
            "kill switch engaged", policy=policy, reason=reason, cancels_sent=sent
        )
        self.publish_status()

    def _enforce_kill(self) -> None:
        """Cancel again what the kill switch covers and is working again: a cancel the
        exchange refused or lost, after which a status answer showed the order NEW."""
        if self.kill.node:
            self.cancel_all(None)
        else:
            for p in self.kill.policies:
                self.cancel_all(p)

    def _auto_kill(self, now: int) -> None:
        if self.feed_stale_ns and not self.kill.node:
            newest = 0
            for s in range(self.symbol_count):
                if self.tob_slots.read(s, self._tob_raw) > 0:
                    newest = max(newest, int(self._tob[0]["ts_pub"]))
            if newest and now - newest > self.feed_stale_ns:
                self.engage_kill(None, f"feed stale for {(now - newest) / 1e9:.1f} s")
        for p in range(self.policies):
            if p in self.kill.policies:
                continue
            storm = self.recent_rejects[p].times
            if (
                self.reject_storm
                and len(storm) >= self.reject_storm
                and now - storm[0] < 10_000_000_000
            ):
                self.engage_kill(p, f"reject storm: {self.reject_storm} rejects within 10 s")
                continue
            if self.loss_limit:
                pnl = 0
                for sym in range(1, self.symbol_count + 1):
                    pos = self.positions.get(p, sym)
                    mid = self._mid(sym)
                    pnl += pos.realized_pnl + (pos.unrealized_pnl(mid) if mid else 0)
                if pnl < -self.loss_limit:
                    self.engage_kill(
                        p, f"loss limit: PnL {pnl / SCALE:.2f} below -{self.loss_limit / SCALE:.2f}"
                    )

    def _reject(self, p: int, reason: RejectReason, tracked: bool = False) -> None:
        self.rejected += 1
        self.recent_rejects[p].add(time.time_ns())
        self._count(p, self._req_words[_W_SYMBOL] >> 32, 2)
        req = self._req[0]
        r = self._rej[0]
        for f in ("symbol", "cl_ord_id", "orig_cl_ord_id", "price", "qty", "side", "account"):
            r[f] = req[f]
        r["policy"] = p
        r["reason"] = int(reason)
        r["ts_recv"] = req["ts_recv"]
        r["ts_pub"] = time.time_ns()
        if tracked:
            # The table took the request before the ring refused it: close it there too.
            self.oms.apply(r)
        self.tap.record(_EXEC, self._rej_raw)
        self._send_report(p, self._rej_raw)

    def _send_report(self, p: int, raw: memoryview) -> None:
        backlog = self.backlog[p]
        if backlog or not self.er[p].try_write(raw):
            backlog.append(bytes(raw))

    def _drain_reports(self) -> int:
        work = 0
        for p in range(self.policies):
            backlog = self.backlog[p]
            while backlog and self.er[p].try_write(backlog[0]):
                backlog.popleft()
                work += 1
        assert self.reports is not None
        raw = self._rep_raw
        for _ in range(256):
            if not self.reports.try_read(raw):
                break
            work += 1
            if raw[0] == _CONTROL:
                if int.from_bytes(raw[32:34], "little") == CONTROL_GATEWAY_CONNECTED:
                    acct = int.from_bytes(raw[34:36], "little")
                    self.query_open_orders(acct)
                    self.query_exchange_open_orders(acct)
                    self.query_balances(acct)
                continue
            if raw[0] == _ACCT:
                self._on_balance(raw)
                continue
            if raw[0] != _EXEC:
                continue
            rep = self._rep[0]
            if self._unknown_outcome(rep):
                self.tap.record(_EXEC, raw)
                continue
            self._adopt(rep)
            self._fill_from_status(rep)
            follow_up = self._resolve_unknown(rep)
            self.tap.record(_EXEC, raw)
            self.oms.apply_raw(raw)
            if follow_up:
                self._query_one(follow_up)
            self.positions.apply_raw(raw)
            p = int(rep["policy"])
            if int(rep["exec_type"]) == _TRADE_EXEC:
                self._count(p, int(rep["symbol"]), 1)
                # Only the node's own orders move the expected balances: anything else
                # shows up as a difference at the next reconciliation.
                if self.oms.get(int(rep["cl_ord_id"]) or int(rep["orig_cl_ord_id"])) is not None:
                    self.balances.apply_fill(
                        int(rep["account"]),
                        int(rep["symbol"]),
                        int(rep["side"]),
                        int(rep["last_qty"]),
                        int(rep["last_px"]),
                        int(rep["commission"]),
                    )
            if 0 <= p < self.policies:
                self._send_report(p, raw)
        return work

    # -- stop -------------------------------------------------------------------------
    def cancel_all(self, policy: int | None = None) -> int:
        """Send a cancel for every open order of the node (or of one policy)."""
        assert self.orders is not None
        sent = 0
        for order in list(self.oms):
            if not order.is_open or order.status == int(ExecStatus.PENDING_CANCEL):
                continue
            if policy is not None and order.policy != policy:
                continue
            if self.oms.mark_pending_cancel(order.cl_ord_id) and self._request_about(
                _CANCEL, order
            ):
                sent += 1
        return sent

    def _request_about(
        self, kind: int, order: Order | None, account: int = 0, flags: int = 0
    ) -> bool:
        """Write a CANCEL or QUERY request about ``order`` (None: every open order of
        ``account``, or with QUERY_BALANCES_FLAG its balances) to the gateway's ring.
        Every field is set: the buffer is shared."""
        assert self.orders is not None
        req = self._req[0]
        req["kind"] = kind
        req["version"] = SCHEMA_VERSION[RecordKind(kind)]
        req["flags"] = flags
        req["cl_ord_id"] = 0
        req["symbol"] = order.symbol if order is not None else 0
        req["orig_cl_ord_id"] = order.cl_ord_id if order is not None else 0
        req["exch_order_id"] = order.exch_order_id if order is not None else 0
        req["policy"] = order.policy if order is not None else 0
        req["account"] = order.account if order is not None else account
        req["ts_recv"] = 0
        req["ts_pub"] = now = time.time_ns()
        if order is not None and kind == _CANCEL:
            order.ts_update = now
        return bool(self.orders.try_write(self._req_raw))

    def query_exchange_open_orders(self, account: int = 0) -> bool:
        """Ask for every open order of ``account``: after an execution restart this rebuilds
        the table (orders with our client ids are adopted); any time it finds orders this
        table lost track of."""
        return self._request_about(_QUERY, None, account)

    def query_balances(self, account: int = 0) -> bool:
        """Ask for ``account``'s balances (``account.status``), to reconcile them."""
        return self._request_about(_QUERY, None, account, QUERY_BALANCES_FLAG)

    # -- balances -----------------------------------------------------------------------
    def _on_balance(self, raw: memoryview) -> None:
        """One ACCOUNT_UPDATE of a venue snapshot; the last one reconciles the account."""
        a = self._acct
        a_raw = self._acct_raw
        a_raw[:] = raw[: ACCOUNT_UPDATE.itemsize]
        rec = a[0]
        flags = int(rec["flags"])
        if not flags & ACCOUNT_SNAPSHOT_FLAG:
            return  # a user-data balance event: the snapshots are the reference
        acct = int(rec["account"])
        snap = self._snap.setdefault(acct, {})
        asset = int(rec["asset"])
        if asset:
            snap[asset] = int(rec["free"]) + int(rec["locked"])
        if flags & ACCOUNT_SNAPSHOT_END_FLAG:
            del self._snap[acct]
            self.reconcile_balances(acct, snap)

    def reconcile_balances(self, account: int, totals: dict[int, int]) -> list[BalanceDifference]:
        """Compare the venue's totals of ``account`` with the book; report and correct."""
        diffs = self.balances.reconcile(account, totals)
        log = structlog.get_logger("execution")
        name = self._account_name(account)
        for d in diffs:
            corrected = self._correct_position(d)
            asset = self.table.asset(d.asset)
            log.warning(
                "balance differs from the exchange",
                account=name,
                asset=asset,
                expected=d.expected / SCALE,
                exchange=d.actual / SCALE,
                diff=d.diff / SCALE,
                position_corrected=corrected,
            )
            self.last_differences = [
                *self.last_differences[-9:],
                {
                    "account": name,
                    "asset": asset,
                    "expected": d.expected,
                    "exchange": d.actual,
                    "diff": d.diff,
                    "position_corrected": corrected,
                    "ts_ns": time.time_ns(),
                },
            ]
            r = self._acct[0]
            r["kind"] = _ACCT
            r["version"] = SCHEMA_VERSION[RecordKind.ACCOUNT_UPDATE]
            r["flags"] = ACCOUNT_DIFF_FLAG
            r["symbol"] = 0
            r["asset"] = d.asset
            r["account"] = account
            r["free"] = d.actual
            r["locked"] = d.diff
            r["ts_pub"] = time.time_ns()
            self.tap.record(_ACCT, self._acct_raw)
            out = bytes(self._acct_raw) + bytes(64)
            for p in range(self.policies):
                if self.policy_accounts[p] == account:
                    self._send_report(p, memoryview(out))
        self.write_status()
        return diffs

    def _correct_position(self, d: BalanceDifference) -> str:
        """Move the one position a base-asset difference belongs to; returns which
        (``"policy P symbol S"``) or "" when none or several could own it."""
        owners = [
            (p, sym)
            for p in range(self.policies)
            if self.policy_accounts[p] == d.account
            for sym in range(1, len(self.balances.symbol_assets))
            if self.balances.symbol_assets[sym][0] == d.asset
        ]
        if len(owners) != 1:
            return ""
        p, sym = owners[0]
        pos = self.positions.get(p, sym)
        # At the mid (or the average price): the corrected quantity's PnL counts from there.
        price = self._mid(sym) or pos.avg_px
        if not price:
            return ""
        side = Side.BUY if d.diff > 0 else Side.SELL
        pos.apply_fill(side, abs(d.diff), price)
        self.corrections[d.account] += 1
        r = self._pos[0]
        r["kind"] = int(RecordKind.POSITION_UPDATE)
        r["version"] = SCHEMA_VERSION[RecordKind.POSITION_UPDATE]
        r["flags"] = POSITION_CORRECTED_FLAG
        r["symbol"] = sym
        r["policy"] = p
        r["account"] = d.account
        r["qty"] = pos.qty
        r["avg_px"] = pos.avg_px
        r["realized_pnl"] = pos.realized_pnl
        r["ts_pub"] = time.time_ns()
        self.tap.record(int(RecordKind.POSITION_UPDATE), self._pos_raw)
        self._send_report(p, memoryview(bytes(self._pos_raw) + bytes(64)))
        return f"policy {p} symbol {self.table[sym].symbol}"

    def _account_name(self, account: int) -> str:
        if 0 <= account < len(self.account_names):
            return self.account_names[account]
        return f"account{account}"

    def account_status(self) -> list[dict[str, Any]]:
        """Per account: reconciliations, differences, corrections, expected balances."""
        out = []
        for a, name in enumerate(self.account_names):
            book = self.balances.expected.get(a)
            out.append(
                {
                    "name": name,
                    "index": a,
                    "open_orders": sum(1 for o in self.oms.for_account(a).values() if o.is_open),
                    "reconciles": self.balances.reconciles.get(a, 0),
                    "differences": self.balances.differences.get(a, 0),
                    "positions_corrected": self.corrections[a],
                    "balances": None
                    if book is None
                    else {self.table.asset(k): v / SCALE for k, v in sorted(book.items())},
                }
            )
        return out

    def write_status(self) -> None:
        """Write :meth:`account_status` to ``status_file`` (atomically; off the order path:
        at start, after each reconciliation, at stop)."""
        if not self.status_file:
            return
        tmp = f"{self.status_file}.tmp"
        body = {
            "ts_ns": time.time_ns(),
            "accounts": self.account_status(),
            "last_differences": self.last_differences,
        }
        try:
            with open(tmp, "w") as f:
                json.dump(body, f)
            os.replace(tmp, self.status_file)
        except OSError as exc:
            structlog.get_logger("execution").warning(
                "cannot write the execution status", file=self.status_file, error=str(exc)
            )

    def _restore_from_status(self) -> int:
        """Take positions and counters back from the status slots a previous execution
        process wrote (a restart after a crash); returns how many slots held a position.

        The exchange's open orders give the orders back, not what filled before: without
        this a restarted execution would believe every policy flat."""
        rec = self._ps[0]
        restored = 0
        for p in range(self.policies):
            for sym in range(1, self.symbol_count + 1):
                if self.pstatus.read(p * self.symbol_count + sym - 1, self._ps_raw) <= 0:
                    continue  # never written: a fresh node
                if int(rec["policy"]) != p or int(rec["symbol"]) != sym:
                    continue
                qty = int(rec["position"])
                pos = self.positions.get(p, sym)
                pos.qty = qty
                pos.cost_raw = qty * int(rec["avg_px"])
                pos.realized_raw = int(rec["realized_pnl"]) * SCALE
                self.counts[(p, sym)] = [int(rec["orders"]), int(rec["fills"]), int(rec["rejects"])]
                if qty or int(rec["realized_pnl"]):
                    restored += 1
        if restored:
            structlog.get_logger("execution").warning(
                "positions restored from the previous execution's status", slots=restored
            )
        return restored

    def _adopt(self, rep: Any) -> None:
        """Track an open order the exchange reports and this table does not know."""
        cid = int(rep["cl_ord_id"])
        if not cid or self.oms.get(cid) is not None or int(rep["orig_cl_ord_id"]):
            return
        status = int(rep["status"])
        if status not in (int(ExecStatus.NEW), int(ExecStatus.PARTIALLY_FILLED)):
            return
        order = Order(
            cid,
            policy=int(rep["policy"]),
            symbol=int(rep["symbol"]),
            side=int(rep["side"]),
            qty=int(rep["qty"]),
            price=int(rep["price"]),
            account=int(rep["account"]),
        )
        if self.restored:
            # Its fills so far are in the restored position: not to be counted again.
            order.cum_qty = order.filled_qty = int(rep["cum_qty"])
            order.cum_quote = int(rep["cum_quote"])
        if self.oms.add(order):
            self.adopted += 1
            structlog.get_logger("execution").warning(
                "adopted an open order the exchange reported", cl_ord_id=cid, policy=order.policy
            )

    def _unknown_outcome(self, rep: Any) -> bool:
        """A new order refused with "execution status unknown" (a 5xx, -1000/-1001/-1006/
        -1007) may be working at the exchange: query it instead of closing it REJECTED."""
        if int(rep["status"]) != int(ExecStatus.REJECTED):
            return False
        if int(rep["error_code"]) not in UNKNOWN_OUTCOME_CODES:
            return False
        cl = int(rep["cl_ord_id"])
        order = self.oms.get(cl) if cl else None
        if order is None or order.status != _PENDING_NEW:
            return False
        structlog.get_logger("execution").warning(
            "order outcome unknown at the exchange: querying it",
            cl_ord_id=cl,
            code=int(rep["error_code"]),
        )
        self._query_one(cl)
        return True

    def _resolve_unknown(self, rep: Any) -> int:
        """Close the gaps a REJECTED answer leaves; returns an order id to query, or 0.

        * A status query answered "order does not exist" (-2013): the order never
          reached the exchange, or is long gone. A PENDING_NEW one is REJECTED as
          reported; an acknowledged one is closed as EXPIRED (logged as an error).
        * A refused cancel or cancel-replace (the report names the original in
          ``orig_cl_ord_id``): the original's fate is unknown here (filled meanwhile,
          or never there), so its status is queried rather than assumed.
        """
        if int(rep["status"]) != int(ExecStatus.REJECTED):
            return 0
        code = int(rep["error_code"])
        cl = int(rep["cl_ord_id"])
        orig = int(rep["orig_cl_ord_id"])
        if code == -2013 and not cl and orig:
            order = self.oms.get(orig)
            if order is not None and order.is_open and order.status != int(ExecStatus.PENDING_NEW):
                rep["status"] = int(ExecStatus.EXPIRED)
                rep["exec_type"] = int(ExecType.EXPIRED)
                rep["cl_ord_id"] = orig
                rep["orig_cl_ord_id"] = 0
                structlog.get_logger("execution").error(
                    "the exchange does not know an acknowledged order: closed as expired",
                    cl_ord_id=orig,
                )
            return 0
        if orig and rep["reason"] != int(RejectReason.UNKNOWN_ORDER):
            order = self.oms.get(orig)
            if order is not None and order.is_open:
                return orig
        return 0

    def _query_one(self, cl_ord_id: int) -> None:
        order = self.oms.get(cl_ord_id)
        if order is None or self.orders is None:
            return
        if self._request_about(_QUERY, order):
            self.queries += 1

    def query_open_orders(self, account: int | None = None) -> int:
        """Ask the gateway for the exchange's status of every order still open here
        (of ``account``, or of every account).

        After a gateway reconnect (or an execution restart) an order's fate may be
        unknown: its acknowledgement, fills or cancel may have been lost with the old
        connection. It is queried, never assumed failed.
        """
        assert self.orders is not None
        sent = 0
        for order in list(self.oms):
            if not order.is_open or (account is not None and order.account != account):
                continue
            if self._request_about(_QUERY, order):
                sent += 1
        self.queries += sent
        return sent

    def _fill_from_status(self, rep: Any) -> None:
        """A status answer (no trade) that shows more filled than known: one synthetic fill
        for the difference at its average price, so positions stay right."""
        if int(rep["last_qty"]) or int(rep["trade_id"]) >= 0:
            return
        order = self.oms.get(int(rep["cl_ord_id"]) or int(rep["orig_cl_ord_id"]))
        if order is None:
            return
        delta = int(rep["cum_qty"]) - order.cum_qty
        if delta <= 0:
            return
        self._synthetic_trade_id -= 1
        rep["trade_id"] = self._synthetic_trade_id
        rep["last_qty"] = delta
        rep["last_px"] = (int(rep["cum_quote"]) - order.cum_quote) * SCALE // delta
        rep["exec_type"] = _TRADE_EXEC

    def open_orders(self) -> int:
        return sum(1 for o in self.oms if o.is_open)

    def on_stop(self) -> None:
        if self.gateway_stage is not None:
            self.gateway_stage.close()
        self.stopping = True
        sent = self.cancel_all()
        deadline = time.monotonic() + self.cancel_timeout
        while self.open_orders() and time.monotonic() < deadline:
            if not self.do_work():
                time.sleep(0.0005)
        self.publish_status()
        self.write_status()
        left = self.open_orders()
        log = structlog.get_logger("execution")
        (log.info if not left else log.error)(
            "execution stopped",
            cancels_sent=sent,
            open_orders_left=left,
            forwarded=self.forwarded,
            rejected=self.rejected,
            left=[repr(o) for o in self.oms if o.is_open][:10],
        )
