"""Wiresens actor processes (feed gateway, policy host, execution, sidecar, StrategyMaster).

Import as ``wiresens.actors`` (``wiresens/actors`` is a relative symlink to this folder).
Actors hold loops, not business logic: the logic lives in ``wiresens`` domain
modules that the back-tester drives too.
"""

from __future__ import annotations

if __name__ != "wiresens.actors":  # pragma: no cover - guard against a second module identity
    raise ImportError(
        f"the actors package was imported as {__name__!r}; import it as `wiresens.actors`"
    )

__all__: list[str] = []
