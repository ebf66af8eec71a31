"""Wiresens' shared-memory substrate: segments, SPSC rings, seqlock slots, idle strategies.

Knows numpy dtypes and POSIX shared memory, nothing about trading. Import it as
``wiresens.shm`` (``wiresens/shm`` is a relative symlink to this folder).
"""

from __future__ import annotations

if __name__ != "wiresens.shm":  # pragma: no cover - guard against a second module identity
    raise ImportError(
        f"the shm package was imported as {__name__!r}; import it as `wiresens.shm` "
        "so that its classes have one identity"
    )

from .bytering import ByteRing, FrameConsumer, FrameProducer
from .doorbell import Doorbell
from .errors import (
    LayoutMismatchError,
    SegmentExistsError,
    SegmentNotFoundError,
    ShmError,
    UnsupportedPlatformError,
    WiresensError,
)
from .idle import BlockIdle, IdleStrategy, SpinIdle, YieldIdle, make_idle
from .process import process_alive, self_id
from .ring import Consumer, Producer, Ring, RingStats, check_platform
from .segment import Segment, SegmentInfo, Structure, describe, dtype_hash, list_segments, unlink
from .seqlock import SeqlockSlots

__all__ = [
    "BlockIdle",
    "ByteRing",
    "Consumer",
    "Doorbell",
    "FrameConsumer",
    "FrameProducer",
    "IdleStrategy",
    "LayoutMismatchError",
    "Producer",
    "Ring",
    "RingStats",
    "Segment",
    "SegmentExistsError",
    "SegmentInfo",
    "SegmentNotFoundError",
    "SeqlockSlots",
    "ShmError",
    "SpinIdle",
    "Structure",
    "UnsupportedPlatformError",
    "WiresensError",
    "YieldIdle",
    "check_platform",
    "describe",
    "dtype_hash",
    "list_segments",
    "make_idle",
    "process_alive",
    "self_id",
    "unlink",
]
