"""Export 1,000,000 verdicts as JSON lines, streaming from PostgreSQL.

Target (issue 6): under 30 s, peak memory under 300 MB. Prints one JSON line.
    .venv/bin/python bench/export_verdicts.py [--responses N] [--criteria C]
"""

from __future__ import annotations

import argparse
import hashlib
import time

from _django import ROOT, emit, log, peak_rss_mb, setup

VERDICTS_SQL = (
    "INSERT INTO annotation_verdict (response_id, criterion_id, rater_id, sample_index, "
    "outcome, explanation, evidence, judge_model, simulated, raw_output, error, "
    "prompt_tokens, completion_tokens, needs_review, created_at) "
    "SELECT r.id, c.id, %s, 0, CASE WHEN (r.id + c.id) %% 3 = 0 THEN 'unmet' ELSE 'met' END, "
    "'The response addresses the criterion: it states the key point clearly and "
    "gives a reason \"quoted\".', '', 'judge-model', false, '', '', 900, 40, false, now() "
    "FROM annotation_response r CROSS JOIN rubrics_criterion c "
    "WHERE r.task_id = %s AND c.version_id = %s"
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--responses", type=int, default=50_000)
    parser.add_argument("--criteria", type=int, default=20)
    args = parser.parse_args()
    setup("assay_bench_export")
    from django.db import connection

    from annotation.models import Rater
    from grading.datasets import formats
    from rubrics.models import Criterion, Project, Rubric, RubricVersion, Task

    log("building verdicts in SQL")
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE annotation_verdict, annotation_response, annotation_rater, "
            "rubrics_criterion, rubrics_rubricversion, rubrics_rubric, rubrics_task, "
            "rubrics_project CASCADE"
        )
    project = Project.objects.create(name="bench", slug="bench-export")
    task = Task.objects.create(project=project, external_id="t", title="t", messages=[])
    rubric = Rubric.objects.create(project=project, task=task, title="r")
    version = RubricVersion.objects.create(rubric=rubric, number=1)
    Criterion.objects.bulk_create(
        Criterion(version=version, position=i, text=f"Criterion {i}: topic {i}", points=i % 7 + 1)
        for i in range(args.criteria)
    )
    rater = Rater.objects.create(project=project, kind="judge", name="judge: bench")
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO annotation_response (task_id, model, text, sample_index, metadata, "
            "external_id, created_at) SELECT %s, 'model-' || (g %% 4), 'response ' || g, g, "
            "'{}', 'r' || g, now() FROM generate_series(1, %s) g",
            [task.pk, args.responses],
        )
        cursor.execute(VERDICTS_SQL, [rater.pk, task.pk, version.pk])
        cursor.execute("ANALYZE")
    verdicts = args.responses * args.criteria
    path = ROOT / "var" / "bench" / "verdicts.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    rss_before = peak_rss_mb()
    log(f"exporting {verdicts:,} verdicts")
    started = time.monotonic()
    with path.open("wb") as out:
        _, digest = formats.verdicts_jsonl(out, project=project)
    seconds = time.monotonic() - started
    lines = 0
    check = hashlib.sha256()
    with path.open("rb") as read_back:
        for line in read_back:
            lines += 1
            check.update(line)
    assert lines == verdicts and check.hexdigest() == digest
    parquet_path = path.with_suffix(".parquet")
    log("exporting the same verdicts to Parquet")
    started = time.monotonic()
    with parquet_path.open("wb") as out:
        parquet_rows, _ = formats.verdicts_parquet(out, project=project)
    parquet_seconds = time.monotonic() - started
    assert parquet_rows == verdicts
    figures = {
        "verdicts": verdicts,
        "seconds": round(seconds, 1),
        "verdicts_per_second": round(verdicts / seconds),
        "mb_written": round(path.stat().st_size / 1e6),
        "parquet_seconds": round(parquet_seconds, 1),
        "parquet_mb": round(parquet_path.stat().st_size / 1e6),
        "peak_rss_mb": round(peak_rss_mb()),
        "rss_before_export_mb": round(rss_before),
        "note": "peak_rss_mb covers both exports in this process",
        "target_seconds": 30,
        "target_peak_mb": 300,
    }
    emit("export_verdicts", figures)


if __name__ == "__main__":
    main()
