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


def project_with_graders(n: int, *, responses: bool = False, suite: bool = False):
    """A project with `n` tasks, each its own published rubric ("Rubric for case-<i>"), a judge,
    (with `responses`) a response to each and (with `suite`) a suite of them frozen."""
    admin = factories.make_user()
    project = factories.make_project(owner=admin)
    graders = []
    for i in range(n):
        task = factories.make_task(project, external_id=f"case-{i:03d}")
        graders.append(factories.make_published_rubric(project, task, [("Says hi", 1)], admin))
    factories.make_judge(project, "http://127.0.0.1:9/v1")
    if responses or suite:
        factories.import_responses(
            project,
            [{"task_id": f"case-{i:03d}", "model": "m", "response": "Hi."} for i in range(n)],
        )
    if suite:
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
def test_the_run_form_reads_as_many_queries_and_bytes_for_200_graders_as_for_5(client):
    few, few_admin, _ = project_with_graders(5)
    full, full_admin, _ = project_with_graders(GRADER_MATCHES + 1)
    many, many_admin, graders = project_with_graders(200)
    few_page, few_queries = page_of(client, few_admin, few)
    full_page, full_queries = page_of(client, full_admin, full)
    many_page, many_queries = page_of(client, many_admin, many)
    assert few_queries == full_queries == many_queries
    # The page grows with the graders up to the picker's few, then no more: 200 graders weigh
    # what 21 do, to a few bytes (names of the same length; ids may differ in digits), while a
    # hash alone is 64 bytes.
    assert abs(len(many_page) - len(full_page)) < 64, (len(many_page), len(full_page))
    assert len(many_page) - len(few_page) < (GRADER_MATCHES - 5 + 1) * 200
    listed = RADIO.findall(many_page)
    assert len(listed) == GRADER_MATCHES  # not 200
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
        reply = client.get(url, {"grader_q": q}, HTTP_HX_REQUEST="true")
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
    url = reverse("run_grader_search", args=[personas.project.slug])
    reply = client.get(url, {"grader_q": ""})
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


@pytest.mark.django_db
def test_without_javascript_the_search_box_takes_a_hash_a_prefix_or_a_name(client):
    """No script runs: the box is a plain text field sent with the form, and the first radio
    stays picked (no suite). What the box names wins over a radio it does not match; several
    matches are listed to pick from; a radio among the box's matches is what was picked."""
    project, admin, graders = project_with_graders(GRADER_MATCHES + 5, responses=True)
    client.force_login(admin)
    url = reverse("runs", args=[project.slug])
    judge = project.judges.get()
    first = RADIO.findall(page_of(client, admin, project)[0])[0]
    assert first == graders[0].hash
    base = {"judge": judge.pk, "mode": "per_criterion", "samples": 1, "grader": first}

    def started(**fields) -> str:
        reply = client.post(url, {**base, **fields})
        errors = re.findall(r'class="errorlist[^\n]{0,300}', reply.content.decode())
        assert reply.status_code == 302, errors
        run = GradingRun.objects.order_by("-pk").first()
        return run.suite_version.entries.get().grader.hash

    assert started(grader_q=graders[7].hash[:12].upper()) == graders[7].hash
    assert started(grader_q=f"  {graders[9].hash}  ") == graders[9].hash
    assert started(grader_q="case-011") == graders[11].hash  # a task's external id
    assert started(grader_q="Rubric for CASE-013") == graders[13].hash  # a title
    # The box named several (case-010 .. case-019): the radio picked among them is the one.
    assert started(grader=graders[14].hash, grader_q="case-01") == graders[14].hash

    runs = GradingRun.objects.count()
    several = client.post(url, {**base, "grader_q": "case-01"}).content.decode()
    assert "Several published rubric versions match “case-01”" in several
    # ... and the page lists those, the box keeping the text, for a second submit to pick.
    assert RADIO.findall(several) == [graders[i].hash for i in range(10, 20)]
    assert 'value="case-01"' in several
    none = client.post(url, {**base, "grader_q": "no such rubric"}).content.decode()
    assert "No published rubric version matches “no such rubric”." in none
    assert "Publish a rubric first" not in none  # the form stays, with its error
    hostile = client.post(url, {**base, "grader_q": "<b>x</b>' OR 1=1 --%"}).content.decode()
    assert "&lt;b&gt;x&lt;/b&gt;" in hostile and "<b>x</b>" not in hostile
    long = client.post(url, {**base, "grader_q": "x" * 10_000})
    assert long.status_code == 200
    assert "Type at most 200 characters" in long.content.decode()
    too_long = client.post(url, {**base, "grader": "a" * 65})
    assert "A grader hash has 64 characters." in too_long.content.decode()
    assert GradingRun.objects.count() == runs
