"""Queue-position models: where a resting order stands in the queue at its price.

A resting order joins behind the displayed quantity at its price (``ahead``). Trades at
its price consume ``ahead`` first, then fill the order; a trade *through* its price (or
the opposite side of the market moving onto it) fills it whole. What the models differ
on is a shrink of the level that trades do not explain (cancellations)::

    level before  ████████████░░░░░░   ahead = 12, behind = 6
    cancelled     ──────── 6 ────────
    conservative  ahead stays 12 unless the level falls below it (min(ahead, level))
    probabilistic ahead -= 6 * f(12) / (f(12) + f(6)),  f(x) = x ** power

The conservative model assumes every cancel came from behind the order (the worst
case for the order); the probabilistic model takes the expected share with a power-law
weighting (``power = 1``: in proportion to the quantities; larger powers put the cancel
more surely on the larger side), as in the queue models of hftbacktest.
"""

from __future__ import annotations

__all__ = ["ConservativeQueue", "ProbabilisticQueue", "QueueModel", "make_queue_model"]


class QueueModel:
    """Base: the rules shared by both models."""

    name = "base"

    def on_cancel(self, ahead: int, level_before: int, cancelled: int, level_after: int) -> int:
        """The new ``ahead`` after ``cancelled`` quantity left a level of ``level_before``."""
        raise NotImplementedError


class ConservativeQueue(QueueModel):
    """Cancels are behind the order; only a level falling below ``ahead`` moves it up."""

    name = "conservative"

    def on_cancel(self, ahead: int, level_before: int, cancelled: int, level_after: int) -> int:
        return min(ahead, level_after)


class ProbabilisticQueue(QueueModel):
    """A cancel is split ahead:behind as ``f(ahead) : f(behind)``, ``f(x) = x ** power``."""

    name = "probabilistic"

    def __init__(self, power: float = 2.0) -> None:
        if power <= 0:
            raise ValueError(f"queue power must be positive, got {power}")
        self.power = power

    def on_cancel(self, ahead: int, level_before: int, cancelled: int, level_after: int) -> int:
        if ahead <= 0:
            return 0
        behind = max(level_before - ahead, 0)
        fa = float(ahead) ** self.power
        fb = float(behind) ** self.power
        share = fa / (fa + fb)
        new = ahead - int(cancelled * share)
        return max(0, min(new, level_after))


def make_queue_model(name: str, power: float = 2.0) -> QueueModel:
    """``"conservative"`` or ``"probabilistic"``."""
    if name == "conservative":
        return ConservativeQueue()
    if name == "probabilistic":
        return ProbabilisticQueue(power)
    raise ValueError(f"unknown queue model {name!r}; use 'conservative' or 'probabilistic'")
