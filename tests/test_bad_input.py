"""Hostile input never ends in a 500 (Assay issue 19, item 10).

A corpus of bad values (Unicode digits that `isdigit()` accepts and `int()` refuses, signs,
exponents, huge numbers, NUL, lone surrogates, 100 KB strings, JSON nested 10,000 deep) goes
to every query parameter, form field and JSON field of every row of the roles matrix
(tests/roles_matrix.py), and into every path parameter, as a persona the row lets through.
The parameters are read off the code, not listed by hand: the OpenAPI schema for the API
(query parameters and request bodies), and for pages the names their view reads
(`request.GET.get("x")`, `whole_number(request.POST, "x")`, its Django form's fields).
"""

from __future__ import annotations

import inspect
import json
import re
import string
from urllib.parse import quote

import pytest
from django.db import transaction
from django.test import Client
from django.urls import resolve
from drf_spectacular.generators import SchemaGenerator

from tests.roles_matrix import ROLES, ROWS, Row, build_world, row_url
from tests.test_api import api_client

pytestmark = pytest.mark.django_db

LONE_SURROGATE = "\ud800"  # %ED%A0%80 in a URL, the JSON escape \ud800 in a body
# Wrong as whole numbers though str.isdigit() says yes ("²", "٣"), or too big for any id:
# sent to one parameter at a time, since the first one refused would hide the others.
NUMBERS = ["²", "٣", "99999999999999999999999"]
# Refused by any number parser (no digits only), or text PostgreSQL cannot store, or huge:
# sent to all of a row's parameters at once (each is refused wherever it is).
TEXT = ["1e999", "-1", "\x00", "a\x00b", LONE_SURROGATE, "x" * 100_000]
DEEP_JSON = "[" * 10_000 + "]" * 10_000
PASSED = {200, 201, 204, 302, 400, 409}  # past the permission check (or refused input)


def encoded(value: str) -> str:
    """`value` percent-encoded as UTF-8, a lone surrogate as its three bytes (%ED%A0%80)."""
    return quote(value.encode("utf-8", "surrogatepass"), safe="")


def form_body(fields: dict[str, str]) -> str:
    return "&".join(f"{encoded(k)}={encoded(v)}" for k, v in fields.items())


# --- Which parameters each row takes, read off the schema and the views ---------------------

_schema_cache: dict = {}


def schema() -> dict:
    if not _schema_cache:
        _schema_cache.update(SchemaGenerator().get_schema(request=None, public=True))
    return _schema_cache


def _resolved(node: dict) -> dict:
    while "$ref" in node:
        node = schema()["components"]["schemas"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def api_parameters(row: Row, url: str) -> tuple[list[str], list[str]]:
    """(query parameter names, body field names) of the row's operation in the schema."""
    path = resolve(url).route.removeprefix("api/")
    path = "/api/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", path).replace("{pk}", "{id}")
    operation = schema()["paths"][path][row.method]
    query = [p["name"] for p in operation.get("parameters", ()) if p["in"] == "query"]
    fields: list[str] = []
    for content in operation.get("requestBody", {}).get("content", {}).values():
        fields += [f for f in _resolved(content["schema"]).get("properties", {}) if f not in fields]
    return query, fields


# `request.GET.get("x")`, `post.get("x")`, `request.POST["x"]`, `whole_number(request.GET, "x")`:
# which dictionary, and the name read from it.
READ_NAMES = re.compile(
    r"""(?:whole_number\(\s*)?(?:request\.)?(GET|POST|post|data|params|query_params)"""
    r"""(?:\.get\(|\.getlist\(|\[|,\s*)\s*["'](\w+)["']"""
)
FORM_CLASS = re.compile(r"\b(\w+Form)\((?:request\.)?(GET|POST)?")


def page_parameters(url: str, method: str) -> list[str]:
    """The names a page's view reads from its query string (GET) or its form (POST): in its
    own source and in the module's functions it calls, and the fields of its Django forms."""
    view = resolve(url).func
    view_class = getattr(view, "view_class", None)
    if view_class is not None:  # Django's own views: their form's fields
        form = getattr(view_class, "form_class", None)
        return list(form.base_fields) if form and method == "post" else []
    view = inspect.unwrap(view)
    module = inspect.getmodule(view)
    source = inspect.getsource(view)
    for name in set(re.findall(r"\b(_?\w+)\(", source)):
        helper = getattr(module, name, None)
        if inspect.isfunction(helper) and helper.__module__ == module.__name__:
            source += inspect.getsource(helper)
    other = "POST" if method == "get" else "GET"
    read = {"post": "POST", "query_params": "GET"}
    names = [n for where, n in READ_NAMES.findall(source) if read.get(where, where) != other]
    for form_name, where in FORM_CLASS.findall(source):
        form = getattr(module, form_name, None)
        if where != other:
            names += list(getattr(form, "base_fields", ()))
    return sorted(set(names))


# --- Calling a row --------------------------------------------------------------------------


class Callers:
    """One client per persona, signed in (pages) or holding a token (API)."""

    def __init__(self, personas):
        self.users = personas.by_role()
        self.pages: dict[str, Client] = {}
        self.apis: dict = {}

    def pick(self, row: Row) -> str | None:
        """A persona the row lets past its permission check, if any."""
        return next((r for r in ROLES if row.expected.get(r) in PASSED), None)

    def client(self, row: Row, persona: str):
        if row.kind == "api":
            if persona not in self.apis:
                self.apis[persona] = api_client(self.users[persona])
                self.apis[persona].raise_request_exception = False  # a 500 is counted
            return self.apis[persona]
        if persona not in self.pages:
            self.pages[persona] = Client(raise_request_exception=False)
            self.pages[persona].force_login(self.users[persona])
        return self.pages[persona]


def send(client, row: Row, url: str, *, query: str = "", body=None, content_type=None):
    """The request, its writes undone; the status code."""
    full = f"{url}?{query}" if query else url
    with transaction.atomic():
        if row.method == "get":
            response = client.get(full)
        else:
            kwargs = {"content_type": content_type} if content_type else {}
            response = getattr(client, row.method)(full, body if body is not None else {}, **kwargs)
        transaction.set_rollback(True)
    return response.status_code


def base_fields(row: Row) -> dict[str, str]:
    return {k: str(v) for k, v in (row.body or {}).items()}


def failures_for(row: Row, callers: Callers, world) -> list[str]:
    persona = callers.pick(row)
    if persona is None:
        return []
    client = callers.client(row, persona)
    failed: list[str] = []

    def check(what: str, status: int) -> None:
        if status >= 500:
            failed.append(f"{row} ({persona}) {what}: {status}")

    url = row_url(row, world)
    if row.kind == "api":
        query_names, field_names = api_parameters(row, url)
    else:
        names = page_parameters(url, row.method)
        query_names, field_names = (names, []) if row.method == "get" else ([], names)

    def ask_query(values: dict[str, str]) -> int:
        return send(client, row, url, query=form_body(values))

    def ask_fields(values: dict[str, str]) -> int:
        if row.kind == "page" or row.body_format == "multipart":
            body = form_body({**base_fields(row), **values})
            return send(
                client, row, url, body=body, content_type="application/x-www-form-urlencoded"
            )
        return send(client, row, url, body=json.dumps(values), content_type="application/json")

    for names, ask in ((query_names, ask_query), (field_names, ask_fields)):
        for name in names:
            for value in NUMBERS:
                check(f"{name}={value[:8]!r}", ask({name: value}))
        for value in TEXT if names else ():
            check(f"{', '.join(names)}={value[:8]!r}", ask(dict.fromkeys(names, value)))
    if row.method == "get":
        check("?cursor=forged", ask_query({"cursor": "cD1hYmM="}))
    elif row.kind == "api" and row.body_format == "json":
        # The API takes forms as well as JSON, PUT and PATCH included.
        for value in ("a\x00b", LONE_SURROGATE):
            body = form_body(dict.fromkeys(field_names, value))
            status = send(
                client, row, url, body=body, content_type="application/x-www-form-urlencoded"
            )
            check(f"form {', '.join(field_names)}={value!r}", status)
        deep = f'{{"{field_names[0]}": {DEEP_JSON}}}' if field_names else DEEP_JSON
        check(
            "a body nested 10,000 deep",
            send(client, row, url, body=deep, content_type="application/json"),
        )
    return failed


def rows_of(kind: str) -> list[Row]:
    return [row for row in ROWS if row.kind == kind]


@pytest.fixture
def world(personas):
    p = personas
    return build_world(p.project, p.admin, p.annotator, p.reviewer)


@pytest.mark.parametrize("kind", ["page", "api"])
def test_no_parameter_of_any_row_ends_in_a_server_error(kind, personas, world):
    callers = Callers(personas)
    failed = [f for row in rows_of(kind) for f in failures_for(row, callers, world)]
    assert not failed, "\n".join(failed[:30])


def test_no_path_parameter_ends_in_a_server_error(personas, world):
    """Each path parameter of each row as NUL, a lone surrogate or Unicode digits: a 404 or a
    400, never a 500."""
    callers = Callers(personas)
    failed = []
    for row in ROWS:
        persona = callers.pick(row)
        names = [n for _, n, _, _ in string.Formatter().parse(row.url) if n]
        if persona is None or not names:
            continue
        client = callers.client(row, persona)
        for value in ("\x00", "a\x00b", LONE_SURROGATE, "²"):
            url = row.url.replace("{" + names[0] + "}", encoded(value), 1)
            url = url.format(**{**vars(world), **{n: 1 for n in names if n.startswith("new_")}})
            status = send(client, row, url)
            if status >= 500 or status == 200 and row.method != "get":
                failed.append(f"{row} ({persona}) {names[0]}={value!r}: {status}")
    assert not failed, "\n".join(failed[:30])


# --- What the refusals say -------------------------------------------------------------------


def test_a_unicode_digit_is_a_400_naming_the_parameter(personas, world):
    api = api_client(personas.admin)
    reply = api.get(f"/api/rubrics/{world.rubric}/diff/?a=%C2%B2")
    assert reply.status_code == 400 and list(reply.json()) == ["a"], reply.content
    reply = api.get(f"/api/versions/{world.version}/calibration/?judge=%D9%A3")
    assert reply.status_code == 400 and list(reply.json()) == ["judge"], reply.content
    page = Client()
    page.force_login(personas.admin)
    reply = page.get(f"/rubrics/{world.edited_rubric}/try/?response_id=%C2%B2")
    assert reply.status_code == 400
    assert "<code>response_id</code>: A whole number" in reply.content.decode()
    # Plain ASCII digits still work, and a huge one is out of range, not a 500.
    assert api.get(f"/api/rubrics/{world.rubric}/diff/?a=1&b=1").status_code == 200
    reply = api.get(f"/api/rubrics/{world.rubric}/diff/?b=99999999999999999999999")
    assert reply.status_code == 400 and "b" in reply.json()


def test_a_forged_cursor_is_a_400_naming_it(personas, world):
    api = api_client(personas.admin)
    # p=abc; garbage; p=%00; p=99999999999999999999999
    for forged in ("cD1hYmM=", "not base64!", "cD0lMDA=", "cD05OTk5OTk5OTk5OTk5OTk5OTk5OTk5OQ=="):
        reply = api.get(f"/api/projects/{world.slug}/tasks/", {"cursor": forged})
        assert reply.status_code == 400, (forged, reply.content)
        assert list(reply.json()) == ["cursor"]
    # A cursor the list gave still works.
    first = api.get(f"/api/projects/{world.slug}/audit/", {"limit": 1}).json()
    assert api.get(first["next"]).status_code == 200


def test_nul_in_a_form_field_is_a_400_naming_it_and_writes_nothing(personas, world):
    page = Client()
    page.force_login(personas.reviewer)
    before = page.get(f"/rubrics/{world.review_rubric}/").content.count(b"Please")
    reply = page.post(f"/rubrics/{world.review_rubric}/comments/", {"body": "Please\x00split"})
    assert reply.status_code == 400
    assert "<code>body</code>: The value contains a NUL character" in reply.content.decode()
    assert page.get(f"/rubrics/{world.review_rubric}/").content.count(b"Please") == before
    # Multipart forms, and the API's, are refused the same way.
    api = api_client(personas.admin)
    url = f"/api/projects/{world.slug}/tasks/{world.task}/references/"
    reply = api.post(url, {"body": "a\x00b"}, format="multipart")
    assert reply.status_code == 400 and list(reply.json()) == ["body"], reply.content
    reply = api.patch(
        f"/api/criteria/{world.draft_criterion}/",
        "text=a%00b",
        content_type="application/x-www-form-urlencoded",
    )
    assert reply.status_code == 400 and list(reply.json()) == ["text"], reply.content


def test_nul_in_a_path_is_a_404(personas, world):
    api = api_client(personas.admin)
    for path in ("/api/graders/%00/", "/api/graders/a%00b/score/", "/api/projects/%00/"):
        assert api.get(path).status_code == 404, path


@pytest.mark.parametrize("role", [{}, [], 1, None])
def test_a_message_role_of_the_wrong_type_is_a_400_naming_it(personas, role):
    reply = api_client(personas.admin).post(
        f"/api/projects/{personas.project.slug}/tasks/",
        {"external_id": "t-role", "messages": [{"role": role, "content": "Hi"}]},
        format="json",
    )
    assert reply.status_code == 400, reply.content
    assert list(reply.json()) == ["messages[0].role"], reply.content
