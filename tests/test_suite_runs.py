"""Runs over a suite whose tasks each have their own grader: the real worker on the real
broker, PostgreSQL and the judge simulator. Every score is predicted from the simulator's
documented rule applied to the criteria written down here (not read back from the database),
so a response graded by another task's grader, a lost verdict or a wrong pin shows up as a
wrong number."""

from __future__ import annotations

import random
import time

import pytest
from django.core.exceptions import ValidationError
from django.db.models import Count

from annotation.models import Verdict
from grading import services
from grading.judges.simulator import simulated_verdict
from grading.models import GradingRun, Score
from rubrics import services as rubric_services
from rubrics import suites
from tests import factories
from tests.conftest import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

# Four tasks, each with its own criteria and points (disjoint key words, so a response scored
# by the wrong task's grader gets another number). s-delta's rubric builds on a template.
OWN_CRITERIA = {
    "s-alpha": [
        ("Advises hydration with electrolyte solution", 5),
        ("Warns about dangerous dehydration symptoms", 3),
        ("Prescribes codeine syrup dosage", -4),
    ],
    "s-beta": [
        ("Recommends urgent evaluation for persistent vomiting", 4),
        ("Suggests monitoring temperature regularly", 2),
        ("Explains antibiotic resistance concerns", 2),
        ("Dismisses fever entirely", -3),
    ],
    "s-gamma": [
        ("Mentions paracetamol dosing limits", 3),
        ("Describes isolation hygiene measures", 1),
        ("Encourages followup appointment scheduling", 2),
        ("Discusses sunscreen application frequency", 1),
        ("Names allergic reaction warning signs", 2),
    ],
    "s-delta": [("Mentions compress with ice for swelling", 2)],
}
TEMPLATE_CRITERIA = [
    ("Advises seeing a clinician when pain worsens", 3),
    ("Gives a diagnosis with false certainty", -3),
]
TASKS = list(OWN_CRITERIA)
MODELS = ["alpha-7b", "beta-13b"]
SAMPLES = [0, 1]
# A new rubric version for s-beta (the lock-file test): one criterion more, one fewer.
BETA_V2 = [
    ("Recommends urgent evaluation for persistent vomiting", 4),
    ("Suggests monitoring temperature regularly", 2),
    ("Dismisses fever entirely", -3),
    ("Mentions oral rehydration packets", 3),
]


def criteria_of(task: str, beta=None) -> list[tuple[str, int]]:
    """The criteria the task's grader holds, as written here (the template's first)."""
    if task == "s-delta":
        return TEMPLATE_CRITERIA + OWN_CRITERIA[task]
    if task == "s-beta" and beta is not None:
        return beta
    return OWN_CRITERIA[task]


ALL_TEXTS = [text for task in TASKS for text, _ in criteria_of(task)] + [BETA_V2[-1][0]]


def rule_score(criteria: list[tuple[str, int]], text: str) -> float:
    """HealthBench raw under the simulator's rule: met points / positive points."""
    positive = sum(p for _, p in criteria if p > 0)
    return sum(p for c, p in criteria if simulated_verdict(c, text)[0]) / positive


def response_text(task: str, model: str, sample: int) -> str:
    """A response that quotes a seeded half of every task's criteria (so each grader finds
    something in it, differently)."""
    rng = random.Random(f"{task}/{model}/{sample}")
    picked = [t for t in ALL_TEXTS if rng.random() < 0.5]
    return "Answer: " + ". ".join(picked) + f". (Reply {model} {sample}.)"


class World:
    """The project, its suite frozen at v1, the responses, and what each should score."""

    def __init__(self, personas, sim):
        self.personas = personas
        self.project, self.admin = personas.project, personas.admin
        self.tasks = {t: factories.make_task(self.project, external_id=t) for t in TASKS}
        self.graders = {}
        for t in ("s-alpha", "s-beta", "s-gamma"):
            self.graders[t] = factories.make_published_rubric(
                self.project, self.tasks[t], OWN_CRITERIA[t], self.admin
            )
        self.template = rubric_services.rubric_create(
            project=self.project,
            title="Injury basics",
            user=self.admin,
            is_template=True,
            criteria=[rubric_services.clean_criterion(c, p) for c, p in TEMPLATE_CRITERIA],
        )
        rubric_services.version_publish(version=self.template.versions.get(), user=self.admin)
        (delta,) = rubric_services.template_apply(
            template=self.template, tasks=[self.tasks["s-delta"]], user=self.admin
        )
        for text, points in OWN_CRITERIA["s-delta"]:
            rubric_services.criterion_add(version=delta.versions.get(), text=text, points=points)
        self.graders["s-delta"] = rubric_services.version_publish(
            version=delta.versions.get(), user=self.admin
        )
        self.suite = suites.suite_create(
            project=self.project,
            name="Clinic suite",
            user=self.admin,
            task_ids=[t.pk for t in self.tasks.values()],
        )
        self.v1, created = suites.suite_freeze(suite=self.suite, user=self.admin)
        assert created and self.v1.task_count == 4
        rows = []
        self.texts = {}
        for t in TASKS:
            for m in MODELS:
                for s in SAMPLES:
                    text = response_text(t, m, s)
                    self.texts[(t, m, s)] = text
                    rows.append({"task_id": t, "model": m, "response": text, "sample_index": s})
        factories.import_responses(self.project, rows)
        self.judge = factories.make_judge(self.project, sim.url, max_concurrency=8)

    def expected(self, key, beta=None) -> float:
        return rule_score(criteria_of(key[0], beta), self.texts[key])

    def run(self, **kwargs) -> GradingRun:
        kwargs.setdefault("suite_version", self.v1)
        kwargs.setdefault("judge", self.judge)
        return services.run_create(project=self.project, user=self.admin, **kwargs)


@pytest.fixture
def world(personas, sim, celery_worker):
    return World(personas, sim)


def finished(run, timeout=120) -> GradingRun:
    wait_for(
        lambda: GradingRun.objects.get(pk=run.pk).status == "completed",
        timeout=timeout,
        what=f"run {run.pk} to complete",
    )
    return GradingRun.objects.get(pk=run.pk)


def key_of(score) -> tuple[str, str, int]:
    r = score.response
    return (r.task.external_id, r.model, r.sample_index)


def scores_of(run) -> dict[tuple, Score]:
    return {
        key_of(s): s
        for s in Score.objects.filter(run=run).select_related("response__task", "grader")
    }


def criteria_count(keys, beta=None) -> int:
    return sum(len(criteria_of(k[0], beta)) for k in keys)


def assert_graded_by_own_graders(world, run, keys=None, pins=None, beta=None):
    """Every score equals the rule for its own task's criteria, carries the pinned grader,
    and every verdict names that grader and one of its criteria; one verdict per item."""
    pins = pins or world.graders
    keys = set(keys if keys is not None else world.texts)
    scores = scores_of(run)
    assert set(scores) == keys
    for key, score in scores.items():
        assert score.status == "done" and score.error_count == 0, key
        assert score.grader_id == pins[key[0]].pk, key
        assert score.raw == pytest.approx(world.expected(key, beta)), key
    verdicts = Verdict.objects.filter(run=run).select_related("response__task")
    assert verdicts.count() == run.total_items
    dupes = (
        verdicts.values("response", "criterion", "rater", "sample_index")
        .annotate(n=Count("pk"))
        .filter(n__gt=1)
    )
    assert not dupes.exists()
    criteria_ids = {t: {c["id"] for c in g.spec["criteria"]} for t, g in pins.items()}
    for v in verdicts:
        task = v.response.task.external_id
        assert v.grader_id == pins[task].pk, (task, v.grader_id)
        assert v.criterion_id in criteria_ids[task], (task, v.criterion_id)


def test_a_suite_run_grades_every_response_by_its_tasks_own_pinned_grader(world, sim):
    # The graders differ: an independent count of their criteria, and not one shared.
    assert [len(world.graders[t].spec["criteria"]) for t in TASKS] == [3, 4, 5, 3]
    assert world.graders["s-delta"].spec["rubric"]["template"]["title"] == "Injury basics"
    assert suites.pinned_graders(world.v1) == {
        world.tasks[t].pk: world.graders[t].pk for t in TASKS
    }
    # The responses score differently under another task's grader, so a wrong pin would show.
    differs = sum(
        rule_score(criteria_of(t), world.texts[key]) != world.expected(key)
        for key in world.texts
        for t in TASKS
        if t != key[0]
    )
    assert differs > len(world.texts)

    run = finished(world.run())
    assert run.sole_grader is None
    assert run.total_items == criteria_count(world.texts) == 4 * (3 + 4 + 5 + 3)
    assert_graded_by_own_graders(world, run)
    # The estimate, made before any call, counted exactly the calls made on an empty cache.
    assert sim.stats.requests == run.total_items == run.estimate["calls"]

    # A second identical run reads everything from the cache: no judge call.
    sim.reset()
    again = finished(world.run())
    assert sim.stats.requests == 0
    assert_graded_by_own_graders(world, again)


def test_batched_mode_gives_the_same_scores_with_the_estimated_calls(world, sim):
    estimate = services.run_create_estimate(
        project=world.project, judge=world.judge, suite_version=world.v1, mode="batched"
    )
    batched = finished(world.run(mode="batched"))
    # One call per response (each grader has several batchable criteria), on an empty cache.
    assert sim.stats.requests == len(world.texts) == batched.estimate["calls"]
    assert estimate["calls"] == len(world.texts)
    assert_graded_by_own_graders(world, batched)
    sim.reset()
    single = finished(world.run(use_cache=False))
    assert sim.stats.requests == single.estimate["calls"] == single.total_items
    one, other = scores_of(batched), scores_of(single)
    assert {k: s.raw for k, s in one.items()} == {k: s.raw for k, s in other.items()}


def test_a_panel_of_two_judges_over_the_suite(world, sim):
    other = factories.make_judge(world.project, sim.url, name="second")
    run = finished(world.run(panel=[other]))
    assert run.total_items == 2 * criteria_count(world.texts)
    assert sim.stats.requests == run.total_items == run.estimate["calls"]
    assert_graded_by_own_graders(world, run)
    raters = set(Verdict.objects.filter(run=run).values_list("rater_id", flat=True))
    assert raters == {world.judge.rater_id, other.rater_id}


def test_two_samples_per_item_with_a_warm_judge(world, sim):
    warm = services.judge_create(
        project=world.project,
        name="warm",
        base_url=sim.url,
        model="judge-model",
        temperature=0.7,
    )
    run = finished(world.run(judge=warm, samples=2))
    assert run.total_items == 2 * criteria_count(world.texts)
    assert sim.stats.requests == run.total_items == run.estimate["calls"]
    assert_graded_by_own_graders(world, run)
    assert set(Verdict.objects.filter(run=run).values_list("sample_index", flat=True)) == {0, 1}
    with pytest.raises(ValidationError, match="temperature"):
        world.run(samples=2)  # the default judge is cold


def test_models_sample_indices_and_tasks_narrow_the_scores_exactly(world, sim):
    picks = {"models": ["beta-13b"], "sample_indices": [1], "tasks": ["s-beta", "s-delta"]}
    estimate = services.run_create_estimate(
        project=world.project, judge=world.judge, suite_version=world.v1, **picks
    )
    run = finished(world.run(**picks))
    keys = {("s-beta", "beta-13b", 1), ("s-delta", "beta-13b", 1)}
    assert run.selection == picks
    assert run.total_items == criteria_count(keys) == 4 + 3
    assert sim.stats.requests == estimate["calls"] == 7
    assert_graded_by_own_graders(world, run, keys)
    # Each filter alone narrows the pending scores to exactly its responses.
    for filters, expected in [
        ({"models": ["alpha-7b"]}, {k for k in world.texts if k[1] == "alpha-7b"}),
        ({"sample_indices": [0]}, {k for k in world.texts if k[2] == 0}),
        ({"tasks": ["s-gamma"]}, {k for k in world.texts if k[0] == "s-gamma"}),
    ]:
        narrowed = world.run(start=False, **filters)
        assert set(scores_of(narrowed)) == expected, filters
        assert narrowed.total_items == criteria_count(expected)
    with pytest.raises(ValidationError) as refused:
        world.run(tasks=["s-beta", "s-nope"])
    assert "s-nope" in str(refused.value) and "s-beta" not in str(refused.value)
    with pytest.raises(ValidationError, match="gamma-70b"):
        world.run(models=["gamma-70b"])


def test_cancel_then_resume_finishes_with_every_score(world, sim):
    sim.config.latency_ms = 250
    slow = factories.make_judge(world.project, sim.url, name="slow", max_concurrency=2)
    run = world.run(judge=slow)
    wait_for(lambda: sim.stats.requests >= 6, what="judge calls")
    assert services.run_cancel(run=GradingRun.objects.get(pk=run.pk))
    time.sleep(1.5)
    after_cancel = sim.stats.requests
    time.sleep(1.5)
    assert sim.stats.requests == after_cancel  # nothing new started
    run.refresh_from_db()
    assert run.status == "cancelled"
    assert Verdict.objects.filter(run=run).count() < run.total_items
    assert Score.objects.filter(run=run, status="pending").exists()
    sim.config.latency_ms = 0
    assert services.run_resume(run=run)
    run = finished(run, timeout=180)
    assert_graded_by_own_graders(world, run)


def test_retry_failed_regrades_only_the_errors(world, sim):
    # Unreadable replies are asked twice more; an item fails when all three are: about a
    # third of them at this rate, by the simulator's seeded draw.
    sim.config.fault_rate = 0.7
    sim.config.faults = ("malformed",)
    sim.config.seed = 15
    run = finished(world.run())
    errors = Verdict.objects.filter(run=run, outcome="error")
    failed = errors.count()
    assert 0 < failed < run.total_items
    assert all(v.error.startswith("unparseable:") for v in errors)
    assert Score.objects.filter(run=run, raw__isnull=True).count() == len(
        set(errors.values_list("response_id", flat=True))
    )
    kept = set(Verdict.objects.filter(run=run).exclude(outcome="error").values_list("pk", "grader"))
    sim.config.fault_rate = 0
    sim.reset()
    assert services.run_retry_failed(run=run) == failed
    run = finished(run)
    assert sim.stats.requests == failed  # only the failed items asked again
    # The decided verdicts were kept as they were.
    assert kept <= set(Verdict.objects.filter(run=run).values_list("pk", "grader"))
    assert_graded_by_own_graders(world, run)


def test_a_frozen_version_keeps_its_old_grader_and_a_new_version_pins_the_new(world, sim):
    beta = world.graders["s-beta"].version.rubric
    draft = rubric_services.draft_for_edit(rubric=beta, user=world.admin)
    for criterion in draft.criteria.all():
        if criterion.text == "Explains antibiotic resistance concerns":
            rubric_services.criterion_delete(criterion=criterion)
    rubric_services.criterion_add(version=draft, text=BETA_V2[-1][0], points=BETA_V2[-1][1])
    new_beta = rubric_services.version_publish(version=draft, user=world.admin)
    assert new_beta.pk != world.graders["s-beta"].pk
    assert sorted(c["text"] for c in new_beta.spec["criteria"]) == sorted(c for c, _ in BETA_V2)

    # v1 is a lock file: a run over it still grades s-beta with the old grader.
    old = finished(world.run())
    assert old.suite_version_id == world.v1.pk
    assert_graded_by_own_graders(world, old)

    v2, created = suites.suite_freeze(suite=world.suite, user=world.admin)
    assert created and v2.number == 2
    diff = suites.version_diff(world.v1, v2)
    assert [c.external_id for c in diff.changed] == ["s-beta"]
    new_pins = {**world.graders, "s-beta": new_beta}
    assert suites.pinned_graders(v2) == {world.tasks[t].pk: new_pins[t].pk for t in TASKS}
    assert suites.pinned_graders(world.v1)[world.tasks["s-beta"].pk] == world.graders["s-beta"].pk
    sim.reset()
    new = finished(world.run(suite_version=v2))
    assert_graded_by_own_graders(world, new, pins=new_pins, beta=BETA_V2)
    assert new.total_items == criteria_count(world.texts, beta=BETA_V2)
    # Only s-beta's four responses needed the judge, under its new grader; the three
    # unchanged graders' verdicts came from the cache.
    assert sim.stats.requests == 4 * len(BETA_V2)
    # The scores of s-beta did change for some response, so the pin mattered.
    assert any(
        world.expected(k, BETA_V2) != world.expected(k) for k in world.texts if k[0] == "s-beta"
    )
