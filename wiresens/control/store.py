"""etcd access for the control plane: the key layout, the schema key and compare-and-set.

Key layout under the prefix (default ``/wiresens``)::

    <prefix>/schema                    "1" (SCHEMA_VERSION), created once
    <prefix>/policies/<name>           PolicyRecord   desired, written by the API server
    <prefix>/switches/<scope>          KillSwitch     desired, scope = all | node:N | policy:P
    <prefix>/commands/<node>/<id>      Command        one-shot, deleted by the node's agent
    <prefix>/nodes/<name>              NodeInfo       actual, under the node's lease
    <prefix>/nodestate/<name>          NodeState      actual, the node's last report (no lease)

The client is `aetcd <https://pypi.org/project/aetcd/>`_ (asyncio, gRPC); see
``docs/decisions.md`` for why not ``etcd3``. Every call has a deadline, so an etcd that
is down surfaces as :class:`EtcdUnavailable` within ``timeout`` seconds, never a hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, TypeVar

import aetcd
import aetcd.exceptions
import aetcd.rpc
import aetcd.watcher
import grpc
import grpc.aio
import msgspec

from wiresens.errors import ConfigError, ServiceUnavailableError

from .models import SCHEMA_VERSION

__all__ = [
    "GRPC_OPTIONS",
    "EtcdAccess",
    "EtcdUnavailable",
    "HistoryCompacted",
    "Store",
    "parse_endpoint",
]

T = TypeVar("T")

DEFAULT_TIMEOUT = 5.0
"""Seconds per etcd call: long enough for a loaded machine (2 s was missed under CI
load), short enough that a dead etcd shows within a few seconds."""

# gRPC's default reconnect backoff grows to 120 s; a control plane must notice etcd's
# return within a second or two.
GRPC_OPTIONS: dict[str, Any] = {
    "grpc.initial_reconnect_backoff_ms": 200,
    "grpc.min_reconnect_backoff_ms": 200,
    "grpc.max_reconnect_backoff_ms": 1000,
}


class EtcdUnavailable(ServiceUnavailableError):
    """etcd did not answer: ``reason`` is ``unreachable`` (no connection), ``slow`` (no
    answer within the deadline) or ``auth`` (credentials or certificates refused)."""

    def __init__(self, message: str, reason: str = "unreachable") -> None:
        super().__init__(message)
        self.reason = reason


class EtcdAccess(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """How to log in to etcd: user and password (read from a file), TLS files.

    Parameters
    ----------
    user : str
        etcd user (``etcdctl user add``); empty: no authentication.
    password_file : str
        A file whose first line is the user's password (never the password itself in a
        config file).
    ca_file : str
        PEM bundle of the CA that signed etcd's server certificate; set: TLS.
    cert_file, key_file : str
        Client certificate and key, for an etcd run with ``--client-cert-auth``.
    """

    user: str = ""
    password_file: str = ""
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""

    @property
    def tls(self) -> bool:
        return bool(self.ca_file or self.cert_file)

    def password(self) -> str:
        """The password from ``password_file`` (first line, stripped)."""
        if not self.password_file:
            raise ConfigError(
                f"etcd user {self.user!r} needs a password file: set password_file "
                "(etcd_password_file in [control], --etcd-password-file for the apiserver)"
            )
        try:
            text = Path(self.password_file).expanduser().read_text()
        except OSError as exc:
            raise ConfigError(
                f"cannot read the etcd password file {self.password_file}: {exc.strerror}"
            ) from None
        lines = text.splitlines()
        pw = lines[0].strip() if lines else ""
        if not pw:
            raise ConfigError(f"the etcd password file {self.password_file} is empty")
        return pw

    def credentials(self) -> grpc.ChannelCredentials | None:
        """gRPC channel credentials for TLS, or None for a plain channel."""
        if not self.tls:
            return None
        if bool(self.cert_file) != bool(self.key_file):
            raise ConfigError("etcd TLS: cert_file and key_file go together (set both or none)")

        def read(what: str, path: str) -> bytes | None:
            if not path:
                return None
            try:
                return Path(path).expanduser().read_bytes()
            except OSError as exc:
                raise ConfigError(f"cannot read the etcd {what} {path}: {exc.strerror}") from None

        return grpc.ssl_channel_credentials(
            root_certificates=read("CA bundle", self.ca_file),
            private_key=read("client key", self.key_file),
            certificate_chain=read("client certificate", self.cert_file),
        )


class HistoryCompacted(ConfigError):
    """A watch asked for a revision older than etcd keeps; ``.compacted`` is the oldest."""

    def __init__(self, message: str, compacted: int) -> None:
        super().__init__(message)
        self.compacted = compacted


class _Client(aetcd.Client):  # type: ignore[misc]
    """aetcd's client, over a TLS channel when ``credentials`` are given (aetcd 1.0 only
    opens plain channels), that logs in again after its auth token expired."""

    channel: Any
    metadata: Any
    _watcher: Any
    _is_connecting: bool

    def __init__(self, *args: Any, credentials: grpc.ChannelCredentials | None, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._credentials = credentials

    async def connect(self) -> None:
        if self._credentials is None and self.channel is None:
            await super().connect()
            return
        if self._connected.is_set():
            return
        if self._is_connecting:
            await asyncio.wait_for(self._connected.wait(), self._connect_wait_timeout)
            return
        self._is_connecting = True
        try:
            old = self.channel
            if old is not None:  # a re-login: drop the channel with the stale token
                with contextlib.suppress(Exception):
                    if self._watcher is not None:
                        await self._watcher.shutdown()
                    await old.close()
            target = f"{self._host}:{self._port}"
            opts = list(self._options.items())
            if self._credentials is not None:
                self.channel = grpc.aio.secure_channel(target, self._credentials, options=opts)
            else:
                self.channel = grpc.aio.insecure_channel(target, options=opts)
            self.metadata = None
            if self._username is not None and self._password is not None:
                self.auth_stub = aetcd.rpc.AuthStub(self.channel)
                try:
                    resp = await self.auth_stub.Authenticate(
                        aetcd.rpc.AuthenticateRequest(name=self._username, password=self._password),
                        timeout=self._timeout,
                    )
                except grpc.aio.AioRpcError as exc:
                    aetcd.exceptions._handle_exception(exc)
                self.metadata = (("token", resp.token),)
            self.kvstub = aetcd.rpc.KVStub(self.channel)
            self.clusterstub = aetcd.rpc.ClusterStub(self.channel)
            self.leasestub = aetcd.rpc.LeaseStub(self.channel)
            self.maintenancestub = aetcd.rpc.MaintenanceStub(self.channel)
            self._watcher = aetcd.watcher.Watcher(
                aetcd.rpc.WatchStub(self.channel), timeout=self._timeout, metadata=self.metadata
            )
            self._connected.set()
        finally:
            self._is_connecting = False


def parse_endpoint(endpoint: str) -> tuple[str, int]:
    """Split ``HOST:PORT`` (``http://`` allowed) into host and port."""
    ep = endpoint.removeprefix("http://").rstrip("/")
    host, sep, port = ep.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(f"etcd endpoint {endpoint!r} is not HOST:PORT (e.g. 127.0.0.1:2379)")
    return host, int(port)


def _decode(data: bytes, tp: type[T]) -> T:
    return msgspec.json.decode(data, type=tp)


class Store:
    """One etcd connection and the control plane's key layout.

    Parameters
    ----------
    endpoint : str
        ``HOST:PORT`` of an etcd v3 member.
    prefix : str
        Root of every key (``/wiresens``); several clusters can share one etcd.
    timeout : float
        Deadline of each call in seconds.
    access : EtcdAccess, optional
        User/password and TLS files; None: a plain connection without login.
    """

    def __init__(
        self,
        endpoint: str,
        prefix: str = "/wiresens",
        timeout: float = DEFAULT_TIMEOUT,
        access: EtcdAccess | None = None,
    ) -> None:
        self.endpoint = endpoint
        host, port = parse_endpoint(endpoint)
        self.prefix = "/" + prefix.strip("/")
        self.timeout = timeout
        self.access = access or EtcdAccess()
        user = self.access.user or None
        password = self.access.password() if user else None
        # aetcd passes the timeout straight to gRPC, which accepts float seconds.
        self.client = _Client(
            host,
            port,
            username=user,
            password=password,
            timeout=timeout,
            options=GRPC_OPTIONS,
            credentials=self.access.credentials(),
        )

    # -- keys ----------------------------------------------------------------------------

    def key(self, *parts: str) -> bytes:
        """``<prefix>/part/part`` as bytes."""
        return "/".join((self.prefix, *parts)).encode()

    def dir(self, *parts: str) -> bytes:
        """``<prefix>/part/`` (a key prefix, with the trailing slash)."""
        return self.key(*parts) + b"/"

    def split(self, key: bytes) -> list[str]:
        """The parts of ``key`` after the prefix."""
        return key.decode()[len(self.prefix) + 1 :].split("/")

    # -- calls ---------------------------------------------------------------------------

    def _down(self, exc: BaseException) -> EtcdUnavailable:
        detail = str(exc).strip() or type(exc).__name__
        # etcd answers its own request timeouts with UNAVAILABLE "context deadline exceeded"
        if isinstance(exc, aetcd.exceptions.ConnectionTimeoutError | TimeoutError) or (
            "deadline" in detail.lower()
        ):
            return EtcdUnavailable(
                f"etcd at {self.endpoint} is slow: no answer within {self.timeout:g} s "
                f"({detail}); retry, or give it more time (--etcd-timeout)",
                "slow",
            )
        low = detail.lower()
        if "auth token" in low:
            # etcd expired this client's token (5 min idle by default): log in again on
            # the next call; other errors keep the channel (calls in flight on it live)
            self.client._connected.clear()
        if isinstance(exc, aetcd.exceptions.UnauthenticatedError) or any(
            w in low
            for w in ("authentication", "auth token", "user name", "permission denied",
                      "certificate verify", "certificate_verify")
        ):  # fmt: skip
            return EtcdUnavailable(
                f"etcd at {self.endpoint} refused this client ({detail}); check the etcd "
                "user, its password file and the TLS files (ca_file, cert_file, key_file)",
                "auth",
            )
        return EtcdUnavailable(
            f"etcd at {self.endpoint} is unreachable ({detail}); start etcd there "
            "(`systemctl start etcd`) or point --etcd at the right HOST:PORT",
            "unreachable",
        )

    async def close(self) -> None:
        """Close the gRPC channel (pending calls fail)."""
        # a channel to a dead etcd may fail to close cleanly
        with contextlib.suppress(Exception):
            await self.client.close()

    async def ensure_schema(self) -> int:
        """Create ``<prefix>/schema`` if absent; refuse a layout this code does not speak."""
        key = self.key("schema")
        try:
            tx = self.client.transactions
            ok, _ = await self.client.transaction(
                compare=[tx.version(key) == 0],
                success=[tx.put(key, str(SCHEMA_VERSION).encode())],
                failure=[],
            )
            if ok:
                return SCHEMA_VERSION
            got = await self.client.get(key)
        except aetcd.exceptions.ClientError as exc:
            raise self._down(exc) from exc
        version = int(got.value) if got is not None else SCHEMA_VERSION
        if version != SCHEMA_VERSION:
            raise ConfigError(
                f"etcd prefix {self.prefix} holds control-plane schema {version}, this "
                f"wiresens speaks {SCHEMA_VERSION}: upgrade wiresens or use another --prefix"
            )
        return version

    async def get(self, key: bytes) -> tuple[bytes, int] | None:
        """Value and mod revision of ``key``, or None."""
        try:
            got = await self.client.get(key)
        except aetcd.exceptions.ClientError as exc:
            raise self._down(exc) from exc
        if got is None:
            return None
        return got.value, got.mod_revision

    async def get_prefix(self, prefix: bytes) -> tuple[list[tuple[bytes, bytes, int]], int]:
        """``([(key, value, mod_revision)], store revision)`` of every key under ``prefix``."""
        try:
            res = await self.client.get_prefix(prefix)
        except aetcd.exceptions.ClientError as exc:
            raise self._down(exc) from exc
        return [(kv.key, kv.value, kv.mod_revision) for kv in res], res.header.revision

    async def put(self, key: bytes, value: bytes, lease: int | None = None) -> int:
        """Put; returns the new revision."""
        try:
            res = await self.client.put(key, value, lease=lease)
        except aetcd.exceptions.ClientError as exc:
            raise self._down(exc) from exc
        return int(res.header.revision)

    async def put_all(self, items: list[tuple[bytes, bytes, int | None]]) -> int:
        """Put several ``(key, value, lease)`` at once (one transaction: readers see all
        of them or none); returns the new revision."""
        tx = self.client.transactions
        try:
            _ok, _ = await self.client.transaction(
                compare=[], success=[tx.put(k, v, lease=lease) for k, v, lease in items], failure=[]
            )
            got = await self.client.get(items[0][0])
        except aetcd.exceptions.ClientError as exc:
            raise self._down(exc) from exc
        return int(got.mod_revision) if got is not None else 0

    async def delete(self, key: bytes) -> bool:
        """Delete one key; True when it existed."""
        try:
            res = await self.client.delete(key)
        except aetcd.exceptions.ClientError as exc:
            raise self._down(exc) from exc
        return res is not None and res.deleted > 0

    async def put_if(self, key: bytes, value: bytes, mod_revision: int) -> tuple[bool, int]:
        """Compare-and-set: put only if ``key``'s mod revision is ``mod_revision`` (0 =
        the key must not exist). Returns (done, revision)."""
        tx = self.client.transactions
        cmp = tx.version(key) == 0 if mod_revision == 0 else tx.mod(key) == mod_revision
        try:
            ok, _ = await self.client.transaction(
                compare=[cmp], success=[tx.put(key, value)], failure=[]
            )
            got = await self.client.get(key)
        except aetcd.exceptions.ClientError as exc:
            raise self._down(exc) from exc
        return bool(ok), (got.mod_revision if got is not None else 0)

    async def grant(self, ttl: int) -> int:
        """A new lease of ``ttl`` seconds; returns its id."""
        try:
            lease = await self.client.lease(ttl)
        except aetcd.exceptions.ClientError as exc:
            raise self._down(exc) from exc
        return int(lease.id)

    async def keepalive(self, lease_id: int) -> int:
        """Refresh a lease once; returns its TTL (<= 0: the lease is gone)."""
        try:
            reply = await self.client.refresh_lease(lease_id)
        except aetcd.exceptions.ClientError as exc:
            raise self._down(exc) from exc
        return int(reply.TTL) if reply is not None else 0

    async def revoke(self, lease_id: int) -> None:
        """Revoke a lease (its keys vanish at once)."""
        try:
            await self.client.revoke_lease(lease_id)
        except aetcd.exceptions.ClientError as exc:
            raise self._down(exc) from exc

    async def revision(self) -> int:
        """The store's current revision."""
        _, rev = await self.get_prefix(self.key("schema"))
        return rev

    async def compact(self, revision: int) -> bool:
        """Drop the history before ``revision`` (etcd-wide, like Kubernetes does every
        5 minutes); False when it was already compacted that far."""
        try:
            await self.client.compact(revision)
        except aetcd.exceptions.InvalidArgumentError:
            return False
        except aetcd.exceptions.ClientError as exc:
            if "compacted" in str(exc):
                return False
            raise self._down(exc) from exc
        return True

    async def watch(
        self, prefix: bytes, start_revision: int | None = None
    ) -> AsyncIterator[tuple[str, bytes, bytes, int]]:
        """Yield ``(PUT|DELETE, key, value, mod_revision)`` for changes under ``prefix``.

        Raises :class:`EtcdUnavailable` when the watch stream breaks.
        """
        try:
            w = await self.client.watch_prefix(prefix, start_revision=start_revision)
            try:
                async for ev in w:
                    yield str(ev.kind), ev.kv.key, ev.kv.value, ev.kv.mod_revision
            finally:
                # the stream may already be gone with etcd
                with contextlib.suppress(Exception):
                    await w.cancel()
        except aetcd.exceptions.RevisionCompactedError as exc:
            raise HistoryCompacted(
                f"revision {start_revision} is compacted (history starts at "
                f"{exc.compacted_revision}): watch from there or without a revision",
                exc.compacted_revision,
            ) from None
        except aetcd.exceptions.ClientError as exc:
            raise self._down(exc) from exc

    @staticmethod
    def now_ns() -> int:
        return time.time_ns()
