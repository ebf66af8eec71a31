"""The actor lifecycle as one transition table.

::

    NEW ──► STARTING ──► RUNNING ──► STOPPING ──► STOPPED
               │            │            │
               └────────────┴────────────┴──► FAILED ──► RESTARTING ──► STARTING
                                                 └──────► GAVE_UP   (too many restarts)

The actor process moves itself through STARTING, RUNNING, STOPPING and
STOPPED (or FAILED when a hook raises); the StrategyMaster, once the process
has exited, moves FAILED (or a process that died without saying so) to
RESTARTING or GAVE_UP. Each state is published in the node's status segment.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = ["TRANSITIONS", "ActorState", "IllegalTransition", "check_transition"]


class ActorState(IntEnum):
    NEW = 0
    STARTING = 1
    RUNNING = 2
    STOPPING = 3
    STOPPED = 4
    FAILED = 5
    RESTARTING = 6
    GAVE_UP = 7


S = ActorState
TRANSITIONS: dict[ActorState, frozenset[ActorState]] = {
    S.NEW: frozenset({S.STARTING}),
    S.STARTING: frozenset({S.RUNNING, S.STOPPING, S.FAILED}),
    S.RUNNING: frozenset({S.STOPPING, S.FAILED}),
    S.STOPPING: frozenset({S.STOPPED, S.FAILED}),
    S.STOPPED: frozenset({S.STARTING}),
    S.FAILED: frozenset({S.RESTARTING, S.GAVE_UP}),
    S.RESTARTING: frozenset({S.STARTING}),
    S.GAVE_UP: frozenset({S.STARTING}),
}


class IllegalTransition(RuntimeError):
    pass


def check_transition(old: ActorState, new: ActorState) -> None:
    if new not in TRANSITIONS[old]:
        raise IllegalTransition(
            f"actor state {old.name} -> {new.name} is not in the lifecycle table"
        )
