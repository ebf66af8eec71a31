"""Tick-to-order latency while the Kafka sink copies the node's log, with Kafka up, then down.

The issue's fault test asks that a Kafka outage leave the hot path alone ("tick-to-order
p99 unchanged within noise"). This benchmark runs the tick-to-order path of
``bench_tick_to_order`` (policy host and execution spinning on their own CPUs, the
gateway stage in the execution process) *beside* the node's logging side: the sidecar
drains the feed's and execution's tap rings into an event log, and a Kafka sink actor
copies that log to Kafka, all as in ``wiresens node up`` with a ``[sidecar.kafka]``
table. The bench feed taps every tick (a TOP_OF_BOOK record and the raw bookTicker
message) as the real feed does, so the log grows at a node's pace.

Phases, one master and one log, in this order:

* ``kafka up``: the sink copies as the log grows;
* ``kafka down``: from the moment the broker has stopped (``scripts/services/kafka.sh
  stop``), for at least as many ticks as the other phases and until the sink has failed
  a write: it waits for acknowledgements, fails, reconnects and backs off while its
  backlog grows. The sink's write timeout is 2 s here (a node's is 15 s), so the
  outage reaches the failing and reconnecting part within seconds;
* ``kafka back``: the broker has started again; the sink reconnects (after its current
  backoff, up to 10 s) and catches its backlog up, during or after the phase.

Each phase's latencies are the ticks stamped inside it. The report gives the percentile
table of each phase and the ratios of ``kafka down`` and ``kafka back`` to ``kafka up``
(p50 and p99), per run and as medians. After the ticks the spinning actors are stopped
and the sink must catch up to the log's end (``copied_all``; given up after 30 s without
progress).

Needs Kafka started by the project's scripts, since the benchmark stops and starts it:
run it as ``bash scripts/test-services.sh .venv/bin/python -m benchmarks tick_outage``
(``WIRESENS_KAFKA_BOOTSTRAP`` and ``WIRESENS_SERVICES_DIR`` set); without them it starts
its own Kafka with ``scripts/services/up.sh`` and stops it at the end.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.bench_tick_to_order import INSTRUMENT, PACE_S, WARMUP, GatewayStage
from benchmarks.common import (
    histogram_from_ns,
    latency_figures,
    machine_info,
    pick_cpus,
    pin,
    print_table,
    spread,
    started_services,
    write_json,
)
from wiresens.actors.actor import ActorSpec
from wiresens.actors.master import StrategyMaster
from wiresens.actors.topology import Topology
from wiresens.eventlog import EventLogOffset, EventLogReader
from wiresens.records import SCALE, RecordKind, new_record
from wiresens.shm import Producer, Ring
from wiresens.taps import RawSource, Tap
from wiresens.testing.services import Service

__all__ = ["PHASES", "SMOKE", "StampedGatewayStage", "main"]

SMOKE: dict[str, Any] = {"records": 300, "runs": 1}
"""Arguments of :func:`main` for tests/benchmarks (the broker's stop and start dominate)."""
DEFAULT_TICKS = 10_000
PHASES = ("kafka up", "kafka down", "kafka back")
WRITE_TIMEOUT_S = 2.0
_KEYS = ("p50", "p90", "p99", "p99.9", "max", "mean")


class StampedGatewayStage(GatewayStage):
    """The tick-to-order gateway stage, also keeping each order's tick stamp (``ts_recv``)
    so the latencies can be split by phase afterwards."""

    def __init__(self, out: str, count: int, reports: str) -> None:
        super().__init__(out, count, reports)
        self.ts = np.zeros(count, np.int64)

    def poll(self) -> int:
        n = self.n
        work = super().poll()
        if self.n > n:
            self.ts[n] = self.words[2]
        return work

    def close(self) -> None:
        np.save(self.out, np.stack([self.ts[: self.n], self.lat[: self.n]]))


@contextmanager
def kafka() -> Iterator[Service]:
    """The Kafka of ``scripts/test-services.sh``, or one started here (and stopped after)."""
    address = os.environ.get("WIRESENS_KAFKA_BOOTSTRAP")
    run_dir = os.environ.get("WIRESENS_SERVICES_DIR")
    if address and run_dir:
        yield Service("kafka", address, run_dir)
        return
    with started_services("tick_outage", "kafka") as found:
        yield Service("kafka", found["WIRESENS_KAFKA_BOOTSTRAP"], found["WIRESENS_SERVICES_DIR"])


class _Feed:
    """The bench feed: a tick on the market-data ring, and the same tick on the feed's
    tap (record and raw message), as the real feed logs what it receives."""

    def __init__(self, topo: Topology) -> None:
        self.prod: Producer = Ring.attach(topo.md(0), None).producer()
        self.tap = Tap(topo.tap("feed"))
        self.rec = new_record(RecordKind.TOP_OF_BOOK)
        self.rec["symbol"] = 1
        self.raw = memoryview(self.rec).cast("B")  # type: ignore[arg-type]
        self.words = self.raw.cast("q")
        self.i = 0

    def ticks(self, n: int, until: Callable[[], bool] | None = None) -> int:
        """Send ``n`` ticks (or until ``until()`` is true, checked every 50); returns how many."""
        bid = 65_000 * SCALE
        words = self.words
        for k in range(n):
            if until is not None and k % 50 == 0 and until():
                return k
            i = self.i = self.i + 1
            px = bid + (i % 7) * (SCALE // 100)
            words[4] = px
            words[5] = SCALE
            words[6] = bid + SCALE
            words[7] = SCALE
            now = words[2] = time.time_ns()
            while not self.prod.try_write(self.raw):
                time.sleep(0.0001)
            # The tap, after the tick is on its way: as in the feed, off the measured path.
            self.tap.record(int(RecordKind.TOP_OF_BOOK), self.raw)
            self.tap.raw(
                int(RawSource.MARKET_STREAM),
                now,
                b"btcusdt@bookTicker",
                b'{"u":%d,"s":"BTCUSDT","b":"%d","B":"1","a":"%d","A":"1"}' % (i, px, bid + SCALE),
            )
            self.tap.flush()
            time.sleep(PACE_S)
        return n

    def close(self) -> None:
        self.prod.close()


def _sink_status(events: Path) -> dict[str, Any]:
    try:
        doc: dict[str, Any] = json.loads((events / "sinks" / "kafka.status.json").read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return doc


def _wait(what: str, cond: Callable[[], bool], master: StrategyMaster, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline or master.poll():
            raise RuntimeError(f"timed out waiting for {what}; master events: {master.events}")
        time.sleep(0.05)


def run_once(ticks: int, cpus: list[int], service: Service) -> dict[str, Any]:
    """One master, three phases; latency figures per phase (µs) and the sink's outcome."""
    prefix = f"wsbench.{uuid.uuid4().hex[:8]}"
    topo = Topology(prefix, 1, 1, md_capacity=1 << 14, order_capacity=1 << 14)
    names = topo.create()
    # Warm-up, three phases, and the ticks sent while waiting for the sink to notice.
    capacity = WARMUP + 3 * ticks + 200_000
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "lat.npy")
        events = Path(tmp) / "events"
        common = {"prefix": prefix, "policies": 1, "symbol_count": 1, "instruments": [INSTRUMENT]}
        specs = [
            ActorSpec(
                name="policy",
                group="policy",
                factory="wiresens.actors.policy_host:PolicyHost",
                cpu=cpus[0],
                idle="spin",
                kwargs={
                    "prefix": prefix,
                    "instruments": [INSTRUMENT],
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
                idle="spin",
                kwargs={
                    **common,
                    "cancel_timeout": 0.0,
                    "gateway_stage": "benchmarks.bench_tick_outage:StampedGatewayStage",
                    "gateway_kwargs": {"out": out, "count": capacity, "reports": topo.reports},
                },
            ),
            # The node's logging side, as wiresens.node builds it: unpinned, blocking waits.
            ActorSpec(
                name="sidecar",
                group="sidecar",
                factory="wiresens.actors.sidecar:Sidecar",
                cpu=-1,
                idle="block",
                kwargs={
                    "taps": [topo.tap(a) for a in topo.taps],
                    "event_log_dir": str(events),
                    "node": "bench",
                },
            ),
            ActorSpec(
                name="sink:kafka",
                group="sidecar",
                factory="wiresens.actors.sink:SinkActor",
                cpu=-1,
                idle="block",
                kwargs={
                    "sink": "kafka",
                    "event_log_dir": str(events),
                    "node": "bench",
                    "options": {
                        "bootstrap_servers": [service.address],
                        "topic_prefix": f"bench{uuid.uuid4().hex[:8]}",
                        # Gives up on a write after 2 s (a node: 15 s), so the outage shows
                        # as failed writes and reconnect attempts within seconds.
                        "timeout_s": WRITE_TIMEOUT_S,
                    },
                },
            ),
        ]
        master = StrategyMaster(prefix, specs, max_restarts=0)
        master.owned_segments.extend(names)
        bounds: dict[str, tuple[int, int]] = {}
        master.start()
        try:
            md = Ring.attach(topo.md(0), None)
            orders = Ring.attach(topo.orders, None)
            _wait(
                "the actors",
                lambda: bool(md.stats().consumer_pid and orders.stats().consumer_pid),
                master,
                60,
            )
            feed = _Feed(topo)
            # The feed shares the execution CPU (as in bench_tick_to_order): it writes a
            # tick and sleeps before execution has work from it.
            own = os.sched_getaffinity(0)
            pin(cpus[1])
            try:
                feed.ticks(WARMUP)
                # Steady state: the sink has copied the warm-up (every topic exists).
                _wait(
                    "the Kafka sink's first catch-up",
                    lambda: bool(
                        (st := _sink_status(events)).get("records", 0) > 0 and st["caught_up"]
                    ),
                    master,
                    60,
                )
                t0 = time.time_ns()
                feed.ticks(ticks)
                bounds["kafka up"] = (t0, time.time_ns())
                service.stop()
                # Measured from the broker's stop on, for at least `ticks` ticks and until
                # the sink has failed a write (it notices the outage only when it writes).
                t0 = time.time_ns()
                down_ticks = feed.ticks(ticks)
                down_ticks += feed.ticks(
                    capacity - WARMUP - 3 * ticks,
                    until=lambda: _sink_status(events).get("retries", 0) > 0,
                )
                bounds["kafka down"] = (t0, time.time_ns())
                down = _sink_status(events)
                if not down.get("total_retries"):
                    raise RuntimeError("the Kafka sink never reported the outage")
                service.start()
                t0 = time.time_ns()
                feed.ticks(ticks)
                bounds["kafka back"] = (t0, time.time_ns())
            finally:
                os.sched_setaffinity(0, own)
                feed.close()
            total = WARMUP + 2 * ticks + down_ticks
            _wait(
                "every order at the gateway stage", lambda: orders.stats().read >= total, master, 60
            )
            md.close()
            orders.close()
            # The ticks are over: stop the spinning actors so the sidecar and the sink have
            # the CPUs, then let the sink catch up (not measured; bounded by its progress).
            master.stop_actor("policy")
            master.stop_actor("execution")
            time.sleep(0.5)  # the sidecar drains the last taps
            end = EventLogReader(events).end_offset()
            copied_all = _catch_up(events, end, master)
        finally:
            if not service.is_running():
                service.start()
            master.stop()
            master.close()
        ts, lat = np.load(out)
        final = _sink_status(events)
    figures: dict[str, Any] = {}
    for phase in PHASES:
        lo, hi = bounds[phase]
        sel = lat[(ts >= lo) & (ts < hi)]
        figures[phase] = latency_figures(histogram_from_ns(sel))
    return {
        "latency_us": figures,
        "sink": {
            "retries_in_outage": int(down.get("total_retries", 0)),
            "backlog_entries_in_outage": down.get("lag_entries"),
            "records_copied": int(final.get("records", 0)),
            "copied_all": copied_all,
            "ticks_in_outage": down_ticks,
        },
    }


def _catch_up(events: Path, end: EventLogOffset, master: StrategyMaster) -> bool:
    """Wait until the sink has committed ``end``; False once it made no progress for
    30 s (or after 10 minutes)."""

    def committed() -> EventLogOffset | None:
        c = _sink_status(events).get("committed")
        return None if c is None else EventLogOffset.decode(c)

    last, last_t = committed(), time.monotonic()
    deadline = last_t + 600
    while (c := committed()) is None or c < end:
        now = time.monotonic()
        if c != last:
            last, last_t = c, now
        if now - last_t > 30 or now > deadline or master.poll():
            return False
        time.sleep(0.2)
    return True


def main(
    *, json_out: str | None = None, runs: int = 1, records: int | None = None, quiet: bool = False
) -> dict[str, Any]:
    """Run ``runs`` times; print each phase's percentiles (µs) and the outage ratios."""
    ticks = DEFAULT_TICKS if records is None else records
    cpus = pick_cpus(2)
    with kafka() as service:
        all_runs = [run_once(ticks, cpus, service) for _ in range(runs)]
    summary = {
        ph: {k: spread(r["latency_us"][ph][k] for r in all_runs) for k in (*_KEYS, "count")}
        for ph in PHASES
    }
    ratios = {
        f"{ph} / kafka up {k}": spread(
            r["latency_us"][ph][k] / r["latency_us"]["kafka up"][k] for r in all_runs
        )
        for ph in PHASES[1:]
        for k in ("p50", "p99")
    }
    doc: dict[str, Any] = {
        "benchmark": "tick-outage",
        "config": {
            "ticks_per_phase": ticks,
            "runs": runs,
            "cpus": {"policy": cpus[0], "execution+gateway+feed": cpus[1], "sidecar+sink": "any"},
            "pace_us": PACE_S * 1e6,
            "phases": list(PHASES),
            "sink_write_timeout_s": WRITE_TIMEOUT_S,
            "path": "md ring -> PolicyHost(TickTaker) -> oq ring -> Execution -> orders ring -> "
            "OrderEncoder frame; beside it taps -> sidecar -> event log -> Kafka sink actor",
        },
        "machine": machine_info(),
        "latency_us": {ph: {k: dict(v) for k, v in s.items()} for ph, s in summary.items()},
        "ratios": {name: dict(v) for name, v in ratios.items()},
        "runs": [r["sink"] for r in all_runs],
        "copied_all": all(r["sink"]["copied_all"] for r in all_runs),
    }
    if not quiet:
        print(
            f"tick-outage: {ticks} ticks per phase x {runs} run(s), policy on CPU {cpus[0]}, "
            f"execution + gateway stage + bench feed on CPU {cpus[1]}, sidecar and Kafka sink "
            f"unpinned, one tick every {PACE_S * 1e6:.0f} µs"
        )
        rows = [[ph, *(summary[ph][k].text("{:,.2f}") for k in _KEYS)] for ph in PHASES]
        print_table(
            "tick-to-order latency (µs): median over runs (min-max)", ["phase", *_KEYS], rows
        )
        print()
        for name, v in ratios.items():
            print(f"{name}: {v.median:.2f}x  (min-max over runs: {v.text('{:.2f}')})")
        for i, r in enumerate(all_runs):
            s = r["sink"]
            print(
                f"run {i + 1}: sink retried {s['retries_in_outage']} times in the outage, "
                f"backlog {s['backlog_entries_in_outage']} entries, copied "
                f"{s['records_copied']} records, whole log copied: {s['copied_all']} "
                f"({s['ticks_in_outage']} ticks in the outage)"
            )
    write_json(doc, json_out)
    return doc
