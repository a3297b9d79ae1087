"""Dataset snapshots built by a real worker: progress, file, SHA-256, and a card whose numbers
are the data's."""

from __future__ import annotations

import hashlib
import json

import pytest
from django.core.exceptions import ValidationError

from annotation.models import Verdict
from grading import datasets, services
from grading.models import DatasetSnapshot, GradingRun
from tests import factories
from tests.conftest import wait_for
from tests.test_api import api_client

pytestmark = pytest.mark.django_db(transaction=True)


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
        datasets.snapshot_create(
            project=personas.project,
            name="pairs",
            format="preference-pairs",
            user=personas.admin,
            run_id=999999,
        )
    assert not DatasetSnapshot.objects.exists()


def test_a_failed_build_is_recorded_and_leaves_no_file(personas):
    snapshot = datasets.snapshot_create(
        project=personas.project, name="pairs-broken", format="verdicts-jsonl", user=personas.admin
    )
    # A snapshot whose format is unknown to the builder fails cleanly (as corrupt data would).
    DatasetSnapshot.objects.filter(pk=snapshot.pk).update(format="preference-pairs", params={})
    with pytest.raises(KeyError):
        datasets.snapshot_build(snapshot_id=snapshot.pk)
    snapshot.refresh_from_db()
    assert snapshot.status == "failed" and "KeyError" in snapshot.error and not snapshot.file
    assert datasets.snapshot_build(snapshot_id=snapshot.pk) == "not queued"
