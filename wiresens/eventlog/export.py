"""Exporting the event log: JSON lines, CSV and Parquet, with prices as exact decimals.

Fixed-point fields (:data:`FIXED_POINT_FIELDS`) become decimal strings in JSON and
CSV (``wiresens.fixedpoint.from_fixed``) and ``decimal128(20, 8)`` in Parquet (built
from the int64 values directly, so no float ever touches a price). Padding fields
(``_*``) are dropped, ``kind`` is written as its name, ``S`` fields as text.

A table has one schema, so CSV and Parquet write one file per record kind: ``--out``
itself when one kind is selected, else ``<out stem>.<KIND><suffix>`` per kind found
(raw messages as ``RAW``). JSON lines put every kind in one file.
"""

from __future__ import annotations

import csv
import importlib
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import msgspec
import numpy as np

from wiresens.fixedpoint import from_fixed
from wiresens.records import RecordKind

from .format import RAW_KIND
from .reader import Entry, EventLogReader, RawMessage, record_times

__all__ = [
    "FIXED_POINT_FIELDS",
    "FORMATS",
    "arrow_table",
    "export",
    "kind_name",
    "raw_row",
    "record_rows",
    "trim",
]

FORMATS = ("jsonl", "csv", "parquet")
FIXED_POINT_FIELDS = frozenset(
    {
        "price",
        "qty",
        "bid_px",
        "bid_qty",
        "ask_px",
        "ask_qty",
        "stop_price",
        "quote_qty",
        "last_px",
        "last_qty",
        "cum_qty",
        "cum_quote",
        "commission",
        "free",
        "locked",
        "avg_px",
        "realized_pnl",
        "unrealized_pnl",
        "position",
    }
)
"""Record fields that hold 8-decimal fixed point (exported as decimals)."""
_RAW_FIELDS = ("ts_recv", "source", "stream", "data")


def kind_name(kind: int) -> str:
    """``"TRADE"`` for 3, ``"RAW"`` for raw messages, the number for unknown kinds."""
    if kind == RAW_KIND:
        return "RAW"
    try:
        return RecordKind(kind).name
    except ValueError:
        return str(kind)


def _public(dt: np.dtype[Any]) -> list[str]:
    return [n for n in dt.names or () if not n.startswith("_")]


def trim(
    records: np.ndarray[Any, Any], start_ns: int | None, end_ns: int | None
) -> np.ndarray[Any, Any]:
    """Records whose timestamp (``ts_recv``, else ``ts_pub``) is in [start_ns, end_ns)."""
    if start_ns is None and end_ns is None:
        return records
    t = record_times(records)
    mask = np.ones(len(records), bool)
    if start_ns is not None:
        mask &= t >= start_ns
    if end_ns is not None:
        mask &= t < end_ns
    return records if mask.all() else records[mask]


def _column(name: str, col: np.ndarray[Any, Any]) -> list[Any]:
    if name == "kind":
        return [kind_name(k) for k in col.tolist()]
    if name in FIXED_POINT_FIELDS:
        return [from_fixed(v) for v in col.tolist()]
    if col.dtype.kind == "S":
        return [b.rstrip(b"\0").decode("utf-8", "replace") for b in col.tolist()]
    return col.tolist()  # type: ignore[no-any-return]


def record_rows(records: np.ndarray[Any, Any]) -> tuple[list[str], Iterator[tuple[Any, ...]]]:
    """Field names and rows (tuples) of records as JSON/CSV show them."""
    names = _public(records.dtype)
    cols = [_column(n, records[n]) for n in names]
    return names, zip(*cols, strict=True)


def raw_row(raw: RawMessage) -> tuple[Any, ...]:
    """A raw message as (ts_recv, source, stream, data as UTF-8 text)."""
    return raw.ts_recv, raw.source, raw.stream, raw.data.decode("utf-8", "replace")


def _decimal_array(pa: Any, values: np.ndarray[Any, Any]) -> Any:
    # decimal128 stores the unscaled value as a little-endian 128-bit integer: the int64
    # fixed-point value, sign-extended, is exactly that at scale 8.
    v = np.ascontiguousarray(values, dtype=np.int64)
    wide = np.empty((len(v), 2), np.int64)
    wide[:, 0] = v
    wide[:, 1] = v >> 63
    return pa.Array.from_buffers(pa.decimal128(20, 8), len(v), [None, pa.py_buffer(wide)])


def _pyarrow() -> Any:
    try:
        return importlib.import_module("pyarrow")
    except ImportError:
        raise ImportError(
            "this needs pyarrow, which is not installed: pip install pyarrow"
        ) from None


def arrow_table(records: np.ndarray[Any, Any], *, decimals: bool = False) -> Any:
    """Records as a pyarrow Table (padding dropped; fixed point as decimal128 when asked)."""
    pa = _pyarrow()
    cols: dict[str, Any] = {}
    for name in _public(records.dtype):
        col = records[name]
        if decimals and name in FIXED_POINT_FIELDS:
            cols[name] = _decimal_array(pa, col)
        elif col.dtype.kind == "S":
            cols[name] = pa.array([b.rstrip(b"\0") for b in col.tolist()], pa.binary())
        else:
            cols[name] = pa.array(np.ascontiguousarray(col))
    return pa.table(cols)


class _Sink:
    def records(self, kind: int, recs: np.ndarray[Any, Any]) -> None:
        raise NotImplementedError

    def raw(self, raw: RawMessage) -> None:
        raise NotImplementedError

    def close(self) -> list[str]:
        raise NotImplementedError


class _JsonlSink(_Sink):
    def __init__(self, out: str) -> None:
        self.path = out
        self.f: IO[bytes] = open(out, "wb")  # noqa: SIM115 - closed in close()
        self.enc = msgspec.json.Encoder()

    def records(self, kind: int, recs: np.ndarray[Any, Any]) -> None:
        names, rows = record_rows(recs)
        enc, write = self.enc.encode, self.f.write
        for row in rows:
            write(enc(dict(zip(names, row, strict=True))))
            write(b"\n")

    def raw(self, raw: RawMessage) -> None:
        self.f.write(
            self.enc.encode({"kind": "RAW", **dict(zip(_RAW_FIELDS, raw_row(raw), strict=True))})
        )
        self.f.write(b"\n")

    def close(self) -> list[str]:
        self.f.close()
        return [self.path]


class _PerKind(_Sink):
    """One output per kind: ``out`` when a single kind was asked for, else one per kind."""

    def __init__(self, out: str, single: bool) -> None:
        self.out = Path(out)
        self.single = single
        self.paths: dict[int, str] = {}

    def path(self, kind: int) -> str:
        p = self.paths.get(kind)
        if p is None:
            if self.single:
                p = str(self.out)
            else:
                p = str(self.out.with_name(f"{self.out.stem}.{kind_name(kind)}{self.out.suffix}"))
            self.paths[kind] = p
        return p


class _CsvSink(_PerKind):
    def __init__(self, out: str, single: bool) -> None:
        super().__init__(out, single)
        self.files: dict[int, tuple[IO[str], Any]] = {}

    def _writer(self, kind: int, header: Iterable[str]) -> Any:
        got = self.files.get(kind)
        if got is None:
            f = open(self.path(kind), "w", newline="")  # noqa: SIM115 - closed in close()
            w = csv.writer(f)
            w.writerow(list(header))
            got = self.files[kind] = (f, w)
        return got[1]

    def records(self, kind: int, recs: np.ndarray[Any, Any]) -> None:
        names, rows = record_rows(recs)
        self._writer(kind, names).writerows(rows)

    def raw(self, raw: RawMessage) -> None:
        self._writer(RAW_KIND, _RAW_FIELDS).writerow(raw_row(raw))

    def close(self) -> list[str]:
        for f, _ in self.files.values():
            f.close()
        return [self.paths[k] for k in self.files]


class _ParquetSink(_PerKind):
    ROWS = 65_536

    def __init__(self, out: str, single: bool) -> None:
        super().__init__(out, single)
        self.pa = _pyarrow()
        self.pq = importlib.import_module("pyarrow.parquet")
        self.pending: dict[int, list[Any]] = {}
        self.counts: dict[int, int] = {}
        self.writers: dict[int, Any] = {}

    def _add(self, kind: int, part: Any, n: int) -> None:
        self.pending.setdefault(kind, []).append(part)
        self.counts[kind] = self.counts.get(kind, 0) + n
        if self.counts[kind] >= self.ROWS:
            self._flush(kind)

    def _flush(self, kind: int) -> None:
        parts = self.pending.pop(kind, [])
        self.counts[kind] = 0
        if not parts:
            return
        if kind == RAW_KIND:
            cols = list(zip(*parts, strict=True))
            table = self.pa.table(
                {
                    "ts_recv": self.pa.array(cols[0], self.pa.int64()),
                    "source": self.pa.array(cols[1], self.pa.uint16()),
                    "stream": self.pa.array(cols[2], self.pa.string()),
                    "data": self.pa.array(cols[3], self.pa.binary()),
                }
            )
        else:
            table = arrow_table(np.concatenate(parts), decimals=True)
        w = self.writers.get(kind)
        if w is None:
            w = self.writers[kind] = self.pq.ParquetWriter(self.path(kind), table.schema)
        w.write_table(table)

    def records(self, kind: int, recs: np.ndarray[Any, Any]) -> None:
        self._add(kind, recs, len(recs))

    def raw(self, raw: RawMessage) -> None:
        self._add(RAW_KIND, (raw.ts_recv, raw.source, raw.stream, raw.data), 1)

    def close(self) -> list[str]:
        for kind in list(self.pending):
            self._flush(kind)
        for w in self.writers.values():
            w.close()
        return [self.paths[k] for k in self.writers]


def export(
    reader: EventLogReader,
    out: str | os.PathLike[str],
    fmt: str,
    *,
    kinds: Iterable[int] | None = None,
    start_ns: int | None = None,
    end_ns: int | None = None,
    limit: int | None = None,
    skip_corrupt: bool = False,
    progress: Callable[[Entry, int], None] | None = None,
) -> tuple[int, list[str]]:
    """Write the selected records (and raw messages) to ``out``; (rows, files written).

    ``progress(entry, rows_so_far)`` is called after each entry.

    Raises
    ------
    ValueError
        An unknown format.
    ImportError
        Parquet without pyarrow (``pip install pyarrow``).
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}: choose one of {', '.join(FORMATS)}")
    kind_set = None if kinds is None else sorted({int(k) for k in kinds})
    single = kind_set is not None and len(kind_set) == 1
    path = os.fspath(out)
    sink: _Sink
    if fmt == "jsonl":
        sink = _JsonlSink(path)
    elif fmt == "csv":
        sink = _CsvSink(path, single)
    else:
        sink = _ParquetSink(path, single)
    rows = 0
    try:
        for e in reader.entries(
            kinds=kind_set, start_ns=start_ns, end_ns=end_ns, skip_corrupt=skip_corrupt
        ):
            if limit is not None and rows >= limit:
                break
            if e.records is not None:
                recs = trim(e.records, start_ns, end_ns)
                if limit is not None and rows + len(recs) > limit:
                    recs = recs[: limit - rows]
                if len(recs):
                    sink.records(e.kind, recs)
                    rows += len(recs)
            elif e.raw is not None:
                sink.raw(e.raw)
                rows += 1
            if progress is not None:
                progress(e, rows)
    finally:
        files = sink.close()
    return rows, files
