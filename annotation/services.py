"""Writes for responses and raters."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.db import connection, transaction

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
    already_present: int = 0
    errors: list[LineError] = field(default_factory=list)
    error_count: int = 0
    filename: str = ""

    @property
    def ok(self) -> bool:
        return not self.error_count


def parse_response_row(
    number: int, item: object, tasks: dict[str, int]
) -> tuple[dict | None, list[LineError]]:
    """Validate one row (a JSONL line, or an already-decoded object from Parquet).

    `tasks` maps the project's task external ids to task ids. Returns the clean row, or the
    errors, each naming the line and the field."""
    errors: list[LineError] = []

    def err(field_name: str, message: str) -> None:
        errors.append(LineError(number, field_name, message))

    if isinstance(item, (str, bytes)):
        try:
            item = json.loads(item)
        except json.JSONDecodeError as exc:
            err("", f"not valid JSON ({exc.msg} at column {exc.colno})")
            return None, errors
    if not isinstance(item, dict):
        err("", "each line must be a JSON object")
        return None, errors
    row = item
    unknown = sorted(set(row) - set(RESPONSE_FIELDS))
    if unknown:
        err(unknown[0], f"unknown field; the fields are: {', '.join(RESPONSE_FIELDS)}")
    for name in ("task_id", "model", "response"):
        value = row.get(name)
        if not isinstance(value, str) or not value.strip():
            err(name, f"required: {RESPONSE_FIELDS[name]}")
    task_id = row.get("task_id")
    if isinstance(task_id, str) and task_id.strip() and task_id not in tasks:
        err("task_id", f"no task with external id '{task_id}' in this project")
    sample_index = row.get("sample_index", 0)
    if sample_index is None:
        sample_index = 0
    if isinstance(sample_index, bool) or not isinstance(sample_index, int) or sample_index < 0:
        err("sample_index", "must be a whole number >= 0")
    metadata = row.get("metadata") or {}
    if not isinstance(metadata, dict):
        err("metadata", "must be a JSON object")
    external_id = row.get("external_id") or ""
    if not isinstance(external_id, str) or len(external_id) > 200:
        err("external_id", "must be text of at most 200 characters")
    model = row.get("model")
    if isinstance(model, str) and len(model) > 200:
        err("model", "must be at most 200 characters")
    text = row.get("response")
    if isinstance(text, str) and "\x00" in text:
        err("response", "contains a NUL character")
    if errors:
        return None, errors
    return {
        "task_id": tasks[task_id],
        "model": model.strip(),
        "text": text,
        "sample_index": sample_index,
        "metadata": metadata,
        "external_id": external_id,
    }, []


def responses_import_jsonl(
    *, project: Project, lines: Iterable[bytes | str], filename: str = "", progress=None
) -> ImportResult:
    """Import model outputs from JSONL: all of them, or none with every error by line.

    One object per line with the fields of RESPONSE_FIELDS; blank lines are skipped. A row
    identical to a response already imported (same task, model, sample index and content) is
    counted as already present, so uploading a file twice adds nothing; a row that repeats a
    key within the file, or contradicts a stored response, is an error (responses are
    immutable). On PostgreSQL rows stream through COPY (annotation.ingest); the embedded SQLite
    default applies the same rules in Python.
    """
    if connection.vendor == "postgresql":
        from annotation import ingest

        return ingest.copy_import_responses(
            project=project, lines=lines, filename=filename, progress=progress
        )
    return _import_in_python(project=project, lines=lines, filename=filename)


def _import_in_python(*, project: Project, lines, filename: str) -> ImportResult:
    result = ImportResult(filename=filename)
    tasks = dict(Task.objects.filter(project=project).values_list("external_id", "pk"))
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
        row, errors = parse_response_row(number, raw, tasks)
        result.errors.extend(errors)
        if row is None:
            continue
        key = (row["task_id"], row["model"], row["sample_index"])
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
    new_rows = []
    if not result.errors:
        stored = {
            (r.task_id, r.model, r.sample_index): r
            for r in Response.objects.filter(task__project=project).only(
                "task_id", "model", "sample_index", "text", "metadata", "external_id"
            )
        }
        for number, row in rows:
            old = stored.get((row["task_id"], row["model"], row["sample_index"]))
            if old is None:
                new_rows.append(row)
            elif (old.text, old.metadata, old.external_id) == (
                row["text"],
                row["metadata"],
                row["external_id"],
            ):
                result.already_present += 1
            else:
                result.errors.append(
                    LineError(
                        number,
                        "response",
                        f"differs from the response already imported for {row['model']} "
                        f"sample {row['sample_index']}; responses are immutable",
                    )
                )
    result.error_count = len(result.errors)
    del result.errors[MAX_ERRORS_REPORTED:]
    if result.error_count:
        return result
    with transaction.atomic():
        Response.objects.bulk_create((Response(**row) for row in new_rows), batch_size=1000)
    result.created = len(new_rows)
    return result


def person_rater(*, project: Project, user) -> Rater:
    rater, _ = Rater.objects.get_or_create(
        project=project,
        user=user,
        kind=Rater.Kind.PERSON,
        defaults={"name": user.get_full_name() or user.get_username()},
    )
    return rater
