"""Plant the payloads of tests/xss_payloads.py in every field a person or an import fills,
through the project's own services, and list the pages that show them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal
from urllib.parse import urlencode

from django.core.files.base import ContentFile

from annotation import import_jobs
from annotation import services as annotation_services
from annotation.models import Assignment, ImportJob
from grading import services as grading_services
from grading.datasets import snapshots
from grading.models import DatasetSnapshot, GradingRun
from rubrics import services as rubric_services
from rubrics import tokens
from rubrics.models import Role
from tests import factories
from tests.xss_payloads import ALL, pick, short

TASK_ID = "xss-task"


@dataclass
class Planted:
    users: dict[str, object]
    # (username, url) of every page that shows planted content.
    pages: list[tuple[str, str]] = field(default_factory=list)
    editor: str = ""  # the rubric editor, on the open draft
    tryit: str = ""


def _decide(assignment_id: int, criteria, outcome: str, *, submit: bool) -> None:
    for criterion in criteria:
        value = None
        if criterion.kind == "scale":
            value = 1.0 if outcome == "met" else 0.0
        annotation_services.verdict_save_draft(
            assignment_id=assignment_id,
            criterion_id=criterion.pk,
            outcome=outcome,
            explanation=ALL,
            evidence=ALL,
            value=value,
        )
    if submit:
        annotation_services.assignment_submit(assignment_id=assignment_id)


def plant(*, judge_url: str, sim, grade, build_snapshot, run_import) -> Planted:
    """`grade(run)`, `build_snapshot(snapshot)` and `run_import(job)` finish those in the
    caller's way (in this process, or by waiting for the Celery worker)."""
    admin = factories.make_user()
    project = rubric_services.project_create(name=pick("project", 200), user=admin)
    ann1 = factories.add_member(project, Role.ANNOTATOR)
    ann2 = factories.add_member(project, Role.ANNOTATOR)
    rev = factories.add_member(project, Role.REVIEWER)

    # A task: title, every message, context, tags; a reference with a file.
    task = rubric_services.task_create(
        project=project,
        external_id=TASK_ID,
        title=pick("task title", 300),
        messages=[
            {"role": "system", "content": ALL},
            {"role": "user", "content": ALL},
        ],
        context=ALL,
        tags=[pick("tag a", 100), pick("tag b", 100)],
        user=admin,
    )
    rubric_services.reference_create(
        task=task,
        body=ALL,
        file=ContentFile(b"reference", name=short(2) + ".txt"),
        user=admin,
    )

    # A rubric: criterion text, guidance, examples, tags, scale level descriptors.
    rubric = rubric_services.rubric_create(
        project=project,
        task=task,
        title=pick("rubric title", 300),
        user=admin,
        criteria=[
            rubric_services.CriterionInput(
                text=ALL,
                points=Decimal(5),
                tags=(pick("crit tag", 100), short(3)),
                guidance=ALL,
                example_met=ALL,
                example_unmet=ALL,
            ),
            rubric_services.CriterionInput(
                text="Grades the " + ALL,
                points=Decimal(3),
                kind="scale",
                scale=(ALL, ALL, ALL),
                guidance=ALL,
            ),
            rubric_services.CriterionInput(text=pick("pitfall", 2000), points=Decimal(-2)),
        ],
    )
    v1 = rubric.versions.get()
    grader = rubric_services.version_publish(version=v1, user=admin)
    criteria = list(v1.criteria.order_by("position"))

    # A second draft: an edited criterion (diff, history), a group, a review comment.
    v2 = rubric_services.draft_for_edit(rubric=rubric, user=admin)
    d1, d2, _ = v2.criteria.order_by("position")
    rubric_services.criterion_update(criterion=d1, user=admin, text=ALL + " edited")
    rubric_services.criterion_indent(criterion=d2, user=admin)
    group = v2.groups.get()
    rubric_services.group_update(group=group, title=pick("group", 2000), weight="1", user=admin)
    comment = rubric_services.comment_add(version=v2, user=rev, body=ALL, criterion=d1)
    rubric_services.comment_reply(comment=comment, user=admin, body=ALL)
    # A rubric in review, for the review inbox.
    in_review = rubric_services.rubric_create(
        project=project,
        title=pick("review title", 300),
        user=admin,
        criteria=[rubric_services.clean_criterion(ALL, 1)],
    ).versions.get()
    rubric_services.version_submit(version=in_review, user=admin)

    # Responses from an import: the text, the model name, metadata.
    factories.import_responses(
        project,
        [
            {
                "task_id": TASK_ID,
                "model": pick(f"model {i}", 200),
                "response": ALL + f"\n\nSample {i}.",
                "sample_index": 0,
                "metadata": {"note": ALL},
            }
            for i in (1, 2)
        ],
    )

    # A judge named and modelled with payloads; it explains every verdict with them, and a
    # second run's replies are malformed, so the raw text is kept and shown.
    judge = grading_services.judge_create(
        project=project, name=pick("judge", 100), base_url=judge_url, model=pick("jm", 200)
    )
    sim.config.explanation = ALL
    run_a = grading_services.run_create(
        project=project, grader=grader, judge=judge, user=admin, use_cache=False, start=False
    )
    grade(run_a)
    sim.config.fault_rate, sim.config.faults = 1.0, ("malformed",)
    run_b = grading_services.run_create(
        project=project, grader=grader, judge=judge, user=admin, use_cache=False, start=False
    )
    grade(run_b)
    sim.config.__init__()
    for run in (run_a, run_b):
        assert GradingRun.objects.get(pk=run.pk).status == GradingRun.Status.COMPLETED

    # Annotators: rationales and evidence quotes, a skip reason; a reviewer's gold note.
    queue = annotation_services.queue_create(
        project=project,
        grader=grader,
        name=pick("queue", 200),
        overlap=2,
        annotators=[ann1.username, ann2.username],
        user=admin,
    )
    first = annotation_services.assignment_claim(queue=queue, user=ann1)
    _decide(first.pk, criteria, "met", submit=True)
    second = annotation_services.assignment_claim(queue=queue, user=ann2)
    assert second.item_id == first.item_id, "both annotators grade the first item"
    _decide(second.pk, criteria, "unmet", submit=True)
    open_turn = annotation_services.assignment_claim(queue=queue, user=ann1)
    _decide(open_turn.pk, criteria, "met", submit=False)
    skipped = annotation_services.assignment_claim(queue=queue, user=ann2)
    annotation_services.assignment_skip(assignment_id=skipped.pk, reason=ALL)
    response = first.item.response
    annotation_services.gold_decide(
        response=response, criterion=criteria[0], outcome="unmet", note=ALL, user=rev
    )

    # A dataset snapshot with a payload licence (its name is a slug), and an API token.
    snapshot = snapshots.snapshot_create(
        project=project,
        name="xss-snapshot",
        format="verdicts-jsonl",
        user=admin,
        license=pick("license", 100),
    )
    build_snapshot(snapshot)
    assert DatasetSnapshot.objects.get(pk=snapshot.pk).status == DatasetSnapshot.Status.READY
    tokens.token_create(user=admin, name=pick("token", 100), scopes=["read"])

    # A background import whose file name and refused rows carry payloads.
    rows = [
        {"task_id": short(2), "model": "m", "response": "r"},
        {"task_id": TASK_ID, "model": short(9), "response": ALL, "sample_index": short(1)},
        {"task_id": TASK_ID, "model": "m", "response": ALL, "metadata": short(13)},
    ]
    upload = ContentFile(
        "\n".join(json.dumps(r) for r in rows).encode() + b"\n{" + short(21).encode(),
        name=f"{short(2)} {short(21)}.jsonl",
    )
    job = import_jobs.import_job_create(project=project, upload=upload, user=admin)
    run_import(job)
    assert ImportJob.objects.get(pk=job.pk).status == ImportJob.Status.FAILED

    slug, vp = project.slug, v1.pk
    score_a = run_a.scores.order_by("pk").first()
    score_b = run_b.scores.order_by("pk").first()
    a = admin.username
    pages = [
        (a, "/"),
        (a, f"/p/{slug}/"),
        (a, f"/p/{slug}/members/"),
        (a, f"/p/{slug}/audit/"),
        (a, f"/p/{slug}/reviews/"),
        (a, f"/rubrics/{in_review.rubric_id}/"),
        (a, f"/p/{slug}/tasks/{TASK_ID}/"),
        (a, f"/rubrics/{rubric.pk}/"),
        (a, f"/rubrics/{rubric.pk}/?version=1"),
        (a, f"/rubrics/{rubric.pk}/diff/"),
        (a, f"/rubrics/{rubric.pk}/history/"),
        (a, f"/rubrics/{rubric.pk}/history/?criterion={d1.lineage}"),
        (a, f"/rubrics/{rubric.pk}/try/"),
        (a, f"/graders/{grader.hash}/"),
        (a, f"/p/{slug}/responses/"),
        (a, f"/p/{slug}/responses/?q=Sample&model=&sample_index=0"),
        # Search text echoed back, and refused as too long: in the field and the error.
        (a, f"/p/{slug}/responses/?{urlencode({'q': pick('search', 190)})}"),
        (a, f"/p/{slug}/responses/?{urlencode({'q': ALL * 3, 'task': pick('task search', 150)})}"),
        (a, f"/responses/{response.pk}/"),
        (a, f"/p/{slug}/judges/"),
        (a, f"/p/{slug}/runs/"),
        (a, f"/runs/{run_a.pk}/"),
        (a, f"/runs/{run_b.pk}/"),
        (a, f"/runs/{run_a.pk}/compare/{run_b.pk}/"),
        (a, f"/runs/{run_a.pk}/scores/{score_a.pk}/"),
        (a, f"/runs/{run_b.pk}/scores/{score_b.pk}/"),
        (a, f"/p/{slug}/queues/"),
        (a, f"/queues/{queue.pk}/"),
        (ann1.username, f"/assignments/{open_turn.pk}/"),
        (a, f"/versions/{vp}/agreement/"),
        (a, f"/versions/{vp}/disagreements/"),
        (a, f"/versions/{vp}/disagreements/?status=all"),
        (rev.username, f"/versions/{vp}/adjudicate/{response.pk}/{criteria[0].pk}/"),
        (a, f"/versions/{vp}/calibration/"),
        (a, f"/calibration/versions/{vp}/flags/"),
        (a, f"/p/{slug}/datasets/"),
        (a, f"/datasets/{snapshot.pk}/"),
        (a, "/tokens/"),
        (a, f"/imports/{job.pk}/"),
    ]
    assert Assignment.objects.filter(pk=open_turn.pk, status="active").exists()
    return Planted(
        users={"admin": admin, "ann1": ann1, "ann2": ann2, "rev": rev},
        pages=pages,
        editor=f"/rubrics/{rubric.pk}/",
        tryit=f"/rubrics/{rubric.pk}/try/",
    )
