"""JSON doors for gold decisions: the verdicts people settled, that judges are measured by."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation import selectors, services
from rubrics.api.common import (
    FILTERS_RULE,
    NEWEST_FIRST,
    Pagination,
    paginated,
    query_filters,
    responses,
    service_errors,
)
from rubrics.models import Criterion
from rubrics.permissions import Perm


@extend_schema_serializer(component_name="Gold")
class GoldSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    response = serializers.IntegerField(source="response_id")
    criterion = serializers.IntegerField(source="criterion_id")
    step = serializers.IntegerField(allow_null=True, help_text="Gold at a step; null: whole.")
    outcome = serializers.CharField()
    value = serializers.FloatField(allow_null=True)
    note = serializers.CharField()
    evidence_anchor = serializers.JSONField(
        allow_null=True,
        help_text="Where in a file of the response the reviewer saw it, as a verdict's "
        "evidence_anchor; null: nowhere in particular.",
    )
    decided_by = serializers.CharField(source="decided_by.username", allow_null=True)
    decided_at = serializers.DateTimeField()
    replaces = serializers.IntegerField(source="replaces_id", allow_null=True)


GOLD_RULE = (
    "Gold is append-only: a new decision on an item replaces the current one and names it "
    "in `replaces`; no decision is ever edited or deleted, so the list is the audit trail."
)


class GoldListApi(APIView):
    pagination_class = Pagination
    OutputSerializer = GoldSerializer

    @extend_schema_serializer(component_name="GoldFilter")
    class FilterSerializer(serializers.Serializer):
        response = serializers.IntegerField(required=False)
        criterion = serializers.IntegerField(required=False)
        current = serializers.BooleanField(
            required=False,
            allow_null=True,
            default=None,
            help_text="true: only decisions no later one replaced; false: only replaced ones.",
        )

    @extend_schema(
        tags=["agreement"],
        summary="Gold decisions on a version's criteria, newest first",
        description=GOLD_RULE + " " + FILTERS_RULE,
        parameters=[FilterSerializer],
        responses=responses({200: OutputSerializer(many=True)}, 400, 403, 404),
    )
    def get(self, request: Request, pk: int) -> Response:
        version = selectors.version_for(request.user, pk, Perm.VIEW_RESULTS)
        filters = query_filters(request, self.FilterSerializer)
        found = selectors.version_gold_decisions(version)
        if "response" in filters:
            found = found.filter(response_id=filters["response"])
        if "criterion" in filters:
            found = found.filter(criterion_id=filters["criterion"])
        if "current" in filters:
            found = found.filter(replaced_by__isnull=filters["current"])
        return paginated(self, request, found, self.OutputSerializer, ordering=NEWEST_FIRST)


class GoldDecideApi(APIView):
    @extend_schema_serializer(component_name="GoldDecision")
    class InputSerializer(serializers.Serializer):
        response = serializers.IntegerField()
        criterion = serializers.IntegerField()
        outcome = serializers.CharField(help_text="met, unmet or na (not applicable).")
        value = serializers.FloatField(
            required=False, allow_null=True, help_text="Scale criteria: the level in [0, 1]."
        )
        note = serializers.CharField(required=False, allow_blank=True, default="")
        step = serializers.IntegerField(
            required=False,
            allow_null=True,
            min_value=0,
            help_text="A step criterion's step (message index) the gold is for; absent: whole.",
        )
        evidence_anchor = serializers.JSONField(
            required=False,
            allow_null=True,
            help_text="Where in a file of the response (at a step: of that step) the reviewer "
            'saw it: {"file": sha256, "page": n} (optionally "region": [x, y, w, h], fractions '
            'of the page), {"file": sha256, "region": [...]} on an image, or {"file": sha256, '
            '"sheet": name, "cell": "B7"}.',
        )

    OutputSerializer = GoldSerializer

    @extend_schema(
        tags=["agreement"],
        summary="Record a gold verdict (audited: the decision it replaces is kept)",
        description=GOLD_RULE,
        request=InputSerializer,
        responses=responses({201: OutputSerializer}, 400, 403, 404),
    )
    def post(self, request: Request, pk: int) -> Response:
        version = selectors.version_for(request.user, pk, Perm.ADJUDICATE)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        criterion = Criterion.objects.filter(pk=v["criterion"], version=version).first()
        if criterion is None:
            raise serializers.ValidationError({"criterion": ["Not a criterion of this version."]})
        response = (
            selectors.project_responses(version.rubric.project).filter(pk=v["response"]).first()
        )
        if response is None:
            raise serializers.ValidationError({"response": ["No such response in this project."]})
        with service_errors():
            gold = services.gold_decide(
                response=response,
                criterion=criterion,
                outcome=v["outcome"],
                value=v.get("value"),
                note=v["note"],
                user=request.user,
                step=v.get("step"),
                evidence_anchor=v.get("evidence_anchor"),
            )
        return Response(self.OutputSerializer(gold).data, status=status.HTTP_201_CREATED)
