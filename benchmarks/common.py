"""Helpers every benchmark shares: CPU pinning, latency histograms, medians, tables, JSON.

A benchmark module ``benchmarks/bench_<topic>.py`` defines

* ``main(*, json_out=None, runs=1, records=None, **options) -> dict``: runs the
  benchmark, prints its tables, writes the returned figures as JSON to ``json_out``
  ('-' for stdout) and returns them. ``records=None`` means the module's default.
* ``SMOKE``: keyword arguments for ``main`` that finish in about a second;
  ``tests/benchmarks/test_smoke.py`` runs every module with them so none can rot.

Latencies are recorded in nanoseconds and reported in microseconds. Each figure of a
repeated benchmark is reported as the median over the runs with its spread (min-max).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from hdrh.histogram import HdrHistogram

__all__ = [
    "PERCENTILES",
    "Spread",
    "allowed_cpus",
    "fmt_rate",
    "fmt_ratio",
    "fmt_us",
    "histogram_from_ns",
    "latency_figures",
    "machine_info",
    "pick_cpus",
    "pin",
    "print_table",
    "spread",
    "write_json",
]

PERCENTILES: tuple[tuple[str, float], ...] = (
    ("p50", 50.0),
    ("p90", 90.0),
    ("p99", 99.0),
    ("p99.9", 99.9),
)
"""The percentiles every latency table shows, then ``max``."""

# 1 ns to 100 s at 3 significant digits: any latency a benchmark can see, 0.1% resolution.
HIST_LOWEST_NS = 1
HIST_HIGHEST_NS = 100_000_000_000
HIST_DIGITS = 3


def allowed_cpus() -> list[int]:
    """CPUs this process may run on, sorted."""
    return sorted(os.sched_getaffinity(0))


def pick_cpus(n: int = 2) -> list[int]:
    """``n`` distinct CPUs for ``n`` pinned processes; repeats CPUs when there are fewer.

    On a 1-CPU machine both sides share the CPU: figures are then about the scheduler,
    which the printed configuration says.
    """
    cpus = allowed_cpus()
    return [cpus[i % len(cpus)] for i in range(n)]


def pin(cpu: int) -> None:
    """Pin the calling process to ``cpu`` (``os.sched_setaffinity``)."""
    os.sched_setaffinity(0, {cpu})


def histogram_from_ns(samples: np.ndarray[Any, Any]) -> HdrHistogram:
    """An HdrHistogram of latency samples in nanoseconds (values below 1 ns count as 1 ns)."""
    hist = HdrHistogram(HIST_LOWEST_NS, HIST_HIGHEST_NS, HIST_DIGITS)
    clipped = np.clip(np.asarray(samples, dtype=np.int64), HIST_LOWEST_NS, HIST_HIGHEST_NS)
    # One record_value per distinct value: hdrh records in pure Python.
    values, counts = np.unique(clipped, return_counts=True)
    for value, count in zip(values.tolist(), counts.tolist(), strict=True):
        hist.record_value(value, count)
    return hist


def latency_figures(hist: HdrHistogram) -> dict[str, float]:
    """p50, p90, p99, p99.9, max and mean of a nanosecond histogram, in microseconds."""
    out = {name: hist.get_value_at_percentile(p) / 1000.0 for name, p in PERCENTILES}
    out["max"] = hist.get_max_value() / 1000.0
    out["mean"] = hist.get_mean_value() / 1000.0
    out["count"] = float(hist.get_total_count())
    return out


class Spread(dict[str, float]):
    """Median and range of one figure over runs: keys ``median``, ``min``, ``max``."""

    @property
    def median(self) -> float:
        return self["median"]

    def text(self, fmt: str = "{:.2f}") -> str:
        med = fmt.format(self["median"])
        if self["min"] == self["max"]:
            return med
        return f"{med} ({fmt.format(self['min'])}-{fmt.format(self['max'])})"


def spread(values: Iterable[float]) -> Spread:
    """Median of ``values`` with their min and max."""
    vals = list(values)
    if not vals:
        raise ValueError("spread() of no values: a benchmark case produced no runs")
    return Spread(median=statistics.median(vals), min=min(vals), max=max(vals))


def fmt_us(value: float) -> str:
    return f"{value:,.2f}"


def fmt_rate(per_second: float) -> str:
    """Records per second, scaled: ``12.3 M/s``."""
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if per_second >= scale:
            return f"{per_second / scale:.2f} {unit}/s"
    return f"{per_second:.0f} /s"


def fmt_ratio(ratio: float) -> str:
    return f"{ratio:,.1f}x"


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Print a plain aligned table: first column left, the others right aligned."""
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))

    def line(cells: Sequence[str]) -> str:
        parts = [
            cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i])
            for i, cell in enumerate(cells)
        ]
        return "  ".join(parts).rstrip()

    print(f"\n{title}")
    print(line(headers))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(line(row))


def machine_info() -> dict[str, Any]:
    """What a reader needs to weigh the figures: CPUs, Python, kernel and the load."""
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for text in f:
                if text.startswith("model name"):
                    model = text.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "kernel": platform.release(),
        "machine": platform.machine(),
        "cpu_model": model,
        "cpus_online": os.cpu_count() or 0,
        "cpus_allowed": allowed_cpus(),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }


def write_json(doc: Any, path: str | None) -> None:
    """Write ``doc`` as indented JSON to ``path`` ('-' for stdout); nothing when None."""
    if path is None:
        return
    text = json.dumps(doc, indent=2, sort_keys=True)
    if path == "-":
        print(text)
        return
    with open(path, "w") as f:
        f.write(text + "\n")


@contextmanager
def started_services(bench: str, *names: str) -> Iterator[dict[str, str]]:
    """Start ``names`` (postgres, etcd, kafka) with the project's scripts/services/up.sh
    for the benchmark ``bench`` and stop them after; yields up.sh's ``WIRESENS_*``
    variables. For runs outside ``bash scripts/test-services.sh``."""
    up = Path(__file__).resolve().parents[1] / "scripts" / "services" / "up.sh"
    if not up.is_file():
        raise RuntimeError(
            f"{bench} needs {' and '.join(names)}: run it from a checkout as `bash "
            f"scripts/test-services.sh .venv/bin/python -m benchmarks {bench}`"
        )
    proc = subprocess.run(
        ["bash", str(up), "--owner", str(os.getpid()), *names],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"scripts/services/up.sh {' '.join(names)} failed; run the benchmark under "
            f"`bash scripts/test-services.sh ...` instead:\n{proc.stderr[-2000:]}"
        )
    found = dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)
    try:
        yield found
    finally:
        subprocess.run(
            ["bash", str(up.parent / "down.sh"), found["WIRESENS_SERVICES_DIR"]],
            capture_output=True,
            timeout=150,
            check=False,
        )
