"""Every judge call ends by its deadline, whatever the judge does at the socket, and a reply
body has a cap: real misbehaving servers on loopback (tests/slow_judges.py)."""

from __future__ import annotations

import itertools
import time

import httpx
import pytest

from grading.judges.client import JudgeClient, JudgeError, JudgeSettings
from grading.judges.limits import Limits, RedisLimiter, redis_client
from grading.judges.transport import Transport
from rubrics.compiler import VERDICT_SCHEMA
from tests.slow_judges import SlowJudge
from tests.test_judge_client import messages_for

SLACK_S = 0.75  # what a call may take past its deadline: scheduling on a busy 2-core machine
_ids = itertools.count(950_000)


@pytest.fixture
def slow_judge(request):
    judge = SlowJudge(request.param)
    yield judge
    judge.close()


def grade(judge: SlowJudge, **settings) -> tuple[JudgeError, float]:
    client = JudgeClient(JudgeSettings(base_url=judge.url, model="m", **settings))
    started = time.monotonic()
    try:
        with pytest.raises(JudgeError) as caught:
            client.grade(messages_for("x"), VERDICT_SCHEMA)
    finally:
        client.close()
    return caught.value, time.monotonic() - started


@pytest.mark.parametrize(
    ("slow_judge", "phase"),
    [
        ("trickle", "reading the reply"),  # headers, then a byte a second for ever
        ("silent", "waiting for the reply"),
        ("no_accept", "connecting"),
    ],
    indirect=["slow_judge"],
)
def test_a_call_ends_at_its_timeout_whatever_the_judge_does(slow_judge, phase):
    error, elapsed = grade(slow_judge, timeout_s=2, max_attempts=1)
    assert 2 - 0.1 <= elapsed <= 2 + SLACK_S
    assert error.reason == "timeout"
    assert str(error) == f"judge call exceeded its deadline of 2 s while {phase}"
    if phase != "connecting":
        slow_judge.wait_all_closed()  # the client closed the connection, not only returned
        assert slow_judge.served and max(slow_judge.served) <= 2 + SLACK_S + 1.5


@pytest.mark.parametrize("slow_judge", ["trickle"], indirect=True)
def test_the_items_deadline_bounds_the_call_and_its_retries(slow_judge):
    """A call may take ASSAY_JUDGE_TIMEOUT_S (30 s here), but the item has 2 s left in all."""
    error, elapsed = grade(slow_judge, timeout_s=30, max_attempts=6, deadline_s=2)
    assert elapsed <= 2 + SLACK_S
    assert error.reason == "timeout" and "while reading the reply" in str(error)
    slow_judge.wait_all_closed()
    assert len(slow_judge.served) == 1  # no retry after the deadline


@pytest.mark.parametrize(
    ("slow_judge", "declared"),
    [("endless", ""), ("declared", " (it declared 1000000000)")],
    indirect=["slow_judge"],
)
def test_a_reply_over_the_cap_is_abandoned_and_not_retried(slow_judge, declared, settings):
    settings.JUDGE_MAX_REPLY_BYTES = 100_000
    error, elapsed = grade(slow_judge, timeout_s=10, max_attempts=4)
    assert elapsed < 2
    assert error.reason == "reply_too_large"
    assert str(error) == f"judge reply exceeded 100000 bytes{declared}"
    slow_judge.wait_all_closed()
    assert len(slow_judge.served) == 1  # the same question would get the same reply


@pytest.mark.parametrize("slow_judge", ["deaf"], indirect=True)
def test_sending_a_request_the_judge_does_not_read_ends_at_the_deadline(slow_judge):
    transport = Transport()
    started = time.monotonic()
    try:
        with pytest.raises(httpx.WriteTimeout) as caught:
            transport.post(
                slow_judge.url + "/chat/completions",
                headers={"Content-Type": "application/json"},
                content=b"x" * (64 * 1024 * 1024),  # more than loopback's socket buffers
                timeout=1.5,
            )
    finally:
        transport.close()
    assert 1.5 - 0.1 <= time.monotonic() - started <= 1.5 + SLACK_S
    assert str(caught.value) == (
        "judge call exceeded its deadline of 1.5 s while sending the request"
    )


@pytest.mark.parametrize("slow_judge", ["trickle"], indirect=True)
def test_a_call_cut_at_its_deadline_gives_its_lease_back(slow_judge):
    redis = redis_client()
    assert redis is not None, "the tests run with Redis"
    limiter = RedisLimiter(Limits(judge_id=next(_ids), max_in_flight=1, lease_s=60), redis)
    client = JudgeClient(
        JudgeSettings(base_url=slow_judge.url, model="m", timeout_s=1, max_attempts=1),
        limiter=limiter,
    )
    try:
        with pytest.raises(JudgeError, match="while reading the reply"):
            client.grade(messages_for("x"), VERDICT_SCHEMA)
    finally:
        client.close()
    # The judge's one slot is free again at once (a lost lease would hold it for 60 s).
    started = time.monotonic()
    lease = limiter.acquire(deadline=time.monotonic() + 2)
    assert time.monotonic() - started < 0.5
    limiter.release(lease)
    assert redis.zcard(limiter_key(limiter)) == 0


def limiter_key(limiter: RedisLimiter) -> str:
    from grading.judges.limits import key

    return key(limiter.limits.judge_id, "inflight")


def test_a_judge_that_answers_normally_is_read_whole_on_a_kept_alive_connection(sim):
    """The deadline reader changes nothing for a judge that answers: two calls, one
    connection, each reply whole."""
    client = JudgeClient(JudgeSettings(base_url=sim.url, model="m", timeout_s=5))
    try:
        first = client.grade(messages_for("Drink water with electrolytes."), VERDICT_SCHEMA)
        second = client.grade(messages_for("Nothing relevant."), VERDICT_SCHEMA)
    finally:
        client.close()
    assert first.met and not second.met
    assert sim.stats.requests == 2
