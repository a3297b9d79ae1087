"""The judge simulator's own arithmetic (its HTTP behaviour is exercised by the engine tests)."""

from __future__ import annotations

import random

import pytest

from grading.judges.simulator import SimulatorConfig, SimulatorServer


@pytest.fixture
def server():
    s = SimulatorServer("127.0.0.1", 0, SimulatorConfig())
    yield s
    s.server_close()


def reference_prefix(last: str, prompt: str) -> int:
    n = 0
    for a, b in zip(last, prompt, strict=False):
        if a != b:
            break
        n += 1
    return n - n % 128


def test_cached_prefix_counts_whole_blocks_repeated_under_the_same_key(server):
    shared = "s" * 300
    assert server.cached_prefix("k", shared + "first") == 0  # nothing cached yet
    assert server.cached_prefix("k", shared + "second") == 256
    assert server.cached_prefix("other", shared + "second") == 0
    assert server.cached_prefix("k", "x" * 100) == 0  # shorter than a block
    assert server.cached_prefix(None, shared) == 0  # no key, no cache


def test_cached_prefix_matches_a_character_by_character_count(server):
    rng = random.Random(7)
    for i in range(300):
        base = "".join(rng.choice("ab") for _ in range(rng.randrange(0, 1200)))
        other = base[: rng.randrange(0, len(base) + 1)] + "".join(
            rng.choice("ab") for _ in range(rng.randrange(0, 400))
        )
        key = f"k{i}"
        server.cached_prefix(key, base)
        assert server.cached_prefix(key, other) == reference_prefix(base, other)


def test_stats_give_the_judges_own_latency_of_recent_requests():
    """Clients measure their overhead over what the judge really took (bench/grading.py)."""
    import threading

    import httpx

    s = SimulatorServer("127.0.0.1", 0, SimulatorConfig(latency_ms=50))
    threading.Thread(target=s.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{s.server_address[1]}"
        body = {"model": "m", "messages": [{"role": "user", "content": "Is water wet?"}]}
        for _ in range(3):
            assert httpx.post(f"{url}/v1/chat/completions", json=body).status_code == 200
        httpx.get(f"{url}/stats")  # not a judge call: not counted
        latencies = httpx.get(f"{url}/stats").json()["recent_latency_ms"]
        assert len(latencies) == 3
        assert all(50 <= ms < 1000 for ms in latencies)
    finally:
        s.shutdown()
        s.server_close()
