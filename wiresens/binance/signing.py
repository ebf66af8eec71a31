"""Signing Binance requests: HMAC-SHA256, Ed25519 and RSA (PKCS#1 v1.5, SHA-256).

What is signed differs between the two APIs:

- REST: ``totalParams``, the query string concatenated with the request body
  exactly as sent (percent-encoded, no ``&`` between them): :func:`rest_payload`
  over strings built with :func:`encode_params`;
- WebSocket API: every ``params`` member except ``signature``, sorted by name,
  joined as ``key=value&...`` without percent-encoding, UTF-8: :func:`ws_payload`.

HMAC signatures are hex (case-insensitive); Ed25519 and RSA signatures are
base64 (case-sensitive; percent-encode them when they go into a query string).
Signers never show their key in ``repr``. Verification functions return False
on any malformed input instead of raising: the venue simulator calls them on
whatever a client sent.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping
from urllib.parse import quote

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from wiresens.errors import ConfigError

__all__ = [
    "Ed25519Signer",
    "HmacSigner",
    "RsaSigner",
    "Signer",
    "encode_params",
    "format_value",
    "new_ed25519_key",
    "rest_payload",
    "verify_ed25519",
    "verify_hmac",
    "verify_rsa",
    "ws_payload",
]


def format_value(value: object) -> str:
    """A parameter value as Binance reads it: booleans lower-case, everything else ``str``.

    Floats are formatted by ``str`` too, but prices and quantities should arrive
    here as exact decimal strings (``wiresens.fixedpoint.from_fixed``).
    """
    if value is True:
        return "true"
    if value is False:
        return "false"
    return str(value)


def encode_params(params: Mapping[str, object]) -> str:
    """Percent-encode ``params`` as ``k=v&...`` in the given order, as the client sends them.

    Every reserved character is escaped (RFC 3986 unreserved ones stay), so the
    string signed is byte for byte the string sent.
    """
    return "&".join(
        f"{quote(str(k), safe='')}={quote(format_value(v), safe='')}" for k, v in params.items()
    )


def rest_payload(query: str, body: str = "") -> str:
    """The REST signature payload ``totalParams``: query string then body, no separator."""
    return query + body


def ws_payload(params: Mapping[str, object]) -> str:
    """The WebSocket API signature payload: params but ``signature``, sorted, unencoded."""
    return "&".join(f"{k}={format_value(params[k])}" for k in sorted(params) if k != "signature")


class HmacSigner:
    """HMAC-SHA256 with the API secret; ``sign`` returns lower-case hex."""

    __slots__ = ("_key",)

    def __init__(self, secret: str) -> None:
        if not secret:
            raise ConfigError("HMAC secret is empty: set the API secret of the account's key")
        self._key = secret.encode("utf-8")

    def sign(self, payload: str) -> str:
        """Hex HMAC-SHA256 of the UTF-8 payload."""
        return hmac.new(self._key, payload.encode("utf-8"), hashlib.sha256).hexdigest()

    def __repr__(self) -> str:
        return "HmacSigner(secret=<redacted>)"


def _load_private_key(
    pem: bytes, password: bytes | None, kind: str
) -> ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=password)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ConfigError(
            f"cannot load the {kind} private key: {exc}; expected an unencrypted PKCS#8 PEM "
            "('-----BEGIN PRIVATE KEY-----') or pass the right password"
        ) from exc
    if not isinstance(key, ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey):
        raise ConfigError(
            f"the private key is a {type(key).__name__}, not an {kind} key; "
            "use the PEM of the key registered with Binance"
        )
    return key


def new_ed25519_key() -> tuple[bytes, bytes]:
    """A fresh Ed25519 key pair as PEM: (PKCS#8 private key, SubjectPublicKeyInfo public
    key), the forms Binance takes (the public key is registered, the private one signs)."""
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public


class Ed25519Signer:
    """Ed25519 with a PEM private key; ``sign`` returns base64. Required for WS ``session.logon``."""

    __slots__ = ("_key",)

    def __init__(self, private_key_pem: bytes, password: bytes | None = None) -> None:
        key = _load_private_key(private_key_pem, password, "Ed25519")
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise ConfigError(
                "the private key is RSA, not Ed25519: use RsaSigner or the Ed25519 key's PEM"
            )
        self._key = key

    def sign(self, payload: str) -> str:
        """Base64 Ed25519 signature of the UTF-8 payload."""
        return base64.b64encode(self._key.sign(payload.encode("utf-8"))).decode("ascii")

    def public_key_pem(self) -> bytes:
        """The matching public key (SubjectPublicKeyInfo PEM), as registered with Binance."""
        return self._key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def __repr__(self) -> str:
        return "Ed25519Signer(private_key=<redacted>)"


class RsaSigner:
    """RSASSA-PKCS1-v1_5 with SHA-256 and a PEM private key; ``sign`` returns base64."""

    __slots__ = ("_key",)

    def __init__(self, private_key_pem: bytes, password: bytes | None = None) -> None:
        key = _load_private_key(private_key_pem, password, "RSA")
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ConfigError(
                "the private key is Ed25519, not RSA: use Ed25519Signer or the RSA key's PEM"
            )
        self._key = key

    def sign(self, payload: str) -> str:
        """Base64 PKCS#1 v1.5 SHA-256 signature of the UTF-8 payload."""
        sig = self._key.sign(payload.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
        return base64.b64encode(sig).decode("ascii")

    def public_key_pem(self) -> bytes:
        """The matching public key (SubjectPublicKeyInfo PEM)."""
        return self._key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def __repr__(self) -> str:
        return "RsaSigner(private_key=<redacted>)"


Signer = HmacSigner | Ed25519Signer | RsaSigner
"""Any of the three signers (they share ``sign(payload) -> str``)."""


def verify_hmac(secret: str, payload: str, signature: str) -> bool:
    """True when ``signature`` is the HMAC-SHA256 of ``payload`` (hex, any letter case)."""
    expected = hmac.new(secret.encode("utf-8"), payload.encode("utf-8"), hashlib.sha256)
    return hmac.compare_digest(expected.hexdigest(), signature.lower())


def _b64(signature: str) -> bytes | None:
    try:
        return base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        return None


def _load_public_key(pem: bytes) -> object | None:
    try:
        return serialization.load_pem_public_key(pem)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return None


def verify_ed25519(public_key_pem: bytes, payload: str, signature: str) -> bool:
    """True when ``signature`` (base64) is a valid Ed25519 signature of ``payload``."""
    key = _load_public_key(public_key_pem)
    raw = _b64(signature)
    if not isinstance(key, ed25519.Ed25519PublicKey) or raw is None:
        return False
    try:
        key.verify(raw, payload.encode("utf-8"))
    except InvalidSignature:
        return False
    return True


def verify_rsa(public_key_pem: bytes, payload: str, signature: str) -> bool:
    """True when ``signature`` (base64) is a valid PKCS#1 v1.5 SHA-256 signature."""
    key = _load_public_key(public_key_pem)
    raw = _b64(signature)
    if not isinstance(key, rsa.RSAPublicKey) or raw is None:
        return False
    try:
        key.verify(raw, payload.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True
