"""Venue accounts file: the example decodes, typos fail with their path, secrets stay hidden."""

from __future__ import annotations

from pathlib import Path

import pytest

from wiresens.errors import ConfigError
from wiresens.fixedpoint import to_fixed
from wiresens.venue.accounts import load_accounts

EXAMPLE = Path(__file__).parents[2] / "config" / "venue-accounts.toml"


def test_example_accounts_file_decodes() -> None:
    accs = load_accounts(EXAMPLE)
    names = [a.name for a in accs.accounts]
    assert names == ["alice", "bob"]
    types = sorted(k.type for k, _ in accs.keys.values())
    assert types == ["ED25519", "HMAC", "HMAC"]
    assert accs.accounts[0].balances["USDT"].free == to_fixed("100000")


def test_secrets_are_redacted_in_repr() -> None:
    accs = load_accounts(EXAMPLE)
    for key, _ in accs.keys.values():
        text = repr(key)
        assert "redacted" in text
        if key.secret:
            assert key.secret not in text
        assert key.api_key not in text


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ('[[accounts]]\nname = "a"\nbalanse = {}\n', "balanse"),
        (
            '[[accounts]]\nname = "a"\nbalances = { USDT = "1.123456789" }\n',
            "accounts[0].balances.USDT",
        ),
        (
            '[[accounts]]\nname = "a"\n[[accounts.keys]]\napi_key = "k"\ntype = "RSA"\n',
            "HMAC, ED25519",
        ),
        ('[[accounts]]\nname = "a"\n[[accounts.keys]]\napi_key = "k"\ntype = "HMAC"\n', "secret"),
    ],
)
def test_bad_files_name_the_key(tmp_path: Path, body: str, needle: str) -> None:
    p = tmp_path / "acc.toml"
    p.write_text(body)
    with pytest.raises(ConfigError, match=needle.replace("[", r"\[").replace("]", r"\]")):
        load_accounts(p)
