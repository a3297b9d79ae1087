"""Suites in and out: imports that freeze a suite version, and exports per suite version."""

from __future__ import annotations

import csv
import io
import json

import openpyxl
import pytest
from django.core.management import CommandError, call_command

from rubrics import suites
from rubrics.models import Rubric, RubricVersion, Suite, SuiteEntry, SuiteVersion, Task
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

    # The same file again: nothing changes, no new version.
    text = import_suite(personas, write_jsonl(tmp_path / "hb.jsonl", rows), suite="HB consensus")
    assert SuiteVersion.objects.filter(suite=suite).count() == 1
    assert "unchanged, still version 1" in text

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
    diff = suites.version_diff(v1, v2)
    assert diff.added == ["new-task-1"]
    assert [c.external_id for c in diff.changed] == [rows[1]["prompt_id"]]
    assert diff.changed[0].criteria_removed == [rows[1]["rubrics"][-1]["criterion"]]
    # v1 is untouched: it still pins the first grader of the changed task.
    v1.refresh_from_db()
    assert v1.manifest[rows[1]["prompt_id"]] != v2.manifest[rows[1]["prompt_id"]]


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
