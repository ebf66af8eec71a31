"""The venue replaying real recorded Binance data: its book is the recorded book."""

from __future__ import annotations

import os
import time
from pathlib import Path

import msgspec
import pytest
import requests

from wiresens.binance.recordings import iter_recording

from .conftest import HMAC_KEY, HMAC_SECRET, Keys, run_venue
from .pybinance import sync_client

_DATA = (
    Path(os.environ.get("WIRESENS_DATA", Path(__file__).parents[3] / "shared" / "data")) / "binance"
)
SPOT = _DATA / "hftbacktest" / "spot_btcusdt_20240808.gz"


def _rebuild(path: Path) -> tuple[dict[str, str], dict[str, str], int, int]:
    """Binance's local-book procedure over the recording, independent of the venue."""
    bids: dict[str, str] = {}
    asks: dict[str, str] = {}
    last = 0
    trades = 0
    for msg in iter_recording(path):
        body = msgspec.json.decode(msg.payload)
        if msg.source == "rest":
            bids = {p: q for p, q in body["bids"]}
            asks = {p: q for p, q in body["asks"]}
            last = body["lastUpdateId"]
        elif body.get("e") == "trade":
            trades += 1
        elif body.get("e") == "depthUpdate" and last and body["u"] > last:
            for key, side in (("b", bids), ("a", asks)):
                for p, q in body[key]:
                    if float(q) == 0:
                        side.pop(p, None)
                    else:
                        side[p] = q
    return bids, asks, last, trades


@pytest.mark.skipif(not SPOT.exists(), reason=f"recorded Binance data not found at {SPOT}")
def test_replayed_book_equals_recorded_book(keys: Keys) -> None:
    bids, asks, last, trades = _rebuild(SPOT)
    assert last == 50093239218 and trades == 9757  # README of the shared data
    v = run_venue(keys, market=f"replay:{SPOT}", symbols=("BTCUSDT",), speed=1e9)
    try:
        deadline = time.monotonic() + 60
        while not v.venue.feeder.finished and time.monotonic() < deadline:
            time.sleep(0.05)
        assert v.venue.feeder.finished, "replay did not finish in 60 s"
        assert v.venue.feeder.skipped == 0
        r = requests.get(
            v.base_url + "/api/v3/depth", params={"symbol": "BTCUSDT", "limit": 5000}, timeout=5
        ).json()
        want_b = sorted(((float(p), q) for p, q in bids.items()), reverse=True)[:5000]
        want_a = sorted((float(p), q) for p, q in asks.items())[:5000]
        got_b = [(float(p), q) for p, q in r["bids"]]
        got_a = [(float(p), q) for p, q in r["asks"]]
        assert got_b == [(p, f"{float(q):.8f}") for p, q in want_b]
        assert got_a == [(p, f"{float(q):.8f}") for p, q in want_a]
        # A user order now takes the replayed liquidity.
        c = sync_client(v.base_url, HMAC_KEY, HMAC_SECRET)
        m = c.create_order(symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.001")
        assert m["status"] == "FILLED" and m["fills"][0]["price"] == r["asks"][0][0]
        top = c.get_order_book(symbol="BTCUSDT", limit=1)["asks"][0]
        left = round(float(r["asks"][0][1]) - 0.001, 8)
        assert (
            (top[0], float(top[1])) == (r["asks"][0][0], left)
            if left > 0
            else top[0] != r["asks"][0][0]
        )
    finally:
        v.stop()
