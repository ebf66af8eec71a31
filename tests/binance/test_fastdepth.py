"""The vectorised level decoder is exact: it agrees with ``to_fixed`` or defers to it."""

from __future__ import annotations

import msgspec
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from wiresens.binance.fastdepth import DepthFeed, levels_to_fixed, parse_levels
from wiresens.errors import FixedPointError
from wiresens.fixedpoint import to_fixed

# Decimal strings of the shapes Binance sends, plus edge cases around them.
_DIGITS = st.text("0123456789", min_size=0, max_size=13)
_TOKEN = st.one_of(
    st.builds(lambda w, f: f"{w}.{f}", _DIGITS, _DIGITS),
    st.builds(str, st.integers(min_value=0, max_value=10**12)),
    st.decimals(min_value=0, max_value=92233720368, places=8, allow_nan=False).map(str),
    st.text("0123456789.-+ e", min_size=0, max_size=12),
)


def _reference(token: str) -> int | None:
    try:
        return to_fixed(token)
    except FixedPointError:
        return None


@settings(max_examples=600, deadline=None)
@given(st.lists(st.tuples(_TOKEN, _TOKEN), max_size=8))
@example([("61837.63000000", "0.00100000"), ("92233720368.54775807", "1")])
@example([("92233720368.54775808", "1")])
@example([("0.000000010", "5."), (".5", "00000000000.1")])
@example([(".", "1"), ("", "1"), ("1.2.3", "1")])
def test_parse_levels_matches_to_fixed(levels: list[tuple[str, str]]) -> None:
    _check_against_to_fixed(levels)


def _check_against_to_fixed(levels: list[tuple[str, str]]) -> None:
    raw = msgspec.json.encode(levels)
    values, ok = parse_levels(raw)
    expected = [_reference(t) for pair in levels for t in pair]
    if ok:
        # The fast path may only say ok when every token is valid and equal.
        assert None not in expected
        assert values.tolist() == expected
    if None in expected:
        assert not ok
        with pytest.raises(FixedPointError):
            levels_to_fixed(raw)
    else:
        assert levels_to_fixed(raw).tolist() == expected


def test_fast_path_covers_binance_shapes() -> None:
    # Spot (8 decimals), USD-M (1-5 decimals, integers), large integer parts.
    levels = [
        ["61837.63000000", "0.00000000"],
        ["7.6110", "6"],
        ["0.01731", "57618"],
        ["49488.8", "0.000"],
        ["123456789.12", "92233720368.54775807"],
    ]
    values, ok = parse_levels(msgspec.json.encode(levels))
    assert ok
    assert values.tolist() == [to_fixed(t) for pair in levels for t in pair]


def test_joined_batches_and_empty_arrays() -> None:
    parts = [b"[]", b'[["1.5","2"]]', b"[]", b'[["3","0.00000001"],["4.25","7"]]']
    values = levels_to_fixed(b",".join(parts))
    assert values.tolist() == [150000000, 200000000, 300000000, 1, 425000000, 700000000]
    assert levels_to_fixed(b"").shape == (0,)


def _diff(first: int, final: int, bids: list[list[str]], asks: list[list[str]]) -> bytes:
    return msgspec.json.encode(
        {"e": "depthUpdate", "E": 1, "s": "X", "U": first, "u": final, "b": bids, "a": asks}
    )


@pytest.mark.parametrize("batch", [1, 3])
def test_depth_feed_batches_give_the_same_book(batch: int) -> None:
    feed = DepthFeed("spot", "X", batch=batch)
    snap = {"lastUpdateId": 10, "bids": [["100", "1"], ["99", "2"]], "asks": [["101", "1"]]}
    feed.on_diff(_diff(9, 11, [["100", "5"]], []))  # buffered, bridges lastUpdateId+1
    feed.on_snapshot(msgspec.json.encode(snap))
    feed.on_diff(_diff(12, 12, [["98", "1"], ["100", "0"]], [["101", "3"]]))
    feed.on_diff(_diff(13, 14, [["99", "0"]], [["102", "4"], ["101", "0"]]))
    feed.flush()
    assert feed.synced
    assert feed.book.best_bid() == (98 * 10**8, 10**8)
    assert feed.book.best_ask() == (102 * 10**8, 4 * 10**8)
    assert feed.sync.counters.applied == 3


def test_depth_feed_counts_malformed_and_unrepresentable() -> None:
    feed = DepthFeed("spot", "X")
    assert feed.on_diff(b"{not json") is None
    assert feed.on_snapshot(b'{"lastUpdateId": 1, "bids": [["x", "1"]], "asks": []}') is None
    assert feed.errors == 2
    feed.on_snapshot(b'{"lastUpdateId": 1, "bids": [["1", "1"]], "asks": []}')
    feed.on_diff(_diff(2, 2, [["1.000000001", "1"]], []))  # 9 decimals: not representable
    assert feed.errors == 3
    assert not feed.synced and feed.sync.counters.resyncs == 1
    assert len(feed.book.bids) == 0


def test_words_never_read_outside_the_buffer() -> None:
    # Tokens at the very start and end of the buffer (padding makes the reads safe).
    values, ok = parse_levels(b'["1","2"]')
    assert ok and values.tolist() == [10**8, 2 * 10**8]
    assert np.asarray(values).dtype == np.int64


@st.composite
def _columns(draw: st.DrawFn) -> list[tuple[str, str]]:
    # Binance's shape: every price with f0 decimals, every quantity with f1 (the
    # decoder's fast path), now and then one token broken or shaped differently.
    f0 = draw(st.integers(0, 8))
    f1 = draw(st.integers(0, 8))

    def token(f: int) -> st.SearchStrategy[str]:
        whole = st.text("0123456789", min_size=0 if f else 1, max_size=9)
        frac = st.text("0123456789", min_size=f, max_size=f)
        return st.builds(lambda w, x: f"{w}.{x}" if f else w, whole, frac)

    levels = draw(st.lists(st.tuples(token(f0), token(f1)), min_size=1, max_size=10))
    if draw(st.booleans()):
        i = draw(st.integers(0, len(levels) - 1))
        bad = draw(st.sampled_from(["", ".", "1.2.3", "-1", "1e5", " 1", "1.", "\u0661"]))
        levels[i] = (bad, levels[i][1]) if draw(st.booleans()) else (levels[i][0], bad)
    return levels


@settings(max_examples=600, deadline=None)
@given(_columns())
def test_column_fast_path_matches_to_fixed(levels: list[tuple[str, str]]) -> None:
    _check_against_to_fixed(levels)


@pytest.mark.parametrize(
    "levels",
    [
        [["1.00000000", "0.12"], ["5", "0.12"]],  # short token after a dot at the guessed spot
        [["1.12", "2"], ["3.4", "5"]],  # mixed decimals in the price column
        [["100", "1.5"], ["2.25", "1.5"]],  # a dot where the first price had none
    ],
)
def test_wrong_column_guess_falls_back(levels: list[list[str]]) -> None:
    values, ok = parse_levels(msgspec.json.encode(levels))
    assert ok
    assert values.tolist() == [to_fixed(t) for pair in levels for t in pair]
