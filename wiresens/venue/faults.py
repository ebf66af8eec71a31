"""Fault injection for the venue: hooks a test arms while the venue serves, and a client.

Enabled only with ``VenueConfig(faults=True)`` (``wiresens venue serve --faults`` or
``WIRESENS_VENUE_FAULTS=1``): the venue then serves an admin API beside Binance's::

    POST   /_venue/faults    {"fault": NAME, ...}   arm one fault (see Faults.arm)
    GET    /_venue/faults                           counters and what is still armed
    DELETE /_venue/faults                           disarm everything, keep the counters
    GET    /_venue/orders                           every order the engine remembers
    GET    /_venue/accounts                         every account's balances

Faults (``NAME``: parameters):

* ``drop`` (``refuse_s``): close every WebSocket connection (streams and WebSocket
  API) now, and refuse new ones for ``refuse_s`` seconds.
* ``stall`` (``seconds``): stop answering: REST requests, WebSocket API frames and
  stream messages wait until the stall ends, then are served in order.
* ``reject`` (``n``): the next ``n`` new orders are rejected (-2010), not placed.
* ``error`` (``n``, ``execute``, ``events``, ``scope``): the next ``n`` requests get
  HTTP 500 (REST) or an internal-error frame (WebSocket API, status 500, -1000).
  ``scope`` is ``"orders"`` (new orders only, the default), ``"cancels"`` (order
  cancels only) or ``"all"`` (any request but the admin API and the session setup). With ``execute`` the order is placed
  before the error is returned: Binance's "execution status unknown".
* ``delay`` (``ms``, ``n``): the next ``n`` new orders are placed at once but their
  responses are sent ``ms`` later.
* ``drop_acks`` (``n``, ``events``): the next ``n`` new orders are placed but no
  response is sent (REST holds the request ``hold_s`` then answers 504, -1007).
* ``malformed`` (``n``, ``events``): the next ``n`` new orders are placed and answered
  with a truncated, unparseable frame.
* ``garbage``: one unparseable frame on every open WebSocket connection, now.
* ``storm`` (``n``, ``retry_after_s``): the next ``n`` new orders are answered 429
  (-1015) with ``Retry-After`` (REST header; WebSocket API ``data.retryAfter``). A new
  order that arrives while a 429's retry time runs (after ``grace_s`` for requests
  already in flight) is a violation, and a violation bans the caller: 418 to every
  order for ``ban_s`` seconds, as Binance bans clients that do not back off.

``events=False`` also withholds the user-data events (``executionReport``,
``outboundAccountPosition``) the faulty request produced, so the client cannot learn
the outcome but by asking. Counters: ``new_orders`` (requests per ``newClientOrderId``,
counted on arrival, faults included), ``answered_429``, ``answered_418``,
``violations``, ``dropped_connections``, ``injected`` (per fault).

:class:`FaultClient` drives the admin API from a test (standard library only).
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from dataclasses import dataclass
from typing import Any

from wiresens.errors import ConfigError, ExchangeError

__all__ = ["FaultClient", "FaultError", "Faults", "OrderFault", "fault_error"]

FAULTS = ("drop", "stall", "reject", "error", "delay", "drop_acks", "malformed", "garbage", "storm")

MALFORMED_FRAME = '{"id":0,"status":200,"result":{"symbol":"'
"""What ``malformed`` and ``garbage`` send: JSON cut short (the id is filled in)."""


@dataclass(frozen=True, slots=True)
class OrderFault:
    """What to do with one new-order request (``kind`` is a fault name, or ``ban``)."""

    kind: str
    execute: bool = True
    events: bool = True
    delay_s: float = 0.0
    retry_after_ms: int = 0
    hold_s: float = 0.0


class Faults:
    """The armed faults of one venue and what they did. Runs on the venue's event loop."""

    def __init__(self) -> None:
        self.new_orders: dict[str, int] = {}
        self.answered_429 = 0
        self.answered_418 = 0
        self.violations = 0
        self.dropped_connections = 0
        self.injected: dict[str, int] = {}
        self.rate_log: list[dict[str, Any]] = []
        """Every 429, 418 and violation, and every new order while a 429's retry time
        runs (at most 200 entries): what a test prints when pacing goes wrong."""
        self.reset()

    def reset(self) -> None:
        """Disarm every fault (counters stay)."""
        self.refuse_until = 0.0
        self.stall_until = 0.0
        self.reject_left = 0
        self.error_left = 0
        self.error_execute = False
        self.error_events = True
        self.error_scope = "orders"
        self.delay_left = 0
        self.delay_s = 0.0
        self.drop_acks_left = 0
        self.drop_acks_events = True
        self.hold_s = 10.0
        self.malformed_left = 0
        self.malformed_events = True
        self.storm_left = 0
        self.storm_retry_s = 1.0
        self.grace_s = 0.5
        self.ban_s = 60.0
        # Time before which a new order violates the last 429, and when it starts counting
        # (the 429's send time plus grace for requests in flight). Wall clock, as the
        # retryAfter (epoch ms) the 429 carries: the window and the number the client is
        # told are one value, whatever the monotonic clock does meanwhile.
        self.retry_until = 0.0
        self.retry_from = 0.0
        self.banned_until = 0.0

    # -- arming ----------------------------------------------------------------------------
    def arm(self, spec: dict[str, Any]) -> str | None:
        """Arm the fault ``spec["fault"]`` with its parameters; returns ``"drop"`` or
        ``"garbage"`` when the venue must act on its connections now, else None.

        Raises :class:`~wiresens.errors.ConfigError` naming an unknown fault or parameter.
        """
        name = spec.get("fault")
        if name not in FAULTS:
            raise ConfigError(f"unknown fault {name!r}; use one of {', '.join(FAULTS)}")
        allowed = {
            "drop": {"refuse_s"},
            "stall": {"seconds"},
            "reject": {"n"},
            "error": {"n", "execute", "events", "scope"},
            "delay": {"ms", "n"},
            "drop_acks": {"n", "events", "hold_s"},
            "malformed": {"n", "events"},
            "garbage": set(),
            "storm": {"n", "retry_after_s", "grace_s", "ban_s"},
        }[name]
        extra = set(spec) - allowed - {"fault"}
        if extra:
            raise ConfigError(
                f"fault {name!r} has no parameter {sorted(extra)[0]!r}; it takes {sorted(allowed)}"
            )
        now = time.monotonic()
        n = int(spec.get("n", 1))
        events = bool(spec.get("events", True))
        if name == "drop":
            self.refuse_until = now + float(spec.get("refuse_s", 0.0))
            return "drop"
        if name == "garbage":
            return "garbage"
        if name == "stall":
            self.stall_until = now + float(spec.get("seconds", 1.0))
        elif name == "reject":
            self.reject_left = n
        elif name == "error":
            scope = spec.get("scope", "orders")
            if scope not in ("orders", "cancels", "all"):
                raise ConfigError(
                    f"fault 'error': scope {scope!r} must be 'orders', 'cancels' or 'all'"
                )
            self.error_left, self.error_execute = n, bool(spec.get("execute", False))
            self.error_events, self.error_scope = events, scope
        elif name == "delay":
            self.delay_left, self.delay_s = n, float(spec.get("ms", 100)) / 1000.0
        elif name == "drop_acks":
            self.drop_acks_left, self.drop_acks_events = n, events
            self.hold_s = float(spec.get("hold_s", 10.0))
        elif name == "malformed":
            self.malformed_left, self.malformed_events = n, events
        elif name == "storm":
            self.storm_left = n
            self.storm_retry_s = float(spec.get("retry_after_s", 1.0))
            self.grace_s = float(spec.get("grace_s", 0.5))
            self.ban_s = float(spec.get("ban_s", 60.0))
        return None

    def state(self) -> dict[str, Any]:
        """Counters and armed faults (the admin ``GET``)."""
        now = time.monotonic()
        return {
            "new_orders": dict(self.new_orders),
            "answered_429": self.answered_429,
            "answered_418": self.answered_418,
            "violations": self.violations,
            "dropped_connections": self.dropped_connections,
            "injected": dict(self.injected),
            "armed": {
                "refuse_s": max(0.0, self.refuse_until - now),
                "stall_s": max(0.0, self.stall_until - now),
                "reject": self.reject_left,
                "error": self.error_left,
                "delay": self.delay_left,
                "drop_acks": self.drop_acks_left,
                "malformed": self.malformed_left,
                "storm": self.storm_left,
                "banned_s": max(0.0, self.banned_until - time.time()),
            },
            "rate_log": list(self.rate_log),
        }

    # -- hooks the transports call ---------------------------------------------------------
    def refusing(self) -> bool:
        """Whether a new WebSocket connection is refused now."""
        return time.monotonic() < self.refuse_until

    async def wait_stall(self) -> None:
        """Return when no stall runs (at once, unless ``stall`` is armed)."""
        while (left := self.stall_until - time.monotonic()) > 0:
            await asyncio.sleep(left)

    def _count(self, kind: str) -> None:
        self.injected[kind] = self.injected.get(kind, 0) + 1

    def on_request(self, cancel: bool = False) -> OrderFault | None:
        """Any request but a new order (``error`` with scope ``all``, or ``cancels`` when
        ``cancel``: an order cancel)."""
        scope = self.error_scope
        if self.error_left and (scope == "all" or (cancel and scope == "cancels")):
            self.error_left -= 1
            self._count("error")
            return OrderFault("error", execute=self.error_execute, events=self.error_events)
        return None

    def _log_rate(self, event: str, client_order_id: str, now: float) -> None:
        if len(self.rate_log) < 200:
            self.rate_log.append(
                {
                    "event": event,
                    "client_order_id": client_order_id,
                    "at_ms": _ms(now),
                    "retry_from_ms": _ms(self.retry_from),
                    "retry_until_ms": _ms(self.retry_until),
                }
            )

    def on_new_order(self, client_order_id: str) -> OrderFault | None:
        """Count a new-order request and say which fault (if any) answers it."""
        self.new_orders[client_order_id] = self.new_orders.get(client_order_id, 0) + 1
        now = time.time()
        if now < self.banned_until:
            self.answered_418 += 1
            self._log_rate("418", client_order_id, now)
            return OrderFault("ban", execute=False, retry_after_ms=_ms(self.banned_until))
        if self.retry_from <= now < self.retry_until:
            self.violations += 1
            self.banned_until = now + self.ban_s
            self.answered_418 += 1
            self._log_rate("violation", client_order_id, now)
            return OrderFault("ban", execute=False, retry_after_ms=_ms(self.banned_until))
        if self.storm_left:
            self.storm_left -= 1
            self._count("storm")
            self.answered_429 += 1
            self.retry_until = now + self.storm_retry_s
            self.retry_from = now + self.grace_s
            self._log_rate("429", client_order_id, now)
            return OrderFault("storm", execute=False, retry_after_ms=_ms(self.retry_until))
        if now < self.retry_until:
            self._log_rate("accepted", client_order_id, now)
        if self.reject_left:
            self.reject_left -= 1
            self._count("reject")
            return OrderFault("reject", execute=False)
        if self.error_left and self.error_scope != "cancels":
            self.error_left -= 1
            self._count("error")
            return OrderFault("error", execute=self.error_execute, events=self.error_events)
        if self.drop_acks_left:
            self.drop_acks_left -= 1
            self._count("drop_acks")
            return OrderFault("drop_acks", events=self.drop_acks_events, hold_s=self.hold_s)
        if self.malformed_left:
            self.malformed_left -= 1
            self._count("malformed")
            return OrderFault("malformed", events=self.malformed_events)
        if self.delay_left:
            self.delay_left -= 1
            self._count("delay")
            return OrderFault("delay", delay_s=self.delay_s)
        return None


def _ms(epoch_s: float) -> int:
    return int(epoch_s * 1000)


class FaultClient:
    """Arm faults and read the venue's own state over the admin API.

    Parameters
    ----------
    base_url:
        The venue's ``http://127.0.0.1:PORT``.
    """

    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            self.base_url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=self.timeout) as resp:
            return json.loads(resp.read())

    def arm(self, fault: str, **params: Any) -> dict[str, Any]:
        """Arm ``fault`` (see :class:`Faults`); returns the venue's fault state."""
        out: dict[str, Any] = self._call("POST", "/_venue/faults", {"fault": fault, **params})
        return out

    def drop(self, refuse_s: float = 0.0) -> dict[str, Any]:
        return self.arm("drop", refuse_s=refuse_s)

    def stall(self, seconds: float) -> dict[str, Any]:
        return self.arm("stall", seconds=seconds)

    def reject(self, n: int = 1) -> dict[str, Any]:
        return self.arm("reject", n=n)

    def error(
        self, n: int = 1, *, execute: bool = False, events: bool = True, scope: str = "orders"
    ) -> dict[str, Any]:
        return self.arm("error", n=n, execute=execute, events=events, scope=scope)

    def delay(self, ms: float, n: int = 1) -> dict[str, Any]:
        return self.arm("delay", ms=ms, n=n)

    def drop_acks(
        self, n: int = 1, *, events: bool = False, hold_s: float = 10.0
    ) -> dict[str, Any]:
        return self.arm("drop_acks", n=n, events=events, hold_s=hold_s)

    def malformed(self, n: int = 1, *, events: bool = False) -> dict[str, Any]:
        return self.arm("malformed", n=n, events=events)

    def garbage(self) -> dict[str, Any]:
        return self.arm("garbage")

    def storm(
        self, n: int, retry_after_s: float = 1.0, grace_s: float = 0.5, ban_s: float = 60.0
    ) -> dict[str, Any]:
        return self.arm("storm", n=n, retry_after_s=retry_after_s, grace_s=grace_s, ban_s=ban_s)

    def clear(self) -> dict[str, Any]:
        """Disarm every fault."""
        out: dict[str, Any] = self._call("DELETE", "/_venue/faults")
        return out

    def state(self) -> dict[str, Any]:
        """Counters (``new_orders`` per client order id, 429s, 418s, ...) and armed faults."""
        out: dict[str, Any] = self._call("GET", "/_venue/faults")
        return out

    def orders(self) -> list[dict[str, Any]]:
        """Every order the venue remembers (``account`` is the account's name)."""
        out: list[dict[str, Any]] = self._call("GET", "/_venue/orders")
        return out

    def accounts(self) -> dict[str, dict[str, dict[str, str]]]:
        """Balances per account name: ``{name: {asset: {"free", "locked"}}}``."""
        out: dict[str, dict[str, dict[str, str]]] = self._call("GET", "/_venue/accounts")
        return out


class FaultError(ExchangeError):
    """An injected error answer; ``data`` (when set) goes into the error body as Binance's."""

    def __init__(
        self, code: int, msg: str, status: int, data: dict[str, Any] | None = None
    ) -> None:
        super().__init__(code, msg, status)
        self.data = data


def fault_error(fault: OrderFault, orders_per_10s: int) -> FaultError:
    """The error a fault answers with (``ban``, ``storm``, ``reject``, ``error``,
    ``drop_acks`` on REST)."""
    kind = fault.kind
    if kind in ("ban", "storm"):
        data = {"serverTime": time.time_ns() // 1_000_000, "retryAfter": fault.retry_after_ms}
        if kind == "ban":
            return FaultError(
                -1003,
                f"Way too much request weight used; IP banned until {fault.retry_after_ms}. "
                "Please use WebSocket Streams for live updates to avoid bans.",
                418,
                data,
            )
        return FaultError(
            -1015,
            f"Too many new orders; current limit is {orders_per_10s} orders per 10 SECOND.",
            429,
            data,
        )
    if kind == "reject":
        return FaultError(-2010, "Order rejected by the venue (injected fault).", 400)
    if kind == "drop_acks":
        return FaultError(
            -1007,
            "Timeout waiting for response from backend server. Send status unknown; "
            "execution status unknown.",
            504,
        )
    return FaultError(
        -1000, "An unknown error occurred while processing the request (injected fault).", 500
    )
