"""``wiresens backtest run config.toml [--report out/]``: one back-test from a TOML file."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from wiresens.errors import ConfigError

app = typer.Typer(
    help="Replay market data into a PolicyObject against a simulated venue.", no_args_is_help=True
)


@app.command("run")
def run_cmd(
    config: Path = typer.Argument(..., help="Back-test TOML (see config/backtest.toml)."),
    report: Path | None = typer.Option(
        None, "--report", help="Write the HTML report (index.html, fills.csv, samples.csv) here."
    ),
    json_out: str | None = typer.Option(
        None, "--json", help="Write the statistics as JSON to this file ('-' for stdout)."
    ),
    progress: bool = typer.Option(True, help="Show a progress bar while replaying."),
) -> None:
    """Run the back-test described by CONFIG and print its statistics."""
    from wiresens.backtest import load_config, load_market, run
    from wiresens.backtest.report import write_report

    try:
        cfg = load_config(config)
        typer.echo(f"loading {cfg.data.source} data ...", err=True)
        import time

        t0 = time.perf_counter()
        md = load_market(cfg)
        load_s = time.perf_counter() - t0
    except ConfigError as exc:
        raise typer.BadParameter(str(exc)) from None
    if progress:
        from rich.progress import Progress

        with Progress(transient=True) as bar:
            task = bar.add_task("replaying", total=len(md))
            result = run(cfg, md, lambda done, total: bar.update(task, completed=done))
    else:
        result = run(cfg, md)
    result.load_s = load_s
    for k, v in result.stats.items():
        typer.echo(f"{k:>16}: {v:,.6g}" if isinstance(v, float) else f"{k:>16}: {v}")
    typer.echo(
        f"{result.events:,} market events in {result.run_s:.3f} s "
        f"({result.events_per_s:,.0f} events/s, {result.implementation} loop; "
        f"loading {load_s:.3f} s)"
    )
    if report is not None:
        index = write_report(result, report)
        typer.echo(f"report: {index}")
    if json_out:
        text = json.dumps(
            {**result.stats, "events": result.events, "run_s": result.run_s, "load_s": load_s},
            default=str,
            indent=2,
        )
        if json_out == "-":
            typer.echo(text)
        else:
            Path(json_out).write_text(text)


@app.command("parity")
def parity_cmd(
    log_dir: Path = typer.Argument(..., help="The node's event log directory."),
    policy_class: str = typer.Option(
        ..., "--class", help="The policy class as in the node config ('module:Class')."
    ),
    params: str = typer.Option("{}", help="Its [policy.params] as JSON."),
    policy_id: int = typer.Option(..., "--policy-id", help="The policy's index in the node."),
    symbol: list[int] = typer.Option([1], help="Symbol indexes it subscribed to."),
) -> None:
    """Replay LOG_DIR into a fresh policy and compare its requests with the logged ones."""
    from wiresens.backtest.parity import check_parity, policy_factory

    try:
        factory = policy_factory(policy_class, json.loads(params), str(Path.cwd()))
    except (ConfigError, ValueError) as exc:
        raise typer.BadParameter(str(exc)) from None
    rep = check_parity(log_dir, factory, policy_id=policy_id, symbols=symbol)
    typer.echo(
        f"live requests {rep.live_requests}, replay {rep.replay_requests}, "
        f"identical prefix {rep.matched}"
    )
    if not rep.ok:
        typer.echo(f"first difference at request {rep.first_mismatch}:")
        typer.echo(f"  live:   {rep.live}")
        typer.echo(f"  replay: {rep.replay}")
        raise typer.Exit(1)
    typer.echo("parity: every request identical")
