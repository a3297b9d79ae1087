"""Celery doors to grading services: ids in, one service call, idempotent."""

from celery import shared_task

from grading import services


@shared_task(acks_late=True, reject_on_worker_lost=True, time_limit=300, soft_time_limit=280)
def run_start(run_id: int) -> int:
    return services.run_start(run_id=run_id)


@shared_task(acks_late=True, reject_on_worker_lost=True, time_limit=900, soft_time_limit=880)
def grade_response(run_id: int, response_id: int) -> str:
    return services.grade_response(run_id=run_id, response_id=response_id)


@shared_task(acks_late=True, reject_on_worker_lost=True, time_limit=3600, soft_time_limit=3500)
def build_snapshot(snapshot_id: int) -> str:
    from grading import datasets

    return datasets.snapshot_build(snapshot_id=snapshot_id)
