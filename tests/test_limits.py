"""The shared judge limits, against the real Redis: leases, expiry, per-minute buckets."""

from __future__ import annotations

import itertools
import threading
import time

import pytest

from grading.judges.limits import Limits, RedisLimiter, SlotTimeout, redis_client

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


def test_leases_serve_several_calls_and_the_limit_holds_across_processes(client):
    """Two limiters on one judge stand for two worker processes; leases handed over inside a
    process still keep the calls in flight at or under the limit, with fewer round trips."""
    judge_id = next(_ids)
    processes = [RedisLimiter(Limits(judge_id=judge_id, max_in_flight=4), client) for _ in "ab"]
    in_flight, peak, calls, lock = 0, 0, 0, threading.Lock()
    served = {0: 0, 1: 0}

    def worker(p: int):
        nonlocal in_flight, peak, calls
        lim = processes[p]
        for _ in range(15):
            token = lim.acquire()
            with lock:
                in_flight += 1
                peak = max(peak, in_flight)
                calls += 1
                served[p] += 1
                held = client.zcard(lim.keys[0])
            assert held <= 4  # what Redis counts never exceeds the limit either
            time.sleep(0.01)
            with lock:
                in_flight -= 1
            lim.release(token)

    threads = [threading.Thread(target=worker, args=(i % 2,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert calls == 240 and served == {0: 120, 1: 120}
    assert peak == 4
    round_trips = sum(lim.round_trips for lim in processes)
    assert round_trips < calls  # one acquire and one release each would be 480
    assert client.zcard(processes[0].keys[0]) == 0  # every lease went back


def test_a_fresh_lease_is_handed_over_here_and_an_old_one_goes_back_to_redis(client):
    lim = limiter(client, max_in_flight=1)
    lim.reuse_s = 0.3
    first = lim.acquire()
    got, waiters = start_waiters(lim, 2)
    time.sleep(0.1)  # one waits on Redis for both, the other for a lease handed over here
    lim.release(first)
    wait_for_len(got, 1)
    assert got == [first]  # the same lease, still held in Redis: no round trip
    assert client.zscore(lim.keys[0], first) is not None
    time.sleep(0.35)  # now older than reuse_s
    lim.release(first)
    assert client.zscore(lim.keys[0], first) is None  # back in Redis, for any process
    wait_for_len(got, 2)
    assert got[1] != first  # the one waiting on Redis got a lease of its own
    lim.release(got[1])
    for t in waiters:
        t.join(timeout=5)
    assert client.zcard(lim.keys[0]) == 0


def start_waiters(lim, n: int) -> tuple[list[str], list[threading.Thread]]:
    """`n` callers of `lim`'s process waiting for a slot, each on a thread; their leases
    land in the list as they get them."""
    got: list[str] = []
    waiters = [
        threading.Thread(target=lambda: got.append(lim.acquire(deadline=time.monotonic() + 5)))
        for _ in range(n)
    ]
    for t in waiters:
        t.start()
    return got, waiters


def release_all(client, lim, got: list[str], waiters: list[threading.Thread]) -> None:
    for token in got:
        lim.release(token)
    for t in waiters:
        t.join(timeout=5)
    assert client.zcard(lim.keys[0]) == 0  # every lease went back


def wait_for_len(items: list, n: int, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while len(items) < n:
        assert time.monotonic() < deadline, f"waited for {n} items, have {items}"
        time.sleep(0.01)


@pytest.mark.parametrize("limits", [{}, {"tokens_per_minute": 100_000}])
def test_a_caller_gives_up_at_its_deadline_when_the_judge_stays_full(client, limits):
    judge_id = next(_ids)
    holder = RedisLimiter(Limits(judge_id=judge_id, max_in_flight=1, **limits), client)
    other = RedisLimiter(Limits(judge_id=judge_id, max_in_flight=1, **limits), client)
    token = holder.acquire()
    started = time.monotonic()
    with pytest.raises(SlotTimeout):
        other.acquire(deadline=started + 0.5)
    assert 0.45 < time.monotonic() - started < 2
    holder.release(token)
    other.release(other.acquire(deadline=time.monotonic() + 2))  # room again: served


def test_per_minute_wait_beyond_the_deadline_gives_up_at_once(client):
    lim = limiter(client, max_in_flight=0, requests_per_minute=1)
    lim.release(lim.acquire())
    started = time.monotonic()
    with pytest.raises(SlotTimeout):
        lim.acquire(deadline=started + 1)  # the next request refills in 60 s
    assert time.monotonic() - started < 0.5


def bucket(client, lim) -> float:
    return float(client.hget(lim.keys[2], "v"))


def test_tokens_bucket_is_corrected_by_what_the_judge_counted(client):
    lim = limiter(client, max_in_flight=2, tokens_per_minute=60_000)
    token = lim.acquire(tokens=20_000)
    assert bucket(client, lim) == pytest.approx(40_000, abs=100)
    lim.release(token, tokens_delta=-15_000)  # the judge counted 5,000, not 20,000
    assert bucket(client, lim) == pytest.approx(55_000, abs=100)
    token = lim.acquire(tokens=1_000)
    lim.release(token, tokens_delta=+30_000)  # and here 31,000, far above the estimate
    assert bucket(client, lim) == pytest.approx(24_000, abs=100)
    # A debt beyond a minute's worth is kept only down to minus one minute's worth.
    lim.release(lim.acquire(tokens=1), tokens_delta=500_000)
    assert bucket(client, lim) == pytest.approx(-60_000, abs=100)
    wait_ms = lim._acquire(keys=lim.keys, args=["t", 1000, 0, 0, 60_000, 1_000])
    assert 60_900 <= wait_ms <= 61_100  # the debt is waited off before the next call


def test_a_responses_leases_are_taken_and_returned_in_one_round_trip_each(client):
    lim = limiter(client, max_in_flight=5)
    group = lim.together(4)
    assert group is not None and lim.round_trips == 1
    assert client.zcard(lim.keys[0]) == 4  # counted in Redis, for every process
    tokens = [group.acquire() for _ in range(4)]
    assert len(set(tokens)) == 4
    group.release(tokens[0])  # a call ended: its lease stays with the response ...
    assert group.acquire() == tokens[0]  # ... for a retry of another, with no round trip
    for token in tokens:
        group.release(token)
    assert lim.round_trips == 1 and client.zcard(lim.keys[0]) == 4
    group.close()
    assert lim.round_trips == 2 and client.zcard(lim.keys[0]) == 0
    # Each release woke one caller of another process waiting for a slot.
    assert client.llen(lim.keys[3]) == 4


def test_a_responses_lease_serves_a_retry_only_while_fresh(client):
    """It expires in Redis lease_s after the grant: a retry long after takes a new one."""
    lim = limiter(client, max_in_flight=3)
    lim.reuse_s = 0.05
    group = lim.together(2)
    first, second = group.acquire(), group.acquire()
    group.release(first)
    time.sleep(0.06)
    again = group.acquire(deadline=time.monotonic() + 2)
    assert again not in (first, second) and client.zscore(lim.keys[0], again) is not None
    # and the stale one it kept went back, rather than stand idle while calls wait
    assert client.zscore(lim.keys[0], first) is None
    group.release(second)  # stale too: back to Redis at once
    assert client.zscore(lim.keys[0], second) is None
    group.release(again)
    group.close()
    assert client.zcard(lim.keys[0]) == 0


def test_no_leases_are_taken_together_unless_there_is_room_for_all(client):
    lim = limiter(client, max_in_flight=5)
    held = lim.acquire()
    assert lim.together(5) is None  # room for 4: the calls take theirs one by one
    assert lim.together(6) is None  # more than the limit, ever
    assert client.zcard(lim.keys[0]) == 1  # nothing taken by the refusals
    lim.release(held)
    rpm = limiter(client, max_in_flight=5, requests_per_minute=600)
    assert rpm.together(2) is None  # per-minute limits charge each call in Redis
    assert rpm.round_trips == 0


def test_a_lease_released_after_its_response_closed_goes_back_alone(client):
    """A call still running when its response failed: its lease is not kept for ever."""
    lim = limiter(client, max_in_flight=3)
    group = lim.together(2)
    running, done = group.acquire(), group.acquire()
    group.release(done)
    group.close()
    assert client.zcard(lim.keys[0]) == 1  # the running call's lease is still counted
    group.release(running)
    assert client.zcard(lim.keys[0]) == 0


def test_closed_leases_go_to_callers_of_this_process_waiting_for_a_slot(client):
    lim = limiter(client, max_in_flight=2)
    group = lim.together(2)
    tokens = [group.acquire(), group.acquire()]
    for token in tokens:
        group.release(token)  # both calls ended, no one waiting: kept for the response
    got, waiters = start_waiters(lim, 2)
    time.sleep(0.1)  # the judge is full: one waits on Redis for both, one here
    trips = lim.round_trips
    group.close()
    wait_for_len(got, 2)
    # One lease was handed over here with no round trip; the other went back to Redis (one
    # trip, waking the caller waiting there, who then took a lease of its own).
    assert len(set(got) & set(tokens)) == 1
    assert lim.round_trips - trips == 2
    release_all(client, lim, got, waiters)


def test_a_responses_lease_is_handed_on_as_its_call_ends_when_others_here_wait(client):
    """Leases taken together are not held idle while a caller of this process waits."""
    lim = limiter(client, max_in_flight=2)
    group = lim.together(2)
    first, second = group.acquire(), group.acquire()
    got, waiters = start_waiters(lim, 2)
    time.sleep(0.1)  # the judge is full: one waits on Redis for both, one here
    group.release(first)  # its call ended; the response's other call still runs
    wait_for_len(got, 1)
    assert got == [first]  # handed on at once, with no round trip, not kept for the response
    assert client.zscore(lim.keys[0], first) is not None
    # The other call ends too: its lease goes back to Redis at once, for the one waiting there.
    group.release(second)
    wait_for_len(got, 2)
    assert client.zscore(lim.keys[0], second) is None
    group.close()
    release_all(client, lim, got, waiters)
