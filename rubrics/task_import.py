"""Bulk import of tasks from JSONL or Parquet rows: all or nothing, errors by line and field,
idempotent by external id (an identical task already stored is counted, not duplicated)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction

from rubrics import uploads
from rubrics.files import parts
from rubrics.models import Project, ReferenceDeliverable, Task
from rubrics.services import validate_context, validate_messages

TASK_FIELDS = {
    "external_id": "your id for the task (required)",
    "title": "a short title (optional)",
    "messages": "the prompt as chat messages [{role, content}] (required); a user message's "
    "content may be a list of parts: text, image_url and file parts whose file is a base64 "
    "data: URI or sha256:<hash> of a file the project holds (never a URL)",
    "context": "background the judge may see (optional)",
    "tags": "a list of strings (optional)",
    "reference": "an expert's reference answer, Markdown (optional)",
    "reference_file": "the reference's attached file as exports list it, {name, sha256, "
    "bytes} or null (optional; for provenance only: the file itself is not in the line)",
}
MAX_ERRORS = 200


@dataclass
class TaskImportResult:
    created: int = 0
    already_present: int = 0
    errors: list[str] = field(default_factory=list)
    error_count: int = 0
    status: int = 400  # of a refusal: 413 for a file over its size limit

    @property
    def ok(self) -> bool:
        return not self.error_count


def _rows_of(lines: Iterable[bytes | str]) -> Iterator[tuple[int, object]]:
    for number, raw, problem in uploads.decoded_lines(lines):
        if problem:
            yield number, ValueError(problem)
        elif raw.strip():
            try:
                row = uploads.loads(raw)
            except uploads.JsonRefused as exc:
                yield number, ValueError(str(exc))
                continue
            bad = uploads.row_text_problem(raw, row)
            yield number, (_TextProblem(*bad) if bad else row)


class _TextProblem(ValueError):
    def __init__(self, where: str, what: str):
        super().__init__(what)
        self.where = where


def _clean(number: int, row: object, files: parts.Intake) -> tuple[dict | None, list[str]]:
    where = f"line {number}" if number else "file"
    if isinstance(row, _TextProblem):
        return None, [f"{where}, field '{row.where}': {row}"]
    if isinstance(row, ValueError):
        return None, [f"{where}: {row}"]
    if not isinstance(row, dict):
        return None, [f"{where}: each line must be a JSON object"]
    errors = [
        f"{where}, field '{name}': unknown field; the fields are: {', '.join(TASK_FIELDS)}"
        for name in sorted(set(row) - set(TASK_FIELDS))
    ]
    external_id = row.get("external_id")
    if not isinstance(external_id, str) or not external_id.strip() or len(external_id) > 200:
        errors.append(f"{where}, field 'external_id': required, at most 200 characters")
    try:
        messages = validate_messages(row.get("messages"), files=files)
    except ValidationError as exc:
        messages = None
        errors += [f"{where}, field '{k}': {m}" for k, ms in exc.message_dict.items() for m in ms]
    try:
        context = validate_context(row.get("context", ""))
    except ValidationError as exc:
        context = ""
        errors += [f"{where}, field '{k}': {m}" for k, ms in exc.message_dict.items() for m in ms]
    tags = row.get("tags") or []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        errors.append(f"{where}, field 'tags': a list of strings")
    for name in ("title", "reference"):
        if not isinstance(row.get(name, ""), str):
            errors.append(f"{where}, field '{name}': must be text")
    listed = row.get("reference_file")
    if listed is not None and not (
        isinstance(listed, dict)
        and isinstance(listed.get("name"), str)
        and isinstance(listed.get("sha256"), str)
        and isinstance(listed.get("bytes"), int)
    ):
        errors.append(
            f"{where}, field 'reference_file': null or an object with name, sha256 and bytes"
        )
    if errors:
        return None, errors
    return {
        "external_id": external_id.strip(),
        "title": (row.get("title") or external_id).strip()[:300],
        "messages": messages,
        "context": context,
        "tags": tags,
        "reference": row.get("reference", ""),
    }, []


PARQUET_MAGIC = uploads.PARQUET_MAGIC


def is_parquet(upload, filename: str = "") -> bool:
    """A Parquet file by its name or, whatever it is called, by its leading magic bytes."""
    if filename.lower().endswith(".parquet"):
        return True
    return uploads.head_of(upload, 4) == PARQUET_MAGIC


def parquet_task_rows(upload, *, name: str, batch_size: int = 5_000):
    """(row number, object) pairs from a Parquet file of tasks, read in batches, after its
    footer passed `uploads.parquet_file` (rows, size, columns)."""
    reader = uploads.parquet_file(upload, name=name, columns=TASK_FIELDS)
    for number, row in uploads.parquet_rows(reader, name=name, batch_size=batch_size):
        bad = uploads.text_problem(row)
        yield number, (_TextProblem(*bad) if bad else row)


def tasks_import_file(*, project: Project, upload, filename: str, user=None) -> TaskImportResult:
    """One door for every upload of tasks (page, API, command): JSONL or Parquet by content,
    refused whole (nothing written) when over ASSAY_TASK_UPLOAD_MAX_BYTES or not what it says."""
    try:
        uploads.check_size(
            upload,
            name=filename,
            limit=settings.TASK_UPLOAD_MAX_BYTES,
            setting="ASSAY_TASK_UPLOAD_MAX_BYTES",
            what="task imports",
        )
        if is_parquet(upload, filename):
            rows = parquet_task_rows(upload, name=filename)
            return tasks_import(project=project, rows=rows, user=user)
        uploads.check_text(upload, name=filename, expected="JSONL text or a Parquet file")
        upload.seek(0)
        return tasks_import(project=project, lines=upload, user=user)
    except uploads.UploadRefused as exc:
        return TaskImportResult(errors=[f"file: {exc.text}"], error_count=1, status=exc.status)


def tasks_import(
    *,
    project: Project,
    lines: Iterable[bytes | str] | None = None,
    rows: Iterable[tuple[int, object]] | None = None,
    user=None,
) -> TaskImportResult:
    # Reading a line stores its images and files (StoredFile rows): a refused file rolls
    # them back with everything else, so nothing is half-imported.
    with transaction.atomic():
        result = _tasks_import(project=project, lines=lines, rows=rows, user=user)
        if result.error_count:
            transaction.set_rollback(True)
    return result


def _tasks_import(*, project, lines, rows, user) -> TaskImportResult:
    result = TaskImportResult()
    clean: list[dict] = []
    seen: dict[str, int] = {}
    files = parts.Intake(project)  # a file on many lines is stored once
    for number, row in rows if rows is not None else _rows_of(lines or ()):
        task, errors = _clean(number, row, files)
        result.errors += errors
        if task is None:
            continue
        if task["external_id"] in seen:
            result.errors.append(
                f"line {number}, field 'external_id': repeats line {seen[task['external_id']]}"
            )
            continue
        seen[task["external_id"]] = number
        task["line"] = number
        clean.append(task)
    if not clean and not result.errors:
        result.errors.append("the file holds no tasks")
    stored = {
        t.external_id: t for t in Task.objects.filter(project=project, external_id__in=list(seen))
    }
    new = []
    for task in clean if not result.errors else []:
        old = stored.get(task["external_id"])
        if old is None:
            new.append(task)
        elif (old.messages, old.title, old.context, old.tags) == (
            task["messages"],
            task["title"],
            task["context"],
            task["tags"],
        ):
            result.already_present += 1
        else:
            result.errors.append(
                f"line {task['line']}, field 'external_id': a different task "
                f"'{task['external_id']}' is already in the project"
            )
    result.error_count = len(result.errors)
    del result.errors[MAX_ERRORS:]
    if result.error_count:
        return result
    created = Task.objects.bulk_create(
        [
            Task(
                project=project,
                external_id=t["external_id"],
                title=t["title"],
                messages=t["messages"],
                context=t["context"],
                tags=t["tags"],
            )
            for t in new
        ],
        batch_size=1000,
    )
    ReferenceDeliverable.objects.bulk_create(
        [
            ReferenceDeliverable(task=task, body=t["reference"], author=user)
            for task, t in zip(created, new, strict=True)
            if t["reference"].strip()
        ],
        batch_size=1000,
    )
    result.created = len(new)
    return result
