"""The control plane's documents: what is stored in etcd and what the API sends.

Every document is a msgspec Struct encoded as JSON. Desired state (policies, kill
switches, commands) is written by the API server; actual state (node registrations
and reports) is written by each node's :class:`~wiresens.control.agent.NodeAgent`.
Secrets (API keys, private keys) never appear in any of them: a policy names its
``account``, and the node resolves that name from its own local files.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import msgspec

from wiresens.config import RiskConfig

__all__ = [
    "NAME_PATTERN",
    "SCHEMA_VERSION",
    "ActionResult",
    "AgentStatus",
    "Command",
    "CommandKind",
    "Health",
    "KillRequest",
    "KillSwitch",
    "NodeInfo",
    "NodeState",
    "NodeView",
    "OrderRow",
    "PolicyRecord",
    "PolicySpec",
    "PositionRow",
    "RestartRequest",
    "WatchEvent",
    "valid_name",
]

#: Version of the key layout and documents under the prefix (``<prefix>/schema``).
SCHEMA_VERSION = 1

#: Node and policy names: they are etcd key segments and shared-memory name parts.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,62}$"
_NAME_RE = re.compile(NAME_PATTERN)

Name = Annotated[str, msgspec.Meta(pattern=NAME_PATTERN, description="letters, digits, _ . -")]
Symbol = Annotated[str, msgspec.Meta(pattern=r"^[A-Z0-9]{2,20}$")]


def valid_name(name: str) -> bool:
    """True when ``name`` may be a node or policy name."""
    return _NAME_RE.match(name) is not None


class PolicySpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The desired state of one policy: which class runs where with which parameters.

    The fields are those of a node config's ``[[policy]]`` table plus ``node`` (where it
    runs) and ``enabled`` (False: the node stops it but keeps its spec).
    """

    name: Name
    cls: Annotated[str, msgspec.Meta(min_length=1, max_length=300)] = msgspec.field(name="class")
    node: Name
    cpu: Annotated[int, msgspec.Meta(ge=0, le=4095)] | None = None
    symbols: Annotated[list[Symbol], msgspec.Meta(max_length=64)] = msgspec.field(
        default_factory=list
    )
    account: Name | None = None
    timer_interval_ms: Annotated[int, msgspec.Meta(ge=1, le=86_400_000)] = 1000
    params: dict[str, Any] = msgspec.field(default_factory=dict)
    risk: RiskConfig = RiskConfig()
    enabled: bool = True

    def config_fields(self) -> dict[str, Any]:
        """The fields of a node config ``[[policy]]`` table (``msgspec.convert`` them
        to :class:`wiresens.config.PolicyConfig`)."""
        out: dict[str, Any] = msgspec.to_builtins(self)
        del out["node"], out["enabled"]
        return out


class PolicyRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A stored policy: the spec and its bookkeeping.

    ``generation`` grows by one each time the spec changes; ``revision`` is etcd's
    mod revision of the key (pass it back to ``apply`` for compare-and-set).
    """

    spec: PolicySpec
    generation: int = 1
    updated_ns: int = 0
    updated_by: str = ""
    revision: int = 0
    state: str = ""
    """What its node reported: Running, Disabled or Failed; empty: not reported yet."""
    reason: str = ""
    """Why it Failed (or why a change was not made), in the node's words."""


CommandKind = Literal["kill", "resume", "restart"]


class Command(msgspec.Struct, frozen=True, kw_only=True):
    """A one-shot instruction for one node.

    ``kill``: stop sending orders and cancel open ones (of ``policy``, or of the whole
    node when ``policy`` is None); ``resume``: undo a kill; ``restart``: restart the
    actor ``actor`` (a policy name, ``feed`` or ``execution``).
    """

    id: str
    kind: CommandKind
    node: str
    policy: str | None = None
    actor: str | None = None
    issued_ns: int = 0
    issued_by: str = ""
    reason: str = ""


class KillSwitch(msgspec.Struct, frozen=True, kw_only=True):
    """A persistent kill switch; ``scope`` is ``all``, ``node:NAME`` or ``policy:NAME``."""

    scope: str
    issued_ns: int = 0
    issued_by: str = ""
    reason: str = ""


class NodeInfo(msgspec.Struct, frozen=True, kw_only=True):
    """What a node registers (under its lease)."""

    name: str
    capabilities: dict[str, Any] = msgspec.field(default_factory=dict)
    pid: int = 0
    host: str = ""
    started_ns: int = 0
    lease_id: int = 0
    ttl_s: int = 0


class NodeState(msgspec.Struct, frozen=True, kw_only=True):
    """The node's last report (kept after the node is gone, so a lost node shows)."""

    info: NodeInfo
    status: dict[str, Any] = msgspec.field(default_factory=dict)
    reported_ns: int = 0
    stopped: bool = False


class NodeView(msgspec.Struct, frozen=True, kw_only=True):
    """A node as the API shows it: ``state`` is Ready (lease alive), Lost (lease expired
    without a goodbye) or Stopped (the agent said goodbye)."""

    name: str
    state: Literal["Ready", "Lost", "Stopped"]
    info: NodeInfo
    status: dict[str, Any] = msgspec.field(default_factory=dict)
    reported_ns: int = 0
    policies: list[str] = msgspec.field(default_factory=list)
    killed: bool = False


class KillRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Body of ``kill`` and ``resume``: neither field = every node."""

    node: Name | None = None
    policy: Name | None = None
    reason: Annotated[str, msgspec.Meta(max_length=500)] = ""


class RestartRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Body of ``restart``: the actor (policy name, ``feed``, ``execution``) on ``node``."""

    node: Name
    actor: Name
    reason: Annotated[str, msgspec.Meta(max_length=500)] = ""


class ActionResult(msgspec.Struct, frozen=True, kw_only=True):
    """What a mutating call did."""

    action: str
    target: str
    commands: list[Command] = msgspec.field(default_factory=list)
    revision: int = 0


class WatchEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One change under the prefix, as streamed by ``/api/v1/watch``."""

    kind: str
    type: Literal["PUT", "DELETE"]
    name: str
    revision: int
    value: Any = None


class AgentStatus(msgspec.Struct, frozen=True, kw_only=True):
    """What :meth:`NodeAgent.status` says about the agent's link to the control plane.

    ``mode``: ``connected``; ``fail-static`` (etcd lost, the node runs its last known
    desired state until etcd answers again); ``unsynced`` (no desired state read yet:
    the node runs its own config).
    """

    node: str
    endpoint: str
    mode: Literal["connected", "fail-static", "unsynced"]
    connected: bool
    desired_known: bool
    policies: int
    since_ns: int
    last_sync_ns: int
    last_error: str
    sessions: int
    lease_id: int


class OrderRow(msgspec.Struct, frozen=True, kw_only=True):
    """Order counters of one policy and symbol on one node, from the node's last report."""

    node: str
    policy: str
    symbol: str
    open_orders: int = 0
    orders: int = 0
    fills: int = 0
    rejects: int = 0
    reported_ns: int = 0


class PositionRow(msgspec.Struct, frozen=True, kw_only=True):
    """Position and PnL of one policy and symbol on one node, from the node's last report
    (exact decimal strings, as the node prints its 8-decimal fixed point)."""

    node: str
    policy: str
    symbol: str
    position: str = "0"
    realized_pnl: str = "0"
    unrealized_pnl: str = "0"
    reported_ns: int = 0


class Health(msgspec.Struct, frozen=True, kw_only=True):
    """``/healthz``: the API server answers; ``etcd`` says whether etcd does."""

    status: Literal["ok", "degraded"]
    etcd: Literal["ok", "down"]
    endpoint: str
    prefix: str
    detail: str = ""
