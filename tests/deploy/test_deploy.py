"""Deployment: the Ansible playbook applied to a temporary prefix, its units, the node it installs.

The single-machine inventory is applied twice with ``connection=local`` under a temporary
``wiresens_root`` (no user creation, no packages, no systemd: none runs here), so the
host is never changed; the second run must change nothing. The units it writes are
checked with ``systemd-analyze verify`` and against ``systemd/``; the node it installs is
started from the prefix's virtualenv and config and must reach RUNNING on the local venue.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
ANSIBLE_DIR = REPO / "ansible"
SYSTEMD_DIR = REPO / "systemd"
BIN = Path(sys.executable).parent

# The password of the example vault files under ansible/inventories/*/group_vars/wiresens/.
# It is public on purpose: those files only show the layout; make your own (docs/deploy.md).
VAULT_PASSWORD = "wiresens-example-vault"
# The admin token whose SHA-256 the single-machine example vault holds.
EXAMPLE_ADMIN_TOKEN = "example-admin-token-change-me"

pytestmark = pytest.mark.slow

RECAP = re.compile(
    r"^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M
)


def _tool(name: str) -> Path:
    path = BIN / name
    if not path.exists():
        pytest.skip(f"{name} is not installed in {BIN}: run `pip install -e '.[test]'`")
    return path


def _env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        ANSIBLE_CONFIG=str(ANSIBLE_DIR / "ansible.cfg"),
        ANSIBLE_HOME=str(tmp / "ansible-home"),
        ANSIBLE_LOCAL_TEMP=str(tmp / "ansible-tmp"),
        ANSIBLE_REMOTE_TEMP=str(tmp / "ansible-tmp"),
        ANSIBLE_VAULT_PASSWORD_FILE=str(_password_file(tmp)),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        PATH=f"{BIN}:{env.get('PATH', '')}",
    )
    env.pop("NOTIFY_SOCKET", None)
    return env


def _password_file(tmp: Path) -> Path:
    path = tmp / "vault-password"
    if not path.exists():
        path.write_text(VAULT_PASSWORD)
        path.chmod(0o600)
    return path


def _recap(output: str) -> dict[str, int]:
    found = RECAP.findall(output)
    assert found, f"no PLAY RECAP in the playbook output:\n{output[-3000:]}"
    _host, ok, changed, unreachable, failed = found[-1]
    return {
        "ok": int(ok),
        "changed": int(changed),
        "unreachable": int(unreachable),
        "failed": int(failed),
    }


@dataclass
class Deployment:
    root: Path
    env: dict[str, str]
    first: dict[str, int]
    second: dict[str, int]
    second_output: str
    shm_prefix: str

    @property
    def wiresens(self) -> Path:
        return self.root / "opt/wiresens/venv/bin/wiresens"

    @property
    def node_config(self) -> Path:
        return self.root / "etc/wiresens/nodes/local.toml"

    @property
    def unit_dir(self) -> Path:
        return self.root / "etc/systemd/system"


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    """A private temporary directory for the module.

    Not pytest's ``tmp_path``: other pytest sessions of the same user prune old
    ``pytest-of-<user>`` directories, which a test lasting minutes cannot afford.
    """
    with tempfile.TemporaryDirectory(prefix="wiresens-deploy-") as d:
        yield Path(d)


@pytest.fixture
def tmp_dir(workdir: Path, request: pytest.FixtureRequest) -> Path:
    path = workdir / request.node.name
    path.mkdir()
    return path


@pytest.fixture(scope="module")
def deployed(workdir: Path) -> Iterator[Deployment]:
    """The single-machine inventory applied twice to a temporary prefix."""
    playbook = _tool("ansible-playbook")
    tmp = workdir / "deploy"
    tmp.mkdir()
    env = _env(tmp)
    dist = tmp / "dist"
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
    build = subprocess.run(
        [*pip_wheel, "-q", "-w", str(dist), str(REPO)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = dist.glob("wiresens-*.whl")
    root = tmp / "root"
    root.mkdir()
    shm_prefix = f"wsdeploy{os.getpid()}"
    extra: dict[str, Any] = {
        "wiresens_root": str(root),
        "wiresens_become": False,
        "wiresens_create_user": False,
        "wiresens_install_packages": False,
        "wiresens_manage_services": False,
        "wiresens_shm_prefix": shm_prefix,
        "worker_node_wheel": str(wheel),
        "worker_node_python": sys.executable,
    }
    if (BIN / "uv").exists():
        # uv installs the dependencies in seconds where pip takes a minute or more.
        extra["worker_node_uv"] = str(BIN / "uv")
    extra_file = tmp / "extra.json"
    extra_file.write_text(json.dumps(extra))
    cmd = [str(playbook), "-i", "inventories/single/hosts.yml", "site.yml"]
    cmd += ["-e", f"@{extra_file}"]
    outputs = []
    for _ in range(2):
        run = subprocess.run(
            cmd, cwd=ANSIBLE_DIR, env=env, capture_output=True, text=True, timeout=600
        )
        out = run.stdout + run.stderr
        assert run.returncode == 0, f"ansible-playbook failed:\n{out[-5000:]}"
        outputs.append(out)
    yield Deployment(
        root=root,
        env=env,
        first=_recap(outputs[0]),
        second=_recap(outputs[1]),
        second_output=outputs[1],
        shm_prefix=shm_prefix,
    )
    for name in os.listdir("/dev/shm"):
        if name.startswith((f"{shm_prefix}.", f"sem.{shm_prefix}.")):
            (Path("/dev/shm") / name).unlink(missing_ok=True)


def test_playbook_installs_then_changes_nothing(deployed: Deployment) -> None:
    # Shown with `pytest -s`: the recap of the second run is the idempotence evidence.
    recap = deployed.second_output[deployed.second_output.rfind("PLAY RECAP") :]
    print(f"\nsecond run:\n{recap.strip()}")
    assert deployed.first["failed"] == 0 and deployed.first["changed"] > 0
    task, changed = "", []
    for line in deployed.second_output.splitlines():
        if line.startswith(("TASK [", "RUNNING HANDLER [")):
            task = line.rstrip(" *")
        elif line.startswith("changed:"):
            changed.append(f"{task}: {line}")
    assert deployed.second["changed"] == 0, f"second run changed: {changed}"
    assert deployed.second["failed"] == 0 and deployed.second["unreachable"] == 0
    # Everything lands inside the prefix, with secrets kept private.
    tokens = deployed.root / "etc/wiresens/apiserver/tokens.toml"
    assert tokens.stat().st_mode & 0o777 == 0o640
    assert 'name = "admin"' in tokens.read_text() and 'role = "admin"' in tokens.read_text()
    # The API server's own reader accepts the file the role wrote.
    venv_python = deployed.wiresens.parent / "python"
    load = "from wiresens.control.auth import TokenTable; import sys; TokenTable.load(sys.argv[1])"
    run = subprocess.run(
        [str(venv_python), "-c", load, str(tokens)], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    assert (deployed.root / "etc/sysctl.d/60-wiresens.conf").read_text().count("vm.swappiness = 1")
    assert deployed.wiresens.exists()


def test_units_match_the_systemd_directory(deployed: Deployment) -> None:
    """Rendered with the default settings, the role templates are the files in systemd/."""
    pairs = {
        "wiresens-node@.service": "wiresens-node@.service",
        "wiresens-apiserver.service": "wiresens-apiserver.service",
        "etcd.service.d/wiresens.conf": "etcd.service.d/wiresens.conf",
    }
    for installed, shipped in pairs.items():
        text = (deployed.unit_dir / installed).read_text().replace(str(deployed.root), "")
        assert text == (SYSTEMD_DIR / shipped).read_text(), (
            f"{installed} differs from systemd/{shipped}"
        )


def _verify(unit_path: Path, names: list[str]) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian package `systemd`)")
    env = dict(os.environ, SYSTEMD_UNIT_PATH=f"{unit_path}:")
    run = subprocess.run(
        [analyze, "verify", "--man=no", *names],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    report = (run.stdout + run.stderr).strip()
    if "Failed to initialize manager" in report or "System has not been booted" in report:
        pytest.skip(f"systemd-analyze verify cannot run here: {report.splitlines()[0]}")
    assert run.returncode == 0 and not report, f"systemd-analyze verify {names}:\n{report}"


def test_installed_units_verify(deployed: Deployment) -> None:
    _verify(deployed.unit_dir, ["wiresens-node@local.service", "wiresens-apiserver.service"])


def test_etcd_drop_in_verifies(deployed: Deployment, tmp_dir: Path) -> None:
    debian_unit = Path("/lib/systemd/system/etcd.service")
    if not debian_unit.exists():
        pytest.skip(
            "Debian's etcd-server is not installed: no etcd.service to apply the drop-in to"
        )
    (tmp_dir / "etcd.service.d").mkdir()
    shutil.copy(debian_unit, tmp_dir / "etcd.service")
    shutil.copy(
        deployed.unit_dir / "etcd.service.d/wiresens.conf", tmp_dir / "etcd.service.d/wiresens.conf"
    )
    _verify(tmp_dir, ["etcd.service"])


def _status(deployed: Deployment) -> dict[str, Any] | None:
    run = subprocess.run(
        [str(deployed.wiresens), "node", "status", "--config", str(deployed.node_config), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        env=deployed.env,
    )
    if run.returncode != 0:
        return None
    st: dict[str, Any] = json.loads(run.stdout)
    return st


def _kill_venue(manifest: Path) -> None:
    """The local venue runs in its own session: end it too when the node was killed."""
    try:
        pid = json.loads(manifest.read_text())["venue_pid"]
    except (OSError, ValueError, KeyError):
        return
    if pid:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)


def test_installed_node_reaches_running(deployed: Deployment, tmp_dir: Path) -> None:
    """The unit's command line, run from the prefix, with systemd's notify socket emulated."""
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify_path = tmp_dir / "notify"
    notify.bind(str(notify_path))
    notify.settimeout(0.2)
    messages: list[str] = []
    done = threading.Event()

    def drain() -> None:
        # Like systemd, read every datagram: the node's send blocks once the socket's
        # queue (net.unix.max_dgram_qlen, 10 without systemd's sysctl) is full.
        while not done.is_set():
            with contextlib.suppress(TimeoutError):
                messages.append(notify.recv(4096).decode())

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    env = dict(deployed.env, NOTIFY_SOCKET=str(notify_path), WATCHDOG_USEC="1000000")
    state_dir = deployed.root / "var/lib/wiresens/nodes/local"
    log_path = tmp_dir / "node.out"
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [str(deployed.wiresens), "node", "up", "--config", str(deployed.node_config), "--quiet"],
        cwd=state_dir,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    try:
        deadline = time.monotonic() + 90
        st: dict[str, Any] | None = None
        while time.monotonic() < deadline:
            assert proc.poll() is None, log_path.read_text()[-3000:]
            st = _status(deployed)
            if (
                st
                and st["actors"]
                and all(a["state"] == "RUNNING" for a in st["actors"])
                and any("WATCHDOG=1" in m for m in messages)
            ):
                break
            time.sleep(0.5)
        assert st is not None, "the node never published its status"
        states = {a["name"]: a["state"] for a in st["actors"]}
        assert states and set(states.values()) == {"RUNNING"}, states
        assert {"feed", "execution", "policy:mm"} <= set(states)
        assert st["node"] == "local" and st["venue"] == "local"
        assert any("READY=1" in m for m in messages), messages
        assert any("WATCHDOG=1" in m for m in messages), messages
        down = subprocess.run(
            [str(deployed.wiresens), "node", "down", "--config", str(deployed.node_config)],
            capture_output=True,
            text=True,
            timeout=90,
            env=deployed.env,
        )
        assert down.returncode == 0, down.stderr + log_path.read_text()[-3000:]
        assert proc.wait(60) == 0, log_path.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        done.set()
        reader.join(5)
        notify.close()
        _kill_venue(state_dir / "run/node.json")
    assert not (state_dir / "run/node.pid").exists()


def test_ansible_lint_offline_is_clean(tmp_dir: Path) -> None:
    lint = _tool("ansible-lint")
    run = subprocess.run(
        [str(lint), "--offline", "--nocolor"],
        cwd=ANSIBLE_DIR,
        env=_env(tmp_dir),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Passed" in run.stdout + run.stderr


def test_cluster_inventory_and_vault(tmp_dir: Path) -> None:
    inventory = _tool("ansible-inventory")
    run = subprocess.run(
        [str(inventory), "-i", "inventories/cluster/hosts.yml", "--list"],
        cwd=ANSIBLE_DIR,
        env=_env(tmp_dir),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    inv = json.loads(run.stdout)
    assert inv["control_plane"]["hosts"] == ["cp1"]
    assert sorted(inv["workers"]["hosts"]) == ["worker1", "worker2"]
    hostvars = inv["_meta"]["hostvars"]
    # The vault decrypted with the test password: the secrets are there by name.
    assert hostvars["cp1"]["vault_wiresens_api_tokens"][0]["name"] == "admin"
    assert "testnet" in hostvars["worker1"]["vault_wiresens_exchange_keys"]
    assert "worker_node_nodes" not in hostvars["cp1"]
    # A wrong password does not open it.
    wrong = tmp_dir / "wrong"
    wrong.write_text("not-the-password")
    env = _env(tmp_dir)
    del env["ANSIBLE_VAULT_PASSWORD_FILE"]
    vault = "inventories/cluster/group_vars/wiresens/vault.yml"
    run = subprocess.run(
        [str(_tool("ansible-vault")), "view", "--vault-password-file", str(wrong), vault],
        cwd=ANSIBLE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode != 0 and "Decryption failed" in run.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _http_status(url: str, token: str | None) -> int:
    req = urllib.request.Request(url)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            status: int = resp.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_installed_apiserver_serves(
    deployed: Deployment, etcd_endpoint: str, tmp_dir: Path
) -> None:
    """The API server unit's command line, on a test etcd, answers with the vault's token."""
    unit = (deployed.unit_dir / "wiresens-apiserver.service").read_text()
    (exec_start,) = [ln for ln in unit.splitlines() if ln.startswith("ExecStart=")]
    argv = shlex.split(exec_start.removeprefix("ExecStart="))
    assert argv[0] == str(deployed.wiresens) and argv[1] == "apiserver"
    opts = dict(zip(argv[2::2], argv[3::2], strict=True))
    assert set(opts) == {"--host", "--port", "--etcd", "--prefix", "--tokens"}
    assert opts["--host"] == "127.0.0.1"
    port = _free_port()
    # The test's etcd and a key prefix of its own instead of the host's control plane.
    opts.update({"--port": str(port), "--etcd": etcd_endpoint})
    opts["--prefix"] = f"/wsdeploy-{os.getpid()}"
    log_path = tmp_dir / "apiserver.out"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [*argv[:2], *(x for kv in opts.items() for x in kv)],
            env=deployed.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}/api/v1/nodes"
    try:
        deadline = time.monotonic() + 60
        status = 0
        while time.monotonic() < deadline:
            assert proc.poll() is None, log_path.read_text()[-3000:]
            with contextlib.suppress(OSError):
                status = _http_status(url, EXAMPLE_ADMIN_TOKEN)
                if status:
                    break
            time.sleep(0.3)
        assert status == 200, log_path.read_text()[-3000:]
        assert _http_status(url, None) == 401
        assert _http_status(url, "not-a-token") == 401
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _render(tmp_dir: Path, host: str, template: str, dest: Path, extra: dict[str, Any]) -> None:
    """Render a role template with ``host``'s variables of the cluster inventory (no connection)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    inventory = ["-i", "inventories/cluster/hosts.yml", host, "-c", "local"]
    variables = ["-e", "ansible_python_interpreter=/usr/bin/python3", "-e", json.dumps(extra)]
    module = ["-m", "ansible.builtin.template", "-a", f"src={template} dest={dest} mode=0600"]
    run = subprocess.run(
        [str(_tool("ansible")), *inventory, *variables, *module],
        cwd=ANSIBLE_DIR,
        env=_env(tmp_dir),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_cluster_worker_config_is_valid(tmp_dir: Path) -> None:
    """The cluster inventory's worker node config, keys from the vault, loads as a NodeConfig."""
    from wiresens.config import load_config

    root = tmp_dir / "root"
    templates = "roles/worker_node/templates"
    key = root / "etc/wiresens/keys/testnet.toml"
    item = {"key": "testnet", "value": "{{ worker_node_exchange_keys.testnet }}"}
    _render(tmp_dir, "worker2", f"{templates}/key.toml.j2", key, {"item": item})
    config = tmp_dir / "worker2.toml"
    extra = {"wiresens_root": str(root), "node": "{{ worker_node_nodes[0] }}"}
    _render(tmp_dir, "worker2", f"{templates}/node.toml.j2", config, extra)
    policies = root / "opt/wiresens/policies"
    policies.mkdir(parents=True)
    shutil.copy(REPO / "examples/market_maker.py", policies)
    cfg = load_config(config, check_system=False)  # CPUs 2-5 are the cluster's, not ours
    assert cfg.node.name == "worker2" and cfg.feed.venue == "binance-testnet"
    assert cfg.node.idle.strategy == "spin"
    assert (cfg.feed.cpu, cfg.execution.cpu, cfg.sidecar.cpu) == (2, 3, 4)
    assert [(p.name, p.cpu, p.account) for p in cfg.policy] == [("mm", 5, "testnet")]
    assert "example-testnet-secret" in key.read_text()
