"""Writes for responses, raters, queues, person verdicts and gold decisions."""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.db.models import Count, Exists, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from annotation.content.episode import (
    MAX_FILE_PARTS,
    METADATA_NUMBERS,
    ContentError,
    Episode,
    FileIntake,
)
from annotation.content.evidence import (
    AnchorError,
    check_anchor,
    parse_anchor,
    quoted_from,
    step_messages,
)
from annotation.models import (
    Adjudication,
    Assignment,
    CalibrationSettings,
    Queue,
    QueueItem,
    Rater,
    Response,
    Verdict,
)
from rubrics import audit, uploads
from rubrics import selectors as rubric_selectors
from rubrics import services as rubric_services
from rubrics.files.sniff import FileRefused
from rubrics.models import AuditEvent, Criterion, Grader, Project, RubricVersion, Task
from rubrics.scoring import step_rule_outcome
from rubrics.services import Conflict

RESPONSE_FIELDS = {
    "task_id": "the task's external id (required)",
    "model": "the model's name (required)",
    "response": "the response text (required, unless the row gives messages)",
    "messages": "an episode instead of a text: chat messages in the OpenAI format, with "
    "tool calls and tool results (annotation.content.episode)",
    "final_state": "with messages: the environment's state after the episode (optional JSON)",
    "files": "deliverables (optional): a list of paths in the bundle uploaded with the rows, "
    "data: URIs or sha256:<hash>, each a file part of the final assistant message",
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
    status: int = 400  # of a refusal: 413 for a file over its size limit

    @property
    def ok(self) -> bool:
        return not self.error_count


def parse_response_row(
    number: int, item: object, tasks: dict[str, int], files: FileIntake | None = None
) -> tuple[dict | None, list[LineError]]:
    """Validate one row (a JSONL line, or an already-decoded object from Parquet).

    `tasks` maps the project's task external ids to task ids; `files` (a ProjectIntake)
    takes the images and files the row carries, without which they are refused. Returns the
    clean row, or the errors, each naming the line and the field."""
    errors: list[LineError] = []

    def err(field_name: str, message: str) -> None:
        errors.append(LineError(number, field_name, message))

    raw = None
    if isinstance(item, bytes):
        item = item.decode("utf-8")
    if isinstance(item, str):
        raw = item
        try:
            item = uploads.loads(item)
        except uploads.JsonRefused as exc:
            err("", str(exc))
            return None, errors
    if not isinstance(item, dict):
        err("", "each line must be a JSON object")
        return None, errors
    row = item
    bad = uploads.row_text_problem(raw, row) if raw is not None else uploads.text_problem(row)
    if bad:
        err(bad[0], bad[1])
        return None, errors
    unknown = sorted(set(row) - set(RESPONSE_FIELDS))
    if unknown:
        err(unknown[0], f"unknown field; the fields are: {', '.join(RESPONSE_FIELDS)}")
    for name in ("task_id", "model"):
        value = row.get(name)
        if not isinstance(value, str) or not value.strip():
            err(name, f"required: {RESPONSE_FIELDS[name]}")
    text, content = _row_content(row, err, files)
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
    if errors:
        return None, errors
    return {
        "task_id": tasks[task_id],
        "model": model.strip(),
        "text": text,
        "content": content,
        "sample_index": sample_index,
        "metadata": metadata,
        "external_id": external_id,
    }, []


def _row_content(row: dict, err, files: FileIntake | None = None) -> tuple[str, dict | None]:
    """(text, content) of a row: its `response` text, or the episode its `messages` (and
    `final_state`) give, validated by the content model; exactly one of the two (a null is
    absent, as in the exports and in Parquet, where every row has every column). The row's
    `files` become file parts of its final assistant message (a `response` text with files is
    a one-message episode), so a deliverable is a part of a message like any other."""
    has_messages = row.get("messages") is not None
    if row.get("response") is not None and has_messages:
        err("messages", "give either response (a text) or messages (an episode), not both")
        return "", None
    extra = _row_files(row.get("files"), err)
    if extra is None:
        return "", None
    if not has_messages:
        if row.get("final_state") is not None:
            err("final_state", "a final state belongs to an episode: give messages too")
        text = row.get("response")
        if not isinstance(text, str) or not text.strip():
            err("response", f"required: {RESPONSE_FIELDS['response']}")
            return "", None
        if not extra:
            return text, None
        messages: object = [{"role": "assistant", "content": text}]
    else:
        messages = row["messages"]
    value: dict = {"messages": messages}
    if "final_state" in row:
        value["final_state"] = row["final_state"]
    # The row's metadata stays the response's; its episode figures (steps, tokens, wall time)
    # are also the episode's, where pages and judges read them.
    metadata = row.get("metadata")
    figures = (
        {k: metadata[k] for k in METADATA_NUMBERS if k in metadata}
        if isinstance(metadata, dict)
        else None
    )
    at = None
    if extra:
        at = _attach_files(value, extra)
        if at is None:
            err("files", "files are parts of the final assistant message; the row has none")
            return "", None
    try:
        episode = Episode.parse(value, metadata=figures, files=files)
    except ContentError as exc:
        err(_files_field(exc.field, at), exc.message)
        return "", None
    return episode.final_text, episode.stored()


def _row_files(raw: object, err) -> list[dict] | None:
    """The file parts a row's `files` field gives (a path, data: URI or sha256:<hash>, or an
    object as a file part's `file`); None after an error."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        err("files", "must be a list of paths in the bundle (or data: URIs, sha256:<hash>)")
        return None
    if len(raw) > MAX_FILE_PARTS:
        err("files", f"at most {MAX_FILE_PARTS} files per response")
        return None
    parts = []
    for k, item in enumerate(raw):
        if isinstance(item, str) and item.strip():
            parts.append({"type": "file", "file": {"path": item}})
        elif isinstance(item, dict):
            parts.append({"type": "file", "file": item})
        else:
            err(f"files[{k}]", "give a path in the bundle, a data: URI or sha256:<hash>")
            return None
    return parts


def _attach_files(value: dict, parts: list[dict]) -> tuple[int, int] | None:
    """Append `parts` to the content of the last assistant message of `value` (a copy);
    (message index, index of the first appended part), or None without one."""
    messages = value["messages"]
    if not isinstance(messages, list):
        return None
    for index in range(len(messages) - 1, -1, -1):
        message = messages[index]
        if isinstance(message, dict) and message.get("role") == "assistant":
            break
    else:
        return None
    content = message.get("content")
    if content is None or content == "":
        content = []
    elif isinstance(content, str):
        content = [{"type": "text", "text": content}]
    elif not isinstance(content, list):
        return None
    first = len(content)
    value["messages"] = [
        *messages[:index],
        {**message, "content": [*content, *parts]},
        *messages[index + 1 :],
    ]
    return index, first


def _files_field(field_path: str, at: tuple[int, int] | None) -> str:
    """An error in a part the row's `files` made is named as `files[k]`, where the row has it."""
    if at is None:
        return field_path
    match = re.match(rf"messages\[{at[0]}\]\.content\[(\d+)\](?:\.|$)", field_path)
    if match and int(match.group(1)) >= at[1]:
        return f"files[{int(match.group(1)) - at[1]}]"
    return field_path


def responses_import_jsonl(
    *,
    project: Project,
    lines: Iterable[bytes | str],
    filename: str = "",
    progress=None,
    files=None,
) -> ImportResult:
    """Import model outputs from JSONL: all of them, or none with every error by line.

    One object per line with the fields of RESPONSE_FIELDS; blank lines are skipped. A row
    identical to a response already imported (same task, model, sample index and content) is
    counted as already present, so uploading a file twice adds nothing; a row that repeats a
    key within the file, or contradicts a stored response, is an error (responses are
    immutable). Rows stream through a staging table (annotation.ingest), on either database.
    """
    from annotation import ingest

    # `files` (an annotation.content.intake.ProjectIntake) takes the rows' images and files;
    # without one they are refused, naming the part.
    return ingest.import_responses(
        project=project, lines=lines, filename=filename, progress=progress, files=files
    )


def responses_import_file(
    *,
    project: Project,
    upload,
    filename: str,
    format: str | None = None,
    progress=None,
    bundle=None,
    bundle_name: str = "",
) -> ImportResult:
    """One door for a file of responses (page, API, background job, command): response rows
    (JSONL, Parquet), inspect-ai eval logs or OpenTelemetry GenAI spans, the format detected
    from the file when not given (annotation.importers.detect). Refused whole, with nothing
    written, when over ASSAY_RESPONSE_UPLOAD_MAX_BYTES or not what it says.

    The images and files the rows name by path come from a bundle (rubrics.files.bundle): the
    upload itself, a .zip or .tar holding `responses.jsonl` (or one .jsonl or .parquet at its
    top) beside the files, or `bundle`, uploaded with it. Rows may also carry data: URIs."""
    from annotation import importers, ingest
    from annotation.content.intake import ProjectIntake
    from annotation.importers import detect
    from rubrics.files.bundle import Bundle, BundleRefused

    opened = None
    shown = filename
    try:
        uploads.check_size(
            upload,
            name=filename,
            limit=settings.RESPONSE_UPLOAD_MAX_BYTES,
            setting="ASSAY_RESPONSE_UPLOAD_MAX_BYTES",
            what="response imports",
        )
        format = format or detect.detect(upload, name=filename)
        if format == "bundle":
            if bundle is not None:
                raise uploads.UploadRefused(
                    f"'{filename}' is a bundle, and another came with it: send the responses "
                    "inside one bundle, or a responses file with a bundle beside it."
                )
            opened = Bundle(upload, name=filename)
            member = opened.responses_member()
            if member is None:
                raise uploads.UploadRefused(
                    f"'{filename}' is an archive with no responses file in it: put the rows "
                    "in responses.jsonl at the top of the bundle, or upload them with the "
                    "bundle beside them."
                )
            upload = io.BytesIO(opened.read(member, limit=settings.RESPONSE_UPLOAD_MAX_BYTES))
            shown = f"{filename}: {member}"
            format = detect.detect(upload, name=member)
            if format not in ("jsonl", "parquet"):
                raise uploads.UploadRefused(
                    f"'{member}' in '{filename}' is {detect.DESCRIBED[format]}; a bundle's "
                    "responses are JSONL or Parquet rows."
                )
        elif bundle is not None:
            opened = Bundle(bundle, name=bundle_name or getattr(bundle, "name", "bundle"))
        files = ProjectIntake(project, opened)
        if format == "parquet":
            reader = uploads.parquet_file(upload, name=shown, columns=RESPONSE_FIELDS)
            return ingest.import_responses(
                project=project,
                rows=ingest.parquet_rows(reader, name=shown),
                filename=shown,
                progress=progress,
                files=files,
            )
        if format in ("inspect", "otel"):
            if format == "inspect":
                from annotation.importers import inspect_log as reader
            else:
                from annotation.importers import otel as reader
            found, errors = reader.read(upload, name=filename)
            return importers.import_found(
                project=project,
                found=found,
                errors=errors,
                filename=filename,
                progress=progress,
                files=files,
            )
        check_jsonl(upload, name=shown)
        return ingest.import_responses(
            project=project, lines=upload, filename=shown, progress=progress, files=files
        )
    except BundleRefused as exc:
        return ImportResult(
            errors=[LineError(0, "bundle", str(exc))],
            error_count=1,
            filename=shown,
            status=exc.status,
        )
    except FileRefused as exc:  # the responses file in a bundle: over its limit
        return ImportResult(errors=[LineError(0, "file", str(exc))], error_count=1, filename=shown)
    except uploads.UploadRefused as exc:
        return ImportResult(
            errors=[LineError(0, "file", exc.text)],
            error_count=1,
            filename=shown,
            status=exc.status,
        )
    finally:
        if opened is not None:
            opened.close()


def check_jsonl(upload, *, name: str) -> None:
    """JSONL text (a Parquet file, or a zip that is not an eval log, is refused here)."""
    if uploads.head_of(upload, 4) == uploads.PARQUET_MAGIC:
        raise uploads.UploadRefused(
            f"'{name}' is a Parquet file, not JSONL text; import it as Parquet."
        )
    uploads.check_text(upload, name=name, expected="JSONL text")
    upload.seek(0)


def person_rater(*, project: Project, user) -> Rater:
    rater, _ = Rater.objects.get_or_create(
        project=project,
        user=user,
        kind=Rater.Kind.PERSON,
        defaults={"name": user.get_full_name() or user.get_username()},
    )
    return rater


# --- Tasks and members, whose rules depend on responses and queues -------------------------


@transaction.atomic
def task_update(*, task: Task, **fields) -> Task:
    """Change a task (see `rubrics.services.task_fields_update`); its prompt is frozen once
    responses answer it."""
    task = Task.objects.select_for_update().get(pk=task.pk)
    frozen = rubric_selectors.task_has_responses(task)
    return rubric_services.task_fields_update(task=task, prompt_frozen=frozen, **fields)


@transaction.atomic
def task_delete(*, task: Task) -> None:
    """Delete a task nothing was graded or imported against. A task with responses or a
    published rubric version stays: runs, verdicts and exports name it."""
    task = Task.objects.select_for_update().get(pk=task.pk)
    responses = Response.objects.filter(task=task).count()
    published = (
        RubricVersion.objects.filter(rubric__task=task)
        .exclude(status__in=[RubricVersion.Status.DRAFT, RubricVersion.Status.IN_REVIEW])
        .count()
    )
    if responses or published:
        raise Conflict(
            f"Task '{task.external_id}' has {responses} response(s) and {published} published "
            "rubric version(s); graded work names it, so it cannot be deleted."
        )
    try:
        task.delete()
    except models.ProtectedError as exc:
        raise Conflict(f"Task '{task.external_id}' is still referred to: {exc.args[0]}") from None


def _take_off_queues(queues, user_ids: list[int], why: str) -> None:
    """Take annotators off queues. Their open turns go back to the others, as a skip would,
    and their drafts go with them; what they submitted stays."""
    queue_ids = list(queues.values_list("pk", flat=True))
    for queue in Queue.objects.filter(pk__in=queue_ids):
        queue.annotators.remove(*user_ids)
    open_turns = Assignment.objects.filter(
        queue_id__in=queue_ids,
        annotator_id__in=user_ids,
        status__in=[Assignment.Status.ACTIVE, Assignment.Status.EXPIRED],
    )
    Verdict.objects.filter(assignment__in=open_turns).delete()
    open_turns.update(status=Assignment.Status.SKIPPED, skip_reason=why)


@transaction.atomic
def member_remove(*, project: Project, username: str, actor=None) -> None:
    """Take a member out of the project (never its last admin) and off its queues."""
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.filter(username=username).first()
    rubric_services.membership_remove(project=project, username=username, actor=actor)
    _take_off_queues(Queue.objects.filter(project=project), [user.pk], "Left the project.")


# --- Queues and hand-out --------------------------------------------------------------------

MAX_LEASE_SECONDS = 7 * 24 * 3600
MAX_GUIDELINES_CHARS = 20_000


def _annotator_ids(project: Project, usernames: Iterable[str]) -> list[int]:
    from rubrics.models import Membership, Role

    names = [n.strip() for n in usernames if n.strip()]
    if not names:
        raise ValidationError({"annotators": "Name at least one annotator."})
    rows = dict(
        Membership.objects.filter(
            project=project, user__username__in=names, role=Role.ANNOTATOR
        ).values_list("user__username", "user_id")
    )
    missing = [n for n in names if n not in rows]
    if missing:
        raise ValidationError(
            {"annotators": f"Not annotators in this project: {', '.join(sorted(missing))}."}
        )
    return list(dict.fromkeys(rows[n] for n in names))


@transaction.atomic
def queue_create(
    *,
    project: Project,
    grader: Grader,
    name: str,
    overlap: int,
    annotators: Iterable[str],
    user,
    responses=None,
    lease_seconds: int = 30 * 60,
    guidelines: str = "",
    show_reference: bool = False,
) -> Queue:
    """A queue of `responses` (default: every response the grader's rubric applies to)."""
    errors: dict[str, str] = {}
    guidelines, why = _clean_guidelines(guidelines)
    if why:
        errors["guidelines"] = why
    name = (name or "").strip()
    if not name:
        errors["name"] = "Give the queue a name."
    elif Queue.objects.filter(project=project, name=name).exists():
        errors["name"] = f"This project already has a queue named '{name}'."
    if grader.version.rubric.project_id != project.pk:
        errors["grader"] = "The grader must belong to this project."
    elif grader.version.status == RubricVersion.Status.DRAFT:
        errors["grader"] = "Queues grade against a published rubric version."
    try:
        annotator_ids = _annotator_ids(project, annotators)
    except ValidationError as exc:
        errors.update({k: v[0] for k, v in exc.message_dict.items()})
        annotator_ids = []
    if not isinstance(overlap, int) or not 1 <= overlap <= 20:
        errors["overlap"] = "Overlap is a whole number from 1 to 20."
    elif annotator_ids and overlap > len(annotator_ids):
        errors["overlap"] = (
            f"Overlap {overlap} needs at least {overlap} annotators; {len(annotator_ids)} named."
        )
    if not isinstance(lease_seconds, int) or not 1 <= lease_seconds <= MAX_LEASE_SECONDS:
        errors["lease_seconds"] = f"The lease is 1 to {MAX_LEASE_SECONDS} seconds (7 days)."
    if errors:
        raise ValidationError(errors)
    rubric = grader.version.rubric
    if responses is None:
        responses = Response.objects.filter(task__project=project)
    if rubric.task_id:  # a task's rubric grades only that task's responses
        responses = responses.filter(task_id=rubric.task_id)
    response_ids = list(responses.filter(task__project=project).values_list("pk", flat=True))
    if not response_ids:
        raise ValidationError({"responses": "There are no responses for this rubric; import some."})
    queue = Queue.objects.create(
        project=project,
        grader=grader,
        name=name,
        overlap=overlap,
        lease_seconds=lease_seconds,
        guidelines=guidelines,
        show_reference=bool(show_reference),
        created_by=user,
    )
    queue.annotators.set(annotator_ids)
    QueueItem.objects.bulk_create(
        (QueueItem(queue=queue, response_id=pk) for pk in response_ids), batch_size=1000
    )
    return queue


def _clean_guidelines(guidelines: str | None) -> tuple[str, str | None]:
    """Guidelines as stored (stripped), and the error about them (None: none)."""
    guidelines = (guidelines or "").strip()
    if len(guidelines) > MAX_GUIDELINES_CHARS:
        return guidelines, (
            f"Guidelines are at most {MAX_GUIDELINES_CHARS:,} characters; "
            f"these are {len(guidelines):,}."
        )
    return guidelines, None


# What the audit log keeps of a changed text (guidelines may be long).
AUDIT_TEXT_CHARS = 500


@transaction.atomic
def queue_update(
    *,
    queue: Queue,
    name: str | None = None,
    overlap: int | None = None,
    lease_seconds: int | None = None,
    annotators: Iterable[str] | None = None,
    guidelines: str | None = None,
    show_reference: bool | None = None,
    actor=None,
) -> Queue:
    """Change a queue's name, overlap, lease, annotators, guidelines or whether annotators
    see the reference answer; None leaves a field as it is. Its grader and items never change
    (make a new queue). An annotator taken off the queue gives back their open items and
    drafts; what they submitted stays. What changed is audited."""
    queue = Queue.objects.select_for_update().get(pk=queue.pk)
    before = {
        "name": queue.name,
        "overlap": queue.overlap,
        "lease_seconds": queue.lease_seconds,
        "guidelines": queue.guidelines,
        "show_reference": queue.show_reference,
    }
    errors: dict[str, str] = {}
    if name is not None:
        name = name.strip()
        if not name:
            errors["name"] = "Give the queue a name."
        elif Queue.objects.filter(project=queue.project, name=name).exclude(pk=queue.pk).exists():
            errors["name"] = f"This project already has a queue named '{name}'."
    if guidelines is not None:
        guidelines, why = _clean_guidelines(guidelines)
        if why:
            errors["guidelines"] = why
    if show_reference is not None and not isinstance(show_reference, bool):
        errors["show_reference"] = "Say true or false."
    annotator_ids = None
    if annotators is not None:
        try:
            annotator_ids = _annotator_ids(queue.project, annotators)
        except ValidationError as exc:
            errors.update({k: v[0] for k, v in exc.message_dict.items()})
    new_overlap = queue.overlap if overlap is None else overlap
    if not isinstance(new_overlap, int) or not 1 <= new_overlap <= 20:
        errors["overlap"] = "Overlap is a whole number from 1 to 20."
    else:
        count = len(annotator_ids) if annotator_ids is not None else queue.annotators.count()
        if "annotators" not in errors and new_overlap > count:
            errors["overlap"] = (
                f"Overlap {new_overlap} needs at least {new_overlap} annotators; it has {count}."
            )
    if lease_seconds is not None and (
        not isinstance(lease_seconds, int) or not 1 <= lease_seconds <= MAX_LEASE_SECONDS
    ):
        errors["lease_seconds"] = f"The lease is 1 to {MAX_LEASE_SECONDS} seconds (7 days)."
    if errors:
        raise ValidationError(errors)
    changes: dict[str, list] = {}
    if annotator_ids is not None:
        current = set(queue.annotators.values_list("pk", flat=True))
        removed = sorted(current - set(annotator_ids))
        if removed:
            _take_off_queues(Queue.objects.filter(pk=queue.pk), removed, "Taken off the queue.")
        if current != set(annotator_ids):
            names = dict(
                get_user_model()
                .objects.filter(pk__in=current | set(annotator_ids))
                .values_list("pk", "username")
            )
            changes["annotators"] = [
                sorted(names[pk] for pk in current),
                sorted(names[pk] for pk in annotator_ids),
            ]
        queue.annotators.set(annotator_ids)
    if name is not None:
        queue.name = name
    queue.overlap = new_overlap
    if lease_seconds is not None:
        queue.lease_seconds = lease_seconds
    if guidelines is not None:
        queue.guidelines = guidelines
    if show_reference is not None:
        queue.show_reference = show_reference
    for field_name, old in before.items():
        new = getattr(queue, field_name)
        if new != old:
            if field_name == "guidelines":
                old, new = old[:AUDIT_TEXT_CHARS], new[:AUDIT_TEXT_CHARS]
            changes[field_name] = [old, new]
    queue.save(update_fields=["name", "overlap", "lease_seconds", "guidelines", "show_reference"])
    if changes:
        audit.record(
            AuditEvent.Action.QUEUE_CHANGED,
            actor=actor,
            project=queue.project,
            target_type="queue",
            target_id=queue.pk,
            target_label=queue.name,
            details=changes,
        )
    return queue


@transaction.atomic
def queue_delete(*, queue: Queue) -> None:
    """Delete a queue nobody has submitted work in; submitted verdicts are kept with theirs."""
    queue = Queue.objects.select_for_update().get(pk=queue.pk)
    submitted = queue.assignments.filter(status=Assignment.Status.SUBMITTED).count()
    if submitted:
        raise Conflict(
            f"Queue '{queue.name}' holds {submitted} submitted item(s), whose verdicts count "
            "in agreement and calibration; it cannot be deleted."
        )
    queue.delete()


def _live_turns(item_id: int, now, exclude_pk: int | None = None) -> int:
    """Submitted turns plus turns someone holds a live lease on."""
    turns = Assignment.objects.filter(item_id=item_id).filter(
        Q(status=Assignment.Status.SUBMITTED)
        | Q(status=Assignment.Status.ACTIVE, lease_expires_at__gt=now)
    )
    if exclude_pk is not None:
        turns = turns.exclude(pk=exclude_pk)
    return turns.count()


def assignment_claim(*, queue: Queue, user) -> Assignment | None:
    """The annotator's next item: the one they hold, or a new one; None when none is left.

    An item is handed out while fewer than `overlap` turns on it are submitted or held on a
    live lease, never twice to one annotator (unique in the database) and never again to
    someone who skipped it. Claims lock the item row (FOR UPDATE SKIP LOCKED), so concurrent
    annotators take different items, and recount after the lock, so a count read before
    another claim committed can never over-assign.
    """
    if not queue.annotators.filter(pk=user.pk).exists():
        raise ValidationError({"annotator": f"{user} is not an annotator on this queue."})
    now = timezone.now()
    held = (
        Assignment.objects.filter(
            queue=queue,
            annotator=user,
            status=Assignment.Status.ACTIVE,
            lease_expires_at__gt=now,
        )
        .order_by("opened_at")
        .first()
    )
    if held is not None:
        return held
    rater = person_rater(project=queue.project, user=user)
    live = Assignment.objects.filter(item=OuterRef("pk")).filter(
        Q(status=Assignment.Status.SUBMITTED)
        | Q(status=Assignment.Status.ACTIVE, lease_expires_at__gt=now)
    )
    live_count = Subquery(
        live.order_by().values("item").annotate(n=Count("pk")).values("n")[:1],
        output_field=models.IntegerField(),
    )
    mine_closed = Assignment.objects.filter(
        item=OuterRef("pk"),
        annotator=user,
        status__in=[Assignment.Status.SUBMITTED, Assignment.Status.SKIPPED],
    )
    candidates = (
        QueueItem.objects.filter(queue=queue)
        .annotate(live=Coalesce(live_count, 0))
        .filter(live__lt=queue.overlap)
        .exclude(Exists(mine_closed))
        .order_by("-live", "pk")
    )
    tried: list[int] = []  # items found full after the lock; each loop adds one or returns
    while True:
        with transaction.atomic():
            open_items = candidates.exclude(pk__in=tried)
            item = open_items.select_for_update(skip_locked=True, of=("self",)).first()
            if item is None:
                # Every open item may be locked by another claim for a moment; wait for
                # one rather than tell this annotator there is nothing left.
                item = open_items.select_for_update(of=("self",)).first()
            if item is None:
                return None
            now = timezone.now()
            mine = Assignment.objects.filter(item=item, annotator=user).first()
            if _live_turns(item.pk, now, exclude_pk=mine.pk if mine else None) >= queue.overlap:
                tried.append(item.pk)
                continue
            lease = now + timedelta(seconds=queue.lease_seconds)
            # Turns whose lease lapsed are marked, so progress shows who abandoned what.
            Assignment.objects.filter(
                item=item, status=Assignment.Status.ACTIVE, lease_expires_at__lte=now
            ).update(status=Assignment.Status.EXPIRED)
            if mine is not None:  # their own lapsed turn on it: pick it up again, drafts kept
                mine.status = Assignment.Status.ACTIVE
                mine.lease_expires_at = lease
                mine.opened_at = now
                mine.save(update_fields=["status", "lease_expires_at", "opened_at"])
                return mine
            return Assignment.objects.create(
                item=item,
                queue=queue,
                annotator=user,
                rater=rater,
                opened_at=now,
                lease_expires_at=lease,
            )


def _check_turn(assignment: Assignment, now) -> None:
    """A lapsed lease can still be used while nobody else took the slot."""
    if assignment.status not in (Assignment.Status.ACTIVE, Assignment.Status.EXPIRED):
        raise ValidationError(
            {"assignment": f"This item is {assignment.get_status_display().lower()}."}
        )
    if assignment.status == Assignment.Status.EXPIRED or assignment.lease_expires_at <= now:
        taken = _live_turns(assignment.item_id, now, exclude_pk=assignment.pk)
        if taken >= assignment.queue.overlap:
            raise ValidationError(
                {"assignment": "Your time on this item ran out and it went to someone else."}
            )


def _locked_turn(assignment_id: int) -> Assignment:
    """The turn, read after its item's row is locked (the lock that serialises hand-out,
    drafts, submit and skip of one item), with its queue, grader and item: two queries. The
    grader's spec is left unread (drafts and submits come often and never need it)."""
    QueueItem.objects.select_for_update(of=("self",)).filter(assignments=assignment_id).first()
    return (
        Assignment.objects.select_related("queue__grader", "item")
        .defer("queue__grader__spec")
        .get(pk=assignment_id)
    )


def scale_levels(criterion: Criterion) -> int:
    """How many levels a scale criterion has; 0 for binary and checked. A published
    version's criteria are frozen and its grader's spec is compiled from them, so this is
    what the judge was told too."""
    return len(criterion.scale) if criterion.kind == Criterion.Kind.SCALE else 0


def _decision(outcome: str, value, levels: int = 0) -> tuple[str, float | None]:
    """A person's decision as (outcome, value). On a scale criterion the value decides, as it
    does for judges: the lowest level is "unmet", any higher one "met"."""
    allowed = {Verdict.Outcome.MET, Verdict.Outcome.UNMET, Verdict.Outcome.NOT_APPLICABLE}
    if outcome not in allowed:
        raise ValidationError({"outcome": "Choose met, unmet or na (not applicable)."})
    if outcome == Verdict.Outcome.NOT_APPLICABLE:
        return outcome, None
    if value is not None:
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise ValidationError({"value": "A scale value is a number from 0 to 1."}) from None
        if not 0 <= value <= 1:
            raise ValidationError({"value": "A scale value is a number from 0 to 1."})
    if levels and value is None:
        raise ValidationError({"value": f"Choose a level from 1 to {levels} on this scale."})
    if not levels and value is not None:
        raise ValidationError({"value": "This criterion is not a scale; decide met or unmet."})
    if levels:
        outcome = Verdict.Outcome.MET if value > 0 else Verdict.Outcome.UNMET
    return outcome, value


def _step_label(index: int) -> str:
    return f"#{index + 1}"  # as annotation.content.render.label shows a message index


def _checked_anchor(
    episode_of: Callable[[], Episode],
    raw,
    quote: str,
    *,
    step: int | None,
    evidence_step: int | None = None,
) -> tuple[dict | None, int | None]:
    """An evidence anchor as sent (a person's verdict's or a reviewer's gold), parsed and
    checked against the response's episode: (anchor, the message carrying its file), or
    (None, None) for none sent. At a step it must be in that step's message or the tool
    results of its calls; with `evidence_step`, in that message; otherwise in any message.
    Errors name the field, evidence_anchor."""
    try:
        anchor = parse_anchor(raw)
    except AnchorError as exc:
        raise ValidationError({"evidence_anchor": str(exc)}) from None
    if anchor is None:
        return None, None
    episode = episode_of()  # read only when there is an anchor to check
    if step is not None:
        near = step_messages(episode, step)
    elif evidence_step is not None:
        near = [evidence_step]
    else:
        near = list(range(len(episode.messages)))
    try:
        return anchor, check_anchor(episode, anchor, quote, near=near)
    except AnchorError as exc:
        raise ValidationError({"evidence_anchor": str(exc)}) from None


def _check_evidence(
    *,
    item: QueueItem,
    step: int | None,
    evidence: str,
    evidence_step: int | None,
    evidence_anchor=None,
) -> tuple[int | None, dict | None]:
    """Validate a quote and say which message it is anchored to (None: the final answer),
    and where in a file of it (`evidence_anchor`: a page, a region, a sheet's cell). A step
    verdict's evidence comes from its own step (a file there, or one its calls returned);
    another criterion's from the final answer, or from the message `evidence_step` names, or
    from the message carrying the anchor's file."""
    if len(evidence) > 5000:
        raise ValidationError({"evidence": "Quote at most 5,000 characters."})
    anchor, carrier = _checked_anchor(
        lambda: item.response.episode,
        evidence_anchor,
        evidence,
        step=step,
        evidence_step=evidence_step,
    )
    if anchor is not None:
        return (step if step is not None else carrier), anchor
    if step is not None:
        if evidence_step is not None and evidence_step != step:
            raise ValidationError(
                {"evidence_step": "A step's evidence is quoted from that step; name no other."}
            )
        evidence_step = step if evidence else None
    if not evidence:
        return None, None
    response = item.response  # read only when there is a quote to check
    if evidence_step is None:
        if evidence not in response.text:
            raise ValidationError({"evidence": "Evidence must be quoted from the response."})
        return None, None
    if not quoted_from(response.episode, evidence_step, evidence):
        raise ValidationError(
            {"evidence": f"Evidence must be quoted from message {_step_label(evidence_step)}."}
        )
    return evidence_step, None


def verdict_save_draft(
    *,
    assignment_id: int,
    criterion_id: int,
    outcome: str,
    explanation: str = "",
    evidence: str = "",
    value=None,
    step: int | None = None,
    evidence_step: int | None = None,
    evidence_anchor=None,
) -> Verdict:
    """Save (or overwrite) the annotator's draft decision on one criterion, or on one step of
    a step criterion (`step`: the step's message index); renews the lease. Evidence is a quote
    from the final answer, or from the message `evidence_step` names (a step's, its own), and
    may point into a file of it (`evidence_anchor`: a JSON object or its text; see
    annotation.content.evidence.parse_anchor)."""
    with transaction.atomic():
        assignment = _locked_turn(assignment_id)
        now = timezone.now()
        _check_turn(assignment, now)
        criterion = (
            Criterion.objects.filter(pk=criterion_id, version_id=assignment.queue.grader.version_id)
            .only("kind", "scale", "scope", "step_tool")
            .order_by("pk")
            .first()
        )
        if criterion is None:
            raise ValidationError({"criterion": "Not a criterion of this queue's rubric."})
        outcome, value = _decision(outcome, value, scale_levels(criterion))
        if criterion.scope == Criterion.Scope.STEP:
            if step is None:
                raise ValidationError(
                    {"step": "This criterion is decided at each step; name the step."}
                )
            if step not in assignment.item.response.episode.steps(tool=criterion.step_tool):
                raise ValidationError(
                    {"step": f"Message {_step_label(step)} is not a step of this criterion."}
                )
        elif step is not None:
            raise ValidationError(
                {"step": "This criterion is decided once for the whole response; name no step."}
            )
        evidence_step, anchor = _check_evidence(
            item=assignment.item,
            step=step,
            evidence=evidence,
            evidence_step=evidence_step,
            evidence_anchor=evidence_anchor,
        )
        # The item's lock is held, so no other save of this turn runs between read and write.
        verdict = Verdict.objects.filter(
            assignment=assignment, criterion=criterion, step=step
        ).first()
        if verdict is None:
            verdict = Verdict(assignment=assignment, criterion=criterion, step=step)
        verdict.response_id = assignment.item.response_id
        verdict.rater_id = assignment.rater_id
        verdict.grader_id = assignment.queue.grader_id
        verdict.outcome, verdict.value = outcome, value
        verdict.explanation, verdict.evidence = explanation.strip(), evidence
        verdict.evidence_step = evidence_step
        verdict.evidence_anchor = anchor
        verdict.save()
        Assignment.objects.filter(pk=assignment.pk).update(
            status=Assignment.Status.ACTIVE,
            lease_expires_at=now + timedelta(seconds=assignment.queue.lease_seconds),
        )
    return verdict


def _missing_steps(
    criteria: list[Criterion], decided: set[tuple[int, int | None]], response: Response
) -> tuple[list[str], dict[int, list[int]]]:
    """What is left to decide ("#2", "#3 at steps #4, #6"), and each step criterion's steps."""
    missing: list[str] = []
    steps_of: dict[int, list[int]] = {}
    episode = None
    for c in criteria:
        if c.scope != Criterion.Scope.STEP:
            if (c.pk, None) not in decided:
                missing.append(f"#{c.position + 1}")
            continue
        if episode is None:
            episode = response.episode
        steps_of[c.pk] = episode.steps(tool=c.step_tool)
        left = [s for s in steps_of[c.pk] if (c.pk, s) not in decided]
        if left:
            at = ", ".join(_step_label(s) for s in left[:10]) + (" ..." if len(left) > 10 else "")
            missing.append(f"#{c.position + 1} at step(s) {at}")
    return missing, steps_of


def assignment_submit(*, assignment_id: int) -> Assignment:
    """Submit the turn: every criterion must have a decision, a step criterion one at each of
    its steps. A step criterion's verdict on the whole response is then written from its step
    rule (rubrics.scoring.step_rule_outcome), so scores and agreement read it like any other.
    Submitting twice is a no-op."""
    with transaction.atomic():
        assignment = _locked_turn(assignment_id)
        if assignment.status == Assignment.Status.SUBMITTED:
            return assignment
        now = timezone.now()
        _check_turn(assignment, now)
        version_id = assignment.queue.grader.version_id
        criteria = list(
            Criterion.objects.filter(version_id=version_id).only(
                "position", "scope", "step_rule", "step_tool"
            )
        )
        mine = list(assignment.verdicts.only("criterion_id", "step", "outcome", "value"))
        decided = {(v.criterion_id, v.step) for v in mine}
        response = assignment.item.response
        missing, steps_of = _missing_steps(criteria, decided, response)
        if missing:
            listed = "; ".join(missing[:10])
            raise ValidationError({"verdicts": f"Decide every criterion first; missing: {listed}."})
        by_step = {(v.criterion_id, v.step): v for v in mine}
        for c in criteria:
            if c.scope != Criterion.Scope.STEP:
                continue
            steps = steps_of[c.pk]
            result = step_rule_outcome(c.step_rule, [by_step[(c.pk, s)].outcome for s in steps])
            met = sum(1 for s in steps if by_step[(c.pk, s)].outcome == Verdict.Outcome.MET)
            Verdict.objects.update_or_create(
                assignment=assignment,
                criterion=c,
                step=None,
                defaults={
                    "response_id": response.pk,
                    "rater_id": assignment.rater_id,
                    "grader_id": assignment.queue.grader_id,
                    "outcome": result.outcome,
                    "value": result.value,
                    "explanation": f"Step rule '{c.step_rule}': met at {met} of {len(steps)} "
                    "step(s).",
                    "evidence": "",
                    "evidence_step": None,
                    "evidence_anchor": None,
                },
            )
        assignment.status = Assignment.Status.SUBMITTED
        assignment.submitted_at = now
        assignment.seconds_spent += max(0, int((now - assignment.opened_at).total_seconds()))
        assignment.save(update_fields=["status", "submitted_at", "seconds_spent"])
    return assignment


def assignment_skip(*, assignment_id: int, reason: str) -> Assignment:
    """Give the item back with a reason; it goes to someone else, never back to this person."""
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": "Say why you skip this item."})
    with transaction.atomic():
        assignment = _locked_turn(assignment_id)
        if assignment.status != Assignment.Status.ACTIVE:
            raise ValidationError(
                {"assignment": f"This item is {assignment.get_status_display().lower()}."}
            )
        now = timezone.now()
        assignment.status = Assignment.Status.SKIPPED
        assignment.skip_reason = reason[:2000]
        assignment.seconds_spent += max(0, int((now - assignment.opened_at).total_seconds()))
        assignment.save(update_fields=["status", "skip_reason", "seconds_spent"])
        assignment.verdicts.all().delete()  # drafts of a skipped item are nobody's verdicts
    return assignment


# --- Adjudication ---------------------------------------------------------------------------


def gold_decide(
    *,
    response: Response,
    criterion: Criterion,
    outcome: str,
    note: str,
    user,
    value=None,
    step: int | None = None,
    evidence_anchor=None,
) -> Adjudication:
    """Record a reviewer's gold verdict, on the whole response or (`step`) at one step of a
    step criterion. The previous decision stays, named as replaced. `evidence_anchor` (as a
    verdict's: a page, a region, a sheet's cell of a file the response carries; at a step,
    one of that step's) says where the reviewer saw it."""
    published = criterion.version.graders.exists()
    outcome, value = _decision(outcome, value, scale_levels(criterion) if published else 0)
    if criterion.version.rubric.project_id != response.task.project_id:
        raise ValidationError({"criterion": "The criterion and response are not of one project."})
    if step is not None:
        if criterion.scope != Criterion.Scope.STEP:
            raise ValidationError({"step": "Only a step criterion has gold at a step."})
        if step not in response.episode.steps(tool=criterion.step_tool):
            raise ValidationError(
                {"step": f"Message {_step_label(step)} is not a step of this criterion."}
            )
    anchor, _ = _checked_anchor(lambda: response.episode, evidence_anchor, "", step=step)
    with transaction.atomic():
        # Lock the item's chain so two reviewers deciding at once form a line, not a fork.
        Response.objects.select_for_update().filter(pk=response.pk).first()
        current = (
            Adjudication.objects.filter(response=response, criterion=criterion, step=step)
            .order_by("-pk")
            .first()
        )
        gold = Adjudication.objects.create(
            response=response,
            criterion=criterion,
            step=step,
            outcome=outcome,
            value=value,
            note=(note or "").strip(),
            evidence_anchor=anchor,
            decided_by=user,
            replaces=current,
        )
        version = criterion.version
        audit.record(
            AuditEvent.Action.GOLD_DECIDED,
            actor=user,
            project=version.rubric.project,
            target_type="adjudication",
            target_id=gold.pk,
            target_label=(
                f"{version.rubric.title} v{version.number}, criterion {criterion.position + 1}, "
                f"response {response.pk}"
                + (f", step {_step_label(step)}" if step is not None else "")
            ),
            details={
                "response": response.pk,
                "criterion": criterion.pk,
                **({"step": step} if step is not None else {}),
                "outcome": outcome,
                "value": value,
                "note": gold.note[:200],
                **({"evidence_anchor": anchor} if anchor else {}),
                "replaces": current.pk if current else None,
                "previous_outcome": current.outcome if current else None,
            },
        )
        return gold


def calibration_threshold_set(
    *, project: Project, threshold, min_items=None, actor=None
) -> CalibrationSettings:
    """Set the threshold below which criteria are flagged and, when given, the fewest items
    a figure needs before it may flag anything. Audited."""
    try:
        threshold = float(threshold)
    except (TypeError, ValueError):
        raise ValidationError({"threshold": "A number from -1 to 1."}) from None
    if not -1 <= threshold <= 1:
        raise ValidationError({"threshold": "A number from -1 to 1."})
    if min_items is not None:
        text = str(min_items).strip()
        if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= 100_000:
            raise ValidationError({"min_items": "A whole number from 1 to 100000."})
        min_items = int(text)
    with transaction.atomic():
        row = CalibrationSettings.objects.select_for_update().filter(project=project).first()
        previous = row.threshold if row else None
        previous_min = row.min_items if row else CalibrationSettings().min_items
        defaults = {"threshold": threshold}
        if min_items is not None:
            defaults["min_items"] = min_items
        settings_row, _ = CalibrationSettings.objects.update_or_create(
            project=project, defaults=defaults
        )
        if min_items is not None and min_items != previous_min:
            audit.record(
                AuditEvent.Action.CALIBRATION_THRESHOLD_SET,
                actor=actor,
                project=project,
                target_type="project",
                target_id=project.pk,
                target_label=project.name,
                details={"min_items": [previous_min, min_items]},
            )
        if previous != threshold:
            audit.record(
                AuditEvent.Action.CALIBRATION_THRESHOLD_SET,
                actor=actor,
                project=project,
                target_type="project",
                target_id=project.pk,
                target_label=project.name,
                details={"from": previous, "to": threshold},
            )
    return settings_row
