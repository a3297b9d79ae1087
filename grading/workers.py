"""Whether any Celery worker is alive: each worker's main process writes a heartbeat row every
ASSAY_WORKER_HEARTBEAT_S, and the run page reads the newest one. In the database, so it works
on every broker and deployment (the filesystem broker cannot broadcast Celery's ping)."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from grading.models import WorkerHeartbeat

MISSED_BEATS = 3  # a worker silent for this many heartbeats counts as gone
FORGET_AFTER = timedelta(days=1)  # rows of workers gone this long are deleted
CACHE_S = 5  # pages polled every second ask the database at most this often per process


def heartbeat(*, name: str) -> None:
    """Say that worker `name` is alive now (and forget workers gone for a day)."""
    now = timezone.now()
    WorkerHeartbeat.objects.update_or_create(name=name[:200], defaults={"seen_at": now})
    WorkerHeartbeat.objects.filter(seen_at__lt=now - FORGET_AFTER).delete()


def silent_after() -> timedelta:
    return timedelta(seconds=MISSED_BEATS * max(1, settings.ASSAY_WORKER_HEARTBEAT_S))


def last_seen():
    """When a worker last said it was alive (None: never), cached briefly."""
    key = "assay:worker-last-seen"
    seen = cache.get(key, "unknown")
    if seen == "unknown":
        seen = WorkerHeartbeat.objects.order_by("-seen_at").values_list("seen_at", flat=True)
        seen = next(iter(seen), None)
        cache.set(key, seen, CACHE_S)
    return seen


def any_alive() -> bool:
    """Whether some worker wrote a heartbeat within the last MISSED_BEATS beats. With
    heartbeats switched off (ASSAY_WORKER_HEARTBEAT_S=0) nothing can be told: True."""
    if settings.ASSAY_WORKER_HEARTBEAT_S <= 0:
        return True
    seen = last_seen()
    return seen is not None and timezone.now() - seen < silent_after()
