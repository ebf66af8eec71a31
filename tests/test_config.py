"""Node config: decoding, every error naming its TOML path and fix, the embedded default."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import msgspec
import pytest

from wiresens.config import (
    ConfigWarning,
    NodeConfig,
    account_limits,
    account_names,
    default_config_text,
    load_config,
    load_credentials,
    load_policy_class,
)
from wiresens.errors import ConfigError
from wiresens.risk import AccountLimits

REPO = Path(__file__).resolve().parent.parent
MM_FILE = REPO / "examples" / "market_maker.py"

MINIMAL = f"""
[feed]
symbols = ["BTCUSDT", "ETHUSDT"]

[[policy]]
name = "mm"
class = "{MM_FILE}:MarketMaker"
symbols = ["BTCUSDT"]
[policy.params]
qty = 100000
max_position = 1000000
"""


def write(tmp_path: Path, text: str, name: str = "node.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def load_text(tmp_path: Path, text: str) -> NodeConfig:
    return load_config(write(tmp_path, text), check_system=False)


def test_embedded_default_is_config_node_toml() -> None:
    assert default_config_text() == (REPO / "config" / "node.toml").read_bytes()


def test_embedded_default_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = load_config(None, check_system=False)
    assert cfg.feed.venue == "local"
    assert cfg.feed.symbols == ["BTCUSDT", "ETHUSDT"]
    assert [p.name for p in cfg.policy] == ["mm"]
    assert cfg.policy[0].cls == "examples.market_maker:MarketMaker"
    assert cfg.run_dir == tmp_path / "run"
    cls = load_policy_class(cfg.policy[0].cls, cfg.base_dir)
    assert cls.__name__ == "MarketMaker"


def test_every_node_config_under_config_decodes() -> None:
    files = sorted((REPO / "config").glob("node*.toml"))
    assert files
    for f in files:
        cfg = load_config(f, check_system=False)
        assert cfg.source == str(f)


def test_minimal_config_and_defaults(tmp_path: Path) -> None:
    cfg = load_text(tmp_path, MINIMAL)
    assert cfg.node.idle.strategy == "block"
    assert cfg.feed.streams == ["depth", "bookTicker", "trade"]
    assert cfg.policy[0].timer_interval_ms == 1000
    assert cfg.policy_symbols(cfg.policy[0]) == ["BTCUSDT"]
    assert cfg.account_index(None) == 0
    assert cfg.base_dir == str(tmp_path)


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ("[node]\nnmae = 'x'\n", ["unknown key `node.nmae`", "did you mean `name`"]),
        ("[node.idle]\nstrategy = 'busy'\n", ["`node.idle.strategy`", "spin"]),
        ("[feed]\nvenue = 'kraken'\n", ["`feed.venue`", "binance"]),
        ("[feed]\nsymbols = 'BTCUSDT'\n", ["`feed.symbols`", "array"]),
        (
            "[feed]\nvenue = 'binance'\n[[feed.accounts]]\nname = 'a'\n",
            ["`feed.accounts[0].key_file` is required for venue 'binance'", "account 'a'"],
        ),
        (
            "[[feed.accounts]]\nname = 'a'\nrisk = { max_open_notional = 'lots' }\n",
            ["`feed.accounts[0].risk.max_open_notional` = 'lots'", "account 'a'"],
        ),
        (
            "[[feed.accounts]]\nname = 'a'\nrisk = { max_open_notional = '0' }\n",
            ["`feed.accounts[0].risk.max_open_notional`", "must be positive"],
        ),
        (
            "[[feed.accounts]]\nname = 'a'\nrisk = { max_open_order = 3 }\n",
            ["`feed.accounts[0].risk.max_open_order`", "did you mean `max_open_orders`"],
        ),
        ("[sidecar.kafka]\ntopic_prefix = 'x'\n", ["`sidecar.kafka.bootstrap_servers`"]),
        ("[[policy]]\nname = 'p'\nclass = 'x:Y'\ncpuu = 1\n", ["`policy[0].cpuu`", "`cpu`"]),
        ("[[policy]]\nname = 'p'\nclass = 'x:Y'\ncpu = 'one'\n", ["`policy[0].cpu`", "int"]),
        ("[[policy]]\nclass = 'x:Y'\n", ["`policy[0].name` is required"]),
        ("[[policy]\n", ["not valid TOML"]),
        ("source = 'x'\n", ["unknown key `source`"]),
    ],
)
def test_type_errors_name_the_path(tmp_path: Path, text: str, needles: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        load_text(tmp_path, text)
    msg = str(info.value)
    assert str(tmp_path / "node.toml") in msg
    for needle in needles:
        assert needle in msg, msg
    assert "$." not in msg


def test_duplicate_policy_names(tmp_path: Path) -> None:
    text = MINIMAL + MINIMAL.split('[feed]\nsymbols = ["BTCUSDT", "ETHUSDT"]\n')[1]
    with pytest.raises(ConfigError, match=r"`policy\[1\]\.name` = 'mm' duplicates `policy\[0\]"):
        load_text(tmp_path, text)


@pytest.mark.parametrize(
    ("replace", "needles"),
    [
        (("qty = 100000", "qty = 'lots'"), ["policy[mm].params.qty", "int"]),
        (("qty = 100000", "qyt = 100000"), ["policy[mm].params.qyt", "did you mean `qty`"]),
        (("max_position = 1000000", ""), ["policy[mm].params.max_position", "required"]),
        (("qty = 100000", "qty = -1"), ["policy[mm].params", "positive"]),
    ],
)
def test_params_checked_against_the_policy_params_struct(
    tmp_path: Path, replace: tuple[str, str], needles: list[str]
) -> None:
    with pytest.raises(ConfigError) as info:
        load_text(tmp_path, MINIMAL.replace(*replace))
    for needle in needles:
        assert needle in str(info.value), str(info.value)


@pytest.mark.parametrize(
    ("old", "new", "needle"),
    [
        (f"{MM_FILE}:MarketMaker", f"{MM_FILE}:MarketMakr", "did you mean"),
        (f"{MM_FILE}:MarketMaker", f"{MM_FILE}:MarketMakerParams", "not a PolicyObject"),
        (f"{MM_FILE}:MarketMaker", "no_such_pkg.strategies:X", "not found"),
        (f"{MM_FILE}:MarketMaker", "nocolon", "package.module:Class"),
        (f"{MM_FILE}:MarketMaker", "missing/file.py:X", "not found"),
        (
            'symbols = ["BTCUSDT"]\n[policy',
            'symbols = ["XRPUSDT"]\n[policy',
            "policy[0].symbols[0]",
        ),
        ('symbols = ["BTCUSDT"]\n[policy', 'account = "nope"\n[policy', "policy[0].account"),
        ('[feed]\nsymbols = ["BTCUSDT", "ETHUSDT"]', '[feed]\nsymbols = ["btcusdt"]', "upper-case"),
        ('[feed]\nsymbols = ["BTCUSDT", "ETHUSDT"]', "[feed]\nvenue = 'binance'", "feed.accounts"),
    ],
)
def test_semantic_errors(tmp_path: Path, old: str, new: str, needle: str) -> None:
    assert old in MINIMAL
    with pytest.raises(ConfigError) as info:
        load_text(tmp_path, MINIMAL.replace(old, new))
    assert needle in str(info.value), str(info.value)


def test_policy_class_as_relative_file_or_module_path(tmp_path: Path) -> None:
    (tmp_path / "strats").mkdir()
    (tmp_path / "strats" / "mine.py").write_text(
        "from wiresens.policy import PolicyObject\nclass Mine(PolicyObject):\n    pass\n"
    )
    text = MINIMAL.replace(f"{MM_FILE}:MarketMaker", "strats/mine.py:Mine").replace(
        "[policy.params]\nqty = 100000\nmax_position = 1000000\n", ""
    )
    cfg = load_text(tmp_path, text)
    assert load_policy_class(cfg.policy[0].cls, cfg.base_dir).__name__ == "Mine"
    # The module form resolves to the same file next to the config.
    cls = load_policy_class("strats.mine:Mine", tmp_path)
    assert cls.__name__ == "Mine"
    with pytest.raises(ConfigError, match=r"unknown key `policy\[mm\]\.params\.x`"):
        load_text(tmp_path, text + "[policy.params]\nx = 1\n")


def test_policy_module_that_raises_on_import(tmp_path: Path) -> None:
    (tmp_path / "bad.py").write_text("raise RuntimeError('boom')\n")
    with pytest.raises(ConfigError, match=r"raised while importing.*boom"):
        load_policy_class("bad.py:X", tmp_path)


def test_cpu_that_does_not_exist(tmp_path: Path) -> None:
    cpus = os.cpu_count() or 1
    text = MINIMAL.replace('symbols = ["BTCUSDT"]\n[policy', f"cpu = {cpus + 64}\n[policy")
    with pytest.raises(ConfigError, match=rf"`policy\[0\]\.cpu` = {cpus + 64}: this machine"):
        load_config(write(tmp_path, text))


def test_cpu_not_isolated_warns(tmp_path: Path) -> None:
    cpu = min(os.sched_getaffinity(0))
    isolated = Path("/sys/devices/system/cpu/isolated")
    if isolated.exists() and str(cpu) in isolated.read_text().split(","):
        pytest.skip(f"CPU {cpu} is isolated on this machine")
    text = MINIMAL.replace("[[policy]]", f"[execution]\ncpu = {cpu}\n\n[[policy]]").replace(
        'symbols = ["BTCUSDT"]\n[policy', f"cpu = {cpu}\n[policy"
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cfg = load_config(write(tmp_path, text))
    assert cfg.execution.cpu == cpu
    msgs = [str(w.message) for w in caught if issubclass(w.category, ConfigWarning)]
    assert any("`execution.cpu`" in m and "not an isolated CPU" in m for m in msgs), msgs
    assert any("both pin to CPU" in m for m in msgs), msgs


def test_credentials_from_key_file_redacted(tmp_path: Path) -> None:
    secret = "s3cr3tS3CR3Ts3cr3tS3CR3Ts3cr3tS3CR3Ts3cr3tS3CR3Ts3cr3tS3CR3T1234"
    key = tmp_path / "main.toml"
    key.write_text(f'api_key = "AKAKAKAKAKAK"\nsecret = "{secret}"\n')
    key.chmod(0o600)
    text = MINIMAL.replace(
        "[[policy]]", '[[feed.accounts]]\nname = "main"\nkey_file = "main.toml"\n\n[[policy]]'
    ).replace('symbols = ["BTCUSDT"]\n[policy', 'account = "main"\n[policy')
    cfg = load_text(tmp_path, text)
    assert cfg.account_index(cfg.policy[0].account) == 0
    creds = load_credentials(cfg.feed.accounts[0], cfg.base_dir)
    assert creds.secret == secret
    assert secret not in repr(creds) and secret not in str(creds)
    assert secret not in repr(cfg) and secret not in key.read_text().replace(secret, "")


def test_key_file_problems(tmp_path: Path) -> None:
    key = tmp_path / "k.toml"
    acct_text = MINIMAL.replace(
        "[[policy]]", '[[feed.accounts]]\nname = "main"\nkey_file = "k.toml"\n\n[[policy]]'
    )
    with pytest.raises(ConfigError, match=r"`feed.accounts\[0\]\.key_file` = 'k.toml': no such"):
        load_text(tmp_path, acct_text)
    key.write_text('api_key = "A"\n')
    key.chmod(0o600)
    with pytest.raises(ConfigError, match="exactly one of `secret`"):
        load_text(tmp_path, acct_text)
    key.write_text('api_key = "A"\nprivate_key = "ed.pem"\n')
    with pytest.raises(ConfigError, match=r"ed\.pem does not exist"):
        load_text(tmp_path, acct_text)
    (tmp_path / "ed.pem").write_text("-----BEGIN PRIVATE KEY-----\n")
    cfg = load_text(tmp_path, acct_text)
    creds = load_credentials(cfg.feed.accounts[0], cfg.base_dir)
    assert creds.private_key == str(tmp_path / "ed.pem")
    key.chmod(0o644)
    with pytest.warns(ConfigWarning, match="chmod 600"):
        load_credentials(cfg.feed.accounts[0], cfg.base_dir)


def test_postgres_dsn_password_redacted(tmp_path: Path) -> None:
    cfg = load_text(
        tmp_path,
        MINIMAL + '\n[sidecar.postgres]\ndsn = "postgresql://u:hunter2@127.0.0.1/db"\n',
    )
    assert cfg.sidecar.postgres is not None
    assert "hunter2" in cfg.sidecar.postgres.dsn
    assert "hunter2" not in repr(cfg)


def test_config_is_frozen(tmp_path: Path) -> None:
    cfg = load_text(tmp_path, MINIMAL)
    with pytest.raises(AttributeError):
        cfg.node.name = "other"  # type: ignore[misc]
    assert msgspec.structs.replace(cfg.node, name="x").name == "x"


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "nope.toml")


def test_accounts_on_the_local_venue_need_no_key_file_and_carry_limits(tmp_path: Path) -> None:
    text = MINIMAL.replace(
        "[[policy]]",
        '[[feed.accounts]]\nname = "a"\n\n[[feed.accounts]]\nname = "b"\n'
        'risk = { max_open_orders = 3, max_open_notional = "2500.5" }\n\n[[policy]]',
    ).replace(
        'symbols = ["BTCUSDT"]\n[policy.params]',
        'symbols = ["BTCUSDT"]\naccount = "b"\n[policy.params]',
    )
    cfg = load_text(tmp_path, text)
    assert account_names(cfg) == ["a", "b"]
    assert cfg.account_index(cfg.policy[0].account) == 1
    a, b = account_limits(cfg)
    assert a == AccountLimits() and not a.active
    assert b == AccountLimits(max_open_orders=3, max_open_notional=250_050_000_000)
    assert b.active


def test_no_accounts_means_the_single_default(tmp_path: Path) -> None:
    cfg = load_text(tmp_path, MINIMAL)
    assert account_names(cfg) == ["node"]
    assert account_limits(cfg) == [AccountLimits()]


def test_a_policy_naming_an_undeclared_account(tmp_path: Path) -> None:
    text = MINIMAL.replace("[[policy]]", '[[feed.accounts]]\nname = "a"\n\n[[policy]]').replace(
        'symbols = ["BTCUSDT"]\n[policy.params]',
        'symbols = ["BTCUSDT"]\naccount = "c"\n[policy.params]',
    )
    with pytest.raises(
        ConfigError, match=r"`policy\[0\]\.account` = 'c' .* not a \[\[feed.accounts\]\] name \(a\)"
    ):
        load_text(tmp_path, text)


def test_ack_timeout_reaches_the_config_and_must_be_positive(tmp_path: Path) -> None:
    base = '[feed]\nsymbols = ["BTCUSDT"]\n[execution]\n'
    assert load_text(tmp_path, base + "ack_timeout_s = 2.5\n").execution.ack_timeout_s == 2.5
    assert load_text(tmp_path, base).execution.ack_timeout_s == 5.0
    with pytest.raises(ConfigError, match=r"`execution.ack_timeout_s` = 0.0: use a positive"):
        load_text(tmp_path, base + "ack_timeout_s = 0.0\n")
