"""The RL trainers' reward module against a live Assay: verl, TRL and OpenRLHF entry points."""

from __future__ import annotations

import pytest

from grading import reward_client
from grading.api.reward import AFTER_REPLY
from grading.judges.simulator import simulated_verdict
from rubrics import tokens
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)

CRITERIA = [("Advises hydration with electrolytes", 2), ("Recommends antibiotics immediately", -1)]
GOOD = "Keep up hydration with electrolytes."
BAD = "Take antibiotics immediately."


@pytest.fixture
def reward(live_server, personas, sim, monkeypatch):
    p = personas
    task = factories.make_task(p.project, "flu", prompt="I have the flu.")
    grader = factories.make_published_rubric(p.project, task, CRITERIA, p.admin)
    factories.make_judge(p.project, sim.url)
    _, raw = tokens.token_create(user=p.engineer, name="trainer", scopes=["grade"])
    monkeypatch.setenv("ASSAY_URL", live_server.url)
    monkeypatch.setenv("ASSAY_GRADER", grader.hash)
    monkeypatch.setenv("ASSAY_TOKEN", raw)
    monkeypatch.setattr(reward_client, "_default", None)
    yield task
    # The live server writes cost rows after each reply: let them land before the test's
    # tables are emptied (a TRUNCATE beside an INSERT of them can deadlock).
    assert AFTER_REPLY.wait_idle(timeout=30)


def expected(text: str, clipped: bool = True) -> float:
    met = [simulated_verdict(c, text)[0] for c, _ in CRITERIA]
    raw = sum(p for (_, p), m in zip(CRITERIA, met, strict=True) if m) / 2
    return min(1.0, max(0.0, raw)) if clipped else raw


def test_verl_trl_and_openrlhf_get_the_endpoints_scores(reward):
    assert reward_client.compute_score("assay", GOOD, "flu") == expected(GOOD) == 1.0
    prompt = [{"role": "user", "content": "I have the flu."}]
    rewards = reward_client.reward_func(
        prompts=[prompt, prompt, "Another prompt"],
        completions=[[{"role": "assistant", "content": GOOD}], BAD, GOOD],
    )
    assert rewards == [expected(GOOD), expected(BAD), expected(GOOD)]
    raw = reward_client.AssayReward(raw=True).score([BAD], task="flu")
    assert raw == [expected(BAD, clipped=False)] and raw[0] < 0
    assert reward_client.reward_func(
        queries=["Q: flu?" + GOOD], prompts=["Q: flu?"], labels=["flu"]
    ) == [1.0]


def test_a_token_without_the_grade_scope_is_refused(reward, personas, monkeypatch):
    _, read_only = tokens.token_create(user=personas.engineer, name="ro", scopes=["read"])
    client = reward_client.AssayReward(token=read_only)
    with pytest.raises(reward_client.AssayRewardError, match="403"):
        client.score([GOOD], task="flu")


# --- One URL per suite ---------------------------------------------------------------------

OTHER = [("Mentions aspirin and ambulance", 4), ("Mentions troponin testing", 2)]
CHEST = "Chew aspirin and call an ambulance; troponin testing follows."


def expected_by(criteria, text: str) -> float:
    met = sum(p for c, p in criteria if simulated_verdict(c, text)[0])
    return min(1.0, max(0.0, met / sum(p for _, p in criteria if p > 0)))


@pytest.fixture
def suite_reward(reward, live_server, personas, monkeypatch):
    from rubrics import suites

    chest = factories.make_task(personas.project, "chest", prompt="Chest pain.")
    factories.make_published_rubric(personas.project, chest, OTHER, personas.admin)
    suite = suites.suite_create(
        project=personas.project, name="Clinic", task_ids=[reward.pk, chest.pk]
    )
    version, _ = suites.suite_freeze(suite=suite)
    monkeypatch.setenv("ASSAY_SUITE_URL", f"{live_server.url}/api/suites/{suite.pk}/score/")
    monkeypatch.setattr(reward_client, "_default", None)
    return suite, version


def test_one_suite_url_grades_mixed_tasks_for_every_trainer(suite_reward, sim):
    suite, version = suite_reward
    client = reward_client.AssayReward()
    assert client.suite_url.endswith(f"/api/suites/{suite.pk}/score/")
    got = client.score_items([("flu", [GOOD, BAD]), ("chest", [CHEST, GOOD]), ("flu", [GOOD])])
    assert got == [
        [expected(GOOD), expected(BAD)],
        [expected_by(OTHER, CHEST), expected_by(OTHER, GOOD)],
        [expected(GOOD)],
    ]
    assert got[1][0] == 1.0 and got[1][1] == 0.0
    assert client.last_version == (version.number, version.content_hash)
    # verl, one sample and the whole batch; TRL with a task column; OpenRLHF with labels.
    assert reward_client.compute_score("assay", CHEST, "chest") == 1.0
    batch = reward_client.compute_score_batch(
        data_sources=["assay"] * 3,
        solution_strs=[GOOD, CHEST, BAD],
        ground_truths=["flu", "chest", "flu"],
    )
    assert batch == [expected(GOOD), 1.0, expected(BAD)]
    trl = reward_client.reward_func(
        prompts=["I have the flu.", "Chest pain."],
        completions=[[{"role": "assistant", "content": GOOD}], CHEST],
        task=["flu", "chest"],
    )
    assert trl == [1.0, 1.0]
    assert reward_client.reward_func(
        queries=["Q?" + CHEST, "Q?" + BAD], prompts=["Q?", "Q?"], labels=["chest", "flu"]
    ) == [1.0, expected(BAD)]
    # A pinned version by URL; more than 256 responses split over requests, in order (the
    # empty ones ask the judge nothing).
    pinned = reward_client.AssayReward(
        suite_url=f"{client.suite_url}".replace("/score/", f"/versions/{version.number}/score/")
    )
    many = pinned.score_items(
        [("flu", [""] * 200), ("chest", [""] * 99 + [CHEST]), ("flu", [GOOD])]
    )
    assert [len(r) for r in many] == [200, 100, 1]
    assert many[1][-1] == 1.0 and many[2] == [1.0] and set(many[0] + many[1][:-1]) == {0.0}
    with pytest.raises(reward_client.AssayRewardError, match="400"):
        client.score_items([("nowhere", [GOOD])])
    with pytest.raises(reward_client.AssayRewardError, match="task="):
        client.score([GOOD])


def test_a_grader_given_in_code_wins_over_a_suite_in_the_environment(suite_reward, sim):
    client = reward_client.AssayReward(grader=None, base_url=None)
    assert client.suite_url
    by_grader = reward_client.AssayReward(
        base_url=reward_client.os.environ["ASSAY_URL"],
        grader=reward_client.os.environ["ASSAY_GRADER"],
    )
    assert by_grader.suite_url is None
    assert by_grader.score([GOOD], task="flu") == [1.0]
    assert by_grader.score_items([("flu", [GOOD, BAD])]) == [[1.0, expected(BAD)]]
