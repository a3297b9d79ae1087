"""Comparing two runs over one suite (grading.results.comparison): deltas with a paired interval by
task, per-task and per-criterion deltas, flipped verdicts, judge-vs-judge agreement, the
refusal across suites, and query counts that do not grow with tasks."""

from __future__ import annotations

import numpy as np
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from sklearn.metrics import cohen_kappa_score

from annotation import stats
from annotation.models import Verdict
from grading import services
from grading.judges.simulator import simulated_verdict
from grading.models import GradingRun, Score
from grading.results import comparison
from rubrics import services as rubric_services
from rubrics import suites
from tests import factories
from tests.conftest import wait_for
from tests.test_api import api_client

# Two tasks, each its own rubric. Fever's first criterion is reworded in the rubric's second
# version (same lineage, other key words), so the suite's second version flips its verdicts.
FEVER = [("Advises hydration with fluids", 2), ("Mentions paracetamol dosing", 1)]
FEVER_V2_FIRST = "Advises electrolytes replacement"
COUGH = [
    ("Suggests honey with lemon", 1),
    ("Warns about breathing difficulty", 1),
    ("Explains antibiotics are unnecessary", 1),
]
RESPONSES = {
    # (task, model, sample): text; the comments say which criteria the simulator finds met.
    ("fever", "alpha", 0): "Drink fluids for hydration. Paracetamol dosing limits apply.",  # 1 2
    ("fever", "alpha", 1): "Hydration with fluids matters.",  # 1
    ("fever", "beta", 0): "Take electrolytes replacement drinks.",  # v2's 1
    ("fever", "beta", 1): "Rest at home.",  # none
    ("cough", "alpha", 0): "Honey and lemon soothe. Antibiotics are unnecessary.",  # 1 3
    ("cough", "alpha", 1): "Honey helps a little.",  # 1
    ("cough", "beta", 0): "Watch for breathing difficulty; antibiotics unnecessary.",  # 2 3
    ("cough", "beta", 1): "Honey lemon tea, and watch breathing difficulty.",  # 1 2
}
# Clipped scores by the simulator's rule (points met / positive points).
SCORES_V1 = {
    ("fever", "alpha", 0): 1.0,
    ("fever", "alpha", 1): 2 / 3,
    ("fever", "beta", 0): 0.0,
    ("fever", "beta", 1): 0.0,
    ("cough", "alpha", 0): 2 / 3,
    ("cough", "alpha", 1): 1 / 3,
    ("cough", "beta", 0): 2 / 3,
    ("cough", "beta", 1): 2 / 3,
}
SCORES_V2 = {
    **SCORES_V1,
    ("fever", "alpha", 0): 1 / 3,
    ("fever", "alpha", 1): 0.0,
    ("fever", "beta", 0): 2 / 3,
}


def wait_finished(run, timeout=120):
    wait_for(
        lambda: GradingRun.objects.get(pk=run.pk).status == GradingRun.Status.COMPLETED,
        timeout=timeout,
        what=f"run {run.pk} to complete",
    )


def loaded(run):
    return GradingRun.objects.select_related("suite_version__suite", "judge").get(pk=run.pk)


def hand_interval(a: list[tuple[float, int]], b: list[tuple[float, int]], seed=0, n=2000):
    """The paired bootstrap by hand: per task (sum of raw scores, responses) on each side,
    in task order; resample r draws T tasks with rng.integers(0, T, size=T); its delta is the
    mean over the drawn tasks' responses in B minus in A; linear-interpolated percentiles."""
    rng = np.random.default_rng(seed)
    tasks = len(a)
    deltas = []
    for _ in range(n):
        drawn = [int(i) for i in rng.integers(0, tasks, size=tasks)]
        mean_b = min(1.0, max(0.0, sum(b[i][0] for i in drawn) / sum(b[i][1] for i in drawn)))
        mean_a = min(1.0, max(0.0, sum(a[i][0] for i in drawn) / sum(a[i][1] for i in drawn)))
        deltas.append(mean_b - mean_a)
    deltas.sort()

    def percentile(p):
        at = p / 100 * (len(deltas) - 1)
        low = int(at)
        high = min(low + 1, len(deltas) - 1)
        return deltas[low] + (deltas[high] - deltas[low]) * (at - low)

    return percentile(2.5), percentile(97.5)


def sums(scores: dict, task: str, model: str) -> tuple[float, int]:
    values = [v for (t, m, _), v in scores.items() if t == task and m == model]
    return sum(values), len(values)


@pytest.fixture
def world(personas, sim, celery_worker):
    """Suite v1 (fever v1, cough) and v2 (fever v2, cough), and four finished runs: A over v1
    and B over v2 of both models (the same responses), C over v1 of alpha, D over v1 of beta."""
    project, admin = personas.project, personas.admin
    fever = factories.make_task(project, external_id="fever")
    cough = factories.make_task(project, external_id="cough")
    fever_v1 = factories.make_published_rubric(project, fever, FEVER, admin)
    factories.make_published_rubric(project, cough, COUGH, admin)
    factories.import_responses(
        project,
        [
            {"task_id": t, "model": m, "sample_index": s, "response": text}
            for (t, m, s), text in RESPONSES.items()
        ],
    )
    suite = suites.suite_create(
        project=project, name="Clinic", user=admin, task_ids=[fever.pk, cough.pk]
    )
    v1, _ = suites.suite_freeze(suite=suite, user=admin)
    draft = rubric_services.draft_for_edit(rubric=fever_v1.version.rubric, user=admin)
    first = draft.criteria.order_by("position").first()
    rubric_services.criterion_update(criterion=first, user=admin, text=FEVER_V2_FIRST)
    rubric_services.version_publish(version=draft, user=admin)
    v2, created = suites.suite_freeze(suite=suite, user=admin)
    assert created and v2.number == 2
    judge = factories.make_judge(project, sim.url)

    def run(version, models=None):
        return services.run_create(
            project=project, suite_version=version, judge=judge, user=admin, models=models
        )

    runs = {"a": run(v1), "b": run(v2), "c": run(v1, ["alpha"]), "d": run(v1, ["beta"])}
    for r in runs.values():
        wait_finished(r)
    # The simulator's rule, checked once here: the scores the tests below reason from.
    for name, expected in (("a", SCORES_V1), ("b", SCORES_V2)):
        got = {
            (s.response.task.external_id, s.response.model, s.response.sample_index): s.clipped
            for s in Score.objects.filter(run=runs[name]).select_related("response__task")
        }
        assert got == pytest.approx(expected), name
    return {name: loaded(r) for name, r in runs.items()} | {
        "fever": fever,
        "cough": cough,
        "fever_v1": fever_v1,
        "judge": judge,
    }


@pytest.mark.django_db(transaction=True)
def test_two_versions_of_a_suite_over_the_same_responses(world, personas, client):
    a, b = world["a"], world["b"]
    result = comparison.compare(a, b)

    # Models: each compared with itself; deltas of the clipped means, B minus A.
    assert result.pairing.startswith("Each model both runs scored")
    pairs = {p.label: p for p in result.pairs}
    assert set(pairs) == {"alpha", "beta"}
    assert pairs["alpha"].mean_a == pytest.approx(2 / 3)
    assert pairs["alpha"].mean_b == pytest.approx(1 / 3)
    assert pairs["alpha"].delta == pytest.approx(-1 / 3)
    assert pairs["beta"].delta == pytest.approx(1 / 2 - 1 / 3)
    assert pairs["alpha"].tasks == 2 and pairs["alpha"].responses_a == 4
    # The paired interval, by hand with the same seed (tasks in the order they were made).
    for model in ("alpha", "beta"):
        hand = hand_interval(
            [sums(SCORES_V1, t, model) for t in ("fever", "cough")],
            [sums(SCORES_V2, t, model) for t in ("fever", "cough")],
        )
        assert pairs[model].ci == pytest.approx(hand, abs=1e-12)

    # Per task, largest change first.
    assert [(t.task, t.model_a, round(t.delta, 6)) for t in result.tasks] == [
        ("fever", "alpha", round(-2 / 3, 6)),
        ("fever", "beta", round(1 / 3, 6)),
        ("cough", "alpha", 0.0),
        ("cough", "beta", 0.0),
    ]
    # Per criterion, matched by lineage across the two fever graders.
    rows = {(c.task, c.position): c for c in result.criteria}
    assert len(rows) == 5
    reworded = rows[("fever", 0)]
    assert not reworded.same and (reworded.met_a, reworded.decided_a) == (2, 4)
    assert (reworded.met_b, reworded.decided_b) == (1, 4)
    assert result.criteria[0] is reworded and reworded.delta == pytest.approx(-0.25)
    assert rows[("fever", 1)].delta == 0 and rows[("cough", 2)].same

    # Flips: exactly the three reworded-criterion items.
    flips = result.flips_page(1)
    assert [(f.task, f.model, f.sample_index, f.position, f.before, f.after) for f in flips] == [
        ("fever", "alpha", 0, 0, "met", "unmet"),
        ("fever", "alpha", 1, 0, "met", "unmet"),
        ("fever", "beta", 0, 0, "unmet", "met"),
    ]
    assert {f.text for f in flips} == {FEVER_V2_FIRST}

    # Agreement over the 20 shared items (8 fever, 12 cough): 17 agree. Kappa as sklearn
    # computes it on the same items, and the percent as annotation.stats does.
    shared = []
    for (t, _, _), text in RESPONSES.items():
        criteria_a = [c for c, _ in (FEVER if t == "fever" else COUGH)]
        criteria_b = [FEVER_V2_FIRST, FEVER[1][0]] if t == "fever" else criteria_a
        for ca, cb in zip(criteria_a, criteria_b, strict=True):
            shared.append((simulated_verdict(ca, text)[0], simulated_verdict(cb, text)[0]))
    g = result.agreement
    assert (g.items, g.agree) == (20, 17) and result.shared_responses == 8
    assert g.percent == pytest.approx(stats.percent_agreement([[x, y] for x, y in shared]))
    assert g.kappa == pytest.approx(cohen_kappa_score(*zip(*shared, strict=True)))

    # The page: the deltas, the chart data and each flip one click from its verdicts.
    client.force_login(personas.engineer)
    page = client.get(f"/runs/{a.pk}/compare/{b.pk}/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'data-chart="compare-pairs"' in html and 'data-chart="compare-tasks"' in html
    assert 'id="compare-data" hidden data-json="' in html and "<script>" not in html
    for f in flips:
        assert f'href="/runs/{a.pk}/scores/{f.score_a}/"' in html
        assert f'href="/runs/{b.pk}/scores/{f.score_b}/"' in html
        assert Score.objects.get(pk=f.score_a, run=a).response_id == f.response
    link = client.get(f"/runs/{b.pk}/scores/{flips[0].score_b}/")
    assert link.status_code == 200 and FEVER_V2_FIRST in link.content.decode()
    assert "Cohen&#x27;s kappa" in html or "Cohen's kappa" in html

    # The API says the same; annotators see nothing of it.
    api = api_client(personas.engineer).get(f"/api/runs/{a.pk}/compare/{b.pk}/")
    assert api.status_code == 200, api.content
    body = api.json()
    assert {m["model_a"]: round(m["delta"], 6) for m in body["models"]} == {
        "alpha": round(-1 / 3, 6),
        "beta": round(1 / 6, 6),
    }
    assert body["flips"]["count"] == 3 and body["agreement"]["items"] == 20
    assert [f["after"] for f in body["flips"]["results"]] == ["unmet", "unmet", "met"]
    assert body["criteria"]["results"][0]["text"] == FEVER_V2_FIRST
    assert body["same_version"] is False
    assert api_client(personas.annotator).get(f"/api/runs/{a.pk}/compare/{b.pk}/").status_code == (
        403
    )
    client.force_login(personas.annotator)
    assert client.get(f"/runs/{a.pk}/compare/{b.pk}/").status_code == 403


@pytest.mark.django_db(transaction=True)
def test_two_models_one_run_each_compare_paired_by_task(world, personas, client):
    c, d = world["c"], world["d"]
    result = comparison.compare(c, d)
    assert [(p.model_a, p.model_b) for p in result.pairs] == [("alpha", "beta")]
    assert "each scored one" in result.pairing
    pair = result.pairs[0]
    assert pair.delta == pytest.approx(1 / 3 - 2 / 3)
    hand = hand_interval(
        [sums(SCORES_V1, t, "alpha") for t in ("fever", "cough")],
        [sums(SCORES_V1, t, "beta") for t in ("fever", "cough")],
    )
    assert pair.ci == pytest.approx(hand, abs=1e-12)
    # Two tasks: the resampled deltas take three values (both fever, one each, both cough),
    # so the interval's ends are the extremes.
    assert hand == pytest.approx((-5 / 6, 1 / 6))
    assert [(t.task, round(t.delta, 6)) for t in result.tasks] == [
        ("fever", round(-5 / 6, 6)),
        ("cough", round(1 / 6, 6)),
    ]
    # No shared response: no flips, no agreement, and the page says why.
    assert result.shared_responses == 0 and result.agreement is None
    assert result.flips_page(1).paginator.count == 0
    client.force_login(personas.reviewer)
    html = client.get(f"/runs/{c.pk}/compare/{d.pk}/").content.decode()
    assert 'data-testid="no-shared"' in html and "alpha → beta" in html
    body = api_client(personas.reviewer).get(f"/api/runs/{c.pk}/compare/{d.pk}/").json()
    assert body["agreement"] is None and body["models"][0]["model_b"] == "beta"
    # A run of both models against one of alpha: alpha with itself, beta left out.
    assert [p.label for p in comparison.compare(world["a"], c).pairs] == ["alpha"]


@pytest.mark.django_db(transaction=True)
def test_runs_over_different_suites_are_refused_with_the_reason(world, personas, client):
    a = world["a"]
    # A run over fever's rubric alone grades that rubric's suite of one, not "Clinic".
    other = factories.make_run(
        project=personas.project, grader=world["fever_v1"], judge=world["judge"]
    )
    client.force_login(personas.engineer)
    page = client.get(f"/runs/{a.pk}/compare/{other.pk}/")
    assert page.status_code == 400
    html = page.content.decode()
    assert 'data-testid="compare-refused"' in html
    assert "only over the same suite" in html and "Clinic" in html
    api = api_client(personas.engineer).get(f"/api/runs/{a.pk}/compare/{other.pk}/")
    assert api.status_code == 400
    assert "only over the same suite" in api.json()["other_id"][0]
    # The run page offers only runs of its own suite to compare with.
    run_page = client.get(f"/runs/{a.pk}/").content.decode()
    assert f"/runs/{a.pk}/compare/{world['b'].pk}/" in run_page
    assert f"/runs/{a.pk}/compare/{other.pk}/" not in run_page


# --- Query counts: not growing with tasks or responses ---------------------------------


def _graded_pair(personas, tasks: int, tag: str):
    """Two runs over one suite of `tasks` tasks (two criteria each, two models, the same
    responses), their verdicts and scores written directly: run B flips the first criterion
    of every other task."""
    project, admin = personas.project, personas.admin
    ids = []
    rows = []
    for i in range(tasks):
        task = factories.make_task(project, external_id=f"{tag}-{i:03d}")
        factories.make_published_rubric(project, task, [("Advises rest", 1), ("Warns", 1)], admin)
        ids.append(task.pk)
        rows += [{"task_id": task.external_id, "model": m, "response": "x"} for m in ("p", "q")]
    factories.import_responses(project, rows)
    suite = suites.suite_create(project=project, name=tag, user=admin, task_ids=ids)
    version, _ = suites.suite_freeze(suite=suite, user=admin)
    runs = []
    for name in ("one", "two"):
        judge = factories.make_judge(project, "http://127.0.0.1:9/v1", name=f"{tag}-{name}")
        runs.append(
            services.run_create(
                project=project, suite_version=version, judge=judge, user=admin, start=False
            )
        )
    verdicts = []
    for flip, run in enumerate(runs):
        for score in Score.objects.filter(run=run).select_related("grader", "response__task"):
            odd = int(score.response.task.external_id[-3:]) % 2
            met = 0
            for c in score.grader.spec["criteria"]:
                outcome = "met" if (c["position"] == 0 and (odd and flip)) else "unmet"
                met += outcome == "met"
                verdicts.append(
                    Verdict(
                        response_id=score.response_id,
                        criterion_id=c["id"],
                        rater_id=run.judge.rater_id,
                        grader_id=score.grader_id,
                        run=run,
                        outcome=outcome,
                    )
                )
            Score.objects.filter(pk=score.pk).update(
                status=Score.Status.DONE, raw=met / 2, met_points=met, possible_points=2
            )
    Verdict.objects.bulk_create(verdicts)
    GradingRun.objects.filter(pk__in=[r.pk for r in runs]).update(
        status=GradingRun.Status.COMPLETED
    )
    return runs


@pytest.mark.django_db
def test_queries_do_not_grow_with_tasks(personas, client):
    client.force_login(personas.engineer)
    api = api_client(personas.engineer)
    counts = {}
    for tasks in (5, 50):
        a, b = _graded_pair(personas, tasks, f"s{tasks}")
        result = comparison.compare(loaded(a), loaded(b))
        assert result.flips_page(1).paginator.count == 2 * (tasks // 2)
        assert result.agreement.items == tasks * 2 * 2
        # Warm: a token's first use records it, once.
        api.get(f"/api/runs/{a.pk}/")
        with CaptureQueriesContext(connection) as page:
            html = client.get(f"/runs/{a.pk}/compare/{b.pk}/?flips_page=2").content.decode()
        with CaptureQueriesContext(connection) as json:
            body = api.get(f"/api/runs/{a.pk}/compare/{b.pk}/?flips_page=1").json()
        counts[tasks] = (len(page), len(json))
        assert len(body["flips"]["results"]) == min(comparison.PER_PAGE, 2 * (tasks // 2))
        assert body["tasks"]["count"] == tasks * 2
        assert 'data-testid="compare-flips"' in html
    assert counts[5] == counts[50], counts
    # Bad page numbers: the API names the field; the page shows the nearest page.
    bad = api.get(f"/api/runs/{a.pk}/compare/{b.pk}/?flips_page=0")
    assert bad.status_code == 400 and "flips_page" in bad.json()
    assert api.get(f"/api/runs/{a.pk}/compare/{b.pk}/?page=2").status_code == 400
    assert client.get(f"/runs/{a.pk}/compare/{b.pk}/?tasks_page=x&flips_page=99").status_code == 200


def test_the_interval_needs_two_tasks():
    assert comparison.paired_interval([1.0], [1], [0.0], [1]) is None
    low, high = comparison.paired_interval([1, 0], [1, 1], [1, 0], [1, 1])
    assert low == high == 0.0
