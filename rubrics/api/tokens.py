"""JSON doors for API tokens: a password exchanged for one; yours listed, created, revoked."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.authtoken.serializers import AuthTokenSerializer
from rest_framework.exceptions import Throttled, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from rubrics import tokens
from rubrics.api.common import (
    ERRORS,
    NEWEST_FIRST,
    Pagination,
    paginated,
    query_filters,
    responses,
    service_errors,
)
from rubrics.models import ApiToken


@extend_schema_serializer(component_name="AuthToken")
class CredentialsSerializer(AuthTokenSerializer):
    """DRF's, with the username's length checked before authenticating: a longer one would
    reach the failed-login records (django-axes, 255 characters) as a 500."""

    username = serializers.CharField(label="Username", write_only=True, max_length=150)


class TokenObtainApi(APIView):
    """Exchange a username and password for a token with every scope, valid for 30 days."""

    authentication_classes = ()  # the username and password in the body are the credentials
    permission_classes = ()

    @extend_schema_serializer(component_name="Token")
    class OutputSerializer(serializers.Serializer):
        token = serializers.CharField(help_text="Shown once; Assay stores only its hash.")
        scopes = serializers.ListField(child=serializers.CharField())
        expires_at = serializers.DateTimeField()

    @extend_schema(
        tags=["auth"],
        summary="Exchange a username and password for an API token",
        request=CredentialsSerializer,
        responses={200: OutputSerializer, 400: ERRORS[400], 429: ERRORS[429]},
    )
    def post(self, request: Request) -> Response:
        credentials = CredentialsSerializer(data=request.data, context={"request": request})
        if not credentials.is_valid():
            if getattr(request, "axes_locked_out", False):
                raise Throttled(detail="Too many failed logins for this username; try later.")
            raise ValidationError(credentials.errors)
        token, raw = tokens.token_create(
            user=credentials.validated_data["user"],
            name="password exchange",
            scopes=list(ApiToken.Scope.values),
            expires_in_days=30,
        )
        return Response({"token": raw, "scopes": token.scopes, "expires_at": token.expires_at})


@extend_schema_serializer(component_name="ApiToken")
class ApiTokenSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    prefix = serializers.CharField(help_text="The token's first characters, to recognise it.")
    scopes = serializers.ListField(child=serializers.ChoiceField(choices=ApiToken.Scope.choices))
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField(allow_null=True)
    revoked_at = serializers.DateTimeField(allow_null=True)
    last_used_at = serializers.DateTimeField(allow_null=True)


class TokenListApi(APIView):
    pagination_class = Pagination
    OutputSerializer = ApiTokenSerializer

    @extend_schema(
        tags=["auth"],
        summary="Your API tokens (never their keys)",
        responses=responses({200: OutputSerializer(many=True)}),
    )
    def get(self, request: Request) -> Response:
        query_filters(request)
        return paginated(
            self,
            request,
            tokens.user_tokens(request.user),
            self.OutputSerializer,
            ordering=NEWEST_FIRST,
        )


class TokenDetailApi(APIView):
    OutputSerializer = ApiTokenSerializer

    @extend_schema(
        tags=["auth"],
        summary="One of your tokens (never its key)",
        description="A token's name, scopes and expiry never change: create a new token and "
        "revoke the old one.",
        responses=responses({200: OutputSerializer}, 404),
    )
    def get(self, request: Request, pk: int) -> Response:
        token = get_object_or_404(tokens.user_tokens(request.user), pk=pk)
        return Response(self.OutputSerializer(token).data)


class TokenCreateApi(APIView):
    @extend_schema_serializer(component_name="ApiTokenCreate")
    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=100)
        scopes = serializers.ListField(
            child=serializers.ChoiceField(choices=ApiToken.Scope.choices), min_length=1
        )
        expires_in_days = serializers.IntegerField(
            min_value=1, max_value=tokens.MAX_DAYS, required=False, allow_null=True, default=90
        )

    @extend_schema_serializer(component_name="ApiTokenCreated")
    class OutputSerializer(ApiTokenSerializer):
        token = serializers.CharField(help_text="Shown once; Assay stores only its hash.")

    @extend_schema(
        tags=["auth"],
        summary="Create a token with scopes and an expiry",
        request=InputSerializer,
        responses=responses({201: OutputSerializer}, 400, 403),
    )
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        # Made by a token: never more scopes or a later expiry than it, revoked with it.
        parent = request.auth if isinstance(request.auth, ApiToken) else None
        with service_errors():
            token, raw = tokens.token_create(
                user=request.user, parent=parent, **data.validated_data
            )
        out = {**ApiTokenSerializer(token).data, "token": raw}
        return Response(out, status=status.HTTP_201_CREATED)


class TokenRevokeApi(APIView):
    @extend_schema(
        tags=["auth"],
        summary="Revoke one of your tokens; it stops working at once",
        request=None,
        responses=responses({204: None}, 403, 404),
    )
    def delete(self, request: Request, pk: int) -> Response:
        token = get_object_or_404(tokens.user_tokens(request.user), pk=pk)
        tokens.token_revoke(token=token, actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)
