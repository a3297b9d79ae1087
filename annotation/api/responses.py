"""JSON doors for model responses: imported, listed, read, and counted per model."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation import selectors, services
from rubrics.api.common import FILTERS_RULE, Pagination, paginated, query_filters, responses
from rubrics.permissions import Perm, project_for

RESPONSE_RULE = (
    "Responses are immutable once imported and are never edited or deleted: runs, "
    "verdicts, gold and datasets name them."
)
BLIND_RULE = (
    "Annotators grade blind: they never see which model wrote a response nor its sample, "
    "so they get 403 here."
)
FIELDS_HELP = "; ".join(f"`{name}`: {help}" for name, help in services.RESPONSE_FIELDS.items())


class ResponseImportApi(APIView):
    parser_classes = [MultiPartParser]

    @extend_schema_serializer(component_name="ResponseImport")
    class InputSerializer(serializers.Serializer):
        file = serializers.FileField(
            help_text="Response rows as JSONL (one per line) or Parquet, an inspect-ai eval log "
            "(.eval, .json) or OpenTelemetry GenAI spans (JSON); the format is found from the "
            f"file. {FIELDS_HELP}. A .zip or .tar bundle holding responses.jsonl (or one "
            ".jsonl or .parquet at its top) and the files its rows name is taken too."
        )
        bundle = serializers.FileField(
            required=False,
            help_text="A .zip, .tar or .tar.gz of the images and files the rows name by "
            "relative path (at most ASSAY_BUNDLE_MAX_BYTES); never unpacked to disk.",
        )

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
        summary="Import model responses (JSONL, Parquet, inspect-ai log, OTel spans): all, or none",
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
                    "`ResponseImportErrors` (`errors`, `error_count`, `filename`); or, for a body "
                    "that cannot be read, a list of messages per field.",
                ),
                413: OpenApiResponse(
                    ErrorsSerializer,
                    description="Nothing was imported: the file is over "
                    "ASSAY_RESPONSE_UPLOAD_MAX_BYTES.",
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
            bundle = data.validated_data.get("bundle")
            result = services.responses_import_file(
                project=project,
                upload=upload,
                filename=upload.name,
                bundle=bundle,
                bundle_name=bundle.name if bundle else "",
            )
        if not result.ok:
            return Response(self.ErrorsSerializer(result).data, status=result.status)
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
        q = serializers.CharField(
            required=False,
            allow_blank=True,
            max_length=selectors.SEARCH_CHARS,
            help_text="Only responses whose text contains this (case-insensitive).",
        )
        sample_index = serializers.IntegerField(
            required=False, min_value=0, max_value=2**31 - 1, help_text="Only this sample."
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
        description=RESPONSE_RULE + " " + BLIND_RULE + " " + FILTERS_RULE,
        parameters=[FilterSerializer],
        responses=responses({200: OutputSerializer(many=True)}, 400, 403, 404),
    )
    def get(self, request: Request, slug: str) -> Response:
        project = project_for(request.user, slug, Perm.VIEW_MODELS)
        filters = query_filters(request, self.FilterSerializer)
        found = selectors.responses_matching(project, **filters)
        return paginated(self, request, found, self.OutputSerializer)


class ResponseDetailApi(APIView):
    OutputSerializer = ResponseListApi.OutputSerializer

    @extend_schema(
        tags=["responses"],
        summary="One response",
        description=RESPONSE_RULE + " " + BLIND_RULE,
        responses=responses({200: OutputSerializer}, 403, 404),
    )
    def get(self, request: Request, pk: int) -> Response:
        return Response(self.OutputSerializer(selectors.response_for(request.user, pk)).data)


class ResponseModelsApi(APIView):
    @extend_schema_serializer(component_name="ResponseModelCount")
    class OutputSerializer(serializers.Serializer):
        model = serializers.CharField()
        responses = serializers.IntegerField(source="n")
        tasks = serializers.IntegerField(help_text="Distinct tasks answered.")

    @extend_schema(
        tags=["responses"],
        summary="How many responses each model has, over how many tasks",
        description=BLIND_RULE,
        responses=responses({200: OutputSerializer(many=True)}, 400, 403, 404),
    )
    def get(self, request: Request, slug: str) -> Response:
        project = project_for(request.user, slug, Perm.VIEW_MODELS)
        query_filters(request, paged=False)
        counts = selectors.response_counts_by_model(project)
        return Response(self.OutputSerializer(counts, many=True).data)
