"""Schemathesis against the API server's own OpenAPI document: no input makes it fail.

Every operation gets up to 20 generated requests (valid and invalid bodies, paths and
query strings) with an admin token; the check is that none is answered with a 5xx.
``/api/v1/watch`` is left out: it is an endless event stream (its own test reads it).
"""

from __future__ import annotations

import json
import urllib.request

import pytest
from hypothesis import HealthCheck, given, settings

from .conftest import ADMIN, ApiServer

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is not installed")

SKIP = {"/api/v1/watch"}


def test_openapi_document_is_served(apiserver: ApiServer) -> None:
    with urllib.request.urlopen(apiserver.url + "/openapi.json", timeout=10) as r:
        doc = json.loads(r.read())
    assert doc["openapi"].startswith("3.")
    assert {"/api/v1/policies/{name}", "/api/v1/nodes", "/api/v1/kill"} <= set(doc["paths"])
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


def test_no_input_gives_a_server_error(apiserver: ApiServer) -> None:
    schema = schemathesis.openapi.from_url(apiserver.url + "/openapi.json")
    headers = {"Authorization": f"Bearer {ADMIN}"}
    tested = []
    failures: list[str] = []
    statuses: set[int] = set()
    for result in schema.get_all_operations():
        op = result.ok()
        if op.path in SKIP:
            continue
        tested.append(f"{op.method.upper()} {op.path}")

        @given(case=op.as_strategy())
        @settings(
            max_examples=20,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: object) -> None:
            resp = case.call(base_url=apiserver.url, headers=headers, timeout=10)  # type: ignore[attr-defined]
            statuses.add(resp.status_code)
            if resp.status_code >= 500:
                failures.append(
                    f"{resp.status_code} {resp.request.method} {resp.request.url}: {resp.text[:300]}"
                )

        run()
    assert not failures, "\n".join(failures)
    assert len(tested) >= 14, tested
    # the token worked (answers, not only 401s) and invalid input was refused cleanly
    assert 200 in statuses and 400 in statuses, statuses
