"""Streaming exports: every verdict, exactly, whatever its text holds."""

from __future__ import annotations

import hashlib
import io
import json

import pytest
from django.core.management import call_command

from annotation.models import Rater, Response, Verdict
from grading import exports
from tests import factories

pytestmark = pytest.mark.django_db

TRICKY = 'line one\nline "two"\\ with a backslash, a tab\t, \x01 a control char, émoji 🙂, \u2028'


def test_verdicts_jsonl_round_trips_exactly(personas, tmp_path):
    p = personas
    task = factories.make_task(p.project, "t1")
    grader = factories.make_published_rubric(
        p.project, task, [("Mentions water", 2), ("Bad", -1)], p.admin
    )
    factories.import_responses(p.project, [{"task_id": "t1", "model": "m", "response": TRICKY}])
    response = Response.objects.get()
    rater = Rater.objects.create(project=p.project, kind="judge", name="judge: x")
    criteria = list(grader.version.criteria.order_by("position"))
    made = [
        Verdict.objects.create(
            response=response,
            criterion=criteria[0],
            rater=rater,
            grader=grader,
            outcome="met",
            explanation=TRICKY,
            judge_model="jm",
        ),
        Verdict.objects.create(
            response=response,
            criterion=criteria[1],
            rater=rater,
            grader=grader,
            outcome="error",
            error="unparseable: x",
            value=None,
        ),
    ]
    other = factories.make_project()  # another project's verdicts stay out
    other_task = factories.make_task(other, "o1")
    other_grader = factories.make_published_rubric(other, other_task, [("X", 1)], other.created_by)
    factories.import_responses(other, [{"task_id": "o1", "model": "m", "response": "x"}])
    Verdict.objects.create(
        response=Response.objects.get(task=other_task),
        criterion=other_grader.version.criteria.get(),
        rater=Rater.objects.create(project=other, kind="judge", name="j"),
        outcome="met",
    )

    out = io.BytesIO()
    size, digest = exports.verdicts_jsonl(out, project=p.project)
    data = out.getvalue()
    assert size == len(data) and digest == hashlib.sha256(data).hexdigest()
    # JSON Lines split on "\n" only (str.splitlines would also split on U+2028).
    lines = data.decode().split("\n")[:-1]
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["verdict_id"] == made[0].pk and first["explanation"] == TRICKY
    assert first["grader_hash"] == grader.hash and first["task_external_id"] == "t1"
    assert first["points"] == 2 and first["outcome"] == "met" and first["rater_kind"] == "judge"
    assert second["outcome"] == "error" and second["error"] == "unparseable: x"

    path = tmp_path / "verdicts.jsonl"
    call_command("export_dataset", "--project", p.project.slug, "--output", str(path))
    assert path.read_bytes() == data
    assert not (tmp_path / "verdicts.jsonl.partial").exists()
