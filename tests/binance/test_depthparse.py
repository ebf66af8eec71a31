"""The C depth decoder (``wiresens._depthparse``) is exact and agrees with the numpy path.

Every property compares against :func:`wiresens.fixedpoint.to_fixed` (the reference)
and against the pure numpy/Python implementation (``compiled=False``); the forced
fallback is also checked in a subprocess with ``WIRESENS_PURE_PYTHON=1``, as on a
machine where the extension could not be built.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from benchmarks.bench_decode import load_recorded, synthetic
from wiresens.binance.fastdepth import DepthFeed, DepthHead, levels_to_fixed, parse_levels
from wiresens.book import COMPILED, OrderBook
from wiresens.errors import FixedPointError
from wiresens.fixedpoint import to_fixed_bytes

if not COMPILED:
    pytest.skip(
        "wiresens._depthparse is not built (no C compiler at install time, or "
        "WIRESENS_PURE_PYTHON is set): reinstall with `pip install -e .` to test it",
        allow_module_level=True,
    )

from wiresens import _depthparse as ext

_INT64_MAX = (1 << 63) - 1


def _ref(token: bytes) -> int | None:
    try:
        return to_fixed_bytes(token)
    except FixedPointError:
        return None


def _c_parse(raw: bytes, cap: int | None = None) -> tuple[int, list[int]]:
    out = np.full(len(raw) // 3 + 1 if cap is None else cap, -7, dtype=np.int64)
    n = ext.parse_levels(raw, out)
    return n, out[: max(n, 0)].tolist()


def _check_raw(raw: bytes) -> None:
    # parse_levels delimits tokens by quotes only (like the numpy path): when it
    # reports success every token must be valid and equal to to_fixed, and any
    # token to_fixed refuses (or an unpaired quote) must make it fail.
    n, values = _c_parse(raw)
    parts = raw.split(b'"')
    tokens = parts[1::2]
    expected = [_ref(t) for t in tokens]
    if len(parts) % 2 == 0 or None in expected:
        assert n == -1
    if n >= 0:
        assert values == expected


_DIGITS = st.text("0123456789", max_size=22)
_DECIMAL = st.one_of(
    st.builds(lambda w, f: f"{w}.{f}", _DIGITS, _DIGITS),
    st.builds(str, st.integers(min_value=0, max_value=10**13)),
    st.decimals(min_value=0, max_value=92233720368, places=8, allow_nan=False).map(str),
    st.integers(min_value=0, max_value=_INT64_MAX).map(lambda v: f"{v // 10**8}.{v % 10**8:08d}"),
    st.integers(min_value=_INT64_MAX - 1000, max_value=_INT64_MAX + 1000).map(
        lambda v: f"{v // 10**8}.{v % 10**8:08d}"
    ),
    st.text("0123456789.-+ e\\\u00e9\t", max_size=14),
)
_EDGE = [
    "0",
    "0.00000000",
    "00000000000000000000.00000001",
    "92233720368.54775807",
    "92233720368.54775808",
    "92233720369",
    "99999999999.99999999",
    "1.000000000000",
    "1.000000001",
    "12345678.12345678",
    "123456789.1",
    ".5",
    "5.",
    ".",
    "",
    "-1",
    "+1",
    " 1",
    "1 ",
    "1e5",
    "1..2",
    "1.2.3",
    "\u0661",
]


@settings(max_examples=800, deadline=None)
@given(st.lists(st.tuples(_DECIMAL, _DECIMAL), max_size=6))
@example([(t, "1") for t in _EDGE])
@example([("1", t) for t in _EDGE])
def test_levels_match_to_fixed_and_numpy(levels: list[tuple[str, str]]) -> None:
    raw = msgspec.json.encode(levels)
    _check_raw(raw)
    expected = [_ref(t.encode()) for pair in levels for t in pair]
    if None in expected:
        for compiled in (True, False):
            with pytest.raises(FixedPointError):
                levels_to_fixed(raw, compiled=compiled)
    else:
        assert levels_to_fixed(raw, compiled=True).tolist() == expected
        assert levels_to_fixed(raw, compiled=False).tolist() == expected
    c_values, c_ok = parse_levels(raw, compiled=True)
    n_values, n_ok = parse_levels(raw, compiled=False)
    if c_ok and n_ok:
        assert c_values.tolist() == n_values.tolist()


@pytest.mark.parametrize("token", _EDGE)
@pytest.mark.parametrize("pad", [0, 1, 7, 8, 9, 16])
def test_edge_tokens_anywhere_in_the_buffer(token: str, pad: int) -> None:
    # The word reads must give the same answer near the end of the buffer (byte
    # loop) as in the middle (SWAR): pad moves the token relative to the end.
    quoted = msgspec.json.encode(token)
    for raw in (quoted, b'[["' + token.encode() + b'","1"]]' + b" " * pad, b" " * pad + quoted):
        _check_raw(raw)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=64))
@example(b'"')
@example(b'"1')
@example(b'"12345678')
@example(b'"1.2345678"')
@example(b'"\xff\xff\xff\xff\xff\xff\xff\xff\xff"')
def test_garbage_never_crashes(raw: bytes) -> None:
    _check_raw(raw)
    bids = np.zeros(64, dtype=np.int64)
    asks = np.zeros(64, dtype=np.int64)
    r = ext.decode_diff(raw, bids, 0, asks, 0)
    if r is not None:
        _check_diff_result(raw, r, bids, asks)


def test_out_buffer_too_small_is_a_failure_not_an_overflow() -> None:
    raw = b'[["1","2"],["3","4"]]'
    assert _c_parse(raw, cap=3)[0] == -1
    assert _c_parse(raw, cap=4) == (4, [10**8, 2 * 10**8, 3 * 10**8, 4 * 10**8])
    with pytest.raises(TypeError):
        ext.parse_levels(raw, bytearray(64))  # bytes, not int64 items
    with pytest.raises(TypeError):
        ext.parse_levels(raw, np.zeros(4, dtype=np.int32))


# --- whole depthUpdate bodies -------------------------------------------------

_PLAIN = st.one_of(
    st.integers(min_value=0, max_value=10**8).map(lambda v: f"{v // 100}.{v % 100:02d}"),
    st.integers(min_value=0, max_value=_INT64_MAX).map(lambda v: f"{v // 10**8}.{v % 10**8:08d}"),
    st.integers(min_value=0, max_value=99999).map(str),
)
_LEVELS = st.lists(st.tuples(_PLAIN, _PLAIN), max_size=8)


@st.composite
def _bodies(draw: st.DrawFn) -> bytes:
    msg: dict[str, Any] = {
        "e": "depthUpdate",
        "E": draw(st.integers(0, 2**62)),
        "s": draw(st.sampled_from(["BTCUSDT", "X", ""])),
        "U": draw(st.integers(-(2**63), 2**63 - 1)),
        "u": draw(st.integers(0, 2**63 - 1)),
        "b": draw(_LEVELS),
        "a": draw(_LEVELS),
    }
    if draw(st.booleans()):
        msg["T"] = draw(st.integers(0, 2**62))
        msg["pu"] = draw(st.integers(-1, 2**62))
    if draw(st.booleans()):
        msg["x"] = draw(
            st.one_of(st.none(), st.booleans(), st.floats(allow_nan=False, allow_infinity=False))
        )
    keys = draw(st.permutations(list(msg)))
    ordered = {k: msg[k] for k in keys}
    if draw(st.booleans()):
        return json.dumps(ordered, indent=draw(st.sampled_from([None, 1]))).encode()
    return msgspec.json.encode(ordered)


def _check_diff_result(
    body: bytes,
    r: tuple[int, ...],
    bids: np.ndarray,
    asks: np.ndarray,
    boff: int = 0,
    aoff: int = 0,
) -> None:
    # Whatever decode_diff accepts, msgspec accepts with the same ids and levels.
    head = msgspec.json.decode(body, type=DepthHead)
    assert r[:5] == (head.U, head.u, head.pu, head.E, head.T)
    assert bids[boff : boff + r[5]].tolist() == levels_to_fixed(head.b, compiled=False).tolist()
    assert asks[aoff : aoff + r[6]].tolist() == levels_to_fixed(head.a, compiled=False).tolist()


@settings(max_examples=400, deadline=None)
@given(_bodies(), st.integers(0, 5), st.integers(0, 5))
def test_decode_diff_matches_msgspec(body: bytes, boff: int, aoff: int) -> None:
    bids = np.full(128, -7, dtype=np.int64)
    asks = np.full(128, -7, dtype=np.int64)
    r = ext.decode_diff(body, bids, boff, asks, aoff)
    assert r is not None  # every generated body is in the plain shape
    _check_diff_result(body, r, bids, asks, boff, aoff)
    assert (bids[:boff] == -7).all() and (asks[:aoff] == -7).all()


@settings(max_examples=300, deadline=None)
@given(_bodies(), st.data())
def test_mutated_bodies_never_crash_or_disagree(body: bytes, data: st.DataObject) -> None:
    # Truncations and byte flips: decode_diff either declines (None) or agrees
    # with msgspec, which must then accept the body too.
    i = data.draw(st.integers(0, len(body) - 1))
    mutated = data.draw(
        st.sampled_from(
            [
                body[:i],
                body[:i] + bytes([data.draw(st.integers(0, 255))]) + body[i + 1 :],
                body + b"}",
                body + b" x",
            ]
        )
    )
    bids = np.zeros(128, dtype=np.int64)
    asks = np.zeros(128, dtype=np.int64)
    r = ext.decode_diff(mutated, bids, 0, asks, 0)
    if r is not None:
        _check_diff_result(mutated, r, bids, asks)


def test_decode_diff_declines_what_it_does_not_know() -> None:
    bids = np.zeros(8, dtype=np.int64)
    asks = np.zeros(8, dtype=np.int64)
    ok = b'{"U":1,"u":2,"b":[["1.5","2"]],"a":[]}'
    assert ext.decode_diff(ok, bids, 0, asks, 0) == (1, 2, -1, 0, 0, 2, 0)
    for body in (
        b'{"U":1,"u":2,"b":[["1.5","2"]]}',  # no asks: msgspec refuses it
        b'{"U":1,"U":1,"u":2,"b":[],"a":[]}',  # repeated field
        b'{"U":1.0,"u":2,"b":[],"a":[]}',  # float id
        b'{"U":01,"u":2,"b":[],"a":[]}',  # invalid JSON number
        b'{"U":1,"u":99999999999999999999,"b":[],"a":[]}',  # beyond int64
        b'{"U":1,"u":2,"b":[["-1","2"]],"a":[]}',  # a sign: the exact path decides
        b'{"U":1,"u":2,"b":[["1","2","3"]],"a":[]}',  # three-element level
        b'{"U":1,"u":2,"b":[],"a":[],"s":"\\u0041"}',  # escape in a skipped string
        b'{"U":1,"u":2,"b":[],"a":[],"o":{}}',  # nested value
        b'{"U":1,"u":2,"b":[],"a":[]} {}',  # trailing data
        b'[{"U":1,"u":2,"b":[],"a":[]}]',
    ):
        assert ext.decode_diff(body, bids, 0, asks, 0) is None, body
    # No room for the levels: declined, the caller grows its buffers and retries.
    assert ext.decode_diff(ok, bids, 7, asks, 0) is None
    assert ext.decode_diff(ok, bids, 9, asks, 0) is None


# --- book apply -----------------------------------------------------------------

_PX = st.integers(min_value=1, max_value=80)
_QTY = st.one_of(st.just(0), st.integers(min_value=1, max_value=10**12))
_BATCH = st.lists(st.tuples(_PX, _QTY), max_size=40)


def _arr(xs: list[int]) -> np.ndarray:
    return np.array(xs, dtype=np.int64)


def _state(book: OrderBook) -> list[list[int]]:
    return [a.tolist() for a in (*book.bids.levels(), *book.asks.levels())]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_BATCH, _BATCH), min_size=1, max_size=8), st.booleans())
def test_compiled_book_equals_numpy_book(batches: list[Any], big: bool) -> None:
    c = OrderBook("X", capacity=16, compiled=True)
    p = OrderBook("X", capacity=16, compiled=False)
    for bids, asks in batches:
        if big:  # > 256 updates: the C side takes heap scratch instead of the stack
            bids = bids * 10
        args = (
            _arr([x for x, _ in bids]),
            _arr([q for _, q in bids]),
            _arr([x for x, _ in asks]),
            _arr([q for _, q in asks]),
        )
        c.apply(*args)
        p.apply(*args)
        assert _state(c) == _state(p)
    # The interleaved entry point (what DepthFeed uses) agrees too.
    flat = _arr([v for pair in batches[0][0] for v in pair])
    c.bids.apply_pairs(flat, 0, flat.shape[0])
    p.bids.apply_pairs(flat, 0, flat.shape[0])
    assert _state(c) == _state(p)


def test_compiled_book_extremes_and_strided_input() -> None:
    c = OrderBook("X", compiled=True)
    p = OrderBook("X", compiled=False)
    px = _arr([_INT64_MAX, 1, 0, _INT64_MAX, 5])
    qty = _arr([1, 2, 3, 4, 0])
    for b in (c, p):
        b.apply(px, qty, px, qty)
        b.apply(px[::-2], qty[::-2], px[::2], qty[::2])  # strided, reversed views
    assert _state(c) == _state(p)
    assert c.best_bid() == (_INT64_MAX, 1)  # the reversed view's last word for it
    assert c.best_ask() == (0, 3)


# --- DepthFeed: both implementations over real and synthetic streams ---------------


def _streams() -> list[tuple[str, bytes, list[bytes]]]:
    out = []
    for market in ("spot", "usdm"):
        snap, diffs = synthetic(market, 300)
        out.append((market, snap, diffs))
        rec = load_recorded(market)
        if rec is not None:
            out.append((market, rec[0], rec[1][:600]))
    return out


def _run_feed(market: str, snap: bytes, diffs: list[bytes], batch: int, compiled: bool) -> Any:
    feed = DepthFeed(market, "X", batch=batch, compiled=compiled)  # type: ignore[arg-type]
    # A few diffs before the snapshot (buffered, replayed on load), then the rest.
    actions: list[object] = [feed.on_diff(m) for m in diffs[:3]]
    feed.on_snapshot(snap)
    for m in diffs[3:]:
        actions.append(feed.on_diff(m))
        h = feed.last_head
        assert h is not None
        actions.append((h.U, h.u, h.pu, h.E, h.T))
    feed.flush()
    c = feed.sync.counters
    return _state(feed.book), actions, feed.errors, (c.applied, c.dropped, c.gaps, c.resyncs)


@pytest.mark.parametrize("batch", [1, 7, 64])
def test_feed_compiled_equals_numpy(batch: int) -> None:
    for market, snap, diffs in _streams():
        compiled = _run_feed(market, snap, diffs, batch, True)
        numpy_ = _run_feed(market, snap, diffs, batch, False)
        assert compiled == numpy_, market
        assert compiled[3][0] > len(diffs) // 2  # the stream stayed mostly in sync


def test_feed_slow_shapes_and_unrepresentable_levels() -> None:
    # Bodies the C decoder declines (whitespace escapes, signs, 9 decimals) take the
    # msgspec/exact path on the compiled feed and give the numpy feed's results.
    def diff(first: int, final: int, bids: list[list[str]], asks: list[list[str]]) -> bytes:
        return json.dumps({"U": first, "u": final, "b": bids, "a": asks}, indent=1).encode()

    snap = b'{"lastUpdateId": 10, "bids": [["100", "1"]], "asks": [["101", "1"]]}'
    bodies = [
        diff(11, 11, [["99.5", "2"]], []),
        b'{"U":12,"u":12,"b":[["\\u0039\\u0038","1"]],"a":[]}',  # "98" escaped
        diff(13, 13, [[" 97", "1"]], [["102", "1.000000000"]]),  # blank: to_fixed strips it
        diff(14, 14, [["96", "1.000000001"]], []),  # 9 decimals: invalidates the book
        diff(15, 15, [["95", "1"]], []),
    ]
    results = []
    for compiled in (True, False):
        feed = DepthFeed("spot", "X", batch=2, compiled=compiled)
        feed.on_snapshot(snap)
        actions = [feed.on_diff(b) for b in bodies]
        feed.flush()
        results.append((actions, feed.errors, feed.synced, _state(feed.book)))
    assert results[0] == results[1]
    assert results[0][1] == 1 and not results[0][2]


def test_feed_grows_its_buffers() -> None:
    # One diff with more levels than the initial buffers hold.
    levels = [[f"{i}.5", "1"] for i in range(1, 9000)]
    body = msgspec.json.encode({"U": 11, "u": 11, "b": levels, "a": levels})
    snap = b'{"lastUpdateId": 10, "bids": [], "asks": []}'
    books = []
    for compiled in (True, False):
        feed = DepthFeed("spot", "X", batch=1, compiled=compiled)
        feed.on_snapshot(snap)
        feed.on_diff(body)
        books.append(_state(feed.book))
    assert books[0] == books[1]
    assert len(books[0][0]) == len(levels)


# --- the forced fallback, as on a machine without a compiler ------------------------

_CHILD = """
import hashlib, json, sys
from benchmarks.bench_decode import synthetic
from wiresens.binance import fastdepth
from wiresens.binance.fastdepth import DepthFeed
from wiresens.book import COMPILED
snap, diffs = synthetic("spot", 200)
feed = DepthFeed("spot", "X", batch=16)
feed.on_snapshot(snap)
for m in diffs:
    feed.on_diff(m)
feed.flush()
state = [a.tolist() for a in (*feed.book.bids.levels(), *feed.book.asks.levels())]
try:
    DepthFeed("spot", "X", compiled=True)
    refused = False
except ValueError:
    refused = True
print(json.dumps({
    "implementation": fastdepth.IMPLEMENTATION,
    "compiled": COMPILED,
    "refused": refused,
    "digest": hashlib.sha256(json.dumps(state).encode()).hexdigest(),
}))
"""


def test_forced_fallback_gives_the_same_book() -> None:
    env = dict(os.environ, WIRESENS_PURE_PYTHON="1")
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", _CHILD],
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    child = json.loads(out.stdout.strip().splitlines()[-1])
    assert child["implementation"] == "numpy" and not child["compiled"]
    assert child["refused"]  # compiled=True names the missing extension
    snap, diffs = synthetic("spot", 200)
    feed = DepthFeed("spot", "X", batch=16, compiled=True)
    feed.on_snapshot(snap)
    for m in diffs:
        feed.on_diff(m)
    feed.flush()
    digest = hashlib.sha256(json.dumps(_state(feed.book)).encode()).hexdigest()
    assert child["digest"] == digest
