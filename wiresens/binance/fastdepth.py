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

When the optional C extension ``wiresens._depthparse`` is built (``pip install -e .``
with a C compiler), the same contract is met in one byte loop instead:
:func:`parse_levels` converts the tokens in C, and :class:`DepthFeed` decodes a
whole ``depthUpdate`` body (ids and both level arrays, straight into preallocated
int64 buffers) in one call and applies the levels to the book in C. Whatever the
C code does not recognise it reports, and the numpy/exact path above takes over,
so both implementations give identical results (:data:`IMPLEMENTATION` tells
which one runs; ``WIRESENS_PURE_PYTHON=1`` forces numpy).
"""

from __future__ import annotations

from typing import Any

import msgspec
import numpy as np
from numpy.typing import NDArray

from wiresens.book import _EXT, COMPILED, OrderBook, _use_compiled
from wiresens.errors import FixedPointError
from wiresens.fixedpoint import to_fixed

from .sync import Action, DepthSync, Market

__all__ = [
    "IMPLEMENTATION",
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

IMPLEMENTATION = "compiled" if COMPILED else "numpy"
"""Which decoder runs by default: ``"compiled"`` (C extension) or ``"numpy"``."""

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


def parse_levels(
    raw: bytes | bytearray | memoryview, compiled: bool | None = None
) -> tuple[I64, bool]:
    """Convert every quoted decimal in ``raw`` to int64 fixed point (8 decimals).

    ``raw`` is one or more JSON level arrays as Binance sends them
    (``[["61837.63000000","0.00100000"],...]``), joined with commas.
    Returns ``(values, ok)``: the values in order (price, qty, price, qty, ...)
    and False when any token is outside the fast shape, in which case ``values``
    is meaningless and the caller uses :func:`parse_levels_exact`.
    ``compiled`` picks the implementation (default: the C extension when built).
    """
    ext = _EXT
    if _use_compiled(compiled) and ext is not None:
        out = np.empty(len(raw) // 3 + 1, dtype=np.int64)  # a token takes >= 3 bytes
        n = ext.parse_levels(raw, out)
        return out[: max(n, 0)], n >= 0
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


def levels_to_fixed(raw: bytes | bytearray | memoryview, compiled: bool | None = None) -> I64:
    """:func:`parse_levels` with the exact fallback: always the right values or an error."""
    values, ok = parse_levels(raw, compiled)
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

    ``on_diff(payload)`` decodes the ids, lets the sync machine decide, and queues
    the levels of applied diffs; every ``batch`` queued diffs (and on :meth:`flush`)
    they are applied to the book. ``batch=1`` keeps the book current after every
    diff (what a gateway that publishes top of book per message does); a larger
    batch conflates a backlog of frames into one book update.

    With the C extension (``compiled``, the default when it is built) a diff is
    decoded in one call straight into int64 buffers and the book is updated level
    by level in C, so small batches are cheap too. Without it (or with
    ``compiled=False``) msgspec decodes the ids, the raw level arrays are queued and
    converted at once with numpy at flush time, which needs large batches to pay.
    Both give identical books.

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
        compiled: bool | None = None,
    ) -> None:
        self.compiled = _use_compiled(compiled)
        self.book = book if book is not None else OrderBook(symbol, compiled=self.compiled)
        self.sync: DepthSync[Item] = DepthSync(market, self.book, self._enqueue, max_buffer)
        self.batch = max(1, int(batch))
        self.errors = 0
        self._last: DepthHead | tuple[int, int, int, int, int, int, int] | None = None
        # numpy path: raw level arrays, converted at flush.
        self._parts: list[msgspec.Raw | bytes] = [_PAD_BYTES]
        self._asks: list[msgspec.Raw] = []
        # compiled path: values decoded in place; [0:_nb] / [0:_na] are pending.
        cap = 4096 + 256 * self.batch
        self._bv: I64 = np.empty(cap, dtype=np.int64)
        self._av: I64 = np.empty(cap, dtype=np.int64)
        self._nb = 0
        self._na = 0
        self._pending = 0
        self._bad = False
        # The C calls take memoryviews: they export their buffer faster than numpy.
        self._bmv = self._bv.data
        self._amv = self._av.data
        self._advance = self.sync.advance
        if self.compiled:
            self.on_diff = self._on_diff_compiled  # type: ignore[method-assign]

    @property
    def last_head(self) -> DepthHead | None:
        """The ids of the last diff offered (applied or not), for callers' bookkeeping.

        On the compiled path ``b`` and ``a`` are left empty: the levels went
        straight into the feed's buffers.
        """
        last = self._last
        if last is None or isinstance(last, DepthHead):
            return last
        head = DepthHead(last[0], last[1], _EMPTY_RAW, _EMPTY_RAW, last[3], last[2], last[4])
        self._last = head
        return head

    def _enqueue(self, item: Item) -> None:
        if self.compiled:
            self._stage(item[0], item[1])
            self._pending += 1
        else:
            self._parts.append(item[0])
            self._asks.append(item[1])

    def on_diff(self, payload: bytes | memoryview) -> Action | None:
        """Offer one ``depthUpdate`` body (not the envelope); None if it is malformed."""
        try:
            head = _HEAD.decode(payload)
        except msgspec.DecodeError:
            self.errors += 1
            return None
        self._last = head
        if self.sync.advance(head.U, head.u, head.pu):
            self._parts.append(head.b)
            asks = self._asks
            asks.append(head.a)
            if len(asks) >= self.batch:
                self.flush()
            return Action.APPLIED
        return self._offer(head)

    def _offer(self, head: DepthHead) -> Action:
        # Every case but "the next diff of a synced book": buffering, dropping, gaps.
        action = self.sync.on_diff(head.U, head.u, head.pu, (head.b, head.a))
        if action is Action.NEED_SNAPSHOT:
            self._drop_pending()
        elif self._pending >= self.batch or len(self._asks) >= self.batch:
            self.flush()
        return action

    def _on_diff_compiled(self, payload: bytes | memoryview) -> Action | None:
        r = _decode_diff(payload, self._bmv, self._nb, self._amv, self._na)
        if r is None:
            return self._on_diff_slow(payload)
        self._last = r
        first, final, prev, _, _, nb, na = r
        if self._advance(first, final, prev):
            # The levels already sit at the pending offsets: just take them.
            self._nb += nb
            self._na += na
            pending = self._pending + 1
            self._pending = pending
            if pending >= self.batch:
                self.flush()
            return _APPLIED
        return self._offer(self._head_of(payload))

    def _head_of(self, payload: bytes | memoryview) -> DepthHead:
        # decode_diff accepted the body, so msgspec does too; the sync machine may
        # keep the raw arrays (buffered before a snapshot) for later.
        head = _HEAD.decode(payload)
        self._last = head
        return head

    def _on_diff_slow(self, payload: bytes | memoryview) -> Action | None:
        # Not in the C decoder's shape, or the buffers are full: make room and retry
        # once, then decode with msgspec and convert the levels exactly.
        if self._room(len(payload)):
            r = _decode_diff(payload, self._bmv, self._nb, self._amv, self._na)
            if r is not None:
                self._last = r
                if self.sync.advance(r[0], r[1], r[2]):
                    self._nb += r[5]
                    self._na += r[6]
                    self._pending += 1
                    if self._pending >= self.batch:
                        self.flush()
                    return Action.APPLIED
                return self._offer(self._head_of(payload))
        try:
            head = _HEAD.decode(payload)
        except msgspec.DecodeError:
            self.errors += 1
            return None
        self._last = head
        if self.sync.advance(head.U, head.u, head.pu):
            self._enqueue((head.b, head.a))
            if self._pending >= self.batch:
                self.flush()
            return Action.APPLIED
        return self._offer(head)

    def _room(self, nbytes: int) -> bool:
        # A value takes at least 3 bytes of the body: grow so any body fits. True if grown.
        need = nbytes // 3 + 2
        grown = False
        if self._bv.shape[0] - self._nb < need:
            self._bv = _grow(self._bv, self._nb, need)
            self._bmv = self._bv.data
            grown = True
        if self._av.shape[0] - self._na < need:
            self._av = _grow(self._av, self._na, need)
            self._amv = self._av.data
            grown = True
        return grown

    def _stage(self, bids: msgspec.Raw | bytes, asks: msgspec.Raw | bytes) -> None:
        # Queue one diff's raw arrays on the compiled path (C first, exact fallback).
        if self._bad:
            return
        self._room(max(len(bids), len(asks)))
        nb = _put(bids, self._bv, self._nb)
        na = _put(asks, self._av, self._na) if nb >= 0 else -1
        if nb < 0 or na < 0:
            self._bad = True  # flush() counts it and invalidates the book
            return
        self._nb += nb
        self._na += na

    def _drop_pending(self) -> None:
        del self._parts[1:]
        self._asks.clear()
        self._nb = 0
        self._na = 0
        self._pending = 0
        self._bad = False

    def flush(self) -> bool:
        """Apply the queued diffs to the book; False if their levels were invalid."""
        if self.compiled:
            if self._bad:
                self._drop_pending()
                self.errors += 1
                self.sync.invalidate()
                return False
            if self._pending:
                book = self.book
                book.bids.apply_pairs(self._bmv, 0, self._nb)
                book.asks.apply_pairs(self._amv, 0, self._na)
                self._nb = 0
                self._na = 0
                self._pending = 0
            return True
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
            bids = levels_to_fixed(snap.bids, self.compiled)
            asks = levels_to_fixed(snap.asks, self.compiled)
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


def _decode_unavailable(
    payload: Any, bids: Any, bid_off: int, asks: Any, ask_off: int
) -> tuple[int, int, int, int, int, int, int] | None:
    return None


_decode_diff = _EXT.decode_diff if _EXT is not None else _decode_unavailable
_EMPTY_RAW = msgspec.Raw(b"")
_APPLIED = Action.APPLIED


def _grow(buf: I64, used: int, need: int) -> I64:
    cap = buf.shape[0]
    while cap - used < need:
        cap *= 2
    new = np.empty(cap, dtype=np.int64)
    new[:used] = buf[:used]
    return new


def _put(raw: msgspec.Raw | bytes, buf: I64, off: int) -> int:
    # Values of one raw level array into buf[off:]; -1 if they are not representable.
    ext = _EXT
    n: int = ext.parse_levels(raw, buf[off:]) if ext is not None else -1
    if n >= 0:
        return n
    try:
        values = _exact_from_raw(raw)
    except (FixedPointError, msgspec.DecodeError):
        return -1
    k = int(values.shape[0])
    buf[off : off + k] = values
    return k
