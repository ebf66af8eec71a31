"""Binance protocol: wire types, codec to records, request signing, rate-limit accounting.

``wire`` holds the msgspec Structs (Binance's own field names), ``codec`` turns them
into the numpy records of :mod:`wiresens.records` and back, ``signing`` signs REST
and WebSocket API requests (HMAC, Ed25519, RSA), ``ratelimit`` tracks the weight and
order-count headers. The order book and its snapshot/diff sync live beside them.
"""

from __future__ import annotations

__all__: list[str] = []
