"""Dataset snapshots: named, immutable exports with their provenance, SHA-256 and a card.

A snapshot is requested (a row, queued), built by a worker (rows streamed to a file with
progress written to the row), and then never changes: its name is unique in the project and
its file is written once, under a name that includes its id.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable
from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Count, Q
from django.shortcuts import get_object_or_404
from django.utils import timezone
from django.utils.text import slugify

from annotation.models import Response
from grading.datasets import formats
from grading.models import DatasetSnapshot, GradingRun, Score
from rubrics import audit
from rubrics.models import AuditEvent, Grader, Project, Suite, SuiteEntry, SuiteVersion, Task
from rubrics.permissions import Perm, check
from rubrics.services import Conflict

FORMATS = {
    "verdicts-jsonl": ("Every verdict with its provenance, one JSON object per line", ".jsonl"),
    "verdicts-parquet": (
        "Every verdict with its provenance, Parquet (schema in the card)",
        ".parquet",
    ),
    "openai-rft": ("OpenAI reinforcement fine-tuning items (the grader is in the card)", ".jsonl"),
    "preference-pairs": ("(prompt, chosen, rejected) from one run's scores", ".jsonl"),
    "responses-jsonl": ("Every response, in the format `import_responses` reads", ".jsonl"),
    "responses-bundle": (
        "Every response with the images and files its messages carry: a zip of "
        "responses.jsonl and files/<sha256>.<kind>, which `import_responses` reads back",
        ".zip",
    ),
    "responses-parquet": (
        "Every response, Parquet, with an `images` column Hugging Face `datasets` reads as "
        "images (schema in the card)",
        ".parquet",
    ),
    "tasks-jsonl": ("Every task, in the format `import_tasks` reads", ".jsonl"),
    "healthbench-jsonl": (
        "Tasks with their rubrics, HealthBench's JSONL shape (of a suite version: the rubrics "
        "its graders pin)",
        ".jsonl",
    ),
    "verl-parquet": (
        "verl RL prompts, Parquet: reward_model names the task, grader and suite version",
        ".parquet",
    ),
    "scores-jsonl": (
        "One run's score per response, naming task, grader and suite version",
        ".jsonl",
    ),
    "suite-card": ("A suite version's dataset card with its leaderboard, Markdown", ".md"),
    "step-supervision": (
        "One run's step verdicts in TRL's stepwise-supervision shape (prompt, completions, "
        "labels), for process reward models",
        ".jsonl",
    ),
}
CANARY = re.compile(r"healthbench:[0-9a-f-]{36}")
PROGRESS_EVERY = 2_000


# --- Writes -------------------------------------------------------------------------------


def snapshot_create(
    *,
    project: Project,
    name: str,
    format: str,
    user,
    license: str = "",
    run_id=None,
    min_margin: float = 0.1,
    suite_version_id=None,
) -> DatasetSnapshot:
    name = slugify(name)[:100]
    if not name:
        raise ValidationError({"name": "Name the snapshot (letters, digits, '-')."})
    if format not in FORMATS:
        raise ValidationError({"format": f"Choose one of {', '.join(FORMATS)}."})
    params = snapshot_params(
        project, format, run_id=run_id, min_margin=min_margin, suite_version_id=suite_version_id
    )
    with transaction.atomic():
        taken = DatasetSnapshot.objects.filter(project=project, name=name).first()
        if taken is not None and taken.status == DatasetSnapshot.Status.FAILED:
            raise ValidationError(
                {
                    "name": f"A snapshot named '{name}' failed; retry it, or delete it to free "
                    "its name."
                }
            )
        if taken is not None:
            raise ValidationError(
                {"name": f"A snapshot named '{name}' exists; snapshots never change."}
            )
        snapshot = DatasetSnapshot.objects.create(
            project=project,
            name=name,
            format=format,
            params=params,
            license=license.strip(),
            created_by=user,
            rows_total=_rows_estimate(project, format, params),
        )
        audit.record(
            AuditEvent.Action.SNAPSHOT_REQUESTED,
            actor=user,
            project=project,
            target_type="dataset_snapshot",
            target_id=snapshot.pk,
            target_label=snapshot.name,
            details={"format": format, "params": params, "license": snapshot.license},
        )
        from grading import tasks

        transaction.on_commit(lambda: tasks.build_snapshot.delay(snapshot.pk))
    return snapshot


def snapshot_params(
    project: Project, format: str, *, run_id=None, min_margin: float = 0.1, suite_version_id=None
) -> dict:
    """What a snapshot of `format` is built from beyond its project: a run (required by the
    run exports, optional for verdicts) and a suite version (required by the suite card,
    optional for the HealthBench, OpenAI RFT and verl exports). A parameter the format does
    not take is refused, never ignored."""
    params: dict = {}
    takes_run = format in formats.RUN_EXPORTS or format in formats.TAKE_RUN
    takes_version = format in formats.VERSION_EXPORTS or format in formats.TAKE_VERSION
    if run_id not in (None, "") and not takes_run:
        raise ValidationError({"run": f"A {format} snapshot is not built from one run."})
    if suite_version_id not in (None, "") and not takes_version:
        raise ValidationError(
            {"suite_version": f"A {format} snapshot is not built from one suite version."}
        )
    if format in formats.RUN_EXPORTS or (takes_run and run_id not in (None, "")):
        run = GradingRun.objects.filter(project=project, pk=run_id or 0).first()
        if run is None:
            raise ValidationError(
                {"run": f"A {format} snapshot is built from one run of this project."}
            )
        params["run"] = run.pk
    if format == "preference-pairs":
        if not 0 <= float(min_margin) <= 1:
            raise ValidationError({"min_margin": "Between 0 and 1."})
        params["min_margin"] = float(min_margin)
    if format in formats.VERSION_EXPORTS or (takes_version and suite_version_id not in (None, "")):
        version = (
            SuiteVersion.objects.filter(suite__project=project, pk=suite_version_id or 0)
            .select_related("suite")
            .defer("manifest")
            .first()
        )
        if version is None:
            raise ValidationError(
                {
                    "suite_version": f"A {format} snapshot is built from one suite version of "
                    "this project."
                }
            )
        params.update(
            suite_version=version.pk,
            suite=version.suite.name,
            version=version.number,
            suite_hash=version.content_hash,
        )
    return params


def suite_version_of(project: Project, suite_id, number=None) -> SuiteVersion:
    """The version `number` (or the newest) of the project's suite `suite_id`: how the API
    names a suite version (as a run is created)."""
    from rubrics import suites

    suite = Suite.objects.filter(project=project, pk=suite_id or 0).first()
    if suite is None:
        raise ValidationError({"suite": "No suite of this project has that id."})
    version = suites.version_of(suite, number)
    if version is None:
        raise ValidationError(
            {"suite_version": f"Suite '{suite.name}' has no version {number}."}
            if number
            else {"suite": f"Suite '{suite.name}' has no frozen version yet."}
        )
    return version


def snapshot_retry(*, snapshot: DatasetSnapshot, user) -> DatasetSnapshot:
    """Queue a failed snapshot again, with its name, format and parameters; its error is
    cleared and a worker builds it as it builds a new one. Only a failed snapshot is retried
    (claimed with a conditional update, so two retries queue one build)."""
    with transaction.atomic():
        retried = DatasetSnapshot.objects.filter(
            pk=snapshot.pk, status=DatasetSnapshot.Status.FAILED
        ).update(
            status=DatasetSnapshot.Status.QUEUED,
            error="",
            rows_done=0,
            finished_at=None,
            rows_total=_rows_estimate(snapshot.project, snapshot.format, snapshot.params),
        )
        snapshot = DatasetSnapshot.objects.select_related("project").get(pk=snapshot.pk)
        if not retried:
            raise Conflict(
                f"Snapshot '{snapshot.name}' is {snapshot.get_status_display().lower()}; "
                "only a failed snapshot is retried."
            )
        audit.record(
            AuditEvent.Action.SNAPSHOT_REQUESTED,
            actor=user,
            project=snapshot.project,
            target_type="dataset_snapshot",
            target_id=snapshot.pk,
            target_label=snapshot.name,
            details={"format": snapshot.format, "params": snapshot.params, "retry": True},
        )
        from grading import tasks

        transaction.on_commit(lambda: tasks.build_snapshot.delay(snapshot.pk))
    return snapshot


def snapshot_delete(*, snapshot: DatasetSnapshot) -> None:
    """Delete a snapshot and its file. One being built is left alone until it is ready or
    failed; a queued one is simply never built (its worker's claim finds nothing)."""
    with transaction.atomic():
        locked = DatasetSnapshot.objects.select_for_update().filter(pk=snapshot.pk).first()
        if locked is None:
            return
        if locked.status == DatasetSnapshot.Status.BUILDING:
            raise Conflict(
                f"Snapshot '{locked.name}' is being built; delete it once it is ready or failed."
            )
        name = locked.file
        locked.delete()
        if name:
            transaction.on_commit(lambda: default_storage.delete(name))


def _rows_estimate(project: Project, format: str, params: dict) -> int:
    if format == "suite-card":
        return 1
    if params.get("suite_version"):
        return SuiteEntry.objects.filter(version_id=params["suite_version"]).count()
    if format == "scores-jsonl":
        return Score.objects.filter(run_id=params["run"]).count()
    if format == "step-supervision":
        return (
            formats.dataset_verdicts(project)
            .filter(run_id=params["run"], step__isnull=False)
            .values("response_id", "criterion_id")
            .distinct()
            .count()
        )
    if format.startswith("verdicts"):
        verdicts = formats.dataset_verdicts(project)
        if params.get("run"):
            verdicts = verdicts.filter(run_id=params["run"])
        return verdicts.count()
    if format == "healthbench-jsonl":
        return Task.objects.filter(project=project, rubrics__isnull=False).distinct().count()
    if format.startswith("responses"):
        return Response.objects.filter(task__project=project).count()
    if format == "tasks-jsonl":
        return Task.objects.filter(project=project).count()
    if format in ("openai-rft", "verl-parquet"):
        return (
            Task.objects.filter(project=project, rubrics__versions__graders__isnull=False)
            .distinct()
            .count()
        )
    return 0  # pairs: not known until built


def snapshot_build(*, snapshot_id: int) -> str:
    """Build a queued snapshot. Claimed with a conditional update, so a redelivered task never
    builds it twice; a failure is recorded on the row and leaves no file."""
    claimed = DatasetSnapshot.objects.filter(
        pk=snapshot_id, status=DatasetSnapshot.Status.QUEUED
    ).update(status=DatasetSnapshot.Status.BUILDING)
    if not claimed:
        return "not queued"
    snapshot = DatasetSnapshot.objects.select_related("project").get(pk=snapshot_id)

    def progress(rows: int) -> None:
        if rows % PROGRESS_EVERY < 1 or rows - progress.last >= PROGRESS_EVERY:
            progress.last = rows
            DatasetSnapshot.objects.filter(pk=snapshot_id).update(rows_done=rows)

    progress.last = 0
    try:
        with tempfile.TemporaryFile() as out:
            rows, digest = _write(snapshot, out, progress)
            size = out.tell()
            out.seek(0)
            stored = default_storage.save(
                f"snapshots/{snapshot.project.slug}/{snapshot.pk}-{snapshot.name}"
                f"{FORMATS[snapshot.format][1]}",
                File(out),
            )
    except Exception as exc:  # recorded for the person who asked; the worker log has the rest
        DatasetSnapshot.objects.filter(pk=snapshot_id).update(
            status=DatasetSnapshot.Status.FAILED,
            error=f"{type(exc).__name__}: {exc}",
            finished_at=timezone.now(),
        )
        raise
    snapshot.rows_done, snapshot.size_bytes, snapshot.sha256 = rows, size, digest
    snapshot.file = stored
    snapshot.provenance = provenance(snapshot)
    snapshot.card = dataset_card(snapshot)
    snapshot.status = DatasetSnapshot.Status.READY
    snapshot.finished_at = timezone.now()
    snapshot.save()
    return f"{rows} rows"


def _write(snapshot: DatasetSnapshot, out, progress: Callable[[int], None]):
    project, params = snapshot.project, snapshot.params
    run = version = None
    # A format built from a run or a suite version fails (KeyError) without it, never
    # builds an empty file.
    if params.get("run") or snapshot.format in formats.RUN_EXPORTS:
        run = GradingRun.objects.select_related("suite_version__suite").get(
            pk=params["run"], project=project
        )
    if params.get("suite_version") or snapshot.format in formats.VERSION_EXPORTS:
        version = SuiteVersion.objects.select_related("suite").get(
            pk=params["suite_version"], suite__project=project
        )
    return formats.write(
        snapshot.format,
        out,
        project=project,
        run=run,
        version=version,
        min_margin=params.get("min_margin", 0.1),
        progress=progress,
    )


# --- What a snapshot is made of -------------------------------------------------------------


def provenance(snapshot: DatasetSnapshot) -> dict:
    project = snapshot.project
    verdicts = formats.dataset_verdicts(project)
    if snapshot.params.get("run"):
        verdicts = verdicts.filter(run_id=snapshot.params["run"])
    runs = list(
        GradingRun.objects.filter(pk__in=verdicts.values("run_id").distinct())
        .select_related("judge", "suite_version__suite")
        .order_by("pk")
    )
    grader_ids = set(verdicts.exclude(grader=None).values_list("grader_id", flat=True).distinct())
    if snapshot.params.get("suite_version"):
        grader_ids |= set(
            SuiteEntry.objects.filter(version_id=snapshot.params["suite_version"])
            .values_list("grader_id", flat=True)
            .distinct()
        )
    elif snapshot.format in ("openai-rft", "verl-parquet", "healthbench-jsonl"):
        grader_ids |= set(
            Grader.objects.filter(version__rubric__project=project).values_list("pk", flat=True)
        )
    graders = Grader.objects.filter(pk__in=grader_ids).select_related("version__rubric")
    outcomes = dict(verdicts.values_list("outcome").annotate(n=Count("pk")).order_by())
    kinds = dict(verdicts.values_list("rater__kind").annotate(n=Count("pk")).order_by())
    tasks = Task.objects.filter(project=project)
    suite = (
        {
            "suite": snapshot.params["suite"],
            "version": snapshot.params["version"],
            "content_hash": snapshot.params["suite_hash"],
        }
        if snapshot.params.get("suite_version")
        else None
    )
    return {
        "suite": suite,
        "agreement": _agreement_figures(graders),
        "graders": [
            {
                "hash": g.hash,
                "rubric": g.version.rubric.title,
                "version": g.version.number,
                "content_hash": g.version.content_hash,
            }
            for g in graders.order_by("version__rubric__title", "version__number")
        ],
        "runs": [
            {
                "id": r.pk,
                "suite": r.suite_version.suite.name,
                "suite_version": r.suite_version.number,
                "suite_hash": r.suite_version.content_hash,
                "judge": r.judge.name,
                "judge_model": r.judge.model,
                "status": r.status,
                "simulated": r.simulated,
            }
            for r in runs
        ],
        "counts": {
            "tasks": tasks.count(),
            "responses": Response.objects.filter(task__project=project).count(),
            "verdicts": sum(outcomes.values()),
            "verdicts_by_outcome": outcomes,
            "verdicts_by_rater_kind": kinds,
            "rows": snapshot.rows_done,
        },
        # HealthBench rows carry a canary so they stay out of training data (kept by the
        # importer in Task.extra); one pasted into a prompt counts too.
        "canary_tasks": tasks.filter(
            Q(extra__has_key="canary")
            | Q(messages__icontains="healthbench:")
            | Q(context__icontains="healthbench:")
        ).count(),
    }


def _agreement_figures(graders) -> list[dict]:
    """Per rubric version: agreement among all raters (people and judges), and each judge's
    calibration against gold, computed as on the calibration pages (annotation.stats)."""
    from annotation import selectors as annotation_selectors
    from annotation import stats

    figures = []
    for grader in graders:
        version = grader.version
        ratings, raters = annotation_selectors.version_ratings(version)
        if not ratings:
            continue
        overall = stats.agreement(ratings).overall
        gold = {k: v[0] for k, v in annotation_selectors.version_gold(version, ratings).items()}
        judges = []
        for rater in raters.values():
            if rater.kind != "judge":
                continue
            judged = {
                (r.response_id, r.criterion_id): r.outcome
                for r in ratings
                if r.rater_id == rater.pk
            }
            calibration = stats.calibration(judged, gold, resamples=200) if gold else None
            judges.append(
                {
                    "judge": rater.name,
                    "items_with_gold": calibration.items if calibration else 0,
                    "macro_f1": calibration.macro_f1 if calibration else None,
                    "macro_f1_low": calibration.macro_f1_low if calibration else None,
                    "macro_f1_high": calibration.macro_f1_high if calibration else None,
                    "kappa": calibration.kappa if calibration else None,
                }
            )
        figures.append(
            {
                "rubric": version.rubric.title,
                "version": version.number,
                "raters": len(raters),
                "people": sum(1 for r in raters.values() if r.kind == "person"),
                "items": overall.items,
                "percent_agreement": overall.percent,
                "krippendorff_alpha": overall.alpha,
                "gold_items": len(gold),
                "judges": judges,
            }
        )
    return figures


def _fig(value) -> str:
    return "—" if value is None else f"{value:.3f}"


def dataset_card(snapshot: DatasetSnapshot) -> str:
    p = snapshot.provenance
    counts = p["counts"]
    description, _ = FORMATS[snapshot.format]
    lines = [
        f"# {snapshot.name}",
        "",
        f"{description}. Exported from the Assay project **{snapshot.project.name}** "
        f"on {timezone.localtime(snapshot.finished_at or timezone.now()):%Y-%m-%d %H:%M %Z}"
        f" by {snapshot.created_by or 'a deleted user'}.",
        "",
        "| | |",
        "|---|---|",
        f"| format | `{snapshot.format}` |",
        f"| rows | {snapshot.rows_done:,} |",
        f"| size | {snapshot.size_bytes:,} bytes |",
        f"| SHA-256 | `{snapshot.sha256}` |",
        f"| license | {snapshot.license or 'not set'} |",
        "",
        "## Contents",
        "",
        f"{counts['tasks']:,} tasks, {counts['responses']:,} responses, "
        f"{counts['verdicts']:,} verdicts in the project"
        + (
            " (by outcome: "
            + ", ".join(f"{k} {v:,}" for k, v in sorted(counts["verdicts_by_outcome"].items()))
            + "; by rater: "
            + ", ".join(f"{k} {v:,}" for k, v in sorted(counts["verdicts_by_rater_kind"].items()))
            + ")."
            if counts["verdicts"]
            else "."
        ),
        "",
        "## Rubric versions and graders",
        "",
        "| rubric | version | content hash | grader hash |",
        "|---|---|---|---|",
        *(
            f"| {g['rubric']} | {g['version']} | `{g['content_hash'][:12]}` | `{g['hash']}` |"
            for g in p["graders"]
        ),
        "",
        "## Grading runs",
        "",
        "| run | judge | model | status | simulated |",
        "|---|---|---|---|---|",
        *(
            f"| {r['id']} | {r['judge']} | {r['judge_model']} | {r['status']} | "
            f"{'yes' if r['simulated'] else 'no'} |"
            for r in p["runs"]
        ),
        "",
    ]
    lines += ["## Agreement and calibration", ""]
    agreement = p.get("agreement") or []
    if not any(a["people"] for a in agreement):
        lines += [
            "No person has graded these rubric versions yet, so there is no human agreement or "
            "gold to calibrate the judge against.",
            "",
        ]
    if agreement:
        lines += [
            "| rubric | version | raters (people) | items | % agreement | Krippendorff α | "
            "gold items | judge | macro F1 [95% CI] | κ vs gold |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for a in agreement:
            for j in a["judges"] or [{"judge": "—"}]:
                lines.append(
                    f"| {a['rubric']} | {a['version']} | {a['raters']} ({a['people']}) | "
                    f"{a['items']} | {_fig(a['percent_agreement'])} | "
                    f"{_fig(a['krippendorff_alpha'])} | {a['gold_items']} | {j['judge']} | "
                    f"{_fig(j.get('macro_f1'))} [{_fig(j.get('macro_f1_low'))}, "
                    f"{_fig(j.get('macro_f1_high'))}] | {_fig(j.get('kappa'))} |"
                )
        lines.append("")
    if any(r["simulated"] for r in p["runs"]):
        lines += [
            "> **Simulated judge.** Some verdicts come from Assay's judge simulator, not a "
            "model: use them to test pipelines, not to train or evaluate.",
            "",
        ]
    if p["canary_tasks"]:
        lines += [
            f"> **Benchmark canary.** {p['canary_tasks']} task(s) carry a HealthBench canary "
            "string: keep this dataset out of training data.",
            "",
        ]
    if snapshot.params.get("suite_version"):
        version = (
            SuiteVersion.objects.filter(pk=snapshot.params["suite_version"])
            .select_related("suite")
            .defer("manifest")
            .first()
        )
        if version is not None:
            # The suite version's own card, one heading level down: its leaderboard.
            lines += [
                ("#" + line) if line.startswith("#") else line
                for line in formats.suite_card_text(version).splitlines()
            ]
            lines.append("")
    if snapshot.format == "verl-parquet":
        lines += [
            "## Schema",
            "",
            "verl's RL dataset columns: `data_source`, `prompt` (chat messages), `ability`, "
            "`reward_model` {style, ground_truth: the task's external id, task_external_id, "
            "grader_hash, suite, suite_version, suite_hash} and `extra_info` {split, index, "
            "files, and the same names}. A prompt message with images or files is its text "
            "and a line naming each; `extra_info.files` gives each one's message, sha256, "
            "filename, kind and size. Point verl's custom_reward_function at "
            "grading/reward_client.py.",
            "",
        ]
    if snapshot.format == "verdicts-parquet":
        lines += [
            "## Schema",
            "",
            "| column | type |",
            "|---|---|",
            *(f"| {name} | {kind} |" for name, _, kind in formats.VERDICT_COLUMNS),
            "",
        ]
    if snapshot.format == "responses-parquet":
        lines += [
            "## Schema",
            "",
            "| column | type |",
            "|---|---|",
            *(f"| {name} | {kind} |" for name, _, kind in formats.RESPONSE_COLUMNS),
            "",
            "`images` holds each response's image parts in order as {bytes, path} structs, the "
            "shape the Hugging Face `datasets` Image feature reads (declared in the file's "
            "schema metadata): `load_dataset('parquet', data_files=...)` decodes them to PIL "
            "images. `messages` names every image and file by its sha256; the "
            "responses-bundle export carries the other files.",
            "",
        ]
    if snapshot.format == "responses-bundle":
        lines += [
            "## Layout",
            "",
            "A zip: `responses.jsonl` (one response per line, in the format `import_responses` "
            "reads) and `files/<sha256>.<kind>`, each image and file once. A part points at its "
            'file in the zip: `{"type": "image_url", "image_url": {"url": "files/<sha256>.png"}}`, '
            '`{"type": "file", "file": {"path": "files/<sha256>.xlsx", "filename": ...}}`.',
            "",
        ]
    if snapshot.format == "step-supervision":
        lines += [
            "## Schema",
            "",
            "TRL's stepwise-supervision shape, for process reward models (PRMTrainer): "
            "`prompt` (text), `completions` (one rendered step each: the tool outputs since the "
            "step before, then the assistant turn) and `labels` (true: the step met the "
            "criterion), one row per (response, step criterion), with `steps` (message indexes), "
            "`criterion`, `task_external_id`, `model` and the run's suite version.",
            "",
        ]
    if snapshot.format == "openai-rft":
        import json

        lines += [
            "## Grader",
            "",
            "```json",
            json.dumps(formats.rft_grader(), indent=2),
            "```",
            "",
        ]
    lines += [
        "## How it was made",
        "",
        f"`python manage.py export_dataset --project {snapshot.project.slug} "
        f"--format {snapshot.format}"
        + (f" --run {snapshot.params['run']}" if snapshot.params.get("run") else "")
        + (
            f" --min-margin {snapshot.params['min_margin']}"
            if "min_margin" in snapshot.params
            else ""
        )
        + (
            f" --suite '{snapshot.params['suite']}' --suite-version {snapshot.params['version']}"
            if snapshot.params.get("suite_version")
            else ""
        )
        + " --output FILE` writes the same rows (new verdicts since then aside); this snapshot "
        "is frozen and its SHA-256 above names its file.",
        "",
    ]
    return "\n".join(lines)


# --- Reads --------------------------------------------------------------------------------


def project_snapshots(project: Project):
    return DatasetSnapshot.objects.filter(project=project).select_related("created_by")


def project_suite_versions(project: Project):
    """Every frozen version of the project's suites (not the suites of one rubric), newest
    first within each suite, manifests left in the database."""
    return (
        SuiteVersion.objects.filter(suite__project=project, suite__rubric__isnull=True)
        .select_related("suite")
        .defer("manifest")
        .order_by("suite__name", "-number")
    )


def snapshot_for(user, pk: int, perm: Perm) -> DatasetSnapshot:
    snapshot = get_object_or_404(DatasetSnapshot.objects.select_related("project"), pk=pk)
    snapshot.project.role = check(user, snapshot.project, perm)
    return snapshot


def snapshot_path(snapshot: DatasetSnapshot) -> Path:
    return Path(default_storage.path(snapshot.file))


def snapshot_download(snapshot: DatasetSnapshot, *, actor):
    """The snapshot's file as an attachment, its SHA-256 in a header; 404 until it is ready.
    Each download is audited: data leaving Assay."""
    from django.http import FileResponse, Http404

    if snapshot.status != snapshot.Status.READY:
        raise Http404("This snapshot is not ready.")
    path = snapshot_path(snapshot)
    handle = path.open("rb")
    audit.record(
        AuditEvent.Action.SNAPSHOT_DOWNLOADED,
        actor=actor,
        project=snapshot.project,
        target_type="dataset_snapshot",
        target_id=snapshot.pk,
        target_label=snapshot.name,
        details={
            "format": snapshot.format,
            "sha256": snapshot.sha256,
            "size_bytes": snapshot.size_bytes,
        },
    )
    # Always a download, whatever the format: the schema documents one media type.
    response = FileResponse(
        handle, as_attachment=True, filename=path.name, content_type="application/octet-stream"
    )
    response["X-Content-SHA256"] = snapshot.sha256
    return response
