"""Back-test inputs, preloaded into numpy columns: one :class:`MarketData` per run.

Every input (the seeded synthetic market, Binance recordings, event logs, Binance
public-data CSV files) becomes the same columnar event table, sorted by exchange time::

    event i:  ts_exch  ts_recv  kind   a       b        c       d        lvl_lo..lvl_hi
    DEPTH     E        recv     0      bid_px  bid_qty  ask_px  ask_qty  levels it changed
    TRADE     T        recv     1      price   qty      maker   trade_id
    RESET     E        recv     2      bid_px  bid_qty  ask_px  ask_qty  the whole book

``a..d`` of a book event hold the top of book *after* it; its changed levels are
``lvl_px/lvl_qty/lvl_side[lvl_lo:lvl_hi]`` (quantity 0 deletes; side 1 bid, 2 ask). A
RESET replaces the book (a depth snapshot, or a ``bookTicker`` that gives only the top).
``maker`` is 1 when the buyer was the maker (the seller took). Building the table,
including the book that gives the top of book, is the *loading* stage, timed apart from
the replay.

Binance public data (https://github.com/binance/binance-public-data) is imported by
:func:`read_binance_csv`; columns, in file order (spot files have no header row, futures
files have one; timestamps are ms, or µs in spot files from 2025 on — told by size):

* ``trades``: id, price, qty, quote_qty, time, is_buyer_maker[, is_best_match]
* ``aggTrades``: agg_id, price, qty, first_id, last_id, time, is_buyer_maker[, is_best_match]
* ``bookTicker`` (futures): update_id, bid_px, bid_qty, ask_px, ask_qty, transaction_time, event_time
* ``bookDepth`` (futures): timestamp (text), percentage, depth, notional
* ``klines``: open_time, open, high, low, close, volume, close_time, quote_volume, count,
  taker_buy_volume, taker_buy_quote_volume, ignore

Trades, aggTrades and bookTicker replay; klines and bookDepth are imported as tables
(they hold neither a book nor trades the matching could use) and refused as a replay
source with an error saying so.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
from numpy.typing import NDArray

from wiresens.errors import ConfigError
from wiresens.fixedpoint import to_fixed

__all__ = [
    "CSV_KINDS",
    "DEPTH",
    "RESET",
    "TRADE",
    "MarketBuilder",
    "MarketData",
    "from_csv",
    "from_eventlog",
    "from_recordings",
    "from_synthetic",
    "merge_markets",
    "read_binance_csv",
]

DEPTH = 0
TRADE = 1
RESET = 2
I64 = NDArray[np.int64]


@dataclass
class MarketData:
    """The replayed market of one symbol, as numpy columns (see the module doc)."""

    symbol: str
    ts_exch: I64
    ts_recv: I64
    kind: NDArray[np.uint8]
    a: I64
    b: I64
    c: I64
    d: I64
    lvl_lo: I64
    lvl_hi: I64
    lvl_px: I64
    lvl_qty: I64
    lvl_side: NDArray[np.uint8]
    sym: NDArray[np.uint32] | None = None
    """The 1-based symbol of each event (None: every event is symbol 1)."""

    def __len__(self) -> int:
        return int(self.ts_exch.shape[0])

    @property
    def level_updates(self) -> int:
        """Price-level updates carried by the book events."""
        return int((self.lvl_hi - self.lvl_lo).sum())

    @property
    def trades(self) -> int:
        return int(np.count_nonzero(self.kind == TRADE))

    @property
    def market_events(self) -> int:
        """What the events/s figure counts: level updates plus trades (plus top-only resets)."""
        resets_without_levels = int(
            np.count_nonzero((self.kind == RESET) & (self.lvl_hi == self.lvl_lo))
        )
        return self.level_updates + self.trades + resets_without_levels

    @property
    def nbytes(self) -> int:
        extra = int(self.sym.nbytes) if self.sym is not None else 0
        return sum(int(getattr(self, f).nbytes) for f in _COLUMNS) + extra

    def head(self, n: int) -> MarketData:
        """The first ``n`` events (levels trimmed to match)."""
        if n >= len(self):
            return self
        # Sorting by exchange time may reorder events against their levels: keep all
        # levels any kept event points at.
        hi = int(self.lvl_hi[:n].max()) if n else 0
        cols = {f: getattr(self, f)[:n] for f in _EVENT_COLUMNS}
        lv = {f: getattr(self, f)[:hi] for f in _LEVEL_COLUMNS}
        sym = self.sym[:n] if self.sym is not None else None
        return MarketData(self.symbol, **cols, **lv, sym=sym)


def merge_markets(markets: Sequence[MarketData]) -> MarketData:
    """Several symbols' markets as one table, in exchange-time order (ties keep the
    order of ``markets``); ``markets[i]`` becomes symbol ``i + 1``."""
    if len(markets) == 1 and markets[0].sym is None:
        return markets[0]
    ts = np.concatenate([m.ts_exch for m in markets])
    sym = np.concatenate([np.full(len(m), i + 1, dtype=np.uint32) for i, m in enumerate(markets)])
    order = np.argsort(ts, kind="stable")
    # Level offsets move by the levels of the markets before.
    shift = np.cumsum([0] + [len(m.lvl_px) for m in markets[:-1]])
    lo = np.concatenate([m.lvl_lo + s for m, s in zip(markets, shift, strict=True)])
    hi = np.concatenate([m.lvl_hi + s for m, s in zip(markets, shift, strict=True)])
    cols = {
        f: np.concatenate([getattr(m, f) for m in markets])[order]
        for f in ("ts_exch", "ts_recv", "kind", "a", "b", "c", "d")
    }
    levels = {f: np.concatenate([getattr(m, f) for m in markets]) for f in _LEVEL_COLUMNS}
    return MarketData(
        ",".join(m.symbol for m in markets),
        **cols,
        lvl_lo=lo[order],
        lvl_hi=hi[order],
        **levels,
        sym=sym[order],
    )


_EVENT_COLUMNS = ("ts_exch", "ts_recv", "kind", "a", "b", "c", "d", "lvl_lo", "lvl_hi")
_LEVEL_COLUMNS = ("lvl_px", "lvl_qty", "lvl_side")
_COLUMNS = _EVENT_COLUMNS + _LEVEL_COLUMNS


class MarketBuilder:
    """Collects events (:meth:`book`, :meth:`trade`) and :meth:`build` sorts them by exchange
    time into a :class:`MarketData` (also the way to hand-make a market for a test)."""

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.ev: list[tuple[int, int, int, int, int, int, int, int, int]] = []
        self.px: list[int] = []
        self.qty: list[int] = []
        self.side: list[int] = []
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}

    def _top(self) -> tuple[int, int, int, int]:
        bids, asks = self.bids, self.asks
        bp = max(bids) if bids else 0
        ap = min(asks) if asks else 0
        return bp, bids.get(bp, 0), ap, asks.get(ap, 0)

    def book(
        self,
        ts_exch: int,
        ts_recv: int,
        bids: Iterable[tuple[int, int]],
        asks: Iterable[tuple[int, int]],
        reset: bool = False,
    ) -> None:
        """A book event: level changes (qty 0 deletes), or the whole book when ``reset``."""
        if reset:
            self.bids.clear()
            self.asks.clear()
        lo = len(self.px)
        for side, levels, book in ((1, bids, self.bids), (2, asks, self.asks)):
            for p, q in levels:
                self.px.append(p)
                self.qty.append(q)
                self.side.append(side)
                if q:
                    book[p] = q
                else:
                    book.pop(p, None)
        top = self._top()
        self.ev.append((ts_exch, ts_recv, RESET if reset else DEPTH, *top, lo, len(self.px)))

    def trade(
        self, ts_exch: int, ts_recv: int, px: int, qty: int, buyer_maker: bool, tid: int
    ) -> None:
        n = len(self.px)
        self.ev.append((ts_exch, ts_recv, TRADE, px, qty, int(buyer_maker), tid, n, n))

    def build(self) -> MarketData:
        if self.ev:
            ev = np.array(self.ev, dtype=np.int64)
        else:
            ev = np.zeros((0, 9), dtype=np.int64)
        # Stable: events of one exchange millisecond keep their arrival order.
        order = np.argsort(ev[:, 0], kind="stable")
        ev = ev[order]
        return MarketData(
            self.symbol,
            ts_exch=np.ascontiguousarray(ev[:, 0]),
            ts_recv=np.ascontiguousarray(ev[:, 1]),
            kind=ev[:, 2].astype(np.uint8),
            a=np.ascontiguousarray(ev[:, 3]),
            b=np.ascontiguousarray(ev[:, 4]),
            c=np.ascontiguousarray(ev[:, 5]),
            d=np.ascontiguousarray(ev[:, 6]),
            lvl_lo=np.ascontiguousarray(ev[:, 7]),
            lvl_hi=np.ascontiguousarray(ev[:, 8]),
            lvl_px=np.array(self.px, dtype=np.int64),
            lvl_qty=np.array(self.qty, dtype=np.int64),
            lvl_side=np.array(self.side, dtype=np.uint8),
        )


# -- synthetic ---------------------------------------------------------------------------


def _levels(rows: Sequence[Sequence[str]]) -> list[tuple[int, int]]:
    return [(to_fixed(p), to_fixed(q)) for p, q in rows]


def from_synthetic(
    seed: int = 0,
    steps: int = 10_000,
    *,
    symbol: str = "BTCUSDT",
    mid: str = "60000",
    tick: str = "0.01",
    step: str = "0.00001",
    levels: int = 20,
    interval_ms: int = 100,
    start_ms: int = 1_700_000_000_000,
) -> MarketData:
    """The seeded :class:`~wiresens.testing.synthetic.SyntheticMarket`, ``steps`` intervals.

    Starts with its snapshot (a RESET); each step gives its trades then one diff. The
    synthetic market has no receive time: ``ts_recv == ts_exch`` (use a constant feed
    latency).
    """
    from wiresens.testing.synthetic import SyntheticMarket

    m = SyntheticMarket(
        seed, symbol, mid, tick, step, levels=levels, interval_ms=interval_ms, start_ms=start_ms
    )
    b = MarketBuilder(symbol)
    snap = m.snapshot()
    t0 = start_ms * 1_000_000
    b.book(t0, t0, _levels(snap["bids"]), _levels(snap["asks"]), reset=True)
    for _ in range(steps):
        for ev in m.step_events():
            d = ev.data
            ts = ev.ts_ms * 1_000_000
            if d["e"] == "trade":
                b.trade(ts, ts, to_fixed(d["p"]), to_fixed(d["q"]), d["m"], d["t"])
            else:
                b.book(ts, ts, _levels(d["b"]), _levels(d["a"]))
    return b.build()


# -- recordings --------------------------------------------------------------------------


class _Trade(msgspec.Struct, gc=False):
    p: str
    q: str
    m: bool
    t: int = 0
    a: int = 0
    T: int = 0
    E: int = 0


_TRADE_DEC = msgspec.json.Decoder(_Trade)


class _Diff(msgspec.Struct, gc=False):
    b: list[tuple[str, str]]
    a: list[tuple[str, str]]
    E: int = 0


_DIFF_DEC = msgspec.json.Decoder(_Diff)


def _reset(b: MarketBuilder, book: Any, ts_exch: int, ts_recv: int) -> None:
    bp, bq = book.bids.levels()
    ap, aq = book.asks.levels()
    b.book(
        ts_exch,
        ts_recv,
        zip(bp.tolist(), bq.tolist(), strict=True),
        zip(ap.tolist(), aq.tolist(), strict=True),
        reset=True,
    )


def from_recordings(
    paths: Sequence[str | Path], symbol: str | None = None, market: str = "spot"
) -> MarketData:
    """Binance recordings (hftbacktest or cryptofeed format; see ``iter_session``).

    Depth diffs are synchronised with the recorded REST snapshot exactly as the feed
    does (:class:`~wiresens.binance.fastdepth.DepthFeed`); diffs before the first
    snapshot are dropped, and the first synchronised book (the snapshot with the diffs
    that bridge it) is one RESET event, as is the book after a resync. ``@trade``
    messages become trades (``@aggTrade`` when there is no ``@trade`` stream);
    ``bookTicker`` is not needed. Messages of other symbols are skipped (``symbol``
    None: the first message's).
    ``ts_exch`` is the message's ``E`` (trades: ``T``), ``ts_recv`` the recorded time.
    """
    from wiresens.binance.fastdepth import DepthFeed
    from wiresens.binance.recordings import iter_session
    from wiresens.binance.sync import Action

    if not paths:
        raise ConfigError("data.paths is empty: name the recording files to replay")
    feed = DepthFeed("usdm" if market == "usdm" else "spot", batch=1)
    b: MarketBuilder | None = None
    want = symbol.upper() if symbol else None
    synced = False
    plain_trades = 0
    agg: list[tuple[int, int, int, int, bool, int]] = []
    for msg in iter_session([str(p) for p in paths]):
        if want is None and msg.symbol:
            want = msg.symbol
        if msg.symbol and want and msg.symbol != want:
            continue
        if b is None:
            b = MarketBuilder(want or "")
        stream = msg.stream or ""
        if msg.source == "rest":
            if b"lastUpdateId" not in msg.payload:
                continue
            feed.on_snapshot(msg.payload)
            # Synchronised already (the buffered diffs bridged the snapshot): the book so
            # far is one RESET; otherwise the first applied diff emits it.
            if feed.synced and not synced:
                synced = True
                head = feed.last_head
                e_ms = head.E if head is not None and head.E else msg.ts_recv_ns // 1_000_000
                _reset(b, feed.book, e_ms * 1_000_000, msg.ts_recv_ns)
        elif stream.endswith(("@trade", "@aggTrade")):
            t = _TRADE_DEC.decode(msg.payload)
            ts = (t.T or t.E) * 1_000_000
            if stream.endswith("@trade"):
                plain_trades += 1
                b.trade(ts, msg.ts_recv_ns, to_fixed(t.p), to_fixed(t.q), t.m, t.t)
            else:
                agg.append((ts, msg.ts_recv_ns, to_fixed(t.p), to_fixed(t.q), t.m, t.a))
        elif "@depth" in stream:
            action = feed.on_diff(msg.payload)
            if action is Action.APPLIED:
                d = _DIFF_DEC.decode(msg.payload)
                if synced:
                    b.book(d.E * 1_000_000, msg.ts_recv_ns, _levels(d.b), _levels(d.a))
                else:
                    synced = True
                    _reset(b, feed.book, d.E * 1_000_000, msg.ts_recv_ns)
            elif not feed.synced:
                synced = False  # a gap: the next synchronised book is a RESET again
    if b is not None and not plain_trades:
        for tr in agg:  # aggregate trades only when the recording has no @trade stream
            b.trade(*tr)
    if b is None or not synced:
        raise ConfigError(
            f"no synchronised depth book in {list(map(str, paths))}: the recordings need a REST "
            "depth snapshot (include the file that has it, e.g. the first day of a session)"
        )
    return b.build()


# -- event log ---------------------------------------------------------------------------


def from_eventlog(directory: str | Path, symbol_index: int = 1, symbol: str = "") -> MarketData:
    """A node's event log: DEPTH_UPDATE (grouped into events by DEPTH_LAST_FLAG, RESET on
    DEPTH_CLEAR_FLAG), else TOP_OF_BOOK (each a top-only RESET), and TRADE records of
    ``symbol_index``. TOP_OF_BOOK records without an exchange time (Binance's spot
    bookTicker has none) put the whole replay on the receive clock (``ts_recv``)."""
    from wiresens.eventlog import EventLogReader
    from wiresens.records import (
        DEPTH_CLEAR_FLAG,
        DEPTH_LAST_FLAG,
        TRADE_BUYER_MAKER_FLAG,
        RecordKind,
    )

    reader = EventLogReader(directory)
    b = MarketBuilder(symbol)
    depth = reader.read_records(RecordKind.DEPTH_UPDATE)
    depth = depth[depth["symbol"] == symbol_index]
    if len(depth):
        bids: list[tuple[int, int]] = []
        asks: list[tuple[int, int]] = []
        reset = False
        for r in depth.tolist():
            flags, px, qty, side = r[2], r[8], r[9], r[10]
            ts_exch, ts_recv = r[4], r[5]
            reset |= bool(flags & DEPTH_CLEAR_FLAG)
            (bids if side == 1 else asks).append((px, qty))
            if flags & DEPTH_LAST_FLAG:
                b.book(ts_exch, ts_recv, bids, asks, reset=reset)
                bids, asks, reset = [], [], False
    recv_clock = False
    if not len(depth):
        tob = reader.read_records(RecordKind.TOP_OF_BOOK)
        tob = tob[tob["symbol"] == symbol_index]
        # bookTicker carries no exchange time: such a log replays on the node's receive
        # clock, trades included (mixing the two clocks would reorder them).
        recv_clock = bool(len(tob)) and not bool(tob["ts_exch"].any())
        for t in tob:
            bp, bq, ap, aq = (
                int(t["bid_px"]),
                int(t["bid_qty"]),
                int(t["ask_px"]),
                int(t["ask_qty"]),
            )
            b.book(
                int(t["ts_recv"]) if recv_clock else int(t["ts_exch"]),
                int(t["ts_recv"]),
                [(bp, bq)] if bq else [],
                [(ap, aq)] if aq else [],
                reset=True,
            )
    trades = reader.read_records(RecordKind.TRADE)
    trades = trades[trades["symbol"] == symbol_index]
    for t in trades:
        b.trade(
            int(t["ts_recv"]) if recv_clock else int(t["ts_exch"]),
            int(t["ts_recv"]),
            int(t["price"]),
            int(t["qty"]),
            bool(int(t["flags"]) & TRADE_BUYER_MAKER_FLAG),
            int(t["trade_id"]),
        )
    return b.build()


# -- Binance public data CSV -------------------------------------------------------------

CSV_KINDS = ("trades", "aggTrades", "bookTicker", "bookDepth", "klines")

_I, _F, _B, _T = "int", "fixed", "bool", "time"
_CSV_COLUMNS: dict[str, list[tuple[str, str]]] = {
    "trades": [
        ("id", _I),
        ("price", _F),
        ("qty", _F),
        ("quote_qty", _F),
        ("time", _T),
        ("is_buyer_maker", _B),
        ("is_best_match", _B),
    ],
    "aggTrades": [
        ("agg_id", _I),
        ("price", _F),
        ("qty", _F),
        ("first_id", _I),
        ("last_id", _I),
        ("time", _T),
        ("is_buyer_maker", _B),
        ("is_best_match", _B),
    ],
    "bookTicker": [
        ("update_id", _I),
        ("bid_px", _F),
        ("bid_qty", _F),
        ("ask_px", _F),
        ("ask_qty", _F),
        ("transaction_time", _T),
        ("event_time", _T),
    ],
    "bookDepth": [("timestamp", _T), ("percentage", _F), ("depth", _F), ("notional", _F)],
    "klines": [
        ("open_time", _T),
        ("open", _F),
        ("high", _F),
        ("low", _F),
        ("close", _F),
        ("volume", _F),
        ("close_time", _T),
        ("quote_volume", _F),
        ("count", _I),
        ("taker_buy_volume", _F),
        ("taker_buy_quote_volume", _F),
        ("ignore", _F),
    ],
}
_KIND_IN_NAME = re.compile(r"-(trades|aggTrades|bookTicker|bookDepth)-|-\d+[smhdwM]-")


def csv_kind_of(path: str | Path) -> str:
    """The public-data kind from a file name (``BTCUSDT-aggTrades-2024-08-08.csv``)."""
    name = Path(path).name
    m = _KIND_IN_NAME.search(name)
    if m is None:
        raise ConfigError(
            f"cannot tell the Binance public-data kind of {name!r} from its name; set it in "
            f'[data] csv_kind = {{ {name!r} = "trades" }} (one of {", ".join(CSV_KINDS)})'
        )
    return m.group(1) or "klines"


def _time_ns(text: str) -> int:
    if text.isdigit():
        v = int(text)
        # Spot files switched from ms to µs on 2025-01-01: a µs epoch has 16 digits.
        return v * 1_000 if v >= 10**15 else v * 1_000_000
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1_000_000) * 1_000


def read_binance_csv(path: str | Path, kind: str | None = None) -> np.ndarray[Any, Any]:
    """One Binance public-data CSV as a numpy structured array (int64 columns).

    Prices and quantities become 8-decimal fixed point, times nanoseconds, booleans 0/1.
    A header row (futures files) is skipped; a row with the wrong number of fields or a
    value that does not parse raises :class:`~wiresens.errors.ConfigError` naming the
    file, line and column.
    """
    p = Path(path)
    kind = kind or csv_kind_of(p)
    if kind not in _CSV_COLUMNS:
        raise ConfigError(f"{p}: unknown Binance public-data kind {kind!r}; use one of {CSV_KINDS}")
    cols = _CSV_COLUMNS[kind]
    rows: list[list[int]] = []
    with p.open(newline="") as fh:
        for lineno, row in enumerate(csv.reader(fh), 1):
            if not row:
                continue
            if (
                lineno == 1
                and not row[0].strip().lstrip("-").replace(".", "").isdigit()
                and kind != "bookDepth"
            ):
                continue  # header row
            if kind == "bookDepth" and lineno == 1 and row[0] == "timestamp":
                continue
            # Files without the optional is_best_match column (futures) are one short.
            if not len(cols) - 1 <= len(row) <= len(cols):
                raise ConfigError(
                    f"{p}:{lineno}: {len(row)} fields, a {kind} row has {len(cols)} "
                    f"({', '.join(c for c, _ in cols)})"
                )
            out: list[int] = []
            for (name, typ), text in zip(cols, row, strict=False):
                text = text.strip()
                try:
                    if typ == _F:
                        out.append(to_fixed(text))
                    elif typ == _B:
                        out.append(1 if text.lower() == "true" else 0)
                    elif typ == _T:
                        out.append(_time_ns(text))
                    else:
                        out.append(int(text))
                except ValueError as exc:
                    raise ConfigError(f"{p}:{lineno}: column {name} = {text!r}: {exc}") from exc
            out.extend([0] * (len(cols) - len(out)))
            rows.append(out)
    dtype = np.dtype([(name, np.int64) for name, _ in cols])
    arr = np.zeros(len(rows), dtype)
    if rows:
        mat = np.array(rows, dtype=np.int64)
        for i, (name, _) in enumerate(cols):
            arr[name] = mat[:, i]
    return arr


def from_csv(
    paths: Sequence[str | Path], symbol: str = "", kinds: dict[str, str] | None = None
) -> MarketData:
    """Replay Binance public-data files: trades or aggTrades, and bookTicker (top-only
    RESET events). ``ts_recv`` equals the exchange time (use a constant feed latency)."""
    if not paths:
        raise ConfigError("data.paths is empty: name the Binance CSV files to replay")
    kinds = kinds or {}
    b = MarketBuilder(symbol)
    for path in paths:
        kind = kinds.get(Path(path).name) or csv_kind_of(path)
        arr = read_binance_csv(path, kind)
        if kind in ("trades", "aggTrades"):
            tid = arr["id"] if kind == "trades" else arr["agg_id"]
            for t, px, q, m, i in zip(
                arr["time"].tolist(),
                arr["price"].tolist(),
                arr["qty"].tolist(),
                arr["is_buyer_maker"].tolist(),
                tid.tolist(),
                strict=True,
            ):
                b.trade(t, t, px, q, bool(m), i)
        elif kind == "bookTicker":
            for row in arr.tolist():
                _, bp, bq, ap, aq, tt, et = row
                ts = et or tt
                b.book(ts, ts, [(bp, bq)] if bq else [], [(ap, aq)] if aq else [], reset=True)
        else:
            raise ConfigError(
                f"{path}: {kind} files cannot drive a back-test (no book levels or trades to "
                "match against); replay trades/aggTrades with bookTicker, and read this file "
                "with read_binance_csv for analysis"
            )
    return b.build()
