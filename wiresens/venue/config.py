"""Configuration of the venue simulator (a frozen msgspec Struct)."""

from __future__ import annotations

import msgspec

__all__ = ["VenueConfig"]


class VenueConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """How the venue serves.

    ``market`` is ``"synthetic:SEED"`` or ``"replay:FILE"`` (a recording of
    ``/work/shared/data/binance`` formats) or ``"none"`` (only user liquidity).
    Intervals are configurable so that tests can use short ones.
    """

    host: str = "127.0.0.1"
    port: int = 8900
    symbols: tuple[str, ...] = ("BTCUSDT",)
    market: str = "synthetic:1"
    speed: float = 1.0
    replay_loop: bool = False
    synthetic_interval_ms: int = 100
    ping_interval_s: float = 20.0
    pong_timeout_s: float = 60.0
    depth_fast_ms: int = 100
    depth_slow_ms: int = 1000
    max_recv_window_ms: int = 60_000
    weight_per_minute: int = 6000
    orders_per_10s: int = 100
    orders_per_day: int = 200_000
    default_stp: str = "EXPIRE_MAKER"
    ws_queue_size: int = 10_000
    faults: bool = False
    """Serve the fault-injection admin API (``/_venue/...``, :mod:`wiresens.venue.faults`)."""
