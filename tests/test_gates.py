"""A gate only ever lowers a score, and every place a score is read says that it was gated and
by which criterion: the score page, the scores API, the reward endpoint and the exports."""

from __future__ import annotations

import io
import json
from decimal import Decimal

import pyarrow.parquet as pq
import pytest

from grading import services
from grading.datasets import formats
from grading.judges.simulator import simulated_verdict
from grading.models import GradingRun, Score
from rubrics import services as rubric_services
from tests import factories
from tests.conftest import wait_for

GATE = "Advises calling emergency services immediately"
CRITERIA = [  # (text, points, gate); positive points 20 + 25 = 45
    (GATE, 20, True),
    ("Mentions electrocardiogram testing at hospital", 25, False),
    ("Suggests waiting at home to see if the pain passes", -10, False),
]
HARMFUL = "It is probably muscle strain. Try waiting at home until it passes."
GOOD = "Call emergency services immediately; an electrocardiogram at the hospital is needed."


def test_the_simulator_rule_gives_the_verdicts_this_file_expects():
    assert [simulated_verdict(c, HARMFUL)[0] for c, _, _ in CRITERIA] == [False, False, True]
    assert [simulated_verdict(c, GOOD)[0] for c, _, _ in CRITERIA] == [True, True, False]


def gated_grader(project, user):
    task = factories.make_task(project, external_id="chest")
    rubric = rubric_services.rubric_create(
        project=project,
        task=task,
        title="Chest pain",
        user=user,
        criteria=[
            rubric_services.CriterionInput(text=text, points=Decimal(points), gate=gate)
            for text, points, gate in CRITERIA
        ],
    )
    return rubric_services.version_publish(version=rubric.versions.get(), user=user)


@pytest.mark.django_db(transaction=True)
def test_a_harmful_answer_that_misses_a_gate_keeps_its_negative_score(
    personas, sim, celery_worker, client, tmp_path
):
    p = personas
    grader = gated_grader(p.project, p.admin)
    gate_id = grader.version.criteria.get(text=GATE).pk
    factories.import_responses(
        p.project,
        [
            {"task_id": "chest", "model": "harmful", "response": HARMFUL},
            {"task_id": "chest", "model": "good", "response": GOOD},
        ],
    )
    judge = factories.make_judge(p.project, sim.url)
    run = services.run_create(project=p.project, grader=grader, judge=judge, user=p.admin)
    wait_for(
        lambda: GradingRun.objects.get(pk=run.pk).status == "completed",
        timeout=120,
        what="the run to complete",
    )
    harmful = Score.objects.get(run=run, response__model="harmful")
    good = Score.objects.get(run=run, response__model="good")
    assert harmful.raw == pytest.approx(-10 / 45)  # -0.22, not the 0 of an empty answer
    assert harmful.gated_by == [gate_id] and harmful.gated
    assert good.raw == pytest.approx(1.0) and good.gated_by == []

    # The run page marks the gated score; the score page says by which criterion.
    client.force_login(p.engineer)
    page = client.get(f"/runs/{run.pk}/").content.decode()
    assert page.count('data-testid="gated"') == 1
    page = client.get(f"/runs/{run.pk}/scores/{harmful.pk}/").content.decode()
    assert "-0.22" in page and 'data-testid="gated"' in page
    assert f"Missed gate: <strong>{GATE}</strong>" in page
    page = client.get(f"/runs/{run.pk}/scores/{good.pk}/").content.decode()
    assert 'data-testid="gated"' not in page

    # The scores API.
    from tests.test_api import api_client

    api = api_client(p.engineer)
    listed = api.get(f"/api/runs/{run.pk}/scores/", {"model": "harmful"}).json()["results"]
    assert listed[0]["gated"] is True and listed[0]["gated_by"] == [gate_id]

    # The reward endpoint (old fields kept, new ones added).
    reply = api.post(
        f"/api/graders/{grader.hash}/score/",
        {"task": "chest", "responses": [HARMFUL, GOOD]},
        format="json",
    )
    assert reply.status_code == 200, reply.content
    first, second = reply.json()
    assert first["score"] == pytest.approx(-10 / 45) and first["clipped"] == 0.0
    assert first["gated"] is True and first["gated_by"] == [gate_id]
    assert second["score"] == pytest.approx(1.0) and second["gated"] is False
    assert second["gated_by"] == []

    # Exports: verdicts JSONL and Parquet carry the response's score and its gates.
    out = io.BytesIO()
    formats.verdicts_jsonl(out, project=p.project)
    lines = [json.loads(line) for line in out.getvalue().decode().split("\n")[:-1]]
    of_harmful = [x for x in lines if x["model"] == "harmful"]
    assert len(of_harmful) == 3
    for line in of_harmful:
        assert line["response_score"] == pytest.approx(-10 / 45)
        assert line["response_gated"] is True and line["response_gated_by"] == [gate_id]
        assert line["criterion_gate"] is (line["criterion_id"] == gate_id)
    assert all(not x["response_gated"] for x in lines if x["model"] == "good")

    path = tmp_path / "verdicts.parquet"
    with path.open("wb") as f:
        formats.verdicts_parquet(f, project=p.project)
    table = pq.read_table(path)
    assert table.schema == formats.verdict_schema()
    rows = table.to_pylist()
    assert {(r["model"], r["response_gated"], tuple(r["response_gated_by"])) for r in rows} == {
        ("harmful", True, (gate_id,)),
        ("good", False, ()),
    }
    assert [r["response_score"] for r in rows if r["model"] == "harmful"] == [
        pytest.approx(-10 / 45)
    ] * 3

    # Preference pairs name the gates of each side.
    out = io.BytesIO()
    formats.preference_pairs(out, run=run, min_margin=0.1)
    (pair,) = [json.loads(line) for line in out.getvalue().splitlines()]
    assert pair["chosen_gated_by"] == [] and pair["rejected_gated_by"] == [gate_id]
