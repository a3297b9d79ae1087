"""JSON doors for a run's scores and the judge's verdicts on a scored response.

Both need VIEW_RESULTS: annotators stay blind to the judge.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.models import Verdict
from grading import selectors
from grading.models import Score
from rubrics.api.common import FILTERS_RULE, Pagination, paginated, query_filters, responses
from rubrics.permissions import Perm


class ScoreListApi(APIView):
    pagination_class = Pagination

    @extend_schema_serializer(component_name="Score")
    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        response = serializers.IntegerField(source="response_id")
        task = serializers.CharField(source="response.task.external_id")
        model = serializers.CharField(source="response.model")
        sample_index = serializers.IntegerField(source="response.sample_index")
        # A plain string: a second enum named "status" would collide in the schema.
        status = serializers.CharField(help_text="pending or done.")
        raw = serializers.FloatField(
            allow_null=True,
            help_text="Met points / possible points; may fall below 0; a missed gate caps it at "
            "min(raw, 0). Null while pending or when a verdict is an error.",
        )
        clipped = serializers.FloatField(allow_null=True, help_text="Raw clipped to [0, 1].")
        met_points = serializers.FloatField()
        possible_points = serializers.FloatField()
        error_count = serializers.IntegerField()
        gated = serializers.BooleanField(
            help_text="A gate criterion was not met: raw is capped at min(raw, 0)."
        )
        gated_by = serializers.ListField(
            child=serializers.IntegerField(),
            help_text="Ids of the gate criteria not met, in rubric order; empty when not gated.",
        )
        finished_at = serializers.DateTimeField(allow_null=True)

    @extend_schema_serializer(component_name="ScoreFilter")
    class FilterSerializer(serializers.Serializer):
        status = serializers.ChoiceField(choices=Score.Status.choices, required=False)
        model = serializers.CharField(required=False, help_text="Only this model's responses.")
        task = serializers.CharField(required=False, help_text="A task's external id.")
        response = serializers.IntegerField(required=False, help_text="A response's id.")

    @extend_schema(
        tags=["grading"],
        summary="A run's score for each response",
        description=FILTERS_RULE,
        parameters=[FilterSerializer],
        responses=responses({200: OutputSerializer(many=True)}, 400, 403, 404),
    )
    def get(self, request: Request, pk: int) -> Response:
        run = selectors.run_for(request.user, pk, Perm.VIEW_RESULTS)
        f = query_filters(request, self.FilterSerializer)
        scores = selectors.run_scores(run)
        lookups = {
            "status": "status",
            "model": "response__model",
            "task": "response__task__external_id",
            "response": "response_id",
        }
        scores = scores.filter(**{lookups[name]: value for name, value in f.items()})
        return paginated(self, request, scores, self.OutputSerializer)


class VerdictListApi(APIView):
    @extend_schema_serializer(component_name="Verdict")
    class OutputSerializer(serializers.Serializer):
        @extend_schema_serializer(component_name="VerdictCriterion")
        class CriterionSerializer(serializers.Serializer):
            id = serializers.IntegerField()
            position = serializers.IntegerField()
            text = serializers.CharField()
            points = serializers.DecimalField(
                max_digits=7, decimal_places=2, coerce_to_string=False
            )

        id = serializers.IntegerField()
        criterion = CriterionSerializer()
        step = serializers.IntegerField(
            allow_null=True,
            help_text="A step criterion's verdict at one step of an episode: the index of that "
            "assistant message (0-based; pages show it as #index+1). Null: the verdict on the "
            "whole response (for a step criterion, its step rule's result).",
        )
        outcome = serializers.ChoiceField(choices=Verdict.Outcome.choices)
        explanation = serializers.CharField()
        error = serializers.CharField(help_text="Why the verdict is an error, if it is.")
        simulated = serializers.BooleanField()
        judge_model = serializers.CharField()
        prompt_tokens = serializers.IntegerField()
        completion_tokens = serializers.IntegerField()
        created_at = serializers.DateTimeField()

    @extend_schema(
        tags=["grading"],
        summary="The judge's verdicts on one scored response, by criterion (then step)",
        responses=responses({200: OutputSerializer(many=True)}, 400, 403, 404),
    )
    def get(self, request: Request, pk: int, score_pk: int) -> Response:
        score = selectors.score_for(request.user, pk, score_pk, Perm.VIEW_RESULTS)
        query_filters(request, paged=False)
        verdicts = selectors.score_verdicts(score)
        return Response(self.OutputSerializer(verdicts, many=True).data)
