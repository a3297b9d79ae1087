"""The RabbitMQ path of `.env.example`: the web side queues a run on amqp://, a real worker on
amqp:// grades it against the simulator, and every score is the simulator's rule. The rest
of the suite runs on Redis; this is the deployment without Redis at all (no ASSAY_REDIS_URL,
so judge limits are per worker process and cancel flags are read from the database)."""

from __future__ import annotations

import os
import socket
import uuid
from datetime import timedelta

import pytest
from django.conf import settings
from django.test import override_settings
from django.utils import timezone

from annotation.models import Verdict
from grading import broker, services
from grading.judges.simulator import simulated_verdict
from grading.models import GradingRun, Score
from tests import factories
from tests.conftest import broker_answers, celery_app_on, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

# RabbitMQ's default vhost, as .env.example writes it; the worker's queue is the session's
# own name (deleted after), so parallel test sessions on one RabbitMQ do not meet.
AMQP_URL = os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")

# Two tasks, each its own rubric: criteria whose key words the simulator can find.
RUBRICS = {
    "fever": [
        ("Advises hydration with electrolyte solution", 5),
        ("Recommends urgent evaluation for persistent vomiting", 4),
        ("Suggests monitoring temperature regularly", 2),
        ("Prescribes codeine syrup dosage", -4),
    ],
    "sprain": [
        ("Recommends elevating the injured ankle", 3),
        ("Advises applying compression bandage", 2),
        ("Warns against immediate weight bearing", 4),
        ("Mentions fracture possibility requiring xrays", 1),
        ("Suggests strenuous running tomorrow", -2),
    ],
}
# Which criteria (by index) each model's response to each task meets.
PLANS = {
    ("fever", "strong"): [0, 1, 2],
    ("fever", "weak"): [2, 3],
    ("sprain", "strong"): [0, 2, 3],
    ("sprain", "weak"): [1, 4],
}


def response_text(criteria: list[tuple[str, int]], met: list[int]) -> str:
    return "Answer: " + ". ".join(criteria[i][0] for i in met) + "."


def predicted_score(criteria: list[tuple[str, int]], text: str) -> float:
    """The score the simulator's rule gives `text`: points of the criteria it meets over the
    positive points."""
    positive = sum(p for _, p in criteria if p > 0)
    return sum(p for c, p in criteria if simulated_verdict(c, text)[0]) / positive


def test_a_run_queued_and_graded_on_rabbitmq_scores_by_the_simulator_rule(
    personas, sim, worker_on_broker
):
    worker = worker_on_broker(AMQP_URL)
    # This process now queues on RabbitMQ too, as the web would with that broker URL.
    assert settings.CELERY_BROKER_URL == AMQP_URL and not settings.ASSAY_REDIS_URL

    project, admin = personas.project, personas.admin
    graders, rows, expected = [], [], {}
    for task_id, criteria in RUBRICS.items():
        task = factories.make_task(project, external_id=task_id)
        graders.append(factories.make_published_rubric(project, task, criteria, admin))
        for model in ("strong", "weak"):
            met = PLANS[(task_id, model)]
            text = response_text(criteria, met)
            # The rule meets exactly the planned criteria, so the scores below are not vacuous.
            assert [i for i, (c, _) in enumerate(criteria) if simulated_verdict(c, text)[0]] == met
            rows.append({"task_id": task_id, "model": model, "response": text})
            expected[(task_id, model)] = predicted_score(criteria, text)
    assert len(set(expected.values())) == len(expected)  # every response scores differently
    factories.import_responses(project, rows)
    judge = factories.make_judge(project, sim.url, max_concurrency=4)

    runs = [
        services.run_create(project=project, grader=g, judge=judge, user=admin) for g in graders
    ]
    for run in runs:
        wait_for(
            lambda run=run: GradingRun.objects.get(pk=run.pk).status == "completed",
            timeout=120,
            what=f"run {run.pk} to complete on RabbitMQ",
        )

    criteria_count = sum(len(c) for c in RUBRICS.values())
    assert Verdict.objects.filter(run__in=runs).count() == 2 * criteria_count
    assert not Verdict.objects.filter(run__in=runs, outcome="error").exists()
    assert sim.stats.requests == 2 * criteria_count
    scores = Score.objects.filter(run__in=runs).select_related("response__task")
    assert scores.count() == len(expected)
    for score in scores:
        key = (score.response.task.external_id, score.response.model)
        assert score.raw == pytest.approx(expected[key]), key

    # The amqp worker did the grading: it connected to RabbitMQ and ran one task per response.
    log = worker.log.read_text()
    assert "Connected to amqp://guest:**@127.0.0.1:5672//" in log or "TEST_AMQP_URL" in os.environ
    assert log.count("grading.tasks.grade_response[") >= 2 * len(expected)  # received, succeeded
    assert log.count("grading.tasks.run_start[") >= 2 * len(runs)


def test_the_sweep_reads_how_many_tasks_wait_on_rabbitmq():
    """`broker.queued_tasks` on amqp:// asks RabbitMQ with a passive queue.declare: the tasks
    Celery queued and nobody took, 0 for a queue never declared, and a broker error (never a
    wrong count) when RabbitMQ is away. The recovery sweep then waits for the backlog."""
    if why := broker_answers(AMQP_URL):
        pytest.fail(f"{why}: start it (.ci/run shows how).")
    queue = f"assay-depth-{uuid.uuid4().hex[:8]}"  # no worker consumes it
    with celery_app_on(AMQP_URL) as app:
        try:
            assert broker.queued_tasks(queue) == 0  # not declared: nothing waits, nothing made
            for n in range(3):
                app.send_task("grading.tasks.run_start", args=[n], queue=queue)
            wait_for(lambda: broker.queued_tasks(queue) == 3, timeout=10, what="3 tasks queued")
            with override_settings(CELERY_TASK_DEFAULT_QUEUE=queue, ASSAY_RUN_STALL_S=60):
                assert broker.queued_tasks() == 3
                # Tasks wait: no run is taken for stalled while its turn may not have come.
                assert services.recovery_check() is None
        finally:
            with app.connection_for_write(connect_timeout=3) as conn:
                conn.default_channel.queue_delete(queue)
                conn.default_channel.exchange_delete(queue)

    # RabbitMQ away: a port nothing listens on (taken from the system, then let go).
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    away = f"amqp://guest:guest@127.0.0.1:{port}//"
    with override_settings(CELERY_BROKER_URL=away), pytest.raises(broker.BROKER_DOWN):
        broker.queued_tasks(queue)


def test_a_workers_sweep_on_rabbitmq_queues_the_responses_of_a_stalled_run_again(
    personas, sim, worker_on_broker, monkeypatch
):
    """A run whose tasks never reached RabbitMQ (left to the sweep while the broker was away):
    running, its responses pending, no verdict for longer than ASSAY_RUN_STALL_S. The amqp
    worker's own recovery sweep reads the queue's depth there (0: nothing waits its turn),
    queues the responses again, and the run completes by the simulator's rule."""
    monkeypatch.setenv("ASSAY_RUN_STALL_S", "3")
    monkeypatch.setenv("ASSAY_RECOVERY_CHECK_S", "1")
    worker = worker_on_broker(AMQP_URL)
    project, admin = personas.project, personas.admin
    criteria = RUBRICS["fever"]
    task = factories.make_task(project, external_id="fever")
    grader = factories.make_published_rubric(project, task, criteria, admin)
    expected = {}
    for model in ("strong", "weak"):
        text = response_text(criteria, PLANS[("fever", model)])
        factories.import_responses(
            project, [{"task_id": "fever", "model": model, "response": text}]
        )
        expected[model] = predicted_score(criteria, text)
    judge = factories.make_judge(project, sim.url, max_concurrency=4)
    run = services.run_create(project=project, grader=grader, judge=judge, user=admin, start=False)
    assert services.run_start(run_id=run.pk, enqueue=False) == 2  # running; nothing queued
    GradingRun.objects.filter(pk=run.pk).update(started_at=timezone.now() - timedelta(seconds=60))
    assert broker.queued_tasks() == 0  # on RabbitMQ, where the sweep reads it

    wait_for(
        lambda: GradingRun.objects.get(pk=run.pk).status == "completed",
        timeout=120,
        what=f"the sweep to queue run {run.pk} again and the worker to complete it",
    )
    scores = {s.response.model: s.raw for s in run.scores.select_related("response")}
    assert scores == pytest.approx(expected)
    assert Verdict.objects.filter(run=run).count() == 2 * len(criteria)
    assert f"'requeued': [{run.pk}]" in worker.log.read_text()
