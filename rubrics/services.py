"""Writes for projects, tasks and rubrics. Each service owns its transaction."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import SuspiciousFileOperation, ValidationError
from django.db import transaction
from django.db.models import F, Max, ProtectedError
from django.utils import timezone
from django.utils.text import get_valid_filename, slugify

from rubrics import audit, checks, compiler
from rubrics.files import parts as file_parts
from rubrics.files import store as file_store
from rubrics.files.sniff import FileRefused, safe_name
from rubrics.models import (
    AuditEvent,
    Criterion,
    CriterionGroup,
    Grader,
    Invitation,
    Membership,
    Project,
    ReferenceDeliverable,
    ReviewComment,
    Role,
    Rubric,
    RubricEvent,
    RubricVersion,
    Task,
)
from rubrics.selectors import grader_parts  # the reads "try it" compiles from, too

MESSAGE_ROLES = {"system", "developer", "user", "assistant"}


class Conflict(ValidationError):
    """The object's state forbids the change: it is published, in use, or the last of its
    kind. Views show it like any ValidationError; the API answers 409 instead of 400."""


# --- Projects and members ---------------------------------------------------------------


def _unique_slug(name: str) -> str:
    base = slugify(name)[:60] or "project"
    slug, n = base, 1
    while Project.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    return slug


@transaction.atomic
def project_create(*, name: str, user, slug: str | None = None) -> Project:
    name = name.strip()
    if not name:
        raise ValidationError({"name": "A project needs a name."})
    if slug:
        slug = slugify(slug)
        if Project.objects.filter(slug=slug).exists():
            raise ValidationError({"slug": f"The slug '{slug}' is taken."})
    project = Project.objects.create(name=name, slug=slug or _unique_slug(name), created_by=user)
    Membership.objects.create(project=project, user=user, role=Role.ADMIN)
    audit.record(
        AuditEvent.Action.PROJECT_CREATED,
        actor=user,
        project=project,
        target_type="project",
        target_id=project.pk,
        target_label=project.name,
        details={"slug": project.slug},
    )
    return project


def _member_event(action: str, membership: Membership, actor, details: dict) -> None:
    audit.record(
        action,
        actor=actor,
        project=membership.project,
        target_type="user",
        target_id=membership.user_id,
        target_label=membership.user.get_username(),
        details=details,
    )


@transaction.atomic
def membership_set(*, project: Project, username: str, role: str, actor=None) -> Membership:
    """Add a member by username, or change their role. The last admin cannot be demoted.
    `actor` is who does it, for the audit log."""
    if role not in Role.values:
        raise ValidationError({"role": f"Unknown role '{role}'; choose one of {Role.values}."})
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        raise ValidationError({"username": f"No user named '{username}'."})
    membership = Membership.objects.select_for_update().filter(project=project, user=user).first()
    if membership and membership.role == Role.ADMIN and role != Role.ADMIN:
        _keep_an_admin(project)
    if membership is None:
        membership = Membership.objects.create(project=project, user=user, role=role)
        _member_event(AuditEvent.Action.MEMBER_ADDED, membership, actor, {"role": role})
        return membership
    if membership.role != role:
        old = membership.role
        membership.role = role
        membership.save(update_fields=["role"])
        _member_event(
            AuditEvent.Action.MEMBER_ROLE_CHANGED, membership, actor, {"from": old, "to": role}
        )
    return membership


INVITED = (
    "Invitation recorded: if a user named '{username}' exists, they will see it on their "
    "projects page and become {role} when they accept."
)


@transaction.atomic
def member_invite(*, project: Project, username: str, role: str, actor=None) -> str:
    """An admin adds someone by username: a member's role changes at once; anyone else is
    invited and joins only by accepting. What comes back (and what the audit log records)
    is the same whether or not the name is a user's, so it confirms no username. Returns
    "member" (role set) or "invited"."""
    username = (username or "").strip()
    if role not in Role.values:
        raise ValidationError({"role": f"Unknown role '{role}'; choose one of {Role.values}."})
    if not username or len(username) > 150:
        raise ValidationError({"username": "Give a username of 1 to 150 characters."})
    if Membership.objects.filter(project=project, user__username=username).exists():
        membership_set(project=project, username=username, role=role, actor=actor)
        return "member"
    user = get_user_model().objects.filter(username=username).first()
    invitation, _ = Invitation.objects.update_or_create(
        project=project,
        username=username,
        defaults={"user": user, "role": role, "invited_by": actor},
    )
    audit.record(
        AuditEvent.Action.MEMBER_INVITED,
        actor=actor,
        project=project,
        target_type="invitation",
        target_id=invitation.pk,
        target_label=username,
        details={"username": username, "role": role},
    )
    return "invited"


def _own_invitation(user, invitation_id: int) -> Invitation:
    invitation = (
        Invitation.objects.select_for_update()
        .select_related("project")
        .filter(pk=invitation_id, user=user)
        .first()
    )
    if invitation is None:
        raise ValidationError({"invitation": "You have no such invitation."})
    return invitation


@transaction.atomic
def invitation_accept(*, user, invitation_id: int) -> Membership:
    """The invited user joins the project with the invitation's role."""
    invitation = _own_invitation(user, invitation_id)
    membership, created = Membership.objects.get_or_create(
        project=invitation.project, user=user, defaults={"role": invitation.role}
    )
    invitation.delete()
    if created:
        _member_event(AuditEvent.Action.MEMBER_ADDED, membership, user, {"role": membership.role})
    return membership


@transaction.atomic
def invitation_decline(*, user, invitation_id: int) -> None:
    invitation = _own_invitation(user, invitation_id)
    audit.record(
        AuditEvent.Action.INVITATION_DECLINED,
        actor=user,
        project=invitation.project,
        target_type="invitation",
        target_id=invitation.pk,
        target_label=invitation.username,
        details={"role": invitation.role},
    )
    invitation.delete()


@transaction.atomic
def invitation_cancel(*, project: Project, username: str, actor=None) -> None:
    """An admin withdraws a pending invitation."""
    invitation = Invitation.objects.filter(project=project, username=username).first()
    if invitation is None:
        raise ValidationError({"username": f"No pending invitation for '{username}'."})
    audit.record(
        AuditEvent.Action.INVITATION_CANCELLED,
        actor=actor,
        project=project,
        target_type="invitation",
        target_id=invitation.pk,
        target_label=username,
        details={"role": invitation.role},
    )
    invitation.delete()


def _keep_an_admin(project: Project) -> None:
    if Membership.objects.filter(project=project, role=Role.ADMIN).count() <= 1:
        raise ValidationError({"role": "A project keeps at least one admin."})


@transaction.atomic
def project_update(*, project: Project, name: str) -> Project:
    """Rename a project. Its slug stays: it is in every URL and token script."""
    name = (name or "").strip()
    if not name:
        raise ValidationError({"name": "A project needs a name."})
    if len(name) > 200:
        raise ValidationError({"name": "Keep the name under 200 characters."})
    project.name = name
    project.save(update_fields=["name"])
    return project


@transaction.atomic
def membership_remove(*, project: Project, username: str, actor=None) -> None:
    """Take a member out of the project; the last admin stays. Their verdicts, comments and
    runs stay too, under their name. Audited."""
    membership = (
        Membership.objects.select_for_update()
        .select_related("user", "project")
        .filter(project=project, user__username=username)
        .first()
    )
    if membership is None:
        raise ValidationError({"username": f"'{username}' is not a member of this project."})
    if membership.role == Role.ADMIN:
        admins = Membership.objects.filter(project=project, role=Role.ADMIN).count()
        if admins <= 1:
            raise Conflict("A project keeps at least one admin: make someone else admin first.")
    _member_event(AuditEvent.Action.MEMBER_REMOVED, membership, actor, {"role": membership.role})
    membership.delete()


# --- Tasks ------------------------------------------------------------------------------


def validate_messages(
    messages: object, *, field: str = "messages", files: file_parts.Intake | None = None
) -> list[dict]:
    """Chat messages as [{role, content}], with an error that names the message and field.

    A turn's content may be empty (real conversations have them, e.g. HealthBench's), but
    it must be text, and some user turn must say something. A user turn's content may also be
    a list of parts: text, and images and files (`rubrics.files.parts`) that `files` stores
    for its project, kept by hash; without `files`, image and file parts are refused."""
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    if not isinstance(messages, list) or not messages:
        raise ValidationError({field: "Give the prompt as a non-empty list of chat messages."})
    if len(messages) > settings.TASK_MESSAGES_MAX:
        raise ValidationError(
            {
                field: f"{len(messages):,} messages; a prompt holds at most "
                f"{settings.TASK_MESSAGES_MAX:,} (ASSAY_TASK_MESSAGES_MAX)."
            }
        )
    clean = []
    carried = 0
    for i, message in enumerate(messages):
        where = f"{field}[{i}]"
        if not isinstance(message, dict):
            raise ValidationError({where: "Each message is an object with role and content."})
        role, content = message.get("role"), message.get("content")
        if not isinstance(role, str) or role not in MESSAGE_ROLES:
            raise ValidationError(
                {f"{where}.role": f"Role must be one of {sorted(MESSAGE_ROLES)}."}
            )
        if isinstance(content, list) and role == "user":
            try:
                content = file_parts.read_content(files, f"{where}.content", content)
            except file_parts.PartRefused as exc:
                raise ValidationError({exc.field: exc.message}) from None
            carried += len(file_parts.refs(content))
            if carried > file_parts.MAX_TASK_FILES:
                raise ValidationError(
                    {
                        f"{where}.content": f"a prompt carries at most "
                        f"{file_parts.MAX_TASK_FILES} images and files."
                    }
                )
        elif not isinstance(content, str):
            raise ValidationError(
                {
                    f"{where}.content": "Content must be text (a string)"
                    + (", or (in a user message) a list of parts." if role == "user" else ".")
                }
            )
        text = file_parts.only_text(content)
        if len(text) > settings.TASK_MESSAGE_MAX_CHARS:
            raise ValidationError(
                {
                    f"{where}.content": f"{len(text):,} characters; a message holds at most "
                    f"{settings.TASK_MESSAGE_MAX_CHARS:,} (ASSAY_TASK_MESSAGE_MAX_CHARS)."
                }
            )
        clean.append({"role": role, "content": content})
    if not any(m["role"] == "user" for m in clean):
        raise ValidationError({field: "The prompt needs at least one user message."})
    if not any(
        m["role"] == "user"
        and (file_parts.only_text(m["content"]).strip() or file_parts.refs(m["content"]))
        for m in clean
    ):
        raise ValidationError({field: "Every user message is empty: the prompt says nothing."})
    return clean


def validate_context(context: object, *, field: str = "context") -> str:
    """A task's context: text of at most ASSAY_TASK_CONTEXT_MAX_CHARS characters."""
    if not isinstance(context, str):
        raise ValidationError({field: "Context must be text (a string)."})
    if len(context) > settings.TASK_CONTEXT_MAX_CHARS:
        raise ValidationError(
            {
                field: f"{len(context):,} characters; a context holds at most "
                f"{settings.TASK_CONTEXT_MAX_CHARS:,} (ASSAY_TASK_CONTEXT_MAX_CHARS)."
            }
        )
    return context


def clean_external_id(external_id: str, *, field: str = "external_id") -> str:
    external_id = external_id.strip()
    if not external_id or not re.fullmatch(r"[\w.:\-]{1,200}", external_id):
        raise ValidationError({field: "Use 1-200 letters, digits, '.', '_', ':' or '-'."})
    return external_id


def task_create(
    *,
    project: Project,
    external_id: str,
    title: str,
    messages: object,
    context: str = "",
    tags: list[str] | None = None,
    reference: str = "",
    user=None,
) -> Task:
    external_id = clean_external_id(external_id)
    context = validate_context(context)
    with transaction.atomic():  # a refused task leaves no StoredFile row behind
        clean_messages = validate_messages(messages, files=file_parts.Intake(project))
        if Task.objects.filter(project=project, external_id=external_id).exists():
            raise ValidationError({"external_id": f"A task '{external_id}' already exists."})
        task = Task.objects.create(
            project=project,
            external_id=external_id,
            title=title.strip() or external_id,
            messages=clean_messages,
            context=context,
            tags=list(tags or []),
        )
        if reference.strip():
            ReferenceDeliverable.objects.create(task=task, body=reference, author=user)
    return task


def task_fields_update(
    *,
    task: Task,
    prompt_frozen: bool,
    title: str | None = None,
    messages: object = None,
    context: str | None = None,
    tags: list[str] | None = None,
    attach=None,
) -> Task:
    """Change a task's fields; a None leaves a field as it is. `attach` (an uploaded image or
    file) joins the last user message as a part. The external id never changes
    (imports and exports name the task by it). While `prompt_frozen` (responses answer the
    prompt), messages and context cannot change. The caller owns the transaction and knows
    whether the prompt is frozen: `annotation.services.task_update`."""
    changed = []
    if title is not None:
        task.title = title.strip()[:300] or task.external_id
        changed.append("title")
    if tags is not None:
        task.tags = list(parse_tags(tags))
        changed.append("tags")
    prompt = {}
    if messages is not None:
        prompt["messages"] = validate_messages(messages, files=file_parts.Intake(task.project))
    if attach is not None:
        prompt["messages"] = task_file_attached(
            project=task.project, messages=prompt.get("messages", task.messages), upload=attach
        )
    if context is not None:
        prompt["context"] = validate_context(context)
    if any(getattr(task, k) != v for k, v in prompt.items()):
        if prompt_frozen:
            raise Conflict(
                f"Task '{task.external_id}' has responses, which answer its prompt: its "
                "messages and context cannot change. Create a new task instead."
            )
        for k, v in prompt.items():
            setattr(task, k, v)
        changed += list(prompt)
    if changed:
        task.save(update_fields=changed)
    return task


def _uploaded_bytes(upload, *, field: str) -> bytes:
    """An uploaded file's bytes, refused (naming it) over ASSAY_FILE_MAX_BYTES before it is read."""
    size = getattr(upload, "size", None)
    if size is None or size > file_store.limit():
        raise ValidationError(
            {
                field: f"'{safe_name(upload.name)}' is {_megabytes(size or 0)}; files "
                f"may be at most {_megabytes(file_store.limit())} (ASSAY_FILE_MAX_BYTES)."
            }
        )
    return upload.read()


def task_file_attached(*, project: Project, messages: list[dict], upload) -> list[dict]:
    """`messages` with an uploaded image or file added to the last user message as a part,
    stored for `project` (sniffed; SVG, HTML and unknown kinds refused naming the file)."""
    data = _uploaded_bytes(upload, field="attach")
    try:
        ref = file_store.put(project, data, name=upload.name)
    except FileRefused as exc:
        raise ValidationError({"attach": str(exc)}) from None
    out = [dict(m) for m in messages]
    last = max((i for i, m in enumerate(out) if m.get("role") == "user"), default=None)
    if last is None:
        raise ValidationError({"attach": "The prompt has no user message to attach a file to."})
    content = out[last]["content"]
    listed = list(content) if isinstance(content, list) else [{"type": "text", "text": content}]
    out[last]["content"] = [*listed, file_parts.stored_part(ref)]
    return validate_messages(out, files=file_parts.Intake(project))


# --- Reference deliverables ---------------------------------------------------------------

MAX_FILE_NAME = 150
MAX_REFERENCE_CHARS = 200_000


def safe_file_name(name: str) -> str:
    """A file name safe to store and to offer in Content-Disposition: no directories, no
    leading dots, only letters, digits, '-', '_' and '.', at most 150 characters (keeping the
    extension)."""
    base = os.path.basename(str(name).replace("\\", "/")).strip().lstrip(".")
    try:
        clean = get_valid_filename(base)
    except SuspiciousFileOperation:
        clean = ""
    clean = clean.lstrip(".")
    if len(clean) > MAX_FILE_NAME:
        stem, dot, ext = clean.rpartition(".")
        ext = ext[:20] if dot else ""
        keep = MAX_FILE_NAME - len(ext) - (1 if ext else 0)
        clean = f"{(stem if dot else clean)[:keep]}{'.' if ext else ''}{ext}"
    return clean or "reference"


def reference_create(
    *, task: Task, body: str = "", file=None, keep_file: bool = False, user=None
) -> ReferenceDeliverable:
    """A new reference answer for `task` (the newest is the one shown and graded with):
    Markdown, an attached file, or both; with `keep_file` and no new file, the file of the
    current reference stays attached. A file is a stored file of the project
    (`rubrics.files.store`: sniffed from its bytes, SVG, HTML and unknown kinds refused,
    images re-encoded), refused over the reference size limit; its name is sanitized and its
    SHA-256 recorded, so exports can name it without shipping it."""
    body = body or ""
    if len(body) > MAX_REFERENCE_CHARS:
        raise ValidationError(
            {"body": f"Keep a reference under {MAX_REFERENCE_CHARS:,} characters."}
        )
    if file is not None and not getattr(file, "name", ""):
        file = None
    reference = ReferenceDeliverable(task=task, body=body if body.strip() else "", author=user)
    if file is None and keep_file:
        current = task.references.order_by("-created_at", "-pk").first()
        if current is not None and current.has_file:
            reference.file_name = current.file_name  # the same stored file, not a copy
            reference.file_sha256 = current.file_sha256
            reference.file_kind = current.file_kind
            reference.file_size = current.file_size
    if not body.strip() and file is None and not reference.has_file:
        raise ValidationError({"body": "Write the reference answer or attach a file."})
    with transaction.atomic():  # a refused reference leaves no StoredFile row behind
        if file is not None:
            limit = settings.REFERENCE_FILE_MAX_BYTES
            size = file.size
            if size is None or size > limit:
                raise ValidationError(
                    {
                        "file": f"'{safe_file_name(file.name)}' is {_megabytes(size or 0)}; "
                        f"attach files of at most {_megabytes(limit)}."
                    }
                )
            if size == 0:
                raise ValidationError({"file": f"'{safe_file_name(file.name)}' is empty."})
            name = safe_file_name(file.name)
            try:
                ref = file_store.put(task.project, _uploaded_bytes(file, field="file"), name=name)
            except FileRefused as exc:
                raise ValidationError({"file": str(exc)}) from None
            reference.file_name = name
            reference.file_sha256 = ref.sha256
            reference.file_kind = ref.kind
            reference.file_size = ref.size
        reference.save()
    return reference


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"


def _reference_body(body: object, *, has_file: bool) -> str:
    if not isinstance(body, str):
        raise ValidationError({"body": "Write the reference answer (Markdown)."})
    if not body.strip() and not has_file:
        raise ValidationError({"body": "Write the reference answer or attach a file."})
    if len(body) > MAX_REFERENCE_CHARS:
        raise ValidationError(
            {"body": f"Keep a reference under {MAX_REFERENCE_CHARS:,} characters."}
        )
    return body if body.strip() else ""


def reference_add(*, task: Task, body: str, user) -> ReferenceDeliverable:
    """A Markdown-only reference answer (see `reference_create` for attached files)."""
    return reference_create(task=task, body=_reference_body(body, has_file=False), user=user)


@transaction.atomic
def reference_update(*, reference: ReferenceDeliverable, body: str) -> ReferenceDeliverable:
    """Change a reference's Markdown; its attached file, if any, stays. A published grader
    holds a copy of the reference it was compiled with, so this never changes graded work."""
    reference.body = _reference_body(body, has_file=reference.has_file)
    reference.save(update_fields=["body"])
    return reference


@transaction.atomic
def reference_delete(*, reference: ReferenceDeliverable) -> None:
    """Delete a reference. Its file stays in the project's store: files are content-addressed
    and may be carried by another reference, a task or a response."""
    reference.delete()


# --- Rubrics and their drafts ------------------------------------------------------------

MAX_SCALE_LEVELS = 10
MAX_TOOL_NAME = checks.MAX_TOOL_NAME
CRITERION_FIELDS = (
    "text",
    "points",
    "importance",
    "tags",
    "guidance",
    "example_met",
    "example_unmet",
    "kind",
    "scale",
    "check_spec",
    "gate",
    "scope",
    "step_rule",
    "step_tool",
    "weight",
    "key",
    "extra",
)


@dataclass(frozen=True)
class CriterionInput:
    text: str
    points: Decimal
    importance: str = ""  # empty: "pitfall" for negative points, else "important"
    tags: tuple[str, ...] = ()
    guidance: str = ""
    example_met: str = ""
    example_unmet: str = ""
    kind: str = Criterion.Kind.BINARY
    scale: tuple[str, ...] = ()
    check_spec: dict | None = None
    gate: bool = False
    scope: str = Criterion.Scope.OUTCOME
    step_rule: str = ""
    step_tool: str = ""
    weight: Decimal = Decimal(1)
    key: str = ""
    extra: dict = field(default_factory=dict)

    def model_fields(self) -> dict:
        importance = self.importance or (
            Criterion.Importance.PITFALL if self.points < 0 else Criterion.Importance.IMPORTANT
        )
        return {
            "text": self.text,
            "points": self.points,
            "importance": importance,
            "tags": list(self.tags),
            "guidance": self.guidance,
            "example_met": self.example_met,
            "example_unmet": self.example_unmet,
            "kind": self.kind,
            "scale": list(self.scale),
            "check_spec": self.check_spec,
            "gate": self.gate,
            "scope": self.scope,
            "step_rule": self.step_rule,
            "step_tool": self.step_tool,
            "weight": self.weight,
            "key": self.key,
            "extra": dict(self.extra),
        }


def parse_points(value: object, *, field: str = "points") -> Decimal:
    try:
        points = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise ValidationError({field: f"'{value}' is not a number."}) from None
    if not points.is_finite() or points == 0 or abs(points) > 1000:
        raise ValidationError({field: "Points are a non-zero number between -1000 and 1000."})
    if points != points.quantize(Decimal("0.01")):
        raise ValidationError({field: "Points have at most two decimals."})
    return points


def parse_weight(value: object, *, field: str = "weight") -> Decimal:
    if value is None or value == "":
        return Decimal(1)
    try:
        weight = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise ValidationError({field: f"'{value}' is not a number."}) from None
    if not weight.is_finite() or weight < 0 or weight > 1_000_000:
        raise ValidationError({field: "A weight is a number from 0 to 1,000,000."})
    if weight != weight.quantize(Decimal("0.0001")):
        raise ValidationError({field: "A weight has at most four decimals."})
    return weight


def parse_tags(value: object, *, field: str = "tags") -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list | tuple) or not all(isinstance(t, str) for t in value):
        raise ValidationError({field: "Tags are a list of text labels."})
    tags: list[str] = []
    for tag in (t.strip() for t in value):
        if len(tag) > 100:
            raise ValidationError({field: f"The tag '{tag[:20]}...' is over 100 characters."})
        if tag and tag not in tags:
            tags.append(tag)
    return tuple(tags)


def clean_criterion(
    text: object,
    points: object,
    *,
    where: str = "",
    importance: str = "",
    tags: object = (),
    guidance: str = "",
    example_met: str = "",
    example_unmet: str = "",
    kind: str = Criterion.Kind.BINARY,
    scale: object = (),
    check_spec: object = None,
    gate: object = False,
    scope: object = Criterion.Scope.OUTCOME,
    step_rule: object = "",
    step_tool: object = "",
    weight: object = 1,
    key: str = "",
    extra: dict | None = None,
) -> CriterionInput:
    """A criterion's fields checked together; each error names the field (prefixed by `where`)."""
    prefix = f"{where}." if where else ""
    if not isinstance(text, str) or not text.strip():
        raise ValidationError({f"{prefix}text": "A criterion needs text."})
    if len(text) > 5000:
        raise ValidationError({f"{prefix}text": "Keep a criterion under 5,000 characters."})
    clean_points = parse_points(points, field=f"{prefix}points")
    importance = importance or ""
    if importance and importance not in Criterion.Importance.values:
        raise ValidationError(
            {f"{prefix}importance": f"Choose one of {', '.join(Criterion.Importance.values)}."}
        )
    if importance == Criterion.Importance.PITFALL and clean_points > 0:
        raise ValidationError(
            {f"{prefix}points": "A pitfall has negative points: meeting it costs the response."}
        )
    if clean_points < 0 and importance and importance != Criterion.Importance.PITFALL:
        raise ValidationError(
            {f"{prefix}importance": "Negative points mark a pitfall; set importance to pitfall."}
        )
    if kind not in Criterion.Kind.values:
        raise ValidationError(
            {f"{prefix}kind": f"Choose one of {', '.join(Criterion.Kind.values)}."}
        )
    levels: tuple[str, ...] = ()
    if kind == Criterion.Kind.SCALE:
        if isinstance(scale, str):
            scale = [line for line in scale.splitlines() if line.strip()]
        if not isinstance(scale, list | tuple) or not 2 <= len(scale) <= MAX_SCALE_LEVELS:
            raise ValidationError(
                {
                    f"{prefix}scale": f"A scale has 2 to {MAX_SCALE_LEVELS} levels, "
                    "one descriptor per level (lowest first)."
                }
            )
        for i, level in enumerate(scale):
            if not isinstance(level, str) or not level.strip():
                raise ValidationError({f"{prefix}scale[{i}]": f"Describe level {i + 1}."})
        levels = tuple(level.strip() for level in scale)
    check: dict | None = None
    if kind == Criterion.Kind.CHECKED:
        try:
            check = checks.validate(check_spec)
        except checks.CheckError as exc:
            message = str(exc).split(": ", 1)[-1]
            raise ValidationError({f"{prefix}{exc.field}": message}) from None
    scope, step_rule, step_tool = clean_scope(scope, step_rule, step_tool, prefix=prefix)
    for name, value, limit in (
        ("guidance", guidance, 5000),
        ("example_met", example_met, 5000),
        ("example_unmet", example_unmet, 5000),
    ):
        if not isinstance(value, str) or len(value) > limit:
            raise ValidationError({f"{prefix}{name}": f"Text of at most {limit:,} characters."})
    return CriterionInput(
        text=text.strip(),
        points=clean_points,
        importance=importance,
        tags=parse_tags(tags, field=f"{prefix}tags"),
        guidance=guidance.strip(),
        example_met=example_met.strip(),
        example_unmet=example_unmet.strip(),
        kind=kind,
        scale=levels,
        check_spec=check,
        gate=bool(gate) and gate not in ("0", "false", "off"),
        scope=scope,
        step_rule=step_rule,
        step_tool=step_tool,
        weight=parse_weight(weight, field=f"{prefix}weight"),
        key=str(key or "")[:200],
        extra=dict(extra or {}),
    )


def clean_scope(
    scope: object, step_rule: object, step_tool: object, *, prefix: str = ""
) -> tuple[str, str, str]:
    """(scope, step rule, step tool) checked together: a step criterion needs its rule (the
    database's `criterion_step_rule_fits_scope` holds the same), the others have neither."""
    scope = scope or Criterion.Scope.OUTCOME
    if scope not in Criterion.Scope.values:
        raise ValidationError(
            {f"{prefix}scope": f"Choose one of {', '.join(Criterion.Scope.values)}."}
        )
    step_rule = step_rule or ""
    step_tool = step_tool or ""
    if not isinstance(step_tool, str) or len(step_tool.strip()) > MAX_TOOL_NAME:
        raise ValidationError(
            {f"{prefix}step_tool": f"A tool name of at most {MAX_TOOL_NAME} characters."}
        )
    step_tool = step_tool.strip()
    if scope != Criterion.Scope.STEP:
        if step_rule:
            raise ValidationError(
                {f"{prefix}step_rule": "Only a step criterion has a step rule; set scope to step."}
            )
        if step_tool:
            raise ValidationError(
                {f"{prefix}step_tool": "Only a step criterion names a tool; set scope to step."}
            )
        return scope, "", ""
    if step_rule not in Criterion.StepRule.values:
        raise ValidationError(
            {
                f"{prefix}step_rule": "A step criterion needs a step rule: all (met at every "
                "step), share (the share of steps met) or any (met at any step, for a pitfall)."
            }
        )
    return scope, step_rule, step_tool


def _event(version: RubricVersion, user, action: str, *, lineage=None, changes=None) -> None:
    RubricEvent.objects.create(
        rubric_id=version.rubric_id,
        version_number=version.number,
        criterion_lineage=lineage,
        user=user if getattr(user, "is_authenticated", False) else None,
        action=action,
        changes=changes or {},
    )


def events_created(versions: list[RubricVersion], user) -> None:
    """History of many new rubrics at once (bulk imports), as rubric_create records one."""
    RubricEvent.objects.bulk_create(
        [
            RubricEvent(
                rubric_id=v.rubric_id,
                version_number=v.number,
                user=user if getattr(user, "is_authenticated", False) else None,
                action="created",
                changes={"title": v.rubric.title},
            )
            for v in versions
        ],
        batch_size=2000,
    )


@transaction.atomic
def rubric_create(
    *,
    project: Project,
    title: str,
    user,
    task: Task | None = None,
    criteria=(),
    extra=None,
    is_template: bool = False,
    template: Rubric | None = None,
) -> Rubric:
    if task is not None and task.project_id != project.pk:
        raise ValidationError({"task": "That task belongs to another project."})
    if is_template and task is not None:
        raise ValidationError({"task": "A template belongs to the project, not to one task."})
    if template is not None and (template.project_id != project.pk or not template.is_template):
        raise ValidationError({"template": "Choose a template of this project."})
    title = title.strip() or (f"Rubric for {task.title}" if task else "")
    if not title:
        raise ValidationError({"title": "A rubric needs a title."})
    rubric = Rubric.objects.create(
        project=project,
        task=task,
        title=title[:300],
        created_by=user,
        extra=extra or {},
        is_template=is_template,
        template=template,
    )
    version = RubricVersion.objects.create(rubric=rubric, number=1, created_by=user)
    Criterion.objects.bulk_create(
        Criterion(version=version, position=i, **c.model_fields()) for i, c in enumerate(criteria)
    )
    _event(version, user, "created", changes={"title": rubric.title})
    return rubric


STALE = (
    "Someone else saved this draft (now at revision {now}) after you loaded revision {seen}. "
    "Your change was not saved: reload to see theirs, then make it again."
)


def _locked_draft(version: RubricVersion, expected_revision: int | None = None) -> RubricVersion:
    """Lock the draft for an edit and bump its revision; refuse a stale or frozen one."""
    locked = RubricVersion.objects.select_for_update().get(pk=version.pk)
    if locked.status == RubricVersion.Status.IN_REVIEW:
        raise Conflict(
            f"Version {locked.number} is in review and cannot change; "
            "move it back to draft to edit it."
        )
    if not locked.is_draft:
        raise Conflict(
            f"Version {locked.number} is {locked.status} and cannot change; edit a new draft."
        )
    if expected_revision is not None and expected_revision != locked.revision:
        raise ValidationError(
            {"revision": STALE.format(now=locked.revision, seen=expected_revision)}
        )
    locked.revision += 1
    RubricVersion.objects.filter(pk=locked.pk).update(revision=locked.revision)
    return locked


def _copy_content(source: RubricVersion, target: RubricVersion) -> None:
    """Copy groups and criteria (with their lineage) from one version into another."""
    groups = list(source.groups.all())
    mapping: dict[int, CriterionGroup] = {}
    pending = groups
    while pending:
        later = []
        for g in pending:
            if g.parent_id is not None and g.parent_id not in mapping:
                later.append(g)
                continue
            mapping[g.pk] = CriterionGroup.objects.create(
                version=target,
                parent=mapping.get(g.parent_id),
                title=g.title,
                weight=g.weight,
                position=g.position,
                key=g.key,
                extra=g.extra,
            )
        if len(later) == len(pending):
            break  # a cycle cannot be stored, but never loop forever
        pending = later
    Criterion.objects.bulk_create(
        Criterion(
            version=target,
            lineage=c.lineage,
            position=c.position,
            group=mapping.get(c.group_id),
            **{name: getattr(c, name) for name in CRITERION_FIELDS},
        )
        for c in source.criteria.all()
    )


@transaction.atomic
def draft_for_edit(*, rubric: Rubric, user) -> RubricVersion:
    """The rubric's open version, or a new draft copied from its latest version."""
    Rubric.objects.select_for_update().get(pk=rubric.pk)
    draft = rubric.versions.filter(
        status__in=[RubricVersion.Status.DRAFT, RubricVersion.Status.IN_REVIEW]
    ).first()
    if draft is not None:
        return draft
    latest = rubric.versions.order_by("-number").first()
    draft = RubricVersion.objects.create(
        rubric=rubric, number=(latest.number + 1) if latest else 1, created_by=user
    )
    if latest is not None:
        _copy_content(latest, draft)
    _event(draft, user, "draft_started")
    return draft


def _criterion_snapshot(c: Criterion) -> dict:
    return {
        "text": c.text,
        "points": compiler.number(c.points),
        "kind": c.kind,
        "importance": c.importance,
        "gate": c.gate,
        "scope": c.scope,
        "step_rule": c.step_rule,
        "step_tool": c.step_tool,
        "group": c.group_id,
        "weight": compiler.number(c.weight),
        "tags": c.tags,
    }


@transaction.atomic
def criterion_add(
    *,
    version: RubricVersion,
    text: str,
    points: object,
    user=None,
    expected_revision: int | None = None,
    after: Criterion | None = None,
    **fields,
) -> Criterion:
    """Add a criterion at the end, or just after `after` (joining its group)."""
    version = _locked_draft(version, expected_revision)
    clean = clean_criterion(text, points, **fields)
    group = None
    if after is not None and after.version_id == version.pk:
        position = after.position + 1
        group = after.group
        version.criteria.filter(position__gte=position).update(position=F("position") + 1)
    else:
        last = version.criteria.aggregate(m=Max("position"))["m"]
        position = 0 if last is None else last + 1
    criterion = Criterion.objects.create(
        version=version, position=position, group=group, **clean.model_fields()
    )
    _event(
        version,
        user,
        "criterion_added",
        lineage=criterion.lineage,
        changes=_criterion_snapshot(criterion),
    )
    return criterion


@transaction.atomic
def criterion_update(
    *, criterion: Criterion, user=None, expected_revision: int | None = None, **fields
) -> Criterion:
    """Change some fields of a draft criterion; the fields not given keep their values."""
    _locked_draft(criterion.version, expected_revision)
    criterion = Criterion.objects.select_for_update().get(pk=criterion.pk)
    before = _criterion_snapshot(criterion)
    current = {name: getattr(criterion, name) for name in CRITERION_FIELDS}
    current.update({k: v for k, v in fields.items() if k in CRITERION_FIELDS})
    if current["scope"] != Criterion.Scope.STEP:
        # Leaving step scope drops its rule and tool unless this change names them.
        current["step_rule"] = fields.get("step_rule", "")
        current["step_tool"] = fields.get("step_tool", "")
    if "importance" not in fields:
        # Keep the author's importance unless the sign of the points now contradicts it.
        negative = str(current["points"]).strip().startswith("-")
        if negative or current["importance"] == Criterion.Importance.PITFALL:
            current["importance"] = ""
    text, points = current.pop("text"), current.pop("points")
    clean = clean_criterion(text, points, **current)
    for name, value in clean.model_fields().items():
        setattr(criterion, name, value)
    criterion.save()
    after = _criterion_snapshot(criterion)
    changed = {k: [before[k], after[k]] for k in after if before[k] != after[k]}
    if changed:
        _event(
            criterion.version, user, "criterion_changed", lineage=criterion.lineage, changes=changed
        )
    return criterion


@transaction.atomic
def criterion_delete(
    *, criterion: Criterion, user=None, expected_revision: int | None = None
) -> None:
    version = _locked_draft(criterion.version, expected_revision)
    position, group_id = criterion.position, criterion.group_id
    _event(
        version,
        user,
        "criterion_removed",
        lineage=criterion.lineage,
        changes={"text": criterion.text},
    )
    criterion.delete()
    version.criteria.filter(position__gt=position).update(position=F("position") - 1)
    _prune_empty_groups(version, group_id)


@transaction.atomic
def criterion_move(
    *, criterion: Criterion, offset: int, user=None, expected_revision: int | None = None
) -> None:
    """Swap with the neighbour `offset` (-1 up, +1 down) places away; at an end, do nothing."""
    version = _locked_draft(criterion.version, expected_revision)
    criterion = Criterion.objects.get(pk=criterion.pk)
    neighbour = version.criteria.filter(position=criterion.position + offset).first()
    if neighbour is None:
        return
    # The position constraint is deferred, so a swap inside one transaction is fine.
    neighbour.position, criterion.position = criterion.position, neighbour.position
    Criterion.objects.bulk_update([neighbour, criterion], ["position"])
    _event(
        version,
        user,
        "criterion_moved",
        lineage=criterion.lineage,
        changes={"to": criterion.position},
    )


def _ancestors(group: CriterionGroup | None, groups: dict[int, CriterionGroup]) -> list[int]:
    chain = []
    while group is not None:
        chain.append(group.pk)
        group = groups.get(group.parent_id) if group.parent_id else None
    return chain


def _prune_empty_groups(version: RubricVersion, group_id: int | None) -> None:
    while group_id is not None:
        group = CriterionGroup.objects.filter(pk=group_id, version=version).first()
        if group is None or group.criteria.exists() or group.children.exists():
            return
        group_id = group.parent_id
        group.delete()


@transaction.atomic
def criterion_indent(
    *, criterion: Criterion, user=None, expected_revision: int | None = None
) -> None:
    """One level deeper: join the group of the criterion above, or open a new group."""
    version = _locked_draft(criterion.version, expected_revision)
    criterion = Criterion.objects.select_related("group").get(pk=criterion.pk)
    above = version.criteria.filter(position=criterion.position - 1).select_related("group").first()
    if above is None:
        raise ValidationError(
            {"group": "The first criterion has nothing above it to group with; add one first."}
        )
    groups = {g.pk: g for g in version.groups.all()}
    chain = _ancestors(above.group, groups)  # innermost first
    current = criterion.group_id
    target = None
    if current in chain:
        index = chain.index(current)
        if index > 0:
            target = groups[chain[index - 1]]  # the group one level below ours, above us
    elif current is None and chain:
        target = groups[chain[-1]]  # the outermost group of the criterion above
    if target is None:
        target = CriterionGroup.objects.create(
            version=version,
            parent_id=current,
            title=f"Group {len(groups) + 1}",
            # A group sorts among its siblings by its first criterion's position.
            position=above.position if above.group_id == current else criterion.position,
        )
        if above.group_id == current:
            above.group = target
            above.save(update_fields=["group"])
    criterion.group = target
    criterion.save(update_fields=["group"])
    _event(
        version,
        user,
        "criterion_indented",
        lineage=criterion.lineage,
        changes={"group": target.title},
    )


@transaction.atomic
def criterion_outdent(
    *, criterion: Criterion, user=None, expected_revision: int | None = None
) -> None:
    """One level up: into the parent of the criterion's group."""
    version = _locked_draft(criterion.version, expected_revision)
    criterion = Criterion.objects.select_related("group").get(pk=criterion.pk)
    if criterion.group is None:
        raise ValidationError({"group": "This criterion is already at the top level."})
    old = criterion.group
    criterion.group_id = old.parent_id
    criterion.save(update_fields=["group"])
    _prune_empty_groups(version, old.pk)
    _event(
        version, user, "criterion_outdented", lineage=criterion.lineage, changes={"from": old.title}
    )


@transaction.atomic
def group_update(
    *, group: CriterionGroup, title: str, weight: object, user=None, expected_revision=None
) -> CriterionGroup:
    version = _locked_draft(group.version, expected_revision)
    title = (title or "").strip()
    if not title:
        raise ValidationError({"group.title": "A group needs a title."})
    clean_weight = parse_weight(weight, field="group.weight")
    changes = {}
    if title != group.title:
        changes["title"] = [group.title, title]
    if clean_weight != group.weight:
        changes["weight"] = [compiler.number(group.weight), compiler.number(clean_weight)]
    group.title, group.weight = title, clean_weight
    group.save(update_fields=["title", "weight"])
    if changes:
        _event(version, user, "group_changed", changes=changes)
    return group


@transaction.atomic
def rubric_settings_update(
    *, rubric: Rubric, include_reference: bool, user=None, expected_revision=None
) -> Rubric:
    """The setting lives on the rubric; the draft's revision still guards concurrent edits."""
    draft = draft_for_edit(rubric=rubric, user=user)
    _locked_draft(draft, expected_revision)
    if rubric.include_reference != include_reference:
        rubric.include_reference = include_reference
        rubric.save(update_fields=["include_reference"])
        _event(draft, user, "settings_changed", changes={"include_reference": include_reference})
    return rubric


@transaction.atomic
def criteria_replace(*, version: RubricVersion, criteria: list[CriterionInput], user=None) -> None:
    """Replace a draft's criteria in order (the API's PUT)."""
    version = _locked_draft(version)
    version.criteria.all().delete()
    version.groups.all().delete()
    Criterion.objects.bulk_create(
        Criterion(version=version, position=i, **c.model_fields()) for i, c in enumerate(criteria)
    )
    _event(version, user, "criteria_replaced", changes={"count": len(criteria)})


# --- Review and publishing ---------------------------------------------------------------


def _version_audit(action: str, version: RubricVersion, user, **details) -> None:
    rubric = Rubric.objects.select_related("project").get(pk=version.rubric_id)
    audit.record(
        action,
        actor=user,
        project=rubric.project,
        target_type="rubric_version",
        target_id=version.pk,
        target_label=f"{rubric.title} v{version.number}",
        details={"rubric": rubric.pk, "version": version.number, **details},
    )


def _check_publishable(criteria: list[Criterion]) -> None:
    if not criteria:
        raise ValidationError("A rubric needs at least one criterion before it is published.")
    if sum(c.points for c in criteria if c.points > 0) <= 0:
        raise ValidationError("A rubric needs at least one criterion with positive points.")


@transaction.atomic
def version_submit(*, version: RubricVersion, user) -> RubricVersion:
    """Send a draft to review; it is read-only until approved or moved back to draft."""
    version = _locked_draft(version)
    _check_publishable(list(version.criteria.all()))
    version.status = RubricVersion.Status.IN_REVIEW
    version.submitted_by, version.submitted_at = user, timezone.now()
    version.save(update_fields=["status", "submitted_by", "submitted_at"])
    _event(version, user, "submitted")
    _version_audit(AuditEvent.Action.VERSION_SUBMITTED, version, user)
    return version


@transaction.atomic
def version_reopen(*, version: RubricVersion, user) -> RubricVersion:
    """Move a version in review back to draft, so its author can address comments."""
    version = RubricVersion.objects.select_for_update().get(pk=version.pk)
    if version.status != RubricVersion.Status.IN_REVIEW:
        raise ValidationError(f"Version {version.number} is not in review.")
    version.status = RubricVersion.Status.DRAFT
    version.revision += 1
    version.save(update_fields=["status", "revision"])
    _event(version, user, "reopened")
    _version_audit(AuditEvent.Action.VERSION_RETURNED, version, user)
    return version


def _comment_body(body: str) -> str:
    body = (body or "").strip()
    if not body:
        raise ValidationError({"body": "Write the comment."})
    if len(body) > 5000:
        raise ValidationError({"body": "Keep a comment under 5,000 characters."})
    return body


@transaction.atomic
def comment_add(
    *, version: RubricVersion, user, body: str, criterion: Criterion | None = None
) -> ReviewComment:
    version = RubricVersion.objects.select_for_update().get(pk=version.pk)
    if not version.is_open:
        raise ValidationError({"body": f"Version {version.number} is {version.status}."})
    if criterion is not None and criterion.version_id != version.pk:
        raise ValidationError({"criterion": "That criterion belongs to another version."})
    body = _comment_body(body)
    comment = ReviewComment.objects.create(
        version=version, criterion=criterion, author=user, body=body
    )
    _event(
        version,
        user,
        "commented",
        lineage=criterion.lineage if criterion else None,
        changes={"body": body[:200]},
    )
    return comment


@transaction.atomic
def comment_reply(*, comment: ReviewComment, user, body: str) -> ReviewComment:
    """Answer a comment before it is resolved; a reply to a reply joins the same thread."""
    root_pk = comment.parent_id or comment.pk
    root = ReviewComment.objects.select_for_update().select_related("version").get(pk=root_pk)
    if root.resolved_at is not None:
        raise ValidationError({"comment": "This comment is resolved: its thread takes no replies."})
    if not root.version.is_open:
        raise ValidationError(
            {"comment": f"Version {root.version.number} is {root.version.status}."}
        )
    body = _comment_body(body)
    reply = ReviewComment.objects.create(
        version=root.version, criterion_id=root.criterion_id, parent=root, author=user, body=body
    )
    _event(root.version, user, "comment_replied", changes={"body": body[:200]})
    return reply


@transaction.atomic
def comment_resolve(*, comment: ReviewComment, user) -> ReviewComment:
    comment = ReviewComment.objects.select_for_update().select_related("version").get(pk=comment.pk)
    if comment.parent_id is not None:
        raise ValidationError({"comment": "Resolve the thread's first comment, not a reply."})
    if comment.resolved_at is not None:
        raise ValidationError({"comment": "This comment is already resolved."})
    comment.resolved_by, comment.resolved_at = user, timezone.now()
    comment.save(update_fields=["resolved_by", "resolved_at"])
    _event(comment.version, user, "comment_resolved", changes={"body": comment.body[:200]})
    return comment


def _publish(version: RubricVersion, user, action: str, **details) -> Grader:
    version.rubric = Rubric.objects.select_related("task").get(pk=version.rubric_id)
    parts = grader_parts(version, version.rubric)
    _check_publishable(parts.criteria)
    grader_hash, spec = compiler.compile_grader(
        version,
        parts.criteria,
        groups=parts.groups,
        reference=parts.reference,
        template=parts.template,
    )
    version.status = RubricVersion.Status.PUBLISHED
    version.content_hash = spec["rubric"]["content_hash"]
    version.published_by = user
    version.published_at = timezone.now()
    version.save(update_fields=["status", "content_hash", "published_by", "published_at"])
    # The previous published version stays gradeable; it is retired by hand.
    grader, _ = Grader.objects.get_or_create(
        hash=grader_hash, defaults={"version": version, "spec": spec}
    )
    _event(version, user, "published", changes={"grader": grader_hash})
    _version_audit(
        action, version, user, grader=grader_hash, content_hash=version.content_hash, **details
    )
    return grader


@transaction.atomic
def version_publish(*, version: RubricVersion, user) -> Grader:
    """Freeze a draft: it gets a content hash and compiles into a grader."""
    version = _locked_draft(version)
    return _publish(version, user, AuditEvent.Action.VERSION_PUBLISHED)


@transaction.atomic
def version_approve(*, version: RubricVersion, user, role: str) -> Grader:
    """A reviewer approves a version in review: it is published. Never their own draft."""
    version = RubricVersion.objects.select_for_update().get(pk=version.pk)
    if version.status != RubricVersion.Status.IN_REVIEW:
        raise ValidationError(f"Version {version.number} is not in review; submit it first.")
    if role != Role.REVIEWER:
        raise ValidationError("Only a reviewer approves a rubric.")
    if user.pk in (version.created_by_id, version.submitted_by_id):
        raise ValidationError("You wrote or submitted this draft: another reviewer approves it.")
    open_comments = version.comments.filter(parent=None, resolved_at__isnull=True).count()
    if open_comments:
        raise ValidationError(
            f"{open_comments} review comment(s) are unresolved; the author resolves them first."
        )
    submitter = version.submitted_by.get_username() if version.submitted_by else ""
    return _publish(version, user, AuditEvent.Action.VERSION_APPROVED, submitted_by=submitter)


@transaction.atomic
def version_retire(*, version: RubricVersion, user) -> RubricVersion:
    version = RubricVersion.objects.select_for_update().get(pk=version.pk)
    if version.status != RubricVersion.Status.PUBLISHED:
        raise ValidationError(
            f"Only a published version is retired; v{version.number} is {version.status}."
        )
    version.status = RubricVersion.Status.RETIRED
    version.save(update_fields=["status"])
    _event(version, user, "retired")
    _version_audit(AuditEvent.Action.VERSION_RETIRED, version, user)
    return version


@transaction.atomic
def rubric_rename(*, rubric: Rubric, title: str, user=None) -> Rubric:
    """A rubric's title is a label: published graders keep the title they were compiled with."""
    title = (title or "").strip()
    if not title:
        raise ValidationError({"title": "A rubric needs a title."})
    if len(title) > 300:
        raise ValidationError({"title": "Keep the title under 300 characters."})
    if title != rubric.title:
        latest = rubric.versions.order_by("-number").first()
        if latest is not None:
            _event(latest, user, "renamed", changes={"title": [rubric.title, title]})
        rubric.title = title
        rubric.save(update_fields=["title"])
    return rubric


@transaction.atomic
def rubric_delete(*, rubric: Rubric) -> None:
    """Delete a rubric that was never published. A published (or retired) version is named
    by graders, runs, verdicts and exports, so such a rubric stays: retire its versions."""
    rubric = Rubric.objects.select_for_update().get(pk=rubric.pk)
    published = rubric.versions.exclude(
        status__in=[RubricVersion.Status.DRAFT, RubricVersion.Status.IN_REVIEW]
    ).count()
    if published:
        raise Conflict(
            f"'{rubric.title}' has {published} published or retired version(s), which graded "
            "work names; it cannot be deleted. Retire its versions instead."
        )
    applied = rubric.applied_to.count()
    if applied:
        raise Conflict(
            f"The template '{rubric.title}' is applied to {applied} rubric(s); it cannot be "
            "deleted while they build on it."
        )
    try:
        rubric.delete()
    except ProtectedError as exc:  # a future reference this check does not know yet
        raise Conflict(f"'{rubric.title}' is still referred to: {exc.args[0]}") from None


@transaction.atomic
def draft_discard(*, rubric: Rubric, user) -> RubricVersion:
    """Throw away the open version (draft or in review) of a rubric that has an earlier one;
    returns the version that is now the latest. A rubric's only version is not discarded:
    delete the rubric instead."""
    Rubric.objects.select_for_update().get(pk=rubric.pk)
    draft = rubric.versions.filter(
        status__in=[RubricVersion.Status.DRAFT, RubricVersion.Status.IN_REVIEW]
    ).first()
    if draft is None:
        raise Conflict("This rubric has no draft or version in review to discard.")
    latest = rubric.versions.exclude(pk=draft.pk).order_by("-number").first()
    if latest is None:
        raise Conflict(
            f"Version {draft.number} is the rubric's only version; delete the rubric instead."
        )
    _event(latest, user, "draft_discarded", changes={"number": draft.number})
    draft.delete()
    return latest


# --- Templates ----------------------------------------------------------------------------


@transaction.atomic
def template_apply(*, template: Rubric, tasks, user) -> list[Rubric]:
    """Give each task without a rubric a rubric that builds on `template` (its per-task
    criteria start empty); a task rubric with no template yet adopts it."""
    if not template.is_template:
        raise ValidationError({"template": "That rubric is not a template."})
    rubrics = []
    for task in tasks:
        if task.project_id != template.project_id:
            raise ValidationError({"task": f"Task '{task.external_id}' is in another project."})
        existing = Rubric.objects.select_for_update().filter(task=task).first()
        if existing is None:
            rubrics.append(
                rubric_create(
                    project=template.project,
                    task=task,
                    title=f"{template.title}: {task.title}",
                    user=user,
                    template=template,
                )
            )
        elif existing.template_id is None:
            existing.template = template
            existing.save(update_fields=["template"])
            _event(
                existing.versions.order_by("-number").first(),
                user,
                "template_applied",
                changes={"template": template.title},
            )
            rubrics.append(existing)
    return rubrics
