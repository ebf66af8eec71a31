"""A real node's status, published by an agent, read back as orders and positions.

The node (``wiresens node up``, built-in venue, the example market maker) runs in its
own process; this test plays the part the node's loop will play once the agent is
wired in: ``agent.report(read_status(run_dir))``.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from wiresens.cli import app
from wiresens.control.agent import NodeAgent
from wiresens.errors import WiresensError
from wiresens.node import read_status

from .conftest import ApiServer, wait_until

pytestmark = pytest.mark.slow
runner = CliRunner()


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Path]:
    name = f"cp{uuid.uuid4().hex[:6]}"
    cfg = tmp_path / "node.toml"
    cfg.write_text(
        f"""
[node]
name = "{name}"
shm_prefix = "wstest"
run_dir = "{tmp_path / "run"}"
data_dir = "{tmp_path / "data"}"
log_target = "file"

[feed]
venue = "local"
symbols = ["BTCUSDT"]

[feed.local]
market = "synthetic:3"

[[policy]]
name = "mm"
class = "examples.market_maker:MarketMaker"
timer_interval_ms = 200

[policy.params]
qty = 100000
max_position = 1000000
spread_bps = 1
"""
    )
    log = (tmp_path / "node.out").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "wiresens", "node", "up", "-c", str(cfg), "--quiet"],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=Path(__file__).parents[2],
    )
    try:
        yield tmp_path / "run"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()


def _status(run_dir: Path) -> dict[str, Any] | None:
    try:
        return read_status(run_dir)
    except (WiresensError, OSError, KeyError):
        return None  # not up yet


def test_a_real_nodes_report_becomes_orders_and_positions(apiserver: ApiServer, node: Path) -> None:
    wait_until(
        lambda: bool((st := _status(node)) and any(p["orders"] for p in st["policies"])),
        90,
        "the node to place orders",
        interval=0.2,
    )
    st = _status(node)
    assert st is not None
    agent = NodeAgent(apiserver.etcd, apiserver.prefix, st["node"], ttl=2).start()
    try:
        assert agent.wait_synced(20)
        agent.report(st)

        def orders() -> list[dict[str, Any]]:
            r = runner.invoke(app, ["get", "orders", "-o", "json"], env=apiserver.env())
            assert r.exit_code == 0, r.output
            out: list[dict[str, Any]] = json.loads(r.stdout)
            return out

        wait_until(lambda: orders() != [], 20, "the report in etcd")
        (row,) = orders()
        (mine,) = [p for p in st["policies"] if p["policy"] == "mm"]
        assert (row["node"], row["policy"], row["symbol"]) == (st["node"], "mm", "BTCUSDT")
        assert (row["orders"], row["fills"], row["open_orders"]) == (
            mine["orders"],
            mine["fills"],
            mine["open_orders"],
        )
        r = runner.invoke(app, ["get", "positions", "-o", "json"], env=apiserver.env())
        (pos,) = json.loads(r.stdout)
        assert (pos["position"], pos["realized_pnl"]) == (
            mine["position"],
            mine["realized_pnl"],
        )
        r = runner.invoke(app, ["describe", "node", st["node"]], env=apiserver.env())
        assert r.exit_code == 0 and "policy:mm" in r.stdout and "RUNNING" in r.stdout
    finally:
        agent.stop()
