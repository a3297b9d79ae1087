"""Schemathesis generates requests from the OpenAPI schema: none may end in a server error."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from rubrics import tokens
from tests import factories
from tests.test_api import api_client

pytestmark = pytest.mark.django_db(transaction=True)
EXAMPLES = 12
SKIPPED = {"DELETE /api/tokens/{pk}/"}  # would revoke the token the fuzzer itself uses


def fuzz(operation, base_url: str, headers: dict, known: dict, failures: list[str]) -> None:
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy())
    def check(case):
        for name, value in known.items():
            if case.path_parameters and name in case.path_parameters:
                case.path_parameters[name] = value
        response = case.call(base_url=base_url, headers=headers)
        if response.status_code >= 500:
            failures.append(f"{operation.label}: {response.status_code} {case.as_curl_command()}")

    check()


def test_fuzzing_every_operation_finds_no_server_error(live_server, personas):
    p = personas
    task = factories.make_task(p.project, "fuzz-task")
    grader = factories.make_published_rubric(p.project, task, [("Mentions water", 1)], p.admin)
    factories.import_responses(p.project, [{"task_id": "fuzz-task", "model": "m", "response": "x"}])
    factories.make_judge(p.project, "http://127.0.0.1:9/v1")
    _, raw = tokens.token_create(user=p.admin, name="fuzz", scopes=["read", "write", "grade"])
    schema_doc = api_client(p.admin).get("/api/schema/?format=json").json()
    schema = schemathesis.openapi.from_dict(schema_doc)
    # Real values for the names that lead somewhere, so bodies get past the 404s.
    known = {"slug": p.project.slug, "external_id": "fuzz-task", "grader_hash": grader.hash}
    headers = {"Authorization": f"Token {raw}"}
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.label in SKIPPED:
            continue
        operations += 1

        fuzz(operation, live_server.url, headers, known, failures)
    assert operations >= 30
    assert not failures, "\n".join(failures[:10])
