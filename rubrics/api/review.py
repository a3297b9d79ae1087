"""JSON doors for review: versions submitted, approved, reopened and retired; diffs,
history and review comments.
"""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from rubrics import params, selectors, services
from rubrics.api.common import (
    FILTERS_RULE,
    NEWEST_FIRST,
    Pagination,
    paginated,
    query_filters,
    responses,
    service_errors,
)
from rubrics.api.graders import GraderSerializer
from rubrics.api.rubrics import RubricSerializer, with_versions
from rubrics.models import Rubric, RubricVersion
from rubrics.permissions import Perm, project_for


def _open_version(rubric: Rubric) -> RubricVersion:
    version = rubric.versions.filter(
        status__in=[RubricVersion.Status.DRAFT, RubricVersion.Status.IN_REVIEW]
    ).first()
    if version is None:
        raise ValidationError(
            {api_settings.NON_FIELD_ERRORS_KEY: ["No draft or version in review."]}
        )
    return version


class RubricSubmitApi(APIView):
    OutputSerializer = RubricSerializer

    @extend_schema(
        tags=["rubrics"],
        summary="Send the draft to review; it is read-only until approved or reopened",
        request=None,
        responses=responses({200: OutputSerializer}, 400, 403, 404),
    )
    def post(self, request: Request, pk: int) -> Response:
        rubric = selectors.rubric_for(request.user, pk, Perm.EDIT_RUBRICS)
        version = _open_version(rubric)
        with service_errors():
            services.version_submit(version=version, user=request.user)
        return Response(self.OutputSerializer(with_versions(rubric)).data)


class RubricApproveApi(APIView):
    OutputSerializer = GraderSerializer

    @extend_schema(
        tags=["rubrics"],
        summary="Approve the version in review: it is published (a reviewer, not its author)",
        request=None,
        responses=responses({201: OutputSerializer}, 400, 403, 404),
    )
    def post(self, request: Request, pk: int) -> Response:
        rubric = selectors.rubric_for(request.user, pk, Perm.APPROVE)
        version = _open_version(rubric)
        with service_errors():
            grader = services.version_approve(
                version=version, user=request.user, role=rubric.project.role
            )
        grader.version.rubric.project = rubric.project
        return Response(self.OutputSerializer(grader).data, status=status.HTTP_201_CREATED)


class RubricReopenApi(APIView):
    OutputSerializer = RubricSerializer

    @extend_schema(
        tags=["rubrics"],
        summary="Move the version in review back to draft, to address comments",
        request=None,
        responses=responses({200: OutputSerializer}, 400, 403, 404),
    )
    def post(self, request: Request, pk: int) -> Response:
        rubric = selectors.rubric_for(request.user, pk, Perm.EDIT_RUBRICS)
        version = _open_version(rubric)
        with service_errors():
            services.version_reopen(version=version, user=request.user)
        return Response(self.OutputSerializer(with_versions(rubric)).data)


class VersionRetireApi(APIView):
    OutputSerializer = RubricSerializer

    @extend_schema(
        tags=["rubrics"],
        summary="Retire a published version: it stays readable and its grader keeps working, "
        "but new work should use a newer version",
        description="Only a published version is retired (400 otherwise); retiring is final.",
        request=None,
        responses=responses({200: OutputSerializer}, 400, 403, 404),
    )
    def post(self, request: Request, pk: int, number: int) -> Response:
        rubric = selectors.rubric_for(request.user, pk, Perm.PUBLISH)
        version = get_object_or_404(rubric.versions, number=number)
        with service_errors():
            services.version_retire(version=version, user=request.user)
        return Response(self.OutputSerializer(with_versions(rubric)).data)


@extend_schema_serializer(component_name="RubricDiffMove")
class DiffMoveSerializer(serializers.Serializer):
    from_ = serializers.IntegerField(help_text="1-based place in version a.")  # "from" is a keyword
    to = serializers.IntegerField(help_text="1-based place in version b.")

    def get_fields(self):
        fields = super().get_fields()
        fields["from"] = fields.pop("from_")
        return fields


@extend_schema_serializer(component_name="RubricDiffWords")
class DiffWordsSerializer(serializers.Serializer):
    op = serializers.CharField(help_text="equal, delete or insert.")
    text = serializers.CharField(trim_whitespace=False)


class RubricDiffApi(APIView):
    @extend_schema_serializer(component_name="RubricDiffRow")
    class OutputSerializer(serializers.Serializer):
        # A plain string: a second enum named "status" would collide in the schema.
        status = serializers.CharField(help_text="added, removed, changed, moved or same.")
        changed = serializers.ListField(child=serializers.CharField())
        left = serializers.JSONField(allow_null=True)
        right = serializers.JSONField(allow_null=True)
        moved = DiffMoveSerializer(
            allow_null=True, help_text="Its place before and after, when its order changed."
        )
        words = DiffWordsSerializer(
            many=True, help_text="When the text changed: its runs of equal, deleted, inserted text."
        )

    @extend_schema(
        tags=["rubrics"],
        summary="Criteria added, removed and changed between versions a and b",
        parameters=[
            OpenApiParameter("a", int, description="From version number (default: previous)."),
            OpenApiParameter("b", int, description="To version number (default: newest)."),
        ],
        responses=responses({200: OutputSerializer(many=True)}, 400, 404),
    )
    def get(self, request: Request, pk: int) -> Response:
        rubric = selectors.rubric_for(request.user, pk, Perm.VIEW)
        versions = {v.number: v for v in rubric.versions.all()}
        numbers = sorted(versions)
        picked = []
        for name, default in (
            ("a", numbers[-2] if len(numbers) > 1 else numbers[-1]),
            ("b", numbers[-1]),
        ):
            number = params.whole_number(request.query_params, name, default)
            if number not in versions:
                raise ValidationError({name: [f"No version {number}."]})
            picked.append(versions[number])
        rows = selectors.version_diff(*picked)
        return Response(self.OutputSerializer(rows, many=True).data)


@extend_schema_serializer(component_name="ReviewCommentReply")
class CommentReplySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    parent = serializers.IntegerField(source="parent_id", help_text="The comment it answers.")
    author = serializers.CharField(source="author.username", allow_null=True)
    body = serializers.CharField()
    created_at = serializers.DateTimeField()


@extend_schema_serializer(component_name="ReviewComment")
class CommentSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    version = serializers.IntegerField(source="version.number")
    criterion = serializers.IntegerField(source="criterion_id", allow_null=True)
    author = serializers.CharField(source="author.username", allow_null=True)
    body = serializers.CharField()
    created_at = serializers.DateTimeField()
    resolved_by = serializers.CharField(source="resolved_by.username", allow_null=True)
    resolved_at = serializers.DateTimeField(allow_null=True)
    replies = CommentReplySerializer(
        source="replies.all", many=True, help_text="The thread under the comment, oldest first."
    )


class CommentListApi(APIView):
    pagination_class = Pagination
    OutputSerializer = CommentSerializer

    @extend_schema_serializer(component_name="CommentFilter")
    class FilterSerializer(serializers.Serializer):
        version = serializers.IntegerField(required=False, min_value=1, help_text="A number.")
        resolved = serializers.BooleanField(required=False, allow_null=True, default=None)

    @extend_schema(
        tags=["rubrics"],
        summary="Review comments on every version of a rubric, oldest first",
        description="Comments are part of the review record: they are resolved, never edited "
        "or deleted. " + FILTERS_RULE,
        parameters=[FilterSerializer],
        responses=responses({200: OutputSerializer(many=True)}, 400, 404),
    )
    def get(self, request: Request, pk: int) -> Response:
        rubric = selectors.rubric_for(request.user, pk, Perm.VIEW)
        filters = query_filters(request, self.FilterSerializer)
        comments = selectors.rubric_comments(rubric)
        if "version" in filters:
            comments = comments.filter(version__number=filters["version"])
        if "resolved" in filters:
            comments = comments.filter(resolved_at__isnull=not filters["resolved"])
        return paginated(self, request, comments, self.OutputSerializer)


class ReviewInboxApi(APIView):
    pagination_class = Pagination

    @extend_schema_serializer(component_name="ReviewInboxItem")
    class OutputSerializer(serializers.Serializer):
        rubric = serializers.IntegerField(source="rubric_id")
        rubric_title = serializers.CharField(source="rubric.title")
        version = serializers.IntegerField(source="number")
        author = serializers.CharField(source="created_by.username", allow_null=True)
        submitted_by = serializers.CharField(source="submitted_by.username", allow_null=True)
        submitted_at = serializers.DateTimeField(allow_null=True)
        open_comments = serializers.IntegerField(help_text="Unresolved top-level comments.")
        may_approve = serializers.BooleanField(
            help_text="Whether you may approve it: a reviewer, never of their own draft."
        )

    @extend_schema(
        tags=["rubrics"],
        summary="The project's rubric versions in review, and which ones you may approve",
        description=FILTERS_RULE,
        responses=responses({200: OutputSerializer(many=True)}, 400, 403, 404),
    )
    def get(self, request: Request, slug: str) -> Response:
        project = project_for(request.user, slug, Perm.DISCUSS)
        query_filters(request)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(selectors.review_inbox(project), request, view=self)
        versions = selectors.mark_approvable(page, request.user, project.role)
        return paginator.get_paginated_response(self.OutputSerializer(versions, many=True).data)


class RubricHistoryApi(APIView):
    pagination_class = Pagination

    @extend_schema_serializer(component_name="RubricEvent")
    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        version = serializers.IntegerField(source="version_number", allow_null=True)
        criterion_lineage = serializers.UUIDField(
            allow_null=True, help_text="The same criterion across versions."
        )
        user = serializers.CharField(source="user.username", allow_null=True)
        action = serializers.CharField()
        changes = serializers.JSONField()
        at = serializers.DateTimeField()

    @extend_schema(
        tags=["rubrics"],
        summary="Who changed what, when: the rubric's history, newest first",
        description=FILTERS_RULE,
        responses=responses({200: OutputSerializer(many=True)}, 400, 404),
    )
    def get(self, request: Request, pk: int) -> Response:
        rubric = selectors.rubric_for(request.user, pk, Perm.VIEW)
        query_filters(request)
        events = selectors.rubric_events(rubric)
        return paginated(self, request, events, self.OutputSerializer, ordering=NEWEST_FIRST)


class CommentCreateApi(APIView):
    @extend_schema_serializer(component_name="ReviewCommentCreate")
    class InputSerializer(serializers.Serializer):
        body = serializers.CharField(max_length=5000)
        criterion = serializers.IntegerField(
            required=False, allow_null=True, help_text="A criterion id of the version in review."
        )

    OutputSerializer = CommentSerializer

    @extend_schema(
        tags=["rubrics"],
        summary="Comment on the version in review, on one criterion or the whole rubric",
        request=InputSerializer,
        responses=responses({201: OutputSerializer}, 400, 403, 404),
    )
    def post(self, request: Request, pk: int) -> Response:
        rubric = selectors.rubric_for(request.user, pk, Perm.REVIEW)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        version = _open_version(rubric)
        criterion = None
        if (criterion_id := data.validated_data.get("criterion")) is not None:
            criterion = version.criteria.filter(pk=criterion_id).first()
            if criterion is None:
                raise ValidationError({"criterion": [f"No criterion {criterion_id} here."]})
        with service_errors():
            comment = services.comment_add(
                version=version,
                user=request.user,
                body=data.validated_data["body"],
                criterion=criterion,
            )
        return Response(self.OutputSerializer(comment).data, status=status.HTTP_201_CREATED)


class CommentReplyApi(APIView):
    @extend_schema_serializer(component_name="ReviewCommentReplyCreate")
    class InputSerializer(serializers.Serializer):
        body = serializers.CharField(max_length=5000)

    OutputSerializer = CommentReplySerializer

    @extend_schema(
        tags=["rubrics"],
        summary="Reply to a review comment before it is resolved (authors and reviewers)",
        request=InputSerializer,
        responses=responses({201: OutputSerializer}, 400, 403, 404),
    )
    def post(self, request: Request, pk: int) -> Response:
        comment = selectors.comment_for(request.user, pk, Perm.DISCUSS)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        with service_errors():
            reply = services.comment_reply(
                comment=comment, user=request.user, body=data.validated_data["body"]
            )
        return Response(self.OutputSerializer(reply).data, status=status.HTTP_201_CREATED)


class CommentResolveApi(APIView):
    OutputSerializer = CommentSerializer

    @extend_schema(
        tags=["rubrics"],
        summary="Resolve a review comment (the rubric's authors do)",
        request=None,
        responses=responses({200: OutputSerializer}, 400, 403, 404),
    )
    def post(self, request: Request, pk: int) -> Response:
        comment = selectors.comment_for(request.user, pk, Perm.EDIT_RUBRICS)
        with service_errors():
            comment = services.comment_resolve(comment=comment, user=request.user)
        return Response(self.OutputSerializer(comment).data)
