"""Schemathesis generates requests from the OpenAPI schema: none may end in a server error."""

from __future__ import annotations

import re
import string

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.core.failures import Failure, FailureGroup

from rubrics import tokens
from tests.roles_matrix import API_ROWS, build_world, openapi_path
from tests.test_api import api_client

pytestmark = pytest.mark.django_db(transaction=True)
EXAMPLES = 12
# No server error, and every response the schema documents matches it (body and content type).
CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.response_schema_conformance,
    schemathesis.checks.content_type_conformance,
]
SKIPPED = {"DELETE /api/tokens/{id}/"}  # would revoke the token the fuzzer itself uses


def known_path_values(world) -> dict[str, dict[str, object]]:
    """For each operation ("GET /api/..."), real values of its path parameters: the roles
    table's URL in `world`, so generated requests reach real objects instead of stopping at
    a 404. Deletes get the table's fresh objects, so they leave the others' alone."""
    known: dict[str, dict[str, object]] = {}
    for row in API_ROWS:
        names = [n if n != "pk" else "id" for n in re.findall(r"<(?:\w+:)?(\w+)>", row.pattern)]
        fields = [f for _, f, _, _ in string.Formatter().parse(row.url) if f]
        values = {
            name: world.make[field]() if field.startswith("new_") else getattr(world, field)
            for name, field in zip(names, fields, strict=False)
        }
        known[f"{row.method.upper()} {openapi_path(row.pattern)}"] = values
    return known


def fuzz(
    operation, base_url: str, headers: dict, known: dict, failures: set[str], examples: dict
) -> None:
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy())
    def check(case):
        for name, value in known.get(operation.label, {}).items():
            if case.path_parameters and name in case.path_parameters:
                case.path_parameters[name] = value
        response = case.call(base_url=base_url, headers=headers)
        try:
            case.validate_response(response, checks=CHECKS)
        except (Failure, FailureGroup) as exc:
            for failure in getattr(exc, "exceptions", [exc]):
                failures.add(f"{operation.label} -> {response.status_code}: {failure.title}")
                examples.setdefault(operation.label, case.as_curl_command())

    check()


# The operations are fuzzed in two halves, in two files, so the two processes of the suite
# (pytest-xdist, --dist loadfile) take one each: over a hundred operations in one test took
# five minutes on a loaded 2-core machine. tests/test_api_fuzz_second_half.py runs the other.
HALVES = 2


@pytest.mark.timeout(600)
def test_fuzzing_every_operation_finds_no_server_error(live_server, personas):
    fuzz_half(0, live_server, personas)


def fuzz_half(half: int, live_server, personas) -> None:
    p = personas
    world = build_world(p.project, p.admin, p.annotator, p.reviewer)
    _, raw = tokens.token_create(user=p.admin, name="fuzz", scopes=["read", "write", "grade"])
    schema_doc = api_client(p.admin).get("/api/schema/?format=json").json()
    schema = schemathesis.openapi.from_dict(schema_doc)
    # Real values for the names that lead somewhere, so bodies get past the 404s.
    known = known_path_values(world)
    headers = {"Authorization": f"Token {raw}"}
    failures: set[str] = set()
    examples: dict[str, str] = {}
    operations = 0
    for index, result in enumerate(schema.get_all_operations()):
        operation = result.ok()
        if operation.label in SKIPPED:
            continue
        operations += 1
        assert "{" not in operation.path or operation.label in known, operation.label
        if index % HALVES == half:
            fuzz(operation, live_server.url, headers, known, failures, examples)
    assert operations == len(API_ROWS) - len(SKIPPED)
    # The fuzzer's token still works: no operation ran unauthenticated by accident.
    assert tokens.token_authenticate(raw) is not None
    assert not failures, "\n".join(sorted(failures)) + "\n" + "\n".join(examples.values())
