"""Rate-limit accounting with a fake clock: headers, windows, 429 and 418."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wiresens.binance.ratelimit import (
    DEFAULT_BAN_SECONDS,
    RETRY_MARGIN_S,
    RateLimitState,
    interval_key,
)
from wiresens.binance.wire import DECODERS, ExchangeInfo, RateLimit

DATA = Path(os.environ.get("WIRESENS_DATA", Path(__file__).parents[3] / "shared" / "data"))

SPOT_2021 = (
    RateLimit("REQUEST_WEIGHT", "MINUTE", 1, 1200),
    RateLimit("ORDERS", "SECOND", 10, 50),
    RateLimit("ORDERS", "DAY", 1, 160000),
    RateLimit("RAW_REQUESTS", "MINUTE", 5, 6100),
)


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


T0 = 1_700_000_040.0  # a whole minute (and a whole 10 s)


def state(safety: float = 1.0) -> tuple[RateLimitState, Clock]:
    clock = Clock(T0 + 5.0)
    return RateLimitState(SPOT_2021, safety, clock), clock


def test_limits_from_recorded_exchange_info() -> None:
    path = DATA / "binance" / "cryptofeed" / "BINANCE.0"
    if not path.exists():
        pytest.skip(f"{path} absent: set WIRESENS_DATA to the recorded Binance data")
    body = path.read_bytes().split(b"\n", 1)[0].split(b": ", 1)[1]
    info: ExchangeInfo = DECODERS[ExchangeInfo].decode(body)
    rl = RateLimitState.from_exchange_info(info, clock=Clock(T0))
    assert {k: w.limit for k, w in rl.windows.items()} == {
        "REQUEST_WEIGHT:1M": 1200,
        "ORDERS:10S": 50,
        "ORDERS:1D": 160000,
        "RAW_REQUESTS:5M": 6100,
    }


def test_interval_key() -> None:
    assert interval_key("MINUTE", 1) == "1M" and interval_key("second", 10) == "10S"


def test_headers_set_usage_any_case() -> None:
    rl, _ = state()
    rl.update_from_headers(
        {"x-mbx-used-weight-1m": "1190", "X-MBX-ORDER-COUNT-10S": "3", "X-MBX-ORDER-COUNT-1D": "40"}
    )
    h = rl.headroom()
    assert h == {
        "REQUEST_WEIGHT:1M": 10,
        "ORDERS:10S": 47,
        "ORDERS:1D": 159960,
        "RAW_REQUESTS:5M": 6100,
    }
    assert rl.should_wait(weight=10) == 0.0
    # 11 more weight does not fit: wait for the minute to end (started at T0, now T0+5)
    assert rl.should_wait(weight=11) == pytest.approx(55.0)


def test_window_rollover_forgets_usage() -> None:
    rl, clock = state()
    rl.update_from_headers([("X-MBX-USED-WEIGHT-1M", "1200")])
    assert rl.should_wait(1) == pytest.approx(55.0)
    clock.t = T0 + 60.0
    assert rl.should_wait(1) == 0.0 and rl.headroom()["REQUEST_WEIGHT:1M"] == 1200


def test_record_counts_between_headers() -> None:
    rl, _ = state()
    for _ in range(50):
        assert rl.should_wait(weight=1, orders=1) == 0.0
        rl.record(weight=1, orders=1)
    assert rl.headroom()["ORDERS:10S"] == 0 and rl.headroom()["RAW_REQUESTS:5M"] == 6050
    assert rl.should_wait(weight=1, orders=1) == pytest.approx(5.0)  # the 10 s window ends at T0+10
    assert rl.should_wait(weight=1, orders=0) == 0.0  # a query still fits


def test_safety_margin() -> None:
    rl, _ = state(safety=0.9)
    rl.update_from_headers({"X-MBX-USED-WEIGHT-1M": "1080"})
    assert rl.headroom()["REQUEST_WEIGHT:1M"] == 0 and rl.should_wait(1) > 0
    with pytest.raises(ValueError, match="safety"):
        RateLimitState(SPOT_2021, safety=0)


def test_429_with_retry_after_blocks_that_long() -> None:
    rl, clock = state()
    rl.update_from_headers({"X-MBX-USED-WEIGHT-1M": "1250", "Retry-After": "17"}, status=429)
    assert rl.should_wait(0) == pytest.approx(17.0) and not rl.banned
    assert set(rl.headroom().values()) == {0}
    clock.t += 17.0
    assert rl.should_wait(0, 0) == 0.0


def test_429_without_retry_after_waits_for_the_order_window() -> None:
    rl, _ = state()
    rl.update_from_headers({"X-MBX-ORDER-COUNT-1D": "160000"}, status=429)
    day_end = (T0 // 86400 + 1) * 86400
    assert rl.should_wait(1, 0) == pytest.approx(day_end - (T0 + 5.0))
    rl2, _ = state()
    rl2.update_from_headers({}, status=429)  # nothing says which: the shortest order window
    assert rl2.should_wait(1) == pytest.approx(5.0)


def test_418_ban() -> None:
    rl, _ = state()
    rl.update_from_headers({"Retry-After": "300"}, status=418)
    assert rl.banned and rl.should_wait() == pytest.approx(300.0)
    rl2, _ = state()
    rl2.update_from_headers({"Retry-After": "soon"}, status=418)
    assert rl2.should_wait() == pytest.approx(DEFAULT_BAN_SECONDS)


def test_ws_rate_limits_and_unknown_headers() -> None:
    rl, _ = state()
    rl.update_from_ws(
        [
            RateLimit("ORDERS", "SECOND", 10, 50, count=12),
            RateLimit("REQUEST_WEIGHT", "MINUTE", 1, 6000, count=321),
        ]
    )
    assert rl.headroom()["ORDERS:10S"] == 38 and rl.headroom()["REQUEST_WEIGHT:1M"] == 5679
    rl.update_from_headers({"X-MBX-USED-WEIGHT-1H": "7", "X-MBX-USED-WEIGHT-X": "1", "X": "y"})
    assert rl.headroom()["REQUEST_WEIGHT:1H"] == -1  # seen, bound unknown
    assert rl.windows["REQUEST_WEIGHT:1H"].used == 7


@given(st.integers(0, 2000), st.integers(0, 60), st.floats(0, 59.999))
def test_should_wait_is_zero_iff_it_fits(used: int, weight: int, offset: float) -> None:
    rl = RateLimitState(SPOT_2021[:1], clock=Clock(T0 + offset))
    rl.update_from_headers({"X-MBX-USED-WEIGHT-1M": str(used)})
    wait = rl.should_wait(weight)
    if used + weight <= 1200:
        assert wait == 0.0
    else:
        # Epoch seconds as floats resolve ~2e-7 s: compare at a microsecond.
        assert wait == pytest.approx(60.0 - offset, abs=1e-6)


def test_a_retry_after_is_waited_out_with_a_margin() -> None:
    # retryAfter is whole ms of the exchange's clock: sending at that instant can land
    # inside the 429's window, which the exchange answers with a 418 ban.
    now = [1_000.0]
    state = RateLimitState((), clock=lambda: now[0])
    state.block_until(1_002.5)
    now[0] = 1_002.5
    assert state.should_wait() == pytest.approx(RETRY_MARGIN_S)
    now[0] = 1_002.5 + RETRY_MARGIN_S + 1e-6
    assert state.should_wait() == 0
