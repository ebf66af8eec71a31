"""Type stubs of the C back-test loop (wiresens/backtest/_simcore.c)."""

from collections.abc import Callable, Sequence
from typing import Any

CONSTANTS: dict[str, int]
"""The record enum values compiled in; wiresens.backtest.engine checks them at import."""

class Clock:
    now: int
    def __call__(self) -> int: ...

class Core:
    def __init__(
        self,
        *,
        clock: Clock,
        er: Any,
        er_void: Any,
        er_b: memoryview,
        er_symbol_offset: int,
        tr: Any,
        tr_void: Any,
        tr_offsets: tuple[int, int, int, int, int, int, int],
        nsym: int,
        maker_rate: int,
        taker_rate: int,
        queue_probabilistic: bool,
        power: float,
        response_ns: int,
        local_ns: int,
        entry_ns: int,
        entry_draws: Callable[[int], Sequence[int]] | None,
        check: Callable[..., int],
        risk_table: list[Any],
        policy_byte: int,
        account_byte: int,
    ) -> None: ...
    def submit(self, record: memoryview) -> bool: ...
    def run(
        self,
        columns: tuple[Any, ...],
        n: int,
        nlevels: int,
        views: list[Any],
        policy: Any,
        trades_wanted: bool,
        timer_ns: int,
        next_timer: int,
        sample_ns: int,
        next_sample: int,
        progress: Callable[[int, int], None] | None,
        mask: int,
    ) -> None: ...
    def drain(self, policy: Any, until: int) -> None: ...
    def sample(self, ts: int) -> None: ...
    def state(self) -> dict[str, Any]: ...
    def results(self) -> tuple[bytes, bytes, bytes]: ...
