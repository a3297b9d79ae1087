"""Large uploads: stored, then imported by a worker that writes its progress to the job row.

Small files import within the request (annotation.services.responses_import_jsonl); both take
the same path through validation and COPY, so the rules and the errors are the same."""

from __future__ import annotations

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import transaction
from django.shortcuts import get_object_or_404
from django.utils import timezone

from annotation import services
from annotation.models import ImportJob
from rubrics import uploads
from rubrics.models import Project
from rubrics.permissions import Perm, check

BACKGROUND_ABOVE_BYTES = 2 * 1024 * 1024
PROGRESS_EVERY = 10_000


def import_job_create(*, project: Project, upload, user) -> ImportJob:
    """Store the upload and queue its import. The file is counted first, for the progress bar.

    A file over ASSAY_RESPONSE_UPLOAD_MAX_BYTES, or not JSONL text, is refused here
    (uploads.UploadRefused) before anything is stored."""
    uploads.check_size(
        upload,
        name=upload.name,
        limit=settings.RESPONSE_UPLOAD_MAX_BYTES,
        setting="ASSAY_RESPONSE_UPLOAD_MAX_BYTES",
        what="response imports",
    )
    services.check_jsonl(upload, name=upload.name)
    rows = sum(chunk.count(b"\n") for chunk in upload.chunks())
    upload.seek(0)
    stored = default_storage.save(f"imports/{project.slug}/{upload.name}", upload)
    with transaction.atomic():
        job = ImportJob.objects.create(
            project=project, filename=upload.name, file=stored, rows_total=rows, created_by=user
        )
        from annotation import tasks

        transaction.on_commit(lambda: tasks.run_import_job.delay(job.pk))
    return job


def import_job_run(*, job_id: int) -> str:
    """Claimed with a conditional update, so a redelivered task never imports twice."""
    if not ImportJob.objects.filter(pk=job_id, status=ImportJob.Status.QUEUED).update(
        status=ImportJob.Status.RUNNING
    ):
        return "not queued"
    job = ImportJob.objects.select_related("project").get(pk=job_id)
    last = [0]

    def progress(rows: int, _seconds: float = 0.0) -> None:
        if rows - last[0] >= PROGRESS_EVERY:
            last[0] = rows
            ImportJob.objects.filter(pk=job_id).update(rows_done=rows)

    try:
        with default_storage.open(job.file, "rb") as upload:
            result = services.responses_import_file(
                project=job.project, upload=upload, filename=job.filename, progress=progress
            )
    except Exception as exc:
        ImportJob.objects.filter(pk=job_id).update(
            status=ImportJob.Status.FAILED,
            errors=[f"{type(exc).__name__}: {exc}"],
            error_count=1,
            finished_at=timezone.now(),
        )
        raise
    finally:
        default_storage.delete(job.file)  # the rows are in the database, or refused
    ImportJob.objects.filter(pk=job_id).update(
        status=ImportJob.Status.DONE if result.ok else ImportJob.Status.FAILED,
        rows_done=job.rows_total if result.ok else last[0],
        created=result.created,
        already_present=result.already_present,
        error_count=result.error_count,
        errors=[str(e) for e in result.errors],
        finished_at=timezone.now(),
    )
    return f"{result.created} created, {result.error_count} errors"


def project_import_jobs(project: Project):
    return ImportJob.objects.filter(project=project).select_related("created_by")


def import_job_for(user, pk: int, perm: Perm) -> ImportJob:
    job = get_object_or_404(ImportJob.objects.select_related("project"), pk=pk)
    job.project.role = check(user, job.project, perm)
    return job
