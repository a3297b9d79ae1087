"""Reads for judges, runs and scores."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.core.paginator import Paginator
from django.db import connection
from django.db.models import Case, Count, F, Max, Q, Sum, Value, When
from django.db.models.functions import Coalesce, Floor, Greatest, Least, Left, StrIndex
from django.shortcuts import get_object_or_404
from django.utils import timezone

from annotation.models import Verdict
from grading.engine import EMPTY_EXPLANATION
from grading.models import GradingRun, Judge, JudgeCall, ModelPrice, Score
from grading.results import kept, leaderboard
from rubrics.models import Project, Suite, SuiteEntry, SuiteVersion, Task
from rubrics.permissions import Perm, check
from rubrics.rows import Rows
from rubrics.suites import carries_any, suite_task_ids

HISTOGRAM_BINS = 10


def project_judges(project: Project):
    return Judge.objects.filter(project=project)


_judges = Rows(Judge, "j")
_JUDGE_SQL = f"SELECT {_judges.sql} FROM {Judge._meta.db_table} j WHERE j.project_id = %s"  # noqa: S608


def project_judge(project: Project, judge_id: int | None = None) -> Judge | None:
    """The project's judge `judge_id`, or when None its first (by name, as listed); None if
    there is no such judge. Written out (rubrics/rows.py): the reward endpoint reads it at
    every request."""
    if judge_id is None:
        sql, params = f"{_JUDGE_SQL} ORDER BY j.name, j.id LIMIT 1", [project.pk]
    else:
        sql, params = f"{_JUDGE_SQL} AND j.id = %s", [project.pk, judge_id]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    return None if row is None else _judges.build(row)


# What a run's pages show of its suite version; the manifest (one line a task) stays unread.
RUN_RELATED = ("suite_version__suite", "suite_version__sole_grader__version__rubric__task")
RUN_DEFERRED = ("suite_version__manifest",)


def project_runs(project: Project):
    return (
        GradingRun.objects.filter(project=project)
        .select_related(*RUN_RELATED, "judge")
        .defer(*RUN_DEFERRED)
        .order_by("-created_at")
    )


# The run list's sortable columns: ?sort=KEY (ascending) or ?sort=-KEY (descending).
RUN_SORTS = {
    "id": ("pk",),
    "suite": ("suite_version__suite__name", "suite_version__number"),
    "version": ("suite_version__number",),
    "status": ("status",),
    "judge": ("judge__name",),
    "started_by": ("created_by__username",),
    "started": ("started",),
}
RUN_SORT_DEFAULT = "-started"
RUNS_PER_PAGE = 50


def clean_run_sort(value) -> str:
    """A whitelisted sort (`key` or `-key`), or the default: newest first."""
    value = str(value or "")
    return value if value.lstrip("-") in RUN_SORTS else RUN_SORT_DEFAULT


@dataclass(frozen=True)
class RunRow:
    """A run as its project's run list shows it."""

    run: GradingRun
    scores: list[leaderboard.ModelScore]  # by model
    percent: int
    cost: float | None  # None: a judge model has no price


def runs_page(project: Project, *, sort: str, page) -> tuple:
    """One page (RUNS_PER_PAGE) of the project's runs in `sort` order, each with its score per
    model (grading.results.leaderboard.model_scores), progress and cost: a fixed number of queries,
    however many runs and scores (the scores, verdicts and calls of the page's runs are summed
    in one query each; completed runs' scores are stored on them and their calls kept:
    grading.results.kept)."""
    sort = clean_run_sort(sort)
    descending, key = sort.startswith("-"), sort.lstrip("-")
    order = [
        (F(name).desc(nulls_last=True) if descending else F(name).asc(nulls_last=True))
        for name in RUN_SORTS[key]
    ]
    order.append("-pk" if descending else "pk")
    runs = (
        GradingRun.objects.filter(project=project)
        .annotate(started=Coalesce("started_at", "created_at"))
        .select_related("suite_version__suite", "judge", "created_by")
        .defer(*RUN_DEFERRED)
        .order_by(*order)
    )
    paged = Paginator(runs, RUNS_PER_PAGE).get_page(page)
    listed = list(paged.object_list)
    scores = leaderboard.model_scores(listed)
    # A completed run is done; only the others' verdicts are counted (on responses: a step
    # criterion's verdicts at its steps are not items of the run).
    working = [r.pk for r in listed if r.status != GradingRun.Status.COMPLETED]
    done = dict(
        Verdict.objects.filter(run_id__in=working, step__isnull=True)
        .values("run_id")
        .annotate(n=Count("pk"))
        .values_list("run_id", "n")
    )
    calls = kept.finished_many(listed, "calls", _call_totals_of)
    models = {row["model"] for rows in calls.values() for row in rows}
    prices = {p.model: p for p in ModelPrice.objects.filter(model__in=models)} if models else {}
    rows = []
    for run in listed:
        if run.status == GradingRun.Status.COMPLETED or not run.total_items:
            percent = 100
        else:
            percent = min(100, math.floor(100 * done.get(run.pk, 0) / run.total_items))
        rows.append(
            RunRow(
                run=run,
                scores=scores.get(run.pk, []),
                percent=percent,
                cost=_priced(calls.get(run.pk, []), prices),
            )
        )
    return paged, rows


def run_for(user, pk: int, perm: Perm) -> GradingRun:
    run = get_object_or_404(
        GradingRun.objects.select_related(*RUN_RELATED, "project", "judge", "created_by").defer(
            *RUN_DEFERRED
        ),
        pk=pk,
    )
    run.project.role = check(user, run.project, perm)
    return run


def suite_for(user, pk: int, perm: Perm) -> Suite:
    suite = get_object_or_404(Suite.objects.select_related("project"), pk=pk)
    suite.project.role = check(user, suite.project, perm)
    return suite


def suite_runs(suite: Suite):
    return (
        GradingRun.objects.filter(suite_version__suite=suite)
        .select_related(*RUN_RELATED, "judge")
        .defer(*RUN_DEFERRED)
        .order_by("-created_at")
    )


def judge_for(user, pk: int, perm: Perm) -> Judge:
    judge = get_object_or_404(Judge.objects.select_related("project"), pk=pk)
    judge.project.role = check(user, judge.project, perm)
    return judge


def model_prices():
    return ModelPrice.objects.all()


@dataclass(frozen=True)
class Progress:
    total: int
    done: int
    errors: int
    responses_total: int
    responses_done: int
    prompt_tokens: int
    completion_tokens: int
    # The newest verdict or score of the run (None: nothing yet).
    last_activity: datetime | None = None
    # The run's judge calls per judge model (_call_totals): its tokens above, and its costs.
    calls: tuple = field(default=(), repr=False, compare=False)

    @property
    def percent(self) -> int:
        return 100 if not self.total else min(100, math.floor(100 * self.done / self.total))


def broker_unreachable() -> bool:
    """Whether the broker (when Redis) fails to answer a ping right now."""
    from grading import broker

    return broker.reachable() is False


def run_progress(run: GradingRun) -> Progress:
    return kept.finished(run, "progress", lambda: _run_progress(run))


def _run_progress(run: GradingRun) -> Progress:
    # Items are verdicts on responses (run.total_items): step verdicts are not counted.
    verdicts = Verdict.objects.filter(run=run, step__isnull=True).aggregate(
        done=Count("pk"),
        errors=Count("pk", filter=Q(outcome=Verdict.Outcome.ERROR)),
        last=Max("created_at"),
    )
    scores = Score.objects.filter(run=run).aggregate(
        total=Count("pk"),
        done=Count("pk", filter=Q(status=Score.Status.DONE)),
        last=Max("finished_at"),
    )
    calls = _call_totals(run)
    seen = [t for t in (verdicts["last"], scores["last"]) if t is not None]
    return Progress(
        total=run.total_items,
        done=verdicts["done"],
        errors=verdicts["errors"],
        responses_total=scores["total"],
        responses_done=scores["done"],
        # What the judge counted, as the cost panel shows it: a verdict carries the tokens of
        # its own answer only, not those of failed attempts, errors or re-graded items.
        prompt_tokens=sum(r["prompt"] or 0 for r in calls),
        completion_tokens=sum(r["completion"] or 0 for r in calls),
        last_activity=max(seen) if seen else None,
        calls=tuple(calls),
    )


@dataclass(frozen=True)
class Waiting:
    """What a running run's last responses wait for, said on its page instead of a silent 99%."""

    pending: int  # responses not scored yet
    retrying: bool  # the judge's recent calls for the run failed or were retried
    stalled: bool  # nothing graded for ASSAY_RUN_STALL_S: the stall sweep queues them again
    last_activity: datetime
    requeue_by: datetime | None  # when the stall sweep will have queued them (None: it is off)


def run_waiting(run: GradingRun, progress: Progress) -> Waiting | None:
    """For a running run with responses left: stalled ones, or ones whose judge calls are
    being retried, or (near the end) the last ones still being graded. None otherwise."""
    pending = progress.responses_total - progress.responses_done
    if run.status != GradingRun.Status.RUNNING or pending <= 0:
        return None
    now = timezone.now()
    last = progress.last_activity or run.started_at or run.created_at
    sweep_on = settings.ASSAY_RUN_STALL_S > 0
    stall = timedelta(seconds=settings.ASSAY_RUN_STALL_S if sweep_on else QUIET_WITHOUT_SWEEP_S)
    stalled = now - last >= stall
    retrying = not stalled and (
        JudgeCall.objects.filter(run=run, created_at__gte=now - max(stall, RETRY_WINDOW))
        .filter(Q(attempts__gt=1) | ~Q(error=""))
        .exists()
    )
    if not (stalled or retrying or progress.percent >= 99):
        return None
    requeue_by = None
    if sweep_on:
        requeue_by = last + stall + timedelta(seconds=max(0, settings.ASSAY_RECOVERY_CHECK_S))
    return Waiting(pending, retrying, stalled, last, requeue_by)


RETRY_WINDOW = timedelta(minutes=1)
QUIET_WITHOUT_SWEEP_S = 600  # stalled, when the stall sweep is off (ASSAY_RUN_STALL_S=0)


def workers_missing(run: GradingRun) -> bool:
    """Whether a run that is not finished waits for workers nobody is running."""
    from grading import workers

    return not run.is_finished and not workers.any_alive()


@dataclass(frozen=True)
class ModelSummary:
    """A model's score in a run (grading.results.leaderboard.model_scores: the clipped mean, n
    and the interval over tasks, as on every page) with the run page's extras: its responses, those
    with an error verdict, the mean before clipping and the histogram of clipped scores."""

    score: leaderboard.ModelScore
    responses: int
    errors: int
    mean_raw: float | None
    histogram: list[int]

    @property
    def model(self) -> str:
        return self.score.model

    @property
    def scored(self) -> int:
        return self.score.n

    @property
    def mean(self) -> float | None:
        return self.score.mean

    @property
    def ci(self) -> tuple[float, float] | None:
        return self.score.ci

    @property
    def ci_missing(self) -> str:
        return self.score.ci_missing


def model_summaries(run: GradingRun) -> list[ModelSummary]:
    """Per model of the run, by name: its score and the run page's extras. A completed run's
    are kept (grading.results.kept)."""
    return kept.finished(run, "summaries", lambda: _model_summaries(run))


def _model_summaries(run: GradingRun) -> list[ModelSummary]:
    # Counted per (model, histogram bin) in the database: a few rows, however many scores.
    clipped = Greatest(Value(0.0), Least(Value(1.0), F("raw")))
    rows = (
        Score.objects.filter(run=run)
        .annotate(
            bin=Case(
                When(raw__isnull=True, then=None),
                default=Least(Value(HISTOGRAM_BINS - 1.0), Floor(clipped * HISTOGRAM_BINS)),
            )
        )
        .values_list("response__model", "bin")
        .annotate(n=Count("pk"), errors=Count("pk", filter=Q(error_count__gt=0)), total=Sum("raw"))
        .order_by()
    )
    extras: dict[str, dict] = {}
    for model, bin_, n, errors, total in rows:
        extra = extras.setdefault(
            model, {"responses": 0, "errors": 0, "total": 0.0, "histogram": [0] * HISTOGRAM_BINS}
        )
        extra["responses"] += n
        extra["errors"] += errors
        if bin_ is not None:
            extra["histogram"][int(bin_)] += n
            extra["total"] += total
    scores = {s.model: s for s in leaderboard.model_scores([run]).get(run.pk, [])}
    summaries = []
    for model in sorted(extras):
        score = scores.get(model) or leaderboard.ModelScore(None, 0, model=model)
        extra = extras[model]
        summaries.append(
            ModelSummary(
                score=score,
                responses=extra["responses"],
                errors=extra["errors"],
                mean_raw=extra["total"] / score.n if score.n else None,
                histogram=extra["histogram"],
            )
        )
    return summaries


def chart_data(summaries: list[ModelSummary]) -> dict:
    return {
        "models": [s.model for s in summaries],
        "means": [s.mean for s in summaries],
        "bins": [f"{i / HISTOGRAM_BINS:.1f}" for i in range(HISTOGRAM_BINS)],
        "histograms": [s.histogram for s in summaries],
    }


def run_scores(run: GradingRun):
    return (
        Score.objects.filter(run=run)
        .select_related("response__task")
        .order_by("response__task__external_id", "response__model", "response__sample_index")
    )


SCORES_PER_PAGE = 50


def run_scores_page(run: GradingRun, page, *, count: int):
    """One page of the run's scores (a run at RL scale has tens of thousands). `count` is the
    number of scores, which the run page has already counted; `page` may be anything a URL
    holds: out of range gives the last page, not a number the first."""
    if run.status != GradingRun.Status.COMPLETED or run.finished_at is None:
        paginator = Paginator(run_scores(run), SCORES_PER_PAGE)
        paginator.count = count
        return paginator.get_page(page)
    # A completed run's order is kept (grading.results.kept): sorting 10,000 scores by task and
    # model for each page is most of the page's database time; a page is then 50 rows by id.
    order = kept.finished(
        run, "score-order", lambda: list(run_scores(run).values_list("pk", flat=True))
    )
    shown = Paginator(order, SCORES_PER_PAGE).get_page(page)
    rows = Score.objects.select_related("response__task").in_bulk(list(shown.object_list))
    shown.object_list = [rows[pk] for pk in shown.object_list if pk in rows]
    return shown


def score_verdicts(score: Score):
    return (
        Verdict.objects.filter(run_id=score.run_id, response_id=score.response_id)
        .select_related("criterion")
        .order_by("criterion__position", F("step").asc(nulls_first=True), "pk")
    )


def score_page_verdicts(score: Score) -> tuple[list[Verdict], list[Verdict]]:
    """A scored response's verdicts for the score page, in one query: those on the whole
    response (rubric order) and a step criterion's verdicts at each step (step order).
    Each per-response verdict of a step criterion carries `steps_met` and `steps_total`
    over its own steps (same rater and sample; None for other criteria); each step verdict
    a `step_label` naming its criterion (and rater and sample when the run has several)."""
    rows = list(
        Verdict.objects.filter(run_id=score.run_id, response_id=score.response_id)
        .select_related("criterion", "rater")
        .order_by("criterion__position", "rater_id", "sample_index", "step")
    )
    whole = [v for v in rows if v.step is None]
    steps = sorted((v for v in rows if v.step is not None), key=lambda v: v.step)
    counts: dict[tuple, list[int]] = {}
    for v in steps:
        met = counts.setdefault((v.criterion_id, v.rater_id, v.sample_index), [0, 0])
        met[0] += v.outcome == Verdict.Outcome.MET
        met[1] += 1
    raters = {v.rater_id for v in rows}
    for v in whole:
        v.steps_met, v.steps_total = counts.get((v.criterion_id, v.rater_id, v.sample_index)) or (
            None,
            None,
        )
    for v in steps:
        label = f"criterion {v.criterion.position + 1}: {v.criterion.text}"
        label = label if len(label) <= 90 else label[:89] + "…"
        if len(raters) > 1:
            label += f" · {v.rater.name}"
        if score.run.samples > 1:
            label += f" · sample {v.sample_index}"
        v.step_label = label
    return whole, steps


def verdict_source(verdict: Verdict) -> str:
    """Where a run's verdict came from, for the score page: "call" (a judge call, linked),
    "cache" (an earlier identical call's answer: this run made none), "code" (a checked
    criterion), "empty" (an empty response: no call), or "unsent" (an error before any
    request left)."""
    if verdict.call_id:
        return "call"
    if verdict.criterion.kind == "checked":
        return "code"
    if verdict.outcome == Verdict.Outcome.ERROR:
        return "unsent"
    if verdict.explanation == EMPTY_EXPLANATION:
        return "empty"
    return "cache"


@dataclass(frozen=True)
class CallCost:
    call: JudgeCall
    cost: float | None  # None: the judge's model has no price
    request_json: str  # the request, indented when it is whole JSON; else as kept


def call_for(user, run_pk: int, call_pk: int, perm: Perm) -> CallCost:
    """A judge call of a run, with its cost where the judge's model is priced, and the
    verdicts it decided (in rubric order)."""
    run = run_for(user, run_pk, perm)
    call = get_object_or_404(
        JudgeCall.objects.select_related("judge", "response__task"), run=run, pk=call_pk
    )
    call.run = run
    call.decided = list(
        call.verdicts.select_related("criterion").order_by("criterion__position", "pk")
    )
    price = ModelPrice.objects.filter(model=call.judge.model).first()
    cost = (
        None
        if price is None
        else price.cost(
            prompt_tokens=call.prompt_tokens,
            cached_tokens=call.cached_tokens,
            completion_tokens=call.completion_tokens,
        )
    )
    try:
        request_json = json.dumps(json.loads(call.request), indent=2, ensure_ascii=False)
    except ValueError:  # cut, or empty
        request_json = call.request
    return CallCost(call=call, cost=cost, request_json=request_json)


def score_of(run: GradingRun, response_id: int | None) -> Score | None:
    return Score.objects.filter(run=run, response_id=response_id).first() if response_id else None


def score_for(user, run_pk: int, score_pk: int, perm: Perm) -> Score:
    run = run_for(user, run_pk, perm)
    score = get_object_or_404(Score.objects.select_related("response__task"), run=run, pk=score_pk)
    score.run = run
    return score


def run_flagged_responses(run: GradingRun) -> int:
    """Responses of the run whose judge verdicts are marked for review: they address the
    grader (grading.injection)."""
    return kept.finished(
        run,
        "flagged",
        lambda: (
            Verdict.objects.filter(run=run, needs_review=True)
            .values("response_id")
            .distinct()
            .count()
        ),
    )


def run_error_reasons(run: GradingRun) -> list[dict]:
    """Error verdicts counted by reason (the text before the first colon of `error`)."""
    return kept.finished(run, "errors", lambda: _run_error_reasons(run))


def _run_error_reasons(run: GradingRun) -> list[dict]:
    return list(
        Verdict.objects.filter(run=run, outcome=Verdict.Outcome.ERROR, step__isnull=True)
        .annotate(reason=Left("error", StrIndex("error", Value(":")) - 1))
        .values("reason")
        .annotate(n=Count("pk"))
        .order_by("-n", "reason")
    )


@dataclass(frozen=True)
class Costs:
    calls: int
    requests: int
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int
    cost: float | None  # None when some judge model has no price set


def _call_totals(run: GradingRun) -> list[dict]:
    """The run's judge calls summed per judge model: the one source of a run's tokens, for
    its progress line, its cost panel and the runs list alike."""
    return _call_totals_of([run.pk])[run.pk]


def _call_totals_of(run_ids: list[int]) -> dict[int, list[dict]]:
    """`_call_totals` of each run, in one query."""
    totals: dict[int, list[dict]] = {pk: [] for pk in run_ids}
    for row in (
        JudgeCall.objects.filter(run_id__in=run_ids)
        .values("run_id", model=F("judge__model"))
        .annotate(
            calls=Count("pk"),
            requests=Sum("attempts"),
            prompt=Sum("prompt_tokens"),
            cached=Sum("cached_tokens"),
            completion=Sum("completion_tokens"),
        )
        .order_by("run_id", "model")
    ):
        totals[row.pop("run_id")].append(row)
    return totals


def _priced(rows: list[dict], prices: dict) -> float | None:
    """The cost of call totals per judge model (`_call_totals` rows); None when some judge
    model has no price."""
    cost: float | None = 0.0
    for r in rows:
        price = prices.get(r["model"])
        if price is None:
            return None
        cost += price.cost(
            prompt_tokens=r["prompt"] or 0,
            cached_tokens=r["cached"] or 0,
            completion_tokens=r["completion"] or 0,
        )
    return cost


def run_costs(run: GradingRun, progress: Progress | None = None) -> Costs:
    """Calls, tokens and cost; from `progress`'s calls when given, so a page that shows both
    shows the same tokens even while calls land."""
    rows = list(progress.calls) if progress is not None else _call_totals(run)
    prices = {p.model: p for p in ModelPrice.objects.filter(model__in=[r["model"] for r in rows])}
    cost = _priced(rows, prices)
    return Costs(
        calls=sum(r["calls"] for r in rows),
        requests=sum(r["requests"] or 0 for r in rows),
        prompt_tokens=sum(r["prompt"] or 0 for r in rows),
        cached_tokens=sum(r["cached"] or 0 for r in rows),
        completion_tokens=sum(r["completion"] or 0 for r in rows),
        cost=cost if rows else 0.0,
    )


@dataclass(frozen=True)
class CriterionRate:
    criterion_id: int
    position: int
    text: str
    points: float
    met: int
    decided: int
    errors: int

    @property
    def met_rate(self) -> float | None:
        return None if not self.decided else self.met / self.decided

    @property
    def label(self) -> str:
        """Numbered and short enough for a chart axis, cut between words, never inside one."""
        text = " ".join(self.text.split())
        if len(text) > 40:
            cut = text[:41].rsplit(" ", 1)[0] if " " in text[:41] else text[:40]
            text = cut.rstrip(" ,;:.") + "…"
        return f"{self.position + 1}. {text}"


def criterion_rates(run: GradingRun) -> list[CriterionRate]:
    """Met rate per criterion over the lead judge's verdicts, for a run whose tasks share one
    grader (per task, a suite's leaderboard says more): empty otherwise."""
    grader = run.suite_version.sole_grader
    if grader is None:
        return []
    counts = {
        row["criterion_id"]: row
        for row in Verdict.objects.filter(run=run, rater_id=run.judge.rater_id, step__isnull=True)
        .values("criterion_id")
        .annotate(
            met=Count("pk", filter=Q(outcome=Verdict.Outcome.MET)),
            decided=Count("pk", filter=~Q(outcome=Verdict.Outcome.ERROR)),
            errors=Count("pk", filter=Q(outcome=Verdict.Outcome.ERROR)),
        )
    }
    rates = []
    for c in grader.spec["criteria"]:
        row = counts.get(c["id"], {})
        rates.append(
            CriterionRate(
                criterion_id=c["id"],
                position=c.get("position", 0),
                text=c["text"],
                points=c["points"],
                met=row.get("met", 0),
                decided=row.get("decided", 0),
                errors=row.get("errors", 0),
            )
        )
    return rates


def comparable_runs(run: GradingRun):
    """Runs this one compares with: those over the same suite, any version of it
    (grading.results.comparison refuses the others)."""
    return (
        GradingRun.objects.filter(suite_version__suite_id=run.suite_version.suite_id)
        .exclude(pk=run.pk)
        .select_related(*RUN_RELATED, "judge")
        .defer(*RUN_DEFERRED)
        .order_by("-created_at")[:20]
    )


def _clip(value: float | None) -> float | None:
    return None if value is None else min(1.0, max(0.0, value))


def model_results(run: GradingRun) -> list[dict]:
    """Per model, by name: the clipped mean over scored responses, its 95% interval over tasks
    (none below two tasks), n, its scored tasks, responses and errors: the run page's
    summaries (`model_summaries`), as `run_report` and `manage.py grade` print them."""
    return [
        {
            "model": s.model,
            "mean": s.mean,
            "ci95": list(s.ci) if s.ci else None,
            "ci_resamples": "tasks" if s.ci else None,
            "n": s.scored,
            "tasks": s.score.tasks,
            "responses": s.responses,
            "errors": s.errors,
        }
        for s in model_summaries(run)
    ]


def run_report(run: GradingRun) -> dict:
    """What a run found, as one JSON document (`manage.py grade --output`): its suite version,
    judge and mode; per model the clipped mean over scored responses, its 95% interval from a
    bootstrap over tasks, and n (`model_results`); per response its task, model, sample
    index, raw and clipped score, the gates it missed and its judges' verdicts criterion by
    criterion. A few queries, however large the run; verdicts are streamed."""
    version = run.suite_version
    outcomes: dict[int, list[dict]] = {}
    verdicts = (
        # A step criterion's verdict on the response (its step rule's result); its verdicts at
        # each step are in the verdicts export and the step-supervision dataset.
        Verdict.objects.filter(run=run, step__isnull=True)
        .order_by("response_id", "criterion__position", "rater_id", "sample_index")
        .values_list(
            "response_id",
            "criterion_id",
            "criterion__text",
            "outcome",
            "value",
            "rater__judge__name",
            "sample_index",
        )
    )
    for response_id, criterion_id, text, outcome, value, judge, sample in verdicts.iterator(
        chunk_size=5000
    ):
        outcomes.setdefault(response_id, []).append(
            {
                "criterion_id": criterion_id,
                "text": text,
                "outcome": outcome,
                "value": value,
                "judge": judge,
                "sample": sample,
            }
        )
    responses: list[dict] = []
    scores = (
        Score.objects.filter(run=run)
        .order_by("response__task__external_id", "response__model", "response__sample_index")
        .values_list(
            "response_id",
            "response__task__external_id",
            "response__model",
            "response__sample_index",
            "status",
            "raw",
            "gated_by",
            "error_count",
        )
    )
    for response_id, task, model, sample, status, raw, gated_by, errors in scores.iterator(
        chunk_size=5000
    ):
        responses.append(
            {
                "task": task,
                "model": model,
                "sample_index": sample,
                "status": status,
                "raw": raw,
                "clipped": _clip(raw),
                "gated_by": gated_by or [],
                "errors": errors,
                "criteria": outcomes.pop(response_id, []),
            }
        )
    return {
        "run": run.pk,
        "status": run.status,
        "suite": {
            "id": version.suite_id,
            "name": version.suite.name,
            "version": version.number,
            "content_hash": version.content_hash,
            "tasks": version.task_count,
        },
        "judge": {"name": run.judge.name, "model": run.judge.model},
        "panel": sorted(run.panel.values_list("name", flat=True)),
        "mode": run.mode,
        "samples": run.samples,
        "selection": run.selection,
        "aggregation": (
            "HealthBench: per response, met points over positive points (raw, may be below 0); "
            "per model, the mean raw score clipped to [0, 1]; ci95 is a 95% percentile "
            "bootstrap that resamples tasks (each resample's mean over the responses of the "
            "tasks drawn), clipped likewise; none over a single task (the same figures as the "
            "run's page and leaderboard)."
        ),
        "models": model_results(run),
        "responses": responses,
    }


# --- Suites: their lists, members and runs over time ----------------------------------------

# How many runs a suite's page and chart show, newest first.
SUITE_RUNS_SHOWN = 100


def suite_facts(suites: list[Suite]) -> list[Suite]:
    """Sets on each suite `task_count` (its tasks now: picked, imported or tagged), `newest`
    (its newest SuiteVersion, manifest unread, or None) and `run_count`. A fixed number of
    queries however many suites or tasks."""
    if not suites:
        return suites
    ids = [s.pk for s in suites]
    picked: dict[int, set[int]] = {pk: set() for pk in ids}
    counts = dict(
        Suite.tasks.through.objects.filter(suite_id__in=ids)
        .values("suite_id")
        .annotate(n=Count("pk"))
        .values_list("suite_id", "n")
    )
    tagged = [s for s in suites if s.tags]
    if tagged:
        for suite_id, task_id in Suite.tasks.through.objects.filter(
            suite_id__in=[s.pk for s in tagged]
        ).values_list("suite_id", "task_id"):
            picked[suite_id].add(task_id)
        project_ids = {s.project_id for s in tagged}
        task_tags = list(
            Task.objects.filter(project_id__in=project_ids).values_list("pk", "project_id", "tags")
        )
        for suite in tagged:
            wanted = set(suite.tags)
            picked[suite.pk].update(
                pk
                for pk, project_id, tags in task_tags
                if project_id == suite.project_id and carries_any(tags, wanted)
            )
    newest_numbers = dict(
        SuiteVersion.objects.filter(suite_id__in=ids)
        .values("suite_id")
        .annotate(n=Max("number"))
        .values_list("suite_id", "n")
    )
    newest = {
        v.suite_id: v
        for v in SuiteVersion.objects.filter(suite_id__in=list(newest_numbers))
        .select_related("created_by", "sole_grader")
        .defer("manifest", "sole_grader__spec")
        if newest_numbers.get(v.suite_id) == v.number
    }
    runs = dict(
        GradingRun.objects.filter(suite_version__suite_id__in=ids)
        .values("suite_version__suite_id")
        .annotate(n=Count("pk"))
        .values_list("suite_version__suite_id", "n")
    )
    for suite in suites:
        suite.task_count = len(picked[suite.pk]) if suite.tags else counts.get(suite.pk, 0)
        suite.newest = newest.get(suite.pk)
        suite.run_count = runs.get(suite.pk, 0)
    return suites


def project_suite_rows(project: Project) -> tuple[list[Suite], list[Suite]]:
    """(hand-made or imported suites, rubrics' suites of one), each by name, with their facts."""
    suites = suite_facts(
        list(Suite.objects.filter(project=project).select_related("rubric").order_by("name"))
    )
    return [s for s in suites if s.rubric_id is None], [s for s in suites if s.rubric_id]


def suite_versions(suite: Suite) -> list[SuiteVersion]:
    """The suite's versions, newest first, manifests unread, each with `run_count`."""
    versions = list(
        SuiteVersion.objects.filter(suite=suite)
        .select_related("created_by", "sole_grader")
        .defer("manifest", "sole_grader__spec")
        .order_by("-number")
    )
    runs = dict(
        GradingRun.objects.filter(suite_version__suite=suite)
        .values("suite_version_id")
        .annotate(n=Count("pk"))
        .values_list("suite_version_id", "n")
    )
    for version in versions:
        version.run_count = runs.get(version.pk, 0)
    return versions


def suite_task_page(suite: Suite, page: int, newest: SuiteVersion | None):
    """One page (of SUITE_TASKS_PAGE) of the suite's tasks now, by external id, each with
    `pinned`: the hash of the grader its newest version pins for it (None: not in it). Its
    `paginator.count` is the suite's task count. A suite without tags is read by a join, so
    neither the page nor the count carries thousands of ids."""
    if suite.tags:
        tasks_now = Task.objects.filter(pk__in=suite_task_ids(suite))
    else:
        tasks_now = Task.objects.filter(suites=suite)
    page_obj = Paginator(
        tasks_now.only("pk", "external_id", "title", "project_id").order_by("external_id", "pk"),
        SUITE_TASKS_PAGE,
    ).get_page(page)
    tasks = list(page_obj.object_list)
    pinned = {}
    if newest is not None and tasks:
        pinned = dict(
            SuiteEntry.objects.filter(
                version=newest, task_id__in=[t.pk for t in tasks]
            ).values_list("task_id", "grader__hash")
        )
    for task in tasks:
        task.pinned = pinned.get(task.pk)
    page_obj.tasks = tasks
    return page_obj


SUITE_TASKS_PAGE = 50


@dataclass(frozen=True)
class SuiteRunRow:
    run: GradingRun
    models: list[leaderboard.ModelScore]  # by model


def suite_run_rows(suite: Suite) -> list[SuiteRunRow]:
    """The suite's newest runs (SUITE_RUNS_SHOWN), newest first, each with its score per model
    (grading.results.leaderboard.model_scores: the clipped mean, its interval over tasks and n). Two
    queries, however many runs, models or responses (one when every run is completed: their
    scores are stored on them)."""
    runs = list(
        GradingRun.objects.filter(suite_version__suite=suite)
        .select_related(*RUN_RELATED, "judge", "created_by")
        .defer(*RUN_DEFERRED)
        .order_by("-created_at", "-pk")[:SUITE_RUNS_SHOWN]
    )
    scores = leaderboard.model_scores(runs)
    return [SuiteRunRow(run=r, models=scores.get(r.pk, [])) for r in runs]


def suite_chart_data(rows: list[SuiteRunRow]) -> dict:
    """The runs over time chart: x = each run (oldest first) by its start, y = per model
    clipped mean; a model a run did not grade is a gap."""
    ordered = list(reversed(rows))
    models = sorted({s.model for row in ordered for s in row.models})
    series = {model: [] for model in models}
    for row in ordered:
        got = {s.model: s.mean for s in row.models}
        for model in models:
            value = got.get(model)
            series[model].append(None if value is None else round(value, 4))
    return {
        "labels": [
            f"#{row.run.pk} v{row.run.suite_version.number} "
            f"{timezone.localtime(row.run.created_at):%Y-%m-%d %H:%M}"
            for row in ordered
        ],
        "models": models,
        "series": [series[m] for m in models],
    }


def suite_task_choices(project: Project, limit: int) -> list[tuple[int, str, str]] | None:
    """[(id, external id, title)] of the project's tasks by external id, for checkboxes; None
    when it has more than `limit` (the forms then take external ids only)."""
    rows = list(
        Task.objects.filter(project=project)
        .order_by("external_id", "pk")
        .values_list("pk", "external_id", "title")[: limit + 1]
    )
    return None if len(rows) > limit else rows


def suite_picked_ids(suite: Suite) -> list[int]:
    """The suite's tasks picked by hand or by an import (not those its tags add)."""
    return list(
        Suite.tasks.through.objects.filter(suite_id=suite.pk)
        .order_by("task_id")
        .values_list("task_id", flat=True)
    )


def suite_picked_external_ids(suite: Suite) -> list[str]:
    return list(
        Task.objects.filter(suites=suite)
        .order_by("external_id")
        .values_list("external_id", flat=True)
    )
