"""Wiresens: a low-latency crypto trading platform on shared-memory actors.

See README.md and docs/ for the architecture; ``wiresens.shm`` is the
shared-memory substrate, ``wiresens.records`` every record layout.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
