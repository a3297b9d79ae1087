"""The reward endpoints take episodes: per-step (process) rewards beside the score, equal to
a run's step verdicts on the same episode; bad episodes are 400s naming where; the reward
client passes multi-turn rollouts."""

from __future__ import annotations

import copy
import json

import pytest

from annotation.models import Verdict
from grading import reward_client, services
from grading.api.reward import AFTER_REPLY
from grading.models import GradingRun, Score
from rubrics import suites
from rubrics.tokens import token_create
from tests import factories
from tests.conftest import wait_for
from tests.test_api import api_client
from tests.test_episode_grading import (
    EPISODE,
    EXPECTED_SCORE,
    EXPECTED_STEPS,
    make_grader,
    make_responses,
    numbered,
)

pytestmark = pytest.mark.django_db(transaction=True)

POSSIBLE = 14  # the rubric's positive points (tests/test_episode_grading.py RUBRIC)


def steps_of(result: dict, number: dict[int, int]) -> dict[tuple[int, int], tuple[str, float]]:
    return {
        (number[s["criterion"]], s["step"]): (s["outcome"], s["reward"]) for s in result["steps"]
    }


def test_per_step_rewards_equal_a_runs_step_verdicts(personas, sim, celery_worker):
    project, admin = personas.project, personas.admin
    grader = make_grader(project, admin)
    task = grader.version.rubric.task
    judge = factories.make_judge(project, sim.url)
    number = numbered(grader)
    points = {number[c["id"]]: c["points"] for c in grader.spec["criteria"]}
    client = api_client(personas.engineer)

    # The per-grader URL, then the suite's, each graded afresh (nothing cached yet).
    reply = client.post(
        f"/api/graders/{grader.hash}/score/",
        {"task": task.external_id, "responses": [EPISODE]},
        format="json",
    )
    assert reply.status_code == 200, reply.content
    [result] = reply.json()
    assert result["score"] == pytest.approx(EXPECTED_SCORE)
    rewards = steps_of(result, number)
    expected = {
        (n, step): (outcome, points[n] * (outcome == "met") / POSSIBLE)
        for n, by_step in EXPECTED_STEPS.items()
        for step, outcome in by_step.items()
    }
    assert rewards == expected
    # Ordered by step, then rubric order; the pitfall met at step 3 is a negative reward.
    assert [(s["step"], number[s["criterion"]]) for s in result["steps"]] == sorted(
        (step, n) for n, step in expected
    )
    assert rewards[(7, 3)] == ("met", -2 / POSSIBLE)

    version = suites.suite_of_grader(grader=grader, user=admin)
    reply = client.post(
        f"/api/suites/{version.suite_id}/score/",
        {"items": [{"task": task.external_id, "responses": [EPISODE["messages"], EPISODE]}]},
        format="json",
    )
    assert reply.status_code == 200, reply.content
    as_list, as_object = reply.json()["items"][0]["results"]
    assert steps_of(as_list, number) == steps_of(as_object, number) == expected

    # A run on the same episode, without the cache: its step verdicts are the endpoint's.
    agent, _text = make_responses(project, task)
    run = services.run_create(
        project=project, grader=grader, judge=judge, user=admin, use_cache=False
    )
    wait_for(
        lambda: GradingRun.objects.get(pk=run.pk).status == "completed",
        timeout=120,
        what="the run to complete",
    )
    stepped = {
        (number[v.criterion_id], v.step): v.outcome
        for v in Verdict.objects.filter(run=run, response=agent, step__isnull=False)
    }
    assert stepped == {key: outcome for key, (outcome, _r) in rewards.items()}
    assert Score.objects.get(run=run, response=agent).raw == pytest.approx(result["score"])


def bad_episode() -> dict:
    episode = copy.deepcopy(EPISODE)
    episode["messages"][3]["tool_calls"][0]["function"]["arguments"] = "{not json"
    return episode


def test_a_bad_episode_is_a_400_naming_item_response_and_field(personas, sim):
    grader = make_grader(personas.project, personas.admin)
    task = grader.version.rubric.task
    factories.make_judge(personas.project, sim.url)
    client = api_client(personas.engineer)
    field = "messages[3].tool_calls[0].function.arguments: not valid JSON"

    reply = client.post(
        f"/api/graders/{grader.hash}/score/",
        {"task": task.external_id, "responses": ["Fine.", bad_episode()]},
        format="json",
    )
    assert reply.status_code == 400
    errors = reply.json()["responses"]
    assert list(errors) == ["1"] and errors["1"][0].startswith(field)

    version = suites.suite_of_grader(grader=grader, user=personas.admin)
    unanswered = copy.deepcopy(EPISODE)
    unanswered["messages"][2]["tool_call_id"] = "c9"
    reply = client.post(
        f"/api/suites/{version.suite_id}/score/",
        {
            "items": [
                {"task": task.external_id, "responses": ["Fine."]},
                {"task": task.external_id, "responses": [EPISODE, unanswered, 42]},
            ]
        },
        format="json",
    )
    assert reply.status_code == 400
    # {"items": {item: {"responses": {response: [field path: problem]}}}}
    items = reply.json()["items"]
    assert list(items) == ["1"] and sorted(items["1"]["responses"]) == ["1", "2"]
    assert items["1"]["responses"]["1"][0].startswith("messages[2].tool_call_id: no earlier")
    assert "list of chat messages" in items["1"]["responses"]["2"][0]
    assert sim.stats.requests == 0  # nothing graded


def test_the_openapi_schema_describes_episodes_and_step_rewards(client, db):
    schema = json.loads(client.get("/api/schema/?format=json").content)
    components = schema["components"]["schemas"]
    response = components["RewardRequestRequest"]["properties"]["responses"]["items"]
    kinds = response["oneOf"]
    assert {"type": "string"} in kinds
    episode = next(k for k in kinds if k.get("type") == "object")
    assert episode["required"] == ["messages"] and "final_state" in episode["properties"]
    message = episode["properties"]["messages"]["items"]
    assert "tool" in message["properties"]["role"]["enum"]
    assert "tool_calls" in message["properties"]
    suite_item = components["SuiteRewardItemRequest"]["properties"]["responses"]["items"]
    assert suite_item["oneOf"] == kinds
    steps = components["RewardResult"]["properties"]["steps"]
    step = steps["items"]
    step = components[step["$ref"].rsplit("/", 1)[1]] if "$ref" in step else step
    assert set(step["properties"]) == {"step", "criterion", "outcome", "reward"}


@pytest.fixture
def trainer(live_server, personas, sim, monkeypatch):
    grader = make_grader(personas.project, personas.admin)
    factories.make_judge(personas.project, sim.url)
    _, raw = token_create(user=personas.engineer, name="trainer", scopes=["grade"])
    monkeypatch.setenv("ASSAY_URL", live_server.url)
    monkeypatch.setenv("ASSAY_GRADER", grader.hash)
    monkeypatch.setenv("ASSAY_TOKEN", raw)
    monkeypatch.setattr(reward_client, "_default", None)
    yield grader
    assert AFTER_REPLY.wait_idle(timeout=30)  # cost rows written after each reply


def test_the_reward_client_passes_multi_turn_rollouts(trainer):
    task = trainer.version.rubric.task.external_id
    number = numbered(trainer)
    # TRL's multi-turn training: conversational completions, with the dataset's task column.
    rollout = EPISODE["messages"][1:]  # the completion: the agent's turns and tool results
    final = [{"role": "assistant", "content": EPISODE["messages"][5]["content"]}]
    rewards = reward_client.reward_func(
        prompts=[EPISODE["messages"][:1]] * 2, completions=[rollout, final], task=[task, task]
    )
    client = reward_client.AssayReward()
    [as_rollout, as_text] = client.results([rollout, final], task=task)
    assert rewards == [as_rollout["clipped"], as_text["clipped"]]
    # The rollout is graded as an episode (its steps are messages 0, 2 and 4 of the
    # completion), the one plain message as a text.
    assert {s["step"] for s in as_rollout["steps"]} == {0, 2, 4}
    assert {s["step"] for s in as_text["steps"]} == {0}  # a text: one step
    per_step = reward_client.step_rewards(as_rollout)
    by_step = {
        step: sum(s["reward"] for s in as_rollout["steps"] if s["step"] == step)
        for step in (0, 2, 4)
    }
    assert per_step == pytest.approx(by_step)
    assert {number[s["criterion"]] for s in as_rollout["steps"]} == {5, 6, 7, 8}
    # verl: the agent loop's messages in extra_info; with the final state, the full episode.
    score = reward_client.compute_score(
        "assay",
        "Done.",
        task,
        extra_info={"messages": EPISODE["messages"], "final_state": EPISODE["final_state"]},
    )
    assert score == pytest.approx(EXPECTED_SCORE)
    batch = reward_client.compute_score_batch(
        solution_strs=["Done.", "Done."],
        ground_truths=[task, task],
        extra_infos=[{"messages": EPISODE["messages"]}, None],
    )
    assert batch[0] == pytest.approx(EXPECTED_SCORE)
    assert batch[1] == client.score(["Done."], task=task)[0]


def test_compute_score_reads_messages_as_verls_reward_loop_merges_them(trainer):
    """verl's agent loop puts its output.extra_fields in the batch as "tool_extra_fields", a
    NumPy object array, and its reward managers merge them into extra_info before calling
    compute_score: the messages may then be an object array (never tested for truth, which
    an array refuses) and the final state may hold NumPy numbers."""
    import numpy as np

    task = trainer.version.rubric.task.external_id
    assert EPISODE["final_state"] == {"orders": {"A17": {"refunded": True}}}
    extra_fields = {
        "messages": np.array(EPISODE["messages"], dtype=object),
        "final_state": {"orders": {"A17": {"refunded": np.bool_(True)}}},
    }
    non_tensor_batch = {
        "extra_info": np.array([{"split": "train", "index": np.int64(0)}], dtype=object),
        "tool_extra_fields": np.array([extra_fields], dtype=object),
    }
    extra_info = dict(non_tensor_batch["extra_info"][0])
    extra_info.update(non_tensor_batch["tool_extra_fields"][0].items())  # as verl merges them
    score = reward_client.compute_score("assay", "Done.", task, extra_info=extra_info)
    assert score == pytest.approx(EXPECTED_SCORE)
    # An empty array of messages is no rollout: the solution string is graded.
    extra_info["messages"] = np.array([], dtype=object)
    plain = reward_client.compute_score("assay", "Done.", task, extra_info=extra_info)
    assert plain == reward_client.AssayReward().score(["Done."], task=task)[0]
