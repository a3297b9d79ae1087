"""Celery doors to grading services: ids in, one service call, idempotent."""

import logging
import os
import socket
import threading
import time

from celery import shared_task
from celery.signals import worker_ready
from django.conf import settings
from django.db import InterfaceError, OperationalError

from grading import services

logger = logging.getLogger(__name__)

# A task that still meets a lost database after waiting for it (services._with_db) goes back
# to the queue with a growing delay instead of failing, so no response is dropped.
DB_RETRY = {
    "autoretry_for": (OperationalError, InterfaceError),
    "retry_backoff": 2,
    "retry_backoff_max": 60,
    "retry_jitter": True,
    "max_retries": 20,
}


@shared_task(
    acks_late=True, reject_on_worker_lost=True, time_limit=300, soft_time_limit=280, **DB_RETRY
)
def run_start(run_id: int) -> int:
    return services.run_start(run_id=run_id)


# Idempotent (verdicts are unique per item in the database), hence late acknowledgement: a
# task whose worker dies is delivered again and finishes only what is missing.
@shared_task(
    acks_late=True, reject_on_worker_lost=True, time_limit=1800, soft_time_limit=1780, **DB_RETRY
)
def grade_response(run_id: int, response_id: int) -> str:
    return services.grade_response(run_id=run_id, response_id=response_id)


# A chunk of one run's responses (services.grade_responses), idempotent as above.
@shared_task(
    acks_late=True, reject_on_worker_lost=True, time_limit=1800, soft_time_limit=1780, **DB_RETRY
)
def grade_responses(run_id: int, response_ids: list[int]) -> str:
    said = services.grade_responses(run_id=run_id, response_ids=response_ids)
    return "; ".join(sorted({f"{said.count(s)} {s}" for s in said}))


@shared_task(acks_late=True, reject_on_worker_lost=True, time_limit=3600, soft_time_limit=3500)
def build_snapshot(snapshot_id: int) -> str:
    from grading.datasets import snapshots

    return snapshots.snapshot_build(snapshot_id=snapshot_id)


# --- The recovery sweep: a thread in every worker's main process --------------------------


def _recovery_loop() -> None:
    while True:
        # Runs, then background imports: one failing look does not skip the other.
        for check in (services.recovery_check, services.imports_recover):
            try:
                done = check()
                if done and any(done.values()):
                    logger.warning("recovery sweep: %s", done)
            except services.DB_DOWN as exc:
                logger.warning("recovery sweep: the database is not answering (%s)", exc)
            except Exception:
                logger.exception("recovery sweep failed; trying again later")
        services.close_db_connection()  # never keep a connection a database restart may break
        time.sleep(settings.ASSAY_RECOVERY_CHECK_S)


@worker_ready.connect
def warm_up(**_kwargs) -> None:
    """Make the judge's connection pool and thread pool (and the TLS context an https judge
    needs) before the first task, so a run's first calls do not wait for them."""
    from grading import engine

    engine.http_client()._tls()
    engine.thread_pool()


@worker_ready.connect
def start_recovery_sweep(**_kwargs) -> None:
    """Every worker looks for lost work (services.recovery_check), so a deployment needs no
    extra process: no beat, no cron."""
    if settings.ASSAY_RECOVERY_CHECK_S <= 0:
        return
    threading.Thread(target=_recovery_loop, name="assay-recovery", daemon=True).start()


# --- The heartbeat: a thread in every worker's main process -------------------------------


def _heartbeat_loop(name: str) -> None:
    from grading import workers

    while True:
        try:
            workers.heartbeat(name=name)
        except Exception:  # the database is away: the page will say no worker is seen
            logger.warning("heartbeat: could not write it; trying again later", exc_info=True)
        finally:
            services.close_db_connection()
        time.sleep(settings.ASSAY_WORKER_HEARTBEAT_S)


@worker_ready.connect
def start_heartbeat(sender=None, **_kwargs) -> None:
    """Every worker says it is alive (grading.workers), so a run page can tell a run that
    waits for its judge from one that waits for a worker nobody started."""
    if settings.ASSAY_WORKER_HEARTBEAT_S <= 0:
        return
    name = getattr(sender, "hostname", None) or f"{socket.gethostname()}:{os.getpid()}"
    threading.Thread(
        target=_heartbeat_loop, args=(name,), name="assay-heartbeat", daemon=True
    ).start()
