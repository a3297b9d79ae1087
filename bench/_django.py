"""Shared set-up for benchmarks: a dedicated PostgreSQL database, migrated, and Django ready.

Benchmarks print one JSON line of figures on stdout; progress goes to stderr."""

from __future__ import annotations

import os
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


def peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
