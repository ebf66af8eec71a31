"""Fixed point: every price and quantity string in the recorded Binance data round-trips
exactly; generated decimals agree with ``decimal.Decimal``; bad input is refused clearly."""

from __future__ import annotations

import gzip
import os
import re
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wiresens.errors import FixedPointError, WiresensError
from wiresens.fixedpoint import DECIMALS, SCALE, from_fixed, to_fixed, to_fixed_bytes

INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
EIGHT = Decimal(1).scaleb(-DECIMALS)

# Depth levels ["price","qty"] of diffs ("b"/"a") and snapshots ("bids"/"asks"). Number-like
# only: exchangeInfo has two-string arrays of words too (``"permissions":["SPOT","MARGIN"]``).
LEVEL = re.compile(r'\[\s*"([-+.0-9]+)"\s*,\s*"([-+.0-9]+)"\s*\]')
# bookTicker b/B/a/A, trade and aggTrade p/q (also kline/markPrice p/q), and the decimal
# values of exchangeInfo filters (spot and USD-M spellings). Integers that share these
# keys (old trade "b"/"a" order ids, aggTrade id "a") are unquoted and do not match.
KEYED = re.compile(
    r'"(p|q|b|B|a|A|minPrice|maxPrice|tickSize|minQty|maxQty|stepSize|minNotional|'
    r"maxNotional|notional|multiplierUp|multiplierDown|bidMultiplierUp|bidMultiplierDown|"
    r'askMultiplierUp|askMultiplierDown|maxPosition)":"([^"]*)"'
)


def _data_dir() -> Path | None:
    for base in (os.environ.get("WIRESENS_DATA"), str(Path(__file__).parents[2] / "shared/data")):
        if base and (Path(base) / "binance").is_dir():
            return Path(base) / "binance"
    return None


def _normalised(text: str) -> str:
    q = Decimal(text).quantize(EIGHT)
    return f"{abs(q) if q == 0 else q:f}"


@pytest.fixture(scope="module")
def recorded_strings() -> dict[str, set[str]]:
    root = _data_dir()
    if root is None:
        pytest.skip(
            "recorded Binance data not found in ../shared/data/binance or $WIRESENS_DATA/binance"
        )
    found: dict[str, set[str]] = {}
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.suffix == ".md":
            continue
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as f:
            text = f.read()
        strings = {s for pair in LEVEL.findall(text) for s in pair}
        strings.update(value for _, value in KEYED.findall(text))
        found[str(path.relative_to(root))] = strings
    if not found:
        pytest.skip(f"no recording files under {root}")
    return found


def test_every_recorded_price_and_quantity_round_trips(
    recorded_strings: dict[str, set[str]],
) -> None:
    for name, strings in recorded_strings.items():
        assert strings, f"{name}: the patterns found no price or quantity (format changed?)"
        for text in strings:
            value = to_fixed(text)
            assert Decimal(text) * SCALE == value, (name, text)
            assert from_fixed(value) == _normalised(text), (name, text)
            assert to_fixed_bytes(text.encode()) == value


def test_recordings_cover_both_formats_and_spellings(
    recorded_strings: dict[str, set[str]],
) -> None:
    names = set(recorded_strings)
    assert any(n.startswith("hftbacktest/") for n in names)
    assert any(n.startswith("cryptofeed/") for n in names)
    every = set().union(*recorded_strings.values())
    # Spot pads to 8 decimals, USD-M sends short forms and bare integers: both occur.
    assert any(len(s.partition(".")[2]) == 8 for s in every)
    assert any("." not in s for s in every)
    assert any(0 < len(s.partition(".")[2]) < 8 for s in every)


decimals = st.decimals(
    min_value=Decimal(INT64_MIN) / SCALE,
    max_value=Decimal(INT64_MAX) / SCALE,
    places=DECIMALS,
    allow_nan=False,
    allow_infinity=False,
)


@given(decimals, st.integers(0, 6), st.sampled_from(["", "+", " "]))
def test_generated_decimals_agree_with_decimal(d: Decimal, pad: int, prefix: str) -> None:
    text = f"{d:f}"
    if "." not in text:
        text += "."
    text += "0" * pad  # trailing zeros beyond 8 decimals are not a loss of precision
    if not text.startswith("-"):
        text = prefix + text
    value = to_fixed(text)
    assert Decimal(text.strip()) * SCALE == value
    assert INT64_MIN <= value <= INT64_MAX
    assert from_fixed(value) == _normalised(text.strip())


@given(st.integers(INT64_MIN, INT64_MAX))
def test_every_int64_round_trips(value: int) -> None:
    text = from_fixed(value)
    assert len(text.partition(".")[2]) == DECIMALS
    assert to_fixed(text) == value


@pytest.mark.parametrize(
    ("value", "decimals", "text"),
    [
        (6543210000000, 2, "65432.10"),
        (100000, 8, "0.00100000"),
        (-5, 8, "-0.00000005"),
        (300000000, 0, "3"),
        (12345678, 10, "0.1234567800"),
        (INT64_MIN, 8, "-92233720368.54775808"),
    ],
)
def test_from_fixed_decimals(value: int, decimals: int, text: str) -> None:
    assert from_fixed(value, decimals) == text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1.123456789", "has more than 8 decimals"),
        ("0.000000001", "has more than 8 decimals"),
        ("", "is not a decimal number"),
        (" ", "is not a decimal number"),
        (".", "is not a decimal number"),
        ("abc", "is not a decimal number"),
        ("1e5", "is not a decimal number"),
        ("1_000", "is not a decimal number"),
        ("0x10", "is not a decimal number"),
        ("--1", "is not a decimal number"),
        ("1.2.3", "is not a decimal number"),
        ("NaN", "is not a decimal number"),
        ("\u0663", "is not a decimal number"),  # ARABIC-INDIC DIGIT THREE: int() would take it
        ("92233720368.54775808", "does not fit in int64"),
        ("-92233720368.54775809", "does not fit in int64"),
        ("100000000000", "does not fit in int64"),
        ("9" * 5000, "does not fit in int64"),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(text: str, message: str) -> None:
    with pytest.raises(FixedPointError, match=message) as err:
        to_fixed(text)
    assert isinstance(err.value, ValueError) and isinstance(err.value, WiresensError)
    assert len(str(err.value)) < 200  # the offending text is quoted, shortened if huge


def test_leading_zeros_and_signs() -> None:
    assert to_fixed("0" * 5000 + "1.5") == 150_000_000
    assert to_fixed("-0.0") == 0 and from_fixed(to_fixed("-0.0")) == "0.00000000"
    assert to_fixed(" +1. ") == SCALE
    assert to_fixed("-.5") == -SCALE // 2


def test_bytes_input() -> None:
    assert to_fixed_bytes(b"65432.10") == 6543210000000
    assert to_fixed_bytes(memoryview(b'"p":"0.00100000"')[5:15]) == 100000
    for raw in (b"\xff1.0", b"1.0\x00", "\u0663".encode()):
        with pytest.raises(FixedPointError, match="is not a decimal number"):
            to_fixed_bytes(raw)


def test_from_fixed_refuses_to_drop_digits() -> None:
    with pytest.raises(FixedPointError, match="non-zero digits beyond 2 decimals"):
        from_fixed(6543210000001, 2)
    with pytest.raises(ValueError, match="decimals must be >= 0"):
        from_fixed(1, -1)
