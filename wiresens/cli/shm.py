"""``wiresens shm ls|rm``: inspect and clean the node's shared-memory segments."""

from __future__ import annotations

import json
import time

import typer

from wiresens.records import RecordKind
from wiresens.shm import Ring, list_segments, unlink
from wiresens.shm.doorbell import doorbell_name, doorbell_pid, remove_doorbell, stale_doorbells
from wiresens.shm.errors import ShmError

app = typer.Typer(help="Inspect and remove shared-memory segments.", no_args_is_help=True)


def _kind_name(kind: int) -> str:
    try:
        return RecordKind(kind).name
    except ValueError:
        return "mixed" if kind == 0 else str(kind)


@app.command("ls")
def ls(
    prefix: str = typer.Option("wiresens", help="Only segments whose name starts with this."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per segment."),
) -> None:
    """List segments with owner pid (alive/dead), capacity, fill and counters."""
    rows = []
    for info in list_segments(prefix):
        row: dict[str, object] = {
            "name": info.name,
            "structure": info.structure,
            "kind": _kind_name(info.record_kind),
            "record_size": info.record_size,
            "capacity": info.capacity,
            "owner_pid": info.creator_pid,
            "owner_alive": info.creator_alive,
            "age_s": round((time.time_ns() - info.created_ns) / 1e9, 1),
            "bytes": info.size,
            "valid": info.valid,
        }
        if info.structure == "ring":
            try:
                ring = Ring.attach(info.name, None)
            except ShmError:
                pass
            else:
                s = ring.stats()
                # pid 0: that end was never opened.
                row.update(
                    written=s.written,
                    read=s.read,
                    full=s.full,
                    fill=s.fill,
                    producer_pid=s.producer_pid,
                    producer_alive=s.producer_alive,
                    consumer_pid=s.consumer_pid,
                    consumer_alive=s.consumer_alive,
                )
                ring.close()
        rows.append(row)
    if as_json:
        for row in rows:
            typer.echo(json.dumps(row))
        return
    if not rows:
        typer.echo(f"no Wiresens segments with prefix {prefix!r} in /dev/shm")
        return
    head = f"{'NAME':<40} {'TYPE':<8} {'KIND':<16} {'CAP':>8} {'FILL':>8} {'WRITTEN':>12} {'READ':>12} {'FULL':>8}  {'OWNER':<14} {'PRODUCER':<14} CONSUMER"
    typer.echo(head)
    for r in rows:
        kind = r["structure"] if r["valid"] else f"{r['structure']}*"
        typer.echo(
            f"{r['name']!s:<40} {kind!s:<8} {r['kind']!s:<16} {r['capacity']!s:>8} "
            f"{r.get('fill', '-')!s:>8} {r.get('written', '-')!s:>12} {r.get('read', '-')!s:>12} "
            f"{r.get('full', '-')!s:>8}  {_pid(r['owner_pid'], r['owner_alive']):<14} "
            f"{_pid(r.get('producer_pid'), r.get('producer_alive')):<14} "
            f"{_pid(r.get('consumer_pid'), r.get('consumer_alive'))}"
        )
    _footnote(rows)


def _footnote(rows: list[dict[str, object]]) -> None:
    if any(not r["valid"] for r in rows):
        typer.echo(
            "* other layout version: this Wiresens cannot attach it; remove it with "
            "`wiresens shm rm NAME` once its owner is stopped"
        )


def _pid(pid: object, alive: object) -> str:
    if not pid:
        return "-"
    return f"{pid} {'alive' if alive else 'DEAD'}"


@app.command("rm")
def rm(
    names: list[str] = typer.Argument(None, help="Segment names; default: every stale one."),
    prefix: str = typer.Option("wiresens", help="With no names: only under this prefix."),
    force: bool = typer.Option(False, "--force", help="Also remove segments whose owner is alive."),
) -> None:
    """Remove stale segments (owner dead) and leaked doorbells, or the named segments."""
    infos = {i.name: i for i in list_segments("")}
    targets = names or [n for n, i in infos.items() if n.startswith(prefix) and not i.creator_alive]
    removed = failed = 0
    if not names and "wiresens.bell.".startswith(prefix):
        # Doorbells of consumers killed while blocking (they cannot unlink their own).
        for bell_id in stale_doorbells():
            if remove_doorbell(bell_id):
                typer.echo(
                    f"removed doorbell {doorbell_name(bell_id)} of dead pid {doorbell_pid(bell_id)}"
                )
    for n in targets:
        info = infos.get(n)
        if info is not None and info.creator_alive and not force:
            typer.echo(
                f"{n}: owner pid {info.creator_pid} is alive; stop it first or pass --force",
                err=True,
            )
            failed += 1
            continue
        if unlink(n):
            removed += 1
            typer.echo(f"removed {n}")
        else:
            typer.echo(f"{n}: no such segment", err=True)
            failed += 1
    typer.echo(f"{removed} segment(s) removed")
    if failed:
        # Scripts must notice that a named segment is still there.
        raise typer.Exit(1)
