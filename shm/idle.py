"""Idle strategies: what a consumer does when a duty cycle found no work.

An actor's loop calls ``idle.idle(work)`` after each ``do_work()``; ``work`` is
how much it did. Any work resets the strategy.

* ``spin``: return at once. Lowest latency; burns the whole CPU.
* ``yield``: spin ``spins`` empty cycles, then ``sched_yield()`` each cycle.
* ``block``: spin ``spins`` empty cycles, then sleep on the consumer's
  :class:`~.doorbell.Doorbell` until a producer rings it or ``timeout`` passes.
  Suits small machines where a spinning actor would starve the others.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Protocol

from .doorbell import Doorbell
from .ring import Consumer

__all__ = ["BlockIdle", "IdleStrategy", "SpinIdle", "YieldIdle", "make_idle"]

IDLE_NAMES = ("spin", "yield", "block")


class IdleStrategy(Protocol):
    name: str

    def idle(self, work: int) -> None: ...

    def close(self) -> None: ...


class SpinIdle:
    name = "spin"

    def idle(self, work: int) -> None:
        return None

    def close(self) -> None:
        return None


class YieldIdle:
    name = "yield"

    def __init__(self, spins: int = 1000) -> None:
        self.spins = spins
        self._empty = 0

    def idle(self, work: int) -> None:
        if work:
            self._empty = 0
            return
        self._empty += 1
        if self._empty > self.spins:
            os.sched_yield()

    def close(self) -> None:
        return None


class BlockIdle:
    """Spin, then block on a doorbell shared by all the consumer's rings."""

    name = "block"

    def __init__(
        self, consumers: Sequence[Consumer], spins: int = 1000, timeout: float = 0.001
    ) -> None:
        self.spins = spins
        self.timeout = timeout
        self.consumers = list(consumers)
        self.doorbell = Doorbell.create()
        for c in self.consumers:
            c.arm(self.doorbell)
        self._empty = 0
        self.sleeps = 0
        self.wakeups = 0

    def add(self, consumer: Consumer) -> None:
        consumer.arm(self.doorbell)
        self.consumers.append(consumer)

    def idle(self, work: int) -> None:
        if work:
            self._empty = 0
            return
        self._empty += 1
        if self._empty <= self.spins:
            return
        armed: list[Consumer] = []
        for c in self.consumers:
            if not c.set_waiting():
                for a in armed:
                    a.clear_waiting()
                return
            armed.append(c)
        self.sleeps += 1
        if self.doorbell.wait(self.timeout):
            self.wakeups += 1
        for c in armed:
            c.clear_waiting()

    def close(self) -> None:
        for c in self.consumers:
            c.arm(None)
        self.doorbell.close()


def make_idle(
    name: str, consumers: Sequence[Consumer] = (), spins: int = 1000, timeout: float = 0.001
) -> IdleStrategy:
    """Build an idle strategy from its config name (``spin``, ``yield`` or ``block``)."""
    if name == "spin":
        return SpinIdle()
    if name == "yield":
        return YieldIdle(spins)
    if name == "block":
        return BlockIdle(consumers, spins, timeout)
    raise ValueError(f"idle strategy {name!r} is not one of {', '.join(IDLE_NAMES)}")
