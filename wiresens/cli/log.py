"""``wiresens log ls|cat|export|recover``: inspect and export a node's event log.

Times (``--since``/``--until``) are ISO-8601 (UTC unless they say), a duration back from
now (``10m``, ``2h``, ``1d``), or integer nanoseconds since the epoch. Kinds (``--kind``,
repeatable) are RecordKind names in any case (``trade``, ``DEPTH_UPDATE``), numbers, or
``raw`` for the raw exchange messages.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import typer

from wiresens.errors import EventLogError
from wiresens.eventlog import RAW_KIND, Entry, EventLogReader, recover
from wiresens.eventlog.export import FORMATS, export, kind_name, raw_row, record_rows, trim
from wiresens.records import RecordKind

from .logs import parse_since

__all__ = ["app", "parse_kinds", "parse_time"]

app = typer.Typer(
    help="Inspect and export the event log (segments of records and raw messages).",
    no_args_is_help=True,
)

DEFAULT_DIR = Path("run/events")
_DIR_HELP = (
    "The event-log directory: [sidecar] event_log_dir under the node's run_dir (run/events)."
)


def parse_time(text: str | None) -> int | None:
    """``--since``/``--until`` as ns since the epoch (None stays None)."""
    if text is None:
        return None
    t = text.strip()
    if t.isdigit():
        return int(t)
    when = parse_since(t)
    return int(when.timestamp()) * 1_000_000_000 + when.microsecond * 1000


def parse_kinds(names: list[str] | None) -> list[int] | None:
    """``--kind`` values as kind numbers (``raw`` is RAW_KIND); None when none given."""
    if not names:
        return None
    out = []
    for name in names:
        for part in name.split(","):
            p = part.strip()
            if p.lower() == "raw":
                out.append(RAW_KIND)
            elif p.isdigit():
                out.append(int(p))
            else:
                try:
                    out.append(int(RecordKind[p.upper()]))
                except KeyError:
                    raise typer.BadParameter(
                        f"--kind {p!r} is not a record kind; use raw or one of "
                        + ", ".join(k.name.lower() for k in RecordKind)
                    ) from None
    return out


def _reader(directory: Path) -> EventLogReader:
    try:
        return EventLogReader(directory)
    except FileNotFoundError as exc:
        raise typer.BadParameter(str(exc)) from None


def _iso(ns: int | None) -> str:
    if ns is None:
        return "-"
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def _fail(exc: Exception) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(1)


@app.command("ls")
def ls(
    directory: Path = typer.Argument(DEFAULT_DIR, help=_DIR_HELP),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per segment."),
) -> None:
    """List segments: size, node, time range, entries and records per kind, damage found.

    Every entry is read and CRC-checked, so this also verifies the log.
    """
    reader = _reader(directory)
    try:
        stats = reader.stats()
    except EventLogError as exc:
        raise _fail(exc) from None
    if as_json:
        for st in stats:
            doc = {
                "segment": st.info.segment,
                "path": st.info.path,
                "size": st.info.size,
                "node": st.info.node,
                "created_ns": st.info.created_ns,
                "format_version": st.info.format_version,
                "entries": st.entries,
                "ts_min": st.ts_min,
                "ts_max": st.ts_max,
                "kinds": {
                    kind_name(k): {"entries": v.entries, "records": v.records}
                    for k, v in sorted(st.kinds.items())
                },
                "corrupt": [{"offset": c.offset, "reason": c.reason} for c in st.corrupt],
                "torn_bytes": st.torn_bytes,
            }
            typer.echo(json.dumps(doc, sort_keys=True))
        return
    if not stats:
        typer.echo(f"{directory}: no segments")
        return
    typer.echo(
        f"{'SEGMENT':>7}  {'FILE':<22} {'SIZE':>10}  {'NODE':<12} {'FIRST':<24} {'LAST':<24}"
        f" {'ENTRIES':>9}"
    )
    totals: dict[int, list[int]] = {}
    for st in stats:
        typer.echo(
            f"{st.info.segment:>7}  {Path(st.info.path).name:<22} {_size(st.info.size):>10}  "
            f"{st.info.node:<12} {_iso(st.ts_min):<24} {_iso(st.ts_max):<24} {st.entries:>9}"
        )
        for k, v in sorted(st.kinds.items()):
            typer.echo(f"{'':>9}{kind_name(k):<20} {v.entries:>10} entries {v.records:>12} records")
            t = totals.setdefault(k, [0, 0])
            t[0] += v.entries
            t[1] += v.records
        for c in st.corrupt:
            where = "end of segment" if c.resumed_at is None else f"resumes at {c.resumed_at}"
            typer.echo(f"{'':>9}CORRUPT at byte offset {c.offset}: {c.reason} ({where})")
        if st.torn_bytes:
            typer.echo(
                f"{'':>9}{st.torn_bytes} bytes after the last whole entry (being written, or a "
                "torn tail: `wiresens log recover` cuts it when no writer runs)"
            )
    typer.echo(f"{len(stats)} segments, {_size(sum(s.info.size for s in stats))}")
    for k, (entries, records) in sorted(totals.items()):
        typer.echo(f"  {kind_name(k):<20} {entries:>10} entries {records:>12} records")


def _lines(e: Entry, start_ns: int | None, end_ns: int | None) -> list[bytes]:
    enc = msgspec.json.encode
    if e.raw is not None:
        r = raw_row(e.raw)
        return [enc({"kind": "RAW", "ts_recv": r[0], "source": r[1], "stream": r[2], "data": r[3]})]
    if e.records is None:
        return []
    names, rows = record_rows(trim(e.records, start_ns, end_ns))
    return [enc(dict(zip(names, row, strict=True))) for row in rows]


@app.command("cat")
def cat(
    directory: Path = typer.Argument(DEFAULT_DIR, help=_DIR_HELP),
    kind: list[str] = typer.Option(None, "--kind", "-k", help="Record kind(s) or raw."),
    since: str = typer.Option(None, help="From this time (inclusive)."),
    until: str = typer.Option(None, help="Up to this time (exclusive)."),
    limit: int = typer.Option(None, "--limit", "-n", help="Stop after this many lines."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new entries."),
    skip_corrupt: bool = typer.Option(
        False, "--skip-corrupt", help="Report corrupt entries on stderr and read past them."
    ),
) -> None:
    """Print records (and raw messages) as JSON lines; prices as decimal strings."""
    reader = _reader(directory)
    kinds = parse_kinds(kind)
    start_ns, end_ns = parse_time(since), parse_time(until)
    out = sys.stdout.buffer
    n = 0
    seen = 0
    try:
        entries: Iterator[Entry]
        if follow:
            entries = (
                e
                for e in reader.tail(kinds=kinds, skip_corrupt=skip_corrupt)
                if (start_ns is None or e.ts_last >= start_ns)
                and (end_ns is None or e.ts_first < end_ns)
            )
        else:
            entries = reader.entries(
                kinds=kinds, start_ns=start_ns, end_ns=end_ns, skip_corrupt=skip_corrupt
            )
        for e in entries:
            for line in _lines(e, start_ns, end_ns):
                if limit is not None and n >= limit:
                    return
                out.write(line + b"\n")
                n += 1
            if follow:
                out.flush()
            for c in reader.corrupt[seen:]:
                typer.echo(
                    f"corrupt entry skipped: {c.path} byte offset {c.offset}: {c.reason}", err=True
                )
            seen = len(reader.corrupt)
    except EventLogError as exc:
        out.flush()
        raise _fail(exc) from None
    except BrokenPipeError:  # `wiresens log cat | head`
        return
    finally:
        with contextlib.suppress(BrokenPipeError):
            out.flush()


class _Progress:
    """A rich progress bar when rich is installed, else one rewritten line, on stderr."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total = max(total, 1)
        self.enabled = enabled
        self.rich: Any = None
        self.last = 0.0
        if not enabled:
            return
        try:
            rp = importlib.import_module("rich.progress")
            console = importlib.import_module("rich.console").Console(stderr=True)
            self.rich = rp.Progress(
                rp.TextColumn("exporting"),
                rp.BarColumn(),
                rp.TaskProgressColumn(),
                rp.TextColumn("{task.fields[rows]:,} rows"),
                rp.TimeRemainingColumn(),
                console=console,
                transient=True,
            )
            self.rich.start()
            self.task = self.rich.add_task("export", total=self.total, rows=0)
        except ImportError:
            self.rich = None

    def update(self, done: int, rows: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self.last < 0.1:
            return
        self.last = now
        if self.rich is not None:
            self.rich.update(self.task, completed=done, rows=rows)
        else:
            sys.stderr.write(f"\rexporting {100 * done / self.total:5.1f}%  {rows:,} rows")
            sys.stderr.flush()

    def close(self) -> None:
        if not self.enabled:
            return
        if self.rich is not None:
            self.rich.stop()
        else:
            sys.stderr.write("\r" + " " * 60 + "\r")
            sys.stderr.flush()


@app.command("export")
def export_cmd(
    directory: Path = typer.Argument(DEFAULT_DIR, help=_DIR_HELP),
    fmt: str = typer.Option(..., "--format", help="parquet, csv or jsonl."),
    out: Path = typer.Option(
        ...,
        "--out",
        "-o",
        help="Output file; csv/parquet with several kinds write <stem>.<KIND><suffix> each.",
    ),
    kind: list[str] = typer.Option(None, "--kind", "-k", help="Record kind(s) or raw."),
    since: str = typer.Option(None, help="From this time (inclusive)."),
    until: str = typer.Option(None, help="Up to this time (exclusive)."),
    limit: int = typer.Option(None, "--limit", "-n", help="Stop after this many rows."),
    skip_corrupt: bool = typer.Option(
        False, "--skip-corrupt", help="Report corrupt entries and read past them."
    ),
    progress: bool = typer.Option(
        None, "--progress/--no-progress", help="Progress bar on stderr (default: on a terminal)."
    ),
) -> None:
    """Export records (and raw messages) to Parquet, CSV or JSON lines."""
    if fmt not in FORMATS:
        raise typer.BadParameter(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if fmt == "parquet":
        try:
            importlib.import_module("pyarrow.parquet")
        except ImportError:
            raise typer.BadParameter(
                "--format parquet needs pyarrow, which is not installed: pip install pyarrow "
                "(or export --format csv / jsonl)"
            ) from None
    reader = _reader(directory)
    kinds = parse_kinds(kind)
    start_ns, end_ns = parse_time(since), parse_time(until)
    segs = reader.segments()
    before: dict[int, int] = {}
    acc = 0
    for s in segs:
        before[s.segment] = acc
        acc += s.size
    bar = _Progress(acc, sys.stderr.isatty() if progress is None else progress)

    def tick(e: Entry, rows: int) -> None:
        bar.update(before.get(e.next_offset.segment, 0) + e.next_offset.position, rows)

    try:
        rows, files = export(
            reader,
            out,
            fmt,
            kinds=kinds,
            start_ns=start_ns,
            end_ns=end_ns,
            limit=limit,
            skip_corrupt=skip_corrupt,
            progress=tick,
        )
    except EventLogError as exc:
        bar.close()
        raise _fail(exc) from None
    bar.close()
    for c in reader.corrupt:
        typer.echo(f"corrupt entry skipped: {c.path} byte offset {c.offset}: {c.reason}", err=True)
    typer.echo(f"{rows} rows -> {', '.join(files) if files else '(nothing matched)'}", err=True)


@app.command("recover")
def recover_cmd(directory: Path = typer.Argument(DEFAULT_DIR, help=_DIR_HELP)) -> None:
    """Cut a torn tail of the newest segment and rewrite its index (no writer may run;
    a writer does this itself when it opens the log)."""
    _reader(directory)
    try:
        rec = recover(directory)
    except EventLogError as exc:
        raise _fail(exc) from None
    if rec.segment is None:
        typer.echo(f"{directory}: no segments")
        return
    typer.echo(
        f"segment {rec.segment}: {rec.entries} whole entries, valid up to byte {rec.valid_end}, "
        f"{rec.cut_bytes} torn bytes cut, {len(rec.corrupt)} corrupt entries left in place"
    )
    for c in rec.corrupt:
        typer.echo(f"  corrupt at byte offset {c.offset}: {c.reason}")
