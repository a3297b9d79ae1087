"""Test data built through the project's own services, so tests exercise the real paths."""

from __future__ import annotations

import itertools
import json
from decimal import Decimal

from django.contrib.auth import get_user_model

from annotation import services as annotation_services
from grading import services as grading_services
from rubrics import services as rubric_services
from rubrics import suites
from rubrics.models import Role

_counter = itertools.count(1)
PASSWORD = "correct-horse-battery-staple"


def make_user(username: str | None = None):
    username = username or f"user{next(_counter)}"
    return get_user_model().objects.create_user(username=username, password=PASSWORD)


def make_project(owner=None, name: str | None = None):
    owner = owner or make_user()
    return rubric_services.project_create(name=name or f"Project {next(_counter)}", user=owner)


def add_member(project, role: Role | str, username: str | None = None):
    user = make_user(username)
    rubric_services.membership_set(project=project, username=user.username, role=str(role))
    return user


def make_task(project, external_id: str | None = None, prompt: str = "What should I do?"):
    external_id = external_id or f"task-{next(_counter)}"
    return rubric_services.task_create(
        project=project,
        external_id=external_id,
        title=f"Task {external_id}",
        messages=[{"role": "user", "content": prompt}],
    )


def make_published_rubric(project, task, criteria, user):
    """criteria: [(text, points)]. Returns the compiled Grader."""
    rubric = rubric_services.rubric_create(
        project=project,
        task=task,
        title=f"Rubric for {task.external_id}",
        user=user,
        criteria=[
            rubric_services.CriterionInput(text=text, points=Decimal(str(points)))
            for text, points in criteria
        ],
    )
    version = rubric.versions.get()
    return rubric_services.version_publish(version=version, user=user)


def import_responses(project, rows: list[dict]):
    lines = [json.dumps(row) for row in rows]
    result = annotation_services.responses_import_jsonl(project=project, lines=lines)
    assert result.ok, [str(e) for e in result.errors]
    return result


def make_judge(project, base_url: str, name: str = "sim", max_concurrency: int = 8):
    return grading_services.judge_create(
        project=project,
        name=name,
        base_url=base_url,
        model="judge-model",
        max_concurrency=max_concurrency,
    )


def make_queue(project, grader, annotators, user, overlap: int = 2, **kwargs):
    return annotation_services.queue_create(
        project=project,
        grader=grader,
        name=kwargs.pop("name", f"Queue {next(_counter)}"),
        overlap=overlap,
        annotators=[a.username for a in annotators],
        user=user,
        **kwargs,
    )


def annotate(queue, user, outcomes: dict[int, str] | str = "met", submit: bool = True):
    """Claim the annotator's next item, decide every criterion, and submit."""
    assignment = annotation_services.assignment_claim(queue=queue, user=user)
    if assignment is None:
        return None
    # outcomes: one for all, or by criterion number (1-based, in rubric order)
    for number, criterion in enumerate(queue.grader.version.criteria.order_by("position"), 1):
        outcome = outcomes if isinstance(outcomes, str) else outcomes[number]
        annotation_services.verdict_save_draft(
            assignment_id=assignment.pk, criterion_id=criterion.pk, outcome=outcome
        )
    if submit:
        annotation_services.assignment_submit(assignment_id=assignment.pk)
    return assignment


def make_run(*, project, grader, judge, **fields):
    """A run row over the grader's suite of one, made directly (no worker): for tests that
    write its verdicts and scores themselves."""
    from grading.models import GradingRun
    from rubrics import suites

    version = suites.suite_of_grader(grader=grader)
    return GradingRun.objects.create(project=project, suite_version=version, judge=judge, **fields)


def frozen_suite(n_tasks: int, *, models=("model-a", "model-b"), criteria_of=lambda i: 2 + i % 3):
    """A project with a frozen suite of `n_tasks` tasks (t-000, ...), each its own published
    grader of `criteria_of(i)` criteria, a response of each model to each task, and a judge
    at an address nothing answers (for tests that write results directly or only start a
    run). (project, version, judge, admin, criteria in all)."""
    admin = make_user()
    project = make_project(owner=admin)
    tasks, criteria = [], 0
    for i in range(n_tasks):
        task = make_task(project, external_id=f"t-{i:03d}")
        points = [(f"Mentions point {j} of task {i}", 1 + j) for j in range(criteria_of(i))]
        make_published_rubric(project, task, points, admin)
        tasks.append(task)
        criteria += len(points)
    import_responses(
        project,
        [
            {"task_id": t.external_id, "model": m, "response": f"{m} answers {t.external_id}."}
            for t in tasks
            for m in models
        ],
    )
    suite = suites.suite_create(
        project=project, name="Scale", user=admin, task_ids=[t.pk for t in tasks]
    )
    version, created = suites.suite_freeze(suite=suite, user=admin)
    assert created and version.task_count == n_tasks
    judge = make_judge(project, "http://127.0.0.1:9/v1")
    return project, version, judge, admin, criteria
