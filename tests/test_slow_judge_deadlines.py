"""A slow judge stalls nothing: a run's items end at their deadline in a real worker, a reward
request at its own deadline, and requests waiting on such a judge never hold every thread of a
gunicorn process that also serves pages (tests/slow_judges.py serves the slow judges)."""

from __future__ import annotations

import http.client
import json
import re
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from annotation.models import Verdict
from grading import services
from grading.judges.limits import key, redis_client
from grading.models import GradingRun, JudgeCall
from rubrics.tokens import token_create
from tests import factories
from tests.conftest import WorkerProcess, _worker_env, wait_for
from tests.slow_judges import SlowJudge

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parent.parent
CRITERIA = [("Mentions hydration and electrolytes", 5), ("Mentions urgent evaluation", 3)]
SLACK_S = 1.0
READING = re.compile(
    r"^timeout: judge call exceeded its deadline of [\d.]+ s while reading the reply$"
)


@pytest.fixture
def trickle():
    judge = SlowJudge("trickle")
    yield judge
    judge.close()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- Runs, in a real worker ------------------------------------------------------------


@pytest.fixture
def deadline_worker(monkeypatch):
    """A worker of its own whose items have 3 s (a call alone may take 30): on a queue of its
    own, so no other worker of the session takes this test's tasks."""
    from assay.celery import app

    queue = f"assay-test-deadline-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("ASSAY_JUDGE_ITEM_DEADLINE_S", "3")
    monkeypatch.setenv("ASSAY_JUDGE_TIMEOUT_S", "30")
    before = app.conf.task_default_queue
    app.conf.task_default_queue = queue
    worker = WorkerProcess(queue)
    try:
        worker.start()
        yield worker
    finally:
        worker.stop()
        app.conf.task_default_queue = before


def test_a_runs_items_end_at_their_deadline_on_a_trickling_judge(
    personas, trickle, deadline_worker
):
    project, admin = personas.project, personas.admin
    task = factories.make_task(project, external_id="t-slow")
    grader = factories.make_published_rubric(project, task, CRITERIA, admin)
    factories.import_responses(
        project, [{"task_id": "t-slow", "model": "m", "response": "Drink water."}]
    )
    judge = factories.make_judge(project, trickle.url)
    started = time.monotonic()
    run = services.run_create(project=project, grader=grader, judge=judge, user=admin)
    wait_for(
        lambda: GradingRun.objects.get(pk=run.pk).status == "completed",
        timeout=30,
        what="the run to complete",
    )
    elapsed = time.monotonic() - started
    # 3 s of judge calls, plus the task's queueing and the worker's own work.
    assert elapsed < 3 + 4, elapsed
    verdicts = list(Verdict.objects.filter(run=run))
    assert len(verdicts) == 2 and all(v.outcome == "error" for v in verdicts)
    assert all(READING.match(v.error) for v in verdicts), [v.error for v in verdicts]
    trickle.wait_all_closed()
    assert len(trickle.served) == 2  # one call each, no retry past the deadline
    assert max(trickle.served) <= 3 + SLACK_S + 1.5
    assert redis_client().zcard(key(judge.pk, "inflight")) == 0


# --- The reward endpoint, in this process ----------------------------------------------


@pytest.mark.parametrize("mode", ["per_criterion", "batched"])
def test_a_reward_request_ends_at_its_deadline_on_a_trickling_judge(
    personas, trickle, settings, mode
):
    from tests.test_api import api_client

    settings.REWARD_DEADLINE_S = 2
    settings.JUDGE_TIMEOUT_S = 30  # a call alone may take longer: the request's deadline bounds
    task = factories.make_task(personas.project, "t-reward")
    grader = factories.make_published_rubric(personas.project, task, CRITERIA, personas.admin)
    judge = factories.make_judge(personas.project, trickle.url)
    client = api_client(personas.engineer)
    # An empty response makes no judge call: the process's first request (imports, the URL
    # conf) is not what is timed.
    warm = {"task": "t-reward", "responses": [""], "mode": mode}
    assert client.post(f"/api/graders/{grader.hash}/score/", warm, format="json").status_code == 200
    started = time.monotonic()
    reply = client.post(
        f"/api/graders/{grader.hash}/score/",
        {"task": "t-reward", "responses": ["Drink water."], "mode": mode},
        format="json",
    )
    elapsed = time.monotonic() - started
    assert reply.status_code == 200, reply.content
    assert elapsed <= 2 + SLACK_S, elapsed
    (result,) = reply.json()
    assert result["score"] is None
    assert [v["outcome"] for v in result["verdicts"]] == ["error", "error"]
    assert all(READING.match(v["error"]) for v in result["verdicts"]), result
    # Every lease went back, and the calls' cost rows say why they failed.
    assert redis_client().zcard(key(judge.pk, "inflight")) == 0
    assert set(JudgeCall.objects.values_list("error", flat=True)) == {"timeout"}
    trickle.wait_all_closed()


# --- Pages keep answering while reward requests hang on a judge ------------------------


def test_pages_answer_while_reward_requests_hang_on_a_slow_judge(personas, trickle):
    """gunicorn as the README's Production runs the people's pool, one process of 4 threads,
    serving the reward endpoint too: 8 reward requests on a judge that trickles its reply.
    At most ASSAY_REWARD_MAX_CONCURRENT (2) wait on the judge, to their deadline; the others
    get 503 with Retry-After at once, and /login/ answers meanwhile as if nothing waited.
    (DEBUG=1 only so the pages need no collectstatic; threads and requests are as in
    production.)"""
    task = factories.make_task(personas.project, "t-reward")
    grader = factories.make_published_rubric(personas.project, task, CRITERIA, personas.admin)
    factories.make_judge(personas.project, trickle.url)
    _, token = token_create(user=personas.engineer, name="trainer", scopes=["grade"])
    port = free_port()
    env = _worker_env("unused")
    env.update(
        DEBUG="1",
        ASSAY_REWARD_DEADLINE_S="6",
        ASSAY_REWARD_MAX_CONCURRENT=str(django_settings.REWARD_MAX_CONCURRENT),
        ASSAY_JUDGE_TIMEOUT_S="30",
    )
    assert django_settings.REWARD_MAX_CONCURRENT == 2  # the default, below the 4 threads
    log = ROOT / "var" / f"gunicorn-slow-judge-{port}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "assay.wsgi:application"]
        + ["--bind", f"127.0.0.1:{port}", "--workers", "1", "--worker-class", "gthread"]
        + ["--threads", "4", "--timeout", "60", "--log-level", "warning"],
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )

    def get_login() -> tuple[int, float]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        started = time.monotonic()
        try:
            conn.request("GET", "/login/")
            reply = conn.getresponse()
            reply.read()
            return reply.status, time.monotonic() - started
        finally:
            conn.close()

    def post_reward(i: int) -> tuple[int, dict, str | None, float]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        started = time.monotonic()
        try:
            body = {"task": "t-reward", "responses": [f"Reply {i}: drink water."]}
            conn.request(
                "POST",
                f"/api/graders/{grader.hash}/score/",
                json.dumps(body),
                {"Authorization": f"Token {token}", "Content-Type": "application/json"},
            )
            reply = conn.getresponse()
            data = json.loads(reply.read())
            return reply.status, data, reply.getheader("Retry-After"), time.monotonic() - started
        finally:
            conn.close()

    try:

        def up() -> bool:
            try:
                return get_login()[0] == 200
            except OSError:
                return False

        wait_for(up, timeout=60, what=f"gunicorn to answer (see {log})")
        get_login()  # the first page of a process imports its views: not what is measured
        with ThreadPoolExecutor(max_workers=8) as pool:
            rewards = [pool.submit(post_reward, i) for i in range(8)]
            time.sleep(1.0)  # every reward request has reached the server
            logins = [get_login() for _ in range(5)]
            outcomes = [f.result() for f in rewards]
    finally:
        server.terminate()
        server.wait(timeout=20)

    assert all(status == 200 for status, _ in logins), logins
    assert max(took for _, took in logins) < 1.0, logins
    waited = [o for o in outcomes if o[0] == 200]
    refused = [o for o in outcomes if o[0] == 503]
    assert len(waited) == 2 and len(refused) == 6, [(o[0], o[1]) for o in outcomes]
    for _, data, _, took in waited:
        assert took <= 6 + SLACK_S + 0.5
        assert all(READING.match(v["error"]) for v in data[0]["verdicts"]), data
    for _, data, retry_after, took in refused:
        assert retry_after == "1"
        assert "ASSAY_REWARD_MAX_CONCURRENT" in data["detail"]
        assert took < 1.5
