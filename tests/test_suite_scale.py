"""A suite run's pages make as many queries over 60 tasks as over 5: no query per task, per
response or per score (issue 15, "Speed and scale"). The rows are written directly (no
worker): a suite frozen over published rubrics, a completed run over it for two models, a
score per response by its task's pinned grader, and a verdict per response."""

from __future__ import annotations

import random
import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from annotation.models import Response, Verdict
from grading import services as grading_services
from grading.models import GradingRun, Score
from rubrics import suites
from tests import factories

MODELS = ("model-a", "model-b")
FEW, MANY = 5, 60


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def suite_run(n_tasks: int, *, criteria_of=lambda i: 2 + i % 3, runs: int = 1):
    """A project whose suite of `n_tasks` tasks (each its own grader) is frozen, and `runs`
    completed runs over that version, for two models, with scores and verdicts. The newest
    run, its project and its admin."""
    project, version, judge, admin, _ = factories.frozen_suite(
        n_tasks, models=MODELS, criteria_of=criteria_of
    )
    pinned = suites.pinned_graders(version)
    rng = random.Random(n_tasks)
    responses = list(Response.objects.filter(task__project=project).order_by("pk"))
    now = timezone.now()
    for _ in range(runs):
        run = GradingRun.objects.create(
            project=project,
            suite_version=version,
            judge=judge,
            created_by=admin,
            status=GradingRun.Status.COMPLETED,
            total_items=len(responses),
            started_at=now,
            finished_at=now,
        )
        Score.objects.bulk_create(
            Score(
                run=run,
                response=r,
                grader_id=pinned[r.task_id],
                status=Score.Status.DONE,
                raw=rng.uniform(-0.2, 1.0),
                met_points=1,
                possible_points=2,
                by_tag={"axis:accuracy": rng.random()},
                finished_at=now,
            )
            for r in responses
        )
        first_criteria = {
            e.task_id: e.grader.spec["criteria"][0]["id"]
            for e in version.entries.select_related("grader")
        }
        Verdict.objects.bulk_create(
            Verdict(
                response=r,
                criterion_id=first_criteria[r.task_id],
                rater_id=judge.rater_id,
                grader_id=pinned[r.task_id],
                run=run,
                outcome=Verdict.Outcome.ERROR if i == 0 else Verdict.Outcome.MET,
                error="timeout: the judge took too long" if i == 0 else "",
                explanation="Stored by the test.",
            )
            for i, r in enumerate(responses)
        )
    return run, project, admin


def queries(client, user, url: str) -> int:
    client.force_login(user)
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
    assert response.status_code == 200, response.content[:500]
    return len(ctx.captured_queries)


def describe(client, user, url) -> str:
    client.force_login(user)
    with CaptureQueriesContext(connection) as ctx:
        client.get(url)
    return "\n".join(q["sql"][:200] for q in ctx.captured_queries)


@pytest.mark.django_db
def test_the_run_page_of_a_suite_run_reads_in_as_many_queries_for_60_tasks_as_for_5(client):
    few, _, few_admin = suite_run(FEW)
    many, _, many_admin = suite_run(MANY)
    assert many.scores.count() == MANY * len(MODELS) > 50  # more than one page of scores
    url_few, url_many = reverse("run", args=[few.pk]), reverse("run", args=[many.pk])
    n_few, n_many = queries(client, few_admin, url_few), queries(client, many_admin, url_many)
    assert n_few == n_many, describe(client, many_admin, url_many)
    # The second page of scores too, and the page again (the summaries are then cached).
    assert queries(client, many_admin, f"{url_many}?page=2") <= n_many
    assert queries(client, many_admin, url_many) <= n_many


@pytest.mark.django_db
def test_the_runs_list_reads_in_as_many_queries_for_60_tasks_as_for_5(client):
    _, few_project, few_admin = suite_run(FEW)
    _, many_project, many_admin = suite_run(MANY, runs=3)
    n_few = queries(client, few_admin, reverse("runs", args=[few_project.slug]))
    url = reverse("runs", args=[many_project.slug])
    n_many = queries(client, many_admin, url)
    assert n_few == n_many, describe(client, many_admin, url)


@pytest.mark.django_db
def test_the_suite_page_reads_in_as_many_queries_for_60_tasks_as_for_5(client):
    few, _, few_admin = suite_run(FEW)
    many, _, many_admin = suite_run(MANY, runs=3)
    n_few = queries(client, few_admin, reverse("suite", args=[few.suite_version.suite_id]))
    url = reverse("suite", args=[many.suite_version.suite_id])
    n_many = queries(client, many_admin, url)
    assert n_few == n_many, describe(client, many_admin, url)


def page_text(client, user, url: str) -> str:
    client.force_login(user)
    response = client.get(url)
    assert response.status_code == 200
    return response.content.decode()


@pytest.mark.django_db
def test_a_completed_runs_counts_are_read_once_and_again_when_it_is_retried(client):
    """The run page keeps a completed run's counts under its finish time: the second view
    reads fewer rows, and retrying its failed items (which reopens it, then finishes it
    again) shows the new counts, never the kept ones."""
    run, _, admin = suite_run(FEW)
    url = reverse("run", args=[run.pk])
    total = FEW * len(MODELS)
    first = queries(client, admin, url)
    assert queries(client, admin, url) < first
    text = page_text(client, admin, url)
    assert f"{total} of {total} verdicts" in text
    assert "1 error" in text and 'data-testid="errors"' in text

    assert grading_services.run_retry_failed(run=run) == 1
    text = page_text(client, admin, url)
    assert f"{total - 1} of {total} verdicts" in text
    assert "1 error" not in text and 'data-testid="errors"' not in text
    # A worker grades the item again (as the judge met it) and the run finishes again.
    failed = Score.objects.filter(run=run, status=Score.Status.PENDING).get()
    Verdict.objects.create(
        response_id=failed.response_id,
        criterion_id=failed.grader.spec["criteria"][0]["id"],
        rater_id=run.judge.rater_id,
        grader_id=failed.grader_id,
        run=run,
        outcome=Verdict.Outcome.MET,
    )
    Score.objects.filter(pk=failed.pk).update(status=Score.Status.DONE, raw=1.0)
    assert grading_services.run_finish_if_done(run_id=run.pk)
    text = page_text(client, admin, url)
    assert f"{total} of {total} verdicts" in text
    assert "1 error" not in text and 'data-testid="errors"' not in text


@pytest.mark.django_db
def test_a_completed_runs_scores_are_paged_in_task_and_model_order(client):
    run, _, admin = suite_run(MANY)
    url = reverse("run", args=[run.pk])
    expected = [f"t-{i:03d}" for i in range(MANY) for _ in MODELS]
    seen = []
    for page in (1, 2, 3):
        text = page_text(client, admin, f"{url}?page={page}")
        seen += re.findall(r"<tr><td>(t-\d{3})</td><td>(model-[ab])</td>", text)
    assert [t for t, _ in seen] == expected
    assert [m for _, m in seen] == list(MODELS) * MANY


@pytest.mark.django_db
def test_the_leaderboard_api_reads_in_as_many_queries_for_60_tasks_as_for_5(client):
    few, _, few_admin = suite_run(FEW)
    many, _, many_admin = suite_run(MANY)
    for name, of in (
        ("api_run_leaderboard", lambda run: run.pk),
        ("api_suite_leaderboard", lambda run: run.suite_version.suite_id),
    ):
        n_few = queries(client, few_admin, reverse(name, args=[of(few)]))
        url = reverse(name, args=[of(many)])
        n_many = queries(client, many_admin, url)
        assert n_few == n_many, (name, describe(client, many_admin, url))
