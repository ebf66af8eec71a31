"""``wiresens binance replay``: check recorded Binance traffic against the sync procedure."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import typer

from wiresens.binance.recordings import detect_format
from wiresens.binance.replay import Replay, replay_files
from wiresens.errors import ProtocolError

app = typer.Typer(help="Binance tools: replay and validate recordings.", no_args_is_help=True)


def _table(rp: Replay) -> None:
    reports = rp.reports
    typer.echo(f"{rp.messages} messages, {rp.bad_lines} unreadable lines")
    head = (
        f"{'SYMBOL':<12} {'STREAM':<28} {'MESSAGES':>9}"
        f"  {'APPLIED':>8} {'DROPPED':>8} {'GAPS':>5} {'RESYNCS':>7} {'SYNCED':>6}"
        f"  {'TICKER OK':>9} {'TICKER BAD':>10} {'CROSSED':>7} {'ID BREAKS':>9} {'ERRORS':>6}"
    )
    typer.echo(head)
    for sym, r in reports.items():
        for i, (stream, n) in enumerate(sorted(r.streams.items())):
            line = f"{sym if i == 0 else '':<12} {stream:<28} {n:>9}"
            if i == 0:
                breaks = r.diff_breaks + r.trade_breaks + r.agg_breaks
                line += (
                    f"  {r.applied:>8} {r.dropped:>8} {r.gaps:>5} {r.resyncs:>7}"
                    f" {'yes' if r.synced else 'no':>6}  {r.ticker_matched:>9}"
                    f" {r.ticker_mismatched:>10} {r.crossed:>7} {breaks:>9} {r.errors:>6}"
                )
            typer.echo(line)
        for m in r.mismatches:
            typer.echo(f"{'':<12} mismatch at u={m.u}: bookTicker {m.ticker} book {m.book}")


@app.command("replay")
def replay(
    files: list[Path] = typer.Argument(
        ..., help="Recordings of one session (hftbacktest or cryptofeed; merged by time)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the result as one JSON document."),
    market: str = typer.Option(
        "auto", help="spot, usdm, or auto (told from URLs, 'pu' in diffs, snapshot keys)."
    ),
    strict: bool = typer.Option(
        False, help="Exit 1 on any gap, top-of-book mismatch, crossed book or unreadable input."
    ),
) -> None:
    """Replay recordings through the decoder, the sync procedure and the order book.

    Prints per symbol and stream the message counts, and per symbol the diffs
    applied and dropped, gaps, resyncs, whether the book ended in sync, and the
    bookTicker check (rebuilt best bid/ask vs every bookTicker at the same update id).
    """
    if market not in ("auto", "spot", "usdm"):
        raise typer.BadParameter(f"--market must be spot, usdm or auto, got {market!r}")
    for f in files:
        if not f.is_file():
            raise typer.BadParameter(f"{f}: no such file")
        try:
            detect_format(f)
        except ProtocolError as exc:
            raise typer.BadParameter(str(exc)) from None
    tty = sys.stderr.isatty()
    t0 = time.monotonic()

    def progress(n: int) -> None:
        if tty:
            rate = n / max(time.monotonic() - t0, 1e-9)
            sys.stderr.write(f"\r{n:,} messages ({rate:,.0f}/s)")
            sys.stderr.flush()

    rp = replay_files(
        [str(f) for f in files],
        market=None if market == "auto" else market,  # type: ignore[arg-type]
        progress=progress,
    )
    if tty:
        sys.stderr.write("\r" + " " * 40 + "\r")
    if as_json:
        typer.echo(json.dumps(rp.as_dict(), indent=2, sort_keys=True))
    else:
        _table(rp)
    if strict:
        bad = rp.bad_lines > 0 or any(
            r.gaps or r.ticker_mismatched or r.crossed or r.errors or r.diff_breaks
            for r in rp.reports.values()
        )
        if bad:
            raise typer.Exit(1)
