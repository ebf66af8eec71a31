"""Back-test inputs: synthetic market, Binance public-data CSV importer, recordings."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from wiresens.backtest.data import (
    DEPTH,
    RESET,
    TRADE,
    MarketBuilder,
    from_csv,
    from_recordings,
    from_synthetic,
    read_binance_csv,
)
from wiresens.errors import ConfigError
from wiresens.fixedpoint import to_fixed
from wiresens.testing.synthetic import SyntheticMarket

DATA = Path(os.environ.get("WIRESENS_DATA", Path(__file__).parents[3] / "shared" / "data"))


def test_synthetic_top_of_book_matches_the_generator() -> None:
    md = from_synthetic(5, 200, mid="100")
    m = SyntheticMarket(5, mid="100")
    m.snapshot()
    tops = []
    for _ in range(200):
        m.step_events()
        bid, ask = m.best()
        tops.append((bid, m.bids[bid], ask, m.asks[ask]))
    book = (md.kind == DEPTH).nonzero()[0]
    got = list(
        zip(
            md.a[book].tolist(),
            md.b[book].tolist(),
            md.c[book].tolist(),
            md.d[book].tolist(),
            strict=True,
        )
    )
    assert got == tops
    assert md.kind[0] == RESET and np.all(np.diff(md.ts_exch) >= 0)
    assert md.market_events == md.level_updates + md.trades


def test_builder_sorts_by_exchange_time_and_keeps_ties_in_order() -> None:
    b = MarketBuilder("X")
    b.trade(20, 21, 5, 1, True, 2)
    b.book(10, 30, [(4, 1)], [(6, 1)], reset=True)
    b.trade(20, 22, 5, 1, False, 3)
    md = b.build()
    assert md.kind.tolist() == [RESET, TRADE, TRADE]
    assert md.d.tolist()[1:] == [2, 3]
    assert md.head(1).level_updates == 2


def write(path: Path, rows: list[str]) -> Path:
    path.write_text("\n".join(rows) + "\n")
    return path


def test_trades_and_aggtrades_csv_in_binance_layout(tmp_path: Path) -> None:
    # Spot trades: no header; the 2025 file switched to microsecond times.
    t = write(
        tmp_path / "BTCUSDT-trades-2024-08-08.csv",
        [
            "3735683259,61000.01000000,0.00100000,61.00001000,1723161253940,True,True",
            "3735683260,61000.02000000,0.50000000,30500.01000000,1723161253941000,False,True",
        ],
    )
    arr = read_binance_csv(t)
    assert arr["id"].tolist() == [3735683259, 3735683260]
    assert arr["price"].tolist() == [to_fixed("61000.01"), to_fixed("61000.02")]
    assert arr["time"].tolist() == [1723161253940 * 10**6, 1723161253941000 * 10**3]
    assert arr["is_buyer_maker"].tolist() == [1, 0]
    # Futures aggTrades: header row, no is_best_match column.
    a = write(
        tmp_path / "BTCUSDT-aggTrades-2024-08-08.csv",
        [
            "agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker",
            "26129,0.01633102,4.70443515,27781,27781,1498793709153,true",
        ],
    )
    arr = read_binance_csv(a)
    assert arr["agg_id"].tolist() == [26129]
    assert arr["qty"].tolist() == [to_fixed("4.70443515")]
    assert arr["is_best_match"].tolist() == [0]


def test_bookticker_bookdepth_klines_csv(tmp_path: Path) -> None:
    bt = write(
        tmp_path / "BTCUSDT-bookTicker-2024-08-08.csv",
        [
            "update_id,best_bid_price,best_bid_qty,best_ask_price,best_ask_qty,transaction_time,event_time",
            "5123107852948,61000.10,1.5,61000.20,0.7,1723161253940,1723161253941",
        ],
    )
    arr = read_binance_csv(bt)
    assert arr["ask_qty"].tolist() == [to_fixed("0.7")]
    assert arr["event_time"].tolist() == [1723161253941 * 10**6]
    bd = write(
        tmp_path / "BTCUSDT-bookDepth-2024-08-08.csv",
        ["timestamp,percentage,depth,notional", "2024-08-08 00:00:09,-5,1234.5,75000000.25"],
    )
    arr = read_binance_csv(bd)
    assert arr["percentage"].tolist() == [to_fixed("-5")]
    assert arr["timestamp"].tolist() == [1723075209 * 10**9]
    kl = write(
        tmp_path / "BTCUSDT-1m-2024-08-08.csv",
        [
            "1601510340000,4.15070000,4.15870000,4.15060000,4.15540000,539.23000000,1601510399999,"
            "2240.39860900,13,401.82000000,1669.98121300,0"
        ],
    )
    arr = read_binance_csv(kl)
    assert arr["count"].tolist() == [13]
    assert arr["close"].tolist() == [to_fixed("4.1554")]
    with pytest.raises(ConfigError, match="klines files cannot drive"):
        from_csv([kl])


def test_csv_errors_name_file_line_and_column(tmp_path: Path) -> None:
    bad = write(tmp_path / "x-trades-1.csv", ["1,abc,1,1,1,True,True"])
    with pytest.raises(ConfigError, match=r"x-trades-1.csv:1: column price"):
        read_binance_csv(bad)
    short = write(tmp_path / "y-trades-1.csv", ["1,2,3"])
    with pytest.raises(ConfigError, match="3 fields"):
        read_binance_csv(short)
    with pytest.raises(ConfigError, match="csv_kind"):
        read_binance_csv(write(tmp_path / "noname.csv", ["1"]))


def test_csv_replay_merges_trades_and_book_ticker(tmp_path: Path) -> None:
    t = write(tmp_path / "S-trades-1.csv", ["1,100.01,0.5,50.005,1000,False,True"])
    b = write(
        tmp_path / "S-bookTicker-1.csv",
        ["7,100.00,1,100.01,2,999,999", "8,100.00,1,100.02,2,1001,1001"],
    )
    md = from_csv([t, b], "S")
    assert md.kind.tolist() == [RESET, TRADE, RESET]
    assert md.c[md.kind == RESET].tolist() == [to_fixed("100.01"), to_fixed("100.02")]


def test_recording_golden_counts() -> None:
    f = DATA / "binance" / "hftbacktest" / "spot_btcusdt_20240808.gz"
    if not f.exists():
        pytest.skip(f"{f} absent: set WIRESENS_DATA to the recorded Binance data")
    md = from_recordings([f])
    # README: 9757 trades; 3449 diffs applied after sync, the ones buffered before the
    # snapshot folded into one RESET with the snapshot.
    assert md.trades == 9757
    n_depth = int(np.count_nonzero(md.kind == DEPTH))
    n_reset = int(np.count_nonzero(md.kind == RESET))
    assert n_reset == 1 and 3440 < n_depth + 1 <= 3449
    book = md.kind != TRADE
    assert np.all(md.a[book] < md.c[book])  # never crossed
    assert np.all(np.diff(md.ts_exch) >= 0)


def test_event_log_input_matches_the_records_written(tmp_path: Path) -> None:
    from wiresens.backtest.data import from_eventlog
    from wiresens.eventlog import EventLogWriter
    from wiresens.records import DEPTH_CLEAR_FLAG, DEPTH_LAST_FLAG, RecordKind, new_record

    t0 = 1_723_161_253_940_000_000
    depth = new_record(RecordKind.DEPTH_UPDATE, 3)
    # Event 1 (a resync: clear first): bid 100.00 x1, ask 100.02 x2. Event 2: bid 100.01 x3.
    rows = [
        (1, 1, DEPTH_CLEAR_FLAG, "100.00", "1"),
        (1, 2, DEPTH_LAST_FLAG, "100.02", "2"),
        (2, 1, DEPTH_LAST_FLAG, "100.01", "3"),
    ]
    for i, (ev, side, flags, p, q) in enumerate(rows):
        r = depth[i]
        r["symbol"], r["side"], r["flags"] = 1, side, flags
        r["price"], r["qty"] = to_fixed(p), to_fixed(q)
        r["ts_exch"] = r["ts_recv"] = t0 + ev * 1_000_000
    trade = new_record(RecordKind.TRADE, 1)
    trade["symbol"], trade["price"], trade["qty"], trade["trade_id"] = 1, to_fixed("100.01"), 5, 77
    trade["ts_exch"] = trade["ts_recv"] = t0 + 3_000_000
    with EventLogWriter(tmp_path / "log", "test-node") as w:
        w.append_records(RecordKind.DEPTH_UPDATE, depth)
        w.append_records(RecordKind.TRADE, trade)
    md = from_eventlog(tmp_path / "log")
    assert md.kind.tolist() == [RESET, DEPTH, TRADE]
    assert md.a.tolist()[:2] == [to_fixed("100.00"), to_fixed("100.01")]
    assert md.d.tolist() == [to_fixed("2"), to_fixed("2"), 77]


def test_usdm_recording_syncs_with_futures_rules() -> None:
    f = DATA / "binance" / "hftbacktest" / "usdm_btcusdt_20240808.gz"
    if not f.exists():
        pytest.skip(f"{f} absent: set WIRESENS_DATA to the recorded Binance data")
    md = from_recordings([f], market="usdm")
    # README: 21 313 trades; 6547 diffs applied after sync (those buffered before the
    # snapshot folded into the one RESET).
    assert md.trades == 21313
    n_depth = int(np.count_nonzero(md.kind == DEPTH))
    assert int(np.count_nonzero(md.kind == RESET)) == 1 and 6530 < n_depth < 6547
    book = md.kind != TRADE
    assert np.all(md.a[book] < md.c[book])


def test_cryptofeed_session_picks_one_symbol() -> None:
    d = DATA / "binance" / "cryptofeed"
    files = [d / "BINANCE.http.0.0", d / "BINANCE.ws.1.0"]
    if not all(f.exists() for f in files):
        pytest.skip(f"{d} absent: set WIRESENS_DATA to the recorded Binance data")
    # README: nknusdt has 150 diffs; the snapshot arrives after the first, so the first
    # synchronised book is one RESET and the rest follow as diffs.
    md = from_recordings(files, "NKNUSDT")
    n_depth = int(np.count_nonzero(md.kind == DEPTH))
    assert md.symbol == "NKNUSDT" and int(np.count_nonzero(md.kind == RESET)) == 1
    assert 140 < n_depth + 1 < 150
    other = from_recordings(files, "LRCBTC")
    assert len(other) < 20 and not set(other.a.tolist()) & set(md.a.tolist())


def test_head_keeps_the_levels_of_reordered_events() -> None:
    b = MarketBuilder("X")
    b.book(20, 20, [(4, 1)], [(6, 1)], reset=True)  # levels 0..2, sorted second
    b.book(10, 10, [(3, 1)], [(7, 1)], reset=True)  # levels 2..4, sorted first
    md = b.build()
    first = md.head(1)
    assert first.level_updates == 2
    lo, hi = int(first.lvl_lo[0]), int(first.lvl_hi[0])
    assert first.lvl_px[lo:hi].tolist() == [3, 7]
