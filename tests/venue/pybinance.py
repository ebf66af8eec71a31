"""python-binance, imported as published.

Its WebSocket module imports a name that ``websockets`` >= 14 deprecates; the
warning is the library's, not ours, so it is silenced for that import only
(the suite turns warnings into errors).
"""

from __future__ import annotations

import asyncio
import warnings
from typing import Any

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "websockets.*deprecated", DeprecationWarning)
    from binance import AsyncClient, BinanceSocketManager
    from binance.client import Client
    from binance.exceptions import BinanceAPIException
    from binance.ws.websocket_api import WebsocketAPI

__all__ = [
    "AsyncClient",
    "BinanceAPIException",
    "BinanceSocketManager",
    "Client",
    "WebsocketAPI",
    "close_loop",
    "sync_client",
]


class _Loop:
    """The event loop handed to sync python-binance clients (their constructor wants one).

    Without it each client makes the thread's loop and never closes it; the
    session fixture in conftest closes this one.
    """

    loop: asyncio.AbstractEventLoop | None = None


def sync_client(base_url: str, key: str | None, secret: str | None, **kw: Any) -> Client:
    """A python-binance ``Client`` whose REST base URL is the venue's.

    ``API_URL`` is the library's documented switch (as for the testnet);
    ``ping=False`` keeps the constructor from calling the real exchange.
    """
    if _Loop.loop is None:
        _Loop.loop = asyncio.new_event_loop()
    asyncio.set_event_loop(_Loop.loop)  # the constructor takes the thread's loop
    c = Client(key, secret, ping=False, **kw)
    c.API_URL = base_url + "/api"
    return c


def close_loop() -> None:
    if _Loop.loop is not None:
        asyncio.set_event_loop(None)
        _Loop.loop.close()
        _Loop.loop = None
