"""Per-judge limits shared by every worker process and machine: requests in flight, requests
per minute and tokens per minute.

State lives in Redis and changes only inside one Lua script, so checks and takes are atomic:

* in flight: a sorted set of leases (member: a random token, score: when the lease expires).
  A worker killed with -9 never releases its leases; they expire after the judge timeout plus
  a margin, so a dead worker cannot hold the judge's capacity for ever.
* per minute: two token buckets (requests and tokens) refilled continuously at limit/60 per
  second, holding at most one minute's worth.

A caller that finds the judge full waits on a list that every release pushes to (BLPOP), so
waiting costs no polling; rate-limited callers sleep for the time the script says a bucket
needs to refill. Without Redis (the embedded default) the limits hold per process only.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from dataclasses import dataclass

from django.conf import settings

logger = logging.getLogger(__name__)

ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local inflight, rpm_key, tpm_key, wake = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local token, lease_ms = ARGV[1], tonumber(ARGV[2])
local max_inflight, rpm, tpm = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local cost = tonumber(ARGV[6])
if max_inflight > 0 then
  redis.call('ZREMRANGEBYSCORE', inflight, '-inf', now)
  if redis.call('ZCARD', inflight) >= max_inflight then return -1 end
end
local function level(key, rate, want)
  if rate <= 0 then return 0, 0 end
  local b = redis.call('HMGET', key, 'v', 't')
  local v = tonumber(b[1]) or rate
  local ts = tonumber(b[2]) or now
  v = math.min(rate, v + (now - ts) * rate / 60000)
  want = math.min(want, rate)
  if v < want then return math.ceil((want - v) * 60000 / rate), v end
  return 0, v - want
end
local wait_r, left_r = level(rpm_key, rpm, 1)
local wait_t, left_t = level(tpm_key, tpm, cost)
local wait = math.max(wait_r, wait_t)
if wait > 0 then return wait end
if rpm > 0 then
  redis.call('HSET', rpm_key, 'v', left_r, 't', now)
  redis.call('PEXPIRE', rpm_key, 120000)
end
if tpm > 0 then
  redis.call('HSET', tpm_key, 'v', left_t, 't', now)
  redis.call('PEXPIRE', tpm_key, 120000)
end
if max_inflight > 0 then
  redis.call('ZADD', inflight, now + lease_ms, token)
  redis.call('PEXPIRE', inflight, lease_ms + 60000)
end
return 0
"""

RELEASE = """
if redis.call('ZREM', KEYS[1], ARGV[1]) == 1 then
  redis.call('LPUSH', KEYS[2], '1')
  redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[2]))
  redis.call('PEXPIRE', KEYS[2], 600000)
end
return 1
"""


@dataclass(frozen=True)
class Limits:
    judge_id: int
    max_in_flight: int
    requests_per_minute: int = 0
    tokens_per_minute: int = 0
    lease_s: float = 70.0


_redis = None
_redis_lock = threading.Lock()


def _redis_down_errors() -> tuple[type[Exception], ...]:
    try:
        from redis.exceptions import ConnectionError, TimeoutError
    except ImportError:  # the embedded default may run without the redis package
        return ()
    return (ConnectionError, TimeoutError)


# Redis not answering (refused, reset, timed out, or "loading the dataset" after a restart,
# which redis-py reports as a BusyLoadingError, a ConnectionError).
REDIS_DOWN = _redis_down_errors()


def redis_client():
    """One client (and connection pool) per process, or None without Redis."""
    global _redis
    if not settings.ASSAY_REDIS_URL:
        return None
    with _redis_lock:
        if _redis is None:
            import redis

            _redis = redis.Redis.from_url(
                settings.ASSAY_REDIS_URL, max_connections=2048, health_check_interval=30
            )
        return _redis


def key(judge_id: int, name: str) -> str:
    return f"{settings.ASSAY_REDIS_PREFIX}:judge:{judge_id}:{name}"


class _LocalLimiter:
    """The embedded default: in-flight only, per process."""

    _sems: dict[int, threading.BoundedSemaphore] = {}
    _lock = threading.Lock()

    def __init__(self, limits: Limits):
        with self._lock:
            self.sem = self._sems.setdefault(
                limits.judge_id, threading.BoundedSemaphore(limits.max_in_flight)
            )

    def acquire(self, tokens: int = 0) -> str:
        self.sem.acquire()
        return ""

    def release(self, token: str) -> None:
        self.sem.release()


class RedisLimiter:
    def __init__(self, limits: Limits, client):
        self.limits = limits
        self.client = client
        self.keys = [
            key(limits.judge_id, "inflight"),
            key(limits.judge_id, "rpm"),
            key(limits.judge_id, "tpm"),
            key(limits.judge_id, "wake"),
        ]
        self._acquire = client.register_script(ACQUIRE)
        self._release = client.register_script(RELEASE)

    def acquire(self, tokens: int = 0) -> str:
        """Block until the judge has room for one request of about `tokens` tokens; returns
        the lease token to release.

        While Redis is away (a restart) no call starts: the limits cannot be checked, and
        calling anyway could exceed them across workers. The caller waits for Redis up to
        ASSAY_SERVICE_WAIT_S, then the error goes up (the task fails and is queued again by
        the recovery sweep). A Redis that comes back empty has lost the leases and buckets; they
        start again full, which is how a fresh Redis starts too."""
        token = uuid.uuid4().hex
        lim = self.limits
        away_since = None
        while True:
            try:
                wait = int(
                    self._acquire(
                        keys=self.keys,
                        args=[
                            token,
                            int(lim.lease_s * 1000),
                            lim.max_in_flight,
                            lim.requests_per_minute,
                            lim.tokens_per_minute,
                            max(1, tokens),
                        ],
                    )
                )
                if wait < 0:
                    # Full: sleep until some release wakes us (or a lease may have expired).
                    self.client.blpop([self.keys[3]], timeout=1)
                    continue
            except REDIS_DOWN as exc:
                away_since = away_since or time.monotonic()
                if time.monotonic() - away_since > settings.ASSAY_SERVICE_WAIT_S:
                    raise
                logger.warning("judge limits: Redis is not answering (%s); waiting", exc)
                time.sleep(random.uniform(0.2, 1.0))  # noqa: S311
                continue
            if wait == 0:
                return token
            time.sleep(wait / 1000 * random.uniform(1.0, 1.2))  # noqa: S311

    def release(self, token: str) -> None:
        try:
            self._release(
                keys=[self.keys[0], self.keys[3]], args=[token, self.limits.max_in_flight]
            )
        except REDIS_DOWN as exc:
            # The judge's answer matters more than the lease, which expires on its own (and a
            # Redis that restarted empty has dropped it already).
            logger.warning("judge limits: could not release a lease (%s); it will expire", exc)


def limiter_for(limits: Limits):
    client = redis_client()
    if client is None:
        return _LocalLimiter(limits)
    return RedisLimiter(limits, client)
