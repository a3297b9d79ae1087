"""Reads for judges, runs and scores."""

from __future__ import annotations

import math
from dataclasses import dataclass

from django.db.models import Avg, Count, Q, Sum
from django.shortcuts import get_object_or_404

from annotation.models import Verdict
from grading.models import GradingRun, Judge, Score
from rubrics.models import Project
from rubrics.permissions import Perm, check

HISTOGRAM_BINS = 10


def project_judges(project: Project):
    return Judge.objects.filter(project=project)


def project_runs(project: Project):
    return (
        GradingRun.objects.filter(project=project)
        .select_related("grader__version__rubric", "judge")
        .order_by("-created_at")
    )


def run_for(user, pk: int, perm: Perm) -> GradingRun:
    run = get_object_or_404(
        GradingRun.objects.select_related(
            "project", "grader__version__rubric__task", "judge", "created_by"
        ),
        pk=pk,
    )
    run.project.role = check(user, run.project, perm)
    return run


def judge_for(user, project: Project, pk: int, perm: Perm) -> Judge:
    check(user, project, perm)
    return get_object_or_404(Judge, project=project, pk=pk)


@dataclass(frozen=True)
class Progress:
    total: int
    done: int
    errors: int
    responses_total: int
    responses_done: int
    prompt_tokens: int
    completion_tokens: int

    @property
    def percent(self) -> int:
        return 100 if not self.total else min(100, math.floor(100 * self.done / self.total))


def run_progress(run: GradingRun) -> Progress:
    verdicts = Verdict.objects.filter(run=run).aggregate(
        done=Count("pk"),
        errors=Count("pk", filter=Q(outcome=Verdict.Outcome.ERROR)),
        prompt_tokens=Sum("prompt_tokens"),
        completion_tokens=Sum("completion_tokens"),
    )
    scores = Score.objects.filter(run=run).aggregate(
        total=Count("pk"), done=Count("pk", filter=Q(status=Score.Status.DONE))
    )
    return Progress(
        total=run.total_items,
        done=verdicts["done"],
        errors=verdicts["errors"],
        responses_total=scores["total"],
        responses_done=scores["done"],
        prompt_tokens=verdicts["prompt_tokens"] or 0,
        completion_tokens=verdicts["completion_tokens"] or 0,
    )


@dataclass(frozen=True)
class ModelSummary:
    model: str
    responses: int
    scored: int
    errors: int
    mean_raw: float | None
    histogram: list[int]

    @property
    def mean(self) -> float | None:
        """The mean over responses, clipped to [0, 1] as HealthBench reports it."""
        return None if self.mean_raw is None else min(1.0, max(0.0, self.mean_raw))


def model_summaries(run: GradingRun) -> list[ModelSummary]:
    rows = (
        Score.objects.filter(run=run)
        .values("response__model")
        .annotate(
            n=Count("pk"),
            scored=Count("pk", filter=Q(raw__isnull=False)),
            errors=Count("pk", filter=Q(error_count__gt=0)),
            mean_raw=Avg("raw"),
        )
        .order_by("response__model")
    )
    histograms: dict[str, list[int]] = {}
    for model, raw in Score.objects.filter(run=run, raw__isnull=False).values_list(
        "response__model", "raw"
    ):
        bins = histograms.setdefault(model, [0] * HISTOGRAM_BINS)
        clipped = min(1.0, max(0.0, raw))
        bins[min(HISTOGRAM_BINS - 1, int(clipped * HISTOGRAM_BINS))] += 1
    return [
        ModelSummary(
            model=row["response__model"],
            responses=row["n"],
            scored=row["scored"],
            errors=row["errors"],
            mean_raw=row["mean_raw"],
            histogram=histograms.get(row["response__model"], [0] * HISTOGRAM_BINS),
        )
        for row in rows
    ]


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


def score_verdicts(score: Score):
    return (
        Verdict.objects.filter(run_id=score.run_id, response_id=score.response_id)
        .select_related("criterion")
        .order_by("criterion__position")
    )


def score_for(user, run_pk: int, score_pk: int, perm: Perm) -> Score:
    run = run_for(user, run_pk, perm)
    score = get_object_or_404(Score.objects.select_related("response__task"), run=run, pk=score_pk)
    score.run = run
    return score
