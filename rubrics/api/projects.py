"""JSON doors for projects, their members and invitations, and the audit log.

Taking a member out is annotation.api.members: they leave the project's queues too.
"""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import (
    OpenApiParameter,
    extend_schema,
    extend_schema_field,
    extend_schema_serializer,
)
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from rubrics import audit, selectors, services
from rubrics.api.common import (
    NEWEST_FIRST,
    Pagination,
    paginated,
    query_filters,
    responses,
    service_errors,
)
from rubrics.models import AuditEvent, Role
from rubrics.permissions import ROLE_PERMS, Perm, project_for, role_allows


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
