"""Celery doors to annotation services: ids in, one service call, idempotent."""

from celery import shared_task

from annotation import import_jobs


@shared_task(acks_late=True, reject_on_worker_lost=True, time_limit=3600, soft_time_limit=3500)
def run_import_job(job_id: int) -> str:
    return import_jobs.import_job_run(job_id=job_id)
