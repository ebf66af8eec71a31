"""Exact conversion between Binance decimal strings and int64 fixed point (8 decimals).

No floats anywhere: ``"0.00100000"`` -> ``100000``, ``"65432.10"`` -> ``6543210000000``,
and back to the canonical 8-decimal string. A value with more than 8 significant
decimals, or outside int64, is refused rather than rounded.
"""

from __future__ import annotations

from .errors import FixedPointError

__all__ = ["DECIMALS", "SCALE", "from_fixed", "to_fixed", "to_fixed_bytes"]

DECIMALS = 8
SCALE = 10**DECIMALS
_INT64_MAX = (1 << 63) - 1
_DIGITS = frozenset("0123456789")


def _overflow(text: str) -> FixedPointError:
    return FixedPointError(
        f"{_show(text)} does not fit in int64 fixed point "
        "(range -92233720368.54775808 .. 92233720368.54775807)"
    )


def _show(text: str) -> str:
    return repr(text) if len(text) <= 40 else repr(text[:37]) + "..."


def to_fixed(text: str) -> int:
    """Parse a decimal string (optional sign, optional fraction) into fixed point.

    Raises
    ------
    FixedPointError
        ``text`` is not a plain decimal (no exponent, ASCII digits only), has more than
        8 non-zero decimals, or lies outside int64 fixed point.
    """
    s = text.strip()
    neg = s.startswith("-")
    if neg or s.startswith("+"):
        s = s[1:]
    whole, _, frac = s.partition(".")
    if (not whole and not frac) or not (_DIGITS.issuperset(whole) and _DIGITS.issuperset(frac)):
        raise FixedPointError(
            f"{_show(text)} is not a decimal number (expected digits like '65432.10')"
        )
    if len(frac) > DECIMALS:
        extra = frac[DECIMALS:]
        if extra.strip("0"):
            raise FixedPointError(
                f"{_show(text)} has more than {DECIMALS} decimals; Wiresens keeps exactly {DECIMALS} "
                "and will not round"
            )
        frac = frac[:DECIMALS]
    # int64 fixed point has at most 11 whole digits; checking first also keeps int() off
    # absurdly long strings (CPython refuses > 4300 digits with a ValueError of its own).
    if len(whole) > 11:
        whole = whole.lstrip("0")
        if len(whole) > 11:
            raise _overflow(text)
    value: int = int(whole or "0") * SCALE + (int(frac.ljust(DECIMALS, "0")) if frac else 0)
    if value > _INT64_MAX and (not neg or value > _INT64_MAX + 1):
        raise _overflow(text)
    return -value if neg else value


def to_fixed_bytes(raw: bytes | bytearray | memoryview) -> int:
    """:func:`to_fixed` for ASCII bytes, as sliced from a raw frame."""
    # latin-1 maps every byte to one character, so junk bytes reach to_fixed's own check
    # (and its FixedPointError) instead of escaping as a UnicodeDecodeError.
    return to_fixed(bytes(raw).decode("latin-1"))


def from_fixed(value: int, decimals: int = DECIMALS) -> str:
    """Format fixed point as a decimal string with ``decimals`` places (8 is Binance's form)."""
    neg = value < 0
    v = -value if neg else value
    whole, frac = divmod(v, SCALE)
    digits = f"{frac:08d}"
    if decimals < 0:
        raise ValueError(f"decimals must be >= 0, got {decimals}")
    if decimals > DECIMALS:
        digits += "0" * (decimals - DECIMALS)
    elif decimals < DECIMALS:
        if digits[decimals:].strip("0"):
            raise FixedPointError(
                f"{value} has non-zero digits beyond {decimals} decimals; use more decimals"
            )
        digits = digits[:decimals]
    text = f"{whole}.{digits}" if decimals else str(whole)
    return f"-{text}" if neg else text
