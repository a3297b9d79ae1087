"""JSON door to delete a project. It lives in grading, not rubrics/api/projects.py: deleting a
project deletes its judges and dataset snapshots too, and rubrics imports nothing of grading.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from grading import services
from rubrics.api.common import responses, service_errors
from rubrics.permissions import Perm, project_for


class ProjectDeleteApi(APIView):
    @extend_schema(
        tags=["projects"],
        summary="Delete a project that holds no graded work (admins only)",
        description="A project with a published (or retired) rubric version or any response "
        "stays (409): runs, verdicts and datasets name them. Otherwise its tasks, drafts, "
        "references, judges, snapshots and memberships are deleted with it.",
        request=None,
        responses=responses({204: None}, 403, 404, 409),
    )
    def delete(self, request: Request, slug: str) -> Response:
        project = project_for(request.user, slug, Perm.MANAGE_MEMBERS)
        with service_errors():
            services.project_delete(project=project)
        return Response(status=status.HTTP_204_NO_CONTENT)
