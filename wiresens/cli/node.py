"""``wiresens node up|down|status|check``: run and inspect a worker node."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from wiresens.errors import WiresensError

app = typer.Typer(help="Run and inspect a worker node.", no_args_is_help=True)

CONFIG_HELP = "node.toml (default: the embedded config/node.toml)."


def _load(config: str | None):  # type: ignore[no-untyped-def]
    from wiresens.config import load_config

    try:
        return load_config(config)
    except WiresensError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


@app.command("up")
def up(
    config: str = typer.Option(None, "--config", "-c", help=CONFIG_HELP),
    quiet: bool = typer.Option(False, "--quiet", help="No live status display."),
    duration: float = typer.Option(None, help="Stop after this many seconds (demos, tests)."),
) -> None:
    """Start the node and show a live status until Ctrl-C (or SIGTERM / `node down`)."""
    from wiresens.node import Node

    cfg = _load(config)
    node = Node(cfg)
    try:
        node.run(show=not quiet, stop_after=duration)
    except WiresensError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


@app.command("down")
def down(config: str = typer.Option(None, "--config", "-c", help=CONFIG_HELP)) -> None:
    """Stop the node of this config's run directory (ordered stop, orders cancelled)."""
    from wiresens.node import stop_node

    cfg = _load(config)
    try:
        pid = stop_node(cfg.run_dir)
    except WiresensError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"node pid {pid} stopped")


@app.command("status")
def status(
    config: str = typer.Option(None, "--config", "-c", help=CONFIG_HELP),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    run_dir: str = typer.Option(None, help="Read this run directory instead of the config's."),
) -> None:
    """Actors, books, policies and rings, read from shared memory."""
    from wiresens.node import read_status, render_status

    rd = Path(run_dir) if run_dir else _load(config).run_dir
    try:
        st = read_status(rd)
    except WiresensError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(json.dumps(st, indent=1) if as_json else render_status(st))


@app.command("check")
def check(config: str = typer.Option(None, "--config", "-c", help=CONFIG_HELP)) -> None:
    """Validate a node config without starting anything."""
    cfg = _load(config)
    typer.echo(
        f"{cfg.source}: OK ({len(cfg.policy)} policies, symbols {', '.join(cfg.feed.symbols)}, "
        f"venue {cfg.feed.venue})"
    )


POLICY_OPT = typer.Option(None, "--policy", help="Only this policy (default: the whole node).")
RUN_DIR_OPT = typer.Option(None, help="The node's run directory instead of the config's.")


def _control(command: int, config: str | None, policy: str | None, run_dir: str | None) -> str:
    from wiresens.node import send_control

    rd = Path(run_dir) if run_dir else _load(config).run_dir
    try:
        return send_control(rd, command, policy)
    except WiresensError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


@app.command("kill")
def kill(
    config: str = typer.Option(None, "--config", "-c", help=CONFIG_HELP),
    policy: str = POLICY_OPT,
    run_dir: str = RUN_DIR_OPT,
) -> None:
    """Kill switch: cancel every open order of the scope and block new ones."""
    from wiresens.records import CONTROL_KILL

    scope = _control(CONTROL_KILL, config, policy, run_dir)
    typer.echo(f"kill switch engaged for {scope}; `wiresens node resume` lifts it")


@app.command("resume")
def resume(
    config: str = typer.Option(None, "--config", "-c", help=CONFIG_HELP),
    policy: str = POLICY_OPT,
    run_dir: str = RUN_DIR_OPT,
) -> None:
    """Lift the kill switch (node-wide, or of one policy)."""
    from wiresens.records import CONTROL_RESUME

    scope = _control(CONTROL_RESUME, config, policy, run_dir)
    typer.echo(f"kill switch lifted for {scope}")
