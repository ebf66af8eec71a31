"""Two node agents against a real etcd and a real API server, driven through the CLI.

Agent ``a`` runs in its own process (``python -m wiresens.control``) so it can be
killed like a crashed node; agent ``b`` runs in this process so the test can read what
its node loop would read (``desired_policies``, ``pending_commands``, ``status``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from wiresens.cli import app
from wiresens.control.agent import NodeAgent
from wiresens.control.client import Client
from wiresens.control.context import Context
from wiresens.testing.services import Service

from .conftest import TRADER, VIEWER, ApiServer, free_port, wait_until

runner = CliRunner()

POLICY = """
[[policy]]
name = "mm"
class = "examples/market_maker.py:MarketMaker"
node = "b"
symbols = ["BTCUSDT"]
params = {{ spread_bps = {spread}, size = "0.001" }}
"""


def cli(srv: ApiServer, *args: str, token: str | None = None) -> Any:
    """Run a CLI command against ``srv``; returns the result (exit_code, stdout, stderr)."""
    env = srv.env() if token is None else srv.env(token)
    return runner.invoke(app, list(args), env=env)


def cli_json(srv: ApiServer, *args: str) -> Any:
    r = cli(srv, *args, "-o", "json")
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def node_states(srv: ApiServer) -> dict[str, str]:
    return {n["name"]: n["state"] for n in cli_json(srv, "get", "nodes")}


def write_policy(tmp_path: Path, spread: int) -> str:
    p = tmp_path / f"policy-{spread}.toml"
    p.write_text(POLICY.format(spread=spread))
    return str(p)


@pytest.fixture
def agent_b(apiserver: ApiServer) -> Iterator[NodeAgent]:
    agent = NodeAgent(apiserver.etcd, apiserver.prefix, "b", {"cpus": 2}, ttl=2).start()
    assert agent.wait_synced(20), agent.status()
    yield agent
    agent.stop()


@pytest.fixture
def agent_a(apiserver: ApiServer, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    log = (tmp_path / "agent-a.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "wiresens.control",
            "--etcd",
            apiserver.etcd,
            "--prefix",
            apiserver.prefix,
            "--node",
            "a",
            "--ttl",
            "2",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait(10)
    log.close()


def test_apply_reaches_the_right_node_and_a_dead_node_is_lost(
    apiserver: ApiServer,
    agent_b: NodeAgent,
    agent_a: subprocess.Popen[bytes],
    tmp_path: Path,
) -> None:
    wait_until(
        lambda: node_states(apiserver) == {"a": "Ready", "b": "Ready"}, 30, "both agents registered"
    )
    assert agent_b.desired_policies() == []

    r = cli(apiserver, "apply", "-f", write_policy(tmp_path, 5))
    assert r.exit_code == 0, r.output
    assert "policy/mm created" in r.stdout
    wait_until(
        lambda: [p.name for p in agent_b.desired_policies() or []] == ["mm"],
        20,
        "b's agent to see policy mm",
    )
    (spec,) = agent_b.desired_policies() or []
    assert spec.params == {"spread_bps": 5, "size": "0.001"}
    assert spec.node == "b" and spec.symbols == ["BTCUSDT"] and spec.enabled
    version = agent_b.desired_version()

    # same policy, changed params: b sees the new params, not a second policy
    r = cli(apiserver, "apply", "-f", write_policy(tmp_path, 7))
    assert r.exit_code == 0, r.output
    assert "configured" in r.stdout and "generation 2" in r.stdout
    wait_until(
        lambda: (agent_b.desired_policies() or [spec])[0].params.get("spread_bps") == 7,
        20,
        "b's agent to see spread_bps = 7",
    )
    assert [p.name for p in agent_b.desired_policies() or []] == ["mm"]
    assert agent_b.desired_version() > version
    (rec,) = cli_json(apiserver, "get", "policies")
    assert rec["generation"] == 2 and rec["spec"]["params"]["spread_bps"] == 7

    # a node's report becomes orders and positions
    agent_b.report(
        {
            "node": "b",
            "actors": [{"name": "policy:mm", "state": "RUNNING"}],
            "policies": [
                {
                    "policy": "mm",
                    "symbol": "BTCUSDT",
                    "open_orders": 2,
                    "orders": 10,
                    "fills": 3,
                    "rejects": 1,
                    "position": "0.00200000",
                    "realized_pnl": "1.50000000",
                    "unrealized_pnl": "-0.25000000",
                }
            ],
        }
    )
    wait_until(lambda: cli_json(apiserver, "get", "orders") != [], 20, "b's report")
    (o,) = cli_json(apiserver, "get", "orders")
    assert (o["node"], o["policy"], o["open_orders"], o["fills"]) == ("b", "mm", 2, 3)
    (p,) = cli_json(apiserver, "get", "positions")
    assert (p["position"], p["realized_pnl"], p["unrealized_pnl"]) == (
        "0.00200000",
        "1.50000000",
        "-0.25000000",
    )
    r = cli(apiserver, "describe", "node", "b")
    assert r.exit_code == 0 and "State:         Ready" in r.stdout and "mm" in r.stdout

    # node a dies without a goodbye: its lease expires and it shows Lost; b stays Ready
    agent_a.kill()
    agent_a.wait(10)
    wait_until(
        lambda: node_states(apiserver) == {"a": "Lost", "b": "Ready"}, 30, "a's lease to expire"
    )
    r = cli(apiserver, "get", "nodes")
    assert r.exit_code == 0
    assert any(line.split()[:2] == ["a", "Lost"] for line in r.stdout.splitlines())

    # kill switch on b: a command to take, and the switch itself
    r = cli(apiserver, "kill", "--node", "b", "--reason", "test")
    assert r.exit_code == 0 and "told b" in r.stdout
    wait_until(lambda: agent_b.killed(), 20, "b's kill switch")
    got: list[Any] = []
    wait_until(lambda: bool(got.extend(agent_b.pending_commands()) or got), 20, "kill command")
    assert [(c.kind, c.node, c.policy) for c in got] == [("kill", "b", None)]
    wait_until(
        lambda: cli_json(apiserver, "get", "commands") == [],
        20,
        "the taken command to be deleted from etcd",
    )
    assert agent_b.pending_commands() == []  # delivered once
    r = cli(apiserver, "resume", "--node", "b")
    assert r.exit_code == 0, r.output
    wait_until(lambda: not agent_b.killed(), 20, "b's kill switch lifted")
    got.clear()
    wait_until(lambda: bool(got.extend(agent_b.pending_commands()) or got), 20, "resume command")
    assert [c.kind for c in got] == ["resume"]

    # a policy's switch covers that policy only
    r = cli(apiserver, "kill", "--policy", "mm")
    assert r.exit_code == 0 and "kill policy:mm; told b" in r.stdout, r.output
    wait_until(lambda: agent_b.killed("mm"), 20, "mm's kill switch")
    assert not agent_b.killed() and not agent_b.killed("other")
    assert [s["scope"] for s in cli_json(apiserver, "get", "switches")] == ["policy:mm"]
    assert cli(apiserver, "resume", "--policy", "mm").exit_code == 0
    wait_until(lambda: not agent_b.killed("mm"), 20, "mm's kill switch lifted")
    r = cli(apiserver, "resume", "--policy", "mm")
    assert r.exit_code == 2 and "no kill switch 'policy:mm'" in r.stderr

    r = cli(apiserver, "delete", "policy", "mm")
    assert r.exit_code == 0, r.output
    wait_until(lambda: agent_b.desired_policies() == [], 20, "b to drop mm")

    # the lost node can be forgotten by an admin, not by a trader
    r = cli(apiserver, "delete", "node", "a", token=TRADER)
    assert r.exit_code == 3, r.output
    r = cli(apiserver, "delete", "node", "a")
    assert r.exit_code == 0, r.output
    assert node_states(apiserver) == {"b": "Ready"}


def test_etcd_outage_is_fail_static_and_converges(
    apiserver: ApiServer, agent_b: NodeAgent, etcd_service: Service, tmp_path: Path
) -> None:
    assert cli(apiserver, "apply", "-f", write_policy(tmp_path, 5)).exit_code == 0
    wait_until(lambda: len(agent_b.desired_policies() or []) == 1, 20, "b to see mm")
    before = agent_b.desired_policies()

    etcd_service.stop()
    try:
        wait_until(lambda: not agent_b.status().connected, 30, "b to notice etcd is down")
        st = agent_b.status()
        assert st.mode == "fail-static" and st.desired_known and st.policies == 1
        assert apiserver.etcd in st.last_error
        assert agent_b.desired_policies() == before  # fail-static
        r = cli(apiserver, "get", "nodes")
        assert r.exit_code == 5, r.output
        assert "is up but etcd is unreachable" in r.stderr and apiserver.etcd in r.stderr
        r = cli(apiserver, "apply", "-f", write_policy(tmp_path, 9))
        assert r.exit_code == 5, r.output
        with pytest.raises(urllib.error.HTTPError) as exc:
            urllib.request.urlopen(apiserver.url + "/healthz", timeout=10)
        assert exc.value.code == 503
        assert agent_b.desired_policies() == before
    finally:
        etcd_service.start()

    wait_until(lambda: agent_b.status().mode == "connected", 30, "b to reconnect")
    assert agent_b.status().sessions >= 2
    wait_until(
        lambda: cli(apiserver, "get", "nodes").exit_code == 0, 30, "the API server's etcd link"
    )
    assert node_states(apiserver) == {"b": "Ready"}
    assert cli(apiserver, "apply", "-f", write_policy(tmp_path, 11)).exit_code == 0
    wait_until(
        lambda: (agent_b.desired_policies() or before or [])[0].params["spread_bps"] == 11,
        20,
        "b to converge to spread_bps = 11",
    )


def test_roles_and_errors_that_say_what_to_do(apiserver: ApiServer, tmp_path: Path) -> None:
    path = write_policy(tmp_path, 5)
    r = cli(apiserver, "apply", "-f", path, token=VIEWER)
    assert r.exit_code == 3 and "needs 'trader'" in r.stderr
    body = json.dumps({"name": "mm", "class": "x:Y", "node": "b"}).encode()
    req = urllib.request.Request(
        apiserver.url + "/api/v1/policies/mm",
        data=body,
        method="PUT",
        headers={"Authorization": f"Bearer {VIEWER}"},
    )
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(req, timeout=10)
    assert exc.value.code == 403
    req = urllib.request.Request(apiserver.url + "/api/v1/policies", method="GET")
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(req, timeout=10)
    assert exc.value.code == 401
    assert cli(apiserver, "get", "policies", token=VIEWER).exit_code == 0  # viewer reads
    assert cli(apiserver, "apply", "-f", path, token=TRADER).exit_code == 0

    # compare-and-set: a stale revision is refused with what to do
    (rec,) = cli_json(apiserver, "get", "policies")
    r = cli(
        apiserver, "apply", "-f", write_policy(tmp_path, 6), "--revision", str(rec["revision"] - 1)
    )
    assert r.exit_code == 2 and "read it again" in r.stderr
    r = cli(apiserver, "apply", "-f", write_policy(tmp_path, 6), "--revision", str(rec["revision"]))
    assert r.exit_code == 0, r.output

    bad = tmp_path / "bad.toml"
    bad.write_text('[[policy]]\nname = "x y"\nclass = "a:B"\nnode = "b"\n')
    r = cli(apiserver, "apply", "-f", str(bad))
    assert r.exit_code == 2 and "$.name" in r.stderr

    leaky = tmp_path / "leaky.toml"
    leaky.write_text(
        '[[policy]]\nname = "x"\nclass = "a:B"\nnode = "b"\n'
        '[policy.params]\nvenue = { api_secret = "s3cr3t" }\n'
    )
    r = cli(apiserver, "apply", "-f", str(leaky))
    assert r.exit_code == 2 and "$.params.venue.api_secret looks like a secret" in r.stderr
    assert [p["spec"]["name"] for p in cli_json(apiserver, "get", "policies")] == ["mm"]

    r = cli(apiserver, "get", "nodes", "--server", f"http://127.0.0.1:{free_port()}")
    assert r.exit_code == 4
    assert "is down" in r.stderr and "wiresens apiserver" in r.stderr
    r = cli(apiserver, "get", "policies", "nope")
    assert r.exit_code == 2 and "no policy 'nope'" in r.stderr


def test_watch_streams_changes(apiserver: ApiServer, tmp_path: Path) -> None:
    cl = Client(Context(server=apiserver.url, token=VIEWER))
    (rec,) = cli_json(apiserver, "apply", "-f", write_policy(tmp_path, 5))
    assert cli(apiserver, "kill", "--node", "b").exit_code == 0
    assert cli(apiserver, "delete", "policy", "mm").exit_code == 0
    # replay from the apply's revision; the stream only ends with the server, so stop
    # after the events this test made
    seen = []
    for event, data in cl.events(revision=rec["revision"], kinds="policies,switches"):
        if event != "hello":
            seen.append((event, data["type"], data["name"]))
        if len(seen) == 3:
            break
    assert seen == [
        ("policies", "PUT", "mm"),
        ("switches", "PUT", "node:b"),
        ("policies", "DELETE", "mm"),
    ]


@pytest.mark.parametrize("apiserver", [0.3], indirect=True)
def test_history_is_compacted(apiserver: ApiServer, tmp_path: Path) -> None:
    cl = Client(Context(server=apiserver.url, token=VIEWER))
    (rec,) = cli_json(apiserver, "apply", "-f", write_policy(tmp_path, 5))
    assert cli(apiserver, "apply", "-f", write_policy(tmp_path, 6)).exit_code == 0

    def first_event() -> tuple[str, Any]:
        for event, data in cl.events(revision=rec["revision"]):
            if event != "hello":
                return event, data
        raise AssertionError("the stream ended without an event")

    # rounds of the compactor: the first notes the revision, the next compacts to it
    wait_until(lambda: first_event()[0] == "error", 30, "the apply's revision to be compacted")
    _, data = first_event()
    assert data["compacted"] and f"revision {rec['revision']} is compacted" in data["detail"]
    # only history goes: the current state and new writes are untouched
    assert cli(apiserver, "apply", "-f", write_policy(tmp_path, 7)).exit_code == 0
    assert cli_json(apiserver, "get", "policies")[0]["generation"] == 3
