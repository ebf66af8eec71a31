"""SPSC ring vs ``multiprocessing.Pipe``: one-way latency and throughput between two processes.

``wiresens bench ring`` or ``python -m benchmarks ring``. A producer and a
consumer process, pinned to different CPUs, move 64-byte records:

* Latency: the producer stamps ``time.perf_counter_ns()`` (CLOCK_MONOTONIC, one clock
  for all processes) into each record just before writing it, paced so that the
  figure is transport latency, not queueing; the consumer takes ``now - stamp``.
  Cases: the ring with a spinning consumer, the ring with a blocking consumer
  (:class:`~wiresens.shm.BlockIdle` with no spinning: every record wakes it through
  the doorbell), and a Pipe read with a blocking ``recv_bytes_into``.
* Throughput: records per second from the producer's first write to the consumer's
  last read, for single records (``try_write``/``try_read``, ``send_bytes`` per
  record) and batches of 64 (``write_batch``/``read_into``, one 4 KiB message).

Every consumer checks the sequence number of every record, so a run also proves
that nothing was lost, duplicated or reordered; a failed check fails the run.

The loops are written as an actor's would be: preallocated records and byte views
(``memoryview(arr).cast("B")``), bound methods in locals, no allocation per record.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
import traceback
from array import array
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from typing import Any, NamedTuple

import numpy as np

from benchmarks.common import (
    PERCENTILES,
    fmt_rate,
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
from wiresens.shm import BlockIdle, Ring

__all__ = ["RECORD", "SMOKE", "main", "run_once"]

RECORD = np.dtype([("seq", "<i8"), ("stamp_ns", "<i8"), ("payload", "V48")])
"""The benchmark's 64-byte record: a sequence number, a send stamp, padding."""
SIZE = RECORD.itemsize
BATCH = 64
CAPACITY = 8192
# The batch producers cycle through an image of IMAGE records whose seq is (position mod
# IMAGE). IMAGE > CAPACITY, so a stale slot (a lap behind) can never pass the check.
IMAGE = 2 * CAPACITY

SPIN_INTERVAL_NS = 20_000
SLEEP_INTERVAL_NS = 80_000
DEFAULT_RECORDS = 100_000
# Throughput cases move this many records per latency record unless told otherwise.
TPUT_PER_LATENCY_RECORD = 10
DEFAULT_TPUT_RECORDS = TPUT_PER_LATENCY_RECORD * DEFAULT_RECORDS
# Cases whose consumer sleeps get this share of the latency records (their pacing is slower).
SLEEP_SHARE = 4
# A Pipe moves single records far slower than the ring; a rate does not need as many.
PIPE_SINGLE_SHARE = 4
WARMUP_FRACTION = 10
# Under --realtime the spinning case must stay inside one second's real-time budget
# (95% by default), or the kernel stalls it for ~50 ms and the tail shows the stall.
RT_SPIN_MAX_RECORDS = 750_000_000 // SPIN_INTERVAL_NS
RT_PAUSE_S = 1.0

SMOKE: dict[str, Any] = {"records": 400, "tput_records": 4096, "runs": 1}
"""Arguments of :func:`main` that finish in about a second (tests/benchmarks)."""

LATENCY_CASES = ("ring spin", "ring block", "pipe")
TPUT_CASES = ("ring single", "ring batch", "pipe single", "pipe batch")
LABELS = {
    "ring spin": "ring, spinning consumer",
    "ring block": "ring, blocking consumer (doorbell)",
    "pipe": "Pipe, blocking recv",
    "ring single": "ring, single records",
    "ring batch": f"ring, batches of {BATCH}",
    "pipe single": "Pipe, single records",
    "pipe batch": f"Pipe, batches of {BATCH}",
}

TARGETS = (
    # (figure key, description, limit, higher is better)
    ("latency.ring spin.p50", "ring spin one-way p50 <= 3 us", 3.0, False),
    ("latency.ring spin.p99", "ring spin one-way p99 <= 15 us", 15.0, False),
    ("ratio.p50 pipe/ring spin", "p50 >= 10x lower than Pipe", 10.0, True),
    ("throughput.ring single", "single-record writes >= 1,000,000 rec/s", 1e6, True),
    ("throughput.ring batch", f"batches of {BATCH} >= 20,000,000 rec/s", 20e6, True),
)


# -- child processes ----------------------------------------------------------------------
# Each side runs in its own process, pinned, and returns a dict through a pipe.


class Placement(NamedTuple):
    """Where the two sides run: their CPUs, and whether as SCHED_FIFO real-time tasks."""

    producer: int
    consumer: int
    realtime: bool = False


def _child(
    fn: Callable[..., dict[str, Any]],
    cpu: int,
    realtime: bool,
    args: tuple[Any, ...],
    out: Connection,
) -> None:
    try:
        pin(cpu)
        if realtime:
            try:
                os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
            except PermissionError:
                raise PermissionError(
                    "--realtime needs CAP_SYS_NICE (root, or `setcap cap_sys_nice+ep` on the "
                    "interpreter); run without --realtime"
                ) from None
        result = fn(*args)
    except BaseException:
        out.send({"error": traceback.format_exc()})
    else:
        out.send(result)
    finally:
        out.close()


def _record() -> tuple[np.ndarray[Any, Any], memoryview, memoryview]:
    """A one-record buffer, its bytes and its int64 words (0: seq, 1: stamp)."""
    rec = np.zeros(1, RECORD)
    raw = memoryview(rec).cast("B")  # type: ignore[arg-type]
    return rec, raw, raw.cast("q")


def _image(count: int) -> tuple[np.ndarray[Any, Any], memoryview]:
    """``count`` records whose seq is their index mod IMAGE, and their bytes."""
    img = np.zeros(count, RECORD)
    img["seq"] = np.arange(count) % IMAGE
    return img, memoryview(img).cast("B")  # type: ignore[arg-type]


def _pace_and_send(
    send: Callable[[memoryview], Any], raw: memoryview, q: memoryview, n: int, interval: int
) -> int:
    """Send ``n`` stamped records one per ``interval`` ns; returns the failed attempts."""
    now = time.perf_counter_ns
    retries = 0
    t_next = now()
    for seq in range(n):
        t = now()
        while t < t_next:
            t = now()
        q[0] = seq
        q[1] = now()
        while not send(raw):
            retries += 1
        # After a preemption start afresh rather than burst (a burst would measure queueing).
        t_next = t_next + interval if t_next + interval > t else t + interval
    return retries


def _ring_latency_producer(
    name: str, n: int, interval: int, ready: Any, deadline: int
) -> dict[str, Any]:
    ring = Ring.attach(name, RECORD)
    prod = ring.producer()
    _rec, raw, q = _record()
    if not ready.wait(max(0.0, (deadline - time.perf_counter_ns()) / 1e9)):
        return {"error": "the consumer never became ready"}
    full = _pace_and_send(prod.try_write, raw, q, n, interval)
    prod.close()
    return {"full": full}


def _ring_latency_consumer(
    name: str, n: int, block: bool, ready: Any, deadline: int
) -> dict[str, Any]:
    ring = Ring.attach(name, RECORD)
    cons = ring.consumer()
    idle = BlockIdle([cons], spins=0, timeout=0.001) if block else None
    _rec, raw, q = _record()
    lat = array("q", bytes(8 * n))
    now = time.perf_counter_ns
    tr = cons.try_read
    i = bad = empty = 0
    first_bad = -1
    ready.set()
    if idle is None:
        while i < n:
            if tr(raw):
                t = now()
                lat[i] = t - q[1]
                if q[0] != i:
                    bad += 1
                    first_bad = i if first_bad < 0 else first_bad
                i += 1
            else:
                empty += 1
                if not empty & 0xFFFF and now() > deadline:
                    break
    else:
        wait = idle.idle
        while i < n:
            if tr(raw):
                t = now()
                lat[i] = t - q[1]
                if q[0] != i:
                    bad += 1
                    first_bad = i if first_bad < 0 else first_bad
                i += 1
                wait(1)
            else:
                wait(0)
                empty += 1
                if not empty & 0x3FF and now() > deadline:
                    break
    out = {"lat": lat.tobytes(), "received": i, "bad": bad, "first_bad": first_bad}
    if idle is not None:
        out["sleeps"] = idle.sleeps
        out["wakeups"] = idle.wakeups
        idle.close()
    cons.close()
    return out


def _pipe_latency_producer(
    conn: Connection, n: int, interval: int, ready: Any, deadline: int
) -> dict[str, Any]:
    _rec, raw, q = _record()
    send = conn.send_bytes

    def sent(buf: memoryview) -> bool:
        send(buf)
        return True

    if not ready.wait(max(0.0, (deadline - time.perf_counter_ns()) / 1e9)):
        return {"error": "the consumer never became ready"}
    _pace_and_send(sent, raw, q, n, interval)
    conn.close()
    return {"full": 0}


def _pipe_latency_consumer(conn: Connection, n: int, ready: Any, deadline: int) -> dict[str, Any]:
    _rec, raw, q = _record()
    lat = array("q", bytes(8 * n))
    now = time.perf_counter_ns
    recv = conn.recv_bytes_into
    i = bad = 0
    first_bad = -1
    ready.set()
    while i < n:
        recv(raw)
        t = now()
        lat[i] = t - q[1]
        if q[0] != i:
            bad += 1
            first_bad = i if first_bad < 0 else first_bad
        i += 1
    conn.close()
    return {"lat": lat.tobytes(), "received": i, "bad": bad, "first_bad": first_bad}


def _ring_tput_producer(
    name: str, n: int, batch: bool, ready: Any, deadline: int
) -> dict[str, Any]:
    ring = Ring.attach(name, RECORD)
    prod = ring.producer()
    if not ready.wait(max(0.0, (deadline - time.perf_counter_ns()) / 1e9)):
        return {"error": "the consumer never became ready"}
    full = 0
    if batch:
        _img, img = _image(IMAGE)
        step = BATCH * SIZE
        views = [img[j : j + step] for j in range(0, IMAGE * SIZE, step)]
        vmask = len(views) - 1
        wb = prod.write_batch
        t0 = time.perf_counter_ns()
        for b in range(n // BATCH):
            src = views[b & vmask]
            done = wb(src)
            while done < BATCH:
                # Ring nearly full: finish the batch (the slice is rare, so allocation is fine).
                full += 1
                done += wb(src[done * SIZE :])
    else:
        _rec, raw, q = _record()
        tw = prod.try_write
        t0 = time.perf_counter_ns()
        for seq in range(n):
            q[0] = seq
            while not tw(raw):
                full += 1
    prod.close()
    return {"t0": t0, "full": full}


def _ring_tput_consumer(
    name: str, n: int, batch: bool, ready: Any, deadline: int
) -> dict[str, Any]:
    ring = Ring.attach(name, RECORD)
    cons = ring.consumer()
    now = time.perf_counter_ns
    i = bad = empty = 0
    first_bad = -1
    if batch:
        _dst, dst = _image(BATCH)
        dq = dst.cast("q")
        _exp, exp = _image(IMAGE + BATCH)
        eq = exp.cast("q")
        words = SIZE // 8
        kmask = IMAGE - 1
        ri = cons.read_into
        ready.set()
        while i < n:
            got = ri(dst)
            if got:
                s = (i & kmask) * words
                # Compares the seq word of every record, in C (a strided memoryview compare).
                if dq[: got * words : words] != eq[s : s + got * words : words]:
                    bad += 1
                    first_bad = i if first_bad < 0 else first_bad
                i += got
            else:
                empty += 1
                if not empty & 0xFFFF and now() > deadline:
                    break
    else:
        _rec, raw, q = _record()
        tr = cons.try_read
        ready.set()
        while i < n:
            if tr(raw):
                if q[0] != i:
                    bad += 1
                    first_bad = i if first_bad < 0 else first_bad
                i += 1
            else:
                empty += 1
                if not empty & 0xFFFF and now() > deadline:
                    break
    t1 = now()
    cons.close()
    return {"t1": t1, "received": i, "bad": bad, "first_bad": first_bad}


def _pipe_tput_producer(
    conn: Connection, n: int, batch: bool, ready: Any, deadline: int
) -> dict[str, Any]:
    send = conn.send_bytes
    if not ready.wait(max(0.0, (deadline - time.perf_counter_ns()) / 1e9)):
        return {"error": "the consumer never became ready"}
    if batch:
        _img, img = _image(IMAGE)
        step = BATCH * SIZE
        views = [img[j : j + step] for j in range(0, IMAGE * SIZE, step)]
        vmask = len(views) - 1
        t0 = time.perf_counter_ns()
        for b in range(n // BATCH):
            send(views[b & vmask])
    else:
        _rec, raw, q = _record()
        t0 = time.perf_counter_ns()
        for seq in range(n):
            q[0] = seq
            send(raw)
    conn.close()
    return {"t0": t0, "full": 0}


def _pipe_tput_consumer(
    conn: Connection, n: int, batch: bool, ready: Any, deadline: int
) -> dict[str, Any]:
    now = time.perf_counter_ns
    recv = conn.recv_bytes_into
    i = bad = 0
    first_bad = -1
    if batch:
        _dst, dst = _image(BATCH)
        dq = dst.cast("q")
        _exp, exp = _image(IMAGE + BATCH)
        eq = exp.cast("q")
        words = SIZE // 8
        kmask = IMAGE - 1
        ready.set()
        while i < n:
            got = recv(dst) // SIZE
            s = (i & kmask) * words
            if dq[: got * words : words] != eq[s : s + got * words : words]:
                bad += 1
                first_bad = i if first_bad < 0 else first_bad
            i += got
    else:
        _rec, raw, q = _record()
        ready.set()
        while i < n:
            recv(raw)
            if q[0] != i:
                bad += 1
                first_bad = i if first_bad < 0 else first_bad
            i += 1
    t1 = now()
    conn.close()
    return {"t1": t1, "received": i, "bad": bad, "first_bad": first_bad}


# -- orchestration ------------------------------------------------------------------------


def _context() -> mp.context.BaseContext:
    # forkserver: children start in milliseconds with this module preloaded, and never
    # inherit the parent's threads (pytest's, numpy's).
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["benchmarks.bench_ring"])
    return ctx


def _run_pair(
    ctx: Any,
    case: str,
    cpus: Placement,
    consumer: tuple[Callable[..., dict[str, Any]], tuple[Any, ...]],
    producer: tuple[Callable[..., dict[str, Any]], tuple[Any, ...]],
    budget_s: float,
    close_after_start: Sequence[Connection] = (),
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run the consumer and the producer where ``cpus`` says; return their results."""
    results: list[dict[str, Any]] = []
    procs = []
    conns = []
    for (fn, args), cpu in ((consumer, cpus.consumer), (producer, cpus.producer)):
        recv_end, send_end = ctx.Pipe(duplex=False)
        p = ctx.Process(target=_child, args=(fn, cpu, cpus.realtime, args, send_end), daemon=True)
        p.start()
        send_end.close()
        procs.append(p)
        conns.append(recv_end)
    for c in close_after_start:
        c.close()
    end = time.monotonic() + budget_s
    try:
        for conn, who in zip(conns, ("consumer", "producer"), strict=True):
            if not conn.poll(max(0.0, end - time.monotonic())):
                raise TimeoutError(
                    f"ring benchmark, case {case!r}: the {who} did not finish within "
                    f"{budget_s:.0f} s; the machine may be overloaded, try fewer --records"
                )
            try:
                res = conn.recv()
            except EOFError:
                res = {
                    "error": f"the {who} process died (exit code {procs[len(results)].exitcode})"
                }
            if "error" in res:
                raise RuntimeError(f"ring benchmark, case {case!r}, {who} failed:\n{res['error']}")
            results.append(res)
    finally:
        for p in procs:
            p.join(5.0)
            if p.is_alive():
                p.terminate()
                p.join(5.0)
        for conn in conns:
            conn.close()
    return results[0], results[1]


def _check(case: str, n: int, res: dict[str, Any]) -> dict[str, Any]:
    return {
        "expected": n,
        "received": int(res["received"]),
        "out_of_sequence": int(res["bad"]),
        "first_bad": int(res["first_bad"]),
        "ok": res["received"] == n and res["bad"] == 0,
    }


def _latency_case(
    ctx: Any, case: str, cpus: Placement, n: int, interval: int, tag: str
) -> tuple[dict[str, float], dict[str, Any], dict[str, Any]]:
    budget = 30.0 + 3 * n * interval / 1e9
    deadline = time.perf_counter_ns() + int(budget * 1e9)
    ready = ctx.Event()
    if case == "pipe":
        recv_end, send_end = ctx.Pipe(duplex=False)
        cons, prod = _run_pair(
            ctx,
            case,
            cpus,
            (_pipe_latency_consumer, (recv_end, n, ready, deadline)),
            (_pipe_latency_producer, (send_end, n, interval, ready, deadline)),
            budget + 10,
            close_after_start=(recv_end, send_end),
        )
    else:
        name = f"wsbench.{os.getpid()}.{tag}"
        ring = Ring.create(name, RECORD, CAPACITY)
        try:
            cons, prod = _run_pair(
                ctx,
                case,
                cpus,
                (_ring_latency_consumer, (name, n, case == "ring block", ready, deadline)),
                (_ring_latency_producer, (name, n, interval, ready, deadline)),
                budget + 10,
            )
        finally:
            ring.close()
            ring.unlink()
    samples = np.frombuffer(cons["lat"], dtype=np.int64)[: cons["received"]]
    warm = n // WARMUP_FRACTION
    figures = latency_figures(histogram_from_ns(samples[warm:]))
    extra: dict[str, Any] = {k: cons[k] for k in ("sleeps", "wakeups") if k in cons}
    extra["producer_full"] = prod["full"]
    return figures, _check(case, n, cons), extra


def _tput_case(
    ctx: Any, case: str, cpus: Placement, n: int, tag: str
) -> tuple[float, dict[str, Any], dict[str, Any]]:
    batch = case.endswith("batch")
    budget = 30.0 + n * 20e-6
    deadline = time.perf_counter_ns() + int(budget * 1e9)
    ready = ctx.Event()
    if case.startswith("pipe"):
        recv_end, send_end = ctx.Pipe(duplex=False)
        cons, prod = _run_pair(
            ctx,
            case,
            cpus,
            (_pipe_tput_consumer, (recv_end, n, batch, ready, deadline)),
            (_pipe_tput_producer, (send_end, n, batch, ready, deadline)),
            budget + 10,
            close_after_start=(recv_end, send_end),
        )
    else:
        name = f"wsbench.{os.getpid()}.{tag}"
        ring = Ring.create(name, RECORD, CAPACITY)
        try:
            cons, prod = _run_pair(
                ctx,
                case,
                cpus,
                (_ring_tput_consumer, (name, n, batch, ready, deadline)),
                (_ring_tput_producer, (name, n, batch, ready, deadline)),
                budget + 10,
            )
        finally:
            ring.close()
            ring.unlink()
    elapsed_ns = max(1, cons["t1"] - prod["t0"])
    return n * 1e9 / elapsed_ns, _check(case, n, cons), {"producer_full": prod["full"]}


def _rt_pause(cpus: Placement) -> None:
    # Real-time tasks that hog a CPU for most of a second are stalled ~50 ms so that normal
    # tasks can run (sched_rt_runtime_us, or the fair server on Linux >= 6.12): start each
    # case with the budget refilled.
    if cpus.realtime:
        time.sleep(RT_PAUSE_S)


def _counts(records: int, tput_records: int, realtime: bool = False) -> dict[str, int]:
    # Batch cases move whole batches.
    tput = max(BATCH, tput_records // BATCH * BATCH)
    sleep = max(10, records // SLEEP_SHARE)
    spin = min(records, RT_SPIN_MAX_RECORDS) if realtime else records
    return {
        "ring spin": spin,
        "ring block": sleep,
        "pipe": sleep,
        "ring single": tput,
        "ring batch": tput,
        "pipe single": max(BATCH, tput // PIPE_SINGLE_SHARE),
        "pipe batch": tput,
    }


def run_once(
    records: int = DEFAULT_RECORDS,
    tput_records: int = DEFAULT_TPUT_RECORDS,
    cpus: Placement | None = None,
    ctx: Any = None,
    run_index: int = 0,
) -> dict[str, Any]:
    """One run of every case; the figures of that run (latency in µs, rates in records/s)."""
    ctx = ctx if ctx is not None else _context()
    if cpus is None:
        producer_cpu, consumer_cpu = pick_cpus(2)
        cpus = Placement(producer_cpu, consumer_cpu)
    counts = _counts(records, tput_records, cpus.realtime)
    intervals = {
        "ring spin": SPIN_INTERVAL_NS,
        "ring block": SLEEP_INTERVAL_NS,
        "pipe": SLEEP_INTERVAL_NS,
    }
    out: dict[str, Any] = {"latency_us": {}, "throughput_rps": {}, "verified": {}, "extra": {}}
    for k, case in enumerate(LATENCY_CASES):
        _rt_pause(cpus)
        figs, check, extra = _latency_case(
            ctx, case, cpus, counts[case], intervals[case], f"r{run_index}l{k}"
        )
        out["latency_us"][case] = figs
        out["verified"][case] = check
        out["extra"][case] = extra
    for k, case in enumerate(TPUT_CASES):
        _rt_pause(cpus)
        rate, check, extra = _tput_case(ctx, case, cpus, counts[case], f"r{run_index}t{k}")
        out["throughput_rps"][case] = rate
        out["verified"][case] = check
        out["extra"][case] = extra
    lat, tput = out["latency_us"], out["throughput_rps"]
    out["ratios"] = {
        "p50 pipe/ring spin": lat["pipe"]["p50"] / max(lat["ring spin"]["p50"], 1e-9),
        "p50 pipe/ring block": lat["pipe"]["p50"] / max(lat["ring block"]["p50"], 1e-9),
        "single ring/pipe": tput["ring single"] / tput["pipe single"],
        "batch ring/pipe": tput["ring batch"] / tput["pipe batch"],
    }
    return out


def _summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    figs = [name for name, _ in PERCENTILES] + ["max", "mean"]
    return {
        "latency_us": {
            case: {f: spread(r["latency_us"][case][f] for r in runs) for f in figs}
            for case in LATENCY_CASES
        },
        "throughput_rps": {
            case: spread(r["throughput_rps"][case] for r in runs) for case in TPUT_CASES
        },
        "ratios": {key: spread(r["ratios"][key] for r in runs) for key in runs[0]["ratios"]},
    }


def _lookup(summary: dict[str, Any], key: str) -> float:
    kind, case, *fig = key.split(".", 2)
    table = {"latency": "latency_us", "throughput": "throughput_rps", "ratio": "ratios"}[kind]
    node = summary[table][case]
    return float((node[fig[0]] if fig else node)["median"])


def _print_report(doc: dict[str, Any]) -> None:
    cfg, summary = doc["config"], doc["summary"]
    runs = cfg["runs"]
    counts = cfg["counts"]
    print("Wiresens ring benchmark: SPSC ring vs multiprocessing.Pipe, 64-byte records")
    print(
        f"  producer on CPU {cfg['producer_cpu']}, consumer on CPU {cfg['consumer_cpu']}"
        f"{', both SCHED_FIFO' if cfg['realtime'] else ''}"
        f" (allowed {doc['machine']['cpus_allowed']}, {doc['machine']['cpu_model'] or 'unknown CPU'})"
    )
    print(f"  ring capacity {CAPACITY} slots of {SIZE} bytes; Python {doc['machine']['python']}")
    print(
        f"  latency: ring spin {counts['ring spin']:,} records, one per "
        f"{SPIN_INTERVAL_NS // 1000} us; ring block and Pipe {counts['pipe']:,} records, one "
        f"per {SLEEP_INTERVAL_NS // 1000} us; the first 1/{WARMUP_FRACTION} is warm-up, not counted"
    )
    if cfg["realtime"]:
        print(
            f"  realtime: spin case at most {RT_SPIN_MAX_RECORDS:,} records and {RT_PAUSE_S:.0f} s "
            "between cases, inside the kernel's real-time budget (95% of each second)"
        )
    print(
        "  idle: spin = busy try_read loop; block = BlockIdle(spins=0, timeout=1 ms), "
        "POSIX-semaphore doorbell; Pipe = blocking recv_bytes_into"
    )
    print(
        f"  throughput: ring {counts['ring single']:,} records per case, Pipe single "
        f"{counts['pipe single']:,}, Pipe batch {counts['pipe batch']:,}"
    )
    print(
        f"  load average {doc['machine']['loadavg']} at start, {doc['loadavg_end']} at end "
        f"(a loaded machine widens the tails)"
    )
    what = f"median of {runs} runs" if runs > 1 else "1 run"
    names = [n for n, _ in PERCENTILES] + ["max"]
    rows = [
        [
            LABELS[case],
            *[fmt_us(summary["latency_us"][case][n]["median"]) for n in names],
            f"{counts[case] - counts[case] // WARMUP_FRACTION:,}",
        ]
        for case in LATENCY_CASES
    ]
    print_table(f"One-way latency, us ({what})", ["case", *names, "samples"], rows)
    if runs > 1:
        rows = [
            [
                LABELS[case],
                *[
                    f"{fmt_us(summary['latency_us'][case][n]['min'])}-"
                    f"{fmt_us(summary['latency_us'][case][n]['max'])}"
                    for n in names
                ],
            ]
            for case in LATENCY_CASES
        ]
        print_table(f"One-way latency, us: range over the {runs} runs", ["case", *names], rows)
    rows = [
        [
            LABELS[case],
            fmt_rate(summary["throughput_rps"][case]["median"]),
            f"{fmt_rate(summary['throughput_rps'][case]['min'])} - "
            f"{fmt_rate(summary['throughput_rps'][case]['max'])}",
        ]
        for case in TPUT_CASES
    ]
    print_table(f"Throughput, records/s ({what})", ["case", "median", "range"], rows)
    rows = [
        [key, fmt_ratio(s["median"]), f"{fmt_ratio(s['min'])} - {fmt_ratio(s['max'])}"]
        for key, s in summary["ratios"].items()
    ]
    print_table("Ring vs Pipe, ratios within each run", ["figure", "median", "range"], rows)
    rows = [
        [
            t["target"],
            fmt_rate(t["measured"])
            if t["key"].startswith("throughput")
            else f"{t['measured']:.2f}",
            "met" if t["met"] else "NOT met",
        ]
        for t in doc["targets"]
    ]
    print_table("Targets (issue 2; medians)", ["target", "measured", "status"], rows)
    total = sum(v["received"] for r in doc["runs"] for v in r["verified"].values())
    if doc["verified"]:
        print(
            f"\nCorrectness: every consumer saw every record in sequence ({total:,} records checked)."
        )
    else:
        print("\nCorrectness: FAILED")
        for r in doc["runs"]:
            for case, v in r["verified"].items():
                if not v["ok"]:
                    print(f"  {case}: {v}")


def main(
    *,
    json_out: str | None = None,
    runs: int = 1,
    records: int | None = None,
    tput_records: int | None = None,
    realtime: bool = False,
    quiet: bool = False,
) -> dict[str, Any]:
    """Run the ring benchmark ``runs`` times, print the report, return (and write) the figures.

    ``realtime`` runs both sides as SCHED_FIFO tasks (priority 1), so that other load
    cannot preempt them: the figures then show the ring rather than the scheduler. The
    kernel's real-time throttling still leaves other tasks 5% of each CPU.

    Raises ``RuntimeError`` when a consumer saw a record out of sequence or missed one.
    """
    if runs < 1:
        raise ValueError(f"--runs must be at least 1, got {runs}")
    records = DEFAULT_RECORDS if records is None else records
    tput_records = TPUT_PER_LATENCY_RECORD * records if tput_records is None else tput_records
    if records < 10 or tput_records < BATCH:
        raise ValueError(
            f"--records must be >= 10 and --tput-records >= {BATCH} (got {records}, {tput_records})"
        )
    machine = machine_info()
    producer_cpu, consumer_cpu = pick_cpus(2)
    cpus = Placement(producer_cpu, consumer_cpu, realtime)
    ctx = _context()
    all_runs = [run_once(records, tput_records, cpus, ctx, i) for i in range(runs)]
    summary = _summarise(all_runs)
    doc: dict[str, Any] = {
        "benchmark": "ring",
        "config": {
            "runs": runs,
            "records": records,
            "tput_records": tput_records,
            "counts": _counts(records, tput_records, realtime),
            "record_size": SIZE,
            "batch": BATCH,
            "capacity": CAPACITY,
            "producer_cpu": cpus.producer,
            "consumer_cpu": cpus.consumer,
            "realtime": realtime,
            "spin_interval_ns": SPIN_INTERVAL_NS,
            "sleep_interval_ns": SLEEP_INTERVAL_NS,
            "warmup_fraction": 1 / WARMUP_FRACTION,
            "block_idle": {"spins": 0, "timeout_s": 0.001},
        },
        "machine": machine,
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        "summary": summary,
        "runs": all_runs,
        "verified": all(v["ok"] for r in all_runs for v in r["verified"].values()),
    }
    doc["targets"] = [
        {
            "key": key,
            "target": text,
            "limit": limit,
            "measured": (m := _lookup(summary, key)),
            "met": m >= limit if higher else m <= limit,
        }
        for key, text, limit, higher in TARGETS
    ]
    if not quiet:
        _print_report(doc)
    write_json(doc, json_out)
    if not doc["verified"]:
        bad = [
            f"run {i} {case}: {v}"
            for i, r in enumerate(all_runs)
            for case, v in r["verified"].items()
            if not v["ok"]
        ]
        raise RuntimeError(
            "ring benchmark: a consumer missed records or saw them out of sequence, so the "
            "ring (or the benchmark) lost data; report this with the output:\n  " + "\n  ".join(bad)
        )
    return doc
