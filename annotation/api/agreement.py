"""JSON doors for agreement among raters on a rubric version, and where they disagree."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation import selectors
from rubrics.api.common import query_filters, responses
from rubrics.permissions import Perm


@extend_schema_serializer(component_name="AgreementFigures")
class AgreementFiguresSerializer(serializers.Serializer):
    items = serializers.IntegerField(help_text="(response, criterion) pairs rated.")
    ratings = serializers.IntegerField()
    percent_agreement = serializers.FloatField(
        source="percent", allow_null=True, help_text="Share of agreeing rater pairs."
    )
    mean_cohen_kappa = serializers.FloatField(source="mean_kappa", allow_null=True)
    fleiss_kappa = serializers.FloatField(source="fleiss", allow_null=True)
    fleiss_items = serializers.IntegerField(
        help_text="Items rated by the most common number of raters, which Fleiss uses."
    )
    krippendorff_alpha = serializers.FloatField(source="alpha", allow_null=True)


class AgreementApi(APIView):
    @extend_schema_serializer(component_name="Agreement")
    class OutputSerializer(serializers.Serializer):
        @extend_schema_serializer(component_name="AgreementRater")
        class RaterSerializer(serializers.Serializer):
            id = serializers.IntegerField(source="pk")
            name = serializers.CharField()
            kind = serializers.ChoiceField(choices=["person", "judge"])

        @extend_schema_serializer(component_name="CriterionAgreement")
        class CriterionSerializer(serializers.Serializer):
            criterion = serializers.IntegerField()
            ordinal = serializers.BooleanField(help_text="A scale: alpha is ordinal.")
            figures = AgreementFiguresSerializer()

        @extend_schema_serializer(component_name="RaterPair")
        class PairSerializer(serializers.Serializer):
            a = serializers.IntegerField()
            b = serializers.IntegerField()
            items = serializers.IntegerField()
            percent_agreement = serializers.FloatField(source="percent", allow_null=True)
            cohen_kappa = serializers.FloatField(source="kappa", allow_null=True)

        @extend_schema_serializer(component_name="RaterAgainstOthers")
        class PerRaterSerializer(serializers.Serializer):
            rater = serializers.IntegerField(source="rater_id")
            items = serializers.IntegerField()
            percent_agreement = serializers.FloatField(source="percent", allow_null=True)
            mean_cohen_kappa = serializers.FloatField(source="mean_kappa", allow_null=True)

        raters = RaterSerializer(many=True)
        overall = AgreementFiguresSerializer()
        per_criterion = CriterionSerializer(many=True)
        per_step_criterion = CriterionSerializer(
            many=True,
            help_text="Step criteria compared step by step: an item is (response, step), so "
            "items counts the steps rated; `per_criterion` compares their step rule's results.",
        )
        pairs = PairSerializer(many=True)
        per_rater = PerRaterSerializer(many=True)

    @extend_schema(
        tags=["agreement"],
        summary="Agreement among people and judges (judges count as raters) on a version",
        responses=responses({200: OutputSerializer}, 403, 404),
    )
    def get(self, request: Request, pk: int) -> Response:
        version = selectors.version_for(request.user, pk, Perm.VIEW_RESULTS)
        report = selectors.agreement_report(version)
        f = report.figures
        data = {
            "raters": [report.raters[i] for i in f.raters],
            "overall": f.overall,
            "per_criterion": [
                {"criterion": c, "ordinal": c in f.ordinal, "figures": x}
                for c, x in f.per_criterion.items()
            ],
            "per_step_criterion": [
                {"criterion": c, "ordinal": False, "figures": x}
                for c, x in (report.at_steps.per_criterion.items() if report.at_steps else ())
            ],
            "pairs": f.pairs,
            "per_rater": f.per_rater,
        }
        return Response(self.OutputSerializer(data).data)


class DisagreementListApi(APIView):
    @extend_schema_serializer(component_name="DisagreementFilter")
    class FilterSerializer(serializers.Serializer):
        among = serializers.ChoiceField(choices=["all", "people", "judge"], default="all")
        status = serializers.ChoiceField(choices=["open", "decided", "all"], default="open")

    @extend_schema_serializer(component_name="Disagreement")
    class OutputSerializer(serializers.Serializer):
        response = serializers.IntegerField(source="response_id")
        criterion = serializers.IntegerField(source="criterion_id")
        step = serializers.IntegerField(
            allow_null=True, help_text="A step criterion's step raters differ at; null: whole."
        )
        outcomes = serializers.DictField(child=serializers.ListField(child=serializers.CharField()))
        people_disagree = serializers.BooleanField()
        judge_disagrees = serializers.BooleanField()
        gold = serializers.CharField(allow_null=True)

    @extend_schema(
        tags=["agreement"],
        summary="(response, criterion) pairs, and steps of step criteria, where raters disagree",
        parameters=[FilterSerializer],
        responses=responses({200: OutputSerializer(many=True)}, 400, 403, 404),
    )
    def get(self, request: Request, pk: int) -> Response:
        version = selectors.version_for(request.user, pk, Perm.VIEW_RESULTS)
        filters = query_filters(request, self.FilterSerializer, paged=False)
        found = selectors.disagreements(version, **filters)
        return Response(self.OutputSerializer(found, many=True).data)
