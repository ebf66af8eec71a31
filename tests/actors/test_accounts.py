"""Two exchange accounts in one node: the real feed and execution actors (spawned by a
StrategyMaster) against the local venue serving in-process.

The test stands in for two policies, one per account: it writes their order requests
into their Opportunity Queues and reads their report rings. It checks, through the
venue's REST API with each account's own key, that each policy's orders land in its
own account; that reports come back to the right policy with the right account; that
a balance changed behind the node's back (the venue's account state edited directly,
as an admin would) is found by the periodic reconciliation, reported to that
account's policy and corrects its position; and that the node's own fills cause no
difference. A key the venue refuses stops the feed with an error naming the account.
"""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from wiresens.actors.actor import ActorSpec
from wiresens.actors.feed import FeedActor
from wiresens.actors.master import StrategyMaster
from wiresens.actors.topology import Topology
from wiresens.binance.signing import Ed25519Signer, HmacSigner, new_ed25519_key
from wiresens.config import decode_config
from wiresens.errors import ConfigError
from wiresens.instruments import InstrumentTable
from wiresens.node import FEED_STATUS
from wiresens.node import Node as WiresensNode
from wiresens.policy import ClOrdIdGen
from wiresens.records import (
    ACCOUNT_DIFF_FLAG,
    ACCOUNT_UPDATE,
    EXECUTION_REPORT,
    POSITION_CORRECTED_FLAG,
    POSITION_UPDATE,
    SCALE,
    TOP_OF_BOOK,
    ExecStatus,
    ExecType,
    OrderType,
    RecordKind,
    Side,
    TimeInForce,
    new_record,
)
from wiresens.shm import Ring, SeqlockSlots, list_segments, unlink
from wiresens.venue import RunningVenue, VenueConfig, start_venue
from wiresens.venue.accounts import AccountConfig, ApiKey, build_accounts

pytestmark = pytest.mark.slow

ALPHA_KEY = "accounts-test-alpha-ed25519"
BETA_KEY = "accounts-test-beta-hmac"
BETA_SECRET = "accounts-test-beta-secret-0123456789"


def _ed25519() -> tuple[bytes, str]:
    private, public = new_ed25519_key()
    return private, public.decode()


class Rest:
    """Signed REST calls with one account's key (the test's own client of the venue)."""

    def __init__(self, base: str, api_key: str, sign: Callable[[str], str]) -> None:
        self.base, self.api_key, self.sign = base, api_key, sign

    def get(self, path: str, **params: object) -> Any:
        params["timestamp"] = time.time_ns() // 1_000_000
        query = urllib.parse.urlencode(params)
        sig = urllib.parse.quote(self.sign(query), safe="")
        req = urllib.request.Request(
            f"{self.base}{path}?{query}&signature={sig}", headers={"X-MBX-APIKEY": self.api_key}
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())


class Node:
    """Feed + execution for two accounts and two policy slots (policy p -> account p)."""

    def __init__(self, venue: RunningVenue, alpha_pem: bytes, tmp: Path, **feed_kw: Any) -> None:
        self.prefix = f"wstest.{uuid.uuid4().hex[:8]}"
        body = urllib.request.urlopen(f"{venue.base_url}/api/v3/exchangeInfo", timeout=10).read()
        self.table = InstrumentTable.from_exchange_info(body, ["BTCUSDT"])
        self.topo = Topology(self.prefix, 2, 1, md_capacity=1024, order_capacity=1024)
        self.names = self.topo.create()
        self.feed_status = tmp / FEED_STATUS
        self.exec_status = tmp / "execution.json"
        common = {
            "prefix": self.prefix,
            "policies": 2,
            "symbol_count": 1,
            "instruments": list(self.table),
        }
        accounts = feed_kw.pop(
            "accounts",
            [
                {"name": "alpha", "api_key": ALPHA_KEY, "private_key_pem": alpha_pem},
                {"name": "beta", "api_key": BETA_KEY, "secret": BETA_SECRET},
            ],
        )
        self.feed_kw = {
            **common,
            "policy_symbols": [[1], [1]],
            "endpoints": {"rest": venue.base_url, "ws": venue.ws_url, "ws_api": venue.ws_url},
            "streams": ["bookTicker"],
            "accounts": accounts,
            "status_file": str(self.feed_status),
        }
        self.exec_kw = {
            **common,
            "cancel_timeout": 5.0,
            "accounts": [a["name"] for a in accounts],
            "policy_accounts": [0, 1],
            "reconcile_interval_s": 0.5,
            "status_file": str(self.exec_status),
        }
        self.oq = [Ring.attach(self.topo.oq(p), None).producer() for p in range(2)]
        self.er = [Ring.attach(self.topo.er(p), None).consumer() for p in range(2)]
        self.got: list[list[bytes]] = [[], []]
        self.ids = [ClOrdIdGen(p) for p in range(2)]
        self.master: StrategyMaster | None = None

    def start(self) -> None:
        specs = [
            ActorSpec(
                name="feed",
                group="feed",
                factory="wiresens.actors.feed:FeedActor",
                idle="block",
                kwargs=self.feed_kw,
            ),
            ActorSpec(
                name="execution",
                group="execution",
                factory="wiresens.actors.execution:Execution",
                idle="block",
                kwargs=self.exec_kw,
            ),
        ]
        self.master = StrategyMaster(self.prefix, specs, max_restarts=0)
        self.master.owned_segments.extend(self.names)
        self.master.start()

    def stop(self) -> None:
        if self.master is not None:
            self.master.stop()
            self.master.close()
        for n in self.names:
            unlink(n)

    def pump(self) -> None:
        buf = bytearray(128)
        for p in range(2):
            while self.er[p].try_read(buf):
                self.got[p].append(bytes(buf))

    def wait(self, cond: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self.pump()
            if cond():
                return
            assert self.master is not None
            assert not self.master.poll(), self.master.events
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.02)

    def mid(self) -> int:
        tob = SeqlockSlots.attach(self.topo.tob, TOP_OF_BOOK)
        buf = memoryview(bytearray(TOP_OF_BOOK.itemsize))
        try:
            if tob.read(0, buf) <= 0:
                return 0
            t = np.frombuffer(buf, TOP_OF_BOOK)[0]
            return (int(t["bid_px"]) + int(t["ask_px"])) // 2 if t["bid_px"] else 0
        finally:
            tob.close()

    def order(
        self, p: int, *, price: int, qty: int, side: int = Side.BUY, market: bool = False
    ) -> int:
        r = new_record(RecordKind.ORDER_NEW)
        cid = self.ids[p].next()
        r["symbol"], r["cl_ord_id"], r["policy"], r["account"] = 1, cid, p, p
        r["price"], r["qty"], r["side"] = (0 if market else price), qty, side
        r["order_type"] = OrderType.MARKET if market else OrderType.LIMIT
        r["tif"] = TimeInForce.NONE if market else TimeInForce.GTC
        assert self.oq[p].try_write(memoryview(r).cast("B"))
        return cid

    def reports(self, p: int) -> list[Any]:
        return [
            np.frombuffer(b, EXECUTION_REPORT)[0]
            for b in self.got[p]
            if b[0] == RecordKind.EXECUTION_REPORT
        ]

    def records(self, p: int, kind: RecordKind, dtype: np.dtype[Any]) -> list[Any]:
        return [np.frombuffer(b[:64], dtype)[0] for b in self.got[p] if b[0] == kind]

    def feed(self) -> dict[str, Any]:
        try:
            body: dict[str, Any] = json.loads(self.feed_status.read_text())
        except (OSError, ValueError):
            return {}
        return body

    def status(self) -> dict[str, Any]:
        try:
            return {a["name"]: a for a in json.loads(self.exec_status.read_text())["accounts"]}
        except (OSError, ValueError, KeyError):
            return {}


@pytest.fixture
def keys() -> tuple[bytes, str]:
    return _ed25519()


@pytest.fixture
def venue(keys: tuple[bytes, str]) -> Iterator[RunningVenue]:
    accounts = build_accounts(
        [
            AccountConfig(
                "alpha",
                keys=[ApiKey(ALPHA_KEY, "ED25519", public_key=keys[1])],
                balances={"USDT": "100000", "BTC": "2"},
            ),
            AccountConfig(
                "beta",
                keys=[ApiKey(BETA_KEY, "HMAC", secret=BETA_SECRET)],
                balances={"USDT": "50000", "BTC": "1"},
            ),
        ]
    )
    v = start_venue(
        VenueConfig(port=0, symbols=("BTCUSDT",), market="synthetic:7", synthetic_interval_ms=50),
        accounts,
    )
    yield v
    v.stop()


@pytest.fixture
def node(venue: RunningVenue, keys: tuple[bytes, str], tmp_path: Path) -> Iterator[Node]:
    n = Node(venue, keys[0], tmp_path)
    n.start()
    yield n
    n.stop()
    assert list_segments(n.prefix) == []


def test_two_accounts_route_reconcile_and_report(
    node: Node, venue: RunningVenue, keys: tuple[bytes, str]
) -> None:
    rest = [
        Rest(venue.base_url, ALPHA_KEY, Ed25519Signer(keys[0]).sign),
        Rest(venue.base_url, BETA_KEY, HmacSigner(BETA_SECRET).sign),
    ]
    # Both sessions logged on and both accounts' balances baselined.
    node.wait(
        lambda: (
            all(a["reconciles"] >= 1 for a in node.status().values())
            and bool(node.mid())
            and len(node.feed().get("accounts", ())) == 2
            and all(a["connected"] for a in node.feed()["accounts"])
        ),
        "both accounts reconciled once and a market",
    )
    feed = node.feed()
    assert [(a["name"], a["index"], a["logged_on"]) for a in feed["accounts"]] == [
        ("alpha", 0, True),
        ("beta", 1, False),  # an HMAC key: no session logon, each request signed
    ]
    for a in feed["accounts"]:
        assert a["headroom"]["ORDERS:10S"] > 0 and a["headroom"]["REQUEST_WEIGHT:1M"] > 0

    tick = SCALE // 100
    price = node.mid() * 9 // 10 // tick * tick
    qty = SCALE // 1000
    mine = [[node.order(p, price=price - i * tick, qty=qty) for i in range(3)] for p in range(2)]
    node.wait(
        lambda: all(
            sum(1 for r in node.reports(p) if r["exec_type"] == ExecType.NEW) == 3 for p in range(2)
        ),
        "3 acknowledgements per policy",
    )
    for p in range(2):
        reps = node.reports(p)
        assert sorted(int(r["cl_ord_id"]) for r in reps) == sorted(mine[p])
        assert {(int(r["policy"]), int(r["account"])) for r in reps} == {(p, p)}
        # Each account holds exactly its policy's orders at the venue.
        at_venue = rest[p].get("/api/v3/openOrders", symbol="BTCUSDT")
        assert sorted(int(o["clientOrderId"].removeprefix("wsn")) for o in at_venue) == sorted(
            mine[p]
        )

    # The node's own fill moves alpha's expected balances: no difference afterwards.
    node.order(0, price=0, qty=qty, market=True)
    node.wait(
        lambda: any(r["exec_type"] == ExecType.TRADE for r in node.reports(0)), "alpha's fill"
    )
    seen = node.status()["alpha"]["reconciles"]
    node.wait(lambda: node.status()["alpha"]["reconciles"] >= seen + 2, "two more reconciliations")
    assert node.status()["alpha"]["differences"] == 0

    # Behind the node's back: beta loses 10 USDT and gains 0.5 BTC at the venue.
    beta = venue.venue.accounts.accounts[1]
    beta.balance("USDT").free -= 10 * SCALE
    beta.balance("BTC").free += SCALE // 2
    node.wait(lambda: node.status()["beta"]["differences"] == 2, "beta's two differences")
    node.wait(
        lambda: (
            len(node.records(1, RecordKind.ACCOUNT_UPDATE, ACCOUNT_UPDATE)) == 2
            and len(node.records(1, RecordKind.POSITION_UPDATE, POSITION_UPDATE)) == 1
        ),
        "the difference reports on beta's policy ring",
    )
    diffs = {
        node.table.asset(int(r["asset"])): (int(r["free"]), int(r["locked"]))
        for r in node.records(1, RecordKind.ACCOUNT_UPDATE, ACCOUNT_UPDATE)
    }
    assert all(
        int(r["flags"]) == ACCOUNT_DIFF_FLAG and int(r["account"]) == 1
        for r in node.records(1, RecordKind.ACCOUNT_UPDATE, ACCOUNT_UPDATE)
    )
    # free = the venue's total (free + locked), locked = venue minus execution.
    assert diffs["USDT"][1] == -10 * SCALE
    assert diffs["BTC"] == (int(SCALE * 1.5), SCALE // 2)
    (pos,) = node.records(1, RecordKind.POSITION_UPDATE, POSITION_UPDATE)
    assert int(pos["flags"]) == POSITION_CORRECTED_FLAG
    assert (int(pos["policy"]), int(pos["account"]), int(pos["qty"])) == (1, 1, SCALE // 2)
    # Alpha saw nothing of it; beta's corrected expectation holds at the next rounds.
    assert node.records(0, RecordKind.ACCOUNT_UPDATE, ACCOUNT_UPDATE) == []
    status = node.status()
    assert status["alpha"]["differences"] == 0 and status["beta"]["positions_corrected"] == 1
    seen = status["beta"]["reconciles"]
    node.wait(lambda: node.status()["beta"]["reconciles"] >= seen + 2, "two more reconciliations")
    assert node.status()["beta"]["differences"] == 2

    # Stop: execution cancels every open order, each in its own account.
    assert node.master is not None
    node.master.stop()
    node.pump()
    for p in range(2):
        assert rest[p].get("/api/v3/openOrders", symbol="BTCUSDT") == []
        cancels = [r for r in node.reports(p) if r["status"] == ExecStatus.CANCELED]
        assert sorted(int(r["cl_ord_id"] or r["orig_cl_ord_id"]) for r in cancels) == sorted(
            mine[p]
        )


def test_a_refused_key_stops_the_feed_naming_the_account(
    venue: RunningVenue, keys: tuple[bytes, str], tmp_path: Path
) -> None:
    wrong_pem, _ = _ed25519()  # a key the venue has never seen for this api key
    n = Node(
        venue,
        keys[0],
        tmp_path,
        accounts=[
            {"name": "alpha", "api_key": ALPHA_KEY, "private_key_pem": keys[0]},
            {"name": "gamma", "api_key": ALPHA_KEY, "private_key_pem": wrong_pem},
        ],
    )
    try:
        feed = FeedActor(**n.feed_kw)
        feed.on_start()
        t0 = time.monotonic()
        with pytest.raises(ConfigError) as info:
            feed.run(lambda: time.monotonic() - t0 > 30, None, "block")
        msg = str(info.value)
        assert "account 'gamma'" in msg and "refused its API key" in msg
        assert "key_file" in msg  # what to do
        assert "alpha" not in msg
        status = json.loads(n.feed_status.read_text())
        assert status["fatal"] == msg
        by_name = {a["name"]: a for a in status["accounts"]}
        assert by_name["gamma"]["fatal"] == msg and by_name["alpha"]["fatal"] == ""
        assert time.monotonic() - t0 < 30  # failed at once, no silent retrying
        # The node supervising such a feed stops with that message (node up exits with it).
        cfg = decode_config(f'[node]\nrun_dir = "{tmp_path}"\n', "<test>", str(tmp_path))
        node = WiresensNode(cfg)
        node.master = StrategyMaster(f"{n.prefix}n", [])
        node.master.start()
        try:
            with pytest.raises(ConfigError, match="account 'gamma'"):
                node.poll()
        finally:
            node.master.stop()
            node.master.close()
    finally:
        n.stop()
