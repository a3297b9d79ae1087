"""Pages: what the roles matrix (tests/roles_matrix.py, asked by tests/test_roles_matrix.py)
does not say. The admin site is for staff only, passwords meet the validators, a refused or
frozen write changes nothing, and the busiest pages do not grow queries with the project.
"""

from __future__ import annotations

import pytest
from django.urls import reverse

from annotation.models import Response
from grading import services as grading_services
from grading.models import GradingRun, Judge, Score
from rubrics.models import Criterion, RubricVersion
from tests import factories
from tests.roles_matrix import ROLES, build_world

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(personas):
    p = personas
    return build_world(p.project, p.admin, p.annotator, p.reviewer)


def test_admin_site_is_for_staff_only(client, personas):
    """Project admins are not Django staff: the admin site sends everyone else to its login."""
    assert client.get("/admin/").status_code == 302
    for persona in [*ROLES, "outsider"]:
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


def test_signup_refuses_a_weak_password(client, settings):
    from django.contrib.auth import get_user_model

    settings.SIGNUP_OPEN = True
    form = {"username": "newcomer", "password1": "password", "password2": "password"}
    reply = client.post("/signup/", form)
    assert reply.status_code == 200 and b"too common" in reply.content
    assert not get_user_model().objects.filter(username="newcomer").exists()


def test_annotator_cannot_publish_and_nothing_changes(client, personas, world):
    client.force_login(personas.annotator)
    response = client.post(reverse("rubric_approve", kwargs={"pk": world.review_rubric}))
    assert response.status_code == 403
    in_review = RubricVersion.objects.filter(
        rubric_id=world.review_rubric, status=RubricVersion.Status.IN_REVIEW
    )
    assert in_review.exists()


def test_published_version_cannot_be_edited_through_its_criteria(client, personas, world):
    published = Criterion.objects.get(pk=world.criterion)
    client.force_login(personas.admin)
    response = client.post(
        reverse("criterion_update", kwargs={"pk": published.pk}), {"text": "Sneaky", "points": 9}
    )
    assert response.status_code == 200
    assert b"cannot change" in response.content
    published.refresh_from_db()
    assert published.text == "Advises hydration"


def test_wrong_method_is_405(client, personas, world):
    client.force_login(personas.admin)
    assert client.get(reverse("rubric_submit", kwargs={"pk": world.rubric})).status_code == 405
    assert client.delete(reverse("project", kwargs={"slug": world.slug})).status_code == 405


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
    run = factories.make_run(project=p.project, grader=graders[0], judge=judge, total_items=3)
    Score.objects.bulk_create(
        Score(run=run, response=r, grader=run.sole_grader) for r in Response.objects.all()
    )
    client.force_login(p.admin)
    for url in (
        reverse("project", kwargs={"slug": p.project.slug}),
        reverse("responses", kwargs={"slug": p.project.slug}),
        reverse("runs", kwargs={"slug": p.project.slug}),
        reverse("run", kwargs={"pk": run.pk}),
        reverse("rubric", kwargs={"pk": graders[0].version.rubric_id}),
    ):
        # 15: the run page of a run not finished also reads the newest worker heartbeat.
        with django_assert_max_num_queries(15):
            assert client.get(url).status_code == 200


def test_run_page_shows_scores_a_page_at_a_time(client, personas):
    """A run at RL scale has tens of thousands of responses: the page lists 50 at a time,
    with links between pages, and a page number out of range or not a number still answers."""
    import re

    p = personas
    task = factories.make_task(p.project, "paged")
    grader = factories.make_published_rubric(p.project, task, [("Mentions water", 1)], p.admin)
    factories.import_responses(
        p.project,
        [
            {"task_id": "paged", "model": "m", "response": "water", "sample_index": i}
            for i in range(120)
        ],
    )
    judge = factories.make_judge(p.project, "http://127.0.0.1:9/v1")
    run = factories.make_run(project=p.project, grader=grader, judge=judge, total_items=120)
    Score.objects.bulk_create(
        Score(run=run, response=r, grader=run.sole_grader) for r in Response.objects.all()
    )
    client.force_login(p.admin)
    url = reverse("run", kwargs={"pk": run.pk})

    def samples(query: str) -> tuple[list[int], str]:
        html = client.get(url + query).content.decode()
        table = html.split('data-testid="scores"', 1)[1].split("</table>", 1)[0]
        rows = re.findall(r"<tr><td>paged</td><td>m</td><td>(\d+)</td>", table)
        return [int(r) for r in rows], html

    first, html = samples("")
    assert first == list(range(50))
    assert "Responses 1–50 of 120" in html and "?page=2#scores" in html
    second, html = samples("?page=2")
    assert second == list(range(50, 100))
    assert "?page=1#scores" in html and "?page=3#scores" in html
    assert samples("?page=3")[0] == list(range(100, 120))
    assert samples("?page=99")[0] == list(range(100, 120))  # past the end: the last page
    assert samples("?page=x")[0] == list(range(50))  # not a number: the first


def test_run_create_refuses_when_nothing_to_grade(personas, world):
    from django.core.exceptions import ValidationError

    p = personas
    empty_task = factories.make_task(p.project, "t-empty")
    grader = factories.make_published_rubric(p.project, empty_task, [("Mentions salt", 1)], p.admin)
    with pytest.raises(ValidationError, match="no responses"):
        grading_services.run_create(
            project=p.project, grader=grader, judge=Judge.objects.get(pk=world.judge), user=p.admin
        )
    assert not GradingRun.objects.filter(suite_version__entries__grader=grader).exists()


def test_retiring_from_the_page_changes_only_the_status(client, personas, world):
    version = RubricVersion.objects.get(pk=world.version)
    before = version.content_hash
    client.force_login(personas.reviewer)
    reply = client.post(reverse("rubric_retire", kwargs={"pk": world.rubric, "number": 1}))
    assert reply.status_code == 302
    version.refresh_from_db()
    assert version.status == "retired" and version.content_hash == before
    assert Criterion.objects.get(version=version).text == "Advises hydration"
