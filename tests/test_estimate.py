"""A run's cost estimate: its input tokens are those of the prompts the run will send."""

from __future__ import annotations

import pytest

from annotation.models import Response
from grading import services
from grading.judges import prompts
from tests import factories

pytestmark = pytest.mark.django_db


def test_estimated_input_tokens_are_those_of_every_prompt_of_the_sample():
    """The estimate renders each sampled response with one criterion and each criterion with
    one response; it must come to what rendering every (response, criterion) prompt gives."""
    owner = factories.make_user()
    project = factories.make_project(owner)
    task = factories.make_task(project, "t", prompt="My child has a fever of 39.5 C. What now?")
    grader = factories.make_published_rubric(
        project,
        task,
        [
            ("Advises fluids", 2),
            ("Says when to see a doctor: a fever over three days, a stiff neck, a rash", 5),
            ("Recommends aspirin for a child", -4),
            ("Is short", 1),
        ],
        owner,
    )
    texts = ["Fluids.", "Give fluids, watch for a rash { not a slot }." * 20, "x" * 3000]
    factories.import_responses(
        project,
        [
            {"task_id": "t", "model": "m", "response": t, "sample_index": i}
            for i, t in enumerate(texts)
        ],
    )
    judge = factories.make_judge(project, "http://127.0.0.1:9/v1")
    ids = list(Response.objects.order_by("pk").values_list("pk", flat=True))

    estimate = services.run_create_estimate(project=project, judge=judge, grader=grader)

    chars = sum(
        len(m["content"])
        for r in Response.objects.filter(pk__in=ids).select_related("task")
        for c in grader.spec["criteria"]
        for m in prompts.judge_messages(
            grader.spec, messages=r.task.messages, response=r.text, criterion=c
        )
    )
    # Per criterion: one call per criterion, and no batched call besides (the estimate once
    # counted one per response, and its prompt's tokens).
    assert estimate["calls"] == len(ids) * len(grader.spec["criteria"])
    assert estimate["input_tokens"] == round(chars / 4)

    batched = services.run_create_estimate(
        project=project, judge=judge, grader=grader, mode="batched"
    )
    chars = sum(
        len(m["content"])
        for r in Response.objects.filter(pk__in=ids).select_related("task")
        for m in prompts.batch_messages(
            grader.spec, messages=r.task.messages, response=r.text, criteria=grader.spec["criteria"]
        )
    )
    assert batched["calls"] == len(ids)
    assert batched["input_tokens"] == round(chars / 4)
