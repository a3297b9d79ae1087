"""How long `import_rubrics --format healthbench` takes on a file the size of the full public
HealthBench set (5,000 conversations, about 48,500 criteria), and the export back.

The rows are the real sample rows of shared/data/healthbench, repeated under new prompt ids
until the file holds --rows conversations. Prints one JSON line.

    .venv/bin/python bench/import_rubrics.py [--rows 5000] [--db assay_bench_import_rubrics]
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
        Project.objects.filter(slug="bench-import").delete()
        user, _ = get_user_model().objects.get_or_create(username="bench-import")
        project = project_create(name="bench import", user=user, slug="bench-import")
        _django.log(f"importing {args.rows} rows, {criteria} criteria")
        start = time.perf_counter()
        call_command("import_rubrics", str(path), format="healthbench", project=project.slug)
        imported = time.perf_counter() - start
        assert Task.objects.filter(project=project).count() == args.rows
        assert Criterion.objects.filter(version__rubric__project=project).count() == criteria
        out = Path(tmp) / "out.jsonl"
        start = time.perf_counter()
        call_command("export_rubrics", format="healthbench", project=project.slug, output=str(out))
        exported = time.perf_counter() - start
        assert [json.loads(line) for line in out.read_text().splitlines()] == rows
        Project.objects.filter(pk=project.pk).delete()
    print(
        json.dumps(
            {
                "rows": args.rows,
                "criteria": criteria,
                "import_s": round(imported, 2),
                "export_s": round(exported, 2),
                "peak_rss_mb": round(_django.peak_rss_mb()),
            }
        )
    )


if __name__ == "__main__":
    main()
