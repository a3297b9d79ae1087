"""How long `import_rubrics --format healthbench` takes on a file the size of the full public
HealthBench set (5,000 conversations, about 48,500 criteria), and the export back.

With --suite, the file is imported as `import_rubrics --publish --suite` does (import, publish
every rubric, freeze a suite version, one transaction), and the freeze alone is timed on a
second suite of the same tasks (target: under 5 s for 5,000 tasks).

The rows are the real sample rows of shared/data/healthbench, repeated under new prompt ids
until the file holds --rows conversations. Prints one JSON line.

    .venv/bin/python bench/import_rubrics.py [--rows 5000] [--db assay_bench_import_rubrics]
        [--suite]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _django  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# shared/ sits beside the clone (as CI lays it out), or at /work/shared on a workstation.
SAMPLE = (
    next(
        (p for p in (ROOT.parent / "shared", Path("/work/shared")) if p.is_dir()),
        ROOT.parent / "shared",
    )
    / "data"
    / "healthbench"
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--db", default="assay_bench_import_rubrics")
    parser.add_argument("--sample", default=str(SAMPLE / "oss_eval_sample.jsonl"))
    parser.add_argument("--suite", action="store_true", help="import --publish --suite")
    args = parser.parse_args()
    _django.setup(args.db)

    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from rubrics.models import Criterion, Project, Task
    from rubrics.services import project_create

    sample = [json.loads(line) for line in Path(args.sample).read_text().splitlines() if line]
    rows = []
    for i in range(args.rows):
        row = dict(sample[i % len(sample)])
        row["prompt_id"] = f"{row['prompt_id']}-{i}"
        rows.append(row)
    criteria = sum(len(r["rubrics"]) for r in rows)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "healthbench.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        if args.suite:
            # Published graders are protected from deletion: start from an empty database
            # (a disposable benchmark database, see _django.setup).
            from django.db import connection

            with connection.cursor() as cursor:
                cursor.execute("TRUNCATE rubrics_project CASCADE")
        Project.objects.filter(slug="bench-import").delete()
        user, _ = get_user_model().objects.get_or_create(username="bench-import")
        project = project_create(name="bench import", user=user, slug="bench-import")
        _django.log(f"importing {args.rows} rows, {criteria} criteria")
        start = time.perf_counter()
        options = {"publish": True, "suite": "bench"} if args.suite else {}
        call_command(  # its summary to stderr: stdout holds the one JSON line
            "import_rubrics",
            str(path),
            format="healthbench",
            project=project.slug,
            stdout=sys.stderr,
            **options,
        )
        imported = time.perf_counter() - start
        figures = {}
        if args.suite:
            figures = freeze_figures(project, user, args.rows)
        assert Task.objects.filter(project=project).count() == args.rows
        assert Criterion.objects.filter(version__rubric__project=project).count() == criteria
        out = Path(tmp) / "out.jsonl"
        start = time.perf_counter()
        call_command("export_rubrics", format="healthbench", project=project.slug, output=str(out))
        exported = time.perf_counter() - start
        assert [json.loads(line) for line in out.read_text().splitlines()] == rows
        if not args.suite:
            Project.objects.filter(pk=project.pk).delete()
    _django.emit(
        "import_rubrics",
        {
            "rows": args.rows,
            "criteria": criteria,
            "import_s": round(imported, 2),
            "export_s": round(exported, 2),
            **figures,
            "peak_rss_mb": round(_django.peak_rss_mb()),
        },
    )


def freeze_figures(project, user, rows: int) -> dict:
    """The freeze alone: a second suite of the same tasks, frozen (new version), then frozen
    again (nothing changed: the newest version comes back)."""
    from rubrics import suites
    from rubrics.models import Suite, SuiteVersion, Task

    version = SuiteVersion.objects.get(suite__project=project, suite__name="bench")
    assert version.task_count == rows
    task_ids = list(Task.objects.filter(project=project).values_list("pk", flat=True))
    suite = suites.suite_create(project=project, name="bench-again", user=user, task_ids=task_ids)
    start = time.perf_counter()
    fresh, created = suites.suite_freeze(suite=suite, user=user)
    freeze = time.perf_counter() - start
    assert created and fresh.manifest == version.manifest
    start = time.perf_counter()
    _, created = suites.suite_freeze(suite=suite, user=user)
    refreeze = time.perf_counter() - start
    assert not created
    Suite.objects.filter(project=project).delete()
    return {"suite_tasks": rows, "freeze_s": round(freeze, 2), "refreeze_s": round(refreeze, 2)}


if __name__ == "__main__":
    main()
