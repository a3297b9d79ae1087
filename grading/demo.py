"""The demo project: a clinical, a legal and an investment workspace in one, graded by the
simulator. Content lives in assay/demo/tasks.json (written by people, checked by
assay/demo/check_demo.py)."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.files.base import ContentFile
from django.db import transaction

from annotation import services as annotation_services
from grading import services as grading_services
from grading.models import ModelPrice
from rubrics import services as rubric_services
from rubrics import suites
from rubrics.models import Project, Role

CONTENT = Path(settings.BASE_DIR) / "assay" / "demo" / "tasks.json"
# An agent task: a refund agent with tools, its rubric of outcome, trajectory, step and
# checked criteria, and three agents' episodes; one reaches a good final answer through a
# refund issued before the order was looked up (assay/demo/agent_task.json).
AGENT_CONTENT = Path(settings.BASE_DIR) / "assay" / "demo" / "agent_task.json"
AGENT_SUITE = "Support agent"
# Two tasks whose work is files: a banker's debt schedule (XLSX) and credit memo (DOCX), and a
# chart (PNG) in the prompt that the answer must read (assay/demo/file_tasks.json; the files
# are made at load time by grading/demo_files.py).
FILE_CONTENT = Path(settings.BASE_DIR) / "assay" / "demo" / "file_tasks.json"
FILES_SUITE = "Deliverables and images"
DELIVERABLE_SAMPLES = 2
DEMO_SLUG = "demo"
DEMO_PASSWORD = "assay-demo"  # noqa: S105 - a documented demo login on the embedded default
# Its fourth sample is left for the person to upload, to show the import step.
HELD_BACK_MODEL = "tinyllm-1b"
HELD_BACK_SAMPLE = 3
# Samples per task and model graded on first start: the written answer (sample 0) and two
# variants of it, so per-model intervals and run comparisons have something to say.
SAMPLES = 3
SUITE_NAME = "Demo tasks"
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


def sample_variant(text: str, sample: int) -> str:
    """Sample `sample` of a written answer: sample 0 is the answer; sample k > 0 drops every
    (k + 2)-th of its paragraphs, as a model's second try may leave out a point.
    Deterministic, so the simulator's scores of the demo are the same on every machine."""
    if sample == 0:
        return text
    paragraphs = text.split("\n\n")
    kept = [p for i, p in enumerate(paragraphs, 1) if i % (sample + 2) != 0]
    return "\n\n".join(kept or paragraphs[:1])


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
                    "sample_index": HELD_BACK_SAMPLE,
                    "response": sample_variant(t["responses"][HELD_BACK_MODEL], HELD_BACK_SAMPLE),
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
            json.dumps(
                {
                    "task_id": t["external_id"],
                    "model": model,
                    "sample_index": sample,
                    "response": sample_variant(text, sample),
                }
            )
            for t in tasks
            for model, text in t["responses"].items()
            for sample in range(SAMPLES)
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
            # The simulator reads the images it is sent (its colour rule), so the demo's chart
            # reaches it as a vision judge's would.
            accepts_images=True,
        )
        # One suite of the six tasks, frozen, and graded in one run; then the author revises
        # one rubric, a second version of the suite pins it, and a second run grades that:
        # the two runs compare (what the revision changed, per task and per criterion).
        suite = suites.suite_create(
            project=project,
            name=SUITE_NAME,
            description="The six demo tasks: clinical, legal and investment.",
            task_ids=[g.version.rubric.task_id for g in graders],
            user=admin,
        )
        first, _ = suites.suite_freeze(suite=suite, user=admin)
        runs = [
            grading_services.run_create(
                project=project, suite_version=first, judge=judge, user=admin
            )
        ]
        _revise(graders[0], author=author, reviewer=reviewer)
        second, _ = suites.suite_freeze(suite=suite, user=admin)
        runs.append(
            grading_services.run_create(
                project=project, suite_version=second, judge=judge, user=admin
            )
        )
        runs.append(
            _load_agent(project, admin=admin, author=author, reviewer=reviewer, judge=judge)
        )
        runs.append(
            _load_file_tasks(project, admin=admin, author=author, reviewer=reviewer, judge=judge)
        )
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


def _load_agent(project, *, admin, author, reviewer, judge):
    """The agent task, its rubric (published), its three episodes, a suite of it and a run;
    an annotator's queue over the episodes, step criteria included."""
    item = json.loads(AGENT_CONTENT.read_text())
    task = rubric_services.task_create(
        project=project,
        external_id=item["external_id"],
        title=item["title"],
        messages=item["messages"],
        tags=item["tags"],
        reference=item["reference"],
        user=admin,
    )
    criteria = [
        rubric_services.clean_criterion(
            c["text"],
            Decimal(str(c["points"])),
            kind=c.get("kind", "binary"),
            check_spec=c.get("check"),
            scope=c.get("scope", "outcome"),
            step_rule=c.get("step_rule", ""),
            step_tool=c.get("step_tool", ""),
        )
        for c in item["criteria"]
    ]
    rubric = rubric_services.rubric_create(
        project=project, task=task, title=f"{item['title']}: rubric", user=admin, criteria=criteria
    )
    version = rubric_services.version_submit(version=rubric.versions.get(), user=author)
    grader = rubric_services.version_approve(version=version, user=reviewer, role=Role.REVIEWER)
    lines = [
        json.dumps({"task_id": item["external_id"], "model": model, **episode})
        for model, episode in item["episodes"].items()
    ]
    result = annotation_services.responses_import_jsonl(project=project, lines=lines)
    if not result.ok:
        raise ValueError(f"demo episodes did not import: {result.errors}")
    suite = suites.suite_create(
        project=project,
        name=AGENT_SUITE,
        description="A refund agent with tools: outcome, steps and the final database state.",
        task_ids=[task.pk],
        user=admin,
    )
    frozen, _ = suites.suite_freeze(suite=suite, user=admin)
    annotation_services.queue_create(
        project=project,
        grader=grader,
        name="Refund agent: steps by hand",
        overlap=1,
        annotators=["annotator"],
        user=admin,
    )
    return grading_services.run_create(
        project=project, suite_version=frozen, judge=judge, user=admin
    )


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


def _publish(project, task, item, *, admin, author, reviewer):
    criteria = [
        rubric_services.clean_criterion(
            c["text"],
            Decimal(str(c["points"])),
            kind=c.get("kind", "binary"),
            check_spec=c.get("check"),
        )
        for c in item["criteria"]
    ]
    rubric = rubric_services.rubric_create(
        project=project, task=task, title=f"{item['title']}: rubric", user=admin, criteria=criteria
    )
    version = rubric_services.version_submit(version=rubric.versions.get(), user=author)
    return rubric_services.version_approve(version=version, user=reviewer, role=Role.REVIEWER)


def _load_file_tasks(project, *, admin, author, reviewer, judge):
    """The banker's task (each model's answer carries a debt schedule workbook and a memo;
    one gets a cell wrong, one writes a thin memo) and the chart task (its prompt carries a
    PNG), their rubrics published, their responses imported with their files, one suite and
    one run over both."""
    from annotation.content.intake import ProjectIntake
    from grading import demo_files

    content = json.loads(FILE_CONTENT.read_text())
    debt, chart = content["debt"], content["chart"]
    debt_task = rubric_services.task_create(
        project=project,
        external_id=debt["external_id"],
        title=debt["title"],
        messages=debt["prompt"],
        tags=debt["tags"],
        user=admin,
    )
    rubric_services.reference_create(
        task=debt_task,
        body=debt["reference"],
        file=ContentFile(demo_files.debt_schedule_xlsx(), name="reference_debt_schedule.xlsx"),
        user=author,
    )
    chart_task = rubric_services.task_create(
        project=project,
        external_id=chart["external_id"],
        title=chart["title"],
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": chart["prompt"]},
                    {
                        "type": "image_url",
                        "image_url": {"url": _data_uri(demo_files.chart_png(), "image/png")},
                        "file": {"filename": "units_per_region_q3.png"},
                    },
                ],
            }
        ],
        tags=chart["tags"],
        reference=chart["reference"],
        user=admin,
    )
    _publish(project, debt_task, debt, admin=admin, author=author, reviewer=reviewer)
    _publish(project, chart_task, chart, admin=admin, author=author, reviewer=reviewer)
    lines = []
    for model, answer in debt["models"].items():
        workbook = demo_files.debt_schedule_xlsx(wrong_cell=answer["wrong_cell"])
        for sample in range(DELIVERABLE_SAMPLES):
            title = "Credit memo" + (" (second draft)" if sample else "")
            memo = demo_files.memo_docx(title, answer["memo"])
            parts = [
                {"type": "text", "text": answer["text"]},
                {
                    "type": "file",
                    "file": {
                        "file_data": _data_uri(workbook, XLSX),
                        "filename": "debt_schedule.xlsx",
                    },
                },
                {
                    "type": "file",
                    "file": {"file_data": _data_uri(memo, DOCX), "filename": "credit_memo.docx"},
                },
            ]
            lines.append(
                json.dumps(
                    {
                        "task_id": debt["external_id"],
                        "model": model,
                        "sample_index": sample,
                        "messages": [{"role": "assistant", "content": parts}],
                    }
                )
            )
    for model, text in chart["models"].items():
        lines.append(
            json.dumps({"task_id": chart["external_id"], "model": model, "response": text})
        )
    result = annotation_services.responses_import_jsonl(
        project=project, lines=lines, files=ProjectIntake(project)
    )
    if not result.ok:
        raise ValueError(f"demo deliverables did not import: {result.errors}")
    suite = suites.suite_create(
        project=project,
        name=FILES_SUITE,
        description="A debt schedule and memo as files, and a chart in the prompt.",
        task_ids=[debt_task.pk, chart_task.pk],
        user=admin,
    )
    frozen, _ = suites.suite_freeze(suite=suite, user=admin)
    return grading_services.run_create(
        project=project, suite_version=frozen, judge=judge, user=admin
    )


REVISION = (
    "Tells the patient to call emergency services (911) for an ambulance rather than drive "
    "or be driven to hospital"
)


def _revise(grader, *, author, reviewer):
    """The author's second version of a rubric, with one criterion added; a reviewer approves."""
    version = rubric_services.draft_for_edit(rubric=grader.version.rubric, user=author)
    rubric_services.criterion_add(version=version, text=REVISION, points=5, user=author)
    version = rubric_services.version_submit(version=version, user=author)
    return rubric_services.version_approve(version=version, user=reviewer, role=Role.REVIEWER)
