"""The back-test configuration: frozen msgspec Structs decoded from TOML.

One file describes one run::

    seed = 7                      # latency draws and the synthetic market
    sample_interval_ms = 1000     # equity sampling (Sharpe/Sortino use it)

    [data]                        # what is replayed (see wiresens.backtest.data)
    source = "synthetic"          # synthetic | recording | csv | eventlog
    steps = 20000

    [instrument]                  # exchange filters (decimal strings); several symbols:
                                  # [[instruments]] tables instead
    symbol = "BTCUSDT"
    tick_size = "0.01"

    [latency]                     # feed and order-entry latency, nanoseconds
    [queue]                       # queue-position model of resting orders
    [fees]                        # maker / taker, basis points
    [policy]                      # the PolicyObject class and its params

Every table rejects unknown keys, so a typo fails with the path to the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import msgspec

from wiresens.errors import ConfigError
from wiresens.fixedpoint import to_fixed
from wiresens.instruments import Instrument

__all__ = [
    "BacktestConfig",
    "DataConfig",
    "FeeConfig",
    "InstrumentConfig",
    "LatencyConfig",
    "PolicyConfig",
    "QueueConfig",
    "load_config",
]


class DataConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``[data]``: the market data replayed.

    ``source`` picks the input; ``paths`` are files (recording, csv) or the event log
    directory (eventlog). ``csv_kind`` names the Binance public-data file type of every
    ``paths`` entry as ``{file name: kind}`` (trades, aggTrades, bookTicker, bookDepth,
    klines); a file not listed is recognised by its name (``BTCUSDT-aggTrades-...``).
    """

    source: Literal["synthetic", "recording", "csv", "eventlog"] = "synthetic"
    paths: list[str] = []
    csv_kind: dict[str, str] = {}
    steps: int = 10_000
    """Synthetic market: number of 100 ms steps (each ~10 level updates, ~1.2 trades)."""
    levels: int = 20
    """Synthetic market: price levels per side."""
    mid: str = "60000"
    interval_ms: int = 100
    start_ms: int = 1_700_000_000_000
    limit: int = 0
    """Stop after this many market events (0: all)."""
    market: Literal["spot", "usdm"] = "spot"
    """Recordings: the depth-sync rules (USD-M futures diffs chain by ``pu``)."""


class InstrumentConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``[instrument]``: the traded symbol and its exchange filters (decimal strings)."""

    symbol: str = "BTCUSDT"
    base: str = "BTC"
    quote: str = "USDT"
    tick_size: str = "0.01"
    step_size: str = "0.00001"
    min_qty: str = "0.00001"
    min_notional: str = "5"

    def instrument(self) -> Instrument:
        """The :class:`~wiresens.instruments.Instrument` the risk checks use."""
        return Instrument(
            symbol=self.symbol,
            base=self.base,
            quote=self.quote,
            status="TRADING",
            tick_size=to_fixed(self.tick_size),
            step_size=to_fixed(self.step_size),
            min_qty=to_fixed(self.min_qty),
            min_notional=to_fixed(self.min_notional),
        )


class LatencyConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``[latency]``, nanoseconds.

    ``feed = "recorded"`` delays each market event by its recorded ``ts_recv - ts_exch``
    less the session's minimum (which removes the recorder's clock offset) plus
    ``feed_ns``; ``"constant"`` uses ``feed_ns`` alone. Order entry (policy to matching
    engine) takes ``entry_ns``, plus for ``entry = "normal"`` a draw of N(0,
    ``entry_jitter_ns``) and for ``"lognormal"`` a draw of exp(N(0, ``sigma``)) scaling
    ``entry_ns``; ``"recorded"`` replays ``entry_recorded_ns`` in send order; never below
    ``entry_min_ns``. Reports come back after ``response_ns``.
    """

    feed: Literal["constant", "recorded"] = "constant"
    feed_ns: int = 1_000_000
    entry: Literal["constant", "normal", "lognormal", "recorded"] = "constant"
    entry_ns: int = 1_000_000
    entry_jitter_ns: int = 0
    sigma: float = 0.25
    entry_min_ns: int = 0
    entry_recorded_ns: list[int] = []
    """``entry = "recorded"``: latencies measured live (e.g. by
    :func:`wiresens.backtest.parity.entry_latencies` from a node's event log); request
    ``i`` takes value ``i`` (cycling when there are fewer)."""
    response_ns: int = 1_000_000
    local_ns: int = 10_000
    """Policy -> execution -> policy hop: a request the pre-trade check rejects is
    reported back after this long."""


class QueueConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``[queue]``: how a resting order advances in the queue at its price.

    ``conservative``: it joins behind the whole displayed level; trades at its price
    advance it; a level that shrinks below the quantity ahead pulls it forward (other
    cancels are taken to be behind it). ``probabilistic``: a shrink that trades do not
    explain is split between ahead and behind in the ratio ``f(ahead) : f(behind)`` with
    ``f(x) = x ** power`` (expected value, no draw).
    """

    model: Literal["conservative", "probabilistic"] = "conservative"
    power: float = 2.0


class FeeConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``[fees]`` in basis points of the notional, charged in the quote asset (negative: rebate)."""

    maker_bps: float = 1.0
    taker_bps: float = 1.0


class PolicyConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``[policy]``: ``class = "module:Class"`` (importable, or a path relative to the config)."""

    class_: str = msgspec.field(name="class", default="examples.market_maker:MarketMaker")
    name: str = "backtest"
    params: dict[str, Any] = {}
    timer_interval_ms: int = 0
    policy_id: int = 1
    account: int = 0


class BacktestConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One back-test run (the whole TOML file)."""

    seed: int = 0
    sample_interval_ms: int = 1000
    """Equity sampling interval; Sharpe and Sortino are per this interval."""
    data: DataConfig = DataConfig()
    instrument: InstrumentConfig = InstrumentConfig()
    latency: LatencyConfig = LatencyConfig()
    queue: QueueConfig = QueueConfig()
    fees: FeeConfig = FeeConfig()
    policy: PolicyConfig = PolicyConfig()
    instruments: list[InstrumentConfig] = []
    """Several symbols in one run (``[[instruments]]``, one table each): the policy sees
    them as symbols 1..n in this order. Replaces ``[instrument]`` when given."""
    base_dir: str = "."
    """Directory relative paths resolve against (the config file's, when loaded)."""

    def __post_init__(self) -> None:
        if self.latency.entry == "recorded" and not self.latency.entry_recorded_ns:
            raise ValueError('latency.entry = "recorded" needs latency.entry_recorded_ns')
        if self.sample_interval_ms <= 0:
            raise ValueError("sample_interval_ms must be positive")
        names = [i.symbol for i in self.instruments]
        if len(set(names)) != len(names):
            raise ValueError(f"instruments: a symbol is listed twice in {names}")

    def symbols(self) -> list[InstrumentConfig]:
        """The traded instruments, symbol 1 first (``[[instruments]]`` or ``[instrument]``)."""
        return list(self.instruments) or [self.instrument]


def load_config(path: str | Path) -> BacktestConfig:
    """Read a back-test TOML file; errors name the file and the key path."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read back-test config {p}: {exc.strerror}") from exc
    try:
        cfg = msgspec.toml.decode(raw, type=BacktestConfig)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise ConfigError(f"{p}: {exc}") from exc
    if cfg.base_dir == ".":
        cfg = msgspec.structs.replace(cfg, base_dir=str(p.resolve().parent))
    return cfg
