"""Dataset snapshots built by a real worker: progress, file, SHA-256, and a card whose numbers
are the data's."""

from __future__ import annotations

import hashlib
import json

import pytest
from django.core.exceptions import ValidationError

from annotation.models import Verdict
from grading import services
from grading.datasets import snapshots
from grading.models import DatasetSnapshot, GradingRun
from tests import factories
from tests.conftest import wait_for
from tests.test_api import api_client

pytestmark = pytest.mark.django_db(transaction=True)


def build_here_or_wait(snapshot: DatasetSnapshot) -> None:
    """Build a snapshot in this process, or wait for the worker that claimed it first: this
    module's tests commit, so the request is also queued on commit, and a worker still running
    from an earlier test may take it (the inline build then returns "not queued" at once)."""
    snapshots.snapshot_build(snapshot_id=snapshot.pk)
    wait_for(
        lambda: DatasetSnapshot.objects.get(pk=snapshot.pk).status == "ready",
        timeout=60,
        what="the snapshot to be built",
    )
    snapshot.refresh_from_db()


def graded_project(personas, sim):
    p = personas
    task = factories.make_task(p.project, "snap-task")
    grader = factories.make_published_rubric(
        p.project,
        task,
        [("Mentions hydration electrolytes", 2), ("Mentions antibiotics", -1)],
        p.admin,
    )
    factories.import_responses(
        p.project,
        [
            {"task_id": "snap-task", "model": "good", "response": "Hydration with electrolytes."},
            {"task_id": "snap-task", "model": "bad", "response": "Take antibiotics now."},
        ],
    )
    judge = factories.make_judge(p.project, sim.url)
    run = services.run_create(project=p.project, grader=grader, judge=judge, user=p.admin)
    return p, grader, run


def test_snapshot_through_the_api_and_a_worker(personas, sim, celery_worker):
    p, grader, run = graded_project(personas, sim)
    wait_for(lambda: GradingRun.objects.get(pk=run.pk).status == "completed", what="the run")
    client = api_client(p.engineer)
    reply = client.post(
        f"/api/projects/{p.project.slug}/datasets/",
        {"name": "Verdicts v1", "format": "verdicts-jsonl", "license": "CC-BY-4.0"},
        format="json",
    )
    assert reply.status_code == 202, reply.content
    snapshot_id = reply.json()["id"]
    wait_for(
        lambda: DatasetSnapshot.objects.get(pk=snapshot_id).status == "ready",
        what="the snapshot to build",
    )
    detail = client.get(f"/api/datasets/{snapshot_id}/").json()
    assert detail["name"] == "verdicts-v1" and detail["rows_done"] == 4
    download = client.get(f"/api/datasets/{snapshot_id}/download/")
    body = b"".join(download.streaming_content)
    assert hashlib.sha256(body).hexdigest() == detail["sha256"] == download["X-Content-SHA256"]
    rows = [json.loads(line) for line in body.decode().split("\n")[:-1]]
    assert len(rows) == Verdict.objects.filter(run=run).count() == 4

    # The card's numbers are the data's.
    card = detail["card"]
    met = Verdict.objects.filter(run=run, outcome="met").count()
    unmet = Verdict.objects.filter(run=run, outcome="unmet").count()
    assert f"by outcome: met {met:,}, unmet {unmet:,}" in card
    assert "1 tasks, 2 responses, 4 verdicts" in card
    assert grader.hash in card and detail["sha256"] in card
    assert "Simulated judge" in card and "CC-BY-4.0" in card
    assert detail["provenance"]["runs"][0]["id"] == run.pk

    # Snapshots never change: the name cannot be reused.
    again = client.post(
        f"/api/projects/{p.project.slug}/datasets/",
        {"name": "verdicts-v1", "format": "verdicts-parquet"},
        format="json",
    )
    assert again.status_code == 400 and "never change" in str(again.json())


def test_preference_pairs_need_a_run_of_the_project(personas):
    with pytest.raises(ValidationError, match="one run"):
        snapshots.snapshot_create(
            project=personas.project,
            name="pairs",
            format="preference-pairs",
            user=personas.admin,
            run_id=999999,
        )
    assert not DatasetSnapshot.objects.exists()


def test_a_failed_build_is_recorded_and_leaves_no_file(personas):
    # A queued snapshot whose parameters the builder cannot use fails cleanly (as corrupt data
    # would). Written as a row, not through snapshot_create: this module's tests commit, so the
    # service's build task would reach the session's worker, which could claim the snapshot
    # before the broken parameters are in place.
    snapshot = DatasetSnapshot.objects.create(
        project=personas.project,
        name="pairs-broken",
        format="preference-pairs",
        params={},
        created_by=personas.admin,
    )
    with pytest.raises(KeyError):
        snapshots.snapshot_build(snapshot_id=snapshot.pk)
    snapshot.refresh_from_db()
    assert snapshot.status == "failed" and "KeyError" in snapshot.error and not snapshot.file
    assert snapshots.snapshot_build(snapshot_id=snapshot.pk) == "not queued"


def test_a_failed_snapshot_shows_its_error_and_is_retried_or_deleted(
    personas, sim, celery_worker, client
):
    p, _, run = graded_project(personas, sim)
    wait_for(lambda: GradingRun.objects.get(pk=run.pk).status == "completed", what="the run")
    # As a build leaves it when its storage fails: failed, with the error, and no file.
    failed = DatasetSnapshot.objects.create(
        project=p.project,
        name="verdicts-v2",
        format="verdicts-jsonl",
        created_by=p.engineer,
        status="failed",
        error="OSError: [Errno 28] No space left on device",
    )
    # The error is shown, with Retry and Delete for those who may export.
    client.force_login(p.engineer)
    page = client.get(f"/p/{p.project.slug}/datasets/").content.decode()
    assert "No space left on device" in page and 'data-testid="snapshot-retry"' in page
    assert 'data-testid="snapshot-delete"' in page
    detail = client.get(f"/datasets/{failed.pk}/").content.decode()
    assert "No space left on device" in detail and 'data-testid="snapshot-retry"' in detail
    client.force_login(p.reviewer)  # sees results, exports nothing
    page = client.get(f"/p/{p.project.slug}/datasets/").content.decode()
    assert "No space left on device" in page and "snapshot-retry" not in page
    # Its name stays taken while it exists, and the refusal says what to do.
    with pytest.raises(ValidationError, match="retry it, or delete it"):
        snapshots.snapshot_create(
            project=p.project, name="verdicts-v2", format="verdicts-jsonl", user=p.engineer
        )

    # Retried through the API: queued again with its name, built by the worker.
    api = api_client(p.engineer)
    reply = api.post(f"/api/datasets/{failed.pk}/retry/")
    assert reply.status_code == 202, reply.content
    assert reply.json()["status"] == "queued" and reply.json()["error"] == ""
    wait_for(
        lambda: DatasetSnapshot.objects.get(pk=failed.pk).status == "ready",
        what="the retried snapshot to build",
    )
    retried = api.get(f"/api/datasets/{failed.pk}/").json()
    assert retried["name"] == "verdicts-v2" and retried["rows_done"] == 4
    assert api_client(p.reviewer).post(f"/api/datasets/{failed.pk}/retry/").status_code == 403
    again = api.post(f"/api/datasets/{failed.pk}/retry/")  # only a failed one is retried
    assert again.status_code == 409 and "only a failed snapshot" in again.json()["detail"]

    # Deleted from the page: gone, and its name free for a new snapshot.
    broken = DatasetSnapshot.objects.create(
        project=p.project,
        name="pairs-v1",
        format="preference-pairs",
        created_by=p.engineer,
        status="failed",
        error="KeyError: 'run'",
    )
    client.force_login(p.engineer)
    reply = client.post(f"/datasets/{broken.pk}/delete/")
    assert reply.status_code == 302 and reply["Location"] == f"/p/{p.project.slug}/datasets/"
    assert not DatasetSnapshot.objects.filter(pk=broken.pk).exists()
    reply = api.post(
        f"/api/projects/{p.project.slug}/datasets/",
        {"name": "pairs-v1", "format": "preference-pairs", "run": run.pk},
        format="json",
    )
    assert reply.status_code == 202, reply.content


def test_card_agreement_figures_equal_the_annotation_statistics(personas):
    from annotation import selectors as annotation_selectors
    from annotation import services as annotation_services
    from annotation import stats
    from annotation.models import Rater

    p = personas
    task = factories.make_task(p.project, "agree")
    grader = factories.make_published_rubric(
        p.project, task, [("Mentions water", 1), ("Mentions rest", 1)], p.admin
    )
    factories.import_responses(
        p.project, [{"task_id": "agree", "model": m, "response": m} for m in ("a", "b", "c")]
    )
    second = factories.add_member(p.project, "annotator")
    queue = factories.make_queue(p.project, grader, [p.annotator, second], p.admin, overlap=2)
    criteria = list(grader.version.criteria.order_by("position"))
    for user, pattern in ((p.annotator, "mmu"), (second, "mum")):
        for decision in pattern:
            turn = annotation_services.assignment_claim(queue=queue, user=user)
            for criterion in criteria:
                annotation_services.verdict_save_draft(
                    assignment_id=turn.pk,
                    criterion_id=criterion.pk,
                    outcome="met" if decision == "m" else "unmet",
                )
            annotation_services.assignment_submit(assignment_id=turn.pk)
    judge_rater = Rater.objects.create(project=p.project, kind="judge", name="judge: j")
    run = factories.make_run(
        project=p.project,
        grader=grader,
        judge=factories.make_judge(p.project, "http://127.0.0.1:9/v1"),
        total_items=6,
    )
    for response in task.responses.all():
        for criterion in criteria:
            Verdict.objects.create(
                response=response,
                criterion=criterion,
                rater=judge_rater,
                grader=grader,
                run=run,
                outcome="met",
            )
    snapshot = snapshots.snapshot_create(
        project=p.project, name="with-people", format="verdicts-jsonl", user=p.admin
    )
    build_here_or_wait(snapshot)
    ratings, _ = annotation_selectors.version_ratings(grader.version)
    expected = stats.agreement(ratings).overall
    (figures,) = snapshot.provenance["agreement"]
    assert figures["people"] == 2 and figures["items"] == expected.items == 6
    assert figures["krippendorff_alpha"] == pytest.approx(expected.alpha)
    assert f"{expected.alpha:.3f}" in snapshot.card
    assert f"{expected.percent:.3f}" in snapshot.card
    (judge,) = figures["judges"]
    assert judge["judge"] == "judge: j" and judge["items_with_gold"] == figures["gold_items"]


def test_healthbench_snapshot_matches_the_shared_sample_and_warns_of_its_canary(personas):
    from django.core.files.storage import default_storage
    from django.core.management import call_command

    from tests.conftest import SHARED_DATA

    sample = SHARED_DATA / "healthbench" / "oss_eval_sample.jsonl"
    call_command(
        "import_rubrics", "--format", "healthbench", str(sample), "--project", personas.project.slug
    )
    snapshot = snapshots.snapshot_create(
        project=personas.project, name="hb", format="healthbench-jsonl", user=personas.admin
    )
    build_here_or_wait(snapshot)
    with default_storage.open(snapshot.file, "rb") as built:
        rows = [json.loads(line) for line in built.read().decode().split("\n")[:-1]]
    original = [json.loads(line) for line in sample.read_text().splitlines()]
    assert rows == original
    assert "HealthBench canary" in snapshot.card and "5 task(s)" in snapshot.card
