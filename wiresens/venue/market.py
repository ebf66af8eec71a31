"""What moves the venue's market liquidity: a replayed recording or a synthetic market.

``replay:FILE[,FILE...]`` reads a recording (formats of the shared Binance data;
several files of one session are merged by time with
:func:`wiresens.binance.recordings.iter_session`) and applies, paced by the
recorded receive times divided by ``speed``: REST depth snapshots (replace the
market levels), diff depth events (set levels), trades and aggTrades (public
trades that may fill resting user orders they trade through). Book tickers and
other streams are ignored: depth already carries the book. Diffs older than the
last snapshot (``u <= lastUpdateId``) are skipped.

``synthetic:SEED`` runs one :class:`~wiresens.testing.synthetic.SyntheticMarket`
per symbol, one step every ``interval_ms / speed``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec

from wiresens.binance.recordings import iter_session
from wiresens.errors import ConfigError
from wiresens.fixedpoint import from_fixed, to_fixed
from wiresens.testing.synthetic import SyntheticMarket

from .api import now_ms
from .matching import Engine

__all__ = ["MarketFeeder", "apply_depth", "apply_snapshot", "apply_trade", "parse_market_spec"]

_MIDS = {"BTCUSDT": "60000", "ETHUSDT": "3000", "BNBUSDT": "600"}


def parse_market_spec(spec: str) -> tuple[str, str]:
    """Split ``replay:FILE`` / ``synthetic:SEED[:MOVE_TICKS]`` / ``none``; fail with the
    accepted forms. MOVE_TICKS scales the synthetic mid's random walk (default 1)."""
    kind, _, arg = spec.partition(":")
    if kind == "none" and not arg:
        return kind, ""
    if kind == "replay" and arg:
        for f in arg.split(","):
            if not Path(f).is_file():
                raise ConfigError(f"--market {spec}: no such recording file {f!r}")
        return kind, arg
    seed, _, move = arg.partition(":")
    if kind == "synthetic" and seed.lstrip("-").isdigit() and (not move or move.isdigit()):
        return kind, arg
    raise ConfigError(
        f"--market {spec!r}: use replay:FILE (a recording), synthetic:SEED (an integer, "
        "optionally :MOVE_TICKS, e.g. synthetic:42:100) or none"
    )


def apply_depth(engine: Engine, symbol: str, data: dict[str, Any], t_ms: int) -> None:
    """Apply the ``b``/``a`` levels of a diff depth event as market levels."""
    for is_bid, key in ((True, "b"), (False, "a")):
        for p, q in data.get(key, ()):
            engine.set_market_level(symbol, is_bid, to_fixed(p), to_fixed(q), t_ms)


def apply_snapshot(engine: Engine, symbol: str, data: dict[str, Any], t_ms: int) -> None:
    """Replace the market levels by a REST depth snapshot."""
    book = engine.books[symbol]
    for is_bid, key in ((True, "bids"), (False, "asks")):
        side = book.bids if is_bid else book.asks
        keep = {to_fixed(p): to_fixed(q) for p, q in data.get(key, ())}
        for p in list(side.market):
            if p not in keep:
                engine.set_market_level(symbol, is_bid, p, 0, t_ms)
        for p, q in keep.items():
            engine.set_market_level(symbol, is_bid, p, q, t_ms)


def apply_trade(engine: Engine, symbol: str, data: dict[str, Any], t_ms: int) -> None:
    """A recorded ``trade``/``aggTrade`` becomes a market trade."""
    engine.market_trade(symbol, to_fixed(data["p"]), to_fixed(data["q"]), bool(data["m"]), t_ms)


class MarketFeeder:
    """Drives the engine's market liquidity from a spec; ``publish`` runs after each batch."""

    def __init__(
        self,
        engine: Engine,
        spec: str,
        publish: Callable[[], None],
        speed: float = 1.0,
        interval_ms: int = 100,
        loop: bool = False,
    ) -> None:
        self.engine = engine
        self.kind, self.arg = parse_market_spec(spec)
        self.publish = publish
        self.speed = speed
        self.interval_ms = interval_ms
        self.loop = loop
        self.applied = 0
        self.skipped = 0
        self.finished = False
        self.markets: list[SyntheticMarket] = []
        if self.kind == "synthetic":
            seed_text, _, move_text = self.arg.partition(":")
            seed = int(seed_text)
            move = int(move_text) if move_text else 1
            for i, (sym, book) in enumerate(engine.books.items()):
                inst = book.rules
                m = SyntheticMarket(
                    seed + i,
                    sym,
                    _MIDS.get(sym, "100"),
                    from_fixed(inst.tick_size),
                    from_fixed(inst.step_size),
                    interval_ms=interval_ms,
                    move_ticks=move,
                )
                self.markets.append(m)
                apply_snapshot(engine, sym, m.snapshot(), now_ms())

    async def run(self) -> None:
        """Feed until cancelled (or the recording ends, unless looping)."""
        if self.kind == "synthetic":
            await self._run_synthetic()
        elif self.kind == "replay":
            while True:
                await self._run_replay()
                if not self.loop:
                    self.finished = True
                    return

    async def _run_synthetic(self) -> None:
        period = self.interval_ms / 1000.0 / self.speed
        nxt = time.monotonic()
        while True:
            t = now_ms()
            for m in self.markets:
                for ev in m.step_events():
                    if ev.data["e"] == "trade":
                        apply_trade(self.engine, m.symbol, ev.data, t)
                    else:
                        apply_depth(self.engine, m.symbol, ev.data, t)
                    self.applied += 1
            self.publish()
            nxt += period
            await asyncio.sleep(max(0.0, nxt - time.monotonic()))

    def _messages(self) -> Iterator[tuple[int, str, str, dict[str, Any]]]:
        """(ts_recv_ns, kind, SYMBOL, data) of the recording; kind: snapshot|depth|trade."""

        def skip(path: str, lineno: int, reason: str) -> None:
            self.skipped += 1

        for msg in iter_session(self.arg.split(","), skip):
            try:
                body = msgspec.json.decode(msg.payload)
            except msgspec.DecodeError:
                continue
            if not isinstance(body, dict):
                continue
            if msg.source == "rest":
                if "lastUpdateId" in body and "bids" in body and msg.symbol:
                    yield msg.ts_recv_ns, "snapshot", msg.symbol.upper(), body
                continue
            data = body.get("data", body)
            if not isinstance(data, dict):
                continue
            e = data.get("e")
            sym = str(data.get("s", msg.symbol or "")).upper()
            if e == "depthUpdate":
                yield msg.ts_recv_ns, "depth", sym, data
            elif e in ("trade", "aggTrade"):
                yield msg.ts_recv_ns, "trade", sym, data

    async def _run_replay(self) -> None:
        t0_rec: int | None = None
        t0 = time.monotonic()
        snap_id: dict[str, int] = {}
        has_trade_stream: set[str] = set()
        pending = 0
        for ts, kind, sym, data in self._messages():
            if sym not in self.engine.books:
                continue
            if t0_rec is None:
                t0_rec = ts
            due = t0 + (ts - t0_rec) / 1e9 / self.speed
            delay = due - time.monotonic()
            if delay > 0.001:
                if pending:
                    self.publish()
                    pending = 0
                await asyncio.sleep(delay)
            t = now_ms()
            if kind == "snapshot":
                snap_id[sym] = int(data["lastUpdateId"])
                apply_snapshot(self.engine, sym, data, t)
            elif kind == "depth":
                if int(data.get("u", 0)) <= snap_id.get(sym, 0):
                    continue
                apply_depth(self.engine, sym, data, t)
            else:
                # Recordings with both @trade and @aggTrade would count trades twice.
                if data["e"] == "trade":
                    has_trade_stream.add(sym)
                elif sym in has_trade_stream:
                    continue
                apply_trade(self.engine, sym, data, t)
            self.applied += 1
            pending += 1
            if pending >= 200:
                self.publish()
                pending = 0
                await asyncio.sleep(0)
        self.publish()
