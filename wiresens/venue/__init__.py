"""A Binance-compatible venue: matching engine, REST, market streams and WebSocket API.

See docs/venue.md. The engine (:mod:`wiresens.venue.matching`) is plain domain
code the back-tester reuses; :class:`Venue` serves it on one port.
"""

from __future__ import annotations

from .accounts import Account, ApiKey, VenueAccounts, build_accounts, load_accounts
from .config import VenueConfig
from .matching import Engine, Order, OrderRequest, Reject
from .server import RunningVenue, Venue, start_venue

__all__ = [
    "Account",
    "ApiKey",
    "Engine",
    "Order",
    "OrderRequest",
    "Reject",
    "RunningVenue",
    "Venue",
    "VenueAccounts",
    "VenueConfig",
    "build_accounts",
    "load_accounts",
    "start_venue",
]
