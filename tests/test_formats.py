"""HealthBench and PaperBench import and export: round trips, scores, and refused files."""

from __future__ import annotations

import csv
import io
import json
import random

import openpyxl
import pytest
from django.core.management import CommandError, call_command

from rubrics import formats, scoring, services
from rubrics.models import Criterion, Rubric, Task
from tests.conftest import SHARED_DATA  # noqa: E402

pytestmark = pytest.mark.django_db

DATA = SHARED_DATA
HEALTHBENCH = DATA / "healthbench" / "oss_eval_sample.jsonl"
PAPERBENCH = DATA / "paperbench" / "mechanistic-understanding.rubric.json"


def paperbench_score(node: dict, verdicts: dict[str, bool]) -> float:
    """PaperBench's aggregation, written from its definition: leaves score 1 or 0, a parent
    the weighted mean of its children; children whose weights sum to 0 give 0."""
    if not node["sub_tasks"]:
        return 1.0 if verdicts[node["id"]] else 0.0
    total = sum(child["weight"] for child in node["sub_tasks"])
    if total == 0:
        return 0.0
    return (
        sum(child["weight"] * paperbench_score(child, verdicts) for child in node["sub_tasks"])
        / total
    )


def leaves(node: dict):
    if not node["sub_tasks"]:
        yield node
    for child in node["sub_tasks"]:
        yield from leaves(child)


def test_healthbench_round_trip_is_identical_line_for_line(personas, tmp_path):
    slug = personas.project.slug
    call_command("import_rubrics", str(HEALTHBENCH), format="healthbench", project=slug)
    out = tmp_path / "out.jsonl"
    call_command("export_rubrics", format="healthbench", project=slug, output=str(out))
    original = [json.loads(line) for line in HEALTHBENCH.read_text().splitlines() if line.strip()]
    exported = [json.loads(line) for line in out.read_text().splitlines()]
    assert exported == original
    # Key order survives too, so a diff of the two files is quiet.
    assert [list(row) for row in exported] == [list(row) for row in original]
    assert Task.objects.filter(project=personas.project).count() == len(original)
    first = Criterion.objects.filter(version__rubric__task__external_id=original[0]["prompt_id"])
    assert first.filter(importance="pitfall").count() == sum(
        1 for item in original[0]["rubrics"] if item["points"] < 0
    )


def test_healthbench_export_follows_edits(personas, tmp_path):
    slug = personas.project.slug
    call_command("import_rubrics", str(HEALTHBENCH), format="healthbench", project=slug)
    first = json.loads(HEALTHBENCH.read_text().splitlines()[0])
    rubric = Rubric.objects.get(task__external_id=first["prompt_id"])
    c = rubric.versions.get().criteria.get(position=0)
    services.criterion_update(criterion=c, points=2)
    out = tmp_path / "out.jsonl"
    call_command("export_rubrics", format="healthbench", project=slug, output=str(out))
    row = json.loads(out.read_text().splitlines()[0])
    assert row["rubrics"][0]["points"] == 2
    assert row["rubrics"][1:] == first["rubrics"][1:]


@pytest.mark.parametrize(
    ("mutate", "where"),
    [
        (lambda rows: rows.__setitem__(2, "{not json"), "line 3"),
        (lambda rows: rows.__setitem__(1, json.dumps([1, 2])), "line 2"),
        (lambda rows: json.loads(rows[3]) and None, None),  # control: unchanged file imports
        (lambda rows: _edit(rows, 4, lambda r: r.pop("prompt_id")), "line 5: prompt_id"),
        (
            lambda rows: _edit(rows, 1, lambda r: r["rubrics"][2].update(points="ten")),
            "line 2: rubrics[2].points",
        ),
        (
            lambda rows: _edit(rows, 3, lambda r: r["rubrics"][0].update(points=0)),
            "line 4: rubrics[0].points",
        ),
        (
            lambda rows: _edit(rows, 2, lambda r: r["rubrics"][1].pop("criterion")),
            "line 3: rubrics[1].criterion",
        ),
        (
            lambda rows: _edit(rows, 0, lambda r: r["prompt"][0].update(role="robot")),
            "line 1: prompt[0].role",
        ),
        (
            lambda rows: _edit(
                rows, 4, lambda r: r.update(prompt_id=json.loads(rows[0])["prompt_id"])
            ),
            "line 5: prompt_id",
        ),
    ],
)
def test_a_bad_healthbench_file_names_line_and_field_and_imports_nothing(
    personas, tmp_path, mutate, where
):
    rows = HEALTHBENCH.read_text().splitlines()
    mutate(rows)
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(rows) + "\n")
    args = ("import_rubrics", str(bad))
    kwargs = {"format": "healthbench", "project": personas.project.slug}
    if where is None:
        call_command(*args, **kwargs)
        assert Rubric.objects.count() == 5
        return
    with pytest.raises(CommandError) as caught:
        call_command(*args, **kwargs)
    assert where in str(caught.value) and "Nothing was imported" in str(caught.value)
    assert not Task.objects.exists() and not Rubric.objects.exists()


def _edit(rows: list[str], index: int, change) -> None:
    row = json.loads(rows[index])
    change(row)
    rows[index] = json.dumps(row)


def test_paperbench_round_trip_is_the_same_tree(personas, tmp_path):
    slug = personas.project.slug
    call_command("import_rubrics", str(PAPERBENCH), format="paperbench", project=slug)
    out = tmp_path / "out.json"
    call_command("export_rubrics", format="paperbench", project=slug, output=str(out))
    assert json.loads(out.read_text()) == json.loads(PAPERBENCH.read_text())


def test_paperbench_root_score_equals_paperbench_aggregation(personas):
    tree = json.loads(PAPERBENCH.read_text())
    call_command(
        "import_rubrics",
        str(PAPERBENCH),
        format="paperbench",
        project=personas.project.slug,
        publish=True,
    )
    grader = Rubric.objects.get().versions.get().graders.get()
    spec = grader.spec
    assert spec["aggregation"]["method"] == "tree"
    id_of = {c.key: c.pk for c in Criterion.objects.filter(version=grader.version)}
    rng = random.Random(7)
    for _ in range(20):
        verdicts = {leaf["id"]: rng.random() < 0.5 for leaf in leaves(tree)}
        outcomes = {id_of[k]: ("met" if v else "unmet") for k, v in verdicts.items()}
        ours = scoring.score(spec, outcomes).raw
        assert ours == pytest.approx(paperbench_score(tree, verdicts))


def test_zero_weight_nodes_are_handled_as_paperbench_does(personas, tmp_path):
    tree = {
        "id": "root",
        "requirements": "Paper",
        "weight": 1,
        "sub_tasks": [
            {
                "id": "a",
                "requirements": "A",
                "weight": 3,
                "sub_tasks": [
                    {"id": "a1", "requirements": "A1", "weight": 0, "sub_tasks": []},
                    {"id": "a2", "requirements": "A2", "weight": 0, "sub_tasks": []},
                ],
            },
            {"id": "b", "requirements": "B", "weight": 1, "sub_tasks": []},
        ],
    }
    path = tmp_path / "tree.json"
    path.write_text(json.dumps(tree))
    call_command(
        "import_rubrics",
        str(path),
        format="paperbench",
        project=personas.project.slug,
        publish=True,
    )
    grader = Rubric.objects.get().versions.get().graders.get()
    id_of = {c.key: c.pk for c in Criterion.objects.filter(version=grader.version)}
    verdicts = {"a1": True, "a2": True, "b": True}
    ours = scoring.score(grader.spec, {id_of[k]: "met" for k in verdicts}).raw
    # Group A's children weigh 0 in total, so A scores 0: root = (3*0 + 1*1) / 4.
    assert ours == pytest.approx(0.25) == pytest.approx(paperbench_score(tree, verdicts))


@pytest.mark.parametrize(
    ("path", "field", "value"),
    [
        (["sub_tasks", 1], "weight", -1),
        (["sub_tasks", 2, "sub_tasks", 0], "requirements", ""),
        (["sub_tasks", 0], "sub_tasks", "none"),
        (["sub_tasks", 3], "id", 7),
    ],
)
def test_a_bad_tree_names_the_node_path_and_field(personas, tmp_path, path, field, value):
    tree = json.loads(PAPERBENCH.read_text())
    node = tree
    for step in path:
        node = node[step]
    node[field] = value
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(tree))
    with pytest.raises(CommandError) as caught:
        call_command("import_rubrics", str(bad), format="paperbench", project=personas.project.slug)
    expected = (
        "root" + "".join(f".{p}" if isinstance(p, str) else f"[{p}]" for p in path) + f".{field}"
    )
    assert expected in str(caught.value)
    assert not Rubric.objects.exists() and not Criterion.objects.exists()


def test_unknown_project_and_missing_file_are_clear(personas, tmp_path):
    with pytest.raises(CommandError, match="No project"):
        call_command("import_rubrics", str(HEALTHBENCH), format="healthbench", project="nope")
    with pytest.raises(CommandError, match="no such file"):
        call_command(
            "import_rubrics",
            str(tmp_path / "x"),
            format="healthbench",
            project=personas.project.slug,
        )


def test_import_and_export_in_the_browser_pages(client, personas):
    client.force_login(personas.author)
    url = f"/p/{personas.project.slug}/rubrics/import/"
    with HEALTHBENCH.open("rb") as upload:
        reply = client.post(url, {"format": "healthbench", "file": upload})
    assert reply.status_code == 302
    assert Rubric.objects.count() == 5
    reply = client.get(f"/p/{personas.project.slug}/rubrics/export/?format=healthbench")
    assert reply["Content-Disposition"].endswith('healthbench.jsonl"')
    exported = [json.loads(line) for line in reply.content.decode().splitlines()]
    original = [json.loads(line) for line in HEALTHBENCH.read_text().splitlines() if line]
    assert exported == original


def test_a_bad_upload_is_refused_with_its_line_and_field(client, personas, tmp_path):
    rows = HEALTHBENCH.read_text().splitlines()
    _edit(rows, 2, lambda r: r["rubrics"][0].update(points="x"))
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(rows))
    client.force_login(personas.author)
    with bad.open("rb") as upload:
        reply = client.post(
            f"/p/{personas.project.slug}/rubrics/import/",
            {"format": "healthbench", "file": upload},
        )
    body = reply.content.decode()
    assert reply.status_code == 200
    assert "bad.jsonl, line 3: rubrics[0].points" in body and "Nothing was imported" in body
    assert not Rubric.objects.exists()


def test_paperbench_export_from_the_page(client, personas):
    call_command(
        "import_rubrics", str(PAPERBENCH), format="paperbench", project=personas.project.slug
    )
    client.force_login(personas.annotator)
    pk = Rubric.objects.get().pk
    reply = client.get(f"/p/{personas.project.slug}/rubrics/export/?format=paperbench&rubric={pk}")
    assert json.loads(reply.content) == json.loads(PAPERBENCH.read_text())


SHEET = """Task,Question,Criterion text,Pts,Axis,Hurdle,Section
chest,I have chest pain. What now?,Advises calling emergency services,5,accuracy,yes,Safety
chest,,Suggests waiting at home,-4,accuracy,,Safety
chest,,Uses plain language,1,communication quality,,
knee,My knee hurts after running.,Advises rest,2,completeness,,
"""
SHEET_MAP = [
    "task_id=Task",
    "prompt=Question",
    "criterion=Criterion text",
    "points=Pts",
    "tags=Axis",
    "gate=Hurdle",
    "group=Section",
]


def test_a_spreadsheet_imports_with_a_column_map(personas, tmp_path):
    path = tmp_path / "rubrics.csv"
    path.write_text(SHEET)
    call_command(
        "import_rubrics",
        str(path),
        format="csv",
        project=personas.project.slug,
        map=SHEET_MAP,
        publish=True,
    )
    chest = Rubric.objects.get(task__external_id="chest").versions.get()
    rows = list(chest.criteria.order_by("position").select_related("group"))
    assert [(c.text, float(c.points), c.gate) for c in rows] == [
        ("Advises calling emergency services", 5, True),
        ("Suggests waiting at home", -4, False),
        ("Uses plain language", 1, False),
    ]
    assert rows[0].group.title == rows[1].group.title == "Safety" and rows[2].group is None
    assert rows[2].tags == ["communication quality"]
    assert chest.graders.get().spec["aggregation"]["method"] == "tree"
    assert Task.objects.get(external_id="knee").prompt_text == "My knee hurts after running."


@pytest.mark.parametrize(
    ("sheet", "needle"),
    [
        (SHEET.replace(",5,accuracy", ",five,accuracy"), "line 2: column 'Pts' (points)"),
        (SHEET.replace("knee,My knee hurts after running.", "knee,"), "line 5: column 'Question'"),
        (SHEET.replace("Criterion text", "Text"), "column 'Criterion text'"),
    ],
)
def test_a_bad_spreadsheet_names_line_and_column(personas, tmp_path, sheet, needle):
    path = tmp_path / "bad.csv"
    path.write_text(sheet)
    with pytest.raises(CommandError) as caught:
        call_command(
            "import_rubrics", str(path), format="csv", project=personas.project.slug, map=SHEET_MAP
        )
    assert needle in str(caught.value)
    assert not Rubric.objects.exists() and not Task.objects.exists()


def test_a_bad_map_option_is_named(personas, tmp_path):
    path = tmp_path / "x.csv"
    path.write_text(SHEET)
    with pytest.raises(CommandError, match="'colour=Pts'"):
        call_command(
            "import_rubrics",
            str(path),
            format="csv",
            project=personas.project.slug,
            map=["colour=Pts"],
        )


def test_the_import_page_maps_spreadsheet_columns(client, personas, tmp_path):
    path = tmp_path / "sheet.csv"
    path.write_text(SHEET)
    client.force_login(personas.admin)
    data = {"format": "csv", **{f"map_{p.split('=')[0]}": p.split("=")[1] for p in SHEET_MAP}}
    with path.open("rb") as upload:
        reply = client.post(f"/p/{personas.project.slug}/rubrics/import/", {**data, "file": upload})
    assert reply.status_code == 302
    assert Rubric.objects.count() == 2


def test_an_xlsx_workbook_imports_like_its_csv(personas, tmp_path):
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    for row in csv.reader(io.StringIO(SHEET)):
        sheet.append([float(c) if c.lstrip("-").isdigit() else c for c in row])
    path = tmp_path / "rubrics.xlsx"
    workbook.save(path)
    call_command(
        "import_rubrics", str(path), format="xlsx", project=personas.project.slug, map=SHEET_MAP
    )
    chest = Rubric.objects.get(task__external_id="chest").versions.get()
    assert [float(c.points) for c in chest.criteria.order_by("position")] == [5, -4, 1]
    assert chest.criteria.get(position=0).gate is True


def test_a_file_that_is_not_a_workbook_is_refused(personas, tmp_path):
    path = tmp_path / "fake.xlsx"
    path.write_text(SHEET)
    with pytest.raises(CommandError, match="is text, not an XLSX workbook"):
        call_command(
            "import_rubrics", str(path), format="xlsx", project=personas.project.slug, map=SHEET_MAP
        )


def test_paperbench_keeps_float_weights_unknown_fields_and_mixed_children(personas, tmp_path):
    tree = {
        "id": "root",
        "requirements": "  Reproduce the paper  ",
        "weight": 1,
        "task_category": None,
        "finegrained_task_category": None,
        "notes": {"source": "authors", "reviewed": True},
        "sub_tasks": [
            {
                "id": "leaf-a",
                "requirements": "Code runs",
                "weight": 0.5,
                "sub_tasks": [],
                "task_category": "Code Execution",
                "finegrained_task_category": "Setup",
            },
            {
                "id": "group-b",
                "requirements": "Results",
                "weight": 2.25,
                "task_category": None,
                "sub_tasks": [
                    {
                        "id": "leaf-b1",
                        "requirements": "Table 1 matches",
                        "weight": 3,
                        "sub_tasks": [],
                        "task_category": "Result Analysis",
                    },
                ],
            },
            {
                "id": "leaf-c",
                "requirements": "Writes a README",
                "weight": 0,
                "sub_tasks": [],
                "task_category": "Code Development",
            },
        ],
    }
    path = tmp_path / "tree.json"
    path.write_text(json.dumps(tree))
    out = tmp_path / "out.json"
    call_command("import_rubrics", str(path), format="paperbench", project=personas.project.slug)
    call_command(
        "export_rubrics", format="paperbench", project=personas.project.slug, output=str(out)
    )
    assert json.loads(out.read_text()) == tree


# An expert's sheet as written: no points column, hurdles marked in words.
EXPERT_ROWS = [
    ["Task", "Question", "Criterion", "Hurdle"],
    ["chest", "I have chest pain. What now?", "Advises calling emergency services", "Hurdle"],
    ["chest", "", "Mentions an ECG", "Not"],
    ["chest", "", "Asks about medication", ""],
    ["chest", "", "Checks for allergies", "CRITICAL"],
    ["chest", "", "Explains warning signs", " must "],
    ["chest", "", "Uses plain language", "Nice to have"],
]
EXPERT_MAP = ["task_id=Task", "prompt=Question", "criterion=Criterion", "gate=Hurdle"]


def expert_file(tmp_path, rows, suffix):
    path = tmp_path / f"expert.{suffix}"
    if suffix == "csv":
        with path.open("w", newline="") as f:
            csv.writer(f).writerows(rows)
    else:
        workbook = openpyxl.Workbook()
        for row in rows:
            workbook.active.append(row)
        workbook.save(path)
    return path


@pytest.mark.parametrize("suffix", ["csv", "xlsx"])
def test_an_expert_sheet_without_points_imports_one_point_each(personas, tmp_path, suffix):
    path = expert_file(tmp_path, EXPERT_ROWS, suffix)
    call_command(
        "import_rubrics", str(path), format=suffix, project=personas.project.slug, map=EXPERT_MAP
    )
    version = Rubric.objects.get(task__external_id="chest").versions.get()
    assert [(c.text, float(c.points), c.gate) for c in version.criteria.order_by("position")] == [
        ("Advises calling emergency services", 1, True),
        ("Mentions an ECG", 1, False),
        ("Asks about medication", 1, False),
        ("Checks for allergies", 1, True),
        ("Explains warning signs", 1, True),
        ("Uses plain language", 1, False),
    ]


@pytest.mark.parametrize(
    ("word", "gate"),
    [
        *((w, True) for w in ["hurdle", "Yes", "y", "TRUE", "1", "x", "Critical", "must"]),
        *((w, True) for w in ["Gate", "required", "Essential", "mandatory", "Must have"]),
        *((w, False) for w in ["not", "No", "n", "false", "0", "", "optional", "nice to have"]),
        *((w, False) for w in ["Not hurdle", "-"]),
    ],
)
def test_the_gate_column_accepts_common_hurdle_words(word, gate):
    assert formats.parse_gate(word, where="line 2") is gate


@pytest.mark.parametrize("suffix", ["csv", "xlsx"])
def test_an_unknown_gate_word_names_its_line_and_value(personas, tmp_path, suffix):
    rows = [list(r) for r in EXPERT_ROWS]
    rows[4][3] = "Maybe"
    path = expert_file(tmp_path, rows, suffix)
    with pytest.raises(CommandError) as caught:
        call_command(
            "import_rubrics",
            str(path),
            format=suffix,
            project=personas.project.slug,
            map=EXPERT_MAP,
        )
    message = str(caught.value)
    assert "line 5: column 'Hurdle' (gate)" in message and "'Maybe' is not a gate value" in message
    assert "hurdle" in message and "nice to have" in message
    assert not Rubric.objects.exists() and not Task.objects.exists()


def test_a_points_column_mapped_by_name_must_exist(personas, tmp_path):
    path = expert_file(tmp_path, EXPERT_ROWS, "csv")
    with pytest.raises(CommandError, match="column 'Pts'"):
        call_command(
            "import_rubrics",
            str(path),
            format="csv",
            project=personas.project.slug,
            map=[*EXPERT_MAP, "points=Pts"],
        )
    assert not Rubric.objects.exists()


def test_the_import_page_takes_an_expert_sheet_without_points(client, personas, tmp_path):
    path = expert_file(tmp_path, EXPERT_ROWS, "xlsx")
    client.force_login(personas.admin)
    data = {"format": "xlsx", **{f"map_{p.split('=')[0]}": p.split("=")[1] for p in EXPERT_MAP}}
    with path.open("rb") as upload:
        reply = client.post(f"/p/{personas.project.slug}/rubrics/import/", {**data, "file": upload})
    assert reply.status_code == 302
    version = Rubric.objects.get().versions.get()
    assert version.criteria.filter(gate=True).count() == 3
    assert {float(c.points) for c in version.criteria.all()} == {1}


def test_a_task_rubric_exports_on_its_own_from_the_project_page(client, personas):
    call_command(
        "import_rubrics", str(HEALTHBENCH), format="healthbench", project=personas.project.slug
    )
    slug = personas.project.slug
    rubric = Rubric.objects.order_by("task_id", "pk")[2]
    client.force_login(personas.annotator)
    page = client.get(f"/p/{slug}/").content.decode()
    link = f"/p/{slug}/rubrics/export/?format=healthbench&amp;rubric={rubric.pk}"
    assert link in page and page.count("HealthBench JSONL</a>") == Rubric.objects.count() + 1
    reply = client.get(link.replace("&amp;", "&"))
    assert reply["Content-Disposition"].endswith(f'rubric-{rubric.pk}-healthbench.jsonl"')
    exported = [json.loads(line) for line in reply.content.decode().splitlines()]
    original = [json.loads(line) for line in HEALTHBENCH.read_text().splitlines() if line]
    assert exported == [original[2]]
    # Another project's rubric, a template and a bad number are refused, never a 500.
    template = services.rubric_create(
        project=personas.project, title="T", user=personas.author, is_template=True
    )
    assert (
        client.get(f"/p/{slug}/rubrics/export/?format=healthbench&rubric=9999").status_code == 404
    )
    url = f"/p/{slug}/rubrics/export/?format=healthbench&rubric={template.pk}"
    assert client.get(url).status_code == 404
    url = f"/p/{slug}/rubrics/export/?format=healthbench&rubric=%C2%B2"
    assert client.get(url).status_code == 400


def test_the_export_command_takes_one_task_rubric(personas, tmp_path):
    slug = personas.project.slug
    call_command("import_rubrics", str(HEALTHBENCH), format="healthbench", project=slug)
    rubric = Rubric.objects.order_by("task_id", "pk")[1]
    out = tmp_path / "one.jsonl"
    call_command(
        "export_rubrics", format="healthbench", project=slug, rubric=rubric.pk, output=str(out)
    )
    original = [json.loads(line) for line in HEALTHBENCH.read_text().splitlines() if line]
    assert [json.loads(line) for line in out.read_text().splitlines()] == [original[1]]
    with pytest.raises(CommandError, match="No task rubric 99999"):
        call_command("export_rubrics", format="healthbench", project=slug, rubric=99999)
