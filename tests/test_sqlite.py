"""Every export and import on the embedded default: SQLite and the filesystem broker, in
subprocesses of `manage.py` with no DATABASE_URL or CELERY_BROKER_URL, as `scripts/demo` runs.
The rest of the suite runs on PostgreSQL; these exercise the portable paths below the one
code path of each export and import (exports._json_lines, ingest.import_responses)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from grading import datasets, exports
from tests.conftest import ROOT, SHARED_DATA

HEALTHBENCH = SHARED_DATA / "healthbench" / "oss_eval_sample.jsonl"
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
    """manage.py and the scenario's steps, on a fresh SQLite file under `var`."""

    def __init__(self, var):
        self.env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL",)}
        self.env.pop("CELERY_BROKER_URL", None)
        self.env.update(
            ASSAY_VAR_DIR=str(var), ASSAY_EMBEDDED="1", DJANGO_SETTINGS_MODULE="assay.settings"
        )

    def run(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run(  # noqa: S603 - our own interpreter and manage.py
            [sys.executable, *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if ok:
            assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
        return done

    def manage(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
        return self.run("manage.py", *args, ok=ok)

    def step(self, *args: str) -> dict:
        return json.loads(self.run("-m", "tests.sqlite_scenario", *args).stdout.splitlines()[-1])


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    """A source project on SQLite with tasks, rubrics, responses (each imported in every
    format by its command), a run's verdicts and scores, and a person's draft."""
    files = tmp_path_factory.mktemp("sqlite-files")
    sqlite = Embedded(tmp_path_factory.mktemp("sqlite-var"))
    sqlite.manage("migrate", "--noinput")
    assert "sqlite3" in sqlite.run("-c", _ENGINE).stdout  # the embedded default indeed
    names = sqlite.step("setup")
    source = names["source"]
    (files / "tasks.jsonl").write_text("".join(json.dumps(t) + "\n" for t in TASKS))
    pq.write_table(pa.Table.from_pylist(PARQUET_TASKS), files / "tasks.parquet")
    (files / "responses.jsonl").write_text("".join(json.dumps(r) + "\n" for r in RESPONSES))
    pq.write_table(pa.Table.from_pylist(PARQUET_RESPONSES), files / "responses.parquet")
    imported = {
        "healthbench": sqlite.manage(
            "import_rubrics", "--format", "healthbench", str(HEALTHBENCH), "--project", source
        ),
        "tasks-jsonl": sqlite.manage(
            "import_tasks", str(files / "tasks.jsonl"), "--project", source
        ),
        "tasks-parquet": sqlite.manage(
            "import_tasks", str(files / "tasks.parquet"), "--project", source
        ),
        "responses-jsonl": sqlite.manage(
            "import_responses", str(files / "responses.jsonl"), "--project", source
        ),
        "responses-parquet": sqlite.manage(
            "import_responses", str(files / "responses.parquet"), "--project", source
        ),
    }
    graded = sqlite.step("grade", source)
    return sqlite, names, files, imported, graded


_ENGINE = (
    "import django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'assay.settings'); "
    "django.setup(); from django.db import connection; print(connection.vendor, "
    "connection.settings_dict['ENGINE'])"
)


def test_every_dataset_format_builds_on_sqlite_without_drafts(embedded):
    sqlite, names, files, _, graded = embedded
    built = sqlite.step("snapshots", names["source"])
    assert set(built) == set(datasets.FORMATS)
    for fmt, snapshot in built.items():
        assert (snapshot["status"], snapshot["error"]) == ("ready", ""), fmt
        assert snapshot["rows"] > 0, fmt
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
    assert responses[0] == RESPONSES[0]
    # a -> b is the only pair of t1's scores 1.0, 0.75, 0.5, 0.25 apart by 0.1 or more... all
    # six pairs are; each names the run.
    pairs = [json.loads(line) for line in built["preference-pairs"]["content"].splitlines()]
    assert len(pairs) == 6 and {p["run_id"] for p in pairs} == {graded["run"]}

    # The same formats through export_dataset.
    for fmt in sorted(exports.PROJECT_EXPORTS):
        out = files / f"export-{fmt}"
        done = sqlite.manage(
            "export_dataset", "--project", names["source"], "--format", fmt, "--output", str(out)
        )
        assert out.stat().st_size > 0, (fmt, done.stderr)
    out = files / "export-pairs"
    sqlite.manage(
        "export_dataset",
        "--project",
        names["source"],
        "--format",
        "preference-pairs",
        "--run",
        str(graded["run"]),
        "--output",
        str(out),
    )
    assert len(out.read_text().splitlines()) == 6
    assert pq.read_table(files / "export-verdicts-parquet").num_rows == 10


def test_every_import_format_works_on_sqlite_and_round_trips(embedded):
    sqlite, names, files, imported, _ = embedded
    assert "Imported 2" in imported["tasks-jsonl"].stdout + imported["tasks-jsonl"].stderr
    assert "4" in imported["responses-jsonl"].stdout + imported["responses-jsonl"].stderr
    source, target = names["source"], names["target"]
    tasks, responses = files / "rt-tasks.jsonl", files / "rt-responses.jsonl"
    for fmt, path in (("tasks-jsonl", tasks), ("responses-jsonl", responses)):
        sqlite.manage("export_dataset", "--project", source, "--format", fmt, "--output", str(path))
    sqlite.manage("import_tasks", str(tasks), "--project", target)
    sqlite.manage("import_responses", str(responses), "--project", target)
    for fmt, path in (("tasks-jsonl", tasks), ("responses-jsonl", responses)):
        again = files / f"again-{fmt}"
        sqlite.manage(
            "export_dataset", "--project", target, "--format", fmt, "--output", str(again)
        )
        assert again.read_bytes() == path.read_bytes(), fmt
    exported = [json.loads(line) for line in tasks.read_text().splitlines()]
    t1 = next(t for t in exported if t["external_id"] == "t1")
    assert t1["reference"] == TASKS[0]["reference"] and t1["messages"] == TASKS[0]["messages"]
    assert t1["reference_file"] is None

    # The same file again adds nothing; a file that contradicts a stored response, or repeats
    # a key, is refused with its lines, and nothing of it is written.
    repeat = sqlite.manage("import_responses", str(responses), "--project", target)
    assert "already" in (repeat.stdout + repeat.stderr).lower()
    changed = dict(RESPONSES[1], response="something else")
    bad = files / "bad.jsonl"
    new = {"task_id": "t2", "model": "new", "response": "x"}
    bad.write_text("".join(json.dumps(r) + "\n" for r in (new, changed, new)))
    refused = sqlite.manage("import_responses", str(bad), "--project", target, ok=False)
    said = refused.stdout + refused.stderr
    assert refused.returncode != 0
    assert "line 2" in said and "immutable" in said and "line 3" in said and "repeats" in said
    after = files / "after.jsonl"
    sqlite.manage(
        "export_dataset",
        "--project",
        target,
        "--format",
        "responses-jsonl",
        "--output",
        str(after),
    )
    assert after.read_bytes() == responses.read_bytes()
