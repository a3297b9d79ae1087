"""Responses from files that are not response rows: agent logs and traces, each read into the
rows `annotation.services.parse_response_row` validates (`messages`, `final_state`), so every
format goes through the content model, the staging table and the all-or-nothing rule of
`annotation.ingest`.

* `inspect_log` — inspect-ai eval logs (`.eval`, `.json`), read with inspect-ai's own reader.
* `otel` — OpenTelemetry GenAI spans exported as JSON (OTLP JSON or a plain list of spans).
* `detect` — which format a file is, from its bytes and its name.

A reader yields `Found` episodes: the task each answers (by external id, with the prompt it
was given, so a missing task is created) and its response row. `import_found` creates the
missing tasks and imports the rows in one transaction: a bad episode leaves neither behind.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError
from django.db import transaction

from annotation.services import MAX_ERRORS_REPORTED, ImportResult, LineError
from rubrics import services as rubric_services
from rubrics.models import Project, Task

TITLE_CHARS = 80


@dataclass
class Found:
    """One episode read from a log or a trace. `number` is its position in the file (1-based:
    the "line" errors name); `prompt` the task's messages as the agent was given them."""

    number: int
    task_id: str
    prompt: list[dict]
    row: dict = field(default_factory=dict)


def import_found(
    *,
    project: Project,
    found: Iterable[Found],
    errors: list[LineError],
    filename: str = "",
    progress: Callable[[int, float], None] | None = None,
    files=None,
) -> ImportResult:
    """Create the tasks the episodes answer that the project lacks, then import the episodes'
    rows; all in one transaction, undone when any row or task is refused. `errors` are the
    reader's own (an unreadable sample or trace), reported beside the rows'."""
    from annotation import ingest

    found = list(found)
    with transaction.atomic():
        errors = list(errors) + _create_missing_tasks(project, found)
        result = ingest.import_responses(
            project=project,
            rows=((f.number, f.row) for f in found if f.row),
            filename=filename,
            progress=progress,
            files=files,
        )
        if errors:
            merged = sorted([*errors, *result.errors], key=lambda e: e.line)
            result.error_count += len(errors)
            result.errors = merged[:MAX_ERRORS_REPORTED]
            result.created = result.already_present = 0
        if not result.ok:
            transaction.set_rollback(True)
    return result


def _create_missing_tasks(project: Project, found: list[Found]) -> list[LineError]:
    known = set(Task.objects.filter(project=project).values_list("external_id", flat=True))
    errors = []
    for item in found:
        if not item.task_id or item.task_id in known:
            continue
        first_user = next((m["content"] for m in item.prompt if m["role"] == "user"), "")
        try:
            rubric_services.task_create(
                project=project,
                external_id=item.task_id,
                title=" ".join(first_user.split())[:TITLE_CHARS] or item.task_id,
                messages=item.prompt,
            )
        except ValidationError as exc:
            for name, messages in exc.message_dict.items():
                errors.append(LineError(item.number, f"input ({name})", " ".join(messages)))
            continue
        known.add(item.task_id)
    return errors
