"""``wiresens logs``: show a node's actor logs from journald or from the JSON-line files.

journald: ``journalctl -o json SYSLOG_IDENTIFIER=wiresens WIRESENS_NODE=... WIRESENS_ACTOR=...``
(journalctl ANDs different fields). Files: ``<run_dir>/logs/*.jsonl`` written by the
``file`` log target, merged by timestamp.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import typer

from wiresens.logging import journal_available

__all__ = ["format_event", "logs", "parse_since", "read_files"]

_REL = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d)\s*(?:ago)?\s*$")
_UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}
_PRIORITY_NAME = {
    "0": "emerg",
    "1": "alert",
    "2": "critical",
    "3": "error",
    "4": "warning",
    "5": "notice",
    "6": "info",
    "7": "debug",
}
_SHOWN_ELSEWHERE = frozenset(
    {"event", "level", "timestamp", "wiresens_node", "wiresens_actor", "wiresens_policy"}
)


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """``"10m"``, ``"2h"``, ``"1d ago"``, or an ISO-8601 time (UTC unless it says)."""
    now = now or datetime.now(UTC)
    m = _REL.match(text)
    if m:
        return now - timedelta(seconds=float(m[1]) * _UNITS[m[2]])
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(
            f"{text!r}: give a duration like 10m, 2h, 1d or an ISO time like 2026-01-31T12:00"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _ts(event: dict[str, Any]) -> datetime | None:
    raw = event.get("timestamp")
    if not isinstance(raw, str):
        return None
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None


def _matches(
    event: dict[str, Any], node: str | None, actor: str | None, policy: str | None
) -> bool:
    return (
        (node is None or event.get("wiresens_node") == node)
        and (actor is None or event.get("wiresens_actor") == actor)
        and (policy is None or event.get("wiresens_policy") == policy)
    )


def read_files(
    run_dir: Path,
    *,
    node: str | None = None,
    actor: str | None = None,
    policy: str | None = None,
    since: datetime | None = None,
) -> list[dict[str, Any]]:
    """Events of the file target, filtered and merged in timestamp order."""
    return _read_upto(run_dir, _sizes(run_dir), node, actor, policy, since)


def _sizes(run_dir: Path) -> dict[Path, int]:
    return {p: p.stat().st_size for p in sorted((run_dir / "logs").glob("*.jsonl"))}


def _read_upto(
    run_dir: Path,
    sizes: dict[Path, int],
    node: str | None,
    actor: str | None,
    policy: str | None,
    since: datetime | None,
) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for path, size in sizes.items():
        with path.open("rb") as f:
            data = f.read(size)
        text = data[: data.rfind(b"\n") + 1].decode("utf-8", "replace").splitlines()
        events.extend(_parse_lines(text, node, actor, policy, since))
    events.sort(key=lambda e: str(e.get("timestamp", "")))
    return events


def _parse_lines(
    lines: Iterable[str],
    node: str | None,
    actor: str | None,
    policy: str | None,
    since: datetime | None,
) -> Iterator[dict[str, Any]]:
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue  # a line cut by a crash mid-write
        if not isinstance(event, dict) or not _matches(event, node, actor, policy):
            continue
        if since is not None:
            ts = _ts(event)
            if ts is None or ts < since:
                continue
        yield event


def from_journal(entry: dict[str, Any]) -> dict[str, Any]:
    """A ``journalctl -o json`` entry as the same event dict the files hold."""
    event: dict[str, Any] = {}
    usec = entry.get("_SOURCE_REALTIME_TIMESTAMP") or entry.get("__REALTIME_TIMESTAMP")
    if usec:
        event["timestamp"] = (
            datetime.fromtimestamp(int(usec) / 1e6, UTC).isoformat().replace("+00:00", "Z")
        )
    event["level"] = _PRIORITY_NAME.get(str(entry.get("PRIORITY", "6")), "info")
    event["event"] = entry.get("MESSAGE", "")
    for key, value in entry.items():
        if key.startswith("_") or key in (
            "MESSAGE",
            "PRIORITY",
            "SYSLOG_IDENTIFIER",
            "SYSLOG_TIMESTAMP",
        ):
            continue
        if isinstance(value, list):  # journald gives byte arrays for non-UTF-8 values
            value = bytes(v for v in value if isinstance(v, int)).decode("utf-8", "replace")
        event[key.lower()] = value
    return event


def format_event(event: dict[str, Any]) -> str:
    """One human line: ``time level actor[policy] event key=value ...``."""
    who = str(event.get("wiresens_actor", "?"))
    if event.get("wiresens_policy"):
        who += f"[{event['wiresens_policy']}]"
    extras = " ".join(
        f"{k}={v if isinstance(v, str) and ' ' not in v else json.dumps(v)}"
        for k, v in event.items()
        if k not in _SHOWN_ELSEWHERE and k != "exception"
    )
    line = (
        f"{event.get('timestamp', '-')} {str(event.get('level', 'info')).upper():<7} "
        f"{who} {event.get('event', '')}"
    )
    if extras:
        line += " " + extras
    if event.get("exception"):
        line += "\n" + str(event["exception"])
    return line


def _emit(event: dict[str, Any], as_json: bool) -> None:
    typer.echo(json.dumps(event) if as_json else format_event(event))


def _journal(
    node: str | None,
    actor: str | None,
    policy: str | None,
    since: datetime | None,
    follow: bool,
    lines: int | None,
    journal_dir: Path | None,
    as_json: bool,
) -> None:
    exe = shutil.which("journalctl")
    if exe is None:
        raise typer.BadParameter("journalctl is not installed: use --source file")
    cmd = [exe, "-o", "json", "--all", "--no-pager", "SYSLOG_IDENTIFIER=wiresens"]
    for field, value in (
        ("WIRESENS_NODE", node),
        ("WIRESENS_ACTOR", actor),
        ("WIRESENS_POLICY", policy),
    ):
        if value is not None:
            cmd.append(f"{field}={value}")
    if since is not None:
        cmd += ["--since", f"@{since.timestamp():.0f}"]
    if lines is not None:
        cmd += ["-n", str(lines)]
    if follow:
        cmd.append("--follow")
    if journal_dir is not None:
        cmd += ["--directory", str(journal_dir)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    try:
        for raw in proc.stdout:
            try:
                entry = json.loads(raw)
            except ValueError:
                continue
            _emit(from_journal(entry), as_json)
            if follow:
                sys.stdout.flush()
    except KeyboardInterrupt:
        pass
    finally:
        proc.terminate()
        proc.wait()
    if proc.returncode not in (0, -15, None) and not follow:
        raise typer.Exit(proc.returncode)


def _files(
    run_dir: Path,
    node: str | None,
    actor: str | None,
    policy: str | None,
    since: datetime | None,
    follow: bool,
    lines: int | None,
    as_json: bool,
) -> None:
    # Sizes first: what is written after this snapshot is left to the follow loop.
    offsets = _sizes(run_dir)
    events = _read_upto(run_dir, offsets, node, actor, policy, since)
    if lines is not None:
        events = events[-lines:] if lines else []
    for event in events:
        _emit(event, as_json)
    if not follow:
        return
    offsets = {p: size - _partial_tail(p, size) for p, size in offsets.items()}
    try:
        while True:
            for path in sorted((run_dir / "logs").glob("*.jsonl")):
                start = offsets.get(path, 0)
                size = path.stat().st_size
                if size <= start:
                    offsets[path] = min(start, size)
                    continue
                with path.open("rb") as f:
                    f.seek(start)
                    chunk = f.read(size - start)
                # Only complete lines; a partial one is read on the next pass.
                end = chunk.rfind(b"\n") + 1
                offsets[path] = start + end
                text = chunk[:end].decode("utf-8", "replace").splitlines()
                for event in _parse_lines(text, node, actor, policy, since):
                    _emit(event, as_json)
            sys.stdout.flush()
            time.sleep(0.2)
    except KeyboardInterrupt:
        return


def _partial_tail(path: Path, size: int) -> int:
    """Bytes after the last newline within ``size`` (a line still being written)."""
    with path.open("rb") as f:
        data = f.read(size)
    return len(data) - (data.rfind(b"\n") + 1)


def logs(
    actor: str | None = typer.Option(
        None, "--actor", "-a", help="Only this actor (feed, execution, policy, sidecar, master...)."
    ),
    policy: str | None = typer.Option(
        None, "--policy", "-p", help="Only this policy (its name in node.toml)."
    ),
    since: str | None = typer.Option(
        None, "--since", "-s", help="Start at this time: 10m, 2h, 1d or ISO-8601."
    ),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new events."),
    node: str | None = typer.Option(None, "--node", help="Only this node (default: every node)."),
    lines: int | None = typer.Option(None, "--lines", "-n", help="Only the last N events."),
    source: str = typer.Option(
        "auto", "--source", help="auto (journald when running), journald or file."
    ),
    config: Path | None = typer.Option(
        None, "--config", "-c", help="node.toml (for run_dir; default: embedded)."
    ),
    run_dir: Path | None = typer.Option(
        None, "--run-dir", help="Read <run-dir>/logs/*.jsonl (overrides the config)."
    ),
    journal_dir: Path | None = typer.Option(
        None,
        "--journal-dir",
        help="Read journal files from this directory (journalctl --directory).",
    ),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per event."),
) -> None:
    """Show actor logs from journald or the node's JSON-line files."""
    when = parse_since(since) if since else None
    if source not in ("auto", "journald", "file"):
        raise typer.BadParameter(f"--source {source!r}: use auto, journald or file")
    use_journal = source == "journald" or (
        source == "auto" and run_dir is None and (journal_dir is not None or journal_available())
    )
    if use_journal:
        _journal(node, actor, policy, when, follow, lines, journal_dir, as_json)
        return
    if run_dir is None:
        from wiresens.config import load_config

        run_dir = load_config(config, check_system=False).run_dir
    if not (run_dir / "logs").is_dir():
        typer.echo(
            f"no log files under {run_dir / 'logs'} (is the node's log target 'file'?)", err=True
        )
        raise typer.Exit(1)
    _files(run_dir, node, actor, policy, when, follow, lines, as_json)
