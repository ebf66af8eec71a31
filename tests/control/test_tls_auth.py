"""TLS and logins on both links of the control plane.

* CLI -> API server: ``wiresens apiserver --tls-cert --tls-key`` with a self-signed
  certificate made here; the CLI checks it against the context's ``ca_file``.
* API server and node agent -> etcd: a throwaway etcd this module starts itself
  (HTTPS with its own certificate, ``auth enable``, a user limited to one key prefix),
  so the session's shared etcd stays open for the other tests.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from typer.testing import CliRunner

from wiresens.cli import app
from wiresens.control import NodeAgent
from wiresens.control.store import EtcdAccess

from .conftest import ADMIN, VIEWER, free_port, private_etcd, stop_process, wait_until

PREFIX = "/wiresens-auth"


def make_cert(directory: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost; returns (cert, key) paths."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


def start_apiserver(
    tmp: Path, etcd: str, tokens: Path, *extra: str
) -> tuple[subprocess.Popen[bytes], int, Path]:
    port = free_port()
    log = tmp / f"apiserver-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "wiresens",
                "apiserver",
                "--port",
                str(port),
                "--etcd",
                etcd,
                "--prefix",
                PREFIX,
                "--tokens",
                str(tokens),
                *extra,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return proc, port, log


def run_cli(*args: str, env: dict[str, str]) -> object:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("WIRESENS_")}
    return CliRunner().invoke(app, list(args), env={**clean, **env})


# -- HTTPS to the API server ----------------------------------------------------------------


def test_cli_talks_https_to_the_apiserver_and_checks_its_certificate(
    etcd_endpoint: str, tokens_file: Path, tmp_path: Path
) -> None:
    cert, key = make_cert(tmp_path, "apiserver")
    proc, port, log = start_apiserver(
        tmp_path, etcd_endpoint, tokens_file, "--tls-cert", str(cert), "--tls-key", str(key)
    )
    try:
        url = f"https://127.0.0.1:{port}"
        ctx_file = tmp_path / "config.toml"

        def context(extra: str) -> dict[str, str]:
            ctx_file.write_text(
                f'current = "tls"\n[contexts.tls]\nserver = "{url}"\ntoken = "{ADMIN}"\n{extra}'
            )
            return {"WIRESENS_CONTEXT": str(ctx_file)}

        def up() -> bool:
            r = run_cli("get", "nodes", "-o", "json", env=context(f'ca_file = "{cert}"\n'))
            return r.exit_code == 0  # type: ignore[attr-defined, no-any-return]

        wait_until(lambda: up() or proc.poll() is not None, 30, "the HTTPS apiserver")
        assert proc.poll() is None, log.read_text()

        r = run_cli("get", "nodes", "-o", "json", env=context(f'ca_file = "{cert}"\n'))
        assert r.exit_code == 0, r.output  # type: ignore[attr-defined]
        assert json.loads(r.stdout) == []  # type: ignore[attr-defined]

        # without the CA the certificate is not trusted: exit 4, saying what to set
        r = run_cli("get", "nodes", env=context(""))
        assert r.exit_code == 4, r.output  # type: ignore[attr-defined]
        assert "ca_file" in r.stderr and "TLS" in r.stderr  # type: ignore[attr-defined]

        # verification off (tests only) works without the CA
        r = run_cli("get", "nodes", env=context("insecure_skip_verify = true\n"))
        assert r.exit_code == 0, r.output  # type: ignore[attr-defined]

        # tokens and roles still apply over HTTPS
        ctx_file.write_text(
            f'current = "tls"\n[contexts.tls]\nserver = "{url}"\ntoken = "{VIEWER}"\n'
            f'ca_file = "{cert}"\n'
        )
        spec = tmp_path / "p.toml"
        spec.write_text('[[policy]]\nname = "p"\nclass = "x.py:X"\nnode = "b"\n')
        r = run_cli("apply", "-f", str(spec), env={"WIRESENS_CONTEXT": str(ctx_file)})
        assert r.exit_code == 3, r.output  # type: ignore[attr-defined]

        # plain HTTP to the HTTPS port gets no answer a client could mistake for the API
        with pytest.raises((urllib.error.URLError, OSError)):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5)
    finally:
        stop_process(proc)


def test_apiserver_refuses_half_a_tls_configuration(
    etcd_endpoint: str, tokens_file: Path, tmp_path: Path
) -> None:
    cert, _ = make_cert(tmp_path, "half")
    r = run_cli(
        "apiserver", "--etcd", etcd_endpoint, "--tokens", str(tokens_file),
        "--tls-cert", str(cert), env={},
    )  # fmt: skip
    assert r.exit_code == 2  # type: ignore[attr-defined]
    assert "--tls-key" in r.stderr  # type: ignore[attr-defined]


# -- etcd with TLS and auth ---------------------------------------------------------------


@dataclass
class SecureEtcd:
    endpoint: str
    ca: Path
    user: str
    password_file: Path
    root_password_file: Path


def _etcdctl(endpoint: str, ca: Path, *args: str, user: str | None = None) -> str:
    cmd = ["etcdctl", f"--endpoints=https://{endpoint}", f"--cacert={ca}", "--command-timeout=10s"]
    if user:
        cmd.append(f"--user={user}")
    r = subprocess.run(
        [*cmd, *args],
        env={**os.environ, "ETCDCTL_API": "3"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 0, f"etcdctl {' '.join(args)}: {r.stderr}"
    return r.stdout


@pytest.fixture(scope="module")
def secure_etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureEtcd]:
    """An etcd of this module only: HTTPS, auth enabled, user ``ws`` may read and write
    under ``/wiresens-auth`` only."""
    tmp = tmp_path_factory.mktemp("secure-etcd")
    cert, key = make_cert(tmp, "etcd")
    with private_etcd(tmp, "secure", tls=(cert, key)) as (endpoint, _proc):
        root_pw, ws_pw = os.urandom(12).hex(), os.urandom(12).hex()
        _etcdctl(endpoint, cert, "user", "add", f"root:{root_pw}")
        _etcdctl(endpoint, cert, "role", "add", "ws")
        _etcdctl(endpoint, cert, "role", "grant-permission", "ws", "--prefix=true", "readwrite",
                 PREFIX + "/")  # fmt: skip
        _etcdctl(endpoint, cert, "role", "grant-permission", "ws", "readwrite", PREFIX)
        _etcdctl(endpoint, cert, "user", "add", f"ws:{ws_pw}")
        _etcdctl(endpoint, cert, "user", "grant-role", "ws", "ws")
        _etcdctl(endpoint, cert, "auth", "enable")
        pw, root = tmp / "ws.password", tmp / "root.password"
        pw.write_text(ws_pw + "\n")
        root.write_text(root_pw + "\n")
        yield SecureEtcd(endpoint, cert, "ws", pw, root)


def test_agent_and_apiserver_log_in_to_an_etcd_with_tls_and_auth(
    secure_etcd: SecureEtcd, tokens_file: Path, tmp_path: Path
) -> None:
    e = secure_etcd
    access = EtcdAccess(user=e.user, password_file=str(e.password_file), ca_file=str(e.ca))
    agent = NodeAgent(e.endpoint, PREFIX, "secure-node", {"cpus": 1}, access=access).start()
    proc, port, log = start_apiserver(
        tmp_path, e.endpoint, tokens_file,
        "--etcd-user", e.user, "--etcd-password-file", str(e.password_file),
        "--etcd-ca", str(e.ca),
    )  # fmt: skip
    try:
        assert agent.wait_synced(30), agent.status().last_error
        env = {"WIRESENS_SERVER": f"http://127.0.0.1:{port}", "WIRESENS_TOKEN": ADMIN}

        def states() -> dict[str, str]:
            r = run_cli("get", "nodes", "-o", "json", env=env)
            if r.exit_code != 0:  # type: ignore[attr-defined]
                return {}
            return {n["name"]: n["state"] for n in json.loads(r.stdout)}  # type: ignore[attr-defined]

        wait_until(lambda: states().get("secure-node") == "Ready", 30, "the node Ready")
        assert proc.poll() is None, log.read_text()
        # the registration really is in that etcd, under the prefix the user may write
        keys = _etcdctl(
            e.endpoint, e.ca, "get", "--prefix", "--keys-only", f"{PREFIX}/nodes/",
            user=f"root:{e.root_password_file.read_text().strip()}",
        )  # fmt: skip
        assert f"{PREFIX}/nodes/secure-node" in keys
    finally:
        agent.stop()
        stop_process(proc)


def test_wrong_etcd_password_or_no_ca_is_refused_with_what_to_check(
    secure_etcd: SecureEtcd, tokens_file: Path, tmp_path: Path
) -> None:
    e = secure_etcd
    wrong = tmp_path / "wrong.password"
    wrong.write_text("not-the-password\n")
    agent = NodeAgent(
        e.endpoint,
        PREFIX,
        "wrong-node",
        access=EtcdAccess(user=e.user, password_file=str(wrong), ca_file=str(e.ca)),
    ).start()
    proc, port, _log = start_apiserver(
        tmp_path, e.endpoint, tokens_file,
        "--etcd-user", e.user, "--etcd-password-file", str(wrong), "--etcd-ca", str(e.ca),
    )  # fmt: skip
    try:
        env = {"WIRESENS_SERVER": f"http://127.0.0.1:{port}", "WIRESENS_TOKEN": ADMIN}

        seen: list[str] = []

        def refused() -> bool:
            # a TLS handshake that times out under load reads "unreachable": ask again
            r = run_cli("get", "nodes", env=env)
            assert r.exit_code in (4, 5), r.output  # type: ignore[attr-defined]
            seen.append(r.stderr)  # type: ignore[attr-defined]
            return "refused the API server's credentials" in seen[-1]

        wait_until(refused, 60, "the apiserver to say etcd refused its login", interval=0.5)
        assert "password file" in seen[-1]
        wait_until(lambda: "authentication failed" in agent.status().last_error, 30, "refusal")
        assert not agent.status().connected
    finally:
        agent.stop()
        stop_process(proc)
    # an etcd speaking TLS is unreachable for a client without the CA (plain gRPC)
    plain = NodeAgent(e.endpoint, PREFIX, "plain-node", timeout=2).start()
    try:
        wait_until(lambda: plain.status().last_error != "", 30, "the plain client to fail")
        assert not plain.status().connected
    finally:
        plain.stop()
