"""JSON doors for model prices: one table for every project, kept by staff; any signed-in
user reads it.
"""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from grading import selectors, services
from rubrics.api.common import (
    FILTERS_RULE,
    Pagination,
    paginated,
    query_filters,
    responses,
    service_errors,
)


@extend_schema_serializer(component_name="ModelPrice")
class ModelPriceSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    model = serializers.CharField(max_length=200, help_text="As judges name it.")
    input_per_mtok = serializers.DecimalField(
        max_digits=10, decimal_places=4, min_value=0, coerce_to_string=False, required=False
    )
    cached_input_per_mtok = serializers.DecimalField(
        max_digits=10, decimal_places=4, min_value=0, coerce_to_string=False, required=False
    )
    output_per_mtok = serializers.DecimalField(
        max_digits=10, decimal_places=4, min_value=0, coerce_to_string=False, required=False
    )


PRICE_RULE = (
    "Prices are per million tokens and hold for every project, so only staff change them "
    "(403 for everyone else, project admins included); any signed-in user reads them. Run "
    "costs are computed from them when read; a model without a price shows a null cost."
)


def _staff_only(request: Request) -> None:
    if not request.user.is_staff:
        raise PermissionDenied("Model prices hold for every project: staff keep them.")


class ModelPriceListApi(APIView):
    pagination_class = Pagination
    OutputSerializer = ModelPriceSerializer

    @extend_schema_serializer(component_name="ModelPriceFilter")
    class FilterSerializer(serializers.Serializer):
        model = serializers.CharField(required=False)

    @extend_schema(
        tags=["grading"],
        summary="What each judge model costs",
        description=PRICE_RULE + " " + FILTERS_RULE,
        parameters=[FilterSerializer],
        responses=responses({200: OutputSerializer(many=True)}, 400),
    )
    def get(self, request: Request) -> Response:
        filters = query_filters(request, self.FilterSerializer)
        prices = selectors.model_prices().filter(**filters)
        return paginated(self, request, prices, self.OutputSerializer)


class ModelPriceCreateApi(APIView):
    OutputSerializer = ModelPriceSerializer

    @extend_schema(
        tags=["grading"],
        summary="Set a model's price (staff only)",
        description=PRICE_RULE,
        request=ModelPriceSerializer,
        responses=responses({201: OutputSerializer}, 400, 403),
    )
    def post(self, request: Request) -> Response:
        _staff_only(request)
        data = ModelPriceSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        with service_errors():
            price = services.model_price_set(actor=request.user, **data.validated_data)
        return Response(self.OutputSerializer(price).data, status=status.HTTP_201_CREATED)


class ModelPriceDetailApi(APIView):
    OutputSerializer = ModelPriceSerializer

    @extend_schema(
        tags=["grading"],
        summary="A model's price",
        description=PRICE_RULE,
        responses=responses({200: OutputSerializer}, 404),
    )
    def get(self, request: Request, pk: int) -> Response:
        price = get_object_or_404(selectors.model_prices(), pk=pk)
        return Response(self.OutputSerializer(price).data)


class ModelPriceUpdateApi(APIView):
    OutputSerializer = ModelPriceSerializer

    @extend_schema(
        tags=["grading"],
        summary="Change a model's price (staff only)",
        description=PRICE_RULE,
        request=ModelPriceSerializer,
        responses=responses({200: OutputSerializer}, 400, 403, 404),
    )
    def patch(self, request: Request, pk: int) -> Response:
        _staff_only(request)
        price = get_object_or_404(selectors.model_prices(), pk=pk)
        data = ModelPriceSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        if not data.validated_data:
            raise ValidationError({"non_field_errors": ["Give at least one field to change."]})
        values = {"model": price.model, **data.validated_data}
        with service_errors():
            price = services.model_price_set(price=price, actor=request.user, **values)
        return Response(self.OutputSerializer(price).data)


class ModelPriceDeleteApi(APIView):
    @extend_schema(
        tags=["grading"],
        summary="Remove a model's price (staff only); its costs show as unknown",
        description=PRICE_RULE,
        request=None,
        responses=responses({204: None}, 403, 404),
    )
    def delete(self, request: Request, pk: int) -> Response:
        _staff_only(request)
        price = get_object_or_404(selectors.model_prices(), pk=pk)
        services.model_price_delete(price=price, actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)
