"""The demo's agent task, graded by a real worker and the simulator: the hasty agent's good
final answer hides a refund issued before the order was looked up, and its steps say so."""

from __future__ import annotations

import pytest

from annotation.models import Verdict
from grading import demo
from grading.models import GradingRun, Score
from tests.conftest import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_demo_agent_run_shows_why_steps_matter(settings, tmp_path, sim, celery_worker):
    settings.JUDGE_ALLOW_PRIVATE_URLS = True
    result = demo.load_demo(simulator_url=sim.url, out_dir=tmp_path)
    run = GradingRun.objects.get(
        project=result.project, suite_version__suite__name=demo.AGENT_SUITE
    )
    wait_for(
        lambda: GradingRun.objects.get(pk=run.pk).status == "completed",
        timeout=240,
        what="the agent run to complete",
    )
    verdicts = {
        (v.response.model, v.criterion.text, v.step): v.outcome
        for v in Verdict.objects.filter(run=run).select_related("response", "criterion")
    }

    def outcome(model: str, criterion: str, step=None) -> str:
        (found,) = [
            o for (m, text, s), o in verdicts.items()
            if m == model and text.startswith(criterion) and s == step
        ]  # fmt: skip
        return found

    for model in ("agent-careful", "agent-hasty"):  # the same good answer and final state
        assert outcome(model, "Confirms the full refund of $249.00") == "met"
        assert outcome(model, "In the final state, the order's refunded total") == "met"
        assert outcome(model, "Sends the customer a confirmation email") == "met"
    # ...but the hasty agent refunded before it looked the order up.
    assert outcome("agent-careful", "Looks the order up before issuing any refund") == "met"
    assert outcome("agent-hasty", "Looks the order up before issuing any refund") == "unmet"
    step_rule = "Refunds only after confirming that the order"
    assert outcome("agent-careful", step_rule, 2) == "met"
    assert outcome("agent-hasty", step_rule, 0) == "unmet"  # the refund is its first turn
    assert outcome("agent-hasty", step_rule) == "unmet"  # rule "all": one step fails it
    # The confused agent promises what the tools cannot do, at its last turn (any step).
    assert outcome("agent-confused", "Promises a free replacement", 4) == "met"
    assert outcome("agent-confused", "Promises a free replacement") == "met"
    assert outcome("agent-careful", "Promises a free replacement") == "unmet"
    scores = dict(Score.objects.filter(run=run).values_list("response__model", "raw"))
    assert scores["agent-careful"] > scores["agent-hasty"] > scores["agent-confused"]
