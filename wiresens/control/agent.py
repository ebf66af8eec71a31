"""The node's link to the control plane: register, watch desired state, report actual state.

A :class:`NodeAgent` runs as a task on the process's control-plane asyncio loop (one
daemon thread, shared by every agent of the process), far from the trading path: the node's supervision loop only calls the cheap,
lock-protected accessors (:meth:`~NodeAgent.desired_policies`,
:meth:`~NodeAgent.pending_commands`, :meth:`~NodeAgent.report`). One *session* is::

    grant lease (ttl) -> put <prefix>/nodes/<name> under it -> read desired state
    -> watch policies, kill switches, this node's commands from that revision
    -> every ttl/3: keep the lease alive, publish the latest report, delete taken commands

Any etcd failure ends the session; the agent keeps its last desired state (fail-static:
the node goes on trading what it was told), says so in :meth:`~NodeAgent.status`, and
starts a new session (new lease, full re-read, so changes made meanwhile converge) as
soon as etcd answers again.

``python -m wiresens.control --etcd HOST:PORT --node NAME`` runs an agent alone (a
stand-in node, for trying the control plane without trading).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import socket
import threading
import time
from typing import Any

import msgspec

from .models import AgentStatus, Command, KillSwitch, NodeInfo, NodeState, PolicyRecord, PolicySpec
from .store import DEFAULT_TIMEOUT, EtcdAccess, Store

__all__ = ["NodeAgent"]


def _fallback(obj: Any) -> Any:
    # a report may carry numpy scalars or paths; it must never break the session
    item = getattr(obj, "item", None)
    return item() if callable(item) else str(obj)


_ENC = msgspec.json.Encoder(enc_hook=_fallback)


class _LeaseLost(Exception):
    pass


_loop_lock = threading.Lock()
_loop_of_pid: dict[int, asyncio.AbstractEventLoop] = {}


def _control_loop() -> asyncio.AbstractEventLoop:
    """The process's one control-plane event loop, in a daemon thread, never closed.

    grpc.aio binds its completion-queue poller to every loop that used it and logs
    errors when such a loop is closed (grpc/grpc#25364); one shared loop for every agent
    of a process avoids that, and costs one thread however many agents there are.
    """
    pid = os.getpid()
    with _loop_lock:
        loop = _loop_of_pid.get(pid)  # keyed by pid: a forked child needs its own
        if loop is None:
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="wiresens-control", daemon=True).start()
            _loop_of_pid[pid] = loop
        return loop


class NodeAgent:
    """Registers this node with the control plane and mirrors its desired state.

    Parameters
    ----------
    etcd_endpoint : str
        ``HOST:PORT`` of etcd.
    prefix : str
        The control plane's key prefix (``/wiresens``).
    node_name : str
        This node's name (``[node] name``); policies with ``node = <name>`` are ours.
    capabilities : dict
        Published with the registration (CPUs, venue, symbols, ...); free form.
    ttl : int
        Lease TTL in seconds: the node is shown Lost this long after it stops answering.
    report_interval : float
        Least seconds between two published reports.
    timeout : float
        Deadline of each etcd call.
    access : EtcdAccess, optional
        etcd user (password from a file) and TLS files.
    """

    def __init__(
        self,
        etcd_endpoint: str,
        prefix: str = "/wiresens",
        node_name: str = "local",
        capabilities: dict[str, Any] | None = None,
        *,
        ttl: int = 5,
        report_interval: float = 1.0,
        timeout: float = DEFAULT_TIMEOUT,
        access: EtcdAccess | None = None,
    ) -> None:
        self.endpoint = etcd_endpoint
        self.prefix = prefix
        self.node_name = node_name
        self.capabilities = dict(capabilities or {})
        self.ttl = max(2, int(ttl))
        self.report_interval = report_interval
        self.timeout = timeout
        self.access = access
        self._lock = threading.Lock()
        self._policies: dict[str, PolicySpec] | None = None
        self._switches: dict[str, KillSwitch] = {}
        self._commands: dict[str, Command] = {}
        self._taken: set[str] = set()
        self._version = 0
        self._report: dict[str, Any] | None = None
        self._report_dirty = False
        self._connected = False
        self._since_ns = time.time_ns()
        self._last_sync_ns = 0
        self._last_error = ""
        self._sessions = 0
        self._lease_id = 0
        self._started_ns = time.time_ns()
        self._future: concurrent.futures.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event = asyncio.Event()
        self._revoke_on_stop = True
        self._synced = threading.Event()

    # -- node side (any thread) ----------------------------------------------------------

    def start(self) -> NodeAgent:
        """Start the agent's thread; returns at once (etcd may still be unreachable)."""
        if self._future is not None:
            return self
        self._loop = _control_loop()
        self._stop_event = asyncio.Event()
        self._future = asyncio.run_coroutine_threadsafe(self._main(), self._loop)
        return self

    def stop(self, timeout: float = 5.0, *, goodbye: bool = True) -> None:
        """Stop the agent. ``goodbye``: mark the node Stopped and revoke its lease (the
        node disappears at once) instead of letting the lease expire (shown Lost)."""
        self._revoke_on_stop = goodbye
        loop, ev = self._loop, self._stop_event
        if loop is not None and ev is not None:
            with contextlib.suppress(RuntimeError):  # loop already closed
                loop.call_soon_threadsafe(ev.set)
        if self._future is not None:
            with contextlib.suppress(concurrent.futures.TimeoutError):
                self._future.result(timeout)
            self._future = None

    def wait_synced(self, timeout: float) -> bool:
        """Block until the first full read of desired state (True) or ``timeout`` (False)."""
        return self._synced.wait(timeout)

    def desired_policies(self) -> list[PolicySpec] | None:
        """Policies assigned to this node, sorted by name; None before the first sync.

        A policy with ``enabled = False`` should be stopped; a policy absent from the list
        should not run. While etcd is unreachable this is the last known state.
        """
        with self._lock:
            if self._policies is None:
                return None
            return [self._policies[k] for k in sorted(self._policies)]

    def desired_version(self) -> int:
        """Grows each time the desired policies or kill switches change (cheap to poll)."""
        return self._version

    def killed(self, policy: str | None = None) -> bool:
        """True when a kill switch covers this node (or ``policy`` on it)."""
        with self._lock:
            sw = self._switches
            if "all" in sw or f"node:{self.node_name}" in sw:
                return True
            return policy is not None and f"policy:{policy}" in sw

    def pending_commands(self) -> list[Command]:
        """Commands for this node not taken yet, oldest first; taking them removes them
        (the agent deletes them from etcd): each command is delivered once."""
        with self._lock:
            out = [self._commands.pop(k) for k in sorted(self._commands)]
            self._taken.update(c.id for c in out)
            return out

    def report(self, status: dict[str, Any]) -> None:
        """Publish the node's actual state (``wiresens.node.read_status``'s dict); the
        latest one is written at most every ``report_interval`` seconds."""
        with self._lock:
            self._report = status
            self._report_dirty = True

    def status(self) -> AgentStatus:
        """The link's state: connected, fail-static (desired known but etcd down), or
        not synced yet."""
        with self._lock:
            known = self._policies is not None
            return AgentStatus(
                node=self.node_name,
                endpoint=self.endpoint,
                mode="connected" if self._connected else "fail-static" if known else "unsynced",
                connected=self._connected,
                desired_known=self._policies is not None,
                policies=len(self._policies or {}),
                since_ns=self._since_ns,
                last_sync_ns=self._last_sync_ns,
                last_error=self._last_error,
                sessions=self._sessions,
                lease_id=self._lease_id,
            )

    # -- agent thread --------------------------------------------------------------------

    async def _main(self) -> None:
        backoff = 0.2
        while not self._stop_event.is_set():
            try:
                store = Store(self.endpoint, self.prefix, self.timeout, self.access)
            except Exception as exc:  # a password file that cannot be read: say so, retry
                self._set_down(exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop_event.wait(), 2.0)
                continue
            try:
                await self._session(store)
                backoff = 0.2
            except Exception as exc:  # any etcd failure: stay fail-static and retry
                self._set_down(exc)
            finally:
                await store.close()
            if self._stop_event.is_set():
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop_event.wait(), backoff)
            backoff = min(backoff * 2, 2.0)
        with self._lock:
            self._connected = False
            self._lease_id = 0
            self._last_error = "agent stopped"

    def _set_down(self, exc: BaseException) -> None:
        with self._lock:
            if self._connected:
                self._since_ns = time.time_ns()
            self._connected = False
            self._lease_id = 0
            self._last_error = str(exc) or type(exc).__name__

    def _info(self, lease_id: int) -> NodeInfo:
        return NodeInfo(
            name=self.node_name,
            capabilities=self.capabilities,
            pid=os.getpid(),
            host=socket.gethostname(),
            started_ns=self._started_ns,
            lease_id=lease_id,
            ttl_s=self.ttl,
        )

    async def _session(self, store: Store) -> None:
        await store.ensure_schema()
        lease = await store.grant(self.ttl)
        info = self._info(lease)
        # Report and registration in one transaction: a node that dies right after
        # registering still has a report (shows Lost rather than vanishing), and no reader
        # sees the report without the registration (which showed a starting node Lost).
        await store.put_all(
            [
                (store.key("nodestate", self.node_name), self._state(info), None),
                (store.key("nodes", self.node_name), _ENC.encode(info), lease),
            ]
        )
        rev = await self._resync(store)
        with self._lock:
            self._connected = True
            self._since_ns = time.time_ns()
            self._last_sync_ns = self._since_ns
            self._last_error = ""
            self._sessions += 1
            self._lease_id = lease
            self._report_dirty = True
        self._synced.set()
        watches = [
            self._follow(store, store.dir("policies"), rev),
            self._follow(store, store.dir("switches"), rev),
            self._follow(store, store.dir("commands", self.node_name), rev),
        ]
        tasks = [asyncio.ensure_future(c) for c in watches]
        tasks.append(asyncio.ensure_future(self._keepalive(store, lease)))
        tasks.append(asyncio.ensure_future(self._housekeeping(store, lease, info)))
        stop = asyncio.ensure_future(self._stop_event.wait())
        try:
            done, _ = await asyncio.wait([*tasks, stop], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in [*tasks, stop]:
                t.cancel()
            await asyncio.gather(*tasks, stop, return_exceptions=True)
        if stop in done:
            await self._goodbye(store, lease, info)
            return
        for t in done:
            exc = t.exception()
            if exc is not None:
                raise exc
        raise _LeaseLost("a watch ended")

    async def _goodbye(self, store: Store, lease: int, info: NodeInfo) -> None:
        # Each step on its own: one failing must not skip the others.
        with contextlib.suppress(Exception):
            # commands the node took must not be delivered again to its next run
            await self._delete_taken(store)
        if not self._revoke_on_stop:
            return
        with contextlib.suppress(Exception):
            await self._publish(store, info, stopped=True)
        with contextlib.suppress(Exception):
            await store.revoke(lease)
        with contextlib.suppress(Exception):
            # Again, last: a report cancelled in flight may have landed after the first.
            await self._publish(store, info, stopped=True)

    async def _resync(self, store: Store) -> int:
        pols, rev = await store.get_prefix(store.dir("policies"))
        sws, _ = await store.get_prefix(store.dir("switches"))
        cmds, _ = await store.get_prefix(store.dir("commands", self.node_name))
        policies: dict[str, PolicySpec] = {}
        for _k, v, _r in pols:
            spec = self._policy(v)
            if spec is not None and spec.node == self.node_name:
                policies[spec.name] = spec
        switches = {}
        for k, v, _r in sws:
            with contextlib.suppress(msgspec.DecodeError, msgspec.ValidationError):
                switches[store.split(k)[-1]] = msgspec.json.decode(v, type=KillSwitch)
        commands = {}
        for _k, v, _r in cmds:
            with contextlib.suppress(msgspec.DecodeError, msgspec.ValidationError):
                c = msgspec.json.decode(v, type=Command)
                commands[c.id] = c
        with self._lock:
            changed = policies != self._policies or switches != self._switches
            self._policies = policies
            self._switches = switches
            # commands taken while etcd was away are deleted by housekeeping, not redelivered
            self._commands = {k: c for k, c in commands.items() if k not in self._taken}
            if changed:
                self._version += 1
        return rev

    @staticmethod
    def _policy(value: bytes) -> PolicySpec | None:
        try:
            return msgspec.json.decode(value, type=PolicyRecord).spec
        except (msgspec.DecodeError, msgspec.ValidationError):
            return None  # a document this agent cannot read is not ours to run

    async def _follow(self, store: Store, prefix: bytes, rev: int) -> None:
        async for kind, key, value, _mrev in store.watch(prefix, start_revision=rev + 1):
            self._apply(store, prefix, kind, key, value)
        raise _LeaseLost(f"the watch on {prefix.decode()} ended")

    def _apply(self, store: Store, prefix: bytes, kind: str, key: bytes, value: bytes) -> None:
        part = store.split(key)
        with self._lock:
            if prefix == store.dir("policies"):
                assert self._policies is not None
                name = part[-1]
                spec = self._policy(value) if kind == "PUT" else None
                mine = spec is not None and spec.node == self.node_name
                if mine and spec is not None:
                    if self._policies.get(name) != spec:
                        self._policies[name] = spec
                        self._version += 1
                elif name in self._policies:
                    # deleted, or moved to another node
                    del self._policies[name]
                    self._version += 1
            elif prefix == store.dir("switches"):
                scope = part[-1]
                if kind == "PUT":
                    with contextlib.suppress(msgspec.DecodeError, msgspec.ValidationError):
                        self._switches[scope] = msgspec.json.decode(value, type=KillSwitch)
                        self._version += 1
                elif self._switches.pop(scope, None) is not None:
                    self._version += 1
            else:
                cid = part[-1]
                if kind == "PUT" and cid not in self._taken:
                    with contextlib.suppress(msgspec.DecodeError, msgspec.ValidationError):
                        self._commands[cid] = msgspec.json.decode(value, type=Command)
                elif kind == "DELETE":
                    self._commands.pop(cid, None)

    async def _keepalive(self, store: Store, lease: int) -> None:
        # Its own task: a slow report write must not delay the lease's refresh (with
        # both in one loop, one slow put let a short lease expire: the node showed Lost).
        beat = self.ttl / 3.0
        while True:
            ttl = await store.keepalive(lease)
            if ttl <= 0:
                raise _LeaseLost(f"lease {lease:x} expired; registering again")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop_event.wait(), beat)
            if self._stop_event.is_set():
                return

    async def _housekeeping(self, store: Store, lease: int, info: NodeInfo) -> None:
        last_report = 0.0
        while True:
            await self._delete_taken(store)
            with self._lock:
                dirty = self._report_dirty
            now = time.monotonic()
            if dirty and now - last_report >= self.report_interval:
                last_report = now
                await self._publish(store, info)
            wait = min(self.ttl / 3.0, self.report_interval)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop_event.wait(), wait)
            if self._stop_event.is_set():
                return

    async def _delete_taken(self, store: Store) -> None:
        with self._lock:
            taken = list(self._taken)
        for cid in taken:
            await store.delete(store.key("commands", self.node_name, cid))
            with self._lock:
                self._taken.discard(cid)

    def _state(self, info: NodeInfo, stopped: bool = False) -> bytes:
        with self._lock:
            status = self._report or {}
            self._report_dirty = False
        state = NodeState(info=info, status=status, reported_ns=time.time_ns(), stopped=stopped)
        return _ENC.encode(state)

    async def _publish(self, store: Store, info: NodeInfo, stopped: bool = False) -> None:
        await store.put(store.key("nodestate", self.node_name), self._state(info, stopped))
