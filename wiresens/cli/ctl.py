"""kubectl-style control-plane commands: ``apiserver``, ``get``, ``apply``, ``delete``,
``kill``, ``resume``, ``describe``, ``watch``.

Output is a table for people (default) or ``-o json`` / ``-o yaml`` for scripts.
Exit codes: 0 ok, 2 bad request or input, 3 not allowed, 4 API server down, 5 etcd down
or slow (the message says which; see :mod:`wiresens.control.client`).
"""

from __future__ import annotations

import datetime as _dt
import json
import sys
import time
from enum import StrEnum
from pathlib import Path
from typing import Any

import msgspec
import typer

from wiresens.errors import WiresensError

__all__ = ["register"]


class Output(StrEnum):
    table = "table"
    json = "json"
    yaml = "yaml"


class Resource(StrEnum):
    nodes = "nodes"
    policies = "policies"
    orders = "orders"
    positions = "positions"
    switches = "switches"
    commands = "commands"


_ALIASES = {
    "node": "nodes",
    "no": "nodes",
    "policy": "policies",
    "pol": "policies",
    "order": "orders",
    "position": "positions",
    "pos": "positions",
    "switch": "switches",
    "command": "commands",
    "cmd": "commands",
}

CTX_HELP = "Context name in ~/.config/wiresens/config.toml, or another context file (env WIRESENS_CONTEXT)."
SERVER_HELP = "API server URL (env WIRESENS_SERVER); overrides the context."
TOKEN_HELP = "API token (env WIRESENS_TOKEN); overrides the context."

_ctx_opt = typer.Option(None, "--context", help=CTX_HELP)
_server_opt = typer.Option(None, "--server", help=SERVER_HELP)
_token_opt = typer.Option(None, "--token", help=TOKEN_HELP)
_out_opt = typer.Option(Output.table, "--output", "-o", help="table, json or yaml.")


def _fail(msg: str, code: int) -> typer.Exit:
    typer.echo(f"error: {msg}", err=True)
    return typer.Exit(code)


def _client(context: str | None, server: str | None, token: str | None) -> Any:
    from wiresens.control.client import Client
    from wiresens.control.context import resolve

    try:
        return Client(resolve(context, server, token))
    except WiresensError as exc:
        raise _fail(str(exc), 2) from None


def _call(client: Any, method: str, path: str, body: Any = None, **query: Any) -> Any:
    from wiresens.control.client import ControlPlaneError

    try:
        return client.call(method, path, body, query)
    except ControlPlaneError as exc:
        raise _fail(str(exc), exc.exit_code) from None


def _age(ns: int) -> str:
    if not ns:
        return "-"
    s = max(0.0, (time.time_ns() - ns) / 1e9)
    if s < 120:
        return f"{s:.0f}s"
    if s < 7200:
        return f"{s / 60:.0f}m"
    return f"{s / 3600:.1f}h"


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [[("-" if c is None else str(c)) for c in r] for r in rows]
    widths = [len(h) for h in headers]
    for r in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, r, strict=True)]
    lines = ["   ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines += ["   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(line.rstrip() for line in lines)


def _emit(data: Any, output: Output, headers: list[str], rows: list[list[Any]]) -> None:
    if output is Output.json:
        typer.echo(json.dumps(data, indent=2, sort_keys=False))
    elif output is Output.yaml:
        typer.echo(msgspec.yaml.encode(data).decode().rstrip())
    elif rows:
        typer.echo(_table(headers, rows))
    else:
        typer.echo("No resources found.", err=True)


def get(
    resource: str = typer.Argument(
        ..., help="nodes | policies | orders | positions | switches | commands"
    ),
    name: str | None = typer.Argument(None, help="One node or policy by name."),
    output: Output = _out_opt,
    context: str | None = _ctx_opt,
    server: str | None = _server_opt,
    token: str | None = _token_opt,
) -> None:
    """List resources of the control plane (desired state and the nodes' reports)."""
    kind = _ALIASES.get(resource, resource)
    if kind not in Resource.__members__:
        raise _fail(
            f"unknown resource {resource!r}: use one of {', '.join(Resource.__members__)}", 2
        )
    c = _client(context, server, token)
    if name is not None and kind in ("nodes", "policies"):
        data: Any = [_call(c, "GET", f"/api/v1/{kind}/{name}")]
    else:
        data = _call(c, "GET", f"/api/v1/{kind}")
    if name is not None and kind not in ("nodes", "policies"):
        data = [d for d in data if name in (d.get("node"), d.get("policy"))]
    out_data = data[0] if name is not None and kind in ("nodes", "policies") else data
    if kind == "nodes":
        headers = ["name", "state", "host", "pid", "policies", "killed", "reported"]
        rows = [
            [
                n["name"],
                n["state"],
                n["info"].get("host") or None,
                n["info"].get("pid") or None,
                ",".join(n["policies"]) or None,
                "yes" if n["killed"] else "no",
                _age(n["reported_ns"]),
            ]
            for n in data
        ]
    elif kind == "policies":
        headers = ["name", "node", "class", "symbols", "enabled", "state", "gen", "age", "reason"]
        rows = [
            [
                p["spec"]["name"],
                p["spec"]["node"],
                p["spec"]["class"],
                ",".join(p["spec"]["symbols"]) or None,
                str(p["spec"]["enabled"]).lower(),
                p.get("state") or None,
                p["generation"],
                _age(p["updated_ns"]),
                p.get("reason") or None,
            ]
            for p in data
        ]
    elif kind == "orders":
        headers = ["node", "policy", "symbol", "open", "orders", "fills", "rejects", "reported"]
        rows = [
            [
                o["node"],
                o["policy"],
                o["symbol"],
                o["open_orders"],
                o["orders"],
                o["fills"],
                o["rejects"],
                _age(o["reported_ns"]),
            ]
            for o in data
        ]
    elif kind == "positions":
        headers = ["node", "policy", "symbol", "position", "realized", "unrealized", "reported"]
        rows = [
            [
                p["node"],
                p["policy"],
                p["symbol"],
                p["position"],
                p["realized_pnl"],
                p["unrealized_pnl"],
                _age(p["reported_ns"]),
            ]
            for p in data
        ]
    elif kind == "switches":
        headers = ["scope", "by", "reason", "age"]
        rows = [
            [s["scope"], s["issued_by"], s["reason"] or None, _age(s["issued_ns"])] for s in data
        ]
    else:
        headers = ["id", "node", "kind", "policy", "actor", "by", "age"]
        rows = [
            [
                c_["id"],
                c_["node"],
                c_["kind"],
                c_["policy"],
                c_["actor"],
                c_["issued_by"],
                _age(c_["issued_ns"]),
            ]
            for c_ in data
        ]
    _emit(out_data, output, headers, rows)


def _policy_docs(path: str) -> list[dict[str, Any]]:
    try:
        raw = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except OSError as exc:
        raise _fail(f"cannot read {path}: {exc.strerror}", 2) from None
    try:
        doc = (
            msgspec.toml.decode(raw)
            if not path.endswith((".json", ".yaml", ".yml"))
            else (msgspec.json.decode(raw) if path.endswith(".json") else msgspec.yaml.decode(raw))
        )
    except msgspec.DecodeError as exc:
        raise _fail(f"{path}: {exc}", 2) from None
    if isinstance(doc, dict) and "policy" in doc:
        docs = doc["policy"]
        docs = docs if isinstance(docs, list) else [docs]
    else:
        docs = [doc]
    from wiresens.control.models import PolicySpec

    for i, d in enumerate(docs):
        try:
            msgspec.convert(d, PolicySpec)
        except msgspec.ValidationError as exc:
            where = f"policy[{i}]" if len(docs) > 1 or "policy" in doc else "the policy"
            raise _fail(f"{path}: {where}: {exc}", 2) from None
    return [d for d in docs if isinstance(d, dict)]


def apply(
    file: str = typer.Option(
        ...,
        "--file",
        "-f",
        help="policy.toml ([[policy]] tables or one policy), .json, .yaml, or - for stdin.",
    ),
    revision: int | None = typer.Option(
        None,
        help="Only if the policy is still at this revision (compare-and-set; 0 = must not exist).",
    ),
    output: Output = _out_opt,
    context: str | None = _ctx_opt,
    server: str | None = _server_opt,
    token: str | None = _token_opt,
) -> None:
    """Create or change policies (desired state); their nodes converge to it.

    A policy of the node's node.toml changes params and timer in place; any other
    policy starts in one of the node's spare slots (spare_policy_slots in its
    node.toml's control table) and may trade only symbols the node's feed carries. `wiresens get policies` shows the
    node's answer: Running, Disabled or Failed with the reason.
    """
    docs = _policy_docs(file)
    c = _client(context, server, token)
    results = []
    for d in docs:
        r = _call(c, "PUT", f"/api/v1/policies/{d['name']}", d, revision=revision)
        results.append(r)
        if output is Output.table:
            verb = "created" if r["generation"] == 1 else "configured"
            typer.echo(
                f"policy/{r['spec']['name']} {verb} (node {r['spec']['node']}, generation {r['generation']}, revision {r['revision']})"
            )
    if output is not Output.table:
        _emit(results, output, [], [])


def delete(
    resource: str = typer.Argument(..., help="policy | node (node: forget a Lost/Stopped node)"),
    name: str = typer.Argument(...),
    context: str | None = _ctx_opt,
    server: str | None = _server_opt,
    token: str | None = _token_opt,
) -> None:
    """Delete a policy or forget a node that is gone.

    A deleted policy that its node started from the control plane stops, its open
    orders are cancelled and its spare slot is freed; a policy of a node.toml keeps
    running as node.toml says.
    """
    kind = _ALIASES.get(resource, resource)
    if kind not in ("policies", "nodes"):
        raise _fail(
            f"cannot delete {resource!r}: use `delete policy NAME` or `delete node NAME`", 2
        )
    c = _client(context, server, token)
    _call(c, "DELETE", f"/api/v1/{kind}/{name}")
    typer.echo(f"{kind[:-1] if kind == 'nodes' else 'policy'}/{name} deleted")


def _switch(action: str, node: str | None, policy: str | None, reason: str, c: Any) -> None:
    body = {"node": node, "policy": policy, "reason": reason}
    r = _call(c, "POST", f"/api/v1/{action}", {k: v for k, v in body.items() if v is not None})
    nodes = sorted({cmd["node"] for cmd in r["commands"]})
    if nodes:
        told = f"; told {', '.join(nodes)}"
    else:
        told = "; no Ready node to tell now" + (
            " (the switch stays in force)" if action == "kill" else ""
        )
    typer.echo(f"{action} {r['target']}{told}")


def kill(
    node: str | None = typer.Option(None, "--node", help="Kill one node (default: every node)."),
    policy: str | None = typer.Option(None, "--policy", help="Kill one policy."),
    reason: str = typer.Option("", help="Why (kept with the switch)."),
    context: str | None = _ctx_opt,
    server: str | None = _server_opt,
    token: str | None = _token_opt,
) -> None:
    """Kill switch: stop sending orders and cancel open ones, until `resume`."""
    _switch("kill", node, policy, reason, _client(context, server, token))


def resume(
    node: str | None = typer.Option(
        None, "--node", help="Resume one node (default: lift the global switch)."
    ),
    policy: str | None = typer.Option(None, "--policy", help="Resume one policy."),
    reason: str = typer.Option("", help="Why."),
    context: str | None = _ctx_opt,
    server: str | None = _server_opt,
    token: str | None = _token_opt,
) -> None:
    """Lift a kill switch."""
    _switch("resume", node, policy, reason, _client(context, server, token))


def describe(
    resource: str = typer.Argument(..., help="node | policy"),
    name: str = typer.Argument(...),
    context: str | None = _ctx_opt,
    server: str | None = _server_opt,
    token: str | None = _token_opt,
) -> None:
    """Everything about one node (registration, policies, last report) or policy."""
    kind = _ALIASES.get(resource, resource)
    if kind not in ("nodes", "policies"):
        raise _fail(
            f"cannot describe {resource!r}: use `describe node NAME` or `describe policy NAME`", 2
        )
    c = _client(context, server, token)
    d = _call(c, "GET", f"/api/v1/{kind}/{name}")
    if kind == "policies":
        typer.echo(msgspec.yaml.encode(d).decode().rstrip())
        return
    info = d["info"]
    lines = [
        f"Name:          {d['name']}",
        f"State:         {d['state']}",
        f"Killed:        {'yes' if d['killed'] else 'no'}",
        f"Host:          {info.get('host') or '-'}   pid {info.get('pid') or '-'}",
        f"Started:       {_dt.datetime.fromtimestamp(info.get('started_ns', 0) / 1e9, _dt.UTC).isoformat(timespec='seconds') if info.get('started_ns') else '-'}",
        f"Lease:         {info.get('lease_id', 0):x} (ttl {info.get('ttl_s', 0)} s)",
        f"Reported:      {_age(d['reported_ns'])} ago",
        f"Policies:      {', '.join(d['policies']) or '-'}",
        f"Capabilities:  {json.dumps(info.get('capabilities', {}))}",
    ]
    st = d.get("status") or {}
    actors = st.get("actors") or []
    if actors:
        lines.append("Actors:")
        lines.append(
            _table(
                ["name", "state", "pid", "cpu", "restarts"],
                [
                    [a.get("name"), a.get("state"), a.get("pid"), a.get("cpu"), a.get("restarts")]
                    for a in actors
                ],
            )
        )
    pols = st.get("policies") or []
    if pols:
        lines.append("Policies (reported):")
        lines.append(
            _table(
                ["policy", "symbol", "open", "fills", "position", "realized", "unrealized"],
                [
                    [
                        p.get("policy"),
                        p.get("symbol"),
                        p.get("open_orders"),
                        p.get("fills"),
                        p.get("position"),
                        p.get("realized_pnl"),
                        p.get("unrealized_pnl"),
                    ]
                    for p in pols
                ],
            )
        )
    typer.echo("\n".join(lines))


def watch(
    revision: int | None = typer.Option(None, help="Replay changes from this etcd revision."),
    kinds: str = typer.Option(
        "nodes,policies,switches,commands",
        help="Comma list of kinds to show; `all` adds the nodes' reports (nodestate, every second).",
    ),
    output: Output = _out_opt,
    context: str | None = _ctx_opt,
    server: str | None = _server_opt,
    token: str | None = _token_opt,
) -> None:
    """Stream changes (policies, nodes, reports, switches, commands) until Ctrl-C."""
    from wiresens.control.client import ControlPlaneError

    c = _client(context, server, token)
    try:
        for event, data in c.events(revision, None if kinds == "all" else kinds):
            if event == "error" and data.get("compacted"):
                raise _fail(str(data.get("detail")), 2)
            if event == "error":
                raise _fail(
                    f"control plane at {c.ctx.server} lost etcd: {data.get('detail')}",
                    5,
                )
            if event == "hello":
                continue
            if output is Output.table:
                stamp = _dt.datetime.now().strftime("%H:%M:%S")
                typer.echo(
                    f"{stamp}  {data['type']:<6}  {data['kind']}/{data['name']}  rev {data['revision']}"
                )
            else:
                typer.echo(json.dumps(data))
    except ControlPlaneError as exc:
        raise _fail(str(exc), exc.exit_code) from None
    except KeyboardInterrupt:
        pass


def apiserver(
    host: str = typer.Option("127.0.0.1", help="Listen address."),
    port: int = typer.Option(8470, help="Listen port."),
    etcd: str = typer.Option(
        "127.0.0.1:2379", envvar="WIRESENS_ETCD_ENDPOINT", help="etcd HOST:PORT."
    ),
    prefix: str = typer.Option("/wiresens", help="Key prefix in etcd."),
    compact_every: float = typer.Option(
        300.0,
        help="Seconds between etcd history compactions (0: off, e.g. when etcd auto-compacts).",
    ),
    tokens: str | None = typer.Option(
        None, envvar="WIRESENS_TOKENS", help="Tokens file (TOML, [[token]] name/role/sha256)."
    ),
    make_token: str | None = typer.Option(
        None,
        "--make-token",
        metavar="ROLE:NAME",
        help="Print a new [[token]] entry for the tokens file and the token, then exit.",
    ),
    etcd_timeout: float = typer.Option(
        5.0,
        help="Seconds per etcd call; a call that takes longer answers 503 'etcd is slow'.",
    ),
    tls_cert: str | None = typer.Option(
        None, help="PEM certificate (chain): serve HTTPS. Needs --tls-key."
    ),
    tls_key: str | None = typer.Option(None, help="PEM private key of --tls-cert."),
    etcd_user: str | None = typer.Option(
        None, envvar="WIRESENS_ETCD_USER", help="etcd user (etcd with auth enabled)."
    ),
    etcd_password_file: str | None = typer.Option(
        None,
        envvar="WIRESENS_ETCD_PASSWORD_FILE",
        help="File whose first line is the etcd user's password.",
    ),
    etcd_ca: str | None = typer.Option(
        None, help="PEM CA bundle that signed etcd's certificate: talk TLS to etcd."
    ),
    etcd_cert: str | None = typer.Option(None, help="Client certificate for etcd (mTLS)."),
    etcd_key: str | None = typer.Option(None, help="Client key for etcd (mTLS)."),
) -> None:
    """Run the control plane's API server (state in etcd).

    HTTP on 127.0.0.1:8470 by default; with --tls-cert/--tls-key, HTTPS (clients name
    the CA in their context's `ca_file`). etcd login: --etcd-user with
    --etcd-password-file (never a password on the command line), TLS with --etcd-ca
    (and --etcd-cert/--etcd-key when etcd checks client certificates).
    """
    from wiresens.control.auth import ROLES, TokenTable, new_token

    if make_token is not None:
        role, _, who = make_token.partition(":")
        if role not in ROLES or not who:
            raise _fail(f"--make-token wants ROLE:NAME with ROLE one of {', '.join(ROLES)}", 2)
        tok, digest = new_token()
        typer.echo(f'[[token]]\nname = "{who}"\nrole = "{role}"\nsha256 = "{digest}"')
        typer.echo(f"# the token (give it to {who}; it is not stored anywhere): {tok}", err=True)
        return
    if tokens is None:
        raise _fail(
            "no tokens file: pass --tokens FILE (or WIRESENS_TOKENS); "
            "`wiresens apiserver --make-token admin:me >> tokens.toml` makes one",
            2,
        )
    if bool(tls_cert) != bool(tls_key):
        raise _fail("--tls-cert and --tls-key go together: give both (or neither)", 2)
    for what, path in (("--tls-cert", tls_cert), ("--tls-key", tls_key)):
        if path and not Path(path).is_file():
            raise _fail(f"{what} {path} does not exist", 2)
    if etcd_timeout <= 0:
        raise _fail(f"--etcd-timeout must be positive seconds, not {etcd_timeout}", 2)
    try:
        table = TokenTable.load(tokens)
        from wiresens.control.apiserver import serve
        from wiresens.control.store import EtcdAccess, parse_endpoint

        parse_endpoint(etcd)
        access = EtcdAccess(
            user=etcd_user or "",
            password_file=etcd_password_file or "",
            ca_file=etcd_ca or "",
            cert_file=etcd_cert or "",
            key_file=etcd_key or "",
        )
        if access.user:
            access.password()  # unreadable or empty: say so now, not on the first call
        access.credentials()
    except WiresensError as exc:
        raise _fail(str(exc), 2) from None
    scheme = "https" if tls_cert else "http"
    typer.echo(
        f"wiresens apiserver on {scheme}://{host}:{port} (etcd {etcd}, prefix {prefix})",
        err=True,
    )
    serve(
        host,
        port,
        etcd,
        prefix,
        table,
        compact_every,
        timeout=etcd_timeout,
        access=access,
        tls_cert=tls_cert,
        tls_key=tls_key,
    )


def register(app: typer.Typer) -> None:
    """Add the control-plane commands to the top-level ``wiresens`` app."""
    app.command("apiserver")(apiserver)
    app.command("get")(get)
    app.command("apply")(apply)
    app.command("delete")(delete)
    app.command("kill")(kill)
    app.command("resume")(resume)
    app.command("describe")(describe)
    app.command("watch")(watch)
