"""python-binance, imported as published.

Its WebSocket module imports a name that ``websockets`` >= 14 deprecates; the
warning is the library's, not ours, so it is silenced for that import only
(the suite turns warnings into errors).
"""

from __future__ import annotations

import warnings

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "websockets.*deprecated", DeprecationWarning)
    from binance import AsyncClient, BinanceSocketManager
    from binance.client import Client
    from binance.exceptions import BinanceAPIException
    from binance.ws.websocket_api import WebsocketAPI

__all__ = ["AsyncClient", "BinanceAPIException", "BinanceSocketManager", "Client", "WebsocketAPI"]
