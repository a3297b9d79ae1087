"""Tasks arrive in bulk from the page and the API, as JSONL or Parquet: all or nothing."""

from __future__ import annotations

import io
import json

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
