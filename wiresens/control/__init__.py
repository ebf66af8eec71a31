"""The control plane: etcd-backed desired/actual state, the API server, the node agent.

See ``docs/control-plane.md``. Import the parts you need from their modules
(``wiresens.control.agent.NodeAgent``, ``wiresens.control.apiserver.create_app``, ...);
this package re-exports the documents and the agent, which a node needs, and keeps the
ASGI framework out of a node's imports.
"""

from __future__ import annotations

from .agent import NodeAgent
from .models import (
    AgentStatus,
    Command,
    KillSwitch,
    NodeInfo,
    NodeState,
    NodeView,
    PolicyRecord,
    PolicySpec,
)
from .reconcile import Plan, plan, to_config
from .store import EtcdUnavailable, Store

__all__ = [
    "AgentStatus",
    "Command",
    "EtcdUnavailable",
    "KillSwitch",
    "NodeAgent",
    "NodeInfo",
    "NodeState",
    "NodeView",
    "Plan",
    "PolicyRecord",
    "PolicySpec",
    "Store",
    "plan",
    "to_config",
]
