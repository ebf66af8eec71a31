"""Golden replays of the real Binance recordings (counts from ../shared/data/binance/README.md).

Each session is replayed through the decoder, the sync procedure and the book;
the test asserts the exact message count of every stream, the number of diffs
applied, that the rebuilt best bid/ask equals every ``@bookTicker`` at the same
update id, that no gap is reported where the data has none, that the book is
never crossed, and that trade/aggTrade ids are contiguous. Negative tests remove
one diff (exactly one gap and one resync request must follow; the book stays
unpublished until a snapshot arrives, and re-syncs when one does) and feed
malformed and out-of-order input (counted, never raised).
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from wiresens.binance.recordings import RecordedMessage, iter_session
from wiresens.binance.replay import Replay, replay_files
from wiresens.fixedpoint import from_fixed


def _data_dir() -> Path | None:
    env = os.environ.get("WIRESENS_DATA")
    base = Path(env) if env else Path(__file__).resolve().parents[2].parent / "shared" / "data"
    d = base / "binance"
    return d if d.is_dir() else None


DATA = _data_dir()
pytestmark = pytest.mark.skipif(
    DATA is None,
    reason="real Binance recordings not found in ../shared/data/binance or $WIRESENS_DATA/binance",
)

# session -> (files, {symbol: expectations}); "streams" are exact per-stream counts.
# "tickers" is the number of bookTicker checks (all must match); None: not in the README.
S = "btcusdt@"
SESSIONS: dict[str, tuple[list[str], dict[str, dict[str, Any]]]] = {
    "spot_20240808": (
        ["hftbacktest/spot_btcusdt_20240808.gz"],
        {"BTCUSDT": {"streams": {S + "depth@100ms": 3451, S + "bookTicker": 28040,
                                 S + "trade": 9757, "rest": 1},
                     "applied": 3449, "tickers": 564, "synced": True}},
    ),
    "spot_20240808_0809_rollover": (
        ["hftbacktest/spot_btcusdt_20240808.gz", "hftbacktest/spot_btcusdt_20240809.gz"],
        {"BTCUSDT": {"streams": {S + "depth@100ms": 3451 + 3044, S + "bookTicker": 28040 + 45134,
                                 S + "trade": 9757 + 10147, "rest": 1},
                     "applied": 3449 + 3044, "tickers": None, "synced": True}},
    ),
    "usdm_20240808": (
        ["hftbacktest/usdm_btcusdt_20240808.gz"],
        {"BTCUSDT": {"streams": {S + "depth@0ms": 6551, S + "bookTicker": 66089,
                                 S + "trade": 21313, "rest": 1},
                     "applied": 6547, "tickers": 629, "synced": True}},
    ),
    "spot_20230405_no_snapshot": (
        ["hftbacktest/spot_btcusdt_20230405.dat.gz"],
        {"BTCUSDT": {"streams": {S + "depth@100ms": 3929, S + "bookTicker": 8015, S + "trade": 3144},
                     "applied": 0, "tickers": 0, "synced": False}},
    ),
    "usdm_20230404": (
        ["hftbacktest/usdm_btcusdt_20230404.dat.gz"],
        {"BTCUSDT": {"streams": {S + "depth@0ms": 4322, S + "bookTicker": 6765, S + "trade": 2197,
                                 S + "markPrice@1s": 99, "rest": 1},
                     "applied": None, "tickers": 310, "synced": True}},
    ),
    "cryptofeed_spot_ee25be": (
        ["cryptofeed/BINANCE-ee25be.0"],
        {
            sym.upper(): {"streams": {f"{sym}@depth@100ms": d, f"{sym}@aggTrade": a,
                                      f"{sym}@kline_1m": k, "rest": 1},
                          "applied": None, "tickers": 0, "synced": True}
            for sym, d, a, k in [("btcusdt", 899, 1227, 44), ("ethusdt", 909, 506, 40),
                                 ("dotusdt", 880, 177, 34)]
        },
    ),
    "cryptofeed_spot_session": (
        ["cryptofeed/BINANCE.http.0.0", "cryptofeed/BINANCE.ws.1.0"],
        {
            "NKNUSDT": {"depth": 150, "bookTicker": 74, "tickers": 19},
            "LRCBTC": {"depth": 15, "bookTicker": 9, "tickers": 6},
            "BLZETH": {"depth": 10, "bookTicker": 1, "tickers": 1},
            "RUNEEUR": {"depth": 2, "bookTicker": 0, "tickers": 0},
        },
    ),
    "cryptofeed_usdm_session": (
        ["cryptofeed/BINANCE_FUTURES.http.0.0", "cryptofeed/BINANCE_FUTURES.ws.1.0"],
        {
            sym: {"depth": d, "bookTicker": b, "aggTrade": a, "kline_1m": k, "synced": True}
            for sym, d, b, a, k in [("SUSHIUSDT", 255, 305, 40, 22), ("AKROUSDT", 189, 88, 8, 8),
                                    ("KEEPUSDT", 135, 75, 5, 5), ("CTKUSDT", 185, 145, 38, 32)]
        },
    ),
    "cryptofeed_usdm_no_snapshot": (
        ["cryptofeed/BINANCE_FUTURES.ws.5.0"],
        {
            sym: {"depth": d, "bookTicker": b, "aggTrade": a, "synced": False, "applied": 0,
                  "tickers": 0}
            for sym, d, b, a in [("DENTUSDT", 240, 383, 81), ("KSMUSDT", 270, 477, 43),
                                 ("XMRUSDT", 239, 211, 21), ("YFIUSDT", 267, 888, 40)]
        },
    ),
}  # fmt: skip


def _files(names: list[str]) -> list[Path]:
    assert DATA is not None
    paths = [DATA / n for n in names]
    missing = [p for p in paths if not p.exists()]
    if missing:
        pytest.skip(f"recording(s) absent: {', '.join(map(str, missing))}")
    return paths


def _check_clean(rp: Replay) -> None:
    assert rp.bad_lines == 0
    for sym, r in rp.reports.items():
        assert r.errors == 0, sym
        assert r.gaps == 0 and r.resyncs == 0, (sym, r.gaps, r.resyncs)  # no false gap
        assert r.diff_breaks == 0, sym  # raw U/u (spot) or pu (USD-M) continuity
        assert r.crossed == 0, sym
        assert r.trade_breaks == 0 and r.agg_breaks == 0, sym
        assert r.ticker_mismatched == 0, (sym, r.mismatches)


@pytest.mark.parametrize("name", list(SESSIONS))
def test_golden_session(name: str) -> None:
    names, expected = SESSIONS[name]
    rp = replay_files([str(p) for p in _files(names)])
    reports = rp.reports
    _check_clean(rp)
    for sym, exp in expected.items():
        r = reports[sym]
        streams = exp.get("streams")
        if streams is None:
            low = sym.lower()
            streams = {
                f"{low}@{k}{'@100ms' if k == 'depth' else ''}": v
                for k, v in exp.items()
                if k in ("depth", "bookTicker", "aggTrade", "kline_1m") and v
            }
            streams["rest"] = 1 if "snapshot" not in name else 0
            # The README gives these per symbol; other streams only as totals.
            assert {k: r.streams.get(k, 0) for k in streams} == streams, sym
        else:
            assert r.streams == streams, sym
        if exp.get("applied") is not None:
            assert r.applied == exp["applied"], sym
        assert r.synced == exp.get("synced", True), sym
        if exp.get("tickers") is not None:
            assert r.ticker_matched == exp["tickers"], sym
    if name == "cryptofeed_usdm_session":  # README: top-of-book equal at 50 ids in all
        assert sum(r.ticker_matched for r in reports.values()) == 50
    if name == "cryptofeed_spot_session":  # README: @aggTrade 2, @kline_1m 2 in all
        for kind in ("@aggTrade", "@kline_1m"):
            total = sum(n for r in reports.values() for k, n in r.streams.items() if kind in k)
            assert total == 2, kind


def test_exchange_info_files_replay_quietly() -> None:
    paths = _files(["cryptofeed/BINANCE.0", "cryptofeed/BINANCE_FUTURES.0"])
    for p in paths:
        rp = replay_files([str(p)])
        assert rp.messages == 1 and rp.bad_lines == 0  # exchangeInfo (config line skipped)
        assert all(r.applied == 0 and r.errors == 0 for r in rp.reports.values())


def _without_diff(index: int) -> Any:
    def filt(msgs: Iterable[RecordedMessage]) -> Iterator[RecordedMessage]:
        n = 0
        for m in msgs:
            if m.stream is not None and "@depth" in m.stream:
                n += 1
                if n == index:
                    continue
            yield m

    return filt


@pytest.mark.parametrize(
    "names",
    [["hftbacktest/spot_btcusdt_20240808.gz"], ["hftbacktest/usdm_btcusdt_20230404.dat.gz"]],
)
def test_one_missing_diff_is_one_gap(names: list[str]) -> None:
    # Without a later snapshot the book stays discarded: exactly one gap, one
    # resync request, nothing applied after it, never a wrong top of book.
    paths = [str(p) for p in _files(names)]
    full = replay_files(paths).reports["BTCUSDT"]
    removed = 500
    rp = replay_files(paths, messages=_without_diff(removed))
    r = rp.reports["BTCUSDT"]
    assert (r.gaps, r.resyncs, r.snapshots) == (1, 1, 1)
    assert r.diff_breaks == 1 and not r.synced
    assert r.ticker_mismatched == 0 and 0 < r.ticker_matched < full.ticker_matched
    assert r.applied < removed  # nothing applied past the hole
    assert r.buffered > full.buffered  # later diffs wait for a snapshot
    book = rp.book("BTCUSDT")
    assert book is not None and len(book.bids) == 0 and len(book.asks) == 0


def test_gap_then_snapshot_resyncs() -> None:
    # A snapshot built from the intact replay at diff j (j after the hole) is
    # injected after diff j: the machine re-syncs once and every later
    # bookTicker matches again.
    paths = [str(p) for p in _files(["hftbacktest/spot_btcusdt_20240808.gz"])]
    removed, j = 500, 800
    ref = Replay()
    snapshot: bytes | None = None
    n = 0
    for m in iter_session(paths):
        ref.feed(m)
        if m.stream is not None and "@depth" in m.stream:
            n += 1
            if n == j:
                book = ref.book("BTCUSDT")
                assert book is not None
                bp, bq = book.bids.levels()
                ap, aq = book.asks.levels()
                lid = ref._symbols["BTCUSDT"].feed.sync.last_u  # type: ignore[union-attr]
                snapshot = msgspec.json.encode(
                    {
                        "lastUpdateId": lid,
                        "bids": [
                            [from_fixed(p), from_fixed(q)] for p, q in zip(bp, bq, strict=True)
                        ],
                        "asks": [
                            [from_fixed(p), from_fixed(q)] for p, q in zip(ap, aq, strict=True)
                        ],
                    }
                )
    assert snapshot is not None
    full = ref.reports["BTCUSDT"]

    def inject(msgs: Iterable[RecordedMessage]) -> Iterator[RecordedMessage]:
        k = 0
        for m in msgs:
            if m.stream is not None and "@depth" in m.stream:
                k += 1
                if k == removed:
                    continue
                if k == j:
                    yield m
                    yield RecordedMessage(m.ts_recv_ns, "rest", None, "BTCUSDT", None, snapshot)
                    continue
            yield m

    r = replay_files(paths, messages=inject).reports["BTCUSDT"]
    assert (r.gaps, r.resyncs, r.snapshots) == (1, 1, 2)
    assert r.synced and r.crossed == 0 and r.ticker_mismatched == 0
    # Diffs up to the hole, then everything after the injected snapshot.
    assert r.applied == (removed - 3) + (full.applied - (j - 2))
    assert r.ticker_matched < full.ticker_matched


def test_bad_and_out_of_order_input_is_counted(tmp_path: Path) -> None:
    src = _files(["hftbacktest/spot_btcusdt_20240808.gz"])[0]
    with gzip.open(src, "rb") as fh:
        lines = fh.read().splitlines()[:4000]
    trade_idx = next(i for i, ln in enumerate(lines) if b"@trade" in ln and i > 100)
    diff_idx = [i for i, ln in enumerate(lines) if b"@depth" in ln][20]
    bad = list(lines)
    bad.insert(diff_idx + 300, bad[diff_idx])  # an old diff replayed after sync: dropped
    bad.insert(200, bad[trade_idx])  # a trade id going backwards
    bad.insert(150, b"1723161254 {not json")
    bad.insert(120, b"this is not a recording line")
    bad.insert(
        110,
        b'1723161254206652067 {"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","U":"x"}}',
    )
    bad.insert(
        100,
        b'1723161254206652067 {"stream":"btcusdt@bookTicker","data":{"u":1,"b":"x","B":"1","a":"1","A":"1"}}',
    )
    p = tmp_path / "spot_btcusdt_20240808.gz"
    with gzip.open(p, "wb") as fh:
        fh.write(b"\n".join(bad) + b"\n")
    good = tmp_path / "good_btcusdt_20240808.gz"
    with gzip.open(good, "wb") as fh:
        fh.write(b"\n".join(lines) + b"\n")
    ref = replay_files([str(good)]).reports["BTCUSDT"]
    rp = replay_files([str(p)])
    r = rp.reports["BTCUSDT"]
    assert rp.bad_lines == 2  # the two lines that are not '<ts> {json}' messages
    assert r.errors == 1  # the diff whose ids do not decode
    assert r.trade_breaks == 2  # backwards, then forward again
    assert r.dropped == ref.dropped + 1 and r.gaps == 0 and r.synced
    assert r.ticker_mismatched == 0 and r.ticker_matched == ref.ticker_matched > 0
