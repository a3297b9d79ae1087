"""Per-judge limits shared by every worker process and machine: requests in flight, requests
per minute and tokens per minute.

State lives in Redis and changes only inside Lua scripts, so checks and takes are atomic:

* in flight: a sorted set of leases (member: a random token, score: when the lease expires).
  A worker killed with -9 never releases its leases; they expire after the judge timeout plus
  a margin, so a dead worker cannot hold the judge's capacity for ever.
* per minute: two token buckets (requests and tokens) refilled continuously at limit/60 per
  second, holding at most one minute's worth. A call reserves an estimate of its tokens; once
  the judge has answered, the estimate is corrected from the reply's usage (the difference is
  debited or credited), so the bucket follows what the judge really counted.

A caller that finds the judge full waits on a list that every release pushes to (BLPOP), so
waiting costs no polling; rate-limited callers sleep for the time the script says a bucket
needs to refill. Every wait ends at the caller's deadline (`SlotTimeout`).

**Leases serve several calls.** For a judge limited by calls in flight only (no per-minute
limits), a lease released in a process where other calls wait for a slot is handed to one of
them directly, with no round trip to Redis; a lease serves calls that way for at most
`REUSE_S` seconds after Redis granted it, then goes back to Redis, where every process's
callers compete for it again. In each process one waiting caller at a time asks Redis for a
slot on behalf of the others. A call still never runs without a lease in Redis, so the limit
holds across processes; only the round trips per call go. (With per-minute limits each call
is charged in Redis, so each takes and returns its own lease.)

**A response's leases can be taken together** (`RedisLimiter.together`): the reward endpoint
asks Redis once for a lease for each of a response's calls, and returns them in one round
trip once its last call ends, rather than two round trips per call on the trainer's clock.
Only when the judge has room for all of them; otherwise the calls take theirs one by one.

Without Redis (the embedded default) the limits hold per process only.
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

# For judges limited by calls in flight only: up to ARGV[2] leases in one round trip (named
# ARGV[1]:1, ARGV[1]:2, ...), as many as there is room for but none unless there is room for
# at least ARGV[5]; returns how many.
ACQUIRE_MANY = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local inflight = KEYS[1]
local want, lease_ms, max_inflight = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', inflight, '-inf', now)
local n = math.min(want, max_inflight - redis.call('ZCARD', inflight))
if n <= 0 or n < tonumber(ARGV[5]) then return 0 end
for i = 1, n do
  redis.call('ZADD', inflight, now + lease_ms, ARGV[1] .. ':' .. i)
end
redis.call('PEXPIRE', inflight, lease_ms + 60000)
return n
"""

# Release the leases ARGV[2..] (judges without per-minute limits), waking one waiter for
# each; ARGV[1] is the judge's in-flight limit (the longest the wake list need be).
RELEASE_MANY = """
local n = redis.call('ZREM', KEYS[1], unpack(ARGV, 2))
if n > 0 then
  for i = 1, n do redis.call('LPUSH', KEYS[2], '1') end
  redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[1]))
  redis.call('PEXPIRE', KEYS[2], 600000)
end
return n
"""

# Release a lease (waking one waiter) and correct the tokens bucket by `delta` tokens: what
# the judge counted minus what the call reserved (negative: credit). A debt is kept, down to
# one minute's worth, so the next callers wait for it.
RELEASE = """
if ARGV[1] ~= '' and redis.call('ZREM', KEYS[1], ARGV[1]) == 1 then
  redis.call('LPUSH', KEYS[2], '1')
  redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[2]))
  redis.call('PEXPIRE', KEYS[2], 600000)
end
local tpm, delta = tonumber(ARGV[3]), tonumber(ARGV[4])
if tpm > 0 and delta ~= 0 then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local b = redis.call('HMGET', KEYS[3], 'v', 't')
  local v = tonumber(b[1]) or tpm
  local ts = tonumber(b[2]) or now
  v = math.min(tpm, v + (now - ts) * tpm / 60000)
  v = math.max(-tpm, math.min(tpm, v - delta))
  redis.call('HSET', KEYS[3], 'v', v, 't', now)
  redis.call('PEXPIRE', KEYS[3], 120000)
end
return 1
"""


class SlotTimeout(Exception):
    """No room at the judge before the caller's deadline."""


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


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else deadline - time.monotonic()


class _LocalLimiter:
    """The embedded default: in-flight only, per process."""

    _sems: dict[int, threading.BoundedSemaphore] = {}
    _lock = threading.Lock()

    def __init__(self, limits: Limits):
        with self._lock:
            self.sem = self._sems.setdefault(
                limits.judge_id, threading.BoundedSemaphore(limits.max_in_flight)
            )

    def acquire(self, tokens: int = 0, deadline: float | None = None) -> str:
        remaining = _remaining(deadline)
        if not self.sem.acquire(timeout=None if remaining is None else max(0.0, remaining)):
            raise SlotTimeout("no free slot before the deadline")
        return ""

    def release(self, token: str, tokens_delta: int = 0) -> None:
        self.sem.release()

    def together(self, calls: int) -> None:
        return None  # no round trips to save


@dataclass
class _Lease:
    token: str
    granted: float  # time.monotonic() when Redis granted it


class RedisLimiter:
    # A lease serves calls of its process for at most this long (and a fraction of its
    # expiry, which must outlast the last call it serves); then it goes back to Redis.
    REUSE_S = 2.0

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
        self._acquire_many = client.register_script(ACQUIRE_MANY)
        self._release_many = client.register_script(RELEASE_MANY)
        self.round_trips = 0  # to Redis, for figures and tests
        self._trips_lock = threading.Lock()
        self.reuse_s = (
            min(self.REUSE_S, limits.lease_s / 20)
            if limits.max_in_flight > 0
            and not limits.requests_per_minute
            and not limits.tokens_per_minute
            else 0.0
        )
        self._cond = threading.Condition()
        self._free: list[_Lease] = []  # leases handed back, waiting for a caller of ours
        self._leases: dict[str, _Lease] = {}
        self._waiting = 0  # callers of this process in acquire, the asker included
        self._asking = False  # one of them is asking Redis

    # --- Redis ---------------------------------------------------------------------------

    def _trip(self) -> None:
        with self._trips_lock:
            self.round_trips += 1

    def _patiently(self, call):
        """`call()` to Redis, waiting while Redis is away (a restart) up to
        ASSAY_SERVICE_WAIT_S. No judge call starts meanwhile: the limits cannot be checked,
        and calling anyway could exceed them across workers. After that the error goes up (the
        task fails and the recovery sweep queues it again). A Redis that comes back empty has
        lost the leases and buckets; they start again full, as a fresh Redis does."""
        away_since = None
        while True:
            try:
                return call()
            except REDIS_DOWN as exc:
                away_since = away_since or time.monotonic()
                if time.monotonic() - away_since > settings.ASSAY_SERVICE_WAIT_S:
                    raise
                logger.warning("judge limits: Redis is not answering (%s); waiting", exc)
                time.sleep(random.uniform(0.2, 1.0))  # noqa: S311

    def _take(self, tokens: int, deadline: float | None) -> str:
        """Wait for Redis to grant a lease (or raise SlotTimeout at the deadline)."""
        token = uuid.uuid4().hex
        lim = self.limits
        while True:
            self._trip()
            wait = int(
                self._patiently(
                    lambda: self._acquire(
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
            )
            if wait == 0:
                return token
            remaining = _remaining(deadline)
            if remaining is not None and remaining <= 0:
                raise SlotTimeout("no free slot before the deadline")
            if wait < 0:
                # Full: sleep until some release wakes us (or a lease may have expired).
                timeout = 1.0 if remaining is None else max(0.01, min(1.0, remaining))
                self._patiently(lambda t=timeout: self.client.blpop([self.keys[3]], timeout=t))
            else:
                pause = wait / 1000 * random.uniform(1.0, 1.2)  # noqa: S311
                if remaining is not None and pause > remaining:
                    raise SlotTimeout(f"the judge's per-minute limits need {pause:.1f} s more")
                time.sleep(pause)

    def _take_many(self, want: int, deadline: float | None) -> list[str]:
        """Wait for Redis to grant between 1 and `want` leases (judges without per-minute
        limits only), or raise SlotTimeout at the deadline."""
        base = uuid.uuid4().hex
        lim = self.limits
        while True:
            self._trip()
            n = int(
                self._patiently(
                    lambda: self._acquire_many(
                        keys=[self.keys[0]],
                        args=[base, want, int(lim.lease_s * 1000), lim.max_in_flight, 1],
                    )
                )
            )
            if n > 0:
                return [f"{base}:{i}" for i in range(1, n + 1)]
            remaining = _remaining(deadline)
            if remaining is not None and remaining <= 0:
                raise SlotTimeout("no free slot before the deadline")
            timeout = 1.0 if remaining is None else max(0.01, min(1.0, remaining))
            self._patiently(lambda t=timeout: self.client.blpop([self.keys[3]], timeout=t))

    def together(self, calls: int) -> Together | None:
        """Leases for `calls` calls about to start at once (one response's), all taken in one
        round trip to Redis; None when this judge charges each call in Redis (per-minute
        limits) or has no room for all of them now (the calls then take theirs one by one)."""
        lim = self.limits
        if not self.reuse_s or calls < 2 or calls > lim.max_in_flight:
            return None
        base = uuid.uuid4().hex
        self._trip()
        try:
            n = int(
                self._acquire_many(
                    keys=[self.keys[0]],
                    args=[base, calls, int(lim.lease_s * 1000), lim.max_in_flight, calls],
                )
            )
        except REDIS_DOWN:
            return None  # each call then waits for Redis on its own, as it would have
        if n < calls:
            return None
        tokens = [f"{base}:{i}" for i in range(1, n + 1)]
        now = time.monotonic()
        with self._cond:  # so that `release` hands them on as it does any other
            for token in tokens:
                self._leases[token] = _Lease(token, now)
        return Together(self, tokens)

    def _wanted_here(self) -> bool:
        """Whether a caller of this process waits for a slot that no lease here serves yet
        (the one asking Redis included: a release there wakes it)."""
        with self._cond:
            return self._waiting > len(self._free)

    def _return_together(self, tokens: list[str]) -> None:
        """Return leases taken together: handed to callers of this process waiting for a
        slot while they are fresh, as `release` does; the rest to Redis in one round trip."""
        back = []
        now = time.monotonic()
        with self._cond:
            for token in tokens:
                lease = self._leases.pop(token, None)
                if (
                    lease is not None
                    and now - lease.granted < self.reuse_s
                    and self._waiting - self._asking > len(self._free)
                ):
                    self._free.append(lease)
                    self._cond.notify()
                else:
                    back.append(token)
        if not back:
            return
        tokens = back
        self._trip()
        try:
            self._release_many(
                keys=[self.keys[0], self.keys[3]], args=[self.limits.max_in_flight, *tokens]
            )
        except REDIS_DOWN as exc:
            logger.warning("judge limits: could not release leases (%s); they will expire", exc)

    def _give_back(self, token: str, tokens_delta: int = 0) -> None:
        self._trip()
        try:
            self._release(
                keys=[self.keys[0], self.keys[3], self.keys[2]],
                args=[
                    token,
                    self.limits.max_in_flight,
                    self.limits.tokens_per_minute,
                    int(tokens_delta),
                ],
            )
        except REDIS_DOWN as exc:
            # The judge's answer matters more than the lease, which expires on its own (and a
            # Redis that restarted empty has dropped it already).
            logger.warning("judge limits: could not release a lease (%s); it will expire", exc)

    # --- Calls -----------------------------------------------------------------------------

    def acquire(self, tokens: int = 0, deadline: float | None = None) -> str:
        """Block until the judge has room for one request of about `tokens` tokens; returns
        the lease token to release. Raises SlotTimeout when `deadline` (time.monotonic())
        passes first."""
        if not self.reuse_s:
            return self._take(tokens, deadline)
        stale: list[str] = []
        try:
            handed = self._wait_here(deadline, stale)
        finally:
            for token in stale:
                self._give_back(token)
        if handed is not None:
            return handed
        # This caller asks Redis for everyone here waiting (one round trip for all of them);
        # the others wait for it or a handed lease.
        try:
            with self._cond:
                want = min(self.limits.max_in_flight, self._waiting - len(self._free))
            granted = self._take_many(max(1, want), deadline)
        except BaseException:
            with self._cond:
                self._asking = False
                self._waiting -= 1
                self._cond.notify()
            raise
        now = time.monotonic()
        surplus: list[str] = []
        with self._cond:
            self._asking = False
            self._waiting -= 1
            self._leases[granted[0]] = _Lease(granted[0], now)
            # The rest go to the callers waiting here, as if released to them; any beyond
            # those still waiting go back.
            for token in granted[1:]:
                if self._waiting > len(self._free):
                    self._free.append(_Lease(token, now))
                else:
                    surplus.append(token)
            self._cond.notify(len(self._free) + 1)  # and one to ask next, if need be
        for token in surplus:
            self._give_back(token)
        return granted[0]

    def _wait_here(self, deadline: float | None, stale: list[str]) -> str | None:
        """A lease handed back in this process, or None when the caller is to ask Redis."""
        with self._cond:
            self._waiting += 1
            try:
                while True:
                    lease = self._fresh_free(stale)
                    if lease is not None:
                        self._waiting -= 1
                        self._leases[lease.token] = lease
                        return lease.token
                    if not self._asking:
                        self._asking = True
                        return None  # still counted as waiting, until Redis answers
                    remaining = _remaining(deadline)
                    if remaining is not None and remaining <= 0:
                        raise SlotTimeout("no free slot before the deadline")
                    self._cond.wait(0.5 if remaining is None else min(0.5, remaining))
            except BaseException:
                self._waiting -= 1
                # Leases handed to callers who gave up go back to Redis.
                while len(self._free) > self._waiting - self._asking:
                    stale.append(self._free.pop().token)
                raise

    def _fresh_free(self, stale: list[str]) -> _Lease | None:
        now = time.monotonic()
        while self._free:
            lease = self._free.pop()
            if now - lease.granted < self.reuse_s:
                return lease
            stale.append(lease.token)
        return None

    def release(self, token: str, tokens_delta: int = 0) -> None:
        """Return a lease; `tokens_delta` corrects the tokens bucket (used - reserved)."""
        if self.reuse_s:
            with self._cond:
                lease = self._leases.pop(token, None)
                # Hand it to a caller of ours waiting for a slot and not yet served (the
                # asker excepted: it waits on Redis, which a release there wakes).
                if (
                    lease is not None
                    and self._waiting - self._asking > len(self._free)
                    and time.monotonic() - lease.granted < self.reuse_s
                ):
                    self._free.append(lease)
                    self._cond.notify()
                    return
        self._give_back(token, tokens_delta)


class Together:
    """The leases of one response's calls, taken at once (`RedisLimiter.together`): one for
    each call, so no call of the response ever waits for a slot or goes to Redis for one.
    A call that ends puts its lease back here (a retry of another call may take it again,
    within `RedisLimiter.reuse_s` of the grant);
    `close()`, once every call has ended, returns them all in one round trip. A finished
    call's slot so stays taken until the response's last call ends, which a caller waiting
    for all of them anyway (the reward endpoint) does not notice; but while another caller
    of this process waits for a slot, a lease is handed to it as its call ends (as `release`
    does). Leases released after `close()` (a call still running when its response failed)
    go back one by one."""

    def __init__(self, limiter: RedisLimiter, tokens: list[str]):
        self._limiter = limiter
        self._mine = frozenset(tokens)
        self._free = list(tokens)
        self._granted = time.monotonic()
        self._lock = threading.Lock()
        self._closed = False

    def _fresh(self) -> bool:
        # A lease serves a retry only while fresh, as a lease handed on in `RedisLimiter`
        # does: it expires in Redis lease_s after it was granted.
        return time.monotonic() - self._granted < self._limiter.reuse_s

    def acquire(self, tokens: int = 0, deadline: float | None = None) -> str:
        fresh = self._fresh()
        with self._lock:
            if self._free and fresh and not self._closed:
                return self._free.pop()
            stale, self._free = self._free, []
        if stale:  # not kept idle while this call (and maybe others) wait for a slot
            self._limiter._return_together(stale)
        return self._limiter.acquire(tokens, deadline)

    def release(self, token: str, tokens_delta: int = 0) -> None:
        if token in self._mine and self._fresh() and not self._limiter._wanted_here():
            with self._lock:
                if not self._closed:
                    self._free.append(token)
                    return
        self._limiter.release(token, tokens_delta)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            free, self._free = self._free, []
        if free:
            self._limiter._return_together(free)


def limiter_for(limits: Limits):
    client = redis_client()
    if client is None:
        return _LocalLimiter(limits)
    return RedisLimiter(limits, client)
