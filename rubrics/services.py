"""Writes for projects, tasks and rubrics. Each service owns its transaction."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F, Max
from django.utils import timezone
from django.utils.text import slugify

from rubrics import compiler
from rubrics.models import (
    Criterion,
    Grader,
    Membership,
    Project,
    ReferenceDeliverable,
    Role,
    Rubric,
    RubricVersion,
    Task,
)

MESSAGE_ROLES = {"system", "developer", "user", "assistant"}


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
    return project


@transaction.atomic
def membership_set(*, project: Project, username: str, role: str) -> Membership:
    """Add a member by username, or change their role. The last admin cannot be demoted."""
    if role not in Role.values:
        raise ValidationError({"role": f"Unknown role '{role}'; choose one of {Role.values}."})
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        raise ValidationError({"username": f"No user named '{username}'."})
    membership = Membership.objects.select_for_update().filter(project=project, user=user).first()
    if membership and membership.role == Role.ADMIN and role != Role.ADMIN:
        admins = Membership.objects.filter(project=project, role=Role.ADMIN).count()
        if admins <= 1:
            raise ValidationError({"role": "A project keeps at least one admin."})
    if membership is None:
        return Membership.objects.create(project=project, user=user, role=role)
    membership.role = role
    membership.save(update_fields=["role"])
    return membership


# --- Tasks ------------------------------------------------------------------------------


def validate_messages(messages: object, *, field: str = "messages") -> list[dict]:
    """Chat messages as [{role, content}], with an error that names the message and field."""
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    if not isinstance(messages, list) or not messages:
        raise ValidationError({field: "Give the prompt as a non-empty list of chat messages."})
    clean = []
    for i, message in enumerate(messages):
        where = f"{field}[{i}]"
        if not isinstance(message, dict):
            raise ValidationError({where: "Each message is an object with role and content."})
        role, content = message.get("role"), message.get("content")
        if role not in MESSAGE_ROLES:
            raise ValidationError(
                {f"{where}.role": f"Role must be one of {sorted(MESSAGE_ROLES)}."}
            )
        if not isinstance(content, str) or not content.strip():
            raise ValidationError({f"{where}.content": "Content must be non-empty text."})
        clean.append({"role": role, "content": content})
    if not any(m["role"] == "user" for m in clean):
        raise ValidationError({field: "The prompt needs at least one user message."})
    return clean


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
    external_id = external_id.strip()
    if not external_id or not re.fullmatch(r"[\w.:\-]{1,200}", external_id):
        raise ValidationError({"external_id": "Use 1-200 letters, digits, '.', '_', ':' or '-'."})
    clean_messages = validate_messages(messages)
    with transaction.atomic():
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


# --- Rubrics and their drafts ------------------------------------------------------------


@dataclass(frozen=True)
class CriterionInput:
    text: str
    points: Decimal


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


def clean_criterion(text: object, points: object, *, where: str = "") -> CriterionInput:
    prefix = f"{where}." if where else ""
    if not isinstance(text, str) or not text.strip():
        raise ValidationError({f"{prefix}text": "A criterion needs text."})
    if len(text) > 5000:
        raise ValidationError({f"{prefix}text": "Keep a criterion under 5,000 characters."})
    return CriterionInput(text=text.strip(), points=parse_points(points, field=f"{prefix}points"))


@transaction.atomic
def rubric_create(
    *, project: Project, title: str, user, task: Task | None = None, criteria=()
) -> Rubric:
    if task is not None and task.project_id != project.pk:
        raise ValidationError({"task": "That task belongs to another project."})
    title = title.strip() or (f"Rubric for {task.title}" if task else "")
    if not title:
        raise ValidationError({"title": "A rubric needs a title."})
    rubric = Rubric.objects.create(project=project, task=task, title=title, created_by=user)
    version = RubricVersion.objects.create(rubric=rubric, number=1, created_by=user)
    Criterion.objects.bulk_create(
        Criterion(version=version, position=i, text=c.text, points=c.points)
        for i, c in enumerate(criteria)
    )
    return rubric


def _locked_draft(version: RubricVersion) -> RubricVersion:
    locked = RubricVersion.objects.select_for_update().get(pk=version.pk)
    if not locked.is_draft:
        raise ValidationError(
            f"Version {locked.number} is {locked.status} and cannot change; edit a new draft."
        )
    return locked


@transaction.atomic
def draft_for_edit(*, rubric: Rubric, user) -> RubricVersion:
    """The rubric's draft, or a new draft copied from its latest version."""
    Rubric.objects.select_for_update().get(pk=rubric.pk)
    draft = rubric.versions.filter(status=RubricVersion.Status.DRAFT).first()
    if draft is not None:
        return draft
    latest = rubric.versions.order_by("-number").first()
    draft = RubricVersion.objects.create(
        rubric=rubric, number=(latest.number + 1) if latest else 1, created_by=user
    )
    if latest is not None:
        Criterion.objects.bulk_create(
            Criterion(version=draft, position=c.position, text=c.text, points=c.points)
            for c in latest.criteria.all()
        )
    return draft


@transaction.atomic
def criterion_add(*, version: RubricVersion, text: str, points: object) -> Criterion:
    version = _locked_draft(version)
    clean = clean_criterion(text, points)
    last = version.criteria.aggregate(m=Max("position"))["m"]
    return Criterion.objects.create(
        version=version,
        position=0 if last is None else last + 1,
        text=clean.text,
        points=clean.points,
    )


@transaction.atomic
def criterion_update(*, criterion: Criterion, text: str, points: object) -> Criterion:
    _locked_draft(criterion.version)
    clean = clean_criterion(text, points)
    criterion.text, criterion.points = clean.text, clean.points
    criterion.save(update_fields=["text", "points"])
    return criterion


@transaction.atomic
def criterion_delete(*, criterion: Criterion) -> None:
    version = _locked_draft(criterion.version)
    position = criterion.position
    criterion.delete()
    version.criteria.filter(position__gt=position).update(position=F("position") - 1)


@transaction.atomic
def criterion_move(*, criterion: Criterion, offset: int) -> None:
    """Swap with the neighbour `offset` (-1 up, +1 down) places away; at an end, do nothing."""
    version = _locked_draft(criterion.version)
    neighbour = version.criteria.filter(position=criterion.position + offset).first()
    if neighbour is None:
        return
    # The position constraint is deferred, so a swap inside one transaction is fine.
    neighbour.position, criterion.position = criterion.position, neighbour.position
    Criterion.objects.bulk_update([neighbour, criterion], ["position"])


@transaction.atomic
def criteria_replace(*, version: RubricVersion, criteria: list[CriterionInput]) -> None:
    """Replace a draft's criteria in order (the API's PUT)."""
    version = _locked_draft(version)
    version.criteria.all().delete()
    Criterion.objects.bulk_create(
        Criterion(version=version, position=i, text=c.text, points=c.points)
        for i, c in enumerate(criteria)
    )


@transaction.atomic
def version_publish(*, version: RubricVersion, user) -> Grader:
    """Freeze a draft: it gets a content hash and compiles into a grader."""
    version = _locked_draft(version)
    criteria = list(version.criteria.order_by("position"))
    if not criteria:
        raise ValidationError("A rubric needs at least one criterion before it is published.")
    if sum(c.points for c in criteria if c.points > 0) <= 0:
        raise ValidationError("A rubric needs at least one criterion with positive points.")
    version.rubric = Rubric.objects.select_related("task").get(pk=version.rubric_id)
    grader_hash, spec = compiler.compile_grader(version, criteria)
    version.status = RubricVersion.Status.PUBLISHED
    version.content_hash = spec["rubric"]["content_hash"]
    version.published_by = user
    version.published_at = timezone.now()
    version.save(update_fields=["status", "content_hash", "published_by", "published_at"])
    grader, _ = Grader.objects.get_or_create(
        hash=grader_hash, defaults={"version": version, "spec": spec}
    )
    return grader
