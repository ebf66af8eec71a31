"""Tick-to-order latency through real actor processes, against multiprocessing.Queue.

Path measured (the node's, with the production code of each stage)::

    bench feed ──md ring──► policy host (PolicyObject.on_book -> buy/cancel)
               ──oq ring──► execution (filters, OMS, route) ──orders ring──►
               gateway stage (OrderEncoder: the WebSocket API frame bytes)

The market record is stamped with ``ts_recv`` when the bench feed writes it;
the policy host copies that stamp into the ORDER_REQUEST it causes; the
gateway stage takes ``now - ts_recv`` once the frame bytes are ready to be
written to the socket. This machine has two cores, so the policy host spins
on one, execution on the other, and the gateway stage runs inside the
execution process (in a node it is the feed's job); the bench feed sleeps
between ticks (paced, so the figure is latency, not queueing) on the execution
CPU, so the policy's CPU is its own.

Baseline, same run: the same PolicyObject and the same execution steps in two
processes connected by ``multiprocessing.Queue`` (feed -> policy -> execution).

Cases: ring with spin waits (the target configuration), ring with blocking
waits (doorbells), and the Queue baseline.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import tempfile
import time
import uuid
from typing import Any

import msgspec
import numpy as np

from benchmarks.common import (
    fmt_ratio,
    fmt_us,
    histogram_from_ns,
    latency_figures,
    machine_info,
    pick_cpus,
    pin,
    print_table,
    spread,
    write_json,
)
from wiresens.actors.actor import ActorSpec
from wiresens.actors.master import StrategyMaster
from wiresens.actors.topology import Topology
from wiresens.binance.orders import OrderEncoder
from wiresens.instruments import Instrument, InstrumentTable
from wiresens.oms import OrderTable
from wiresens.policy import BookView, PolicyContext, PolicyObject, TopOfBook
from wiresens.records import (
    ORDER_REQUEST,
    SCALE,
    ExecStatus,
    ExecType,
    RecordKind,
    new_record,
)
from wiresens.risk import check_filters
from wiresens.shm import Consumer, Ring

__all__ = ["SMOKE", "GatewayStage", "TickTaker", "main"]

SMOKE: dict[str, Any] = {"records": 300, "runs": 1}
DEFAULT_TICKS = 20_000
WARMUP = 500
PACE_S = 0.0002

INSTRUMENT = Instrument(
    symbol="BTCUSDT",
    base="BTC",
    quote="USDT",
    status="TRADING",
    tick_size=SCALE // 100,
    step_size=SCALE // 100_000,
    min_qty=SCALE // 100_000,
    min_notional=5 * SCALE,
)


class TickTakerParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    qty: int = SCALE // 1000


class TickTaker(PolicyObject):
    """Acts on every top-of-book change: a buy at the bid, then its cancel, alternately."""

    Params = TickTakerParams

    def on_start(self) -> None:
        self.last = 0

    def on_book(self, symbol: int, book: BookView) -> None:
        if self.last:
            self.cancel(self.last)
            self.last = 0
        else:
            self.last = self.buy(symbol, self.params.qty, book.bid_px)


class GatewayStage:
    """The gateway's socket-side step: order record -> WebSocket API frame, then stamp.

    It also answers each request as the exchange would (NEW for an order, CANCELED for
    a cancel) through the reports ring, off the measured path, so execution's and the
    policy's order tables stay as small as in a live node.
    """

    def __init__(self, out: str, count: int, reports: str) -> None:
        self.out = out
        self.lat = np.zeros(count, np.int64)
        self.n = 0
        self.raw = memoryview(bytearray(ORDER_REQUEST.itemsize))
        self.words = self.raw.cast("q")
        self.frame_bytes = 0
        self.reports_name = reports
        self.rep = new_record(RecordKind.EXECUTION_REPORT)
        self.rep_raw = memoryview(self.rep).cast("B")  # type: ignore[arg-type]
        self.exch_id = 0

    def attach(self, orders: str, table: InstrumentTable) -> None:
        self.consumer: Consumer = Ring.attach(orders, None).consumer()
        self.reports = Ring.attach(self.reports_name, None).producer()
        self.encoder = OrderEncoder(table)

    def poll(self) -> int:
        if not self.consumer.try_read(self.raw):
            return 0
        frame = self.encoder.encode(self.raw)
        now = time.time_ns()
        self.encoder.pending.clear()
        if frame is not None and self.n < len(self.lat) and self.words[2]:
            self.lat[self.n] = now - self.words[2]
            self.n += 1
            self.frame_bytes += len(frame)
        self._answer()
        return 1

    def _answer(self) -> None:
        req = np.frombuffer(self.raw, ORDER_REQUEST)[0]
        r = self.rep[0]
        kind = int(req["kind"])
        if kind == RecordKind.ORDER_NEW:
            self.exch_id += 1
            r["cl_ord_id"], r["orig_cl_ord_id"], r["exch_order_id"] = (
                req["cl_ord_id"],
                0,
                self.exch_id,
            )
            r["status"], r["exec_type"] = ExecStatus.NEW, ExecType.NEW
        elif kind == RecordKind.ORDER_CANCEL:
            r["cl_ord_id"], r["orig_cl_ord_id"] = req["cl_ord_id"], req["orig_cl_ord_id"]
            r["status"], r["exec_type"] = ExecStatus.CANCELED, ExecType.CANCELED
        else:
            return
        for f in ("symbol", "price", "qty", "side", "policy", "account"):
            r[f] = req[f]
        r["trade_id"] = -1
        while not self.reports.try_write(self.rep_raw):
            pass

    def close(self) -> None:
        np.save(self.out, self.lat[: self.n])


def _feed(topo: Topology, ticks: int, pace: float) -> None:
    prod = Ring.attach(topo.md(0), None).producer()
    rec = new_record(RecordKind.TOP_OF_BOOK)
    rec["symbol"] = 1
    raw = memoryview(rec).cast("B")  # type: ignore[arg-type]
    words = raw.cast("q")
    bid = 65_000 * SCALE
    for i in range(ticks):
        words[4] = bid + (i % 7) * (SCALE // 100)
        words[5] = SCALE
        words[6] = bid + SCALE
        words[7] = SCALE
        words[2] = time.time_ns()
        while not prod.try_write(raw):
            time.sleep(0.0001)
        time.sleep(pace)
    prod.close()


def _run_ring(ticks: int, cpus: list[int], idle: str) -> np.ndarray[Any, Any]:
    prefix = f"wsbench.{uuid.uuid4().hex[:8]}"
    topo = Topology(prefix, 1, 1, md_capacity=1 << 14, order_capacity=1 << 14)
    names = topo.create()
    total = ticks + WARMUP
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "lat.npy")
        common = {"prefix": prefix, "policies": 1, "symbol_count": 1, "instruments": [INSTRUMENT]}
        specs = [
            ActorSpec(
                name="policy",
                group="policy",
                factory="wiresens.actors.policy_host:PolicyHost",
                cpu=cpus[0],
                idle=idle,
                kwargs={
                    **{k: common[k] for k in ("prefix", "instruments")},
                    "policies": 1,
                    "symbol_count": 1,
                    "policy_index": 0,
                    "policy_name": "bench",
                    "policy_class": "benchmarks.bench_tick_to_order:TickTaker",
                    "symbols": [1],
                },
            ),
            ActorSpec(
                name="execution",
                group="execution",
                factory="wiresens.actors.execution:Execution",
                cpu=cpus[1],
                idle=idle,
                kwargs={
                    **common,
                    "cancel_timeout": 0.0,
                    "gateway_stage": "benchmarks.bench_tick_to_order:GatewayStage",
                    "gateway_kwargs": {"out": out, "count": total, "reports": topo.reports},
                },
            ),
        ]
        master = StrategyMaster(prefix, specs, max_restarts=0)
        master.owned_segments.extend(names)
        master.start()
        try:
            md = Ring.attach(topo.md(0), None)
            orders = Ring.attach(topo.orders, None)
            deadline = time.monotonic() + 60
            while not (md.stats().consumer_pid and orders.stats().consumer_pid):
                if time.monotonic() > deadline or master.poll():
                    raise RuntimeError(f"actors did not start: {master.events}")
                time.sleep(0.01)
            # The bench feed shares the execution CPU: it writes a tick and sleeps before
            # execution has work from it, while the policy keeps its CPU to itself.
            own = os.sched_getaffinity(0)
            pin(cpus[1])
            try:
                _feed(topo, total, PACE_S)
            finally:
                os.sched_setaffinity(0, own)
            deadline = time.monotonic() + 60
            while orders.stats().read < total and time.monotonic() < deadline:
                time.sleep(0.01)
            done = orders.stats().read
            md.close()
            orders.close()
            if done < total:
                raise RuntimeError(f"only {done} of {total} orders reached the gateway stage")
        finally:
            master.stop()
            master.close()
        lat = np.load(out)
    return lat[WARMUP:]


class _QueueSink:
    def __init__(self, q: Any) -> None:
        self.q = q

    def try_submit(self, record: memoryview) -> bool:
        self.q.put(bytes(record))
        return True


def _q_policy(q_in: Any, q_out: Any, cpu: int) -> None:
    pin(cpu)
    table = InstrumentTable([INSTRUMENT])
    ctx = PolicyContext(
        policy_id=0, name="bench", sink=_QueueSink(q_out), instruments=table, symbols=[1]
    )
    policy = TickTaker(None, ctx)
    policy.start()
    order_words = policy._req_bytes.cast("q")
    book = TopOfBook()
    while True:
        item = q_in.get()
        if item is None:
            q_out.put(None)
            return
        ts, bid, bq, ask, aq = item
        book.bid_px, book.bid_qty, book.ask_px, book.ask_qty, book.ts = bid, bq, ask, aq, ts
        order_words[2] = ts
        policy.deliver_book(1, book)


def _q_exec(q_in: Any, out: str, count: int, cpu: int) -> None:
    pin(cpu)
    table = InstrumentTable([INSTRUMENT])
    instruments = [None, *table]
    oms = OrderTable()
    enc = OrderEncoder(table)
    lat = np.zeros(count, np.int64)
    n = 0
    while True:
        b = q_in.get()
        if b is None:
            break
        rec = np.frombuffer(b, ORDER_REQUEST)[0]
        if rec["kind"] != RecordKind.ORDER_CANCEL:
            check_filters(
                int(rec["symbol"]),
                int(rec["order_type"]),
                int(rec["price"]),
                int(rec["qty"]),
                instruments,
            )
        oms.on_request(rec)
        frame = enc.encode(b)
        enc.pending.clear()
        now = time.time_ns()
        if frame is not None and n < count:
            lat[n] = now - int(rec["ts_recv"])
            n += 1
    np.save(out, lat[:n])


def _run_queue(ticks: int, cpus: list[int]) -> np.ndarray[Any, Any]:
    ctx = mp.get_context("spawn")
    q1: Any = ctx.Queue()
    q2: Any = ctx.Queue()
    total = ticks + WARMUP
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "lat.npy")
        pp = ctx.Process(target=_q_policy, args=(q1, q2, cpus[0]))
        pe = ctx.Process(target=_q_exec, args=(q2, out, total, cpus[1]))
        pp.start()
        pe.start()
        time.sleep(1.0)  # both processes import and block on get()
        bid = 65_000 * SCALE
        own = os.sched_getaffinity(0)
        pin(cpus[1])  # as in the ring cases
        for i in range(total):
            q1.put((time.time_ns(), bid + (i % 7) * (SCALE // 100), SCALE, bid + SCALE, SCALE))
            time.sleep(PACE_S)
        q1.put(None)
        os.sched_setaffinity(0, own)
        pp.join(60)
        pe.join(60)
        for p in (pp, pe):
            if p.is_alive():
                os.kill(p.pid or 0, signal.SIGKILL)
        lat = np.load(out)
    return lat[WARMUP:]


def run_once(ticks: int, cpus: list[int]) -> dict[str, dict[str, float]]:
    cases = {
        "ring spin": _run_ring(ticks, cpus, "spin"),
        "ring block": _run_ring(ticks, cpus, "block"),
        "mp.Queue": _run_queue(ticks, cpus),
    }
    return {name: latency_figures(histogram_from_ns(lat)) for name, lat in cases.items()}


def main(
    *, json_out: str | None = None, runs: int = 1, records: int | None = None, quiet: bool = False
) -> dict[str, Any]:
    """Run ``runs`` times; print percentile tables (µs) and the spin/Queue p50 ratio."""
    ticks = DEFAULT_TICKS if records is None else records
    cpus = pick_cpus(2)
    all_runs = [run_once(ticks, cpus) for _ in range(runs)]
    cases = list(all_runs[0])
    keys = ["p50", "p90", "p99", "p99.9", "max", "mean"]
    summary = {c: {k: spread(r[c][k] for r in all_runs) for k in keys} for c in cases}
    ratios = spread(r["mp.Queue"]["p50"] / r["ring spin"]["p50"] for r in all_runs)
    doc: dict[str, Any] = {
        "benchmark": "tick-to-order",
        "config": {
            "ticks": ticks,
            "runs": runs,
            "cpus": {"policy": cpus[0], "execution+gateway": cpus[1]},
            "pace_us": PACE_S * 1e6,
            "path": "md ring -> PolicyHost(TickTaker) -> oq ring -> Execution -> orders ring -> OrderEncoder frame",
        },
        "machine": machine_info(),
        "latency_us": {c: {k: dict(v) for k, v in s.items()} for c, s in summary.items()},
        "queue_over_ring_spin_p50": dict(ratios),
    }
    if not quiet:
        print(
            f"tick-to-order: {ticks} ticks x {runs} run(s), policy on CPU {cpus[0]}, "
            f"execution + gateway stage on CPU {cpus[1]}, one tick every {PACE_S * 1e6:.0f} µs"
        )
        rows = [[c, *(summary[c][k].text("{:,.2f}") for k in keys)] for c in cases]
        print_table("latency (µs): median over runs (min-max)", ["case", *keys], rows)
        print(
            f"\nmp.Queue p50 / ring-spin p50: {fmt_ratio(ratios.median)}  (per run: "
            f"{', '.join(fmt_us(r['mp.Queue']['p50'] / r['ring spin']['p50']) for r in all_runs)})"
        )
    write_json(doc, json_out)
    return doc
