"""Binance rate-limit accounting: request weight, order counts, 429 back-off and 418 bans.

Binance publishes its limits in exchangeInfo ``rateLimits`` (``REQUEST_WEIGHT``
1200/min, ``ORDERS`` 50/10 s and 160 000/day, ``RAW_REQUESTS`` 6100/5 min on spot
in 2021; USD-M 2400 weight/min, 1200 orders/min, 300/10 s) and reports usage in
every REST response header:

- ``X-MBX-USED-WEIGHT-(intervalNum)(intervalLetter)``: weight used by this **IP**
  in the current window (shared by every process on the host);
- ``X-MBX-ORDER-COUNT-(intervalNum)(intervalLetter)``: orders placed by this
  **account** in the current window (only on successful order responses).

The letters are S, M, H, D. WebSocket API responses carry the same numbers as
``rateLimits`` entries with a ``count`` (:meth:`RateLimitState.update_from_ws`).

Windows are fixed and aligned to the epoch (a 1-minute window starts at each
whole minute), so a count observed in one window is forgotten when the next
starts. Between responses, :meth:`RateLimitState.record` adds what the client is
about to spend, so a burst does not overrun before the next header arrives.

On HTTP 429 Binance sends ``Retry-After`` (seconds) when the IP weight was
exceeded; when the *order* count was exceeded there is none, and the client
waits until the full order window ends. HTTP 418 means the IP is banned for
``Retry-After`` seconds (2 minutes up to 3 days, growing for repeat offenders):
nothing may be sent until then. Ignoring a 429 is what earns the 418.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from wiresens.binance.wire import ExchangeInfo, RateLimit

__all__ = ["DEFAULT_BAN_SECONDS", "RETRY_MARGIN_S", "RateLimitState", "WindowUsage", "interval_key"]

_LETTER = {"SECOND": "S", "MINUTE": "M", "HOUR": "H", "DAY": "D"}
_SECONDS = {"S": 1, "M": 60, "H": 3600, "D": 86400}
_WEIGHT_PREFIX = "x-mbx-used-weight-"
_ORDER_PREFIX = "x-mbx-order-count-"
DEFAULT_BAN_SECONDS = 120.0
"""Wait after a 418 without a readable Retry-After (Binance's shortest ban)."""
_DEFAULT_429_SECONDS = 1.0


RETRY_MARGIN_S = 0.1
"""Extra wait after an exchange's ``retryAfter`` (clock skew and millisecond rounding)."""


def interval_key(interval: str, interval_num: int) -> str:
    """The header suffix of a limit: (``MINUTE``, 1) -> ``"1M"``, (``SECOND``, 10) -> ``"10S"``."""
    return f"{interval_num}{_LETTER[interval.upper()]}"


def _window_seconds(key: str) -> float:
    return float(int(key[:-1]) * _SECONDS[key[-1].upper()])


@dataclass
class WindowUsage:
    """One limit: ``used`` of ``limit`` in the window that started at ``window_start``."""

    kind: str
    """``REQUEST_WEIGHT``, ``ORDERS`` or ``RAW_REQUESTS``."""
    key: str
    """Interval as in the header, e.g. ``1M``."""
    limit: int
    seconds: float
    used: int = 0
    window_start: float = 0.0

    def roll(self, now: float) -> None:
        """Forget the count when ``now`` is past the window it was observed in."""
        start = math.floor(now / self.seconds) * self.seconds
        if start != self.window_start:
            self.window_start = start
            self.used = 0

    def window_end(self) -> float:
        return self.window_start + self.seconds


class RateLimitState:
    """Usage of every documented limit of one IP/account, and what to do next.

    Parameters
    ----------
    limits
        exchangeInfo ``rateLimits`` (see :meth:`from_exchange_info`).
    safety
        Fraction of each limit the client allows itself (0.9 keeps 10 % spare for
        cancels and for other processes behind the same IP).
    clock
        Wall-clock seconds (windows align to the epoch); injectable for tests.
    """

    def __init__(
        self,
        limits: Iterable[RateLimit],
        safety: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not 0.0 < safety <= 1.0:
            raise ValueError(f"safety {safety} must be in (0, 1]: it is the share of a limit used")
        self._clock = clock
        self._safety = safety
        self.windows: dict[str, WindowUsage] = {}
        for rl in limits:
            key = interval_key(rl.interval, rl.intervalNum)
            self.windows[f"{rl.rateLimitType}:{key}"] = WindowUsage(
                rl.rateLimitType, key, rl.limit, _window_seconds(key)
            )
        self.blocked_until = 0.0
        """No request before this time (429 back-off or 418 ban)."""
        self.banned = False
        """The last block came from a 418 (IP ban), not a 429."""

    @classmethod
    def from_exchange_info(
        cls, info: ExchangeInfo, safety: float = 1.0, clock: Callable[[], float] = time.time
    ) -> RateLimitState:
        """The limits published in an exchangeInfo body."""
        return cls(info.rateLimits, safety, clock)

    def _window(self, kind: str, key: str, now: float) -> WindowUsage:
        name = f"{kind}:{key}"
        w = self.windows.get(name)
        if w is None:
            # A header for a limit exchangeInfo did not list: track it, unbounded,
            # so headroom() still shows the usage.
            w = self.windows[name] = WindowUsage(kind, key, 0, _window_seconds(key))
        w.roll(now)
        return w

    def update_from_headers(
        self, headers: Mapping[str, str] | Iterable[tuple[str, str]], status: int = 200
    ) -> None:
        """Take usage from a REST response's headers (any letter case) and its status.

        429 blocks for ``Retry-After`` seconds, or, without it (order limit hit),
        until the exhausted order window ends. 418 blocks for ``Retry-After`` (or
        :data:`DEFAULT_BAN_SECONDS`) and marks the state banned.
        """
        now = self._clock()
        items = headers.items() if isinstance(headers, Mapping) else headers
        retry_after: float | None = None
        for name, value in items:
            low = name.lower()
            if low.startswith(_WEIGHT_PREFIX):
                kind, key = "REQUEST_WEIGHT", low[len(_WEIGHT_PREFIX) :].upper()
            elif low.startswith(_ORDER_PREFIX):
                kind, key = "ORDERS", low[len(_ORDER_PREFIX) :].upper()
            elif low == "retry-after":
                retry_after = _seconds(value)
                continue
            else:
                continue
            if not _valid_key(key):
                continue
            try:
                used = int(value)
            except ValueError:
                continue
            self._window(kind, key, now).used = used
        if status in (418, 429) and retry_after is not None:
            # Retry-After is the server's own answer to "when": do not let a local
            # window estimate (which may be misaligned with the server's) extend it.
            for w in self.windows.values():
                if w.kind != "ORDERS":
                    w.used = 0
        if status == 418:
            self._block(now, retry_after if retry_after is not None else DEFAULT_BAN_SECONDS, True)
        elif status == 429:
            if retry_after is None:
                retry_after = self._order_window_wait(now)
            self._block(now, retry_after, False)

    def update_from_ws(self, rate_limits: Iterable[RateLimit], status: int = 200) -> None:
        """Take usage from a WebSocket API response's ``rateLimits`` (entries with ``count``).

        A WS API 429/418 carries ``retryAfter`` (epoch ms) in the error ``data``:
        pass it to :meth:`block_until`.
        """
        now = self._clock()
        for rl in rate_limits:
            if rl.count is None:
                continue
            key = interval_key(rl.interval, rl.intervalNum)
            w = self._window(rl.rateLimitType, key, now)
            w.limit = rl.limit
            w.used = rl.count
        if status == 429 and self.blocked_until <= now:
            self._block(now, self._order_window_wait(now), False)

    def block_until(self, when: float, banned: bool = False) -> None:
        """Send nothing before ``when`` (wall-clock seconds), e.g. WS API ``retryAfter``/1000,
        plus :data:`RETRY_MARGIN_S`: ``retryAfter`` is whole milliseconds of the exchange's
        clock, so a request sent at that very instant can land just inside the window, and
        the exchange bans (418) a request inside a 429's retry window."""
        self.blocked_until = max(self.blocked_until, when + RETRY_MARGIN_S)
        self.banned = self.banned or banned

    def _block(self, now: float, seconds: float, banned: bool) -> None:
        self.blocked_until = max(self.blocked_until, now + seconds)
        self.banned = banned

    def _order_window_wait(self, now: float) -> float:
        """Until the end of the exhausted order window (or the shortest one, if none shows
        as exhausted yet)."""
        orders = [w for w in self.windows.values() if w.kind == "ORDERS"]
        for w in orders:
            w.roll(now)
        full = [w for w in orders if w.limit and w.used >= w.limit]
        if full:
            return max(w.window_end() for w in full) - now
        if orders:
            return min(w.window_end() for w in orders) - now
        return _DEFAULT_429_SECONDS

    def record(self, weight: int = 1, orders: int = 0) -> None:
        """Count a request about to be sent (weight, orders placed, one raw request)."""
        now = self._clock()
        for w in self.windows.values():
            w.roll(now)
            if w.kind == "REQUEST_WEIGHT":
                w.used += weight
            elif w.kind == "ORDERS":
                w.used += orders
            elif w.kind == "RAW_REQUESTS":
                w.used += 1

    def _allowed(self, w: WindowUsage) -> int:
        return int(w.limit * self._safety) if w.limit else 0

    def headroom(self) -> dict[str, int]:
        """Remaining allowance per limit (``"REQUEST_WEIGHT:1M"`` -> weight left); 0 for
        every limit while blocked; -1 for a limit seen only in headers (no known bound)."""
        now = self._clock()
        blocked = now < self.blocked_until
        out: dict[str, int] = {}
        for name, w in self.windows.items():
            w.roll(now)
            if not w.limit:
                out[name] = -1
            else:
                out[name] = 0 if blocked else max(0, self._allowed(w) - w.used)
        return out

    def should_wait(self, weight: int = 1, orders: int = 0) -> float:
        """Seconds to wait before a request of ``weight`` placing ``orders`` fits (0: send now).

        A request that could never fit (weight above a whole window's allowance)
        still gets the wait until the next window, never an infinite one.
        """
        now = self._clock()
        wait = max(0.0, self.blocked_until - now)
        for w in self.windows.values():
            if not w.limit:
                continue
            w.roll(now)
            if w.kind == "ORDERS" and not orders:
                continue  # a query is not held back by an exhausted order count
            need = {"REQUEST_WEIGHT": weight, "ORDERS": orders, "RAW_REQUESTS": 1}.get(w.kind, 0)
            if w.used + need > self._allowed(w):
                wait = max(wait, w.window_end() - now)
        return wait


def _valid_key(key: str) -> bool:
    return len(key) >= 2 and key[:-1].isdigit() and key[-1] in _SECONDS


def _seconds(value: str) -> float | None:
    try:
        s = float(value)
    except ValueError:
        return None
    return s if math.isfinite(s) and s >= 0 else None
