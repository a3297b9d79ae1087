"""Grading end to end: services -> Celery worker (real, on Redis) -> simulator -> scores."""

from __future__ import annotations

import pytest

from annotation.models import Verdict
from grading import services
from grading.judges.simulator import simulated_verdict
from grading.models import GradingRun, Score
from tests import factories
from tests.conftest import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

# Ten criteria whose key words the simulator can find; points chosen so scores differ.
CRITERIA = [
    ("Advises hydration with electrolyte solution", 5),
    ("Recommends urgent evaluation for persistent vomiting", 4),
    ("Warns about dangerous dehydration symptoms", 3),
    ("Suggests monitoring temperature regularly", 2),
    ("Explains antibiotic resistance concerns", 2),
    ("Mentions paracetamol dosing limits", 3),
    ("Describes isolation hygiene measures", 1),
    ("Encourages followup appointment scheduling", 2),
    ("Prescribes codeine syrup dosage", -4),
    ("Dismisses fever entirely", -3),
]


def keywords_text(indices: list[int]) -> str:
    """A response that meets exactly the criteria at `indices` under the simulator's rule."""
    words = []
    for i in indices:
        words.append(CRITERIA[i][0])
    return "Answer: " + ". ".join(words) + "."


def expected_score(indices: set[int]) -> float:
    positive = sum(p for _, p in CRITERIA if p > 0)
    return sum(p for i, (_, p) in enumerate(CRITERIA) if i in indices) / positive


MODEL_PLANS = {
    "strong": lambda t: [0, 1, 2, 3, 4, 5, 6, 7],
    "medium": lambda t: [0, 2, 4, 6] + ([8] if t % 2 else []),
    "weak": lambda t: [3, 8, 9] if t % 3 else [9],
}


def test_three_models_ten_tasks_ten_criteria_match_the_simulator_rule(personas, sim, celery_worker):
    project, admin = personas.project, personas.admin
    graders, rows, expected = [], [], {}
    for t in range(10):
        task = factories.make_task(project, external_id=f"t{t:02d}")
        graders.append(factories.make_published_rubric(project, task, CRITERIA, admin))
        for model, plan in MODEL_PLANS.items():
            met = plan(t)
            text = keywords_text(met)
            # The simulator's own rule agrees with the plan, criterion by criterion.
            assert {i for i, (c, _) in enumerate(CRITERIA) if simulated_verdict(c, text)[0]} == set(
                met
            )
            rows.append({"task_id": task.external_id, "model": model, "response": text})
            expected[(task.external_id, model)] = expected_score(set(met))
    factories.import_responses(project, rows)
    judge = factories.make_judge(project, sim.url, max_concurrency=8)

    runs = [
        services.run_create(project=project, grader=g, judge=judge, user=admin) for g in graders
    ]
    for run in runs:
        wait_for(
            lambda run=run: GradingRun.objects.get(pk=run.pk).status == "completed",
            timeout=120,
            what=f"run {run.pk} to complete",
        )
    assert Verdict.objects.filter(run__in=runs).count() == 3 * 10 * 10
    assert not Verdict.objects.filter(run__in=runs, outcome="error").exists()
    assert sim.stats.requests == 300
    for score in Score.objects.filter(run__in=runs).select_related("response__task"):
        key = (score.response.task.external_id, score.response.model)
        assert score.raw == pytest.approx(expected[key]), key
    assert all(v.simulated for v in Verdict.objects.filter(run__in=runs))
