"""Every reply a hostile or broken judge can send ends as a verdict or an error verdict with its
reason and raw text (cleaned for storage), never as an exception or endless re-calls: in the
judge client, in a run on a real worker (and its recovery sweep), in try-it and in the reward
endpoint. The judge is a real HTTP server (tests/hostile_judge.py)."""

from __future__ import annotations

import time

import pytest
from django.db.models import Max
from django.urls import reverse

from annotation.models import Verdict
from grading import services
from grading.judges import prompts, replies
from grading.judges.client import JudgeClient, JudgeError, JudgeSettings
from grading.models import GradingRun, JudgeCall, Score
from rubrics import services as rubric_services
from rubrics.compiler import VERDICT_SCHEMA
from tests import factories
from tests.conftest import wait_for
from tests.hostile_judge import EXPECTED, SCENARIOS, HostileJudge

NAMES = sorted(SCENARIOS)
ASKS = 3  # one ask and ASSAY_JUDGE_MAX_REASKS (2) more for a reply that cannot be read


@pytest.fixture(scope="module")
def hostile():
    server = HostileJudge()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def judge_server(hostile):
    with hostile.lock:
        hostile.requests.clear()
    return hostile


def storable(text: str) -> bool:
    """What PostgreSQL text and psycopg accept: no NUL, no lone surrogate."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in text


def criterion_text(name: str) -> str:
    return f"Mentions hydration and electrolytes hostile:{name}"


# --- The judge client --------------------------------------------------------------------

SPEC = {
    "judge": {
        "system_template": "Grade. Schema: {schema}",
        "user_template": (
            "<<<RESPONSE {response_nonce}\n{response}\nRESPONSE {response_nonce}>>>\n"
            "<<<CRITERION {criterion_nonce}\n({points} points) {criterion}\n"
            "CRITERION {criterion_nonce}>>>\n{conversation}{conversation_nonce}"
        ),
        "output_schema": VERDICT_SCHEMA,
    }
}


@pytest.mark.parametrize("name", NAMES)
def test_the_client_ends_every_hostile_reply_as_a_verdict_or_an_error(judge_server, name):
    client = JudgeClient(
        JudgeSettings(base_url=judge_server.url, model="m", max_attempts=2, max_reasks=2)
    )
    messages = prompts.judge_messages(
        SPEC,
        messages=[{"role": "user", "content": "I have a stomach bug."}],
        response="Drink water.",
        criterion={"text": criterion_text(name), "points": 3},
    )
    started = time.monotonic()
    try:
        reply = client.grade(messages, VERDICT_SCHEMA)
    except JudgeError as exc:
        assert time.monotonic() - started < 5, "reading the replies took too long"
        assert EXPECTED[name] == "error", f"{name}: {exc.reason}: {exc}"
        assert exc.reason == "unparseable" and str(exc).startswith("could not read a verdict: ")
        assert storable(exc.raw) and storable(str(exc))
        assert len(exc.raw) < replies.RAW_CHARS + 100
        assert judge_server.requests[name] == ASKS
        usage = exc.usage
        for count in (usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens):
            assert 0 <= count <= replies.MAX_TOKENS
        return
    assert time.monotonic() - started < 5, "reading the reply took too long"
    assert EXPECTED[name] == "met", name
    assert reply.met is True and judge_server.requests[name] == 1
    assert storable(reply.explanation) and storable(reply.raw) and storable(reply.model)
    assert len(reply.model) <= replies.MODEL_NAME_CHARS
    for count in (reply.prompt_tokens, reply.completion_tokens, reply.cached_tokens):
        assert isinstance(count, int) and 0 <= count <= replies.MAX_TOKENS


@pytest.mark.parametrize(
    ("value", "count"),
    [
        (12, 12),
        (0, 0),
        (12.0, 12),
        (12.5, None),
        (-1, None),
        ("12", None),
        (True, None),
        (None, None),
        (float("inf"), None),
        (float("nan"), None),
        (10**30, replies.MAX_TOKENS),
        ([12], None),
    ],
)
def test_token_counts_are_whole_numbers_from_zero_up_or_none(value, count):
    assert replies.token_count(value) == count


def test_cleaning_replaces_what_the_database_refuses_and_cuts_long_text():
    assert replies.clean("a\x00b\ud800c") == "a\ufffdb\ufffdc"
    cut = replies.clean("x" * 30, limit=10)
    assert cut.startswith("x" * 10 + "\n") and "20 more characters cut" in cut


def test_the_raw_text_kept_is_cut_once_saying_how_much_was_cut():
    reply = replies.read(b"not a completion " * 3_000)  # 51,000 characters
    error = JudgeError("unparseable", "could not read a verdict", reply.raw)
    assert len(error.raw) < replies.RAW_CHARS + 100
    assert error.raw.count("more characters cut") == 1
    assert error.raw.endswith("[... 31,000 more characters cut]")


# --- A run on a real worker, and its recovery sweep -------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_run_against_a_hostile_judge_ends_and_the_sweep_never_asks_again(
    personas, judge_server, celery_worker, client
):
    """One criterion per scenario, plus an honest one: the run completes with every item a
    verdict or an error verdict; the page counts the errors; sweeping for stalled runs
    afterwards (as a worker's recovery thread does) makes no judge call."""
    project = personas.project
    task = factories.make_task(project, external_id="t-hostile")
    criteria = [(criterion_text(name), 1) for name in NAMES] + [("Mentions rest", 1)]
    grader = factories.make_published_rubric(project, task, criteria, personas.admin)
    factories.import_responses(
        project, [{"task_id": "t-hostile", "model": "m", "response": "Rest and drink water."}]
    )
    judge = factories.make_judge(project, judge_server.url)
    run = services.run_create(project=project, grader=grader, judge=judge, user=personas.admin)
    wait_for(
        lambda: GradingRun.objects.get(pk=run.pk).status == GradingRun.Status.COMPLETED,
        timeout=120,
        what="the run to complete",
    )
    by_text = {c["id"]: c["text"] for c in grader.spec["criteria"]}
    verdicts = list(Verdict.objects.filter(run=run))
    assert len(verdicts) == len(criteria)
    for v in verdicts:
        text = by_text[v.criterion_id]
        name = text.rsplit("hostile:", 1)[1] if "hostile:" in text else None
        expected = EXPECTED[name] if name else "met"
        assert v.outcome == expected, (name, v.outcome, v.error)
        if v.outcome == "error":
            assert v.error.startswith("unparseable: could not read a verdict: "), v.error
            # What the judge sent, kept for a person (an empty body leaves nothing to keep).
            assert v.raw_output or name == "empty_body", name
    errors = sum(1 for end in EXPECTED.values() if end == "error")
    assert Score.objects.get(run=run).error_count == errors
    assert Verdict.objects.filter(run=run, outcome="error").count() == errors
    # Token counts stay counts: clamped, never negative, never text.
    calls = JudgeCall.objects.filter(run=run).aggregate(
        prompt=Max("prompt_tokens"), completion=Max("completion_tokens")
    )
    assert 0 <= calls["prompt"] <= replies.MAX_TOKENS
    assert 0 <= calls["completion"] <= replies.MAX_TOKENS

    client.force_login(personas.engineer)
    page = client.get(f"/runs/{run.pk}/")
    assert page.status_code == 200
    assert "unparseable" in page.content.decode()
    # The response's page shows each error with the raw reply, cleaned for storage.
    score = Score.objects.get(run=run)
    page = client.get(f"/runs/{run.pk}/scores/{score.pk}/")
    assert page.status_code == 200
    body = page.content.decode()
    assert body.count("raw reply") == errors - 1  # the empty body left no raw text
    assert "I think\ufffd it is met \ufffd surely" in body

    asked = judge_server.total()
    assert asked == len(criteria) + (ASKS - 1) * errors
    # The sweep as when the broker came back empty: it re-queues every running run. This one
    # is complete, so nothing is queued and the judge is not called again.
    assert services.runs_recover(stalled_for_s=0)["requeued"] == []
    assert services.grade_response(run_id=run.pk, response_id=verdicts[0].response_id) == (
        "run is completed"
    )
    time.sleep(2)
    assert judge_server.total() == asked


# --- Try-it ------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("name", NAMES)
def test_try_it_shows_a_hostile_reply_as_its_verdict_or_its_error(
    client, personas, judge_server, name
):
    task = rubric_services.task_create(
        project=personas.project,
        external_id="t-try",
        title="Stomach bug",
        messages="I have a stomach bug.",
    )
    rubric = rubric_services.rubric_create(
        project=personas.project,
        task=task,
        title="Hostile",
        user=personas.author,
        criteria=[rubric_services.clean_criterion(criterion_text(name), 5)],
    )
    judge = factories.make_judge(personas.project, judge_server.url)
    client.force_login(personas.author)
    reply = client.post(
        reverse("rubric_try", kwargs={"pk": rubric.pk}),
        {"action": "grade", "judge": judge.pk, "response": "Drink water."},
    )
    assert reply.status_code == 200
    body = reply.content.decode()
    assert body.count('data-testid="try-verdict"') == 1
    if EXPECTED[name] == "error":
        assert "unparseable: could not read a verdict" in body
        assert "none (a verdict is an error)" in body
    else:
        assert "Score: <strong>1.000</strong>" in body


# --- The reward endpoint ------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("mode", ["per_criterion", "batched"])
@pytest.mark.parametrize("name", NAMES)
def test_the_reward_endpoint_answers_200_with_per_criterion_errors(
    personas, judge_server, name, mode
):
    """A hostile reply is never a 500: the endpoint answers 200 and each criterion's verdict
    or error (reason and message); a response with an error has no score."""
    from tests.test_api import api_client

    task = factories.make_task(personas.project, "t-reward")
    criteria = [(criterion_text(name), 5), ("Mentions rest", 3)]
    grader = factories.make_published_rubric(personas.project, task, criteria, personas.admin)
    factories.make_judge(personas.project, judge_server.url)
    reply = api_client(personas.engineer).post(
        f"/api/graders/{grader.hash}/score/",
        {"task": "t-reward", "responses": ["Rest and drink water."], "mode": mode},
        format="json",
    )
    assert reply.status_code == 200, reply.content
    (result,) = reply.json()
    hostile, honest = result["verdicts"]
    assert hostile["outcome"] == EXPECTED[name], hostile
    # Batched, one call answers both criteria: the hostile reply decides both.
    assert honest["outcome"] == (EXPECTED[name] if mode == "batched" else "met")
    if EXPECTED[name] == "error":
        assert hostile["error"].startswith("unparseable: could not read a verdict: ")
        assert result["score"] is None
    else:
        assert result["score"] == 1.0 and storable(hostile["explanation"])
    for row in JudgeCall.objects.values("prompt_tokens", "completion_tokens", "cached_tokens"):
        assert all(0 <= n <= replies.MAX_TOKENS for n in row.values())


@pytest.mark.django_db
@pytest.mark.parametrize("name", NAMES)
def test_the_suite_reward_endpoint_answers_200_with_per_criterion_errors(
    personas, judge_server, name
):
    """The suite reward URL, over two tasks with their own graders: a hostile reply is never a
    500 and never asked again past the re-asks; each task's item says its verdicts."""
    from rubrics import suites
    from tests.test_api import api_client

    tasks = [factories.make_task(personas.project, f"t-suite-{i}") for i in range(2)]
    for i, task in enumerate(tasks):
        factories.make_published_rubric(
            personas.project,
            task,
            [(criterion_text(name), 5)] if i == 0 else [("Mentions rest", 3)],
            personas.admin,
        )
    suite = suites.suite_create(
        project=personas.project, name="hostile", task_ids=[t.pk for t in tasks]
    )
    suites.suite_freeze(suite=suite)
    factories.make_judge(personas.project, judge_server.url)
    reply = api_client(personas.engineer).post(
        f"/api/suites/{suite.pk}/score/",
        {
            "items": [
                {"task": "t-suite-0", "responses": ["Rest and drink water."]},
                {"task": "t-suite-1", "responses": ["Rest and drink water."]},
            ]
        },
        format="json",
    )
    assert reply.status_code == 200, reply.content
    hostile_item, honest_item = reply.json()["items"]
    (hostile,) = hostile_item["results"][0]["verdicts"]
    (honest,) = honest_item["results"][0]["verdicts"]
    assert hostile["outcome"] == EXPECTED[name], hostile
    assert honest["outcome"] == "met"
    with judge_server.lock:
        asked = judge_server.requests[name]
    assert 1 <= asked <= ASKS
