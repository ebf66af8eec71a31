"""Pytest fixtures for the real services the tests need: PostgreSQL, etcd and Kafka.

Registered for the whole suite by ``pytest_plugins = ["wiresens.testing.services"]`` in
``tests/conftest.py``. The services themselves are started by the shell scripts in
``scripts/services/`` (see ``docs/testing.md``):

* under ``make test``, ``scripts/test-services.sh`` starts all three before pytest and
  exports their addresses; the fixtures read them:

  ============================  ==========================================
  ``WIRESENS_PG_DSN``           ``postgresql://postgres@127.0.0.1:PORT/postgres``
  ``WIRESENS_ETCD_ENDPOINT``    ``127.0.0.1:PORT``
  ``WIRESENS_KAFKA_BOOTSTRAP``  ``127.0.0.1:PORT``
  ``WIRESENS_SERVICES_DIR``     the run directory (data, logs, pid files)
  ============================  ==========================================

* when pytest runs on its own (``pytest tests/x``) and a variable is missing, the fixture
  starts that one service itself with the same scripts (``scripts/services/up.sh``),
  installing what is missing, and stops it at the end of the session.

Fixtures
--------
postgres_dsn, etcd_endpoint, kafka_bootstrap : str
    Session-scoped addresses.
postgres_service, etcd_service, kafka_service : Service
    Handles with ``stop()``, ``start()``, ``restart()`` and ``is_running()``, for tests
    that take a service down (same data dir, same port after ``start()``). They are
    function-scoped: a service a test left stopped is started again after the test.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = [
    "ENV_VARS",
    "Service",
    "etcd_endpoint",
    "etcd_service",
    "kafka_bootstrap",
    "kafka_classpath",
    "kafka_service",
    "postgres_dsn",
    "postgres_service",
    "scripts_dir",
]

ENV_VARS: dict[str, str] = {
    "postgres": "WIRESENS_PG_DSN",
    "etcd": "WIRESENS_ETCD_ENDPOINT",
    "kafka": "WIRESENS_KAFKA_BOOTSTRAP",
}
_RUN_DIR_VAR = "WIRESENS_SERVICES_DIR"
# A cold first run installs Debian packages and fetches the Kafka jars.
_UP_TIMEOUT_S = 900.0
_CONTROL_TIMEOUT_S = 150.0


def scripts_dir() -> Path:
    """Return ``scripts/services`` of the source checkout this package runs from.

    Raises
    ------
    RuntimeError
        When Wiresens is installed without its source tree (no scripts to start
        services with); the message says to run the suite from a checkout.
    """
    path = Path(__file__).resolve().parents[2] / "scripts" / "services"
    if not (path / "up.sh").is_file():
        raise RuntimeError(
            f"{path}/up.sh not found: the test services are started from a Wiresens source "
            "checkout; run `make test` there (or export WIRESENS_PG_DSN, "
            "WIRESENS_ETCD_ENDPOINT and WIRESENS_KAFKA_BOOTSTRAP yourself)"
        )
    return path


def _run_script(
    args: list[str], run_dir: str | None, timeout: float
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if run_dir is not None:
        env[_RUN_DIR_VAR] = run_dir
    script = scripts_dir() / args[0]
    try:
        proc = subprocess.run(
            ["bash", str(script), *args[1:]],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(
            f"{script.name} {' '.join(args[1:])} did not finish within {timeout:.0f}s; "
            f"its logs are under {run_dir or '/tmp/wiresens-services.*'}"
        ) from exc
    return proc


def _check(proc: subprocess.CompletedProcess[str], what: str) -> None:
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"{what} failed (exit {proc.returncode}):\n{tail}")


def kafka_classpath() -> str:
    """Return the Java class path of the cached Kafka jars (broker and kafka-tools).

    ``java -cp CLASSPATH org.apache.kafka.tools.ProducerPerformance ...`` runs
    kafka-producer-perf-test. Installs the jars first when they are missing.
    """
    _check(_run_script(["install.sh", "kafka"], None, _UP_TIMEOUT_S), "install.sh kafka")
    proc = _run_script(["kafka.sh", "classpath"], None, _CONTROL_TIMEOUT_S)
    _check(proc, "kafka.sh classpath")
    return proc.stdout.strip()


@dataclass(frozen=True)
class Service:
    """One running test service and the means to stop and start it again.

    Parameters
    ----------
    name : str
        ``"postgres"``, ``"etcd"`` or ``"kafka"``.
    address : str
        What the tests connect to (a DSN or ``host:port``); unchanged across
        ``stop()``/``start()``.
    run_dir : str or None
        The scripts' run directory, or None for a service the scripts did not start
        (an address exported by hand), which cannot be stopped from a test.
    """

    name: str
    address: str
    run_dir: str | None

    def _control(self, action: str) -> subprocess.CompletedProcess[str]:
        if self.run_dir is None:
            raise RuntimeError(
                f"{self.name} at {self.address} was not started by scripts/services "
                f"({_RUN_DIR_VAR} is unset), so a test cannot {action} it; run the "
                "suite with `make test` or unset "
                f"{ENV_VARS[self.name]} to let the fixture start its own"
            )
        return _run_script([f"{self.name}.sh", action], self.run_dir, _CONTROL_TIMEOUT_S)

    def stop(self) -> None:
        """Stop the server, keeping its data directory and port."""
        _check(self._control("stop"), f"{self.name}.sh stop")

    def start(self) -> None:
        """Start the server again on the same port and data; return once it is ready."""
        _check(self._control("start"), f"{self.name}.sh start")

    def restart(self) -> None:
        """Stop, then start."""
        self.stop()
        self.start()

    def is_running(self) -> bool:
        """True when the server process is alive."""
        return self._control("status").returncode == 0

    def log_file(self) -> Path | None:
        """The server's log file, to read when something went wrong."""
        if self.run_dir is None:
            return None
        names = {"postgres": "postgres.log", "etcd": "etcd.log", "kafka": "server.log"}
        return Path(self.run_dir) / self.name / names[self.name]


def _session_service(name: str) -> Iterator[Service]:
    """Use the service the environment names, or start one for this session."""
    address = os.environ.get(ENV_VARS[name])
    if address:
        yield Service(name, address, os.environ.get(_RUN_DIR_VAR) or None)
        return
    try:
        proc = _run_script(["up.sh", "--owner", str(os.getpid()), name], None, _UP_TIMEOUT_S)
        _check(proc, f"scripts/services/up.sh {name}")
    except RuntimeError as exc:
        pytest.fail(
            f"{ENV_VARS[name]} is unset and starting {name} here failed; `make test` "
            f"starts every service.\n{exc}",
            pytrace=False,
        )
    found = dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)
    run_dir = found[_RUN_DIR_VAR]
    try:
        yield Service(name, found[ENV_VARS[name]], run_dir)
    finally:
        _check(_run_script(["down.sh", run_dir], None, _CONTROL_TIMEOUT_S), "down.sh")


def _keep_running(service: Service) -> Iterator[Service]:
    yield service
    # A test that stopped the service (and perhaps failed before starting it again)
    # must not leave the rest of the session without it.
    if service.run_dir is not None and not service.is_running():
        service.start()


@pytest.fixture(scope="session")
def _postgres_session() -> Iterator[Service]:
    yield from _session_service("postgres")


@pytest.fixture(scope="session")
def _etcd_session() -> Iterator[Service]:
    yield from _session_service("etcd")


@pytest.fixture(scope="session")
def _kafka_session() -> Iterator[Service]:
    yield from _session_service("kafka")


@pytest.fixture(scope="session")
def postgres_dsn(_postgres_session: Service) -> str:
    """libpq URI of a throwaway PostgreSQL 15 cluster (superuser ``postgres``, trust)."""
    return _postgres_session.address


@pytest.fixture(scope="session")
def etcd_endpoint(_etcd_session: Service) -> str:
    """``host:port`` of a single-member etcd (v3 API)."""
    return _etcd_session.address


@pytest.fixture(scope="session")
def kafka_bootstrap(_kafka_session: Service) -> str:
    """``host:port`` of a single-node Kafka 3.9 (KRaft, PLAINTEXT, auto-created topics)."""
    return _kafka_session.address


@pytest.fixture
def postgres_service(_postgres_session: Service) -> Iterator[Service]:
    """The PostgreSQL handle; started again after the test if the test stopped it."""
    yield from _keep_running(_postgres_session)


@pytest.fixture
def etcd_service(_etcd_session: Service) -> Iterator[Service]:
    """The etcd handle; started again after the test if the test stopped it."""
    yield from _keep_running(_etcd_session)


@pytest.fixture
def kafka_service(_kafka_session: Service) -> Iterator[Service]:
    """The Kafka handle; started again after the test if the test stopped it."""
    yield from _keep_running(_kafka_session)
