"""Response ingestion: all or nothing, errors by line and field, idempotent, JSONL and Parquet."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.core.management import CommandError, call_command

from annotation import ingest, services
from annotation.models import Response
from annotation.services import RESPONSE_FIELDS
from rubrics import uploads
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def project(personas):
    for external_id in ("t1", "t2"):
        factories.make_task(personas.project, external_id)
    return personas.project


def rows(n: int, task: str = "t1", model: str = "m") -> list[dict]:
    return [
        {
            "task_id": task,
            "model": model,
            "response": f"answer {i}",
            "sample_index": i,
            "metadata": {"temperature": 0.7},
            "external_id": f"r{i}",
        }
        for i in range(n)
    ]


def lines_of(items: list[dict]) -> list[bytes]:
    return [json.dumps(item).encode() + b"\n" for item in items]


def test_a_good_file_imports_and_the_same_file_twice_adds_nothing(project):
    first = services.responses_import_jsonl(project=project, lines=lines_of(rows(50)))
    assert (first.ok, first.created, first.already_present) == (True, 50, 0)
    again = services.responses_import_jsonl(project=project, lines=lines_of(rows(50)))
    assert (again.ok, again.created, again.already_present) == (True, 0, 50)
    assert Response.objects.count() == 50
    stored = Response.objects.get(sample_index=7)
    assert (stored.text, stored.metadata, stored.external_id) == (
        "answer 7",
        {"temperature": 0.7},
        "r7",
    )


def test_a_bad_file_names_every_line_and_field_and_imports_nothing(project):
    items = lines_of(rows(3)) + [
        b"{not json\n",
        json.dumps({"task_id": "zz", "model": "m", "response": "x"}).encode(),
        json.dumps({"task_id": "t1", "response": "x", "colour": "red"}).encode(),
        json.dumps({"task_id": "t1", "model": "m", "response": "x", "sample_index": -1}).encode(),
        b"\xff\xfe\n",
    ]
    result = services.responses_import_jsonl(project=project, lines=items)
    assert not result.ok
    found = {(e.line, e.field) for e in result.errors}
    assert {
        (4, ""),
        (5, "task_id"),
        (6, "colour"),
        (6, "model"),
        (7, "sample_index"),
        (8, ""),
    } <= found
    assert "not valid JSON" in str(result.errors[0])
    assert Response.objects.count() == 0


def test_repeats_within_a_file_and_changes_to_stored_responses_are_refused(project):
    repeated = rows(3) + [rows(3)[1]]
    result = services.responses_import_jsonl(project=project, lines=lines_of(repeated))
    assert [(e.line, e.field) for e in result.errors] == [(4, "sample_index")]
    assert "repeats line 2" in result.errors[0].message
    assert Response.objects.count() == 0

    services.responses_import_jsonl(project=project, lines=lines_of(rows(3)))
    changed = rows(4)
    changed[2]["response"] = "a different answer"
    result = services.responses_import_jsonl(project=project, lines=lines_of(changed))
    assert [(e.line, e.field) for e in result.errors] == [(3, "response")]
    assert "immutable" in result.errors[0].message
    assert Response.objects.count() == 3  # the new fourth row was not imported either


def parquet_rows(path, batch_size: int = 20_000):
    """The rows of a Parquet file whose footer passed the upload checks."""
    with open(path, "rb") as f:
        reader = uploads.parquet_file(f, name=path.name, columns=RESPONSE_FIELDS)
        yield from ingest.parquet_rows(reader, name=path.name, batch_size=batch_size)


def test_parquet_rows_import_like_jsonl(project, tmp_path):
    path = tmp_path / "outputs.parquet"
    table = pa.Table.from_pylist(
        [{**r, "metadata": json.dumps(r["metadata"])} for r in rows(40, task="t2", model="p")]
    )
    pq.write_table(table, path)
    result = ingest.import_responses(project=project, rows=parquet_rows(path, 16))
    assert (result.ok, result.created) == (True, 40)
    assert Response.objects.filter(task__external_id="t2", model="p").count() == 40


def test_parquet_errors_name_the_row(project, tmp_path):
    path = tmp_path / "bad.parquet"
    pq.write_table(
        pa.Table.from_pylist(
            [
                {"task_id": "t1", "model": "m", "response": "ok", "sample_index": 0},
                {"task_id": "nope", "model": "m", "response": "x", "sample_index": 1},
            ]
        ),
        path,
    )
    result = ingest.import_responses(project=project, rows=parquet_rows(path))
    assert [(e.line, e.field) for e in result.errors] == [(2, "task_id")]
    assert Response.objects.count() == 0


def test_command_reports_counts_and_refuses_bad_files(project, tmp_path, capsys):
    good = tmp_path / "good.jsonl"
    good.write_bytes(b"".join(lines_of(rows(5))))
    call_command("import_responses", str(good), "--project", project.slug)
    assert "Imported 5 responses from good.jsonl (0 already present)" in capsys.readouterr().out
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"task_id": "t1"}\n')
    with pytest.raises(CommandError, match="nothing was imported"):
        call_command("import_responses", str(bad), "--project", project.slug)
    assert "bad.jsonl: line 1, field 'model'" in capsys.readouterr().err
    with pytest.raises(CommandError, match="no project"):
        call_command("import_responses", str(good), "--project", "nope")


def test_a_parquet_response_over_the_field_limit_is_refused_by_row_and_field(
    project, tmp_path, settings
):
    settings.PARQUET_MAX_FIELD_BYTES = 1024
    items = rows(30)
    items[6]["response"] = "y" * 2000
    path = tmp_path / "outputs.parquet"
    pq.write_table(
        pa.Table.from_pylist([{**r, "metadata": json.dumps(r["metadata"])} for r in items]), path
    )
    with path.open("rb") as upload:
        result = services.responses_import_file(
            project=project, upload=upload, filename=path.name, format="parquet"
        )
    assert [str(e) for e in result.errors] == [
        "line 0, field 'file': 'outputs.parquet', row 7, field 'response': 2.0 KB once "
        "decoded; a field may hold at most 1.0 KB "
        "(ASSAY_PARQUET_MAX_FIELD_BYTES). Nothing was imported."
    ]
    assert result.status == 413 and not Response.objects.exists()
