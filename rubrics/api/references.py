"""JSON doors for a task's reference answers and their attached files."""

from __future__ import annotations

from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    extend_schema_serializer,
)
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from rubrics import selectors, services
from rubrics.api.common import responses, service_errors
from rubrics.permissions import Perm, project_for


@extend_schema_serializer(component_name="ReferenceFile")
class ReferenceFileSerializer(serializers.Serializer):
    name = serializers.CharField(source="file_name", help_text="Sanitized file name.")
    sha256 = serializers.CharField(source="file_sha256")
    kind = serializers.CharField(
        source="file_kind", help_text="What its bytes are (pdf, docx, xlsx, png, ...)."
    )
    size = serializers.IntegerField(source="file_size", help_text="Bytes.")
    download = serializers.SerializerMethodField(
        help_text="The API URL that serves the file to project members."
    )

    def get_download(self, reference) -> str:
        return reverse("api_reference_file", kwargs={"pk": reference.pk})


@extend_schema_serializer(component_name="Reference")
class ReferenceSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    body = serializers.CharField(help_text="Markdown; untrusted, render sanitized.")
    file = serializers.SerializerMethodField()
    author = serializers.CharField(source="author.username", allow_null=True)
    created_at = serializers.DateTimeField()

    @extend_schema_field(ReferenceFileSerializer(allow_null=True))
    def get_file(self, reference) -> dict | None:
        return ReferenceFileSerializer(reference).data if reference.has_file else None


REFERENCE_RULE = (
    "A published grader keeps a copy of the reference it was compiled with, so references "
    "may be added, edited and deleted at any time; the next published version uses the "
    "newest one."
)


@extend_schema_serializer(component_name="ReferenceDetail")
class ReferenceDetailSerializer(ReferenceSerializer):
    task = serializers.CharField(source="task.external_id")


@extend_schema_serializer(component_name="ReferenceInput")
class ReferenceInputSerializer(serializers.Serializer):
    body = serializers.CharField(
        max_length=services.MAX_REFERENCE_CHARS, help_text="An exemplary answer, in Markdown."
    )


class ReferenceCreateApi(APIView):
    @extend_schema_serializer(component_name="ReferenceCreate")
    class InputSerializer(serializers.Serializer):
        body = serializers.CharField(
            required=False, allow_blank=True, help_text="The reference answer, in Markdown."
        )
        file = serializers.FileField(
            required=False,
            help_text="An optional attached file; at most ASSAY_REFERENCE_FILE_MAX_BYTES "
            "(20 MB by default). Stored privately; members download it from `file.download`.",
        )
        keep_file = serializers.BooleanField(
            required=False,
            default=False,
            help_text="With no new file: keep the current reference's file attached.",
        )

    @extend_schema(
        tags=["tasks"],
        summary="Add a reference answer to a task (Markdown, an attached file, or both)",
        description="The newest reference is the one shown beside the rubric and, when the "
        "rubric includes it, given to the judge.",
        request={"multipart/form-data": InputSerializer},
        responses=responses({201: ReferenceDetailSerializer}, 400, 403, 404),
    )
    def post(self, request: Request, slug: str, external_id: str) -> Response:
        project = project_for(request.user, slug, Perm.EDIT_RUBRICS)
        task = selectors.task_for(request.user, project, external_id, Perm.EDIT_RUBRICS)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        with service_errors():
            reference = services.reference_create(
                task=task,
                body=data.validated_data.get("body", ""),
                file=data.validated_data.get("file"),
                keep_file=data.validated_data["keep_file"],
                user=request.user,
            )
        return Response(ReferenceDetailSerializer(reference).data, status=status.HTTP_201_CREATED)


class ReferenceDetailApi(APIView):
    @extend_schema(
        tags=["tasks"],
        summary="A reference answer",
        responses=responses({200: ReferenceDetailSerializer}, 404),
    )
    def get(self, request: Request, pk: int) -> Response:
        return Response(
            ReferenceDetailSerializer(selectors.reference_for(request.user, pk, Perm.VIEW)).data
        )


class ReferenceUpdateApi(APIView):
    @extend_schema(
        tags=["tasks"],
        summary="Edit a reference answer",
        description=REFERENCE_RULE,
        request=ReferenceInputSerializer,
        responses=responses({200: ReferenceDetailSerializer}, 400, 403, 404),
    )
    def patch(self, request: Request, pk: int) -> Response:
        reference = selectors.reference_for(request.user, pk, Perm.EDIT_RUBRICS)
        data = ReferenceInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        with service_errors():
            reference = services.reference_update(
                reference=reference, body=data.validated_data["body"]
            )
        return Response(ReferenceDetailSerializer(reference).data)


class ReferenceDeleteApi(APIView):
    @extend_schema(
        tags=["tasks"],
        summary="Delete a reference answer",
        description=REFERENCE_RULE,
        request=None,
        responses=responses({204: None}, 403, 404),
    )
    def delete(self, request: Request, pk: int) -> Response:
        reference = selectors.reference_for(request.user, pk, Perm.EDIT_RUBRICS)
        services.reference_delete(reference=reference)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ReferenceFileApi(APIView):
    @extend_schema(
        tags=["tasks"],
        summary="A reference's attached file (its SHA-256 in the X-Content-SHA256 header)",
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
        reference = selectors.reference_for(request.user, pk, Perm.VIEW)
        return selectors.reference_download(reference)
