"""``python -m wiresens.control --etcd HOST:PORT --node NAME``: a stand-in node.

Runs a :class:`~wiresens.control.agent.NodeAgent` alone and prints its desired policies
and commands as they change; for trying the control plane without trading.
"""

from __future__ import annotations

import argparse
import signal
import time
from collections.abc import Iterable

from .agent import NodeAgent
from .models import PolicySpec
from .store import EtcdAccess


def _names(values: Iterable[PolicySpec]) -> str:
    return ", ".join(f"{p.name}{'' if p.enabled else ' (disabled)'} {p.params}" for p in values)


def main(argv: list[str] | None = None) -> None:
    """Run a stand-in agent; prints its desired policies whenever they change."""
    ap = argparse.ArgumentParser(prog="python -m wiresens.control")
    ap.add_argument("--etcd", required=True, help="HOST:PORT")
    ap.add_argument("--prefix", default="/wiresens")
    ap.add_argument("--node", required=True)
    ap.add_argument("--ttl", type=int, default=5)
    ap.add_argument("--etcd-user", default="", help="etcd user (auth enabled)")
    ap.add_argument("--etcd-password-file", default="", help="file with its password")
    ap.add_argument("--etcd-ca", default="", help="CA bundle of etcd's certificate (TLS)")
    args = ap.parse_args(argv)
    access = EtcdAccess(
        user=args.etcd_user, password_file=args.etcd_password_file, ca_file=args.etcd_ca
    )
    agent = NodeAgent(
        args.etcd, args.prefix, args.node, {"stand_in": True}, ttl=args.ttl, access=access
    )
    # SIGTERM says goodbye like Ctrl-C (the node shows Stopped); SIGKILL leaves it Lost
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    agent.start()
    seen = -1
    try:
        while True:
            v = agent.desired_version()
            if v != seen:
                seen = v
                print(f"desired v{v}: {_names(agent.desired_policies() or [])}", flush=True)
            for c in agent.pending_commands():
                print(f"command: {c.kind} policy={c.policy} actor={c.actor}", flush=True)
            agent.report({"node": args.node, "actors": [], "policies": [], "books": []})
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        agent.stop()


main()
