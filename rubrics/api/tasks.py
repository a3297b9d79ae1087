"""JSON doors for tasks: listed, read, created and imported.

Changing and deleting one is annotation.api.tasks: the rules depend on its responses.
"""

from __future__ import annotations

from django.db.models import prefetch_related_objects
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    extend_schema_serializer,
)
from rest_framework import serializers, status
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from rubrics import selectors, services, task_import
from rubrics.api.common import (
    FILTERS_RULE,
    Pagination,
    paginated,
    query_filters,
    responses,
    service_errors,
)
from rubrics.api.references import ReferenceSerializer
from rubrics.permissions import Perm, project_for


@extend_schema_serializer(component_name="ChatMessage")
class ChatMessageSerializer(serializers.Serializer):
    # A plain string: a second enum named "role" would collide with Role in the schema.
    role = serializers.CharField(help_text=", ".join(sorted(services.MESSAGE_ROLES)) + ".")
    content = serializers.JSONField(
        help_text="Text, or (a user message) a list of parts: text, and image_url and file "
        "parts naming stored files by sha256 (rubrics.files.parts)."
    )


@extend_schema_field(
    {
        "oneOf": [
            {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "role": {"type": "string", "enum": sorted(services.MESSAGE_ROLES)},
                        "content": {
                            "oneOf": [
                                {"type": "string"},
                                {
                                    "type": "array",
                                    "description": "A user message's parts: text, image_url "
                                    "and file parts. An image_url's url and a file's file_data "
                                    "are base64 data: URIs, or sha256:<hash> of a file the "
                                    "project holds (a file part may give file.sha256); URLs are "
                                    "refused. Stored by hash (rubrics.files.parts).",
                                    "items": {"type": "object"},
                                },
                            ]
                        },
                    },
                    "required": ["role", "content"],
                },
            },
            {"type": "string", "description": "One user message."},
        ]
    }
)
class MessagesField(serializers.JSONField):
    """Chat messages, checked by `services.validate_messages` so errors name the message."""


class TaskListApi(APIView):
    pagination_class = Pagination

    @extend_schema_serializer(component_name="TaskListItem")
    class OutputSerializer(serializers.Serializer):
        external_id = serializers.CharField()
        title = serializers.CharField()
        tags = serializers.ListField(child=serializers.CharField())
        response_count = serializers.IntegerField()
        created_at = serializers.DateTimeField()

    @extend_schema_serializer(component_name="TaskFilter")
    class FilterSerializer(serializers.Serializer):
        tag = serializers.CharField(required=False, help_text="Only tasks with this tag.")

    @extend_schema(
        tags=["tasks"],
        summary="The project's tasks",
        description=FILTERS_RULE,
        parameters=[FilterSerializer],
        responses=responses({200: OutputSerializer(many=True)}, 400, 404),
    )
    def get(self, request: Request, slug: str) -> Response:
        project = project_for(request.user, slug, Perm.VIEW)
        filters = query_filters(request, self.FilterSerializer)
        tasks = selectors.project_tasks(project).order_by("external_id")
        if "tag" in filters:
            tasks = tasks.filter(tags__contains=[filters["tag"]])
        return paginated(self, request, tasks, self.OutputSerializer)


class TaskDetailApi(APIView):
    @extend_schema_serializer(component_name="Task")
    class OutputSerializer(serializers.Serializer):
        ReferenceSerializer = ReferenceSerializer

        @extend_schema_serializer(component_name="TaskRubric")
        class RubricSerializer(serializers.Serializer):
            id = serializers.IntegerField()
            title = serializers.CharField()

        external_id = serializers.CharField()
        title = serializers.CharField()
        messages = ChatMessageSerializer(many=True)
        context = serializers.CharField()
        tags = serializers.ListField(child=serializers.CharField())
        references = ReferenceSerializer(many=True)
        rubrics = RubricSerializer(many=True)
        created_at = serializers.DateTimeField()

    @staticmethod
    def with_relations(task):
        prefetch_related_objects([task], "references__author", "rubrics")
        return task

    @extend_schema(
        tags=["tasks"],
        summary="A task with its messages, references and rubrics",
        responses=responses({200: OutputSerializer}, 404),
    )
    def get(self, request: Request, slug: str, external_id: str) -> Response:
        project = project_for(request.user, slug, Perm.VIEW)
        task = selectors.task_for(request.user, project, external_id)
        return Response(self.OutputSerializer(self.with_relations(task)).data)


class TaskCreateApi(APIView):
    @extend_schema_serializer(component_name="TaskCreate")
    class InputSerializer(serializers.Serializer):
        external_id = serializers.CharField(max_length=200)
        title = serializers.CharField(max_length=300, required=False, allow_blank=True)
        messages = MessagesField()
        context = serializers.CharField(required=False, allow_blank=True)
        tags = serializers.ListField(
            child=serializers.CharField(max_length=100), required=False, max_length=100
        )
        reference = serializers.CharField(
            required=False, allow_blank=True, help_text="An exemplary answer, in Markdown."
        )

    OutputSerializer = TaskDetailApi.OutputSerializer

    @extend_schema(
        tags=["tasks"],
        summary="Create a task, optionally with a reference answer",
        request=InputSerializer,
        responses=responses({201: OutputSerializer}, 400, 403, 404),
    )
    def post(self, request: Request, slug: str) -> Response:
        project = project_for(request.user, slug, Perm.EDIT_RUBRICS)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = data.validated_data
        with service_errors():
            task = services.task_create(
                project=project,
                external_id=fields["external_id"],
                title=fields.get("title", ""),
                messages=fields["messages"],
                context=fields.get("context", ""),
                tags=fields.get("tags", []),
                reference=fields.get("reference", ""),
                user=request.user,
            )
        task = TaskDetailApi.with_relations(task)
        return Response(self.OutputSerializer(task).data, status=status.HTTP_201_CREATED)


class TaskImportApi(APIView):
    parser_classes = [MultiPartParser]

    @extend_schema_serializer(component_name="TaskImport")
    class InputSerializer(serializers.Serializer):
        file = serializers.FileField(
            help_text="JSONL (one task per line) or Parquet (one per row), with the fields "
            + "; ".join(f"{k}: {v}" for k, v in task_import.TASK_FIELDS.items())
            + "."
        )

    @extend_schema_serializer(component_name="TaskImportResult")
    class OutputSerializer(serializers.Serializer):
        created = serializers.IntegerField()
        already_present = serializers.IntegerField(
            help_text="Identical tasks already in the project, skipped."
        )
        filename = serializers.CharField()

    @extend_schema_serializer(component_name="TaskImportErrors")
    class ErrorsSerializer(serializers.Serializer):
        errors = serializers.ListField(
            child=serializers.CharField(), help_text="The first 200, each naming line and field."
        )
        error_count = serializers.IntegerField()
        filename = serializers.CharField()

    @extend_schema(
        tags=["tasks"],
        summary="Import tasks from a JSONL or Parquet file: all of them, or none",
        request={"multipart/form-data": InputSerializer},
        responses=responses(
            {
                201: OutputSerializer,
                # An object, not ErrorsSerializer alone: a body the server cannot read at
                # all (a parameter named with a NUL) is refused before this view, as every
                # door refuses it, with a list of messages per field.
                400: OpenApiResponse(
                    OpenApiTypes.OBJECT,
                    description="Nothing was imported: every error, by line, as "
                    "`TaskImportErrors` (`errors`, `error_count`, `filename`); or, for a body "
                    "that cannot be read, a list of messages per field.",
                ),
                413: OpenApiResponse(
                    ErrorsSerializer,
                    description="Nothing was imported: the file is over "
                    "ASSAY_TASK_UPLOAD_MAX_BYTES.",
                ),
            },
            403,
            404,
        ),
    )
    def post(self, request: Request, slug: str) -> Response:
        project = project_for(request.user, slug, Perm.EDIT_RUBRICS)
        data = self.InputSerializer(data=request.data)
        if not data.is_valid():
            payload = {
                "errors": ["file: upload a JSONL or Parquet file in the field 'file'"],
                "error_count": 1,
                "filename": "",
            }
            return Response(payload, status=status.HTTP_400_BAD_REQUEST)
        upload = data.validated_data["file"]
        result = task_import.tasks_import_file(
            project=project, upload=upload, filename=upload.name, user=request.user
        )
        body = {**vars(result), "filename": upload.name}
        if not result.ok:
            return Response(self.ErrorsSerializer(body).data, status=result.status)
        return Response(self.OutputSerializer(body).data, status=status.HTTP_201_CREATED)
