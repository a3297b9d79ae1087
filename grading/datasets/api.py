"""JSON doors for dataset snapshots: list, request, read (with the card), download, retry a
failed one, delete."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from grading.datasets import snapshots
from grading.models import DatasetSnapshot
from rubrics.api.common import (
    FILTERS_RULE,
    NEWEST_FIRST,
    Pagination,
    paginated,
    query_filters,
    responses,
    service_errors,
)
from rubrics.permissions import Perm, project_for


@extend_schema_serializer(component_name="DatasetSnapshot")
class SnapshotSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    format = serializers.CharField()
    params = serializers.JSONField()
    license = serializers.CharField()
    status = serializers.CharField()
    rows_total = serializers.IntegerField()
    rows_done = serializers.IntegerField()
    percent = serializers.IntegerField()
    size_bytes = serializers.IntegerField()
    sha256 = serializers.CharField()
    provenance = serializers.JSONField()
    card = serializers.CharField(help_text="The dataset card, Markdown.")
    error = serializers.CharField()
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)


class SnapshotListApi(APIView):
    pagination_class = Pagination
    OutputSerializer = SnapshotSerializer

    @extend_schema_serializer(component_name="DatasetSnapshotFilter")
    class FilterSerializer(serializers.Serializer):
        # Not `format`: DRF reads ?format= to choose the reply's renderer (?format=json).
        dataset_format = serializers.ChoiceField(
            choices=sorted(snapshots.FORMATS), required=False, help_text="The snapshot's format."
        )
        status = serializers.ChoiceField(choices=DatasetSnapshot.Status.choices, required=False)

    @extend_schema(
        tags=["datasets"],
        summary="The project's dataset snapshots, newest first",
        description=FILTERS_RULE,
        parameters=[FilterSerializer],
        responses=responses({200: OutputSerializer(many=True)}, 400, 403, 404),
    )
    def get(self, request: Request, slug: str) -> Response:
        project = project_for(request.user, slug, Perm.VIEW_RESULTS)
        filters = query_filters(request, self.FilterSerializer)
        found = snapshots.project_snapshots(project)
        if "dataset_format" in filters:
            found = found.filter(format=filters["dataset_format"])
        if "status" in filters:
            found = found.filter(status=filters["status"])
        return paginated(
            self,
            request,
            found,
            self.OutputSerializer,
            ordering=NEWEST_FIRST,
        )


class SnapshotCreateApi(APIView):
    @extend_schema_serializer(component_name="DatasetSnapshotCreate")
    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=100)
        format = serializers.ChoiceField(choices=sorted(snapshots.FORMATS))
        license = serializers.CharField(max_length=100, required=False, allow_blank=True)
        run = serializers.IntegerField(
            required=False,
            help_text="The run: required for preference-pairs, scores-jsonl and "
            "step-supervision; narrows verdicts-jsonl and verdicts-parquet to it.",
        )
        min_margin = serializers.FloatField(required=False, min_value=0, max_value=1)
        suite = serializers.IntegerField(
            required=False,
            help_text="A suite's id: required for suite-card; narrows healthbench-jsonl, "
            "openai-rft and verl-parquet to its version's tasks and pinned graders, and names "
            "the version in each row.",
        )
        suite_version = serializers.IntegerField(
            required=False, min_value=1, help_text="The suite's version number (default: newest)."
        )

    OutputSerializer = SnapshotSerializer

    @extend_schema(
        tags=["datasets"],
        summary="Request a snapshot; a worker builds it (poll its status)",
        request=InputSerializer,
        responses=responses({202: OutputSerializer}, 400, 403, 404),
    )
    def post(self, request: Request, slug: str) -> Response:
        project = project_for(request.user, slug, Perm.RUN_GRADING)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        with service_errors():
            version = None
            if "suite" in values:
                version = snapshots.suite_version_of(
                    project, values["suite"], values.get("suite_version")
                )
            elif "suite_version" in values:
                raise ValidationError({"suite": "Name the suite whose version you give."})
            snapshot = snapshots.snapshot_create(
                project=project,
                name=values["name"],
                format=values["format"],
                license=values.get("license", ""),
                run_id=values.get("run"),
                min_margin=values.get("min_margin", 0.1),
                suite_version_id=version.pk if version else None,
                user=request.user,
            )
        return Response(self.OutputSerializer(snapshot).data, status=status.HTTP_202_ACCEPTED)


class SnapshotDetailApi(APIView):
    OutputSerializer = SnapshotSerializer

    @extend_schema(
        tags=["datasets"],
        summary="A snapshot: status and progress, then provenance, SHA-256 and card",
        responses=responses({200: OutputSerializer}, 403, 404),
    )
    def get(self, request: Request, pk: int) -> Response:
        snapshot = snapshots.snapshot_for(request.user, pk, Perm.VIEW_RESULTS)
        return Response(self.OutputSerializer(snapshot).data)


class SnapshotDownloadApi(APIView):
    @extend_schema(
        tags=["datasets"],
        summary="The snapshot's file (its SHA-256 in the X-Content-SHA256 header)",
        responses=responses(
            {
                (200, "application/octet-stream"): OpenApiResponse(
                    OpenApiTypes.BINARY, description="The file."
                )
            },
            403,
            404,
        ),
    )
    def get(self, request: Request, pk: int):
        snapshot = snapshots.snapshot_for(request.user, pk, Perm.VIEW_RESULTS)
        return snapshots.snapshot_download(snapshot, actor=request.user)


class SnapshotRetryApi(APIView):
    OutputSerializer = SnapshotSerializer

    @extend_schema(
        tags=["datasets"],
        summary="Build a failed snapshot again, with its name and parameters",
        description="Its error is cleared and a worker builds it (poll its status). Only a "
        "failed snapshot is retried (409 otherwise); deleting it instead frees its name.",
        request=None,
        responses=responses({202: OutputSerializer}, 403, 404, 409),
    )
    def post(self, request: Request, pk: int) -> Response:
        snapshot = snapshots.snapshot_for(request.user, pk, Perm.RUN_GRADING)
        with service_errors():
            snapshot = snapshots.snapshot_retry(snapshot=snapshot, user=request.user)
        return Response(self.OutputSerializer(snapshot).data, status=status.HTTP_202_ACCEPTED)


class SnapshotDeleteApi(APIView):
    @extend_schema(
        tags=["datasets"],
        summary="Delete a snapshot and its file",
        description="A snapshot never changes; deleting it (or retrying a failed one) is the only "
        "write, and frees its name. One being built is left alone until it is ready or failed "
        "(409); a queued one is simply never built.",
        request=None,
        responses=responses({204: None}, 403, 404, 409),
    )
    def delete(self, request: Request, pk: int) -> Response:
        snapshot = snapshots.snapshot_for(request.user, pk, Perm.RUN_GRADING)
        with service_errors():
            snapshots.snapshot_delete(snapshot=snapshot)
        return Response(status=status.HTTP_204_NO_CONTENT)
