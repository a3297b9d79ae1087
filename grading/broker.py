"""What the web and the workers can tell about the broker when it is Redis: whether it answers
now, and whether it came back empty (restarted without persistence, so every queued task is
gone). Other brokers (RabbitMQ, the embedded filesystem queue) keep their messages and answer
None here."""

from __future__ import annotations

import threading

from django.conf import settings

TIMEOUT_S = 0.3
_client = None
_lock = threading.Lock()


def client():
    """A client on the broker's Redis with short timeouts and no retries: a page that asks must
    not wait on a broker that is away. None when the broker is not Redis."""
    global _client
    if not settings.CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
        return None
    with _lock:
        if _client is None:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry

            _client = redis.Redis.from_url(
                settings.CELERY_BROKER_URL,
                socket_connect_timeout=TIMEOUT_S,
                socket_timeout=TIMEOUT_S,
                retry=Retry(NoBackoff(), 0),
            )
        return _client


def reachable() -> bool | None:
    """Whether the broker answers a PING now (None: not a Redis broker, nothing to ask)."""
    redis = client()
    if redis is None:
        return None
    try:
        return bool(redis.ping())
    except Exception:  # noqa: BLE001 - any failure to answer is "unreachable", never an error page
        return False


def _marker_key() -> str:
    return f"{settings.ASSAY_REDIS_PREFIX}:broker-marker"


def came_back_empty() -> bool:
    """True the first time anyone asks after the broker's Redis started without its data (and
    on the very first ask ever): a marker key is set if missing, atomically, so of many
    workers asking exactly one hears True. Raises redis errors while Redis is away."""
    redis = client()
    if redis is None:
        return False
    return bool(redis.set(_marker_key(), "1", nx=True))


def queued_tasks() -> int | None:
    """How many tasks wait in the default queue (None: not a Redis broker). Raises redis
    errors while Redis is away."""
    redis = client()
    if redis is None:
        return None
    return int(redis.llen(settings.CELERY_TASK_DEFAULT_QUEUE))
