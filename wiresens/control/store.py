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

import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any, TypeVar

import aetcd
import aetcd.exceptions
import msgspec

from wiresens.errors import ConfigError, ServiceUnavailableError

from .models import SCHEMA_VERSION

__all__ = [
    "GRPC_OPTIONS",
    "EtcdUnavailable",
    "HistoryCompacted",
    "Store",
    "parse_endpoint",
]

T = TypeVar("T")

# gRPC's default reconnect backoff grows to 120 s; a control plane must notice etcd's
# return within a second or two.
GRPC_OPTIONS: dict[str, Any] = {
    "grpc.initial_reconnect_backoff_ms": 200,
    "grpc.min_reconnect_backoff_ms": 200,
    "grpc.max_reconnect_backoff_ms": 1000,
}


class EtcdUnavailable(ServiceUnavailableError):
    """etcd did not answer (down, unreachable, or too slow)."""


class HistoryCompacted(ConfigError):
    """A watch asked for a revision older than etcd keeps; ``.compacted`` is the oldest."""

    def __init__(self, message: str, compacted: int) -> None:
        super().__init__(message)
        self.compacted = compacted


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
    """

    def __init__(self, endpoint: str, prefix: str = "/wiresens", timeout: float = 2.0) -> None:
        self.endpoint = endpoint
        host, port = parse_endpoint(endpoint)
        self.prefix = "/" + prefix.strip("/")
        self.timeout = timeout
        # aetcd passes the timeout straight to gRPC, which accepts float seconds.
        self.client = aetcd.Client(host, port, timeout=timeout, options=GRPC_OPTIONS)

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
        return EtcdUnavailable(
            f"etcd at {self.endpoint} is unreachable ({detail}); start etcd there "
            "(`systemctl start etcd`) or point --etcd at the right HOST:PORT"
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
