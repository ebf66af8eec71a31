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

Stop: cancel every open order of the node, then keep draining reports until
none is open or ``cancel_timeout`` passes.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np

from wiresens.instruments import InstrumentTable
from wiresens.oms import OrderTable
from wiresens.positions import PositionBook
from wiresens.records import (
    EXECUTION_REPORT,
    ORDER_REQUEST,
    SCHEMA_VERSION,
    ExecStatus,
    ExecType,
    RecordKind,
)
from wiresens.risk import RejectReason, check_filters
from wiresens.shm import Consumer, Producer, Ring

from .actor import Actor
from .topology import Topology

__all__ = ["Execution"]

_NEW = int(RecordKind.ORDER_NEW)
_CANCEL = int(RecordKind.ORDER_CANCEL)
_REPLACE = int(RecordKind.ORDER_REPLACE)
_EXEC = int(RecordKind.EXECUTION_REPORT)
# int64 word indexes of ORDER_REQUEST fields (records.py).
_W_SYMBOL = 0
_W_CL_ORD_ID, _W_ORIG, _W_EXCH_ID, _W_PRICE, _W_QTY = 4, 5, 6, 7, 8
# Byte offsets of the small ORDER_REQUEST fields.
_FIELDS: Any = ORDER_REQUEST.fields
_B_ORDER_TYPE: int = _FIELDS["order_type"][1]


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
    ) -> None:
        self.topo = Topology(prefix, policies, symbol_count)
        self.policies = policies
        self.table = InstrumentTable(instruments)
        # Indexed by the records' symbol (1-based), for the filter checks.
        self.instruments: list[Any] = [None, *self.table]
        self.cancel_timeout = cancel_timeout
        self.gateway_stage_path = gateway_stage
        self.gateway_kwargs = gateway_kwargs or {}
        self.oms = OrderTable()
        self.positions = PositionBook()
        self.oq: list[Consumer] = []
        self.er: list[Producer] = []
        self.backlog: list[deque[bytes]] = []
        self.orders: Producer | None = None
        self.reports: Consumer | None = None
        self.stopping = False
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

    def on_start(self) -> None:
        t = self.topo
        self.oq = [Ring.attach(t.oq(p), None).consumer() for p in range(self.policies)]
        self.er = [Ring.attach(t.er(p), None).producer() for p in range(self.policies)]
        self.backlog = [deque() for _ in range(self.policies)]
        self.orders = Ring.attach(t.orders, None).producer()
        self.reports = Ring.attach(t.reports, None).consumer()
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
                self._handle_request(p)
                work += 1
        if self.gateway_stage is not None:
            work += self.gateway_stage.poll()
        return work

    def _handle_request(self, p: int) -> None:
        raw = self._req_raw
        words = self._req_words
        kind = raw[0]
        reason = RejectReason.NONE
        if self.stopping:
            reason = RejectReason.SHUTDOWN
        elif kind in (_NEW, _REPLACE):
            reason = check_filters(
                words[_W_SYMBOL] >> 32,
                raw[_B_ORDER_TYPE],
                words[_W_PRICE],
                words[_W_QTY],
                self.instruments,
            )
        elif kind != _CANCEL:
            reason = RejectReason.BAD_REQUEST
        if reason == RejectReason.NONE and not self.oms.on_request(self._req[0]):
            reason = RejectReason.UNKNOWN_ORDER if kind != _NEW else RejectReason.BAD_REQUEST
        if reason == RejectReason.NONE:
            assert self.orders is not None
            if self.orders.try_write(raw):
                self.forwarded += 1
                return
            reason = RejectReason.QUEUE_FULL
            self._reject(p, reason, tracked=True)
            return
        self._reject(p, reason)

    def _reject(self, p: int, reason: RejectReason, tracked: bool = False) -> None:
        self.rejected += 1
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
            if raw[0] != _EXEC:
                continue
            rep = self._rep[0]
            self.oms.apply(rep)
            self.positions.apply_report(rep)
            p = int(rep["policy"])
            if 0 <= p < self.policies:
                self._send_report(p, raw)
        return work

    # -- stop -------------------------------------------------------------------------
    def cancel_all(self) -> int:
        """Send a cancel for every open order of the node; returns how many were sent."""
        assert self.orders is not None
        sent = 0
        for order in list(self.oms):
            if not order.is_open or order.status == int(ExecStatus.PENDING_CANCEL):
                continue
            req = self._req[0]
            req["kind"] = _CANCEL
            req["version"] = SCHEMA_VERSION[RecordKind.ORDER_CANCEL]
            req["symbol"] = order.symbol
            req["cl_ord_id"] = 0
            req["orig_cl_ord_id"] = order.cl_ord_id
            req["policy"] = order.policy
            req["account"] = order.account
            req["ts_pub"] = time.time_ns()
            if self.oms.mark_pending_cancel(order.cl_ord_id) and self.orders.try_write(
                self._req_raw
            ):
                sent += 1
        return sent

    def open_orders(self) -> int:
        return sum(1 for o in self.oms if o.is_open)

    def on_stop(self) -> None:
        if self.gateway_stage is not None:
            self.gateway_stage.close()
        self.stopping = True
        self.cancel_all()
        deadline = time.monotonic() + self.cancel_timeout
        while self.open_orders() and time.monotonic() < deadline:
            if not self.do_work():
                time.sleep(0.0005)
