"""Every API endpoint, for every persona: anonymous 401, outsider 404, the role rules.

A role the rules allow gets past the permission check: a read answers 200, a write with an
empty body answers 400 (the door checks permission before it reads the body), a delete of
something in use 409, and a delete of a fresh object 204. The table must list every method
of every pattern in `assay.api_urls` and every operation of the OpenAPI schema, so a new
endpoint without a row fails here. Another project's objects: test_api_isolation.py.
"""

from __future__ import annotations

import itertools
import re
import string
from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import resolve
from drf_spectacular.generators import SchemaGenerator

from annotation import import_jobs
from annotation import services as annotation_services
from annotation.models import Response, Verdict
from assay import api_urls
from grading import datasets
from grading import services as grading_services
from grading.models import ModelPrice
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
PUBLISHERS = {"admin", "author", "reviewer"}  # retire published versions


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
    Endpoint("get", "tokens/<int:pk>/", "tokens/{token}/", any_user(404)),
    Endpoint("delete", "tokens/<int:pk>/", "tokens/{token}/", any_user(404)),
    Endpoint("get", "projects/", "projects/", any_user(200)),
    Endpoint("post", "projects/", "projects/", any_user(400)),
    Endpoint("get", SLUG, "projects/{slug}/", members_only(EVERYONE, 200)),
    Endpoint("patch", SLUG, "projects/{slug}/", members_only(ADMINS, 400)),
    # The project holds published work, so even its admin may not delete it.
    Endpoint("delete", SLUG, "projects/{slug}/", members_only(ADMINS, 409)),
    Endpoint("get", SLUG + "members/", "projects/{slug}/members/", members_only(EVERYONE, 200)),
    Endpoint("post", SLUG + "members/", "projects/{slug}/members/", members_only(ADMINS, 400)),
    Endpoint(
        "get",
        SLUG + "members/<str:username>/",
        "projects/{slug}/members/{member}/",
        members_only(EVERYONE, 200),
    ),
    Endpoint(
        "patch",
        SLUG + "members/<str:username>/",
        "projects/{slug}/members/{member}/",
        members_only(ADMINS, 400),
    ),
    # The admin is the last admin: they stay.
    Endpoint(
        "delete",
        SLUG + "members/<str:username>/",
        "projects/{slug}/members/{last_admin}/",
        members_only(ADMINS, 409),
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
    Endpoint(
        "patch",
        SLUG + "tasks/<str:external_id>/",
        "projects/{slug}/tasks/{task}/",
        members_only(EDITORS, 400),
    ),
    # The task has responses: it stays.
    Endpoint(
        "delete",
        SLUG + "tasks/<str:external_id>/",
        "projects/{slug}/tasks/{task}/",
        members_only(EDITORS, 409),
    ),
    Endpoint(
        "post",
        SLUG + "tasks/<str:external_id>/references/",
        "projects/{slug}/tasks/{task}/references/",
        members_only(EDITORS, 400),
        body_format="multipart",
    ),
    Endpoint("get", "references/<int:pk>/", "references/{reference}/", members_only(EVERYONE, 200)),
    Endpoint(
        "patch", "references/<int:pk>/", "references/{reference}/", members_only(EDITORS, 400)
    ),
    # A fresh reference per persona ({new_...}), so each allowed one really deletes.
    Endpoint(
        "delete", "references/<int:pk>/", "references/{new_reference}/", members_only(EDITORS, 204)
    ),
    # Every member may download a reference's file; no one else, and never from a public URL.
    Endpoint(
        "get",
        "references/<int:pk>/file/",
        "references/{reference}/file/",
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
    Endpoint("get", "responses/<int:pk>/", "responses/{response}/", members_only(EVERYONE, 200)),
    Endpoint("get", SLUG + "imports/", "projects/{slug}/imports/", members_only(OPERATORS, 200)),
    Endpoint(
        "post",
        SLUG + "imports/",
        "projects/{slug}/imports/",
        members_only(OPERATORS, 400),
        body_format="multipart",
    ),
    Endpoint("get", "imports/<int:pk>/", "imports/{import_job}/", members_only(OPERATORS, 200)),
    Endpoint("get", SLUG + "raters/", "projects/{slug}/raters/", members_only(RESULTS, 200)),
    Endpoint("get", SLUG + "verdicts/", "projects/{slug}/verdicts/", members_only(RESULTS, 200)),
    Endpoint(
        "get",
        SLUG + "calibration-settings/",
        "projects/{slug}/calibration-settings/",
        members_only(RESULTS, 200),
    ),
    Endpoint(
        "put",
        SLUG + "calibration-settings/",
        "projects/{slug}/calibration-settings/",
        members_only(ADMINS, 400),
    ),
    Endpoint("get", SLUG + "judges/", "projects/{slug}/judges/", members_only(RESULTS, 200)),
    Endpoint("post", SLUG + "judges/", "projects/{slug}/judges/", members_only(ADMINS, 400)),
    Endpoint("get", "judges/<int:pk>/", "judges/{judge}/", members_only(RESULTS, 200)),
    Endpoint("patch", "judges/<int:pk>/", "judges/{judge}/", members_only(ADMINS, 400)),
    # The judge has a run: it stays.
    Endpoint("delete", "judges/<int:pk>/", "judges/{judge}/", members_only(ADMINS, 409)),
    # Prices hold for every project: only staff (none of the personas) change them.
    Endpoint("get", "model-prices/", "model-prices/", any_user(200)),
    Endpoint("post", "model-prices/", "model-prices/", any_user(403)),
    Endpoint("get", "model-prices/<int:pk>/", "model-prices/{price}/", any_user(200)),
    Endpoint("patch", "model-prices/<int:pk>/", "model-prices/{price}/", any_user(403)),
    Endpoint("delete", "model-prices/<int:pk>/", "model-prices/{price}/", any_user(403)),
    Endpoint("get", SLUG + "runs/", "projects/{slug}/runs/", members_only(RESULTS, 200)),
    Endpoint("post", SLUG + "runs/", "projects/{slug}/runs/", members_only(OPERATORS, 400)),
    Endpoint("get", "rubrics/<int:pk>/", "rubrics/{rubric}/", members_only(EVERYONE, 200)),
    Endpoint("patch", "rubrics/<int:pk>/", "rubrics/{rubric}/", members_only(EDITORS, 400)),
    # The rubric was published: it stays.
    Endpoint("delete", "rubrics/<int:pk>/", "rubrics/{rubric}/", members_only(EDITORS, 409)),
    # The draft is the rubric's only version: delete the rubric instead.
    Endpoint(
        "delete",
        "rubrics/<int:pk>/draft/",
        "rubrics/{draft_rubric}/draft/",
        members_only(EDITORS, 409),
    ),
    Endpoint(
        "put",
        "rubrics/<int:pk>/draft/criteria/",
        "rubrics/{rubric}/draft/criteria/",
        members_only(EDITORS, 400),
    ),
    Endpoint(
        "post",
        "rubrics/<int:pk>/draft/criteria/",
        "rubrics/{draft_rubric}/draft/criteria/",
        members_only(EDITORS, 400),
    ),
    Endpoint("get", "criteria/<int:pk>/", "criteria/{criterion}/", members_only(EVERYONE, 200)),
    Endpoint("patch", "criteria/<int:pk>/", "criteria/{criterion}/", members_only(EDITORS, 400)),
    # The criterion is of a published version, which never changes.
    Endpoint("delete", "criteria/<int:pk>/", "criteria/{criterion}/", members_only(EDITORS, 409)),
    # The empty draft cannot be submitted, and it is not in review: allowed roles get 400.
    Endpoint(
        "post",
        "rubrics/<int:pk>/submit/",
        "rubrics/{draft_rubric}/submit/",
        members_only(EDITORS, 400),
    ),
    Endpoint(
        "post",
        "rubrics/<int:pk>/reopen/",
        "rubrics/{draft_rubric}/reopen/",
        members_only(EDITORS, 400),
    ),
    Endpoint(
        "post",
        "rubrics/<int:pk>/approve/",
        "rubrics/{draft_rubric}/approve/",
        members_only({"reviewer"}, 400),
    ),
    # Version 1 of the draft rubric is a draft: only a published version is retired.
    Endpoint(
        "post",
        "rubrics/<int:pk>/versions/<int:number>/retire/",
        "rubrics/{draft_rubric}/versions/1/retire/",
        members_only(PUBLISHERS, 400),
    ),
    Endpoint(
        "get", "rubrics/<int:pk>/diff/", "rubrics/{rubric}/diff/", members_only(EVERYONE, 200)
    ),
    Endpoint(
        "get", "rubrics/<int:pk>/history/", "rubrics/{rubric}/history/", members_only(EVERYONE, 200)
    ),
    Endpoint(
        "get",
        "rubrics/<int:pk>/comments/",
        "rubrics/{review_rubric}/comments/",
        members_only(EVERYONE, 200),
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
        "delete", "datasets/<int:pk>/", "datasets/{new_snapshot}/", members_only(OPERATORS, 204)
    ),
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
    Endpoint("patch", "queues/<int:pk>/", "queues/{queue}/", members_only(OPERATORS, 400)),
    Endpoint("delete", "queues/<int:pk>/", "queues/{new_queue}/", members_only(OPERATORS, 204)),
    Endpoint(
        "get",
        "queues/<int:pk>/assignments/",
        "queues/{queue}/assignments/",
        members_only(RESULTS, 200),
    ),
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
        "get",
        "versions/<int:pk>/gold/",
        "versions/{version}/gold/",
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


def openapi_path(route: str) -> str:
    """`projects/<slug:slug>/` as the schema names it: `/api/projects/{slug}/` (pk is id)."""
    route = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route)
    return "/api/" + route.replace("{pk}", "{id}")


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


def test_the_table_lists_every_endpoint_once():
    listed = [(e.method, e.route) for e in ENDPOINTS]
    assert len(listed) == len(set(listed)), "an endpoint is listed twice"
    missing = served_operations() - set(listed)
    assert not missing, f"URL patterns without a row in ENDPOINTS: {sorted(missing)}"
    assert set(listed) == served_operations()


def test_the_table_lists_every_operation_of_the_schema():
    """The schema is what clients (and the fuzzer) see: each of its operations has a row."""
    listed = {(e.method, openapi_path(e.route)) for e in ENDPOINTS}
    documented = schema_operations()
    assert not documented - listed, (
        f"in the schema, not in ENDPOINTS: {sorted(documented - listed)}"
    )
    assert not listed - documented, (
        f"in ENDPOINTS, not in the schema: {sorted(listed - documented)}"
    )


def test_every_persona_has_an_expected_outcome_everywhere():
    personas = {"anonymous", "outsider", *ROLES}
    for endpoint in ENDPOINTS:
        assert set(endpoint.expected) == personas, str(endpoint)


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def build_world(project, admin, annotator, reviewer, prefix: str = "") -> SimpleNamespace:
    """One of everything in `project`; names start with `prefix`, so two worlds never share
    an external id, a model or a tag. The run is never started: the test's transaction never
    commits, so its Celery task is never sent. `make` builds a fresh object per call, for
    rows that delete (`{new_<name>}` in a URL)."""
    task_id = f"{prefix}t-1"
    task = rubric_services.task_create(
        project=project,
        external_id=task_id,
        title="Fever",
        messages="What should I do?",
        tags=[f"{prefix}tag"],
        reference="Rest and fluids.",
    )
    grader = factories.make_published_rubric(project, task, [("Advises hydration", 1)], admin)
    draft_rubric = rubric_services.rubric_create(
        project=project, task=task, title="Empty draft", user=admin
    )
    factories.import_responses(
        project, [{"task_id": task_id, "model": f"{prefix}m", "response": "Rest."}]
    )
    judge = factories.make_judge(project, "http://127.0.0.1:9/v1")
    run = grading_services.run_create(project=project, grader=grader, judge=judge, user=admin)
    snapshot = datasets.snapshot_create(
        project=project, name="snap", format="verdicts-jsonl", user=admin
    )
    datasets.snapshot_build(snapshot_id=snapshot.pk)  # built here: the worker never sees it
    outsider_token, _ = tokens.token_create(user=factories.make_user(), name="x", scopes=["read"])
    queue = factories.make_queue(project, grader, [annotator], admin, overlap=1)
    assignment = annotation_services.assignment_claim(queue=queue, user=annotator)
    review_rubric = rubric_services.rubric_create(
        project=project,
        title="In review",
        user=admin,
        criteria=[rubric_services.clean_criterion("Advises rest", 1)],
    )
    in_review = review_rubric.versions.get()
    rubric_services.version_submit(version=in_review, user=admin)
    comment = rubric_services.comment_add(version=in_review, user=reviewer, body="Why?")
    criterion = grader.version.criteria.get()
    response = Response.objects.get(task=task)
    verdict = Verdict.objects.create(
        response=response,
        criterion=criterion,
        rater=judge.rater,
        grader=grader,
        run=run,
        outcome=Verdict.Outcome.MET,
    )
    gold = annotation_services.gold_decide(
        response=response, criterion=criterion, outcome="met", note="", user=admin
    )
    job = import_jobs.import_job_create(
        project=project,
        upload=SimpleUploadedFile(f"{prefix}big.jsonl", b"{}\n"),
        user=admin,
    )
    price = ModelPrice.objects.create(model=f"{prefix}judge-price-model")
    counter = itertools.count()

    def new_queue() -> int:
        return factories.make_queue(
            project, grader, [annotator], admin, overlap=1, name=f"q-{next(counter)}"
        ).pk

    makers = {
        "new_reference": lambda: (
            rubric_services.reference_add(task=task, body="Another reference.", user=admin).pk
        ),
        "new_snapshot": lambda: (
            datasets.snapshot_create(
                project=project, name=f"snap-{next(counter)}", format="verdicts-jsonl", user=admin
            ).pk
        ),
        "new_queue": new_queue,
    }
    reference = rubric_services.reference_create(
        task=task, body="Rest.", file=SimpleUploadedFile("ref.txt", b"notes"), user=admin
    )
    return SimpleNamespace(
        make=makers,
        reference=reference.pk,
        token=outsider_token.pk,
        snapshot=snapshot.pk,
        queue=queue.pk,
        assignment=assignment.pk,
        version=grader.version_id,
        review_rubric=review_rubric.pk,
        comment=comment.pk,
        slug=project.slug,
        admin=admin.username,
        member=reviewer.username,
        last_admin=admin.username,
        annotator=annotator.username,
        task=task.external_id,
        tag=f"{prefix}tag",
        model=f"{prefix}m",
        rubric=grader.version.rubric_id,
        draft_rubric=draft_rubric.pk,
        criterion=criterion.pk,
        grader=grader.hash,
        judge=judge.pk,
        rater=judge.rater_id,
        run=run.pk,
        score=run.scores.get().pk,
        response=response.pk,
        verdict=verdict.pk,
        gold=gold.pk,
        import_job=job.pk,
        price=price.pk,
        price_model=price.model,
    )


@pytest.fixture
def world(personas):
    p = personas
    return build_world(p.project, p.admin, p.annotator, p.reviewer)


def endpoint_url(endpoint: Endpoint, world: SimpleNamespace) -> str:
    """The endpoint's URL in `world`; each `{new_<name>}` is a fresh object, made now."""
    names = {name for _, name, _, _ in string.Formatter().parse(endpoint.url) if name}
    values = {name: world.make[name]() for name in names if name.startswith("new_")}
    return "/api/" + endpoint.url.format(**{**vars(world), **values})


def call(client, endpoint: Endpoint, url: str):
    if endpoint.method == "get":
        return client.get(url)
    return getattr(client, endpoint.method)(url, {}, format=endpoint.body_format)


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
def test_endpoint_answers_each_persona_by_role(endpoint, personas, world):
    users = {"anonymous": None, **personas.by_role()}
    answered = {}
    for persona, user in users.items():
        url = endpoint_url(endpoint, world)
        assert resolve(url).route == "api/" + endpoint.route
        answered[persona] = call(api_client(user), endpoint, url).status_code
    assert answered == endpoint.expected
