"""JSON door comparing two runs of a suite (grading/comparison.py): deltas, flips, agreement.

It needs VIEW_RESULTS: annotators stay blind to the judge.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from grading import selectors
from grading.api.runs import RunSerializer
from rubrics.api.common import query_filters, responses, service_errors
from rubrics.permissions import Perm


@extend_schema_serializer(component_name="CompareModel")
class ComparePairSerializer(serializers.Serializer):
    model_a = serializers.CharField()
    model_b = serializers.CharField()
    tasks = serializers.IntegerField(help_text="Tasks both runs scored for this pair.")
    responses_a = serializers.IntegerField()
    responses_b = serializers.IntegerField()
    mean_a = serializers.FloatField(allow_null=True, help_text="Clipped mean, shared tasks.")
    mean_b = serializers.FloatField(allow_null=True)
    delta = serializers.FloatField(allow_null=True, help_text="mean_b - mean_a.")
    ci = serializers.ListField(
        child=serializers.FloatField(),
        allow_null=True,
        help_text="95% paired bootstrap interval of delta, by task; null below 2 tasks.",
    )


@extend_schema_serializer(component_name="CompareTask")
class CompareTaskSerializer(serializers.Serializer):
    task = serializers.CharField(help_text="The task's external id.")
    model_a = serializers.CharField()
    model_b = serializers.CharField()
    responses_a = serializers.IntegerField()
    responses_b = serializers.IntegerField()
    mean_a = serializers.FloatField()
    mean_b = serializers.FloatField()
    delta = serializers.FloatField()


@extend_schema_serializer(component_name="CompareCriterion")
class CompareCriterionSerializer(serializers.Serializer):
    task = serializers.CharField()
    criterion_a = serializers.IntegerField()
    criterion_b = serializers.IntegerField()
    position = serializers.IntegerField(help_text="In B's grader, from 0.")
    text = serializers.CharField(help_text="As B's grader words it.")
    met_a = serializers.IntegerField()
    decided_a = serializers.IntegerField()
    met_b = serializers.IntegerField()
    decided_b = serializers.IntegerField()
    rate_a = serializers.FloatField()
    rate_b = serializers.FloatField()
    delta = serializers.FloatField()


@extend_schema_serializer(component_name="CompareFlip")
class CompareFlipSerializer(serializers.Serializer):
    response = serializers.IntegerField()
    task = serializers.CharField()
    model = serializers.CharField()
    sample_index = serializers.IntegerField()
    criterion_a = serializers.IntegerField()
    criterion_b = serializers.IntegerField()
    position = serializers.IntegerField()
    text = serializers.CharField()
    before = serializers.CharField(help_text="The outcome in A: met or unmet.")
    after = serializers.CharField(help_text="The outcome in B.")
    score_a = serializers.IntegerField(help_text="The response's score in A.")
    score_b = serializers.IntegerField()


@extend_schema_serializer(component_name="CompareAgreement")
class CompareAgreementSerializer(serializers.Serializer):
    items = serializers.IntegerField(help_text="Items both lead judges decided.")
    agree = serializers.IntegerField()
    percent = serializers.FloatField(allow_null=True)
    kappa = serializers.FloatField(allow_null=True, help_text="Cohen's kappa; null if undefined.")


@extend_schema_serializer(component_name="CompareTaskPage")
class CompareTaskPageSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    page = serializers.IntegerField()
    pages = serializers.IntegerField()
    results = CompareTaskSerializer(many=True)


@extend_schema_serializer(component_name="CompareCriterionPage")
class CompareCriterionPageSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    page = serializers.IntegerField()
    pages = serializers.IntegerField()
    results = CompareCriterionSerializer(many=True)


@extend_schema_serializer(component_name="CompareFlipPage")
class CompareFlipPageSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    page = serializers.IntegerField()
    pages = serializers.IntegerField()
    results = CompareFlipSerializer(many=True)


@extend_schema_serializer(component_name="CompareFilter")
class CompareFilterSerializer(serializers.Serializer):
    tasks_page = serializers.IntegerField(required=False, min_value=1, max_value=10**6)
    criteria_page = serializers.IntegerField(required=False, min_value=1, max_value=10**6)
    flips_page = serializers.IntegerField(required=False, min_value=1, max_value=10**6)


@extend_schema_serializer(component_name="RunComparison")
class CompareOutputSerializer(serializers.Serializer):
    a = RunSerializer()
    b = RunSerializer()
    same_version = serializers.BooleanField()
    pairing = serializers.CharField(help_text="Which models were compared, and why.")
    interval_rule = serializers.CharField()
    criteria_rule = serializers.CharField()
    verdicts_rule = serializers.CharField()
    models = ComparePairSerializer(many=True, help_text="Per model pair (see pairing).")
    tasks_only_a = serializers.IntegerField(help_text="Tasks only A scored: left out.")
    tasks_only_b = serializers.IntegerField(help_text="Tasks only B scored: left out.")
    shared_responses = serializers.IntegerField(help_text="Responses graded in both runs.")
    agreement = CompareAgreementSerializer(
        allow_null=True, help_text="Lead judges on shared items; null: no shared response."
    )
    tasks = CompareTaskPageSerializer(help_text="Per task, largest |delta| first.")
    criteria = CompareCriterionPageSerializer(help_text="Per criterion, largest |delta| first.")
    flips = CompareFlipPageSerializer(help_text="Items met in one run and unmet in the other.")


class RunCompareApi(APIView):
    FilterSerializer = CompareFilterSerializer
    OutputSerializer = CompareOutputSerializer

    @extend_schema(
        tags=["grading"],
        summary="Run B (other_id) against run A (id): deltas, flips, agreement",
        description=(
            "Both runs must grade the same suite (any two versions); otherwise a 400 on "
            "`other_id` says why. Deltas are B minus A. The task, criterion and flip lists "
            "come 50 rows a page (`tasks_page`, `criteria_page`, `flips_page`; a page past "
            "the end gives the last)."
        ),
        parameters=[FilterSerializer],
        responses=responses({200: OutputSerializer}, 400, 403, 404),
    )
    def get(self, request: Request, pk: int, other_id: int) -> Response:
        from grading.results import comparison

        a = selectors.run_for(request.user, pk, Perm.VIEW_RESULTS)
        b = selectors.run_for(request.user, other_id, Perm.VIEW_RESULTS)
        f = query_filters(request, self.FilterSerializer, paged=False)
        with service_errors():
            result = comparison.compare(a, b)
        pages = {
            "tasks": result.tasks_page(f.get("tasks_page")),
            "criteria": result.criteria_page(f.get("criteria_page")),
            "flips": result.flips_page(f.get("flips_page")),
        }
        data = {
            "a": a,
            "b": b,
            "same_version": result.same_version,
            "pairing": result.pairing,
            "interval_rule": result.interval_rule,
            "criteria_rule": result.criteria_rule,
            "verdicts_rule": result.verdicts_rule,
            "models": result.pairs,
            "tasks_only_a": result.tasks_only_a,
            "tasks_only_b": result.tasks_only_b,
            "shared_responses": result.shared_responses,
            "agreement": result.agreement,
            **{
                name: {
                    "count": page.paginator.count,
                    "page": page.number,
                    "pages": page.paginator.num_pages,
                    "results": list(page.object_list),
                }
                for name, page in pages.items()
            },
        }
        return Response(self.OutputSerializer(data).data)
