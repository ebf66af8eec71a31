"""Two real nodes (``wiresens node up`` process trees, distinct names and shm prefixes)
register with the control plane; the CLI sees them, its kill switch reaches them, and
it starts a policy that no node.toml names on one of them.

Policy names are cluster-wide in the control plane, so each node's policy has its own."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from wiresens.node import read_status
from wiresens.testing.services import Service

from .conftest import ApiServer, wait_until
from .test_cluster import cli

HERE = Path(__file__).parent.parent / "e2e"


def _node(
    tmp: Path, name: str, etcd: str, prefix: str, spare: int = 2
) -> tuple[subprocess.Popen[bytes], Path]:
    cfg = tmp / f"{name}.toml"
    run_dir = tmp / f"run-{name}"
    cfg.write_text(f"""
[node]
name = "{name}"
shm_prefix = "wstest{uuid.uuid4().hex[:4]}"
run_dir = "{run_dir}"
log_target = "file"

[feed]
symbols = ["BTCUSDT"]

[feed.local]
market = "synthetic:5:100"

[control]
etcd = "{etcd}"
prefix = "{prefix}"
ttl_s = 3
spare_policy_slots = {spare}

[[policy]]
name = "taker-{name}"
class = "{HERE / "policies.py"}:Taker"
timer_interval_ms = 0
""")
    with open(tmp / f"{name}.out", "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "wiresens", "node", "up", "--config", str(cfg), "--quiet"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return proc, run_dir


def cli_ok(srv: ApiServer, *args: str) -> Any:
    """Run a mutating CLI command that must succeed. No retry: the API server's etcd
    deadline (5 s, --etcd-timeout) is no longer missed under the suite's load, as the
    2 s one was; a miss would say "etcd is slow" here."""
    r = cli(srv, *args)
    assert r.exit_code == 0, r.output
    return r


def _killed(run_dir: Path) -> bool:
    pols = read_status(run_dir)["policies"]
    assert pols, "the node reports no policy yet"
    return all(p["killed"] for p in pols)


@pytest.mark.slow
def test_two_real_nodes_driven_from_the_cli(
    apiserver: ApiServer, tmp_path: Path, etcd_service: Service
) -> None:
    """Kill switch, params, enabled=false, a policy started from the control plane in a
    spare slot, etcd outage, clean stop: one pair of nodes for all (they take a while
    to start on a loaded machine)."""
    a_name, b_name = f"na{uuid.uuid4().hex[:4]}", f"nb{uuid.uuid4().hex[:4]}"
    nodes: list[tuple[subprocess.Popen[bytes], Path]] = []
    try:
        nodes.append(_node(tmp_path, a_name, apiserver.etcd, apiserver.prefix))
        nodes.append(_node(tmp_path, b_name, apiserver.etcd, apiserver.prefix, spare=1))

        def states() -> dict[str, Any]:
            r = cli(apiserver, "get", "nodes", "-o", "json")
            assert r.exit_code == 0, r.output
            return {n["name"]: n["state"] for n in json.loads(r.stdout)}

        wait_until(
            lambda: states().get(a_name) == "Ready" and states().get(b_name) == "Ready",
            90,
            "both nodes Ready",
        )
        for _, run_dir in nodes:
            wait_until(lambda rd=run_dir: bool(read_status(rd)["policies"]), 60, "policy status")
        # Kill node B from the CLI: B's policies are blocked, A's are not.
        cli_ok(apiserver, "kill", "--node", b_name)
        wait_until(lambda: _killed(nodes[1][1]), 30, "node B killed")
        assert not _killed(nodes[0][1])
        cli_ok(apiserver, "resume", "--node", b_name)
        wait_until(lambda: not _killed(nodes[1][1]), 30, "node B resumed")

        # Re-parameterise B's policy from the CLI: only that actor restarts, with the new
        # params; disabling it stops it, enabling it starts it again.
        def actor(run_dir: Path, name: str) -> dict[str, Any]:
            return next(a for a in read_status(run_dir)["actors"] if a["name"] == name)

        b_actor = f"policy:taker-{b_name}"
        before = actor(nodes[1][1], b_actor)
        feed_pid = actor(nodes[1][1], "feed")["pid"]
        spec = tmp_path / "policy.toml"
        for enabled, qty in ((True, 200_000), (False, 200_000), (True, 300_000)):
            spec.write_text(
                f'[[policy]]\nname = "taker-{b_name}"\nclass = "{HERE / "policies.py"}:Taker"\n'
                f'node = "{b_name}"\nenabled = {str(enabled).lower()}\ntimer_interval_ms = 1000\n'
                f"params = {{ qty = {qty} }}\n"
            )
            cli_ok(apiserver, "apply", "-f", str(spec))
            if enabled:
                wait_until(
                    lambda old=before["pid"]: (
                        (a := actor(nodes[1][1], b_actor))["state"] == "RUNNING" and a["pid"] != old
                    ),
                    60,
                    "B's policy restarted with new params",
                )
                before = actor(nodes[1][1], b_actor)
            else:
                wait_until(lambda: actor(nodes[1][1], b_actor)["state"] == "STOPPED", 60, "stopped")
        assert actor(nodes[1][1], "feed")["pid"] == feed_pid  # the node kept running
        assert actor(nodes[0][1], f"policy:taker-{a_name}")["restarts"] == 0

        # A policy in no node.toml, applied to B, runs in one of B's spare slots and
        # trades on B only; one needing a symbol B's feed lacks, or a slot when none is
        # free, is Failed with the reason; deleting a policy stops it and frees its slot.
        run_a, run_b = nodes[0][1], nodes[1][1]
        taker = f"{HERE / 'policies.py'}:Taker"

        # a few trades: B's own taker trades the same account, and the venue expires an
        # order that would match it (self-trade prevention); the Taker then sends another
        def apply(name: str, symbols: str = '"BTCUSDT"', trades: int = 5) -> None:
            spec = tmp_path / f"{name}.toml"
            spec.write_text(
                f'[[policy]]\nname = "{name}"\nclass = "{taker}"\nnode = "{b_name}"\n'
                f"symbols = [{symbols}]\ntimer_interval_ms = 1000\n"
                f"params = {{ max_trades = {trades} }}\n"
            )
            cli_ok(apiserver, "apply", "-f", str(spec))

        fresh = f"fresh-{b_name}"
        apply(fresh)
        wait_until(lambda: _fills(run_b, fresh) > 0, 60, "the new policy filled on B")
        assert _actors(run_b)[f"policy:{fresh}"] == "RUNNING"
        assert f"policy:{fresh}" not in _actors(run_a)
        assert not _policy_rows(run_a, fresh)
        wait_until(lambda: _policy_state(apiserver, fresh)[0] == "Running", 30, "Running")

        # a symbol B's feed does not carry: accepted by the API, Failed on the node
        far = f"far-{b_name}"
        apply(far, '"ETHUSDT"')
        wait_until(lambda: _policy_state(apiserver, far)[0] == "Failed", 30, "far Failed")
        reason = _policy_state(apiserver, far)[1]
        assert "ETHUSDT" in reason and "BTCUSDT" in reason and "node.toml" in reason, reason
        # B keeps one spare slot and fresh holds it
        second = f"second-{b_name}"
        apply(second, trades=0)
        wait_until(lambda: _policy_state(apiserver, second)[0] == "Failed", 30, "no slot")
        assert "no spare policy slot" in _policy_state(apiserver, second)[1]

        # delete fresh: it stops, its slot goes to `second`, which starts from zero there
        assert 1 <= _orders(run_b, fresh) <= 5  # max_trades = 5
        cli_ok(apiserver, "delete", "policy", fresh)
        wait_until(
            lambda: _actors(run_b).get(f"policy:{second}") == "RUNNING", 60, "second started"
        )
        assert f"policy:{fresh}" not in _actors(run_b)
        assert not _policy_rows(run_b, fresh)
        wait_until(lambda: _policy_state(apiserver, second)[0] == "Running", 30, "Running")
        # execution forgot fresh's counters and position in the slot (second sent nothing)
        wait_until(
            lambda: [(p["orders"], p["fills"], float(p["position"])) for p in _policy_rows(
                run_b, second)] == [(0, 0, 0.0)],
            30,
            "the reused slot's counters reset",
        )  # fmt: skip
        # trades allowed: second's own orders fill in the reused slot
        apply(second)
        wait_until(lambda: _fills(run_b, second) > 0, 60, "second filled on B")
        assert _orders(run_b, second) <= 5
        assert next(a["pid"] for a in read_status(run_b)["actors"] if a["name"] == "feed") == (
            feed_pid
        )
        assert {p["policy"] for p in read_status(run_a)["policies"]} == {f"taker-{a_name}"}

        # etcd down: the nodes keep trading on their last desired state (fail-static) and
        # the CLI says the control plane's store is down; back up, the nodes are Ready again.
        def fills(run_dir: Path) -> int:
            return sum(p["fills"] for p in read_status(run_dir)["policies"])

        etcd_service.stop()
        try:
            r = cli(apiserver, "get", "nodes")
            assert r.exit_code == 5, r.output
            assert "etcd" in r.output
            before_fills = fills(nodes[0][1])
            wait_until(lambda: fills(nodes[0][1]) > before_fills + 1, 60, "A trades without etcd")
        finally:
            etcd_service.start()
        wait_until(
            lambda: states().get(a_name) == "Ready" and states().get(b_name) == "Ready",
            60,
            "both Ready after etcd returned",
        )

        # Stop node A cleanly: it says goodbye and shows Stopped, B stays Ready.
        nodes[0][0].send_signal(signal.SIGTERM)
        assert nodes[0][0].wait(60) == 0
        wait_until(
            lambda: states().get(a_name) in ("Stopped", "Lost") and states().get(b_name) == "Ready",
            30,
            "A stopped, B ready",
        )
    finally:
        for proc, _ in nodes:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    proc.kill()


def _policy_rows(run_dir: Path, name: str) -> list[dict[str, Any]]:
    return [p for p in read_status(run_dir)["policies"] if p["policy"] == name]


def _fills(run_dir: Path, name: str) -> int:
    return sum(p["fills"] for p in _policy_rows(run_dir, name))


def _orders(run_dir: Path, name: str) -> int:
    return sum(p["orders"] for p in _policy_rows(run_dir, name))


def _actors(run_dir: Path) -> dict[str, str]:
    return {a["name"]: a["state"] for a in read_status(run_dir)["actors"]}


def _policy_state(srv: ApiServer, name: str) -> tuple[str, str]:
    r = cli(srv, "get", "policies", name, "-o", "json")
    assert r.exit_code == 0, r.output
    rec = json.loads(r.stdout)
    return rec["state"], rec["reason"]
