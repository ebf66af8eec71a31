"""The policy host: runs one PolicyObject in its own process.

Duty cycle: drain the policy's execution reports (so its open orders and
position are current), then market records from the feed one at a time
(top of book -> ``on_book``, trade -> ``on_trade``), then the timer. Records
are read into preallocated arrays and their int64 words are read through a
``memoryview`` (no numpy field access, no allocation on the path to an order).

Each ORDER_REQUEST the policy writes carries, in ``ts_recv``, the receive time
of the market record that caused it, so execution and the benchmarks can
measure tick-to-order latency.

A hook that raises ends the run as FAILED: the StrategyMaster restarts the
policy as a new object, and the other actors are not affected.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import msgspec
import numpy as np

from wiresens.config import load_policy_class
from wiresens.instruments import InstrumentTable
from wiresens.policy import PolicyContext, PolicyObject, ProducerSink, TopOfBook
from wiresens.records import (
    ACCOUNT_DIFF_FLAG,
    ACCOUNT_UPDATE,
    EXECUTION_REPORT,
    POSITION_CORRECTED_FLAG,
    POSITION_UPDATE,
    TOP_OF_BOOK,
    TRADE,
    RecordKind,
)
from wiresens.shm import Consumer, Producer, Ring

from .actor import Actor
from .topology import Topology

__all__ = ["PolicyHost"]

_TOB = int(RecordKind.TOP_OF_BOOK)
_TRADE = int(RecordKind.TRADE)
_EXEC = int(RecordKind.EXECUTION_REPORT)
_ACCT = int(RecordKind.ACCOUNT_UPDATE)
_POS = int(RecordKind.POSITION_UPDATE)
# int64 word indexes in a 64-byte market record (see records.py).
_W_TS_RECV = 2
_W_BID_PX, _W_BID_QTY, _W_ASK_PX, _W_ASK_QTY = 4, 5, 6, 7
_ORDER_W_TS_RECV = 2


class PolicyHost(Actor):
    name = "policy"

    def __init__(
        self,
        *,
        prefix: str,
        policy_index: int,
        policy_name: str,
        policy_class: str,
        params: dict[str, Any] | None = None,
        symbols: Sequence[int] = (),
        instruments: Sequence[Any] = (),
        account: int = 0,
        timer_interval_ms: int = 0,
        base_dir: str = ".",
        policies: int = 1,
        symbol_count: int = 1,
    ) -> None:
        self.name = f"policy:{policy_name}"
        self.topo = Topology(prefix, policies, symbol_count)
        self.index = policy_index
        self.policy_name = policy_name
        self.policy_class = policy_class
        self.params = params or {}
        self.symbols = list(symbols)
        self.instruments = list(instruments)
        self.account = account
        self.timer_ns = timer_interval_ms * 1_000_000
        self.base_dir = base_dir
        self.policy: PolicyObject | None = None
        self.md: Consumer | None = None
        self.er: Consumer | None = None
        self.oq: Producer | None = None
        self.books: dict[int, TopOfBook] = {}
        self._md = np.zeros(1, TOP_OF_BOOK)
        self._md_raw = memoryview(self._md).cast("B")  # type: ignore[arg-type]
        self._md_words = self._md_raw.cast("q")
        self._trade = self._md.view(TRADE)
        self._er = np.zeros(1, EXECUTION_REPORT)
        self._er_raw = memoryview(self._er).cast("B")  # type: ignore[arg-type]
        # Reconciliation's reports share the ring slot: views of its first bytes.
        self._acct = np.frombuffer(self._er, ACCOUNT_UPDATE, count=1)
        self._posu = np.frombuffer(self._er, POSITION_UPDATE, count=1)
        self._next_timer = 0
        self.books_delivered = 0

    def build_policy(self, sink: Any) -> PolicyObject:
        cls = load_policy_class(self.policy_class, self.base_dir)
        params = msgspec.convert(self.params, cls.Params)
        ctx = PolicyContext(
            policy_id=self.index,
            name=self.policy_name,
            sink=sink,
            instruments=InstrumentTable(self.instruments),  # type: ignore[arg-type]
            symbols=self.symbols,
            account=self.account,
            min_epoch=int(time.time()),
        )
        return cls(params, ctx)

    def on_start(self) -> None:
        self.md = Ring.attach(self.topo.md(self.index), None).consumer()
        self.er = Ring.attach(self.topo.er(self.index), None).consumer()
        self.oq = Ring.attach(self.topo.oq(self.index), None).producer()
        self.policy = self.build_policy(ProducerSink(self.oq))
        self._order_words = self.policy._req_bytes.cast("q")
        self.policy.start()
        if self.timer_ns:
            self._next_timer = time.time_ns() + self.timer_ns

    def idle_consumers(self) -> list[Consumer]:
        return [c for c in (self.md, self.er) if c is not None]

    def do_work(self) -> int:
        policy = self.policy
        assert policy is not None and self.md is not None and self.er is not None
        work = 0
        er_raw = self._er_raw
        order_words = self._order_words
        # Orders a report or the timer causes are not tick-to-order: no market stamp.
        order_words[_ORDER_W_TS_RECV] = 0
        while self.er.try_read(er_raw):
            kind = er_raw[0]
            if kind == _EXEC:
                policy.deliver_execution(self._er[0], er_raw)
            elif kind == _ACCT and self._acct[0]["flags"] & ACCOUNT_DIFF_FLAG:
                policy.deliver_account(self._acct[0])
            elif kind == _POS and self._posu[0]["flags"] & POSITION_CORRECTED_FLAG:
                policy.deliver_position(self._posu[0])
            work += 1
        md_raw = self._md_raw
        words = self._md_words
        md = self.md
        for _ in range(64):
            if not md.try_read(md_raw):
                break
            work += 1
            kind = md_raw[0]
            sym = words[0] >> 32
            if kind == _TOB:
                book = self.books.get(sym)
                if book is None:
                    book = self.books[sym] = TopOfBook()
                book.bid_px = words[_W_BID_PX]
                book.bid_qty = words[_W_BID_QTY]
                book.ask_px = words[_W_ASK_PX]
                book.ask_qty = words[_W_ASK_QTY]
                book.ts = ts = words[_W_TS_RECV]
                order_words[_ORDER_W_TS_RECV] = ts
                policy.deliver_book(sym, book)
                self.books_delivered += 1
            elif kind == _TRADE:
                order_words[_ORDER_W_TS_RECV] = words[_W_TS_RECV]
                policy.deliver_trade(sym, self._trade[0])
        if self.timer_ns:
            now = time.time_ns()
            if now >= self._next_timer:
                self._next_timer = now + self.timer_ns
                order_words[_ORDER_W_TS_RECV] = 0
                policy.deliver_timer(now)
                work += 1
        return work

    def on_stop(self) -> None:
        if self.policy is not None:
            self.policy.stop()

    def on_failure(self, exc: BaseException) -> None:
        self.policy = None
