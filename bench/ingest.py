"""Import 1,000,000 responses from JSONL into PostgreSQL; then the same file again; then the
same file through the API's background import (`POST /api/projects/<slug>/imports/`, what the
Responses page does for every file over 2 MB), imported by a real Celery worker.

Target (issue 6): under 60 s on the 2-core machine for the command-line path. Prints one JSON
line: `first_*`/`second_*` for the command-line path, `api_*` for the API path (the request
that stores the upload, then the worker's import, with the progress the job row showed).
    .venv/bin/python bench/ingest.py [--rows N] [--chars C] [--no-api]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
import uuid
import warnings

from _django import ROOT, emit, log, peak_rss_mb, setup, wait

WORDS = [
    "the",
    "patient",
    "should",
    "call",
    "emergency",
    "services",
    "immediately",
    "chest",
    "pressure",
    "with",
    "sweating",
    "needs",
    "an",
    "electrocardiogram",
    "and",
    "troponin",
    "testing",
    "at",
    "a",
    "hospital",
    "the",
    "contract",
    "caps",
    "liability",
    "at",
    "twelve",
    "months",
    "of",
    "fees",
    "except",
    "for",
    "breach",
    "of",
    "confidentiality",
    "leverage",
    "falls",
    "from",
    "six",
    "times",
    "to",
    "four",
    "times",
    "by",
    "year",
    "three",
    "on",
    "free",
    "cash",
    "flow",
]


def make_file(path, rows: int, tasks: int, chars: int) -> None:
    rng = random.Random(7)
    with path.open("w") as out:
        for i in range(rows):
            words = []
            while sum(len(w) + 1 for w in words) < chars:
                words.append(rng.choice(WORDS))
            row = {
                "task_id": f"task-{i % tasks:05d}",
                "model": f"model-{(i // tasks) % 4}",
                "response": " ".join(words),
                "sample_index": i // (tasks * 4),
                "metadata": {"temperature": 0.7, "seed": i},
                "external_id": f"resp-{i}",
            }
            out.write(json.dumps(row) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--chars", type=int, default=400)
    parser.add_argument("--no-api", action="store_true", help="skip the API (worker) path")
    args = parser.parse_args()
    setup("assay_bench_ingest")
    from django.db import connection

    from annotation import services
    from rubrics.models import Project, Task

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE annotation_response, rubrics_task, rubrics_project CASCADE")
    project = Project.objects.create(name="bench", slug="bench-ingest")
    Task.objects.bulk_create(
        Task(
            project=project,
            external_id=f"task-{i:05d}",
            title=f"Task {i}",
            messages=[{"role": "user", "content": "q"}],
        )
        for i in range(args.tasks)
    )
    path = ROOT / "var" / "bench" / f"responses-{args.rows}-{args.chars}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        log(f"writing {args.rows:,} rows to {path}")
        make_file(path, args.rows, args.tasks, args.chars)

    def progress(rows: int, seconds: float) -> None:
        log(f"{rows:,} rows staged ({rows / seconds:,.0f}/s)")

    figures = {"rows": args.rows, "file_mb": round(path.stat().st_size / 1e6)}
    for label in ("first", "second"):
        started, cpu = time.monotonic(), time.process_time()
        with path.open("rb") as lines:
            result = services.responses_import_jsonl(
                project=project, lines=lines, progress=progress
            )
        seconds = time.monotonic() - started
        assert result.ok, result.errors[:5]
        figures[f"{label}_seconds"] = round(seconds, 1)
        figures[f"{label}_created"] = result.created
        figures[f"{label}_already_present"] = result.already_present
        figures[f"{label}_python_cpu_seconds"] = round(time.process_time() - cpu, 1)
        log(f"{label} import: {result.created:,} created in {seconds:.1f} s")
    figures["rows_per_second"] = round(args.rows / figures["first_seconds"])
    if not args.no_api:
        figures.update(api_import(project, path, args.rows))
    figures["peak_rss_mb"] = round(peak_rss_mb())
    figures["target_seconds"] = 60
    emit("ingest", figures)


def api_import(project, path, rows: int) -> dict:
    """The same file posted to the API's background import, into an emptied table, and
    imported by one Celery worker process started here; the job row is polled for progress."""
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client

    from annotation.models import ImportJob
    from assay.celery import app
    from rubrics import tokens
    from rubrics.models import Membership, Role

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE annotation_response, annotation_importjob CASCADE")
    settings.ALLOWED_HOSTS = ["*"]
    # The API's static files are not collected here, and need not be.
    warnings.filterwarnings("ignore", message="No directory at", module="whitenoise")
    tag = uuid.uuid4().hex[:8]
    queue, name = f"bench-ingest-{tag}", f"bench-ingest-{tag}@%h"
    env = dict(os.environ, CELERY_QUEUE=queue, ASSAY_REDIS_PREFIX=f"bench-{tag}")
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "assay", "worker", "-c", "1", "-Q", queue]
        + ["-n", name, "-l", "warning", "--without-gossip", "--without-mingle"]
        + ["--without-heartbeat"],
        cwd=ROOT,
        env=env,
        stdout=(ROOT / "var" / "bench-ingest-worker.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        app.conf.task_default_queue = queue
        node = name.replace("%h", os.uname().nodename)
        wait(lambda: app.control.ping(destination=[node], timeout=0.5), 60, "the worker")
        engineer, _ = get_user_model().objects.get_or_create(username="bench-engineer")
        Membership.objects.get_or_create(project=project, user=engineer, role=Role.ENGINEER)
        _, key = tokens.token_create(user=engineer, name="bench", scopes=["read", "write"])
        client = Client(headers={"Authorization": f"Token {key}"})
        log(f"posting {path.name} to the API")
        started = time.monotonic()
        with path.open("rb") as upload:
            reply = client.post(f"/api/projects/{project.slug}/imports/", {"file": upload})
        assert reply.status_code == 202, reply.content[:500]
        stored = time.monotonic()
        job_id = reply.json()["id"]
        progress = set()
        while True:
            job = ImportJob.objects.get(pk=job_id)
            if job.status == "running" and 0 < job.rows_done < rows:
                progress.add(job.rows_done)
            if job.status in ("done", "failed"):
                break
            if time.monotonic() - started > 3600:
                raise TimeoutError(f"the API import is still {job.status} after an hour")
            time.sleep(0.1)
        ended = time.monotonic()
        assert job.status == "done" and job.created == rows, (job.status, job.errors[:5])
        log(f"API import: {job.created:,} created in {ended - started:.1f} s")
        return {
            "api_seconds": round(ended - started, 1),
            "api_request_seconds": round(stored - started, 1),
            "api_worker_seconds": round(ended - stored, 1),
            "api_created": job.created,
            "api_progress_updates_seen": len(progress),
            "api_rows_per_second": round(rows / (ended - started)),
        }
    finally:
        worker.terminate()
        worker.wait(timeout=60)


if __name__ == "__main__":
    main()
