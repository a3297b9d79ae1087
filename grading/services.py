"""Writes for judges and grading runs. The worker's unit of work is one response of a run."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from annotation.models import Rater, Response, Verdict
from grading import engine
from grading.judge import JudgeSettings
from grading.models import GradingRun, Judge, Score
from rubrics import scoring
from rubrics.models import Grader, Project

logger = logging.getLogger(__name__)


# --- Judges -----------------------------------------------------------------------------


def _clean_judge_fields(
    *, name: str, base_url: str, model: str, api_key_env: str, max_concurrency: int
) -> dict:
    name, base_url, model = name.strip(), base_url.strip(), model.strip()
    if not name:
        raise ValidationError({"name": "A judge needs a name."})
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationError({"base_url": "Give an http(s) URL, e.g. https://api.openai.com/v1"})
    if not model:
        raise ValidationError({"model": "Name the judge model, e.g. gpt-4.1."})
    if api_key_env and not api_key_env.replace("_", "").isalnum():
        raise ValidationError(
            {
                "api_key_env": "Give the *name* of an environment variable (e.g. OPENAI_API_KEY), "
                "not the key itself."
            }
        )
    if api_key_env.startswith(("sk-", "sk_")):
        raise ValidationError(
            {
                "api_key_env": "That looks like a key. Store the key in an environment variable "
                "on the workers and give its name here."
            }
        )
    if not 1 <= int(max_concurrency) <= 1024:
        raise ValidationError({"max_concurrency": "Between 1 and 1024."})
    return {
        "name": name,
        "base_url": base_url,
        "model": model,
        "api_key_env": api_key_env,
        "max_concurrency": int(max_concurrency),
    }


@transaction.atomic
def judge_create(
    *,
    project: Project,
    name: str,
    base_url: str,
    model: str,
    api_key_env: str = "",
    max_concurrency: int = 8,
    temperature: float = 0.0,
    use_json_schema: bool = True,
) -> Judge:
    fields = _clean_judge_fields(
        name=name,
        base_url=base_url,
        model=model,
        api_key_env=api_key_env,
        max_concurrency=max_concurrency,
    )
    if Judge.objects.filter(project=project, name=fields["name"]).exists():
        raise ValidationError({"name": f"A judge named '{fields['name']}' exists."})
    rater = Rater.objects.create(
        project=project, kind=Rater.Kind.JUDGE, name=f"judge: {fields['name']}"
    )
    return Judge.objects.create(
        project=project,
        rater=rater,
        temperature=temperature,
        use_json_schema=use_json_schema,
        **fields,
    )


# --- Runs -------------------------------------------------------------------------------


def responses_for_grader(grader: Grader):
    """What a grader grades by default: its task's responses, or the project's for templates."""
    rubric = grader.version.rubric
    responses = Response.objects.filter(task__project_id=rubric.project_id)
    if rubric.task_id:
        responses = responses.filter(task_id=rubric.task_id)
    return responses


@transaction.atomic
def run_create(
    *, project: Project, grader: Grader, judge: Judge, user, responses=None
) -> GradingRun:
    if grader.version.rubric.project_id != project.pk or judge.project_id != project.pk:
        raise ValidationError("The grader and the judge must belong to this project.")
    if responses is None:
        responses = responses_for_grader(grader)
    response_ids = list(responses.filter(task__project=project).values_list("pk", flat=True))
    if not response_ids:
        raise ValidationError("There are no responses to grade for this rubric; import some.")
    criteria = grader.spec["criteria"]
    run = GradingRun.objects.create(
        project=project,
        grader=grader,
        judge=judge,
        created_by=user,
        total_items=len(response_ids) * len(criteria),
    )
    Score.objects.bulk_create(
        (Score(run=run, response_id=pk) for pk in response_ids), batch_size=1000
    )
    from grading import tasks  # tasks import services; the import here breaks the cycle

    transaction.on_commit(lambda: tasks.run_start.delay(run.pk))
    return run


def run_start(*, run_id: int) -> int:
    """Mark a run running and queue every response not yet scored. Safe to call again: it is
    how an interrupted run resumes. Returns how many responses were queued."""
    from grading import tasks

    updated = GradingRun.objects.filter(pk=run_id, status=GradingRun.Status.QUEUED).update(
        status=GradingRun.Status.RUNNING, started_at=timezone.now()
    )
    run = GradingRun.objects.get(pk=run_id)
    if run.status != GradingRun.Status.RUNNING:
        return 0
    pending = list(
        Score.objects.filter(run_id=run_id, status=Score.Status.PENDING)
        .order_by("pk")
        .values_list("response_id", flat=True)
    )
    for response_id in pending:
        tasks.grade_response.delay(run_id, response_id)
    if not pending and updated:
        run_finish_if_done(run_id=run_id)
    return len(pending)


def run_cancel(*, run: GradingRun) -> bool:
    return bool(
        GradingRun.objects.filter(
            pk=run.pk, status__in=[GradingRun.Status.QUEUED, GradingRun.Status.RUNNING]
        ).update(status=GradingRun.Status.CANCELLED, finished_at=timezone.now())
    )


def run_finish_if_done(*, run_id: int) -> bool:
    """Completion is derived from the database: a run is done when no score is pending."""
    if Score.objects.filter(run_id=run_id, status=Score.Status.PENDING).exists():
        return False
    return bool(
        GradingRun.objects.filter(pk=run_id, status=GradingRun.Status.RUNNING).update(
            status=GradingRun.Status.COMPLETED, finished_at=timezone.now()
        )
    )


def _judge_settings(judge: Judge) -> JudgeSettings:
    return JudgeSettings(
        base_url=judge.base_url,
        model=judge.model,
        api_key_env=judge.api_key_env,
        temperature=judge.temperature,
        use_json_schema=judge.use_json_schema,
        timeout_s=settings.JUDGE_TIMEOUT_S,
        max_attempts=settings.JUDGE_MAX_ATTEMPTS,
    )


def grade_response(*, run_id: int, response_id: int) -> str:
    """Grade every criterion of one response in one run that has no verdict yet.

    Idempotent: verdicts are unique per (run, response, criterion, rater, sample) in the
    database, so a redelivered task skips what is done and never writes a second verdict.
    """
    run = GradingRun.objects.select_related("grader", "judge").get(pk=run_id)
    if run.status != GradingRun.Status.RUNNING:
        return f"run is {run.status}"
    score = Score.objects.filter(run_id=run_id, response_id=response_id).first()
    if score is None or score.status == Score.Status.DONE:
        return "already scored"
    response = Response.objects.select_related("task").get(pk=response_id)
    spec, judge = run.grader.spec, run.judge
    criteria = spec["criteria"]
    done = set(
        Verdict.objects.filter(
            run_id=run_id, response_id=response_id, rater_id=judge.rater_id
        ).values_list("criterion_id", flat=True)
    )
    todo = [c for c in criteria if c["id"] not in done]
    if todo:
        graded = engine.grade_now(
            spec,
            _judge_settings(judge),
            messages=response.task.messages,
            response=response.text,
            criteria=todo,
            concurrency=judge.max_concurrency,
        )
        verdicts = [
            Verdict(
                run_id=run_id,
                response_id=response_id,
                criterion_id=g.criterion_id,
                rater_id=judge.rater_id,
                grader_id=run.grader_id,
                sample_index=0,
                outcome=g.outcome,
                value=g.value,
                explanation=g.explanation,
                raw_output=g.raw,
                error=g.error,
                judge_model=g.judge_model,
                simulated=g.simulated,
                prompt_tokens=g.prompt_tokens,
                completion_tokens=g.completion_tokens,
            )
            for g in graded
        ]
        Verdict.objects.bulk_create(verdicts, ignore_conflicts=True)
        if any(v.simulated for v in verdicts) and not run.simulated:
            GradingRun.objects.filter(pk=run_id).update(simulated=True)
    outcomes = {
        criterion_id: scoring.Outcome(outcome, value)
        for criterion_id, outcome, value in Verdict.objects.filter(
            run_id=run_id, response_id=response_id, rater_id=judge.rater_id
        ).values_list("criterion_id", "outcome", "value")
    }
    figures = scoring.score(spec, outcomes)
    Score.objects.filter(pk=score.pk, status=Score.Status.PENDING).update(
        status=Score.Status.DONE,
        raw=figures.raw,
        met_points=figures.met_points,
        possible_points=figures.possible_points,
        error_count=figures.error_count,
        finished_at=timezone.now(),
    )
    run_finish_if_done(run_id=run_id)
    return f"graded {len(todo)} criteria"
