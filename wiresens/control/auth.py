"""API tokens with roles, read from a TOML file that only the API server reads.

::

    # tokens.toml (chmod 600)
    [[token]]
    name = "ops"                 # who: shown in audit fields (updated_by, issued_by)
    role = "admin"               # viewer < trader < admin
    sha256 = "9f86d08..."        # hex sha256 of the token (preferred), or:
    # token = "plain-text"       # the token itself

``viewer`` reads; ``trader`` also applies/deletes policies and kills/resumes/restarts;
``admin`` may do everything (and forget lost nodes). Tokens never go to etcd.
Generate one with ``wiresens apiserver token``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from pathlib import Path
from typing import Literal

import msgspec

from wiresens.errors import ConfigError

__all__ = ["ROLES", "Principal", "TokenEntry", "TokenTable", "new_token"]

Role = Literal["viewer", "trader", "admin"]
ROLES: dict[str, int] = {"viewer": 0, "trader": 1, "admin": 2}


class TokenEntry(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    name: str
    role: Role
    sha256: str | None = None
    token: str | None = msgspec.field(default=None)

    def __repr__(self) -> str:  # the token is a secret
        return f"TokenEntry(name={self.name!r}, role={self.role!r})"


class _File(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    token: list[TokenEntry] = msgspec.field(default_factory=list)


class Principal(msgspec.Struct, frozen=True):
    """Who called: the token's name and role."""

    name: str
    role: Role

    def may(self, role: str) -> bool:
        """True when this principal's role is ``role`` or above."""
        return ROLES[self.role] >= ROLES[role]


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def new_token() -> tuple[str, str]:
    """A fresh random token and its hex sha256 (for the ``sha256`` key)."""
    tok = secrets.token_urlsafe(32)
    return tok, hashlib.sha256(tok.encode()).hexdigest()


class TokenTable:
    """Token -> principal lookups in constant time per entry."""

    def __init__(self, entries: list[TokenEntry]) -> None:
        self._entries: list[tuple[bytes, Principal]] = []
        for i, e in enumerate(entries):
            if (e.sha256 is None) == (e.token is None):
                raise ConfigError(
                    f"token[{i}] ({e.name!r}) needs exactly one of `sha256` or `token`"
                )
            if e.sha256 is not None:
                try:
                    d = bytes.fromhex(e.sha256)
                except ValueError:
                    d = b""
                if len(d) != 32:
                    raise ConfigError(f"token[{i}].sha256 ({e.name!r}) is not 64 hex digits")
            else:
                assert e.token is not None
                if len(e.token) < 16:
                    raise ConfigError(
                        f"token[{i}].token ({e.name!r}) is shorter than 16 characters; "
                        "make one with `wiresens apiserver token`"
                    )
                d = _digest(e.token)
            self._entries.append((d, Principal(e.name, e.role)))

    @classmethod
    def load(cls, path: str | Path) -> TokenTable:
        """Read a tokens file; errors name the file and the key."""
        p = Path(path)
        try:
            data = p.read_bytes()
        except OSError as exc:
            raise ConfigError(
                f"cannot read tokens file {p}: {exc.strerror}; create it (see "
                "docs/control-plane.md, `wiresens apiserver token` prints an entry)"
            ) from None
        try:
            f = msgspec.toml.decode(data, type=_File)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ConfigError(f"{p}: {exc}") from None
        if not f.token:
            raise ConfigError(f"{p} has no [[token]] entry: add at least one admin token")
        return cls(f.token)

    def lookup(self, token: str) -> Principal | None:
        """The principal of ``token``, or None."""
        d = _digest(token)
        found = None
        for digest, who in self._entries:
            if hmac.compare_digest(digest, d):
                found = who
        return found
