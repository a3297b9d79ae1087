"""The shared judge limits, against the real Redis: leases, expiry, per-minute buckets."""

from __future__ import annotations

import itertools
import threading
import time

import pytest

from grading.limits import Limits, RedisLimiter, redis_client

_ids = itertools.count(900_000)


@pytest.fixture
def client():
    client = redis_client()
    if client is None:
        pytest.fail("The tests run with Redis (CELERY_BROKER_URL=redis://...).")
    return client


def limiter(client, **kwargs) -> RedisLimiter:
    return RedisLimiter(Limits(judge_id=next(_ids), **kwargs), client)


def test_in_flight_never_exceeds_the_limit_across_threads(client):
    lim = limiter(client, max_in_flight=3)
    in_flight, peak, lock = 0, 0, threading.Lock()

    def call():
        nonlocal in_flight, peak
        token = lim.acquire()
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
        time.sleep(0.02)
        with lock:
            in_flight -= 1
        lim.release(token)

    threads = [threading.Thread(target=call) for _ in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert peak == 3


def test_a_dead_workers_lease_expires(client):
    lim = limiter(client, max_in_flight=1, lease_s=0.3)
    lim.acquire()  # never released, as by a worker killed with -9
    started = time.monotonic()
    token = lim.acquire()
    assert 0.2 < time.monotonic() - started < 3
    lim.release(token)


def test_requests_per_minute_bucket_says_how_long_to_wait(client):
    lim = limiter(client, max_in_flight=0, requests_per_minute=6)
    args = lambda: ["t", 1000, 0, 6, 0, 1]  # noqa: E731
    for _ in range(6):
        assert lim._acquire(keys=lim.keys, args=args()) == 0
    wait_ms = lim._acquire(keys=lim.keys, args=args())
    assert 9000 <= wait_ms <= 10_100  # one request refills every 10 s


def test_tokens_per_minute_bucket(client):
    lim = limiter(client, max_in_flight=0, tokens_per_minute=1000)
    assert lim._acquire(keys=lim.keys, args=["t", 1000, 0, 0, 1000, 800]) == 0
    wait_ms = lim._acquire(keys=lim.keys, args=["t", 1000, 0, 0, 1000, 400])
    assert 11_000 <= wait_ms <= 12_100  # 200 left; 200 more tokens take 12 s
