"""Another project's objects are out of reach: by id (404), by every filter (nothing of
theirs comes back), and by every id a request body names (refused).

Two full worlds are built (tests/roles_matrix.py `build_world`): ours, whose members call
the pages and the API, and another project's, whose every name starts with "other-". The
tests walk the roles matrix and the OpenAPI schema, so a new page, endpoint or filter
without a row here fails.
"""

from __future__ import annotations

import functools
import json
from types import SimpleNamespace

import pytest
from drf_spectacular.generators import SchemaGenerator

from annotation.models import Assignment, Queue
from grading.models import DatasetSnapshot, GradingRun, Judge
from rubrics.models import ReferenceDeliverable, ReviewComment, Rubric, RubricVersion, Task
from tests import factories
from tests.roles_matrix import (
    API_ROWS,
    ROWS,
    Row,
    build_world,
    call,
    openapi_path,
    outcome,
    row_url,
)
from tests.test_api import api_client

OTHER = "other-"
# Pages and routes outside any project: accounts, the API's description, tokens (each user's
# own), the list of projects, and model prices (they hold for every project).
GLOBAL = {
    "home",
    "signup",
    "login",
    "logout",
    "password_change",
    "password_change_done",
    "schema",
    "api_docs",
    "api_redoc",
    "api_tokens_page",
    "api_token_revoke_page",
    "invitation_accept",
    "invitation_decline",
    "invitations/",
    "invitations/<int:pk>/accept/",
    "invitations/<int:pk>/decline/",
    "auth/token/",
    "tokens/",
    "tokens/<int:pk>/",
    "projects/",
    "model-prices/",
    "model-prices/<int:pk>/",
}


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def worlds(personas):
    p = personas
    ours = build_world(p.project, p.admin, p.annotator, p.reviewer)
    their_admin = factories.make_user()
    project = factories.make_project(owner=their_admin)
    annotator = factories.add_member(project, "annotator")
    reviewer = factories.add_member(project, "reviewer")
    theirs = build_world(project, their_admin, annotator, reviewer, prefix=OTHER)
    theirs.project = project
    return SimpleNamespace(ours=ours, theirs=theirs, personas=p)


def their_state(theirs) -> dict:
    """What a write to the other project would change."""
    project = theirs.project
    return {
        "tasks": list(Task.objects.filter(project=project).values_list("title", "messages")),
        "references": list(
            ReferenceDeliverable.objects.filter(task__project=project).values_list("body")
        ),
        "rubrics": list(Rubric.objects.filter(project=project).values_list("title", "pk")),
        "versions": list(
            RubricVersion.objects.filter(rubric__project=project).values_list("pk", "status")
        ),
        "comments": list(
            ReviewComment.objects.filter(version__rubric__project=project).values_list(
                "pk", "resolved_at"
            )
        ),
        "judges": list(Judge.objects.filter(project=project).values_list("pk", "model", "name")),
        "runs": list(GradingRun.objects.filter(project=project).values_list("pk", "status")),
        "queues": list(Queue.objects.filter(project=project).values_list("pk", "name", "overlap")),
        "assignments": list(
            Assignment.objects.filter(queue__project=project).values_list("pk", "status")
        ),
        "snapshots": list(DatasetSnapshot.objects.filter(project=project).values_list("pk")),
        "members": list(project.memberships.values_list("user__username", "role")),
        "name": project.name,
    }


# --- By id: every page and endpoint that names an object, with the other project's ids --------

PROJECT_ROWS = [row for row in ROWS if row.pattern not in GLOBAL]


def test_every_project_route_is_checked():
    """Only pages and routes outside any project are left out, and they take no project's
    ids: the matrix gives an outsider there what it gives a member."""
    assert {row.pattern for row in ROWS} - {row.pattern for row in PROJECT_ROWS} == GLOBAL
    for row in ROWS:
        outsider, admin = row.expected["outsider"], row.expected["admin"]
        assert (outsider == admin) if row.pattern in GLOBAL else (outsider == 404), str(row)


def test_another_projects_objects_are_404_for_every_role(worlds):
    """One test over every row (two worlds are slow to build): all wrong answers at once."""
    wrong = []
    for row in PROJECT_ROWS:
        url = row_url(row, worlds.theirs)  # first: it may make a fresh object
        before = their_state(worlds.theirs)
        answered = {
            role: outcome(call(row, user, url)) for role, user in worlds.personas.by_role().items()
        }
        if answered != dict.fromkeys(answered, 404):
            wrong.append(f"{row}: {answered}")
        if their_state(worlds.theirs) != before:
            wrong.append(f"{row}: changed the other project")
    assert not wrong, "\n".join(wrong)


# --- By filter: every query parameter of every GET, with the other project's values ---------

# (schema path, parameter) -> (kind, the value in a world). Kinds:
#   ref    names an object: the other project's value must match nothing, ours something
#   value  an enum: the filtered list is a part of our unfiltered list
#   option changes what a report shows: nothing of the other project may appear
#   global the list is not a project's (model prices): only checked to answer
FILTERS = {
    ("/api/projects/{slug}/members/", "role"): ("value", lambda w: "reviewer"),
    ("/api/projects/{slug}/audit/", "action"): ("value", lambda w: "member_added"),
    ("/api/projects/{slug}/audit/", "actor"): ("value", lambda w: w.admin),
    ("/api/projects/{slug}/tasks/", "tag"): ("ref", lambda w: w.tag),
    ("/api/projects/{slug}/rubrics/", "task"): ("ref", lambda w: w.task),
    ("/api/projects/{slug}/rubrics/", "template"): ("value", lambda w: "false"),
    ("/api/projects/{slug}/responses/", "model"): ("ref", lambda w: w.model),
    ("/api/projects/{slug}/responses/", "task"): ("ref", lambda w: w.task),
    ("/api/projects/{slug}/responses/", "q"): ("value", lambda w: w.model),
    ("/api/projects/{slug}/responses/", "sample_index"): ("value", lambda w: "0"),
    ("/api/projects/{slug}/imports/", "status"): ("value", lambda w: "queued"),
    ("/api/projects/{slug}/raters/", "kind"): ("value", lambda w: "judge"),
    ("/api/projects/{slug}/verdicts/", "run"): ("ref", lambda w: w.run),
    ("/api/projects/{slug}/verdicts/", "response"): ("ref", lambda w: w.response),
    ("/api/projects/{slug}/verdicts/", "criterion"): ("ref", lambda w: w.criterion),
    ("/api/projects/{slug}/verdicts/", "rater"): ("ref", lambda w: w.rater),
    ("/api/projects/{slug}/verdicts/", "rubric_version"): ("ref", lambda w: w.version),
    ("/api/projects/{slug}/verdicts/", "grader"): ("ref", lambda w: w.grader),
    ("/api/projects/{slug}/verdicts/", "task"): ("ref", lambda w: w.task),
    ("/api/projects/{slug}/verdicts/", "outcome"): ("value", lambda w: "met"),
    ("/api/projects/{slug}/verdicts/", "rater_kind"): ("value", lambda w: "judge"),
    ("/api/projects/{slug}/datasets/", "dataset_format"): ("value", lambda w: "verdicts-jsonl"),
    ("/api/projects/{slug}/datasets/", "status"): ("value", lambda w: "ready"),
    ("/api/projects/{slug}/runs/", "status"): ("value", lambda w: "queued"),
    ("/api/projects/{slug}/runs/", "grader"): ("ref", lambda w: w.grader),
    ("/api/projects/{slug}/runs/", "judge"): ("ref", lambda w: w.judge),
    ("/api/projects/{slug}/runs/", "suite"): ("ref", lambda w: w.suite),
    ("/api/projects/{slug}/queues/", "grader"): ("ref", lambda w: w.grader),
    ("/api/model-prices/", "model"): ("global", lambda w: w.price_model),
    ("/api/rubrics/{id}/comments/", "version"): ("value", lambda w: 1),
    ("/api/rubrics/{id}/comments/", "resolved"): ("value", lambda w: "false"),
    ("/api/rubrics/{id}/diff/", "a"): ("option", lambda w: 1),
    ("/api/rubrics/{id}/diff/", "b"): ("option", lambda w: 1),
    ("/api/runs/{id}/scores/", "status"): ("value", lambda w: "pending"),
    ("/api/runs/{id}/scores/", "model"): ("ref", lambda w: w.model),
    ("/api/runs/{id}/scores/", "task"): ("ref", lambda w: w.task),
    ("/api/runs/{id}/scores/", "response"): ("ref", lambda w: w.response),
    ("/api/runs/{id}/compare/{other_id}/", "tasks_page"): ("option", lambda w: 1),
    ("/api/runs/{id}/compare/{other_id}/", "criteria_page"): ("option", lambda w: 1),
    ("/api/runs/{id}/compare/{other_id}/", "flips_page"): ("option", lambda w: 1),
    ("/api/queues/{id}/assignments/", "status"): ("value", lambda w: "active"),
    ("/api/queues/{id}/assignments/", "annotator"): ("ref", lambda w: w.annotator),
    ("/api/versions/{id}/calibration/", "judge"): ("option", lambda w: w.rater),
    ("/api/versions/{id}/disagreements/", "among"): ("option", lambda w: "all"),
    ("/api/versions/{id}/disagreements/", "status"): ("option", lambda w: "all"),
    ("/api/versions/{id}/gold/", "response"): ("ref", lambda w: w.response),
    ("/api/versions/{id}/gold/", "criterion"): ("ref", lambda w: w.criterion),
    ("/api/versions/{id}/gold/", "current"): ("value", lambda w: "true"),
}
PAGE_PARAMS = {"cursor", "limit"}


@functools.cache
def schema() -> dict:
    return SchemaGenerator().get_schema(request=None, public=True)


def schema_query_params() -> set[tuple[str, str]]:
    return {
        (path, param["name"])
        for path, operations in schema()["paths"].items()
        for method, operation in operations.items()
        if method == "get"
        for param in operation.get("parameters", [])
        if param["in"] == "query" and param["name"] not in PAGE_PARAMS
    }


def test_every_query_parameter_of_the_schema_has_a_row():
    documented = schema_query_params()
    assert not documented - set(FILTERS), (
        f"add rows to FILTERS: {sorted(documented - set(FILTERS))}"
    )
    assert not set(FILTERS) - documented, f"stale rows: {sorted(set(FILTERS) - documented)}"


def list_get(path: str) -> Row:
    return next(r for r in API_ROWS if r.method == "get" and openapi_path(r.pattern) == path)


def rows(data):
    return data["results"] if isinstance(data, dict) and "results" in data else data


def their_markers(theirs) -> list[str]:
    """Strings only the other project has: its names all start with "other-"."""
    return [theirs.task, theirs.model, theirs.tag, theirs.grader]


def filter_leaks(row, worlds) -> list[str]:
    """What the list answers with the other project's value for the filter, if wrong."""
    path, param = row
    kind, value_in = FILTERS[row]
    ours, theirs = worlds.ours, worlds.theirs
    client = api_client(worlds.personas.admin)
    url = row_url(list_get(path), ours)
    params = {p["name"] for p in schema()["paths"][path]["get"].get("parameters", [])}
    paged = {"limit": 1000} if "cursor" in params else {}
    where = f"{path}?{param}={value_in(theirs)}"

    unfiltered = client.get(url, paged)
    reply = client.get(url, {param: value_in(theirs), **paged})
    if unfiltered.status_code != 200 or reply.status_code != 200:
        return [f"{where}: {unfiltered.status_code}, {reply.status_code} {reply.data}"]
    text = json.dumps(reply.data, default=str)
    leaks = [m for m in their_markers(theirs) if m in text] if kind != "global" else []
    if leaks:
        return [f"{where}: shows {leaks}"]
    if kind == "ref":
        if rows(reply.data):
            return [f"{where}: matched {text[:300]}"]
        # The same filter with our own value finds our rows: the filter is applied at all.
        mine = client.get(url, {param: value_in(ours), **paged})
        if mine.status_code != 200 or not rows(mine.data):
            return [f"{path}?{param}={value_in(ours)} found nothing of ours"]
    elif kind == "value" and not all(item in rows(unfiltered.data) for item in rows(reply.data)):
        return [f"{where}: not a part of the unfiltered list"]
    elif (
        kind == "option"
        and param == "judge"
        and reply.data["judge_rater"] not in (None, ours.rater)
    ):
        return [f"{where}: reports judge {reply.data['judge_rater']}"]
    return []


def test_a_filter_with_another_projects_value_returns_nothing_of_theirs(worlds):
    wrong = [leak for row in sorted(FILTERS) for leak in filter_leaks(row, worlds)]
    assert not wrong, "\n".join(wrong)


def test_an_unknown_filter_is_refused_by_name(worlds):
    client = api_client(worlds.personas.admin)
    reply = client.get(f"/api/projects/{worlds.ours.slug}/verdicts/", {"run__project": 1})
    assert reply.status_code == 400
    assert list(reply.data) == ["run__project"]
    assert "this list filters on: criterion, grader, outcome" in str(reply.data["run__project"][0])
    # Pagination parameters are not filters, and are always allowed on a paginated list.
    assert (
        client.get(f"/api/projects/{worlds.ours.slug}/verdicts/", {"limit": 1}).status_code == 200
    )
    reply = client.get(f"/api/projects/{worlds.ours.slug}/judges/", {"limit": 1})
    assert reply.status_code == 400 and list(reply.data) == ["limit"]


# --- By body: every id a write takes, with the other project's -------------------------------


def body_cases(ours, theirs, personas) -> list[tuple]:
    """(who, method, url, body, status): a write naming the other project's objects."""
    p = personas
    slug = ours.slug
    return [
        (
            p.admin,
            "post",
            f"projects/{slug}/runs/",
            {"grader": theirs.grader, "judge": ours.judge},
            400,
        ),
        (
            p.admin,
            "post",
            f"projects/{slug}/runs/",
            {"grader": ours.grader, "judge": theirs.judge},
            400,
        ),
        (
            p.admin,
            "post",
            f"projects/{slug}/runs/",
            {"grader": ours.grader, "judge": ours.judge, "panel": [theirs.judge]},
            400,
        ),
        (
            p.admin,
            "post",
            f"projects/{slug}/queues/",
            {"name": "x", "grader": theirs.grader, "overlap": 1, "annotators": [ours.annotator]},
            400,
        ),
        (
            p.admin,
            "post",
            f"projects/{slug}/queues/",
            {
                "name": "x",
                "grader": ours.grader,
                "overlap": 1,
                "annotators": [ours.annotator],
                "responses": [theirs.response],
            },
            400,
        ),
        (p.admin, "patch", f"queues/{ours.queue}/", {"annotators": [theirs.annotator]}, 400),
        (
            p.admin,
            "post",
            f"versions/{ours.version}/gold/",
            {"response": theirs.response, "criterion": ours.criterion, "outcome": "met"},
            400,
        ),
        (
            p.admin,
            "post",
            f"versions/{ours.version}/gold/",
            {"response": ours.response, "criterion": theirs.criterion, "outcome": "met"},
            400,
        ),
        (
            p.admin,
            "post",
            f"rubrics/{ours.draft_rubric}/draft/criteria/",
            {"text": "x", "points": 1, "after": theirs.criterion},
            400,
        ),
        (
            p.admin,
            "post",
            f"rubrics/{ours.review_rubric}/comments/",
            {"body": "x", "criterion": theirs.criterion},
            400,
        ),
        (p.admin, "post", f"projects/{slug}/rubrics/", {"title": "x", "task": theirs.task}, 400),
        (
            p.admin,
            "post",
            f"projects/{slug}/datasets/",
            {"name": "pairs", "format": "preference-pairs", "run": theirs.run},
            400,
        ),
        (
            p.admin,
            "post",
            f"graders/{ours.grader}/score/",
            {"task": theirs.task, "responses": ["x"]},
            404,
        ),
        (
            p.admin,
            "post",
            f"graders/{ours.grader}/score/",
            {
                "messages": [{"role": "user", "content": "Hi"}],
                "responses": ["x"],
                "judge": theirs.judge,
            },
            400,
        ),
        (
            p.annotator,
            "put",
            f"assignments/{ours.assignment}/verdicts/",
            {"criterion": theirs.criterion, "outcome": "met"},
            400,
        ),
    ]


def test_writes_naming_another_projects_objects_are_refused(worlds):
    before = their_state(worlds.theirs)
    counts = (Rubric.objects.count(), Queue.objects.count(), GradingRun.objects.count())
    for who, method, url, body, expected in body_cases(worlds.ours, worlds.theirs, worlds.personas):
        reply = getattr(api_client(who), method)(f"/api/{url}", body, format="json")
        assert reply.status_code == expected, (method, url, body, reply.data)
    assert their_state(worlds.theirs) == before
    assert (Rubric.objects.count(), Queue.objects.count(), GradingRun.objects.count()) == counts
