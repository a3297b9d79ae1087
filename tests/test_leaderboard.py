"""Leaderboards (grading/leaderboard.py): the HealthBench aggregation per cell, the bootstrap
that resamples tasks, tag columns, the heatmap, disagreement, query counts, pages and API."""

from __future__ import annotations

import itertools
from datetime import timedelta

import numpy as np
import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from annotation.models import Response
from grading import selectors, services
from grading.models import GradingRun, Judge, Score
from grading.results import leaderboard
from rubrics import suites
from rubrics.models import Task
from tests import factories
from tests.conftest import wait_for
from tests.test_api import api_client


@pytest.fixture(autouse=True)
def _fresh_cache():
    # Completed runs' leaderboards are cached under their finish time: every test computes.
    cache.clear()
    yield
    cache.clear()


_samples = itertools.count()  # sample indices: every response made here is its own


def scored_run(personas, rows, *, tags=None, status="completed", finished_at=None, run=None):
    """A run made directly (or `run`), with one Score per row: rows are (task external id,
    model, raw) or (task external id, model, raw, by_tag). Tasks are made as needed, with
    `tags` {external id: [tag, ...]}."""
    p = personas
    tags = tags or {}
    external_ids = sorted({r[0] for r in rows} | set(tags))
    existing = set(Task.objects.filter(project=p.project).values_list("external_id", flat=True))
    Task.objects.bulk_create(
        Task(
            project=p.project,
            external_id=e,
            title=f"Task {e}",
            messages=[{"role": "user", "content": "?"}],
            tags=tags.get(e, []),
        )
        for e in external_ids
        if e not in existing
    )
    tasks = {t.external_id: t for t in Task.objects.filter(project=p.project)}
    if run is None:
        first = tasks[external_ids[0]]
        grader = factories.make_published_rubric(p.project, first, [("Says hello", 1)], p.admin)
        judge = Judge.objects.filter(project=p.project).first() or factories.make_judge(
            p.project, "http://127.0.0.1:9/v1"
        )
        run = factories.make_run(
            project=p.project,
            grader=grader,
            judge=judge,
            status=status,
            finished_at=finished_at or (timezone.now() if status == "completed" else None),
        )
    grader = run.suite_version.entries.first().grader
    responses = [
        Response(task=tasks[r[0]], model=r[1], text="...", sample_index=next(_samples))
        for r in rows
    ]
    Response.objects.bulk_create(responses)
    Score.objects.bulk_create(
        Score(
            run=run,
            response=response,
            grader=grader,
            status=Score.Status.DONE,
            raw=r[2],
            by_tag=r[3] if len(r) > 3 else {},
            finished_at=timezone.now(),
        )
        for response, r in zip(responses, rows, strict=True)
    )
    return run


def column(board, model):
    return next(m for m in board.models if m.model == model)


# --- The bootstrap resamples tasks --------------------------------------------------------

# Three tasks, one model: t1 has four responses (mean 1), t2 one (mean 0), t3 two (mean 0.5).
HAND = [("t1", "m", 1.0)] * 4 + [("t2", "m", 0.0)] + [("t3", "m", 0.5)] * 2
SUMS, COUNTS = np.array([4.0, 0.0, 1.0]), np.array([4, 1, 2])


def independent_task_bootstrap(sums, counts, resamples, seed):
    """Written out: draw the tasks with replacement, average the drawn tasks' responses."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(sums), size=(resamples, len(sums)))
    means = [sum(sums[d] for d in draw) / sum(counts[d] for d in draw) for draw in draws]
    low, high = np.percentile(means, [2.5, 97.5])
    return means, (float(low), float(high))


def response_bootstrap(values, resamples=2000, seed=0):
    """What an interval over responses would say (what the run page once showed): each
    resample draws the responses, clipped one by one, with replacement."""
    data = np.clip(np.asarray(values, dtype=float), 0.0, 1.0)
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, len(data), size=(resamples, len(data)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


@pytest.mark.django_db
def test_the_interval_resamples_tasks_a_hand_worked_example(personas):
    run = scored_run(personas, HAND)
    board = leaderboard.run_leaderboard(run)
    overall = column(board, "m").overall
    # The mean is over responses: (4 + 0 + 1) / 7, not the mean of task means (0.5).
    assert overall.mean == pytest.approx(5 / 7)
    assert overall.n == 7

    # By hand: the 27 equally likely ordered draws of three tasks. Drawing t2 three times
    # (1/27, 3.7% > 2.5%) gives 0/3 = 0; t1 three times gives 12/12 = 1: so the percentile
    # interval of 95% runs from 0 to 1.
    enumerated = sorted(
        SUMS[list(d)].sum() / COUNTS[list(d)].sum() for d in itertools.product(range(3), repeat=3)
    )
    assert enumerated.count(0.0) == 1 and enumerated.count(1.0) == 1
    assert overall.ci == (0.0, 1.0)

    # The same draws written out with the same seed give the same interval, and every
    # resample's mean is one of the enumerated ones.
    means, interval = independent_task_bootstrap(
        SUMS, COUNTS, leaderboard.BOOTSTRAP_RESAMPLES, leaderboard.BOOTSTRAP_SEED
    )
    assert overall.ci == pytest.approx(interval)
    assert {round(m, 9) for m in means} <= {round(m, 9) for m in enumerated}

    # Resampling the seven responses independently says something else: far narrower, as if
    # responses of one task were independent evidence.
    per_response = response_bootstrap([1.0] * 4 + [0.0] + [0.5] * 2)
    assert per_response[1] - per_response[0] < 0.6
    assert per_response != pytest.approx(overall.ci)


@pytest.mark.django_db
def test_the_interval_equals_the_written_out_bootstrap_on_unequal_tasks(personas):
    rng = np.random.default_rng(7)
    rows, sums, counts = [], [], []
    for t in range(12):
        n = int(rng.integers(1, 6))  # unequal response counts per task
        raws = [round(float(x), 3) for x in rng.uniform(-0.3, 1.2, size=n)]
        rows += [(f"t{t:02d}", "m", raw) for raw in raws]
        sums.append(sum(raws))
        counts.append(n)
    run = scored_run(personas, rows)
    overall = column(leaderboard.run_leaderboard(run), "m").overall
    _, (low, high) = independent_task_bootstrap(np.array(sums), np.array(counts), 1000, 0)
    # Each resample's mean is clipped, as the cell is: the interval's ends are clipped.
    interval = (min(1.0, max(0.0, low)), min(1.0, max(0.0, high)))
    assert overall.ci == pytest.approx(interval, abs=1e-12)
    assert overall.mean == pytest.approx(min(1.0, max(0.0, sum(sums) / sum(counts))))
    raws = [r[2] for r in rows]
    assert response_bootstrap(raws) != pytest.approx(overall.ci, abs=1e-3)


@pytest.mark.django_db
def test_models_share_the_draws_and_one_task_has_no_interval(personas):
    run = scored_run(personas, [("only", "a", 0.5), ("only", "a", 1.0), ("only", "b", 0.2)])
    board = leaderboard.run_leaderboard(run)
    assert [m.model for m in board.models] == ["a", "b"]  # best first
    assert column(board, "a").overall.ci is None
    assert column(board, "a").overall.mean == pytest.approx(0.75)


# --- Cells --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_mean_is_clipped_once_averaged_as_healthbench_does(personas):
    run = scored_run(
        personas,
        [
            ("t1", "m", -0.5, {"accuracy": -0.5}),
            ("t1", "m", 1.0, {"accuracy": 1.0}),
            ("t2", "m", 1.4, {"accuracy": 0.2}),
            ("t2", "m", 0.3, {}),
            ("t3", "m", -0.4, {"accuracy": -0.4}),
        ],
    )
    board = leaderboard.run_leaderboard(run)
    m = column(board, "m")
    # A pitfall's negative raw lowers the mean: clip((-0.5 + 1 + 1.4 + 0.3 - 0.4) / 5), not
    # (0 + 1 + 1 + 0.3 + 0) / 5 with each response clipped first.
    assert m.overall.mean == pytest.approx(1.8 / 5)
    accuracy = {c.tag: c for c in m.axis_tags}["accuracy"]
    assert (accuracy.mean, accuracy.n) == (pytest.approx(0.3 / 4), 4)
    cells = {t.external_id: t.cells[0] for t in board.tasks}
    assert (cells["t1"].mean, cells["t1"].n) == (pytest.approx(0.25), 2)
    assert (cells["t2"].mean, cells["t2"].n) == (pytest.approx(0.85), 2)
    assert (cells["t3"].mean, cells["t3"].n) == (0.0, 1)  # -0.4, clipped once averaged


@pytest.mark.django_db
def test_axis_tag_and_task_tag_columns(personas):
    rows = [
        ("c1", "a", 0.8, {"accuracy": 1.0, "completeness": 0.5}),
        ("c1", "b", 0.4, {"accuracy": 0.0}),
        ("c2", "a", 0.6, {"accuracy": 0.5, "completeness": 0.7}),
        ("c2", "b", 0.2, {"completeness": 0.2}),
        ("p1", "a", 1.0, {"accuracy": 1.0}),
        ("p1", "a", 0.0, {"accuracy": 0.0}),
        ("p1", "b", 0.9, {"accuracy": 0.9}),
        ("x1", "a", 0.5),
        ("x1", "b", 0.5),
    ]
    tags = {"c1": ["cardio"], "c2": ["cardio", "urgent"], "p1": ["peds", "urgent"]}
    board = leaderboard.run_leaderboard(scored_run(personas, rows, tags=tags))
    assert board.axis_tags == ["accuracy", "completeness"]
    assert board.task_tags == ["cardio", "peds", "urgent"]
    a, b = column(board, "a"), column(board, "b")
    axis_a = {c.tag: c for c in a.axis_tags}
    assert (axis_a["accuracy"].mean, axis_a["accuracy"].n) == (pytest.approx(2.5 / 4), 4)
    assert (axis_a["completeness"].mean, axis_a["completeness"].n) == (pytest.approx(0.6), 2)
    tag_a = {c.tag: c for c in a.task_tags}
    tag_b = {c.tag: c for c in b.task_tags}
    assert (tag_a["cardio"].mean, tag_a["cardio"].n) == (pytest.approx(0.7), 2)
    assert (tag_a["urgent"].mean, tag_a["urgent"].n) == (pytest.approx(1.6 / 3), 3)
    assert (tag_b["peds"].mean, tag_b["peds"].n) == (pytest.approx(0.9), 1)
    # Overall and tag cells carry an interval over tasks; the overall holds the mean.
    assert a.overall.ci and a.overall.ci[0] <= a.overall.mean <= a.overall.ci[1]
    assert tag_a["cardio"].ci is not None and axis_a["accuracy"].ci is not None
    # A tag's interval resamples the leaderboard's tasks: a tag on one task only varies
    # with how often that task is drawn, so its interval is the task's mean.
    assert tag_b["peds"].ci == pytest.approx((0.9, 0.9))


@pytest.mark.django_db
def test_tasks_sorted_by_disagreement(personas):
    rows = [
        ("calm", "a", 0.5),
        ("calm", "b", 0.6),
        ("split", "a", 1.0),
        ("split", "b", 0.1),
        ("some", "a", 0.2),
        ("some", "b", 0.7),
        ("lonely", "a", 0.3),
        ("agreed", "a", 0.4),
        ("agreed", "b", 0.4),
    ]
    board = leaderboard.run_leaderboard(scored_run(personas, rows))
    assert [t.external_id for t in board.tasks] == ["split", "some", "calm", "agreed", "lonely"]
    assert [t.spread for t in board.tasks] == [
        pytest.approx(0.9),
        pytest.approx(0.5),
        pytest.approx(0.1),
        0.0,
        None,
    ]
    # Each task's cells follow the models' order (best overall first).
    assert [c.model for c in board.tasks[0].cells] == [m.model for m in board.models]


# --- The heatmap --------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_heatmap_shows_tasks_up_to_the_threshold(personas):
    n = leaderboard.HEATMAP_MAX_COLUMNS
    rows = [(f"t{i:03d}", "a", i / n) for i in range(n)]
    heat = leaderboard.run_leaderboard(scored_run(personas, rows)).heatmap
    assert heat["grouped"] == "task" and heat["note"] == ""
    assert heat["columns"] == [f"t{i:03d}" for i in range(n)]
    assert heat["values"][0][3] == pytest.approx(3 / n, abs=1e-4)


@pytest.mark.django_db
def test_above_the_threshold_the_heatmap_groups_tasks_by_tag(personas):
    n = leaderboard.HEATMAP_MAX_COLUMNS + 1
    rows = [(f"t{i:03d}", m, 1.0 if i % 2 else 0.0) for i in range(n) for m in ("a", "b")]
    tags = {f"t{i:03d}": (["odd"] if i % 2 else ["even"]) for i in range(n - 1)}
    heat = leaderboard.run_leaderboard(scored_run(personas, rows, tags=tags)).heatmap
    assert heat["grouped"] == "tag"
    assert heat["columns"] == ["even", "odd", leaderboard.NO_TAG]
    assert heat["values"] == [[0.0, 1.0, 0.0], [0.0, 1.0, 0.0]]
    assert heat["n"][0] == [30, 30, 1]
    assert "61 tasks" in heat["note"] and "by task tag" in heat["note"]


@pytest.mark.django_db
def test_above_the_threshold_untagged_tasks_go_in_ordered_buckets(personas):
    n = 120
    rows = [(f"t{i:03d}", "a", 1.0 if i < 60 else 0.0) for i in range(n)]
    heat = leaderboard.run_leaderboard(scored_run(personas, rows)).heatmap
    assert heat["grouped"] == "bucket"
    size = -(-n // leaderboard.HEATMAP_BUCKETS)
    assert len(heat["columns"]) == -(-n // size) <= leaderboard.HEATMAP_BUCKETS
    assert heat["columns"][0] == f"t000 … t{size - 1:03d}"
    assert heat["values"][0][0] == 1.0 and heat["values"][0][-1] == 0.0
    assert "buckets" in heat["note"] and "no tags" in heat["note"]


# --- Queries do not grow with tasks or responses ------------------------------------------


def _many(tasks: int) -> list[tuple]:
    return [
        (f"q{tasks}-{t:04d}", model, ((t * 7 + s) % 10) / 10, {"accuracy": 0.5})
        for t in range(tasks)
        for model in ("a", "b")
        for s in range(2)
    ]


@pytest.mark.django_db
def test_the_run_leaderboard_reads_a_fixed_number_of_queries(personas):
    counts = []
    for tasks in (10, 200):
        run = scored_run(personas, _many(tasks), tags={f"q{tasks}-0000": ["x"]})
        with CaptureQueriesContext(connection) as ctx:
            board = leaderboard.run_leaderboard(run)
        assert board.task_count == tasks
        counts.append(len(ctx.captured_queries))
    assert counts[0] == counts[1] <= 2


@pytest.mark.django_db
def test_the_suite_leaderboard_reads_a_fixed_number_of_queries(personas):
    counts = []
    for tasks in (10, 200):
        run = scored_run(personas, _many(tasks))
        suite = run.suite_version.suite
        with CaptureQueriesContext(connection) as ctx:
            board = leaderboard.suite_leaderboard(suite)
        assert board.task_count == tasks and board.runs == [run.pk]
        counts.append(len(ctx.captured_queries))
    assert counts[0] == counts[1] <= 5
    with CaptureQueriesContext(connection) as ctx:  # cached under the completed runs
        assert leaderboard.suite_leaderboard(suite).task_count == tasks
    assert len(ctx.captured_queries) == 2


@pytest.mark.django_db
def test_the_results_pages_read_the_same_queries_for_10_and_200_tasks(personas, client):
    """The run page, its suite's page and the runs list, first seen (nothing kept) and
    again (the completed run's figures kept): as many queries whatever the tasks."""
    client.force_login(personas.admin)
    counts = []
    for tasks in (10, 200):
        run = scored_run(personas, _many(tasks))
        GradingRun.objects.filter(pk=run.pk).update(total_items=tasks * 4)
        pages = (
            f"/runs/{run.pk}/",
            f"/suites/{run.suite_version.suite_id}/",
            f"/p/{personas.project.slug}/runs/",
        )
        seen = []
        for page in pages:
            cache.clear()
            for _ in range(2):  # first seen, then with the completed runs' figures kept
                with CaptureQueriesContext(connection) as ctx:
                    response = client.get(page)
                assert response.status_code == 200, page
                seen.append(len(ctx.captured_queries))
        counts.append(seen)
    assert counts[0] == counts[1]
    # Kept: each page again reads fewer (no score, verdict or judge call is counted again).
    assert all(again < first for first, again in itertools.batched(counts[0], 2))


# --- One score per model, wherever it is shown ----------------------------------------------

# Negative raws tell the rules apart: clipped once averaged, a: 1.6 / 4 = 0.40 and b: 1.6 / 3 =
# 0.53; clipped response by response first, a: 2.2 / 4 = 0.55 and b: 1.5 / 3 = 0.50.
MIXED = [
    ("u1", "a", -0.6),
    ("u1", "a", 1.0),
    ("u2", "a", 0.9),
    ("u3", "a", 0.3),
    ("u1", "b", 0.5),
    ("u2", "b", 1.3),
    ("u3", "b", -0.2),
]


@pytest.mark.django_db
def test_a_models_score_is_one_figure_on_every_page(personas, client):
    run = scored_run(personas, MIXED)
    # Each made on its own, from an empty cache: the run's model scores, its leaderboard.
    scores = {s.model: s for s in leaderboard.model_scores([run])[run.pk]}
    cache.clear()
    board = leaderboard.run_leaderboard(run)
    assert scores["a"].mean == pytest.approx(0.4) and scores["b"].mean == pytest.approx(1.6 / 3)
    assert (scores["a"].n, scores["a"].tasks, scores["b"].n, scores["b"].tasks) == (4, 3, 3, 3)
    for row in board.models:
        score = scores[row.model]
        assert row.overall.mean == pytest.approx(score.mean, abs=1e-12)
        assert (row.overall.n, row.overall.tasks) == (score.n, score.tasks)
        assert row.overall.ci == pytest.approx(score.ci, abs=1e-12)
        assert score.ci[0] <= score.mean <= score.ci[1]

    cache.clear()
    summaries = {s.model: s for s in selectors.model_summaries(run)}
    suite_row = selectors.suite_run_rows(run.suite_version.suite)[0]
    _, run_rows = selectors.runs_page(personas.project, sort="", page=1)
    listed = {s.model: s for s in next(r for r in run_rows if r.run.pk == run.pk).scores}
    results = {m["model"]: m for m in selectors.model_results(run)}
    for model, score in scores.items():
        summary = summaries[model]
        assert (summary.mean, summary.scored, summary.ci) == (
            pytest.approx(score.mean, abs=1e-12),
            score.n,
            pytest.approx(score.ci, abs=1e-12),
        )
        assert listed[model] == summary.score
        assert results[model]["mean"] == summary.mean and results[model]["n"] == score.n
        assert results[model]["ci95"] == list(summary.ci) and results[model]["tasks"] == 3
    assert {s.model: s for s in suite_row.models} == listed
    # The run page's extras: responses, the mean before clipping, the histogram.
    assert summaries["a"].responses == 4 and summaries["a"].mean_raw == pytest.approx(0.4)
    assert summaries["a"].histogram == [1, 0, 0, 1, 0, 0, 0, 0, 0, 2]
    assert summaries["b"].mean_raw == pytest.approx(1.6 / 3)

    client.force_login(personas.admin)
    run_page = client.get(f"/runs/{run.pk}/").content.decode()
    a = summaries["a"]
    assert f'<td class="num" data-testid="ci">{a.ci[0]:.2f} – {a.ci[1]:.2f}</td>' in run_page
    suite_page = client.get(f"/suites/{run.suite_version.suite_id}/").content.decode()
    assert "a: 0.40 (4) [" in suite_page and "b: 0.53 (3) [" in suite_page
    runs_list = client.get(f"/p/{personas.project.slug}/runs/").content.decode()
    assert "a 0.400</span>" in runs_list and "b 0.533</span>" in runs_list


@pytest.mark.django_db
def test_run_model_scores_read_one_query_for_any_number_of_runs_and_are_stored(personas):
    # Completed as the worker completes a run: their scores are stored on them then.
    runs = [scored_run(personas, _many(tasks), status="running") for tasks in (3, 40, 7)]
    for run in runs:
        assert services.run_finish_if_done(run_id=run.pk)
    runs = list(GradingRun.objects.filter(pk__in=[r.pk for r in runs]).order_by("pk"))
    running = scored_run(personas, _many(5), status="running")
    with CaptureQueriesContext(connection) as ctx:
        scores = leaderboard.model_scores([*runs, running])
    assert len(ctx.captured_queries) == 1  # the running run's, however many completed
    assert [s.tasks for s in scores[runs[1].pk]] == [40, 40]
    assert scores == leaderboard.compute_model_scores([*(r.pk for r in runs), running.pk])
    with CaptureQueriesContext(connection) as ctx:
        assert leaderboard.model_scores(runs) == {r.pk: scores[r.pk] for r in runs}
    assert not ctx.captured_queries
    # A run completed before scores were stored: computed on its first read and stored then
    # (one read, one conditional write), read from the run afterwards.
    older = scored_run(personas, _many(4))
    assert older.model_scores is None
    with CaptureQueriesContext(connection) as ctx:
        first = leaderboard.model_scores([older])
    assert len(ctx.captured_queries) == 2
    older.refresh_from_db()
    with CaptureQueriesContext(connection) as ctx:
        assert leaderboard.model_scores([older]) == first
    assert not ctx.captured_queries
    assert first == leaderboard.compute_model_scores([older.pk])
    # A run with no scored response has no model yet.
    empty = scored_run(personas, [("e1", "z", None)])
    assert leaderboard.model_scores([empty]) == {empty.pk: []}


# --- The suite's leaderboard ----------------------------------------------------------------


@pytest.mark.django_db
def test_a_suite_takes_each_models_newest_completed_run_on_the_version(personas):
    p = personas
    older = scored_run(
        p,
        [("s1", "m1", 0.1), ("s1", "m2", 0.2)],
        finished_at=timezone.now() - timedelta(hours=2),
    )
    version, judge = older.suite_version, older.judge
    newer = GradingRun.objects.create(
        project=p.project,
        suite_version=version,
        judge=judge,
        status="completed",
        finished_at=timezone.now() - timedelta(hours=1),
    )
    scored_run(p, [("s1", "m1", 0.9)], run=newer)
    running = GradingRun.objects.create(
        project=p.project, suite_version=version, judge=judge, status="running"
    )
    scored_run(p, [("s1", "m2", 1.0)], run=running)

    board = leaderboard.suite_leaderboard(version.suite)
    assert board.version == version
    rows = {m.model: m for m in board.models}
    assert (rows["m1"].run_id, rows["m1"].overall.mean) == (newer.pk, pytest.approx(0.9))
    assert (rows["m2"].run_id, rows["m2"].overall.mean) == (older.pk, pytest.approx(0.2))
    assert board.runs == sorted([older.pk, newer.pk])

    with pytest.raises(Exception, match="no version 9"):
        leaderboard.suite_leaderboard(version.suite, 9)


@pytest.mark.django_db
def test_a_suite_whose_models_come_from_one_run_shows_that_runs_leaderboard(personas):
    run = scored_run(personas, MIXED, tags={"u1": ["cardio"]})
    board = leaderboard.run_leaderboard(run)
    # Made once: the suite's leaderboard sums no score again.
    with CaptureQueriesContext(connection) as ctx:
        suite_board = leaderboard.suite_leaderboard(run.suite_version.suite)
    assert not any("SUM(" in q["sql"].upper() for q in ctx.captured_queries)
    assert suite_board.models == board.models and suite_board.task_info == board.task_info
    assert suite_board.heatmap == board.heatmap and suite_board.runs == [run.pk]
    assert suite_board.version == run.suite_version
    # The same as it would be made from its sources, model by model.
    own = leaderboard._build({"a": run.pk, "b": run.pk})
    assert (own.models, own.task_info, own.task_cells) == (
        board.models,
        board.task_info,
        board.task_cells,
    )


@pytest.mark.django_db
def test_a_suite_without_runs_or_versions_says_so(personas):
    p = personas
    task = factories.make_task(p.project, "lonely")
    factories.make_published_rubric(p.project, task, [("Says hi", 1)], p.admin)
    suite = suites.suite_create(project=p.project, name="Empty", user=p.admin, task_ids=[task.pk])
    assert "no frozen version" in leaderboard.suite_leaderboard(suite).note
    suites.suite_freeze(suite=suite, user=p.admin)
    board = leaderboard.suite_leaderboard(suite)
    assert board.models == [] and "No completed run over v1" in board.note


# --- Pages --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_run_page_shows_the_leaderboard_heatmap_and_top_tasks(personas, client):
    rows = [(f"t{i:02d}", m, (i % 5) / 5 if m == "a" else 0.5) for i in range(30) for m in "ab"]
    run = scored_run(personas, rows, tags={"t00": ["cardio"]})
    client.force_login(personas.admin)
    html = client.get(f"/runs/{run.pk}/").content.decode()
    assert 'data-testid="leaderboard"' in html
    assert 'data-chart="heatmap"' in html and 'id="leaderboard-heatmap"' in html
    assert "tag cardio" in html
    assert html.count("<tr data-task=") == leaderboard.TOP_TASKS
    assert 'data-testid="all-tasks"' in html and "show all 30 tasks" in html
    assert "<script>" not in html  # data in attributes, as the CSP wants
    html = client.get(f"/runs/{run.pk}/?tasks=all").content.decode()
    assert html.count("<tr data-task=") == 30
    assert "show the top tasks only" in html


@pytest.mark.django_db
def test_the_suite_page_names_each_rows_run_and_refuses_a_bad_version(personas, client):
    run = scored_run(personas, [("s1", "m1", 0.4), ("s2", "m1", 0.6)])
    suite = run.suite_version.suite
    client.force_login(personas.admin)
    response = client.get(f"/suites/{suite.pk}/")
    html = response.content.decode()
    assert response.status_code == 200
    assert f'href="/runs/{run.pk}/" data-testid="source-run"' in html
    assert "suite v1" in html
    for bad, said in (("abc", "not a version number"), ("7", "no version 7")):
        response = client.get(f"/suites/{suite.pk}/?version={bad}")
        assert response.status_code == 400
        assert said in response.content.decode() and "version:" in response.content.decode()


@pytest.mark.django_db
def test_annotators_and_outsiders_see_no_leaderboard(personas, client):
    run = scored_run(personas, [("s1", "m1", 0.4)])
    suite_id = run.suite_version.suite_id
    client.force_login(personas.annotator)
    assert client.get(f"/suites/{suite_id}/").status_code == 403
    assert client.get(f"/runs/{run.pk}/").status_code == 403
    for user, status in ((personas.annotator, 403), (personas.outsider, 404)):
        api = api_client(user)
        assert api.get(f"/api/runs/{run.pk}/leaderboard/").status_code == status
        assert api.get(f"/api/suites/{suite_id}/leaderboard/").status_code == status


# --- API ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_run_leaderboard_api(personas):
    rows = [
        ("t1", "a", 1.0, {"accuracy": 1.0}),
        ("t1", "b", 0.0, {"accuracy": 0.0}),
        ("t2", "a", 0.5, {"accuracy": 0.5}),
        ("t2", "b", 0.4, {"accuracy": 0.4}),
    ]
    run = scored_run(personas, rows, tags={"t1": ["cardio"]})
    api = api_client(personas.reviewer)
    data = api.get(f"/api/runs/{run.pk}/leaderboard/").json()
    assert set(data) >= {"models", "axis_tags", "task_tags", "tasks", "heatmap", "task_count"}
    assert data["axis_tags"] == ["accuracy"] and data["task_tags"] == ["cardio"]
    a = data["models"][0]
    assert a["model"] == "a" and a["run"] == run.pk
    assert a["overall"]["mean"] == pytest.approx(0.75) and a["overall"]["n"] == 2
    assert len(a["overall"]["ci"]) == 2
    assert a["axis_tags"][0]["tag"] == "accuracy" and a["task_tags"][0]["tag"] == "cardio"
    assert [t["task"] for t in data["tasks"]] == ["t1", "t2"]
    assert data["tasks"][0]["spread"] == pytest.approx(1.0)
    assert data["tasks"][0]["cells"][0] == {"model": "a", "mean": 1.0, "n": 1}
    assert data["heatmap"]["models"] == ["a", "b"] and data["heatmap"]["grouped"] == "task"
    assert data["resamples"] == leaderboard.BOOTSTRAP_RESAMPLES

    top = api.get(f"/api/runs/{run.pk}/leaderboard/?top=1").json()
    assert len(top["tasks"]) == 1 and top["task_count"] == 2
    bad = api.get(f"/api/runs/{run.pk}/leaderboard/?top=-1")
    assert bad.status_code == 400 and "top" in bad.json()
    assert api.get(f"/api/runs/{run.pk}/leaderboard/?topp=1").status_code == 400


@pytest.mark.django_db
def test_the_leaderboard_apis_json_is_kept_per_finish_time_and_top(personas):
    """A completed run's leaderboard JSON is cached beside the leaderboard: asked again it
    reads no score, each `top` is its own, and a retry (a new finish time) is read anew."""
    run = scored_run(personas, [("k1", "a", 0.2), ("k2", "a", 0.4), ("k3", "b", 0.9)])
    api = api_client(personas.reviewer)
    url = f"/api/runs/{run.pk}/leaderboard/"
    first = api.get(url)
    assert first["Content-Type"] == "application/json"
    with CaptureQueriesContext(connection) as ctx:
        again = api.get(url)
    assert again.content == first.content
    assert not any("grading_score" in q["sql"] for q in ctx.captured_queries)
    assert len(api.get(url + "?top=1").json()["tasks"]) == 1
    assert len(api.get(url).json()["tasks"]) == 3

    # More scores, as a retry leaves them, and a new finish time: the JSON is made again.
    scored_run(personas, [("k1", "a", 1.0)], run=run)
    GradingRun.objects.filter(pk=run.pk).update(finished_at=run.finished_at + timedelta(1))
    model_a = api.get(url).json()["models"]
    assert column_json(model_a, "a")["overall"]["n"] == 3
    assert column_json(model_a, "a")["overall"]["mean"] == pytest.approx((0.2 + 0.4 + 1.0) / 3)
    # The browsable API still renders (it is not served from the JSON kept).
    assert api.get(url, HTTP_ACCEPT="text/html").status_code == 200


def column_json(models: list[dict], name: str) -> dict:
    return next(m for m in models if m["model"] == name)


@pytest.mark.django_db
def test_the_suite_leaderboard_api(personas):
    run = scored_run(personas, [("s1", "m1", 0.4), ("s2", "m1", 0.8)])
    suite = run.suite_version.suite
    api = api_client(personas.engineer)
    data = api.get(f"/api/suites/{suite.pk}/leaderboard/?version=1").json()
    assert data["suite"] == suite.pk and data["version"] == 1
    assert data["content_hash"] == run.suite_version.content_hash
    assert data["models"][0]["run"] == run.pk
    assert data["models"][0]["overall"]["mean"] == pytest.approx(0.6)
    for bad in ("9", "0", "x", "99999999999"):
        response = api.get(f"/api/suites/{suite.pk}/leaderboard/?version={bad}")
        assert response.status_code == 400, bad
        assert "version" in response.json()


# --- A real suite run, through the worker and the simulator -------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_suite_run_leaderboard_matches_the_simulator(personas, sim, celery_worker):
    p = personas
    criteria = {
        "fever": [("Advises hydration with fluids", 2), ("Warns about dehydration", 1)],
        "rash": [("Suggests antihistamine cream", 1), ("Mentions allergy testing", 1)],
    }
    tasks = {}
    for external_id, crits in criteria.items():
        tasks[external_id] = factories.make_task(p.project, external_id)
        factories.make_published_rubric(p.project, tasks[external_id], crits, p.admin)
    Task.objects.filter(pk=tasks["fever"].pk).update(tags=["common"])
    answers = {
        ("fever", "good"): ("Advises hydration with fluids. Warns about dehydration.", 1.0),
        ("fever", "poor"): ("Advises hydration with fluids.", 2 / 3),
        ("rash", "good"): ("Suggests antihistamine cream. Mentions allergy testing.", 1.0),
        ("rash", "poor"): ("Nothing useful.", 0.0),
    }
    factories.import_responses(
        p.project,
        [{"task_id": t, "model": m, "response": text} for (t, m), (text, _) in answers.items()],
    )
    suite = suites.suite_create(
        project=p.project, name="Clinic", user=p.admin, task_ids=[t.pk for t in tasks.values()]
    )
    version, _ = suites.suite_freeze(suite=suite, user=p.admin)
    judge = factories.make_judge(p.project, sim.url)
    run = services.run_create(project=p.project, suite_version=version, judge=judge, user=p.admin)
    wait_for(
        lambda: GradingRun.objects.get(pk=run.pk).status == "completed",
        timeout=120,
        what="the suite run to complete",
    )
    board = leaderboard.suite_leaderboard(suite)
    good, poor = column(board, "good"), column(board, "poor")
    assert [m.model for m in board.models] == ["good", "poor"]
    assert good.run_id == poor.run_id == run.pk
    assert good.overall.mean == pytest.approx(1.0)
    assert poor.overall.mean == pytest.approx((2 / 3 + 0.0) / 2)
    per_task = {t.external_id: [c.mean for c in t.cells] for t in board.tasks}
    assert per_task == {
        "fever": [pytest.approx(1.0), pytest.approx(2 / 3)],
        "rash": [pytest.approx(1.0), pytest.approx(0.0)],
    }
    assert [t.external_id for t in board.tasks] == ["rash", "fever"]  # rash splits them most
    assert {c.tag: c.mean for c in poor.task_tags} == {"common": pytest.approx(2 / 3)}
    assert leaderboard.run_leaderboard(GradingRun.objects.get(pk=run.pk)).models == board.models
