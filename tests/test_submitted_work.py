"""A person's saved, never-submitted draft is nobody's verdict: the verdicts API, every
dataset export, agreement and calibration read submitted work only (Verdict.objects.submitted)."""

from __future__ import annotations

import io
import json

import pyarrow.parquet as pq
import pytest

from annotation import selectors as annotation_selectors
from annotation import services as annotation_services
from annotation.models import Rater, Response, Verdict
from grading.datasets import formats, snapshots
from grading.models import DatasetSnapshot
from rubrics.models import Role
from tests import factories
from tests.test_api import api_client

pytestmark = pytest.mark.django_db


def test_a_draft_is_in_no_export_agreement_or_calibration(personas, tmp_path):
    p = personas
    task = factories.make_task(p.project, "draft-task")
    grader = factories.make_published_rubric(
        p.project, task, [("Mentions water", 2), ("Mentions rest", 1)], p.admin
    )
    factories.import_responses(
        p.project, [{"task_id": "draft-task", "model": "m", "response": "Drink water."}]
    )
    response = Response.objects.get(task=task)
    criteria = list(grader.version.criteria.order_by("position"))
    drafter = factories.add_member(p.project, Role.ANNOTATOR)
    queue = factories.make_queue(p.project, grader, [p.annotator, drafter], p.admin, overlap=2)
    factories.annotate(queue, p.annotator, "met")  # submitted
    factories.annotate(queue, drafter, "unmet", submit=False)  # saved, never submitted
    judge = factories.make_judge(p.project, "http://127.0.0.1:9/v1")
    run = factories.make_run(project=p.project, grader=grader, judge=judge, total_items=1)
    judge_rater = Rater.objects.get(pk=judge.rater_id)
    for criterion in criteria:
        Verdict.objects.create(
            response=response,
            criterion=criterion,
            rater=judge_rater,
            grader=grader,
            run=run,
            outcome="met",
        )
    drafts = set(Verdict.objects.filter(rater__user=drafter).values_list("pk", flat=True))
    assert len(drafts) == 2  # the draft is stored...
    counted = set(Verdict.objects.values_list("pk", flat=True)) - drafts
    assert len(counted) == 4

    # ...and read nowhere: the verdicts API,
    reply = api_client(p.engineer).get(f"/api/projects/{p.project.slug}/verdicts/")
    assert reply.status_code == 200
    assert {v["id"] for v in reply.json()["results"]} == counted
    # every verdict export,
    out = io.BytesIO()
    assert formats.verdicts_jsonl(out, project=p.project)[0] == 4
    assert {json.loads(line)["verdict_id"] for line in out.getvalue().splitlines()} == counted
    parquet = tmp_path / "v.parquet"
    with parquet.open("wb") as handle:
        formats.verdicts_parquet(handle, project=p.project)
    assert {r["verdict_id"] for r in pq.read_table(parquet).to_pylist()} == counted
    # a snapshot's row count, provenance and card,
    snapshot = snapshots.snapshot_create(
        project=p.project, name="with-drafts", format="verdicts-jsonl", user=p.engineer
    )
    assert snapshot.rows_total == 4
    snapshots.snapshot_build(snapshot_id=snapshot.pk)
    snapshot = DatasetSnapshot.objects.get(pk=snapshot.pk)
    assert snapshot.status == "ready" and snapshot.rows_done == 4
    assert snapshot.provenance["counts"]["verdicts"] == 4
    assert snapshot.provenance["counts"]["verdicts_by_outcome"] == {"met": 4}
    # agreement and calibration (their ratings), and a reviewer's side-by-side view.
    ratings, raters = annotation_selectors.version_ratings(grader.version)
    assert {r.outcome for r in ratings} == {"met"} and len(ratings) == 4
    assert all(info.name != drafter.username for info in raters.values())
    seen = annotation_selectors.item_verdicts(response, criteria[0])
    assert not {v.pk for v in seen} & drafts

    # Once submitted, the same verdicts count everywhere.
    assignment = drafter.assignments.get()
    annotation_services.assignment_submit(assignment_id=assignment.pk)
    out = io.BytesIO()
    assert formats.verdicts_jsonl(out, project=p.project)[0] == 6
    assert len(annotation_selectors.version_ratings(grader.version)[0]) == 6
