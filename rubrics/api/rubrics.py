"""JSON doors for rubrics and the criteria of their draft."""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from django.db.models import Prefetch, prefetch_related_objects
from django.http import Http404
from drf_spectacular.utils import (
    OpenApiParameter,
    extend_schema,
    extend_schema_field,
    extend_schema_serializer,
)
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from rubrics import params, selectors, services
from rubrics.api.common import (
    FILTERS_RULE,
    Pagination,
    paginated,
    query_filters,
    responses,
    service_errors,
)
from rubrics.models import Criterion, Rubric
from rubrics.permissions import Perm, project_for


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
