"""Tasks arrive in bulk from the page and the API, as JSONL or Parquet: all or nothing."""

from __future__ import annotations

import io
import json
import resource
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from rubrics.models import ReferenceDeliverable, Task
from tests.test_api import api_client

pytestmark = pytest.mark.django_db

TASKS = [
    {
        "external_id": f"bulk-{i}",
        "title": f"Case {i}",
        "messages": [{"role": "user", "content": f"Question {i}?"}],
        "tags": ["bulk"],
        "reference": "Answer." if i % 2 else "",
    }
    for i in range(5)
]


def jsonl(rows) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in rows)


def parquet(rows) -> bytes:
    out = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), out)
    return out.getvalue()


def test_page_imports_jsonl_once_and_names_line_and_field_when_wrong(client, personas):
    client.force_login(personas.author)
    url = f"/p/{personas.project.slug}/imports/tasks/"
    bad = [*TASKS[:2], {"external_id": "bulk-x", "messages": 42}]
    reply = client.post(url, {"file": SimpleUploadedFile("tasks.jsonl", jsonl(bad))})
    assert reply.status_code == 200
    assert b"tasks.jsonl, line 3, field &#x27;messages&#x27;" in reply.content
    assert not Task.objects.filter(project=personas.project).exists()

    reply = client.post(url, {"file": SimpleUploadedFile("tasks.jsonl", jsonl(TASKS))})
    assert reply.status_code == 302
    assert Task.objects.filter(project=personas.project).count() == 5
    assert ReferenceDeliverable.objects.filter(task__project=personas.project).count() == 2
    again = client.post(url, {"file": SimpleUploadedFile("tasks.jsonl", jsonl(TASKS))}, follow=True)
    assert b"Imported 0 tasks from tasks.jsonl (5 already present)" in again.content
    assert Task.objects.filter(project=personas.project).count() == 5


def test_api_imports_parquet_whatever_its_name(personas):
    client = api_client(personas.author)
    url = f"/api/projects/{personas.project.slug}/imports/tasks/"
    upload = SimpleUploadedFile("export.bin", parquet(TASKS))
    reply = client.post(url, {"file": upload}, format="multipart")
    assert reply.status_code == 201, reply.content
    assert reply.json() == {"created": 5, "already_present": 0, "filename": "export.bin"}
    stored = Task.objects.get(project=personas.project, external_id="bulk-3")
    assert stored.messages == TASKS[3]["messages"] and stored.tags == ["bulk"]


def test_api_refuses_a_broken_parquet_file_and_a_missing_file(personas):
    client = api_client(personas.author)
    url = f"/api/projects/{personas.project.slug}/imports/tasks/"
    truncated = parquet(TASKS)[:-20]
    reply = client.post(
        url, {"file": SimpleUploadedFile("t.parquet", truncated)}, format="multipart"
    )
    assert reply.status_code == 400
    assert reply.json()["errors"][0].startswith("file: 't.parquet' is not a readable Parquet file")
    assert client.post(url, {}, format="multipart").status_code == 400
    assert not Task.objects.filter(project=personas.project).exists()


def test_annotator_cannot_import_tasks(personas):
    client = api_client(personas.annotator)
    url = f"/api/projects/{personas.project.slug}/imports/tasks/"
    reply = client.post(
        url, {"file": SimpleUploadedFile("t.jsonl", jsonl(TASKS))}, format="multipart"
    )
    assert reply.status_code == 403
    assert not Task.objects.filter(project=personas.project).exists()


# --- Bombs and limits ------------------------------------------------------------------------

BOMB = """
import sys
import pyarrow as pa, pyarrow.compute as pc, pyarrow.parquet as pq
context = pc.binary_repeat(pa.array(["a", "b"]), 100 * 1024 * 1024)  # two values of 100 MB
table = pa.table({
    "external_id": ["bomb-1", "bomb-2"],
    "messages": [[{"role": "user", "content": "Summarise the context."}]] * 2,
    "context": context,
})
pq.write_table(table, sys.argv[1], compression="zstd", compression_level=19, use_dictionary=False)
"""


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_a_parquet_bomb_is_refused_from_its_footer_naming_rows_and_field(personas, tmp_path):
    """Issue 19: an 8 KB file of two rows with 100 MB of context each took a web worker from
    0.29 to 1.78 GB. Made in another process, so this one never holds it decoded."""
    path = tmp_path / "bomb.parquet"
    subprocess.run([sys.executable, "-c", BOMB, str(path)], check=True)
    assert path.stat().st_size < 64 * 1024
    client = api_client(personas.author)
    url = f"/api/projects/{personas.project.slug}/imports/tasks/"
    before, arrow_before = peak_rss_mb(), pa.total_allocated_bytes()
    upload = SimpleUploadedFile("bomb.parquet", path.read_bytes())
    reply = client.post(url, {"file": upload}, format="multipart")
    assert reply.status_code == 413, reply.content
    [error] = reply.json()["errors"]
    assert error.startswith(
        "file: 'bomb.parquet', rows 1 to 2, field 'context': 200.0 MB in 2 rows "
        "(100.0 MB a row); a field may "
    )
    assert "ASSAY_PARQUET_MAX_FIELD_BYTES" in error
    assert peak_rss_mb() - before < 50  # nothing the size of a value was made
    assert pa.total_allocated_bytes() - arrow_before < 1024 * 1024
    assert not Task.objects.filter(project=personas.project).exists()


def parquet_file_of(rows, **options) -> SimpleUploadedFile:
    out = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), out, **options)
    return SimpleUploadedFile("tasks.parquet", out.getvalue())


def test_one_big_value_among_small_ones_is_refused_by_its_row_and_field(personas, settings):
    """The footer's sizes cannot show one big value among many small: each batch's values are
    measured on Arrow's buffers before any becomes a Python object."""
    settings.PARQUET_MAX_FIELD_BYTES = 64 * 1024
    rows = [{**TASKS[0], "external_id": f"t-{i}", "context": "c" * 100} for i in range(500)]
    rows[320]["context"] = "x" * (100 * 1024)
    client = api_client(personas.author)
    url = f"/api/projects/{personas.project.slug}/imports/tasks/"
    reply = client.post(url, {"file": parquet_file_of(rows)}, format="multipart")
    assert reply.status_code == 413, reply.content
    assert reply.json()["errors"] == [
        "file: 'tasks.parquet', row 321, field 'context': 100.0 KB once decoded; a field "
        "may hold at most 64.0 KB (ASSAY_PARQUET_MAX_FIELD_BYTES). Nothing was imported."
    ]
    assert not Task.objects.filter(project=personas.project).exists()


def test_a_dictionary_repeating_a_value_is_measured_without_expanding_it(personas, settings):
    """A dictionary stores a repeated value once: 400 rows of the same 40 KB context are 40 KB
    in the file and 16 MB decoded, counted against ASSAY_PARQUET_MAX_UNPACKED_BYTES."""
    settings.PARQUET_MAX_UNPACKED_BYTES = 8 * 1024 * 1024
    rows = [{**TASKS[0], "external_id": f"t-{i}", "context": "d" * 40_000} for i in range(400)]
    upload = parquet_file_of(rows, use_dictionary=True)
    assert upload.size < 200_000
    client = api_client(personas.author)
    url = f"/api/projects/{personas.project.slug}/imports/tasks/"
    reply = client.post(url, {"file": upload}, format="multipart")
    assert reply.status_code == 413, reply.content
    [error] = reply.json()["errors"]
    assert "decode to 15.3 MB" in error and "ASSAY_PARQUET_MAX_UNPACKED_BYTES" in error
    assert not Task.objects.filter(project=personas.project).exists()


def test_task_text_fields_are_limited_however_they_arrive(client, personas, settings):
    settings.TASK_CONTEXT_MAX_CHARS = 1000
    settings.TASK_MESSAGE_MAX_CHARS = 500
    settings.TASK_MESSAGES_MAX = 3
    too_long = [
        {**TASKS[0], "context": "c" * 1001},
        {**TASKS[1], "messages": [{"role": "user", "content": "m" * 501}]},
        {**TASKS[2], "messages": [{"role": "user", "content": "hi"}] * 4},
        {**TASKS[3], "context": "c" * 1000},
    ]
    client.force_login(personas.author)
    url = f"/p/{personas.project.slug}/imports/tasks/"
    reply = client.post(url, {"file": SimpleUploadedFile("tasks.jsonl", jsonl(too_long))})
    page = reply.content.decode()
    assert "line 1, field &#x27;context&#x27;: 1,001 characters; a context holds at most 1,000" in (
        page
    )
    assert "line 2, field &#x27;messages[0].content&#x27;: 501 characters" in page
    assert "line 3, field &#x27;messages&#x27;: 4 messages; a prompt holds at most 3" in page
    assert "line 4" not in page

    api = api_client(personas.author)
    reply = api.post(
        url.replace("/p/", "/api/projects/").replace("imports/tasks/", "tasks/"),
        {"external_id": "long", "title": "Long", "messages": "Hi?", "context": "c" * 1001},
        format="json",
    )
    assert reply.status_code == 400 and "ASSAY_TASK_CONTEXT_MAX_CHARS" in str(reply.json())
    assert not Task.objects.filter(project=personas.project).exists()
