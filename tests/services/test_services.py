"""The real services of the suite answer, with the clients Wiresens uses.

Each test talks to the service through two clients where it can (the Python client the
code uses and the command-line tool an operator uses), so a value is only seen if the
server really stored it.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid

import psycopg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from wiresens.testing.services import Service


def _unique(prefix: str) -> str:
    return f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:12]}"


def test_postgres_round_trip(postgres_dsn: str) -> None:
    table = _unique("svc_roundtrip")
    payload = uuid.uuid4().hex
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (id bigint PRIMARY KEY, payload text NOT NULL)")
        try:
            conn.execute(f"INSERT INTO {table} VALUES (%s, %s)", (42, payload))
            row = conn.execute(f"SELECT id, payload FROM {table}").fetchone()
            assert row == (42, payload)
            # A second client, a second connection: the row is committed, not cached.
            out = subprocess.run(
                ["psql", postgres_dsn, "-XAtc", f"SELECT id || ':' || payload FROM {table}"],
                capture_output=True,
                text=True,
                check=True,
                timeout=30,
            )
            assert out.stdout.strip() == f"42:{payload}"
        finally:
            conn.execute(f"DROP TABLE {table}")


def _etcdctl(endpoint: str, *args: str) -> str:
    out = subprocess.run(
        ["etcdctl", f"--endpoints={endpoint}", *args],
        env={**os.environ, "ETCDCTL_API": "3"},
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return out.stdout


def test_etcd_put_get(etcd_endpoint: str) -> None:
    key = "/wiresens/test/" + _unique("put_get")
    value = uuid.uuid4().hex
    assert _etcdctl(etcd_endpoint, "put", key, value).strip() == "OK"
    assert _etcdctl(etcd_endpoint, "get", "--print-value-only", key).strip() == value
    _etcdctl(etcd_endpoint, "del", key)
    assert _etcdctl(etcd_endpoint, "get", "--print-value-only", key).strip() == ""


def test_etcd_stop_start_keeps_keys(etcd_service: Service) -> None:
    key = "/wiresens/test/" + _unique("restart")
    value = uuid.uuid4().hex
    _etcdctl(etcd_service.address, "put", key, value)
    etcd_service.stop()
    assert not etcd_service.is_running()
    failed = subprocess.run(
        [
            "etcdctl",
            f"--endpoints={etcd_service.address}",
            "--dial-timeout=1s",
            "--command-timeout=2s",
            "get",
            key,
        ],
        env={**os.environ, "ETCDCTL_API": "3"},
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert failed.returncode != 0
    etcd_service.start()
    assert _etcdctl(etcd_service.address, "get", "--print-value-only", key).strip() == value


async def _produce(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for key, value in messages:
            await producer.send(topic, value=value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


async def _consume(bootstrap: str, topic: str, count: int) -> list[tuple[bytes, bytes]]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    got: list[tuple[bytes, bytes]] = []
    try:
        async with asyncio.timeout(60):
            while len(got) < count:
                batch = await consumer.getmany(timeout_ms=1000)
                for records in batch.values():
                    got.extend((r.key or b"", r.value or b"") for r in records)
    finally:
        await consumer.stop()
    return got


def _kcat(bootstrap: str, topic: str) -> list[str]:
    out = subprocess.run(
        [
            "kcat",
            "-C",
            "-b",
            bootstrap,
            "-t",
            topic,
            "-o",
            "beginning",
            "-e",
            "-q",
            "-f",
            "%k=%s\n",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return out.stdout.splitlines()


def _messages(n: int) -> list[tuple[bytes, bytes]]:
    return [(f"k{i}".encode(), uuid.uuid4().hex.encode()) for i in range(n)]


def test_kafka_produce_consume(kafka_bootstrap: str) -> None:
    topic = _unique("svc-produce")
    sent = _messages(50)
    asyncio.run(_produce(kafka_bootstrap, topic, sent))
    assert asyncio.run(_consume(kafka_bootstrap, topic, len(sent))) == sent
    assert _kcat(kafka_bootstrap, topic) == [f"{k.decode()}={v.decode()}" for k, v in sent]


def test_kafka_stop_start_keeps_topic_data(kafka_service: Service) -> None:
    topic = _unique("svc-restart")
    sent = _messages(20)
    asyncio.run(_produce(kafka_service.address, topic, sent))
    kafka_service.stop()
    assert not kafka_service.is_running()
    kafka_service.start()
    assert kafka_service.is_running()
    assert _kcat(kafka_service.address, topic) == [f"{k.decode()}={v.decode()}" for k, v in sent]
