"""Celery doors to grading services: ids in, one service call, idempotent."""

from celery import shared_task

from grading import services


@shared_task(acks_late=True, reject_on_worker_lost=True, time_limit=300, soft_time_limit=280)
def run_start(run_id: int) -> int:
    return services.run_start(run_id=run_id)


# Idempotent (verdicts are unique per item in the database), hence late acknowledgement: a
# task whose worker dies is delivered again and finishes only what is missing.
@shared_task(acks_late=True, reject_on_worker_lost=True, time_limit=1800, soft_time_limit=1780)
def grade_response(run_id: int, response_id: int) -> str:
    return services.grade_response(run_id=run_id, response_id=response_id)


@shared_task(acks_late=True, reject_on_worker_lost=True, time_limit=3600, soft_time_limit=3500)
def build_snapshot(snapshot_id: int) -> str:
    from grading import datasets

    return datasets.snapshot_build(snapshot_id=snapshot_id)
