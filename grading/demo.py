"""The demo project: a clinical, a legal and an investment workspace in one, graded by the
simulator. Content lives in assay/demo/tasks.json (written by people, checked by
assay/demo/check_demo.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import transaction

from annotation import services as annotation_services
from grading import services as grading_services
from grading.models import ModelPrice
from rubrics import services as rubric_services
from rubrics.models import Project, Role

CONTENT = Path(settings.BASE_DIR) / "assay" / "demo" / "tasks.json"
DEMO_SLUG = "demo"
DEMO_PASSWORD = "assay-demo"  # noqa: S105 - a documented demo login on the embedded default
HELD_BACK_MODEL = "tinyllm-1b"  # left for the person to upload, to show the import step
SIM_MODEL = "assay-simulator"
# Illustrative prices per million tokens for the simulated judge's model, so the demo's runs
# show their cost; the demo admin is staff and may change them (/admin/, /api/model-prices/).
SIM_PRICES = {"input_per_mtok": "2.50", "cached_input_per_mtok": "1.25", "output_per_mtok": "10"}
DEMO_USERS = {
    "demo": Role.ADMIN,
    "dr-lee": Role.AUTHOR,
    "annotator": Role.ANNOTATOR,
    "annotator2": Role.ANNOTATOR,
    "reviewer": Role.REVIEWER,
    "engineer": Role.ENGINEER,
}


@dataclass
class DemoResult:
    project: Project
    created: bool
    upload_file: Path
    runs: int = 0


def _user(username: str):
    user_model = get_user_model()
    user = user_model.objects.filter(username=username).first()
    if user is None:
        user = user_model.objects.create_user(username=username, password=DEMO_PASSWORD)
    return user


def load_demo(*, simulator_url: str, out_dir: Path) -> DemoResult:
    tasks = json.loads(CONTENT.read_text())
    out_dir.mkdir(parents=True, exist_ok=True)
    upload = out_dir / f"{HELD_BACK_MODEL}.jsonl"
    upload.write_text(
        "".join(
            json.dumps(
                {
                    "task_id": t["external_id"],
                    "model": HELD_BACK_MODEL,
                    "response": t["responses"][HELD_BACK_MODEL],
                    "metadata": {"temperature": 0.7, "source": "demo"},
                }
            )
            + "\n"
            for t in tasks
            if HELD_BACK_MODEL in t["responses"]
        )
    )
    existing = Project.objects.filter(slug=DEMO_SLUG).first()
    if existing is not None:
        return DemoResult(project=existing, created=False, upload_file=upload)
    with transaction.atomic():
        admin = _user("demo")
        # Prices hold for every project, so only staff set them: the demo's admin is staff so
        # that a person trying Assay can see what a price changes.
        admin.is_staff = True
        admin.save(update_fields=["is_staff"])
        admin.user_permissions.add(
            *Permission.objects.filter(
                content_type__app_label="grading", content_type__model="modelprice"
            )
        )
        if not ModelPrice.objects.filter(model=SIM_MODEL).exists():
            grading_services.model_price_set(model=SIM_MODEL, actor=admin, **SIM_PRICES)
        project = rubric_services.project_create(
            name="Demo: expert rubrics", slug=DEMO_SLUG, user=admin
        )
        for username, role in DEMO_USERS.items():
            if username != "demo":
                _user(username)
                rubric_services.membership_set(project=project, username=username, role=role)
        author = _user("dr-lee")
        reviewer = _user("reviewer")
        graders = []
        for item in tasks:
            task = rubric_services.task_create(
                project=project,
                external_id=item["external_id"],
                title=item["title"],
                messages=item["messages"],
                tags=item.get("tags", []),
                reference=item.get("reference", ""),
                user=admin,
            )
            rubric = rubric_services.rubric_create(
                project=project,
                task=task,
                title=f"{item['title']}: rubric",
                user=admin,
                criteria=[
                    rubric_services.clean_criterion(c["text"], Decimal(str(c["points"])))
                    for c in item["criteria"]
                ],
            )
            # As in life: the author submits, a reviewer (not the author) approves.
            version = rubric_services.version_submit(version=rubric.versions.get(), user=author)
            graders.append(
                rubric_services.version_approve(version=version, user=reviewer, role=Role.REVIEWER)
            )
        lines = [
            json.dumps({"task_id": t["external_id"], "model": model, "response": text})
            for t in tasks
            for model, text in t["responses"].items()
            if model != HELD_BACK_MODEL
        ]
        result = annotation_services.responses_import_jsonl(project=project, lines=lines)
        if not result.ok:
            raise ValueError(f"demo responses did not import: {result.errors}")
        judge = grading_services.judge_create(
            project=project,
            name="Simulated judge",
            base_url=simulator_url,
            model=SIM_MODEL,
            max_concurrency=8,
        )
        runs = [
            grading_services.run_create(project=project, grader=g, judge=judge, user=admin)
            for g in graders
        ]
        # Two annotators grade the chest-pain answers by hand, to compare with the judge.
        annotation_services.queue_create(
            project=project,
            grader=graders[0],
            name="Chest pain: double annotation",
            overlap=2,
            annotators=["annotator", "annotator2"],
            user=admin,
        )
    return DemoResult(project=project, created=True, upload_file=upload, runs=len(runs))
