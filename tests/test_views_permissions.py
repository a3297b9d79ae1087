"""Every HTML page and action, for every persona: who gets in, who gets 403, who gets 404.

The table must name every URL pattern of the three apps, so a new page cannot ship untested.
"""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import get_resolver, reverse

from annotation import services as annotation_services
from annotation.models import ImportJob, Response
from grading import datasets
from grading import services as grading_services
from grading.models import GradingRun, Score
from rubrics.models import Criterion, RubricVersion
from tests import factories

pytestmark = pytest.mark.django_db

ALL = {"admin", "author", "annotator", "reviewer", "engineer"}
RESULTS = {"admin", "author", "reviewer", "engineer"}


@pytest.fixture
def world(personas):
    """A project with a task, a published rubric plus a draft, a response, a judge and a run."""
    p = personas
    task = factories.make_task(p.project, "t1")
    grader = factories.make_published_rubric(p.project, task, [("Mentions hydration", 2)], p.admin)
    rubric = grader.version.rubric
    draft_rubric_grader = factories.make_published_rubric(
        p.project, factories.make_task(p.project, "t2"), [("Mentions sleep", 1)], p.admin
    )
    draft_rubric = draft_rubric_grader.version.rubric
    from rubrics import services as rubric_services

    draft = rubric_services.draft_for_edit(rubric=draft_rubric, user=p.admin)
    criterion = draft.criteria.get()
    second = rubric_services.criterion_add(version=draft, text="Mentions rest", points=1)
    rubric_services.criterion_indent(criterion=second)
    review_grader = factories.make_published_rubric(
        p.project, factories.make_task(p.project, "t3"), [("Mentions food", 1)], p.admin
    )
    review_rubric = review_grader.version.rubric
    in_review = rubric_services.draft_for_edit(rubric=review_rubric, user=p.admin)
    rubric_services.version_submit(version=in_review, user=p.admin)
    comment = rubric_services.comment_add(version=in_review, user=p.reviewer, body="Vague")
    template = rubric_services.rubric_create(
        project=p.project, title="Generic", user=p.admin, is_template=True
    )
    factories.import_responses(p.project, [{"task_id": "t1", "model": "m", "response": "x"}])
    judge = factories.make_judge(p.project, "http://127.0.0.1:9/v1")
    run = GradingRun.objects.create(
        project=p.project, grader=grader, judge=judge, total_items=1, created_by=p.admin
    )
    score = Score.objects.create(run=run, response=Response.objects.get())
    snapshot = datasets.snapshot_create(
        project=p.project, name="snap", format="verdicts-jsonl", user=p.admin
    )
    datasets.snapshot_build(snapshot_id=snapshot.pk)
    queue = factories.make_queue(p.project, grader, [p.annotator], p.admin, overlap=1)
    assignment = annotation_services.assignment_claim(queue=queue, user=p.annotator)
    reference = rubric_services.reference_create(
        task=task, body="Drink water.", file=SimpleUploadedFile("ref.txt", b"notes"), user=p.admin
    )
    return {
        "reference": reference,
        "import_job": ImportJob.objects.create(project=p.project, filename="f.jsonl", file="x"),
        "snapshot": snapshot,
        "p": p,
        "task": task,
        "grader": grader,
        "rubric": rubric,
        "draft_rubric": draft_rubric,
        "criterion": criterion,
        "group": Criterion.objects.get(pk=second.pk).group,
        "review_rubric": review_rubric,
        "comment": comment,
        "template": template,
        "run": run,
        "score": score,
        "judge": judge,
        "queue": queue,
        "assignment": assignment,
        "version": grader.version,
        "response": Response.objects.get(),
        "published_criterion": grader.version.criteria.get(),
    }


# name -> (method, kwargs(world), roles allowed, form data)
def _slug(w):
    return {"slug": w["p"].project.slug}


def _item(w):
    return {
        "pk": w["version"].pk,
        "response_pk": w["response"].pk,
        "criterion_pk": w["published_criterion"].pk,
    }


TABLE = {
    "project": ("get", _slug, ALL, None),
    "members": ("get", _slug, ALL, None),
    "members#post": ("post", _slug, {"admin"}, {"username": "nobody", "role": "author"}),
    "member_remove": (
        "post",
        lambda w: {**_slug(w), "username": w["p"].annotator.username},
        {"admin"},
        {},
    ),
    "audit_log": ("get", _slug, {"admin"}, None),
    "task_new": ("get", _slug, {"admin", "author"}, None),
    "task_new#post": ("post", _slug, {"admin", "author"}, {"external_id": ""}),
    "tasks_import": ("get", _slug, {"admin", "author"}, None),
    "tasks_import#post": ("post", _slug, {"admin", "author"}, {}),
    "task": ("get", lambda w: {**_slug(w), "external_id": "t1"}, ALL, None),
    "reference_add": (
        "post",
        lambda w: {**_slug(w), "external_id": "t1"},
        {"admin", "author"},
        {"body": "Call emergency services."},
    ),
    # Project members only, whatever their role: the file is never at a public URL.
    "reference_file": ("get", lambda w: {"pk": w["reference"].pk}, ALL, None),
    "rubric_new": ("post", lambda w: {**_slug(w), "external_id": "t1"}, {"admin", "author"}, {}),
    "rubric": ("get", lambda w: {"pk": w["rubric"].pk}, ALL, None),
    "rubric_edit": ("post", lambda w: {"pk": w["rubric"].pk}, {"admin", "author"}, {}),
    "criterion_add": (
        "post",
        lambda w: {"pk": w["draft_rubric"].pk},
        {"admin", "author"},
        {"text": "New one", "points": "1"},
    ),
    "criterion_update": (
        "post",
        lambda w: {"pk": w["criterion"].pk},
        {"admin", "author"},
        {"text": "Edited", "points": "2"},
    ),
    "criterion_delete": ("post", lambda w: {"pk": w["criterion"].pk}, {"admin", "author"}, {}),
    "criterion_move": (
        "post",
        lambda w: {"pk": w["criterion"].pk, "direction": "up"},
        {"admin", "author"},
        {},
    ),
    "grader": ("get", lambda w: {"grader_hash": w["grader"].hash}, ALL, None),
    "rubric_settings": (
        "post",
        lambda w: {"pk": w["draft_rubric"].pk},
        {"admin", "author"},
        {"include_reference": "on"},
    ),
    "rubric_retire": (
        "post",
        lambda w: {"pk": w["rubric"].pk, "number": 1},
        {"admin", "author", "reviewer"},
        {},
    ),
    "rubric_submit": ("post", lambda w: {"pk": w["draft_rubric"].pk}, {"admin", "author"}, {}),
    "rubric_reopen": ("post", lambda w: {"pk": w["review_rubric"].pk}, {"admin", "author"}, {}),
    "rubric_approve": ("post", lambda w: {"pk": w["review_rubric"].pk}, {"reviewer"}, {}),
    "comment_add": (
        "post",
        lambda w: {"pk": w["review_rubric"].pk},
        {"admin", "reviewer"},
        {"body": "Please split this criterion."},
    ),
    "comment_resolve": ("post", lambda w: {"pk": w["comment"].pk}, {"admin", "author"}, {}),
    "rubric_diff": ("get", lambda w: {"pk": w["draft_rubric"].pk}, ALL, None),
    "rubric_history": ("get", lambda w: {"pk": w["draft_rubric"].pk}, ALL, None),
    "template_new": ("post", _slug, {"admin", "author"}, {"title": "Safety basics"}),
    "template_apply": ("post", lambda w: {"pk": w["template"].pk}, {"admin", "author"}, {}),
    "rubrics_import": ("get", _slug, {"admin", "author"}, None),
    "rubrics_import#post": ("post", _slug, {"admin", "author"}, {"format": "healthbench"}),
    "rubrics_export": ("get", _slug, ALL, None),
    "rubric_try": ("get", lambda w: {"pk": w["draft_rubric"].pk}, RESULTS, None),
    "rubric_try#post": (
        "post",
        lambda w: {"pk": w["draft_rubric"].pk},
        RESULTS,
        {"action": "preview", "response": "Drink water."},
    ),
    "group_update": (
        "post",
        lambda w: {"pk": w["group"].pk},
        {"admin", "author"},
        {"title": "Safety", "weight": "2"},
    ),
    "responses": ("get", _slug, ALL, None),
    "responses#post": ("post", _slug, {"admin", "engineer"}, {}),
    "judges": ("get", _slug, RESULTS, None),
    "judges#post": ("post", _slug, {"admin"}, {"name": ""}),
    "runs": ("get", _slug, RESULTS, None),
    "runs#post": ("post", _slug, {"admin", "engineer"}, {}),
    "run": ("get", lambda w: {"pk": w["run"].pk}, RESULTS, None),
    "run_cancel": ("post", lambda w: {"pk": w["run"].pk}, {"admin", "engineer"}, {}),
    "run_retry_failed": ("post", lambda w: {"pk": w["run"].pk}, {"admin", "engineer"}, {}),
    "run_resume": ("post", lambda w: {"pk": w["run"].pk}, {"admin", "engineer"}, {}),
    "run_compare": (
        "get",
        lambda w: {"pk": w["run"].pk, "other_pk": w["run"].pk},
        RESULTS,
        None,
    ),
    "score": ("get", lambda w: {"pk": w["run"].pk, "score_pk": w["score"].pk}, RESULTS, None),
    "import_job": ("get", lambda w: {"pk": w["import_job"].pk}, {"admin", "engineer"}, None),
    "datasets": ("get", _slug, RESULTS, None),
    "datasets#post": ("post", _slug, {"admin", "engineer"}, {"name": ""}),
    "snapshot": ("get", lambda w: {"pk": w["snapshot"].pk}, RESULTS, None),
    "snapshot_download": ("get", lambda w: {"pk": w["snapshot"].pk}, RESULTS, None),
    "queues": ("get", _slug, ALL, None),
    "queues#post": ("post", _slug, {"admin", "engineer"}, {"name": ""}),
    "queue": ("get", lambda w: {"pk": w["queue"].pk}, RESULTS, None),
    "queue_next": ("post", lambda w: {"pk": w["queue"].pk}, {"annotator"}, {}),
    "assignment": ("get", lambda w: {"pk": w["assignment"].pk}, {"annotator"}, None),
    "assignment_draft": ("post", lambda w: {"pk": w["assignment"].pk}, {"annotator"}, {}),
    "assignment_submit": ("post", lambda w: {"pk": w["assignment"].pk}, {"annotator"}, {}),
    "assignment_skip": ("post", lambda w: {"pk": w["assignment"].pk}, {"annotator"}, {}),
    "agreement": ("get", lambda w: {"pk": w["version"].pk}, RESULTS, None),
    "disagreements": ("get", lambda w: {"pk": w["version"].pk}, RESULTS, None),
    "adjudicate": ("get", _item, RESULTS, None),
    "adjudicate#post": ("post", _item, {"admin", "reviewer"}, {}),
    "calibration": ("get", lambda w: {"pk": w["version"].pk}, RESULTS, None),
    "calibration#post": ("post", lambda w: {"pk": w["version"].pk}, {"admin"}, {"threshold": "1"}),
    "calibration_flags": ("get", lambda w: {"pk": w["version"].pk}, RESULTS, None),
}
# Not project pages: the home page, accounts, and one's own API tokens (tests/test_tokens.py).
PUBLIC = {"home", "signup", "login", "logout", "api_tokens_page", "api_token_revoke_page"}
# Site pages outside any project: (method, path, expected for anonymous, for any member).
SITE = {
    "password_change": ("get", "/account/password/", 302, 200),
    "password_change_done": ("get", "/account/password/done/", 302, 200),
    # The API's description holds no data: it is public, like the docs that render it.
    "schema": ("get", "/api/schema/", 200, 200),
    "api_docs": ("get", "/api/docs/", 200, 200),
    "api_redoc": ("get", "/api/redoc/", 200, 200),
}


def _named_patterns(resolver, prefix=""):
    """(name, include module) for every named pattern under the root URL configuration."""
    for pattern in resolver.url_patterns:
        if hasattr(pattern, "url_patterns"):  # an include()
            if pattern.namespace == "admin":
                yield "admin:*", "django.contrib.admin"
                continue
            module = getattr(pattern.urlconf_name, "__name__", pattern.urlconf_name)
            for name, inner in _named_patterns(pattern, prefix):
                yield name, inner if inner != "assay.urls" else module
        elif pattern.name:
            yield pattern.name, "assay.urls"


def test_every_page_is_in_the_table():
    """Walks the whole URL configuration: the API has its own table (test_api_permissions)."""
    names = {name for name, module in _named_patterns(get_resolver()) if module != "assay.api_urls"}
    covered = {name.split("#")[0] for name in TABLE} | PUBLIC | set(SITE) | {"admin:*"}
    assert names - covered == set(), "add these pages to TABLE or SITE"


@pytest.mark.parametrize("name", sorted(SITE))
def test_site_page_outcome(client, personas, name):
    method, path, anonymous, member = SITE[name]
    assert getattr(client, method)(path).status_code == anonymous
    for persona in [*sorted(ALL), "outsider"]:
        client.force_login(personas.by_role()[persona])
        assert getattr(client, method)(path).status_code == member, persona


def test_admin_site_is_for_staff_only(client, personas):
    """Project admins are not Django staff: the admin site sends everyone else to its login."""
    assert client.get("/admin/").status_code == 302
    for persona in [*sorted(ALL), "outsider"]:
        client.force_login(personas.by_role()[persona])
        reply = client.get("/admin/grading/modelprice/")
        assert reply.status_code == 302 and "/admin/login/" in reply.url, persona
    personas.admin.is_staff = personas.admin.is_superuser = True
    personas.admin.save()
    client.force_login(personas.admin)
    assert client.get("/admin/grading/modelprice/").status_code == 200


def test_password_change_applies_the_validators(client, personas):
    client.force_login(personas.author)
    form = {"old_password": factories.PASSWORD, "new_password1": "12345678"}
    reply = client.post("/account/password/", {**form, "new_password2": "12345678"})
    assert reply.status_code == 200 and b"too common" in reply.content
    personas.author.refresh_from_db()
    assert personas.author.check_password(factories.PASSWORD)
    strong = "violet-harbour-quartz-17"
    reply = client.post(
        "/account/password/",
        {"old_password": factories.PASSWORD, "new_password1": strong, "new_password2": strong},
    )
    assert reply.status_code == 302
    personas.author.refresh_from_db()
    assert personas.author.check_password(strong)


def test_signup_refuses_a_weak_password(client):
    from django.contrib.auth import get_user_model

    form = {"username": "newcomer", "password1": "password", "password2": "password"}
    reply = client.post("/signup/", form)
    assert reply.status_code == 200 and b"too common" in reply.content
    assert not get_user_model().objects.filter(username="newcomer").exists()


CASES = [(name, persona) for name in TABLE for persona in [*sorted(ALL), "outsider"]]


@pytest.mark.parametrize(("name", "persona"), CASES)
def test_role_outcome(client, world, name, persona):
    method, kwargs, allowed, data = TABLE[name]
    url = reverse(name.split("#")[0], kwargs=kwargs(world))
    client.force_login(world["p"].by_role()[persona])
    response = getattr(client, method)(url, data or {})
    if persona == "outsider":
        assert response.status_code == 404, (name, response.status_code)
    elif persona in allowed:
        assert response.status_code in (200, 302), (name, persona, response.status_code)
    else:
        assert response.status_code == 403, (name, persona, response.status_code)


@pytest.mark.parametrize("name", [n for n in TABLE])
def test_anonymous_is_sent_to_login(client, world, name):
    method, kwargs, _, data = TABLE[name]
    url = reverse(name.split("#")[0], kwargs=kwargs(world))
    response = getattr(client, method)(url, data or {})
    assert response.status_code == 302 and response.url.startswith(reverse("login"))


def test_annotator_cannot_publish_and_nothing_changes(client, world):
    client.force_login(world["p"].annotator)
    response = client.post(reverse("rubric_approve", kwargs={"pk": world["review_rubric"].pk}))
    assert response.status_code == 403
    assert world["review_rubric"].versions.filter(status=RubricVersion.Status.IN_REVIEW).exists()


def test_published_version_cannot_be_edited_through_its_criteria(client, world):
    published = Criterion.objects.get(version=world["grader"].version)
    client.force_login(world["p"].admin)
    response = client.post(
        reverse("criterion_update", kwargs={"pk": published.pk}), {"text": "Sneaky", "points": 9}
    )
    assert response.status_code == 200
    assert b"cannot change" in response.content
    published.refresh_from_db()
    assert published.text == "Mentions hydration"


def test_wrong_method_is_405(client, world):
    client.force_login(world["p"].admin)
    assert (
        client.get(reverse("rubric_submit", kwargs={"pk": world["rubric"].pk})).status_code == 405
    )
    assert client.delete(reverse("project", kwargs=_slug(world))).status_code == 405


@pytest.mark.parametrize("n_tasks", [2, 12])
def test_project_and_run_pages_do_not_grow_queries(
    client, personas, django_assert_max_num_queries, n_tasks
):
    p = personas
    graders = []
    for i in range(n_tasks):
        task = factories.make_task(p.project, f"q{i}")
        graders.append(
            factories.make_published_rubric(p.project, task, [("Mentions water", 1)], p.admin)
        )
        factories.import_responses(
            p.project, [{"task_id": f"q{i}", "model": m, "response": "water"} for m in "abc"]
        )
    judge = factories.make_judge(p.project, "http://127.0.0.1:9/v1")
    run = GradingRun.objects.create(
        project=p.project, grader=graders[0], judge=judge, total_items=3
    )
    Score.objects.bulk_create(Score(run=run, response=r) for r in Response.objects.all())
    client.force_login(p.admin)
    for url in (
        reverse("project", kwargs={"slug": p.project.slug}),
        reverse("responses", kwargs={"slug": p.project.slug}),
        reverse("runs", kwargs={"slug": p.project.slug}),
        reverse("run", kwargs={"pk": run.pk}),
        reverse("rubric", kwargs={"pk": graders[0].version.rubric_id}),
    ):
        with django_assert_max_num_queries(14):
            assert client.get(url).status_code == 200


def test_run_create_refuses_when_nothing_to_grade(world):
    from django.core.exceptions import ValidationError

    p = world["p"]
    empty_task = factories.make_task(p.project, "t-empty")
    grader = factories.make_published_rubric(p.project, empty_task, [("Mentions salt", 1)], p.admin)
    with pytest.raises(ValidationError, match="no responses"):
        grading_services.run_create(
            project=p.project, grader=grader, judge=world["judge"], user=p.admin
        )
    assert not GradingRun.objects.filter(grader=grader).exists()


def test_retiring_from_the_page_changes_only_the_status(client, world):
    version = world["grader"].version
    before = version.content_hash
    client.force_login(world["p"].reviewer)
    reply = client.post(reverse("rubric_retire", kwargs={"pk": world["rubric"].pk, "number": 1}))
    assert reply.status_code == 302
    version.refresh_from_db()
    assert version.status == "retired" and version.content_hash == before
    assert Criterion.objects.get(version=version).text == "Mentions hydration"
