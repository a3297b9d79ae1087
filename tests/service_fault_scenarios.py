"""Service faults during a grading run, one scenario per test, run by tests/test_service_faults.py
in a pytest subprocess whose DATABASE_URL and CELERY_BROKER_URL point at a private PostgreSQL
and a private Redis (tests/private_services.py), which these scenarios stop, kill and restart.
(Not collected on its own: the name does not start with test_.)

Each run grades 18 responses x 10 criteria on the judge simulator at 300 ms a call, so it is
mid-flight when the fault hits; each scenario ends with the run complete, exactly one verdict
per item, every verdict as the simulator's rule predicts, no error verdicts, and the scores
right. While the fault lasts, the run page is fetched and must tell the truth.
"""

from __future__ import annotations

import re
import time

import pytest
import redis
from django.conf import settings
from django.db import connection
from django.db.models import Sum

from annotation.models import Verdict
from grading import services
from grading.models import GradingRun, JudgeCall, Score
from tests import factories
from tests.conftest import wait_for
from tests.private_services import from_env
from tests.test_grading_engine import (
    assert_one_verdict_per_item,
    assert_scores,
    assert_verdicts_follow_the_rule,
    setup_project,
    wait_finished,
)

pytestmark = pytest.mark.django_db(transaction=True)

PROGRESS = re.compile(r"(\d+) of (\d+) verdicts")


def start_run(personas, sim):
    grader, expected = setup_project(personas, responses_per_model=6)
    sim.config.latency_ms = 300
    judge = factories.make_judge(personas.project, sim.url, max_concurrency=4)
    run = services.run_create(
        project=personas.project, grader=grader, judge=judge, user=personas.admin
    )
    assert run.total_items == 180
    wait_for(lambda: Verdict.objects.filter(run=run).count() >= 30, what="the run under way")
    return run, expected


def page_progress(client, run, verdicts_before: int) -> str:
    """Fetch the run page (and its htmx progress region): it must answer, say the run is still
    running, and count no more verdicts than the database holds and no fewer than it held."""
    for url, headers in (
        (f"/runs/{run.pk}/", {}),
        (f"/runs/{run.pk}/?part=progress", {"HX-Request": "true"}),
    ):
        response = client.get(url, headers=headers)
        assert response.status_code == 200, url
        html = response.content.decode()
        verdicts_after = Verdict.objects.filter(run=run).count()
        done, total = map(int, PROGRESS.search(html).groups())
        assert total == 180
        assert verdicts_before <= done <= verdicts_after, (verdicts_before, done, verdicts_after)
        status = re.search(r'data-testid="run-status">([^<]*)<', html).group(1)
        assert status == "Running", (url, status, done)
        verdicts_before = verdicts_after
    return html


def wait_complete(run) -> None:
    try:
        wait_finished(run, timeout=90)
    except AssertionError:
        run.refresh_from_db()
        pending = list(
            Score.objects.filter(run=run, status="pending").values_list("response_id", flat=True)
        )
        verdicts = Verdict.objects.filter(run=run).count()
        raise AssertionError(
            f"run {run.pk} is {run.status} with {verdicts} verdicts; pending responses {pending}"
        ) from None


def assert_finished_cleanly(run, expected, client):
    assert_one_verdict_per_item(run)
    assert Verdict.objects.filter(run=run).count() == run.total_items == 180
    assert_verdicts_follow_the_rule(run)
    assert not Verdict.objects.filter(run=run, outcome="error").exists()
    assert_scores(run, expected)
    html = client.get(f"/runs/{run.pk}/").content.decode()
    assert 'data-testid="run-status">Completed<' in html
    assert "180 of 180 verdicts" in html
    assert 'data-testid="broker-down"' not in html


def test_redis_restarted_mid_run(personas, sim, celery_worker, client):
    """Redis (no persistence) is killed and started again empty: the queued tasks and the
    judge's limits are gone. Tasks in flight wait for Redis and finish; the first worker to see
    the empty broker queues every pending response again, and starts the run that was created
    while the broker was away."""
    _, private_redis = from_env()
    client.force_login(personas.engineer)
    run, expected = start_run(personas, sim)
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    queued = broker.llen(celery_worker.queue)
    assert queued > 0  # tasks wait in the broker: the restart will lose them
    private_redis.kill()
    # A run created while the broker is away is saved, queued, and started once it is back.
    second = services.run_create(
        project=personas.project, grader=run.sole_grader, judge=run.judge, user=personas.admin
    )
    down_until = time.monotonic() + 3
    while time.monotonic() < down_until:
        html = page_progress(client, run, Verdict.objects.filter(run=run).count())
        assert 'data-testid="broker-down"' in html
        time.sleep(0.5)
    second.refresh_from_db()
    assert second.status == "queued"
    private_redis.start()
    wait_complete(run)
    assert_finished_cleanly(run, expected, client)
    wait_complete(second)
    assert_finished_cleanly(second, expected, client)


def test_postgresql_restarted_mid_run(personas, sim, celery_worker, client):
    """PostgreSQL stops (immediate: a crash) and starts again. The run page answers 503 with a
    plain message meanwhile; tasks hold their judges' answers until the database is back and
    write them then, so no verdict is lost and no judge call is made twice."""
    private_pg, _ = from_env()
    client.force_login(personas.engineer)
    run, expected = start_run(personas, sim)
    private_pg.stop("immediate")
    try:
        down_until = time.monotonic() + 3
        while time.monotonic() < down_until:
            for url, headers in (
                (f"/runs/{run.pk}/", {}),
                (f"/runs/{run.pk}/?part=progress", {"HX-Request": "true"}),
            ):
                response = client.get(url, headers=headers)
                assert response.status_code == 503, url
                assert response["Content-Type"].startswith("text/plain")
                assert "database is not answering" in response.content.decode()
                assert response["Retry-After"]
            time.sleep(0.5)
    finally:
        private_pg.start()
    connection.close()  # this test's own connection died with the server
    assert GradingRun.objects.get(pk=run.pk).status == "running"
    page_progress(client, run, Verdict.objects.filter(run=run).count())
    wait_complete(run)
    assert_finished_cleanly(run, expected, client)
    # No judge answer was thrown away and asked again: every request the judge saw belongs to
    # a stored call, and the stored calls judged each item once.
    calls = JudgeCall.objects.filter(run=run).aggregate(items=Sum("criteria"), sent=Sum("attempts"))
    assert calls["items"] == 180
    assert sim.stats.requests == calls["sent"]


def test_worker_killed_mid_run(personas, sim, celery_worker, client):
    """The worker and its pool are killed with -9 and a new one starts, with nobody pressing
    Resume: its recovery sweep sees the run stalled and queues the pending responses again
    (the dead worker's unacknowledged tasks would come back only after an hour)."""
    client.force_login(personas.engineer)
    run, expected = start_run(personas, sim)
    celery_worker.kill()
    at_kill = Verdict.objects.filter(run=run).count()
    assert at_kill < run.total_items
    html = page_progress(client, run, at_kill)
    assert 'data-testid="broker-down"' not in html  # the broker is fine: no false alarm
    celery_worker.start()
    wait_complete(run)
    assert_finished_cleanly(run, expected, client)
