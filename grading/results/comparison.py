"""Two runs over the same suite, side by side: what changed from run A to run B.

Any two runs over one suite compare (two models, two judges, two versions of the suite, two
modes); runs over different suites do not, and `compare` says why. Every delta is B minus A.

The rules, as the page and the API state them:
- **Which models.** Each model that both runs scored is compared with itself. When the runs
  share no model and each scored exactly one, that one of A is compared with that one of B
  (two models on one suite). Otherwise nothing pairs, and `pairing` says why.
- **Scores.** A pair's mean is the HealthBench one (raw scores averaged over responses,
  the mean clipped to [0, 1], as the leaderboard's), over the tasks both sides scored. Its
  95% interval is a paired bootstrap by task: resample r (of 2,000, seed 0) draws the shared
  tasks with replacement (`rng.integers(0, T, size=T)`, one draw after the other), and its
  delta is the clipped mean over the drawn tasks' responses in B minus the same in A; the
  interval is the 2.5th and 97.5th percentiles of those deltas.
- **Criteria** are matched within a task by lineage: the same criterion id when both runs
  pinned the same grader, and across rubric versions the criterion the new version copied
  (what rubric diffs pair by), so an inserted criterion does not shift the others. Met rates
  and verdicts are the lead judge's, sample 0, over the paired models' responses.
- **Flips and agreement** need shared responses: items (response x criterion, lead judge,
  sample 0) decided met or unmet in both runs whose verdict differs; agreement is percent
  agreement and Cohen's kappa (annotation.stats) over every item both decided (met, unmet or
  not applicable).

Everything is aggregated in SQL: the number of queries does not grow with tasks or
responses, and the long lists (tasks, criteria, flips) come a page at a time.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.core.paginator import Page, Paginator
from django.db import connection
from django.db.models import Count, Min, Q, Sum

from annotation import stats
from annotation.models import Response, Verdict
from grading.models import GradingRun, Score
from rubrics.models import Criterion

PER_PAGE = 50
CHART_TASKS = 30  # the tasks that changed most, in the chart
SEED = 0
# Resamples of the paired interval of a difference (2,000: the figures it has always shown).
BOOTSTRAP_RESAMPLES = 2000
CHUNK = 256  # resamples drawn at a time: 256 x 5,000 tasks stays a few MB

CRITERIA_RULE = (
    "Criteria are matched within a task by lineage: the same criterion when both runs pinned "
    "the same grader, and across rubric versions the criterion the newer version carried over "
    "(as rubric diffs pair them), never by position alone."
)
INTERVAL_RULE = (
    "95% paired bootstrap by task: 2,000 resamples (seed 0) of the tasks both runs scored; "
    "each resample's delta is the clipped mean over the drawn tasks' responses in B minus "
    "the same in A."
)
VERDICTS_RULE = "Verdicts are the lead judge's (sample 0) in each run."


def refusal(a: GradingRun, b: GradingRun) -> str:
    """Why runs `a` and `b` cannot be compared, or empty when they can."""
    suite_a, suite_b = a.suite_version.suite, b.suite_version.suite
    if suite_a.pk == suite_b.pk:
        return ""
    return (
        f"Run #{a.pk} grades the suite “{suite_a.name}” and run #{b.pk} the suite "
        f"“{suite_b.name}”: runs compare only over the same suite (any two of its versions), "
        "since their tasks and graders are otherwise not the same thing measured twice."
    )


@dataclass(frozen=True)
class ModelPair:
    model_a: str
    model_b: str
    tasks: int  # tasks both sides scored
    responses_a: int
    responses_b: int
    mean_a: float | None
    mean_b: float | None
    ci: tuple[float, float] | None

    @property
    def label(self) -> str:
        return self.model_a if self.model_a == self.model_b else f"{self.model_a} → {self.model_b}"

    @property
    def delta(self) -> float | None:
        if self.mean_a is None or self.mean_b is None:
            return None
        return self.mean_b - self.mean_a


@dataclass(frozen=True)
class TaskDelta:
    task: str  # external id
    model_a: str
    model_b: str
    responses_a: int
    responses_b: int
    mean_a: float
    mean_b: float

    @property
    def delta(self) -> float:
        return self.mean_b - self.mean_a


@dataclass
class CriterionDelta:
    task: str
    criterion_a: int
    criterion_b: int
    position: int  # in B's grader, from 0
    met_a: int
    decided_a: int
    met_b: int
    decided_b: int
    text: str = ""

    @property
    def rate_a(self) -> float:
        return self.met_a / self.decided_a

    @property
    def rate_b(self) -> float:
        return self.met_b / self.decided_b

    @property
    def delta(self) -> float:
        return self.rate_b - self.rate_a

    @property
    def same(self) -> bool:
        return self.criterion_a == self.criterion_b


@dataclass(frozen=True)
class Flip:
    response: int
    task: str
    model: str
    sample_index: int
    criterion_a: int
    criterion_b: int
    position: int
    text: str
    before: str  # A's outcome
    after: str  # B's outcome
    score_a: int
    score_b: int


@dataclass(frozen=True)
class Agreement:
    items: int
    agree: int
    kappa: float | None
    # counts[(outcome in A, outcome in B)]
    counts: dict = field(default_factory=dict)

    @property
    def percent(self) -> float | None:
        return self.agree / self.items if self.items else None


def paired_interval(
    sums_a, counts_a, sums_b, counts_b, *, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = SEED
) -> tuple[float, float] | None:
    """95% paired bootstrap interval of (mean in B - mean in A), resampling tasks: per task
    the sum of raw scores and the number of responses on each side; each side's resampled
    mean is clipped to [0, 1] as a mean is. None below 2 tasks."""
    sa, na = np.asarray(sums_a, float), np.asarray(counts_a, float)
    sb, nb = np.asarray(sums_b, float), np.asarray(counts_b, float)
    tasks = len(sa)
    if tasks < 2:
        return None
    rng = np.random.default_rng(seed)
    deltas = np.empty(resamples)
    for start in range(0, resamples, CHUNK):
        rows = min(CHUNK, resamples - start)
        drawn = rng.integers(0, tasks, size=(rows, tasks))
        mean_b = np.clip(sb[drawn].sum(1) / nb[drawn].sum(1), 0.0, 1.0)
        mean_a = np.clip(sa[drawn].sum(1) / na[drawn].sum(1), 0.0, 1.0)
        deltas[start : start + rows] = mean_b - mean_a
    low, high = np.percentile(deltas, [2.5, 97.5])
    return float(low), float(high)


def _interval(a: GradingRun, b: GradingRun, model_a: str, model_b: str, columns):
    """paired_interval, kept in the cache while both runs stay completed (as the run page
    keeps its summaries): at 5,000 tasks the bootstrap is most of the page's time, and each
    of the page's three pagers asks for the page again."""
    finished = [r.finished_at for r in (a, b) if r.status == GradingRun.Status.COMPLETED]
    if len(finished) < 2 or None in finished:
        return paired_interval(*columns)
    key = (
        "assay:compare-ci:"
        + hashlib.sha256(
            json.dumps(
                [a.pk, b.pk, model_a, model_b, [t.isoformat() for t in finished]],
                ensure_ascii=True,
            ).encode()
        ).hexdigest()
    )
    found = cache.get(key)
    if found is None:
        found = {"ci": paired_interval(*columns)}
        cache.set(key, found, timeout=3600)
    return found["ci"]


def _clip(value: float) -> float:
    return min(1.0, max(0.0, value))


def _raw_sums(run: GradingRun) -> dict[tuple[str, int], tuple[str, float, int]]:
    """(model, task id) -> (task external id, sum of raw scores, scored responses)."""
    rows = (
        Score.objects.filter(run=run, raw__isnull=False)
        .values("response__model", "response__task_id", "response__task__external_id")
        .annotate(total=Sum("raw"), n=Count("pk"))
        .order_by()
    )
    return {
        (r["response__model"], r["response__task_id"]): (
            r["response__task__external_id"],
            r["total"],
            r["n"],
        )
        for r in rows
    }


def _pairs_rule(models_a: set[str], models_b: set[str]) -> tuple[list[tuple[str, str]], str]:
    shared = sorted(models_a & models_b)
    if shared:
        return [(m, m) for m in shared], "Each model both runs scored is compared with itself."
    if len(models_a) == 1 and len(models_b) == 1:
        (x,), (y,) = models_a, models_b
        return [(x, y)], (
            f"The runs share no model and each scored one: {x} (A) is compared with {y} (B), "
            "paired by task."
        )
    if not models_a or not models_b:
        return [], "A run has no scored response yet: there is nothing to compare."
    return [], (
        "The runs share no model and one of them scored several, so no model pairs with "
        "another: compare runs of the same models, or one model against one."
    )


class _FlipRows:
    """The flips of two runs as a Paginator's object list: counted, then sliced, in SQL."""

    def __init__(self, a: GradingRun, b: GradingRun):
        self.a, self.b = a, b

    def _sql(self, select: str, tail: str = "") -> tuple[str, list]:
        v, c = Verdict._meta.db_table, Criterion._meta.db_table
        s, r = Score._meta.db_table, Response._meta.db_table
        task = Response._meta.get_field("task").related_model._meta.db_table
        sql = f"""
            SELECT {select}
            FROM {v} va
            JOIN {c} ca ON ca.id = va.criterion_id
            JOIN {v} vb ON vb.response_id = va.response_id AND vb.run_id = %s
                AND vb.rater_id = %s AND vb.sample_index = 0
            JOIN {c} cb ON cb.id = vb.criterion_id AND cb.lineage = ca.lineage
            JOIN {s} sa ON sa.run_id = va.run_id AND sa.response_id = va.response_id
            JOIN {s} sb ON sb.run_id = vb.run_id AND sb.response_id = va.response_id
            JOIN {r} r ON r.id = va.response_id
            JOIN {task} t ON t.id = r.task_id
            WHERE va.run_id = %s AND va.rater_id = %s AND va.sample_index = 0
              AND va.outcome IN ('met', 'unmet') AND vb.outcome IN ('met', 'unmet')
              AND va.outcome <> vb.outcome
            {tail}
        """  # noqa: S608 - table names from the models; values are parameters
        params = [self.b.pk, self.b.judge.rater_id, self.a.pk, self.a.judge.rater_id]
        return sql, params

    @cached_property
    def _count(self) -> int:
        sql, params = self._sql("COUNT(*)")
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchone()[0]

    def count(self) -> int:
        return self._count

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, window: slice) -> list[Flip]:
        start = window.start or 0
        stop = self._count if window.stop is None else window.stop
        if stop <= start:
            return []
        sql, params = self._sql(
            "va.response_id, t.external_id, r.model, r.sample_index, va.criterion_id, "
            "vb.criterion_id, cb.position, cb.text, va.outcome, vb.outcome, sa.id, sb.id",
            "ORDER BY t.external_id, r.model, r.sample_index, r.id, cb.position LIMIT %s OFFSET %s",
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, [*params, max(0, stop - start), start])
            return [Flip(*row) for row in cursor.fetchall()]


def _agreement(a: GradingRun, b: GradingRun) -> Agreement:
    """Items both runs' lead judges decided (sample 0), counted by (outcome in A, in B)."""
    v, c = Verdict._meta.db_table, Criterion._meta.db_table
    sql = f"""
        SELECT va.outcome, vb.outcome, COUNT(*)
        FROM {v} va
        JOIN {c} ca ON ca.id = va.criterion_id
        JOIN {v} vb ON vb.response_id = va.response_id AND vb.run_id = %s
            AND vb.rater_id = %s AND vb.sample_index = 0
        JOIN {c} cb ON cb.id = vb.criterion_id AND cb.lineage = ca.lineage
        WHERE va.run_id = %s AND va.rater_id = %s AND va.sample_index = 0
          AND va.outcome <> 'error' AND vb.outcome <> 'error'
        GROUP BY va.outcome, vb.outcome
    """  # noqa: S608 - table names from the models; values are parameters
    with connection.cursor() as cursor:
        cursor.execute(sql, [b.pk, b.judge.rater_id, a.pk, a.judge.rater_id])
        counts = {(x, y): n for x, y, n in cursor.fetchall()}
    items = sum(counts.values())
    agree = sum(n for (x, y), n in counts.items() if x == y)
    codes = stats.CODES
    pairs = sorted(counts.items())
    left = np.repeat([codes[x] for (x, _), _ in pairs], [n for _, n in pairs]).astype(int)
    right = np.repeat([codes[y] for (_, y), _ in pairs], [n for _, n in pairs]).astype(int)
    return Agreement(items, agree, stats.kappa(left, right) if items else None, counts)


def _criterion_counts(run: GradingRun, models: list[str]) -> dict:
    """(task id, lineage) -> (criterion id, position, met, decided) of the lead judge."""
    rows = (
        Verdict.objects.filter(
            run=run,
            rater_id=run.judge.rater_id,
            sample_index=0,
            step__isnull=True,  # a step criterion's verdict on the response, not its steps
            response__model__in=models,
        )
        .exclude(outcome=Verdict.Outcome.ERROR)
        .values("response__task_id", "criterion__lineage")
        .annotate(
            first_id=Min("criterion_id"),
            first_position=Min("criterion__position"),
            met=Count("pk", filter=Q(outcome=Verdict.Outcome.MET)),
            decided=Count("pk"),
        )
        .order_by()
    )
    return {
        (r["response__task_id"], r["criterion__lineage"]): (
            r["first_id"],
            r["first_position"],
            r["met"],
            r["decided"],
        )
        for r in rows
    }


@dataclass
class Comparison:
    a: GradingRun
    b: GradingRun
    pairs: list[ModelPair]
    pairing: str
    tasks: list[TaskDelta]  # by |delta|, largest first
    criteria: list[CriterionDelta]  # by |delta|, largest first
    tasks_only_a: int
    tasks_only_b: int
    shared_responses: int
    agreement: Agreement | None
    criteria_rule: str = CRITERIA_RULE
    interval_rule: str = INTERVAL_RULE
    verdicts_rule: str = VERDICTS_RULE

    @property
    def same_version(self) -> bool:
        return self.a.suite_version_id == self.b.suite_version_id

    def flips_page(self, number) -> Page:
        """One page of the flipped items (no flips without shared responses)."""
        rows = _FlipRows(self.a, self.b) if self.shared_responses else []
        return Paginator(rows, PER_PAGE).get_page(number)

    def tasks_page(self, number) -> Page:
        return Paginator(self.tasks, PER_PAGE).get_page(number)

    def criteria_page(self, number) -> Page:
        """One page of criterion deltas, their texts read for that page only."""
        page = Paginator(self.criteria, PER_PAGE).get_page(number)
        missing = [c for c in page.object_list if not c.text]
        if missing:
            texts = dict(
                Criterion.objects.filter(pk__in=[c.criterion_b for c in missing]).values_list(
                    "pk", "text"
                )
            )
            for c in missing:
                c.text = texts.get(c.criterion_b, "")
        return page

    def chart(self) -> dict:
        """The delta chart's data: each model pair with its interval, and the tasks that
        changed most."""
        return {
            "a": f"run #{self.a.pk}",
            "b": f"run #{self.b.pk}",
            "pairs": [
                {
                    "label": p.label,
                    "delta": None if p.delta is None else round(p.delta, 4),
                    "low": None if p.ci is None else round(p.ci[0], 4),
                    "high": None if p.ci is None else round(p.ci[1], 4),
                }
                for p in self.pairs
            ],
            "tasks": [
                {
                    "label": t.task if len(self.pairs) == 1 else f"{t.task} · {t.model_b}",
                    "delta": round(t.delta, 4),
                }
                for t in self.tasks[:CHART_TASKS]
            ],
        }


def compare(a: GradingRun, b: GradingRun) -> Comparison:
    """Run B against run A (both loaded with their suite version and judge). Raises
    ValidationError (on `other_id`) when the runs grade different suites."""
    why = refusal(a, b)
    if why:
        raise ValidationError({"other_id": why})
    sums_a, sums_b = _raw_sums(a), _raw_sums(b)
    pair_list, pairing = _pairs_rule({m for m, _ in sums_a}, {m for m, _ in sums_b})
    pairs, tasks = [], []
    seen_a: set[int] = set()
    seen_b: set[int] = set()
    for model_a, model_b in pair_list:
        by_task_a = {t: v for (m, t), v in sums_a.items() if m == model_a}
        by_task_b = {t: v for (m, t), v in sums_b.items() if m == model_b}
        seen_a |= set(by_task_a)
        seen_b |= set(by_task_b)
        shared = sorted(set(by_task_a) & set(by_task_b))
        sa = [by_task_a[t][1] for t in shared]
        na = [by_task_a[t][2] for t in shared]
        sb = [by_task_b[t][1] for t in shared]
        nb = [by_task_b[t][2] for t in shared]
        pairs.append(
            ModelPair(
                model_a=model_a,
                model_b=model_b,
                tasks=len(shared),
                responses_a=sum(na),
                responses_b=sum(nb),
                mean_a=_clip(sum(sa) / sum(na)) if shared else None,
                mean_b=_clip(sum(sb) / sum(nb)) if shared else None,
                ci=_interval(a, b, model_a, model_b, (sa, na, sb, nb)),
            )
        )
        for t in shared:
            (name, s_a, n_a), (_, s_b, n_b) = by_task_a[t], by_task_b[t]
            tasks.append(
                TaskDelta(name, model_a, model_b, n_a, n_b, _clip(s_a / n_a), _clip(s_b / n_b))
            )
    tasks.sort(key=lambda t: (-abs(t.delta), t.task, t.model_a))
    criteria = []
    if pair_list:
        counts_a = _criterion_counts(a, sorted({x for x, _ in pair_list}))
        counts_b = _criterion_counts(b, sorted({y for _, y in pair_list}))
        names = {t: v[0] for (_, t), v in (sums_a | sums_b).items()}
        for key in counts_a.keys() & counts_b.keys():
            (ca, _, met_a, dec_a), (cb, pos, met_b, dec_b) = counts_a[key], counts_b[key]
            criteria.append(
                CriterionDelta(names.get(key[0], "?"), ca, cb, pos, met_a, dec_a, met_b, dec_b)
            )
        criteria.sort(key=lambda c: (-abs(c.delta), c.task, c.position))
    shared_responses = (
        Score.objects.filter(run=a)
        .filter(response_id__in=Score.objects.filter(run=b).values("response_id"))
        .count()
    )
    return Comparison(
        a=a,
        b=b,
        pairs=pairs,
        pairing=pairing,
        tasks=tasks,
        criteria=criteria,
        tasks_only_a=len(seen_a - seen_b),
        tasks_only_b=len(seen_b - seen_a),
        shared_responses=shared_responses,
        agreement=_agreement(a, b) if shared_responses else None,
    )
