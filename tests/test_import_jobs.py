"""Large uploads import in the background, all or nothing, with progress on the page."""

from __future__ import annotations

import json
import os
import time
from datetime import timedelta

import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from annotation import import_jobs
from annotation.import_jobs import BACKGROUND_ABOVE_BYTES
from annotation.models import ImportJob, Response
from tests import factories
from tests.conftest import wait_for
from tests.test_api import api_client

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
    assert not default_storage.exists(job.file)  # refused or imported, the upload goes


# --- Progress, a killed worker, clean-up -----------------------------------------------------


def lines_file(rows: int, name: str = "many.jsonl", model: str = "m") -> SimpleUploadedFile:
    """`rows` short responses to the task 'big': many lines, few bytes."""
    data = "".join(
        f'{{"task_id": "big", "model": "{model}{i % 4}", "response": "r{i}", '
        f'"sample_index": {i}}}\n'
        for i in range(rows)
    ).encode()
    return SimpleUploadedFile(name, data, "application/jsonl")


def api_import(client, project, upload) -> int:
    reply = client.post(f"/api/projects/{project.slug}/imports/", {"file": upload})
    assert reply.status_code == 202, reply.content
    return reply.json()["id"]


def watch(client, job_id: int, until: set[str], timeout: float = 180) -> list[tuple[str, int]]:
    """Poll the job through the API until its status is in `until`; every (status, rows done)
    seen on the way."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/api/imports/{job_id}/").json()
        seen.append((job["status"], job["rows_done"]))
        if job["status"] in until:
            return seen
        time.sleep(0.05)
    raise AssertionError(f"the import stayed {seen[-1]} for {timeout} s")


def test_an_api_import_of_many_lines_finishes_and_shows_progress_on_the_way(
    personas, celery_worker
):
    """Progress goes to the job row while the COPY runs (issue 19: written on the COPY's own
    connection, the first progress write hung the import for ever)."""
    factories.make_task(personas.project, "big")
    client = api_client(personas.engineer)
    job_id = api_import(client, personas.project, lines_file(60_000))
    seen = watch(client, job_id, {"done", "failed"})
    job = ImportJob.objects.get(pk=job_id)
    assert (job.status, job.created, job.rows_done, job.attempts) == ("done", 60_000, 60_000, 1)
    assert Response.objects.filter(task__external_id="big").count() == 60_000
    assert any(status == "running" and 0 < rows < 60_000 for status, rows in seen), seen
    assert not default_storage.exists(job.file)


def test_a_worker_killed_mid_import_leaves_nothing_and_the_sweep_resumes_it(
    personas, celery_worker, monkeypatch, settings
):
    """kill -9 of the worker and its pool in the middle of the COPY: nothing of the file is
    stored, the job shows running, and a new worker's recovery sweep, seeing no sign of life for
    ASSAY_IMPORT_STALL_S, queues it again; the second try imports it all and deletes the file."""
    factories.make_task(personas.project, "big")
    client = api_client(personas.engineer)
    job_id = api_import(client, personas.project, lines_file(150_000))
    wait_for(
        lambda: ImportJob.objects.get(pk=job_id).rows_done >= 20_000, what="the import under way"
    )
    celery_worker.kill()
    job = ImportJob.objects.get(pk=job_id)
    assert (job.status, job.attempts) == ("running", 1)
    at_kill = job.rows_done
    assert 0 < at_kill < 150_000
    assert not Response.objects.exists()  # all or nothing: the transaction died with the worker
    assert default_storage.exists(job.file)  # kept for the next try
    # The sweep, once the job has shown no sign of life for the stall period, queues it again
    # with its count back at 0: the second try counts its rows from the start.
    settings.ASSAY_IMPORT_STALL_S = 1
    wait_for(
        lambda: job_id in import_jobs.import_jobs_recover()["requeued"],
        what="the sweep to queue the import again",
        timeout=20,
    )
    job.refresh_from_db()
    assert (job.status, job.rows_done, job.attempts) == ("queued", 0, 1)
    monkeypatch.setenv("ASSAY_IMPORT_STALL_S", "3")
    monkeypatch.setenv("ASSAY_RECOVERY_CHECK_S", "1")
    celery_worker.start()
    try:
        watch(client, job_id, {"done", "failed"})
        job.refresh_from_db()
        assert (job.status, job.attempts, job.created) == ("done", 2, 150_000), job.errors
        assert client.get(f"/api/imports/{job_id}/").json()["attempts"] == 2
        assert Response.objects.count() == 150_000
        assert not default_storage.exists(job.file)
    finally:
        celery_worker.stop()  # the rest of the session's worker runs with the usual settings
        monkeypatch.undo()
        celery_worker.start()


def lost_job(project, *, attempts: int, name: str = "lost.jsonl", rows: int = 10) -> ImportJob:
    """What a worker killed during an import leaves behind: the job running, no recent sign of
    life, its upload stored, nothing imported (its transaction died with it)."""
    stored = default_storage.save(f"imports/{project.slug}/{name}", lines_file(rows))
    return ImportJob.objects.create(
        project=project,
        filename=name,
        file=stored,
        rows_total=rows,
        status="running",
        attempts=attempts,
        heartbeat_at=timezone.now() - timedelta(minutes=5),
    )


def test_a_job_lost_too_often_fails_clearly_deletes_its_upload_and_can_be_imported_again(
    personas, celery_worker, client, settings
):
    factories.make_task(personas.project, "big")
    settings.ASSAY_IMPORT_MAX_ATTEMPTS = 2
    lost = lost_job(personas.project, attempts=2)
    assert import_jobs.import_jobs_recover()["failed"] == [lost.pk]
    lost.refresh_from_db()
    assert (lost.status, lost.error_count) == ("failed", 1)
    assert "stopped 2 times before it finished" in lost.errors[0]
    assert "Upload the file again to retry" in lost.errors[0]
    assert not default_storage.exists(lost.file)
    assert import_jobs.import_jobs_recover() == {
        "requeued": [],
        "failed": [],
        "uploads_deleted": [],
    }  # ended: the next look leaves it alone
    client.force_login(personas.engineer)
    page = client.get(f"/imports/{lost.pk}/").content.decode()
    assert "Nothing was imported" in page and "stopped 2 times" in page
    assert f'href="/p/{personas.project.slug}/responses/" data-testid="import-again"' in page

    # Again, through the page (a background import, over 2 MB) and then the API.
    reply = client.post(f"/p/{personas.project.slug}/responses/", {"file": big_file(6000)})
    again = ImportJob.objects.exclude(pk=lost.pk).get()
    assert reply.url == f"/imports/{again.pk}/"
    wait_for(lambda: ImportJob.objects.get(pk=again.pk).status == "done", what="the retry")
    api = api_client(personas.engineer)
    watch(api, api_import(api, personas.project, lines_file(10, model="api")), {"done"})
    assert Response.objects.count() == 6010


def test_the_sweep_requeues_a_lost_job_once_and_deletes_orphan_uploads(
    personas, celery_worker, settings
):
    factories.make_task(personas.project, "big")
    settings.ASSAY_IMPORT_STALL_S = 60
    lost = lost_job(personas.project, attempts=1, rows=25)
    alive = lost_job(personas.project, attempts=1, name="alive.jsonl")
    ImportJob.objects.filter(pk=alive.pk).update(heartbeat_at=timezone.now())
    orphan = default_storage.save(f"imports/{personas.project.slug}/orphan.jsonl", lines_file(1))
    young = default_storage.save(f"imports/{personas.project.slug}/young.jsonl", lines_file(1))
    old = time.time() - 3600
    os.utime(default_storage.path(orphan), (old, old))

    done = import_jobs.import_jobs_recover()
    assert done == {"requeued": [lost.pk], "failed": [], "uploads_deleted": [orphan]}
    assert import_jobs.import_jobs_recover()["requeued"] == []  # one sweep of many acts
    wait_for(lambda: ImportJob.objects.get(pk=lost.pk).status == "done", what="the resumed job")
    lost.refresh_from_db()
    assert (lost.attempts, lost.created) == (2, 25)
    assert not default_storage.exists(lost.file) and not default_storage.exists(orphan)
    assert default_storage.exists(alive.file) and default_storage.exists(young)
    assert ImportJob.objects.get(pk=alive.pk).status == "running"


def test_a_large_trace_file_imports_in_the_background_found_by_its_content(
    client, personas, celery_worker
):
    """OpenTelemetry GenAI spans from the real SDK, over the background size: the page finds
    the format, the worker reads it through the same door, every trace is one episode."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"assay.task_id": "traced"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("big")
    question = "Where is my parcel? " * 400
    for i in range(300):
        with tracer.start_as_current_span("chat agent") as chat:
            chat.set_attribute("gen_ai.request.model", "agent")
            chat.set_attribute(
                "gen_ai.input.messages",
                json.dumps([{"role": "user", "parts": [{"type": "text", "content": question}]}]),
            )
            chat.set_attribute(
                "gen_ai.output.messages",
                json.dumps(
                    [{"role": "assistant", "parts": [{"type": "text", "content": f"Reply {i}"}]}]
                ),
            )
    data = ("[" + ",".join(s.to_json() for s in exporter.get_finished_spans()) + "]").encode()
    assert len(data) > BACKGROUND_ABOVE_BYTES
    client.force_login(personas.engineer)
    page = client.post(
        f"/p/{personas.project.slug}/responses/",
        {"file": SimpleUploadedFile("spans.json", data, "application/json")},
    )
    assert page.status_code == 302 and page.url.startswith("/imports/")
    job = ImportJob.objects.get()
    wait_for(lambda: ImportJob.objects.get(pk=job.pk).status != "queued", what="the claim")
    wait_for(lambda: ImportJob.objects.get(pk=job.pk).status != "running", what="the import")
    job.refresh_from_db()
    assert (job.status, job.created, job.errors) == ("done", 300, [])
    stored = Response.objects.filter(task__external_id="traced", model="agent")
    assert sorted(stored.values_list("sample_index", flat=True)) == list(range(300))
    assert stored.get(sample_index=7).text == "Reply 7"
