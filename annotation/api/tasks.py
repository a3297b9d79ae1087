"""JSON doors that change or delete a task (rubrics.api.tasks lists, reads, creates and
imports them): here because the rules depend on the task's responses.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation import services
from rubrics import selectors as rubric_selectors
from rubrics.api.common import responses, service_errors
from rubrics.api.tasks import MessagesField, TaskDetailApi
from rubrics.permissions import Perm, project_for


class TaskUpdateApi(APIView):
    @extend_schema_serializer(component_name="TaskUpdate")
    class InputSerializer(serializers.Serializer):
        title = serializers.CharField(max_length=300, required=False, allow_blank=True)
        messages = MessagesField(required=False)
        context = serializers.CharField(required=False, allow_blank=True, max_length=100_000)
        tags = serializers.ListField(
            child=serializers.CharField(max_length=100), required=False, max_length=100
        )

    OutputSerializer = TaskDetailApi.OutputSerializer

    @extend_schema(
        tags=["tasks"],
        summary="Change a task's title, tags, or (before any response) its prompt",
        description="The external id never changes: imports and exports name the task by it. "
        "Once responses answer the task, its messages and context are frozen (409): create a "
        "new task for a new prompt. Title and tags change at any time.",
        request=InputSerializer,
        responses=responses({200: OutputSerializer}, 400, 403, 404, 409),
    )
    def patch(self, request: Request, slug: str, external_id: str) -> Response:
        project = project_for(request.user, slug, Perm.EDIT_RUBRICS)
        task = rubric_selectors.task_for(request.user, project, external_id, Perm.EDIT_RUBRICS)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        if not data.validated_data:
            raise serializers.ValidationError(
                {"non_field_errors": ["Give at least one of title, messages, context, tags."]}
            )
        with service_errors():
            task = services.task_update(task=task, **data.validated_data)
        return Response(self.OutputSerializer(TaskDetailApi.with_relations(task)).data)


class TaskDeleteApi(APIView):
    @extend_schema(
        tags=["tasks"],
        summary="Delete a task nothing was imported or published against",
        description="A task with responses or a published rubric version stays (409): runs, "
        "verdicts and datasets name it. Its draft rubrics and references go with it.",
        request=None,
        responses=responses({204: None}, 403, 404, 409),
    )
    def delete(self, request: Request, slug: str, external_id: str) -> Response:
        project = project_for(request.user, slug, Perm.EDIT_RUBRICS)
        task = rubric_selectors.task_for(request.user, project, external_id, Perm.EDIT_RUBRICS)
        with service_errors():
            services.task_delete(task=task)
        return Response(status=status.HTTP_204_NO_CONTENT)
