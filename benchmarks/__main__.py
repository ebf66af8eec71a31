"""``python -m benchmarks [TOPIC ...]``: run every ``bench_<topic>`` module (or those named).

Each module prints its own report; ``--json FILE`` writes one document holding every
module's figures under its topic name.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence
from typing import Any

import benchmarks
from benchmarks.common import write_json


def topics() -> list[str]:
    """The topics of every ``benchmarks/bench_<topic>.py``, sorted."""
    return sorted(
        m.name.removeprefix("bench_")
        for m in pkgutil.iter_modules(benchmarks.__path__)
        if m.name.startswith("bench_")
    )


def main(argv: Sequence[str] | None = None) -> int:
    available = topics()
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Run Wiresens' benchmarks (each against its baseline) and print their figures.",
    )
    p.add_argument(
        "topics", nargs="*", metavar="TOPIC", help=f"one of {', '.join(available)}; all when none"
    )
    p.add_argument("--runs", type=int, default=1, help="repeat each benchmark and report medians")
    p.add_argument(
        "--records", type=int, default=None, help="records per case (module default when absent)"
    )
    p.add_argument(
        "--json", dest="json_out", default=None, help="write all figures as JSON ('-' for stdout)"
    )
    args = p.parse_args(argv)
    unknown = [t for t in args.topics if t not in available]
    if unknown:
        p.error(f"unknown topic(s) {', '.join(unknown)}; choose from {', '.join(available)}")
    docs: dict[str, Any] = {}
    for topic in args.topics or available:
        mod = importlib.import_module(f"benchmarks.bench_{topic}")
        print(f"\n=== {topic} ===", flush=True)
        docs[topic] = mod.main(runs=args.runs, records=args.records)
        sys.stdout.flush()
    write_json(docs, args.json_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
