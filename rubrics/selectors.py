"""Reads for projects, tasks and rubrics, with their permission checks."""

from __future__ import annotations

from django.db.models import Count, Prefetch, Q, Sum
from django.shortcuts import get_object_or_404

from rubrics.models import Criterion, Grader, Membership, Project, Rubric, RubricVersion, Task
from rubrics.permissions import Perm, check


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


def task_for(user, project: Project, external_id: str, perm: Perm = Perm.VIEW) -> Task:
    check(user, project, perm)
    return get_object_or_404(Task, project=project, external_id=external_id)


def rubric_for(user, pk: int, perm: Perm) -> Rubric:
    """The rubric `pk` if `user` may `perm` in its project; 404 for non-members."""
    rubric = get_object_or_404(Rubric.objects.select_related("project", "task"), pk=pk)
    rubric.project.role = check(user, rubric.project, perm)
    return rubric


def criterion_for(user, pk: int, perm: Perm) -> Criterion:
    criterion = get_object_or_404(
        Criterion.objects.select_related("version__rubric__project"), pk=pk
    )
    check(user, criterion.version.rubric.project, perm)
    return criterion


def grader_for(user, grader_hash: str, perm: Perm) -> Grader:
    grader = get_object_or_404(
        Grader.objects.select_related("version__rubric__project", "version__rubric__task"),
        hash=grader_hash,
    )
    check(user, grader.version.rubric.project, perm)
    return grader


def rubric_versions(rubric: Rubric):
    return (
        rubric.versions.select_related("published_by", "created_by")
        .prefetch_related(Prefetch("graders", queryset=Grader.objects.only("hash", "version_id")))
        .annotate(criterion_count=Count("criteria"))
        .order_by("-number")
    )


def version_criteria(version: RubricVersion):
    return version.criteria.order_by("position")


def points_total(criteria) -> float:
    return float(sum(c.points for c in criteria if c.points > 0))


def version_points(version: RubricVersion) -> float:
    total = version.criteria.filter(points__gt=0).aggregate(s=Sum("points"))["s"]
    return float(total or 0)
