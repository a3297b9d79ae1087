"""Reads for projects, tasks and rubrics, with their permission checks."""

from __future__ import annotations

import difflib
import functools
import re
from dataclasses import dataclass, field

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.storage import default_storage
from django.db import connection
from django.db.models import Count, Prefetch, Q, Sum
from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from rubrics import compiler, forms, wording
from rubrics.models import (
    Criterion,
    CriterionGroup,
    Grader,
    Invitation,
    Membership,
    Project,
    ReferenceDeliverable,
    ReviewComment,
    Rubric,
    RubricEvent,
    RubricVersion,
    Suite,
    SuiteEntry,
    SuiteVersion,
    Task,
)
from rubrics.permissions import Perm, check, role_allows
from rubrics.rows import Rows


def memberships_for_user(user):
    return (
        Membership.objects.filter(user=user)
        .select_related("project")
        .annotate(
            task_count=Count("project__tasks", distinct=True),
            rubric_count=Count("project__rubrics", distinct=True),
        )
        .order_by("project__name")
    )


def project_members(project: Project):
    return Membership.objects.filter(project=project).select_related("user").order_by("role")


def project_invitations(project: Project):
    """Pending invitations, by name: the admin cannot tell which names are users'."""
    return Invitation.objects.filter(project=project).select_related("invited_by")


def user_invitations(user):
    """The invitations waiting for `user`'s answer."""
    return Invitation.objects.filter(user=user).select_related("project", "invited_by")


def member_for(project: Project, username: str) -> Membership:
    """A member of `project` (the caller checked the project); anyone else is a 404."""
    return get_object_or_404(
        Membership.objects.select_related("user"), project=project, user__username=username
    )


def project_tasks(project: Project):
    return Task.objects.filter(project=project).annotate(
        response_count=Count("responses", distinct=True)
    )


def project_rubrics(project: Project):
    return (
        Rubric.objects.filter(project=project)
        .select_related("task")
        .annotate(
            version_count=Count("versions", distinct=True),
            published_count=Count(
                "versions", filter=Q(versions__status=RubricVersion.Status.PUBLISHED), distinct=True
            ),
        )
    )


def published_graders(project: Project):
    return (
        Grader.objects.filter(version__rubric__project=project)
        .select_related("version__rubric__task")
        .order_by("version__rubric__title", "-version__number")
    )


# A grader search answers at most this many matches: a picker, not a list of 5,000.
GRADER_MATCHES = 20


def _graders_matching(project: Project, query: str):
    """The project's published graders whose rubric title or task external id contains `query`
    (any case), or whose hash starts with it; all of them for an empty query."""
    query = str(query or "").strip()[:200]
    graders = published_graders(project).defer("spec")
    if query:
        graders = graders.filter(
            Q(version__rubric__title__icontains=query)
            | Q(version__rubric__task__external_id__icontains=query)
            | Q(hash__startswith=query.lower())
        )
    return graders


def grader_search(project: Project, query: str, *, limit: int = GRADER_MATCHES):
    """Up to `limit` published graders of the project matching `query` (`_graders_matching`):
    the run form's picker. Returns (graders, whether more matched)."""
    found = list(_graders_matching(project, query)[: limit + 1])
    return found[:limit], len(found) > limit


def grader_picked(project: Project, *, picked: str = "", typed: str = "") -> Grader:
    """The one published grader the run form's picker names: `picked` (the radio button, a
    hash) and `typed` (the search box). With JavaScript the radios listed are the box's
    matches, so a picked one is among them; without it the box is a plain text field: a hash,
    its first characters, a title or a task's external id that matches exactly one grader.
    So a radio the box does not match gives way to the box (the page's first radio stays
    picked while a person types a hash with no script running). A ValidationError naming
    `grader` when nothing, or more than one, is named."""
    typed = str(typed or "").strip()[:200]
    published = published_graders(project).defer("spec")
    if not typed:
        grader = by_hash(published, picked) if picked else None
        if grader is None:
            raise ValidationError(
                {"grader": "No published rubric version has that grader hash."}
                if picked
                else {"grader": "Pick one rubric version."}
            )
        return grader
    matching = _graders_matching(project, typed)
    if picked:
        try:
            grader = by_hash(matching, picked)
        except ValidationError:
            grader = None
        if grader is not None:
            return grader
    found = list(matching[:2])
    if len(found) == 1:
        return found[0]
    raise ValidationError(
        {
            "grader": f"Several published rubric versions match “{typed}”: pick one below, "
            "or type more of its name or hash."
            if found
            else f"No published rubric version matches “{typed}”."
        }
    )


def task_for(user, project: Project, external_id: str, perm: Perm = Perm.VIEW) -> Task:
    check(user, project, perm)
    return get_object_or_404(Task, project=project, external_id=external_id)


def task_has_responses(task: Task) -> bool:
    """Whether responses answer the task: then its prompt (messages, context) is frozen.
    Through the reverse relation, so `rubrics` names no model of `annotation`."""
    return task.responses.exists()


def rubric_for(user, pk: int, perm: Perm) -> Rubric:
    """The rubric `pk` if `user` may `perm` in its project; 404 for non-members."""
    rubric = get_object_or_404(Rubric.objects.select_related("project", "task", "template"), pk=pk)
    rubric.project.role = check(user, rubric.project, perm)
    return rubric


def criterion_for(user, pk: int, perm: Perm) -> Criterion:
    criterion = get_object_or_404(
        Criterion.objects.select_related("version__rubric__project"), pk=pk
    )
    check(user, criterion.version.rubric.project, perm)
    return criterion


# --- Content hashes: the whole SHA-256, or a unique prefix of it ------------------------------

HASH_PREFIX_MIN = 12  # pages show this much of a hash: it names the object everywhere
_HEX = frozenset("0123456789abcdef")


def by_hash(queryset, value: str, *, field: str = "hash", param: str = "grader"):
    """The object of `queryset` whose `field` (a SHA-256 in hex) is `value` or starts with it,
    or None. Every door that takes a grader's hash (URL, filter, body) calls this, so the 12
    characters a page shows work wherever the full hash does. A value that is
    not hex, is shorter than 12 characters or starts more than one hash is a ValidationError
    naming `param` and saying which."""
    value = value.strip().lower()
    if not value or not set(value) <= _HEX or len(value) > 64:
        raise ValidationError(
            {
                param: f"'{value[:80]}' is not a hash: give its 64 hex characters, or the "
                f"first {HASH_PREFIX_MIN} or more."
            }
        )
    if len(value) < HASH_PREFIX_MIN:
        raise ValidationError(
            {
                param: f"A hash prefix needs at least {HASH_PREFIX_MIN} hex characters; "
                f"'{value}' has {len(value)}."
            }
        )
    lookup = field if len(value) == 64 else f"{field}__startswith"
    found = list(queryset.filter(**{lookup: value})[:2])
    if len(found) > 1:
        raise ValidationError(
            {param: f"'{value}' is the start of more than one hash; give more characters."}
        )
    return found[0] if found else None


def grader_for(user, grader_hash: str, perm: Perm) -> Grader:
    """The grader named by its hash or a unique prefix of it (`by_hash`); 404 for none."""
    grader = by_hash(
        Grader.objects.select_related("version__rubric__project", "version__rubric__task"),
        grader_hash,
    )
    if grader is None:
        raise Http404("No such grader.")
    project = grader.version.rubric.project
    project.role = check(user, project, perm)  # the caller's role, for templates
    return grader


@dataclass(frozen=True)
class _GraderFacts:
    pk: int
    version_id: int
    spec: dict
    project_id: int
    task_id: int | None


# What a grader is never changes: its hash names one compiled spec, its version's rubric
# stays in its project and on its task, and graders are never deleted (PROTECT). The reward
# endpoint reads these facts once per process; the caller's role and the task's prompt,
# which do change, are read at every request, with the grader's row (so facts outliving
# their database, as when one is recreated under a running server, are read again).
_FACTS: dict[str, _GraderFacts] = {}
_FACTS_MAX = 4096
_TASKS = Rows(Task, "t", ["id", "project_id", "external_id", "messages"])
_TARGET_SQL = (
    f"SELECT m.role, {_TASKS.sql} FROM {Grader._meta.db_table} g "  # noqa: S608 - the models'
    f"LEFT JOIN {Membership._meta.db_table} m ON m.project_id = %s AND m.user_id = %s "
    f"LEFT JOIN {Task._meta.db_table} t ON t.id = %s "
    "WHERE g.id = %s AND g.hash = %s"
)


# The facts of graders by hash, written out: a trainer over a suite of 5,000 tasks meets
# graders this process has not read yet (or has let go: _FACTS_MAX) all the time, and the
# ORM's compiling of the query cost 1.2 ms of CPU where the database's answer takes 0.15.
_GRADERS = Rows(Grader, "g", ["id", "hash", "version_id", "spec"])  # in the model's order
_FACTS_SQL = (
    f"SELECT {_GRADERS.sql}, r.project_id, r.task_id "  # noqa: S608 - the models' own names
    f"FROM {Grader._meta.db_table} g "
    f"JOIN {RubricVersion._meta.db_table} v ON v.id = g.version_id "
    f"JOIN {Rubric._meta.db_table} r ON r.id = v.rubric_id "
    "WHERE g.hash IN ({marks})"
)


def _keep(grader_hash: str, facts: _GraderFacts) -> None:
    if len(_FACTS) >= _FACTS_MAX:
        _FACTS.clear()
    _FACTS[grader_hash] = facts


def _read_facts(hashes: list[str]) -> dict[str, _GraderFacts]:
    """The facts of the graders of `hashes` that exist, read in one query and kept."""
    if not hashes:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(_FACTS_SQL.format(marks=", ".join(["%s"] * len(hashes))), hashes)
        rows = cursor.fetchall()
    found = {}
    at = len(_GRADERS)
    for row in rows:
        grader = _GRADERS.build(row)
        found[grader.hash] = _GraderFacts(
            grader.pk, grader.version_id, grader.spec, row[at], row[at + 1]
        )
        _keep(grader.hash, found[grader.hash])
    return found


def _grader_facts(grader_hash: str, *, fresh: bool = False) -> _GraderFacts:
    facts = None if fresh else _FACTS.get(grader_hash)
    if facts is None:
        facts = _read_facts([grader_hash]).get(grader_hash)
        if facts is None:
            _FACTS.pop(grader_hash, None)
            raise Http404("No such grader.")
    return facts


def grader_to_score(user, grader_hash: str, perm: Perm) -> tuple[Grader, Project, Task | None]:
    """grader_for for the reward endpoint, in one short query once the grader is known: the
    grader (spec and hash), its project (the caller's role checked) and its rubric's task
    (external id and messages only; None if the rubric has no task). 404 for non-members."""
    if not user.is_authenticated:
        raise Http404("No such project.")
    if len(grader_hash) != 64 or not set(grader_hash) <= _HEX:
        # A prefix (or a hash in capitals): one more query, and the facts kept by full hash.
        found = by_hash(Grader.objects.only("hash"), grader_hash)
        if found is None:
            raise Http404("No such grader.")
        grader_hash = found.hash
    facts = _grader_facts(grader_hash)
    for fresh in (False, True):
        with connection.cursor() as cursor:
            cursor.execute(
                _TARGET_SQL, [facts.project_id, user.pk, facts.task_id, facts.pk, grader_hash]
            )
            row = cursor.fetchone()
        if row is not None:
            break
        if fresh:
            raise Http404("No such grader.")
        facts = _grader_facts(grader_hash, fresh=True)  # the cached facts were stale
    project = Project(pk=facts.project_id)
    if row[0] is not None:
        project._role_cache = {user.pk: row[0]}  # this request's own instance
    check(user, project, perm)  # 404 for a non-member, 403 for a role that may not
    grader = Grader(pk=facts.pk, hash=grader_hash, version_id=facts.version_id, spec=facts.spec)
    task = _TASKS.build(row, offset=1) if row[1] is not None else None
    return grader, project, task


def _graders(wanted: dict[str, int]) -> dict[str, Grader]:
    """{hash: grader (spec and hash)} for {hash: grader id}, from the process's facts; those
    not kept yet, or kept for another row (a database recreated under a running server), are
    read in one query for all of them."""
    known = {h: _FACTS.get(h) for h in wanted}
    missing = [h for h, pk in wanted.items() if getattr(known[h], "pk", None) != pk]
    known.update(_read_facts(missing))
    return {
        h: Grader(pk=facts.pk, hash=h, version_id=facts.version_id, spec=facts.spec)
        for h, facts in known.items()
    }


@dataclass(frozen=True)
class SuiteTarget:
    project: Project
    version: SuiteVersion  # id, suite, number and content hash; the manifest stays unread
    # {task external id: (the task with its prompt, its pinned grader)}, for the ids asked
    pinned: dict[str, tuple[Task, Grader]]
    unknown: list[str]  # ids asked for that the version does not hold, in the order asked


# The suite, the caller's role, the version, and the entries of only the tasks asked for
# (by the task's (project, external id) index and the entry's (version, task) one), in one
# statement: its cost follows the request, not the suite's size. One row per task of the
# project named (entry columns null when the version does not hold it), or one row of nulls.
_SUITE_TARGET_SQL = (
    "SELECT s.project_id, m.role, v.id, v.number, v.content_hash, "  # noqa: S608 - the models'
    f"{_TASKS.sql}, e.grader_id, g.hash "
    f"FROM {Suite._meta.db_table} s "
    f"LEFT JOIN {Membership._meta.db_table} m ON m.project_id = s.project_id AND m.user_id = %s "
    f"LEFT JOIN {SuiteVersion._meta.db_table} v ON v.suite_id = s.id AND v.number = COALESCE("
    f"CAST(%s AS integer), (SELECT MAX(n.number) FROM {SuiteVersion._meta.db_table} n "
    "WHERE n.suite_id = s.id)) "
    f"LEFT JOIN {Task._meta.db_table} t ON t.project_id = s.project_id "
    "AND t.external_id IN ({marks}) "
    f"LEFT JOIN {SuiteEntry._meta.db_table} e ON e.version_id = v.id AND e.task_id = t.id "
    f"LEFT JOIN {Grader._meta.db_table} g ON g.id = e.grader_id "
    "WHERE s.id = %s"
)


def suite_to_score(
    user, suite_pk: int, number: int | None, external_ids: list[str], perm: Perm
) -> SuiteTarget:
    """What the suite reward endpoint grades with, in one short query: the suite's version
    `number` (None: its newest), the caller's role checked in its project, and for each of
    `external_ids` its task's prompt and pinned grader (specs from the process's grader
    facts). Only the entries asked for are read, whatever the suite's size. 404 for
    non-members, an unknown suite or version."""
    if not user.is_authenticated:
        raise Http404("No such suite.")
    ids = list(dict.fromkeys(str(e) for e in external_ids))
    sql = _SUITE_TARGET_SQL.format(marks=", ".join(["%s"] * len(ids)) or "NULL")
    with connection.cursor() as cursor:
        cursor.execute(sql, [user.pk, number, *ids, suite_pk])
        rows = cursor.fetchall()
    if not rows:
        raise Http404("No such suite.")
    project_id, role, version_id, version_number, content_hash = rows[0][:5]
    project = Project(pk=project_id)
    if role is not None:
        project._role_cache = {user.pk: role}  # this request's own instance
    check(user, project, perm)  # 404 for a non-member, 403 for a role that may not
    if version_id is None:
        raise Http404(
            f"This suite has no version {number}."
            if number is not None
            else "This suite has no frozen version yet: freeze it first."
        )
    version = SuiteVersion(
        pk=version_id, suite_id=suite_pk, number=version_number, content_hash=content_hash
    )
    at = 5 + len(_TASKS)  # the entry's grader id and hash follow the task's columns
    found = [(_TASKS.build(row, offset=5), row[at], row[at + 1]) for row in rows if row[at]]
    graders = _graders({grader_hash: grader_id for _, grader_id, grader_hash in found})
    pinned = {task.external_id: (task, graders[grader_hash]) for task, _, grader_hash in found}
    unknown = [e for e in ids if e not in pinned]
    return SuiteTarget(project, version, pinned, unknown)


def reference_for(user, pk: int, perm: Perm) -> ReferenceDeliverable:
    """A reference answer, if `user` may `perm` in its task's project; 404 for non-members."""
    reference = get_object_or_404(
        ReferenceDeliverable.objects.select_related("task__project", "author"), pk=pk
    )
    check(user, reference.task.project, perm)
    return reference


def reference_download(reference: ReferenceDeliverable) -> FileResponse:
    """The reference's attached file as a download (never rendered inline), under its
    sanitized name, its SHA-256 in a header; 404 when there is none."""
    from rubrics.files import store

    if not reference.has_file or not store.SHA256.match(reference.file_sha256):
        raise Http404("This reference has no attached file.")
    try:
        handle = default_storage.open(store.path_of(reference.file_sha256), "rb")
    except FileNotFoundError:
        raise Http404("The attached file is missing from storage.") from None
    response = FileResponse(
        handle,
        as_attachment=True,
        filename=reference.file_name,
        content_type="application/octet-stream",
    )
    response["X-Content-SHA256"] = reference.file_sha256
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response["Cache-Control"] = "private, no-store"
    return response


def stored_file_ref(project, sha256: str):
    """The FileRef of a file the project holds, by its hash (named by its hash); 404 when
    the project holds none of that hash."""
    from rubrics.files import store
    from rubrics.models import StoredFile

    row = StoredFile.objects.filter(project=project, sha256=sha256.lower()).first()
    if row is None or not store.SHA256.match(row.sha256):
        raise Http404("This project holds no file with that hash.")
    return store.FileRef(row.sha256, row.kind, f"{row.sha256[:12]}.{row.kind}", row.size)


def stored_file(project, sha256: str) -> tuple:
    """The open stored bytes and the FileRef of a file the project holds, by its hash; 404
    when the project holds none of that hash (or storage lost it)."""
    from rubrics.files import store

    ref = stored_file_ref(project, sha256)
    try:
        handle = default_storage.open(store.path_of(ref.sha256), "rb")
    except FileNotFoundError:
        raise Http404("The file is missing from storage.") from None
    return handle, ref


def task_references(task: Task):
    """A task's reference answers, newest first (the newest is the one graded with)."""
    return task.references.select_related("author").order_by("-created_at", "-pk")


def rubric_versions(rubric: Rubric):
    return (
        rubric.versions.select_related("published_by", "created_by")
        .prefetch_related(Prefetch("graders", queryset=Grader.objects.only("hash", "version_id")))
        .annotate(criterion_count=Count("criteria"))
        .order_by("-number")
    )


def version_criteria(version: RubricVersion):
    return version.criteria.order_by("position")


def comment_for(user, pk: int, perm: Perm) -> ReviewComment:
    comment = get_object_or_404(
        ReviewComment.objects.select_related("version__rubric__project"), pk=pk
    )
    check(user, comment.version.rubric.project, perm)
    return comment


def group_for(user, pk: int, perm: Perm) -> CriterionGroup:
    group = get_object_or_404(
        CriterionGroup.objects.select_related("version__rubric__project"), pk=pk
    )
    check(user, group.version.rubric.project, perm)
    return group


@dataclass
class EditorRow:
    """One criterion in the editor, with the group headers that open just above it."""

    criterion: Criterion
    depth: int
    headers: list[tuple[CriterionGroup, int]] = field(default_factory=list)
    comments: list[ReviewComment] = field(default_factory=list)
    warnings: list = field(default_factory=list)
    # Prepared in Python: a 200-row editor must not pay the template engine per option.
    url: str = ""
    id: str = ""  # strings, so the template does not localise 2,000 integers
    n: str = ""
    points: str = ""
    weight: str = ""
    importance_options: str = ""
    kind_options: str = ""
    scope_options: str = ""
    step_rule_options: str = ""
    scope_words: str = ""  # "judged at each call of refund; met only if met at every step"
    check_words: str = ""  # an episode or file check as a sentence


def group_chains(groups) -> dict[int, list[CriterionGroup]]:
    """Each group's ancestors, outermost first, ending with the group itself."""
    by_id = {g.pk: g for g in groups}
    chains: dict[int, list[CriterionGroup]] = {}
    for g in groups:
        chain, node, seen = [], g, set()
        while node is not None and node.pk not in seen:
            seen.add(node.pk)
            chain.append(node)
            node = by_id.get(node.parent_id)
        chains[g.pk] = chain[::-1]
    return chains


@functools.cache
@functools.lru_cache(maxsize=64)  # a few choice lists, each with a few current values
def _options(choices: tuple, current: str) -> str:
    return mark_safe(  # noqa: S308 -- every value and label is escaped here
        "".join(
            format_html(
                '<option value="{}"{}>{}</option>',
                value,
                mark_safe(" selected") if value == current else "",  # noqa: S308
                label,
            )
            for value, label in choices
        )
    )


IMPORTANCES = tuple(Criterion.Importance.choices)
KINDS = tuple(Criterion.Kind.choices)
SCOPES = tuple(Criterion.Scope.choices)
STEP_RULES = tuple(Criterion.StepRule.choices)


def editor_rows(criteria, groups, comments=(), url_prefix: str = "") -> list[EditorRow]:
    """Criteria in order, indented by group depth; a header wherever a group opens."""
    chains = group_chains(groups)
    by_criterion: dict[int, list[ReviewComment]] = {}
    for comment in comments:
        by_criterion.setdefault(comment.criterion_id, []).append(comment)
    rows, previous = [], []
    for c in criteria:
        chain = chains.get(c.group_id, []) if c.group_id else []
        common = 0
        while common < min(len(chain), len(previous)) and chain[common] is previous[common]:
            common += 1
        headers = [(g, depth) for depth, g in enumerate(chain) if depth >= common]
        rows.append(
            EditorRow(
                c,
                len(chain),
                headers,
                by_criterion.get(c.pk, []),
                url=f"{url_prefix}{c.pk}/",
                id=str(c.pk),
                n=str(len(rows) + 1),
                points=str(compiler.number(c.points)),
                weight=str(compiler.number(c.weight)),
                importance_options=_options(IMPORTANCES, c.importance),
                kind_options=_options(KINDS, c.kind),
                scope_options=_options(SCOPES, c.scope),
                # A criterion not yet per step offers the rule its importance suggests.
                step_rule_options=_options(
                    STEP_RULES, c.step_rule or ("any" if c.is_pitfall else "all")
                ),
                scope_words=wording.scope_in_words(c.scope, c.step_rule, c.step_tool),
                check_words=wording.check_in_words(c.check_spec) if c.kind == "checked" else "",
            )
        )
        previous = chain
    return rows


def _with_replies(comments):
    """Top-level comments, each with its thread of replies (oldest first) prefetched."""
    replies = ReviewComment.objects.select_related("author").order_by("created_at", "pk")
    return comments.filter(parent=None).prefetch_related(Prefetch("replies", queryset=replies))


def rubric_comments(rubric: Rubric):
    """Review comments on every version of a rubric, oldest first, with their replies."""
    return _with_replies(
        ReviewComment.objects.filter(version__rubric=rubric).select_related(
            "version", "author", "resolved_by"
        )
    )


def may_approve(version: RubricVersion, user, role: str | None) -> bool:
    """Whether `user` may approve `version` now: a reviewer, never of a draft of their own."""
    return (
        version.status == RubricVersion.Status.IN_REVIEW
        and role_allows(role, Perm.APPROVE)
        and user.pk not in (version.created_by_id, version.submitted_by_id)
    )


def review_inbox(project: Project):
    """The project's versions in review, oldest submission first, with open comment counts."""
    return (
        RubricVersion.objects.filter(rubric__project=project, status=RubricVersion.Status.IN_REVIEW)
        .select_related("rubric", "submitted_by", "created_by")
        .annotate(
            open_comments=Count(
                "comments", filter=Q(comments__parent=None, comments__resolved_at=None)
            )
        )
        .order_by("submitted_at", "pk")
    )


def mark_approvable(versions, user, role: str | None) -> list[RubricVersion]:
    """The versions, each with `may_approve` set for `user`."""
    versions = list(versions)
    for version in versions:
        version.may_approve = may_approve(version, user, role)
    return versions


def version_groups(version: RubricVersion):
    return version.groups.all()


def version_comments(version: RubricVersion):
    return _with_replies(
        version.comments.select_related("author", "resolved_by").order_by("created_at", "pk")
    )


def rubric_events(rubric: Rubric):
    return RubricEvent.objects.filter(rubric=rubric).select_related("user")


def rubric_history(rubric: Rubric, limit: int = 200, lineage: str | None = None):
    """Who changed what and when: the rubric's events, or one criterion's across versions."""
    events = RubricEvent.objects.filter(rubric=rubric).select_related("user")
    if lineage:
        events = events.filter(criterion_lineage=lineage)
    return events[:limit]


DIFF_FIELDS = ("text", "points", "kind", "scope", "group", "gate", "weight", "importance")


def _diff_view(c: Criterion, paths: dict[int, str]) -> dict:
    return {
        "text": c.text,
        "points": float(c.points),
        "kind": c.kind,
        "scope": wording.scope_in_words(c.scope, c.step_rule, c.step_tool),
        "group": paths.get(c.group_id, "") if c.group_id else "",
        "gate": c.gate,
        "weight": float(c.weight),
        "importance": c.importance,
        "position": c.position,
    }


WORD = re.compile(r"\s+|\S+")


def word_diff(old: str, new: str) -> list[dict]:
    """The words of `new` against `old`: runs of equal, deleted and inserted text, in order.
    Plain strings: the template escapes them and wraps deletions and insertions itself."""
    a, b = WORD.findall(old), WORD.findall(new)
    runs: list[dict] = []
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        parts = []
        if op in ("delete", "replace"):
            parts.append(("delete", "".join(a[i1:i2])))
        if op in ("insert", "replace"):
            parts.append(("insert", "".join(b[j1:j2])))
        if op == "equal":
            parts.append(("equal", "".join(a[i1:i2])))
        for kind, text in parts:
            if runs and runs[-1]["op"] == kind:
                runs[-1]["text"] += text
            else:
                runs.append({"op": kind, "text": text})
    return runs


def _moved(before: list, after: list) -> set:
    """Lineages whose order changed: those outside the longest common run of both orders, so
    one criterion dragged up is one move, not every criterion it passed."""
    common = set(before) & set(after)
    old = [x for x in before if x in common]
    new = [x for x in after if x in common]
    kept = set()
    matcher = difflib.SequenceMatcher(None, old, new, autojunk=False)
    for block in matcher.get_matching_blocks():
        kept.update(old[block.a : block.a + block.size])
    return common - kept


def version_diff(left: RubricVersion, right: RubricVersion) -> list[dict]:
    """Criteria added, removed, changed and moved from `left` to `right`, paired by lineage.
    A changed text carries its word-level diff (`words`); a moved criterion its old and new
    place (`moved`, 1-based)."""
    sides = []
    for version in (left, right):
        groups = list(version.groups.all())
        paths = {
            pk: " / ".join(g.title for g in chain) for pk, chain in group_chains(groups).items()
        }
        sides.append(
            {c.lineage: _diff_view(c, paths) for c in version.criteria.order_by("position")}
        )
    before, after = sides
    order_before, order_after = list(before), list(after)
    moved = _moved(order_before, order_after)
    rows = []
    for lineage, new in after.items():
        old = before.get(lineage)
        if old is None:
            rows.append(
                {"status": "added", "left": None, "right": new, "changed": [], "moved": None}
            )
            continue
        changed = [f for f in DIFF_FIELDS if old[f] != new[f]]
        place = None
        if lineage in moved:
            place = {
                "from": order_before.index(lineage) + 1,
                "to": order_after.index(lineage) + 1,
            }
        rows.append(
            {
                "status": "changed" if changed else "moved" if place else "same",
                "left": old,
                "right": new,
                "changed": changed,
                "moved": place,
                "words": word_diff(old["text"], new["text"]) if "text" in changed else [],
            }
        )
    for lineage, old in before.items():
        if lineage not in after:
            rows.append(
                {"status": "removed", "left": old, "right": None, "changed": [], "moved": None}
            )
    rows.sort(key=lambda r: ((r["right"] or r["left"])["position"], r["status"] != "removed"))
    for row in rows:
        row.setdefault("words", [])
    return rows


def points_total(criteria) -> float:
    return float(sum(c.points for c in criteria if c.points > 0))


def version_points(version: RubricVersion) -> float:
    total = version.criteria.filter(points__gt=0).aggregate(s=Sum("points"))["s"]
    return float(total or 0)


def open_or_latest_version(rubric: Rubric, number: int | None = None) -> RubricVersion | None:
    versions = rubric.versions.all()
    if number is not None:
        return versions.filter(number=number).first()
    return (
        versions.filter(status__in=[RubricVersion.Status.DRAFT, RubricVersion.Status.IN_REVIEW])
        .order_by("-number")
        .first()
        or versions.order_by("-number").first()
    )


@dataclass(frozen=True)
class GraderParts:
    criteria: list
    groups: list
    reference: str
    template: dict | None


def grader_parts(version: RubricVersion, rubric: Rubric) -> GraderParts:
    """What a version compiles from: a template's latest published criteria (if the rubric
    builds on one), then its own; and the reference, if the rubric shows it to the judge."""
    criteria = list(version.criteria.order_by("position"))
    groups = list(version.groups.all())
    template = None
    if rubric.template_id:
        used = (
            RubricVersion.objects.filter(
                rubric_id=rubric.template_id, status=RubricVersion.Status.PUBLISHED
            )
            .select_related("rubric")
            .order_by("-number")
            .first()
        )
        if used is None:
            raise ValidationError(
                {"template": "The template has no published version yet; publish it first."}
            )
        criteria = [*used.criteria.order_by("position"), *criteria]
        groups = [*used.groups.all(), *groups]
        template = {
            "id": used.rubric_id,
            "title": used.rubric.title,
            "version": used.number,
            "content_hash": used.content_hash,
        }
    reference = ""
    if rubric.include_reference and rubric.task_id:
        latest = rubric.task.references.order_by("-created_at", "-pk").first()
        reference = latest.body if latest else ""
    return GraderParts(criteria, groups, reference, template)


def version_spec(version: RubricVersion) -> dict:
    """A version compiled as a grader spec without storing anything: what "try it" and the
    prompt preview grade with before publishing."""
    rubric = Rubric.objects.select_related("task").get(pk=version.rubric_id)
    version.rubric = rubric
    parts = grader_parts(version, rubric)
    return compiler.compile_grader(
        version,
        parts.criteria,
        groups=parts.groups,
        reference=parts.reference,
        template=parts.template,
    )[1]


def project_templates(project: Project):
    return Rubric.objects.filter(project=project, is_template=True).order_by("title")


# --- The task page ---------------------------------------------------------------------------

TASK_FORM_ID = "task-form"


def error_messages(exc: ValidationError) -> list[str]:
    """A service's ValidationError as lines for a page, each naming its field."""
    if hasattr(exc, "error_dict"):
        return [f"{field}: {m}" for field, errs in exc.message_dict.items() for m in errs]
    return exc.messages


def reference_file_max_mb() -> str:
    return f"{settings.REFERENCE_FILE_MAX_BYTES / (1024 * 1024):g}"


def prompt_rows(task: Task) -> list[dict]:
    """The prompt as pages show it: each message's role, text and files (FileRef)."""
    from rubrics.files import parts

    return [
        {
            "role": m.get("role", ""),
            "text": parts.only_text(m.get("content", "")),
            "files": parts.refs(m.get("content")),
        }
        for m in task.messages
    ]


def messages_editor(project: Project, rows: list[dict]) -> dict:
    """The messages editor's context (rubrics/_messages_editor.html)."""
    return {
        "editor_rows": rows,
        "form_id": TASK_FORM_ID,
        "preview_url": reverse("markdown_preview", args=[project.slug]),
    }


def task_page_context(
    project: Project,
    task: Task,
    *,
    posted: dict | None = None,
    errors: ValidationError | None = None,
) -> dict:
    """What rubrics/task.html shows. With `posted` (the Edit form's fields) and `errors` it
    shows that form again as sent, with the service's errors (annotation.views.task_edit).
    `project` comes from permissions.project_for (its `role` is the viewer's)."""
    can_edit = role_allows(project.role, Perm.EDIT_RUBRICS)
    frozen = task_has_responses(task)
    edit = posted or {
        "title": task.title,
        "tags": ", ".join(task.tags),
        "context": task.context,
        "messages": task.messages,
    }
    found = errors.message_dict if errors is not None and hasattr(errors, "error_dict") else {}
    return {
        "project": project,
        "task": task,
        "references": list(task_references(task)),
        "rubrics": task.rubrics.all(),
        "can_edit": can_edit,
        "prompt_frozen": frozen,
        "edit": edit,
        "edit_errors": error_messages(errors) if errors is not None else [],
        "max_file_mb": reference_file_max_mb(),
        "file_max_mb": f"{settings.FILE_MAX_BYTES / (1024 * 1024):g}",
        "prompt": prompt_rows(task),
        **messages_editor(project, forms.editor_rows(edit["messages"], found)),
    }
