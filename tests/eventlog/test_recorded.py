"""Real Binance traffic through the event log: the two day files of one spot session
(hftbacktest/spot_btcusdt_20240808.gz + 20240809.gz) logged as raw messages, with their
trades also as TRADE record batches, on a writer clock that follows the recording, so
the log rolls at the recording's UTC midnight. Counts are the README's."""

from __future__ import annotations

import gzip
import hashlib
import os
from pathlib import Path

import msgspec
import numpy as np
import pytest

from wiresens.eventlog import RAW_KIND, EventLogReader, EventLogWriter
from wiresens.fixedpoint import to_fixed
from wiresens.records import TRADE_BUYER_MAKER_FLAG, RecordKind, new_record


def _data_dir() -> Path | None:
    env = os.environ.get("WIRESENS_DATA")
    base = Path(env) if env else Path(__file__).resolve().parents[2].parent / "shared" / "data"
    d = base / "binance" / "hftbacktest"
    return d if d.is_dir() else None


DATA = _data_dir()
pytestmark = pytest.mark.skipif(
    DATA is None,
    reason="real Binance recordings not found in ../shared/data/binance or $WIRESENS_DATA/binance",
)
FILES = ("spot_btcusdt_20240808.gz", "spot_btcusdt_20240809.gz")
MIDNIGHT = 1_723_161_600_000_000_000  # 2024-08-09T00:00:00Z
STREAMS = {  # README: messages per stream, per file
    "spot_btcusdt_20240808.gz": {
        "btcusdt@depth@100ms": 3451,
        "btcusdt@bookTicker": 28_040,
        "btcusdt@trade": 9757,
        "rest:depth": 1,
    },
    "spot_btcusdt_20240809.gz": {
        "btcusdt@depth@100ms": 3044,
        "btcusdt@bookTicker": 45_134,
        "btcusdt@trade": 10_147,
    },
}
FIRST_TRADE, LAST_TRADE = 3_735_683_259, 3_735_703_162


class _Trade(msgspec.Struct):
    t: int
    p: str
    q: str
    m: bool


class _Env(msgspec.Struct):
    stream: str
    data: msgspec.Raw


def test_a_recorded_session_round_trips_byte_exact_and_rolls_at_midnight(tmp_path: Path) -> None:
    assert DATA is not None
    with gzip.open(DATA / FILES[0], "rb") as f:
        now = [int(f.readline().partition(b" ")[0])]  # the writer opens at the first message
    digest = hashlib.sha256()
    sent = 0
    trades = new_record(RecordKind.TRADE, 64)
    pending = 0
    env_dec, trade_dec = msgspec.json.Decoder(_Env), msgspec.json.Decoder(_Trade)
    with EventLogWriter(tmp_path, "recorder", clock=lambda: now[0]) as w:
        for name in FILES:
            with gzip.open(DATA / name, "rb") as f:
                for line in f:
                    head, _, body = line.rstrip(b"\n").partition(b" ")
                    ts = int(head)
                    now[0] = ts
                    if body.startswith(b'{"stream"'):
                        env = env_dec.decode(body)
                        stream = env.stream
                    else:
                        stream = "rest:depth"
                    w.append_raw(ts, 1, stream, body)
                    digest.update(body)
                    sent += 1
                    if stream.endswith("@trade"):
                        tr = trade_dec.decode(env.data)
                        rec = trades[pending]
                        rec["ts_recv"] = ts
                        rec["symbol"] = 1
                        rec["trade_id"] = tr.t
                        rec["price"] = to_fixed(tr.p)
                        rec["qty"] = to_fixed(tr.q)
                        rec["flags"] = TRADE_BUYER_MAKER_FLAG if tr.m else 0
                        pending += 1
                        if pending == len(trades):
                            w.append_records(RecordKind.TRADE, trades)
                            pending = 0
        if pending:
            w.append_records(RecordKind.TRADE, trades[:pending])
    assert sent == 41_249 + 58_325

    reader = EventLogReader(tmp_path)
    days = sorted(Path(s.path).name.split("-")[1] for s in reader.segments())
    assert days == ["20240808.evlog", "20240809.evlog"]
    got = hashlib.sha256()
    per_day: list[dict[str, int]] = [{}, {}]
    for e in reader.entries(kinds=[RAW_KIND]):
        assert e.raw is not None
        got.update(e.raw.data)
        counts = per_day[e.raw.ts_recv >= MIDNIGHT]
        counts[e.raw.stream] = counts.get(e.raw.stream, 0) + 1
    assert got.digest() == digest.digest()
    assert per_day == [STREAMS[FILES[0]], STREAMS[FILES[1]]]

    ids = reader.read_records(RecordKind.TRADE)["trade_id"]
    assert ids.tolist() == list(range(FIRST_TRADE, LAST_TRADE + 1))
    after = reader.read_records(RecordKind.TRADE, start_ns=MIDNIGHT)
    assert len(after) == STREAMS[FILES[1]]["btcusdt@trade"]
    assert np.all(after["ts_recv"] >= MIDNIGHT)
    raw_after = sum(1 for _ in reader.entries(kinds=[RAW_KIND], start_ns=MIDNIGHT))
    assert raw_after == 58_325
