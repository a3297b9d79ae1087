"""Import 1,000,000 responses from JSONL into PostgreSQL; then the same file again.

Target (issue 6): under 60 s on the 2-core machine. Prints one JSON line.
    .venv/bin/python bench/ingest.py [--rows N] [--chars C]
"""

from __future__ import annotations

import argparse
import json
import random
import time

from _django import ROOT, log, peak_rss_mb, setup

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

    figures = {"bench": "ingest", "rows": args.rows, "file_mb": round(path.stat().st_size / 1e6)}
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
    figures["peak_rss_mb"] = round(peak_rss_mb())
    figures["target_seconds"] = 60
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
