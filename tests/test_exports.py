"""Streaming exports: every verdict, exactly, whatever its text holds."""

from __future__ import annotations

import hashlib
import io
import json

import pyarrow.parquet as pq
import pytest
from django.core.management import call_command

from annotation.models import Rater, Response, Verdict
from grading.datasets import formats
from grading.models import Score
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
    count, digest = formats.verdicts_jsonl(out, project=p.project)
    data = out.getvalue()
    assert count == 2 and digest == hashlib.sha256(data).hexdigest()
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

    # The same verdicts in Parquet, read back by pyarrow with the documented schema.
    parquet = tmp_path / "verdicts.parquet"
    call_command(
        "export_dataset",
        "--project",
        p.project.slug,
        "--format",
        "verdicts-parquet",
        "--output",
        str(parquet),
    )
    table = pq.read_table(parquet)
    assert table.schema == formats.verdict_schema()
    back = table.to_pylist()
    assert [r["verdict_id"] for r in back] == [made[0].pk, made[1].pk]
    assert back[0]["explanation"] == TRICKY and back[0]["points"] == 2.0
    assert back[1]["outcome"] == "error" and back[1]["value"] is None
    assert back[0]["grader_hash"] == grader.hash and back[0]["rater_kind"] == "judge"


def test_preference_pairs_respect_the_margin(personas):
    p = personas
    task = factories.make_task(p.project, "pp")
    grader = factories.make_published_rubric(p.project, task, [("Mentions water", 1)], p.admin)
    factories.import_responses(
        p.project,
        [{"task_id": "pp", "model": m, "response": f"answer of {m}"} for m in ("a", "b", "c", "d")],
    )
    judge = factories.make_judge(p.project, "http://127.0.0.1:9/v1")
    run = factories.make_run(project=p.project, grader=grader, judge=judge, total_items=4)
    raws = {"a": 0.9, "b": 0.85, "c": 0.2, "d": None}  # d has an error: no score, no pairs
    for response in Response.objects.filter(task=task):
        Score.objects.create(
            run=run, response=response, grader=grader, status="done", raw=raws[response.model]
        )
    out = io.BytesIO()
    count, _ = formats.preference_pairs(out, run=run, min_margin=0.1)
    pairs = [json.loads(line) for line in out.getvalue().splitlines()]
    assert count == 2
    assert {(x["chosen_model"], x["rejected_model"]) for x in pairs} == {("a", "c"), ("b", "c")}
    first = pairs[0]
    assert first["prompt"] == task.messages and first["chosen"][0]["role"] == "assistant"
    assert first["margin"] >= 0.1 and first["grader_hash"] == grader.hash


def test_openai_rft_export_validates_against_the_openai_types(personas, tmp_path):
    from openai.types.graders.multi_grader import MultiGrader
    from openai.types.graders.score_model_grader import ScoreModelGrader

    p = personas
    task = factories.make_task(p.project, "rft-1", prompt="Is my chest pain serious?")
    factories.make_published_rubric(
        p.project, task, [("Advises emergency care", 5), ("Says wait a week", -3)], p.admin
    )
    factories.make_task(p.project, "no-rubric")  # not exported: nothing to grade it by
    path = tmp_path / "rft.jsonl"
    call_command(
        "export_dataset",
        "--project",
        p.project.slug,
        "--format",
        "openai-rft",
        "--output",
        str(path),
    )
    items = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(items) == 1
    item = items[0]
    assert item["messages"] == [{"role": "user", "content": "Is my chest pain serious?"}]
    assert item["rubric"] == "[+5] Advises emergency care\n[-3] Says wait a week"
    grader = json.loads((tmp_path / "rft.grader.json").read_text())
    parsed = ScoreModelGrader.model_validate(grader)
    assert parsed.type == "score_model" and parsed.range == [0.0, 1.0]
    # Every template variable the grader reads is a field of the items.
    import re

    for field in re.findall(r"\{\{item\.(\w+)\}\}", json.dumps(grader)):
        assert field in item
    multi = MultiGrader.model_validate(
        {"type": "multi", "name": "m", "graders": grader, "calculate_output": "assay-rubric"}
    )
    assert multi.graders.name == "assay-rubric"
