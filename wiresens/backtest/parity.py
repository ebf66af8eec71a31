"""Live/back-test parity: does the policy decide in replay what it decided live?

A node's event log holds what each policy was fed (the feed's TOP_OF_BOOK and TRADE
records, tapped as published) and what it sent and got back (execution's taps of its
ORDER_NEW/CANCEL/REPLACE requests and EXECUTION_REPORTs). :func:`check_parity` feeds a
fresh object of the policy class the same market records and the *recorded* reports, in
publish-time order (reports first at one instant, as the policy host drains them first),
and compares the requests it writes with the logged ones, field by field::

    log: TOB, TRADE ──────────────► deliver_book / deliver_trade ─┐
    log: EXECUTION_REPORT ────────► deliver_execution ────────────┤ policy (fresh object)
    log: ORDER_* (live) ◄── compare ── BufferSink (replay) ◄──────┘

The replay's client-order-id generator takes the live run's epoch (read from the first
logged request), so ids match exactly when the decisions do. A difference means the
policy is not a function of its inputs (wall clock, randomness without a seed, state
from outside) or the inputs were not all logged; the report names the first one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from wiresens.policy import BufferSink, ClOrdIdGen, PolicyContext, PolicyObject, TopOfBook
from wiresens.records import ORDER_REQUEST, RecordKind

__all__ = ["COMPARED", "ParityReport", "check_parity", "entry_latencies", "policy_factory"]

COMPARED = (
    "kind",
    "symbol",
    "side",
    "order_type",
    "tif",
    "price",
    "qty",
    "cl_ord_id",
    "orig_cl_ord_id",
)
"""ORDER_REQUEST fields that must be equal (not the timestamps)."""


@dataclass
class ParityReport:
    """Outcome of :func:`check_parity`. ``first_mismatch`` is the index of the first
    request that differs (or is missing on one side), None when all agree."""

    live_requests: int
    replay_requests: int
    matched: int
    first_mismatch: int | None
    live: dict[str, int] | None = None
    replay: dict[str, int] | None = None

    @property
    def ok(self) -> bool:
        return self.first_mismatch is None


def _ts(recs: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    return np.where(recs["ts_pub"] != 0, recs["ts_pub"], recs["ts_recv"])


def _fields(rec: Any) -> dict[str, int]:
    return {f: int(rec[f]) for f in COMPARED}


def check_parity(
    log_dir: str | Path,
    factory: Callable[[PolicyContext], PolicyObject],
    *,
    policy_id: int,
    symbols: Sequence[int] = (1,),
    name: str = "parity",
) -> ParityReport:
    """Replay ``log_dir`` into ``factory(context)`` and compare its requests with the log's.

    ``factory`` builds the policy as the node did (class and params; see
    :func:`policy_factory`).
    """
    from wiresens.eventlog import EventLogReader

    reader = EventLogReader(log_dir)
    syms = np.array(list(symbols), dtype=np.uint32)
    tob = reader.read_records(RecordKind.TOP_OF_BOOK)
    tob = tob[np.isin(tob["symbol"], syms)]
    trades = reader.read_records(RecordKind.TRADE)
    trades = trades[np.isin(trades["symbol"], syms)]
    reports = reader.read_records(RecordKind.EXECUTION_REPORT)
    reports = reports[reports["policy"] == policy_id]
    parts = [
        reader.read_records(k)
        for k in (RecordKind.ORDER_NEW, RecordKind.ORDER_CANCEL, RecordKind.ORDER_REPLACE)
    ]
    live = (
        np.concatenate([p[p["policy"] == policy_id] for p in parts])
        if parts
        else np.zeros(0, ORDER_REQUEST)
    )
    # One generator numbers a policy's requests in send order (its epoch only grows).
    live = live[np.argsort(live["cl_ord_id"], kind="stable")]

    sink = BufferSink(max(1 << 12, 4 * len(live) + 16))
    now = [0]
    ctx = PolicyContext(
        policy_id=policy_id, name=name, sink=sink, symbols=list(symbols), clock=lambda: now[0]
    )
    policy = factory(ctx)
    if len(live):
        epoch = (int(live["cl_ord_id"][0]) >> 24) & ((1 << 24) - 1)
        policy._ids = ClOrdIdGen(policy_id, now_s=epoch)
    # One timeline: (time, order at one instant: reports first, kind, index).
    keys = [(t, 0, 0, i) for i, t in enumerate(_ts(reports).tolist())]
    keys += [(t, 1, 1, i) for i, t in enumerate(_ts(tob).tolist())]
    keys += [(t, 1, 2, i) for i, t in enumerate(_ts(trades).tolist())]
    keys.sort()
    books: dict[int, TopOfBook] = {}
    rep_raw = [memoryview(reports[i : i + 1]).cast("B") for i in range(len(reports))]
    policy.start()
    for t, _, kind, i in keys:
        now[0] = t
        if kind == 0:
            policy.deliver_execution(reports[i], rep_raw[i])
        elif kind == 1:
            r = tob[i]
            sym = int(r["symbol"])
            book = books.get(sym)
            if book is None:
                book = books[sym] = TopOfBook()
            book.update(r)
            policy.deliver_book(sym, book)
        else:
            policy.deliver_trade(int(trades[i]["symbol"]), trades[i])
    replay = sink.records
    n = min(len(live), len(replay))
    first: int | None = None
    for k in range(n):
        if _fields(live[k]) != _fields(replay[k]):
            first = k
            break
    if first is None and len(live) != len(replay):
        first = n
    return ParityReport(
        live_requests=len(live),
        replay_requests=len(replay),
        matched=first if first is not None else n,
        first_mismatch=first,
        live=_fields(live[first]) if first is not None and first < len(live) else None,
        replay=_fields(replay[first]) if first is not None and first < len(replay) else None,
    )


def policy_factory(
    class_path: str, params: dict[str, Any] | None = None, base_dir: str = "."
) -> Callable[[PolicyContext], PolicyObject]:
    """A factory for ``"module:Class"`` with its ``params`` table, as the node builds it."""
    from wiresens.config import load_policy_class

    cls = load_policy_class(class_path, base_dir)
    p = msgspec.convert(params or {}, cls.Params)
    return lambda ctx: cls(p, ctx)


def entry_latencies(log_dir: str | Path, policy_id: int) -> list[int]:
    """Order-entry latencies of one policy's requests in a node's event log, in send order
    (nanoseconds): the venue's time on the request's first report (``ts_exch``, the
    exchange's clock, ms on Binance) minus the request's publish time. A request without
    such a report takes the median of the others. For ``latency.entry = "recorded"``.
    """
    from wiresens.eventlog import EventLogReader

    reader = EventLogReader(log_dir)
    reqs = np.concatenate(
        [
            reader.read_records(k)
            for k in (RecordKind.ORDER_NEW, RecordKind.ORDER_CANCEL, RecordKind.ORDER_REPLACE)
        ]
    )
    reqs = reqs[reqs["policy"] == policy_id]
    reqs = reqs[np.argsort(reqs["cl_ord_id"], kind="stable")]
    reports = reader.read_records(RecordKind.EXECUTION_REPORT)
    reports = reports[(reports["policy"] == policy_id) & (reports["ts_exch"] > 0)]
    first: dict[int, int] = {}
    for cid, ts in zip(reports["cl_ord_id"].tolist(), reports["ts_exch"].tolist(), strict=True):
        first.setdefault(cid, ts)
    out: list[int | None] = [
        first[c] - p if c in first else None
        for c, p in zip(reqs["cl_ord_id"].tolist(), _ts(reqs).tolist(), strict=True)
    ]
    known = [v for v in out if v is not None]
    fill = int(np.median(known)) if known else 0
    return [max(v, 0) if v is not None else fill for v in out]
