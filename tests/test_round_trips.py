"""Export then import reproduces the data; Parquet reads back in pyarrow, pandas and datasets."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command

from annotation.models import Rater, Response, Verdict
from grading.datasets import formats
from rubrics.models import Task
from rubrics.task_import import tasks_import
from tests import factories

pytestmark = pytest.mark.django_db


def exported(fn, project) -> bytes:
    out = io.BytesIO()
    fn(out, project=project)
    return out.getvalue()


def test_tasks_and_responses_round_trip_into_another_project(personas, tmp_path):
    source = personas.project
    tasks = [
        {
            "external_id": "rt-1",
            "title": "Chest pain",
            "tags": ["clinical"],
            "messages": [
                {"role": "system", "content": "Be careful."},
                {"role": "user", "content": 'Pain & "pressure"\nin my chest'},
            ],
            "context": "57-year-old",
            "reference": "**Call 911.**",
        },
        {
            "external_id": "rt-2",
            "title": "Memo",
            "tags": [],
            "context": "",
            "reference": "",
            "messages": [{"role": "user", "content": "Draft a memo 🙂"}],
        },
    ]
    result = tasks_import(project=source, lines=[json.dumps(t) for t in tasks])
    assert (result.ok, result.created) == (True, 2)
    factories.import_responses(
        source,
        [
            {
                "task_id": "rt-1",
                "model": "a",
                "response": "Call 911\tnow",
                "sample_index": 2,
                "metadata": {"temperature": 0.7, "nested": {"k": [1, 2]}},
                "external_id": "x-1",
            },
            {"task_id": "rt-2", "model": "b", "response": "MEMO\n\\n"},
        ],
    )
    task_file, response_file = tmp_path / "tasks.jsonl", tmp_path / "responses.jsonl"
    for fmt, path in (("tasks-jsonl", task_file), ("responses-jsonl", response_file)):
        call_command(
            "export_dataset", "--project", source.slug, "--format", fmt, "--output", str(path)
        )
    target = factories.make_project(owner=personas.admin, name="Copy")
    call_command("import_tasks", str(task_file), "--project", target.slug)
    call_command("import_responses", str(response_file), "--project", target.slug)
    assert exported(formats.tasks_jsonl, target) == task_file.read_bytes()
    assert exported(formats.responses_jsonl, target) == response_file.read_bytes()
    assert (
        Task.objects.get(project=target, external_id="rt-1").references.get().body
        == "**Call 911.**"
    )
    # Importing the same files again adds nothing.
    again = tasks_import(project=target, lines=task_file.read_bytes().splitlines())
    assert (again.created, again.already_present) == (0, 2)
    call_command("import_responses", str(response_file), "--project", target.slug)
    assert Response.objects.filter(task__project=target).count() == 2


def test_task_import_errors_name_line_and_field(personas):
    lines = [
        json.dumps({"external_id": "ok", "messages": [{"role": "user", "content": "q"}]}),
        json.dumps({"external_id": "bad-role", "messages": [{"role": "robot", "content": "q"}]}),
        json.dumps({"messages": "just text", "colour": 1}),
        "{oops",
        json.dumps({"external_id": "ok", "messages": [{"role": "user", "content": "q"}]}),
    ]
    result = tasks_import(project=personas.project, lines=lines)
    text = "\n".join(result.errors)
    assert "line 2, field 'messages[0].role'" in text
    assert "line 3, field 'colour'" in text and "line 3, field 'external_id'" in text
    assert "line 4: not valid JSON" in text
    assert "line 5, field 'external_id': repeats line 1" in text
    assert not Task.objects.filter(project=personas.project).exists()


def test_parquet_reads_back_in_pyarrow_pandas_and_datasets(personas, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    p = personas
    task = factories.make_task(p.project, "pq")
    grader = factories.make_published_rubric(p.project, task, [("A", 2), ("B", -1)], p.admin)
    factories.import_responses(p.project, [{"task_id": "pq", "model": "m", "response": "r"}])
    rater = Rater.objects.create(project=p.project, kind="judge", name="judge: j")
    for criterion, outcome in zip(
        grader.version.criteria.order_by("position"), ["met", "unmet"], strict=True
    ):
        Verdict.objects.create(
            response=Response.objects.get(),
            criterion=criterion,
            rater=rater,
            grader=grader,
            outcome=outcome,
            explanation=f"because {outcome}",
        )
    path = tmp_path / "verdicts.parquet"
    call_command(
        "export_dataset",
        "--project",
        p.project.slug,
        "--format",
        "verdicts-parquet",
        "--output",
        str(path),
    )
    import datasets
    import pandas as pd
    import pyarrow.parquet as pq

    assert pq.read_table(path).num_rows == 2
    frame = pd.read_parquet(path)
    assert list(frame["outcome"]) == ["met", "unmet"]
    loaded = datasets.load_dataset(
        "parquet", data_files=str(path), split="train", cache_dir=str(tmp_path / "cache")
    )
    assert loaded.num_rows == 2
    assert loaded[0]["explanation"] == "because met" and loaded[1]["points"] == -1.0
    assert loaded.column_names == [name for name, _, _ in formats.VERDICT_COLUMNS]
