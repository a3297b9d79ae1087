"""Per-model scores: a run's models (run page, runs list, suite page, CLI), a run's
leaderboard, and a suite's over its runs. One aggregation serves them all.

Every score is the HealthBench aggregation: the mean of the responses' raw scores, clipped to
[0, 1] once averaged (a pitfall's negative raw lowers the mean it is part of; HealthBench's
`_compute_clipped_stats`), with n, the responses it averages. A model's score and the
leaderboard's overall and tag cells carry a 95% percentile-bootstrap interval that resamples
TASKS: the tasks are the unit a benchmark samples, and responses of one task are not
independent, so resampling responses (or criteria) would make the interval too narrow. Each
resample draws the run's (or leaderboard's) tasks with replacement, and each of its cells is
the mean over the responses of the tasks drawn (a task drawn twice counts twice), clipped as
the cell is; the same draws serve every model and every column, so a model's score on its run's
page, in the run lists and on its run's leaderboard is one figure.

Leaderboards are models x (overall, each task, each axis tag, each task tag). Reads a fixed
handful of queries whatever the number of tasks, responses or runs: sums and counts are made
in SQL per (run, model, task) and per (model, task, axis tag); the rest is numpy.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import connection
from django.db.models import Q

from annotation.models import Response
from grading.models import GradingRun, Score
from grading.results import kept
from rubrics import suites
from rubrics.models import Suite, SuiteVersion, Task

BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0
# Resamples drawn at once: bounds memory at 5,000 tasks (the draws equal one draw of them all).
BOOTSTRAP_CHUNK = 250
# Above this many tasks, the heatmap shows groups of tasks, not tasks.
HEATMAP_MAX_COLUMNS = 60
HEATMAP_BUCKETS = 50
NO_TAG = "(no tag)"
# A page lists this many tasks by disagreement unless asked for all.
TOP_TASKS = 20


@dataclass(frozen=True)
class Cell:
    mean: float | None  # None: no scored response
    n: int  # scored responses averaged
    ci: tuple[float, float] | None = None  # overall and tag cells only; None below 2 tasks


@dataclass(frozen=True)
class TagCell(Cell):
    tag: str = ""


@dataclass(frozen=True)
class ModelScore(Cell):
    """A model's score in one run, wherever it is shown: the run's overall cell for it."""

    model: str = ""
    tasks: int = 0  # tasks with a scored response of the model

    @property
    def ci_missing(self) -> str:
        """Why there is no interval, in words for a page; empty when there is one."""
        if self.ci is not None:
            return ""
        if not self.n:
            return "no scored response yet"
        return "one task scored; an interval over tasks needs two"


@dataclass(frozen=True)
class ModelRow:
    model: str
    run_id: int  # the run the row's scores come from
    overall: ModelScore
    axis_tags: list[TagCell]  # in the order of Leaderboard.axis_tags
    task_tags: list[TagCell]  # in the order of Leaderboard.task_tags


@dataclass(frozen=True)
class ModelTaskCell:
    model: str
    mean: float | None
    n: int


@dataclass(frozen=True)
class TaskRow:
    task_id: int
    external_id: str
    title: str
    tags: list[str]
    cells: list[ModelTaskCell]  # in the order of Leaderboard.models
    # Max minus min of the per-model means; None when fewer than two models scored the task.
    spread: float | None


@dataclass
class Leaderboard:
    models: list[ModelRow]  # by overall mean, best first
    axis_tags: list[str]
    task_tags: list[str]
    heatmap: dict
    # The tasks, most disagreement first, kept compact (a leaderboard of 5,000 tasks is
    # cached, and thousands of row objects are slow to pickle): (id, external id, title,
    # tags, spread) per task, and per task the models' (mean, n) in the order of `models`.
    task_info: list[tuple] = field(default_factory=list)
    task_cells: list[tuple] = field(default_factory=list)
    resamples: int = BOOTSTRAP_RESAMPLES
    seed: int = BOOTSTRAP_SEED
    # For a suite's: its version, and why it may be empty.
    version: SuiteVersion | None = None
    note: str = ""
    runs: list[int] = field(default_factory=list)
    suite_id: int | None = None
    # The cache key it is kept under ("" when it is not: its scores may still change); what
    # is made from it alone (the API's JSON) can be kept under keys that start with it.
    cache_key: str = ""

    @property
    def task_count(self) -> int:
        """Tasks with a scored response."""
        return len(self.task_info)

    def task_rows(self, limit: int | None = None) -> list[TaskRow]:
        """The first `limit` tasks by disagreement (None: all)."""
        names = [m.model for m in self.models]
        rows = []
        for (pk, external_id, title, tags, spread), cells in zip(
            self.task_info[:limit], self.task_cells[:limit], strict=True
        ):
            row_cells = [
                ModelTaskCell(name, mean, n) for name, (mean, n) in zip(names, cells, strict=True)
            ]
            rows.append(TaskRow(pk, external_id, title, list(tags), row_cells, spread))
        return rows

    @property
    def tasks(self) -> list[TaskRow]:
        return self.task_rows()


# --- Reads --------------------------------------------------------------------------------

_SCORE = Score._meta.db_table
_RESPONSE = Response._meta.db_table
_TASK = Task._meta.db_table
_RUN = GradingRun._meta.db_table


def clip(value: float) -> float:
    return min(1.0, max(0.0, value))


def _where(sources: dict[str, int] | list[int] | int) -> tuple[str, list]:
    """Scored responses of one run (an id), of several ([ids]), or of each model in its
    source run ({model: run id}: one (run, model) condition per model; the models are few,
    whatever the tasks)."""
    if isinstance(sources, int):
        sources = [sources]
    if isinstance(sources, list):
        marks = ", ".join(["%s"] * len(sources)) or "NULL"
        return f"s.run_id IN ({marks}) AND s.raw IS NOT NULL", list(sources)
    params: list = []
    for model, run_id in sources.items():
        params += [run_id, model]
    either = " OR ".join(["(s.run_id = %s AND r.model = %s)"] * len(sources)) or "FALSE"
    return f"({either}) AND s.raw IS NOT NULL", params


def _task_sums(sources: dict[str, int] | list[int] | int, *, details: bool) -> list[tuple]:
    """(run id, model, task id, external id, n, sum of raw) per run, model and task; with
    `details`, the task's title and tags after its external id."""
    where, params = _where(sources)
    # Summed per (run, model, task) first, then joined to the tasks: grouping the joined rows
    # sorted every score with its task's title and tags (most of the query at 5,000 tasks).
    sql = f"""
        SELECT a.run_id, a.model, t.id, t.external_id{", t.title, t.tags" if details else ""},
            a.n, a.total
        FROM (
            SELECT s.run_id, r.model, r.task_id, COUNT(*) AS n, SUM(s.raw) AS total
            FROM {_SCORE} s JOIN {_RESPONSE} r ON r.id = s.response_id
            WHERE {where}
            GROUP BY s.run_id, r.model, r.task_id
        ) a JOIN {_TASK} t ON t.id = a.task_id
    """  # noqa: S608 (table names are ours; values are parameters)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _axis_sums(sources: dict[str, int] | int) -> list[tuple]:
    """(model, task id, axis tag, n, sum of raw) from each score's `by_tag`: with jsonb on
    PostgreSQL, with SQLite's json_each on the embedded default."""
    where, params = _where(sources)
    if connection.vendor == "postgresql":
        tags = """CROSS JOIN LATERAL jsonb_each(
            CASE WHEN jsonb_typeof(s.by_tag) = 'object' THEN s.by_tag ELSE '{}'::jsonb END
        ) bt"""
        value, is_number = "(bt.value)::float8", "jsonb_typeof(bt.value) = 'number'"
    else:
        tags = """JOIN json_each(
            CASE WHEN json_type(s.by_tag) = 'object' THEN s.by_tag ELSE '{}' END
        ) bt"""
        value, is_number = "bt.value", "bt.type IN ('integer', 'real')"
    sql = f"""
        SELECT r.model, r.task_id, bt.key, COUNT(*), SUM({value})
        FROM {_SCORE} s JOIN {_RESPONSE} r ON r.id = s.response_id
        {tags}
        WHERE {where} AND {is_number}
        GROUP BY r.model, r.task_id, bt.key
    """  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _tag_list(tags) -> tuple[str, ...]:
    """A task's tags as the leaderboard groups them: text, each once, sorted."""
    return tuple(sorted({str(t) for t in tags})) if isinstance(tags, list) else ()


def _suite_sources(version: SuiteVersion) -> dict[str, tuple[int, str]]:
    """{model: (run id, finish time)}: for each model, the newest completed run over `version`
    that scored it."""
    # One row per (model, run): models x runs over the version, a few.
    rows = (
        Score.objects.filter(
            run__suite_version=version,
            run__status=GradingRun.Status.COMPLETED,
            raw__isnull=False,
        )
        .values_list("response__model", "run_id", "run__finished_at")
        .distinct()
        .order_by()
    )
    newest: dict[str, tuple] = {}
    for model, run_id, finished in rows:
        key = (finished is not None, finished, run_id)
        if model not in newest or key > newest[model][0]:
            newest[model] = (key, run_id, finished)
    return {
        model: (run_id, finished.isoformat() if finished else "")
        for model, (_, run_id, finished) in newest.items()
    }


# --- Selectors ----------------------------------------------------------------------------


def model_scores(runs: Sequence[GradingRun]) -> dict[int, list[ModelScore]]:
    """Per run id: its models' scores, by model name (the run's overall cells: its
    leaderboard's and its page's). A completed run's are those stored on it when it completed
    (GradingRun.model_scores: no query, no bootstrap); the others' are computed
    (`compute_model_scores`: one query, however many runs, tasks or responses). A completed
    run without them (completed before they were stored) gets them stored here, once."""
    found: dict[int, list[ModelScore]] = {}
    live: dict[int, GradingRun] = {}
    for run in runs:
        stored = run.model_scores if run.status == _COMPLETED else None
        if stored is not None:
            found[run.pk] = scores_from_json(stored)
        else:
            live[run.pk] = run
    if live:
        fresh = compute_model_scores(list(live))
        found.update(fresh)
        _fill({pk: fresh[pk] for pk, run in live.items() if run.status == _COMPLETED}, live)
    return found


_COMPLETED = GradingRun.Status.COMPLETED


def _fill(scores: dict[int, list[ModelScore]], runs: dict[int, GradingRun]) -> None:
    """Store the scores of runs completed before scores were stored, in one statement, each
    unless it has changed since it was read (reopened, or completed again: then they are
    another's to store)."""
    filled = [runs[pk] for pk in scores if runs[pk].finished_at is not None]
    if not filled:
        return
    unchanged = Q()
    for run in filled:
        run.model_scores = scores_to_json(scores[run.pk])
        unchanged |= Q(pk=run.pk, finished_at=run.finished_at)
    GradingRun.objects.filter(unchanged, status=_COMPLETED, model_scores__isnull=True).bulk_update(
        filled, ["model_scores"]
    )


def compute_model_scores(run_ids: list[int]) -> dict[int, list[ModelScore]]:
    """Per run id, its models' scores from its scored responses: every model score is made
    here, whether stored when a run completes or shown while it runs."""
    by_run: dict[int, list[tuple]] = {pk: [] for pk in run_ids}
    for run_id, model, task_id, external_id, n, total in _task_sums(run_ids, details=False):
        by_run[run_id].append((model, task_id, external_id, n, total))
    return {pk: _model_scores(rows) for pk, rows in by_run.items()}


def scores_to_json(scores: list[ModelScore]) -> list[dict]:
    """`scores` as GradingRun.model_scores stores them (floats round-trip exactly)."""
    return [
        {
            "model": s.model,
            "mean": s.mean,
            "n": s.n,
            "ci": list(s.ci) if s.ci is not None else None,
            "tasks": s.tasks,
        }
        for s in scores
    ]


def scores_from_json(stored: list[dict]) -> list[ModelScore]:
    return [
        ModelScore(
            s["mean"],
            s["n"],
            tuple(s["ci"]) if s["ci"] is not None else None,
            model=s["model"],
            tasks=s["tasks"],
        )
        for s in stored
    ]


def _model_scores(rows: list[tuple]) -> list[ModelScore]:
    """One run's models' scores from its rows (model, task id, external id, n, sum of raw):
    the overall cells of its leaderboard (the same tasks, in the same order, the same
    draws)."""
    row_models, row_tasks, external_ids, ns, totals = zip(*rows, strict=True) if rows else [()] * 5
    task_ids = _task_order(dict(zip(row_tasks, external_ids, strict=True)))
    models = sorted(set(row_models))
    sums, counts = _per_model_task(
        row_models,
        row_tasks,
        ns,
        totals,
        row_of={m: i for i, m in enumerate(models)},
        where={pk: i for i, pk in enumerate(task_ids)},
    )
    tasks_of = (counts > 0).sum(axis=1).tolist()
    return [
        ModelScore(*cell, model=model, tasks=tasks)
        for model, cell, tasks in zip(models, _cells(sums.T, counts.T), tasks_of, strict=True)
    ]


def run_leaderboard(run: GradingRun) -> Leaderboard:
    """The run's leaderboard over its scored responses; a completed run's is kept
    (grading.results.kept). Its overall cells are the run's model scores (the same draws)."""

    def build() -> Leaderboard:
        board = _build(run.pk)
        board.cache_key = kept.key(run, "leaderboard")
        return board

    return kept.finished(run, "leaderboard", build)


def suite_version_for(suite: Suite, number: int | None) -> SuiteVersion | None:
    """The suite's version `number` (None: its newest; None when it has none). An unknown
    number is a ValidationError naming the field."""
    version = suites.version_of(suite, number)
    if version is None and number is not None:
        raise ValidationError({"version": f"This suite has no version {number}."})
    return version


def suite_leaderboard(suite: Suite, version: int | None = None) -> Leaderboard:
    """The suite's leaderboard on its version `version` (None: the newest): for each model,
    the newest completed run over that version that scored it; each row names its run."""
    frozen = suite_version_for(suite, version)
    if frozen is None:
        board = _empty(note="The suite has no frozen version yet: nothing to rank.")
        board.suite_id = suite.pk
        return board
    # The completed runs over the version decide everything below: cached under them, the
    # scan of their scores for each model's newest run is made once per new completed run.
    completed = {
        run.pk: run
        for run in GradingRun.objects.filter(
            suite_version=frozen, status=GradingRun.Status.COMPLETED
        ).only("pk", "status", "finished_at")
    }
    key = "assay:leaderboard:suite:%s:%s" % (  # noqa: UP031 (a key of many parts)
        frozen.pk,
        hashlib.sha256(
            ";".join(
                f"{pk}@{run.finished_at.isoformat() if run.finished_at else ''}"
                for pk, run in sorted(completed.items())
            ).encode()
        ).hexdigest(),
    )
    board = cache.get(key) if completed else None
    if board is None:
        found = _suite_sources(frozen) if completed else {}
        sources = {model: run_id for model, (run_id, _) in found.items()}
        if not found:
            note = f"No completed run over v{frozen.number} has scored a response yet."
            board = _empty(note=note)
        else:
            if len(set(sources.values())) == 1:
                # One run is every model's newest: its own leaderboard is this one (the same
                # scores, tasks and draws), made once for its page and the suite's.
                board = run_leaderboard(completed[next(iter(sources.values()))])
            else:
                board = _build(sources)
            board.cache_key = key
            cache.set(key, board, timeout=kept.CACHE_S)
    board.version, board.suite_id = frozen, suite.pk
    return board


def _empty(note: str) -> Leaderboard:
    return Leaderboard(models=[], axis_tags=[], task_tags=[], heatmap=_heatmap_empty(), note=note)


# --- Arithmetic ---------------------------------------------------------------------------


def task_bootstrap(
    sums: np.ndarray, counts: np.ndarray, *, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0
) -> np.ndarray:
    """Bootstrap means that resample tasks: `sums` and `counts` are (tasks, columns) arrays,
    a column's sum of clipped scores and its count of responses per task. Each resample draws
    as many tasks as there are, with replacement (`default_rng(seed).integers(0, tasks,
    (resamples, tasks))`), and each column's mean is its drawn tasks' sums over their counts,
    a weighted sum. Returns (resamples, columns); NaN where a resample drew no response of a
    column."""
    tasks = sums.shape[0]
    values = np.concatenate([sums, counts], axis=1)
    rng = np.random.default_rng(seed)
    out = np.empty((resamples, sums.shape[1]))
    # 32-bit draws when the tasks fit: numpy draws a range below 2**32 from the same 32-bit
    # stream whatever the dtype (the draws equal int64's), at half the memory to write.
    dtype = np.int32 if tasks * BOOTSTRAP_CHUNK < 2**31 else np.int64
    for start in range(0, resamples, BOOTSTRAP_CHUNK):
        b = min(BOOTSTRAP_CHUNK, resamples - start)
        draws = rng.integers(0, tasks, size=(b, tasks), dtype=dtype)
        # How often each task was drawn in each resample: then one matrix product sums them.
        draws += (np.arange(b, dtype=dtype) * tasks)[:, None]
        weights = np.bincount(draws.ravel(), minlength=b * tasks)
        totals = weights.reshape(b, tasks).astype(float) @ values
        s, n = totals[:, : sums.shape[1]], totals[:, sums.shape[1] :]
        with np.errstate(invalid="ignore", divide="ignore"):
            out[start : start + b] = np.where(n > 0, s / np.where(n > 0, n, 1), np.nan)
    return out


def percentile_interval(means: np.ndarray) -> list[tuple[float, float] | None]:
    """The 2.5th and 97.5th percentiles of each column's bootstrap means."""
    intervals: list[tuple[float, float] | None] = []
    for column in means.T:
        column = column[~np.isnan(column)]
        if not len(column):
            intervals.append(None)
            continue
        # Clipping is monotonic: the percentiles of the clipped means are the clipped percentiles.
        low, high = np.percentile(column, [2.5, 97.5])
        intervals.append((clip(float(low)), clip(float(high))))
    return intervals


def _task_order(external_ids: dict[int, str]) -> list[int]:
    """Task ids in the order the bootstrap draws them by index: by external id, then id."""
    return sorted(external_ids, key=lambda pk: (external_ids[pk], pk))


def _indices(index: dict, keys: Sequence) -> np.ndarray:
    return np.fromiter(map(index.__getitem__, keys), dtype=np.intp, count=len(keys))


def _per_model_task(
    models: Sequence[str],
    task_ids: Sequence[int],
    ns: Sequence[int],
    totals: Sequence[float],
    *,
    row_of: dict[str, int],
    where: dict[int, int],
) -> tuple[np.ndarray, np.ndarray]:
    """(models, tasks) arrays of the sums of raw scores and the counts of scored responses,
    from rows given as columns: model, task id, n, sum of raw."""
    sums, counts = np.zeros((len(row_of), len(where))), np.zeros((len(row_of), len(where)))
    if models:
        # Filled by index arrays: one numpy assignment each, not one per row (10,000s of rows).
        at = (_indices(row_of, models), _indices(where, task_ids))
        sums[at] = np.array(totals, dtype=float)
        counts[at] = ns
    return sums, counts


def _cells(
    sums: np.ndarray, counts: np.ndarray
) -> list[tuple[float | None, int, tuple[float, float] | None]]:
    """Every per-model score is made here. `sums` and `counts` are (tasks, columns) arrays: a
    column's sum of raw scores and its count of scored responses per task. Per column:
    (the mean over its responses clipped to [0, 1], n, the 95% interval over tasks), or
    (None, 0, None) without a response; the interval is None below two tasks (one task says
    nothing of how a mean varies across tasks)."""
    k, columns = sums.shape
    if not k or not columns:
        return [(None, 0, None)] * columns
    totals_s, totals_n = sums.sum(axis=0).tolist(), counts.sum(axis=0).tolist()
    intervals = (
        percentile_interval(task_bootstrap(sums, counts, seed=BOOTSTRAP_SEED))
        if k >= 2
        else [None] * columns
    )
    cells: list[tuple[float | None, int, tuple[float, float] | None]] = []
    for total, n, ci in zip(totals_s, totals_n, intervals, strict=True):
        cells.append((clip(total / n), int(n), ci) if n else (None, 0, None))
    return cells


def _build(sources: dict[str, int] | int) -> Leaderboard:
    """`sources`: a run's id, or {model: run id} for a suite's."""
    rows = _task_sums(sources, details=True)
    axis_rows = _axis_sums(sources)
    if isinstance(sources, int):
        sources = dict.fromkeys({row[1] for row in rows}, sources)
    info: dict[int, tuple[str, str, tuple[str, ...]]] = {}
    # Tasks share a few tag lists (a HealthBench theme and category each): each list's text
    # is parsed once, not once per task.
    parsed: dict[str, tuple[str, ...]] = {}
    # A task has a row per model, with the same details: each task's are read once.
    for _, _, task_id, external_id, title, tags, _, _ in {row[2]: row for row in rows}.values():
        if isinstance(tags, str):  # jsonb reaches a raw cursor as text (Django's loader)
            clean = parsed.get(tags)
            if clean is None:
                clean = parsed[tags] = _tag_list(json.loads(tags))
        else:
            clean = _tag_list(tags)
        info[task_id] = (external_id, title, clean)
    task_ids = _task_order({pk: external_id for pk, (external_id, _, _) in info.items()})
    where = {pk: i for i, pk in enumerate(task_ids)}
    models = sorted(sources)
    row_of = {m: i for i, m in enumerate(models)}
    k, m_count = len(task_ids), len(models)
    _, row_models, row_tasks, _, _, _, ns, totals = zip(*rows, strict=True) if rows else [()] * 8
    sums, counts = _per_model_task(row_models, row_tasks, ns, totals, row_of=row_of, where=where)
    # Per (axis tag, model, task), filled as the overall sums are: by index arrays.
    axis_rows = [row for row in axis_rows if row[1] in where]
    axis_tags = sorted({row[2] for row in axis_rows})
    axis_of = {t: i for i, t in enumerate(axis_tags)}
    axis_sums = np.zeros((len(axis_tags), m_count, k))
    axis_counts = np.zeros((len(axis_tags), m_count, k))
    if axis_rows:
        a_models, a_tasks, a_tags, a_ns, a_totals = zip(*axis_rows, strict=True)
        at = (
            _indices(axis_of, a_tags),
            _indices(row_of, a_models),
            _indices(where, a_tasks),
        )
        axis_sums[at] = np.array(a_totals, dtype=float)
        axis_counts[at] = a_ns
    task_tags = sorted({tag for pk in task_ids for tag in info[pk][2]})
    member = np.zeros((len(task_tags), k))
    tag_of = {t: i for i, t in enumerate(task_tags)}
    at_tag, at_task = [], []
    for j, pk in enumerate(task_ids):  # where[pk] == j
        for tag in info[pk][2]:
            at_tag.append(tag_of[tag])
            at_task.append(j)
    member[at_tag, at_task] = 1.0

    # Columns per model, as (sums per task, counts per task): overall, axis tags, task tags.
    column_sums, column_counts = [], []
    for mi in range(m_count):
        column_sums.append(sums[mi])
        column_counts.append(counts[mi])
        for ti in range(len(axis_tags)):
            column_sums.append(axis_sums[ti, mi])
            column_counts.append(axis_counts[ti, mi])
        for gi in range(len(task_tags)):
            column_sums.append(sums[mi] * member[gi])
            column_counts.append(counts[mi] * member[gi])
    per_model = 1 + len(axis_tags) + len(task_tags)
    cells = _cells(
        np.array(column_sums).T.reshape(k, len(column_sums)),
        np.array(column_counts).T.reshape(k, len(column_counts)),
    )
    tasks_of = (counts > 0).sum(axis=1).tolist()

    model_rows = []
    for mi, model in enumerate(models):
        base = mi * per_model
        overall = ModelScore(*cells[base], model=model, tasks=tasks_of[mi])
        axis_cells = [TagCell(*cells[base + 1 + ti], tag=tag) for ti, tag in enumerate(axis_tags)]
        tag_cells = [
            TagCell(*cells[base + 1 + len(axis_tags) + gi], tag=tag)
            for gi, tag in enumerate(task_tags)
        ]
        model_rows.append(ModelRow(model, sources[model], overall, axis_cells, tag_cells))
    model_rows.sort(key=lambda r: (r.overall.mean is None, -(r.overall.mean or 0), r.model))
    order = [row_of[r.model] for r in model_rows]

    # Per task, in the models' order: clipped means, counts and the spread, as arrays, then
    # read out as Python lists once (element by element, numpy costs more than the sums).
    ordered_counts = counts[order]
    scored = ordered_counts > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        task_means = np.clip(sums[order] / np.where(scored, ordered_counts, 1), 0.0, 1.0)
    if k and m_count:
        high = np.where(scored, task_means, -np.inf).max(axis=0)
        low = np.where(scored, task_means, np.inf).min(axis=0)
        twice = (scored.sum(axis=0) >= 2).tolist()
        spreads = [
            float(x) if two else None for x, two in zip((high - low).tolist(), twice, strict=True)
        ]
    else:
        spreads = [None] * k
    means_by_task = task_means.T.tolist()
    counts_by_task = ordered_counts.astype(int).T.tolist()
    task_info, task_cells = [], []
    for pk, means, ns, spread in zip(task_ids, means_by_task, counts_by_task, spreads, strict=True):
        if all(ns):  # every model scored the task: most tasks
            cells = tuple(zip(means, ns, strict=True))
        else:
            cells = tuple((mean, n) if n else (None, 0) for mean, n in zip(means, ns, strict=True))
        external_id, title, tags = info[pk]
        task_info.append((pk, external_id, title, tags, spread))
        task_cells.append(cells)
    # Most disagreement first; tasks fewer than two models scored last; then by external id.
    by_spread = sorted(
        range(len(task_info)), key=lambda i: (task_info[i][4] is None, -(task_info[i][4] or 0.0))
    )
    heatmap = _heatmap(
        [models[mi] for mi in order],
        sums[order] if m_count else sums,
        counts[order] if m_count else counts,
        [info[pk] for pk in task_ids],
        task_tags,
        member,
    )
    return Leaderboard(
        models=model_rows,
        axis_tags=axis_tags,
        task_tags=task_tags,
        heatmap=heatmap,
        task_info=[task_info[i] for i in by_spread],
        task_cells=[task_cells[i] for i in by_spread],
        runs=sorted(set(sources.values())),
    )


def _heatmap_empty() -> dict:
    return {"models": [], "columns": [], "values": [], "n": [], "grouped": "task", "note": ""}


def _heatmap(
    models: list[str],
    sums: np.ndarray,
    counts: np.ndarray,
    tasks: list[tuple[str, str, tuple[str, ...]]],
    task_tags: list[str],
    member: np.ndarray,
) -> dict:
    """Models x tasks; above HEATMAP_MAX_COLUMNS tasks, models x groups of tasks: by task tag
    when the tasks carry tags (few enough of them), else ordered buckets of tasks. A group's
    value is the mean over the responses of its tasks, as every cell."""
    k = len(tasks)
    if k <= HEATMAP_MAX_COLUMNS:
        columns = [external_id for external_id, _, _ in tasks]
        group = np.eye(k)
        grouped, note = "task", ""
    elif task_tags and len(task_tags) + 1 <= HEATMAP_MAX_COLUMNS:
        untagged = (member.sum(axis=0) == 0).astype(float)
        group = np.vstack([member, untagged[None, :]]) if untagged.any() else member
        columns = list(task_tags) + ([NO_TAG] if untagged.any() else [])
        grouped = "tag"
        note = (
            f"{k:,} tasks, shown as {len(columns)} groups by task tag (a task with several "
            f"tags counts in each{'; untagged tasks under ' + NO_TAG if untagged.any() else ''})."
        )
    else:
        size = math.ceil(k / HEATMAP_BUCKETS)
        starts = list(range(0, k, size))
        group = np.zeros((len(starts), k))
        columns = []
        for b, start in enumerate(starts):
            end = min(start + size, k)
            group[b, start:end] = 1.0
            columns.append(f"{tasks[start][0]} … {tasks[end - 1][0]}")
        grouped = "bucket"
        note = (
            f"{k:,} tasks, shown as {len(columns)} buckets of up to {size} tasks in order of "
            "external id (the tasks carry "
            + ("too many tags" if task_tags else "no tags")
            + " to group by tag)."
        )
    if not len(models):
        return {**_heatmap_empty(), "columns": columns, "grouped": grouped, "note": note}
    s, n = sums @ group.T, counts @ group.T
    values = [
        [
            None if n[mi, c] == 0 else round(clip(float(s[mi, c] / n[mi, c])), 4)
            for c in range(len(columns))
        ]
        for mi in range(len(models))
    ]
    return {
        "models": models,
        "columns": columns,
        "values": values,
        "n": [[int(x) for x in row] for row in n],
        "grouped": grouped,
        "note": note,
    }


# --- For pages ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Shown:
    """What a page shows of a leaderboard: the top tasks by disagreement unless all are
    asked for, and the heatmap's data for its chart."""

    board: Leaderboard
    tasks: Sequence[TaskRow]
    hidden: int
    all_tasks: bool
    top: int
    heatmap_json: str


def shown(board: Leaderboard, *, all_tasks: bool, top: int = TOP_TASKS) -> Shown:
    tasks = board.task_rows(None if all_tasks else top)
    return Shown(
        board=board,
        tasks=tasks,
        hidden=board.task_count - len(tasks),
        all_tasks=all_tasks,
        top=top,
        heatmap_json=json.dumps(board.heatmap),
    )
