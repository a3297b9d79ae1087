"""Reads for responses."""

from __future__ import annotations

from django.db.models import Count

from annotation.models import Response
from rubrics.models import Project


def project_responses(project: Project):
    return Response.objects.filter(task__project=project).select_related("task")


def response_counts_by_model(project: Project) -> list[dict]:
    return list(
        Response.objects.filter(task__project=project)
        .values("model")
        .annotate(n=Count("pk"), tasks=Count("task", distinct=True))
        .order_by("model")
    )
