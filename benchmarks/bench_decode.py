"""Decode + order-book apply of Binance diff-depth messages, against ``json.loads``.

The messages are the recorded ``@depth`` bodies of ``../shared/data/binance``
(spot BTCUSDT 2024-08-08 and USD-M BTCUSDT 2024-08-08; ``$WIRESENS_DATA``), or,
when absent, a seeded synthetic stream of the same shape. Every case runs in the
same process on the same bytes:

* ``json.loads`` alone (the baseline: it only builds Python objects);
* ``per-level``: msgspec Structs of :mod:`wiresens.binance.wire` plus
  :func:`~wiresens.fixedpoint.to_fixed` per price/quantity, then the book
  (what a straightforward exact decoder costs);
* ``wiresens batch=B``: :class:`~wiresens.binance.fastdepth.DepthFeed` (msgspec
  ids + raw levels, the sync state machine, vectorised exact conversion of B
  messages' levels at once, one book apply). ``batch=1`` updates the book after
  every message; larger batches conflate a backlog of frames (a gateway draining
  its socket) into one vectorised conversion and apply. With the C extension
  (``wiresens._depthparse``, the default when built) each diff is decoded in one
  call into int64 buffers and the book is updated in C; the report names the
  implementation that ran (``compiled`` or ``numpy``);
* ``numpy batch=64`` (only when the extension is built): the same feed forced onto
  the numpy fallback, for comparison on the same bytes.

Each case is timed by the wall clock (the headline figures) and by the process's
CPU time (``CPU µs`` columns): on a shared machine the wall clock also counts the
time other processes hold the core, the CPU time much less so.

The snapshot is loaded before the clock starts; every case rebuilds the same
book and the benchmark checks that all of them end with identical books.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import time
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from benchmarks.common import fmt_rate, fmt_ratio, machine_info, print_table, spread, write_json
from wiresens.binance.fastdepth import IMPLEMENTATION, DepthFeed
from wiresens.binance.sync import DepthSync
from wiresens.binance.wire import DepthUpdate, FuturesDepthUpdate
from wiresens.book import OrderBook
from wiresens.fixedpoint import from_fixed, to_fixed

__all__ = ["SMOKE", "main", "run_once"]

SMOKE: dict[str, Any] = {"records": 300, "runs": 1, "batches": (1, 16)}
DEFAULT_BATCHES = (1, 16, 64, 256)
TARGET_RATE = 150_000.0
TARGET_RATIO = 2.0

FILES = {
    "spot": "hftbacktest/spot_btcusdt_20240808.gz",
    "usdm": "hftbacktest/usdm_btcusdt_20240808.gz",
}


class _Envelope(msgspec.Struct):
    stream: str
    data: msgspec.Raw


def _data_dir() -> Path | None:
    env = os.environ.get("WIRESENS_DATA")
    base = Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "data"
    d = base / "binance"
    return d if d.is_dir() else None


def load_recorded(market: str) -> tuple[bytes, list[bytes]] | None:
    """(snapshot body, diff bodies) of one recording, None when the data is absent."""
    d = _data_dir()
    if d is None or not (d / FILES[market]).exists():
        return None
    dec = msgspec.json.Decoder(_Envelope)
    snapshot = b""
    diffs: list[bytes] = []
    with gzip.open(d / FILES[market], "rb") as fh:
        for line in fh:
            body = line.partition(b" ")[2].strip()
            if body.startswith(b'{"stream"'):
                env = dec.decode(body)
                if "@depth" in env.stream:
                    diffs.append(bytes(env.data))
            elif b"lastUpdateId" in body[:20]:
                snapshot = body
    return snapshot, diffs


def synthetic(market: str, n: int, seed: int = 7) -> tuple[bytes, list[bytes]]:
    """A seeded stream shaped like BTCUSDT diffs (36 levels/message spot, 68 USD-M)."""
    rng = random.Random(seed)
    tick = 1_000_000 if market == "spot" else 10_000_000  # 0.01 / 0.10
    qdec = 8 if market == "spot" else 3
    mid = 6_180_000_000_000
    per_side = 18 if market == "spot" else 34

    def px(k: int) -> str:
        s = from_fixed(k)
        return s if market == "spot" else s[: s.index(".") + 3]

    def qty() -> str:
        q = rng.choice([0, 0, rng.randrange(1, 10**6) * 10 ** (8 - qdec)])
        s = from_fixed(q)
        return s if market == "spot" else s[: s.index(".") + 1 + qdec]

    snap = {
        "lastUpdateId": 1000,
        "bids": [[px(mid - i * tick), "1.00000000"] for i in range(1, 1001)],
        "asks": [[px(mid + i * tick), "1.00000000"] for i in range(1, 1001)],
    }
    diffs = []
    # The first diff bridges the snapshot under either market's rule.
    u = 999 if market == "usdm" else 1000
    for _ in range(n):
        first, u = u + 1, u + 1 + rng.randrange(1, 40)
        bids = sorted({mid - rng.randrange(1, 3000) * tick for _ in range(per_side)}, reverse=True)
        asks = sorted({mid + rng.randrange(1, 3000) * tick for _ in range(per_side)})
        msg: dict[str, Any] = {"e": "depthUpdate", "E": 1, "s": "BTCUSDT", "U": first, "u": u}
        if market == "usdm":
            msg["T"], msg["pu"] = 1, first - 1
        msg["b"] = [[px(p), qty()] for p in bids]
        msg["a"] = [[px(p), qty()] for p in asks]
        diffs.append(msgspec.json.encode(msg))
    return msgspec.json.encode(snap), diffs


Timing = tuple[float, float]
"""(wall seconds, CPU seconds) of one case."""


def _start() -> tuple[int, int]:
    return time.perf_counter_ns(), time.process_time_ns()


def _stop(t0: tuple[int, int]) -> Timing:
    return (time.perf_counter_ns() - t0[0]) / 1e9, (time.process_time_ns() - t0[1]) / 1e9


def _json_loads(diffs: list[bytes]) -> Timing:
    loads = json.loads
    t0 = _start()
    for m in diffs:
        loads(m)
    return _stop(t0)


def _per_level(market: str, snapshot: bytes, diffs: list[bytes]) -> tuple[Timing, OrderBook]:
    book = OrderBook("BTCUSDT")
    dec = msgspec.json.Decoder(FuturesDepthUpdate if market == "usdm" else DepthUpdate)

    def arrays(levels: Any) -> tuple[Any, Any]:
        p = np.array([to_fixed(a) for a, _ in levels], dtype=np.int64)
        q = np.array([to_fixed(b) for _, b in levels], dtype=np.int64)
        return p, q

    def apply(msg: Any) -> None:
        book.apply(*arrays(msg.b), *arrays(msg.a))

    sync: DepthSync[Any] = DepthSync(market, book, apply)  # type: ignore[arg-type]
    snap = msgspec.json.decode(snapshot)
    book.load_snapshot(*arrays(snap["bids"]), *arrays(snap["asks"]))
    sync.on_snapshot(snap["lastUpdateId"])
    t0 = _start()
    for m in diffs:
        d = dec.decode(m)
        sync.on_diff(d.U, d.u, getattr(d, "pu", -1), d)
    secs = _stop(t0)
    if sync.counters.applied < len(diffs) - 10:
        raise RuntimeError(f"{market}: only {sync.counters.applied} of {len(diffs)} diffs applied")
    return secs, book


def _fast(
    market: str, snapshot: bytes, diffs: list[bytes], batch: int, compiled: bool | None = None
) -> tuple[Timing, OrderBook]:
    feed = DepthFeed(market, "BTCUSDT", batch=batch, compiled=compiled)  # type: ignore[arg-type]
    feed.on_snapshot(snapshot)
    on_diff = feed.on_diff
    t0 = _start()
    for m in diffs:
        on_diff(m)
    feed.flush()
    secs = _stop(t0)
    if feed.sync.counters.resyncs or feed.errors:
        raise RuntimeError(f"{market} batch={batch}: the diff stream did not stay in sync")
    return secs, feed.book


def _same(a: OrderBook, b: OrderBook) -> bool:
    return all(
        np.array_equal(x, y)
        for x, y in zip(
            (*a.bids.levels(), *a.asks.levels()), (*b.bids.levels(), *b.asks.levels()), strict=True
        )
    )


def run_once(
    market: str, snapshot: bytes, diffs: list[bytes], batches: tuple[int, ...]
) -> dict[str, Any]:
    """One run of every case on ``diffs``: wall and CPU seconds per case, books agree?"""
    n = len(diffs)
    out: dict[str, Any] = {"messages": n, "seconds": {}, "cpu_seconds": {}}

    def record(case: str, t: Timing) -> None:
        out["seconds"][case], out["cpu_seconds"][case] = t

    record("json.loads", _json_loads(diffs))
    secs, ref = _per_level(market, snapshot, diffs)
    record("per-level", secs)
    agree = True
    for b in batches:
        secs, book = _fast(market, snapshot, diffs, b)
        record(f"wiresens batch={b}", secs)
        agree &= _same(book, ref)
    if IMPLEMENTATION == "compiled":
        secs, book = _fast(market, snapshot, diffs, 64, compiled=False)
        record("numpy batch=64", secs)
        agree &= _same(book, ref)
    out["books_agree"] = agree
    return out


def main(
    *,
    json_out: str | None = None,
    runs: int = 1,
    records: int | None = None,
    batches: tuple[int, ...] = DEFAULT_BATCHES,
    synthetic_data: bool = False,
    quiet: bool = False,
) -> dict[str, Any]:
    """Run the decode benchmark ``runs`` times per market, print and return the figures.

    ``records`` limits the messages per market (all recorded ones by default);
    ``synthetic_data`` forces the seeded generator even when recordings exist.
    """
    if runs < 1:
        raise ValueError(f"--runs must be at least 1, got {runs}")
    doc: dict[str, Any] = {
        "benchmark": "decode",
        "machine": machine_info(),
        "implementation": IMPLEMENTATION,
        "markets": {},
    }
    for market in ("spot", "usdm"):
        loaded = None if synthetic_data else load_recorded(market)
        source = FILES[market] if loaded is not None else "synthetic (seed 7)"
        if loaded is None:
            loaded = synthetic(market, records or 5000)
        snapshot, diffs = loaded
        if records is not None:
            diffs = diffs[:records]
        levels = sum(m.count(b'"') for m in diffs) // 4
        all_runs = [run_once(market, snapshot, diffs, tuple(batches)) for _ in range(runs)]
        n = len(diffs)
        cases = list(all_runs[0]["seconds"])
        rate = {c: spread(n / r["seconds"][c] for r in all_runs) for c in cases}
        us = {c: spread(r["seconds"][c] / n * 1e6 for r in all_runs) for c in cases}
        ratio = {
            c: spread(r["seconds"]["json.loads"] / r["seconds"][c] for r in all_runs) for c in cases
        }
        cpu_us = {c: spread(r["cpu_seconds"][c] / n * 1e6 for r in all_runs) for c in cases}
        cpu_ratio = {
            c: spread(
                r["cpu_seconds"]["json.loads"] / max(r["cpu_seconds"][c], 1e-9) for r in all_runs
            )
            for c in cases
        }
        doc["markets"][market] = {
            "source": source,
            "messages": n,
            "levels_per_message": levels / max(n, 1),
            "bytes_per_message": sum(map(len, diffs)) / max(n, 1),
            "rate": rate,
            "us_per_message": us,
            "ratio_vs_json_loads": ratio,
            "cpu_us_per_message": cpu_us,
            "cpu_ratio_vs_json_loads": cpu_ratio,
            "books_agree": all(r["books_agree"] for r in all_runs),
            "runs": all_runs,
        }
    best = {
        m: max(
            (c for c in v["rate"] if c.startswith("wiresens")), key=lambda c: v["rate"][c].median
        )
        for m, v in doc["markets"].items()
    }
    doc["targets"] = [
        {
            "market": m,
            "case": c,
            "rate": doc["markets"][m]["rate"][c].median,
            "ratio": doc["markets"][m]["ratio_vs_json_loads"][c].median,
            "met_rate": doc["markets"][m]["rate"][c].median >= TARGET_RATE,
            "met_ratio": doc["markets"][m]["ratio_vs_json_loads"][c].median >= TARGET_RATIO,
            "cpu_rate": 1e6 / max(doc["markets"][m]["cpu_us_per_message"][c].median, 1e-9),
            "cpu_ratio": doc["markets"][m]["cpu_ratio_vs_json_loads"][c].median,
        }
        for m, c in best.items()
    ]
    doc["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    if not quiet:
        _print(doc)
    write_json(doc, json_out)
    return doc


def _print(doc: dict[str, Any]) -> None:
    for market, v in doc["markets"].items():
        rows = [
            [
                c,
                fmt_rate(v["rate"][c].median),
                f"{v['us_per_message'][c].median:.2f}",
                fmt_ratio(v["ratio_vs_json_loads"][c].median),
                f"{fmt_rate(v['rate'][c]['min'])} - {fmt_rate(v['rate'][c]['max'])}",
                f"{v['cpu_us_per_message'][c].median:.2f}",
                fmt_ratio(v["cpu_ratio_vs_json_loads"][c].median),
            ]
            for c in v["rate"]
        ]
        print_table(
            f"{market}: {v['messages']:,} diff messages from {v['source']} "
            f"({v['levels_per_message']:.1f} levels, {v['bytes_per_message']:.0f} B each); "
            f"books agree: {v['books_agree']}",
            ["case", "messages/s", "µs/message", "vs json.loads", "range", "CPU µs", "CPU ratio"],
            rows,
        )
    rows = [
        [
            f"{t['market']} {t['case']}",
            fmt_rate(t["rate"]),
            "met" if t["met_rate"] else "NOT met",
            fmt_ratio(t["ratio"]),
            "met" if t["met_ratio"] else "NOT met",
            fmt_rate(t["cpu_rate"]),
            fmt_ratio(t["cpu_ratio"]),
        ]
        for t in doc["targets"]
    ]
    print_table(
        f"Targets (issue 3): >= 150k messages/s and >= 2x json.loads (best batch, medians; "
        f"implementation: {doc['implementation']})",
        ["case", "rate", "150k/s", "ratio", ">= 2x", "CPU-time rate", "CPU ratio"],
        rows,
    )
    print(f"\nload average at the end: {doc['loadavg_end']} (shared machine: figures are noisy)")
