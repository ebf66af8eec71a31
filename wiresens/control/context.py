"""The CLI's context file: which API server to talk to, with which token.

::

    # ~/.config/wiresens/config.toml (chmod 600: it holds tokens)
    current = "local"

    [contexts.local]
    server = "http://127.0.0.1:8470"
    token = "..."

    [contexts.prod]
    server = "https://10.0.0.5:8470"
    token = "..."
    ca_file = "~/.config/wiresens/prod-ca.pem"   # the CA that signed the server's cert
    # insecure_skip_verify = true                # never in production: no server check

Resolution, first found wins: ``--server``/``--token`` options (or ``WIRESENS_SERVER``,
``WIRESENS_TOKEN``); then ``--context`` (or ``WIRESENS_CONTEXT``), which is either a
context name in the file or the path of another context file; then the file's
``current`` context; then ``http://127.0.0.1:8470`` without a token. ``ca_file`` (env
``WIRESENS_CA_FILE``) is the PEM bundle an ``https://`` server's certificate is checked
against (default: the system's CAs).
"""

from __future__ import annotations

import os
from pathlib import Path

import msgspec

from wiresens.errors import ConfigError

__all__ = ["Context", "ContextFile", "default_path", "resolve"]

DEFAULT_SERVER = "http://127.0.0.1:8470"


class Context(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """One API server and the token to use there."""

    server: str = DEFAULT_SERVER
    token: str = ""
    name: str = ""
    ca_file: str = ""
    """PEM CA bundle for an ``https://`` server (empty: the system's CAs)."""
    insecure_skip_verify: bool = False
    """Do not check the server's certificate (tests only: anyone can impersonate it)."""

    def __repr__(self) -> str:  # the token is a secret
        return f"Context(name={self.name!r}, server={self.server!r})"


class ContextFile(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    current: str = ""
    contexts: dict[str, Context] = msgspec.field(default_factory=dict)


def default_path() -> Path:
    """``$XDG_CONFIG_HOME/wiresens/config.toml`` (``~/.config/...``)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "wiresens" / "config.toml"


def _load(path: Path) -> ContextFile:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return ContextFile()
    except OSError as exc:
        raise ConfigError(f"cannot read context file {path}: {exc.strerror}") from None
    try:
        return msgspec.toml.decode(data, type=ContextFile)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ConfigError(f"context file {path}: {exc}") from None


def resolve(
    context: str | None = None, server: str | None = None, token: str | None = None
) -> Context:
    """The context to use (see the module docstring for the order)."""
    context = context or os.environ.get("WIRESENS_CONTEXT") or None
    server = server or os.environ.get("WIRESENS_SERVER") or None
    token = token or os.environ.get("WIRESENS_TOKEN") or None
    path = default_path()
    name = None
    if context is not None:
        if context.endswith(".toml") or "/" in context:
            path = Path(context).expanduser()
            if not path.is_file():
                raise ConfigError(f"context file {path} does not exist")
        else:
            name = context
    cf = _load(path)
    name = name or cf.current or None
    base = Context()
    if name is not None:
        if name not in cf.contexts:
            known = ", ".join(sorted(cf.contexts)) or "none"
            raise ConfigError(
                f"context {name!r} is not in {path} (contexts: {known}); add a "
                f"[contexts.{name}] table with `server` and `token`"
            )
        base = cf.contexts[name]
    ca_file = os.environ.get("WIRESENS_CA_FILE") or base.ca_file
    if ca_file:
        ca_file = str(Path(ca_file).expanduser())
        if not Path(ca_file).is_file():
            raise ConfigError(
                f"ca_file {ca_file} (context {name or 'default'}) does not exist: point it "
                "at the PEM bundle of the CA that signed the API server's certificate"
            )
    return Context(
        server=(server or base.server).rstrip("/"),
        token=token if token is not None else base.token,
        name=name or "",
        ca_file=ca_file,
        insecure_skip_verify=base.insecure_skip_verify,
    )
