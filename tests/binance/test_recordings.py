"""Reading hftbacktest and cryptofeed recordings (synthetic files, then the real samples)."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest

from wiresens.binance.recordings import (
    RecordedMessage,
    detect_format,
    iter_recording,
    iter_session,
    market_of,
)
from wiresens.errors import ProtocolError


def _data_dir() -> Path | None:
    env = os.environ.get("WIRESENS_DATA")
    base = Path(env) if env else Path(__file__).resolve().parents[2].parent / "shared" / "data"
    d = base / "binance"
    return d if d.is_dir() else None


DATA = _data_dir()
needs_data = pytest.mark.skipif(
    DATA is None,
    reason="real Binance recordings not found in ../shared/data/binance or $WIRESENS_DATA/binance",
)

DIFF = b'{"e":"depthUpdate","E":1,"s":"BTCUSDT","U":5,"u":6,"b":[["1.0","2"]],"a":[]}'
SNAP = b'{"lastUpdateId": 4, "bids": [["1.0", "1"]], "asks": []}'


def _hft(tmp_path: Path, lines: list[bytes], name: str = "spot_btcusdt_20240808.gz") -> Path:
    p = tmp_path / name
    with gzip.open(p, "wb") as fh:
        fh.write(b"\n".join(lines) + b"\n")
    return p


def test_hftbacktest_ns_and_us_timestamps_and_snapshot(tmp_path: Path) -> None:
    env = b'{"stream":"btcusdt@depth@100ms","data":' + DIFF + b"}"
    ns = _hft(tmp_path, [b"1723161253937085768 " + env, b"1723161254206652067 " + SNAP])
    us = _hft(tmp_path, [b"1680652800004107 " + env], "usdm_btcusdt_20230404.dat.gz")
    assert detect_format(ns) == "hftbacktest"
    a, b = list(iter_recording(ns))
    assert a == RecordedMessage(
        1723161253937085768, "ws", "btcusdt@depth@100ms", "BTCUSDT", None, DIFF
    )
    assert (b.source, b.stream, b.symbol, b.payload) == ("rest", None, "BTCUSDT", SNAP)
    (c,) = iter_recording(us)
    assert c.ts_recv_ns == 1680652800004107000


def test_hftbacktest_snapshot_symbol_from_file_name(tmp_path: Path) -> None:
    p = _hft(tmp_path, [b"1723161254206652067 " + SNAP], "usdm_ethusdt_20240808.gz")
    (m,) = iter_recording(p)
    assert m.symbol == "ETHUSDT" and m.source == "rest"


def test_cryptofeed_lines(tmp_path: Path) -> None:
    p = tmp_path / "BINANCE_FUTURES.ws.1.0"
    p.write_bytes(
        b'configuration: {"x": 1}\n'
        b"wss://fstream.binance.com/stream?streams=btcusdt@depth@100ms <-> 1626992740.179554\n"
        b'1626992741.0621: {"stream":"btcusdt@depth@100ms","data":' + DIFF + b"}\n"
        b"https://fapi.binance.com/fapi/v1/depth?symbol=BTCUSDT&limit=1000 -> 1626992741.3: "
        + SNAP
        + b"\n"
    )
    assert detect_format(p) == "cryptofeed"
    ws, rest = list(iter_recording(p))
    assert ws.ts_recv_ns == 1626992741062100000  # exact, not through float
    assert ws.payload == DIFF and ws.symbol == "BTCUSDT"
    assert ws.url is not None and market_of(ws) == "usdm"
    assert rest.source == "rest" and rest.symbol == "BTCUSDT" and rest.payload == SNAP
    assert rest.url is not None and rest.url.endswith("limit=1000")


def test_single_stream_connection_takes_stream_from_url(tmp_path: Path) -> None:
    p = tmp_path / "x.ws.1.0"
    p.write_bytes(b"wss://stream.binance.com:9443/ws/btcusdt@depth <-> 1.0\n1.5: " + DIFF + b"\n")
    (m,) = iter_recording(p)
    assert (m.stream, m.symbol, m.payload, market_of(m)) == (
        "btcusdt@depth",
        "BTCUSDT",
        DIFF,
        "spot",
    )


def test_session_merges_by_time(tmp_path: Path) -> None:
    http = tmp_path / "S.http.0.0"
    ws = tmp_path / "S.ws.1.0"
    http.write_bytes(b"https://api.binance.com/api/v3/depth?symbol=BTCUSDT -> 2.0: " + SNAP + b"\n")
    env = b'{"stream":"btcusdt@depth@100ms","data":' + DIFF + b"}"
    ws.write_bytes(b"1.0: " + env + b"\n3.0: " + env + b"\n")
    got = [(m.ts_recv_ns, m.source) for m in iter_session([http, ws])]
    assert got == [(1_000_000_000, "ws"), (2_000_000_000, "rest"), (3_000_000_000, "ws")]


def test_bad_lines_raise_or_are_reported(tmp_path: Path) -> None:
    env = b'{"stream":"btcusdt@trade","data":{"t":1}}'
    p = _hft(
        tmp_path,
        [
            b"1 " + env,
            b"garbage",
            b'2 {"stream":"x", "data":',
            b'3 {"no": "snapshot"}',
            b"4 " + env,
        ],
    )
    with pytest.raises(ProtocolError, match=r":2: not '<timestamp> \{json\}'"):
        list(iter_recording(p))
    errors: list[tuple[int, str]] = []
    msgs = list(iter_recording(p, on_error=lambda path, n, why: errors.append((n, why))))
    assert len(msgs) == 2
    assert [n for n, _ in errors] == [2, 3, 4]


def test_truncated_gzip_is_reported_not_raised(tmp_path: Path) -> None:
    env = b'{"stream":"btcusdt@trade","data":{"t":1}}'
    full = _hft(tmp_path, [b"%d " % i + env for i in range(1, 2000)])
    cut = tmp_path / "cut_btcusdt_20240808.gz"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    errors: list[str] = []
    msgs = list(iter_recording(cut, on_error=lambda path, n, why: errors.append(why)))
    assert 0 < len(msgs) < 1999 and len(errors) >= 1


def test_unknown_format_names_the_file(tmp_path: Path) -> None:
    p = tmp_path / "notes.txt"
    p.write_text("hello\n")
    with pytest.raises(ProtocolError, match=r"notes\.txt"):
        detect_format(p)


@needs_data
def test_real_formats_detected() -> None:
    assert DATA is not None
    for p in sorted((DATA / "hftbacktest").iterdir()):
        assert detect_format(p) == "hftbacktest", p
    for p in sorted((DATA / "cryptofeed").iterdir()):
        assert detect_format(p) == "cryptofeed", p


@needs_data
def test_real_session_pair_is_time_ordered() -> None:
    assert DATA is not None
    msgs = list(
        iter_session(
            [DATA / "cryptofeed" / "BINANCE.http.0.0", DATA / "cryptofeed" / "BINANCE.ws.1.0"]
        )
    )
    assert len(msgs) == 4 + 265  # README: 177 depth, 84 bookTicker, 2 aggTrade, 2 kline
    ts = [m.ts_recv_ns for m in msgs]
    assert ts == sorted(ts)
    rest = [m for m in msgs if m.source == "rest"]
    assert sorted(m.symbol for m in rest if m.symbol) == ["BLZETH", "LRCBTC", "NKNUSDT", "RUNEEUR"]
