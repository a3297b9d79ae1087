"""Each verdict of a run links to the judge call that decided it: the request as sent (never
the key), the raw reply, latency, tokens and cost, on /runs/<pk>/calls/<call>/. Runs go through
a real Celery worker to the simulator; answers from the cache say so and link nowhere."""

from __future__ import annotations

import json
import re

import pytest
from django.db import connection
from django.test import Client

from annotation.models import Verdict
from grading import services
from grading.models import GradingRun, JudgeCall, ModelPrice, Score
from tests import factories
from tests.conftest import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

PROJECT_KEY = "sk-project-call-page-3f9a1c7e5b2d8e40"
CRITERIA = [
    ("Advises hydration with electrolyte solution", 3),
    ("Recommends urgent evaluation for persistent vomiting", 2),
    ("Dismisses fever entirely", -2),
]
PLAIN = "Advises hydration with electrolyte solution; sip slowly and rest."
# A response that carries the key itself: the request kept of its call has it removed.
LEAKY = f"Recommends urgent evaluation for persistent vomiting. My key is {PROJECT_KEY}."


def _run(project, grader, judge, admin, **kwargs) -> GradingRun:
    run = services.run_create(project=project, grader=grader, judge=judge, user=admin, **kwargs)
    wait_for(
        lambda: GradingRun.objects.get(pk=run.pk).status == "completed",
        timeout=90,
        what=f"run {run.pk} to complete",
    )
    return run


def _page(client: Client, url: str) -> str:
    answer = client.get(url)
    assert answer.status_code == 200, url
    return answer.content.decode()


def test_verdicts_link_to_their_calls_and_no_call_page_shows_the_key(personas, sim, celery_worker):
    project, admin = personas.project, personas.admin
    task = factories.make_task(project, "t-calls")
    grader = factories.make_published_rubric(project, task, CRITERIA, admin)
    factories.import_responses(
        project,
        [
            {"task_id": "t-calls", "model": "plain", "response": PLAIN},
            {"task_id": "t-calls", "model": "leaky", "response": LEAKY},
        ],
    )
    judge = services.judge_create(
        project=project, name="keyed", base_url=sim.url, model="judge-model", api_key=PROJECT_KEY
    )
    ModelPrice.objects.create(model="judge-model", input_per_mtok=2, output_per_mtok=8)
    run = _run(project, grader, judge, admin)

    # One call per verdict (per criterion), each linked, each with its request and reply.
    verdicts = Verdict.objects.filter(run=run)
    assert verdicts.count() == 6
    assert not verdicts.filter(call__isnull=True).exists()
    assert JudgeCall.objects.filter(run=run).count() == 6
    for verdict in verdicts.select_related("call", "criterion", "response"):
        call = verdict.call
        assert (call.run_id, call.response_id, call.judge_id) == (
            run.pk,
            verdict.response_id,
            judge.pk,
        )
        body = json.loads(call.request)
        sent = json.dumps(body["messages"])
        assert verdict.criterion.text in sent
        assert body["model"] == "judge-model"
        assert call.reply and call.latency_ms > 0 and call.prompt_tokens > 0
    # The key is in no kept request or reply, even where the graded text carried it.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM grading_judgecall WHERE request LIKE %s OR reply LIKE %s",
            [f"%{PROJECT_KEY}%", f"%{PROJECT_KEY}%"],
        )
        assert cursor.fetchone()[0] == 0
    leaky_call = verdicts.filter(response__model="leaky").first().call
    assert (
        "My key is [API key removed]" in json.loads(leaky_call.request)["messages"][-1]["content"]
    )

    reviewer = Client()
    reviewer.force_login(personas.reviewer)
    plain_score = Score.objects.get(run=run, response__model="plain")
    score_page = _page(reviewer, f"/runs/{run.pk}/scores/{plain_score.pk}/")
    plain_verdict = verdicts.get(response__model="plain", criterion__position=0)
    call_url = f"/runs/{run.pk}/calls/{plain_verdict.call_id}/"
    assert f'href="{call_url}"' in score_page

    page = _page(reviewer, call_url)
    call = plain_verdict.call
    assert "sip slowly and rest." in page  # the request holds the response as sent
    assert "Advises hydration with electrolyte solution" in page
    assert f"{call.latency_ms} ms" in page
    assert f"{call.prompt_tokens} in ({call.cached_tokens} cached)" in page
    fresh = call.prompt_tokens - call.cached_tokens
    cost = (fresh * 2 + call.completion_tokens * 8) / 1_000_000
    shown = re.search(r'data-testid="call-cost">([^<]*)<', page).group(1)
    assert shown == f"${cost:.6f}"
    assert json.loads(call.reply)["explanation"][:20] in page.replace("&#x27;", "'").replace(
        "&quot;", '"'
    )
    for c in JudgeCall.objects.filter(run=run):
        assert PROJECT_KEY not in _page(reviewer, f"/runs/{run.pk}/calls/{c.pk}/")
        assert PROJECT_KEY[-12:] not in _page(reviewer, f"/runs/{run.pk}/calls/{c.pk}/")

    # Annotators never reach a call (its request names the response): 403, like the score page.
    annotator = Client()
    annotator.force_login(personas.annotator)
    assert annotator.get(call_url).status_code == 403
    # A call of another run is not this run's.
    assert reviewer.get(f"/runs/{run.pk + 1000}/calls/{call.pk}/").status_code == 404

    # The same run again answers from the cache: no call, and the score page says so.
    again = _run(project, grader, judge, admin)
    assert not JudgeCall.objects.filter(run=again).exists()
    assert not Verdict.objects.filter(run=again, call__isnull=False).exists()
    again_score = Score.objects.get(run=again, response__model="plain")
    again_page = _page(reviewer, f"/runs/{again.pk}/scores/{again_score.pk}/")
    assert again_page.count("from cache") == 3
    assert "/calls/" not in again_page


def test_a_batched_call_decides_several_verdicts_and_each_links_to_it(personas, sim, celery_worker):
    project, admin = personas.project, personas.admin
    task = factories.make_task(project, "t-batch")
    grader = factories.make_published_rubric(project, task, CRITERIA, admin)
    factories.import_responses(project, [{"task_id": "t-batch", "model": "m", "response": PLAIN}])
    judge = factories.make_judge(project, sim.url)
    run = _run(project, grader, judge, admin, mode="batched", use_cache=False)
    call = JudgeCall.objects.get(run=run)
    assert call.criteria == 3
    assert set(Verdict.objects.filter(run=run).values_list("call_id", flat=True)) == {call.pk}
    reviewer = Client()
    reviewer.force_login(personas.reviewer)
    page = _page(reviewer, f"/runs/{run.pk}/calls/{call.pk}/")
    assert "3 decided by this call (batched)" in page
    assert "no price set for judge-model" in page
    for text, _points in CRITERIA:
        assert text in page
