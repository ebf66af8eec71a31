"""A worker node: the config turned into a venue, rings and supervised actors.

``wiresens node up`` builds a :class:`Node` from ``node.toml`` and runs it:

1. refuses to start over a live node of the same run directory; reclaims the
   shared memory of a killed one (its creator is dead);
2. with ``venue = "local"`` starts the built-in Binance-compatible venue as a
   child process on 127.0.0.1, with one venue account and a fresh Ed25519 key per
   ``[[feed.accounts]]`` entry (or the single default account ``node``), so no
   credentials are needed; else uses Binance or its testnet with each account's
   key file;
3. reads ``exchangeInfo`` for the configured symbols (the instrument table);
4. creates the rings of :class:`~wiresens.actors.topology.Topology`, then the
   StrategyMaster spawns feed, execution and one host per ``[[policy]]``;
5. supervises until SIGINT/SIGTERM (or ``wiresens node down``), then stops in
   order (policies, execution - which cancels the node's open orders -, feed),
   stops the venue and removes every segment.

The run directory holds ``node.pid`` and ``node.json`` (the manifest that
``wiresens node status`` reads with the shared memory), the local venue's
accounts and logs.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from wiresens.actors.actor import ActorSpec
from wiresens.actors.execution import RESUME_FRESH_SLOT
from wiresens.actors.lifecycle import ActorState
from wiresens.actors.master import StrategyMaster
from wiresens.actors.status import StatusBoard
from wiresens.actors.topology import Topology
from wiresens.config import (
    NodeConfig,
    PolicyConfig,
    account_limits,
    account_names,
    kill_loss_limit,
    load_credentials,
    risk_limits,
)
from wiresens.errors import ConfigError, ServiceUnavailableError, WiresensError
from wiresens.fixedpoint import from_fixed
from wiresens.instruments import InstrumentTable
from wiresens.records import (
    CONTROL_KILL,
    CONTROL_RESUME,
    POLICY_STATUS,
    STATUS_KILLED_FLAG,
    TOP_OF_BOOK,
    RecordKind,
    new_record,
)
from wiresens.shm import Ring, SeqlockSlots, process_alive
from wiresens.shm.ring import W_CONSUMER_PID, W_CONSUMER_START

__all__ = ["Node", "NodeNotRunning", "read_status", "render_status", "stop_node"]

ENDPOINTS = {
    "binance": {
        "rest": "https://api.binance.com",
        "ws": "wss://stream.binance.com:9443",
        "ws_api": "wss://ws-api.binance.com:443",
    },
    "binance-testnet": {
        "rest": "https://testnet.binance.vision",
        "ws": "wss://stream.testnet.binance.vision",
        "ws_api": "wss://ws-api.testnet.binance.vision",
    },
}


FEED_STATUS = "feed-status.json"
"""In the run directory: the feed's per-account state (logon, rate-limit headroom, a fatal
error), rewritten every second."""
EXECUTION_STATUS = "execution-status.json"
"""In the run directory: execution's per-account reconciliation (rewritten after each)."""


def _read_json(path: Path) -> dict[str, Any]:
    try:
        body = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return body if isinstance(body, dict) else {}


class NodeNotRunning(WiresensError):
    """No live node owns this run directory."""


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def _get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        body: bytes = resp.read()
        return body


def _node_pid(run_dir: Path) -> int:
    try:
        pid, start = (int(x) for x in (run_dir / "node.pid").read_text().split())
    except (OSError, ValueError):
        return 0
    return pid if process_alive(pid, start) else 0


class Node:
    """One node's life: :meth:`start`, :meth:`poll` in a loop, :meth:`stop`."""

    def __init__(self, cfg: NodeConfig) -> None:
        self.cfg = cfg
        self.run_dir = cfg.run_dir
        self.prefix = f"{cfg.node.shm_prefix}.{cfg.node.name}"
        self.venue: subprocess.Popen[bytes] | None = None
        self.master: StrategyMaster | None = None
        self.endpoints: dict[str, str] = {}
        self.manifest: dict[str, Any] = {}
        self.agent: Any = None
        self._next_fatal_check = 0.0

    # -- venue ---------------------------------------------------------------------------
    def _local_accounts(self) -> list[dict[str, Any]]:
        """One local-venue account per node account, each with a fresh Ed25519 key: the
        feed's ``accounts`` (name, api_key, private_key_pem), in index order."""
        from wiresens.binance.signing import new_ed25519_key

        assets = {"USDT": "10000000"}
        for sym in self.cfg.feed.symbols:
            base = sym[:-4] if sym.endswith("USDT") else sym[:3]
            assets.setdefault(base, "1000")
        balances = ", ".join(f'{a} = "{v}"' for a, v in assets.items())
        text = "# Written by `wiresens node up` for the local venue: fresh keys per run.\n"
        out: list[dict[str, Any]] = []
        for name in account_names(self.cfg):
            private_pem, public_pem = new_ed25519_key()
            api_key = os.urandom(32).hex()
            text += (
                f'\n[[accounts]]\nname = "{name}"\nmaker_commission_bps = 10\n'
                f"taker_commission_bps = 10\nbalances = {{ {balances} }}\n\n[[accounts.keys]]\n"
                f'api_key = "{api_key}"\ntype = "ED25519"\npublic_key = """\n{public_pem.decode()}"""\n'
            )
            out.append({"name": name, "api_key": api_key, "private_key_pem": private_pem})
        path = self.run_dir / "venue-accounts.toml"
        path.write_text(text)
        path.chmod(0o600)
        return out

    def _start_local_venue(self) -> list[dict[str, Any]]:
        local = self.cfg.feed.local
        host = local.host
        port = local.port or _free_port(host)
        accounts = self._local_accounts()
        log = open(self.run_dir / "venue.log", "ab")  # noqa: SIM115 - the child keeps it
        cmd = [
            sys.executable,
            "-m",
            "wiresens",
            "venue",
            "serve",
            "--host",
            host,
            "--port",
            str(port),
            "--symbols",
            ",".join(self.cfg.feed.symbols),
            "--market",
            local.market,
            "--accounts",
            str(self.run_dir / "venue-accounts.toml"),
        ]
        self.venue = subprocess.Popen(cmd, stdout=log, stderr=log, start_new_session=True)
        log.close()
        base = f"http://{host}:{port}"
        deadline = time.monotonic() + 30
        while True:
            if self.venue.poll() is not None:
                raise ServiceUnavailableError(
                    f"the local venue exited with {self.venue.returncode} at start; "
                    f"see {self.run_dir / 'venue.log'}"
                )
            with contextlib.suppress(OSError):
                _get(f"{base}/api/v3/ping", 1.0)
                break
            if time.monotonic() > deadline:
                raise ServiceUnavailableError(
                    f"the local venue did not answer on {base} in 30 s; see {self.run_dir / 'venue.log'}"
                )
            time.sleep(0.1)
        self.endpoints = {
            "rest": base,
            "ws": f"ws://{host}:{port}",
            "ws_api": f"ws://{host}:{port}",
        }
        return accounts

    def _credentials(self) -> list[dict[str, Any]]:
        """Every ``[[feed.accounts]]`` entry's keys, in index order (the feed's ``accounts``)."""
        accounts = self.cfg.feed.accounts
        if not accounts:
            raise ConfigError(
                f"feed.venue = {self.cfg.feed.venue!r} needs a [[feed.accounts]] table with a "
                'key_file (or use venue = "local")'
            )
        out: list[dict[str, Any]] = []
        for i, acct in enumerate(accounts):
            creds = load_credentials(
                acct, self.cfg.base_dir or ".", key=f"feed.accounts[{i}].key_file"
            )
            one: dict[str, Any] = {"name": acct.name, "api_key": creds.api_key}
            if creds.private_key:
                one["private_key_pem"] = Path(creds.private_key).read_bytes()
            else:
                one["secret"] = creds.secret or ""
            out.append(one)
        self.endpoints = dict(ENDPOINTS[self.cfg.feed.venue])
        return out

    # -- start -----------------------------------------------------------------------------
    def start(self) -> None:
        cfg = self.cfg
        self.run_dir.mkdir(parents=True, exist_ok=True)
        pid = _node_pid(self.run_dir)
        if pid:
            raise ConfigError(
                f"a node (pid {pid}) already runs in {self.run_dir}; stop it with "
                "`wiresens node down` or use another run_dir"
            )
        (self.run_dir / "node.pid").write_text(f"{os.getpid()} {_start_ticks()}\n")
        for name in (FEED_STATUS, EXECUTION_STATUS):  # a previous run's must not show
            with contextlib.suppress(OSError):
                (self.run_dir / name).unlink()
        creds = self._start_local_venue() if cfg.feed.venue == "local" else self._credentials()
        try:
            body = _get(f"{self.endpoints['rest']}/api/v3/exchangeInfo", 10)
        except OSError as exc:
            raise ServiceUnavailableError(
                f"exchangeInfo from {self.endpoints['rest']} failed: {exc}"
            ) from None
        table = InstrumentTable.from_exchange_info(body, cfg.feed.symbols)
        instruments = list(table)
        n_sym = len(instruments)
        # Spare slots: rings and status rows for policies the control plane starts later.
        spare = max(0, cfg.control.spare_policy_slots) if cfg.control is not None else 0
        n_slots = len(cfg.policy) + spare
        topo = Topology(self.prefix, n_slots, n_sym)
        self.topology = topo
        self.table = table
        idle = cfg.node.idle.strategy
        log = {
            "node": cfg.node.name,
            "target": cfg.node.log_target,
            "run_dir": str(self.run_dir),
            "level": cfg.node.log_level,
        }
        common = {
            "prefix": self.prefix,
            "policies": n_slots,
            "symbol_count": n_sym,
            "instruments": instruments,
        }
        policy_symbols = [[table.index(s) for s in cfg.policy_symbols(p)] for p in cfg.policy]
        specs = [
            ActorSpec(
                name="feed",
                group="feed",
                factory="wiresens.actors.feed:FeedActor",
                cpu=cfg.feed.cpu if cfg.feed.cpu is not None else -1,
                idle=(cfg.feed.idle.strategy if cfg.feed.idle else idle),
                log={**log, "actor": "feed"},
                kwargs={
                    **common,
                    "policy_symbols": policy_symbols,
                    "endpoints": self.endpoints,
                    "streams": list(cfg.feed.streams),
                    "accounts": creds,
                    "status_file": str(self.run_dir / FEED_STATUS),
                },
            ),
            ActorSpec(
                name="execution",
                group="execution",
                factory="wiresens.actors.execution:Execution",
                cpu=cfg.execution.cpu if cfg.execution.cpu is not None else -1,
                idle=(cfg.execution.idle.strategy if cfg.execution.idle else idle),
                log={**log, "actor": "execution"},
                kwargs={
                    **common,
                    # spare slots get the node's [execution.risk] defaults
                    "limits": [risk_limits(cfg, p) for p in cfg.policy]
                    + [risk_limits(cfg, PolicyConfig(name="(spare)", cls=""))] * spare,
                    "loss_limit": kill_loss_limit(cfg),
                    "reject_storm": cfg.execution.kill.reject_storm,
                    "feed_stale_s": cfg.execution.kill.feed_stale_s,
                    "accounts": account_names(cfg),
                    "account_limits": account_limits(cfg),
                    "policy_accounts": [cfg.account_index(p.account) for p in cfg.policy],
                    "status_file": str(self.run_dir / EXECUTION_STATUS),
                    "reconcile_interval_s": cfg.execution.reconcile_interval_s,
                    "ack_timeout_s": cfg.execution.ack_timeout_s,
                },
            ),
        ]
        event_dir = Path(cfg.sidecar.event_log_dir)
        if not event_dir.is_absolute():
            event_dir = self.run_dir / event_dir
        self.event_log_dir = event_dir
        specs.append(
            ActorSpec(
                name="sidecar",
                group="sidecar",
                factory="wiresens.actors.sidecar:Sidecar",
                cpu=cfg.sidecar.cpu if cfg.sidecar.cpu is not None else -1,
                idle="block",
                log={**log, "actor": "sidecar"},
                kwargs={
                    "taps": [topo.tap(a) for a in topo.taps],
                    "event_log_dir": str(event_dir),
                    "node": cfg.node.name,
                },
            )
        )
        sinks: dict[str, dict[str, Any]] = {}
        if cfg.sidecar.kafka is not None:
            k = cfg.sidecar.kafka
            sinks["kafka"] = {
                "bootstrap_servers": list(k.bootstrap_servers),
                "topic_prefix": k.topic_prefix,
                "client_id": k.client_id,
            }
        if cfg.sidecar.postgres is not None:
            sinks["postgres"] = {
                "dsn": cfg.sidecar.postgres.dsn,
                "schema": cfg.sidecar.postgres.schema,
            }
        for sink_name, options in sinks.items():
            specs.append(
                ActorSpec(
                    name=f"sink:{sink_name}",
                    group="sidecar",
                    factory="wiresens.actors.sink:SinkActor",
                    cpu=-1,
                    idle="block",
                    log={**log, "actor": f"sink-{sink_name}"},
                    kwargs={
                        "sink": sink_name,
                        "event_log_dir": str(event_dir),
                        "node": cfg.node.name,
                        "options": options,
                    },
                )
            )
        self._policy_common: dict[str, Any] = {
            "log": log,
            "idle": idle,
            "instruments": instruments,
        }
        for i, p in enumerate(cfg.policy):
            specs.append(self._policy_spec(i, p, policy_symbols[i]))
        self.master = StrategyMaster(self.prefix, specs, spare=spare)
        stale = self.master.reclaim_stale()
        names = topo.create()
        self.master.owned_segments.extend(names)
        self.master.start()
        if stale:
            self.master.events.append(f"reclaimed {len(stale)} stale segment(s) of a killed node")
        self.manifest = {
            "node": cfg.node.name,
            "prefix": self.prefix,
            "pid": os.getpid(),
            "started_ns": time.time_ns(),
            "venue": cfg.feed.venue,
            "accounts": account_names(cfg),
            "endpoints": self.endpoints,
            "venue_pid": self.venue.pid if self.venue else None,
            "symbols": table.symbols(),
            "policies": [
                {"name": p.name, "index": i, "symbols": policy_symbols[i]}
                for i, p in enumerate(cfg.policy)
            ],
            "actors": [s["name"] for s in specs],
            "event_log_dir": str(self.event_log_dir),
            "segments": names,
        }
        (self.run_dir / "node.json").write_text(json.dumps(self.manifest, indent=1))

    def _policy_spec(self, slot: int, p: PolicyConfig, symbols: list[int]) -> ActorSpec:
        """The actor of policy ``p`` in ring slot ``slot`` (``symbols``: 1-based indexes)."""
        c = self._policy_common
        return ActorSpec(
            name=f"policy:{p.name}",
            group="policy",
            factory="wiresens.actors.policy_host:PolicyHost",
            cpu=p.cpu if p.cpu is not None else -1,
            idle=c["idle"],
            log={**c["log"], "actor": "policy", "policy": p.name},
            kwargs={
                "prefix": self.prefix,
                "policies": self.topology.policies,
                "symbol_count": self.topology.symbols,
                "instruments": c["instruments"],
                "policy_index": slot,
                "policy_name": p.name,
                "policy_class": p.cls,
                "params": dict(p.params),
                "symbols": symbols,
                "account": self.cfg.account_index(p.account),
                "timer_interval_ms": p.timer_interval_ms,
                "base_dir": self.cfg.base_dir or ".",
            },
        )

    # -- control plane -----------------------------------------------------------------
    def _start_agent(self) -> None:
        ctl = self.cfg.control
        if ctl is None:
            return
        from wiresens.control import NodeAgent
        from wiresens.control.store import EtcdAccess

        caps = {
            "cpus": os.cpu_count() or 0,
            "venue": self.cfg.feed.venue,
            "symbols": list(self.cfg.feed.symbols),
            "spare_policy_slots": max(0, ctl.spare_policy_slots),
        }

        def path(value: str) -> str:
            return str(self.cfg.path(value)) if value else ""

        access = EtcdAccess(
            user=ctl.etcd_user,
            password_file=path(ctl.etcd_password_file),
            ca_file=path(ctl.etcd_ca_file),
            cert_file=path(ctl.etcd_cert_file),
            key_file=path(ctl.etcd_key_file),
        )
        self.agent = NodeAgent(
            ctl.etcd,
            ctl.prefix,
            self.cfg.node.name,
            caps,
            ttl=ctl.ttl_s,
            timeout=ctl.timeout_s,
            access=access,
        ).start()
        self._killed_seen: dict[str | None, bool] = {}
        self._desired_seen = -1
        self._running = {p.name: p for p in self.cfg.policy}
        self._disabled: set[str] = set()
        # Policies the control plane started in spare slots: name -> (slot, config).
        self._dynamic: dict[str, tuple[int, PolicyConfig]] = {}
        self._slot_uses = dict.fromkeys(range(len(self.cfg.policy), self.topology.policies), 0)
        self._slot_killed: set[int] = set()
        # What the node made of each desired policy, reported to the control plane.
        self._policy_states: dict[str, dict[str, Any]] = {}

    def _agent_cycle(self) -> None:
        """Once a second: report, carry out commands, follow desired state and switches."""
        agent = self.agent
        if agent is None:
            return
        with contextlib.suppress(WiresensError, OSError):
            st = read_status(self.run_dir)
            st["policy_states"] = self._policy_states
            agent.report(st)
        for cmd in agent.pending_commands():
            try:
                if cmd.kind in ("kill", "resume"):
                    send_control(
                        self.run_dir,
                        CONTROL_KILL if cmd.kind == "kill" else CONTROL_RESUME,
                        cmd.policy,
                    )
                elif cmd.kind == "restart" and self.master is not None:
                    self._restart_actor(str(cmd.actor))
            except WiresensError as exc:
                self.master_events(f"command {cmd.kind} failed: {exc}")
        version = agent.desired_version()
        if version != self._desired_seen:
            self._desired_seen = version
            desired = agent.desired_policies()
            if desired is not None:
                self._apply_desired(desired)
        for scope in [None, *(p.name for p in self.cfg.policy), *self._dynamic]:
            killed = agent.killed(scope)
            if killed != self._killed_seen.get(scope, False):
                self._killed_seen[scope] = killed
                with contextlib.suppress(WiresensError):
                    send_control(self.run_dir, CONTROL_KILL if killed else CONTROL_RESUME, scope)

    def _set_state(self, name: str, state: str, reason: str = "", slot: int = -1) -> None:
        self._policy_states[name] = {"state": state, "reason": reason, "slot": slot}
        if reason and state == "Failed":
            self.master_events(f"policy {name!r}: {reason}")

    def _apply_desired(self, desired: list[Any]) -> None:
        """Desired policies from the control plane.

        A policy of node.toml: a changed spec restarts just that policy's actor with
        the new parameters (the node keeps trading); ``enabled = false`` stops it; its
        symbols, account and CPU are fixed by node.toml. Any other policy runs in a
        spare slot (see :meth:`_run_dynamic`); deleting it stops it and frees the slot.
        """
        from wiresens.config import load_policy_class, policy_params
        from wiresens.control import to_config

        assert self.master is not None
        names = {s.name for s in desired}
        for name in [n for n in self._dynamic if n not in names]:
            self._stop_dynamic(name)
            self._policy_states.pop(name, None)
        for name in [n for n in self._policy_states if n not in names]:
            del self._policy_states[name]
        for spec in desired:
            name = spec.name
            current = self._running.get(name)
            actor = f"policy:{name}"
            if current is None:
                self._run_dynamic(spec)
                continue
            if not spec.enabled:
                if name not in self._disabled:
                    self._disabled.add(name)
                    self.master.stop_actor(actor)
                self._set_state(name, "Disabled")
                continue
            want = to_config(spec)
            fixed = ("symbols", "account", "cpu", "cls")
            note = ""
            if any(getattr(want, f) != getattr(current, f) for f in fixed if getattr(want, f)):
                note = (
                    "symbols, account, cpu and class of a node.toml policy come from "
                    "node.toml; only params, risk and timer change at run time"
                )
                self.master_events(f"policy {name!r}: {note}")
            try:
                cls = load_policy_class(current.cls, self.cfg.base_dir or ".")
                policy_params(want, cls)
            except WiresensError as exc:
                self._set_state(name, "Failed", f"desired params refused: {exc}")
                continue
            changed = (
                want.params != current.params or want.timer_interval_ms != current.timer_interval_ms
            )
            if changed or name in self._disabled:
                self._disabled.discard(name)
                self._running[name] = msgspec.structs.replace(
                    current, params=want.params, timer_interval_ms=want.timer_interval_ms
                )
                self.master.restart_actor(
                    actor,
                    {"params": dict(want.params), "timer_interval_ms": want.timer_interval_ms},
                )
            self._set_state(
                name, "Running", note, self.cfg.policy.index(self.cfg.policy_named(name))
            )

    def _check_dynamic(self, spec: Any) -> tuple[PolicyConfig, list[int]]:
        """The config of a policy not in node.toml and its symbol indexes; raises
        :class:`WiresensError` naming what this node cannot run."""
        from wiresens.config import load_policy_class, policy_params
        from wiresens.control import to_config

        pcfg = to_config(spec)
        carried = list(self.cfg.feed.symbols)
        wanted = self.cfg.policy_symbols(pcfg)
        missing = [s for s in wanted if s not in carried]
        if missing:
            raise ConfigError(
                f"the feed of node {self.cfg.node.name!r} does not carry "
                f"{', '.join(missing)} (it carries {', '.join(carried)}): add "
                f"{'it' if len(missing) == 1 else 'them'} to [feed] symbols in its node.toml "
                "and restart the node, or apply the policy to a node that carries "
                f"{'it' if len(missing) == 1 else 'them'}"
            )
        if self.cfg.account_index(pcfg.account) != 0:
            # execution's per-account books are laid out at start for node.toml policies
            raise ConfigError(
                f"account {pcfg.account!r}: a policy started from the control plane trades "
                "the node's first account; name no account (or that one), or add the "
                "policy to node.toml"
            )
        policy_params(pcfg, load_policy_class(pcfg.cls, self.cfg.base_dir or "."))
        return pcfg, [self.table.index(s) for s in wanted]

    def _write_subs(self, slot: int, symbols: list[int]) -> None:
        topo = self.topology
        row = np.zeros(1, topo.subs_dtype())
        for s in symbols:
            row[0]["symbols"][s] = 1
        subs = SeqlockSlots.attach(topo.subs, topo.subs_dtype())
        try:
            subs.write(slot, memoryview(row).cast("B"))  # type: ignore[arg-type]
        finally:
            subs.close()

    def _drain_slot(self, slot: int) -> None:
        """Drop what the slot's previous policy left unread (market data, reports): its
        consumer is gone, so the node may read them off before the next one starts."""
        for name in (self.topology.md(slot), self.topology.er(slot)):
            with contextlib.suppress(WiresensError):
                ring = Ring.attach(name, None)
                try:
                    cons = ring.consumer()
                    buf = bytearray(ring.record_size)
                    while cons.try_read(buf):
                        pass
                    cons.close()
                    # give the consumer role back (this process stays alive) for the
                    # next policy host to claim
                    ring.words[W_CONSUMER_PID] = 0
                    ring.words[W_CONSUMER_START] = 0
                finally:
                    ring.close()

    def _save_manifest(self) -> None:
        pols = [
            {"name": p.name, "index": i, "symbols": self._symbols_of(p)}
            for i, p in enumerate(self.cfg.policy)
        ]
        pols += [
            {"name": n, "index": slot, "symbols": self._symbols_of(pc)}
            for n, (slot, pc) in sorted(self._dynamic.items(), key=lambda kv: kv[1][0])
        ]
        self.manifest["policies"] = pols
        assert self.master is not None
        self.manifest["actors"] = [h.name for h in self.master.handles]
        tmp = self.run_dir / "node.json.tmp"
        tmp.write_text(json.dumps(self.manifest, indent=1))
        tmp.replace(self.run_dir / "node.json")

    def _symbols_of(self, p: PolicyConfig) -> list[int]:
        return [self.table.index(s) for s in self.cfg.policy_symbols(p)]

    def _run_dynamic(self, spec: Any) -> None:
        """Start, change or stop a policy that is not in node.toml, in a spare slot.

        It may trade only symbols the feed carries (the feed subscribed to them at
        start); anything this node cannot run leaves the policy Failed with the reason.
        """
        assert self.master is not None
        name = spec.name
        actor = f"policy:{name}"
        if not spec.enabled:
            self._stop_dynamic(name)
            self._set_state(name, "Disabled")
            return
        current = self._dynamic.get(name)
        try:
            pcfg, symbols = self._check_dynamic(spec)
        except WiresensError as exc:
            if current is None:
                self._set_state(name, "Failed", str(exc))
            else:  # keep what runs; say why the change was not made
                self._set_state(name, "Running", f"change refused: {exc}", current[0])
            return
        if current is not None:
            slot, old = current
            if pcfg != old:
                if self.cfg.policy_symbols(pcfg) != self.cfg.policy_symbols(old):
                    self._write_subs(slot, symbols)
                h = self.master.handle(actor)
                if h is not None:
                    h.spec["cpu"] = pcfg.cpu if pcfg.cpu is not None else -1
                new = self._policy_spec(slot, pcfg, symbols)
                self.master.restart_actor(actor, dict(new["kwargs"]))
                self._dynamic[name] = (slot, pcfg)
                self._save_manifest()
            self._set_state(name, "Running", "", slot)
            return
        free = [s for s in self._slot_uses if s not in {v[0] for v in self._dynamic.values()}]
        if not free:
            self._set_state(
                name,
                "Failed",
                f"no spare policy slot left on node {self.cfg.node.name!r} "
                f"(spare_policy_slots = {len(self._slot_uses)}, taken by "
                f"{', '.join(sorted(self._dynamic)) or 'none'}): delete one of those, or "
                "raise [control] spare_policy_slots in its node.toml and restart it",
            )
            return
        # never-used slots first: a reused slot's execution-side position carries over
        slot = min(free, key=lambda s: (self._slot_uses[s], s))
        self._slot_uses[slot] += 1
        self._drain_slot(slot)
        self._write_subs(slot, symbols)
        self._dynamic[name] = (slot, pcfg)
        self._save_manifest()
        if self._slot_uses[slot] > 1 or slot in self._slot_killed:
            # a reused slot: lift the kill that freed it, reset execution's counters
            self._slot_killed.discard(slot)
            with contextlib.suppress(WiresensError):
                send_control(self.run_dir, CONTROL_RESUME, name, arg0=RESUME_FRESH_SLOT)
        self._killed_seen.pop(name, None)
        self.master.add_actor(self._policy_spec(slot, pcfg, symbols))
        self._set_state(name, "Running", "", slot)

    def _stop_dynamic(self, name: str) -> None:
        """Stop a policy started in a spare slot, cancel its open orders, free the slot."""
        entry = self._dynamic.get(name)
        if entry is None or self.master is None:
            return
        slot, _ = entry
        self.master.remove_actor(f"policy:{name}")
        self._write_subs(slot, [])
        # execution cancels the slot's open orders and refuses new ones until reuse
        with contextlib.suppress(WiresensError):
            send_control(self.run_dir, CONTROL_KILL, name)
            self._slot_killed.add(slot)
        del self._dynamic[name]
        self._killed_seen.pop(name, None)
        self._save_manifest()

    def _restart_actor(self, name: str) -> None:
        assert self.master is not None
        for h in self.master.handles:
            if h.name in (name, f"policy:{name}") and h.process is not None and h.process.pid:
                os.kill(h.process.pid, signal.SIGTERM)

    def master_events(self, text: str) -> None:
        if self.master is not None:
            self.master.events.append(text)

    def poll(self) -> None:
        assert self.master is not None
        self.master.poll()
        now = time.monotonic()
        if now >= self._next_fatal_check:
            # The feed writes a fatal error (a key the exchange refuses) before failing:
            # restarting it would fail the same way, so the node stops with the message.
            self._next_fatal_check = now + 1.0
            fatal = _read_json(self.run_dir / FEED_STATUS).get("fatal")
            if fatal:
                raise ConfigError(str(fatal))
        if self.venue is not None and self.venue.poll() is not None:
            raise ServiceUnavailableError(
                f"the local venue exited with {self.venue.returncode}; see {self.run_dir / 'venue.log'}"
            )

    def stop(self) -> None:
        if self.agent is not None:
            with contextlib.suppress(Exception):
                self.agent.stop()
            self.agent = None
        if self.master is not None:
            self.master.stop()
            self.master.close()
        if self.venue is not None and self.venue.poll() is None:
            self.venue.terminate()
            try:
                self.venue.wait(10)
            except subprocess.TimeoutExpired:
                self.venue.kill()
                self.venue.wait(5)
        for name in ("node.pid", "node.json"):
            with contextlib.suppress(OSError):
                (self.run_dir / name).unlink()

    def run(self, show: bool = True, stop_after: float | None = None) -> None:
        """Start, supervise until a signal (or ``stop_after`` seconds), stop."""
        stopping = [False]

        def _stop(signum: int, frame: object) -> None:
            stopping[0] = True

        old = {s: signal.signal(s, _stop) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            self.start()
            self._start_agent()
            sd_notify(f"READY=1\nMAINPID={os.getpid()}\nSTATUS=trading")
            last_agent = 0.0
            watchdog_s = int(os.environ.get("WATCHDOG_USEC", "0")) / 2e6
            last_dog = 0.0
            t0 = time.monotonic()
            last_show = 0.0
            last_work: tuple[float, dict[str, int]] | None = None
            tty = sys.stdout.isatty()
            while not stopping[0]:
                self.poll()
                now = time.monotonic()
                if self.agent is not None and now - last_agent >= 1.0:
                    last_agent = now
                    self._agent_cycle()
                if watchdog_s and now - last_dog >= watchdog_s:
                    last_dog = now
                    sd_notify("WATCHDOG=1")
                if show and now - last_show >= (1.0 if tty else 5.0):
                    last_show = now
                    st = read_status(self.run_dir)
                    work = {a["name"]: a["work"] for a in st["actors"]}
                    if last_work:
                        dt = now - last_work[0]
                        st["rates"] = {
                            n: (w - last_work[1].get(n, w)) / dt for n, w in work.items()
                        }
                    last_work = (now, work)
                    text = render_status(st)
                    if tty:
                        sys.stdout.write("\x1b[H\x1b[2J" + text + "\n(Ctrl-C stops the node)\n")
                    else:
                        sys.stdout.write(text + "\n")
                    sys.stdout.flush()
                if stop_after is not None and now - t0 >= stop_after:
                    break
                time.sleep(0.05)
        finally:
            sd_notify("STOPPING=1")
            if show:
                print(
                    "stopping: policies, then execution (cancels open orders), then feed ...",
                    flush=True,
                )
            self.stop()
            for s, h in old.items():
                signal.signal(s, h)
            if show:
                print("node stopped; shared memory removed", flush=True)


def sd_notify(message: str) -> bool:
    """Tell systemd (Type=notify units) about the node's state; False outside systemd."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.connect(addr)
        # Never block the supervisor's loop on a notify socket nobody reads.
        s.send(message.encode(), socket.MSG_DONTWAIT)
        return True
    return False


def _start_ticks() -> int:
    from wiresens.shm import self_id

    return self_id()[1]


def stop_node(run_dir: Path, timeout: float = 60.0) -> int:
    """Send SIGTERM to the node of ``run_dir`` and wait for it to exit; returns its pid."""
    pid = _node_pid(run_dir)
    if not pid:
        raise NodeNotRunning(f"no running node in {run_dir} (no live node.pid)")
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _node_pid(run_dir):
            return pid
        time.sleep(0.1)
    raise ServiceUnavailableError(f"node pid {pid} did not stop in {timeout:.0f} s")


def send_control(run_dir: Path, command: int, policy: str | None = None, arg0: int = 0) -> str:
    """Write a CONTROL record (kill / resume) to the running node's execution actor."""
    try:
        manifest = json.loads((run_dir / "node.json").read_text())
    except (OSError, ValueError):
        raise NodeNotRunning(f"no running node in {run_dir} (no node.json)") from None
    target = 0
    scope = "node"
    if policy is not None:
        names = {p["name"]: p["index"] for p in manifest["policies"]}
        if policy not in names:
            raise ConfigError(
                f"no policy {policy!r} in this node; it runs: {', '.join(names) or 'none'}"
            )
        target = names[policy] + 1
        scope = f"policy {policy}"
    rec = new_record(RecordKind.CONTROL)
    rec["command"] = command
    rec["target"] = target
    rec["arg0"] = arg0
    rec["ts_pub"] = time.time_ns()
    ring = Ring.attach(f"{manifest['prefix']}.ctl", None)
    try:
        prod = ring.producer()
        deadline = time.monotonic() + 5
        while not prod.try_write(memoryview(rec).cast("B")):  # type: ignore[arg-type]
            if time.monotonic() > deadline:
                raise ServiceUnavailableError(
                    "the node's control ring stays full: is execution running?"
                )
            time.sleep(0.01)
    finally:
        ring.close()
    return scope


# -- status ------------------------------------------------------------------------------


def read_status(run_dir: Path) -> dict[str, Any]:
    """Everything ``node status`` shows, read from the manifest and shared memory only."""
    try:
        manifest = json.loads((run_dir / "node.json").read_text())
    except (OSError, ValueError):
        raise NodeNotRunning(f"no running node in {run_dir} (no node.json)") from None
    prefix = manifest["prefix"]
    now = time.time_ns()
    out: dict[str, Any] = {
        "node": manifest["node"],
        "pid": manifest["pid"],
        "venue": manifest["venue"],
        "uptime_s": round((now - manifest["started_ns"]) / 1e9, 1),
    }
    board = StatusBoard.attach(prefix)
    actors = []
    for i, rec in enumerate(board.read_all()):
        if rec is None:
            continue
        actors.append(
            {
                "name": rec["name"].decode() or manifest["actors"][i],
                "pid": int(rec["pid"]),
                "cpu": int(rec["cpu"]),
                "state": ActorState(int(rec["state"])).name,
                "restarts": int(rec["restarts"]),
                "heartbeat_age_ms": round((now - int(rec["ts_pub"])) / 1e6, 1),
                "work": int(rec["work"]),
            }
        )
    board.close()
    out["actors"] = actors
    rings = []
    for name in manifest["segments"]:
        if name.endswith((".tob", ".pstatus", ".subs")):
            continue
        with contextlib.suppress(WiresensError):
            r = Ring.attach(name, None)
            s = r.stats()
            rings.append(
                {
                    "name": name[len(prefix) + 1 :],
                    "capacity": s.capacity,
                    "fill": s.fill,
                    "written": s.written,
                    "read": s.read,
                    "full": s.full,
                }
            )
            r.close()
    out["rings"] = rings
    tob = SeqlockSlots.attach(f"{prefix}.tob", TOP_OF_BOOK)
    buf = memoryview(bytearray(TOP_OF_BOOK.itemsize))
    import numpy as np

    books = []
    for i, sym in enumerate(manifest["symbols"]):
        seq = tob.read(i, buf)
        if seq > 0:
            t = np.frombuffer(buf, TOP_OF_BOOK)[0]
            books.append(
                {
                    "symbol": sym,
                    "bid": from_fixed(int(t["bid_px"])),
                    "bid_qty": from_fixed(int(t["bid_qty"])),
                    "ask": from_fixed(int(t["ask_px"])),
                    "ask_qty": from_fixed(int(t["ask_qty"])),
                    "age_ms": round((now - int(t["ts_pub"])) / 1e6, 1),
                }
            )
        else:
            books.append({"symbol": sym, "bid": None, "ask": None})
    tob.close()
    out["books"] = books
    ps = SeqlockSlots.attach(f"{prefix}.pstatus", POLICY_STATUS)
    pbuf = memoryview(bytearray(POLICY_STATUS.itemsize))
    pols = []
    nsym = len(manifest["symbols"])
    for p in manifest["policies"]:
        for s in p["symbols"]:
            if ps.read(p["index"] * nsym + s - 1, pbuf) <= 0:
                continue
            r = np.frombuffer(pbuf, POLICY_STATUS)[0]
            pols.append(
                {
                    "policy": p["name"],
                    "symbol": manifest["symbols"][s - 1],
                    "killed": bool(int(r["flags"]) & STATUS_KILLED_FLAG),
                    "open_orders": int(r["open_orders"]),
                    "orders": int(r["orders"]),
                    "fills": int(r["fills"]),
                    "rejects": int(r["rejects"]),
                    "position": from_fixed(int(r["position"])),
                    "realized_pnl": from_fixed(int(r["realized_pnl"])),
                    "unrealized_pnl": from_fixed(int(r["unrealized_pnl"])),
                    "tick_to_route_p50_us": round(int(r["lat_p50_ns"]) / 1e3, 1),
                    "tick_to_route_p99_us": round(int(r["lat_p99_ns"]) / 1e3, 1),
                }
            )
    ps.close()
    out["policies"] = pols
    sinks: dict[str, Any] = {}
    sink_dir = Path(manifest.get("event_log_dir", "")) / "sinks"
    for f in sorted(sink_dir.glob("*.status.json")) if manifest.get("event_log_dir") else []:
        with contextlib.suppress(OSError, ValueError):
            sinks[f.name.split(".")[0]] = json.loads(f.read_text())
    out["sinks"] = sinks
    out["accounts"] = _account_rows(run_dir, manifest.get("accounts") or [])
    return out


def _account_rows(run_dir: Path, names: list[str]) -> list[dict[str, Any]]:
    """Per account: the feed's session state and rate headroom, execution's reconciliation."""
    feed = {a.get("name"): a for a in _read_json(run_dir / FEED_STATUS).get("accounts", [])}
    ex = {a.get("name"): a for a in _read_json(run_dir / EXECUTION_STATUS).get("accounts", [])}
    rows = []
    for name in names or list(feed):
        f, e = feed.get(name, {}), ex.get(name, {})
        rows.append(
            {
                "name": name,
                "connected": bool(f.get("connected")),
                "logged_on": bool(f.get("logged_on")),
                "orders_sent": int(f.get("orders_sent", 0)),
                "rejects": int(f.get("rejects", 0)),
                "reconnects": int(f.get("reconnects", 0)),
                "paced": int(f.get("paced", 0)),
                "headroom": dict(f.get("headroom") or {}),
                "blocked_s": float(f.get("blocked_s", 0.0)),
                "banned": bool(f.get("banned")),
                "fatal": f.get("fatal") or "",
                "open_orders": int(e.get("open_orders", 0)),
                "reconciles": int(e.get("reconciles", 0)),
                "differences": int(e.get("differences", 0)),
                "positions_corrected": int(e.get("positions_corrected", 0)),
            }
        )
    return rows


def _headroom_text(headroom: dict[str, Any]) -> str:
    """``"REQUEST_WEIGHT:1M": 5390`` -> ``weight 5390/1m``; -1 (no known bound) -> ``?``."""
    short = {"REQUEST_WEIGHT": "weight", "ORDERS": "orders", "RAW_REQUESTS": "raw"}
    parts = []
    for key, left in sorted(headroom.items()):
        kind, _, window = key.partition(":")
        parts.append(f"{short.get(kind, kind)} {'?' if left < 0 else left}/{window.lower()}")
    return ", ".join(parts) or "-"


def render_status(st: dict[str, Any]) -> str:
    """The status as plain text tables."""
    lines = [
        f"node {st['node']} (pid {st['pid']}, venue {st['venue']}, up {st['uptime_s']:.0f} s)",
    ]
    rates = st.get("rates")
    if rates:
        lines.append(
            "rates: "
            + ", ".join(f"{name} {rate:,.0f}/s" for name, rate in rates.items())
            + "  (feed: exchange messages; others: records handled)"
        )
    lines.append("")
    lines.append(
        f"{'ACTOR':<20} {'STATE':<10} {'PID':>7} {'CPU':>4} {'RESTARTS':>8} {'HEARTBEAT':>10} {'WORK':>10}"
    )
    for a in st["actors"]:
        cpu = "-" if a["cpu"] < 0 else str(a["cpu"])
        lines.append(
            f"{a['name']:<20} {a['state']:<10} {a['pid']:>7} {cpu:>4} {a['restarts']:>8} "
            f"{a['heartbeat_age_ms']:>8.0f}ms {a['work']:>10}"
        )
    lines += ["", f"{'BOOK':<10} {'BID':>14} {'QTY':>12} {'ASK':>14} {'QTY':>12}"]
    for b in st["books"]:
        if b["bid"] is None:
            lines.append(f"{b['symbol']:<10} {'(not synced)':>14}")
        else:
            lines.append(
                f"{b['symbol']:<10} {b['bid']:>14} {b['bid_qty']:>12} {b['ask']:>14} {b['ask_qty']:>12}"
            )
    lines += [
        "",
        f"{'POLICY':<10} {'':<6} {'SYMBOL':<9} {'OPEN':>5} {'ORDERS':>7} {'FILLS':>6} {'REJ':>4} "
        f"{'POSITION':>12} {'REALIZED':>12} {'UNREALIZED':>12} {'p50us':>7} {'p99us':>7}",
    ]
    for p in st["policies"]:
        flag = "KILLED" if p.get("killed") else ""
        lines.append(
            f"{p['policy']:<10} {flag:<6} {p['symbol']:<9} {p['open_orders']:>5} {p['orders']:>7} {p['fills']:>6} "
            f"{p['rejects']:>4} {p['position']:>12} {p['realized_pnl']:>12} {p['unrealized_pnl']:>12} "
            f"{p['tick_to_route_p50_us']:>7} {p['tick_to_route_p99_us']:>7}"
        )
    if st.get("sinks"):
        lines += [
            "",
            f"{'SINK':<10} {'STATE':<10} {'RECORDS':>10} {'LAG(B)':>10} {'RETRIES':>8}  LAST ERROR",
        ]
        for name, k in st["sinks"].items():
            lines.append(
                f"{name:<10} {k.get('state', '?')!s:<10} {k.get('records', 0):>10} "
                f"{k.get('lag_bytes', 0):>10} {k.get('total_retries', 0):>8}  {k.get('last_error') or ''}"
            )
    if st.get("accounts"):
        lines += [
            "",
            f"{'ACCOUNT':<12} {'SESSION':<10} {'OPEN':>5} {'SENT':>7} {'REJ':>5} {'RECONN':>6} "
            f"{'PACED':>6} {'RECONC':>6} {'DIFFS':>5}  RATE HEADROOM",
        ]
        for a in st["accounts"]:
            session = "logged on" if a["logged_on"] else "signed" if a["connected"] else "down"
            room = _headroom_text(a["headroom"])
            if a["banned"] or a["blocked_s"]:
                room = f"{'BANNED' if a['banned'] else 'BLOCKED'} {a['blocked_s']:.0f}s; {room}"
            lines.append(
                f"{a['name']:<12} {session:<10} {a['open_orders']:>5} {a['orders_sent']:>7} "
                f"{a['rejects']:>5} {a['reconnects']:>6} {a['paced']:>6} {a['reconciles']:>6} "
                f"{a['differences']:>5}  {room}"
            )
            if a["fatal"]:
                lines.append(f"  FATAL: {a['fatal']}")
    lines += ["", f"{'RING':<12} {'FILL':>6} {'CAP':>6} {'WRITTEN':>10} {'READ':>10} {'FULL':>6}"]
    for r in st["rings"]:
        lines.append(
            f"{r['name']:<12} {r['fill']:>6} {r['capacity']:>6} {r['written']:>10} {r['read']:>10} {r['full']:>6}"
        )
    return "\n".join(lines)
