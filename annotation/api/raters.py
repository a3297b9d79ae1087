"""JSON doors for raters and their verdicts: who decided what, for the roles that see
results.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation import selectors
from annotation.models import Rater, Verdict
from rubrics.api.common import (
    FILTERS_RULE,
    Pagination,
    grader_named,
    paginated,
    query_filters,
    responses,
)
from rubrics.permissions import Perm, project_for


class RaterListApi(APIView):
    pagination_class = Pagination

    @extend_schema_serializer(component_name="RaterFilter")
    class FilterSerializer(serializers.Serializer):
        kind = serializers.ChoiceField(choices=Rater.Kind.choices, required=False)

    @extend_schema_serializer(component_name="Rater")
    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        kind = serializers.CharField(help_text="person or judge.")
        name = serializers.CharField()
        username = serializers.CharField(
            source="user.username", allow_null=True, help_text="A person's; null for a judge."
        )

    @extend_schema(
        tags=["agreement"],
        summary="The project's raters: people and judges alike",
        description="Raters are made by the first verdict of a person, or with a judge; they "
        "are never edited or deleted (verdicts name them). " + FILTERS_RULE,
        parameters=[FilterSerializer],
        responses=responses({200: OutputSerializer(many=True)}, 400, 403, 404),
    )
    def get(self, request: Request, slug: str) -> Response:
        project = project_for(request.user, slug, Perm.VIEW_RESULTS)
        filters = query_filters(request, self.FilterSerializer)
        return paginated(
            self,
            request,
            selectors.project_raters(project).filter(**filters),
            self.OutputSerializer,
        )


class ProjectVerdictListApi(APIView):
    pagination_class = Pagination

    @extend_schema_serializer(component_name="VerdictFilter")
    class FilterSerializer(serializers.Serializer):
        run = serializers.IntegerField(required=False, help_text="A grading run's id.")
        response = serializers.IntegerField(required=False, help_text="A response's id.")
        criterion = serializers.IntegerField(required=False, help_text="A criterion's id.")
        rater = serializers.IntegerField(required=False, help_text="A rater's id.")
        rubric_version = serializers.IntegerField(
            required=False, help_text="A rubric version's id (as in /versions/{id}/)."
        )
        grader = serializers.CharField(
            required=False, help_text="A grader's hash, or a unique prefix of 12+ characters."
        )
        task = serializers.CharField(required=False, help_text="A task's external id.")
        outcome = serializers.ChoiceField(choices=Verdict.Outcome.choices, required=False)
        rater_kind = serializers.ChoiceField(choices=Rater.Kind.choices, required=False)

    @extend_schema_serializer(component_name="ProjectVerdict")
    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        response = serializers.IntegerField(source="response_id")
        criterion = serializers.IntegerField(source="criterion_id")
        rater = serializers.IntegerField(source="rater_id")
        rater_kind = serializers.CharField(source="rater.kind", help_text="person or judge.")
        grader = serializers.CharField(source="grader.hash", allow_null=True)
        run = serializers.IntegerField(source="run_id", allow_null=True)
        assignment = serializers.IntegerField(source="assignment_id", allow_null=True)
        sample_index = serializers.IntegerField()
        outcome = serializers.CharField(help_text="met, unmet, na or error.")
        value = serializers.FloatField(allow_null=True)
        explanation = serializers.CharField()
        evidence = serializers.CharField()
        judge_model = serializers.CharField()
        simulated = serializers.BooleanField()
        error = serializers.CharField()
        created_at = serializers.DateTimeField()

    @extend_schema(
        tags=["agreement"],
        summary="Every verdict of the project, judges' and people's, with provenance",
        description="Verdicts are written by runs and by annotators (`/assignments/`), never "
        "here; a person edits their own only until they submit. People's drafts are left "
        "out. " + FILTERS_RULE,
        parameters=[FilterSerializer],
        responses=responses({200: OutputSerializer(many=True)}, 400, 403, 404),
    )
    def get(self, request: Request, slug: str) -> Response:
        project = project_for(request.user, slug, Perm.VIEW_RESULTS)
        f = query_filters(request, self.FilterSerializer)
        lookups = {
            "run": "run_id",
            "response": "response_id",
            "criterion": "criterion_id",
            "rater": "rater_id",
            "rubric_version": "criterion__version_id",
            "task": "response__task__external_id",
            "outcome": "outcome",
            "rater_kind": "rater__kind",
        }
        if "grader" in f:  # its hash or a unique prefix
            grader = grader_named(project, f.pop("grader"))
            f["grader_id"] = grader.pk if grader else 0  # none: matches nothing
        found = selectors.project_verdicts(project).filter(
            **{lookups.get(name, name): value for name, value in f.items()}
        )
        return paginated(self, request, found, self.OutputSerializer)
