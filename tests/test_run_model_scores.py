"""A completed run's score per model is stored on it when it completes (GradingRun.model_scores,
grading.results.leaderboard.model_scores): the suite page, the runs list, the run page, the API
and the CLI read them instead of bootstrapping every run; reopening the run clears them and
completing it again stores them again. The runs are completed as the worker completes them
(grading.services.run_finish_if_done) over scores written directly (no judge)."""

from __future__ import annotations

import random

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from annotation.models import Response, Verdict
from grading import selectors, services
from grading.models import GradingRun, Score
from grading.results import leaderboard
from rubrics import suites
from tests import factories

MODELS = ("model-a", "model-b")


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def finished_runs(n_tasks: int, runs: int, *, error_first: bool = False):
    """A frozen suite of `n_tasks` tasks and `runs` runs over it, each with every score done
    (other raws each run) and then completed as the worker completes a run. With
    `error_first`, each run's first response has an error verdict and no raw. (runs oldest
    first, admin.)"""
    project, version, judge, admin, _ = factories.frozen_suite(n_tasks, models=MODELS)
    pinned = suites.pinned_graders(version)
    first_criteria = {
        e.task_id: e.grader.spec["criteria"][0]["id"]
        for e in version.entries.select_related("grader")
    }
    responses = list(Response.objects.filter(task__project=project).order_by("pk"))
    rng = random.Random(n_tasks * 100 + runs)
    made = []
    for _ in range(runs):
        now = timezone.now()
        run = GradingRun.objects.create(
            project=project,
            suite_version=version,
            judge=judge,
            created_by=admin,
            status=GradingRun.Status.RUNNING,
            total_items=len(responses),
            started_at=now,
        )
        failed = {responses[0].pk} if error_first else set()
        Score.objects.bulk_create(
            Score(
                run=run,
                response=r,
                grader_id=pinned[r.task_id],
                status=Score.Status.DONE,
                raw=None if r.pk in failed else rng.uniform(-0.2, 1.0),
                error_count=1 if r.pk in failed else 0,
                finished_at=now,
            )
            for r in responses
        )
        Verdict.objects.bulk_create(
            Verdict(
                response=r,
                criterion_id=first_criteria[r.task_id],
                rater_id=judge.rater_id,
                grader_id=pinned[r.task_id],
                run=run,
                outcome=Verdict.Outcome.ERROR if r.pk in failed else Verdict.Outcome.MET,
                error="timeout: the judge took too long" if r.pk in failed else "",
            )
            for r in responses
        )
        assert services.run_finish_if_done(run_id=run.pk)
        run.refresh_from_db()
        made.append(run)
    return made, admin


def first_view(client, user, url: str) -> tuple[int, str]:
    """The page's queries and text with an empty cache (a web process's first view)."""
    cache.clear()
    client.force_login(user)
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
    assert response.status_code == 200, response.content[:500]
    return len(ctx.captured_queries), response.content.decode()


@pytest.mark.django_db
def test_a_completed_runs_stored_scores_equal_its_scores_computed_afresh():
    runs, _ = finished_runs(6, 2, error_first=True)
    for run in runs:
        assert run.status == GradingRun.Status.COMPLETED and run.model_scores is not None
        stored = leaderboard.scores_from_json(run.model_scores)
        computed = leaderboard.compute_model_scores([run.pk])[run.pk]
        assert stored == computed  # exactly: the floats round-trip through JSON
        assert [s.model for s in stored] == list(MODELS)
        assert all(s.ci is not None and s.tasks == s.n for s in stored)  # one a task
        assert stored[0].n == 5 and stored[1].n == 6  # the response in error is not scored
    # Read from the runs themselves: no query, and the same figures.
    with CaptureQueriesContext(connection) as ctx:
        shown = leaderboard.model_scores(runs)
    assert not ctx.captured_queries
    assert shown == leaderboard.compute_model_scores([r.pk for r in runs])


@pytest.mark.django_db
def test_the_suite_pages_first_view_reads_the_stored_scores_in_as_many_queries_for_10_runs_as_2(
    client,
):
    few, few_admin = finished_runs(4, 2)
    many, many_admin = finished_runs(4, 10)
    few_url = reverse("suite", args=[few[0].suite_version.suite_id])
    many_url = reverse("suite", args=[many[0].suite_version.suite_id])
    n_few, _ = first_view(client, few_admin, few_url)
    n_many, text = first_view(client, many_admin, many_url)
    assert n_few == n_many
    for run in many:
        for s in leaderboard.scores_from_json(run.model_scores):
            assert f"{s.model}: {s.mean:.2f} ({s.n}) [" in text
    # What the page shows of a run is its stored figures, not its scores bootstrapped again:
    # a figure no score could give shows (the runs list's too).
    oldest = many[0]
    stored = oldest.model_scores
    stored[0].update(mean=0.123456, n=77, ci=[0.01, 0.02])
    GradingRun.objects.filter(pk=oldest.pk).update(model_scores=stored)
    n_again, text = first_view(client, many_admin, many_url)
    assert n_again == n_many
    assert f"{MODELS[0]}: 0.12 (77) [0.01" in text
    _, listed = first_view(client, many_admin, reverse("runs", args=[oldest.project.slug]))
    assert f"{MODELS[0]} 0.123</span>" in listed


@pytest.mark.django_db
def test_retrying_a_completed_runs_failed_items_clears_its_stored_scores_and_stores_new_ones():
    [run], _ = finished_runs(5, 1, error_first=True)
    before = leaderboard.scores_from_json(run.model_scores)
    assert before[0].n == 4

    assert services.run_retry_failed(run=run) == 1
    run.refresh_from_db()
    assert run.status == GradingRun.Status.RUNNING and run.model_scores is None
    # While it runs again, its scores are computed from its scores as they are.
    assert leaderboard.model_scores([run])[run.pk] == before

    # A worker grades the item again (met) and the run completes again.
    failed = Score.objects.filter(run=run, status=Score.Status.PENDING).get()
    Verdict.objects.create(
        response_id=failed.response_id,
        criterion_id=failed.grader.spec["criteria"][0]["id"],
        rater_id=run.judge.rater_id,
        grader_id=failed.grader_id,
        run=run,
        outcome=Verdict.Outcome.MET,
    )
    Score.objects.filter(pk=failed.pk).update(status=Score.Status.DONE, raw=1.0, error_count=0)
    assert services.run_finish_if_done(run_id=run.pk)
    run.refresh_from_db()
    after = leaderboard.scores_from_json(run.model_scores)
    assert after == leaderboard.compute_model_scores([run.pk])[run.pk]
    assert after[0].n == 5 and after != before
    assert leaderboard.model_scores([run])[run.pk] == after
    summaries = {s.model: s for s in selectors.model_summaries(run)}
    assert summaries[MODELS[0]].score == after[0]


@pytest.mark.django_db
def test_resuming_a_cancelled_run_clears_stored_scores_until_it_completes_again():
    [run], _ = finished_runs(3, 1)
    # A completed run cannot be resumed; a cancelled one reopens, and is completed again by
    # the worker's chunk that finds nothing pending.
    GradingRun.objects.filter(pk=run.pk).update(
        status=GradingRun.Status.CANCELLED, model_scores=[{"stale": True}]
    )
    run.refresh_from_db()
    assert services.run_resume(run=run)
    run.refresh_from_db()
    assert run.status == GradingRun.Status.RUNNING and run.model_scores is None
    assert services.run_finish_if_done(run_id=run.pk)
    run.refresh_from_db()
    assert (
        leaderboard.scores_from_json(run.model_scores)
        == (leaderboard.compute_model_scores([run.pk])[run.pk])
    )
