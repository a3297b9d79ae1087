"""Large uploads import in the background, all or nothing, with progress on the page."""

from __future__ import annotations

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from annotation.import_jobs import BACKGROUND_ABOVE_BYTES
from annotation.models import ImportJob, Response
from tests import factories
from tests.conftest import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def big_file(rows: int, *, bad_line: int | None = None) -> SimpleUploadedFile:
    lines = []
    for i in range(rows):
        row = {"task_id": "big", "model": f"m{i % 3}", "response": "x" * 400, "sample_index": i}
        lines.append("{broken" if i + 1 == bad_line else json.dumps(row))
    data = ("\n".join(lines) + "\n").encode()
    assert len(data) > BACKGROUND_ABOVE_BYTES
    return SimpleUploadedFile("big.jsonl", data, "application/jsonl")


def test_a_large_upload_imports_in_the_background(client, personas, celery_worker):
    factories.make_task(personas.project, "big")
    client.force_login(personas.engineer)
    page = client.post(f"/p/{personas.project.slug}/responses/", {"file": big_file(6000)})
    assert page.status_code == 302 and page.url.startswith("/imports/")
    job = ImportJob.objects.get()
    assert job.rows_total == 6000
    wait_for(lambda: ImportJob.objects.get(pk=job.pk).status == "done", what="the import")
    job.refresh_from_db()
    assert (job.created, job.already_present, job.rows_done) == (6000, 0, 6000)
    assert Response.objects.filter(task__external_id="big").count() == 6000
    shown = client.get(page.url)
    assert b"Imported 6000 responses" in shown.content
    assert client.get(page.url, HTTP_HX_REQUEST="true").status_code == 200


def test_a_large_bad_upload_is_refused_whole(client, personas, celery_worker):
    factories.make_task(personas.project, "big")
    client.force_login(personas.admin)
    page = client.post(
        f"/p/{personas.project.slug}/responses/", {"file": big_file(6000, bad_line=5123)}
    )
    job = ImportJob.objects.get()
    wait_for(lambda: ImportJob.objects.get(pk=job.pk).status == "failed", what="the refusal")
    job.refresh_from_db()
    assert job.error_count == 1 and "line 5123: not valid JSON" in job.errors[0]
    assert not Response.objects.exists()
    assert b"Nothing was imported" in client.get(page.url).content
