"""L2 order book on numpy arrays: int64 fixed-point prices and quantities.

Each side is a pair of preallocated arrays (``keys``, ``qty``) kept sorted
ascending by *key*, where the key is the price for bids and minus the price for
asks. The best level of either side is therefore the **last** used slot::

    bids  keys: [ 61000.00  61500.00  61837.62  61837.63 ]   <- best bid at n-1
    asks  keys: [-62000.00 -61900.00 -61837.65 -61837.64 ]   <- best ask at n-1
                  (deep)                          (top)

Why sorted arrays rather than a price-indexed (tick) array: Binance diff streams
touch levels far from the top (a BTCUSDT update may delete a bid at 24 000 while
the top is at 61 800), so a dense tick array covering every level a session sees
would need millions of slots per side, and a tick size the diff messages do not
carry. Sorted arrays stay as small as the book, give best bid/ask and top-N as
slices, and a batch of level updates is applied with a handful of vectorised
numpy calls (``searchsorted``, masked assignment, one merge). Keeping the top at
the end means inserts near the top, the common case, move few elements.

:meth:`OrderBook.apply` takes a batch of updates per side in arrival order; a
quantity of 0 deletes the level (deleting a missing level is not an error), and
when a price repeats inside one batch the last update wins, exactly as if the
updates were applied one by one. The book never raises on market data.

When the optional C extension (``wiresens._depthparse``) is built, a batch is
applied in C on the same arrays with the same semantics (existing levels updated
in place, new ones sorted and merged in one backward pass from the deepest change
to the top); ``compiled=False`` or ``WIRESENS_PURE_PYTHON=1`` forces numpy.
"""

from __future__ import annotations

import os
from types import ModuleType

import numpy as np
from numpy.typing import NDArray

__all__ = ["COMPILED", "BookSide", "OrderBook"]

I64 = NDArray[np.int64]
_EMPTY = np.empty(0, dtype=np.int64)
_I64 = np.dtype(np.int64)


def _load_extension() -> ModuleType | None:
    if os.environ.get("WIRESENS_PURE_PYTHON"):
        return None
    try:
        from wiresens import _depthparse
    except ImportError:
        return None
    return _depthparse


_EXT = _load_extension()
COMPILED = _EXT is not None
"""True when the C extension is built (and not disabled by ``WIRESENS_PURE_PYTHON``)."""


def _use_compiled(compiled: bool | None) -> bool:
    if compiled is None:
        return COMPILED
    if compiled and not COMPILED:
        raise ValueError(
            "compiled=True but the C extension wiresens._depthparse is not available: "
            "reinstall with a C compiler and Python headers (pip install -e .) or unset "
            "WIRESENS_PURE_PYTHON"
        )
    return compiled


def _last_per_key(keys: I64, qty: I64) -> tuple[I64, I64]:
    """Sorted unique keys with the quantity of each key's last update.

    Arrival order must decide between equal keys. When the key range leaves room,
    key and arrival index are packed into one int64 (``(key - min) << bits | i``)
    and sorted with the fast unstable sort: equal keys then order by arrival.
    Otherwise a stable argsort does the same, about 3x slower.
    """
    m = keys.shape[0]
    bits = m.bit_length()
    kmin = int(keys.min())
    span = int(keys.max()) - kmin
    if span < (1 << (62 - bits)):
        packed = keys - kmin
        packed <<= bits
        packed |= np.arange(m, dtype=np.int64)
        packed.sort()
        ks = packed >> bits
        last = np.empty(m, dtype=np.bool_)
        np.not_equal(ks[1:], ks[:-1], out=last[:-1])
        last[-1] = True
        packed &= (1 << bits) - 1
        idx = packed[last]
        ks = ks[last]
        ks += kmin
        return ks, qty[idx]
    order = np.argsort(keys, kind="stable")
    ks = keys[order]
    qs = qty[order]
    last = np.empty(m, dtype=np.bool_)
    np.not_equal(ks[1:], ks[:-1], out=last[:-1])
    last[-1] = True
    if not last.all():
        ks = ks[last]
        qs = qs[last]
    return ks, qs


class BookSide:
    """One side of the book: levels sorted by key (``sign * price``), best last.

    Parameters
    ----------
    sign:
        ``+1`` for bids (higher price is better), ``-1`` for asks.
    capacity:
        Initial number of level slots; the arrays double when a batch needs more.
    compiled:
        Use the C extension for small batches (default: when it is built); False
        forces the numpy path, True fails when the extension is missing.
    """

    __slots__ = (
        "_compiled",
        "_keys",
        "_kmv",
        "_n",
        "_qmv",
        "_qty",
        "_sign",
        "_tmp_keys",
        "_tmp_qty",
    )

    def __init__(self, sign: int, capacity: int = 4096, compiled: bool | None = None) -> None:
        if sign not in (1, -1):
            raise ValueError(f"sign must be +1 (bids) or -1 (asks), got {sign}")
        self._sign = sign
        self._compiled = _use_compiled(compiled)
        self._n = 0
        cap = max(16, int(capacity))
        self._keys: I64 = np.zeros(cap, dtype=np.int64)
        self._qty: I64 = np.zeros(cap, dtype=np.int64)
        self._tmp_keys: I64 = np.zeros(cap, dtype=np.int64)
        self._tmp_qty: I64 = np.zeros(cap, dtype=np.int64)
        # The C calls take these views: a memoryview exports its buffer faster than numpy.
        self._kmv = self._keys.data
        self._qmv = self._qty.data

    def __len__(self) -> int:
        return self._n

    @property
    def sign(self) -> int:
        """+1 for bids, -1 for asks."""
        return self._sign

    def clear(self) -> None:
        """Remove every level (keeps the arrays)."""
        self._n = 0

    def _reserve(self, n: int) -> None:
        cap = self._keys.shape[0]
        if n <= cap:
            return
        while cap < n:
            cap *= 2
        for name in ("_keys", "_qty", "_tmp_keys", "_tmp_qty"):
            old = getattr(self, name)
            new = np.zeros(cap, dtype=np.int64)
            new[: old.shape[0]] = old
            setattr(self, name, new)
        self._kmv = self._keys.data
        self._qmv = self._qty.data

    @property
    def compiled(self) -> bool:
        """True when updates go through the C extension."""
        return self._compiled

    def load(self, prices: I64, qty: I64) -> None:
        """Replace the side with these levels (any order; zero quantities dropped)."""
        self._n = 0
        self.apply(prices, qty)

    def best(self) -> tuple[int, int]:
        """``(price, qty)`` of the best level, ``(0, 0)`` when the side is empty."""
        n = self._n
        if n == 0:
            return 0, 0
        return int(self._keys[n - 1]) * self._sign, int(self._qty[n - 1])

    def top(self, out: I64) -> int:
        """Write up to ``len(out)`` best levels into ``out`` (shape ``(N, 2)``: price, qty).

        Returns the number of rows written; rows beyond it are left untouched.
        """
        k = min(int(out.shape[0]), self._n)
        if k:
            n = self._n
            np.multiply(self._keys[n - k : n][::-1], self._sign, out=out[:k, 0])
            out[:k, 1] = self._qty[n - k : n][::-1]
        return k

    def levels(self) -> tuple[I64, I64]:
        """Copies of all ``(prices, qty)``, best first (for tests and snapshots)."""
        n = self._n
        return self._keys[:n][::-1] * self._sign, self._qty[:n][::-1].copy()

    def apply(self, prices: I64, qty: I64) -> None:
        """Apply level updates in arrival order: set quantity, 0 deletes, last one wins."""
        m = prices.shape[0]
        if m == 0:
            return
        ext = _EXT
        if self._compiled and ext is not None and prices.dtype is _I64 and qty.dtype is _I64:
            n = ext.apply_side(self._kmv, self._qmv, self._n, prices, qty, self._sign)
            if n < 0:
                self._reserve(self._n + m)
                n = ext.apply_side(self._kmv, self._qmv, self._n, prices, qty, self._sign)
            self._n = n
            return
        self._apply_numpy(prices, qty)

    def apply_pairs(self, values: I64 | memoryview, start: int, stop: int) -> None:
        """Apply interleaved int64 ``(price, qty)`` pairs ``values[start:stop]`` in order.

        The decoder's layout (price, qty, price, qty, ...), applied without
        slicing; same semantics as :meth:`apply`. ``values`` may also be a
        memoryview of an int64 array (what :class:`~wiresens.binance.fastdepth.DepthFeed`
        passes: cheaper to hand to C).
        """
        if stop <= start:
            return
        ext = _EXT
        if self._compiled and ext is not None:
            n = ext.apply_levels(self._kmv, self._qmv, self._n, values, start, stop, self._sign)
            if n < 0:
                self._reserve(self._n + (stop - start) // 2)
                n = ext.apply_levels(self._kmv, self._qmv, self._n, values, start, stop, self._sign)
            self._n = n
            return
        v = np.asarray(values)[start:stop]
        self._apply_numpy(v[0::2], v[1::2])

    def _apply_numpy(self, prices: I64, qty: I64) -> None:
        m = prices.shape[0]
        if m == 0:
            return
        keys = prices * self._sign if self._sign < 0 else prices
        if m > 1:
            ks, qs = _last_per_key(keys, qty)
        else:
            ks = keys
            qs = qty
        n = self._n
        cur_k = self._keys[:n]
        pos = np.searchsorted(cur_k, ks)
        if n:
            probe = np.minimum(pos, n - 1)
            found = cur_k[probe] == ks
        else:
            found = np.zeros(ks.shape[0], dtype=np.bool_)
        cur_q = self._qty[:n]
        if found.any():
            cur_q[pos[found]] = qs[found]
        insert = ~found
        insert &= qs != 0
        n_ins = int(np.count_nonzero(insert))
        deleted = bool(found.any()) and bool((qs[found] == 0).any())
        if n_ins == 0 and not deleted:
            return
        if n_ins:
            self._reserve(n + n_ins)
            cur_k = self._keys[:n]
            cur_q = self._qty[:n]
            ins_pos = pos[insert]
            m2 = n + n_ins
            dest_new = ins_pos + np.arange(n_ins)
            is_new = np.zeros(m2, dtype=np.bool_)
            is_new[dest_new] = True
            tk = self._tmp_keys[:m2]
            tq = self._tmp_qty[:m2]
            tk[dest_new] = ks[insert]
            tq[dest_new] = qs[insert]
            old = ~is_new
            tk[old] = cur_k
            tq[old] = cur_q
            src_k, src_q = tk, tq
        else:
            m2 = n
            src_k, src_q = cur_k, cur_q
        if deleted:
            keep = src_q != 0
            n2 = int(np.count_nonzero(keep))
            # Compress into the main arrays; boolean indexing copies first, so an
            # in-place source (no inserts) is safe.
            self._keys[:n2] = src_k[keep]
            self._qty[:n2] = src_q[keep]
            self._n = n2
        else:
            self._keys[:m2] = src_k
            self._qty[:m2] = src_q
            self._n = m2


class OrderBook:
    """An L2 book of one instrument: :class:`BookSide` bids and asks.

    Prices and quantities are int64 fixed point (8 decimals, see
    :mod:`wiresens.fixedpoint`). Apply diffs with :meth:`apply`, replace the whole
    book with :meth:`load_snapshot`; read :meth:`best_bid`, :meth:`best_ask`,
    :meth:`top` and :meth:`is_crossed`. Sequencing (which diff may be applied) is
    the job of :mod:`wiresens.binance.sync`, not of the book.
    """

    __slots__ = ("asks", "bids", "symbol")

    def __init__(
        self, symbol: str = "", capacity: int = 4096, compiled: bool | None = None
    ) -> None:
        self.symbol = symbol
        self.bids = BookSide(1, capacity, compiled)
        self.asks = BookSide(-1, capacity, compiled)

    def clear(self) -> None:
        """Empty both sides."""
        self.bids.clear()
        self.asks.clear()

    def load_snapshot(self, bid_px: I64, bid_qty: I64, ask_px: I64, ask_qty: I64) -> None:
        """Replace the book with a snapshot (levels in any order, zero quantities dropped)."""
        self.bids.load(bid_px, bid_qty)
        self.asks.load(ask_px, ask_qty)

    def apply(
        self,
        bid_px: I64 = _EMPTY,
        bid_qty: I64 = _EMPTY,
        ask_px: I64 = _EMPTY,
        ask_qty: I64 = _EMPTY,
    ) -> None:
        """Apply one batch of level updates per side, in arrival order (0 deletes)."""
        self.bids.apply(bid_px, bid_qty)
        self.asks.apply(ask_px, ask_qty)

    def best_bid(self) -> tuple[int, int]:
        """``(price, qty)`` of the best bid, ``(0, 0)`` when there is none."""
        return self.bids.best()

    def best_ask(self) -> tuple[int, int]:
        """``(price, qty)`` of the best ask, ``(0, 0)`` when there is none."""
        return self.asks.best()

    def top(self, bids_out: I64, asks_out: I64) -> tuple[int, int]:
        """Fill preallocated ``(N, 2)`` arrays with the N best levels; returns row counts."""
        return self.bids.top(bids_out), self.asks.top(asks_out)

    def is_crossed(self) -> bool:
        """True when both sides exist and best bid >= best ask (a broken book)."""
        nb = len(self.bids)
        na = len(self.asks)
        if nb == 0 or na == 0:
            return False
        return self.bids.best()[0] >= self.asks.best()[0]

    def __repr__(self) -> str:
        bb, bq = self.best_bid()
        ba, aq = self.best_ask()
        return (
            f"OrderBook({self.symbol!r}, bids={len(self.bids)}, asks={len(self.asks)}, "
            f"best={bb}x{bq} / {ba}x{aq})"
        )
