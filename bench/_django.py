"""Shared set-up for benchmarks: a dedicated PostgreSQL database, migrated, and Django ready.

Benchmarks print one JSON line of figures on stdout; progress goes to stderr."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def setup(db_name: str) -> None:
    import psycopg

    base = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    url = urlsplit(base)
    with psycopg.connect(base, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [db_name]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{db_name}"')
        # Benchmarks TRUNCATE ... CASCADE their tables, which reaches the append-only audit
        # log; a disposable benchmark database may (rubrics/migrations/0007).
        conn.execute(f"ALTER DATABASE \"{db_name}\" SET assay.allow_audit_truncate = 'on'")
    os.environ["DATABASE_URL"] = url._replace(path=f"/{db_name}").geturl()
    os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/12")
    os.environ.setdefault("SECRET_KEY", "bench-only")
    os.environ.setdefault("DEBUG", "0")
    os.environ.setdefault("ASSAY_SSL_REDIRECT", "0")  # benchmarks speak HTTP on loopback
    os.environ.setdefault("ASSAY_JUDGE_ALLOW_PRIVATE_URLS", "1")  # the simulator is on loopback
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "assay.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def log(message: str) -> None:
    sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


def wait(predicate, timeout: float, what: str, interval: float = 0.2) -> None:
    """Until `predicate()` holds; TimeoutError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise TimeoutError(f"{what} did not happen within {timeout} s")


def peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Simulator:
    """The judge simulator (`manage.py judge_simulator`) in its own process on a free loopback
    port, logging to var/`log_name`. `stop()` it when done (or terminate `proc`)."""

    def __init__(self, log_name: str, *, latency_ms: float, max_concurrency: int, env=None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        (ROOT / "var").mkdir(exist_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", "judge_simulator", "--port", str(self.port)]
            + ["--latency-ms", str(latency_ms), "--max-concurrency", str(max_concurrency)],
            cwd=ROOT,
            env=env,
            stdout=(ROOT / "var" / log_name).open("wb"),
            stderr=subprocess.STDOUT,
        )
        self._http = None

    def stats(self) -> dict:
        """GET /stats: requests seen, in flight, peak, recent latencies."""
        import httpx

        if self._http is None:
            self._http = httpx.Client(timeout=5)
        return self._http.get(f"http://127.0.0.1:{self.port}/stats").json()

    def answers(self) -> bool:
        import httpx

        try:
            self.stats()
            return True
        except httpx.HTTPError:
            return False

    def wait_until_up(self, timeout: float = 30) -> None:
        wait(self.answers, timeout, "the simulator to answer")


# Key words the simulated judge looks for: criteria name two, responses draw from all.
WORDS = (  # noqa: SIM905 - easier to read as prose
    "hydration electrolyte urgent evaluation persistent vomiting dangerous dehydration "
    "monitoring temperature antibiotic resistance paracetamol dosing isolation hygiene "
    "followup appointment codeine syrup fever contraindication anticoagulant interaction "
    "bleeding warfarin vitamin potassium kidney function cardiac troponin ischemia aspirin "
    "nitroglycerin ambulance emergency imaging tomography ultrasound referral specialist "
    "counseling lifestyle exercise nutrition sodium sleep stress medication adherence"
).split()


def bench_grader(owner, *, project_name: str, criteria: int, rng):
    """A project with the task "bench" (one user message) and a published rubric of
    `criteria` criteria, each naming two of WORDS, points drawn from `rng` (the first 5).
    Returns (project, task, grader). Django must be set up."""
    from decimal import Decimal

    from rubrics import services as rubric_services

    project = rubric_services.project_create(name=project_name, user=owner)
    task = rubric_services.task_create(
        project=project,
        external_id="bench",
        title="Bench task",
        messages=[{"role": "user", "content": "I have had a fever and vomiting. What now?"}],
    )
    inputs = [
        rubric_services.CriterionInput(
            text=f"Mentions {WORDS[(3 * i) % len(WORDS)]} and {WORDS[(3 * i + 1) % len(WORDS)]}",
            points=Decimal(rng.choice([1, 2, 3, 5, -2])) if i else Decimal(5),
        )
        for i in range(criteria)
    ]
    rubric = rubric_services.rubric_create(
        project=project, task=task, title="Bench rubric", user=owner, criteria=inputs
    )
    grader = rubric_services.version_publish(version=rubric.versions.get(), user=owner)
    return project, task, grader
