"""`manage.py grade --suite`: a suite run in this process against the simulator, its JSON
report checked response by response against the simulator's rule, and its clear errors."""

from __future__ import annotations

import json

import pytest
from django.core.management import CommandError, call_command

from grading import selectors
from grading.judges.simulator import simulated_verdict
from grading.models import GradingRun, Score
from grading.results import leaderboard
from rubrics import suites
from tests import factories
from tests.test_grading_flow import CRITERIA, keywords_text

pytestmark = pytest.mark.django_db(transaction=True)

# A second task with its own grader: other criteria, other points.
SKIN = [
    ("Recommends sunscreen application daily", 3),
    ("Discusses melanoma screening", 2),
    ("Suggests dermatologist consultation", 2),
    ("Prescribes isotretinoin immediately", -2),
]


def skin_text(indices) -> str:
    return "Answer: " + ". ".join(SKIN[i][0] for i in indices) + "."


# (task, model, sample index) -> the criteria the response is written to meet
PLAN = {
    ("fever", "alpha", 0): [0, 1, 2, 3, 4, 5, 6, 7],
    ("fever", "alpha", 1): [0, 2, 4],
    ("fever", "beta", 0): [3, 8, 9],
    ("fever", "beta", 1): [9],
    ("skin", "alpha", 0): [0, 1, 2],
    ("skin", "alpha", 1): [0, 1],
    ("skin", "beta", 0): [3],
    ("skin", "beta", 1): [1, 3],
}


def rule_score(criteria, text) -> tuple[float, dict[str, str]]:
    """The simulator's documented rule, applied here: the score and each criterion's outcome."""
    outcomes = {c: "met" if simulated_verdict(c, text)[0] else "unmet" for c, _ in criteria}
    positive = sum(p for _, p in criteria if p > 0)
    return sum(p for c, p in criteria if outcomes[c] == "met") / positive, outcomes


@pytest.fixture
def suite_project(personas):
    project, admin = personas.project, personas.admin
    fever = factories.make_task(project, external_id="fever")
    skin = factories.make_task(project, external_id="skin")
    factories.make_published_rubric(project, fever, CRITERIA, admin)
    factories.make_published_rubric(project, skin, SKIN, admin)
    rows = []
    for (task, model, sample), met in PLAN.items():
        text = keywords_text(met) if task == "fever" else skin_text(met)
        rows.append({"task_id": task, "model": model, "response": text, "sample_index": sample})
    factories.import_responses(project, rows)
    suite = suites.suite_create(
        project=project, name="Clinic", user=admin, task_ids=[fever.pk, skin.pk]
    )
    version, _ = suites.suite_freeze(suite=suite, user=admin)
    return project, suite, version, rows


def test_a_suite_of_two_graders_and_two_models_graded_in_process_with_a_report(
    personas, sim, suite_project, tmp_path, capsys, client
):
    project, suite, version, rows = suite_project
    factories.make_judge(project, sim.url, name="sim-cli")
    out = tmp_path / "report.json"
    call_command("grade", suite="Clinic", judge="sim-cli", mode="batched", output=str(out))
    printed = capsys.readouterr().out
    assert "graded 8/8 responses" in printed and "56/56 verdicts (100%)" in printed
    assert "verdicts/s" in printed and "0 errors" in printed
    run = GradingRun.objects.get()
    assert run.status == "completed" and run.suite_version == version
    assert run.created_by is None and run.mode == "batched"
    assert sim.stats.requests == 8  # batched: one call per response, whatever its grader
    report = json.loads(out.read_text())
    assert report["run"] == run.pk and report["mode"] == "batched"
    assert report["suite"] == {
        "id": suite.pk,
        "name": "Clinic",
        "version": version.number,
        "content_hash": version.content_hash,
        "tasks": 2,
    }
    assert report["judge"]["name"] == "sim-cli"
    # Every response: its score and each criterion's outcome follow the simulator's rule,
    # by its own task's grader.
    texts = {(r["task_id"], r["model"], r["sample_index"]): r["response"] for r in rows}
    assert len(report["responses"]) == 8
    raws: dict[str, dict[str, list[float]]] = {}
    for item in report["responses"]:
        key = (item["task"], item["model"], item["sample_index"])
        criteria = CRITERIA if item["task"] == "fever" else SKIN
        expected, outcomes = rule_score(criteria, texts[key])
        assert item["raw"] == pytest.approx(expected), key
        assert item["clipped"] == pytest.approx(min(1.0, max(0.0, expected)))
        assert item["gated_by"] == [] and item["errors"] == 0
        assert {c["text"]: c["outcome"] for c in item["criteria"]} == outcomes, key
        assert all(c["judge"] == "sim-cli" and c["sample"] == 0 for c in item["criteria"])
        assert all(isinstance(c["criterion_id"], int) for c in item["criteria"])
        raws.setdefault(item["model"], {}).setdefault(item["task"], []).append(expected)
    # Per model: the clipped mean, n, and an interval from resampling the two tasks.
    assert [m["model"] for m in report["models"]] == ["alpha", "beta"]
    for m in report["models"]:
        by_task = raws[m["model"]]
        values = [v for vs in by_task.values() for v in vs]
        assert m["n"] == 4 and m["tasks"] == 2 and m["responses"] == 4
        assert m["mean"] == pytest.approx(min(1.0, max(0.0, sum(values) / 4)))
        row = next(r for r in leaderboard.run_leaderboard(run).models if r.model == m["model"])
        assert m["ci95"] == pytest.approx(list(row.overall.ci))
        assert m["ci95"][0] <= m["mean"] <= m["ci95"][1] and m["ci_resamples"] == "tasks"
        low, high = m["ci95"]
        assert (
            f"{m['model']}: mean {m['mean']:.3f} (95% CI {low:.3f}-{high:.3f}, resampling tasks)"
            " over 4 scored responses of 2 tasks"
        ) in printed
    # The same figures the run page shows.
    summaries = {s.model: s for s in selectors.model_summaries(run)}
    assert {m["model"]: m["mean"] for m in report["models"]} == pytest.approx(
        {k: s.mean for k, s in summaries.items()}
    )
    # An ordinary run: on the run list (with its scores) and on its own page.
    client.force_login(personas.engineer)
    listed = client.get(f"/p/{project.slug}/runs/").content.decode()
    assert f'<tr data-run="{run.pk}">' in listed and ">Clinic</a>" in listed
    for m in report["models"]:
        assert f"{m['model']} {m['mean']:.3f}</span>" in listed
    page = client.get(f"/runs/{run.pk}/")
    assert page.status_code == 200 and "Clinic" in page.content.decode()


def test_filters_narrow_the_run_and_a_rubric_version_is_its_suite_of_one(
    personas, sim, suite_project, tmp_path, capsys
):
    project, suite, version, rows = suite_project
    factories.make_judge(project, sim.url, name="sim-cli")
    call_command(
        "grade",
        suite="Clinic",
        suite_version=version.number,
        project=project.slug,
        judge="sim-cli",
        models="beta",
        sample_indices="1",
        tasks="skin",
    )
    run = GradingRun.objects.get()
    assert run.selection == {"models": ["beta"], "sample_indices": [1], "tasks": ["skin"]}
    scored = Score.objects.filter(run=run).select_related("response__task")
    assert [(s.response.task.external_id, s.response.model) for s in scored] == [("skin", "beta")]
    assert scored[0].raw == pytest.approx(rule_score(SKIN, skin_text([1, 3]))[0])
    # The old way, one rubric version: an ordinary run over that rubric's suite of one.
    grader = version.entries.get(task__external_id="fever").grader
    call_command("grade", rubric_version=grader.version_id, judge="sim-cli", models="alpha")
    one = GradingRun.objects.latest("pk")
    assert one.status == "completed" and one.sole_grader == grader
    assert one.suite_version.suite.rubric_id == grader.version.rubric_id
    assert Score.objects.filter(run=one).count() == 2


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"suite": "Nope"}, "No suite named 'Nope'"),
        ({"suite": "Clinic", "suite_version": 9}, "Suite 'Clinic' has no version 9"),
        ({"suite": "Clinic", "judge": "ghost"}, "No judge named 'ghost'"),
        ({"suite": "Clinic", "models": "alpha,gamma"}, "No responses from 'gamma'"),
        ({"suite": "Clinic", "tasks": "skin,elbow"}, "Not in suite version 1: elbow"),
        ({"suite": "Clinic", "project": "elsewhere"}, "No project with the slug 'elsewhere'"),
        ({"rubric_version": 10**9}, "No published rubric version with the id 1000000000"),
        ({"rubric_version": 1, "suite_version": 1}, "--suite-version goes with --suite"),
    ],
)
def test_unknown_names_are_refused_by_name(personas, suite_project, options, message):
    project, *_ = suite_project
    factories.make_judge(project, "http://127.0.0.1:9/v1", name="sim-cli")
    with pytest.raises(CommandError, match=message):
        call_command("grade", **{"judge": "sim-cli", **options})
    assert not GradingRun.objects.exists()


def test_a_suite_name_in_two_projects_needs_the_project(personas, suite_project):
    project, *_ = suite_project
    other = factories.make_project(personas.admin)
    task = factories.make_task(other, external_id="fever")
    factories.make_published_rubric(other, task, CRITERIA, personas.admin)
    suites.suite_create(project=other, name="Clinic", task_ids=[task.pk])
    factories.make_judge(project, "http://127.0.0.1:9/v1", name="sim-cli")
    with pytest.raises(CommandError, match="Several projects have a suite named 'Clinic'"):
        call_command("grade", suite="Clinic", judge="sim-cli")
    with pytest.raises(CommandError, match="has no frozen version yet"):
        call_command("grade", suite="Clinic", judge="sim-cli", project=other.slug)
