"""JSON doors for background imports of large response files."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation import import_jobs
from annotation.api.responses import ResponseImportApi
from annotation.models import ImportJob
from rubrics import uploads
from rubrics.api.common import (
    FILTERS_RULE,
    NEWEST_FIRST,
    Pagination,
    paginated,
    query_filters,
    responses,
)
from rubrics.permissions import Perm, project_for


@extend_schema_serializer(component_name="ImportJob")
class ImportJobSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    filename = serializers.CharField()
    status = serializers.CharField(help_text="queued, running, done or failed.")
    percent = serializers.IntegerField()
    rows_total = serializers.IntegerField()
    rows_done = serializers.IntegerField()
    created = serializers.IntegerField()
    already_present = serializers.IntegerField()
    error_count = serializers.IntegerField()
    errors = serializers.ListField(child=serializers.CharField(), help_text="The first ones.")
    attempts = serializers.IntegerField(
        help_text="Workers that took the job: more than 1 when a worker died and it was resumed."
    )
    created_by = serializers.CharField(source="created_by.username", allow_null=True)
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)


IMPORT_RULE = (
    "A worker imports the file with the same rules as `/responses/import/`: every row, or "
    "none, with `rows_done` growing as it goes. A job whose worker dies is queued again by the "
    "recovery sweep (up to ASSAY_IMPORT_MAX_ATTEMPTS tries, then failed saying why: post the "
    "file again to retry). The upload is deleted when the job ends. A job is a record: it is "
    "never edited or deleted."
)


class ImportJobListApi(APIView):
    pagination_class = Pagination
    OutputSerializer = ImportJobSerializer

    @extend_schema_serializer(component_name="ImportJobFilter")
    class FilterSerializer(serializers.Serializer):
        status = serializers.ChoiceField(choices=ImportJob.Status.choices, required=False)

    @extend_schema(
        tags=["responses"],
        summary="The project's background imports, newest first",
        description=IMPORT_RULE + " " + FILTERS_RULE,
        parameters=[FilterSerializer],
        responses=responses({200: OutputSerializer(many=True)}, 400, 403, 404),
    )
    def get(self, request: Request, slug: str) -> Response:
        project = project_for(request.user, slug, Perm.IMPORT_RESPONSES)
        filters = query_filters(request, self.FilterSerializer)
        jobs = import_jobs.project_import_jobs(project).filter(**filters)
        return paginated(self, request, jobs, self.OutputSerializer, ordering=NEWEST_FIRST)


class ImportJobCreateApi(APIView):
    parser_classes = [MultiPartParser]
    OutputSerializer = ImportJobSerializer

    @extend_schema(
        tags=["responses"],
        summary="Import a large file of responses in the background (poll the job)",
        description=IMPORT_RULE,
        request={"multipart/form-data": ResponseImportApi.InputSerializer},
        responses=responses({202: OutputSerializer}, 400, 403, 404, 413),
    )
    def post(self, request: Request, slug: str) -> Response:
        project = project_for(request.user, slug, Perm.IMPORT_RESPONSES)
        data = ResponseImportApi.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            job = import_jobs.import_job_create(
                project=project,
                upload=data.validated_data["file"],
                user=request.user,
                bundle=data.validated_data.get("bundle"),
            )
        except uploads.UploadRefused as exc:
            return Response({exc.field: [exc.text]}, status=exc.status)
        return Response(self.OutputSerializer(job).data, status=status.HTTP_202_ACCEPTED)


class ImportJobDetailApi(APIView):
    OutputSerializer = ImportJobSerializer

    @extend_schema(
        tags=["responses"],
        summary="A background import: status, progress, then counts or errors",
        description=IMPORT_RULE,
        responses=responses({200: OutputSerializer}, 403, 404),
    )
    def get(self, request: Request, pk: int) -> Response:
        job = import_jobs.import_job_for(request.user, pk, Perm.IMPORT_RESPONSES)
        return Response(self.OutputSerializer(job).data)
