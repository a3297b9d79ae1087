"""The run page says what a run waits for: a worker nobody started, a judge being retried, or
stalled items and when the sweep queues them again; and it counts tokens once."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.db.models import Sum
from django.utils import timezone

from annotation.models import Rater, Response, Verdict
from grading import services, workers
from grading.models import GradingRun, JudgeCall, Score, WorkerHeartbeat
from tests import factories
from tests.conftest import wait_for
from tests.test_api import api_client

NUMBERS = re.compile(r"(\d+) tokens in.*?(\d+) out", re.S)


def page_tokens(client, run) -> tuple[tuple[int, int], tuple[int, int]]:
    """(in, out) of the progress line and of the cost panel, as the page shows them."""
    page = client.get(f"/runs/{run.pk}/").content.decode()
    progress = re.search(r'data-testid="progress-tokens">([^<]*)<', page).group(1)
    costs = re.search(r'data-testid="cost-tokens">([^<]*)<', page).group(1)
    found = [tuple(int(n) for n in NUMBERS.search(text).groups()) for text in (progress, costs)]
    return found[0], found[1]


def call_tokens(run) -> tuple[int, int]:
    sums = JudgeCall.objects.filter(run=run).aggregate(
        p=Sum("prompt_tokens"), c=Sum("completion_tokens")
    )
    return sums["p"] or 0, sums["c"] or 0


def verdict_tokens(run) -> tuple[int, int]:
    sums = Verdict.objects.filter(run=run).aggregate(
        p=Sum("prompt_tokens"), c=Sum("completion_tokens")
    )
    return sums["p"] or 0, sums["c"] or 0


@pytest.mark.django_db(transaction=True)
def test_progress_and_cost_panel_count_the_same_tokens(personas, sim, celery_worker, client):
    p = personas
    task = factories.make_task(p.project, "tok")
    grader = factories.make_published_rubric(
        p.project, task, [("Mentions water", 2), ("Mentions rest", 1)], p.admin
    )
    factories.import_responses(
        p.project,
        [{"task_id": "tok", "model": m, "response": f"{m}: drink water"} for m in "abcdef"],
    )
    judge = factories.make_judge(p.project, sim.url)
    client.force_login(p.engineer)
    # Unreadable replies cost tokens (three asks) and leave error verdicts that carry none.
    sim.config.fault_rate, sim.config.faults, sim.config.seed = 0.8, ("malformed",), 3
    first = services.run_create(project=p.project, grader=grader, judge=judge, user=p.admin)
    wait_for(lambda: GradingRun.objects.get(pk=first.pk).is_finished, what="the first run")
    assert Verdict.objects.filter(run=first, outcome="error").exists()
    assert verdict_tokens(first) != call_tokens(first)  # the two sums this page used to show
    progress, costs = page_tokens(client, first)
    assert progress == costs == call_tokens(first) and progress[0] > 0

    # The failed items graded again (new calls), then a second run answered from the cache.
    sim.config.fault_rate = 0
    assert client.post(f"/runs/{first.pk}/retry-failed/").status_code == 302
    wait_for(
        lambda: (
            not Verdict.objects.filter(run=first, outcome="error").exists()
            and GradingRun.objects.get(pk=first.pk).is_finished
        ),
        what="the retried items",
    )
    progress, costs = page_tokens(client, first)
    assert progress == costs == call_tokens(first)
    second = services.run_create(project=p.project, grader=grader, judge=judge, user=p.admin)
    wait_for(lambda: GradingRun.objects.get(pk=second.pk).is_finished, what="the cached run")
    assert (
        JudgeCall.objects.filter(run=second).count() < Verdict.objects.filter(run=second).count()
    )  # some verdicts came from the cache
    progress, costs = page_tokens(client, second)
    assert progress == costs == call_tokens(second)

    # The session's worker says it is alive, so none of these pages warned of no worker.
    wait_for(lambda: WorkerHeartbeat.objects.exists(), what="a worker's heartbeat")
    cache.clear()
    assert workers.any_alive()


def running_run(personas, *, responses: int = 4, scored: int = 3) -> GradingRun:
    p = personas
    task = factories.make_task(p.project, "wait")
    grader = factories.make_published_rubric(p.project, task, [("Mentions water", 1)], p.admin)
    factories.import_responses(
        p.project,
        [{"task_id": "wait", "model": f"m{i}", "response": "water"} for i in range(responses)],
    )
    judge = factories.make_judge(p.project, "http://127.0.0.1:9/v1")
    run = factories.make_run(
        project=p.project,
        grader=grader,
        judge=judge,
        total_items=responses,
        status="running",
        started_at=timezone.now() - timedelta(hours=1),
    )
    rater = Rater.objects.get(pk=judge.rater_id)
    criterion = grader.version.criteria.get()
    for i, response in enumerate(Response.objects.filter(task=task).order_by("pk")):
        done = i < scored
        Score.objects.create(
            run=run,
            response=response,
            grader=grader,
            status="done" if done else "pending",
            raw=1.0 if done else None,
            finished_at=timezone.now() if done else None,
        )
        if done:
            Verdict.objects.create(
                response=response, criterion=criterion, rater=rater, run=run, outcome="met"
            )
    return run


@pytest.mark.django_db
def test_no_worker_is_said_and_a_live_one_silences_it(personas, client, settings):
    settings.ASSAY_WORKER_HEARTBEAT_S = 10
    run = running_run(personas)
    # Every worker last seen long ago (the session's worker, if any, waits on these rows
    # until this test's transaction ends).
    WorkerHeartbeat.objects.update(seen_at=timezone.now() - timedelta(minutes=5))
    cache.clear()
    client.force_login(personas.engineer)
    page = client.get(f"/runs/{run.pk}/").content.decode()
    assert 'data-testid="no-worker"' in page and "celery -A assay worker" in page
    # The progress region htmx polls says it too.
    part = client.get(f"/runs/{run.pk}/?part=progress", headers={"HX-Request": "true"})
    assert 'data-testid="no-worker"' in part.content.decode()
    api = api_client(personas.engineer)
    assert api.get(f"/api/runs/{run.pk}/").json()["workers_running"] is False

    workers.heartbeat(name="celery@test")
    cache.clear()
    assert 'data-testid="no-worker"' not in client.get(f"/runs/{run.pk}/").content.decode()
    assert api.get(f"/api/runs/{run.pk}/").json()["workers_running"] is True
    # A finished run waits for nothing.
    WorkerHeartbeat.objects.update(seen_at=timezone.now() - timedelta(minutes=5))
    cache.clear()
    GradingRun.objects.filter(pk=run.pk).update(status="completed")
    assert 'data-testid="no-worker"' not in client.get(f"/runs/{run.pk}/").content.decode()


@pytest.mark.django_db
def test_the_last_items_say_what_they_wait_for(personas, client, settings):
    settings.ASSAY_RUN_STALL_S, settings.ASSAY_RECOVERY_CHECK_S = 600, 15
    settings.TIME_ZONE = "UTC"
    run = running_run(personas, responses=4, scored=3)
    client.force_login(personas.engineer)

    def waiting() -> str:
        page = client.get(f"/runs/{run.pk}/").content.decode()
        found = re.search(r'data-testid="waiting">(.*?)</p>', page, re.S)
        return " ".join(found.group(1).split()) if found else ""

    # Stalled: nothing graded for 20 minutes; the sweep queues it again 10 min (+15 s) after.
    quiet = timezone.now() - timedelta(minutes=20)
    Verdict.objects.filter(run=run).update(created_at=quiet)
    Score.objects.filter(run=run).update(finished_at=quiet)
    said = waiting()
    due = quiet + timedelta(seconds=615)
    assert said.startswith("1 response stalled: nothing graded since")
    assert f"the stall sweep queues it again by {due:%H:%M}" in said
    told = api_client(personas.engineer).get(f"/api/runs/{run.pk}/").json()["waiting"]
    assert told["pending"] == 1 and told["stalled"] is True and told["retrying"] is False
    assert told["requeue_by"].startswith(f"{due:%Y-%m-%dT%H:%M}")
    settings.ASSAY_RUN_STALL_S = 0
    assert "the stall sweep is off (ASSAY_RUN_STALL_S=0)" in waiting()
    settings.ASSAY_RUN_STALL_S = 600

    # Graded a minute ago, and the judge's calls needed retries: waiting for the judge.
    recent = timezone.now() - timedelta(minutes=1)
    Score.objects.filter(run=run, status="done").update(finished_at=recent)
    JudgeCall.objects.create(run=run, judge=run.judge, attempts=3, prompt_tokens=10)
    said = waiting()
    assert said.startswith("1 response waiting for the judge to retry")
    assert f"by {recent + timedelta(seconds=615):%H:%M}" in said

    # No retries, near the end (3 of 4 verdicts is 75%: not near): nothing is said...
    JudgeCall.objects.filter(run=run).update(attempts=1)
    assert waiting() == ""
    # ...but with 99 of 100 verdicts written, the last response is described.
    Verdict.objects.filter(run=run).delete()
    GradingRun.objects.filter(pk=run.pk).update(total_items=100)
    rater, criterion = (
        Rater.objects.get(pk=run.judge.rater_id),
        run.sole_grader.version.criteria.get(),
    )
    response = Response.objects.filter(scores__run=run).first()
    for i in range(99):
        Verdict.objects.create(
            response=response,
            criterion=criterion,
            rater=rater,
            run=run,
            outcome="met",
            sample_index=i,
        )
    assert waiting().startswith("1 response still being graded (last verdict at")
