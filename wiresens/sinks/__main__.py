"""``python -m wiresens.sinks kafka|postgres LOG_DIR ...``: run one sink on its own.

Copies the event log in LOG_DIR to Kafka or PostgreSQL from the sink's committed
offset, then follows the log until SIGTERM/SIGINT (or, with ``--until-caught-up``,
until it has copied everything); prints the runner's status as one JSON line at the
end (and every ``--status-every`` seconds when given).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Sequence

from .base import BatchPolicy, SinkRunner
from .kafka import KafkaSink
from .postgres import PostgresSink


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m wiresens.sinks", description=__doc__)
    p.add_argument("sink", choices=("kafka", "postgres"))
    p.add_argument("log_dir", help="the event-log directory the sidecar writes")
    p.add_argument("--bootstrap", help="Kafka host:port (kafka)")
    p.add_argument("--dsn", help="libpq DSN or URI (postgres)")
    p.add_argument("--node", default="node", help="node name stored in PostgreSQL rows")
    p.add_argument("--name", help="sink name (offset file, sink_offsets row)")
    p.add_argument("--prefix", default="wiresens", help="Kafka topic prefix")
    p.add_argument("--schema", default="wiresens", help="PostgreSQL schema")
    p.add_argument("--market-data", action="store_true", help="PostgreSQL: also market data")
    p.add_argument("--until-caught-up", action="store_true", help="stop at the log's end")
    p.add_argument("--batch-records", type=int, default=5000, help="records per batch")
    p.add_argument("--status-every", type=float, default=0.0, help="print status every N s")
    return p


async def _run(args: argparse.Namespace) -> int:
    sink: KafkaSink | PostgresSink
    if args.sink == "kafka":
        if not args.bootstrap:
            print("error: kafka needs --bootstrap HOST:PORT", file=sys.stderr)
            return 2
        sink = KafkaSink(args.bootstrap, name=args.name or "kafka", prefix=args.prefix)
    else:
        if not args.dsn:
            print("error: postgres needs --dsn DSN", file=sys.stderr)
            return 2
        sink = PostgresSink(
            args.dsn,
            node=args.node,
            name=args.name or "postgres",
            schema=args.schema,
            market_data=args.market_data,
        )
    runner = SinkRunner(sink, args.log_dir, policy=BatchPolicy(max_records=args.batch_records))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, runner.stop)
    task = asyncio.create_task(
        runner.run_until_caught_up() if args.until_caught_up else runner.run()
    )
    while not task.done():
        await asyncio.wait({task}, timeout=args.status_every or None)
        if not task.done():
            print(json.dumps(runner.status()), flush=True)
    await task
    print(json.dumps(runner.status()), flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return asyncio.run(_run(_parser().parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
