"""A whole node with two accounts on the local venue, out of the box.

``wiresens.node.Node`` provisions one venue account (fresh Ed25519 key) per
``[[feed.accounts]]`` entry; two taker policies, one per account, each trade once. The
venue's own records, read through its REST API with each account's key, show each
policy's fill in its own account; ``node status`` shows both sessions, their rate
headroom and their reconciliations, which find no difference after the node's own fills.
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

import pytest

from wiresens.binance.signing import Ed25519Signer
from wiresens.config import load_config
from wiresens.errors import ConfigError
from wiresens.fixedpoint import to_fixed
from wiresens.node import Node, read_status, render_status

REPO = Path(__file__).resolve().parents[2]
TAKER = REPO / "tests" / "e2e" / "policies.py"


def _config(tmp: Path) -> Path:
    text = f"""
[node]
name = "acct{uuid.uuid4().hex[:6]}"
shm_prefix = "wstest"
run_dir = "{tmp / "run"}"
log_target = "file"

[feed]
venue = "local"
symbols = ["BTCUSDT"]
streams = ["bookTicker", "trade"]

[[feed.accounts]]
name = "alpha"

[[feed.accounts]]
name = "beta"
risk = {{ max_open_orders = 5, max_open_notional = "100000" }}

[feed.local]
market = "synthetic:42:100"

[execution]
reconcile_interval_s = 0.5

[[policy]]
name = "a"
class = "{TAKER}:Taker"
account = "alpha"
params = {{ qty = 100000, max_trades = 1 }}

[[policy]]
name = "b"
class = "{TAKER}:Taker"
account = "beta"
params = {{ qty = 200000, max_trades = 1 }}
"""
    path = tmp / "node.toml"
    path.write_text(text)
    return path


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    n = Node(load_config(_config(tmp_path), check_system=False))
    try:
        n.start()
        yield n
    finally:
        n.stop()


def _wait(node: Node, what: str, cond: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        node.poll()
        got = cond()
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _get(base: str, path: str, api_key: str, pem: bytes, **params: object) -> Any:
    params["timestamp"] = time.time_ns() // 1_000_000
    query = urllib.parse.urlencode(params)
    sig = urllib.parse.quote(Ed25519Signer(pem).sign(query), safe="")
    req = urllib.request.Request(
        f"{base}{path}?{query}&signature={sig}", headers={"X-MBX-APIKEY": api_key}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


@pytest.mark.slow
def test_two_accounts_in_one_node(node: Node) -> None:
    assert node.master is not None
    feed = node.master.handle("feed")
    assert feed is not None
    accounts = feed.spec["kwargs"]["accounts"]
    assert [a["name"] for a in accounts] == ["alpha", "beta"]
    assert accounts[0]["api_key"] != accounts[1]["api_key"]

    def filled() -> bool:
        rows = {p["policy"]: p for p in read_status(node.run_dir)["policies"]}
        return all(rows.get(n, {}).get("fills", 0) >= 1 for n in ("a", "b"))

    _wait(node, "one fill per policy", filled)
    base = node.endpoints["rest"]
    for acct, qty in zip(accounts, ("0.001", "0.002"), strict=True):
        trades = _get(
            base, "/api/v3/myTrades", acct["api_key"], acct["private_key_pem"], symbol="BTCUSDT"
        )
        assert sum(to_fixed(t["qty"]) for t in trades) == to_fixed(qty), acct["name"]
        assert all(t["isBuyer"] for t in trades)

    def reconciled_after_fills() -> list[dict[str, Any]] | None:
        rows: list[dict[str, Any]] = read_status(node.run_dir)["accounts"]
        # The feed rewrites its part every second: wait for one that counts the orders.
        done = all(r["reconciles"] >= 3 and r["orders_sent"] >= 1 for r in rows)
        return rows if done else None

    rows = _wait(node, "reconciliations after the fills", reconciled_after_fills)
    assert [r["name"] for r in rows] == ["alpha", "beta"]
    for r in rows:
        assert r["logged_on"] and r["connected"] and not r["fatal"], r
        assert r["differences"] == 0, r  # the node's own fills are expected
        assert r["headroom"]["ORDERS:10S"] > 0
    text = render_status(read_status(node.run_dir))
    assert "ACCOUNT" in text and "RATE HEADROOM" in text
    alpha_line = next(line for line in text.splitlines() if line.startswith("alpha "))
    assert "logged on" in alpha_line and "orders " in alpha_line and "weight " in alpha_line
    manifest = json.loads((node.run_dir / "node.json").read_text())
    assert manifest["accounts"] == ["alpha", "beta"]


def test_every_accounts_keys_go_to_the_feed(tmp_path: Path) -> None:
    """With a Binance venue each [[feed.accounts]] key file is read, in index order."""
    (tmp_path / "ed.pem").write_bytes(
        b"-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----\n"
    )
    for name, body in (
        ("a.toml", 'api_key = "key-a"\nsecret = "secret-a"\n'),
        ("b.toml", 'api_key = "key-b"\nprivate_key = "ed.pem"\n'),
    ):
        (tmp_path / name).write_text(body)
        (tmp_path / name).chmod(0o600)
    text = (
        f'[node]\nrun_dir = "{tmp_path / "run"}"\n[feed]\nvenue = "binance-testnet"\n'
        '[[feed.accounts]]\nname = "a"\nkey_file = "a.toml"\n'
        '[[feed.accounts]]\nname = "b"\nkey_file = "b.toml"\n'
    )
    (tmp_path / "node.toml").write_text(text)
    node = Node(load_config(tmp_path / "node.toml", check_system=False))
    creds = node._credentials()
    assert [(c["name"], c["api_key"]) for c in creds] == [("a", "key-a"), ("b", "key-b")]
    assert creds[0]["secret"] == "secret-a" and "private_key_pem" not in creds[0]
    assert creds[1]["private_key_pem"].startswith(b"-----BEGIN PRIVATE KEY-----")
    assert node.endpoints["ws_api"].startswith("wss://")
    # A key file gone after the config check: the error names the account's key.
    (tmp_path / "b.toml").unlink()
    with pytest.raises(ConfigError, match=r"`feed.accounts\[1\]\.key_file`"):
        node._credentials()
