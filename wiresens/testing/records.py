"""Seeded record factories, and self-checking sequence records for ring tests.

:class:`RecordFactory` builds plausible records of every :class:`~wiresens.records.RecordKind`
(increasing timestamps and exchange ids, prices on a tick grid, bid below ask).

``SEQ_RECORD`` is a 64-byte record whose every word is derived from its sequence
number, so a consumer can prove that nothing was lost, duplicated or torn::

    0   seq       i8   0, 1, 2, ... in write order
    8   checksum  u8   seq ^ payload[0] ^ ... ^ payload[5] ^ CHECK_SALT
    16  payload   u8 x 6   payload[j] = (seq + 1) * MULTIPLIERS[j]  (mod 2**64)

A slot copied while the producer overwrote it mixes two records' words and fails
the check.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from wiresens.records import (
    DTYPES,
    MARKET_SLOT,
    SCALE,
    SCHEMA_VERSION,
    TRADE_BUYER_MAKER_FLAG,
    ExecStatus,
    ExecType,
    OrderType,
    RecordKind,
    Side,
    TimeInForce,
    new_record,
)

__all__ = ["SEQ_RECORD", "RecordFactory", "check_seq_records", "fill_seq_records"]

SEQ_RECORD = np.dtype([("seq", "<i8"), ("checksum", "<u8"), ("payload", "<u8", (6,))])
assert SEQ_RECORD.itemsize == 64

_TIMES = np.dtype(
    {
        "names": ["ts_exch", "ts_recv", "ts_pub"],
        "formats": ["<i8"] * 3,
        "offsets": [8, 16, 24],
        "itemsize": 64,
    }
)

MULTIPLIERS = np.array(
    [
        0x9E3779B97F4A7C15,
        0xBF58476D1CE4E5B9,
        0x94D049BB133111EB,
        0xD6E8FEB86659FD93,
        0xA0761D6478BD642F,
        0xE7037ED1A0B428DB,
    ],
    dtype=np.uint64,
)
CHECK_SALT = np.uint64(0x5EED_0F_C0FFEE)


def _expected(seq: np.ndarray[Any, Any]) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    # Array arithmetic wraps modulo 2**64 silently (scalar arithmetic would warn).
    payload = (seq.astype(np.uint64) + np.uint64(1))[:, None] * MULTIPLIERS[None, :]
    checksum = np.bitwise_xor.reduce(payload, axis=1) ^ seq.astype(np.uint64) ^ CHECK_SALT
    return payload, checksum


def fill_seq_records(out: np.ndarray[Any, Any], start: int) -> None:
    """Fill ``out`` (``SEQ_RECORD``) with the records of sequence ``start .. start+len-1``."""
    seq = np.arange(start, start + len(out), dtype=np.int64)
    payload, checksum = _expected(seq)
    out["seq"] = seq
    out["payload"] = payload
    out["checksum"] = checksum


def check_seq_records(records: np.ndarray[Any, Any], start: int) -> str | None:
    """None when ``records`` are exactly sequences ``start, start+1, ...`` and untorn.

    Otherwise a description of the first problem (gap, duplicate, torn record).
    """
    n = len(records)
    if n == 0:
        return None
    seq = records["seq"]
    want = np.arange(start, start + n, dtype=np.int64)
    bad = np.flatnonzero(seq != want)
    if len(bad):
        i = int(bad[0])
        return f"record {i} of a batch starting at {start}: seq {int(seq[i])}, expected {start + i}"
    payload, checksum = _expected(want)
    torn = np.flatnonzero(
        (records["checksum"] != checksum) | np.any(records["payload"] != payload, axis=1)
    )
    if len(torn):
        i = int(torn[0])
        return f"record seq {start + i} is torn (checksum or payload words do not match its seq)"
    return None


class RecordFactory:
    """Deterministic plausible records of every kind.

    Parameters
    ----------
    seed
        Seed of the generator; the same seed gives the same records.
    symbols
        Instruments are indexes ``0 .. symbols-1``.
    start_ns
        Exchange time of the first record (default: 2024-08-08 23:54:13 UTC).
    """

    def __init__(
        self, seed: int = 0, symbols: int = 4, start_ns: int = 1_723_161_253_000_000_000
    ) -> None:
        self.rng = np.random.default_rng(seed)
        self.symbols = symbols
        self._clock = start_ns
        self._ids: dict[str, int] = {}
        self.mid = 60_000 * SCALE
        self.tick = SCALE // 100
        self.step = SCALE // 100_000

    def _next_ids(self, what: str, count: int) -> np.ndarray[Any, Any]:
        first = self._ids.get(what, 1_000_000)
        self._ids[what] = first + count
        return np.arange(first, first + count, dtype=np.int64)

    def _prices(self, count: int, spread_ticks: int = 0) -> np.ndarray[Any, Any]:
        ticks = self.rng.integers(-500, 500, count) + spread_ticks
        return (self.mid + ticks * self.tick).astype(np.int64)

    def _qtys(self, count: int) -> np.ndarray[Any, Any]:
        return (self.rng.integers(1, 200_000, count) * self.step).astype(np.int64)

    def records(self, kind: RecordKind, count: int = 1) -> np.ndarray[Any, Any]:
        """``count`` records of ``kind`` with increasing timestamps, in ``DTYPES[kind]``."""
        arr = new_record(kind, count)
        gaps = self.rng.integers(1_000, 5_000_000, count)
        ts_exch = self._clock + np.cumsum(gaps)
        self._clock = int(ts_exch[-1]) if count else self._clock
        arr["symbol"] = self.rng.integers(0, self.symbols, count)
        arr["ts_exch"] = ts_exch
        arr["ts_recv"] = ts_exch + self.rng.integers(100_000, 3_000_000, count)
        arr["ts_pub"] = arr["ts_recv"] + self.rng.integers(500, 20_000, count)
        sides = self.rng.integers(int(Side.BUY), int(Side.SELL) + 1, count)
        if kind == RecordKind.DEPTH_UPDATE:
            arr["update_id"] = self._next_ids("update", count)
            arr["price"] = self._prices(count)
            arr["qty"] = self._qtys(count) * (self.rng.random(count) > 0.1)
            arr["side"] = sides
        elif kind == RecordKind.TOP_OF_BOOK:
            bid = self._prices(count)
            arr["bid_px"] = bid
            arr["ask_px"] = bid + self.rng.integers(1, 5, count) * self.tick
            arr["bid_qty"] = self._qtys(count)
            arr["ask_qty"] = self._qtys(count)
        elif kind == RecordKind.TRADE:
            arr["trade_id"] = self._next_ids("trade", count)
            arr["price"] = self._prices(count)
            arr["qty"] = self._qtys(count)
            arr["flags"] = np.where(self.rng.random(count) < 0.5, TRADE_BUYER_MAKER_FLAG, 0)
        elif kind in (RecordKind.ORDER_NEW, RecordKind.ORDER_CANCEL, RecordKind.ORDER_REPLACE):
            arr["cl_ord_id"] = self._next_ids("cl_ord", count)
            if kind != RecordKind.ORDER_NEW:
                arr["orig_cl_ord_id"] = arr["cl_ord_id"] - 1
            arr["price"] = self._prices(count)
            arr["qty"] = self._qtys(count)
            arr["side"] = sides
            arr["order_type"] = int(OrderType.LIMIT)
            arr["tif"] = int(TimeInForce.GTC)
            arr["policy"] = self.rng.integers(0, 8, count)
        elif kind == RecordKind.EXECUTION_REPORT:
            arr["cl_ord_id"] = self._next_ids("cl_ord", count)
            arr["exch_order_id"] = self._next_ids("exch_order", count)
            arr["price"] = self._prices(count)
            arr["qty"] = self._qtys(count)
            arr["side"] = sides
            arr["status"] = int(ExecStatus.NEW)
            arr["exec_type"] = int(ExecType.NEW)
        elif kind == RecordKind.HEARTBEAT:
            arr["seq"] = self._next_ids("heartbeat", count)
            arr["work"] = self.rng.integers(0, 1_000_000, count)
        return arr

    def market_mix(self, count: int) -> np.ndarray[Any, Any]:
        """``count`` 64-byte market records (depth, top of book, trade) in one ``MARKET_SLOT`` array.

        Consumers tell them apart by the ``kind`` byte, as on a shared market ring.
        """
        kinds = self.rng.choice(
            [int(RecordKind.DEPTH_UPDATE), int(RecordKind.TOP_OF_BOOK), int(RecordKind.TRADE)],
            size=count,
        )
        out = np.zeros(count, MARKET_SLOT)
        for k in np.unique(kinds):
            where = np.flatnonzero(kinds == k)
            recs = self.records(RecordKind(int(k)), len(where))
            out[where] = recs.view(MARKET_SLOT)
        # Timestamps were drawn per kind; sort each column so the mix is in time order
        # (sorting keeps ts_exch < ts_recv < ts_pub record by record: order statistics
        # of pointwise-larger samples are larger).
        times = out.view(_TIMES)
        for field in ("ts_exch", "ts_recv", "ts_pub"):
            times[field] = np.sort(times[field])
        return out

    @staticmethod
    def schema_version(kind: RecordKind) -> int:
        return SCHEMA_VERSION[kind]

    @staticmethod
    def dtype(kind: RecordKind) -> np.dtype[Any]:
        return DTYPES[kind]
