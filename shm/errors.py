"""Errors raised by the shared-memory substrate.

The root of Wiresens' one error tree, :class:`WiresensError`, is defined here
because ``shm`` is the bottom layer and may import nothing else from Wiresens;
``wiresens.errors`` re-exports it and draws the whole tree.
"""

from __future__ import annotations

__all__ = [
    "LayoutMismatchError",
    "SegmentExistsError",
    "SegmentNotFoundError",
    "ShmError",
    "UnsupportedPlatformError",
    "WiresensError",
]


class WiresensError(Exception):
    """Root of every error Wiresens raises on purpose.

    ``retriable`` tells supervisors and sinks whether doing the same thing again
    later may succeed (a service that is down) or not (a bad config key).
    """

    retriable: bool = False


class ShmError(WiresensError):
    """A shared-memory segment could not be created, attached or used."""


class SegmentExistsError(ShmError, FileExistsError):
    """A segment of that name exists already (another node, or a stale one)."""


class SegmentNotFoundError(ShmError, FileNotFoundError):
    """No segment of that name exists (its creator has not started, or it was removed)."""

    retriable = True


class LayoutMismatchError(ShmError, ValueError):
    """The segment's header does not match what the attaching side expects."""


class UnsupportedPlatformError(ShmError, RuntimeError):
    """The lock-free structures have not been validated on this CPU architecture."""
