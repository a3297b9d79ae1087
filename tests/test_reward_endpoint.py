"""The reward endpoint's fast path: what it keeps per process, what it reads at every request,
and when it writes the judge's answers (after the scores are sent)."""

from __future__ import annotations

import http.client
import json
from urllib.parse import urlsplit

import pytest

from annotation import services as annotation_services
from grading.models import CachedVerdict, JudgeCall
from rubrics import services as rubric_services
from rubrics.models import Role
from rubrics.tokens import token_create
from tests import factories

CRITERIA = [("Mentions hydration and electrolytes", 5), ("Mentions urgent evaluation", 3)]


def score(client, grader, text: str, **extra):
    return client.post(
        f"/api/graders/{grader.hash}/score/",
        {"task": "t-reward", "responses": [text], **extra},
        format="json",
    )


@pytest.mark.django_db(transaction=True)
def test_the_role_and_the_prompt_are_read_at_every_request(personas, sim):
    from tests.test_api import api_client

    task = factories.make_task(personas.project, "t-reward", prompt="Original prompt ALPHA.")
    grader = factories.make_published_rubric(personas.project, task, CRITERIA, personas.admin)
    factories.make_judge(personas.project, sim.url)
    client = api_client(personas.engineer)

    reply = score(client, grader, "Drink water with electrolytes.")
    assert reply.status_code == 200, reply.content
    assert "Original prompt ALPHA." in json.dumps(sim.received[-1])

    # The grader is now known to this process; a changed prompt is still what the judge reads.
    annotation_services.task_update(
        task=task, messages=[{"role": "user", "content": "Changed prompt BETA."}]
    )
    reply = score(client, grader, "Rest, and see a doctor urgently.")
    assert reply.status_code == 200, reply.content
    received = json.dumps(sim.received[-1])
    assert "Changed prompt BETA." in received and "ALPHA" not in received

    # A role taken away takes effect at the next request: 403 for a role that may not grade,
    # 404 once not a member.
    rubric_services.membership_set(
        project=personas.project, username=personas.engineer.username, role=Role.ANNOTATOR
    )
    reply = score(client, grader, "Another reply.")
    assert reply.status_code == 403, reply.content
    rubric_services.membership_remove(project=personas.project, username=personas.engineer.username)
    reply = score(client, grader, "Another reply.")
    assert reply.status_code == 404, reply.content
    # An unknown hash is a 404 too, and names nothing.
    reply = client.post(
        "/api/graders/" + "0" * 64 + "/score/",
        {"task": "t-reward", "responses": ["x"]},
        format="json",
    )
    assert reply.status_code == 404
    assert sim.stats.requests == 4  # two requests, two criteria each (per criterion)


@pytest.mark.django_db(transaction=True)
def test_the_next_request_on_a_trainers_connection_finds_the_cache(personas, sim, live_server):
    """The cache and cost rows are written once the scores are sent, before the server reads
    the connection's next request: a trainer asking again never pays twice."""
    task = factories.make_task(personas.project, "t-reward")
    grader = factories.make_published_rubric(personas.project, task, CRITERIA, personas.admin)
    factories.make_judge(personas.project, sim.url)
    _, key = token_create(user=personas.engineer, name="trainer", scopes=["grade"])
    url = urlsplit(live_server.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    headers = {"Authorization": f"Token {key}", "Content-Type": "application/json"}

    def post(texts: list[str]) -> list[dict]:
        body = {"task": "t-reward", "responses": texts, "mode": "batched"}
        conn.request("POST", f"/api/graders/{grader.hash}/score/", json.dumps(body), headers)
        reply = conn.getresponse()
        content = reply.read()
        assert reply.status == 200, content
        return json.loads(content)

    try:
        first = post(["Hydration with electrolytes, and an urgent evaluation."])
        again = post(["Hydration with electrolytes, and an urgent evaluation."])
        assert sim.stats.requests == 1
        assert not any(v["cached"] for v in first[0]["verdicts"])
        assert all(v["cached"] for v in again[0]["verdicts"])
        assert again[0]["score"] == first[0]["score"] == 1.0
        # Three fresh replies at once (a thread each): one batched call each, every answer
        # cached and every call's cost kept, in one write.
        many = post([f"Reply {i} about hydration." for i in range(3)])
        assert len(many) == 3 and sim.stats.requests == 4
    finally:
        conn.close()
    assert JudgeCall.objects.filter(run=None).count() == 4
    assert sum(JudgeCall.objects.values_list("criteria", flat=True)) == 8
    assert CachedVerdict.objects.count() == 8


@pytest.mark.django_db(transaction=True)
def test_grader_facts_that_outlived_their_database_are_read_again(personas, sim):
    """As when a database is recreated under a running server: the kept facts name a grader
    row that is not there; the request reads them again instead of failing."""
    from dataclasses import replace

    from rubrics import selectors
    from tests.test_api import api_client

    task = factories.make_task(personas.project, "t-reward")
    grader = factories.make_published_rubric(personas.project, task, CRITERIA, personas.admin)
    factories.make_judge(personas.project, sim.url)
    client = api_client(personas.engineer)
    assert score(client, grader, "Hydration.", mode="batched").status_code == 200
    kept = selectors._FACTS[grader.hash]
    selectors._FACTS[grader.hash] = replace(kept, pk=kept.pk + 10_000, project_id=0, task_id=0)
    reply = score(client, grader, "Electrolytes.", mode="batched")
    assert reply.status_code == 200, reply.content
    assert selectors._FACTS[grader.hash] == kept
    assert sim.stats.requests == 2


@pytest.mark.django_db(transaction=True)
def test_requests_at_once_share_the_judges_limit_and_return_every_lease(
    personas, sim, live_server, settings
):
    """A request takes its calls' leases together when the judge has room for all of them,
    and otherwise one by one; either way the judge's limit holds across the requests, none
    waits on another for ever, and every lease goes back."""
    from concurrent.futures import ThreadPoolExecutor

    from grading.judges.limits import key, redis_client

    settings.REWARD_MAX_CONCURRENT = 4  # a reward pool's process: all four served at once

    criteria = [*CRITERIA, ("Mentions rest", 2), ("Mentions a doctor", 2)]
    task = factories.make_task(personas.project, "t-reward")
    grader = factories.make_published_rubric(personas.project, task, criteria, personas.admin)
    judge = factories.make_judge(personas.project, sim.url, max_concurrency=6)
    sim.config.latency_ms = 150
    sim.config.max_concurrency = 6  # above it the simulator answers 429
    _, token = token_create(user=personas.engineer, name="trainer", scopes=["grade"])
    url = urlsplit(live_server.url)

    def post(i: int) -> list[dict]:
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
        try:
            body = {"task": "t-reward", "responses": [f"Reply {i}: rest and hydration."]}
            conn.request(
                "POST",
                f"/api/graders/{grader.hash}/score/",
                json.dumps(body),
                {"Authorization": f"Token {token}", "Content-Type": "application/json"},
            )
            reply = conn.getresponse()
            content = reply.read()
            assert reply.status == 200, content
            return json.loads(content)
        finally:
            conn.close()

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(post, range(4)))
    assert [len(r[0]["verdicts"]) for r in results] == [4, 4, 4, 4]
    assert all(v["outcome"] in ("met", "unmet") for r in results for v in r[0]["verdicts"])
    assert sim.stats.requests == 16  # no call was refused and made again
    assert sim.stats.peak_concurrency <= 6
    assert redis_client().zcard(key(judge.pk, "inflight")) == 0


@pytest.mark.django_db(transaction=True)
def test_the_judge_asked_for_or_else_the_projects_first_by_name(personas, sim):
    from grading import services as grading_services
    from tests.test_api import api_client

    task = factories.make_task(personas.project, "t-reward")
    grader = factories.make_published_rubric(personas.project, task, CRITERIA, personas.admin)
    later, first = (
        grading_services.judge_create(
            project=personas.project, name=name, base_url=sim.url, model=f"{name}-model"
        )
        for name in ("zeta", "alpha")
    )
    client = api_client(personas.engineer)
    assert score(client, grader, "Hydration.", mode="batched").status_code == 200
    assert JudgeCall.objects.latest("id").judge_id == first.pk
    reply = score(client, grader, "Electrolytes.", mode="batched", judge=later.pk)
    assert reply.status_code == 200, reply.content
    assert JudgeCall.objects.latest("id").judge_id == later.pk
    reply = score(client, grader, "Rest.", judge=first.pk + later.pk + 1000)
    assert reply.status_code == 400
    assert "No such judge" in reply.content.decode()


@pytest.mark.parametrize(
    "figures",
    [
        dict(raw=0.625, gated=False, gated_by=()),
        dict(raw=-0.4, gated=True, gated_by=(7, 9)),
        dict(raw=None, gated=False, gated_by=()),
        dict(raw=1, gated=False, gated_by=()),  # an integer score is still a float in JSON
    ],
)
def test_the_reply_is_what_the_documented_serializer_makes_of_it(figures):
    """The reward endpoints build their reply directly (_reward_out) rather than through
    DRF's serializers, which cost a trainer over a millisecond a request; the serializer
    stays the schema, and this holds the two to the same JSON, field for field."""
    from grading import engine, services
    from grading.api.reward import RewardScoreApi, _reward_out
    from rubrics import scoring

    reward = services.Reward(
        scoring.ScoreResult(met_points=5, possible_points=8, error_count=0, method="hb", **figures),
        [
            engine.Graded(7, "met", explanation="Says it.", cached=True),
            engine.Graded(9, "unmet", value=0.25, explanation="Level 2 of 5."),
            engine.Graded(11, "error", error="timeout: judge call exceeded its deadline"),
        ],
        ["instructions to the grader in message 2"],
        [
            services.StepReward(step=1, criterion_id=11, outcome="met", reward=0.5),
            services.StepReward(step=3, criterion_id=11, outcome="error", reward=None),
            services.StepReward(step=5, criterion_id=11, outcome="unmet", reward=0),
        ],
    )
    direct = _reward_out(reward)
    documented = RewardScoreApi.OutputSerializer(
        {
            "score": reward.figures.raw,
            "clipped": reward.figures.clipped,
            "gated": reward.figures.gated,
            "gated_by": list(reward.figures.gated_by),
            "verdicts": reward.graded,
            "flags": reward.flags,
            "steps": reward.steps,
        }
    ).data
    assert json.dumps(direct) == json.dumps(documented)
