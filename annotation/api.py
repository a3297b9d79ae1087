"""JSON doors for responses: JSONL import, the list and counts by model."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation import selectors, services
from rubrics.api import Pagination, paginated, responses
from rubrics.permissions import Perm, project_for

FIELDS_HELP = "; ".join(f"`{name}`: {help}" for name, help in services.RESPONSE_FIELDS.items())


class ResponseImportApi(APIView):
    parser_classes = [MultiPartParser]

    @extend_schema_serializer(component_name="ResponseImport")
    class InputSerializer(serializers.Serializer):
        file = serializers.FileField(help_text=f"JSONL, one response per line. {FIELDS_HELP}.")

    @extend_schema_serializer(component_name="ResponseImportResult")
    class OutputSerializer(serializers.Serializer):
        created = serializers.IntegerField()
        filename = serializers.CharField()

    @extend_schema_serializer(component_name="ResponseImportErrors")
    class ErrorsSerializer(serializers.Serializer):
        @extend_schema_serializer(component_name="ResponseImportLineError")
        class LineErrorSerializer(serializers.Serializer):
            line = serializers.IntegerField(help_text="1-based; 0 for the file as a whole.")
            field = serializers.CharField(help_text="Empty when the whole line is at fault.")
            message = serializers.CharField()

        errors = LineErrorSerializer(many=True, help_text="The first 200 errors.")
        error_count = serializers.IntegerField()
        filename = serializers.CharField()

    @extend_schema(
        tags=["responses"],
        summary="Import model responses from a JSONL file: all of them, or none",
        request={"multipart/form-data": InputSerializer},
        responses=responses(
            {
                201: OutputSerializer,
                400: OpenApiResponse(
                    ErrorsSerializer, description="Nothing was imported: every error, by line."
                ),
            },
            403,
            404,
        ),
    )
    def post(self, request: Request, slug: str) -> Response:
        project = project_for(request.user, slug, Perm.IMPORT_RESPONSES)
        data = self.InputSerializer(data=request.data)
        if not data.is_valid():
            result = services.ImportResult(
                errors=[services.LineError(0, "file", "Upload a JSONL file in the field 'file'.")],
                error_count=1,
            )
        else:
            upload = data.validated_data["file"]
            result = services.responses_import_jsonl(
                project=project, lines=upload, filename=upload.name
            )
        if not result.ok:
            return Response(self.ErrorsSerializer(result).data, status=status.HTTP_400_BAD_REQUEST)
        return Response(self.OutputSerializer(result).data, status=status.HTTP_201_CREATED)


class ResponseListApi(APIView):
    pagination_class = Pagination

    @extend_schema_serializer(component_name="ResponseFilter")
    class FilterSerializer(serializers.Serializer):
        model = serializers.CharField(
            required=False, allow_blank=True, help_text="Only this model's responses."
        )
        task = serializers.CharField(
            required=False, allow_blank=True, help_text="Only this task (external id)."
        )

    @extend_schema_serializer(component_name="ModelResponse")
    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        task = serializers.CharField(source="task.external_id")
        model = serializers.CharField()
        sample_index = serializers.IntegerField()
        external_id = serializers.CharField()
        metadata = serializers.DictField()
        text = serializers.CharField(help_text="Untrusted; render sanitized.")
        created_at = serializers.DateTimeField()

    @extend_schema(
        tags=["responses"],
        summary="The project's responses",
        parameters=[FilterSerializer],
        responses=responses({200: OutputSerializer(many=True)}, 400, 404),
    )
    def get(self, request: Request, slug: str) -> Response:
        project = project_for(request.user, slug, Perm.VIEW)
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        found = selectors.project_responses(project)
        if model := filters.validated_data.get("model"):
            found = found.filter(model=model)
        if task := filters.validated_data.get("task"):
            found = found.filter(task__external_id=task)
        return paginated(self, request, found, self.OutputSerializer)


class ResponseModelsApi(APIView):
    @extend_schema_serializer(component_name="ResponseModelCount")
    class OutputSerializer(serializers.Serializer):
        model = serializers.CharField()
        responses = serializers.IntegerField(source="n")
        tasks = serializers.IntegerField(help_text="Distinct tasks answered.")

    @extend_schema(
        tags=["responses"],
        summary="How many responses each model has, over how many tasks",
        responses=responses({200: OutputSerializer(many=True)}, 404),
    )
    def get(self, request: Request, slug: str) -> Response:
        project = project_for(request.user, slug, Perm.VIEW)
        counts = selectors.response_counts_by_model(project)
        return Response(self.OutputSerializer(counts, many=True).data)
