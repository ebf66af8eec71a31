"""``wiresens bench <topic>``: run one benchmark of the ``benchmarks`` package."""

from __future__ import annotations

import importlib
from typing import Any

import typer

app = typer.Typer(
    help="Run a benchmark and print its figures (p50/p99/p99.9, throughput).", no_args_is_help=True
)


def _run(topic: str, **kwargs: Any) -> None:
    try:
        mod = importlib.import_module(f"benchmarks.bench_{topic}")
    except ModuleNotFoundError as exc:
        raise typer.BadParameter(
            f"benchmark {topic!r} is not installed ({exc}); install Wiresens from a source "
            "checkout (`make node` or `pip install -e .`)"
        ) from None
    mod.main(**kwargs)


@app.command("ring")
def ring(
    json_out: str = typer.Option(
        None, "--json", help="Also write the figures as JSON to this file ('-' for stdout)."
    ),
    records: int = typer.Option(
        100_000, help="Latency records of the spin case (block and Pipe take a quarter)."
    ),
    tput_records: int = typer.Option(1_000_000, help="Records per throughput case."),
    runs: int = typer.Option(1, help="Repeat the whole benchmark and report medians."),
    realtime: bool = typer.Option(
        False,
        "--realtime",
        help="Run both sides SCHED_FIFO (needs CAP_SYS_NICE) so other load cannot preempt them.",
    ),
) -> None:
    """SPSC ring: one-way latency (spin, block) and throughput vs multiprocessing.Pipe."""
    _run(
        "ring",
        json_out=json_out,
        records=records,
        tput_records=tput_records,
        runs=runs,
        realtime=realtime,
    )


@app.command("decode")
def decode(
    json_out: str = typer.Option(
        None, "--json", help="Also write the figures as JSON to this file ('-' for stdout)."
    ),
    records: int = typer.Option(None, help="Diff messages per market (default: all recorded)."),
    runs: int = typer.Option(1, help="Repeat the whole benchmark and report medians."),
    synthetic: bool = typer.Option(
        False, help="Use the seeded synthetic stream even when recordings are present."
    ),
) -> None:
    """Binance diff depth: decode + order-book apply vs json.loads on the same bytes."""
    _run("decode", json_out=json_out, records=records, runs=runs, synthetic_data=synthetic)


@app.command("tick-to-order")
def tick_to_order(
    json_out: str = typer.Option(
        None, "--json", help="Also write the figures as JSON to this file ('-' for stdout)."
    ),
    records: int = typer.Option(20_000, help="Ticks per case (after a 500-tick warm-up)."),
    runs: int = typer.Option(1, help="Repeat the whole benchmark and report medians."),
) -> None:
    """Market record -> policy -> execution -> order frame, through real actor processes,
    with spin and blocking waits, against the same path over multiprocessing.Queue."""
    _run("tick_to_order", json_out=json_out, records=records, runs=runs)


_JSON = typer.Option(
    None, "--json", help="Also write the figures as JSON to this file ('-' for stdout)."
)
_RUNS = typer.Option(1, help="Repeat the whole benchmark and report medians.")


@app.command("eventlog")
def eventlog(
    json_out: str = _JSON,
    records: int = typer.Option(None, help="Records per case (module default when absent)."),
    runs: int = _RUNS,
    directory: str = typer.Option(
        None, help="Write the log here (default: a temporary directory on /tmp)."
    ),
) -> None:
    """Event log: records/s appended and read back, by entry size."""
    _run("eventlog", json_out=json_out, records=records, runs=runs, directory=directory)


@app.command("sidecar")
def sidecar(
    json_out: str = _JSON,
    records: int = typer.Option(None, help="Records per case (default 200,000)."),
    runs: int = _RUNS,
) -> None:
    """Tap rings -> event log, -> Kafka and -> PostgreSQL, beside ProducerPerformance and
    plain COPY in the same run. Uses the Kafka and PostgreSQL of WIRESENS_KAFKA_BOOTSTRAP
    and WIRESENS_PG_DSN, or starts its own from a checkout (scripts/services/up.sh)."""
    _run("sidecar", json_out=json_out, records=records, runs=runs)


@app.command("tick-outage")
def tick_outage(
    json_out: str = _JSON,
    records: int = typer.Option(None, help="Ticks per phase (module default when absent)."),
    runs: int = _RUNS,
) -> None:
    """Tick-to-order with the sidecar and a Kafka sink, Kafka up / stopped / back in one
    run. Stops and restarts the Kafka of `bash scripts/test-services.sh`, or starts its
    own from a checkout."""
    _run("tick_outage", json_out=json_out, records=records, runs=runs)


@app.command("backtest")
def backtest(
    json_out: str = _JSON,
    records: int = typer.Option(
        None, help="Depth updates of the synthetic market (default 1,000,000)."
    ),
    runs: int = _RUNS,
    recordings: bool = typer.Option(
        True, help="Also run on the recordings in ../shared/data (or $WIRESENS_DATA)."
    ),
) -> None:
    """Back-tester events/s and memory: no-op and market-making policies on the seeded
    synthetic market and on the recordings; loading time reported apart."""
    _run("backtest", json_out=json_out, records=records, runs=runs, recordings=recordings)


@app.command("backtest-peers")
def backtest_peers(
    json_out: str = _JSON,
    records: int = typer.Option(
        None, help="Depth updates of the synthetic market (default 1,000,000)."
    ),
    runs: int = _RUNS,
    peer: list[str] = typer.Option(
        ["hftbacktest", "hftbacktest-python", "nautilus"],
        help="Peers to run beside Wiresens (hftbacktest, hftbacktest-python, nautilus).",
    ),
) -> None:
    """The market maker on one synthetic market in Wiresens, hftbacktest and
    NautilusTrader (those installed; `make bench-peers` builds a venv with both)."""
    _run("backtest_peers", json_out=json_out, records=records, runs=runs, peers=tuple(peer))
