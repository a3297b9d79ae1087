"""Grading episodes: every scope (outcome, trajectory, step) and every step rule, on
hand-worked examples, through the engine, the judge simulator and a real Celery worker."""

from __future__ import annotations

import json

import pytest

from annotation.content import render
from annotation.content.episode import Episode
from grading import services
from rubrics import scoring
from rubrics.scoring import ERROR, MET, NOT_APPLICABLE, UNMET, Outcome, step_rule_outcome
from tests import factories

# --- The step rules, by hand -------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "steps", "expected"),
    [
        # all: met iff met at every step
        ("all", [MET, MET, MET], Outcome(MET)),
        ("all", [MET, UNMET, MET], Outcome(UNMET)),
        ("all", [], Outcome(NOT_APPLICABLE)),
        ("all", [MET, NOT_APPLICABLE], Outcome(MET)),  # na steps leave the rule
        ("all", [NOT_APPLICABLE], Outcome(NOT_APPLICABLE)),
        # share: met, valued at the share of steps met
        ("share", [MET, UNMET, MET, UNMET], Outcome(MET, 0.5)),
        ("share", [MET, MET, UNMET], Outcome(MET, 2 / 3)),
        ("share", [UNMET, UNMET], Outcome(MET, 0.0)),
        ("share", [], Outcome(NOT_APPLICABLE)),
        # any: met iff met at some step (a pitfall)
        ("any", [UNMET, UNMET, MET], Outcome(MET)),
        ("any", [UNMET, UNMET], Outcome(UNMET)),
        ("any", [], Outcome(UNMET)),
        # an error at any step makes the whole an error, whatever the rule
        ("all", [MET, ERROR], Outcome(ERROR)),
        ("share", [ERROR, MET], Outcome(ERROR)),
        ("any", [MET, ERROR], Outcome(ERROR)),
    ],
)
def test_step_rule_outcome(rule, steps, expected):
    got = step_rule_outcome(rule, [Outcome(s) for s in steps])
    assert got.outcome == expected.outcome
    assert got.value == pytest.approx(expected.value) if expected.value is not None else True
    assert (got.value is None) == (expected.value is None)


def test_step_rule_outcome_on_scale_steps():
    values = [Outcome(MET, 1.0), Outcome(MET, 0.5), Outcome(UNMET, 0.0)]
    assert step_rule_outcome("share", values) == Outcome(MET, 0.5)
    assert step_rule_outcome("all", values) == Outcome(UNMET, 0.0)
    assert step_rule_outcome("any", values) == Outcome(MET, 1.0)
    assert step_rule_outcome("all", values[:2]) == Outcome(MET, 0.5)


def test_step_rule_outcome_refuses_an_unknown_rule():
    with pytest.raises(ValueError, match="unknown step rule 'most'"):
        step_rule_outcome("most", [MET])


def test_a_share_scores_like_a_scale_value():
    spec = {"criteria": [{"id": 1, "points": 4}, {"id": 2, "points": 4}]}
    share = step_rule_outcome("share", [Outcome(MET), Outcome(UNMET), Outcome(MET), Outcome(MET)])
    figures = scoring.score(spec, {1: share, 2: Outcome(MET)})
    assert figures.met_points == pytest.approx(4 * 0.75 + 4)
    assert figures.raw == pytest.approx(7 / 8)


# --- The engine: every scope on a hand-worked episode ------------------------------------

# A refund agent's episode. Its steps (assistant turns) are messages 1, 3 and 5.
EPISODE = {
    "messages": [
        {"role": "user", "content": "Refund order A17, it arrived broken."},
        {
            "role": "assistant",
            "content": "Let me check the order first.",
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "lookup_order", "arguments": '{"id": "A17"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": '{"status": "delivered"}'},
        {
            "role": "assistant",
            "content": "Issuing the refund now.",
            "tool_calls": [
                {
                    "id": "c2",
                    "type": "function",
                    "function": {"name": "refund", "arguments": '{"id": "A17"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c2", "content": '{"ok": true}'},
        {
            "role": "assistant",
            "content": "Done: your refund is on its way. Apologies for the damaged parcel.",
        },
    ],
    "final_state": {"orders": {"A17": {"refunded": True}}},
}
STEPS = [1, 3, 5]

# (text, points, scope, step rule, step tool, check); worked out by the simulator's rule
# (grading.judges.simulator): key words of 5+ letters, met when half are found in what the
# scope shows.
RUBRIC = [
    # outcome, on the final answer: apolo/damag/parce all found -> met
    ("Apologizes for the damaged parcel", 2, "outcome", "", "", None),
    # outcome: nothing of offers/replacement/shipping -> unmet
    ("Offers replacement shipping", 1, "outcome", "", "", None),
    # trajectory: "lookup" and "order" are in the call line (2 of 3) -> met; the final
    # answer alone holds neither, so as an outcome criterion it would be unmet
    ("Consulted lookup_order", 3, "trajectory", "", "", None),
    # trajectory: escalated/supervisor nowhere -> unmet
    ("Escalated to supervisor", 1, "trajectory", "", "", None),
    # step "all": "refund" at steps 3 and 5, not 1 -> unmet
    ("Mentions the refund", 2, "step", "all", "", None),
    # step "share": refund/discussed half found at steps 3 and 5 -> 2 of 3 steps
    ("Refund discussed", 3, "step", "share", "", None),
    # step "any", a pitfall: issuing/refunds/immediately 2 of 3 at step 3 only -> met
    ("Issuing refunds immediately", -2, "step", "any", "", None),
    # step "all" over the turns that call lookup_order (step 1 only): check/order -> met
    ("Checks the order", 1, "step", "all", "lookup_order", None),
    # checked in code on the final text
    ("Says refund", 1, "outcome", "", "", {"type": "contains", "value": "refund"}),
]
EXPECTED = {  # criterion number (1-based) -> (outcome, value) on the response
    1: ("met", None),
    2: ("unmet", None),
    3: ("met", None),
    4: ("unmet", None),
    5: ("unmet", None),
    6: ("met", 2 / 3),
    7: ("met", None),
    8: ("met", None),
    9: ("met", None),
}
EXPECTED_STEPS = {  # criterion number -> {step: outcome}
    5: {1: "unmet", 3: "met", 5: "met"},
    6: {1: "unmet", 3: "met", 5: "met"},
    7: {1: "unmet", 3: "met", 5: "unmet"},
    8: {1: "met"},
}
# met points: 2 + 3 + 3 x 2/3 - 2 + 1 + 1 = 7 of 2+1+3+1+2+3+1+1 = 14 possible
EXPECTED_SCORE = 0.5


def make_grader(project, user, rubric=RUBRIC, task=None):
    """A published grader whose criteria carry scopes (set on the draft, then published)."""
    from decimal import Decimal

    from rubrics import services as rubric_services
    from rubrics.models import Criterion

    task = task or factories.make_task(project, prompt="Refund order A17, it arrived broken.")
    made = rubric_services.rubric_create(
        project=project,
        task=task,
        title=f"Rubric for {task.external_id}",
        user=user,
        criteria=[
            rubric_services.CriterionInput(
                text=text,
                points=Decimal(points),
                kind="checked" if check else "binary",
                check_spec=check,
            )
            for text, points, _scope, _rule, _tool, check in rubric
        ],
    )
    version = made.versions.get()
    for criterion, (_t, _p, scope, rule, tool, _c) in zip(
        version.criteria.order_by("position"), rubric, strict=True
    ):
        Criterion.objects.filter(pk=criterion.pk).update(
            scope=scope, step_rule=rule, step_tool=tool
        )
    return rubric_services.version_publish(version=version, user=user)


def numbered(grader) -> dict[int, int]:
    """criterion id -> its number (1-based, rubric order)."""
    return {c["id"]: n for n, c in enumerate(grader.spec["criteria"], start=1)}


def grade(grader, judge, response, mode="per_criterion", cache=None):
    from grading import engine

    return engine.grade_items(
        grader.spec,
        grader_hash=grader.hash,
        judges=[services.judge_ref(judge)],
        messages=grader.version.rubric.task.messages,
        response=response,
        items=[(c["id"], judge.pk, 0) for c in grader.spec["criteria"]],
        mode=mode,
        cache_lookup=None if cache is None else (lambda keys: cache),
    )


def verdicts_of(grader, graded):
    number = numbered(grader)
    whole = {number[g.criterion_id]: (g.outcome, g.value) for g in graded if g.step is None}
    steps: dict[int, dict[int, str]] = {}
    for g in graded:
        if g.step is not None:
            steps.setdefault(number[g.criterion_id], {})[g.step] = g.outcome
    return whole, steps


def assert_expected(whole, steps):
    assert {n: o for n, (o, _v) in whole.items()} == {n: o for n, (o, _v) in EXPECTED.items()}
    assert whole[6][1] == pytest.approx(2 / 3)
    assert steps == EXPECTED_STEPS


@pytest.mark.parametrize("mode", ["per_criterion", "batched"])
def test_every_scope_and_step_rule_on_a_hand_worked_episode(personas, sim, mode):
    grader = make_grader(personas.project, personas.admin)
    judge = factories.make_judge(personas.project, sim.url)
    out = grade(grader, judge, Episode.parse(EPISODE), mode)
    whole, steps = verdicts_of(grader, out.graded)
    assert_expected(whole, steps)
    assert not [g for g in out.graded if g.outcome == "error"]
    # The step rule's verdict says how it was reached; it made no call of its own.
    by_number = {numbered(grader)[g.criterion_id]: g for g in out.graded if g.step is None}
    assert by_number[6].explanation == "Step rule 'share': met at 2 of 3 steps."
    assert by_number[8].explanation.endswith("(step tool lookup_order).")
    figures = scoring.score(
        grader.spec, {g.criterion_id: g.as_outcome() for g in out.graded if g.step is None}
    )
    assert figures.raw == pytest.approx(EXPECTED_SCORE)
    if mode == "per_criterion":
        # 2 outcome + 2 trajectory + 3 + 3 + 3 + 1 step items: one call each
        assert len(out.calls) == sim.stats.requests == 14
    else:
        # one call per view: outcome (2), trajectory (2), step 1 (4 criteria), step 3 (3),
        # step 5 (3)
        assert len(out.calls) == sim.stats.requests == 5
        assert sorted(c.criteria for c in out.calls) == [2, 2, 3, 3, 4]
        assert sorted((c.step is None, c.step) for c in out.calls)[:3] == [
            (False, 1),
            (False, 3),
            (False, 5),
        ]


def test_what_each_scope_shows_the_judge(personas, sim):
    grader = make_grader(personas.project, personas.admin)
    judge = factories.make_judge(personas.project, sim.url)
    grade(grader, judge, Episode.parse(EPISODE))
    prompts_by_criterion = {}
    for messages in sim.received:
        user = messages[1]["content"]
        for text, *_rest in RUBRIC:
            if f") {text}\n" in user:
                prompts_by_criterion.setdefault(text, []).append(user)
    outcome = prompts_by_criterion["Apologizes for the damaged parcel"][0]
    assert "Apologies for the damaged parcel." in outcome
    assert "lookup_order" not in outcome and "# What the response is" not in outcome
    trajectory = prompts_by_criterion["Consulted lookup_order"][0]
    assert "#2 assistant: Let me check the order first." in trajectory
    assert "calls lookup_order (c1)" in trajectory and "FINAL STATE:" in trajectory
    assert "# What the response is" in trajectory
    steps = prompts_by_criterion["Mentions the refund"]
    assert len(steps) == 3
    for step, user in zip(STEPS, sorted(steps, key=len), strict=True):
        assert f"judge only the last assistant turn shown (#{step + 1}" in user
        assert f"#{step + 1} assistant:" in user and f"#{step + 2} " not in user
        assert "FINAL STATE" not in user


def test_cache_keys_cover_the_rendered_view(personas, sim):
    """The same final answer in another episode, or another step, never shares a verdict."""
    grader = make_grader(personas.project, personas.admin)
    judge = factories.make_judge(personas.project, sim.url)
    first = grade(grader, judge, Episode.parse(EPISODE))
    keys = list(first.to_cache)
    assert len(keys) == len(set(keys)) == 14
    # Again from the cache: no call, the same verdicts, steps and all.
    sim.reset()
    again = grade(grader, judge, Episode.parse(EPISODE), cache=dict(first.to_cache))
    assert sim.stats.requests == 0 and all(
        g.cached for g in again.graded if g.judged and g.step is not None
    )
    assert_expected(*verdicts_of(grader, again.graded))
    # Another episode with the same final answer: the outcome items hit, the rest are asked.
    other = {**EPISODE, "messages": [EPISODE["messages"][0], EPISODE["messages"][5]]}
    sim.reset()
    out = grade(grader, judge, Episode.parse(other), cache=dict(first.to_cache))
    assert sim.stats.requests == 2 + 1 + 1 + 1  # trajectory x2, one step x3 criteria without tool
    whole, steps = verdicts_of(grader, out.graded)
    assert whole[3][0] == "unmet"  # no lookup_order call in this episode
    assert whole[8] == ("na", None)  # no turn calls lookup_order: no steps
    assert steps[5] == {1: "met"}  # the one turn, message 1 of this episode


def test_a_plain_text_response_grades_as_before(personas, sim):
    """Text: every scope reads the text itself; a step criterion has one step, 0."""
    grader = make_grader(personas.project, personas.admin)
    judge = factories.make_judge(personas.project, sim.url)
    text = EPISODE["messages"][5]["content"]
    out = grade(grader, judge, text)
    whole, steps = verdicts_of(grader, out.graded)
    assert whole[3][0] == "unmet"  # the text has no lookup_order
    assert steps == {5: {0: "met"}, 6: {0: "met"}, 7: {0: "unmet"}}
    assert whole[8] == ("na", None)
    # An outcome criterion's prompt is byte for byte what the text alone gets; and the text
    # as a one-message Episode grades the same as the text.
    sim.reset()
    again = grade(grader, judge, Episode.from_text(text))
    assert verdicts_of(grader, again.graded) == (whole, steps)
    assert not any("# What the response is" in m[1]["content"] for m in sim.received)


def test_empty_views_ask_no_judge(personas, sim):
    grader = make_grader(personas.project, personas.admin)
    judge = factories.make_judge(personas.project, sim.url)
    episode = {
        "messages": [
            {"role": "user", "content": "Refund order A17."},
            {"role": "assistant", "content": "  "},
            {"role": "assistant", "content": "Issuing the refund now."},
        ]
    }
    out = grade(grader, judge, Episode.parse(episode))
    whole, steps = verdicts_of(grader, out.graded)
    # step 1 is empty: unmet, no call; step 2 is judged
    assert steps[5] == {1: "unmet", 2: "met"}
    empty_step = [g for g in out.graded if g.step == 1]
    assert all(not g.judged and "Empty response" in g.explanation for g in empty_step)
    # An episode whose turns are all empty: nothing is asked.
    sim.reset()
    nothing = {
        "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": ""}]
    }
    out = grade(grader, judge, Episode.parse(nothing))
    assert sim.stats.requests == 0 and out.calls == []
    whole, _ = verdicts_of(grader, out.graded)
    assert whole[1][0] == whole[3][0] == whole[5][0] == "unmet"
    assert whole[9][0] == "unmet"  # checked still runs: no "refund" in the final text


def test_an_error_at_a_step_makes_the_criterion_an_error(personas, sim, settings):
    grader = make_grader(personas.project, personas.admin)
    judge = factories.make_judge(personas.project, sim.url)
    settings.JUDGE_MAX_ATTEMPTS = 1
    sim.config.fault_rate = 1.0
    sim.config.faults = ("500",)
    out = grade(grader, judge, Episode.parse(EPISODE))
    by_number = {numbered(grader)[g.criterion_id]: g for g in out.graded if g.step is None}
    assert by_number[5].outcome == "error"
    assert by_number[5].error.startswith(by_number[5].reason + ": at step #2: ")
    assert by_number[9].outcome == "met"  # checked: no judge
    assert out.to_cache == {}


def test_a_judge_reply_that_is_not_a_verdict_at_a_step_is_an_error_kept_once(
    personas, sim, settings
):
    grader = make_grader(personas.project, personas.admin)
    judge = factories.make_judge(personas.project, sim.url)
    settings.JUDGE_MAX_ATTEMPTS = 2
    sim.config.fault_rate = 1.0
    sim.config.faults = ("malformed",)
    out = grade(grader, judge, Episode.parse(EPISODE))
    steps = [g for g in out.graded if g.step is not None]
    assert steps and all(g.outcome == "error" and g.error for g in steps)
    assert all(g.outcome == "error" for g in out.graded if g.step is None and g.judged)
    # Each call asked a bounded few times (an unreadable reply is asked again once or twice),
    # never again and again: every request the judge saw is counted on a call.
    assert all(c.usage.attempts <= 3 for c in out.calls)
    assert sim.stats.requests == sum(c.usage.attempts for c in out.calls)
    assert out.to_cache == {}


# --- The worker: step verdicts stored, idempotent, counted -------------------------------


def make_responses(project, task):
    from annotation.models import Response

    episode = Episode.parse(EPISODE)
    agent = Response.objects.create(
        task=task, model="agent", text=episode.final_text, content=episode.stored()
    )
    text = Response.objects.create(
        task=task, model="texter", text=EPISODE["messages"][5]["content"]
    )
    return agent, text


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("mode", ["per_criterion", "batched"])
def test_a_run_stores_step_verdicts_and_scores_by_the_step_rule(personas, sim, celery_worker, mode):
    from annotation.models import Verdict
    from grading import selectors
    from grading.models import GradingRun, JudgeCall, Score
    from tests.conftest import wait_for

    project, admin = personas.project, personas.admin
    grader = make_grader(project, admin)
    agent, text = make_responses(project, grader.version.rubric.task)
    judge = factories.make_judge(project, sim.url)
    # Without the cache: the text's outcome items would otherwise hit the episode's (the same
    # final answer), or not, as the two responses race.
    run = services.run_create(
        project=project, grader=grader, judge=judge, user=admin, mode=mode, use_cache=False
    )
    # Items are the verdicts on responses; steps are not items.
    assert run.total_items == 2 * len(RUBRIC)
    wait_for(
        lambda: GradingRun.objects.get(pk=run.pk).status == "completed",
        timeout=120,
        what="the run to complete",
    )
    number = numbered(grader)
    rows = Verdict.objects.filter(run=run, response=agent)
    whole = {number[v.criterion_id]: (v.outcome, v.value) for v in rows if v.step is None}
    steps: dict[int, dict[int, str]] = {}
    for v in rows:
        if v.step is not None:
            steps.setdefault(number[v.criterion_id], {})[v.step] = v.outcome
    assert_expected(whole, steps)
    # Every judged step verdict names the call that decided it.
    assert all(v.call_id for v in rows if v.step is not None)
    assert Score.objects.get(run=run, response=agent).raw == pytest.approx(EXPECTED_SCORE)
    text_steps = set(
        Verdict.objects.filter(run=run, response=text, step__isnull=False).values_list(
            "criterion_id", "step"
        )
    )
    assert {(number[c], s) for c, s in text_steps} == {(5, 0), (6, 0), (7, 0)}
    progress = selectors.run_progress(GradingRun.objects.get(pk=run.pk))
    assert progress.done == progress.total == 2 * len(RUBRIC)
    # The estimate counted the calls the run made: the episode's steps and the text's.
    run.refresh_from_db()
    made = JudgeCall.objects.filter(run=run)
    assert run.estimate["calls"] == made.count() == (21 if mode == "per_criterion" else 7)
    sent = sum(made.values_list("prompt_tokens", flat=True))
    assert run.estimate["input_tokens"] == pytest.approx(sent, rel=0.01)

    # A retried item (its verdict on the response gone, as after a lost write) is graded
    # again: its steps are judged again but stored once, and the score stands.
    before = Verdict.objects.filter(run=run).count()
    step_criterion = next(c for c, n in number.items() if n == 6)
    Verdict.objects.filter(
        run=run, response=agent, criterion_id=step_criterion, step__isnull=True
    ).delete()
    Score.objects.filter(run=run, response=agent).update(status="pending", raw=None)
    GradingRun.objects.filter(pk=run.pk).update(status="running")
    assert services.grade_response(run_id=run.pk, response_id=agent.pk) == "graded 1 items"
    assert Verdict.objects.filter(run=run).count() == before
    assert Score.objects.get(run=run, response=agent).raw == pytest.approx(EXPECTED_SCORE)


@pytest.mark.django_db(transaction=True)
def test_an_episode_costs_the_worker_no_more_queries_than_a_text(personas, sim):
    """Steps are judged and stored within the same statements: the worker's queries for a
    30-step episode are those of a text response."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from annotation.models import Response, Verdict

    project, admin = personas.project, personas.admin
    grader = make_grader(project, admin)
    task = grader.version.rubric.task
    long = {"messages": [EPISODE["messages"][0]]}
    for i in range(30):
        long["messages"].append(
            {
                "role": "assistant",
                "content": f"Step {i}: refund checks.",
                "tool_calls": [{"id": f"c{i}", "function": {"name": "lookup_order"}}],
            }
        )
        long["messages"].append({"role": "tool", "tool_call_id": f"c{i}", "content": "ok"})
    episode = Episode.parse(long)
    agent = Response.objects.create(
        task=task, model="agent", text=episode.final_text, content=episode.stored()
    )
    text = Response.objects.create(task=task, model="texter", text=episode.final_text)
    judge = factories.make_judge(project, sim.url)
    run = services.run_create(project=project, grader=grader, judge=judge, user=admin, start=False)
    services.run_start(run_id=run.pk, enqueue=False)
    counts = {}
    for response in (text, agent):
        with CaptureQueriesContext(connection) as queries:
            services.grade_response(run_id=run.pk, response_id=response.pk)
        counts[response.model] = len(queries)
    # The text goes first and so also pays the read of the grader, which the worker then
    # keeps (graders are immutable), and marks the run simulated: the episode, 30 steps and
    # all, costs no more.
    assert counts["agent"] <= counts["texter"] <= counts["agent"] + 2
    # 30 steps x 4 step criteria (every turn calls lookup_order, the step tool of one)
    assert Verdict.objects.filter(run=run, response=agent, step__isnull=False).count() == 4 * 30


# --- The simulator's rules for episodes --------------------------------------------------


def test_the_simulator_reads_the_step_mark_the_prompts_write():
    from grading.judges import prompts, simulator

    assert simulator.STEP_MARK == prompts.STEP_MARK
    assert simulator.STEP_MARK in prompts.about_section("step", step=4)
    assert "#5" in prompts.about_section("step", step=4)
    assert simulator.STEP_MARK not in prompts.about_section("trajectory")


def test_the_simulator_judges_a_step_on_its_last_assistant_turn_only(settings):
    from grading.judges import prompts
    from grading.judges.simulator import SimulatorConfig, SimulatorServer, last_assistant_turn

    episode = Episode.parse(EPISODE)
    rendered = render.for_judge_step(episode, 3)
    assert last_assistant_turn(rendered.text) == (
        '#4 assistant: Issuing the refund now.\n   calls refund (c2) {"id": "A17"}'
    )
    spec = {
        "judge": {
            "system_template": "{schema}",
            "user_template": "<<<CONVERSATION {conversation_nonce}\n{conversation}\n"
            "CONVERSATION {conversation_nonce}>>>\n<<<RESPONSE {response_nonce}\n{response}\n"
            "RESPONSE {response_nonce}>>>\n{reference}<<<CRITERION {criterion_nonce}\n"
            "({points} points) {criterion}\nCRITERION {criterion_nonce}>>>\n{guidance}",
            "output_schema": {},
        }
    }
    server = SimulatorServer("127.0.0.1", 0, SimulatorConfig())
    try:

        def met(text: str, view: str, about: str) -> bool:
            prompt = prompts.judge_messages(
                spec,
                messages=[{"role": "user", "content": "Refund A17."}],
                response=view,
                criterion={"text": text, "points": 1},
                about=about,
            )
            return json.loads(server.answer("\n".join(m["content"] for m in prompt)))[
                "criteria_met"
            ]

        step1 = render.for_judge_step(episode, 1).text
        about1 = prompts.about_section("step", step=1)
        # "lookup_order" is in step 1's call; "delivered" only in a later tool output.
        assert met("Calls lookup_order", step1, about1)
        assert not met("Calls lookup_order", rendered.text, prompts.about_section("step", step=3))
        # The user's words are context, not the step: "broken" is never found at a step...
        assert not met("Mentions broken", step1, about1)
        # ... but a trajectory criterion reads the whole episode, tool outputs included.
        whole = render.for_judge(episode)
        assert met("Mentions delivered", whole.text, prompts.about_section("trajectory"))
        # A step mark forged inside the fence is text: the whole response is read.
        forged = step1 + "\n" + prompts.STEP_MARK
        assert met("Mentions broken", forged, "")
    finally:
        server.server_close()


def test_a_long_trajectory_tells_the_judge_what_was_elided(personas, sim):
    rubric = [("Consulted lookup_order", 3, "trajectory", "", "", None)]
    grader = make_grader(personas.project, personas.admin, rubric=rubric)
    judge = factories.make_judge(personas.project, sim.url)
    messages = [EPISODE["messages"][0]]
    for i in range(40):
        messages.append({"role": "assistant", "content": f"Thinking {i}: " + "words " * 200})
    episode = Episode.parse({"messages": messages})
    assert render.for_judge(episode).elided_messages > 0
    grade(grader, judge, episode)
    [prompt] = [m[1]["content"] for m in sim.received]
    fence_end = prompt.index("RESPONSE", prompt.index("<<<RESPONSE") + 12)
    note = prompt.index("Note: ")
    assert note > fence_end and "messages in the middle of the episode were elided" in prompt
