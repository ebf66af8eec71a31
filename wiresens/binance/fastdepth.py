"""Fast, exact decoding of Binance depth levels straight from the raw JSON bytes.

Why this module exists: decoding a diff-depth message into Python strings and
converting each ``"61837.63000000"`` with :func:`wiresens.fixedpoint.to_fixed`
costs ~100 µs per message (30-70 levels, ~1.2 µs per string); ``json.loads``
alone costs 7-11 µs. So the level arrays are never turned into Python objects:
msgspec decodes only the ids and keeps ``b``/``a`` as :class:`msgspec.Raw`
(the header Structs below, not those of :mod:`wiresens.binance.wire`, because a
``tuple[str, str]`` field would allocate the strings we want to avoid), the raw
level arrays of one or many messages are joined into one buffer, and
:func:`parse_levels` converts every quoted decimal in it to int64 fixed point
with a few dozen vectorised numpy operations:

1. quote positions (one byte compare over the buffer) give each token's start
   and end; Binance prints every price of a symbol with the same number of
   decimals, and every quantity too, so the dot is guessed per column from the
   first pair and verified (the general path scans for dots instead): ``k``
   integer digits, ``f`` fraction digits;
2. the 8 bytes after the dot, and the 8 (and 16) bytes before it, are read as
   unaligned little-endian uint64 words; bytes outside the token are replaced
   by ``'0'`` so a short fraction is right-padded with zeros (exactly the scaling
   to 8 decimals) and a short integer part is left-padded;
3. each word is checked to hold only ASCII digits and converted with the classic
   SWAR 8-digit parse (three multiply-shift steps);
4. ``int * 10**8 + frac`` gives the fixed-point value.

Anything outside that fast shape (a sign, more than 8 decimals, more than 11
integer digits, a non-digit, a value above int64) makes :func:`parse_levels`
report failure and callers fall back to :func:`wiresens.fixedpoint.to_fixed`, which
accepts or refuses exactly as everywhere else. The result is exact, never a float.
"""

from __future__ import annotations

from typing import Any

import msgspec
import numpy as np
from numpy.typing import NDArray

from wiresens.book import OrderBook
from wiresens.errors import FixedPointError
from wiresens.fixedpoint import to_fixed

from .sync import Action, DepthSync, Market

__all__ = [
    "DepthFeed",
    "DepthHead",
    "FuturesDepthHead",
    "SnapshotHead",
    "levels_to_fixed",
    "parse_levels",
    "parse_levels_exact",
]

I64 = NDArray[np.int64]
U64 = NDArray[np.uint64]

_PAD = 16
_PAD_BYTES = b"\0" * _PAD
_INT64_MAX = (1 << 63) - 1
_NONE = np.empty(0, dtype=np.int64)

_ZEROS = np.uint64(0x3030303030303030)
_K46 = np.uint64(0x4646464646464646)
_HIGH = np.uint64(0x8080808080808080)
_M0F = np.uint64(0x0F0F0F0F0F0F0F0F)
_M00FF = np.uint64(0x00FF00FF00FF00FF)
_M0000FFFF = np.uint64(0x0000FFFF0000FFFF)
_MUL1 = np.uint64(2561)
_MUL2 = np.uint64(6553601)
_MUL3 = np.uint64(42949672960001)
_S8 = np.uint64(8)
_S16 = np.uint64(16)
_S32 = np.uint64(32)
_E8 = np.uint64(100_000_000)

# _LOW[j]: keep the first j bytes of a word (its low bytes: x86-64 is little endian);
# _HIGHB[j]: keep the last j bytes.
_LOW = np.array([(1 << (8 * j)) - 1 for j in range(9)], dtype=np.uint64)
_HIGHB = np.array([((1 << 64) - 1) ^ ((1 << (64 - 8 * j)) - 1) for j in range(9)], dtype=np.uint64)
# '0' in every byte a mask drops, so cut-off bytes read as leading/trailing zeros.
_FILL_LOW = np.array([0x3030303030303030 & ~int(m) for m in _LOW], dtype=np.uint64)
_FILL_HIGH = np.array([0x3030303030303030 & ~int(m) for m in _HIGHB], dtype=np.uint64)


class DepthHead(msgspec.Struct, gc=False):
    """Spot ``depthUpdate`` with the levels left raw (ids only are decoded)."""

    U: int
    u: int
    b: msgspec.Raw
    a: msgspec.Raw
    E: int = 0
    pu: int = -1
    T: int = 0


FuturesDepthHead = DepthHead
"""USD-M diffs share the shape: ``pu`` and ``T`` are present (``pu`` -1 means absent)."""


class SnapshotHead(msgspec.Struct, gc=False):
    """REST depth snapshot (spot or USD-M) with the levels left raw."""

    lastUpdateId: int
    bids: msgspec.Raw
    asks: msgspec.Raw
    E: int = 0
    T: int = 0


def _digits_ok(filled: U64) -> bool:
    # A byte outside '0'..'9' sets bit 7 in one of: itself (non-ASCII), +0x46
    # (above '9'), -0x30 (below '0'; the lowest such byte always shows, borrows
    # only travel upwards).
    t = filled + _K46
    t |= filled - _ZEROS
    t |= filled
    t &= _HIGH
    return not t.any()


def _swar8(filled: U64) -> U64:
    v = filled & _M0F
    v *= _MUL1
    v >>= _S8
    v &= _M00FF
    v *= _MUL2
    v >>= _S16
    v &= _M0000FFFF
    v *= _MUL3
    v >>= _S32
    return v


def _fill(words: U64, keep: U64) -> U64:
    out = words & keep
    out |= _ZEROS & ~keep
    return out


def parse_levels(raw: bytes | bytearray | memoryview) -> tuple[I64, bool]:
    """Convert every quoted decimal in ``raw`` to int64 fixed point (8 decimals).

    ``raw`` is one or more JSON level arrays as Binance sends them
    (``[["61837.63000000","0.00100000"],...]``), joined with commas.
    Returns ``(values, ok)``: the values in order (price, qty, price, qty, ...)
    and False when any token is outside the fast shape, in which case ``values``
    is meaningless and the caller uses :func:`parse_levels_exact`.
    """
    values, _, ok = _parse(_PAD_BYTES + bytes(raw) + _PAD_BYTES)
    return values, ok


def _decimals(token: bytes) -> int:
    dot = token.rfind(b".")
    return 0 if dot < 0 else len(token) - dot - 1


def _parse_columns(data: bytes, buf: NDArray[np.uint8], starts: I64, ends: I64) -> I64 | None:
    # The common case, about half the work of the general path: Binance prints every
    # price of a symbol with the same number of decimals, and every quantity too. So
    # the dot of each token is guessed from the first pair's, then verified (dot
    # byte present, all other bytes digits, which also rules out a second dot). None:
    # the guess or a check failed, use the general path.
    f0 = _decimals(data[int(starts[0]) : int(ends[0])])
    f1 = _decimals(data[int(starts[1]) : int(ends[1])])
    if f0 > 8 or f1 > 8:
        return None
    back = np.array([f0 + (f0 > 0), f1 + (f1 > 0)], dtype=np.int64)
    dotpos = (ends.reshape(-1, 2) - back).reshape(-1)
    if f0 and f1:
        if not bool((buf[dotpos] == 46).all()):
            return None
    elif f0 or f1:
        col = dotpos[0::2] if f0 else dotpos[1::2]
        if not bool((buf[col] == 46).all()):
            return None
    k = dotpos - starts
    if int(k.max()) > 8 or int(k.min()) < 0:
        # Above 8 integer digits the general path reads a third word; a negative k
        # means a token shorter than its column's decimals (the guess was wrong).
        return None
    if (f0 == 0 and int(k[0::2].min()) == 0) or (f1 == 0 and int(k[1::2].min()) == 0):
        return None  # an empty token (or a lone dot): to_fixed refuses it
    words = np.ndarray(shape=(buf.shape[0] - 7,), dtype="<u8", buffer=data, offset=0, strides=(1,))
    lo = words[dotpos - 8]
    lo &= _HIGHB[k]
    lo |= _FILL_HIGH[k]
    frac = words[dotpos + 1]
    if f0 != 8 or f1 != 8:
        pairs = frac.reshape(-1, 2)
        pairs &= np.array([_LOW[f0], _LOW[f1]], dtype=np.uint64)
        pairs |= np.array([_FILL_LOW[f0], _FILL_LOW[f1]], dtype=np.uint64)
    t = lo + _K46
    t |= lo - _ZEROS
    t |= frac + _K46
    t |= frac - _ZEROS
    t &= _HIGH
    if t.any():
        return None
    whole = _swar8(lo)
    whole *= _E8
    whole += _swar8(frac)
    return whole.view(np.int64)


def _parse(data: bytes) -> tuple[I64, I64, bool]:
    # ``data`` is padded with _PAD zero bytes at both ends (unaligned word reads).
    # Returns values, token start offsets, ok.
    buf = np.frombuffer(data, dtype=np.uint8)
    quotes = np.flatnonzero(buf == 34)
    nq = quotes.shape[0]
    if nq == 0:
        return _NONE, _NONE, True
    if nq & 1:
        return _NONE, _NONE, False
    starts = quotes[0::2] + 1
    ends = quotes[1::2]
    if nq & 3 == 0:
        values = _parse_columns(data, buf, starts, ends)
        if values is not None:
            return values, starts, True
    t = starts.shape[0]
    dots = np.flatnonzero(buf == 46)
    if dots.shape[0] == t and bool(((dots >= starts) & (dots < ends)).all()):
        dotpos = dots
    else:
        tok = np.searchsorted(starts, dots, side="right") - 1
        if dots.shape[0] and (
            tok[0] < 0 or not bool((dots < ends[tok]).all()) or bool((np.diff(tok) == 0).any())
        ):
            return _NONE, _NONE, False  # a dot outside a token, or two in one
        dotpos = ends.copy()
        dotpos[tok] = dots
    k = dotpos - starts
    f = ends - dotpos - 1
    np.maximum(f, 0, out=f)
    if (
        bool((k > 11).any()) or bool((f > 8).any()) or bool(((k + f) == 0).any())
        # "." alone and "" are refused by to_fixed: k + f == 0 covers both
    ):
        return _NONE, _NONE, False
    words = np.ndarray(shape=(buf.shape[0] - 7,), dtype="<u8", buffer=data, offset=0, strides=(1,))
    frac = _fill(words[dotpos + 1], _LOW[f])
    klo = np.minimum(k, 8)
    lo = _fill(words[dotpos - 8], _HIGHB[klo])
    if not (_digits_ok(frac) and _digits_ok(lo)):
        return _NONE, _NONE, False
    whole = _swar8(lo)
    big = bool((k > 8).any())
    if big:
        hi = _fill(words[dotpos - 16], _HIGHB[k - klo])
        if not _digits_ok(hi):
            return _NONE, _NONE, False
        whole += _swar8(hi) * _E8
    whole *= _E8
    whole += _swar8(frac)
    # At most 11 integer digits: the uint64 value cannot wrap, only exceed int64.
    if big and bool((whole > np.uint64(_INT64_MAX)).any()):
        return _NONE, _NONE, False
    return whole.view(np.int64), starts, True


def parse_levels_exact(levels: Any) -> I64:
    """The reference path: ``[[price, qty], ...]`` strings through :func:`to_fixed`.

    Raises :class:`wiresens.errors.FixedPointError` naming the bad value.
    """
    out = np.empty(2 * len(levels), dtype=np.int64)
    i = 0
    for p, q in levels:
        out[i] = to_fixed(p)
        out[i + 1] = to_fixed(q)
        i += 2
    return out


def levels_to_fixed(raw: bytes | bytearray | memoryview) -> I64:
    """:func:`parse_levels` with the exact fallback: always the right values or an error."""
    values, ok = parse_levels(raw)
    if ok:
        return values
    return _exact_from_raw(raw)


def _exact_from_raw(raw: bytes | bytearray | memoryview) -> I64:
    # A batch is level arrays joined by commas: wrapped, it is one JSON array of them.
    text = bytes(raw).strip()
    if not text:
        return np.empty(0, dtype=np.int64)
    parts = msgspec.json.decode(b"[" + text + b"]", type=list[list[tuple[str, str]]])
    return parse_levels_exact([lv for part in parts for lv in part])


_HEAD = msgspec.json.Decoder(DepthHead)
_SNAP = msgspec.json.Decoder(SnapshotHead)
Item = tuple[msgspec.Raw, msgspec.Raw]


class DepthFeed:
    """One symbol's diff-depth pipeline: decode, :class:`DepthSync`, :class:`OrderBook`.

    ``on_diff(payload)`` decodes the ids with msgspec, lets the sync machine decide,
    and queues the raw level arrays of applied diffs; every ``batch`` queued diffs
    (and on :meth:`flush`) their levels are converted at once and applied to the
    book. ``batch=1`` keeps the book current after every diff (what a gateway that
    publishes top of book per message does); a larger batch conflates a backlog of
    frames into one book update, which is where the vectorised conversion pays.

    Malformed payloads are counted in ``errors`` and ignored; a diff whose levels
    cannot be represented invalidates the book (a resync is requested).
    """

    def __init__(
        self,
        market: Market,
        symbol: str = "",
        batch: int = 1,
        book: OrderBook | None = None,
        max_buffer: int = 10_000,
    ) -> None:
        self.book = book if book is not None else OrderBook(symbol)
        self.sync: DepthSync[Item] = DepthSync(market, self.book, self._enqueue, max_buffer)
        self.batch = max(1, int(batch))
        self.errors = 0
        self.last_head: DepthHead | None = None
        """The ids of the last diff offered (applied or not), for callers' bookkeeping."""
        self._parts: list[msgspec.Raw | bytes] = [_PAD_BYTES]
        self._asks: list[msgspec.Raw] = []

    def _enqueue(self, item: Item) -> None:
        self._parts.append(item[0])
        self._asks.append(item[1])

    def on_diff(self, payload: bytes | memoryview) -> Action | None:
        """Offer one ``depthUpdate`` body (not the envelope); None if it is malformed."""
        try:
            head = _HEAD.decode(payload)
        except msgspec.DecodeError:
            self.errors += 1
            return None
        self.last_head = head
        if self.sync.advance(head.U, head.u, head.pu):
            self._parts.append(head.b)
            asks = self._asks
            asks.append(head.a)
            if len(asks) >= self.batch:
                self.flush()
            return Action.APPLIED
        action = self.sync.on_diff(head.U, head.u, head.pu, (head.b, head.a))
        if action is Action.NEED_SNAPSHOT:
            self._drop_pending()
        elif len(self._asks) >= self.batch:
            self.flush()
        return action

    def _drop_pending(self) -> None:
        del self._parts[1:]
        self._asks.clear()

    def flush(self) -> bool:
        """Apply the queued diffs to the book; False if their levels were invalid."""
        asks = self._asks
        if not asks:
            return True
        parts = self._parts
        n_bid_parts = len(parts) - 1
        # Token starts are byte offsets: bid tokens lie before the first ask part.
        split = len(_PAD_BYTES) + 1
        for p in parts[1:]:
            split += len(p) + 1
        parts = [*parts, *asks, _PAD_BYTES]
        self._drop_pending()
        values, starts, ok = _parse(b",".join(parts))
        if ok:
            nb = int(np.searchsorted(starts, split))
        else:
            try:
                bid_values = _exact_from_raw(b",".join(parts[1 : 1 + n_bid_parts]))
                ask_values = _exact_from_raw(b",".join(parts[1 + n_bid_parts : -1]))
            except (FixedPointError, msgspec.DecodeError):
                self.errors += 1
                self.sync.invalidate()
                return False
            values = np.concatenate((bid_values, ask_values))
            nb = bid_values.shape[0]
        bids = values[:nb]
        asks_v = values[nb:]
        self.book.apply(bids[0::2], bids[1::2], asks_v[0::2], asks_v[1::2])
        return True

    def on_snapshot(self, payload: bytes | memoryview) -> Action | None:
        """Load a REST depth snapshot body; None if it is malformed."""
        try:
            snap = _SNAP.decode(payload)
            bids = levels_to_fixed(snap.bids)
            asks = levels_to_fixed(snap.asks)
        except (msgspec.DecodeError, FixedPointError):
            self.errors += 1
            return None
        self._drop_pending()  # whatever was queued belonged to the book being replaced
        self.book.load_snapshot(bids[0::2], bids[1::2], asks[0::2], asks[1::2])
        action = self.sync.on_snapshot(snap.lastUpdateId)
        self.flush()
        return action

    @property
    def synced(self) -> bool:
        """True when the book may be published (flush first when ``batch > 1``)."""
        return self.sync.synced
