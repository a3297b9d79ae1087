"""Who may do what in a project. Every view and API view goes through `project_for`."""

from __future__ import annotations

from enum import StrEnum

from django.core.exceptions import PermissionDenied
from django.http import Http404

from rubrics.models import Membership, Project, Role


class Perm(StrEnum):
    VIEW = "view"  # see the project, its tasks and rubrics
    MANAGE_MEMBERS = "manage_members"
    EDIT_RUBRICS = "edit_rubrics"  # tasks, references, rubric drafts
    PUBLISH = "publish"
    REVIEW = "review"  # comment on a version in review
    DISCUSS = "discuss"  # reply to review comments; see the review inbox
    APPROVE = "approve"  # approve a version in review: it is published
    IMPORT_RESPONSES = "import_responses"
    MANAGE_JUDGES = "manage_judges"
    RUN_GRADING = "run_grading"
    VIEW_RESULTS = "view_results"  # judge verdicts and scores; annotators stay blind to them
    # Which model wrote a response, and its sample index: the Responses page and the API's
    # responses. Annotators grade blind, so they never see them.
    VIEW_MODELS = "view_models"
    ANNOTATE = "annotate"  # grade queue items by hand, blind to judges and other people
    MANAGE_QUEUES = "manage_queues"
    ADJUDICATE = "adjudicate"  # settle disagreements into gold verdicts
    VIEW_AUDIT = "view_audit"  # the project's audit log: roles, publications, gold, exports
    MANAGE_SUITES = "manage_suites"  # make suites of tasks and freeze their versions


_ALL = set(Role)
ROLE_PERMS: dict[Perm, set[Role]] = {
    Perm.VIEW: _ALL,
    Perm.MANAGE_MEMBERS: {Role.ADMIN},
    Perm.EDIT_RUBRICS: {Role.ADMIN, Role.AUTHOR},
    Perm.PUBLISH: {Role.ADMIN, Role.AUTHOR, Role.REVIEWER},
    Perm.REVIEW: {Role.ADMIN, Role.REVIEWER},
    Perm.DISCUSS: {Role.ADMIN, Role.AUTHOR, Role.REVIEWER},
    Perm.APPROVE: {Role.REVIEWER},
    Perm.IMPORT_RESPONSES: {Role.ADMIN, Role.ENGINEER},
    Perm.MANAGE_JUDGES: {Role.ADMIN},
    Perm.RUN_GRADING: {Role.ADMIN, Role.ENGINEER},
    Perm.VIEW_RESULTS: {Role.ADMIN, Role.AUTHOR, Role.REVIEWER, Role.ENGINEER},
    Perm.VIEW_MODELS: {Role.ADMIN, Role.AUTHOR, Role.REVIEWER, Role.ENGINEER},
    Perm.ANNOTATE: {Role.ANNOTATOR},
    Perm.MANAGE_QUEUES: {Role.ADMIN, Role.ENGINEER},
    Perm.ADJUDICATE: {Role.ADMIN, Role.REVIEWER},
    Perm.VIEW_AUDIT: {Role.ADMIN},
    Perm.MANAGE_SUITES: {Role.ADMIN, Role.AUTHOR, Role.ENGINEER},
}


def role_allows(role: str | None, perm: Perm) -> bool:
    return role is not None and Role(role) in ROLE_PERMS[perm]


def role_in(user, project: Project) -> str | None:
    if not user.is_authenticated:
        return None
    return (
        Membership.objects.filter(project=project, user=user).values_list("role", flat=True).first()
    )


def check(user, project: Project, perm: Perm) -> str:
    """The user's role, if it allows `perm`. A non-member gets 404: they may not know it exists."""
    role = getattr(project, "_role_cache", {}).get(user.pk) if user.is_authenticated else None
    if role is None:
        role = role_in(user, project)
        if role is not None:  # a view that checks twice (two objects, one project) asks once
            project._role_cache = {user.pk: role}
    if role is None:
        raise Http404("No such project.")
    if not role_allows(role, perm):
        raise PermissionDenied(f"Your role ({role}) does not allow this ({perm}).")
    return role


def project_for(user, slug: str, perm: Perm) -> Project:
    """The project named `slug`, if `user` is a member whose role allows `perm`."""
    if not user.is_authenticated:
        raise Http404("No such project.")
    row = (
        Membership.objects.filter(project__slug=slug, user=user)
        .select_related("project")
        .only("role", "project")
        .first()
    )
    if row is None:
        raise Http404("No such project.")
    if not role_allows(row.role, perm):
        raise PermissionDenied(f"Your role ({row.role}) does not allow this ({perm}).")
    project = row.project
    project.role = row.role  # the caller's role, for templates
    project._role_cache = {user.pk: row.role}
    return project
