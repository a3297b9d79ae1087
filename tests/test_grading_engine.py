"""The grading engine under load and faults: real workers on Redis, PostgreSQL, the simulator.

Each test predicts every verdict from the simulator's documented rule, so a lost, invented or
duplicated verdict shows up as a wrong count or a wrong outcome.
"""

from __future__ import annotations

import json
import time

import pytest
from django.core.exceptions import ValidationError
from django.db.models import Count, Sum

from annotation.models import Verdict
from grading import selectors, services
from grading.judges.simulator import simulated_verdict
from grading.models import GradingRun, JudgeCall, Score
from grading.results import comparison, leaderboard
from tests import factories
from tests.conftest import WorkerProcess, wait_for
from tests.test_grading_flow import CRITERIA, MODEL_PLANS, expected_score, keywords_text

pytestmark = pytest.mark.django_db(transaction=True)


def setup_project(personas, responses_per_model: int = 4):
    """One task, the ten criteria, and responses_per_model x 3 models."""
    project, admin = personas.project, personas.admin
    task = factories.make_task(project, external_id="t-engine")
    grader = factories.make_published_rubric(project, task, CRITERIA, admin)
    rows, expected = [], {}
    for model, plan in MODEL_PLANS.items():
        for i in range(responses_per_model):
            met = plan(i)
            rows.append(
                {
                    "task_id": "t-engine",
                    "model": model,
                    "response": keywords_text(met) + f" (sample {i})",
                    "sample_index": i,
                }
            )
            expected[(model, i)] = expected_score(set(met))
    factories.import_responses(project, rows)
    return grader, expected


def wait_finished(run, timeout=120):
    return wait_for(
        lambda: GradingRun.objects.get(pk=run.pk).status == "completed",
        timeout=timeout,
        what=f"run {run.pk} to complete",
    )


def assert_one_verdict_per_item(run):
    run.refresh_from_db()
    verdicts = Verdict.objects.filter(run=run)
    assert verdicts.count() == run.total_items
    dupes = (
        verdicts.values("response", "criterion", "rater", "sample_index")
        .annotate(n=Count("pk"))
        .filter(n__gt=1)
    )
    assert not dupes.exists()


def assert_verdicts_follow_the_rule(run):
    criteria = {c["id"]: c["text"] for c in run.sole_grader.spec["criteria"]}
    for v in Verdict.objects.filter(run=run).exclude(outcome="error").select_related("response"):
        met, _ = simulated_verdict(criteria[v.criterion_id], v.response.text)
        assert v.outcome == ("met" if met else "unmet"), v


def assert_scores(run, expected):
    for score in Score.objects.filter(run=run).select_related("response"):
        if score.error_count:
            assert score.raw is None
        else:
            key = (score.response.model, score.response.sample_index)
            assert score.raw == pytest.approx(expected[key]), key


def test_faulty_judge_every_item_ends_decided_or_an_error_with_its_reason(
    personas, sim, celery_worker
):
    grader, expected = setup_project(personas)
    sim.config.fault_rate = 0.2
    sim.config.retry_after_s = 0.05
    sim.config.timeout_s = 5  # the workers give up after 3 s
    sim.config.seed = 7
    judge = factories.make_judge(personas.project, sim.url, max_concurrency=8)
    run = services.run_create(
        project=personas.project, grader=grader, judge=judge, user=personas.admin
    )
    wait_finished(run, timeout=180)
    assert sum(sim.stats.faults.values()) > 10  # the faults did happen
    assert_one_verdict_per_item(run)
    assert_verdicts_follow_the_rule(run)
    assert_scores(run, expected)
    counts = dict(Verdict.objects.filter(run=run).values_list("outcome").annotate(n=Count("pk")))
    assert sum(counts.values()) == run.total_items == 120
    for v in Verdict.objects.filter(run=run, outcome="error"):
        assert v.error.split(":")[0] in {"rate_limited", "http_500", "timeout", "unparseable"}
    # Retries happened and were counted: more requests than calls.
    calls = JudgeCall.objects.filter(run=run).aggregate(n=Count("pk"), attempts=Sum("attempts"))
    assert calls["attempts"] > calls["n"] >= 120 - counts.get("error", 0)


def test_unreadable_replies_are_asked_twice_more_then_stored_as_errors_and_retried(
    personas, sim, celery_worker, client
):
    grader, expected = setup_project(personas, responses_per_model=1)
    sim.config.fault_rate = 1.0
    sim.config.faults = ("malformed",)
    judge = factories.make_judge(personas.project, sim.url, max_concurrency=8)
    run = services.run_create(
        project=personas.project, grader=grader, judge=judge, user=personas.admin
    )
    wait_finished(run)
    errors = Verdict.objects.filter(run=run, outcome="error")
    assert errors.count() == run.total_items == 30
    assert sim.stats.requests == 30 * 3  # one ask and two re-asks per item
    for v in errors:
        assert v.error.startswith("unparseable:")
        assert "I think it is met" in v.raw_output
    # The run page counts errors by reason; "retry failed items" re-queues only those.
    client.force_login(personas.engineer)
    page = client.get(f"/runs/{run.pk}/").content.decode()
    assert "unparseable" in page and 'data-testid="retry-failed"' in page
    sim.config.fault_rate = 0
    sim.reset()
    response = client.post(f"/runs/{run.pk}/retry-failed/")
    assert response.status_code == 302
    wait_finished(run)
    assert_one_verdict_per_item(run)
    assert not Verdict.objects.filter(run=run, outcome="error").exists()
    assert sim.stats.requests == 30
    assert_scores(run, expected)


def test_worker_killed_mid_run_leaves_exactly_one_verdict_per_item(personas, sim, celery_worker):
    grader, expected = setup_project(personas, responses_per_model=6)
    sim.config.latency_ms = 250
    judge = factories.make_judge(personas.project, sim.url, max_concurrency=4)
    run = services.run_create(
        project=personas.project, grader=grader, judge=judge, user=personas.admin
    )
    wait_for(lambda: Verdict.objects.filter(run=run).count() >= 20, what="some verdicts")
    celery_worker.kill()
    done_at_kill = Verdict.objects.filter(run=run).count()
    assert done_at_kill < run.total_items
    celery_worker.start()
    # Redis keeps the dead worker's unacknowledged tasks until their visibility timeout;
    # resuming re-queues every pending response now (duplicates are harmless).
    services.run_resume(run=run)
    wait_finished(run, timeout=180)
    assert_one_verdict_per_item(run)
    assert_verdicts_follow_the_rule(run)
    assert not Verdict.objects.filter(run=run, outcome="error").exists()
    assert_scores(run, expected)


def test_in_flight_limit_holds_across_two_worker_processes(personas, sim, celery_worker):
    grader, _ = setup_project(personas, responses_per_model=6)
    sim.config.latency_ms = 100
    second = WorkerProcess(celery_worker.queue)
    second.start()
    try:
        judge = factories.make_judge(personas.project, sim.url, max_concurrency=4)
        run = services.run_create(
            project=personas.project, grader=grader, judge=judge, user=personas.admin
        )
        wait_finished(run)
    finally:
        second.stop()
    assert sim.stats.requests == 180
    assert sim.stats.peak_concurrency == 4
    assert not sim.stats.faults


def test_identical_second_run_makes_no_judge_calls_and_the_switch_bypasses_the_cache(
    personas, sim, celery_worker
):
    grader, expected = setup_project(personas, responses_per_model=2)
    judge = factories.make_judge(personas.project, sim.url)
    first = services.run_create(
        project=personas.project, grader=grader, judge=judge, user=personas.admin
    )
    wait_finished(first)
    assert sim.stats.requests == 60
    sim.reset()
    second = services.run_create(
        project=personas.project, grader=grader, judge=judge, user=personas.admin
    )
    wait_finished(second)
    assert sim.stats.requests == 0
    assert not JudgeCall.objects.filter(run=second).exists()
    assert_one_verdict_per_item(second)
    assert_scores(second, expected)
    bypass = services.run_create(
        project=personas.project,
        grader=grader,
        judge=judge,
        user=personas.admin,
        use_cache=False,
    )
    wait_finished(bypass)
    assert sim.stats.requests == 60


def test_batched_mode_one_call_per_response_same_scores(personas, sim, celery_worker):
    grader, expected = setup_project(personas, responses_per_model=3)
    judge = factories.make_judge(personas.project, sim.url)
    run = services.run_create(
        project=personas.project,
        grader=grader,
        judge=judge,
        user=personas.admin,
        mode="batched",
    )
    wait_finished(run)
    assert sim.stats.requests == 9
    assert_one_verdict_per_item(run)
    assert_verdicts_follow_the_rule(run)
    assert_scores(run, expected)
    calls = JudgeCall.objects.filter(run=run)
    assert calls.count() == 9 and all(c.criteria == 10 for c in calls)
    assert run.estimate["calls"] == 9


def test_cancel_stops_new_judge_calls_within_seconds_and_resume_finishes(
    personas, sim, celery_worker
):
    grader, expected = setup_project(personas, responses_per_model=6)
    sim.config.latency_ms = 300
    judge = factories.make_judge(personas.project, sim.url, max_concurrency=2)
    run = services.run_create(
        project=personas.project, grader=grader, judge=judge, user=personas.admin
    )
    wait_for(lambda: sim.stats.requests >= 6, what="judge calls")
    assert services.run_cancel(run=GradingRun.objects.get(pk=run.pk))
    time.sleep(1.5)
    after_cancel = sim.stats.requests
    time.sleep(2)
    assert sim.stats.requests == after_cancel  # nothing new started
    assert Verdict.objects.filter(run=run).count() < run.total_items
    assert not Verdict.objects.filter(run=run, outcome="error").exists()
    run.refresh_from_db()
    assert services.run_resume(run=run)
    wait_finished(run, timeout=180)
    assert_one_verdict_per_item(run)
    assert_scores(run, expected)


def test_panel_of_two_judges_keeps_each_judges_verdicts(personas, sim, celery_worker, client):
    grader, expected = setup_project(personas, responses_per_model=1)
    lead = factories.make_judge(personas.project, sim.url, name="lead")
    other = factories.make_judge(personas.project, sim.url, name="other")
    run = services.run_create(
        project=personas.project,
        grader=grader,
        judge=lead,
        user=personas.admin,
        panel=[other],
    )
    wait_finished(run)
    assert run.total_items == 60
    assert_one_verdict_per_item(run)
    raters = set(Verdict.objects.filter(run=run).values_list("rater_id", flat=True))
    assert raters == {lead.rater_id, other.rater_id}
    assert_scores(run, expected)
    # The page names the panel and shows the tie rule; two runs compare side by side.
    single = services.run_create(
        project=personas.project, grader=grader, judge=other, user=personas.admin
    )
    wait_finished(single)
    client.force_login(personas.engineer)
    page = client.get(f"/runs/{run.pk}/").content.decode()
    assert "(lead)" in page and "tie goes to the lead judge" in page
    assert 'data-testid="ci"' in page and 'data-chart="criteria"' in page
    page = client.get(f"/runs/{run.pk}/compare/{single.pk}/").content.decode()
    assert f"Run #{run.pk}" in page and f"Run #{single.pk}" in page
    # The same simulator grades the same responses in both: every model's delta is nil, no
    # verdict flips, and the lead judges agree on every item (tests/test_comparison.py
    # covers what changes).
    result = comparison.compare(run, single)
    assert sorted(p.model_a for p in result.pairs) == sorted(expected_models(expected))
    assert [p.delta for p in result.pairs] == [0.0] * len(result.pairs)
    assert len({(c.task, c.criterion_b) for c in result.criteria}) == (
        grader.version.criteria.count()
    )
    assert result.flips_page(1).paginator.count == 0
    assert result.agreement.percent == 1.0
    assert 'data-chart="compare-pairs"' in page and 'data-testid="no-flips"' in page


def expected_models(expected: dict) -> set[str]:
    return {model for model, _ in expected}


def test_an_interval_that_cannot_be_drawn_says_why():
    none = leaderboard.ModelScore(None, 0, model="m")
    one = leaderboard.ModelScore(0.5, 3, model="m", tasks=1)
    two = leaderboard.ModelScore(0.5, 2, (0.4, 0.6), model="m", tasks=2)
    assert none.ci_missing == "no scored response yet"
    assert one.ci_missing == "one task scored; an interval over tasks needs two"
    assert two.ci_missing == ""
    summary = selectors.ModelSummary(one, responses=4, errors=1, mean_raw=0.5, histogram=[])
    assert (summary.model, summary.scored, summary.mean, summary.ci) == ("m", 3, 0.5, None)
    assert summary.ci_missing == one.ci_missing


def test_reward_endpoint_returns_the_same_scores_as_a_run(personas, sim, celery_worker):
    from tests.test_api import api_client

    grader, expected = setup_project(personas, responses_per_model=2)
    judge = factories.make_judge(personas.project, sim.url)
    run = services.run_create(
        project=personas.project, grader=grader, judge=judge, user=personas.admin
    )
    wait_finished(run)
    scores = list(Score.objects.filter(run=run).select_related("response").order_by("pk"))
    sim.reset()
    client = api_client(personas.engineer)
    reply = client.post(
        f"/api/graders/{grader.hash}/score/",
        {"task": "t-engine", "responses": [s.response.text for s in scores]},
        format="json",
    )
    assert reply.status_code == 200, reply.content
    body = reply.json()
    assert [r["score"] for r in body] == pytest.approx([s.raw for s in scores])
    assert sim.stats.requests == 0  # all from the run's cache
    assert all(v["cached"] for r in body for v in r["verdicts"])
    # Fresh text: the judge is asked (batched here), and the score follows the rule.
    fresh = keywords_text([0, 1, 2]) + " Something new."
    reply = client.post(
        f"/api/graders/{grader.hash}/score/",
        {
            "messages": [{"role": "user", "content": "What should I do?"}],
            "responses": [fresh],
            "mode": "batched",
        },
        format="json",
    )
    assert reply.status_code == 200, reply.content
    assert reply.json()[0]["score"] == pytest.approx(expected_score({0, 1, 2}))
    assert sim.stats.requests == 1
    assert len(reply.json()[0]["verdicts"]) == 10


def test_cli_grades_a_file_with_a_progress_line(personas, sim, tmp_path, capsys):
    from django.core.management import call_command

    grader, expected = setup_project(personas, responses_per_model=1)
    factories.make_judge(personas.project, sim.url, name="sim-cli")
    path = tmp_path / "more.jsonl"
    path.write_text(
        "\n".join(
            json.dumps({"task_id": "t-engine", "model": "strong", "response": text, **extra})
            for text, extra in [
                (keywords_text([0, 1]), {"sample_index": 5}),
                ("Answer: Rest.", {"sample_index": 6}),
            ]
        )
    )
    call_command(
        "grade",
        rubric_version=grader.version_id,
        responses=str(path),
        judge="sim-cli",
        mode="batched",
    )
    out = capsys.readouterr().out
    assert "graded 2/2 responses" in out and "20/20 verdicts" in out
    run = GradingRun.objects.latest("pk")
    assert run.status == "completed" and run.mode == "batched"
    raw = sorted(Score.objects.filter(run=run).values_list("raw", flat=True))
    assert raw == pytest.approx(sorted([expected_score({0, 1}), 0.0]))
    assert sim.stats.requests == 2
    # It did a worker's job, and said so: its run's page did not claim no worker was running.
    from grading.models import WorkerHeartbeat

    assert WorkerHeartbeat.objects.filter(name__startswith="grade@").exists()


def test_samples_per_item_with_a_warm_judge(personas, sim, celery_worker):
    grader, expected = setup_project(personas, responses_per_model=1)
    warm = services.judge_create(
        project=personas.project,
        name="warm",
        base_url=sim.url,
        model="judge-model",
        temperature=0.7,
    )
    run = services.run_create(
        project=personas.project, grader=grader, judge=warm, user=personas.admin, samples=3
    )
    wait_finished(run)
    assert run.total_items == 90
    assert_one_verdict_per_item(run)
    assert set(Verdict.objects.filter(run=run).values_list("sample_index", flat=True)) == {0, 1, 2}
    assert sim.stats.requests == 90  # each sample is its own call (and its own cache entry)
    assert_scores(run, expected)
    cold = factories.make_judge(personas.project, sim.url, name="cold")
    with pytest.raises(ValidationError):
        services.run_create(
            project=personas.project, grader=grader, judge=cold, user=personas.admin, samples=3
        )


SCALE_LEVELS = ["No advice on fluids", "Mentions fluids", "Specific oral rehydration plan"]


def setup_scale_project(personas):
    """Three binary criteria and two scale criteria (three and four levels)."""
    from decimal import Decimal

    from rubrics import services as rubric_services

    project, admin = personas.project, personas.admin
    task = factories.make_task(project, external_id="t-scale")
    rubric = rubric_services.rubric_create(
        project=project,
        task=task,
        title="Mixed rubric",
        user=admin,
        criteria=[
            *(
                rubric_services.CriterionInput(text=text, points=Decimal(points))
                for text, points in CRITERIA[:3]
            ),
            rubric_services.CriterionInput(
                text="Hydration electrolyte advice quality",
                points=Decimal(4),
                kind="scale",
                scale=tuple(SCALE_LEVELS),
            ),
            rubric_services.CriterionInput(
                text="Temperature monitoring paracetamol dosing antibiotic isolation",
                points=Decimal(2),
                kind="scale",
                scale=("None", "Some", "Most", "All"),
            ),
        ],
    )
    grader = rubric_services.version_publish(version=rubric.versions.get(), user=admin)
    texts = [
        "Answer: hydration with electrolyte; monitor temperature, paracetamol dosing.",
        "Answer: rest. Urgent evaluation for persistent vomiting.",
        "Answer: electrolyte drinks, temperature checks, paracetamol dosing, antibiotic use, "
        "isolation. Dangerous dehydration symptoms.",
    ]
    factories.import_responses(
        project,
        [
            {"task_id": "t-scale", "model": "m", "response": text, "sample_index": i}
            for i, text in enumerate(texts)
        ],
    )
    return grader


def test_batched_mode_grades_scale_criteria_in_the_same_call(personas, sim, celery_worker):
    from grading.judges import prompts
    from grading.judges.simulator import simulated_scale

    grader = setup_scale_project(personas)
    judge = factories.make_judge(personas.project, sim.url)
    batched = services.run_create(
        project=personas.project,
        grader=grader,
        judge=judge,
        user=personas.admin,
        mode="batched",
        use_cache=False,
    )
    wait_finished(batched)
    assert sim.stats.requests == 3  # one call per response, scale criteria included
    calls = JudgeCall.objects.filter(run=batched)
    assert calls.count() == 3 and all(c.criteria == 5 for c in calls)
    assert batched.estimate["calls"] == 3
    assert_one_verdict_per_item(batched)
    assert not Verdict.objects.filter(run=batched, outcome="error").exists()
    spec = grader.spec
    scale = {c["id"]: c for c in spec["criteria"] if c["kind"] == "scale"}
    for v in Verdict.objects.filter(run=batched, criterion_id__in=scale).select_related("response"):
        c = scale[v.criterion_id]
        n = len(c["scale"]["descriptors"])
        level, _ = simulated_scale(c["text"], v.response.text, n)
        assert v.value == pytest.approx((level - 1) / (n - 1)), (c["text"], v.response.text)
        assert v.outcome == ("met" if level > 1 else "unmet")
    values = set(Verdict.objects.filter(run=batched, criterion_id__in=scale).values_list("value"))
    assert len(values) > 2  # the levels differ across responses: not a constant answer
    # What the judge got: the levels with their descriptors, and a schema that allows only
    # 1..N for each scale criterion, by id.
    messages = sim.received[-1]
    assert all(d in messages[1]["content"] for d in SCALE_LEVELS)
    schema = prompts.batch_schema(spec, [c for c in spec["criteria"]])
    branches = schema["properties"]["levels"]["items"]["anyOf"]
    assert {tuple(b["properties"]["id"]["enum"]) for b in branches} == {(str(i),) for i in scale}
    assert sorted(len(b["properties"]["level"]["enum"]) for b in branches) == [3, 4]
    assert json.dumps(schema, sort_keys=True) in messages[0]["content"]
    # The same scores as the per-criterion run, which asks once per criterion.
    sim.reset()
    single = services.run_create(
        project=personas.project, grader=grader, judge=judge, user=personas.admin
    )
    wait_finished(single)
    assert sim.stats.requests == 15
    raw = lambda run: dict(  # noqa: E731
        Score.objects.filter(run=run).values_list("response_id", "raw")
    )
    assert raw(batched) == pytest.approx(raw(single))


def test_an_item_that_waits_past_its_deadline_for_a_slot_ends_as_a_deadline_error(
    personas, sim, settings
):
    from grading.judges.limits import Limits, RedisLimiter, redis_client

    grader, _ = setup_project(personas, responses_per_model=1)
    judge = factories.make_judge(personas.project, sim.url, max_concurrency=1)
    run = services.run_create(
        project=personas.project, grader=grader, judge=judge, user=personas.admin, start=False
    )
    services.run_start(run_id=run.pk, enqueue=False)
    # Another process holds the judge's only slot for longer than the item deadline.
    other = RedisLimiter(Limits(judge_id=judge.pk, max_in_flight=1), redis_client())
    held = other.acquire()
    settings.JUDGE_ITEM_DEADLINE_S = 1
    response_id = Score.objects.filter(run=run).values_list("response_id", flat=True)[0]
    started = time.monotonic()
    try:
        services.grade_response(run_id=run.pk, response_id=response_id)
    finally:
        other.release(held)
    assert time.monotonic() - started < 10  # not until the slot frees: at the deadline
    assert sim.stats.requests == 0
    errors = Verdict.objects.filter(run=run, response_id=response_id)
    assert errors.count() == 10
    assert all(v.outcome == "error" and v.error.startswith("deadline:") for v in errors)
    # A redelivered task finds every item decided: no second verdict, no call.
    services.grade_response(run_id=run.pk, response_id=response_id)
    assert sim.stats.requests == 0 and errors.count() == 10


def test_tokens_per_minute_bucket_follows_the_judges_usage(personas, sim):
    from grading.judges import prompts
    from grading.judges.client import JudgeClient
    from grading.judges.limits import Limits, RedisLimiter, redis_client

    grader, _ = setup_project(personas, responses_per_model=1)
    judge = factories.make_judge(personas.project, sim.url)
    client = redis_client()
    lim = RedisLimiter(Limits(judge_id=judge.pk, max_in_flight=4, tokens_per_minute=6000), client)
    settings = services.judge_settings(judge)
    messages = prompts.judge_messages(
        grader.spec,
        messages=[{"role": "user", "content": "What should I do?"}],
        response=keywords_text([0, 1]),
        criterion=grader.spec["criteria"][0],
    )
    estimate = sum(len(m["content"]) for m in messages) // 4 + 200
    reply = JudgeClient(settings, limiter=lim).grade(
        messages, prompts.output_schema(grader.spec, grader.spec["criteria"][0])
    )
    used = reply.prompt_tokens + reply.completion_tokens
    assert estimate - used > 100  # the estimate was well off
    level = float(client.hget(lim.keys[2], "v"))
    # Debited what the judge counted, not the estimate (plus a little refill meanwhile).
    assert 6000 - used <= level < 6000 - used + 50


@pytest.mark.django_db(transaction=True)
def test_work_while_waiting_runs_once_every_call_of_a_response_is_sent(personas, sim):
    """The reward endpoint's injection scan runs on the thread that sent a response's last
    call, while the judge answers: once per response, and not at all without a call."""
    from grading import engine

    grader, _ = setup_project(personas, responses_per_model=1)
    judge = factories.make_judge(personas.project, sim.url)
    sim.config.latency_ms = 200
    ref = services.judge_ref(judge)
    spec = grader.spec
    judged = [c["id"] for c in spec["criteria"] if c.get("kind") != "checked"][:4]
    seen: list[bool] = []

    def work():
        seen.append(True)

    def grade(response: str, mode: str, cache: dict | None = None):
        started = time.monotonic()
        out = engine.grade_items(
            spec,
            grader_hash=grader.hash,
            judges=[ref],
            messages=[{"role": "user", "content": "What should I do?"}],
            response=response,
            items=[(cid, judge.pk, 0) for cid in judged],
            mode=mode,
            cache_lookup=None if cache is None else (lambda keys: cache),
            leases_at_once=True,
            while_waiting=work,
        )
        return out, time.monotonic() - started

    out, took = grade(keywords_text([0, 1]), "per_criterion")
    assert len(out.calls) == 4 and len(seen) == 1
    assert took < 0.6  # the calls went out together, not one after another
    out, _ = grade(keywords_text([2]), "batched")
    assert len(out.calls) == 1 and len(seen) == 2
    # Every verdict from the cache: no call, so nothing is run (the caller runs it itself).
    out, _ = grade(keywords_text([2]), "batched", cache=dict(out.to_cache))
    assert out.calls == [] and len(seen) == 2
    assert sim.stats.requests == 5
