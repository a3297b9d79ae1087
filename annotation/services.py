"""Writes for responses and raters."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.db import transaction

from annotation.models import Rater, Response
from rubrics.models import Project, Task

RESPONSE_FIELDS = {
    "task_id": "the task's external id (required)",
    "model": "the model's name (required)",
    "response": "the response text (required)",
    "sample_index": "a whole number >= 0 (optional, default 0)",
    "metadata": "an object of sampling settings and the like (optional)",
    "external_id": "your id for this response (optional)",
}
MAX_ERRORS_REPORTED = 200


@dataclass(frozen=True)
class LineError:
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}" + (f", field '{self.field}'" if self.field else "")
        return f"{where}: {self.message}"


@dataclass
class ImportResult:
    created: int = 0
    errors: list[LineError] = field(default_factory=list)
    error_count: int = 0
    filename: str = ""

    @property
    def ok(self) -> bool:
        return not self.error_count


def _parse_line(number: int, raw: str, tasks: dict[str, Task]) -> tuple[dict | None, list]:
    errors: list[LineError] = []

    def err(field_name: str, message: str) -> tuple[None, list]:
        errors.append(LineError(number, field_name, message))
        return None, errors

    try:
        row = json.loads(raw)
    except json.JSONDecodeError as exc:
        return err("", f"not valid JSON ({exc.msg} at column {exc.colno})")
    if not isinstance(row, dict):
        return err("", "each line must be a JSON object")
    unknown = sorted(set(row) - set(RESPONSE_FIELDS))
    if unknown:
        allowed = ", ".join(RESPONSE_FIELDS)
        err(unknown[0], f"unknown field; the fields are: {allowed}")
    for name in ("task_id", "model", "response"):
        value = row.get(name)
        if not isinstance(value, str) or not value.strip():
            err(name, f"required: {RESPONSE_FIELDS[name]}")
    task_id = row.get("task_id")
    if isinstance(task_id, str) and task_id.strip() and task_id not in tasks:
        err("task_id", f"no task with external id '{task_id}' in this project")
    sample_index = row.get("sample_index", 0)
    if isinstance(sample_index, bool) or not isinstance(sample_index, int) or sample_index < 0:
        err("sample_index", "must be a whole number >= 0")
    metadata = row.get("metadata", {})
    if not isinstance(metadata, dict):
        err("metadata", "must be a JSON object")
    external_id = row.get("external_id", "")
    if not isinstance(external_id, str) or len(external_id) > 200:
        err("external_id", "must be text of at most 200 characters")
    model = row.get("model")
    if isinstance(model, str) and len(model) > 200:
        err("model", "must be at most 200 characters")
    if errors:
        return None, errors
    return {
        "task": tasks[task_id],
        "model": model.strip(),
        "text": row["response"],
        "sample_index": sample_index,
        "metadata": metadata,
        "external_id": external_id,
    }, []


def responses_import_jsonl(
    *, project: Project, lines: Iterable[bytes | str], filename: str = ""
) -> ImportResult:
    """Import model outputs from JSONL: all of them, or none with every error by line.

    One object per line with the fields of RESPONSE_FIELDS. Blank lines are skipped. A
    response already imported for the same (task, model, sample index), or twice in one file,
    is an error: responses are immutable, so a re-upload never overwrites.
    """
    result = ImportResult(filename=filename)
    tasks = {t.external_id: t for t in Task.objects.filter(project=project)}
    rows: list[tuple[int, dict]] = []
    seen: dict[tuple, int] = {}
    for number, raw in enumerate(lines, start=1):
        if isinstance(raw, bytes):
            try:
                raw = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                result.errors.append(LineError(number, "", f"not UTF-8 text (byte {exc.start})"))
                continue
        if not raw.strip():
            continue
        row, errors = _parse_line(number, raw, tasks)
        result.errors.extend(errors)
        if row is None:
            continue
        key = (row["task"].pk, row["model"], row["sample_index"])
        if key in seen:
            result.errors.append(
                LineError(
                    number, "sample_index", f"repeats line {seen[key]} (same task, model, sample)"
                )
            )
            continue
        seen[key] = number
        rows.append((number, row))
    if not rows and not result.errors:
        result.errors.append(LineError(0, "", "the file holds no responses"))
    if not result.errors:
        existing = set(
            Response.objects.filter(task__project=project).values_list(
                "task_id", "model", "sample_index"
            )
        )
        for number, row in rows:
            if (row["task"].pk, row["model"], row["sample_index"]) in existing:
                result.errors.append(
                    LineError(
                        number,
                        "sample_index",
                        f"already imported: {row['model']} on {row['task'].external_id} "
                        f"sample {row['sample_index']}",
                    )
                )
    result.error_count = len(result.errors)
    del result.errors[MAX_ERRORS_REPORTED:]
    if result.error_count:
        return result
    with transaction.atomic():
        Response.objects.bulk_create((Response(**row) for _, row in rows), batch_size=1000)
    result.created = len(rows)
    return result


def person_rater(*, project: Project, user) -> Rater:
    rater, _ = Rater.objects.get_or_create(
        project=project,
        user=user,
        kind=Rater.Kind.PERSON,
        defaults={"name": user.get_full_name() or user.get_username()},
    )
    return rater
