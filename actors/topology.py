"""Names and shapes of a node's rings and slots (one place, so every actor agrees).

::

    feed ──md.<p>──────────► policy p ──oq.<p>──► execution ──orders──► feed
    feed ──reports─────────────────────────────► execution ──er.<p>──► policy p
    feed ──tob (seqlock, one slot per symbol)

``<p>`` is the policy's slot: its index in the node config, then the spare slots a
node with a control plane keeps for policies started at run time (names could exceed
the 47 characters a segment name may have). ``subs`` holds, per slot, the symbols the
feed sends it (the node writes a spare slot's row when it starts a policy there).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from wiresens.records import (
    MARKET_SLOT,
    ORDER_SLOT,
    POLICY_STATUS,
    SCHEMA_VERSION,
    TOP_OF_BOOK,
    RecordKind,
)
from wiresens.shm import ByteRing, Ring, SeqlockSlots

__all__ = ["Topology"]


@dataclass(frozen=True)
class Topology:
    prefix: str
    policies: int
    symbols: int
    md_capacity: int = 1 << 16
    order_capacity: int = 1 << 12
    tap_capacity: int = 1 << 24
    taps: tuple[str, ...] = ("feed", "execution")

    def md(self, p: int) -> str:
        return f"{self.prefix}.md.{p}"

    def oq(self, p: int) -> str:
        return f"{self.prefix}.oq.{p}"

    def er(self, p: int) -> str:
        return f"{self.prefix}.er.{p}"

    @property
    def orders(self) -> str:
        return f"{self.prefix}.orders"

    @property
    def reports(self) -> str:
        return f"{self.prefix}.reports"

    @property
    def ctl(self) -> str:
        """CONTROL records from operators (``wiresens node kill|resume``) to execution."""
        return f"{self.prefix}.ctl"

    @property
    def tob(self) -> str:
        return f"{self.prefix}.tob"

    @property
    def pstatus(self) -> str:
        """Seqlock slots of POLICY_STATUS, one per (policy, symbol): slot p * symbols + s - 1."""
        return f"{self.prefix}.pstatus"

    @property
    def subs(self) -> str:
        """Seqlock slots, one per policy slot: which symbols the feed sends that slot."""
        return f"{self.prefix}.subs"

    def subs_dtype(self) -> np.dtype[Any]:
        """A ``subs`` row: ``symbols[s]`` is 1 when the slot gets symbol ``s`` (1-based)."""
        width = (self.symbols + 1 + 7) // 8 * 8
        return np.dtype([("symbols", "u1", (width,))])

    def tap(self, actor: str) -> str:
        """The tap ring (frames to the sidecar) of ``actor``."""
        return f"{self.prefix}.tap.{actor}"

    def names(self) -> list[str]:
        out = [
            self.orders,
            self.reports,
            self.ctl,
            self.tob,
            self.pstatus,
            self.subs,
            *(self.tap(a) for a in self.taps),
        ]
        for p in range(self.policies):
            out += [self.md(p), self.oq(p), self.er(p)]
        return out

    def create(self) -> list[str]:
        """Create every ring and slot segment; returns their names (the master unlinks them)."""
        made: list[Ring | SeqlockSlots] = []
        for p in range(self.policies):
            made.append(Ring.create(self.md(p), MARKET_SLOT, self.md_capacity))
            made.append(Ring.create(self.oq(p), ORDER_SLOT, self.order_capacity))
            made.append(Ring.create(self.er(p), ORDER_SLOT, self.order_capacity))
        made.append(Ring.create(self.orders, ORDER_SLOT, self.order_capacity))
        made.append(Ring.create(self.reports, ORDER_SLOT, self.order_capacity))
        made.append(Ring.create(self.ctl, MARKET_SLOT, 256))
        made.append(
            SeqlockSlots.create(
                self.tob,
                TOP_OF_BOOK,
                max(1, self.symbols),
                record_kind=int(RecordKind.TOP_OF_BOOK),
                schema_version=SCHEMA_VERSION[RecordKind.TOP_OF_BOOK],
            )
        )
        made.append(
            SeqlockSlots.create(
                self.pstatus,
                POLICY_STATUS,
                max(1, self.symbols * self.policies),
                record_kind=int(RecordKind.POLICY_STATUS),
                schema_version=SCHEMA_VERSION[RecordKind.POLICY_STATUS],
            )
        )
        made.append(SeqlockSlots.create(self.subs, self.subs_dtype(), max(1, self.policies)))
        taps = [ByteRing.create(self.tap(a), self.tap_capacity) for a in self.taps]
        names = [t.segment.name for t in taps]
        for t in taps:
            t.close()
        for m in made:
            names.append(m.segment.name)
            m.close()
        return names
