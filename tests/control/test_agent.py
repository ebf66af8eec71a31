"""NodeAgent details against the real etcd: ownership, goodbye, once-only commands."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from collections.abc import Iterator

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from wiresens.config import PolicyConfig, RiskConfig
from wiresens.control.agent import NodeAgent
from wiresens.control.models import SCHEMA_VERSION, Command, PolicyRecord, PolicySpec
from wiresens.control.reconcile import plan, to_config

from .conftest import wait_until


def etcdctl(endpoint: str, *args: str, data: bytes | None = None) -> str:
    """Direct etcd access with Debian's etcdctl (one grpc event loop per process is what
    grpc.aio handles cleanly, so the tests do not open their own beside the agents')."""
    exe = shutil.which("etcdctl")
    if exe is None:
        pytest.skip("etcdctl is not installed (scripts/services/install.sh etcd installs it)")
    proc = subprocess.run(
        [exe, "--endpoints", endpoint, *args],
        input=data,
        capture_output=True,
        env={**os.environ, "ETCDCTL_API": "3"},
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout.decode()


def put(endpoint: str, key: str, value: bytes) -> None:
    # `put KEY` with the value on stdin: documents may start with "-"
    etcdctl(endpoint, "put", key, data=value)


def get(endpoint: str, key: str) -> bytes | None:
    out = etcdctl(endpoint, "get", key, "--print-value-only")
    return out.rstrip("\n").encode() if out else None


def put_policy(endpoint: str, prefix: str, spec: PolicySpec | None, name: str = "") -> None:
    key = f"{prefix}/policies/{spec.name if spec else name}"
    if spec is None:
        etcdctl(endpoint, "del", key)
    else:
        put(endpoint, key, msgspec.json.encode(PolicyRecord(spec=spec)))


@pytest.fixture
def agents(etcd_endpoint: str, prefix: str) -> Iterator[dict[str, NodeAgent]]:
    out = {n: NodeAgent(etcd_endpoint, prefix, n, ttl=2).start() for n in ("b", "c")}
    for a in out.values():
        assert a.wait_synced(20), a.status()
    yield out
    for a in out.values():
        a.stop()


def names(agent: NodeAgent) -> list[str]:
    return [p.name for p in agent.desired_policies() or []]


def test_policies_follow_their_node(
    etcd_endpoint: str, prefix: str, agents: dict[str, NodeAgent]
) -> None:
    b, c = agents["b"], agents["c"]
    put_policy(etcd_endpoint, prefix, PolicySpec(name="p1", cls="m:C", node="b"))
    put_policy(etcd_endpoint, prefix, PolicySpec(name="p2", cls="m:C", node="c"))
    wait_until(lambda: names(b) == ["p1"] and names(c) == ["p2"], 20, "p1 on b, p2 on c")
    # moving p1 to c takes it away from b
    put_policy(etcd_endpoint, prefix, PolicySpec(name="p1", cls="m:C", node="c"))
    wait_until(lambda: names(b) == [] and names(c) == ["p1", "p2"], 20, "p1 moved to c")
    put_policy(etcd_endpoint, prefix, None, name="p2")
    wait_until(lambda: names(c) == ["p1"], 20, "p2 deleted")
    # disabled stays listed (the node stops it) with enabled = False
    put_policy(etcd_endpoint, prefix, PolicySpec(name="p1", cls="m:C", node="c", enabled=False))
    wait_until(lambda: [p.enabled for p in c.desired_policies() or []] == [False], 20, "disabled")


def test_goodbye_and_once_only_commands(etcd_endpoint: str, prefix: str) -> None:
    cmd = Command(id="00000000000000000001-abc", kind="restart", node="d", actor="feed")
    put(etcd_endpoint, f"{prefix}/commands/d/{cmd.id}", msgspec.json.encode(cmd))
    agent = NodeAgent(etcd_endpoint, prefix, "d", ttl=2).start()
    try:
        assert agent.wait_synced(20)
        assert agent.pending_commands() == [cmd]
        assert agent.pending_commands() == []
    finally:
        agent.stop()
    # a goodbye revokes the lease at once and marks the node Stopped; the taken command
    # was deleted, so the node's next run does not get it again
    assert get(etcd_endpoint, f"{prefix}/nodes/d") is None
    state = get(etcd_endpoint, f"{prefix}/nodestate/d")
    assert state is not None and msgspec.json.decode(state)["stopped"] is True
    assert get(etcd_endpoint, f"{prefix}/commands/d/{cmd.id}") is None
    again = NodeAgent(etcd_endpoint, prefix, "d", ttl=2).start()
    try:
        assert again.wait_synced(20)
        assert again.pending_commands() == []
    finally:
        again.stop()


def test_schema_key(etcd_endpoint: str, prefix: str) -> None:
    agent = NodeAgent(etcd_endpoint, prefix, "e", ttl=2).start()
    try:
        assert agent.wait_synced(20)
    finally:
        agent.stop()
    assert get(etcd_endpoint, f"{prefix}/schema") == str(SCHEMA_VERSION).encode()
    # a layout this code does not speak is refused, not misread
    put(etcd_endpoint, f"{prefix}/schema", b"99")
    agent = NodeAgent(etcd_endpoint, prefix, "e", ttl=2).start()
    try:
        wait_until(lambda: "schema 99" in agent.status().last_error, 20, "the schema refusal")
        assert not agent.status().desired_known
    finally:
        agent.stop()


def test_status_before_etcd_answers() -> None:
    # nothing listens on port 1: the agent is not synced, desired state unknown (None)
    agent = NodeAgent("127.0.0.1:1", "/x", "z", timeout=0.5).start()
    try:
        wait_until(lambda: bool(agent.status().last_error), 20, "the first failed session")
        st = agent.status()
        assert st.mode == "unsynced" and not st.connected and not st.desired_known
        assert agent.desired_policies() is None
        assert "127.0.0.1:1 is unreachable" in st.last_error
    finally:
        agent.stop()


def test_spec_converts_to_the_node_config_table() -> None:
    spec = PolicySpec(
        name="mm",
        cls="examples/market_maker.py:MarketMaker",
        node="b",
        cpu=1,
        symbols=["BTCUSDT"],
        params={"spread_bps": 5},
        enabled=False,
    )
    cfg = msgspec.convert(spec.config_fields(), PolicyConfig)
    assert (cfg.name, cfg.cls, cfg.cpu, cfg.symbols, cfg.params) == (
        "mm",
        "examples/market_maker.py:MarketMaker",
        1,
        ["BTCUSDT"],
        {"spread_bps": 5},
    )


names_st = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,20}", fullmatch=True)
json_leaf = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=10)
params_st = st.dictionaries(
    st.text(min_size=1, max_size=8),
    st.recursive(
        json_leaf,
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
        max_leaves=6,
    ),
    max_size=4,
)


@given(
    name=names_st,
    node=names_st,
    cpu=st.none() | st.integers(0, 4095),
    symbols=st.lists(st.from_regex(r"[A-Z0-9]{2,20}", fullmatch=True), max_size=4),
    params=params_st,
    enabled=st.booleans(),
)
def test_spec_round_trips_and_converts(
    name: str,
    node: str,
    cpu: int | None,
    symbols: list[str],
    params: dict[str, object],
    enabled: bool,
) -> None:
    spec = PolicySpec(
        name=name, cls="m:C", node=node, cpu=cpu, symbols=symbols, params=params, enabled=enabled
    )
    rec = PolicyRecord(spec=spec, generation=3)
    assert msgspec.json.decode(msgspec.json.encode(rec), type=PolicyRecord) == rec
    cfg = msgspec.convert(spec.config_fields(), PolicyConfig)
    assert (cfg.name, cfg.cpu, cfg.symbols, cfg.params) == (name, cpu, symbols, params)


def spec(name: str, **kw: object) -> PolicySpec:
    return PolicySpec(name=name, cls="m:C", node="b", **kw)  # type: ignore[arg-type]


def test_plan_turns_running_into_desired() -> None:
    running = [to_config(spec("keep")), to_config(spec("change")), to_config(spec("gone"))]
    desired = [
        spec("keep"),
        spec("change", params={"k": 2}),
        spec("new", risk=RiskConfig(max_open_orders=3)),
        spec("off", enabled=False),
    ]
    p = plan(desired, running)
    assert p.stop == ["gone"]
    assert [c.name for c in p.restart] == ["change"] and p.restart[0].params == {"k": 2}
    assert [c.name for c in p.start] == ["new"] and p.start[0].risk.max_open_orders == 3
    assert plan(None, running).empty()  # not synced: keep what runs
    assert plan(desired, [*p.start, *p.restart, running[0]]).empty()


@given(
    want=st.dictionaries(names_st, st.tuples(st.integers(0, 2), st.booleans()), max_size=6),
    have=st.dictionaries(names_st, st.integers(0, 2), max_size=6),
)
def test_plan_applied_reaches_the_desired_set(
    want: dict[str, tuple[int, bool]], have: dict[str, int]
) -> None:
    desired = [spec(n, params={"v": v}, enabled=on) for n, (v, on) in want.items()]
    running = {n: to_config(spec(n, params={"v": v})) for n, v in have.items()}
    p = plan(desired, list(running.values()))
    for n in p.stop:
        del running[n]
    for c in [*p.restart, *p.start]:
        running[c.name] = c
    assert running == {s.name: to_config(s) for s in desired if s.enabled}
    assert not set(p.stop) & {c.name for c in p.start}


def test_report_and_registration_are_written_together(etcd_endpoint: str, prefix: str) -> None:
    """One transaction creates both keys: no listing can see the report without the
    registration (such a node was shown Lost while it was starting)."""
    agent = NodeAgent(etcd_endpoint, prefix, "e", ttl=2).start()
    try:
        assert agent.wait_synced(20), agent.status()
        out = json.loads(etcdctl(etcd_endpoint, "get", "--prefix", f"{prefix}/node", "-w", "json"))
        created = {base64.b64decode(kv["key"]).decode(): kv["create_revision"] for kv in out["kvs"]}
        assert set(created) == {f"{prefix}/nodes/e", f"{prefix}/nodestate/e"}
        assert created[f"{prefix}/nodes/e"] == created[f"{prefix}/nodestate/e"]
    finally:
        agent.stop()
