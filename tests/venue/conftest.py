"""Venue fixtures: a venue serving in-process on a free 127.0.0.1 port, with known keys."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from wiresens.binance.signing import new_ed25519_key
from wiresens.venue import RunningVenue, VenueConfig, start_venue
from wiresens.venue.accounts import AccountConfig, ApiKey, build_accounts

from .pybinance import close_loop

HMAC_KEY = "venue-test-hmac-key-alice"
HMAC_SECRET = "venue-test-hmac-secret-alice-0123456789"
BOB_KEY = "venue-test-hmac-key-bob"
BOB_SECRET = "venue-test-hmac-secret-bob-0123456789"
ED_KEY = "venue-test-ed25519-key-alice"


@dataclass
class Keys:
    ed_private_pem: str
    ed_public_pem: str


@pytest.fixture(scope="session", autouse=True)
def _close_client_loop() -> Iterator[None]:
    yield
    close_loop()


@pytest.fixture(scope="session")
def keys() -> Keys:
    private, public = new_ed25519_key()
    return Keys(private.decode(), public.decode())


def make_accounts(keys: Keys) -> list[AccountConfig]:
    return [
        AccountConfig(
            "alice",
            keys=[
                ApiKey(HMAC_KEY, "HMAC", secret=HMAC_SECRET),
                ApiKey(ED_KEY, "ED25519", public_key=keys.ed_public_pem),
            ],
            balances={"USDT": "100000", "BTC": "2"},
        ),
        AccountConfig(
            "bob",
            keys=[ApiKey(BOB_KEY, "HMAC", secret=BOB_SECRET)],
            balances={"USDT": "100000", "BTC": "2"},
        ),
    ]


def run_venue(keys: Keys, **cfg: object) -> RunningVenue:
    base: dict[str, object] = {
        "port": 0,
        "symbols": ("BTCUSDT", "ETHUSDT"),
        "market": "synthetic:7",
    }
    base.update(cfg)
    return start_venue(VenueConfig(**base), build_accounts(make_accounts(keys)))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def venue(keys: Keys) -> Iterator[RunningVenue]:
    """A venue with a synthetic market moving every 50 ms and short WebSocket keep-alive."""
    v = run_venue(keys, synthetic_interval_ms=50, ping_interval_s=0.3, pong_timeout_s=0.6)
    yield v
    v.stop()


@pytest.fixture
def quiet_venue(keys: Keys) -> Iterator[RunningVenue]:
    """A venue without market liquidity: only the test's orders move the book."""
    v = run_venue(keys, market="none", symbols=("BTCUSDT",))
    yield v
    v.stop()
