"""Every API endpoint, for every persona: anonymous 401, outsider 404, the role rules.

A role the rules allow gets past the permission check: a read answers 200, a write with an
empty body answers 400 (the door checks permission before it reads the body). The table
must list every method of every pattern in `assay.api_urls`, so a new endpoint without a
row fails here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest
from django.urls import resolve

from annotation import services as annotation_services
from assay import api_urls
from grading import datasets
from grading import services as grading_services
from rubrics import services as rubric_services
from rubrics import tokens
from tests import factories
from tests.test_api import api_client

ROLES = ("admin", "author", "annotator", "reviewer", "engineer")
EVERYONE = set(ROLES)
EDITORS = {"admin", "author"}
RESULTS = {"admin", "author", "reviewer", "engineer"}  # annotators stay blind to the judge
OPERATORS = {"admin", "engineer"}  # import responses, start and cancel runs
ADMINS = {"admin"}  # members and judges
ANNOTATORS = {"annotator"}  # grade queue items, blind
ADJUDICATORS = {"admin", "reviewer"}  # gold verdicts


def members_only(allowed: set[str], ok: int) -> dict[str, int]:
    return {
        "anonymous": 401,
        "outsider": 404,
        **{role: ok if role in allowed else 403 for role in ROLES},
    }


def any_user(ok: int, anonymous: int = 401) -> dict[str, int]:
    return {"anonymous": anonymous, "outsider": ok, **dict.fromkeys(ROLES, ok)}


@dataclass(frozen=True)
class Endpoint:
    method: str
    route: str  # as written in assay/api_urls.py
    url: str  # with {slug}, {task}, {rubric}, {draft_rubric}, {grader}, {run}, {score}
    expected: dict[str, int] = field(hash=False)
    body_format: str = "json"

    def __str__(self) -> str:
        return f"{self.method.upper()} {self.route}"


SLUG = "projects/<slug:slug>/"
ENDPOINTS = [
    Endpoint("post", "auth/token/", "auth/token/", any_user(400, anonymous=400)),
    Endpoint("get", "tokens/", "tokens/", any_user(200)),
    Endpoint("post", "tokens/", "tokens/", any_user(400)),
    # Someone else's token is not found: each user sees only their own.
    Endpoint("delete", "tokens/<int:pk>/", "tokens/{token}/", any_user(404)),
    Endpoint("get", "projects/", "projects/", any_user(200)),
    Endpoint("post", "projects/", "projects/", any_user(400)),
    Endpoint("get", SLUG, "projects/{slug}/", members_only(EVERYONE, 200)),
    Endpoint("get", SLUG + "members/", "projects/{slug}/members/", members_only(EVERYONE, 200)),
    Endpoint("post", SLUG + "members/", "projects/{slug}/members/", members_only(ADMINS, 400)),
    # Removing the admin, the last one, is refused: allowed roles get 400 and nothing changes.
    Endpoint(
        "delete",
        SLUG + "members/<str:username>/",
        "projects/{slug}/members/{admin}/",
        members_only(ADMINS, 400),
    ),
    Endpoint("get", SLUG + "audit/", "projects/{slug}/audit/", members_only(ADMINS, 200)),
    Endpoint("get", SLUG + "tasks/", "projects/{slug}/tasks/", members_only(EVERYONE, 200)),
    Endpoint("post", SLUG + "tasks/", "projects/{slug}/tasks/", members_only(EDITORS, 400)),
    Endpoint(
        "get",
        SLUG + "tasks/<str:external_id>/",
        "projects/{slug}/tasks/{task}/",
        members_only(EVERYONE, 200),
    ),
    Endpoint("get", SLUG + "rubrics/", "projects/{slug}/rubrics/", members_only(EVERYONE, 200)),
    Endpoint("post", SLUG + "rubrics/", "projects/{slug}/rubrics/", members_only(EDITORS, 400)),
    Endpoint("get", SLUG + "responses/", "projects/{slug}/responses/", members_only(EVERYONE, 200)),
    Endpoint(
        "post",
        SLUG + "imports/tasks/",
        "projects/{slug}/imports/tasks/",
        members_only(EDITORS, 400),
        body_format="multipart",
    ),
    Endpoint(
        "post",
        SLUG + "responses/import/",
        "projects/{slug}/responses/import/",
        members_only(OPERATORS, 400),
        body_format="multipart",
    ),
    Endpoint(
        "get",
        SLUG + "responses/models/",
        "projects/{slug}/responses/models/",
        members_only(EVERYONE, 200),
    ),
    Endpoint("get", SLUG + "judges/", "projects/{slug}/judges/", members_only(RESULTS, 200)),
    Endpoint("post", SLUG + "judges/", "projects/{slug}/judges/", members_only(ADMINS, 400)),
    Endpoint("get", SLUG + "runs/", "projects/{slug}/runs/", members_only(RESULTS, 200)),
    Endpoint("post", SLUG + "runs/", "projects/{slug}/runs/", members_only(OPERATORS, 400)),
    Endpoint("get", "rubrics/<int:pk>/", "rubrics/{rubric}/", members_only(EVERYONE, 200)),
    Endpoint(
        "put",
        "rubrics/<int:pk>/draft/criteria/",
        "rubrics/{rubric}/draft/criteria/",
        members_only(EDITORS, 400),
    ),
    # The empty draft cannot be submitted, and it is not in review: allowed roles get 400.
    Endpoint(
        "post",
        "rubrics/<int:pk>/submit/",
        "rubrics/{draft_rubric}/submit/",
        members_only(EDITORS, 400),
    ),
    Endpoint(
        "post",
        "rubrics/<int:pk>/approve/",
        "rubrics/{draft_rubric}/approve/",
        members_only({"reviewer"}, 400),
    ),
    Endpoint(
        "get", "rubrics/<int:pk>/diff/", "rubrics/{rubric}/diff/", members_only(EVERYONE, 200)
    ),
    Endpoint(
        "post",
        "rubrics/<int:pk>/comments/",
        "rubrics/{review_rubric}/comments/",
        members_only({"admin", "reviewer"}, 400),
    ),
    # An empty body: allowed roles get past the permission check, then resolve the comment
    # (200) -- so the first allowed persona resolves it and the next one gets 400.
    Endpoint(
        "post",
        "comments/<int:pk>/resolve/",
        "comments/{comment}/resolve/",
        {**members_only(EDITORS, 400), "admin": 200},
    ),
    Endpoint("get", "graders/<str:grader_hash>/", "graders/{grader}/", members_only(EVERYONE, 200)),
    Endpoint("get", SLUG + "datasets/", "projects/{slug}/datasets/", members_only(RESULTS, 200)),
    Endpoint("post", SLUG + "datasets/", "projects/{slug}/datasets/", members_only(OPERATORS, 400)),
    Endpoint("get", "datasets/<int:pk>/", "datasets/{snapshot}/", members_only(RESULTS, 200)),
    Endpoint(
        "get",
        "datasets/<int:pk>/download/",
        "datasets/{snapshot}/download/",
        members_only(RESULTS, 200),
    ),
    Endpoint(
        "post",
        "graders/<str:grader_hash>/score/",
        "graders/{grader}/score/",
        members_only(OPERATORS, 400),
    ),
    Endpoint("get", "runs/<int:pk>/", "runs/{run}/", members_only(RESULTS, 200)),
    # The run has not finished, so an allowed retry is refused without a change.
    Endpoint(
        "post",
        "runs/<int:pk>/retry-failed/",
        "runs/{run}/retry-failed/",
        members_only(OPERATORS, 400),
    ),
    Endpoint("post", "runs/<int:pk>/resume/", "runs/{run}/resume/", members_only(OPERATORS, 200)),
    Endpoint("post", "runs/<int:pk>/cancel/", "runs/{run}/cancel/", members_only(OPERATORS, 200)),
    Endpoint("get", "runs/<int:pk>/scores/", "runs/{run}/scores/", members_only(RESULTS, 200)),
    Endpoint(
        "get",
        "runs/<int:pk>/scores/<int:score_pk>/verdicts/",
        "runs/{run}/scores/{score}/verdicts/",
        members_only(RESULTS, 200),
    ),
    Endpoint("get", SLUG + "queues/", "projects/{slug}/queues/", members_only(EVERYONE, 200)),
    Endpoint("post", SLUG + "queues/", "projects/{slug}/queues/", members_only(OPERATORS, 400)),
    Endpoint("get", "queues/<int:pk>/", "queues/{queue}/", members_only(RESULTS, 200)),
    # The annotator holds an item already, so the claim answers it again.
    Endpoint(
        "post", "queues/<int:pk>/claim/", "queues/{queue}/claim/", members_only(ANNOTATORS, 200)
    ),
    Endpoint(
        "get", "assignments/<int:pk>/", "assignments/{assignment}/", members_only(ANNOTATORS, 200)
    ),
    Endpoint(
        "put",
        "assignments/<int:pk>/verdicts/",
        "assignments/{assignment}/verdicts/",
        members_only(ANNOTATORS, 400),
    ),
    # Nothing is decided yet, so an allowed submit is refused.
    Endpoint(
        "post",
        "assignments/<int:pk>/submit/",
        "assignments/{assignment}/submit/",
        members_only(ANNOTATORS, 400),
    ),
    Endpoint(
        "post",
        "assignments/<int:pk>/skip/",
        "assignments/{assignment}/skip/",
        members_only(ANNOTATORS, 400),
    ),
    Endpoint(
        "get",
        "versions/<int:pk>/agreement/",
        "versions/{version}/agreement/",
        members_only(RESULTS, 200),
    ),
    Endpoint(
        "get",
        "versions/<int:pk>/disagreements/",
        "versions/{version}/disagreements/",
        members_only(RESULTS, 200),
    ),
    Endpoint(
        "post",
        "versions/<int:pk>/gold/",
        "versions/{version}/gold/",
        members_only(ADJUDICATORS, 400),
    ),
    Endpoint(
        "get",
        "versions/<int:pk>/calibration/",
        "versions/{version}/calibration/",
        members_only(RESULTS, 200),
    ),
]


def served_operations() -> set[tuple[str, str]]:
    """(method, route) for every operation the API's URL patterns serve."""
    found = set()
    for pattern in api_urls.urlpatterns:
        view = pattern.callback.cls
        for method in view.http_method_names:
            if method not in ("head", "options") and hasattr(view, method):
                found.add((method, str(pattern.pattern)))
    return found


def test_the_table_lists_every_endpoint_once():
    listed = [(e.method, e.route) for e in ENDPOINTS]
    assert len(listed) == len(set(listed)), "an endpoint is listed twice"
    assert set(listed) == served_operations()


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def world(personas):
    """One of everything in the personas' project. The run is never started: the test's
    transaction never commits, so its Celery task is never sent."""
    project, admin = personas.project, personas.admin
    task = factories.make_task(project, external_id="t-1")
    grader = factories.make_published_rubric(project, task, [("Advises hydration", 1)], admin)
    draft_rubric = rubric_services.rubric_create(
        project=project, task=task, title="Empty draft", user=admin
    )
    factories.import_responses(project, [{"task_id": "t-1", "model": "m", "response": "Rest."}])
    judge = factories.make_judge(project, "http://127.0.0.1:9/v1")
    run = grading_services.run_create(project=project, grader=grader, judge=judge, user=admin)
    snapshot = datasets.snapshot_create(
        project=project, name="snap", format="verdicts-jsonl", user=admin
    )
    datasets.snapshot_build(snapshot_id=snapshot.pk)  # built here: the worker never sees it
    outsider_token, _ = tokens.token_create(user=factories.make_user(), name="x", scopes=["read"])
    queue = factories.make_queue(project, grader, [personas.annotator], admin, overlap=1)
    assignment = annotation_services.assignment_claim(queue=queue, user=personas.annotator)
    review_rubric = rubric_services.rubric_create(
        project=project,
        title="In review",
        user=admin,
        criteria=[rubric_services.clean_criterion("Advises rest", 1)],
    )
    in_review = review_rubric.versions.get()
    rubric_services.version_submit(version=in_review, user=admin)
    comment = rubric_services.comment_add(version=in_review, user=personas.reviewer, body="Why?")
    return SimpleNamespace(
        token=outsider_token.pk,
        snapshot=snapshot.pk,
        queue=queue.pk,
        assignment=assignment.pk,
        version=grader.version_id,
        review_rubric=review_rubric.pk,
        comment=comment.pk,
        slug=project.slug,
        admin=admin.username,
        task=task.external_id,
        rubric=grader.version.rubric_id,
        draft_rubric=draft_rubric.pk,
        grader=grader.hash,
        run=run.pk,
        score=run.scores.get().pk,
    )


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
def test_endpoint_answers_each_persona_by_role(endpoint, personas, world):
    url = "/api/" + endpoint.url.format(**vars(world))
    assert resolve(url).route == "api/" + endpoint.route
    users = {"anonymous": None, **personas.by_role()}
    answered = {}
    for persona, user in users.items():
        client = api_client(user)
        if endpoint.method == "get":
            reply = client.get(url)
        else:
            reply = getattr(client, endpoint.method)(url, {}, format=endpoint.body_format)
        answered[persona] = reply.status_code
    assert answered == endpoint.expected
