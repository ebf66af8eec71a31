"""HTTP client of the API server, for the CLI and scripts (standard library only).

Errors are :class:`ControlPlaneError` with a message that says what to do and an
``exit_code`` the CLI exits with:

====  ===========================================================
2     bad request (the server refused the input: 400/404/409/422)
3     not allowed (401/403: token missing, unknown or role too low)
4     the API server is down or unreachable
5     the API server is up but etcd is not (503)
====  ===========================================================
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

from wiresens.errors import WiresensError

from .context import Context

__all__ = ["Client", "ControlPlaneError"]


class ControlPlaneError(WiresensError):
    """A control-plane call failed; ``exit_code`` is what the CLI exits with."""

    def __init__(self, message: str, exit_code: int, status: int = 0) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.status = status


class Client:
    """Calls to one API server with one token.

    Parameters
    ----------
    ctx : Context
        Server URL and token (:func:`wiresens.control.context.resolve`).
    timeout : float
        Seconds per call.
    """

    def __init__(self, ctx: Context, timeout: float = 10.0) -> None:
        self.ctx = ctx
        self.timeout = timeout
        self.ssl: ssl.SSLContext | None = None
        if ctx.server.startswith("https:"):
            self.ssl = ssl.create_default_context(cafile=ctx.ca_file or None)
            if ctx.insecure_skip_verify:
                self.ssl.check_hostname = False
                self.ssl.verify_mode = ssl.CERT_NONE

    def _request(
        self, method: str, path: str, body: Any = None, query: dict[str, Any] | None = None
    ) -> urllib.request.Request:
        url = self.ctx.server + path
        if query:
            q = {k: v for k, v in query.items() if v is not None}
            if q:
                url += "?" + urllib.parse.urlencode(q)
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.ctx.token:
            req.add_header("Authorization", f"Bearer {self.ctx.token}")
        return req

    def _fail(self, exc: Exception) -> ControlPlaneError:
        if isinstance(exc, urllib.error.HTTPError):
            try:
                body = json.loads(exc.read() or b"{}")
            except ValueError:
                body = {}
            detail = body.get("detail") or exc.reason
            code = exc.code
            if code == 503:
                reason = body.get("etcd")
                what = {
                    "slow": "etcd is slow (it did not answer in time; it may be overloaded)",
                    "auth": "etcd refused the API server's credentials",
                }.get(reason, "etcd is unreachable")
                return ControlPlaneError(
                    f"control plane at {self.ctx.server} is up but {what}: {detail}", 5, code
                )
            if code in (401, 403):
                hint = (
                    " (set a token: `token = ...` in your context file, WIRESENS_TOKEN or --token)"
                    if code == 401
                    else ""
                )
                return ControlPlaneError(f"not allowed: {detail}{hint}", 3, code)
            if isinstance(detail, list | dict):
                detail = json.dumps(detail)
            return ControlPlaneError(f"{detail} (HTTP {code})", 2, code)
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, ssl.SSLError):
            return ControlPlaneError(
                f"TLS with the control plane at {self.ctx.server} failed ({reason}): set "
                "`ca_file` in your context (or WIRESENS_CA_FILE) to the CA that signed the "
                "API server's certificate, and use the host name the certificate names",
                4,
            )
        return ControlPlaneError(
            f"control plane at {self.ctx.server} is down ({reason}): "
            "start it with `wiresens apiserver`, or pick another with --context/--server",
            4,
        )

    def call(
        self, method: str, path: str, body: Any = None, query: dict[str, Any] | None = None
    ) -> Any:
        """One JSON call; returns the decoded answer."""
        req = self._request(method, path, body, query)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout, context=self.ssl) as resp:
                raw = resp.read()
        except (urllib.error.URLError, OSError) as exc:
            raise self._fail(exc) from None
        return json.loads(raw) if raw else None

    def health(self) -> dict[str, Any]:
        """``/healthz``; raises when the server or etcd is down."""
        out: dict[str, Any] = self.call("GET", "/healthz")
        return out

    def events(
        self, revision: int | None = None, kinds: str | None = None
    ) -> Iterator[tuple[str, Any]]:
        """Follow ``/api/v1/watch``: yields ``(event, data)`` until the stream ends."""
        req = self._request("GET", "/api/v1/watch", query={"revision": revision, "kinds": kinds})
        try:
            resp = urllib.request.urlopen(req, timeout=None, context=self.ssl)
        except (urllib.error.URLError, OSError) as exc:
            raise self._fail(exc) from None
        with resp:
            event, data = "message", list[str]()
            for raw in resp:
                line = raw.decode().rstrip("\r\n")
                if not line:
                    if data:
                        yield event, json.loads("\n".join(data))
                    event, data = "message", []
                elif line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].strip())
