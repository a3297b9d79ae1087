"""Runs grade a frozen suite version, each response by its task's pinned grader.

A run made before suites graded one grader: it becomes a run over that rubric's suite of one,
frozen with that grader, and each of its scores names the grader.
"""

import hashlib
import json

import django.db.models.deletion
from django.db import migrations, models


def _suite_of_one(apps, run):
    Suite = apps.get_model("rubrics", "Suite")
    SuiteVersion = apps.get_model("rubrics", "SuiteVersion")
    SuiteEntry = apps.get_model("rubrics", "SuiteEntry")
    Score = apps.get_model("grading", "Score")
    grader = run.grader
    rubric = grader.version.rubric
    suite = Suite.objects.filter(rubric_id=rubric.pk).first()
    if suite is None:
        name = f"{rubric.title[:150]} (rubric {rubric.pk})"
        if Suite.objects.filter(project_id=rubric.project_id, name=name).exists():
            name = f"{name} #{grader.pk}"
        suite = Suite.objects.create(project_id=rubric.project_id, name=name, rubric_id=rubric.pk)
    tasks = dict(
        Score.objects.filter(run_id=run.pk).values_list(
            "response__task_id", "response__task__external_id"
        )
    )
    if rubric.task_id:
        tasks.setdefault(rubric.task_id, rubric.task.external_id)
    manifest = {external_id: grader.hash for external_id in sorted(tasks.values())}
    content_hash = hashlib.sha256(
        json.dumps(manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    ).hexdigest()
    version = SuiteVersion.objects.filter(suite=suite, content_hash=content_hash).first()
    if version is None:
        number = SuiteVersion.objects.filter(suite=suite).count() + 1
        version = SuiteVersion.objects.create(
            suite=suite,
            number=number,
            content_hash=content_hash,
            manifest=manifest,
            task_count=len(manifest),
            sole_grader_id=grader.pk,
        )
        SuiteEntry.objects.bulk_create(
            SuiteEntry(version=version, task_id=task_id, grader_id=grader.pk) for task_id in tasks
        )
        suite.tasks.add(*tasks)
    return version


def forward(apps, schema_editor):
    GradingRun = apps.get_model("grading", "GradingRun")
    Score = apps.get_model("grading", "Score")
    for run in GradingRun.objects.select_related("grader__version__rubric__task").iterator():
        run.suite_version = _suite_of_one(apps, run)
        run.save(update_fields=["suite_version"])
        Score.objects.filter(run_id=run.pk).update(grader_id=run.grader_id)


class Migration(migrations.Migration):
    dependencies = [
        ("grading", "0006_worker_heartbeat"),
        ("rubrics", "0012_suites"),
    ]

    operations = [
        migrations.AddField(
            model_name="gradingrun",
            name="suite_version",
            field=models.ForeignKey(
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="runs",
                to="rubrics.suiteversion",
            ),
        ),
        migrations.AddField(
            model_name="gradingrun",
            name="selection",
            field=models.JSONField(blank=True, default=dict),
        ),
        migrations.AddField(
            model_name="score",
            name="grader",
            field=models.ForeignKey(
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="scores",
                to="rubrics.grader",
            ),
        ),
        migrations.RunPython(forward, migrations.RunPython.noop),
        migrations.RemoveField(model_name="gradingrun", name="grader"),
        migrations.AlterField(
            model_name="gradingrun",
            name="suite_version",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.PROTECT,
                related_name="runs",
                to="rubrics.suiteversion",
            ),
        ),
        migrations.AlterField(
            model_name="score",
            name="grader",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.PROTECT,
                related_name="scores",
                to="rubrics.grader",
            ),
        ),
    ]
