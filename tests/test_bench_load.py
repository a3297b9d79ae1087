"""bench/load.py runs end to end — its own database, the simulator, gunicorn, people logging in,
annotating and browsing, trainers on the reward endpoint — and reports its figures, with no
errors, in one JSON line. A short run, so the benchmark cannot rot."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent


def test_the_load_benchmark_runs_and_reports_no_errors():
    db = settings.DATABASES["default"]
    # A database of its own beside this session's, created and dropped by the benchmark.
    bench_db = (
        f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST']}:{db['PORT']}/"
        f"{db['NAME']}_bench_load"
    )
    env = {**os.environ, "BENCH_DATABASE_URL": bench_db}
    env["BENCH_BROKER_URL"] = settings.CELERY_BROKER_URL
    done = subprocess.run(
        [sys.executable, "bench/load.py", "--duration", "3", "--users", "5"]
        + ["--reward-clients", "2", "--responses-per-task", "20"]
        + ["--annotator-accounts", "5", "--prefilled", "5", "--password-logins", "2"]
        # Two workers: each one's first request imports the views (seconds of CPU).
        + ["--workers", "2", "--threads", "4"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, done.stdout[-3000:]
    figures = json.loads(lines[0])

    assert figures["bench"] == "load"
    assert figures["users_logged_in"] == 5 and figures["password_logins"] == 2
    for group in ("pages", "writes", "reward"):
        g = figures["groups"][group]
        assert g["count"] > 0, (group, figures)
        for key in ("p50_ms", "p95_ms", "p99_ms"):
            assert g[key] is not None and g[key] > 0, (group, key, g)
        assert g["errors"] == 0 and g["errors_by_status"] == {}, (group, g)
    reward = figures["groups"]["reward"]
    assert reward["p50_overhead_ms"] == round(reward["p50_ms"] - reward["judge_latency_ms"], 1)
    assert figures["judge_calls"] >= reward["count"]  # no reward came from the cache
    assert figures["errors"] == 0, figures
    assert figures["login"]["errors"] == 0 and figures["static"]["errors"] == 0
    assert figures["static"]["count"] > 0  # WhiteNoise served the collected files
    assert figures["requests_per_s"] > 0
    assert len(figures["load_average"]["before"]) == 3
    assert "--worker-class gthread" in figures["server"]["command"]
    assert figures["targets"] == {"pages_p95_ms": 300, "errors": 0}
    assert isinstance(figures["pass"], bool)
