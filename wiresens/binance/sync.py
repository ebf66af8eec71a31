"""Binance's local order book procedure (snapshot + diff stream) as a state machine.

Spot (``GET /api/v3/depth`` + ``<symbol>@depth``):

1. buffer diffs until the REST snapshot (``lastUpdateId`` = L) is loaded;
2. drop every diff with ``u <= L``;
3. the first applied diff must have ``U <= L + 1 <= u``;
4. after it, every diff must have ``U == previous u + 1``.

USD-M futures (``GET /fapi/v1/depth`` + ``<symbol>@depth``):

2. drop every diff with ``u < L``;
3. the first applied diff must have ``U <= L <= u``;
4. after it, every diff must have ``pu == previous u``.

A broken rule is a gap: the book is discarded (:meth:`OrderBook.clear`), the
state goes back to ``NEED_SNAPSHOT`` and the gateway fetches a new snapshot; diffs
keep being buffered meanwhile so the next snapshot can be joined without losing
any. A snapshot older than the buffered diffs (the first kept diff already starts
after it) also asks for a new snapshot. The machine never raises on market data
and the book is *published* (``synced`` true) only after the first diff is
applied on top of a snapshot.

The machine decides on ids only; what a diff *is* (decoded arrays, raw bytes
waiting in a batch) is the caller's business: it passes an opaque item that the
machine hands back to the ``apply`` callback when the diff is to be applied.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from enum import IntEnum
from typing import Generic, Literal, TypeVar

from wiresens.book import OrderBook

__all__ = ["Action", "DepthSync", "Market", "SyncCounters", "SyncState"]

T = TypeVar("T")
Market = Literal["spot", "usdm"]


class SyncState(IntEnum):
    """Where the machine is: waiting for a snapshot, waiting for the first diff, in sync."""

    NEED_SNAPSHOT = 0
    """No usable book: buffering diffs; the gateway must fetch a snapshot."""
    WAIT_FIRST = 1
    """Snapshot loaded, no diff bridging it yet; the book is not published."""
    SYNCED = 2
    """Snapshot plus a continuous chain of diffs: the book may be published."""


class Action(IntEnum):
    """What :meth:`DepthSync.on_diff` / :meth:`DepthSync.on_snapshot` did."""

    BUFFERED = 0
    """Kept for after the next snapshot."""
    DROPPED = 1
    """Older than the book (already contained in the snapshot)."""
    APPLIED = 2
    """Passed to ``apply``; the book is current."""
    NEED_SNAPSHOT = 3
    """A gap (or a too-old snapshot): book discarded; fetch a new snapshot."""
    WAITING = 4
    """Snapshot loaded; waiting for the diff that bridges it."""


class SyncCounters:
    """Plain counters (the gateway copies them into shared memory).

    ``gaps`` counts continuity breaks of a synced book; ``resyncs`` counts every
    request for a new snapshot after one was loaded (a gap, or a snapshot older
    than the diffs), so ``gaps <= resyncs``; ``snapshots`` counts snapshots loaded.
    """

    __slots__ = ("applied", "buffered", "dropped", "gaps", "resyncs", "snapshots")

    def __init__(self) -> None:
        self.applied = 0
        self.buffered = 0
        self.dropped = 0
        self.gaps = 0
        self.resyncs = 0
        self.snapshots = 0

    def as_dict(self) -> dict[str, int]:
        """The counters by name."""
        return {name: getattr(self, name) for name in self.__slots__}


class DepthSync(Generic[T]):
    """Snapshot/diff synchronisation of one symbol's :class:`OrderBook`.

    Parameters
    ----------
    market:
        ``"spot"`` or ``"usdm"``: which continuity rule applies.
    book:
        The book this machine keeps (cleared on every gap).
    apply:
        Called with a diff's item when the diff must be applied to the book, in
        order. Snapshot loading is done by the caller before :meth:`on_snapshot`.
    max_buffer:
        Diffs kept while waiting for a snapshot; the oldest are dropped beyond it
        (they would be older than any snapshot fetched later anyway).
    """

    def __init__(
        self,
        market: Market,
        book: OrderBook,
        apply: Callable[[T], None],
        max_buffer: int = 10_000,
    ) -> None:
        if market not in ("spot", "usdm"):
            raise ValueError(f"market must be 'spot' or 'usdm', got {market!r}")
        self.market: Market = market
        self.book = book
        self._apply = apply
        self._usdm = market == "usdm"
        self.state = SyncState.NEED_SNAPSHOT
        self.last_update_id = -1
        """``lastUpdateId`` of the snapshot in use (-1 before any)."""
        self.last_u = -1
        """``u`` of the last applied diff (-1 before the first)."""
        self.counters = SyncCounters()
        self._buffer: deque[tuple[int, int, int, T]] = deque(maxlen=max_buffer)

    @property
    def synced(self) -> bool:
        """True when the book may be published."""
        return self.state is SyncState.SYNCED

    # ------------------------------------------------------------------ diffs

    def advance(self, first_id: int, final_id: int, prev_final_id: int) -> bool:
        """Hot path of a synced book: True if this diff continues the chain.

        The state moves on as for an applied diff, but ``apply`` is *not* called:
        the caller applies the diff itself. False means "not the simple case":
        offer the diff to :meth:`on_diff`, which handles every other case.
        """
        if self.state is not SyncState.SYNCED:
            return False
        if (prev_final_id if self._usdm else first_id - 1) != self.last_u:
            return False
        self.last_u = final_id
        self.counters.applied += 1
        return True

    def on_diff(self, first_id: int, final_id: int, prev_final_id: int, item: T) -> Action:
        """Offer one diff (``U``, ``u``, ``pu``; ``pu`` is ignored for spot)."""
        state = self.state
        if state is SyncState.SYNCED:
            if self._usdm:
                ok = prev_final_id == self.last_u
            else:
                ok = first_id == self.last_u + 1
            if ok:
                self.last_u = final_id
                self.counters.applied += 1
                self._apply(item)
                return Action.APPLIED
            if final_id <= self.last_u:
                # A duplicate or a replayed old frame: nothing to do, not a gap.
                self.counters.dropped += 1
                return Action.DROPPED
            self.counters.gaps += 1
            return self._gap(first_id, final_id, prev_final_id, item)
        if state is SyncState.NEED_SNAPSHOT:
            self._buffer.append((first_id, final_id, prev_final_id, item))
            self.counters.buffered += 1
            return Action.BUFFERED
        return self._first(first_id, final_id, prev_final_id, item)

    def _stale(self, final_id: int) -> bool:
        lid = self.last_update_id
        return final_id < lid if self._usdm else final_id <= lid

    def _bridges(self, first_id: int, final_id: int) -> bool:
        lid = self.last_update_id
        if self._usdm:
            return first_id <= lid <= final_id
        return first_id <= lid + 1 <= final_id

    def _first(self, first_id: int, final_id: int, prev_final_id: int, item: T) -> Action:
        # WAIT_FIRST: the snapshot is loaded, this diff is the candidate first one.
        if self._stale(final_id):
            self.counters.dropped += 1
            return Action.DROPPED
        if self._bridges(first_id, final_id):
            self.state = SyncState.SYNCED
            self.last_u = final_id
            self.counters.applied += 1
            self._apply(item)
            return Action.APPLIED
        # The first diff after the snapshot starts beyond it: the snapshot is too
        # old (or diffs were lost). Keep the diff for the next snapshot.
        return self._gap(first_id, final_id, prev_final_id, item)

    def _gap(self, first_id: int, final_id: int, prev_final_id: int, item: T) -> Action:
        self.counters.resyncs += 1
        self.book.clear()
        self.state = SyncState.NEED_SNAPSHOT
        self.last_u = -1
        self._buffer.clear()
        self._buffer.append((first_id, final_id, prev_final_id, item))
        self.counters.buffered += 1
        return Action.NEED_SNAPSHOT

    # ------------------------------------------------------------------ snapshot

    def on_snapshot(self, last_update_id: int) -> Action:
        """The caller has just loaded a snapshot with this ``lastUpdateId`` into the book.

        Buffered diffs are replayed through the rules. Returns ``APPLIED`` when the
        book is in sync, ``WAITING`` when no buffered diff reaches the snapshot yet,
        ``NEED_SNAPSHOT`` when the snapshot is older than the buffered diffs.
        """
        self.counters.snapshots += 1
        self.last_update_id = last_update_id
        self.last_u = -1
        self.state = SyncState.WAIT_FIRST
        pending = list(self._buffer)
        self._buffer.clear()
        result = Action.WAITING
        for i, (first_id, final_id, prev_final_id, item) in enumerate(pending):
            action = self.on_diff(first_id, final_id, prev_final_id, item)
            if action is Action.NEED_SNAPSHOT:
                # _gap kept only this diff; keep the later ones too.
                for rest in pending[i + 1 :]:
                    self._buffer.append(rest)
                return Action.NEED_SNAPSHOT
            if action is Action.APPLIED:
                result = Action.APPLIED
        return result if self.state is SyncState.SYNCED else Action.WAITING

    def invalidate(self) -> Action:
        """The book cannot be trusted (e.g. a diff's levels were unreadable): resync."""
        self.counters.resyncs += 1
        self.book.clear()
        self._buffer.clear()
        self.state = SyncState.NEED_SNAPSHOT
        self.last_u = -1
        return Action.NEED_SNAPSHOT

    def reset(self) -> None:
        """Forget everything (a new connection): clear book, buffer and state."""
        self.book.clear()
        self._buffer.clear()
        self.state = SyncState.NEED_SNAPSHOT
        self.last_update_id = -1
        self.last_u = -1
