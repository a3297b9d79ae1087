"""The demo's file tasks, graded by a real worker and the simulator: a banker's debt schedule
(XLSX) and memo (DOCX) as deliverables, one with a wrong cell and one with a thin memo, and a
chart (PNG) in a prompt. Every file is stored by its hash, served to members only."""

from __future__ import annotations

import hashlib
import io

import openpyxl
import pytest
from django.contrib.auth.models import User

from annotation.content.episode import Episode
from annotation.models import Response, Verdict
from grading import demo, demo_files
from grading.models import GradingRun, Score
from rubrics.files import store
from rubrics.models import ReferenceDeliverable, StoredFile, Task
from tests import factories
from tests.conftest import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_demo_files_are_stored_served_and_graded(
    client, settings, tmp_path, sim, celery_worker
):
    settings.JUDGE_ALLOW_PRIVATE_URLS = True
    result = demo.load_demo(simulator_url=sim.url, out_dir=tmp_path)
    assert result.runs == 4
    project = result.project

    # Stored content-addressed: the bytes under each hash hash to it.
    held = list(StoredFile.objects.filter(project=project))
    assert {f.kind for f in held} >= {"xlsx", "docx", "png"}
    for row in held:
        assert hashlib.sha256(store.read(row.sha256)).hexdigest() == row.sha256

    chart = Task.objects.get(project=project, external_id="chart-regions-q3")
    (image,) = chart.files
    assert image.is_image and image.name == "units_per_region_q3.png"
    assert "units shipped per region" in chart.prompt_text
    reference = ReferenceDeliverable.objects.get(task__external_id="banker-debt-schedule")
    assert reference.file_kind == "xlsx"

    # Two samples of three models, each with its workbook and memo; the slip's 2028 interest.
    banker = Response.objects.filter(task__external_id="banker-debt-schedule")
    assert banker.count() == 6
    for response in banker:
        files = [ref for _, ref in Episode.load(response.content, response.text).files()]
        assert [f.kind for f in files] == ["xlsx", "docx"]
        sheet = openpyxl.load_workbook(io.BytesIO(store.read(files[0].sha256)))["Debt schedule"]
        expected = 1_040_000 if response.model == "banker-slip" else 1_560_000
        assert sheet["C4"].value == expected  # a value saved in the cell, not a formula
        assert sheet["E6"].value == 0
    assert demo_files.debt_schedule()[2][2] == 1_560_000

    # Served to members, 404 to outsiders.
    url = f"/p/{project.slug}/files/{image.sha256}/"
    client.force_login(User.objects.get(username="annotator"))
    served = client.get(url)
    assert served.status_code == 200 and served["Content-Type"] == "image/png"
    client.force_login(factories.make_user("stranger"))
    assert client.get(url).status_code == 404
    assert client.get(f"/p/{project.slug}/files/{reference.file_sha256}/").status_code == 404

    run = GradingRun.objects.get(project=project, suite_version__suite__name=demo.FILES_SUITE)
    wait_for(
        lambda: GradingRun.objects.get(pk=run.pk).status == "completed",
        timeout=240,
        what="the deliverables run to complete",
    )
    outcome = {
        (v.response.model, v.response.sample_index, v.criterion.text[:30]): v.outcome
        for v in Verdict.objects.filter(run=run).select_related("response", "criterion")
    }
    for sample in (0, 1):
        assert outcome[("banker-strong", sample, "States total interest over the")] == "met"
        assert outcome[("banker-slip", sample, "States total interest over the")] == "unmet"
        # The workbook's cells are checked as data: the slip's C4 is wrong, its E6 right.
        assert outcome[("banker-strong", sample, "The 2028 interest cell equals ")] == "met"
        assert outcome[("banker-slip", sample, "The 2028 interest cell equals ")] == "unmet"
        assert outcome[("banker-slip", sample, "The schedule repays the loan: ")] == "met"
        assert outcome[("banker-thin", sample, "Delivers the schedule as an Ex")] == "met"
        assert outcome[("banker-thin", sample, "Explains covenant headroom: le")] == "unmet"
        assert outcome[("banker-thin", sample, "Flags refinancing risk and sen")] == "unmet"
        assert outcome[("banker-slip", sample, "Explains covenant headroom: le")] == "met"
    assert outcome[("vision-misread", 0, "Names East as the region that ")] == "unmet"
    assert outcome[("vision-terse", 0, "Cautions that a single quarter")] == "unmet"
    scores = {}
    for model, raw in Score.objects.filter(run=run).values_list("response__model", "raw"):
        scores.setdefault(model, set()).add(raw)
    one = {model: max(values) for model, values in scores.items()}
    # A wrong cell costs more than a thin memo: the cell and the total it feeds are both checked.
    assert one["banker-strong"] > one["banker-thin"] > one["banker-slip"]
    # Misreading the chart costs more than saying too little.
    assert one["vision-sharp"] > one["vision-terse"] > one["vision-misread"]
