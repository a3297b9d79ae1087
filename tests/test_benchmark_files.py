"""Every HealthBench and PaperBench file under shared/data imports whole with the command,
counts as many tasks and criteria as the file holds, and exports back to the same values.

The files are whatever shared/data holds (the samples now; the full public sets when they are
added), so this test grows with them. The full HealthBench file (5,000 conversations, about
48,500 criteria) imports in about 20 s on the 2-core machine: bench/import_rubrics.py."""

from __future__ import annotations

import json
import time

import pytest
from django.core.management import CommandError, call_command

from rubrics.models import Criterion, CriterionGroup, Rubric, Task
from tests import factories
from tests.conftest import SHARED_DATA

pytestmark = pytest.mark.django_db

HEALTHBENCH_FILES = sorted((SHARED_DATA / "healthbench").glob("*.jsonl"))
PAPERBENCH_FILES = sorted((SHARED_DATA / "paperbench").glob("*.json"))
# Seconds per 1,000 criteria that an import may take here before the test calls it too slow
# (the whole 48,500-criterion file must stay well under a minute on a loaded 2-core machine).
SECONDS_PER_1000_CRITERIA = 1.0


def test_shared_data_holds_both_benchmarks():
    assert HEALTHBENCH_FILES, f"no HealthBench JSONL under {SHARED_DATA / 'healthbench'}"
    assert PAPERBENCH_FILES, f"no PaperBench rubric JSON under {SHARED_DATA / 'paperbench'}"


@pytest.mark.parametrize("path", HEALTHBENCH_FILES, ids=lambda p: p.name)
def test_a_whole_healthbench_file_imports_and_round_trips(personas, tmp_path, path):
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    criteria = sum(len(row["rubrics"]) for row in rows)
    slug = personas.project.slug
    start = time.perf_counter()
    call_command("import_rubrics", str(path), format="healthbench", project=slug)
    took = time.perf_counter() - start
    assert Task.objects.filter(project=personas.project).count() == len(rows)
    assert Rubric.objects.filter(project=personas.project).count() == len(rows)
    assert Criterion.objects.filter(version__rubric__project=personas.project).count() == criteria
    assert took < 5 + SECONDS_PER_1000_CRITERIA * criteria / 1000, f"{took:.1f}s"

    out = tmp_path / "export.jsonl"
    call_command("export_rubrics", format="healthbench", project=slug, output=str(out))
    exported = out.read_text(encoding="utf-8").splitlines()
    assert len(exported) == len(rows)
    for number, (line, row) in enumerate(zip(exported, rows, strict=True), start=1):
        assert json.loads(line) == row, f"{path.name} line {number} differs after the round trip"

    # And the export imports again, into another project, with the same counts.
    other = factories.make_project(owner=personas.admin, name="Again")
    call_command("import_rubrics", str(out), format="healthbench", project=other.slug)
    assert Criterion.objects.filter(version__rubric__project=other).count() == criteria


def _nodes(node: dict):
    yield node
    for child in node["sub_tasks"]:
        yield from _nodes(child)


@pytest.mark.parametrize("path", PAPERBENCH_FILES, ids=lambda p: p.name)
def test_a_whole_paperbench_tree_imports_and_round_trips(personas, tmp_path, path):
    tree = json.loads(path.read_text(encoding="utf-8"))
    nodes = list(_nodes(tree))
    leaves = [n for n in nodes if not n["sub_tasks"]]
    slug = personas.project.slug
    call_command("import_rubrics", str(path), format="paperbench", project=slug)
    rubric = Rubric.objects.get(project=personas.project)
    version = rubric.versions.get()
    assert version.criteria.count() == len(leaves)
    assert CriterionGroup.objects.filter(version=version).count() == len(nodes) - len(leaves)
    out = tmp_path / "export.json"
    call_command("export_rubrics", format="paperbench", project=slug, output=str(out))
    assert json.loads(out.read_text(encoding="utf-8")) == tree
    call_command("import_rubrics", str(out), format="paperbench", project=slug)
    assert Criterion.objects.filter(version__rubric__project=personas.project).count() == 2 * len(
        leaves
    )


def _sample_rows() -> list[dict]:
    return [
        json.loads(line)
        for line in HEALTHBENCH_FILES[0].read_text(encoding="utf-8").splitlines()
        if line
    ]


def test_empty_turns_import_as_real_conversations_have_them(personas, tmp_path):
    rows = _sample_rows()
    multi = next(r for r in rows if len(r["prompt"]) > 2)
    multi["prompt"][1]["content"] = ""  # an assistant turn that said nothing
    multi["prompt"][0]["content"] = "   "
    path = tmp_path / "empty-turns.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    call_command("import_rubrics", str(path), format="healthbench", project=personas.project.slug)
    task = Task.objects.get(external_id=multi["prompt_id"])
    assert task.messages[1] == {"role": "assistant", "content": ""}
    out = tmp_path / "out.jsonl"
    call_command(
        "export_rubrics", format="healthbench", project=personas.project.slug, output=str(out)
    )
    assert [json.loads(line) for line in out.read_text().splitlines()] == rows


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (lambda p: p[0].update(content=None), "line 2: prompt[0].content"),
        (lambda p: p[0].update(content=["text"]), "line 2: prompt[0].content"),
        (lambda p: p[0].pop("role"), "line 2: prompt[0].role"),
        (lambda p: p.__setitem__(0, "hello"), "line 2: prompt[0]"),
        (lambda p: p.clear(), "line 2: prompt"),
        (lambda p: [m.update(content="") for m in p], "line 2: prompt"),
        (lambda p: p[0].update(extra="x"), "line 2: prompt"),
    ],
)
def test_structurally_bad_prompts_are_refused_by_file_line_and_field(
    personas, tmp_path, change, where
):
    rows = _sample_rows()
    change(rows[1]["prompt"])
    path = tmp_path / "bad.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(CommandError) as refused:
        call_command(
            "import_rubrics", str(path), format="healthbench", project=personas.project.slug
        )
    message = str(refused.value)
    assert message.startswith(f"{path}: {where}"), message
    assert "Nothing was imported" in message
    assert not Task.objects.exists() and not Rubric.objects.exists()


def test_a_task_already_in_the_project_is_named_and_nothing_is_imported(personas, tmp_path):
    rows = _sample_rows()
    path = tmp_path / "one.jsonl"
    path.write_text(json.dumps(rows[2]) + "\n")
    call_command("import_rubrics", str(path), format="healthbench", project=personas.project.slug)
    with pytest.raises(CommandError) as refused:
        call_command(
            "import_rubrics",
            str(HEALTHBENCH_FILES[0]),
            format="healthbench",
            project=personas.project.slug,
        )
    assert "line 3: prompt_id" in str(refused.value)
    assert Task.objects.count() == 1
