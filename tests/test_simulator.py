"""The judge simulator's own arithmetic (its HTTP behaviour is exercised by the engine tests)."""

from __future__ import annotations

import random

import pytest

from grading.simulator import SimulatorConfig, SimulatorServer


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
