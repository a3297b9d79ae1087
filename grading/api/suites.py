"""JSON doors for suites: list, make and change them, freeze versions, read versions and what
changed between two. Reading needs VIEW_RESULTS (annotators never see suites, runs or
scores); writing needs MANAGE_SUITES."""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from grading import selectors
from rubrics import suites
from rubrics.api.common import (
    FILTERS_RULE,
    NEWEST_FIRST,
    ConflictError,
    Pagination,
    api_validation_error,
    query_filters,
    responses,
    service_errors,
)
from rubrics.models import Suite, SuiteVersion
from rubrics.permissions import Perm, project_for
from rubrics.services import Conflict

SUITE_RULE = (
    "A suite is a named set of a project's tasks: picked by hand (`tasks`, external ids), by "
    "task tags (`tags`: every task carrying one), or both. Freezing it makes a suite version "
    "that pins, for every task, the published grader in force: immutable and content-hashed. "
    "A rubric's suite of one (`rubric` set) is made and frozen by runs over that rubric and is "
    "not changed by hand (409)."
)
MAX_TASKS = 100_000


@extend_schema_serializer(component_name="SuiteVersionSummary")
class VersionSerializer(serializers.Serializer):
    number = serializers.IntegerField()
    content_hash = serializers.CharField(
        help_text="SHA-256 of the manifest {task external id: grader hash}."
    )
    task_count = serializers.IntegerField()
    sole_grader = serializers.CharField(
        source="sole_grader.hash",
        allow_null=True,
        default=None,
        help_text="The grader's hash when every task has the same one; else null.",
    )
    created_by = serializers.CharField(source="created_by.username", allow_null=True, default=None)
    created_at = serializers.DateTimeField()


@extend_schema_serializer(component_name="SuiteVersionDetail")
class VersionDetailSerializer(VersionSerializer):
    manifest = serializers.DictField(
        child=serializers.CharField(), help_text="{task external id: pinned grader hash}."
    )


@extend_schema_serializer(component_name="Suite")
class SuiteSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    description = serializers.CharField()
    tags = serializers.ListField(
        child=serializers.CharField(), help_text="Every task carrying one of them belongs."
    )
    rubric = serializers.IntegerField(
        source="rubric_id",
        allow_null=True,
        help_text="Set on a rubric's suite of one (made by runs over that rubric).",
    )
    task_count = serializers.IntegerField(help_text="Its tasks now: picked, imported or tagged.")
    newest_version = VersionSerializer(source="newest", allow_null=True)
    run_count = serializers.IntegerField()
    created_at = serializers.DateTimeField()


@extend_schema_serializer(component_name="SuiteDetail")
class SuiteDetailSerializer(SuiteSerializer):
    tasks = serializers.ListField(
        source="picked_external_ids",
        child=serializers.CharField(),
        help_text="External ids of the tasks picked by hand or imported (not those its tags add).",
    )


def _detail(suite: Suite) -> dict:
    selectors.suite_facts([suite])
    suite.picked_external_ids = selectors.suite_picked_external_ids(suite)
    return SuiteDetailSerializer(suite).data


def _task_ids(project, external_ids) -> list[int]:
    with service_errors():
        return suites.tasks_by_external_id(project, external_ids, field="tasks")


class SuiteInput(serializers.Serializer):
    name = serializers.CharField(max_length=suites.MAX_NAME)
    description = serializers.CharField(max_length=5000, required=False, allow_blank=True)
    tasks = serializers.ListField(
        child=serializers.CharField(max_length=200),
        required=False,
        max_length=MAX_TASKS,
        help_text="External ids of the project's tasks, picked by hand. An unknown one is a 400 "
        "naming it.",
    )
    tags = serializers.ListField(
        child=serializers.CharField(max_length=100),
        required=False,
        max_length=100,
        help_text="Task tags: every task carrying one belongs to the suite.",
    )


class SuiteListApi(APIView):
    pagination_class = Pagination
    OutputSerializer = SuiteSerializer

    @extend_schema_serializer(component_name="SuiteFilter")
    class FilterSerializer(serializers.Serializer):
        of_rubrics = serializers.BooleanField(
            required=False,
            allow_null=True,
            default=None,
            help_text="true: only rubrics' suites of one; false: only the others; absent: all.",
        )

    @extend_schema(
        tags=["suites"],
        summary="The project's suites",
        description=SUITE_RULE + " " + FILTERS_RULE,
        parameters=[FilterSerializer],
        responses=responses({200: OutputSerializer(many=True)}, 400, 403, 404),
    )
    def get(self, request: Request, slug: str) -> Response:
        project = project_for(request.user, slug, Perm.VIEW_RESULTS)
        f = query_filters(request, self.FilterSerializer)
        found = Suite.objects.filter(project=project)
        if "of_rubrics" in f:
            found = found.filter(rubric__isnull=not f["of_rubrics"])
        paginator = self.pagination_class()
        paginator.ordering = NEWEST_FIRST
        page = selectors.suite_facts(list(paginator.paginate_queryset(found, request, view=self)))
        return paginator.get_paginated_response(self.OutputSerializer(page, many=True).data)


class SuiteCreateApi(APIView):
    @extend_schema_serializer(component_name="SuiteCreate")
    class InputSerializer(SuiteInput):
        pass

    @extend_schema(
        tags=["suites"],
        summary="Make a suite (admins, authors, engineers)",
        description=SUITE_RULE,
        request=InputSerializer,
        responses=responses({201: SuiteDetailSerializer}, 400, 403, 404),
    )
    def post(self, request: Request, slug: str) -> Response:
        project = project_for(request.user, slug, Perm.MANAGE_SUITES)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        given = data.validated_data
        task_ids = _task_ids(project, given.get("tasks", []))
        with service_errors():
            suite = suites.suite_create(
                project=project,
                name=given["name"],
                user=request.user,
                description=given.get("description", ""),
                task_ids=task_ids,
                tags=given.get("tags", []),
            )
        return Response(_detail(suite), status=status.HTTP_201_CREATED)


class SuiteDetailApi(APIView):
    @extend_schema(
        tags=["suites"],
        summary="One suite",
        description=SUITE_RULE,
        responses=responses({200: SuiteDetailSerializer}, 403, 404),
    )
    def get(self, request: Request, pk: int) -> Response:
        suite = selectors.suite_for(request.user, pk, Perm.VIEW_RESULTS)
        return Response(_detail(suite))


class SuiteUpdateApi(APIView):
    @extend_schema_serializer(component_name="SuiteUpdate")
    class InputSerializer(SuiteInput):
        pass

    @extend_schema(
        tags=["suites"],
        summary="Change a suite's name, description, tasks or tags (admins, authors, engineers)",
        description=SUITE_RULE
        + " `tasks` replaces the tasks picked by hand. Frozen versions never change: freeze a "
        "new one to grade the change.",
        request=InputSerializer,
        responses=responses({200: SuiteDetailSerializer}, 400, 403, 404, 409),
    )
    def patch(self, request: Request, pk: int) -> Response:
        suite = selectors.suite_for(request.user, pk, Perm.MANAGE_SUITES)
        data = self.InputSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        given = data.validated_data
        if not given:
            raise ValidationError(
                {"non_field_errors": ["Give at least one of name, description, tasks, tags."]}
            )
        task_ids = _task_ids(suite.project, given["tasks"]) if "tasks" in given else None
        with service_errors():
            suite = suites.suite_update(
                suite=suite,
                user=request.user,
                name=given.get("name"),
                description=given.get("description"),
                task_ids=task_ids,
                tags=given.get("tags"),
            )
        return Response(_detail(suite))


class SuiteFreezeApi(APIView):
    @extend_schema(
        tags=["suites"],
        summary="Freeze a new version of a suite (admins, authors, engineers)",
        description="Pins, for each of the suite's tasks now, the published grader in force "
        "(a task rubric built on a template counts). 201 with the new version; 200 with the "
        "newest one when nothing changed since it. A task without a published rubric refuses "
        "the freeze (400, `tasks` lists them) and nothing is written.",
        request=None,
        responses=responses(
            {
                201: OpenApiResponse(VersionDetailSerializer, description="A new version."),
                200: OpenApiResponse(
                    VersionDetailSerializer, description="Nothing changed: the newest version."
                ),
            },
            400,
            403,
            404,
            409,
        ),
    )
    def post(self, request: Request, pk: int) -> Response:
        suite = selectors.suite_for(request.user, pk, Perm.MANAGE_SUITES)
        try:
            version, created = suites.suite_freeze(suite=suite, user=request.user)
        except Conflict as exc:  # a rubric's suite of one
            raise ConflictError(" ".join(exc.messages)) from exc
        except DjangoValidationError as exc:
            if hasattr(exc, "error_dict"):
                raise api_validation_error(exc) from exc
            # The tasks without a published rubric (or none at all): named under `tasks`.
            raise ValidationError({"tasks": exc.messages}) from exc
        version = SuiteVersion.objects.select_related("sole_grader", "created_by").get(
            pk=version.pk
        )
        return Response(
            VersionDetailSerializer(version).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


class SuiteVersionListApi(APIView):
    pagination_class = Pagination
    OutputSerializer = VersionSerializer

    @extend_schema(
        tags=["suites"],
        summary="A suite's versions, newest first (without their manifests)",
        description=FILTERS_RULE,
        responses=responses({200: OutputSerializer(many=True)}, 400, 403, 404),
    )
    def get(self, request: Request, pk: int) -> Response:
        suite = selectors.suite_for(request.user, pk, Perm.VIEW_RESULTS)
        query_filters(request)
        versions = (
            SuiteVersion.objects.filter(suite=suite)
            .select_related("sole_grader", "created_by")
            .defer("manifest", "sole_grader__spec")
        )
        paginator = self.pagination_class()
        paginator.ordering = NEWEST_FIRST
        page = paginator.paginate_queryset(versions, request, view=self)
        return paginator.get_paginated_response(self.OutputSerializer(page, many=True).data)


def _version(suite: Suite, number: int, field: str) -> SuiteVersion:
    version = (
        SuiteVersion.objects.filter(suite=suite, number=number)
        .select_related("sole_grader", "created_by")
        .first()
    )
    if version is None:
        raise ValidationError({field: [f"This suite has no version {number}."]})
    return version


class SuiteVersionDetailApi(APIView):
    @extend_schema(
        tags=["suites"],
        summary="One version of a suite, with its manifest",
        responses=responses({200: VersionDetailSerializer}, 403, 404),
    )
    def get(self, request: Request, pk: int, number: int) -> Response:
        suite = selectors.suite_for(request.user, pk, Perm.VIEW_RESULTS)
        version = (
            SuiteVersion.objects.filter(suite=suite, number=number)
            .select_related("sole_grader", "created_by")
            .first()
        )
        if version is None:
            raise Http404("No such version of this suite.")
        return Response(VersionDetailSerializer(version).data)


@extend_schema_serializer(component_name="SuiteTaskChange")
class TaskChangeSerializer(serializers.Serializer):
    task = serializers.CharField(source="external_id")
    old_grader = serializers.CharField()
    new_grader = serializers.CharField()
    criteria_added = serializers.ListField(child=serializers.CharField())
    criteria_removed = serializers.ListField(child=serializers.CharField())


@extend_schema_serializer(component_name="SuiteDiff")
class SuiteDiffSerializer(serializers.Serializer):
    to = VersionSerializer(source="new")
    added = serializers.ListField(
        child=serializers.CharField(), help_text="External ids of tasks added."
    )
    removed = serializers.ListField(
        child=serializers.CharField(), help_text="External ids of tasks removed."
    )
    changed = TaskChangeSerializer(
        many=True,
        help_text="Tasks whose pinned grader changed, with the criteria (by text) added and "
        "removed.",
    )
    unchanged = serializers.IntegerField(help_text="Tasks in both with the same grader.")


# `from` is a Python keyword: declared by name.
SuiteDiffSerializer._declared_fields = {
    "from": VersionSerializer(source="old"),
    **SuiteDiffSerializer._declared_fields,
}


class SuiteDiffApi(APIView):
    DiffQuery = extend_schema_serializer(component_name="SuiteDiffQuery")(
        type(
            "SuiteDiffQuery",
            (serializers.Serializer,),
            {
                "from": serializers.IntegerField(
                    min_value=1,
                    max_value=2**31 - 1,
                    required=False,
                    help_text="The older version's number; default the one before `to`.",
                ),
                "to": serializers.IntegerField(
                    min_value=1,
                    max_value=2**31 - 1,
                    required=False,
                    help_text="The newer version's number; default the newest.",
                ),
            },
        )
    )

    OutputSerializer = SuiteDiffSerializer

    @extend_schema(
        tags=["suites"],
        summary="What changed between two versions of a suite",
        description="Tasks added or removed, and tasks whose grader changed with the criteria "
        "added or removed. A version number the suite does not have is a 400 naming the "
        "parameter. " + FILTERS_RULE,
        parameters=[DiffQuery],
        responses=responses({200: OutputSerializer}, 400, 403, 404),
    )
    def get(self, request: Request, pk: int) -> Response:
        suite = selectors.suite_for(request.user, pk, Perm.VIEW_RESULTS)
        f = query_filters(request, self.DiffQuery, paged=False)
        newest = suites.version_of(suite)
        if newest is None:
            raise ValidationError({"to": ["This suite is not frozen yet: it has no version."]})
        to_number = f.get("to", newest.number)
        new = _version(suite, to_number, "to")
        old = _version(suite, f.get("from", max(1, to_number - 1)), "from")
        diff = suites.version_diff(old, new)
        return Response(self.OutputSerializer(diff).data)
