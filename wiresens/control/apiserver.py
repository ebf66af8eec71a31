"""The control plane's API server (Litestar ASGI app, served by uvicorn).

Desired state (policies, kill switches, commands) and actual state (node registrations
and reports) live in etcd (:mod:`wiresens.control.store`); this server is stateless and
only translates HTTP into etcd reads, compare-and-set writes and watches. Every
``/api/v1`` call needs ``Authorization: Bearer <token>`` (:mod:`wiresens.control.auth`):
reads need ``viewer``, changes ``trader``, forgetting a node ``admin``. ``/healthz`` and
``/openapi.json`` are open.

=======  ===========================  ======================================
GET      /api/v1/nodes[/{name}]       registered and lost nodes, last reports
DELETE   /api/v1/nodes/{name}         forget a node that is not Ready (admin)
GET      /api/v1/policies[/{name}]    policy records
PUT      /api/v1/policies/{name}      apply a spec (``?revision=`` compare-and-set)
DELETE   /api/v1/policies/{name}      delete a policy
GET      /api/v1/orders               order counters per node/policy/symbol
GET      /api/v1/positions            positions and PnL per node/policy/symbol
GET      /api/v1/switches             kill switches in force
GET      /api/v1/commands             commands not yet taken by their node
POST     /api/v1/kill                 kill switch (all, a node, a policy)
POST     /api/v1/resume               lift a kill switch
POST     /api/v1/restart              restart an actor on a node
GET      /api/v1/watch                server-sent events of every change
=======  ===========================  ======================================
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import time
from collections.abc import AsyncGenerator
from typing import Annotated, Any, Literal

import msgspec
from litestar import Litestar, Request, delete, get, post, put
from litestar.connection import ASGIConnection
from litestar.exceptions import (
    ClientException,
    NotAuthorizedException,
    NotFoundException,
    PermissionDeniedException,
)
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from litestar.params import Parameter
from litestar.response import Response, ServerSentEvent, ServerSentEventMessage

from .auth import Principal, TokenTable
from .models import (
    NAME_PATTERN,
    ActionResult,
    Command,
    Health,
    KillRequest,
    KillSwitch,
    NodeInfo,
    NodeState,
    NodeView,
    OrderRow,
    PolicyRecord,
    PolicySpec,
    PositionRow,
    RestartRequest,
    WatchEvent,
)
from .store import DEFAULT_TIMEOUT, EtcdAccess, EtcdUnavailable, HistoryCompacted, Store

__all__ = ["DEFAULT_PORT", "create_app", "serve"]

DEFAULT_PORT = 8470

_ENC = msgspec.json.Encoder()
NameParam = Annotated[str, Parameter(pattern=NAME_PATTERN, max_length=63)]


class _Conflict(ClientException):
    status_code = 409


# -- plumbing ------------------------------------------------------------------------------


def _store(conn: ASGIConnection[Any, Any, Any, Any]) -> Store:
    store: Store = conn.app.state.store
    return store


def _auth(request: Request[Any, Any, Any], role: str) -> Principal:
    tokens: TokenTable = request.app.state.tokens
    header = request.headers.get("authorization", "")
    scheme, _, tok = header.partition(" ")
    who = tokens.lookup(tok.strip()) if scheme.lower() == "bearer" and tok.strip() else None
    if who is None:
        raise NotAuthorizedException(
            "missing or unknown API token: send `Authorization: Bearer <token>` (the CLI "
            "reads it from its context file, ~/.config/wiresens/config.toml)"
        )
    if not who.may(role):
        raise PermissionDeniedException(
            f"token {who.name!r} has role {who.role!r}; this call needs {role!r} or above"
        )
    return who


async def _writable(request: Request[Any, Any, Any]) -> Store:
    store = _store(request)
    if not request.app.state.schema_ok:
        await store.ensure_schema()
        request.app.state.schema_ok = True
    return store


def _etcd_down(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    # `etcd` lets the CLI tell "etcd down" from "etcd slow" and "credentials refused"
    reason = getattr(exc, "reason", "unreachable")
    return Response({"status_code": 503, "detail": str(exc), "etcd": reason}, status_code=503)


def _decode(value: bytes, tp: Any) -> Any:
    try:
        return msgspec.json.decode(value, type=tp)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None  # a foreign or damaged document is skipped, never a 500


async def _policies(store: Store) -> list[PolicyRecord]:
    rows, _ = await store.get_prefix(store.dir("policies"))
    out = []
    for _k, v, rev in rows:
        rec = _decode(v, PolicyRecord)
        if rec is not None:
            out.append(msgspec.structs.replace(rec, revision=rev))
    return await _with_states(store, sorted(out, key=lambda r: r.spec.name))


async def _with_states(store: Store, recs: list[PolicyRecord]) -> list[PolicyRecord]:
    """Each policy with the state its node last reported for it."""
    rows, _ = await store.get_prefix(store.dir("nodestate"))
    reported: dict[str, dict[str, Any]] = {}
    for k, v, _r in rows:
        st = _decode(v, NodeState)
        if st is not None and isinstance(st.status.get("policy_states"), dict):
            reported[store.split(k)[-1]] = st.status["policy_states"]
    out = []
    for rec in recs:
        got = reported.get(rec.spec.node, {}).get(rec.spec.name)
        if isinstance(got, dict):
            rec = msgspec.structs.replace(
                rec, state=str(got.get("state", "")), reason=str(got.get("reason", ""))
            )
        out.append(rec)
    return out


async def _switches(store: Store) -> dict[str, KillSwitch]:
    rows, _ = await store.get_prefix(store.dir("switches"))
    out = {}
    for k, v, _r in rows:
        sw = _decode(v, KillSwitch)
        if sw is not None:
            out[store.split(k)[-1]] = sw
    return out


async def _nodes(store: Store) -> list[NodeView]:
    # Reports first, registrations second: a node registering between the two reads is
    # then seen Ready (or not at all), never Lost with a report but no registration yet.
    state_rows, _ = await store.get_prefix(store.dir("nodestate"))
    alive_rows, _ = await store.get_prefix(store.dir("nodes"))
    alive = {store.split(k)[-1]: _decode(v, NodeInfo) for k, v, _r in alive_rows}
    states = {store.split(k)[-1]: _decode(v, NodeState) for k, v, _r in state_rows}
    pols = await _policies(store)
    sw = await _switches(store)
    out = []
    for name in sorted(set(alive) | set(states)):
        st: NodeState | None = states.get(name)
        info = alive.get(name) or (st.info if st is not None else None) or NodeInfo(name=name)
        state: Literal["Ready", "Lost", "Stopped"]
        if name in alive:
            state = "Ready"
        elif st is not None and st.stopped:
            state = "Stopped"
        else:
            state = "Lost"
        out.append(
            NodeView(
                name=name,
                state=state,
                info=info,
                status=st.status if st is not None else {},
                reported_ns=st.reported_ns if st is not None else 0,
                policies=[p.spec.name for p in pols if p.spec.node == name],
                killed="all" in sw or f"node:{name}" in sw,
            )
        )
    return out


_SECRET_KEY = re.compile(r"secret|passw|private.?key|api.?key|token|credential", re.IGNORECASE)


def _secret_paths(value: Any, path: str) -> list[str]:
    """Keys of ``value`` (nested) whose names say they hold a secret."""
    out = []
    if isinstance(value, dict):
        for k, v in value.items():
            here = f"{path}.{k}"
            if _SECRET_KEY.search(str(k)):
                out.append(here)
            out += _secret_paths(v, here)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _secret_paths(v, f"{path}[{i}]")
    return out


def _command_id() -> str:
    # sortable by time; the suffix separates commands issued in the same nanosecond
    return f"{time.time_ns():020d}-{secrets.token_hex(3)}"


async def _send(store: Store, cmd: Command) -> None:
    await store.put(store.key("commands", cmd.node, cmd.id), _ENC.encode(cmd))


# -- handlers ------------------------------------------------------------------------------


@get("/healthz", tags=["health"])
async def healthz(request: Request[Any, Any, Any]) -> Response[Health]:
    """The server is up; ``etcd`` tells whether etcd answers (503 when it does not)."""
    store = _store(request)
    try:
        await store.get(store.key("schema"))
    except EtcdUnavailable as exc:
        h = Health(
            status="degraded",
            etcd="down",
            endpoint=store.endpoint,
            prefix=store.prefix,
            detail=str(exc),
        )
        return Response(h, status_code=503)
    return Response(Health(status="ok", etcd="ok", endpoint=store.endpoint, prefix=store.prefix))


@get("/openapi.json", include_in_schema=False)
async def openapi_json(request: Request[Any, Any, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = request.app.openapi_schema.to_schema()
    return schema


@get("/api/v1/nodes", tags=["nodes"])
async def list_nodes(request: Request[Any, Any, Any]) -> list[NodeView]:
    """Every node that registered: Ready (lease alive), Lost or Stopped."""
    _auth(request, "viewer")
    return await _nodes(_store(request))


@get("/api/v1/nodes/{name:str}", tags=["nodes"])
async def get_node(request: Request[Any, Any, Any], name: NameParam) -> NodeView:
    """One node with its last report."""
    _auth(request, "viewer")
    for n in await _nodes(_store(request)):
        if n.name == name:
            return n
    raise NotFoundException(f"no node {name!r}: `wiresens get nodes` lists them")


@delete("/api/v1/nodes/{name:str}", tags=["nodes"], status_code=200)
async def forget_node(request: Request[Any, Any, Any], name: NameParam) -> ActionResult:
    """Forget a Lost or Stopped node's last report (admin)."""
    _auth(request, "admin")
    store = await _writable(request)
    if await store.get(store.key("nodes", name)) is not None:
        raise _Conflict(f"node {name!r} is Ready (its lease is alive): stop it first")
    if not await store.delete(store.key("nodestate", name)):
        raise NotFoundException(f"no node {name!r}")
    return ActionResult(action="forget", target=f"node:{name}")


@get("/api/v1/policies", tags=["policies"])
async def list_policies(request: Request[Any, Any, Any]) -> list[PolicyRecord]:
    """Every policy's desired state."""
    _auth(request, "viewer")
    return await _policies(_store(request))


@get("/api/v1/policies/{name:str}", tags=["policies"])
async def get_policy(request: Request[Any, Any, Any], name: NameParam) -> PolicyRecord:
    """One policy's desired state."""
    _auth(request, "viewer")
    store = _store(request)
    got = await store.get(store.key("policies", name))
    rec: PolicyRecord | None = _decode(got[0], PolicyRecord) if got is not None else None
    if got is None or rec is None:
        raise NotFoundException(f"no policy {name!r}: `wiresens get policies` lists them")
    return (await _with_states(store, [msgspec.structs.replace(rec, revision=got[1])]))[0]


@put("/api/v1/policies/{name:str}", tags=["policies"])
async def apply_policy(
    request: Request[Any, Any, Any],
    name: NameParam,
    data: PolicySpec,
    revision: Annotated[int | None, Parameter(ge=0, required=False)] = None,
) -> PolicyRecord:
    """Create or change a policy. With ``revision`` (the record's last ``revision``; 0 =
    must not exist) the write happens only if nobody changed it since (409 otherwise)."""
    who = _auth(request, "trader")
    if data.name != name:
        raise ClientException(f"the URL names policy {name!r} but the body names {data.name!r}")
    secrets_ = _secret_paths(data.params, "$.params")
    if secrets_:
        raise ClientException(
            f"{', '.join(secrets_)} looks like a secret; secrets never go through the "
            "control plane (etcd): keep keys in the node's own files and name the "
            "`account` in the policy"
        )
    store = await _writable(request)
    key = store.key("policies", name)
    for _ in range(5):
        got = await store.get(key)
        old: PolicyRecord | None = _decode(got[0], PolicyRecord) if got is not None else None
        cur_rev = got[1] if got is not None else 0
        if revision is not None and revision != cur_rev:
            raise _Conflict(
                f"policy {name!r} is at revision {cur_rev}, not {revision}: someone changed "
                "it; read it again (`wiresens get policies NAME -o yaml`) and re-apply"
            )
        if old is not None and old.spec == data:
            return msgspec.structs.replace(old, revision=cur_rev)
        rec = PolicyRecord(
            spec=data,
            generation=(old.generation + 1) if old is not None else 1,
            updated_ns=time.time_ns(),
            updated_by=who.name,
        )
        ok, new_rev = await store.put_if(key, _ENC.encode(rec), cur_rev)
        if ok:
            return msgspec.structs.replace(rec, revision=new_rev)
        if revision is not None:
            raise _Conflict(f"policy {name!r} changed while applying; read it and re-apply")
    raise _Conflict(f"policy {name!r} keeps changing under concurrent writers; retry")


@delete("/api/v1/policies/{name:str}", tags=["policies"], status_code=200)
async def delete_policy(request: Request[Any, Any, Any], name: NameParam) -> ActionResult:
    """Delete a policy: its node stops it."""
    _auth(request, "trader")
    store = await _writable(request)
    if not await store.delete(store.key("policies", name)):
        raise NotFoundException(f"no policy {name!r}: `wiresens get policies` lists them")
    return ActionResult(action="delete", target=f"policy:{name}")


def _rows(nodes: list[NodeView], tp: type[Any]) -> list[Any]:
    out = []
    for n in nodes:
        pols = n.status.get("policies") if isinstance(n.status, dict) else None
        if not isinstance(pols, list):
            continue
        for p in pols:
            if not isinstance(p, dict):
                continue
            try:
                out.append(
                    msgspec.convert(
                        {**p, "node": n.name, "reported_ns": n.reported_ns}, tp, strict=False
                    )
                )
            except msgspec.ValidationError:
                continue
    return out


@get("/api/v1/orders", tags=["state"])
async def list_orders(request: Request[Any, Any, Any]) -> list[OrderRow]:
    """Order counters from each node's last report."""
    _auth(request, "viewer")
    return _rows(await _nodes(_store(request)), OrderRow)


@get("/api/v1/positions", tags=["state"])
async def list_positions(request: Request[Any, Any, Any]) -> list[PositionRow]:
    """Positions and PnL from each node's last report."""
    _auth(request, "viewer")
    return _rows(await _nodes(_store(request)), PositionRow)


@get("/api/v1/switches", tags=["commands"])
async def list_switches(request: Request[Any, Any, Any]) -> list[KillSwitch]:
    """Kill switches in force."""
    _auth(request, "viewer")
    return list((await _switches(_store(request))).values())


@get("/api/v1/commands", tags=["commands"])
async def list_commands(request: Request[Any, Any, Any]) -> list[Command]:
    """Commands their node has not taken yet."""
    _auth(request, "viewer")
    store = _store(request)
    rows, _ = await store.get_prefix(store.dir("commands"))
    return [c for _k, v, _r in rows if (c := _decode(v, Command)) is not None]


async def _targets(store: Store, req: KillRequest) -> tuple[str, list[tuple[str, str | None]]]:
    """The switch scope and the (node, policy) pairs that get a command."""
    if req.policy is not None:
        got = await store.get(store.key("policies", req.policy))
        rec = _decode(got[0], PolicyRecord) if got is not None else None
        node = req.node or (rec.spec.node if rec is not None else None)
        if node is None:
            raise NotFoundException(
                f"no policy {req.policy!r}; name its node too (--node) to kill it anyway"
            )
        scope = f"policy:{req.policy}"
        targets: list[tuple[str, str | None]] = [(node, req.policy)]
    elif req.node is not None:
        scope, targets = f"node:{req.node}", [(req.node, None)]
    else:
        scope = "all"
    # commands go to Ready nodes only: a node that starts later reads the switch instead
    rows, _ = await store.get_prefix(store.dir("nodes"))
    ready = [store.split(k)[-1] for k, _v, _r in rows]
    if scope == "all":
        return scope, [(n, None) for n in ready]
    return scope, [t for t in targets if t[0] in ready]


@post("/api/v1/kill", tags=["commands"], status_code=200)
async def kill(request: Request[Any, Any, Any], data: KillRequest) -> ActionResult:
    """Kill switch: the targets stop sending orders and cancel their open ones. It stays
    in force (also for nodes that start later) until ``resume``."""
    who = _auth(request, "trader")
    store = await _writable(request)
    scope, targets = await _targets(store, data)
    now = time.time_ns()
    sw = KillSwitch(scope=scope, issued_ns=now, issued_by=who.name, reason=data.reason)
    rev = await store.put(store.key("switches", scope), _ENC.encode(sw))
    cmds = []
    for node, policy in targets:
        c = Command(
            id=_command_id(),
            kind="kill",
            node=node,
            policy=policy,
            issued_ns=now,
            issued_by=who.name,
            reason=data.reason,
        )
        await _send(store, c)
        cmds.append(c)
    return ActionResult(action="kill", target=scope, commands=cmds, revision=rev)


@post("/api/v1/resume", tags=["commands"], status_code=200)
async def resume(request: Request[Any, Any, Any], data: KillRequest) -> ActionResult:
    """Lift the kill switch of that scope and tell its nodes to resume."""
    who = _auth(request, "trader")
    store = await _writable(request)
    scope, targets = await _targets(store, data)
    if not await store.delete(store.key("switches", scope)):
        raise NotFoundException(
            f"no kill switch {scope!r} in force: `wiresens get switches` lists them"
        )
    now = time.time_ns()
    cmds = []
    for node, policy in targets:
        c = Command(
            id=_command_id(),
            kind="resume",
            node=node,
            policy=policy,
            issued_ns=now,
            issued_by=who.name,
            reason=data.reason,
        )
        await _send(store, c)
        cmds.append(c)
    return ActionResult(action="resume", target=scope, commands=cmds)


@post("/api/v1/restart", tags=["commands"], status_code=200)
async def restart(request: Request[Any, Any, Any], data: RestartRequest) -> ActionResult:
    """Restart one actor (a policy, ``feed`` or ``execution``) on a Ready node."""
    who = _auth(request, "trader")
    store = await _writable(request)
    if await store.get(store.key("nodes", data.node)) is None:
        raise NotFoundException(f"node {data.node!r} is not Ready: `wiresens get nodes`")
    c = Command(
        id=_command_id(),
        kind="restart",
        node=data.node,
        actor=data.actor,
        issued_ns=time.time_ns(),
        issued_by=who.name,
        reason=data.reason,
    )
    await _send(store, c)
    return ActionResult(action="restart", target=f"{data.node}/{data.actor}", commands=[c])


_KINDS = {"policies": PolicyRecord, "switches": KillSwitch, "commands": Command}


@get("/api/v1/watch", tags=["watch"])
async def watch(
    request: Request[Any, Any, Any],
    revision: Annotated[int | None, Parameter(ge=1, required=False)] = None,
    kinds: Annotated[
        str | None, Parameter(pattern=r"^[a-z,]{0,100}$", max_length=100, required=False)
    ] = None,
) -> ServerSentEvent:
    """Server-sent events, one per change under the prefix (``event:`` is the kind:
    nodes, nodestate, policies, switches, commands; ``data:`` a WatchEvent). A broken
    etcd link ends the stream with an ``error`` event. ``kinds``: a comma list of kinds
    to send (default all)."""
    _auth(request, "viewer")
    store = _store(request)
    keep = {k for k in (kinds or "").split(",") if k}

    async def events() -> AsyncGenerator[ServerSentEventMessage, None]:
        yield ServerSentEventMessage(
            event="hello", data=_ENC.encode({"prefix": store.prefix}).decode()
        )
        try:
            async for typ, key, value, rev in store.watch(store.dir(), revision):
                parts = store.split(key)
                kind = parts[0]
                if keep and kind not in keep:
                    continue
                doc: Any = None
                if typ == "PUT":
                    doc = _decode(value, _KINDS.get(kind, Any))
                ev = WatchEvent(
                    kind=kind,
                    type="PUT" if typ == "PUT" else "DELETE",
                    name="/".join(parts[1:]),
                    revision=rev,
                    value=doc,
                )
                yield ServerSentEventMessage(event=kind, data=_ENC.encode(ev).decode(), id=rev)
        except (EtcdUnavailable, HistoryCompacted) as exc:
            yield ServerSentEventMessage(
                event="error",
                data=_ENC.encode(
                    {"detail": str(exc), "compacted": isinstance(exc, HistoryCompacted)}
                ).decode(),
            )

    return ServerSentEvent(events())


# -- app -----------------------------------------------------------------------------------


async def _compactor(store: Store, every: float) -> None:
    """Every ``every`` seconds, drop etcd's history older than the previous round.

    Agents rewrite their reports every second; without compaction etcd keeps every
    version until its space quota is reached and it refuses writes. Keeping one round of
    history is what lets a watch resume from a recent revision.
    """
    seen = 0
    while True:
        await asyncio.sleep(every)
        with contextlib.suppress(EtcdUnavailable):
            if seen:
                await store.compact(seen)
            seen = await store.revision()


def create_app(
    etcd_endpoint: str,
    prefix: str,
    tokens: TokenTable,
    timeout: float = DEFAULT_TIMEOUT,
    compact_every: float = 300.0,
    access: EtcdAccess | None = None,
) -> Litestar:
    """The ASGI app; etcd is connected on startup (an etcd that is down gives 503s, the
    server itself stays up). ``timeout``: seconds per etcd call; ``compact_every``
    seconds: etcd history compaction (0: off); ``access``: etcd user and TLS files."""
    tasks: list[asyncio.Task[None]] = []

    async def startup(app: Litestar) -> None:
        app.state.store = Store(etcd_endpoint, prefix, timeout, access)
        app.state.tokens = tokens
        app.state.schema_ok = False
        try:
            await app.state.store.ensure_schema()
            app.state.schema_ok = True
        except EtcdUnavailable:
            pass
        if compact_every > 0:
            tasks.append(asyncio.create_task(_compactor(app.state.store, compact_every)))

    async def shutdown(app: Litestar) -> None:
        for t in tasks:
            t.cancel()
        await app.state.store.close()

    openapi = OpenAPIConfig(
        title="Wiresens control plane",
        version="1",
        path="/schema",
        security=[{"bearer": []}],
        components=Components(
            security_schemes={"bearer": SecurityScheme(type="http", scheme="bearer")}
        ),
    )
    return Litestar(
        route_handlers=[
            healthz,
            openapi_json,
            list_nodes,
            get_node,
            forget_node,
            list_policies,
            get_policy,
            apply_policy,
            delete_policy,
            list_orders,
            list_positions,
            list_switches,
            list_commands,
            kill,
            resume,
            restart,
            watch,
        ],
        on_startup=[startup],
        on_shutdown=[shutdown],
        openapi_config=openapi,
        exception_handlers={EtcdUnavailable: _etcd_down},
    )


def serve(
    host: str,
    port: int,
    etcd_endpoint: str,
    prefix: str,
    tokens: TokenTable,
    compact_every: float = 300.0,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    access: EtcdAccess | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
) -> None:
    """Run the API server until SIGINT/SIGTERM; HTTPS when ``tls_cert`` and ``tls_key``
    (PEM files) are given."""
    import uvicorn

    app = create_app(
        etcd_endpoint, prefix, tokens, timeout, compact_every=compact_every, access=access
    )
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="warning",
        lifespan="on",
        ssl_certfile=tls_cert,
        ssl_keyfile=tls_key,
    )
