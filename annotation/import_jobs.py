"""Large uploads: stored, then imported by a worker that writes its progress to the job row.

Small files import within the request (annotation.services.responses_import_jsonl); both take
the same path through validation and COPY, so the rules and the errors are the same."""

from __future__ import annotations

import contextlib
import logging
import threading
from datetime import timedelta

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import DatabaseError, connection, transaction
from django.db.models import F, Q
from django.db.models.functions import Now
from django.shortcuts import get_object_or_404
from django.utils import timezone

from annotation import services
from annotation.importers import detect
from annotation.models import ImportJob
from rubrics import uploads
from rubrics.models import Project
from rubrics.permissions import Perm, check

logger = logging.getLogger(__name__)

BACKGROUND_ABOVE_BYTES = 2 * 1024 * 1024
UPLOADS = "imports"
LIVE = (ImportJob.Status.QUEUED, ImportJob.Status.RUNNING)


def import_job_create(*, project: Project, upload, user, bundle=None) -> ImportJob:
    """Store the upload (and the bundle of files beside it, if any) and queue its import. The
    file is counted first, for the progress bar.

    A file over ASSAY_RESPONSE_UPLOAD_MAX_BYTES (a bundle over ASSAY_BUNDLE_MAX_BYTES), or JSON
    lines that are not text, is refused here (uploads.UploadRefused) before anything is stored;
    the worker finds the format again (annotation.importers.detect) and reads it through the
    same door, bundle and all."""
    uploads.check_size(
        upload,
        name=upload.name,
        limit=settings.RESPONSE_UPLOAD_MAX_BYTES,
        setting="ASSAY_RESPONSE_UPLOAD_MAX_BYTES",
        what="response imports",
    )
    if bundle is not None:
        uploads.check_size(
            bundle,
            name=bundle.name,
            limit=settings.BUNDLE_MAX_BYTES,
            setting="ASSAY_BUNDLE_MAX_BYTES",
            what="bundles",
        )
    format = detect.detect(upload, name=upload.name)
    if format == "jsonl":
        services.check_jsonl(upload, name=upload.name)
    # JSON lines count their rows; a log, a trace file or a bundle shows progress as it stages.
    rows = sum(chunk.count(b"\n") for chunk in upload.chunks()) if format == "jsonl" else 0
    upload.seek(0)
    stored = default_storage.save(f"{UPLOADS}/{project.slug}/{upload.name}", upload)
    stored_bundle = (
        default_storage.save(f"{UPLOADS}/{project.slug}/{bundle.name}", bundle) if bundle else ""
    )
    with transaction.atomic():
        job = ImportJob.objects.create(
            project=project,
            filename=upload.name,
            file=stored,
            bundle=stored_bundle,
            bundle_name=bundle.name if bundle else "",
            rows_total=rows,
            created_by=user,
            heartbeat_at=Now(),
        )
        transaction.on_commit(lambda: _enqueue(job.pk))
    return job


def _enqueue(job_id: int) -> None:
    from annotation import tasks

    tasks.run_import_job.delay(job_id)


def heartbeat_every_s() -> float:
    """How often a running import shows a sign of life: well inside the stall period."""
    return max(0.2, min(5.0, settings.ASSAY_IMPORT_STALL_S / 4))


class _Progress:
    """The job's progress and sign of life, written by a thread of its own on that thread's own
    database connection (Django's connections are per thread). The import holds the task's
    connection in one transaction, in a COPY for most of it: a write there would wait on the
    COPY and stay invisible until the import commits. Called with the rows done so far."""

    def __init__(self, job_id: int, attempt: int):
        self.job_id, self.attempt = job_id, attempt
        self.rows = 0
        self._changed = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"import-{job_id}-progress", daemon=True
        )

    def __call__(self, rows: int, _seconds: float = 0.0) -> None:
        self.rows = rows
        self._changed.set()

    def __enter__(self) -> _Progress:
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        self._changed.set()
        self._thread.join()

    def _run(self) -> None:
        every = heartbeat_every_s()
        try:
            while not self._stop.is_set():
                self._changed.wait(every)
                self._changed.clear()
                if self._stop.is_set():
                    return
                rows = self.rows
                try:
                    ImportJob.objects.filter(
                        pk=self.job_id, status=ImportJob.Status.RUNNING, attempts=self.attempt
                    ).update(heartbeat_at=Now(), rows_done=rows)
                except DatabaseError as exc:  # the import itself will meet it, or not
                    logger.warning("import %s: progress not written (%s)", self.job_id, exc)
                self._stop.wait(0.2)  # at most five writes a second
        finally:
            connection.close()  # this thread's own connection


def import_job_run(*, job_id: int) -> str:
    """Claimed with a conditional update, so a redelivered task never imports twice. The
    import is one transaction: a worker killed during it leaves nothing behind, and the
    recovery sweep (import_jobs_recover) finds the job by its missing sign of life."""
    if not ImportJob.objects.filter(pk=job_id, status=ImportJob.Status.QUEUED).update(
        status=ImportJob.Status.RUNNING,
        attempts=F("attempts") + 1,
        heartbeat_at=Now(),
        rows_done=0,
    ):
        return "not queued"
    job = ImportJob.objects.select_related("project").get(pk=job_id)
    mine = ImportJob.objects.filter(
        pk=job_id, status=ImportJob.Status.RUNNING, attempts=job.attempts
    )
    try:
        with contextlib.ExitStack() as stack:
            progress = stack.enter_context(_Progress(job_id, job.attempts))
            upload = stack.enter_context(default_storage.open(job.file, "rb"))
            bundle = (
                stack.enter_context(default_storage.open(job.bundle, "rb")) if job.bundle else None
            )
            result = services.responses_import_file(
                project=job.project,
                upload=upload,
                filename=job.filename,
                progress=progress,
                bundle=bundle,
                bundle_name=job.bundle_name,
            )
    except Exception as exc:
        if mine.update(
            status=ImportJob.Status.FAILED,
            errors=[f"{type(exc).__name__}: {exc}"],
            error_count=1,
            finished_at=Now(),
        ):
            _delete_uploads(job)
        raise
    ended = mine.update(
        status=ImportJob.Status.DONE if result.ok else ImportJob.Status.FAILED,
        rows_done=job.rows_total if result.ok else progress.rows,
        created=result.created,
        already_present=result.already_present,
        error_count=result.error_count,
        errors=[str(e) for e in result.errors],
        finished_at=Now(),
    )
    if ended:
        _delete_uploads(job)  # the rows are in the database, or refused
    return f"{result.created} created, {result.error_count} errors"


def _delete_uploads(job: ImportJob) -> None:
    _delete_upload(job.file)
    if job.bundle:
        _delete_upload(job.bundle)


def _delete_upload(name: str) -> None:
    try:
        default_storage.delete(name)
    except OSError as exc:  # the orphan sweep tries again
        logger.warning("could not delete the upload %s: %s", name, exc)


LOST = (
    "The worker importing this file stopped {attempts} time{s} before it finished (killed, "
    "out of memory or restarted); nothing was imported. Upload the file again to retry."
)


def import_jobs_recover(*, queue_drained: bool = True) -> dict[str, list[int]]:
    """One look by the recovery sweep (grading.tasks) for imports that lost their worker or
    their task; returns the ids it queued again or failed, and the uploads it deleted.

    A running job with no sign of life for ASSAY_IMPORT_STALL_S lost its worker: its
    transaction died with it, so nothing of it is stored. It is queued again, or after
    ASSAY_IMPORT_MAX_ATTEMPTS tries marked failed with the reason and its upload deleted. A
    queued job that long untouched lost its task (a broker restarted empty) and is queued again
    once the queue has drained (`queue_drained`); a duplicate task is harmless, as the claim is
    conditional. Every transition is a conditional update, so of several workers' sweeps one
    acts."""
    done: dict[str, list[int]] = {"requeued": [], "failed": [], "uploads_deleted": []}
    stall = settings.ASSAY_IMPORT_STALL_S
    if stall <= 0:
        return done
    stale = Q(heartbeat_at__lt=Now() - timedelta(seconds=stall)) | Q(heartbeat_at__isnull=True)
    found = ImportJob.objects.filter(stale, status__in=LIVE).values_list(
        "pk", "status", "attempts", "file", "bundle"
    )
    for pk, status, attempts, name, bundle in list(found):
        job = ImportJob.objects.filter(stale, pk=pk, status=status, attempts=attempts)
        if status == ImportJob.Status.QUEUED:
            if queue_drained and job.update(heartbeat_at=Now()):
                _enqueue(pk)
                done["requeued"].append(pk)
        elif attempts >= settings.ASSAY_IMPORT_MAX_ATTEMPTS:
            if job.update(
                status=ImportJob.Status.FAILED,
                errors=[LOST.format(attempts=attempts, s="" if attempts == 1 else "s")],
                error_count=1,
                finished_at=Now(),
            ):
                _delete_upload(name)
                if bundle:
                    _delete_upload(bundle)
                done["failed"].append(pk)
        elif job.update(status=ImportJob.Status.QUEUED, heartbeat_at=Now(), rows_done=0):
            logger.warning("import %s lost its worker (try %s): queued again", pk, attempts)
            _enqueue(pk)
            done["requeued"].append(pk)
    done["uploads_deleted"] = _delete_orphan_uploads(older_than_s=stall)
    return done


def _delete_orphan_uploads(*, older_than_s: int) -> list[str]:
    """Uploads no queued or running job needs: the job ended and its worker died before it
    deleted the file. A file younger than `older_than_s` may belong to a job being created."""
    try:
        folders, _ = default_storage.listdir(UPLOADS)
    except (FileNotFoundError, NotImplementedError):
        return []
    names = []
    for folder in folders:
        _, files = default_storage.listdir(f"{UPLOADS}/{folder}")
        names += [f"{UPLOADS}/{folder}/{name}" for name in files]
    if not names:
        return []
    live = ImportJob.objects.filter(status__in=LIVE)
    needed = set(live.filter(file__in=names).values_list("file", flat=True)) | set(
        live.filter(bundle__in=names).values_list("bundle", flat=True)
    )
    now = timezone.now()
    deleted = []
    for name in names:
        if name in needed:
            continue
        try:
            modified = default_storage.get_modified_time(name)
        except (FileNotFoundError, NotImplementedError):
            continue
        if (now - modified).total_seconds() < older_than_s:
            continue
        _delete_upload(name)
        deleted.append(name)
    return deleted


def project_import_jobs(project: Project):
    return ImportJob.objects.filter(project=project).select_related("created_by")


def import_job_for(user, pk: int, perm: Perm) -> ImportJob:
    job = get_object_or_404(ImportJob.objects.select_related("project"), pk=pk)
    job.project.role = check(user, job.project, perm)
    return job
