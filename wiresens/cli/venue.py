"""``wiresens venue serve``: run the built-in Binance-compatible venue."""

from __future__ import annotations

import contextlib

import typer

from wiresens.errors import ConfigError

app = typer.Typer(help="The built-in Binance-compatible venue simulator.", no_args_is_help=True)


@app.command("serve")
def serve(
    port: int = typer.Option(8900, help="TCP port (REST, streams and WebSocket API share it)."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    symbols: str = typer.Option("BTCUSDT", help="Comma-separated symbols to trade."),
    market: str = typer.Option(
        "synthetic:1", help="replay:FILE (a recorded session), synthetic:SEED, or none."
    ),
    accounts: str = typer.Option(
        "config/venue-accounts.toml", help="Accounts TOML file (API keys and balances)."
    ),
    speed: float = typer.Option(1.0, help="Replay/synthetic speed factor (2 = twice as fast)."),
    loop: bool = typer.Option(False, help="Restart the replay when the recording ends."),
    faults: bool = typer.Option(
        False,
        envvar="WIRESENS_VENUE_FAULTS",
        help="Serve the fault-injection admin API /_venue/... (tests only; see docs/venue.md).",
    ),
) -> None:
    """Serve REST /api/v3, streams /ws and /stream, and the WebSocket API /ws-api/v3."""
    from wiresens.venue import Venue, VenueConfig, load_accounts

    try:
        cfg = VenueConfig(
            host=host,
            port=port,
            symbols=tuple(s.strip().upper() for s in symbols.split(",") if s.strip()),
            market=market,
            speed=speed,
            replay_loop=loop,
            faults=faults,
        )
        venue = Venue(cfg, load_accounts(accounts))
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    n = len(venue.accounts.accounts)
    typer.echo(
        f"venue on http://{host}:{port} (ws://{host}:{port}/ws, /stream, /ws-api/v3): "
        f"{', '.join(cfg.symbols)}, market {market}, {n} account(s)"
    )
    # uvicorn re-raises the Ctrl-C it already handled; the shutdown was clean.
    with contextlib.suppress(KeyboardInterrupt):
        venue.serve()
