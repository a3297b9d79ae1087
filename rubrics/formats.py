"""Rubric import and export: HealthBench JSONL and PaperBench rubric trees.

Imports are all or nothing: one transaction, and the first bad line or node raises a
ValidationError whose key names the line (JSONL) or node path (tree) and the field. Fields
Assay has no column for are kept (on the task, rubric, group or criterion `extra`) and written
back on export, so import then export gives the same JSON values. (Images and files in a
HealthBench prompt are the exception: they are stored as Assay stores every file, an image
re-encoded, and written back as data: URIs of the stored bytes, `_hb_prompt`.)
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal

import openpyxl
from defusedxml import DefusedXmlException
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction

from rubrics import audit, bulk, services, uploads
from rubrics.compiler import number
from rubrics.files import parts
from rubrics.models import (
    AuditEvent,
    Criterion,
    CriterionGroup,
    Project,
    Rubric,
    RubricVersion,
    SuiteEntry,
    SuiteVersion,
    Task,
)

FORMATS = ("healthbench", "paperbench")
HB_TASK_FIELDS = ("prompt", "prompt_id", "rubrics")
HB_ITEM_FIELDS = ("criterion", "points", "tags")
# A criterion's scope over episodes, in HealthBench items and PaperBench leaves alike: written
# only when not the default (outcome), so files of plain-text rubrics stay as they were.
SCOPE_FIELDS = ("scope", "step_rule", "step_tool")
PB_NODE_FIELDS = ("id", "requirements", "weight", "sub_tasks")
MAX_DEPTH = 50


@dataclass(frozen=True)
class ImportResult:
    rubrics: int
    criteria: int
    published: int
    # The tasks the file holds (new or already in the project), in file order: what an import
    # into a suite adds to it.
    task_ids: tuple[int, ...] = ()
    # Rubric versions the import leaves unpublished (drafts): a suite cannot pin them.
    drafts: int = 0
    # HealthBench re-imports: tasks already in the project whose rubric got a new version.
    updated: int = 0


def _fail(where: str, message: str) -> ValidationError:
    return ValidationError({where: message})


def _relabel(exc: ValidationError, prefix: str) -> ValidationError:
    """A service's field errors, prefixed with the line or node they came from."""
    if hasattr(exc, "error_dict"):
        return ValidationError(
            {f"{prefix}{field}": messages for field, messages in exc.message_dict.items()}
        )
    return ValidationError({prefix.rstrip(": ."): exc.messages})


# --- HealthBench --------------------------------------------------------------------------


def _hb_item(item: object, where: str) -> services.CriterionInput:
    if not isinstance(item, dict):
        raise _fail(where, "Each rubric item is an object with criterion, points and tags.")
    for name in HB_ITEM_FIELDS:
        if name not in item:
            raise _fail(f"{where}.{name}", "This field is required.")
    text, points, tags = item["criterion"], item["points"], item["tags"]
    if isinstance(points, bool) or not isinstance(points, int | float):
        raise _fail(f"{where}.points", f"{points!r} is not a number.")
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise _fail(f"{where}.tags", "Tags are a list of strings.")
    try:
        clean = services.clean_criterion(text, points)
    except ValidationError as exc:
        raise _relabel(exc, f"{where}.") from None
    scope, step_rule, step_tool = _scope_of(item, where)
    extra = {k: v for k, v in item.items() if k not in HB_ITEM_FIELDS + SCOPE_FIELDS}
    # Kept verbatim (no stripping, no de-duplication) so the export gives the same values.
    return services.CriterionInput(
        text=text,
        points=clean.points,
        tags=tuple(tags),
        scope=scope,
        step_rule=step_rule,
        step_tool=step_tool,
        extra=extra,
    )


def _scope_of(item: dict, where: str) -> tuple[str, str, str]:
    """The scope fields of an item or leaf, checked as the editor checks them."""
    for name in SCOPE_FIELDS:
        if name in item and not isinstance(item[name], str):
            raise _fail(f"{where}.{name}", "Give it as a string.")
    return services.clean_scope(
        item.get("scope", ""),
        item.get("step_rule", ""),
        item.get("step_tool", ""),
        prefix=f"{where}.",
    )


def _scope_fields(c) -> dict:
    """A criterion's scope fields as the files write them: none for an outcome criterion."""
    scope = getattr(c, "scope", "") or "outcome"
    if scope == "outcome":
        return {}
    out = {"scope": scope}
    if scope == "step":
        out["step_rule"] = c.step_rule
        if c.step_tool:
            out["step_tool"] = c.step_tool
    return out


def _hb_rows(lines: Iterable[str | bytes]) -> Iterator[tuple[int, dict]]:
    for number_, line, problem in uploads.decoded_lines(lines):
        if problem:
            raise _fail(f"line {number_}", f"{problem[0].upper()}{problem[1:]}.")
        if not line.strip():
            continue
        try:
            row = uploads.loads(line)
        except uploads.JsonRefused as exc:
            raise _fail(f"line {number_}", f"{str(exc)[0].upper()}{str(exc)[1:]}.") from None
        if not isinstance(row, dict):
            raise _fail(f"line {number_}", "Each line is one JSON object (one task).")
        bad = uploads.row_text_problem(line, row)
        if bad:
            raise _fail(f"line {number_}: {bad[0]}", f"The text {bad[1]}.")
        yield number_, row


@dataclass
class _HbTask:
    line: int
    prompt_id: str
    messages: list[dict]
    items: list[services.CriterionInput]
    row: dict


def _hb_task(line_no: int, row: dict, seen: dict[str, int], files: parts.Intake) -> _HbTask:
    """One line checked whole, its images and files stored by `files` (the import's
    transaction takes them back when a later line is refused), before anything else is
    written."""
    where = f"line {line_no}"
    for name in HB_TASK_FIELDS:
        if name not in row:
            raise _fail(f"{where}: {name}", "This field is required.")
    prompt_id = row["prompt_id"]
    if not isinstance(prompt_id, str) or not prompt_id:
        raise _fail(f"{where}: prompt_id", "Give the task's id as a string.")
    if prompt_id in seen:
        raise _fail(f"{where}: prompt_id", f"'{prompt_id}' appears twice in the file.")
    seen[prompt_id] = line_no
    if not isinstance(row["rubrics"], list) or not row["rubrics"]:
        raise _fail(f"{where}: rubrics", "Give a non-empty list of rubric items.")
    items = [_hb_item(item, f"{where}: rubrics[{i}]") for i, item in enumerate(row["rubrics"])]
    try:
        services.clean_external_id(prompt_id, field="prompt_id")
        messages = services.validate_messages(row["prompt"], field="prompt", files=files)
        _hb_written_back(row["prompt"], messages)
    except ValidationError as exc:
        raise _relabel(exc, f"{where}: ") from None
    return _HbTask(line_no, prompt_id, messages, items, row)


# What an image or file part of a HealthBench prompt may hold: OpenAI's shape (an image_url's
# url, a file's file_data and filename; a filename beside an image, as Assay's parts carry
# it) or Assay's stored shape (sha256, kind, size). The export writes these back, so a key
# outside them would be dropped without a word: it is refused instead.
HB_PART_KEYS = {
    "image_url": {"type", "image_url", "file"},
    "file": {"type", "file"},
}
HB_URL_KEYS = {"url"}
HB_FILE_KEYS = {"file_data", "filename", "sha256", "kind", "size"}


def _hb_written_back(given: object, clean: list[dict]) -> None:
    """Refuse what the export could not write back as it was given: a message key other than
    role and content, a text part other than {"type": "text", "text": ...}, and keys an image
    or file part does not keep. (The file itself is written back as a data: URI of what
    Assay stored: an image is re-encoded, so its bytes differ from the ones sent.)"""
    if not isinstance(given, list):
        raise ValidationError({"prompt": "Give the prompt as a list of messages {role, content}."})
    for i, (raw, message) in enumerate(zip(given, clean, strict=True)):
        if set(raw) - {"role", "content"}:
            raise ValidationError({f"prompt[{i}]": "Messages carry only role and content."})
        if not isinstance(raw["content"], list):
            continue
        for k, (sent, part) in enumerate(zip(raw["content"], message["content"], strict=True)):
            at = f"prompt[{i}].content[{k}]"
            if part["type"] == "text":
                if sent != part:
                    raise ValidationError(
                        {at: 'A text part is {"type": "text", "text": "..."}, and nothing more.'}
                    )
                continue
            extra = sorted(set(sent) - HB_PART_KEYS[part["type"]])
            inner = sent.get("image_url") if part["type"] == "image_url" else None
            if isinstance(inner, dict):
                extra += [f"image_url.{k}" for k in sorted(set(inner) - HB_URL_KEYS)]
            meta = sent.get("file")
            if isinstance(meta, dict):
                extra += [f"file.{k}" for k in sorted(set(meta) - HB_FILE_KEYS)]
            if extra:
                raise ValidationError(
                    {
                        f"{at}.{extra[0]}": "Not kept: an image_url part holds image_url.url "
                        "(and file.filename), a file part file.file_data and file.filename."
                    }
                )


BATCH = 2000


@transaction.atomic
def import_healthbench(
    *,
    project: Project,
    lines: Iterable[str],
    user,
    publish: bool = False,
    reimport: bool = False,
) -> ImportResult:
    """Every line is checked before anything else is written (a prompt's images and files
    are stored as its line is read, so a refused line later takes them back with the
    transaction); then tasks, rubrics, versions and criteria go in a few bulk inserts, so the
    full public file (5,000 conversations, ~48,500 criteria) imports in seconds.

    A line whose prompt_id is a task already in the project is refused, unless `reimport`
    (an import into a suite: a new release of a file): then, when the prompt is the same, its
    HealthBench rubric gets a new version if the file's criteria differ from its newest
    version (and is left alone if not), so the suite's next version pins the new rubrics. A
    different prompt under a known id is refused either way."""
    seen: dict[str, int] = {}
    files = parts.Intake(project)  # a file on many lines is stored once
    parsed = [_hb_task(line_no, row, seen, files) for line_no, row in _hb_rows(lines)]
    if not parsed:
        raise _fail("file", "No tasks found: the file is empty.")
    existing = {
        task.external_id: task
        for task in Task.objects.filter(project=project, external_id__in=list(seen))
    }
    for t in parsed:
        task = existing.get(t.prompt_id)
        if task is not None and not reimport:
            raise _fail(
                f"line {t.line}: prompt_id",
                f"A task '{t.prompt_id}' is already in the project. (A new release of a file "
                "is imported into its suite, which gives changed rubrics a new version.)",
            )
        if task is not None and task.messages != t.messages:
            raise _fail(
                f"line {t.line}: prompt_id",
                f"A task '{t.prompt_id}' is already in the project with a different prompt; "
                "give the new conversation its own prompt_id.",
            )
    new = [t for t in parsed if t.prompt_id not in existing]
    task_ids = bulk.insert_rows(
        Task,
        (
            {
                "project_id": project.pk,
                "external_id": t.prompt_id,
                "title": t.prompt_id,
                "messages": t.messages,
                "tags": [x for x in t.row.get("example_tags") or [] if isinstance(x, str)],
                "extra": {k: v for k, v in t.row.items() if k not in HB_TASK_FIELDS},
            }
            for t in new
        ),
    )
    rubrics = Rubric.objects.bulk_create(
        [
            Rubric(
                project=project,
                task_id=task_id,
                title=f"HealthBench {t.prompt_id}"[:300],
                created_by=user,
                extra=_hb_rubric_extra(t),
            )
            for t, task_id in zip(new, task_ids, strict=True)
        ],
        batch_size=BATCH,
    )
    versions = RubricVersion.objects.bulk_create(
        [RubricVersion(rubric=rubric, number=1, created_by=user) for rubric in rubrics],
        batch_size=BATCH,
    )
    bulk.insert_rows(
        Criterion,
        (
            {"version_id": version.pk, "position": i, **item.model_fields()}
            for t, version in zip(new, versions, strict=True)
            for i, item in enumerate(t.items)
        ),
    )
    if versions:
        services.events_created(versions, user)
    to_publish = [(t, v) for t, v in zip(new, versions, strict=True)]
    updated = 0
    for t in parsed:
        task = existing.get(t.prompt_id)
        if task is None:
            continue
        version, changed = _hb_reimport(project, task, t, user)
        updated += changed
        if version.status != RubricVersion.Status.PUBLISHED:
            to_publish.append((t, version))
    published = drafts = 0
    for t, version in to_publish:
        if not publish:
            drafts += 1
            continue
        try:
            services.version_publish(version=version, user=user)
        except ValidationError as exc:
            raise _relabel(exc, f"line {t.line}: rubrics") from None
        published += 1
    ids = dict(zip((t.prompt_id for t in new), task_ids, strict=True))
    ids.update({external_id: task.pk for external_id, task in existing.items()})
    return ImportResult(
        len(parsed),
        sum(len(t.items) for t in parsed),
        published,
        task_ids=tuple(ids[t.prompt_id] for t in parsed),
        drafts=drafts,
        updated=updated,
    )


def _hb_rubric_extra(t: _HbTask) -> dict:
    return {
        "format": "healthbench",
        "keys": list(t.row.keys()),
        "item_keys": list(t.row["rubrics"][0].keys()),
    }


def _criterion_key(fields: dict) -> tuple:
    scope = tuple(fields[name] for name in SCOPE_FIELDS)
    return (fields["text"], fields["points"], list(fields["tags"]), scope, fields["extra"])


def _hb_reimport(project: Project, task: Task, t: _HbTask, user) -> tuple[RubricVersion, bool]:
    """A task already in the project, met again in a HealthBench file: the version of its
    HealthBench rubric that holds the file's criteria, and whether the import wrote it."""
    rubric = Rubric.objects.filter(task=task, extra__format="healthbench").order_by("-pk").first()
    if rubric is None:
        rubric = services.rubric_create(
            project=project,
            task=task,
            title=f"HealthBench {t.prompt_id}",
            user=user,
            criteria=t.items,
            extra=_hb_rubric_extra(t),
        )
        return rubric.versions.get(), True
    latest = rubric.versions.order_by("-number").first()
    current = [
        _criterion_key(
            {
                "text": c.text,
                "points": c.points,
                "tags": c.tags,
                "scope": c.scope,
                "step_rule": c.step_rule,
                "step_tool": c.step_tool,
                "extra": c.extra,
            }
        )
        for c in latest.criteria.order_by("position")
    ]
    wanted = [_criterion_key(item.model_fields()) for item in t.items]
    retired = latest.status == RubricVersion.Status.RETIRED
    if current == wanted and not retired and not latest.groups.exists():
        return latest, False
    try:
        draft = services.draft_for_edit(rubric=rubric, user=user)
        services.criteria_replace(version=draft, criteria=t.items, user=user)
    except ValidationError as exc:
        raise _relabel(exc, f"line {t.line}: rubrics: ") from None
    return draft, True


def _ordered(data: dict, keys: list[str]) -> dict:
    """`data` with the keys in their original order first."""
    out = {k: data[k] for k in keys if k in data}
    out.update({k: v for k, v in data.items() if k not in out})
    return out


def _latest_versions(rubrics) -> dict[int, RubricVersion]:
    latest: dict[int, RubricVersion] = {}
    for version in RubricVersion.objects.filter(rubric__in=rubrics).order_by("rubric", "number"):
        latest[version.rubric_id] = version  # the newest wins
    return latest


def _task_rubrics_newest(project: Project, rubric: int | None = None):
    """What the exports walk: the project's task rubrics (in import order), or only the task
    rubric `rubric` (a pk), each rubric's newest version, and that version's criteria (with
    their groups) in order."""
    chosen = Rubric.objects.filter(project=project, task__isnull=False)
    if rubric is not None:
        chosen = chosen.filter(pk=rubric)
    rubrics = list(chosen.select_related("task").order_by("task_id", "pk"))
    latest = _latest_versions(rubrics)
    by_version: dict[int, list[Criterion]] = {}
    for c in (
        Criterion.objects.filter(version__in=latest.values())
        .select_related("group")
        .order_by("position")
    ):
        by_version.setdefault(c.version_id, []).append(c)
    return rubrics, latest, by_version


def _hb_line(task: Task, rubric: Rubric, criteria) -> str:
    """One HealthBench line: the task's fields and `criteria` as its rubric items, keys in the
    order the imported file had them."""
    item_keys = rubric.extra.get("item_keys", list(HB_ITEM_FIELDS))
    items = [
        _ordered(
            {
                **c.extra,
                "criterion": c.text,
                "points": number(c.points),
                "tags": list(c.tags),
                **_scope_fields(c),
            },
            item_keys,
        )
        for c in criteria
    ]
    row = {
        **task.extra,
        "prompt": _hb_prompt(task),
        "prompt_id": task.external_id,
        "rubrics": items,
    }
    return json.dumps(_ordered(row, rubric.extra.get("keys", [])), ensure_ascii=False)


def _hb_prompt(task: Task) -> list[dict]:
    """A task's messages as a HealthBench file carries them: a file has no bundle beside it,
    so each image and file part holds its file as a data: URI (OpenAI's shape, what HealthBench
    tooling sends a model) and its name; the import takes them back into any project, and
    into this one as the same files (`store.put` keeps a held image's hash)."""
    out = []
    for i, message in enumerate(task.messages):
        content = message.get("content")
        if not isinstance(content, list) or not parts.refs(content):
            out.append(message)
            continue
        written = []
        for k, part in enumerate(content):
            found = parts.refs([part])
            if not found:
                written.append(part)
                continue
            try:
                inlined = parts.inline(part)
            except FileNotFoundError:
                raise _fail(
                    f"prompt_id {task.external_id}: prompt[{i}].content[{k}]",
                    f"'{found[0].name}' (sha256 {found[0].sha256[:12]}) is gone from storage.",
                ) from None
            if inlined["type"] == "image_url":
                inlined["file"] = {"filename": found[0].name}
            written.append(inlined)
        out.append({**message, "content": written})
    return out


def export_healthbench(*, project: Project, rubric: int | None = None) -> Iterator[str]:
    """One JSON line per task with a rubric, in import order, from each rubric's newest version;
    with `rubric` (a task rubric's pk), that rubric's line only."""
    rubrics, latest, by_version = _task_rubrics_newest(project, rubric)
    done: set[int] = set()
    for rubric in rubrics:
        if rubric.task_id in done or rubric.pk not in latest:
            continue
        done.add(rubric.task_id)
        yield _hb_line(rubric.task, rubric, by_version.get(latest[rubric.pk].pk, []))


SUITE_CHUNK = 500


def export_healthbench_suite(*, version: SuiteVersion) -> Iterator[str]:
    """One JSON line per task of a frozen suite version, in task order, each with the rubric
    of the grader the version pins (its criteria as that grader compiled them, a template's
    included), not the task's newest: importing the file gives the same graders back."""
    entries = (
        SuiteEntry.objects.filter(version=version)
        .select_related("task", "grader__version__rubric")
        .order_by("task_id")
    )
    chunk: list[SuiteEntry] = []

    def lines(chunk: list[SuiteEntry]) -> Iterator[str]:
        ids = [c["id"] for e in chunk for c in e.grader.spec.get("criteria", [])]
        stored = Criterion.objects.in_bulk(ids)
        for e in chunk:
            criteria = [
                stored.get(c["id"]) or _SpecCriterion(c) for c in e.grader.spec.get("criteria", [])
            ]
            yield _hb_line(e.task, e.grader.version.rubric, criteria)

    for entry in entries.iterator(chunk_size=SUITE_CHUNK):
        chunk.append(entry)
        if len(chunk) == SUITE_CHUNK:
            yield from lines(chunk)
            chunk = []
    if chunk:
        yield from lines(chunk)


class _SpecCriterion:
    """A criterion as its grader's spec holds it (when its row is gone)."""

    def __init__(self, spec: dict):
        self.text = spec.get("text", "")
        self.points = Decimal(str(spec.get("points", 0)))
        self.tags = spec.get("tags", [])
        self.scope = spec.get("scope", "outcome")
        self.step_rule = spec.get("step_rule", "")
        self.step_tool = spec.get("step_tool", "")
        self.extra: dict = {}


# --- PaperBench ---------------------------------------------------------------------------


def _pb_weight(value: object, where: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(f"{where}.weight", f"{value!r} is not a number.")
    try:
        return services.parse_weight(value, field=f"{where}.weight")
    except ValidationError as exc:
        raise exc from None


def _pb_check(node: object, where: str, depth: int) -> None:
    """Validate the whole tree before writing anything."""
    if depth > MAX_DEPTH:
        raise _fail(where, f"The tree is deeper than {MAX_DEPTH} levels.")
    if not isinstance(node, dict):
        raise _fail(where, "Each node is an object with id, requirements, weight, sub_tasks.")
    for name in PB_NODE_FIELDS:
        if name not in node:
            raise _fail(f"{where}.{name}", "This field is required.")
    if not isinstance(node["id"], str) or not node["id"]:
        raise _fail(f"{where}.id", "Give the node's id as a string.")
    if not isinstance(node["requirements"], str) or not node["requirements"].strip():
        raise _fail(f"{where}.requirements", "Say what the node requires.")
    _pb_weight(node["weight"], where)
    if not isinstance(node["sub_tasks"], list):
        raise _fail(f"{where}.sub_tasks", "Give a list of child nodes (empty for a leaf).")
    if not node["sub_tasks"]:
        _scope_of(node, where)  # a leaf is a criterion: its scope is checked before any write
    for i, child in enumerate(node["sub_tasks"]):
        _pb_check(child, f"{where}.sub_tasks[{i}]", depth + 1)


@transaction.atomic
def import_paperbench(
    *,
    project: Project,
    text: str,
    user,
    title: str = "",
    publish: bool = False,
    task: str = "",
    own_task: bool = False,
) -> ImportResult:
    """A PaperBench tree as one rubric. With `task` (an external id), or `own_task` (the
    root's id), the tree is that task's rubric: the task is made when it is new, its prompt
    the root's requirements (what an import into a suite needs, since a suite holds tasks);
    without, a rubric of the project."""
    try:
        # Each tree level is an object and its sub_tasks list: two levels of JSON.
        root = uploads.loads(text.removeprefix("\ufeff"), max_depth=2 * MAX_DEPTH + 4)
    except uploads.JsonRefused as exc:
        raise _fail("root", f"{str(exc)[0].upper()}{str(exc)[1:]}.") from None
    _pb_check(root, "root", 0)
    bad = uploads.row_text_problem(text, root)
    if bad:
        raise _fail(f"root.{bad[0]}", f"The text {bad[1]}.")
    title = title or root["requirements"].strip().splitlines()[0][:300]
    task = task or (root["id"] if own_task else "")
    owner = _paperbench_task(project, task, root, title, user) if task else None
    rubric = services.rubric_create(
        project=project,
        task=owner,
        title=title,
        user=user,
        extra={"format": "paperbench"},
    )
    version = rubric.versions.get()
    leaves: list[Criterion] = []

    def extra_of(node: dict, known: tuple = PB_NODE_FIELDS) -> dict:
        return {k: v for k, v in node.items() if k not in known}

    def walk(node: dict, parent: CriterionGroup | None) -> None:
        weight = Decimal(str(node["weight"]))
        if not node["sub_tasks"]:
            scope, step_rule, step_tool = _scope_of(node, "")
            leaves.append(
                Criterion(
                    version=version,
                    position=len(leaves),
                    text=node["requirements"],
                    points=Decimal(1),
                    weight=weight,
                    group=parent,
                    key=node["id"],
                    scope=scope,
                    step_rule=step_rule,
                    step_tool=step_tool,
                    extra=extra_of(node, PB_NODE_FIELDS + SCOPE_FIELDS),
                )
            )
            return
        group = CriterionGroup.objects.create(
            version=version,
            parent=parent,
            title=node["requirements"],
            weight=weight,
            position=len(leaves),  # sorts before the leaves it holds, after earlier ones
            key=node["id"],
            extra=extra_of(node),
        )
        for child in node["sub_tasks"]:
            walk(child, group)

    walk(root, None)
    Criterion.objects.bulk_create(leaves)
    published = 0
    if publish:
        services.version_publish(version=version, user=user)
        published = 1
    return ImportResult(
        1,
        len(leaves),
        published,
        task_ids=(owner.pk,) if owner else (),
        drafts=1 - published,
    )


def _paperbench_task(project: Project, external_id: str, root: dict, title: str, user) -> Task:
    found = Task.objects.filter(project=project, external_id=external_id.strip()).first()
    if found is not None:
        return found
    try:
        return services.task_create(
            project=project,
            external_id=external_id,
            title=title,
            messages=root["requirements"],
            user=user,
        )
    except ValidationError as exc:
        raise _relabel(exc, "task: ") from None


def export_paperbench(*, rubric: Rubric) -> dict:
    """The newest version of a tree rubric as a PaperBench node tree."""
    version = rubric.versions.order_by("-number").first()
    if version is None:
        raise ValidationError({"rubric": "The rubric has no version."})
    groups = list(version.groups.all())
    criteria = list(version.criteria.order_by("position"))
    children: dict[int | None, list[tuple[int, int, dict]]] = {}

    def leaf(c: Criterion) -> dict:
        return {
            **c.extra,
            "id": c.key or str(c.lineage),
            "requirements": c.text,
            "weight": number(c.weight),
            **_scope_fields(c),
            "sub_tasks": [],
        }

    for c in criteria:
        children.setdefault(c.group_id, []).append((c.position, 1, leaf(c)))
    nodes: dict[int, dict] = {}
    for g in groups:
        nodes[g.pk] = {
            **g.extra,
            "id": g.key or f"group-{g.pk}",
            "requirements": g.title,
            "weight": number(g.weight),
            "sub_tasks": [],
        }
    for g in groups:
        children.setdefault(g.parent_id, []).append((g.position, 0, nodes[g.pk]))
    for pk, node in nodes.items():
        node["sub_tasks"] = [n for _, _, n in sorted(children.get(pk, []), key=lambda t: t[:2])]
    top = [n for _, _, n in sorted(children.get(None, []), key=lambda t: t[:2])]
    if len(top) == 1:
        return top[0]
    # A flat or multi-rooted rubric gets a synthetic root, as PaperBench needs one.
    return {
        "id": f"rubric-{rubric.pk}",
        "requirements": rubric.title,
        "weight": 1,
        "sub_tasks": top,
    }


def export_recorded(*, project: Project, format: str, actor=None, rubric: Rubric | None = None):
    """Audit a rubrics export (the page or `manage.py export_rubrics`)."""
    audit.record(
        AuditEvent.Action.RUBRICS_EXPORTED,
        actor=actor,
        project=project,
        target_type="rubric" if rubric else "project",
        target_id=rubric.pk if rubric else project.pk,
        target_label=rubric.title if rubric else project.name,
        details={"format": format, **({"os_user": audit.os_user()} if actor is None else {})},
    )


def task_rubric_for_export(*, project: Project, pk: int) -> Rubric:
    """The task rubric `pk` of `project`, to export on its own (HealthBench JSONL)."""
    rubric = Rubric.objects.filter(project=project, task__isnull=False, pk=pk).first()
    if rubric is None:
        raise ValidationError({"rubric": f"No task rubric {pk} in this project."})
    return rubric


def tree_rubric_for_export(*, project: Project, pk: int | None) -> Rubric:
    """The rubric to export as a tree: the one named, or the project's only tree rubric."""
    rubrics = Rubric.objects.filter(project=project)
    if pk is not None:
        rubric = rubrics.filter(pk=pk).first()
        if rubric is None:
            raise ValidationError({"rubric": f"No rubric {pk} in this project."})
        return rubric
    trees = list(rubrics.filter(extra__format="paperbench")[:2])
    if len(trees) != 1:
        raise ValidationError(
            {"rubric": f"The project has {len(trees) or 'no'} tree rubrics; name one with its id."}
        )
    return trees[0]


# --- Spreadsheets (CSV) -------------------------------------------------------------------


# A spreadsheet runs a cell that starts with one of these as a formula (OWASP, "CSV
# injection"): the export prefixes such a cell with an apostrophe, which spreadsheets show
# as text, and the import takes exactly that apostrophe off again.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"-?\d+(\.\d+)?")


def guard_cell(value: str) -> str:
    """`value` safe to open in a spreadsheet: an apostrophe before a formula-like start (and
    before an apostrophe that would otherwise be read back as a guard). Plain numbers such
    as -5 are numbers in every spreadsheet, never formulas, and stay as they are."""
    if _PLAIN_NUMBER.fullmatch(value):
        return value
    if value.lstrip("'").startswith(FORMULA_STARTS):
        return "'" + value
    return value


def unguard_cell(value: str) -> str:
    """What `guard_cell` was given: one apostrophe off where the guard put one."""
    if value.startswith("'") and value.lstrip("'").startswith(FORMULA_STARTS):
        return value[1:]
    return value


def export_spreadsheet(*, project: Project) -> Iterator[str]:
    """CSV lines in the importer's columns (SHEET_FIELDS): one row per criterion of each task's
    rubric, newest version, the task's first user turn as the prompt on its first row. Every
    cell passes `guard_cell`, so opening the file in a spreadsheet runs nothing."""
    rubrics, latest, by_version = _task_rubrics_newest(project)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")

    def line(cells) -> str:
        out.seek(0)
        out.truncate()
        writer.writerow([guard_cell(str(cell)) for cell in cells])
        return out.getvalue()

    yield line(SHEET_FIELDS)
    done: set[int] = set()
    for rubric in rubrics:
        if rubric.task_id in done or rubric.pk not in latest:
            continue
        done.add(rubric.task_id)
        task: Task = rubric.task
        prompt = next(
            (parts.text_of(m["content"]) for m in task.messages if m["role"] == "user"), ""
        )
        for i, c in enumerate(by_version.get(latest[rubric.pk].pk, [])):
            yield line(
                [
                    task.external_id,
                    prompt if i == 0 else "",
                    c.text,
                    number(c.points),
                    ", ".join(c.tags),
                    "yes" if c.gate else "",
                    c.group.title if c.group else "",
                ]
            )


def _check_columns(count: int, line: int) -> None:
    if count > settings.SHEET_MAX_COLUMNS:
        raise _fail(
            f"line {line}",
            f"{count:,} columns; a rubric sheet has at most {settings.SHEET_MAX_COLUMNS:,} "
            "(ASSAY_SHEET_MAX_COLUMNS).",
        )


def _check_rows(count: int) -> None:
    if count > settings.SHEET_MAX_ROWS:
        raise _fail(
            "file",
            f"More than {settings.SHEET_MAX_ROWS:,} rows; a rubric sheet has at most "
            f"{settings.SHEET_MAX_ROWS:,} (ASSAY_SHEET_MAX_ROWS).",
        )


def _sheet_rows(reader: csv.DictReader) -> Iterator[dict]:
    """Rows of a CSV sheet, counted as they stream, with csv's own errors named by line."""
    count = 0
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            # csv counts a line once it is read whole: the bad one is the next.
            raise _fail(f"line {reader.line_num + 1}", f"Not readable as CSV ({exc}).") from None
        count += 1
        _check_rows(count)
        extra = row.get(None)  # cells beyond the header's columns
        if extra:
            _check_columns(len(row) - 1 + len(extra), reader.line_num)
        yield row


SHEET_FIELDS = ("task_id", "prompt", "criterion", "points", "tags", "gate", "group")
SHEET_REQUIRED = ("task_id", "criterion")
# With no points column (and none mapped), every criterion is worth one point: expert sheets
# often weigh criteria alike and write no points at all.
POINTS_WHEN_ABSENT = "1"
# The words expert sheets use to mark a hurdle, and to mark a criterion that is not one
# (compared without case and surrounding spaces). Anything else in the gate column is an error.
GATE_YES = frozenset(
    ["1", "true", "yes", "y", "x", "gate", "hurdle", "critical", "must", "must have"]
    + ["required", "essential", "mandatory"]
)
GATE_NO = frozenset(
    ["", "0", "false", "no", "n", "not", "not hurdle", "not a hurdle", "optional"]
    + ["nice to have", "-"]
)


def parse_gate(value: str | None, *, where: str) -> bool:
    """A gate cell: a hurdle word, a not-a-hurdle word or empty; anything else is refused."""
    word = " ".join((value or "").lower().split())
    if word in GATE_YES:
        return True
    if word in GATE_NO:
        return False
    raise _fail(
        where,
        f"'{value}' is not a gate value: write one of {', '.join(sorted(GATE_YES))} for a "
        f"gate, or one of {', '.join(sorted(w for w in GATE_NO if w))} (or nothing) for none "
        "(case does not matter).",
    )


def parse_mapping(pairs: Iterable[str]) -> dict[str, str]:
    """FIELD=COLUMN pairs (e.g. criterion="Criterion text") onto the default identity map."""
    mapping = {name: name for name in SHEET_FIELDS}
    for pair in pairs:
        field_name, sep, column = pair.partition("=")
        field_name = field_name.strip()
        if not sep or field_name not in SHEET_FIELDS or not column.strip():
            raise _fail(
                "map", f"'{pair}': use FIELD=COLUMN with FIELD one of {', '.join(SHEET_FIELDS)}."
            )
        mapping[field_name] = column.strip()
    return mapping


@transaction.atomic
def import_spreadsheet(
    *, project: Project, text: str, mapping: dict[str, str], user, publish: bool = False
) -> ImportResult:
    """One criterion per row, grouped into tasks by the task column; new tasks need a prompt."""
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise _fail(f"line {line}", "Holds a NUL character (\\x00), which cannot be stored.")
    reader = csv.DictReader(io.StringIO(text))
    try:
        headers = reader.fieldnames or []
    except csv.Error as exc:
        raise _fail("line 1", f"Not readable as CSV ({exc}).") from None
    _check_columns(len(headers), 1)
    # The points column may be absent unless it was mapped to a column by name.
    points_given = mapping["points"] in headers or mapping["points"] != "points"
    for name in (*SHEET_REQUIRED, *(["points"] if points_given else [])):
        if mapping[name] not in headers:
            raise _fail(
                f"line 1: column '{mapping[name]}'",
                f"Not found; map the {name} column with --map {name}=COLUMN "
                f"(columns: {', '.join(headers) or 'none'}).",
            )
    tasks: dict[str, dict] = {}
    for raw_row in _sheet_rows(reader):
        row = {k: unguard_cell(v) if isinstance(v, str) else v for k, v in raw_row.items()}
        line = reader.line_num
        external_id = (row.get(mapping["task_id"]) or "").strip()
        if not external_id:
            raise _fail(f"line {line}: column '{mapping['task_id']}' (task_id)", "Give a task id.")
        entry = tasks.setdefault(external_id, {"prompt": "", "rows": [], "line": line})
        prompt = (row.get(mapping["prompt"]) or "").strip()
        if prompt and not entry["prompt"]:
            entry["prompt"] = prompt
        where = f"line {line}: column '{mapping['criterion']}'"
        gate = parse_gate(
            row.get(mapping["gate"]), where=f"line {line}: column '{mapping['gate']}' (gate)"
        )
        try:
            clean = services.clean_criterion(
                row.get(mapping["criterion"]) or "",
                (row.get(mapping["points"]) or "").strip() if points_given else POINTS_WHEN_ABSENT,
                tags=row.get(mapping["tags"]) or "",
                gate=gate,
            )
        except ValidationError as exc:
            fields = {
                "text": f"line {line}: column '{mapping['criterion']}' (criterion)",
                "points": f"line {line}: column '{mapping['points']}' (points)",
                "tags": f"line {line}: column '{mapping['tags']}' (tags)",
            }
            raise ValidationError(
                {fields.get(k, where): v for k, v in exc.message_dict.items()}
            ) from None
        entry["rows"].append((clean, (row.get(mapping["group"]) or "").strip()))
    if not tasks:
        raise _fail("file", "No rows found under the header line.")
    existing = {
        t.external_id: t for t in Task.objects.filter(project=project, external_id__in=tasks)
    }
    criteria_count = published = 0
    task_ids: list[int] = []
    for external_id, entry in tasks.items():
        task = existing.get(external_id)
        if task is None:
            if not entry["prompt"]:
                raise _fail(
                    f"line {entry['line']}: column '{mapping['prompt']}' (prompt)",
                    f"Task '{external_id}' is new: give its prompt.",
                )
            try:
                task = services.task_create(
                    project=project,
                    external_id=external_id,
                    title=external_id,
                    messages=entry["prompt"],
                    user=user,
                )
            except ValidationError as exc:
                raise _relabel(exc, f"line {entry['line']}: ") from None
        rubric = services.rubric_create(
            project=project,
            task=task,
            title=f"Rubric for {external_id}",
            user=user,
            criteria=[clean for clean, _ in entry["rows"]],
            extra={"format": "spreadsheet"},
        )
        version = rubric.versions.get()
        groups: dict[str, CriterionGroup] = {}
        by_position = {c.position: c for c in version.criteria.all()}
        grouped = []
        for position, (_, group_name) in enumerate(entry["rows"]):
            if group_name:
                if group_name not in groups:
                    groups[group_name] = CriterionGroup.objects.create(
                        version=version, title=group_name, position=position
                    )
                criterion = by_position[position]
                criterion.group = groups[group_name]
                grouped.append(criterion)
        Criterion.objects.bulk_update(grouped, ["group"])
        criteria_count += len(entry["rows"])
        task_ids.append(task.pk)
        if publish:
            try:
                services.version_publish(version=version, user=user)
            except ValidationError as exc:
                raise _relabel(exc, f"line {entry['line']}: rubric for '{external_id}': ") from None
            published += 1
    return ImportResult(
        len(tasks),
        criteria_count,
        published,
        task_ids=tuple(task_ids),
        drafts=len(tasks) - published,
    )


def xlsx_as_csv(data: bytes, name: str = "workbook.xlsx") -> str:
    """The first worksheet of an XLSX workbook as CSV text, so one importer serves both.

    The zip is inspected before openpyxl opens it (uploads.check_xlsx), and rows and columns
    are counted as they stream. openpyxl parses the XML with defusedxml, so a DTD with
    entities (a billion laughs, an external entity) is refused, never expanded or fetched."""
    uploads.check_xlsx(data, name=name)
    out = io.StringIO()
    writer = csv.writer(out)
    try:
        workbook = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
        # Counted as rows stream, not from the dimension the sheet declares: tools often
        # declare a grid far larger than the cells they wrote.
        for count, row in enumerate(workbook.worksheets[0].iter_rows(values_only=True), 1):
            _check_rows(count)
            cells = list(row)
            while cells and cells[-1] in (None, ""):
                cells.pop()  # openpyxl pads each row to the declared width
            _check_columns(len(cells), count)
            writer.writerow(_xlsx_cells(cells))
        workbook.close()
    except ValidationError:
        raise
    except Exception as exc:  # noqa: BLE001 -- any unreadable workbook is the same error to a person
        while exc.__cause__ is not None:  # openpyxl wraps what its XML parser raised
            exc = exc.__cause__
        why = exc.__class__.__name__
        if isinstance(exc, DefusedXmlException):
            why += ": its XML declares entities or a DTD, which are refused"
        raise _fail("file", f"'{name}' is not a readable XLSX workbook ({why}).") from None
    return out.getvalue()


def _xlsx_cells(row: list) -> list[str]:
    cells = []
    for value in row:
        if value is None:
            cells.append("")
        elif isinstance(value, float) and value.is_integer():
            cells.append(str(int(value)))
        else:
            cells.append(str(value).replace("\r\n", " ").replace("\n", " "))
    return cells


# --- One door for every rubric file (the page and `manage.py import_rubrics`) ---------------

SHEET_FORMATS = ("csv", "xlsx")
ALL_FORMATS = (*FORMATS, *SHEET_FORMATS)
EXPECTED = {
    "healthbench": "HealthBench JSONL text",
    "paperbench": "a PaperBench JSON tree",
    "csv": "CSV text",
}


def _utf8(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise _fail(
            f"line {line}", f"'{name}' is not UTF-8 text (byte {exc.start + 1} of the file)."
        ) from None


def import_file(
    *,
    project: Project,
    upload,
    name: str,
    format: str,
    user,
    mapping: dict[str, str] | None = None,
    title: str = "",
    publish: bool = False,
    task: str = "",
    own_task: bool = False,
    reimport: bool = False,
) -> ImportResult:
    """Check a rubric file's size and type, then import it in the named format: all or nothing.

    The file is read whole (every format is checked whole before anything is written), so it
    is refused by its size first: ASSAY_RUBRIC_UPLOAD_MAX_BYTES."""
    if format not in ALL_FORMATS:
        raise _fail("format", f"Choose one of {', '.join(ALL_FORMATS)}.")
    uploads.check_size(
        upload,
        name=name,
        limit=settings.RUBRIC_UPLOAD_MAX_BYTES,
        setting="ASSAY_RUBRIC_UPLOAD_MAX_BYTES",
        what="rubric imports",
    )
    upload.seek(0)
    data = upload.read()
    if format == "xlsx":
        text = xlsx_as_csv(data, name)
    else:
        upload.seek(0)
        uploads.check_text(upload, name=name, expected=EXPECTED[format])
        if format == "healthbench":
            return import_healthbench(
                project=project,
                lines=io.BytesIO(data),
                user=user,
                publish=publish,
                reimport=reimport,
            )
        text = _utf8(data, name)
        if format == "paperbench":
            return import_paperbench(
                project=project,
                text=text,
                user=user,
                title=title,
                publish=publish,
                task=task,
                own_task=own_task,
            )
    return import_spreadsheet(
        project=project,
        text=text,
        mapping=mapping or parse_mapping([]),
        user=user,
        publish=publish,
    )
