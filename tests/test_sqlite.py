"""Every export and import on the embedded default: SQLite and the filesystem broker, in
subprocesses of `manage.py` with no DATABASE_URL or CELERY_BROKER_URL, as `scripts/demo` runs.
The rest of the suite runs on PostgreSQL; these exercise the portable paths below the one
code path of each export and import (grading.datasets.formats._json_lines,
ingest.import_responses)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from grading.datasets import formats, snapshots
from tests.conftest import ROOT, SHARED_DATA

HEALTHBENCH = SHARED_DATA / "healthbench" / "oss_eval_sample.jsonl"
PAPERBENCH = SHARED_DATA / "paperbench" / "mechanistic-understanding.rubric.json"
TASKS = [
    {
        "external_id": "t1",
        "title": "Dehydration",
        "tags": ["clinical"],
        "messages": [{"role": "user", "content": 'Vomiting & "dizzy"\nwhat now?'}],
        "context": "34-year-old",
        "reference": "**Drink water** with electrolytes.",
    },
    {
        "external_id": "t2",
        "title": "Memo",
        "tags": [],
        "context": "",
        "reference": "",
        "messages": [{"role": "user", "content": "Draft a memo 🙂"}],
    },
]
PARQUET_TASKS = [
    {"external_id": "t3", "title": "From Parquet", "messages": [{"role": "user", "content": "Hi"}]}
]
RESPONSES = [
    {
        "task_id": "t1",
        "model": model,
        "response": f"{model}: drink water\tslowly",
        "sample_index": i,
        "metadata": {"temperature": 0.7, "nested": {"k": [1, 2]}},
        "external_id": f"x-{model}-{i}",
    }
    for model in ("a", "b")
    for i in range(2)
]
PARQUET_RESPONSES = [
    {"task_id": "t2", "model": "c", "response": "MEMO\n\\n", "sample_index": 0, "external_id": ""}
]


class Embedded:
    """Programs of management commands and scenario steps, each in one subprocess on a SQLite
    file under `var` (one Django start-up per program: the commands' code, not their shell)."""

    def __init__(self, var):
        self.env = {
            k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL")
        }
        self.env.update(
            ASSAY_VAR_DIR=str(var), ASSAY_EMBEDDED="1", DJANGO_SETTINGS_MODULE="assay.settings"
        )

    def run(self, *program: list) -> list:
        done = subprocess.run(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "tests.sqlite_scenario", json.dumps(program)],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout.splitlines()[-1])


def ok(result: dict) -> str:
    """A command's output, once it is known to have succeeded."""
    assert result["error"] is None, result
    return result["out"] + result["err"]


def export(slug: str, fmt: str, path, *more: str) -> list:
    return [
        "manage",
        "export_dataset",
        "--project",
        slug,
        "--format",
        fmt,
        "--output",
        str(path),
        *more,
    ]


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    """A source project on SQLite with tasks, rubrics, responses (each imported in every
    format by its command), a run's verdicts and scores, and a person's draft."""
    files = tmp_path_factory.mktemp("sqlite-files")
    sqlite = Embedded(tmp_path_factory.mktemp("sqlite-var"))
    (files / "tasks.jsonl").write_text("".join(json.dumps(t) + "\n" for t in TASKS))
    pq.write_table(pa.Table.from_pylist(PARQUET_TASKS), files / "tasks.parquet")
    (files / "responses.jsonl").write_text("".join(json.dumps(r) + "\n" for r in RESPONSES))
    pq.write_table(pa.Table.from_pylist(PARQUET_RESPONSES), files / "responses.parquet")
    source = "sqlite-source"  # the slug setup gives it
    migrated, vendor, names, *imported, graded = sqlite.run(
        ["manage", "migrate", "--noinput"],
        ["vendor"],
        ["setup"],
        [
            "manage",
            "import_rubrics",
            "--format",
            "healthbench",
            str(HEALTHBENCH),
            "--project",
            source,
        ],
        ["manage", "import_tasks", str(files / "tasks.jsonl"), "--project", source],
        ["manage", "import_tasks", str(files / "tasks.parquet"), "--project", source],
        ["manage", "import_responses", str(files / "responses.jsonl"), "--project", source],
        ["manage", "import_responses", str(files / "responses.parquet"), "--project", source],
        ["grade", source],
    )
    ok(migrated)
    assert vendor == "sqlite"  # the embedded default indeed
    assert names["source"] == source
    return sqlite, names, files, [ok(r) for r in imported], graded


def test_every_dataset_format_builds_on_sqlite_without_drafts(embedded):
    sqlite, names, files, _, graded = embedded
    source = names["source"]
    project_formats = sorted(formats.PROJECT_EXPORTS)
    built, *exported, pairs_out = sqlite.run(
        ["snapshots", source],
        *(export(source, fmt, files / f"export-{fmt}") for fmt in project_formats),
        export(source, "preference-pairs", files / "pairs.jsonl", "--run", str(graded["run"])),
    )
    assert {key.removesuffix("+suite") for key in built} == set(snapshots.FORMATS)
    for fmt, snapshot in built.items():
        assert (snapshot["status"], snapshot["error"]) == ("ready", ""), fmt
        # This run has no step criteria: its step-supervision dataset is empty (but built).
        assert snapshot["rows"] > 0 or fmt == "step-supervision", fmt
    # 4 responses x 2 criteria by the judge, 2 by the person who submitted; the draft is out.
    verdicts = [json.loads(line) for line in built["verdicts-jsonl"]["content"].splitlines()]
    assert len(verdicts) == graded["verdicts"] - len(graded["drafts"]) == 10
    assert not {v["verdict_id"] for v in verdicts} & set(graded["drafts"])
    first = verdicts[0]
    assert first["task_external_id"] == "t1" and first["points"] == 2
    assert first["simulated"] is True and first["rater_kind"] == "judge"
    assert first["created_at"].endswith("+00:00")
    assert built["verdicts-parquet"]["rows"] == 10
    responses = [json.loads(line) for line in built["responses-jsonl"]["content"].splitlines()]
    assert responses[0] == {**RESPONSES[0], "messages": None, "final_state": None}
    # t1's four scores (1.0, 0.75, 0.5, 0.25) are all 0.1 or more apart: six pairs of the run.
    pairs = [json.loads(line) for line in built["preference-pairs"]["content"].splitlines()]
    assert len(pairs) == 6 and {p["run_id"] for p in pairs} == {graded["run"]}
    # The suite formats: the run's suite version names every row; its card holds the board.
    suite = {"suite_version": 1, "suite_hash": graded["suite_hash"], "suite": graded["suite"]}
    scores = [json.loads(line) for line in built["scores-jsonl"]["content"].splitlines()]
    assert len(scores) == 4 and all(s.items() >= suite.items() for s in scores)
    assert {s["task_external_id"] for s in scores} == {"t1"}
    assert [s["clipped"] for s in scores] == [1.0, 0.75, 0.5, 0.25]
    rft = [json.loads(line) for line in built["openai-rft+suite"]["content"].splitlines()]
    assert [(r["task_external_id"], r["suite_hash"]) for r in rft] == [("t1", suite["suite_hash"])]
    verl = pq.read_table(built["verl-parquet+suite"]["file"]).to_pylist()
    assert [r["reward_model"]["ground_truth"] for r in verl] == ["t1"]
    assert verl[0]["reward_model"]["suite_hash"] == suite["suite_hash"]
    hb = [json.loads(line) for line in built["healthbench-jsonl+suite"]["content"].splitlines()]
    assert [row["prompt_id"] for row in hb] == ["t1"]
    card = built["suite-card"]["content"]
    assert "| a | 0.875 |" in card and "| b | 0.375 |" in card  # (1 + .75) / 2, (.5 + .25) / 2
    assert "| a | 0.875 |" in built["suite-card"]["card"]  # the snapshot's card holds it too

    # The same formats through export_dataset.
    for fmt, result in zip(project_formats, exported, strict=True):
        ok(result)
        assert (files / f"export-{fmt}").stat().st_size > 0, fmt
    ok(pairs_out)
    assert len((files / "pairs.jsonl").read_text().splitlines()) == 6
    assert pq.read_table(files / "export-verdicts-parquet").num_rows == 10
    assert (files / "export-verdicts-jsonl").read_text() == built["verdicts-jsonl"]["content"]


def test_every_import_format_works_on_sqlite_and_round_trips(embedded):
    sqlite, names, files, imported, _ = embedded
    assert "2" in imported[1] and "1" in imported[2]  # tasks: JSONL, Parquet
    assert "4" in imported[3] and "1" in imported[4]  # responses: JSONL, Parquet
    source, target = names["source"], names["target"]
    tasks, responses = files / "rt-tasks.jsonl", files / "rt-responses.jsonl"
    new = {"task_id": "t2", "model": "new", "response": "x"}
    changed = dict(RESPONSES[1], response="something else")
    bad = files / "bad.jsonl"
    bad.write_text("".join(json.dumps(r) + "\n" for r in (new, changed, new)))
    results = sqlite.run(
        export(source, "tasks-jsonl", tasks),
        export(source, "responses-jsonl", responses),
        ["manage", "import_tasks", str(tasks), "--project", target],
        ["manage", "import_responses", str(responses), "--project", target],
        export(target, "tasks-jsonl", files / "again-tasks.jsonl"),
        export(target, "responses-jsonl", files / "again-responses.jsonl"),
        # The same file again adds nothing; a file that contradicts a stored response, or
        # repeats a key, is refused with its lines, and nothing of it is written.
        ["manage", "import_responses", str(responses), "--project", target],
        ["manage", "import_responses", str(bad), "--project", target],
        export(target, "responses-jsonl", files / "after.jsonl"),
    )
    for result in results[:7]:
        ok(result)
    assert (files / "again-tasks.jsonl").read_bytes() == tasks.read_bytes()
    assert (files / "again-responses.jsonl").read_bytes() == responses.read_bytes()
    exported = [json.loads(line) for line in tasks.read_text().splitlines()]
    t1 = next(t for t in exported if t["external_id"] == "t1")
    assert t1["reference"] == TASKS[0]["reference"] and t1["messages"] == TASKS[0]["messages"]
    assert t1["reference_file"] is None
    assert "already" in ok(results[6]).lower()
    refused = results[7]
    said = refused["out"] + refused["err"] + str(refused["error"])
    assert refused["error"] and "nothing was imported" in said
    assert "line 2" in said and "immutable" in said and "line 3" in said and "repeats" in said
    ok(results[8])
    assert (files / "after.jsonl").read_bytes() == responses.read_bytes()


def test_every_rubric_format_imports_and_exports_on_sqlite(embedded, tmp_path):
    import csv
    import io

    import openpyxl

    from tests.test_formats import SHEET, SHEET_MAP

    sqlite, names, _, _, _ = embedded
    (tmp_path / "sheet.csv").write_text(SHEET)
    workbook = openpyxl.Workbook()
    for row in csv.reader(io.StringIO(SHEET)):
        workbook.active.append([float(c) if c.lstrip("-").isdigit() else c for c in row])
    workbook.save(tmp_path / "sheet.xlsx")
    mapped = [arg for pair in SHEET_MAP for arg in ("--map", pair)]
    pb, csv_project, xlsx_project = sqlite.run(
        ["project", "SQLite PaperBench"], ["project", "SQLite CSV"], ["project", "SQLite XLSX"]
    )
    pb, sheet, book = pb["slug"], csv_project["slug"], xlsx_project["slug"]
    imported = sqlite.run(
        ["manage", "import_rubrics", str(PAPERBENCH), "--format", "paperbench", "--project", pb],
        ["paperbench_id", pb],
        [
            "manage",
            "import_rubrics",
            str(tmp_path / "sheet.csv"),
            "--format",
            "csv",
            *mapped,
            "--project",
            sheet,
            "--publish",
        ],
        [
            "manage",
            "import_rubrics",
            str(tmp_path / "sheet.xlsx"),
            "--format",
            "xlsx",
            *mapped,
            "--project",
            book,
        ],
    )
    ok(imported[0]), ok(imported[2]), ok(imported[3])
    out = {name: tmp_path / name for name in ("pb.json", "hb.jsonl", "csv.csv", "xlsx.csv")}
    exported = sqlite.run(
        [
            "manage",
            "export_rubrics",
            "--format",
            "paperbench",
            "--project",
            pb,
            "--rubric",
            str(imported[1]),
            "--output",
            str(out["pb.json"]),
        ],
        [
            "manage",
            "export_rubrics",
            "--format",
            "healthbench",
            "--project",
            names["source"],
            "--output",
            str(out["hb.jsonl"]),
        ],
        [
            "manage",
            "export_rubrics",
            "--format",
            "csv",
            "--project",
            sheet,
            "--output",
            str(out["csv.csv"]),
        ],
        [
            "manage",
            "export_rubrics",
            "--format",
            "csv",
            "--project",
            book,
            "--output",
            str(out["xlsx.csv"]),
        ],
    )
    for result in exported:
        ok(result)
    assert json.loads(out["pb.json"].read_text()) == json.loads(PAPERBENCH.read_text())
    hb = [json.loads(line) for line in out["hb.jsonl"].read_text().splitlines()]
    sample = [json.loads(line) for line in HEALTHBENCH.read_text().splitlines()]
    assert [row for row in hb if row["prompt_id"] != "t1"] == sample  # t1: the graded task
    assert out["csv.csv"].read_text() == out["xlsx.csv"].read_text()
    assert "Advises calling emergency services" in out["csv.csv"].read_text()


def test_suite_results_read_on_sqlite(embedded):
    """The leaderboards and the comparison aggregate in SQL: on SQLite too."""
    sqlite, names, _, _, graded = embedded
    (shown,) = sqlite.run(["pages", names["source"]])
    for url, (status, _) in shown.items():
        assert status == 200, (url, status, shown[url][1][:2000])
    board = json.loads(shown[f"/api/runs/{graded['run']}/leaderboard/"][1])
    # t1's four scores: a (1.0, 0.75) and b (0.5, 0.25).
    means = {row["model"]: row["overall"]["mean"] for row in board["models"]}
    assert means == {"a": 0.875, "b": 0.375}
    assert (
        "Leaderboard" in shown[f"/runs/{graded['run']}/"][1]
        or "leaderboard" in (shown[f"/runs/{graded['run']}/"][1])
    )


def test_episodes_import_refuse_changes_and_round_trip_on_sqlite(embedded, tmp_path):
    from tests.test_episode_import import episode_row

    sqlite, _, _, _, _ = embedded
    first, second = sqlite.run(["project", "SQLite episodes"], ["project", "SQLite episodes 2"])
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(
        json.dumps({"external_id": "t1", "title": "Refund", "messages": "Refund it"}) + "\n"
    )
    episodes = tmp_path / "episodes.jsonl"
    rows = [episode_row(i) for i in range(3)]
    episodes.write_text("".join(json.dumps(r) + "\n" for r in rows))
    changed = tmp_path / "changed.jsonl"
    rows[1]["final_state"] = {"orders": {}}
    changed.write_text("".join(json.dumps(r) + "\n" for r in rows))
    exported, copied = tmp_path / "exported.jsonl", tmp_path / "copied.jsonl"
    results = sqlite.run(
        ["manage", "import_tasks", str(tasks), "--project", first["slug"]],
        ["manage", "import_tasks", str(tasks), "--project", second["slug"]],
        ["manage", "import_responses", str(episodes), "--project", first["slug"]],
        ["manage", "import_responses", str(episodes), "--project", first["slug"]],
        ["manage", "import_responses", str(changed), "--project", first["slug"]],
        export(first["slug"], "responses-jsonl", exported),
        ["manage", "import_responses", str(exported), "--project", second["slug"]],
        export(second["slug"], "responses-jsonl", copied),
    )
    imported, again, refused = results[2:5]
    assert "Imported 3 responses" in ok(imported)
    assert "(3 already present)" in ok(again)
    said = refused["out"] + refused["err"] + str(refused["error"])
    assert refused["error"] and "line 2, field 'messages'" in said and "immutable" in said
    for result in results[5:]:
        ok(result)
    lines = [json.loads(line) for line in exported.read_text().splitlines()]
    assert [line["final_state"] for line in lines] == [
        r["final_state"] for r in (episode_row(i) for i in range(3))
    ]
    assert lines[0]["messages"][1]["tool_calls"][0]["function"]["name"] == "lookup_order"
    assert copied.read_bytes() == exported.read_bytes()
