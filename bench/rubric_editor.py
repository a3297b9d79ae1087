"""Server-side render time of the rubric editor for a 200-criterion draft.

Prints ONE JSON line: p50/p95 milliseconds over N requests of the Django test client against
PostgreSQL, and the page's query count. Runs in a throwaway test database.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/assay_bench python bench/rubric_editor.py
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _django import emit  # noqa: E402 - beside this file

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "assay.settings")
os.environ.setdefault("SECRET_KEY", "bench-only-secret-key")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext, setup_test_environment  # noqa: E402

CRITERIA = int(os.environ.get("BENCH_CRITERIA", "200"))
REQUESTS = int(os.environ.get("BENCH_REQUESTS", "50"))


def build():
    from django.contrib.auth import get_user_model

    from rubrics import services

    user = get_user_model().objects.create_user(username="bench-author")
    project = services.project_create(name="Bench", user=user)
    task = services.task_create(
        project=project, external_id="bench", title="Bench", messages="What should I do?"
    )
    verbs = ["Advises", "Explains", "Recommends", "Asks about", "Warns against", "Mentions"]
    topics = [
        "hydration",
        "sleep hygiene",
        "medication timing",
        "warning signs",
        "follow-up visits",
        "diet changes",
        "exercise limits",
        "side effects",
        "emergency care",
        "family history",
        "allergies",
        "dosage checks",
        "pain scales",
        "stress triggers",
        "screening tests",
        "vaccination",
        "wound care",
        "blood pressure",
        "smoking cessation",
        "alcohol use",
        "mental health",
        "pregnancy risks",
        "drug interactions",
        "travel plans",
        "work duties",
        "caregiver support",
        "insurance steps",
        "second opinions",
        "home safety",
        "nutrition",
        "fever control",
        "breathing exercises",
        "posture",
        "hearing",
        "vision",
    ]
    criteria = [
        services.clean_criterion(
            f"{verbs[i % len(verbs)]} {topics[i % len(topics)]} for the patient's situation "
            f"with a concrete next step (variant {chr(65 + i // len(topics))})",
            -2 if i % 10 == 0 else 1 + i % 5,
            tags="accuracy, completeness",
        )
        for i in range(CRITERIA)
    ]
    rubric = services.rubric_create(
        project=project, task=task, title="Bench rubric", user=user, criteria=criteria
    )
    version = rubric.versions.get()
    # Two groups, so the tree path renders too.
    for c in version.criteria.filter(position__in=[1, 2, 51, 52]).order_by("position"):
        services.criterion_indent(criterion=c)
    return user, rubric


def main() -> None:
    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        sys.exit("Set DATABASE_URL to a PostgreSQL server: the figure is for PostgreSQL.")
    setup_test_environment()
    # Plain static storage, as the tests use: the hashed manifest needs collectstatic first.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        user, rubric = build()
        client = Client()
        client.force_login(user)
        url = f"/rubrics/{rubric.pk}/"
        for _ in range(3):  # warm up templates and connections
            assert client.get(url).status_code == 200
        times = []
        for _ in range(REQUESTS):
            start = time.perf_counter()
            response = client.get(url)
            times.append((time.perf_counter() - start) * 1000)
            assert response.status_code == 200
        with CaptureQueriesContext(connection) as queries:
            client.get(url)
        if os.environ.get("BENCH_PROFILE"):
            import cProfile
            import pstats

            profiler = cProfile.Profile()
            profiler.enable()
            client.get(url)
            profiler.disable()
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(40)
        if os.environ.get("BENCH_DUMP"):
            Path(os.environ["BENCH_DUMP"]).write_bytes(response.content)
        times.sort()
        # The minimum is what the page costs on an idle machine; p50/p95 include whatever else
        # the (shared) machine was doing.
        emit(
            "rubric_editor",
            {
                "criteria": CRITERIA,
                "requests": REQUESTS,
                "p50_ms": round(statistics.median(times), 1),
                "p95_ms": round(times[int(0.95 * (len(times) - 1))], 1),
                "min_ms": round(times[0], 1),
                "queries": len(queries),
                "bytes": len(response.content),
            },
        )
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)


if __name__ == "__main__":
    main()
