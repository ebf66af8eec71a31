"""Tokens and roles; the CLI's context file resolution."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wiresens.control.auth import ROLES, Principal, TokenEntry, TokenTable, new_token
from wiresens.control.context import resolve
from wiresens.errors import ConfigError

roles = st.sampled_from(sorted(ROLES))


@given(have=roles, need=roles)
def test_roles_are_ordered(have: str, need: str) -> None:
    p = Principal("x", have)  # type: ignore[arg-type]
    assert p.may(need) == (ROLES[have] >= ROLES[need])


@given(tokens=st.lists(st.text(min_size=16, max_size=40), min_size=1, max_size=5, unique=True))
def test_lookup_finds_exactly_the_right_entry(tokens: list[str]) -> None:
    entries = [
        TokenEntry(name=f"n{i}", role="viewer", token=t)
        if i % 2
        else TokenEntry(name=f"n{i}", role="trader", sha256=hashlib.sha256(t.encode()).hexdigest())
        for i, t in enumerate(tokens)
    ]
    table = TokenTable(entries)
    for i, t in enumerate(tokens):
        who = table.lookup(t)
        assert who is not None and who.name == f"n{i}"
        assert table.lookup(t + "x") is None or (t + "x") in tokens


def test_tokens_file_errors_name_the_problem(tmp_path: Path) -> None:
    p = tmp_path / "t.toml"
    with pytest.raises(ConfigError, match="cannot read tokens file"):
        TokenTable.load(p)
    p.write_text('[[token]]\nname = "a"\nrole = "boss"\ntoken = "0123456789abcdef"\n')
    with pytest.raises(ConfigError, match=r"\$\.token\[0\]\.role"):
        TokenTable.load(p)
    p.write_text('[[token]]\nname = "a"\nrole = "admin"\ntoken = "short"\n')
    with pytest.raises(ConfigError, match="shorter than 16"):
        TokenTable.load(p)
    p.write_text('[[token]]\nname = "a"\nrole = "admin"\n')
    with pytest.raises(ConfigError, match="exactly one of"):
        TokenTable.load(p)
    tok, digest = new_token()
    p.write_text(f'[[token]]\nname = "a"\nrole = "admin"\nsha256 = "{digest}"\n')
    who = TokenTable.load(p).lookup(tok)
    assert who == Principal("a", "admin")
    assert tok not in repr(TokenEntry(name="a", role="admin", token=tok))


def test_context_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("WIRESENS_CONTEXT", "WIRESENS_SERVER", "WIRESENS_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    # no file: the local default, no token
    ctx = resolve()
    assert (ctx.server, ctx.token) == ("http://127.0.0.1:8470", "")
    f = tmp_path / "wiresens" / "config.toml"
    f.parent.mkdir()
    f.write_text(
        'current = "lab"\n'
        '[contexts.lab]\nserver = "http://10.0.0.1:8470/"\ntoken = "lab-token"\n'
        '[contexts.prod]\nserver = "http://10.0.0.2:8470"\ntoken = "prod-token"\n'
    )
    assert (resolve().server, resolve().token) == ("http://10.0.0.1:8470", "lab-token")
    assert resolve("prod").token == "prod-token"
    monkeypatch.setenv("WIRESENS_CONTEXT", "prod")
    assert resolve().server == "http://10.0.0.2:8470"
    assert resolve(token="t").token == "t"  # options beat the file
    other = tmp_path / "other.toml"
    other.write_text('[contexts.x]\nserver = "http://h:1"\n')
    # --context beats WIRESENS_CONTEXT; a file without `current` means the default server
    assert resolve(str(other)).server == "http://127.0.0.1:8470"
    other.write_text('current = "x"\n[contexts.x]\nserver = "http://h:1"\n')
    assert resolve(str(other)).server == "http://h:1"
    monkeypatch.delenv("WIRESENS_CONTEXT")
    with pytest.raises(ConfigError, match=r"contexts: lab, prod"):
        resolve("nope")
