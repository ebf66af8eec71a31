"""Binance protocol: wire types, codec to records, request signing, rate-limit accounting.

- :mod:`~wiresens.binance.wire`: msgspec Structs with Binance's own field names
  (market streams, REST bodies, WebSocket API envelopes, user-data events);
- :mod:`~wiresens.binance.codec`: wire messages <-> :mod:`wiresens.records`
  (``MarketDecoder``, ``UserDecoder``, order params), never raising on bad input;
- :mod:`~wiresens.binance.signing`: HMAC / Ed25519 / RSA request signatures;
- :mod:`~wiresens.binance.ratelimit`: weight and order-count accounting, 429/418.

``codec`` is not re-exported here: it imports :mod:`wiresens.instruments`, which
imports ``wire`` from this package, and an eager import would be circular.
Import it as ``from wiresens.binance import codec``.
"""

from __future__ import annotations

from wiresens.binance import wire
from wiresens.binance.ratelimit import RateLimitState
from wiresens.binance.signing import (
    Ed25519Signer,
    HmacSigner,
    RsaSigner,
    encode_params,
    rest_payload,
    verify_ed25519,
    verify_hmac,
    verify_rsa,
    ws_payload,
)

__all__ = [
    "Ed25519Signer",
    "HmacSigner",
    "RateLimitState",
    "RsaSigner",
    "encode_params",
    "rest_payload",
    "verify_ed25519",
    "verify_hmac",
    "verify_rsa",
    "wire",
    "ws_payload",
]
