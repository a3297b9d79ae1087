"""JSON doors for calibration: a judge against gold on a rubric version, and the project's
threshold for flagging criteria.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation import selectors, services
from rubrics import params
from rubrics.api.common import responses, service_errors
from rubrics.permissions import Perm, project_for


class CalibrationApi(APIView):
    @extend_schema_serializer(component_name="Calibration")
    class OutputSerializer(serializers.Serializer):
        @extend_schema_serializer(component_name="CriterionCalibration")
        class CriterionSerializer(serializers.Serializer):
            criterion = serializers.IntegerField()
            position = serializers.IntegerField()
            flagged = serializers.BooleanField(
                help_text="Below the project's threshold on at least min_items items."
            )
            not_flagged_because = serializers.CharField(
                help_text="Below the threshold on too few items to flag: why; else empty."
            )
            people_alpha = serializers.FloatField(allow_null=True)
            people_alpha_items = serializers.IntegerField(
                help_text="Items rated by two people or more: the n behind people_alpha."
            )
            items = serializers.IntegerField(help_text="Items with a judge verdict and gold.")
            accuracy = serializers.FloatField(allow_null=True)
            precision = serializers.FloatField(allow_null=True, help_text="Of 'met'.")
            recall = serializers.FloatField(allow_null=True, help_text="Of 'met'.")
            f1 = serializers.FloatField(allow_null=True, help_text="Of 'met'.")
            cohen_kappa = serializers.FloatField(allow_null=True)
            confusion = serializers.ListField(
                child=serializers.ListField(child=serializers.IntegerField()),
                allow_null=True,
                help_text="Rows gold, columns judge, in the order met, unmet, na.",
            )

        judge = serializers.CharField(allow_null=True, help_text="The judge's rater name.")
        judge_rater = serializers.IntegerField(allow_null=True)
        threshold = serializers.FloatField()
        min_items = serializers.IntegerField(help_text="Fewest items a figure needs to flag.")
        gold_items = serializers.IntegerField()
        items = serializers.IntegerField()
        macro_f1 = serializers.FloatField(allow_null=True, help_text="Of met and not met.")
        macro_f1_low = serializers.FloatField(allow_null=True, help_text="95% bootstrap.")
        macro_f1_high = serializers.FloatField(allow_null=True, help_text="95% bootstrap.")
        accuracy = serializers.FloatField(allow_null=True)
        cohen_kappa = serializers.FloatField(allow_null=True)
        per_criterion = CriterionSerializer(many=True)

    @extend_schema(
        tags=["agreement"],
        summary="A judge against gold on a rubric version, per criterion and overall",
        parameters=[
            OpenApiParameter("judge", int, description="The judge's rater id; default: first.")
        ],
        responses=responses({200: OutputSerializer}, 403, 404),
    )
    def get(self, request: Request, pk: int) -> Response:
        version = selectors.version_for(request.user, pk, Perm.VIEW_RESULTS)
        judge = params.whole_number(request.query_params, "judge")
        report = selectors.calibration_report(version, judge)
        f = report.figures
        rows = []
        for c in report.criteria:
            x = f.per_criterion.get(c.pk) if f else None
            rows.append(
                {
                    "criterion": c.pk,
                    "position": c.position,
                    "flagged": c.pk in report.flagged,
                    "not_flagged_because": report.too_few.get(c.pk, ""),
                    "people_alpha": report.alpha.get(c.pk),
                    "people_alpha_items": report.alpha_items.get(c.pk, 0),
                    "items": x.items if x else 0,
                    "accuracy": x and x.accuracy,
                    "precision": x and x.precision,
                    "recall": x and x.recall,
                    "f1": x and x.f1,
                    "cohen_kappa": x and x.kappa,
                    "confusion": x and x.confusion,
                }
            )
        data = {
            "judge": report.judge.name if report.judge else None,
            "judge_rater": report.judge.pk if report.judge else None,
            "threshold": report.threshold,
            "min_items": report.min_items,
            "gold_items": report.gold_items,
            "items": f.items if f else 0,
            "macro_f1": f and f.macro_f1,
            "macro_f1_low": f and f.macro_f1_low,
            "macro_f1_high": f and f.macro_f1_high,
            "accuracy": f and f.accuracy,
            "cohen_kappa": f and f.kappa,
            "per_criterion": rows,
        }
        return Response(self.OutputSerializer(data).data)


@extend_schema_serializer(component_name="CalibrationSettings")
class CalibrationSettingsSerializer(serializers.Serializer):
    threshold = serializers.FloatField(
        min_value=-1,
        max_value=1,
        help_text="Criteria whose judge-vs-gold kappa (or people's alpha) falls below it are "
        "flagged.",
    )
    min_items = serializers.IntegerField(
        min_value=1,
        max_value=100_000,
        required=False,
        help_text="A figure over fewer items flags nothing (default 10).",
    )


class CalibrationSettingsApi(APIView):
    @extend_schema(
        tags=["agreement"],
        summary="The project's calibration threshold",
        responses=responses({200: CalibrationSettingsSerializer}, 403, 404),
    )
    def get(self, request: Request, slug: str) -> Response:
        project = project_for(request.user, slug, Perm.VIEW_RESULTS)
        return Response(CalibrationSettingsSerializer(selectors.calibration_settings(project)).data)


class CalibrationSettingsSetApi(APIView):
    @extend_schema(
        tags=["agreement"],
        summary="Set the project's calibration threshold (admins only)",
        request=CalibrationSettingsSerializer,
        responses=responses({200: CalibrationSettingsSerializer}, 400, 403, 404),
    )
    def put(self, request: Request, slug: str) -> Response:
        project = project_for(request.user, slug, Perm.MANAGE_MEMBERS)
        data = CalibrationSettingsSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        with service_errors():
            row = services.calibration_threshold_set(
                project=project,
                threshold=data.validated_data["threshold"],
                min_items=data.validated_data.get("min_items"),
                actor=request.user,
            )
        return Response(CalibrationSettingsSerializer(row).data)
