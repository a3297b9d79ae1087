"""JSON door that takes a member out of a project (rubrics.api.projects has the rest):
here because the member leaves the project's queues too.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation import services
from rubrics import selectors as rubric_selectors
from rubrics.api.common import responses, service_errors
from rubrics.permissions import Perm, project_for


class MemberRemoveApi(APIView):
    @extend_schema(
        tags=["projects"],
        summary="Take a member out of the project (admins only)",
        description="The last admin stays (409). The member leaves the project's queues: "
        "their open items go back to the others and their drafts are dropped; what they "
        "submitted, commented or ran stays under their name.",
        request=None,
        responses=responses({204: None}, 403, 404, 409),
    )
    def delete(self, request: Request, slug: str, username: str) -> Response:
        project = project_for(request.user, slug, Perm.MANAGE_MEMBERS)
        member = rubric_selectors.member_for(project, username)
        with service_errors():
            services.member_remove(
                project=project, username=member.user.username, actor=request.user
            )
        return Response(status=status.HTTP_204_NO_CONTENT)
