"""The RL trainers' reward module against a live Assay: verl, TRL and OpenRLHF entry points."""

from __future__ import annotations

import pytest

from grading import reward_client
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
    return task


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
