"""The node configuration: ``config/node.toml`` decoded into frozen msgspec Structs.

::

    NodeConfig
    ├── node: NodeSection            [node]        name, shm_prefix, idle, log, run_dir, data_dir
    │   └── idle: IdleConfig         [node.idle]   strategy spin|yield|block, spins, timeout_ms
    ├── feed: FeedConfig             [feed]        venue, symbols, streams, cpu
    │   ├── accounts: [AccountConfig]  [[feed.accounts]]  name, key_file, risk
    │   └── local: LocalVenueConfig  [feed.local]  host, port, market synthetic:SEED|replay:FILE
    ├── execution: ExecutionConfig   [execution]   cpu, idle
    ├── sidecar: SidecarConfig       [sidecar]     cpu, event_log_dir, kafka?, postgres?
    └── policy: [PolicyConfig]       [[policy]]    name, class, cpu, symbols, account,
                                                   timer_interval_ms, params

:func:`load_config` decodes with ``msgspec.toml.decode`` (tomllib underneath) and then
checks what types cannot: CPUs exist, names are unique, symbols and accounts are
declared, each policy class imports and its ``params`` fit its ``Params`` Struct. Every
problem is a :class:`~wiresens.errors.ConfigError` naming the TOML path of the key
(``policy[0].cpu``, ``policy[mm].params.spread_bps``) and what to do. Questionable but
workable settings (a CPU that is not isolated, two actors on one CPU) are
:class:`ConfigWarning` warnings.

Relative paths: ``node.run_dir`` and ``node.data_dir`` resolve against the current
directory when the config is loaded (the loaded config holds them absolute); files the
config refers to (``key_file``, a policy ``class`` given as a file) resolve against the
config file's directory (for the embedded default: the repository root).

Secrets never live in ``node.toml``: an account names a ``key_file`` (TOML with
``api_key`` and ``secret``, or ``api_key`` and ``private_key`` = path of an Ed25519
PEM), read by :func:`load_credentials` when the feed connects. Reprs redact secrets.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import os
import re
import sys
import types
import typing
import warnings
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import msgspec

from .errors import ConfigError, FixedPointError
from .fixedpoint import to_fixed
from .policy import PolicyObject
from .risk import AccountLimits, RiskLimits

__all__ = [
    "AccountConfig",
    "AccountRiskConfig",
    "ConfigWarning",
    "Credentials",
    "ExecutionConfig",
    "FeedConfig",
    "IdleConfig",
    "KafkaConfig",
    "LocalVenueConfig",
    "NodeConfig",
    "NodeSection",
    "PolicyConfig",
    "PostgresConfig",
    "SidecarConfig",
    "account_limits",
    "account_names",
    "default_config_text",
    "load_config",
    "load_credentials",
    "load_policy_class",
    "policy_params",
]

EMBEDDED = "<embedded default>"


class ConfigWarning(UserWarning):
    """A setting that works but is probably not what a latency-sensitive node wants."""


class IdleConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """What an actor does when a duty cycle finds no work (see ``wiresens.shm.idle``)."""

    strategy: Literal["spin", "yield", "block"] = "block"
    spins: int = 1000
    timeout_ms: float = 1.0


class NodeSection(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    name: str = "local"
    shm_prefix: str = "wiresens"
    idle: IdleConfig = IdleConfig()
    log_target: Literal["auto", "journald", "file"] = "auto"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    run_dir: str = "run"
    data_dir: str = "data"


class AccountRiskConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Limits of one account over all the policies bound to it (absent: no limit)."""

    max_open_orders: int | None = None
    """Working orders of the account at once."""
    max_open_notional: str | None = None
    """Quote-asset price x remaining quantity summed over the account's working orders
    plus the new one, e.g. "250000"."""


class AccountConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """An exchange account; its keys are in ``key_file``, never in node.toml.

    ``key_file`` is required for Binance venues; the local venue provisions a fresh
    Ed25519 key per account and run (a given key file is still checked, not used).
    """

    name: str
    key_file: str = ""
    risk: AccountRiskConfig = AccountRiskConfig()


class LocalVenueConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The built-in Binance-compatible venue (``venue = "local"``)."""

    host: str = "127.0.0.1"
    port: int = 0
    market: str = "synthetic:1"


class FeedConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    venue: Literal["local", "binance", "binance-testnet"] = "local"
    symbols: list[str] = msgspec.field(default_factory=lambda: ["BTCUSDT"])
    streams: list[Literal["depth", "bookTicker", "trade"]] = msgspec.field(
        default_factory=lambda: ["depth", "bookTicker", "trade"]
    )
    cpu: int | None = None
    idle: IdleConfig | None = None
    accounts: list[AccountConfig] = msgspec.field(default_factory=list)
    local: LocalVenueConfig = LocalVenueConfig()


class RiskConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Pre-trade limits of a policy (quantities and notionals as decimal strings)."""

    max_order_qty: str | None = None
    """Base-asset quantity of one order, e.g. "0.5"."""
    max_order_notional: str | None = None
    """Quote-asset price x quantity of one order, e.g. "50000"."""
    max_position: str | None = None
    """Absolute position per symbol, counting open orders on the same side."""
    max_open_orders: int | None = None
    price_band_bps: int | None = None
    """Reject limit prices further than this from the mid (fat finger); 0: off."""
    max_orders_per_s: int | None = None
    max_orders_per_10s: int | None = None


class KillConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Automatic kill-switch triggers (0 / empty: off)."""

    loss_limit: str | None = None
    """Per policy: realized + unrealized PnL below minus this (quote asset) kills it."""
    reject_storm: int = 0
    """Per policy: this many rejects within 10 s kills it."""
    feed_stale_s: float = 0.0
    """Node: no top of book for this long (after the first) kills the node."""


class ExecutionConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    cpu: int | None = None
    idle: IdleConfig | None = None
    risk: RiskConfig = RiskConfig()
    """Defaults for every policy; a policy's own [policy.risk] overrides key by key."""
    kill: KillConfig = KillConfig()
    reconcile_interval_s: float = 60.0
    """Besides every (re)connect of an account's session: ask each account's open orders
    and balances this often and reconcile them (0: only at connects)."""
    ack_timeout_s: float = 5.0
    """An order whose new or cancel request has had no answer for this long is queried."""


def _redact_dsn(dsn: str) -> str:
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", re.sub(r"(password=)\S+", r"\1***", dsn))


class KafkaConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    bootstrap_servers: list[str]
    topic_prefix: str = "wiresens"
    client_id: str = "wiresens-sidecar"


class PostgresConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    dsn: str
    schema: str = "wiresens"

    def __repr__(self) -> str:
        return f"PostgresConfig(dsn={_redact_dsn(self.dsn)!r}, schema={self.schema!r})"


class SidecarConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    cpu: int | None = None
    event_log_dir: str = "events"
    kafka: KafkaConfig | None = None
    postgres: PostgresConfig | None = None


class PolicyConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """One ``[[policy]]`` table: a PolicyObject to run in its own process."""

    name: str
    cls: str = msgspec.field(name="class")
    cpu: int | None = None
    symbols: list[str] = msgspec.field(default_factory=list)
    """Empty: every symbol of the feed."""
    account: str | None = None
    """Empty: the first ``[[feed.accounts]]`` (or the local venue's account)."""
    timer_interval_ms: int = 1000
    params: dict[str, Any] = msgspec.field(default_factory=dict)
    risk: RiskConfig = RiskConfig()


class ControlConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The control plane this node registers with (absent: a standalone node)."""

    etcd: str
    """etcd client address, ``host:port``."""
    prefix: str = "/wiresens"
    ttl_s: int = 5
    """Lease of the node's registration: it shows Lost this long after it dies."""
    spare_policy_slots: int = 2
    """Policy slots (rings, status rows) kept free for policies the control plane starts
    that are not in this file."""
    timeout_s: float = 5.0
    """Deadline of each etcd call."""
    etcd_user: str = ""
    """etcd user when etcd has auth enabled; its password is in ``etcd_password_file``."""
    etcd_password_file: str = ""
    etcd_ca_file: str = ""
    """PEM CA bundle of etcd's server certificate: set, the node talks TLS to etcd."""
    etcd_cert_file: str = ""
    """Client certificate and key, for an etcd that checks client certificates."""
    etcd_key_file: str = ""


class NodeConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    node: NodeSection = NodeSection()
    feed: FeedConfig = FeedConfig()
    execution: ExecutionConfig = ExecutionConfig()
    sidecar: SidecarConfig = SidecarConfig()
    policy: list[PolicyConfig] = msgspec.field(default_factory=list)
    control: ControlConfig | None = None
    source: str = ""
    """Set by :func:`load_config`: the file read (or ``<embedded default>``); not a TOML key."""
    base_dir: str = ""
    """Set by :func:`load_config`: where relative paths resolve; not a TOML key."""

    def path(self, value: str) -> Path:
        """``value`` as an absolute path (relative ones against ``base_dir``)."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else Path(self.base_dir or ".") / p

    @property
    def run_dir(self) -> Path:
        return Path(self.node.run_dir).expanduser().absolute()

    @property
    def data_dir(self) -> Path:
        return Path(self.node.data_dir).expanduser().absolute()

    def policy_named(self, name: str) -> PolicyConfig:
        for p in self.policy:
            if p.name == name:
                return p
        raise ConfigError(
            f"no [[policy]] named {name!r} in {self.source}; "
            f"declared: {', '.join(p.name for p in self.policy) or 'none'}"
        )

    def account_index(self, name: str | None) -> int:
        """Index of an account in ``[[feed.accounts]]`` (0 when unnamed)."""
        if name is None:
            return 0
        for i, a in enumerate(self.feed.accounts):
            if a.name == name:
                return i
        raise ConfigError(f"no [[feed.accounts]] named {name!r}")

    def policy_symbols(self, pcfg: PolicyConfig) -> list[str]:
        """The symbols a policy trades (all of the feed's when it names none)."""
        return list(pcfg.symbols) if pcfg.symbols else list(self.feed.symbols)


class Credentials(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Keys of one account, from its ``key_file``; ``repr`` never shows the secrets."""

    api_key: str
    secret: str | None = None
    private_key: str | None = None
    """Path of an Ed25519 (or RSA) private key in PEM (relative to the key file)."""
    private_key_password: str | None = None

    def __repr__(self) -> str:
        shown = f"{self.api_key[:4]}***" if len(self.api_key) > 8 else "***"
        kind = "hmac" if self.secret else "private_key"
        return f"Credentials(api_key={shown!r}, {kind}=***)"

    __str__ = __repr__


# -- errors ---------------------------------------------------------------------------

_AT = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
_UNKNOWN = re.compile(r"unknown field `(?P<key>[^`]+)`")
_MISSING = re.compile(r"missing required field `(?P<key>[^`]+)`")


def _toml_path(raw: str) -> str:
    return raw[1:] if raw.startswith(".") else raw


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _unwrap(tp: Any) -> Any:
    """The Struct type inside ``T | None`` / ``list[T]`` / ``dict[str, T]``."""
    while True:
        origin = typing.get_origin(tp)
        if origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            tp = args[0] if len(args) == 1 else tp
            if len(args) != 1:
                return tp
        elif origin in (list, tuple):
            tp = typing.get_args(tp)[0]
        elif origin is dict:
            tp = typing.get_args(tp)[1]
        else:
            return tp


def _struct_at(root: type[msgspec.Struct], path: str) -> type[msgspec.Struct] | None:
    """The Struct type a msgspec error path (without ``$``) points into."""
    tp: Any = root
    for token in re.findall(r"\.([^.\[]+)|\[[^\]]*\]", path):
        if not token:  # an index: the element type
            continue
        if not (isinstance(tp, type) and issubclass(tp, msgspec.Struct)):
            return None
        hints = typing.get_type_hints(tp)
        by_name = {f.encode_name: f.name for f in msgspec.structs.fields(tp)}
        attr = by_name.get(token)
        if attr is None:
            return None
        tp = _unwrap(hints[attr])
    tp = _unwrap(tp)
    return tp if isinstance(tp, type) and issubclass(tp, msgspec.Struct) else None


def _field_names(tp: type[msgspec.Struct]) -> list[str]:
    return [
        f.encode_name for f in msgspec.structs.fields(tp) if f.name not in ("source", "base_dir")
    ]


def _did_you_mean(key: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(key, choices, n=1, cutoff=0.6)
    if close:
        return f"did you mean `{close[0]}`?"
    return f"valid keys: {', '.join(choices)}" if choices else "this table takes no keys"


def _explain(
    err: msgspec.ValidationError,
    root: type[msgspec.Struct],
    source: str,
    prefix: str = "",
) -> ConfigError:
    m = _AT.match(str(err))
    assert m is not None
    msg, raw_path = m["msg"], m["path"] or ""
    path = _toml_path(raw_path)
    full = _join(prefix, path) if path else prefix
    unknown = _UNKNOWN.search(msg)
    if unknown:
        key = unknown["key"]
        tp = _struct_at(root, raw_path)
        hint = _did_you_mean(key, _field_names(tp)) if tp is not None else "remove it"
        return ConfigError(f"{source}: unknown key `{_join(full, key)}`: {hint}")
    missing = _MISSING.search(msg)
    if missing:
        where = f"[{full}]" if full else "the top level"
        return ConfigError(
            f"{source}: `{_join(full, missing['key'])}` is required: add "
            f"`{missing['key']} = ...` to {where}"
        )
    fix = "fix the value in the file"
    choices = _literal_choices(root, raw_path)
    if choices:
        fix = "use one of " + ", ".join(repr(c) for c in choices)
    return ConfigError(f"{source}: `{full or '<top level>'}`: {msg}; {fix}")


def _literal_choices(root: type[msgspec.Struct], raw_path: str) -> list[Any]:
    """The allowed values when the key at ``raw_path`` is a Literal (or a list of one)."""
    parent, _, key = raw_path.rpartition(".")
    key = re.sub(r"\[\d+\]$", "", key)
    tp = _struct_at(root, parent)
    if tp is None:
        return []
    names = {f.encode_name: f.name for f in msgspec.structs.fields(tp)}
    if key not in names:
        return []
    hint = typing.get_type_hints(tp)[names[key]]
    for _ in range(3):
        if typing.get_origin(hint) is Literal:
            return list(typing.get_args(hint))
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if not args:
            break
        hint = args[0]
    return []


# -- policy classes -------------------------------------------------------------------


def _repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


def load_policy_class(class_path: str, base_dir: str | Path = ".") -> type[PolicyObject]:
    """Import ``"package.module:Class"`` or ``"path/to/file.py:Class"``.

    A file path is resolved against ``base_dir``. A module path that does not import is
    also looked for as a file under ``base_dir``, its parent and the current directory
    (so ``examples.market_maker:MarketMaker`` works from a checkout without installing
    ``examples``). Raises ConfigError when it does not import or is not a PolicyObject.
    """
    mod_name, sep, cls_name = class_path.rpartition(":")
    if not sep or not mod_name or not cls_name.isidentifier():
        raise ConfigError(
            f"class {class_path!r} is not 'package.module:Class' or 'path/file.py:Class'"
        )
    module = _import_policy_module(mod_name, Path(base_dir))
    obj = getattr(module, cls_name, None)
    if obj is None:
        names = [n for n, v in vars(module).items() if isinstance(v, type)]
        raise ConfigError(
            f"class {class_path!r}: module {module.__name__!r} has no {cls_name!r}; "
            + _did_you_mean(cls_name, names).replace("valid keys", "classes there")
        )
    if not (isinstance(obj, type) and issubclass(obj, PolicyObject)):
        raise ConfigError(
            f"class {class_path!r} is not a PolicyObject subclass: derive it from "
            "wiresens.policy.PolicyObject"
        )
    return obj


def _import_policy_module(mod_name: str, base_dir: Path) -> types.ModuleType:
    if mod_name.endswith(".py") or "/" in mod_name:
        file = Path(mod_name).expanduser()
        candidates = [file] if file.is_absolute() else [base_dir / file]
    else:
        try:
            return importlib.import_module(mod_name)
        except ModuleNotFoundError as exc:
            if exc.name is None or not mod_name.startswith(exc.name):
                raise ConfigError(
                    f"policy module {mod_name!r} failed to import: {exc}; install what it needs"
                ) from exc
        except Exception as exc:
            raise ConfigError(
                f"policy module {mod_name!r} raised while importing: {exc!r}; fix the module"
            ) from exc
        rel = Path(*mod_name.split(".")).with_suffix(".py")
        candidates = [d / rel for d in (base_dir, base_dir.parent, Path.cwd(), _repo_root())]
    for file in candidates:
        if file.is_file():
            return _import_file(file.resolve())
    raise ConfigError(
        f"policy module {mod_name!r} not found (looked for "
        f"{', '.join(str(c) for c in candidates)}); give an importable module or a file path"
    )


def _import_file(file: Path) -> types.ModuleType:
    name = "wiresens_policy_" + re.sub(r"\W", "_", str(file.with_suffix("")))
    module = sys.modules.get(name)
    if module is not None:
        return module
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise ConfigError(f"cannot load policy file {file}")
    module = importlib.util.module_from_spec(spec)
    # Registered before executing: dataclasses and msgspec look their module up.
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise ConfigError(f"policy file {file} raised while importing: {exc!r}") from exc
    return module


def policy_params(pcfg: PolicyConfig, cls: type[PolicyObject]) -> msgspec.Struct:
    """``pcfg.params`` validated into ``cls.Params``; errors name ``policy[NAME].params.key``."""
    prefix = f"policy[{pcfg.name}].params"
    params_cls = cls.Params
    known = _field_names(params_cls)
    for key in pcfg.params:
        if key not in known:
            raise ConfigError(
                f"unknown key `{prefix}.{key}` for {cls.__name__}.Params: "
                + _did_you_mean(key, known)
            )
    try:
        return msgspec.convert(pcfg.params, params_cls)
    except msgspec.ValidationError as exc:
        raise _explain(exc, params_cls, f"{cls.__name__}.Params", prefix) from None


# -- system checks --------------------------------------------------------------------


def _parse_cpu_list(text: str) -> set[int]:
    cpus: set[int] = set()
    for part in text.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        cpus.update(range(int(lo), int(hi or lo) + 1))
    return cpus


def _read_cpus(name: str) -> set[int] | None:
    try:
        return _parse_cpu_list(Path(f"/sys/devices/system/cpu/{name}").read_text())
    except (OSError, ValueError):
        return None


def _cpu_keys(cfg: NodeConfig) -> Iterator[tuple[str, int]]:
    if cfg.feed.cpu is not None:
        yield "feed.cpu", cfg.feed.cpu
    if cfg.execution.cpu is not None:
        yield "execution.cpu", cfg.execution.cpu
    if cfg.sidecar.cpu is not None:
        yield "sidecar.cpu", cfg.sidecar.cpu
    for i, p in enumerate(cfg.policy):
        if p.cpu is not None:
            yield f"policy[{i}].cpu", p.cpu


def _check_cpus(cfg: NodeConfig, source: str) -> None:
    present = _read_cpus("present") or set(range(os.cpu_count() or 1))
    isolated = _read_cpus("isolated") or set()
    allowed = os.sched_getaffinity(0)
    seen: dict[int, str] = {}
    for key, cpu in _cpu_keys(cfg):
        if cpu not in present:
            raise ConfigError(
                f"{source}: `{key}` = {cpu}: this machine has CPUs "
                f"{_fmt_cpus(present)}; pick one of them (or remove the key to run unpinned)"
            )
        if cpu not in allowed and cpu not in isolated:
            warnings.warn(
                f"{source}: `{key}` = {cpu} is outside this process's CPU set "
                f"{_fmt_cpus(allowed)}; pinning will fail unless the node runs elsewhere",
                ConfigWarning,
                stacklevel=3,
            )
        elif cpu not in isolated:
            warnings.warn(
                f"{source}: `{key}` = {cpu} is not an isolated CPU "
                f"(isolated: {_fmt_cpus(isolated) or 'none'}); other tasks will share it. "
                "Boot with isolcpus=/nohz_full= for steady latency",
                ConfigWarning,
                stacklevel=3,
            )
        if cpu in seen:
            warnings.warn(
                f"{source}: `{key}` and `{seen[cpu]}` both pin to CPU {cpu}; a spinning "
                "actor there starves the other (use idle strategy 'block' or separate CPUs)",
                ConfigWarning,
                stacklevel=3,
            )
        seen.setdefault(cpu, key)


def _fmt_cpus(cpus: set[int]) -> str:
    return ",".join(str(c) for c in sorted(cpus))


# -- semantic checks ------------------------------------------------------------------

_SHM_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_SYMBOL = re.compile(r"^[A-Z0-9]{2,20}$")
_MARKET = re.compile(r"^(synthetic:\d+(:\d+)?|replay:.+)$")


def _check(cfg: NodeConfig, source: str, repo_dir: Path) -> None:
    if not _SHM_NAME.match(cfg.node.name):
        raise ConfigError(
            f"{source}: `node.name` = {cfg.node.name!r}: use 1-64 letters, digits, '_', '-', '.'"
        )
    if not _SHM_NAME.match(cfg.node.shm_prefix):
        raise ConfigError(
            f"{source}: `node.shm_prefix` = {cfg.node.shm_prefix!r}: POSIX shared-memory names "
            "take 1-64 letters, digits, '_', '-', '.'"
        )
    for key, idle in (
        ("node.idle", cfg.node.idle),
        ("feed.idle", cfg.feed.idle),
        ("execution.idle", cfg.execution.idle),
    ):
        if idle is not None and (idle.spins < 0 or idle.timeout_ms <= 0):
            raise ConfigError(
                f"{source}: `{key}`: spins must be >= 0 and timeout_ms > 0 "
                f"(got spins={idle.spins}, timeout_ms={idle.timeout_ms})"
            )
    if cfg.execution.reconcile_interval_s < 0:
        raise ConfigError(
            f"{source}: `execution.reconcile_interval_s` = {cfg.execution.reconcile_interval_s}: "
            "use 0 (reconcile at connects only) or a positive number of seconds"
        )
    if cfg.execution.ack_timeout_s <= 0:
        raise ConfigError(
            f"{source}: `execution.ack_timeout_s` = {cfg.execution.ack_timeout_s}: use a "
            "positive number of seconds (5.0 by default), longer than the venue's usual ack"
        )
    if not cfg.feed.symbols:
        raise ConfigError(f"{source}: `feed.symbols` is empty: list at least one, e.g. ['BTCUSDT']")
    for i, sym in enumerate(cfg.feed.symbols):
        if not _SYMBOL.match(sym):
            raise ConfigError(
                f"{source}: `feed.symbols[{i}]` = {sym!r}: write Binance symbols upper-case, "
                "e.g. 'BTCUSDT'"
            )
    _unique(source, "feed.symbols", cfg.feed.symbols)
    _unique(source, "feed.accounts", [a.name for a in cfg.feed.accounts], "name")
    if not _MARKET.match(cfg.feed.local.market):
        raise ConfigError(
            f"{source}: `feed.local.market` = {cfg.feed.local.market!r}: use 'synthetic:SEED' "
            "or 'synthetic:SEED:MOVE_TICKS' (integers) or 'replay:FILE'"
        )
    if not 0 <= cfg.feed.local.port < 65536:
        raise ConfigError(f"{source}: `feed.local.port` = {cfg.feed.local.port}: use 0..65535")
    if cfg.feed.venue != "local" and not cfg.feed.accounts:
        raise ConfigError(
            f"{source}: `feed.venue` = {cfg.feed.venue!r} needs at least one [[feed.accounts]] "
            "with a key_file (or use venue = 'local')"
        )
    if len(cfg.feed.accounts) > 255:
        raise ConfigError(
            f"{source}: `feed.accounts` has {len(cfg.feed.accounts)} entries; execution reports "
            "carry the account in one byte: use at most 255 accounts per node"
        )
    for i, acct in enumerate(cfg.feed.accounts):
        _check_account_risk(source, i, acct)
        if not acct.key_file:
            if cfg.feed.venue == "local":
                continue
            raise ConfigError(
                f"{source}: `feed.accounts[{i}].key_file` is required for venue "
                f'{cfg.feed.venue!r} (account {acct.name!r}): add `key_file = "..."` naming a '
                "TOML file with api_key and secret (or private_key)"
            )
        key_file = cfg.path(acct.key_file)
        if not key_file.is_file():
            raise ConfigError(
                f"{source}: `feed.accounts[{i}].key_file` = {acct.key_file!r}: no such file "
                f"({key_file}); create it with api_key and secret (or private_key)"
            )
        load_credentials(acct, cfg.base_dir, key=f"feed.accounts[{i}].key_file")
    _unique(source, "policy", [p.name for p in cfg.policy], "name")
    accounts = [a.name for a in cfg.feed.accounts]
    for i, p in enumerate(cfg.policy):
        where = f"policy[{i}]"
        if not _SHM_NAME.match(p.name):
            raise ConfigError(
                f"{source}: `{where}.name` = {p.name!r}: use letters, digits, '_', '-', '.'"
            )
        for j, sym in enumerate(p.symbols):
            if sym not in cfg.feed.symbols:
                raise ConfigError(
                    f"{source}: `{where}.symbols[{j}]` = {sym!r} (policy {p.name!r}) is not in "
                    f"feed.symbols {cfg.feed.symbols}; add it there or remove it here"
                )
        if p.account is not None and p.account not in accounts:
            raise ConfigError(
                f"{source}: `{where}.account` = {p.account!r} (policy {p.name!r}) is not a "
                f"[[feed.accounts]] name ({', '.join(accounts) or 'none declared'})"
            )
        if p.timer_interval_ms < 0:
            raise ConfigError(
                f"{source}: `{where}.timer_interval_ms` = {p.timer_interval_ms}: use 0 (no "
                "timer) or a positive number of milliseconds"
            )
        try:
            cls = load_policy_class(p.cls, repo_dir)
        except ConfigError as exc:
            raise ConfigError(f"{source}: `{where}.class` (policy {p.name!r}): {exc}") from None
        try:
            policy_params(p, cls)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None


def _check_account_risk(source: str, i: int, acct: AccountConfig) -> None:
    r = acct.risk
    if r.max_open_orders is not None and r.max_open_orders < 0:
        raise ConfigError(
            f"{source}: `feed.accounts[{i}].risk.max_open_orders` = {r.max_open_orders} "
            f"(account {acct.name!r}) must not be negative"
        )
    if r.max_open_notional is not None:
        where = f"feed.accounts[{i}].risk.max_open_notional"
        try:
            value = to_fixed(r.max_open_notional)
        except FixedPointError as exc:
            raise ConfigError(
                f"{source}: `{where}` = {r.max_open_notional!r} (account {acct.name!r}): {exc}"
            ) from None
        if value <= 0:
            raise ConfigError(
                f"{source}: `{where}` = {r.max_open_notional!r} (account {acct.name!r}) must be "
                'positive, e.g. "250000" (quote asset)'
            )


def _unique(source: str, key: str, names: list[str], field: str = "") -> None:
    seen: dict[str, int] = {}
    for i, n in enumerate(names):
        if n in seen:
            sub = f".{field}" if field else ""
            raise ConfigError(
                f"{source}: `{key}[{i}]{sub}` = {n!r} duplicates `{key}[{seen[n]}]{sub}`; "
                "names must be unique: rename one"
            )
        seen[n] = i


# -- loading --------------------------------------------------------------------------


def default_config_text() -> bytes:
    """The embedded default configuration (``config/node.toml`` as shipped)."""
    return resources.files("wiresens").joinpath("default_node.toml").read_bytes()


def decode_config(text: bytes | str, source: str = "<string>", base_dir: str = ".") -> NodeConfig:
    """Decode TOML into a NodeConfig (types only, no semantic or system checks)."""
    try:
        raw = msgspec.toml.decode(text)
    except msgspec.DecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    for reserved in ("source", "base_dir"):
        if isinstance(raw, dict) and reserved in raw:
            raise ConfigError(
                f"{source}: unknown key `{reserved}`: "
                + _did_you_mean(reserved, _field_names(NodeConfig))
            )
    try:
        cfg = msgspec.convert(raw, NodeConfig)
    except msgspec.ValidationError as exc:
        raise _explain(exc, NodeConfig, source) from None
    return msgspec.structs.replace(cfg, source=source, base_dir=str(base_dir))


def load_config(
    path: str | os.PathLike[str] | None = None, *, check_system: bool = True
) -> NodeConfig:
    """Load and check a node config; ``None`` loads the embedded default.

    Parameters
    ----------
    path : path or None
        A ``node.toml``. Relative paths inside it resolve against its directory.
    check_system : bool
        Check CPUs against this machine (off when validating a config for another host).

    Raises
    ------
    ConfigError
        With the TOML path of the bad key and the fix.
    """
    if path is None:
        text = default_config_text()
        source = EMBEDDED
        base_dir = repo_dir = _repo_root()
    else:
        file = Path(path)
        try:
            text = file.read_bytes()
        except OSError as exc:
            raise ConfigError(
                f"cannot read config {file}: {exc.strerror}; give an existing node.toml "
                "(or omit it for the embedded default)"
            ) from None
        source = str(file)
        base_dir = file.resolve().parent
        repo_dir = base_dir
    cfg = decode_config(text, source, str(base_dir))
    node = msgspec.structs.replace(
        cfg.node,
        run_dir=str(Path(cfg.node.run_dir).expanduser().absolute()),
        data_dir=str(Path(cfg.node.data_dir).expanduser().absolute()),
    )
    cfg = msgspec.structs.replace(cfg, node=node)
    _check(cfg, source, repo_dir)
    if check_system:
        _check_cpus(cfg, source)
    return cfg


def load_credentials(
    account: AccountConfig, base_dir: str | Path = ".", *, key: str = "key_file"
) -> Credentials:
    """Read an account's ``key_file`` (TOML: ``api_key`` and ``secret`` or ``private_key``)."""
    file = Path(account.key_file).expanduser()
    if not file.is_absolute():
        file = Path(base_dir) / file
    try:
        text = file.read_bytes()
    except OSError as exc:
        raise ConfigError(f"`{key}` {file}: cannot read it ({exc.strerror})") from None
    try:
        creds = msgspec.toml.decode(text, type=Credentials)
    except msgspec.ValidationError as exc:
        # The message names keys only, never values: safe to show.
        raise _explain(exc, Credentials, f"key file {file} (account {account.name!r})") from None
    except msgspec.DecodeError:
        raise ConfigError(
            f"key file {file} (account {account.name!r}) is not valid TOML; write "
            'api_key = "..." and secret = "..." (or private_key = "ed25519.pem")'
        ) from None
    if (creds.secret is None) == (creds.private_key is None):
        raise ConfigError(
            f"key file {file} (account {account.name!r}): give exactly one of `secret` (HMAC) "
            "or `private_key` (path of an Ed25519/RSA PEM)"
        )
    if creds.private_key is not None:
        pk = Path(creds.private_key).expanduser()
        if not pk.is_absolute():
            pk = file.parent / pk
        if not pk.is_file():
            raise ConfigError(
                f"key file {file} (account {account.name!r}): `private_key` {pk} does not exist"
            )
        creds = msgspec.structs.replace(creds, private_key=str(pk))
    if file.stat().st_mode & 0o077:
        warnings.warn(
            f"key file {file} is readable by group/others; chmod 600 it",
            ConfigWarning,
            stacklevel=2,
        )
    return creds


def risk_limits(cfg: NodeConfig, pcfg: PolicyConfig) -> RiskLimits:
    """The policy's limits: ``[execution.risk]`` overridden key by key by ``[policy.risk]``."""
    base, own = cfg.execution.risk, pcfg.risk
    out: dict[str, int] = {}
    for name in RiskConfig.__struct_fields__:
        value = getattr(own, name)
        where = f"policy[{pcfg.name}].risk.{name}"
        if value is None:
            value = getattr(base, name)
            where = f"execution.risk.{name}"
        if value is None:
            continue
        if isinstance(value, str):
            try:
                fixed = to_fixed(value)
            except FixedPointError as exc:
                raise ConfigError(f"`{where}` = {value!r}: {exc}") from None
            if fixed <= 0:
                raise ConfigError(f"`{where}` = {value!r} must be positive")
            out[name] = fixed
        else:
            if value < 0:
                raise ConfigError(f"`{where}` = {value} must not be negative")
            out[name] = value
    return RiskLimits(**out)


def kill_loss_limit(cfg: NodeConfig) -> int:
    """``[execution.kill] loss_limit`` in fixed point (0: off)."""
    text = cfg.execution.kill.loss_limit
    if not text:
        return 0
    try:
        return to_fixed(text)
    except FixedPointError as exc:
        raise ConfigError(f"`execution.kill.loss_limit` = {text!r}: {exc}") from None


def account_names(cfg: NodeConfig) -> list[str]:
    """The node's accounts in index order (records carry the index): the
    ``[[feed.accounts]]`` names, or ``["node"]``, the local venue's single default."""
    return [a.name for a in cfg.feed.accounts] or ["node"]


def account_limits(cfg: NodeConfig) -> list[AccountLimits]:
    """Each account's :class:`~wiresens.risk.AccountLimits` (index order, as
    :func:`account_names`), from ``[[feed.accounts]] risk = {...}``."""
    out = []
    for acct in cfg.feed.accounts:
        kw: dict[str, int] = {}
        if acct.risk.max_open_orders is not None:
            kw["max_open_orders"] = acct.risk.max_open_orders
        if acct.risk.max_open_notional is not None:
            kw["max_open_notional"] = to_fixed(acct.risk.max_open_notional)
        out.append(AccountLimits(**kw))
    return out or [AccountLimits()]
