"""The ``wiresens`` command line (typer). Each command group lives in its own module."""

from __future__ import annotations

import typer

from . import backtest, bench, binance, ctl, log, node, shm, venue
from .logs import logs as _logs

__all__ = ["app", "main"]

app = typer.Typer(
    name="wiresens",
    help="Wiresens: a low-latency crypto trading node on shared-memory actors.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(shm.app, name="shm")
app.add_typer(bench.app, name="bench")
app.add_typer(binance.app, name="binance")
app.add_typer(venue.app, name="venue")
app.add_typer(node.app, name="node")
app.add_typer(log.app, name="log")
app.add_typer(backtest.app, name="backtest")

app.command("logs")(_logs)
ctl.register(app)


def main() -> None:
    app()
