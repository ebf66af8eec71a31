"""Two real nodes (``wiresens node up`` process trees, distinct names and shm prefixes)
register with the control plane; the CLI sees them and its kill switch reaches them.

Policy names are cluster-wide in the control plane, so each node's policy has its own."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from wiresens.node import read_status
from wiresens.testing.services import Service

from .conftest import ApiServer, wait_until
from .test_cluster import cli

HERE = Path(__file__).parent.parent / "e2e"


def _node(tmp: Path, name: str, etcd: str, prefix: str) -> tuple[subprocess.Popen[bytes], Path]:
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


def cli_ok(srv: ApiServer, *args: str, timeout: float = 60.0) -> Any:
    """Run a mutating CLI command; exit code 5 (etcd did not answer within the API
    server's deadline: two nodes and the suite share two CPUs here) is retried."""
    deadline = time.monotonic() + timeout
    while True:
        r = cli(srv, *args)
        if r.exit_code != 5 or time.monotonic() > deadline:
            assert r.exit_code == 0, r.output
            return r
        time.sleep(1.0)


def _killed(run_dir: Path) -> bool:
    pols = read_status(run_dir)["policies"]
    assert pols, "the node reports no policy yet"
    return all(p["killed"] for p in pols)


@pytest.mark.slow
def test_two_real_nodes_register_and_obey_the_kill_switch(
    apiserver: ApiServer, tmp_path: Path, etcd_service: Service
) -> None:
    a_name, b_name = f"na{uuid.uuid4().hex[:4]}", f"nb{uuid.uuid4().hex[:4]}"
    nodes: list[tuple[subprocess.Popen[bytes], Path]] = []
    try:
        for name in (a_name, b_name):
            nodes.append(_node(tmp_path, name, apiserver.etcd, apiserver.prefix))

        def states() -> dict[str, Any]:
            r = cli(apiserver, "get", "nodes", "-o", "json")
            if r.exit_code == 5:  # etcd slow to answer under load: ask again
                return {}
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
