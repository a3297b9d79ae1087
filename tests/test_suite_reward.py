"""One reward URL per suite: `POST /api/suites/{id}/score/` (newest version) and
`/api/suites/{id}/versions/{n}/score/` grade each response by its task's pinned grader, through
the per-grader endpoint's own path (tests/test_reward_endpoint.py)."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from grading import services as grading_services
from grading.judges.simulator import simulated_verdict
from grading.models import JudgeCall
from rubrics import suites
from rubrics.tokens import token_create
from tests import factories
from tests.test_api import api_client

pytestmark = pytest.mark.django_db(transaction=True)

# Three tasks, each its own grader; the third has a pitfall, so a raw score can fall below 0.
CRITERIA = {
    "t-fever": [("Mentions hydration and electrolytes", 5), ("Mentions urgent evaluation", 3)],
    "t-chest": [("Mentions aspirin and ambulance", 4), ("Mentions troponin testing", 2)],
    "t-bleed": [("Mentions warfarin interaction", 3), ("Recommends codeine syrup", -4)],
}
CHANGED = [("Mentions potassium and kidney function", 2), ("Mentions sodium intake", 1)]


def expected_raw(criteria: list[tuple[str, int]], text: str) -> float:
    """The simulator's rule, then HealthBench's: met points over the positive points."""
    met = sum(points for c, points in criteria if simulated_verdict(c, text)[0])
    return met / sum(points for _, points in criteria if points > 0)


@pytest.fixture
def suite_world(personas, sim):
    project, admin = personas.project, personas.admin
    tasks = {
        external_id: factories.make_task(project, external_id, prompt=f"Prompt of {external_id}.")
        for external_id in CRITERIA
    }
    graders = {
        external_id: factories.make_published_rubric(project, tasks[external_id], criteria, admin)
        for external_id, criteria in CRITERIA.items()
    }
    suite = suites.suite_create(
        project=project, name="Clinic", user=admin, task_ids=[t.pk for t in tasks.values()]
    )
    version, _ = suites.suite_freeze(suite=suite, user=admin)
    factories.make_judge(project, sim.url)
    return type(
        "World", (), {"suite": suite, "version": version, "graders": graders, "tasks": tasks}
    )


def post(client, suite, body, number=None):
    where = f"versions/{number}/" if number is not None else ""
    return client.post(f"/api/suites/{suite.pk}/{where}score/", body, format="json")


def test_mixed_tasks_are_each_graded_by_their_own_grader(personas, sim, suite_world):
    w = suite_world
    items = [
        {
            "task": "t-fever",
            "responses": [
                "Keep up hydration with electrolytes.",
                "Seek urgent evaluation; keep hydration and electrolytes up.",
                "Rest.",
            ],
        },
        {"task": "t-bleed", "responses": ["Watch the warfarin interaction; try codeine syrup."]},
        {"task": "t-chest", "responses": ["Chew aspirin and call an ambulance.", ""]},
        {"task": "t-fever", "responses": ["Urgent evaluation now."]},
    ]
    reply = post(api_client(personas.engineer), w.suite, {"items": items})
    assert reply.status_code == 200, reply.content
    body = reply.json()
    assert body["suite"] == w.suite.pk
    assert body["version"] == w.version.number == 1
    assert body["content_hash"] == w.version.content_hash
    assert [i["task"] for i in body["items"]] == [i["task"] for i in items]
    for sent, got in zip(items, body["items"], strict=True):
        criteria = CRITERIA[sent["task"]]
        assert got["grader"] == w.graders[sent["task"]].hash
        assert len(got["results"]) == len(sent["responses"])
        for text, result in zip(sent["responses"], got["results"], strict=True):
            raw = expected_raw(criteria, text)
            assert result["score"] == pytest.approx(raw), (sent["task"], text)
            assert result["clipped"] == pytest.approx(min(1.0, max(0.0, raw)))
            assert [v["criterion"] for v in result["verdicts"]] == [
                c["id"] for c in w.graders[sent["task"]].spec["criteria"]
            ]
            assert all(v["error"] == "" for v in result["verdicts"])
            assert result["gated_by"] == [] and result["flags"] == []
    # The pitfall pulled one below 0; the empty reply asked the judge nothing.
    assert body["items"][1]["results"][0]["score"] < 0
    assert body["items"][1]["results"][0]["clipped"] == 0
    assert sim.stats.requests == 2 * 6  # six non-empty responses, two criteria each
    # Every prompt the judge read was its own task's.
    prompts = [str(m) for m in sim.received]
    assert sum("Prompt of t-fever." in p for p in prompts) == 2 * 4
    assert sum("Prompt of t-bleed." in p for p in prompts) == 2
    # Asked again (batched, another mode): the per-criterion answers are not reused, and one
    # call per response is made; the cost rows were written after the first reply.
    assert JudgeCall.objects.filter(run=None).count() == 12
    again = post(api_client(personas.admin), w.suite, {"items": items, "mode": "batched"})
    assert again.status_code == 200, again.content
    assert sim.stats.requests == 12 + 6
    scores = [[r["score"] for r in i["results"]] for i in body["items"]]
    assert [[r["score"] for r in i["results"]] for i in again.json()["items"]] == scores


def test_the_same_response_scores_the_same_through_either_url(personas, sim, suite_world):
    w = suite_world
    client = api_client(personas.engineer)
    text = "Hydration and electrolytes, then an urgent evaluation."
    by_suite = post(client, w.suite, {"items": [{"task": "t-fever", "responses": [text]}]})
    assert by_suite.status_code == 200, by_suite.content
    by_grader = client.post(
        f"/api/graders/{w.graders['t-fever'].hash}/score/",
        {"task": "t-fever", "responses": [text]},
        format="json",
    )
    assert by_grader.status_code == 200, by_grader.content
    (suite_result,) = by_suite.json()["items"][0]["results"]
    (grader_result,) = by_grader.json()
    for key in ("score", "clipped", "gated", "gated_by", "flags"):
        assert suite_result[key] == grader_result[key]
    assert [(v["criterion"], v["outcome"]) for v in suite_result["verdicts"]] == [
        (v["criterion"], v["outcome"]) for v in grader_result["verdicts"]
    ]
    assert sim.stats.requests == 2  # the second from the cache the first wrote
    assert all(v["cached"] for v in by_grader.json()[0]["verdicts"])


def test_an_unknown_task_is_a_400_naming_it_before_any_judge_call(personas, sim, suite_world):
    w = suite_world
    other = factories.make_task(personas.project, "t-not-in-suite")
    factories.make_published_rubric(personas.project, other, CRITERIA["t-fever"], personas.admin)
    items = [
        {"task": "t-fever", "responses": ["Hydration."]},
        {"task": "t-nowhere", "responses": ["x"]},
        {"task": "t-not-in-suite", "responses": ["y"]},
    ]
    reply = post(api_client(personas.engineer), w.suite, {"items": items})
    assert reply.status_code == 400, reply.content
    message = " ".join(reply.json()["items"])
    assert "t-nowhere" in message and "t-not-in-suite" in message and "t-fever" not in message
    assert "version 1" in message
    assert sim.stats.requests == 0
    assert not JudgeCall.objects.exists()


def test_more_than_256_responses_in_all_is_a_400(personas, sim, suite_world):
    w = suite_world
    client = api_client(personas.engineer)
    items = [
        {"task": "t-fever", "responses": ["a"] * 200},
        {"task": "t-chest", "responses": ["b"] * 57},
    ]
    reply = post(client, w.suite, {"items": items})
    assert reply.status_code == 400, reply.content
    assert "256" in str(reply.json()["items"]) and "257" in str(reply.json()["items"])
    one_item = post(client, w.suite, {"items": [{"task": "t-fever", "responses": ["a"] * 257}]})
    assert one_item.status_code == 400, one_item.content
    for bad in ({}, {"items": []}, {"items": [{"task": "t-fever", "responses": []}]}):
        assert post(client, w.suite, bad).status_code == 400, bad
    assert sim.stats.requests == 0


def test_scopes_and_roles(personas, sim, suite_world):
    w = suite_world
    body = {"items": [{"task": "t-fever", "responses": ["Hydration."]}]}
    for scopes in (["read"], ["read", "write"]):
        _, raw = token_create(user=personas.engineer, name=f"t-{len(scopes)}", scopes=scopes)
        client = api_client()
        client.credentials(HTTP_AUTHORIZATION=f"Token {raw}")
        for number in (None, 1):
            reply = post(client, w.suite, body, number)
            assert reply.status_code == 403, reply.content
            assert "'grade' scope" in reply.json()["detail"]
    for who in (personas.author, personas.reviewer, personas.annotator):
        assert post(api_client(who), w.suite, body).status_code == 403
    assert post(api_client(personas.outsider), w.suite, body).status_code == 404
    assert post(api_client(), w.suite, body).status_code == 401
    assert sim.stats.requests == 0
    _, raw = token_create(user=personas.engineer, name="trainer", scopes=["grade"])
    client = api_client()
    client.credentials(HTTP_AUTHORIZATION=f"Token {raw}")
    assert post(client, w.suite, body).status_code == 200


def test_the_newest_version_by_default_or_the_one_named(personas, sim, suite_world):
    w = suite_world
    client = api_client(personas.engineer)
    newer = factories.make_published_rubric(
        personas.project, w.tasks["t-fever"], CHANGED, personas.admin
    )
    v2, created = suites.suite_freeze(suite=w.suite, user=personas.admin)
    assert created and v2.number == 2
    text = "Hydration with electrolytes; check potassium and kidney function."
    body = {"items": [{"task": "t-fever", "responses": [text]}]}

    newest = post(client, w.suite, body)
    assert newest.status_code == 200, newest.content
    assert (newest.json()["version"], newest.json()["content_hash"]) == (2, v2.content_hash)
    assert newest.json()["items"][0]["grader"] == newer.hash
    assert newest.json()["items"][0]["results"][0]["score"] == pytest.approx(
        expected_raw(CHANGED, text)
    )

    first = post(client, w.suite, body, number=1)
    assert first.status_code == 200, first.content
    assert (first.json()["version"], first.json()["content_hash"]) == (1, w.version.content_hash)
    assert first.json()["items"][0]["grader"] == w.graders["t-fever"].hash
    assert first.json()["items"][0]["results"][0]["score"] == pytest.approx(
        expected_raw(CRITERIA["t-fever"], text)
    )
    assert post(client, w.suite, body, number=2).json()["version"] == 2
    missing = post(client, w.suite, body, number=9)
    assert missing.status_code == 404 and "no version 9" in missing.json()["detail"]
    assert client.post("/api/suites/999999/score/", body, format="json").status_code == 404
    # A suite not frozen yet has nothing to grade with.
    unfrozen = suites.suite_create(project=personas.project, name="Draft", user=personas.admin)
    reply = post(client, unfrozen, body)
    assert reply.status_code == 404 and "no frozen version" in reply.json()["detail"]


def test_a_busy_process_answers_503_with_retry_after(personas, sim, suite_world, settings):
    settings.REWARD_MAX_CONCURRENT = 1
    body = {"items": [{"task": "t-fever", "responses": ["Hydration."]}]}
    with grading_services._reward_slot():  # the process's one place, taken
        reply = post(api_client(personas.engineer), suite_world.suite, body)
    assert reply.status_code == 503, reply.content
    assert reply["Retry-After"] == "1"
    assert sim.stats.requests == 0
    assert post(api_client(personas.engineer), suite_world.suite, body).status_code == 200


def test_the_lookup_reads_the_tasks_asked_for_not_the_suite(personas, sim, suite_world):
    """The same request costs the same queries over a suite of 3 tasks and one of 23: the
    entries are read by the request's external ids, the graders' specs kept per process."""
    w = suite_world
    big = suites.suite_create(
        project=personas.project,
        name="Bigger",
        user=personas.admin,
        task_ids=[t.pk for t in w.tasks.values()],
    )
    for i in range(20):
        task = factories.make_task(personas.project, f"t-more-{i}")
        factories.make_published_rubric(
            personas.project, task, [(f"Mentions sleep {i}", 1)], personas.admin
        )
        suites.suite_add_tasks(suite=big, task_ids=[task.pk])
    suites.suite_freeze(suite=big, user=personas.admin)
    client = api_client(personas.engineer)
    body = {"items": [{"task": "t-chest", "responses": ["Aspirin."]}]}
    counts = []
    for suite in (w.suite, big, w.suite, big):
        with CaptureQueriesContext(connection) as queries:
            assert post(client, suite, body).status_code == 200
        counts.append(len(queries))
    assert counts[2] == counts[3], counts  # warm: the same, whatever the suite's size
    assert sim.stats.requests == 2  # the rest from the cache


def test_grader_facts_that_outlived_their_database_are_read_again(personas, sim, suite_world):
    """As for the per-grader endpoint: kept facts naming another row are read again, in the
    one query that reads every grader of the request this process does not know yet."""
    from dataclasses import replace

    from rubrics import selectors

    w = suite_world
    client = api_client(personas.engineer)
    body = {
        "items": [
            {"task": "t-fever", "responses": ["Hydration."]},
            {"task": "t-chest", "responses": ["Aspirin."]},
        ],
        "mode": "batched",
    }
    assert post(client, w.suite, body).status_code == 200
    kept = {t: selectors._FACTS[w.graders[t].hash] for t in ("t-fever", "t-chest")}
    for t, facts in kept.items():
        selectors._FACTS[w.graders[t].hash] = replace(facts, pk=facts.pk + 10_000, spec={})
    body["items"][0]["responses"] = ["Electrolytes."]
    reply = post(client, w.suite, body)
    assert reply.status_code == 200, reply.content
    assert [len(i["results"][0]["verdicts"]) for i in reply.json()["items"]] == [2, 2]
    assert {t: selectors._FACTS[w.graders[t].hash] for t in kept} == kept


def test_many_responses_read_the_cache_once_on_the_requests_connection(personas, sim, suite_world):
    """A request over several tasks reads the verdict cache in one statement, on the request's
    own connection, for every response at once: its responses' threads open no connection of
    their own (each was a new PostgreSQL backend per response per request)."""
    w = suite_world
    client = api_client(personas.engineer)
    items = [
        {"task": "t-fever", "responses": ["Hydration.", "Electrolytes."]},
        {"task": "t-chest", "responses": ["Aspirin."]},
        {"task": "t-bleed", "responses": ["Warfarin."]},
    ]
    assert post(client, w.suite, {"items": items}).status_code == 200  # now all cached
    calls = sim.stats.requests
    with CaptureQueriesContext(connection) as queries:
        reply = post(client, w.suite, {"items": items})
    assert reply.status_code == 200, reply.content
    assert sim.stats.requests == calls  # every verdict from the cache
    assert all(
        v["cached"] for i in reply.json()["items"] for r in i["results"] for v in r["verdicts"]
    )
    reads = [q["sql"] for q in queries if "FROM grading_cachedverdict" in q["sql"]]
    assert len(reads) == 1, reads
    assert len(set(re.findall(r"'([0-9a-f]{64})'", reads[0]))) == 8  # 4 responses x 2 criteria
