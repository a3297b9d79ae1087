"""JSON door for a compiled grader."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from rubrics import selectors
from rubrics.api.common import HASH_RULE, responses, service_errors
from rubrics.permissions import Perm


@extend_schema_serializer(component_name="Grader")
class GraderSerializer(serializers.Serializer):
    @extend_schema_serializer(component_name="GraderVersion")
    class VersionSerializer(serializers.Serializer):
        number = serializers.IntegerField()
        status = serializers.CharField()
        content_hash = serializers.CharField()
        published_at = serializers.DateTimeField()

    @extend_schema_serializer(component_name="GraderRubric")
    class RubricSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        title = serializers.CharField()
        task = serializers.CharField(source="task.external_id", allow_null=True)

    hash = serializers.CharField()
    project = serializers.SlugField(source="version.rubric.project.slug")
    rubric = RubricSerializer(source="version.rubric")
    version = VersionSerializer()
    spec = serializers.JSONField(help_text="The canonical grader; its SHA-256 is `hash`.")
    created_at = serializers.DateTimeField()


class GraderDetailApi(APIView):
    OutputSerializer = GraderSerializer

    @extend_schema(
        tags=["rubrics"],
        summary="A compiled grader: its spec, version and rubric",
        description=HASH_RULE,
        responses=responses({200: OutputSerializer}, 400, 404),
    )
    def get(self, request: Request, grader_hash: str) -> Response:
        with service_errors():
            grader = selectors.grader_for(request.user, grader_hash, Perm.VIEW)
        return Response(self.OutputSerializer(grader).data)
