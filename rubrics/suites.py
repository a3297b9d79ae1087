"""Suites: named sets of a project's tasks, and their frozen versions.

A suite version is a lock file: for each task, the published grader in force when it was
frozen (task external id -> grader hash), hashed, and immutable in the database. Runs,
leaderboards, comparisons, exports and the suite reward URL all name a suite version, so a
score always says exactly which graders produced it. A run over one rubric is a run over
that rubric's suite of one (`suite_of_grader`): there is one grading path.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Max

from rubrics import bulk
from rubrics.models import (
    AuditEvent,
    Grader,
    Project,
    RubricVersion,
    Suite,
    SuiteEntry,
    SuiteVersion,
    Task,
)

MAX_NAME = 200
# How many refused tasks an error lists by name before it says "and N more".
LISTED = 20


def manifest_hash(manifest: dict[str, str]) -> str:
    """SHA-256 of the canonical JSON of {task external id: grader hash}."""
    canonical = json.dumps(manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _clean_name(name) -> str:
    name = str(name or "").strip()
    if not name:
        raise ValidationError({"name": "A suite needs a name."})
    if len(name) > MAX_NAME:
        raise ValidationError({"name": f"Keep the name under {MAX_NAME} characters."})
    return name


def _clean_tags(tags) -> list[str]:
    if tags in (None, ""):
        return []
    if isinstance(tags, str):
        tags = [t for t in (part.strip() for part in tags.split(",")) if t]
    if not isinstance(tags, list | tuple) or not all(isinstance(t, str) for t in tags):
        raise ValidationError({"tags": "Tags are a list of strings."})
    return sorted({t.strip() for t in tags if t.strip()})


def _hand_made(suite: Suite) -> None:
    """A rubric's suite of one follows that rubric (`suite_of_grader`): runs over the rubric
    freeze it, and no one edits it by hand."""
    if suite.rubric_id is not None:
        from rubrics.services import Conflict

        raise Conflict(
            "This suite belongs to one rubric and follows it: runs over that rubric freeze it. "
            "Make a suite of your own to choose its tasks."
        )


def tasks_by_external_id(project: Project, external_ids, *, field: str = "tasks") -> list[int]:
    """The ids of the project's tasks named by `external_ids`, in the order given (repeats
    dropped). Any unknown one is refused, naming the first few: nothing is guessed."""
    wanted = list(dict.fromkeys(str(e).strip() for e in external_ids if str(e).strip()))
    found: dict[str, int] = {}
    for start in range(0, len(wanted), 5000):
        found.update(
            Task.objects.filter(
                project=project, external_id__in=wanted[start : start + 5000]
            ).values_list("external_id", "pk")
        )
    missing = [e for e in wanted if e not in found]
    if missing:
        named = ", ".join(repr(e[:80]) for e in missing[:LISTED])
        more = f" and {len(missing) - LISTED} more" if len(missing) > LISTED else ""
        raise ValidationError(
            {field: f"No task of this project has the external id {named}{more}."}
        )
    return [found[e] for e in wanted]


def _project_tasks(project: Project, task_ids) -> list[int]:
    ids = sorted({int(pk) for pk in task_ids})
    found = set(Task.objects.filter(project=project, pk__in=ids).values_list("pk", flat=True))
    missing = [pk for pk in ids if pk not in found]
    if missing:
        raise ValidationError({"tasks": f"No task of this project has id {missing[0]}."})
    return ids


@transaction.atomic
def suite_create(
    *,
    project: Project,
    name: str,
    user=None,
    description: str = "",
    task_ids=(),
    tags=(),
) -> Suite:
    """A suite of hand-picked tasks, or of every task carrying one of `tags`, or both."""
    name = _clean_name(name)
    if Suite.objects.filter(project=project, name=name).exists():
        raise ValidationError({"name": f"This project already has a suite named {name!r}."})
    ids = _project_tasks(project, task_ids)
    suite = Suite.objects.create(
        project=project,
        name=name,
        description=str(description or "")[:5000],
        tags=_clean_tags(tags),
        created_by=user,
    )
    if ids:
        suite.tasks.add(*ids)
    _audit(AuditEvent.Action.SUITE_CREATED, suite, user, tasks=len(ids), tags=suite.tags)
    return suite


# A suite's description is kept in its audit event this far, as a queue's guidelines are.
AUDIT_TEXT_CHARS = 500
# An audit event names this many of the tasks put in or taken out (and counts them all).
AUDIT_TASKS_NAMED = 20


@transaction.atomic
def suite_update(
    *, suite: Suite, user=None, name=None, description=None, task_ids=None, tags=None
) -> Suite:
    """Change what a suite holds; its frozen versions stay as they were. What changed is
    audited (SUITE_CHANGED): each field before and after, the tasks put in and taken out."""
    _hand_made(suite)
    changes: dict = {}
    fields = []
    if name is not None and _clean_name(name) != suite.name:
        name = _clean_name(name)
        if Suite.objects.filter(project_id=suite.project_id, name=name).exists():
            raise ValidationError({"name": f"This project already has a suite named {name!r}."})
        changes["name"] = [suite.name, name]
        suite.name = name
        fields.append("name")
    if description is not None and str(description)[:5000] != suite.description:
        new = str(description)[:5000]
        changes["description"] = [
            suite.description[:AUDIT_TEXT_CHARS],
            new[:AUDIT_TEXT_CHARS],
        ]
        suite.description = new
        fields.append("description")
    if tags is not None and _clean_tags(tags) != suite.tags:
        changes["tags"] = [list(suite.tags), _clean_tags(tags)]
        suite.tags = _clean_tags(tags)
        fields.append("tags")
    if fields:
        suite.save(update_fields=fields)
    if task_ids is not None:
        wanted = set(_project_tasks(suite.project, task_ids))
        held = set(suite.tasks.values_list("pk", flat=True))
        added, removed = wanted - held, held - wanted
        if added or removed:
            suite.tasks.set(wanted)
            changes.update(
                _task_changes("tasks_added", added) | _task_changes("tasks_removed", removed)
            )
    if changes:
        _audit(AuditEvent.Action.SUITE_CHANGED, suite, user, **changes)
    return suite


def _task_changes(key: str, task_ids: set[int]) -> dict:
    """{key: count, key_named: the first external ids} for an audit event; {} for none."""
    if not task_ids:
        return {}
    named = Task.objects.filter(pk__in=task_ids).order_by("external_id")
    named = list(named.values_list("external_id", flat=True)[:AUDIT_TASKS_NAMED])
    return {key: len(task_ids), f"{key}_named": named}


def suite_add_tasks(*, suite: Suite, task_ids, user=None) -> None:
    """Put tasks in a suite (an import into it), audited as any edit (SUITE_CHANGED) with the
    tasks that were not in it yet; nothing recorded when all were."""
    held = set(suite.tasks.values_list("pk", flat=True))
    added = set(_project_tasks(suite.project, task_ids)) - held
    if added:
        suite.tasks.add(*added)
        _audit(AuditEvent.Action.SUITE_CHANGED, suite, user, **_task_changes("tasks_added", added))


def carries_any(tags, wanted: set[str]) -> bool:
    """Whether a task's `tags` (JSON: a list of strings, or anything a bad import left) hold
    one of `wanted`: what puts a task in a suite picked by tags."""
    return isinstance(tags, list) and bool(
        wanted.intersection(t for t in tags if isinstance(t, str))
    )


def suite_task_ids(suite: Suite) -> list[int]:
    """The suite's tasks now: those picked or imported, and those carrying one of its tags."""
    ids = set(
        Suite.tasks.through.objects.filter(suite_id=suite.pk).values_list("task_id", flat=True)
    )
    if suite.tags:
        wanted = set(suite.tags)
        ids.update(
            pk
            for pk, tags in Task.objects.filter(project_id=suite.project_id).values_list(
                "pk", "tags"
            )
            if carries_any(tags, wanted)
        )
    return sorted(ids)


def graders_in_force(task_ids) -> dict[int, tuple[int, str]]:
    """For each task, the grader its newest published rubric version compiled to (a task rubric
    built on a template included): {task id: (grader id, hash)}. A task whose rubrics have no
    published version is absent. One query, however many tasks."""
    rows = (
        Grader.objects.filter(
            version__rubric__task_id__in=list(task_ids),
            version__status=RubricVersion.Status.PUBLISHED,
        )
        .order_by("version__rubric__task_id", "-version__published_at", "-version_id", "-pk")
        .values_list("version__rubric__task_id", "pk", "hash")
    )
    graders: dict[int, tuple[int, str]] = {}
    for task_id, grader_id, grader_hash in rows:
        graders.setdefault(task_id, (grader_id, grader_hash))
    return graders


def _refused(what: str, names: list[str]) -> ValidationError:
    listed = ", ".join(names[:LISTED])
    more = f" and {len(names) - LISTED} more" if len(names) > LISTED else ""
    return ValidationError(f"{len(names)} task(s) {what}: {listed}{more}.")


@transaction.atomic
def _freeze(suite: Suite, pins: dict[int, tuple[int, str]], user) -> tuple[SuiteVersion, bool]:
    """Write a version pinning {task id: (grader id, hash)}, unless the newest version pins the
    same: that one is returned. (version, created)."""
    Suite.objects.select_for_update().filter(pk=suite.pk).first()
    external = dict(Task.objects.filter(pk__in=list(pins)).values_list("pk", "external_id"))
    manifest = {external[pk]: grader_hash for pk, (_, grader_hash) in pins.items()}
    content_hash = manifest_hash(manifest)
    graders = {grader_id for grader_id, _ in pins.values()}
    latest = SuiteVersion.objects.filter(suite=suite).order_by("-number").first()
    if latest is not None and latest.content_hash == content_hash:
        return latest, False
    number = (SuiteVersion.objects.filter(suite=suite).aggregate(n=Max("number"))["n"] or 0) + 1
    version = SuiteVersion.objects.create(
        suite=suite,
        number=number,
        content_hash=content_hash,
        manifest=dict(sorted(manifest.items())),
        task_count=len(manifest),
        sole_grader_id=next(iter(graders)) if len(graders) == 1 else None,
        created_by=user,
    )
    bulk.insert_rows(
        SuiteEntry,
        (
            {"version_id": version.pk, "task_id": pk, "grader_id": grader_id}
            for pk, (grader_id, _) in sorted(pins.items())
        ),
    )
    _audit(
        AuditEvent.Action.SUITE_FROZEN,
        suite,
        user,
        version=number,
        content_hash=content_hash,
        tasks=len(manifest),
    )
    return version, True


def suite_freeze(*, suite: Suite, user=None) -> tuple[SuiteVersion, bool]:
    """Freeze the suite's tasks with the graders in force now. Refuses, listing them, tasks
    that have no published rubric: never skips a task silently. An empty suite is refused.
    Returns (version, created): when nothing changed since the newest version, that one."""
    _hand_made(suite)
    task_ids = suite_task_ids(suite)
    if not task_ids:
        raise ValidationError("The suite holds no task yet: add tasks (or tags) first.")
    pins = graders_in_force(task_ids)
    missing = [pk for pk in task_ids if pk not in pins]
    if missing:
        names = list(
            Task.objects.filter(pk__in=missing)
            .order_by("external_id")
            .values_list("external_id", flat=True)
        )
        raise _refused("have no published rubric, so the suite cannot be frozen", names)
    return _freeze(suite, pins, user)


@transaction.atomic
def suite_of_grader(*, grader: Grader, user=None) -> SuiteVersion:
    """The suite of one rubric, frozen with this grader: what a run over one rubric grades.
    A task rubric's suite holds its task; a template's holds every task of the project that
    has responses (what the template grades). Made once per rubric, versioned like any."""
    rubric = grader.version.rubric
    name = f"{rubric.title[:150]} (rubric {rubric.pk})"
    suite = Suite.objects.filter(project_id=rubric.project_id, rubric=rubric).first()
    if suite is None:
        try:
            with transaction.atomic():
                suite = Suite.objects.create(
                    project_id=rubric.project_id, name=name, rubric=rubric, created_by=user
                )
        except IntegrityError:  # made meanwhile, or a hand-made suite took the name
            suite = Suite.objects.filter(project_id=rubric.project_id, rubric=rubric).first()
            if suite is None:
                suite = Suite.objects.create(
                    project_id=rubric.project_id,
                    name=f"{name} #{grader.pk}",
                    rubric=rubric,
                    created_by=user,
                )
    if rubric.task_id:
        task_ids = [rubric.task_id]
    else:
        task_ids = list(
            Task.objects.filter(project_id=rubric.project_id, responses__isnull=False)
            .distinct()
            .values_list("pk", flat=True)
        )
        if not task_ids:
            raise ValidationError("There are no responses to grade for this rubric; import some.")
    suite.tasks.set(task_ids)
    version, _ = _freeze(suite, {pk: (grader.pk, grader.hash) for pk in task_ids}, user)
    return version


def _audit(action, suite: Suite, user, **details) -> None:
    from rubrics.audit import record

    record(
        action,
        actor=user,
        project=suite.project,
        target_type="suite",
        target_id=suite.pk,
        target_label=suite.name,
        details=details,
    )


# --- Reading suites ------------------------------------------------------------------------


def project_suites(project: Project, *, include_rubric_suites: bool = True):
    suites = Suite.objects.filter(project=project).select_related("rubric")
    if not include_rubric_suites:
        suites = suites.filter(rubric__isnull=True)
    return suites.order_by("rubric_id", "name")


def newest_versions(project: Project) -> list[SuiteVersion]:
    """The newest version of each of the project's hand-made or imported suites (not the
    suites of one rubric, which a run over that rubric makes), by suite name."""
    newest = (
        SuiteVersion.objects.filter(suite__project=project, suite__rubric__isnull=True)
        .values("suite_id")
        .annotate(n=Max("number"))
        .values_list("suite_id", "n")
    )
    wanted = {(suite_id, n) for suite_id, n in newest}
    versions = (
        SuiteVersion.objects.filter(suite_id__in={s for s, _ in wanted})
        .select_related("suite")
        .defer("manifest")
    )
    return sorted(
        (v for v in versions if (v.suite_id, v.number) in wanted), key=lambda v: v.suite.name
    )


def versions_of(suite: Suite):
    return (
        SuiteVersion.objects.filter(suite=suite)
        .select_related("created_by")
        .defer("manifest")
        .order_by("-number")
    )


def version_of(suite: Suite, number: int | None = None) -> SuiteVersion | None:
    """The suite's version `number`, or its newest when None; its manifest unread (its
    entries hold it as rows; 5,000 tasks make it a third of a megabyte of JSON)."""
    versions = SuiteVersion.objects.filter(suite=suite).defer("manifest")
    if number is None:
        return versions.order_by("-number").first()
    return versions.filter(number=number).first()


def pinned_graders(version: SuiteVersion) -> dict[int, int]:
    """{task id: grader id} of a frozen version."""
    return dict(SuiteEntry.objects.filter(version=version).values_list("task_id", "grader_id"))


@dataclass
class TaskChange:
    external_id: str
    old_grader: str
    new_grader: str
    criteria_added: list[str] = field(default_factory=list)
    criteria_removed: list[str] = field(default_factory=list)


@dataclass
class VersionDiff:
    old: SuiteVersion
    new: SuiteVersion
    added: list[str]
    removed: list[str]
    changed: list[TaskChange]

    @property
    def unchanged(self) -> int:
        return len(set(self.old.manifest) & set(self.new.manifest)) - len(self.changed)


def version_diff(old: SuiteVersion, new: SuiteVersion) -> VersionDiff:
    """What changed from `old` to `new`: tasks added or removed, tasks whose grader changed and,
    for those, the criteria (by text) added or removed."""
    a, b = old.manifest, new.manifest
    changed_ids = sorted(k for k in set(a) & set(b) if a[k] != b[k])
    specs = dict(
        Grader.objects.filter(
            hash__in={a[k] for k in changed_ids} | {b[k] for k in changed_ids}
        ).values_list("hash", "spec")
    )

    def texts(grader_hash: str) -> list[str]:
        return [c.get("text", "") for c in specs.get(grader_hash, {}).get("criteria", [])]

    changed = []
    for k in changed_ids:
        before, after = texts(a[k]), texts(b[k])
        changed.append(
            TaskChange(
                external_id=k,
                old_grader=a[k],
                new_grader=b[k],
                criteria_added=[t for t in after if t not in before],
                criteria_removed=[t for t in before if t not in after],
            )
        )
    return VersionDiff(
        old=old,
        new=new,
        added=sorted(set(b) - set(a)),
        removed=sorted(set(a) - set(b)),
        changed=changed,
    )


# --- Imports make suites ------------------------------------------------------------------

NEEDS_PUBLISHED = (
    "A suite version pins published graders: import with publish on (--publish), or publish "
    "the imported rubrics first. {n} of the imported rubric(s) would stay drafts."
)


@dataclass(frozen=True)
class SuiteImport:
    """What `suite_import` did: the file's import, and the suite version it froze (None when
    no suite was named)."""

    result: object  # rubrics.formats.ImportResult
    suite: Suite | None = None
    version: SuiteVersion | None = None
    created: bool = False  # False: nothing changed, the newest version already pins the same


def _suite_named(project: Project, name: str, user) -> Suite:
    name = _clean_name(name)
    suite = Suite.objects.filter(project=project, name=name).first()
    if suite is None:
        return suite_create(project=project, name=name, user=user)
    if suite.rubric_id is not None:
        raise ValidationError(
            {"suite": f"'{name}' is the suite of one rubric, made by runs; choose another name."}
        )
    return suite


@transaction.atomic
def suite_import(
    *,
    project: Project,
    upload,
    name: str,
    format: str,
    user=None,
    suite: str = "",
    publish: bool = False,
    mapping: dict[str, str] | None = None,
    title: str = "",
    task: str = "",
) -> SuiteImport:
    """Import a rubric file (rubrics.formats.import_file) and, when `suite` names one, add the
    file's tasks to that suite (made when new) and freeze a new version of it: the command,
    the import page and any other door call this. One transaction: a refused file, a rubric
    that cannot be published or a task the freeze refuses leaves nothing written.

    A suite version pins published graders, so a suite import without `publish` is refused
    unless every rubric it touched is already published (a re-import of an unchanged file).
    A PaperBench tree imported into a suite becomes the rubric of the task `task` (by
    default the tree's root id), since a suite holds tasks. A HealthBench file imported into
    a suite may hold tasks already in the project (a new release of the file): their changed
    rubrics get a new version, which the new suite version pins."""
    from rubrics import formats

    suite = str(suite or "").strip()
    if suite:
        _clean_name(suite)  # a bad name is refused before the file is read
    result = formats.import_file(
        project=project,
        upload=upload,
        name=name,
        format=format,
        user=user,
        mapping=mapping,
        title=title,
        publish=publish,
        task=task,
        own_task=bool(suite),
        reimport=bool(suite),
    )
    if not suite:
        return SuiteImport(result=result)
    if result.drafts:
        raise ValidationError({"suite": NEEDS_PUBLISHED.format(n=result.drafts)})
    target = _suite_named(project, suite, user)
    suite_add_tasks(suite=target, task_ids=result.task_ids, user=user)
    try:
        version, created = suite_freeze(suite=target, user=user)
    except ValidationError as exc:
        raise ValidationError({"suite": exc.messages}) from None
    return SuiteImport(result=result, suite=target, version=version, created=created)
