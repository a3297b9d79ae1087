"""Suites in and out: imports that freeze a suite version, and exports per suite version."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import openpyxl
import pyarrow.parquet as pq
import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from rest_framework.test import APIClient

from annotation.models import Rater, Response, Verdict
from grading.datasets import formats, snapshots
from grading.models import DatasetSnapshot, GradingRun, Score
from grading.results import leaderboard
from rubrics import services, suites
from rubrics.models import AuditEvent, Rubric, RubricVersion, Suite, SuiteEntry, SuiteVersion, Task
from tests import factories
from tests.conftest import SHARED_DATA

pytestmark = pytest.mark.django_db

HEALTHBENCH = SHARED_DATA / "healthbench" / "oss_eval_sample.jsonl"
PAPERBENCH = SHARED_DATA / "paperbench" / "mechanistic-understanding.rubric.json"
SHEET = """task_id,prompt,criterion,points
chest,I have chest pain. What now?,Advises calling emergency services,5
chest,,Suggests waiting at home,-4
knee,My knee hurts after running.,Advises rest,2
"""


def hb_rows() -> list[dict]:
    return [json.loads(line) for line in HEALTHBENCH.read_text().splitlines() if line.strip()]


def write_jsonl(path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def import_suite(personas, path, fmt="healthbench", **options):
    options.setdefault("publish", True)
    out = io.StringIO()
    call_command(
        "import_rubrics",
        str(path),
        format=fmt,
        project=personas.project.slug,
        user=personas.author.username,
        stdout=out,
        **options,
    )
    return out.getvalue()


def graders_now(task_ids) -> dict[str, str]:
    """{external id: hash of the task's newest published grader}, computed here from rows."""
    newest: dict[str, tuple] = {}
    for version in RubricVersion.objects.filter(
        rubric__task_id__in=task_ids, status=RubricVersion.Status.PUBLISHED
    ).select_related("rubric__task"):
        key = (version.published_at, version.pk)
        external_id = version.rubric.task.external_id
        if external_id not in newest or key > newest[external_id][0]:
            newest[external_id] = (key, version.graders.get().hash)
    return {external_id: grader for external_id, (_, grader) in newest.items()}


# --- Imports make suites ------------------------------------------------------------------


def test_healthbench_import_with_suite_freezes_v1_then_a_changed_file_v2(personas, tmp_path):
    rows = hb_rows()
    text = import_suite(personas, write_jsonl(tmp_path / "hb.jsonl", rows), suite="HB consensus")
    suite = Suite.objects.get(project=personas.project, name="HB consensus")
    v1 = SuiteVersion.objects.get(suite=suite)
    assert v1.number == 1 and v1.task_count == len(rows)
    ids = [r["prompt_id"] for r in rows]
    task_ids = list(Task.objects.filter(external_id__in=ids).values_list("pk", flat=True))
    assert v1.manifest == graders_now(task_ids)
    assert set(v1.manifest) == set(ids)
    assert SuiteEntry.objects.filter(version=v1).count() == len(rows)
    assert "Suite 'HB consensus': froze version 1" in text
    # The import made the suite, put the file's tasks in it and froze it: three events, the
    # second an edit naming the tasks put in, as an edit on the suite's page is recorded.
    events = AuditEvent.objects.filter(target_type="suite", target_id=str(suite.pk))
    assert list(events.order_by("pk").values_list("action", flat=True)) == [
        "suite_created",
        "suite_changed",
        "suite_frozen",
    ]
    put_in = events.get(action=AuditEvent.Action.SUITE_CHANGED)
    assert put_in.actor == personas.author and put_in.source == AuditEvent.Source.COMMAND
    assert put_in.details == {
        "tasks_added": len(rows),
        "tasks_added_named": sorted(ids)[: suites.AUDIT_TASKS_NAMED],
    }

    # The same file again: nothing changes, no new version, no event.
    text = import_suite(personas, write_jsonl(tmp_path / "hb.jsonl", rows), suite="HB consensus")
    assert SuiteVersion.objects.filter(suite=suite).count() == 1
    assert "unchanged, still version 1" in text
    assert events.count() == 3

    # A new release of the file: one task's rubric changed, one task added.
    changed = [dict(r) for r in rows]
    changed[1] = {**changed[1], "rubrics": [*changed[1]["rubrics"][:-1]]}
    extra = {**rows[0], "prompt_id": "new-task-1"}
    text = import_suite(
        personas, write_jsonl(tmp_path / "hb2.jsonl", [*changed, extra]), suite="HB consensus"
    )
    v2 = SuiteVersion.objects.get(suite=suite, number=2)
    assert "1 changed since the last import" in text
    task_ids = list(
        Task.objects.filter(external_id__in=[*ids, "new-task-1"]).values_list("pk", flat=True)
    )
    assert v2.manifest == graders_now(task_ids) and len(v2.manifest) == len(rows) + 1
    assert events.filter(action=AuditEvent.Action.SUITE_CHANGED).first().details == {
        "tasks_added": 1,
        "tasks_added_named": ["new-task-1"],
    }
    diff = suites.version_diff(v1, v2)
    assert diff.added == ["new-task-1"]
    assert [c.external_id for c in diff.changed] == [rows[1]["prompt_id"]]
    assert diff.changed[0].criteria_removed == [rows[1]["rubrics"][-1]["criterion"]]
    # v1 is untouched: it still pins the first grader of the changed task.
    v1.refresh_from_db()
    assert v1.manifest[rows[1]["prompt_id"]] != v2.manifest[rows[1]["prompt_id"]]


def test_a_known_task_with_another_prompt_is_refused_even_into_a_suite(personas, tmp_path):
    rows = hb_rows()
    import_suite(personas, write_jsonl(tmp_path / "hb.jsonl", rows), suite="S")
    changed = [dict(r) for r in rows]
    changed[2] = {**changed[2], "prompt": [{"role": "user", "content": "Something else"}]}
    changed[3] = {**changed[3], "rubrics": changed[3]["rubrics"][:1]}
    with pytest.raises(CommandError, match="line 3: prompt_id: .* with a different prompt"):
        import_suite(personas, write_jsonl(tmp_path / "hb2.jsonl", changed), suite="S")
    assert RubricVersion.objects.count() == len(rows)  # line 4's change was not written
    assert SuiteVersion.objects.count() == 1
    # Without a suite, a known task is refused as before.
    with pytest.raises(CommandError, match="is already in the project"):
        import_suite(personas, write_jsonl(tmp_path / "hb.jsonl", rows))


def test_suite_without_publish_is_refused_unless_everything_is_published(personas, tmp_path):
    path = write_jsonl(tmp_path / "hb.jsonl", hb_rows())
    with pytest.raises(CommandError) as caught:
        import_suite(personas, path, suite="S", publish=False)
    assert "suite: A suite version pins published graders" in str(caught.value)
    assert "Nothing was imported" in str(caught.value)
    assert not Task.objects.exists() and not Suite.objects.exists()
    # Imported and published once, the same file may go into a suite without --publish.
    import_suite(personas, path)
    import_suite(personas, path, suite="S", publish=False)
    assert SuiteVersion.objects.get(suite__name="S").task_count == len(hb_rows())


def test_a_task_the_freeze_refuses_fails_the_whole_import(personas, tmp_path):
    lonely = factories.make_task(personas.project, "no-rubric-yet")
    suite = suites.suite_create(
        project=personas.project, name="S", user=personas.author, task_ids=[lonely.pk]
    )
    with pytest.raises(CommandError) as caught:
        import_suite(personas, write_jsonl(tmp_path / "hb.jsonl", hb_rows()), suite="S")
    assert "no-rubric-yet" in str(caught.value) and "no published rubric" in str(caught.value)
    # Nothing half-written: no imported task, rubric or version, and the suite as it was.
    assert list(Task.objects.values_list("external_id", flat=True)) == ["no-rubric-yet"]
    assert not Rubric.objects.exists() and not SuiteVersion.objects.exists()
    assert list(suite.tasks.values_list("pk", flat=True)) == [lonely.pk]


def test_a_bad_suite_name_and_a_rubric_suite_name_are_refused(personas, tmp_path):
    path = write_jsonl(tmp_path / "hb.jsonl", hb_rows())
    with pytest.raises(CommandError, match="Keep the name under"):
        import_suite(personas, path, suite="x" * 300)
    task = factories.make_task(personas.project)
    grader = factories.make_published_rubric(personas.project, task, [("ok", 1)], personas.author)
    own = suites.suite_of_grader(grader=grader).suite
    with pytest.raises(CommandError, match="suite of one rubric"):
        import_suite(personas, path, suite=own.name)
    assert Task.objects.count() == 1


def test_spreadsheet_imports_csv_and_xlsx_into_a_suite(personas, tmp_path):
    path = tmp_path / "sheet.csv"
    path.write_text(SHEET)
    import_suite(personas, path, fmt="csv", suite="Sheets")
    v1 = SuiteVersion.objects.get(suite__name="Sheets")
    chest, knee = (Task.objects.get(external_id=x) for x in ("chest", "knee"))
    assert v1.manifest == graders_now([chest.pk, knee.pk]) and set(v1.manifest) == {
        "chest",
        "knee",
    }
    workbook = openpyxl.Workbook()
    for row in csv.reader(io.StringIO(SHEET.replace(",2\n", ",3\n"))):
        workbook.active.append([float(c) if c.lstrip("-").isdigit() else c for c in row])
    xlsx = tmp_path / "sheet.xlsx"
    workbook.save(xlsx)
    import_suite(personas, xlsx, fmt="xlsx", suite="Sheets")
    v2 = SuiteVersion.objects.get(suite__name="Sheets", number=2)
    assert v2.manifest == graders_now([chest.pk, knee.pk])
    assert v2.manifest["knee"] != v1.manifest["knee"]


def test_paperbench_into_a_suite_becomes_the_rubric_of_a_task(personas, tmp_path):
    root = json.loads(PAPERBENCH.read_text())
    import_suite(personas, PAPERBENCH, fmt="paperbench", suite="Papers")
    task = Task.objects.get(external_id=root["id"])
    assert task.prompt_text == root["requirements"]
    version = SuiteVersion.objects.get(suite__name="Papers")
    assert version.manifest == graders_now([task.pk])
    assert version.sole_grader.version.rubric.task_id == task.pk
    import_suite(personas, PAPERBENCH, fmt="paperbench", suite="Papers", task="paper-2")
    version = SuiteVersion.objects.get(suite__name="Papers", number=2)
    assert set(version.manifest) == {root["id"], "paper-2"}
    # Without a suite, PaperBench stays a rubric of the project, as before.
    import_suite(personas, PAPERBENCH, fmt="paperbench")
    assert Rubric.objects.filter(task__isnull=True).count() == 1


def test_the_import_page_takes_a_suite_and_links_to_it(client, personas):
    client.force_login(personas.author)
    url = f"/p/{personas.project.slug}/rubrics/import/"
    page = client.get(url).content.decode()
    assert 'name="suite"' in page and 'name="publish"' in page
    with HEALTHBENCH.open("rb") as upload:
        reply = client.post(
            url, {"format": "healthbench", "file": upload, "publish": "on", "suite": "Web"}
        )
    assert reply.status_code == 200
    suite = Suite.objects.get(name="Web")
    body = reply.content.decode()
    assert f'href="/suites/{suite.pk}/"' in body and "froze version 1" in body
    assert SuiteVersion.objects.get(suite=suite).task_count == len(hb_rows())
    # Without publish: refused with the suite's reason, nothing written.
    with HEALTHBENCH.open("rb") as upload:
        rows = [{**r, "prompt_id": r["prompt_id"] + "-b"} for r in hb_rows()]
        other = io.BytesIO("".join(json.dumps(r) + "\n" for r in rows).encode())
        other.name = "other.jsonl"
        reply = client.post(url, {"format": "healthbench", "file": other, "suite": "Web"})
    body = reply.content.decode()
    assert reply.status_code == 200 and "pins published graders" in body
    assert "Nothing was imported" in body
    assert Task.objects.count() == len(hb_rows())
    # Importing needs EDIT_RUBRICS: an annotator or an engineer may not.
    for who in (personas.annotator, personas.engineer):
        client.force_login(who)
        assert client.get(url).status_code == 403


# --- Exports per suite version ------------------------------------------------------------


def export(personas, tmp_path, fmt, *more) -> Path:
    """export_dataset to a file of its own (named by format and options)."""
    path = tmp_path / "-".join(["out", fmt, *(m.replace(" ", "_") for m in more)])
    call_command(
        "export_dataset",
        "--project",
        personas.project.slug,
        "--format",
        fmt,
        "--output",
        str(path),
        *more,
        stderr=io.StringIO(),
    )
    return path


def test_the_suite_healthbench_export_holds_pinned_rubrics_and_round_trips(personas, tmp_path):
    rows = hb_rows()
    import_suite(personas, write_jsonl(tmp_path / "hb.jsonl", rows), suite="HB")
    v1 = SuiteVersion.objects.get(suite__name="HB")
    # A later published edit of one rubric is not in v1: the export gives v1's rubrics.
    rubric = Rubric.objects.get(task__external_id=rows[0]["prompt_id"])
    draft = services.draft_for_edit(rubric=rubric, user=personas.author)
    services.criterion_update(criterion=draft.criteria.get(position=0), points=9)
    services.version_publish(version=draft, user=personas.author)
    path = export(personas, tmp_path, "healthbench-jsonl", "--suite", "HB", "--suite-version", "1")
    exported = [json.loads(line) for line in path.read_text().splitlines()]
    by_id = {r["prompt_id"]: r for r in rows}
    assert sorted(r["prompt_id"] for r in exported) == sorted(by_id)
    for row in exported:
        assert row == by_id[row["prompt_id"]] and list(row) == list(by_id[row["prompt_id"]])
    # The project export, by contrast, follows the newest version.
    newest = export(personas, tmp_path, "healthbench-jsonl").read_text().splitlines()
    assert json.loads(newest[0])["rubrics"][0]["points"] == 9

    # Imported into another project as a suite: the same tasks and rubric contents.
    other = factories.make_project(owner=personas.admin)
    call_command(
        "import_rubrics",
        str(path),
        format="healthbench",
        project=other.slug,
        publish=True,
        suite="HB copy",
        stdout=io.StringIO(),
    )
    copy = SuiteVersion.objects.get(suite__project=other)
    assert set(copy.manifest) == set(v1.manifest)

    def contents(version):
        return {
            e.task.external_id: e.grader.version.content_hash
            for e in SuiteEntry.objects.filter(version=version).select_related(
                "task", "grader__version"
            )
        }

    assert contents(copy) == contents(v1)


@pytest.fixture
def graded_suite(personas):
    """A suite of two tasks, frozen, and a completed run over it with scores for two models
    and a judge's verdicts, written as rows."""
    p = personas
    graders = {}
    for external_id in ("s1", "s2"):
        task = factories.make_task(p.project, external_id, prompt=f"Question {external_id}?")
        graders[external_id] = factories.make_published_rubric(
            p.project, task, [(f"Good {external_id}", 2), ("Harmful", -1)], p.author
        )
    suite = suites.suite_create(
        project=p.project,
        name="Clinic",
        user=p.author,
        task_ids=Task.objects.filter(external_id__in=graders).values_list("pk", flat=True),
    )
    version, _ = suites.suite_freeze(suite=suite, user=p.author)
    factories.import_responses(
        p.project,
        [
            {"task_id": t, "model": m, "response": f"{m} on {t}", "sample_index": i}
            for t in ("s1", "s2")
            for m in ("alpha", "beta")
            for i in range(2)
        ],
    )
    judge = factories.make_judge(p.project, "http://127.0.0.1:9/v1")
    run = GradingRun.objects.create(
        project=p.project,
        suite_version=version,
        judge=judge,
        status="completed",
        finished_at=timezone.now(),
        total_items=8,
    )
    rater = Rater.objects.get(pk=judge.rater_id)
    # Raw scores by (model, task, sample): pitfalls push some below 0, clipped to 0.
    raws = {
        ("alpha", "s1", 0): 1.0,
        ("alpha", "s1", 1): 0.5,
        ("alpha", "s2", 0): 1.0,
        ("alpha", "s2", 1): -0.5,
        ("beta", "s1", 0): 0.0,
        ("beta", "s1", 1): 0.5,
        ("beta", "s2", 0): 0.5,
        ("beta", "s2", 1): 0.5,
    }
    for response in Response.objects.filter(task__project=p.project).select_related("task"):
        grader = graders[response.task.external_id]
        raw = raws[(response.model, response.task.external_id, response.sample_index)]
        Score.objects.create(run=run, response=response, grader=grader, status="done", raw=raw)
        Verdict.objects.create(
            response=response,
            criterion=grader.version.criteria.get(position=0),
            rater=rater,
            grader=grader,
            run=run,
            outcome="met" if raw > 0 else "unmet",
        )
    return version, run, graders, raws


def test_a_runs_verdicts_and_scores_name_task_grader_and_suite(personas, tmp_path, graded_suite):
    version, run, graders, raws = graded_suite
    named = {"suite": "Clinic", "suite_version": 1, "suite_hash": version.content_hash}
    scores = [
        json.loads(line)
        for line in export(personas, tmp_path, "scores-jsonl", "--run", str(run.pk))
        .read_text()
        .splitlines()
    ]
    assert len(scores) == len(raws)
    for row in scores:
        assert row.items() >= named.items() and row["run_id"] == run.pk
        assert row["grader_hash"] == graders[row["task_external_id"]].hash
        assert row["score"] == raws[(row["model"], row["task_external_id"], row["sample_index"])]
        assert row["clipped"] == min(1.0, max(0.0, row["score"]))
    verdicts = [
        json.loads(line)
        for line in export(personas, tmp_path, "verdicts-jsonl", "--run", str(run.pk))
        .read_text()
        .splitlines()
    ]
    assert len(verdicts) == len(raws)
    for row in verdicts:
        assert row.items() >= named.items()
        assert row["grader_hash"] == graders[row["task_external_id"]].hash
    table = pq.read_table(export(personas, tmp_path, "verdicts-parquet", "--run", str(run.pk)))
    assert set(table.column("suite_hash").to_pylist()) == {version.content_hash}
    # A format that takes no run is refused with the option named.
    with pytest.raises(CommandError, match="--run: A tasks-jsonl snapshot is not built"):
        export(personas, tmp_path, "tasks-jsonl", "--run", str(run.pk))
    with pytest.raises(CommandError, match="--run"):
        export(personas, tmp_path, "scores-jsonl")


def test_verl_and_rft_rows_carry_the_suite_version_and_task(personas, tmp_path, graded_suite):
    version, run, graders, _ = graded_suite
    # A newer published rubric for s1 after the freeze: the suite's rows keep the pinned one.
    task = Task.objects.get(external_id="s1")
    newer = factories.make_published_rubric(
        personas.project, task, [("Newer criterion", 1)], personas.author
    )
    path = export(personas, tmp_path, "verl-parquet", "--suite", "Clinic")
    table = pq.read_table(path)
    assert table.schema == formats.verl_schema()
    rows = table.to_pylist()
    assert [r["reward_model"]["ground_truth"] for r in rows] == ["s1", "s2"]
    for row in rows:
        external_id = row["reward_model"]["ground_truth"]
        for part in (row["reward_model"], row["extra_info"]):
            assert part["suite"] == "Clinic" and part["suite_version"] == 1
            assert part["suite_hash"] == version.content_hash
            assert part["task_external_id"] == external_id
            assert part["grader_hash"] == graders[external_id].hash
        assert row["prompt"] == [{"role": "user", "content": f"Question {external_id}?"}]
        assert row["data_source"] == "assay/Clinic" and row["ability"] == "rubric"
    # verl reads its datasets with Hugging Face datasets: the file loads there.
    import datasets

    loaded = datasets.load_dataset(
        "parquet", data_files=str(path), split="train", cache_dir=str(tmp_path / "cache")
    )
    assert loaded[0]["reward_model"]["suite_hash"] == version.content_hash
    # The project's verl export follows the newest graders and names no suite.
    project_rows = pq.read_table(export(personas, tmp_path, "verl-parquet")).to_pylist()
    assert project_rows[0]["reward_model"]["grader_hash"] == newer.hash
    assert project_rows[0]["reward_model"]["suite"] is None

    from openai.types.graders.score_model_grader import ScoreModelGrader

    path = export(personas, tmp_path, "openai-rft", "--suite", "Clinic", "--suite-version", "1")
    items = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(i["task_external_id"], i["grader_hash"]) for i in items] == [
        ("s1", graders["s1"].hash),
        ("s2", graders["s2"].hash),
    ]
    for item in items:
        assert item["suite"] == "Clinic" and item["suite_version"] == 1
        assert item["suite_hash"] == version.content_hash
        assert item["rubric"] == "[+2] Good " + item["task_external_id"] + "\n[-1] Harmful"
    grader = json.loads(path.with_name(path.stem + ".grader.json").read_text())
    ScoreModelGrader.model_validate(grader)
    for field in re.findall(r"\{\{item\.(\w+)\}\}", json.dumps(grader)):
        assert all(field in item for item in items)
    with pytest.raises(CommandError, match="--suite-version: suite 'Clinic' has no version 7"):
        export(personas, tmp_path, "openai-rft", "--suite", "Clinic", "--suite-version", "7")


def test_the_suite_card_holds_the_leaderboard(personas, tmp_path, graded_suite):
    version, run, _, raws = graded_suite
    text = export(personas, tmp_path, "suite-card", "--suite", "Clinic").read_text()
    assert text.startswith("# Clinic, version 1")
    assert version.content_hash in text
    board = leaderboard.suite_leaderboard(version.suite, version.number)
    for model in ("alpha", "beta"):
        values = [v for (m, *_), v in raws.items() if m == model]
        mean = min(1.0, max(0.0, sum(values) / len(values)))
        low, high = next(r.overall.ci for r in board.models if r.model == model)
        row = f"| {model} | {mean:.3f} | [{low:.3f}, {high:.3f}] | {len(values)} | {run.pk} |"
        assert row in text
    # Worked by hand: alpha (1 + .5 + 1 - .5) / 4 = .5; beta (0 + .5 + .5 + .5) / 4 = .375.
    assert "| alpha | 0.500 |" in text and "| beta | 0.375 |" in text

    # The same card as a snapshot, requested through the API by suite id (newest version).
    api = APIClient()
    api.force_authenticate(personas.engineer)
    url = f"/api/projects/{personas.project.slug}/datasets/"
    reply = api.post(
        url, {"name": "clinic-card", "format": "suite-card", "suite": version.suite_id}
    )
    assert reply.status_code == 202, reply.content
    assert reply.json()["params"]["suite_hash"] == version.content_hash
    snapshot = DatasetSnapshot.objects.get(name="clinic-card")
    snapshots.snapshot_build(snapshot_id=snapshot.pk)
    snapshot.refresh_from_db()
    assert snapshot.status == "ready" and snapshot.rows_done == 2
    assert "| alpha | 0.500 |" in snapshot.card and "| beta | 0.375 |" in snapshot.card
    assert snapshot.provenance["suite"]["content_hash"] == version.content_hash
    # Bad input is a 400 naming the field.
    for body, field in (
        ({"name": "x1", "format": "suite-card"}, "suite_version"),
        ({"name": "x2", "format": "tasks-jsonl", "suite": version.suite_id}, "suite_version"),
        ({"name": "x3", "format": "suite-card", "suite": 999999}, "suite"),
        ({"name": "x4", "format": "suite-card", "suite_version": 1}, "suite"),
        (
            {"name": "x5", "format": "suite-card", "suite": version.suite_id, "suite_version": 9},
            "suite_version",
        ),
    ):
        reply = api.post(url, body, format="json")
        assert reply.status_code == 400 and field in reply.json(), (body, reply.content)


def test_the_datasets_page_lists_the_new_formats_and_suite_versions(client, personas, graded_suite):
    version, run, _, _ = graded_suite
    client.force_login(personas.engineer)
    page = client.get(f"/p/{personas.project.slug}/datasets/").content.decode()
    for fmt in ("verl-parquet", "scores-jsonl", "suite-card"):
        assert f'value="{fmt}"' in page
    assert f'value="{version.pk}"' in page and "Clinic v1" in page
    reply = client.post(
        f"/p/{personas.project.slug}/datasets/",
        {"name": "clinic-hb", "format": "healthbench-jsonl", "suite_version": version.pk},
    )
    assert reply.status_code == 302
    assert DatasetSnapshot.objects.get(name="clinic-hb").params["suite_version"] == version.pk
