"""Service faults during a grading run: Redis restarted, PostgreSQL restarted, a worker
killed. The machine's PostgreSQL and Redis serve the rest of the suite and are never touched:
each scenario (tests/service_fault_scenarios.py) runs in a pytest subprocess against a private
PostgreSQL cluster and a private Redis started here, which it may stop and restart freely."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from django.conf import settings

from tests.conftest import ROOT
from tests.private_services import PrivatePostgres, PrivateRedis, to_env

SCENARIOS = "tests/service_fault_scenarios.py"

# The tests themselves read nothing from the suite's database, but their schema is copied from
# it, so it must be set up even when this file runs alone.
pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def private_services(django_db_setup, django_db_blocker):
    """A private cluster holding a copy of the suite's test database schema (so the scenarios
    reuse it instead of migrating from scratch), and a private Redis."""
    pg = PrivatePostgres.create()
    try:
        # The scenarios' test database, as pytest-django names it for DATABASE_URL's database.
        pg.copy_schema(settings.DATABASES["default"], f"test_{pg.url.rsplit('/', 1)[1]}")
        redis = PrivateRedis.create()
        try:
            yield pg, redis
        finally:
            redis.destroy()
    finally:
        pg.destroy()


def run_scenario(private_services, name: str, **env: str) -> None:
    pg, redis = private_services
    scenario = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pytest",
            f"{SCENARIOS}::{name}",
            "-q",
            "-x",
            "-p",
            "no:cacheprovider",
            # The test database is there already (copy_schema): only check its migrations.
            "--reuse-db",
            "--timeout",
            "200",
        ],
        cwd=ROOT,
        env={
            **os.environ,
            **to_env(pg, redis),
            # Workers look for lost work every second (production: every 15 s).
            "ASSAY_RECOVERY_CHECK_S": "1",
            **env,
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Its own process group, so a scenario that hangs is stopped with its worker.
        start_new_session=True,
    )
    try:
        stdout, stderr = scenario.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(scenario.pid, signal.SIGKILL)
        stdout, stderr = scenario.communicate()
    assert scenario.returncode == 0, f"{name} failed:\n{stdout[-6000:]}\n{stderr[-3000:]}"


def test_redis_restarted_mid_run_loses_nothing(private_services):
    run_scenario(private_services, "test_redis_restarted_mid_run")


def test_postgresql_restarted_mid_run_loses_and_repeats_nothing(private_services):
    run_scenario(private_services, "test_postgresql_restarted_mid_run")


def test_worker_killed_mid_run_recovers_without_resume(private_services):
    # A run with no new verdict for 5 s counts as stalled here (production: 600 s).
    run_scenario(private_services, "test_worker_killed_mid_run", ASSAY_RUN_STALL_S="5")
