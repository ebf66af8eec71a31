"""What a node must do to match its desired policies: a pure function, no I/O.

The node's loop calls :func:`plan` when :meth:`NodeAgent.desired_version` changed and
carries the plan out with its supervisor (stop, then restart, then start)::

    p = plan(agent.desired_policies(), running_configs)
    for name in p.stop: ...
    for cfg in p.restart: ...   # same name, changed class/params/cpu/symbols/...
    for cfg in p.start: ...
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from wiresens.config import PolicyConfig

from .models import PolicySpec

__all__ = ["Plan", "plan", "to_config"]


class Plan(msgspec.Struct, frozen=True, kw_only=True):
    """Policies to stop (names), restart with a new config, and start; all sorted by name."""

    stop: list[str] = msgspec.field(default_factory=list)
    restart: list[PolicyConfig] = msgspec.field(default_factory=list)
    start: list[PolicyConfig] = msgspec.field(default_factory=list)

    def empty(self) -> bool:
        """True when the node already matches."""
        return not (self.stop or self.restart or self.start)


def to_config(spec: PolicySpec) -> PolicyConfig:
    """The node config ``[[policy]]`` table of a spec."""
    return msgspec.convert(spec.config_fields(), PolicyConfig)


def plan(desired: Sequence[PolicySpec] | None, running: Sequence[PolicyConfig]) -> Plan:
    """Changes that turn ``running`` into the enabled policies of ``desired``.

    ``desired`` None (the agent has not synced yet) means "no instruction": the node
    keeps what it runs (its own config), so the plan is empty. A disabled or absent
    policy is stopped.
    """
    if desired is None:
        return Plan()
    want = {s.name: to_config(s) for s in desired if s.enabled}
    have = {c.name: c for c in running}
    return Plan(
        stop=sorted(n for n in have if n not in want),
        restart=[want[n] for n in sorted(want) if n in have and have[n] != want[n]],
        start=[want[n] for n in sorted(want) if n not in have],
    )
