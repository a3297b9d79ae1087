"""JSON doors for tokens, projects, members, tasks, rubrics and graders.

Also the small pieces every API module shares: turning a service's ValidationError into a
400, pagination, and the error responses the schema documents.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.core.exceptions import NON_FIELD_ERRORS
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from django.db.models import Prefetch, prefetch_related_objects
from django.http import Http404
from django.shortcuts import get_object_or_404
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    extend_schema_serializer,
)
from rest_framework import serializers, status
from rest_framework.authtoken.serializers import AuthTokenSerializer
from rest_framework.exceptions import (
    APIException,
    NotFound,
    Throttled,
    ValidationError,
)
from rest_framework.pagination import CursorPagination
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from rubrics import audit, params, selectors, services, task_import, tokens
from rubrics.models import ApiToken, AuditEvent, Criterion, Role, Rubric, RubricVersion
from rubrics.permissions import ROLE_PERMS, Perm, project_for, role_allows

# --- Shared by every API module -----------------------------------------------------------


def api_validation_error(exc: DjangoValidationError) -> ValidationError:
    """A service's ValidationError as DRF's 400: messages by field, the rest under
    `non_field_errors`."""
    if hasattr(exc, "error_dict"):
        return ValidationError(
            {
                (api_settings.NON_FIELD_ERRORS_KEY if field == NON_FIELD_ERRORS else field): msgs
                for field, msgs in exc.message_dict.items()
            }
        )
    return ValidationError({api_settings.NON_FIELD_ERRORS_KEY: exc.messages})


class ConflictError(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The object's state does not allow this."
    default_code = "conflict"


@contextmanager
def service_errors() -> Iterator[None]:
    """Wrap a service call: its ValidationError becomes a 400 with the field messages, and
    a `Conflict` (published, in use, the last admin) a 409 that says why."""
    try:
        yield
    except services.Conflict as exc:
        raise ConflictError(" ".join(exc.messages)) from exc
    except DjangoValidationError as exc:
        raise api_validation_error(exc) from exc


def grader_named(project, value: str, *, param: str = "grader"):
    """The project's grader that `value` (its hash, or a unique prefix of 12 or more
    characters) names, or None; a 400 naming `param` for a malformed or ambiguous one."""
    with service_errors():
        return selectors.by_hash(selectors.published_graders(project), value, param=param)


HASH_RULE = (
    "A grader is named by its SHA-256 or by a unique prefix of it, 12 hex characters or more "
    "(what pages show): a shorter or ambiguous prefix is a 400 saying so."
)


class Pagination(CursorPagination):
    """Cursor pages: stable while rows are added, and no COUNT(*) over millions of rows.
    `?limit=` sets the page size; follow `next` for the rest."""

    ordering = "pk"
    page_size = 100
    page_size_query_param = "limit"
    max_page_size = 1000
    bad_cursor = "Not a cursor this list gave: follow the `next` or `previous` link as it is."

    def decode_cursor(self, request):
        """DRF's, but a cursor that was not ours is a 400 on `cursor` (DRF answers 404), and
        so is one whose position is not a key, found before it reaches the query."""
        try:
            cursor = super().decode_cursor(request)
        except NotFound:
            raise params.ParameterError("cursor", self.bad_cursor) from None
        ordering = self.ordering if isinstance(self.ordering, str) else self.ordering[0]
        position = cursor.position if cursor else None
        keyed = ordering.lstrip("-") in ("pk", "id")  # every list's order is by primary key
        digits = position is not None and position.isascii() and position.isdigit()
        if keyed and position is not None and not (digits and len(position) <= 19):  # bigint
            raise params.ParameterError("cursor", self.bad_cursor)
        return cursor


NEWEST_FIRST = "-pk"
# Query parameters every list takes besides its filters: DRF's format override, and the
# cursor and page size of paginated lists.
PAGE_PARAMS = frozenset({"cursor", "limit"})
ALWAYS_PARAMS = frozenset({"format"})
FILTERS_RULE = (
    "Lists filter only on the query parameters listed for them; any other parameter is "
    "refused with a 400 that names it. A filter naming an object of another project (or "
    "none) matches nothing: the list is empty."
)


@extend_schema_serializer(component_name="NoFilters")
class NoFilters(serializers.Serializer):
    """A list without filters: every query parameter but the page's is refused."""


def query_filters(request: Request, filter_class=NoFilters, *, paged: bool = True) -> dict:
    """The list's filters from the query string, checked against its allow-list
    (`filter_class`'s fields). An unknown parameter is a 400 naming it, never ignored, so
    a misspelt filter cannot silently return everything. Blank values are dropped."""
    form = filter_class(data=request.query_params)
    allowed = set(form.fields) | ALWAYS_PARAMS | (PAGE_PARAMS if paged else set())
    unknown = sorted(set(request.query_params) - allowed)
    if unknown:
        known = ", ".join(sorted(form.fields)) or "nothing"
        raise ValidationError(
            {
                name: [f"Unknown query parameter '{name}'; this list filters on: {known}."]
                for name in unknown
            }
        )
    form.is_valid(raise_exception=True)
    return {k: v for k, v in form.validated_data.items() if v is not None and v != ""}


def paginated(
    view: APIView, request: Request, queryset, serializer_class, *, ordering: str = "pk"
) -> Response:
    """One page of `queryset`, in `ordering` (a unique key, as cursors need)."""
    paginator = view.pagination_class()
    paginator.ordering = ordering
    page = paginator.paginate_queryset(queryset, request, view=view)
    return paginator.get_paginated_response(serializer_class(page, many=True).data)


@extend_schema_serializer(component_name="ErrorDetail")
class ErrorDetailSerializer(serializers.Serializer):
    detail = serializers.CharField()


_ERRORS = {
    400: OpenApiResponse(
        OpenApiTypes.OBJECT,
        description="Invalid input: a list of messages per field, named like "
        "`criteria[3].points`; other messages under `non_field_errors`.",
    ),
    401: OpenApiResponse(
        ErrorDetailSerializer,
        description="Not authenticated: send `Authorization: Token <key>`.",
    ),
    403: OpenApiResponse(
        ErrorDetailSerializer, description="Your role in the project does not allow this."
    ),
    404: OpenApiResponse(
        ErrorDetailSerializer,
        description="No such object in a project you are a member of.",
    ),
    409: OpenApiResponse(
        ErrorDetailSerializer,
        description="The object's state does not allow this (published, in use, or the "
        "last of its kind); `detail` says why and what to do instead.",
    ),
    413: OpenApiResponse(
        OpenApiTypes.OBJECT,
        description="The file or body is over its size limit: the message names the field, "
        "the size and the limit (README, Upload limits). Nothing was written.",
    ),
    429: OpenApiResponse(
        ErrorDetailSerializer, description="Too many failed attempts: wait, then try again."
    ),
}


def responses(ok: dict, *codes: int) -> dict:
    """The schema's responses: `ok`, 401, and the error `codes` the operation can return."""
    return {**ok, 401: _ERRORS[401], **{code: _ERRORS[code] for code in codes}}


# --- Tokens -----------------------------------------------------------------------------


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
        responses={200: OutputSerializer, 400: _ERRORS[400], 429: _ERRORS[429]},
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


# --- Projects and members ----------------------------------------------------------------


@extend_schema_serializer(component_name="Project")
class ProjectSerializer(serializers.Serializer):
    slug = serializers.SlugField()
    name = serializers.CharField()
    role = serializers.ChoiceField(choices=Role.choices, help_text="Your role in the project.")
    permissions = serializers.SerializerMethodField(help_text="What your role allows.")
    created_at = serializers.DateTimeField()

    @extend_schema_field(serializers.ListField(child=serializers.ChoiceField(choices=list(Perm))))
    def get_permissions(self, project) -> list[str]:
        return [str(perm) for perm in ROLE_PERMS if role_allows(project.role, perm)]


class ProjectListApi(APIView):
    @extend_schema_serializer(component_name="ProjectListItem")
    class OutputSerializer(serializers.Serializer):
        slug = serializers.SlugField(source="project.slug")
        name = serializers.CharField(source="project.name")
        role = serializers.ChoiceField(choices=Role.choices, help_text="Your role.")
        task_count = serializers.IntegerField()
        rubric_count = serializers.IntegerField()
        created_at = serializers.DateTimeField(source="project.created_at")

    @extend_schema(
        tags=["projects"],
        summary="The projects you are a member of, with your role",
        responses=responses({200: OutputSerializer(many=True)}),
    )
    def get(self, request: Request) -> Response:
        query_filters(request, paged=False)
        memberships = selectors.memberships_for_user(request.user)
        return Response(self.OutputSerializer(memberships, many=True).data)


class ProjectCreateApi(APIView):
    @extend_schema_serializer(component_name="ProjectCreate")
    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=200)
        slug = serializers.SlugField(max_length=80, required=False, allow_blank=True)

    OutputSerializer = ProjectSerializer

    @extend_schema(
        tags=["projects"],
        summary="Create a project; you become its admin",
        request=InputSerializer,
        responses=responses({201: OutputSerializer}, 400),
    )
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        with service_errors():
            project = services.project_create(user=request.user, **data.validated_data)
        project.role = Role.ADMIN
        return Response(self.OutputSerializer(project).data, status=status.HTTP_201_CREATED)


class ProjectDetailApi(APIView):
    OutputSerializer = ProjectSerializer

    @extend_schema(
        tags=["projects"],
        summary="A project and your role in it",
        responses=responses({200: OutputSerializer}, 404),
    )
    def get(self, request: Request, slug: str) -> Response:
        project = project_for(request.user, slug, Perm.VIEW)
        return Response(self.OutputSerializer(project).data)


class ProjectUpdateApi(APIView):
    @extend_schema_serializer(component_name="ProjectUpdate")
    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=200)

    OutputSerializer = ProjectSerializer

    @extend_schema(
        tags=["projects"],
        summary="Rename a project (admins only)",
        description="The slug never changes: it is in every URL and script. The calibration "
        "threshold is set at `/calibration-settings/`.",
        request=InputSerializer,
        responses=responses({200: OutputSerializer}, 400, 403, 404),
    )
    def patch(self, request: Request, slug: str) -> Response:
        project = project_for(request.user, slug, Perm.MANAGE_MEMBERS)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        with service_errors():
            project = services.project_update(project=project, **data.validated_data)
        return Response(self.OutputSerializer(project).data)


@extend_schema_serializer(component_name="Member")
class MemberSerializer(serializers.Serializer):
    username = serializers.CharField(source="user.username")
    role = serializers.ChoiceField(choices=Role.choices)
    created_at = serializers.DateTimeField()


class MemberListApi(APIView):
    OutputSerializer = MemberSerializer

    @extend_schema_serializer(component_name="MemberFilter")
    class FilterSerializer(serializers.Serializer):
        role = serializers.ChoiceField(choices=Role.choices, required=False)

    @extend_schema(
        tags=["projects"],
        summary="The project's members and their roles",
        parameters=[FilterSerializer],
        responses=responses({200: OutputSerializer(many=True)}, 400, 404),
    )
    def get(self, request: Request, slug: str) -> Response:
        project = project_for(request.user, slug, Perm.VIEW)
        filters = query_filters(request, self.FilterSerializer, paged=False)
        members = selectors.project_members(project).filter(**filters)
        return Response(self.OutputSerializer(members, many=True).data)


class MemberSetApi(APIView):
    @extend_schema_serializer(component_name="MemberSet")
    class InputSerializer(serializers.Serializer):
        username = serializers.CharField(max_length=150)
        role = serializers.ChoiceField(choices=Role.choices)

    OutputSerializer = MemberSerializer

    @extend_schema_serializer(component_name="MemberInvited")
    class InvitedSerializer(serializers.Serializer):
        detail = serializers.CharField()
        username = serializers.CharField()
        role = serializers.ChoiceField(choices=Role.choices)

    @extend_schema(
        tags=["projects"],
        summary="Invite someone, or change a member's role (admins only)",
        description="A member's role changes at once (200). Anyone else is invited (202) and "
        "joins when they accept (POST /api/invitations/{id}/accept/); the answer is the same "
        "whether or not a user has that name.",
        request=InputSerializer,
        responses=responses({200: OutputSerializer, 202: InvitedSerializer}, 400, 403, 404),
    )
    def post(self, request: Request, slug: str) -> Response:
        project = project_for(request.user, slug, Perm.MANAGE_MEMBERS)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        with service_errors():
            outcome = services.member_invite(
                project=project, actor=request.user, **data.validated_data
            )
        if outcome == "member":
            member = selectors.member_for(project, data.validated_data["username"])
            return Response(self.OutputSerializer(member).data)
        invited = {
            "detail": services.INVITED.format(**data.validated_data),
            **data.validated_data,
        }
        return Response(invited, status=status.HTTP_202_ACCEPTED)


@extend_schema_serializer(component_name="PendingInvitation")
class PendingInvitationSerializer(serializers.Serializer):
    username = serializers.CharField(help_text="As invited; whether it is a user's is not said.")
    role = serializers.ChoiceField(choices=Role.choices)
    invited_by = serializers.CharField(source="invited_by.username", allow_null=True)
    created_at = serializers.DateTimeField()


class ProjectInvitationListApi(APIView):
    OutputSerializer = PendingInvitationSerializer

    @extend_schema(
        tags=["projects"],
        summary="The project's pending invitations (admins only)",
        responses=responses({200: OutputSerializer(many=True)}, 403, 404),
    )
    def get(self, request: Request, slug: str) -> Response:
        project = project_for(request.user, slug, Perm.MANAGE_MEMBERS)
        query_filters(request, paged=False)
        invitations = selectors.project_invitations(project)
        return Response(self.OutputSerializer(invitations, many=True).data)


class ProjectInvitationCancelApi(APIView):
    @extend_schema(
        tags=["projects"],
        summary="Withdraw a pending invitation (admins only)",
        request=None,
        responses=responses({204: None}, 400, 403, 404),
    )
    def delete(self, request: Request, slug: str, username: str) -> Response:
        project = project_for(request.user, slug, Perm.MANAGE_MEMBERS)
        with service_errors():
            services.invitation_cancel(project=project, username=username, actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema_serializer(component_name="Invitation")
class InvitationSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    project = serializers.SlugField(source="project.slug")
    project_name = serializers.CharField(source="project.name")
    role = serializers.ChoiceField(choices=Role.choices)
    invited_by = serializers.CharField(source="invited_by.username", allow_null=True)
    created_at = serializers.DateTimeField()


class InvitationListApi(APIView):
    OutputSerializer = InvitationSerializer

    @extend_schema(
        tags=["projects"],
        summary="Invitations waiting for your answer",
        responses=responses({200: OutputSerializer(many=True)}),
    )
    def get(self, request: Request) -> Response:
        query_filters(request, paged=False)
        invitations = selectors.user_invitations(request.user)
        return Response(self.OutputSerializer(invitations, many=True).data)


class InvitationAcceptApi(APIView):
    @extend_schema(
        tags=["projects"],
        summary="Accept one of your invitations: you join the project with its role",
        request=None,
        responses=responses({200: MemberSerializer}, 404),
    )
    def post(self, request: Request, pk: int) -> Response:
        invitation = get_object_or_404(selectors.user_invitations(request.user), pk=pk)
        with service_errors():
            membership = services.invitation_accept(user=request.user, invitation_id=invitation.pk)
        return Response(MemberSerializer(membership).data)


class InvitationDeclineApi(APIView):
    @extend_schema(
        tags=["projects"],
        summary="Decline one of your invitations",
        request=None,
        responses=responses({204: None}, 404),
    )
    def post(self, request: Request, pk: int) -> Response:
        invitation = get_object_or_404(selectors.user_invitations(request.user), pk=pk)
        with service_errors():
            services.invitation_decline(user=request.user, invitation_id=invitation.pk)
        return Response(status=status.HTTP_204_NO_CONTENT)


class MemberDetailApi(APIView):
    OutputSerializer = MemberSerializer

    @extend_schema(
        tags=["projects"],
        summary="One member and their role",
        responses=responses({200: OutputSerializer}, 404),
    )
    def get(self, request: Request, slug: str, username: str) -> Response:
        project = project_for(request.user, slug, Perm.VIEW)
        return Response(self.OutputSerializer(selectors.member_for(project, username)).data)


class MemberRoleApi(APIView):
    @extend_schema_serializer(component_name="MemberRole")
    class InputSerializer(serializers.Serializer):
        role = serializers.ChoiceField(choices=Role.choices)

    OutputSerializer = MemberSerializer

    @extend_schema(
        tags=["projects"],
        summary="Change a member's role (admins only)",
        description="The last admin keeps the admin role (400 on `role`).",
        request=InputSerializer,
        responses=responses({200: OutputSerializer}, 400, 403, 404),
    )
    def patch(self, request: Request, slug: str, username: str) -> Response:
        project = project_for(request.user, slug, Perm.MANAGE_MEMBERS)
        member = selectors.member_for(project, username)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        with service_errors():
            membership = services.membership_set(
                project=project,
                username=member.user.username,
                actor=request.user,
                **data.validated_data,
            )
        return Response(self.OutputSerializer(membership).data)


@extend_schema_serializer(component_name="AuditEvent")
class AuditEventSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    at = serializers.DateTimeField()
    actor = serializers.CharField(
        source="actor_username",
        help_text="The username, kept if the user is deleted; empty "
        "for the system (a command, the demo loader).",
    )
    action = serializers.ChoiceField(choices=AuditEvent.Action.choices)
    target_type = serializers.CharField()
    target_id = serializers.CharField()
    target_label = serializers.CharField()
    details = serializers.JSONField()
    source = serializers.ChoiceField(choices=AuditEvent.Source.choices)
    ip_address = serializers.IPAddressField(allow_null=True)


class AuditEventListApi(APIView):
    pagination_class = Pagination
    OutputSerializer = AuditEventSerializer

    class FilterSerializer(serializers.Serializer):
        action = serializers.ChoiceField(
            choices=AuditEvent.Action.choices, required=False, allow_blank=True
        )
        actor = serializers.CharField(max_length=150, required=False, allow_blank=True)

    @extend_schema(
        tags=["projects"],
        summary="The project's audit log, newest first (admins only; read-only)",
        parameters=[
            OpenApiParameter("action", str, enum=AuditEvent.Action.values, required=False),
            OpenApiParameter("actor", str, description="A username.", required=False),
        ],
        responses=responses({200: OutputSerializer(many=True)}, 400, 403, 404),
    )
    def get(self, request: Request, slug: str) -> Response:
        project = project_for(request.user, slug, Perm.VIEW_AUDIT)
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        events = audit.project_events(
            project,
            action=filters.validated_data.get("action", ""),
            actor=filters.validated_data.get("actor", ""),
        )
        return paginated(self, request, events, self.OutputSerializer, ordering=NEWEST_FIRST)


# --- Tasks ------------------------------------------------------------------------------


@extend_schema_serializer(component_name="ChatMessage")
class ChatMessageSerializer(serializers.Serializer):
    # A plain string: a second enum named "role" would collide with Role in the schema.
    role = serializers.CharField(help_text=", ".join(sorted(services.MESSAGE_ROLES)) + ".")
    content = serializers.JSONField(
        help_text="Text, or (a user message) a list of parts: text, and image_url and file "
        "parts naming stored files by sha256 (rubrics.files.parts)."
    )


@extend_schema_field(
    {
        "oneOf": [
            {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "role": {"type": "string", "enum": sorted(services.MESSAGE_ROLES)},
                        "content": {
                            "oneOf": [
                                {"type": "string"},
                                {
                                    "type": "array",
                                    "description": "A user message's parts: text, image_url "
                                    "and file parts. An image_url's url and a file's file_data "
                                    "are base64 data: URIs, or sha256:<hash> of a file the "
                                    "project holds (a file part may give file.sha256); URLs are "
                                    "refused. Stored by hash (rubrics.files.parts).",
                                    "items": {"type": "object"},
                                },
                            ]
                        },
                    },
                    "required": ["role", "content"],
                },
            },
            {"type": "string", "description": "One user message."},
        ]
    }
)
class MessagesField(serializers.JSONField):
    """Chat messages, checked by `services.validate_messages` so errors name the message."""


class TaskListApi(APIView):
    pagination_class = Pagination

    @extend_schema_serializer(component_name="TaskListItem")
    class OutputSerializer(serializers.Serializer):
        external_id = serializers.CharField()
        title = serializers.CharField()
        tags = serializers.ListField(child=serializers.CharField())
        response_count = serializers.IntegerField()
        created_at = serializers.DateTimeField()

    @extend_schema_serializer(component_name="TaskFilter")
    class FilterSerializer(serializers.Serializer):
        tag = serializers.CharField(required=False, help_text="Only tasks with this tag.")

    @extend_schema(
        tags=["tasks"],
        summary="The project's tasks",
        description=FILTERS_RULE,
        parameters=[FilterSerializer],
        responses=responses({200: OutputSerializer(many=True)}, 400, 404),
    )
    def get(self, request: Request, slug: str) -> Response:
        project = project_for(request.user, slug, Perm.VIEW)
        filters = query_filters(request, self.FilterSerializer)
        tasks = selectors.project_tasks(project).order_by("external_id")
        if "tag" in filters:
            tasks = tasks.filter(tags__contains=[filters["tag"]])
        return paginated(self, request, tasks, self.OutputSerializer)


@extend_schema_serializer(component_name="ReferenceFile")
class ReferenceFileSerializer(serializers.Serializer):
    name = serializers.CharField(source="file_name", help_text="Sanitized file name.")
    sha256 = serializers.CharField(source="file_sha256")
    kind = serializers.CharField(
        source="file_kind", help_text="What its bytes are (pdf, docx, xlsx, png, ...)."
    )
    size = serializers.IntegerField(source="file_size", help_text="Bytes.")
    download = serializers.SerializerMethodField(
        help_text="The API URL that serves the file to project members."
    )

    def get_download(self, reference) -> str:
        return reverse("api_reference_file", kwargs={"pk": reference.pk})


@extend_schema_serializer(component_name="Reference")
class ReferenceSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    body = serializers.CharField(help_text="Markdown; untrusted, render sanitized.")
    file = serializers.SerializerMethodField()
    author = serializers.CharField(source="author.username", allow_null=True)
    created_at = serializers.DateTimeField()

    @extend_schema_field(ReferenceFileSerializer(allow_null=True))
    def get_file(self, reference) -> dict | None:
        return ReferenceFileSerializer(reference).data if reference.has_file else None


class TaskDetailApi(APIView):
    @extend_schema_serializer(component_name="Task")
    class OutputSerializer(serializers.Serializer):
        ReferenceSerializer = ReferenceSerializer

        @extend_schema_serializer(component_name="TaskRubric")
        class RubricSerializer(serializers.Serializer):
            id = serializers.IntegerField()
            title = serializers.CharField()

        external_id = serializers.CharField()
        title = serializers.CharField()
        messages = ChatMessageSerializer(many=True)
        context = serializers.CharField()
        tags = serializers.ListField(child=serializers.CharField())
        references = ReferenceSerializer(many=True)
        rubrics = RubricSerializer(many=True)
        created_at = serializers.DateTimeField()

    @staticmethod
    def with_relations(task):
        prefetch_related_objects([task], "references__author", "rubrics")
        return task

    @extend_schema(
        tags=["tasks"],
        summary="A task with its messages, references and rubrics",
        responses=responses({200: OutputSerializer}, 404),
    )
    def get(self, request: Request, slug: str, external_id: str) -> Response:
        project = project_for(request.user, slug, Perm.VIEW)
        task = selectors.task_for(request.user, project, external_id)
        return Response(self.OutputSerializer(self.with_relations(task)).data)


class TaskCreateApi(APIView):
    @extend_schema_serializer(component_name="TaskCreate")
    class InputSerializer(serializers.Serializer):
        external_id = serializers.CharField(max_length=200)
        title = serializers.CharField(max_length=300, required=False, allow_blank=True)
        messages = MessagesField()
        context = serializers.CharField(required=False, allow_blank=True)
        tags = serializers.ListField(
            child=serializers.CharField(max_length=100), required=False, max_length=100
        )
        reference = serializers.CharField(
            required=False, allow_blank=True, help_text="An exemplary answer, in Markdown."
        )

    OutputSerializer = TaskDetailApi.OutputSerializer

    @extend_schema(
        tags=["tasks"],
        summary="Create a task, optionally with a reference answer",
        request=InputSerializer,
        responses=responses({201: OutputSerializer}, 400, 403, 404),
    )
    def post(self, request: Request, slug: str) -> Response:
        project = project_for(request.user, slug, Perm.EDIT_RUBRICS)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = data.validated_data
        with service_errors():
            task = services.task_create(
                project=project,
                external_id=fields["external_id"],
                title=fields.get("title", ""),
                messages=fields["messages"],
                context=fields.get("context", ""),
                tags=fields.get("tags", []),
                reference=fields.get("reference", ""),
                user=request.user,
            )
        task = TaskDetailApi.with_relations(task)
        return Response(self.OutputSerializer(task).data, status=status.HTTP_201_CREATED)


class TaskImportApi(APIView):
    parser_classes = [MultiPartParser]

    @extend_schema_serializer(component_name="TaskImport")
    class InputSerializer(serializers.Serializer):
        file = serializers.FileField(
            help_text="JSONL (one task per line) or Parquet (one per row), with the fields "
            + "; ".join(f"{k}: {v}" for k, v in task_import.TASK_FIELDS.items())
            + "."
        )

    @extend_schema_serializer(component_name="TaskImportResult")
    class OutputSerializer(serializers.Serializer):
        created = serializers.IntegerField()
        already_present = serializers.IntegerField(
            help_text="Identical tasks already in the project, skipped."
        )
        filename = serializers.CharField()

    @extend_schema_serializer(component_name="TaskImportErrors")
    class ErrorsSerializer(serializers.Serializer):
        errors = serializers.ListField(
            child=serializers.CharField(), help_text="The first 200, each naming line and field."
        )
        error_count = serializers.IntegerField()
        filename = serializers.CharField()

    @extend_schema(
        tags=["tasks"],
        summary="Import tasks from a JSONL or Parquet file: all of them, or none",
        request={"multipart/form-data": InputSerializer},
        responses=responses(
            {
                201: OutputSerializer,
                # An object, not ErrorsSerializer alone: a body the server cannot read at
                # all (a parameter named with a NUL) is refused before this view, as every
                # door refuses it, with a list of messages per field.
                400: OpenApiResponse(
                    OpenApiTypes.OBJECT,
                    description="Nothing was imported: every error, by line, as "
                    "`TaskImportErrors` (`errors`, `error_count`, `filename`); or, for a body "
                    "that cannot be read, a list of messages per field.",
                ),
                413: OpenApiResponse(
                    ErrorsSerializer,
                    description="Nothing was imported: the file is over "
                    "ASSAY_TASK_UPLOAD_MAX_BYTES.",
                ),
            },
            403,
            404,
        ),
    )
    def post(self, request: Request, slug: str) -> Response:
        project = project_for(request.user, slug, Perm.EDIT_RUBRICS)
        data = self.InputSerializer(data=request.data)
        if not data.is_valid():
            payload = {
                "errors": ["file: upload a JSONL or Parquet file in the field 'file'"],
                "error_count": 1,
                "filename": "",
            }
            return Response(payload, status=status.HTTP_400_BAD_REQUEST)
        upload = data.validated_data["file"]
        result = task_import.tasks_import_file(
            project=project, upload=upload, filename=upload.name, user=request.user
        )
        body = {**vars(result), "filename": upload.name}
        if not result.ok:
            return Response(self.ErrorsSerializer(body).data, status=result.status)
        return Response(self.OutputSerializer(body).data, status=status.HTTP_201_CREATED)


# --- Reference deliverables ----------------------------------------------------------------

REFERENCE_RULE = (
    "A published grader keeps a copy of the reference it was compiled with, so references "
    "may be added, edited and deleted at any time; the next published version uses the "
    "newest one."
)


@extend_schema_serializer(component_name="ReferenceDetail")
class ReferenceDetailSerializer(ReferenceSerializer):
    task = serializers.CharField(source="task.external_id")


@extend_schema_serializer(component_name="ReferenceInput")
class ReferenceInputSerializer(serializers.Serializer):
    body = serializers.CharField(
        max_length=services.MAX_REFERENCE_CHARS, help_text="An exemplary answer, in Markdown."
    )


class ReferenceCreateApi(APIView):
    @extend_schema_serializer(component_name="ReferenceCreate")
    class InputSerializer(serializers.Serializer):
        body = serializers.CharField(
            required=False, allow_blank=True, help_text="The reference answer, in Markdown."
        )
        file = serializers.FileField(
            required=False,
            help_text="An optional attached file; at most ASSAY_REFERENCE_FILE_MAX_BYTES "
            "(20 MB by default). Stored privately; members download it from `file.download`.",
        )
        keep_file = serializers.BooleanField(
            required=False,
            default=False,
            help_text="With no new file: keep the current reference's file attached.",
        )

    @extend_schema(
        tags=["tasks"],
        summary="Add a reference answer to a task (Markdown, an attached file, or both)",
        description="The newest reference is the one shown beside the rubric and, when the "
        "rubric includes it, given to the judge.",
        request={"multipart/form-data": InputSerializer},
        responses=responses({201: ReferenceDetailSerializer}, 400, 403, 404),
    )
    def post(self, request: Request, slug: str, external_id: str) -> Response:
        project = project_for(request.user, slug, Perm.EDIT_RUBRICS)
        task = selectors.task_for(request.user, project, external_id, Perm.EDIT_RUBRICS)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        with service_errors():
            reference = services.reference_create(
                task=task,
                body=data.validated_data.get("body", ""),
                file=data.validated_data.get("file"),
                keep_file=data.validated_data["keep_file"],
                user=request.user,
            )
        return Response(ReferenceDetailSerializer(reference).data, status=status.HTTP_201_CREATED)


class ReferenceDetailApi(APIView):
    @extend_schema(
        tags=["tasks"],
        summary="A reference answer",
        responses=responses({200: ReferenceDetailSerializer}, 404),
    )
    def get(self, request: Request, pk: int) -> Response:
        return Response(
            ReferenceDetailSerializer(selectors.reference_for(request.user, pk, Perm.VIEW)).data
        )


class ReferenceUpdateApi(APIView):
    @extend_schema(
        tags=["tasks"],
        summary="Edit a reference answer",
        description=REFERENCE_RULE,
        request=ReferenceInputSerializer,
        responses=responses({200: ReferenceDetailSerializer}, 400, 403, 404),
    )
    def patch(self, request: Request, pk: int) -> Response:
        reference = selectors.reference_for(request.user, pk, Perm.EDIT_RUBRICS)
        data = ReferenceInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        with service_errors():
            reference = services.reference_update(
                reference=reference, body=data.validated_data["body"]
            )
        return Response(ReferenceDetailSerializer(reference).data)


class ReferenceDeleteApi(APIView):
    @extend_schema(
        tags=["tasks"],
        summary="Delete a reference answer",
        description=REFERENCE_RULE,
        request=None,
        responses=responses({204: None}, 403, 404),
    )
    def delete(self, request: Request, pk: int) -> Response:
        reference = selectors.reference_for(request.user, pk, Perm.EDIT_RUBRICS)
        services.reference_delete(reference=reference)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ReferenceFileApi(APIView):
    @extend_schema(
        tags=["tasks"],
        summary="A reference's attached file (its SHA-256 in the X-Content-SHA256 header)",
        responses=responses(
            {
                (200, "application/octet-stream"): OpenApiResponse(
                    OpenApiTypes.BINARY, description="The file."
                )
            },
            403,
            404,
        ),
    )
    def get(self, request: Request, pk: int):
        reference = selectors.reference_for(request.user, pk, Perm.VIEW)
        return selectors.reference_download(reference)


# --- Rubrics ----------------------------------------------------------------------------


@extend_schema_serializer(component_name="CriterionInput")
class CriterionInputSerializer(serializers.Serializer):
    text = serializers.CharField(max_length=5000)
    points = serializers.DecimalField(
        max_digits=7,
        decimal_places=2,
        coerce_to_string=False,
        help_text="Non-zero, between -1000 and 1000, at most two decimals; negative for "
        "pitfalls. A number or a string.",
    )
    importance = serializers.ChoiceField(choices=Criterion.Importance.choices, required=False)
    tags = serializers.ListField(child=serializers.CharField(), required=False)
    guidance = serializers.CharField(required=False)
    example_met = serializers.CharField(required=False)
    example_unmet = serializers.CharField(required=False)
    kind = serializers.ChoiceField(choices=Criterion.Kind.choices, required=False)
    scale = serializers.ListField(
        child=serializers.CharField(), required=False, help_text="Scale: a descriptor per level."
    )
    check = serializers.JSONField(
        required=False,
        help_text="Checked: e.g. {type: contains, value: '911'}; over the response's files, "
        "e.g. {type: xlsx_cell, sheet: 'Debt', cell: 'B7', value: 1200000, tolerance: 0.01, "
        "relative: true} (rubrics.checks lists every type).",
    )
    gate = serializers.BooleanField(required=False)
    scope = serializers.ChoiceField(
        choices=Criterion.Scope.choices,
        required=False,
        help_text="What of an episode it judges; default outcome (the final answer).",
    )
    step_rule = serializers.ChoiceField(
        choices=Criterion.StepRule.choices,
        required=False,
        help_text="Required when scope is step, absent otherwise: how the steps' verdicts make "
        "the response's.",
    )
    step_tool = serializers.CharField(
        required=False,
        max_length=200,
        help_text="Scope step only: judge the turns that call this tool (default: every turn).",
    )
    weight = serializers.DecimalField(
        max_digits=10, decimal_places=4, coerce_to_string=False, required=False
    )


@extend_schema_field(CriterionInputSerializer)
class CriterionField(serializers.JSONField):
    """One criterion, checked by `services.clean_criterion` so errors name its index."""


CRITERION_KEYS = {"text", "points"}
# Optional criterion fields: API name -> service keyword.
CRITERION_OPTIONAL = {
    "importance": "importance",
    "tags": "tags",
    "guidance": "guidance",
    "example_met": "example_met",
    "example_unmet": "example_unmet",
    "kind": "kind",
    "scale": "scale",
    "check": "check_spec",
    "gate": "gate",
    "scope": "scope",
    "step_rule": "step_rule",
    "step_tool": "step_tool",
    "weight": "weight",
}


def clean_criteria(rows: list) -> list[services.CriterionInput]:
    """Every criterion checked by the service's rules; all errors at once, by index."""
    clean, errors = [], {}
    for i, row in enumerate(rows):
        where = f"criteria[{i}]"
        if not isinstance(row, dict):
            errors[where] = ["Each criterion is an object with text and points."]
            continue
        unknown = sorted(set(row) - CRITERION_KEYS - set(CRITERION_OPTIONAL))
        missing = sorted(CRITERION_KEYS - set(row))
        if unknown or missing:
            for key in unknown:
                errors[f"{where}.{key}"] = [
                    "Unknown field; a criterion has text, points and optionally "
                    + ", ".join(sorted(CRITERION_OPTIONAL))
                    + "."
                ]
            for key in missing:
                errors[f"{where}.{key}"] = ["This field is required."]
            continue
        options = {CRITERION_OPTIONAL[k]: v for k, v in row.items() if k in CRITERION_OPTIONAL}
        try:
            clean.append(
                services.clean_criterion(row["text"], row["points"], where=where, **options)
            )
        except DjangoValidationError as exc:
            errors.update(exc.message_dict)
    if errors:
        raise ValidationError(errors)
    return clean


@extend_schema_serializer(component_name="Criterion")
class CriterionSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    position = serializers.IntegerField()
    text = serializers.CharField()
    points = serializers.DecimalField(max_digits=7, decimal_places=2, coerce_to_string=False)
    importance = serializers.CharField()
    tags = serializers.ListField(child=serializers.CharField())
    guidance = serializers.CharField()
    example_met = serializers.CharField()
    example_unmet = serializers.CharField()
    kind = serializers.CharField()
    scale = serializers.ListField(child=serializers.CharField())
    check = serializers.JSONField(source="check_spec", allow_null=True)
    gate = serializers.BooleanField()
    scope = serializers.CharField()
    step_rule = serializers.CharField(help_text="Empty unless scope is step.")
    step_tool = serializers.CharField(help_text="Empty: every assistant turn is a step.")
    group = serializers.IntegerField(source="group_id", allow_null=True)
    weight = serializers.DecimalField(max_digits=10, decimal_places=4, coerce_to_string=False)


@extend_schema_serializer(component_name="RubricVersion")
class VersionSerializer(serializers.Serializer):
    number = serializers.IntegerField()
    status = serializers.CharField()
    content_hash = serializers.CharField(help_text="Empty while a draft.")
    criteria = CriterionSerializer(many=True)
    points_total = serializers.SerializerMethodField(help_text="Sum of positive points.")
    grader = serializers.SerializerMethodField(help_text="The compiled grader's hash, if any.")
    created_by = serializers.CharField(source="created_by.username", allow_null=True)
    created_at = serializers.DateTimeField()
    published_by = serializers.CharField(source="published_by.username", allow_null=True)
    published_at = serializers.DateTimeField(allow_null=True)

    def get_points_total(self, version) -> float:
        return selectors.points_total(version.criteria.all())

    def get_grader(self, version) -> str | None:
        grader = next(iter(version.graders.all()), None)
        return grader.hash if grader else None


def with_versions(rubric: Rubric) -> Rubric:
    """Load a rubric's versions, newest first, each with its criteria in order and its grader."""
    versions = selectors.rubric_versions(rubric).prefetch_related(
        Prefetch("criteria", queryset=Criterion.objects.order_by("position"))
    )
    prefetch_related_objects([rubric], Prefetch("versions", queryset=versions))
    return rubric


@extend_schema_serializer(component_name="Rubric")
class RubricSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    project = serializers.SlugField(source="project.slug")
    title = serializers.CharField()
    task = serializers.CharField(source="task.external_id", allow_null=True)
    is_template = serializers.BooleanField()
    include_reference = serializers.BooleanField(
        help_text="Whether the judge prompt shows the task's newest reference answer."
    )
    versions = VersionSerializer(many=True, help_text="Newest first.")
    created_at = serializers.DateTimeField()


class RubricListApi(APIView):
    pagination_class = Pagination

    @extend_schema_serializer(component_name="RubricListItem")
    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        title = serializers.CharField()
        task = serializers.CharField(source="task.external_id", allow_null=True)
        version_count = serializers.IntegerField()
        published_count = serializers.IntegerField()
        created_at = serializers.DateTimeField()

    @extend_schema_serializer(component_name="RubricFilter")
    class FilterSerializer(serializers.Serializer):
        task = serializers.CharField(required=False, help_text="Only this task's (external id).")
        template = serializers.BooleanField(
            required=False, allow_null=True, default=None, help_text="Only templates, or none."
        )

    @extend_schema(
        tags=["rubrics"],
        summary="The project's rubrics",
        description=FILTERS_RULE,
        parameters=[FilterSerializer],
        responses=responses({200: OutputSerializer(many=True)}, 400, 404),
    )
    def get(self, request: Request, slug: str) -> Response:
        project = project_for(request.user, slug, Perm.VIEW)
        filters = query_filters(request, self.FilterSerializer)
        rubrics = selectors.project_rubrics(project).order_by("title", "pk")
        if "task" in filters:
            rubrics = rubrics.filter(task__external_id=filters["task"])
        if "template" in filters:
            rubrics = rubrics.filter(is_template=filters["template"])
        return paginated(self, request, rubrics, self.OutputSerializer)


class RubricCreateApi(APIView):
    @extend_schema_serializer(component_name="RubricCreate")
    class InputSerializer(serializers.Serializer):
        title = serializers.CharField(max_length=300, required=False, allow_blank=True)
        task = serializers.CharField(
            required=False, allow_null=True, help_text="A task's external id; none for a template."
        )
        criteria = serializers.ListField(child=CriterionField(), required=False, max_length=500)

    OutputSerializer = RubricSerializer

    @extend_schema(
        tags=["rubrics"],
        summary="Create a rubric whose first version is a draft",
        request=InputSerializer,
        responses=responses({201: OutputSerializer}, 400, 403, 404),
    )
    def post(self, request: Request, slug: str) -> Response:
        project = project_for(request.user, slug, Perm.EDIT_RUBRICS)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        task = None
        if external_id := data.validated_data.get("task"):
            try:
                task = selectors.task_for(request.user, project, external_id, Perm.EDIT_RUBRICS)
            except Http404:
                raise ValidationError({"task": [f"No task '{external_id}' here."]}) from None
        criteria = clean_criteria(data.validated_data.get("criteria", []))
        with service_errors():
            rubric = services.rubric_create(
                project=project,
                task=task,
                title=data.validated_data.get("title", ""),
                user=request.user,
                criteria=criteria,
            )
        return Response(
            self.OutputSerializer(with_versions(rubric)).data, status=status.HTTP_201_CREATED
        )


class RubricDetailApi(APIView):
    OutputSerializer = RubricSerializer

    @extend_schema(
        tags=["rubrics"],
        summary="A rubric with every version, its criteria and its grader",
        responses=responses({200: OutputSerializer}, 404),
    )
    def get(self, request: Request, pk: int) -> Response:
        rubric = selectors.rubric_for(request.user, pk, Perm.VIEW)
        return Response(self.OutputSerializer(with_versions(rubric)).data)


RUBRIC_RULE = (
    "Published and retired versions never change: edits go to the rubric's draft (started "
    "from the latest version when there is none), and a version in review is read-only "
    "until reopened (409 otherwise)."
)


class RubricUpdateApi(APIView):
    @extend_schema_serializer(component_name="RubricUpdate")
    class InputSerializer(serializers.Serializer):
        title = serializers.CharField(max_length=300, required=False)
        include_reference = serializers.BooleanField(
            required=False,
            help_text="Show the task's reference to the judge, from the next published version "
            "on; setting it starts a draft if the rubric has none.",
        )
        revision = serializers.IntegerField(
            required=False, min_value=0, help_text="The draft revision you edited, if any."
        )

    OutputSerializer = RubricSerializer

    @extend_schema(
        tags=["rubrics"],
        summary="Rename a rubric, or choose whether the judge sees the reference",
        description="The title is a label: published graders keep the title they were "
        "compiled with. " + RUBRIC_RULE,
        request=InputSerializer,
        responses=responses({200: OutputSerializer}, 400, 403, 404, 409),
    )
    def patch(self, request: Request, pk: int) -> Response:
        rubric = selectors.rubric_for(request.user, pk, Perm.EDIT_RUBRICS)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        if "title" not in v and "include_reference" not in v:
            raise ValidationError(
                {api_settings.NON_FIELD_ERRORS_KEY: ["Give title or include_reference."]}
            )
        with service_errors(), transaction.atomic():
            if "title" in v:
                services.rubric_rename(rubric=rubric, title=v["title"], user=request.user)
            if "include_reference" in v:
                services.rubric_settings_update(
                    rubric=rubric,
                    include_reference=v["include_reference"],
                    user=request.user,
                    expected_revision=v.get("revision"),
                )
        return Response(self.OutputSerializer(with_versions(rubric)).data)


class RubricDeleteApi(APIView):
    @extend_schema(
        tags=["rubrics"],
        summary="Delete a rubric that was never published",
        description="A rubric with a published or retired version stays (409): graders, runs, "
        "verdicts and datasets name it; retire its versions instead. A template that other "
        "rubrics build on stays too.",
        request=None,
        responses=responses({204: None}, 403, 404, 409),
    )
    def delete(self, request: Request, pk: int) -> Response:
        rubric = selectors.rubric_for(request.user, pk, Perm.EDIT_RUBRICS)
        with service_errors():
            services.rubric_delete(rubric=rubric)
        return Response(status=status.HTTP_204_NO_CONTENT)


class DraftCriteriaReplaceApi(APIView):
    @extend_schema_serializer(component_name="DraftCriteria")
    class InputSerializer(serializers.Serializer):
        criteria = serializers.ListField(child=CriterionField(), max_length=500)

    OutputSerializer = RubricSerializer

    @extend_schema(
        tags=["rubrics"],
        summary="Replace the draft's criteria, in order",
        description=RUBRIC_RULE,
        request=InputSerializer,
        responses=responses({200: OutputSerializer}, 400, 403, 404, 409),
    )
    def put(self, request: Request, pk: int) -> Response:
        rubric = selectors.rubric_for(request.user, pk, Perm.EDIT_RUBRICS)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        criteria = clean_criteria(data.validated_data["criteria"])
        # One transaction, so a refused replacement leaves no new draft behind.
        with service_errors(), transaction.atomic():
            draft = services.draft_for_edit(rubric=rubric, user=request.user)
            services.criteria_replace(version=draft, criteria=criteria)
        return Response(self.OutputSerializer(with_versions(rubric)).data)


def _body(request: Request) -> dict:
    """The request body as a plain dict (a form's single values, or a JSON object)."""
    data = request.data
    if hasattr(data, "dict"):
        return data.dict()
    if not isinstance(data, dict):
        raise ValidationError(
            {api_settings.NON_FIELD_ERRORS_KEY: ["Send an object of criterion fields."]}
        )
    return dict(data)


def criterion_changes(row: dict, *, partial: bool) -> dict:
    """A criterion's fields from a request body, by service keyword; unknown names are a 400.
    `partial`: the fields to change (at least one); else a whole criterion (text and points)."""
    allowed = CRITERION_KEYS | set(CRITERION_OPTIONAL)
    errors = {
        key: ["Unknown field; a criterion has " + ", ".join(sorted(allowed)) + "."]
        for key in sorted(set(row) - allowed)
    }
    if not partial:
        errors.update(
            {key: ["This field is required."] for key in sorted(CRITERION_KEYS - set(row))}
        )
    elif not errors and not row:
        errors[api_settings.NON_FIELD_ERRORS_KEY] = ["Give at least one field to change."]
    if errors:
        raise ValidationError(errors)
    return {CRITERION_OPTIONAL.get(k, k): v for k, v in row.items()}


def _revision(request: Request) -> int | None:
    """The draft revision the client edited (`?revision=`), for optimistic concurrency."""
    return params.whole_number(request.query_params, "revision")


REVISION_PARAM = OpenApiParameter(
    "revision",
    int,
    description="The draft revision you edited; a stale one is refused (400 on `revision`) "
    "so two authors never overwrite each other.",
)


@extend_schema_serializer(component_name="CriterionDetail")
class CriterionDetailSerializer(CriterionSerializer):
    rubric = serializers.IntegerField(source="version.rubric_id")
    version = serializers.IntegerField(source="version.number")
    version_status = serializers.CharField(source="version.status")
    revision = serializers.IntegerField(
        source="version.revision", help_text="The version's revision; send it back with edits."
    )


class CriterionAddApi(APIView):
    @extend_schema_serializer(component_name="CriterionAdd")
    class InputSerializer(CriterionInputSerializer):
        after = serializers.IntegerField(
            required=False, help_text="Insert after this criterion of the draft; default: last."
        )

    OutputSerializer = CriterionDetailSerializer

    @extend_schema(
        tags=["rubrics"],
        summary="Add one criterion to the draft",
        description=RUBRIC_RULE,
        parameters=[REVISION_PARAM],
        request=InputSerializer,
        responses=responses({201: OutputSerializer}, 400, 403, 404, 409),
    )
    def post(self, request: Request, pk: int) -> Response:
        rubric = selectors.rubric_for(request.user, pk, Perm.EDIT_RUBRICS)
        body = _body(request)
        after_id = body.pop("after", None)
        fields = criterion_changes(body, partial=False)
        if after_id is not None and (type(after_id) is not int or after_id < 1):
            raise ValidationError({"after": ["A criterion id of the draft."]})
        revision = _revision(request)
        with service_errors(), transaction.atomic():
            draft = services.draft_for_edit(rubric=rubric, user=request.user)
            after = draft.criteria.filter(pk=after_id).first() if after_id else None
            if after_id and after is None:
                raise ValidationError({"after": [f"No criterion {after_id} in the draft."]})
            criterion = services.criterion_add(
                version=draft, user=request.user, expected_revision=revision, after=after, **fields
            )
        criterion = selectors.criterion_for(request.user, criterion.pk, Perm.EDIT_RUBRICS)
        return Response(self.OutputSerializer(criterion).data, status=status.HTTP_201_CREATED)


class CriterionDetailApi(APIView):
    OutputSerializer = CriterionDetailSerializer

    @extend_schema(
        tags=["rubrics"],
        summary="A criterion, with its version",
        responses=responses({200: OutputSerializer}, 404),
    )
    def get(self, request: Request, pk: int) -> Response:
        criterion = selectors.criterion_for(request.user, pk, Perm.VIEW)
        return Response(self.OutputSerializer(criterion).data)


class CriterionUpdateApi(APIView):
    OutputSerializer = CriterionDetailSerializer

    @extend_schema(
        tags=["rubrics"],
        summary="Change some fields of a draft's criterion",
        description="Only a draft's criteria change; the fields not given keep their values. "
        + RUBRIC_RULE,
        parameters=[REVISION_PARAM],
        request=CriterionInputSerializer,
        responses=responses({200: OutputSerializer}, 400, 403, 404, 409),
    )
    def patch(self, request: Request, pk: int) -> Response:
        criterion = selectors.criterion_for(request.user, pk, Perm.EDIT_RUBRICS)
        fields = criterion_changes(_body(request), partial=True)
        with service_errors():
            criterion = services.criterion_update(
                criterion=criterion,
                user=request.user,
                expected_revision=_revision(request),
                **fields,
            )
        criterion = selectors.criterion_for(request.user, pk, Perm.EDIT_RUBRICS)
        return Response(self.OutputSerializer(criterion).data)


class CriterionDeleteApi(APIView):
    @extend_schema(
        tags=["rubrics"],
        summary="Remove a criterion from a draft",
        description=RUBRIC_RULE,
        parameters=[REVISION_PARAM],
        request=None,
        responses=responses({204: None}, 400, 403, 404, 409),
    )
    def delete(self, request: Request, pk: int) -> Response:
        criterion = selectors.criterion_for(request.user, pk, Perm.EDIT_RUBRICS)
        with service_errors():
            services.criterion_delete(
                criterion=criterion, user=request.user, expected_revision=_revision(request)
            )
        return Response(status=status.HTTP_204_NO_CONTENT)


class DraftDiscardApi(APIView):
    OutputSerializer = RubricSerializer

    @extend_schema(
        tags=["rubrics"],
        summary="Throw away the draft (or the version in review)",
        description="The rubric goes back to its latest published or retired version. A "
        "rubric's only version is not discarded (409): delete the rubric instead.",
        request=None,
        responses=responses({200: OutputSerializer}, 403, 404, 409),
    )
    def delete(self, request: Request, pk: int) -> Response:
        rubric = selectors.rubric_for(request.user, pk, Perm.EDIT_RUBRICS)
        with service_errors():
            services.draft_discard(rubric=rubric, user=request.user)
        return Response(self.OutputSerializer(with_versions(rubric)).data)


# --- Graders ----------------------------------------------------------------------------


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


# --- Review ------------------------------------------------------------------------------


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
