"""The form that starts a run (grading/forms.py RunForm) as a HealthBench-sized project needs
it: suites in a select, and published graders searched (grading.views.run_grader_search),
never all listed. The page holds at most GRADER_MATCHES graders and reads as many queries for
60 graders as for 5; the search answers a few matches, by title, task or hash."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from grading.models import GradingRun
from rubrics import suites
from rubrics.selectors import GRADER_MATCHES
from tests import factories

RADIO = re.compile(r'<input type="radio" name="grader" value="([0-9a-f]{64})"')


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def project_with_graders(n: int, *, suite: bool = False):
    """A project with `n` tasks, each its own published rubric ("Rubric for case-<i>"), a judge,
    and (with `suite`) a response to each and a suite of them frozen."""
    admin = factories.make_user()
    project = factories.make_project(owner=admin)
    graders = []
    for i in range(n):
        task = factories.make_task(project, external_id=f"case-{i:03d}")
        graders.append(factories.make_published_rubric(project, task, [("Says hi", 1)], admin))
    factories.make_judge(project, "http://127.0.0.1:9/v1")
    if suite:
        factories.import_responses(
            project,
            [{"task_id": f"case-{i:03d}", "model": "m", "response": "Hi."} for i in range(n)],
        )
        made = suites.suite_create(project=project, name="All", user=admin, task_ids=[])
        suites.suite_update(suite=made, task_ids=list(project.tasks.values_list("pk", flat=True)))
        suites.suite_freeze(suite=made, user=admin)
    return project, admin, graders


def page_of(client: Client, user, project) -> tuple[str, int]:
    client.force_login(user)
    with CaptureQueriesContext(connection) as ctx:
        reply = client.get(reverse("runs", args=[project.slug]))
    assert reply.status_code == 200
    return reply.content.decode(), len(ctx.captured_queries)


@pytest.mark.django_db
def test_the_run_form_lists_a_few_graders_and_reads_as_many_queries_for_60_as_for_5(client):
    few, few_admin, _ = project_with_graders(5)
    many, many_admin, graders = project_with_graders(GRADER_MATCHES * 3)
    few_page, few_queries = page_of(client, few_admin, few)
    many_page, many_queries = page_of(client, many_admin, many)
    assert few_queries == many_queries
    listed = RADIO.findall(many_page)
    assert len(listed) == GRADER_MATCHES  # not 60
    assert "type more to narrow" in many_page
    assert len(RADIO.findall(few_page)) == 5
    # No grader is an <option> any more: the form's selects hold suites and judges only.
    assert not any(g.hash in many_page.split('name="grader_q"')[0] for g in graders)
    # No suite: the first rubric is picked, as the first option of the old list was.
    assert f'value="{listed[0]}" checked' in many_page


@pytest.mark.django_db
def test_the_grader_search_finds_by_title_task_and_hash_and_answers_a_few(client):
    project, admin, graders = project_with_graders(GRADER_MATCHES + 5)
    client.force_login(admin)
    url = reverse("run_grader_search", args=[project.slug])

    def found(q: str) -> list[str]:
        reply = client.get(url, {"q": q}, HTTP_HX_REQUEST="true")
        assert reply.status_code == 200
        return RADIO.findall(reply.content.decode())

    assert found("rubric FOR case-007") == [graders[7].hash]
    assert found("case-012") == [graders[12].hash]
    assert found(graders[3].hash[:12].upper()) == [graders[3].hash]
    assert len(found("")) == GRADER_MATCHES
    assert found("no such rubric") == []
    with CaptureQueriesContext(connection) as ctx:
        found("Rubric")
    assert len(ctx.captured_queries) <= 6  # session, user, membership, one search


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["annotator", "author", "reviewer"])
def test_the_grader_search_is_for_those_who_start_runs(client, personas, role):
    task = factories.make_task(personas.project, external_id="secret-task")
    factories.make_published_rubric(personas.project, task, [("Says hi", 1)], personas.admin)
    client.force_login(personas.by_role()[role])
    reply = client.get(reverse("run_grader_search", args=[personas.project.slug]), {"q": ""})
    assert reply.status_code == 403
    assert "secret-task" not in reply.content.decode()
    client.force_login(personas.outsider)
    assert client.get(reverse("run_grader_search", args=[personas.project.slug])).status_code == 404


@pytest.mark.django_db
def test_a_run_starts_from_a_picked_grader_or_a_suite_never_both(client):
    project, admin, graders = project_with_graders(3, suite=True)
    client.force_login(admin)
    url = reverse("runs", args=[project.slug])
    judge = project.judges.get()
    version = suites.newest_versions(project)[0]
    base = {"judge": judge.pk, "mode": "per_criterion", "samples": 1}

    both = client.post(url, {**base, "suite_version": version.pk, "grader": graders[1].hash})
    assert both.status_code == 200 and "not both" not in both.content.decode()
    assert "set the suite to “—”" in both.content.decode()
    neither = client.post(url, {**base, "suite_version": "", "grader": ""})
    assert "Pick a suite or one rubric version" in neither.content.decode()
    unknown = client.post(url, {**base, "grader": "ab" * 32})
    assert "No published rubric version has that grader hash" in unknown.content.decode()
    assert not GradingRun.objects.exists()

    # A unique prefix names the grader, as everywhere a grader's hash is taken.
    by_prefix = client.post(url, {**base, "grader": graders[1].hash[:12]})
    assert by_prefix.status_code == 302, by_prefix.content.decode()
    run = GradingRun.objects.get()
    assert run.suite_version.entries.get().grader == graders[1]
    by_suite = client.post(url, {**base, "suite_version": version.pk})
    assert by_suite.status_code == 302
    assert GradingRun.objects.filter(suite_version=version).exists()
