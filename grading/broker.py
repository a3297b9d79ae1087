"""What the web and the workers can tell about the broker: on Redis, whether it answers now,
whether it came back empty (restarted without persistence, so every queued task is gone) and
how many tasks wait; on RabbitMQ, how many tasks wait (it keeps its messages, so it never
comes back empty). The embedded filesystem queue answers None here."""

from __future__ import annotations

import threading

from django.conf import settings

TIMEOUT_S = 0.3
# Only the workers' recovery sweep asks RabbitMQ, never a page: an AMQP handshake may take
# longer than a Redis PING.
AMQP_TIMEOUT_S = 3.0
AMQP_SCHEMES = ("amqp://", "amqps://", "pyamqp://")
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


def _down_errors() -> tuple[type[Exception], ...]:
    from kombu.exceptions import OperationalError

    from grading.judges.limits import REDIS_DOWN

    # OSError: refused, reset, timed out (socket.timeout is a TimeoutError, an OSError).
    return (*REDIS_DOWN, OperationalError, OSError)


# The broker not answering, whichever it is: `queued_tasks` raises one of these.
BROKER_DOWN = _down_errors()


def queued_tasks(queue: str | None = None) -> int | None:
    """How many tasks wait in `queue` (default: the default queue): the length of its list on
    Redis, its message count on RabbitMQ. None for other brokers. Raises BROKER_DOWN errors
    while the broker is away."""
    queue = queue or settings.CELERY_TASK_DEFAULT_QUEUE
    if settings.CELERY_BROKER_URL.startswith(AMQP_SCHEMES):
        return _amqp_queued(queue)
    redis = client()
    if redis is None:
        return None
    return int(redis.llen(queue))


def _amqp_queued(queue: str) -> int:
    """A passive queue.declare asks RabbitMQ for the queue's message count and creates
    nothing; a queue nobody has declared yet holds no task."""
    from amqp.exceptions import NotFound
    from kombu import Connection

    with Connection(settings.CELERY_BROKER_URL, connect_timeout=AMQP_TIMEOUT_S) as connection:
        connection.ensure_connection(max_retries=1)
        try:
            declared = connection.default_channel.queue_declare(queue=queue, passive=True)
        except NotFound:
            return 0
        return int(declared.message_count)
