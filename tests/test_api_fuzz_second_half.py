"""The other half of the API's operations, fuzzed as tests/test_api_fuzz.py fuzzes the first
(a file of its own, so that another process of the suite takes it)."""

from __future__ import annotations

import pytest

from tests.test_api_fuzz import fuzz_half

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.timeout(600)
def test_fuzzing_the_second_half_of_the_operations_finds_no_server_error(live_server, personas):
    fuzz_half(1, live_server, personas)
