"""The roles matrix (tests/roles_matrix.py) is complete, and every persona gets what it says.

Complete: every named URL pattern of the site, every method of every API route and every
operation of the OpenAPI schema has a row, so a new page or endpoint cannot ship untested.
"""

from __future__ import annotations

import dataclasses
from collections import Counter

import pytest
from django.db import transaction
from django.urls import get_resolver, resolve
from drf_spectacular.generators import SchemaGenerator

from assay import api_urls
from tests.roles_matrix import (
    API_ROWS,
    PAGE_ROWS,
    PERSONAS,
    ROWS,
    Outcome,
    Row,
    build_world,
    call,
    openapi_path,
    outcome,
    row_url,
)

# The Django admin site is for staff, not for a project's roles (test_views_permissions.py).
STAFF_ONLY = "admin:*"
# Django's own form views take a PUT as a POST: the POST row covers it.
TAKEN_AS_POST = {("put", "login"), ("put", "password_change")}
METHODS = ("get", "post", "put", "patch", "delete")


def named_patterns(resolver, module: str = "assay.urls"):
    """(name, URL configuration module) of every named pattern under `resolver`."""
    for pattern in resolver.url_patterns:
        if hasattr(pattern, "url_patterns"):  # an include()
            if pattern.namespace == "admin":
                yield STAFF_ONLY, "django.contrib.admin"
                continue
            inner = getattr(pattern.urlconf_name, "__name__", pattern.urlconf_name)
            yield from named_patterns(pattern, inner)
        elif pattern.name:
            yield pattern.name, module


def served_operations() -> set[tuple[str, str]]:
    """(method, route) for every operation the API's URL patterns serve."""
    found = set()
    for pattern in api_urls.urlpatterns:
        view = pattern.callback.cls
        for method in view.http_method_names:
            if method not in ("head", "options") and hasattr(view, method):
                found.add((method, str(pattern.pattern)))
    return found


def schema_operations() -> set[tuple[str, str]]:
    """(method, path) for every operation of the OpenAPI schema, as clients see it."""
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return {
        (method, path)
        for path, operations in schema["paths"].items()
        if path.startswith("/api/")
        for method in operations
        if method in ("get", "post", "put", "patch", "delete")
    }


@pytest.fixture
def world(personas):
    p = personas
    return build_world(p.project, p.admin, p.annotator, p.reviewer)


def ask(row: Row, user, world) -> Outcome:
    """What `user` (None: anonymous) gets from `row` in `world`, as built: whatever the call
    writes is undone, so each persona meets the same world."""
    with transaction.atomic():
        url = row_url(row, world)
        match = resolve(url)
        resolved = match.url_name if row.kind == "page" else match.route.removeprefix("api/")
        assert resolved == row.pattern, f"{row}: {url} is {resolved}'s URL"
        answered = outcome(call(row, user, url))
        transaction.set_rollback(True)
    return answered


def test_each_row_is_listed_once_and_names_every_persona():
    keys = Counter((row.kind, row.method, row.pattern) for row in ROWS)
    twice = [key for key, n in keys.items() if n > 1]
    assert not twice, f"listed twice: {twice}"
    for row in ROWS:
        assert set(row.expected) == set(PERSONAS), str(row)
        assert row.kind in ("page", "api") and row.url.startswith("/"), str(row)


def test_every_page_has_a_row():
    """Walks the whole URL configuration; the API's routes are checked by method below."""
    pages = {name for name, module in named_patterns(get_resolver()) if module != "assay.api_urls"}
    listed = {row.pattern for row in PAGE_ROWS}
    missing = pages - listed - {STAFF_ONLY}
    assert not missing, f"pages without a row: {sorted(missing)}"
    assert not listed - pages, f"rows of no page: {sorted(listed - pages)}"


def test_a_page_refuses_every_method_without_a_row(personas, world):
    """A page's methods cannot be read off its view as the API's are, so they are asked: the
    admin, whom the most rows allow, gets 405 for each method the table does not list."""
    listed = {(row.method, row.pattern) for row in PAGE_ROWS} | TAKEN_AS_POST
    wrong = []
    for name, row in {row.pattern: row for row in PAGE_ROWS}.items():
        for method in METHODS:
            if (method, name) not in listed:
                answered = ask(dataclasses.replace(row, method=method), personas.admin, world)
                if answered != 405:
                    wrong.append(f"{method.upper()} {name}: {answered}")
    assert not wrong, f"answered, but no row: {wrong}"


def test_every_api_method_has_a_row():
    served = served_operations()
    listed = {(row.method, row.pattern) for row in API_ROWS}
    assert not served - listed, f"API operations without a row: {sorted(served - listed)}"
    assert not listed - served, f"rows of no API operation: {sorted(listed - served)}"


def test_every_operation_of_the_schema_has_a_row():
    """The schema is what clients (and the fuzzer) see: each of its operations has a row."""
    listed = {(row.method, openapi_path(row.pattern)) for row in API_ROWS}
    documented = schema_operations()
    assert not documented - listed, f"in the schema, not in ROWS: {sorted(documented - listed)}"
    assert not listed - documented, f"in ROWS, not in the schema: {sorted(listed - documented)}"


@pytest.mark.parametrize("row", ROWS, ids=str)
def test_each_persona_gets_the_rows_outcome(row, personas, world):
    users = {"anonymous": None, **personas.by_role()}
    answered = {persona: ask(row, user, world) for persona, user in users.items()}
    wrong = {
        p: f"{answered[p]}, not {row.expected[p]}"
        for p in PERSONAS
        if answered[p] != row.expected[p]
    }
    assert not wrong, wrong
