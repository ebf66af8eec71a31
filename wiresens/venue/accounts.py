"""Venue accounts: API keys (HMAC or Ed25519), commission rates and balances.

Accounts come from a TOML file (``config/venue-accounts.toml`` is the example)::

    [[accounts]]
    name = "alice"
    maker_commission_bps = 10          # Binance's unit: 10 = 0.10 %
    taker_commission_bps = 10
    balances = { USDT = "100000", BTC = "2" }

    [[accounts.keys]]
    api_key = "..."
    type = "HMAC"                      # secret = "..."
    secret = "..."

    [[accounts.keys]]
    api_key = "..."
    type = "ED25519"                   # public_key = PEM of the client's key
    public_key = "-----BEGIN PUBLIC KEY-----\\n...\\n-----END PUBLIC KEY-----\\n"

Secrets never appear in ``repr`` or logs. Runtime balances are plain ints in
8-decimal fixed point: ``free`` and ``locked`` per asset.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from wiresens.errors import ConfigError
from wiresens.fixedpoint import to_fixed

__all__ = ["Account", "AccountConfig", "ApiKey", "Balance", "VenueAccounts", "load_accounts"]

KEY_TYPES = ("HMAC", "ED25519")


class ApiKey(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One API key: ``type`` HMAC (``secret``) or ED25519 (``public_key`` PEM)."""

    api_key: str
    type: str = "HMAC"
    secret: str = ""
    public_key: str = ""
    can_trade: bool = True

    def __repr__(self) -> str:
        return f"ApiKey(api_key={self.api_key[:6]!r}..., type={self.type!r}, secret=<redacted>)"


class AccountConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One account as written in the accounts TOML file."""

    name: str
    keys: list[ApiKey] = []
    balances: dict[str, str] = {}
    maker_commission_bps: int = 10
    taker_commission_bps: int = 10


class _File(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    accounts: list[AccountConfig] = []


@dataclass(slots=True)
class Balance:
    """Free and locked amount of one asset, fixed point."""

    free: int = 0
    locked: int = 0


@dataclass(slots=True)
class Account:
    """A live account: its id (index), name, commissions and balances."""

    id: int
    name: str
    maker_bps: int
    taker_bps: int
    balances: dict[str, Balance] = field(default_factory=dict)
    uid: int = 0

    def balance(self, asset: str) -> Balance:
        b = self.balances.get(asset)
        if b is None:
            b = self.balances[asset] = Balance()
        return b


@dataclass(slots=True)
class VenueAccounts:
    """All accounts and the API-key index used to authenticate requests."""

    accounts: list[Account]
    keys: dict[str, tuple[ApiKey, Account]]

    def by_key(self, api_key: str) -> tuple[ApiKey, Account] | None:
        return self.keys.get(api_key)


def build_accounts(configs: list[AccountConfig], source: str = "<accounts>") -> VenueAccounts:
    """Validate account configs and build the live accounts."""
    accounts: list[Account] = []
    keys: dict[str, tuple[ApiKey, Account]] = {}
    for i, cfg in enumerate(configs):
        acc = Account(i, cfg.name, cfg.maker_commission_bps, cfg.taker_commission_bps, uid=1000 + i)
        for asset, amount in cfg.balances.items():
            try:
                acc.balance(asset).free = to_fixed(amount)
            except ValueError as exc:
                raise ConfigError(
                    f"{source}: accounts[{i}].balances.{asset} = {amount!r}: {exc}"
                ) from None
        for j, key in enumerate(cfg.keys):
            where = f"{source}: accounts[{i}].keys[{j}]"
            if key.type not in KEY_TYPES:
                raise ConfigError(f"{where}.type = {key.type!r}: use one of {', '.join(KEY_TYPES)}")
            if key.type == "HMAC" and not key.secret:
                raise ConfigError(f"{where}: an HMAC key needs `secret`")
            if key.type == "ED25519" and "BEGIN PUBLIC KEY" not in key.public_key:
                raise ConfigError(f"{where}: an ED25519 key needs `public_key` (a PEM public key)")
            if key.api_key in keys:
                raise ConfigError(f"{where}.api_key is used twice; API keys must be unique")
            keys[key.api_key] = (key, acc)
        accounts.append(acc)
    return VenueAccounts(accounts, keys)


def load_accounts(path: str | Path) -> VenueAccounts:
    """Read an accounts TOML file; a typo fails with the path to the key."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read accounts file {p}: {exc.strerror}") from None
    try:
        f = msgspec.toml.decode(raw, type=_File)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{p}: {exc}") from None
    return build_accounts(f.accounts, str(p))
