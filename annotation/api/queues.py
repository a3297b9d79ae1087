"""JSON doors for responses, queues and assignments, agreement, gold and calibration."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    extend_schema_serializer,
)
from rest_framework import serializers, status
from rest_framework.exceptions import PermissionDenied
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation import import_jobs, selectors, services
from annotation.models import Assignment, ImportJob, Rater, Verdict
from rubrics import params, uploads
from rubrics import selectors as rubric_selectors
from rubrics.api.rubrics import (
    FILTERS_RULE,
    NEWEST_FIRST,
    MessagesField,
    Pagination,
    TaskDetailApi,
    grader_named,
    paginated,
    query_filters,
    responses,
    service_errors,
)
from rubrics.models import Criterion
from rubrics.permissions import Perm, project_for, role_allows

RESPONSE_RULE = (
    "Responses are immutable once imported and are never edited or deleted: runs, "
    "verdicts, gold and datasets name them."
)
BLIND_RULE = (
    "Annotators grade blind: they never see which model wrote a response nor its sample, "
    "so they get 403 here."
)
FIELDS_HELP = "; ".join(f"`{name}`: {help}" for name, help in services.RESPONSE_FIELDS.items())


# --- Tasks and members: their rules depend on responses and queues ---------------------------


class TaskUpdateApi(APIView):
    @extend_schema_serializer(component_name="TaskUpdate")
    class InputSerializer(serializers.Serializer):
        title = serializers.CharField(max_length=300, required=False, allow_blank=True)
        messages = MessagesField(required=False)
        context = serializers.CharField(required=False, allow_blank=True, max_length=100_000)
        tags = serializers.ListField(
            child=serializers.CharField(max_length=100), required=False, max_length=100
        )

    OutputSerializer = TaskDetailApi.OutputSerializer

    @extend_schema(
        tags=["tasks"],
        summary="Change a task's title, tags, or (before any response) its prompt",
        description="The external id never changes: imports and exports name the task by it. "
        "Once responses answer the task, its messages and context are frozen (409): create a "
        "new task for a new prompt. Title and tags change at any time.",
        request=InputSerializer,
        responses=responses({200: OutputSerializer}, 400, 403, 404, 409),
    )
    def patch(self, request: Request, slug: str, external_id: str) -> Response:
        project = project_for(request.user, slug, Perm.EDIT_RUBRICS)
        task = rubric_selectors.task_for(request.user, project, external_id, Perm.EDIT_RUBRICS)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        if not data.validated_data:
            raise serializers.ValidationError(
                {"non_field_errors": ["Give at least one of title, messages, context, tags."]}
            )
        with service_errors():
            task = services.task_update(task=task, **data.validated_data)
        return Response(self.OutputSerializer(TaskDetailApi.with_relations(task)).data)


class TaskDeleteApi(APIView):
    @extend_schema(
        tags=["tasks"],
        summary="Delete a task nothing was imported or published against",
        description="A task with responses or a published rubric version stays (409): runs, "
        "verdicts and datasets name it. Its draft rubrics and references go with it.",
        request=None,
        responses=responses({204: None}, 403, 404, 409),
    )
    def delete(self, request: Request, slug: str, external_id: str) -> Response:
        project = project_for(request.user, slug, Perm.EDIT_RUBRICS)
        task = rubric_selectors.task_for(request.user, project, external_id, Perm.EDIT_RUBRICS)
        with service_errors():
            services.task_delete(task=task)
        return Response(status=status.HTTP_204_NO_CONTENT)


class MemberRemoveApi(APIView):
    @extend_schema(
        tags=["projects"],
        summary="Take a member out of the project (admins only)",
        description="The last admin stays (409). The member leaves the project's queues: "
        "their open items go back to the others and their drafts are dropped; what they "
        "submitted, commented or ran stays under their name.",
        request=None,
        responses=responses({204: None}, 403, 404, 409),
    )
    def delete(self, request: Request, slug: str, username: str) -> Response:
        project = project_for(request.user, slug, Perm.MANAGE_MEMBERS)
        member = rubric_selectors.member_for(project, username)
        with service_errors():
            services.member_remove(
                project=project, username=member.user.username, actor=request.user
            )
        return Response(status=status.HTTP_204_NO_CONTENT)


class ResponseImportApi(APIView):
    parser_classes = [MultiPartParser]

    @extend_schema_serializer(component_name="ResponseImport")
    class InputSerializer(serializers.Serializer):
        file = serializers.FileField(
            help_text="Response rows as JSONL (one per line) or Parquet, an inspect-ai eval log "
            "(.eval, .json) or OpenTelemetry GenAI spans (JSON); the format is found from the "
            f"file. {FIELDS_HELP}. A .zip or .tar bundle holding responses.jsonl (or one "
            ".jsonl or .parquet at its top) and the files its rows name is taken too."
        )
        bundle = serializers.FileField(
            required=False,
            help_text="A .zip, .tar or .tar.gz of the images and files the rows name by "
            "relative path (at most ASSAY_BUNDLE_MAX_BYTES); never unpacked to disk.",
        )

    @extend_schema_serializer(component_name="ResponseImportResult")
    class OutputSerializer(serializers.Serializer):
        created = serializers.IntegerField()
        filename = serializers.CharField()

    @extend_schema_serializer(component_name="ResponseImportErrors")
    class ErrorsSerializer(serializers.Serializer):
        @extend_schema_serializer(component_name="ResponseImportLineError")
        class LineErrorSerializer(serializers.Serializer):
            line = serializers.IntegerField(help_text="1-based; 0 for the file as a whole.")
            field = serializers.CharField(help_text="Empty when the whole line is at fault.")
            message = serializers.CharField()

        errors = LineErrorSerializer(many=True, help_text="The first 200 errors.")
        error_count = serializers.IntegerField()
        filename = serializers.CharField()

    @extend_schema(
        tags=["responses"],
        summary="Import model responses (JSONL, Parquet, inspect-ai log, OTel spans): all, or none",
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
                    "`ResponseImportErrors` (`errors`, `error_count`, `filename`); or, for a body "
                    "that cannot be read, a list of messages per field.",
                ),
                413: OpenApiResponse(
                    ErrorsSerializer,
                    description="Nothing was imported: the file is over "
                    "ASSAY_RESPONSE_UPLOAD_MAX_BYTES.",
                ),
            },
            403,
            404,
        ),
    )
    def post(self, request: Request, slug: str) -> Response:
        project = project_for(request.user, slug, Perm.IMPORT_RESPONSES)
        data = self.InputSerializer(data=request.data)
        if not data.is_valid():
            result = services.ImportResult(
                errors=[services.LineError(0, "file", "Upload a JSONL file in the field 'file'.")],
                error_count=1,
            )
        else:
            upload = data.validated_data["file"]
            bundle = data.validated_data.get("bundle")
            result = services.responses_import_file(
                project=project,
                upload=upload,
                filename=upload.name,
                bundle=bundle,
                bundle_name=bundle.name if bundle else "",
            )
        if not result.ok:
            return Response(self.ErrorsSerializer(result).data, status=result.status)
        return Response(self.OutputSerializer(result).data, status=status.HTTP_201_CREATED)


class ResponseListApi(APIView):
    pagination_class = Pagination

    @extend_schema_serializer(component_name="ResponseFilter")
    class FilterSerializer(serializers.Serializer):
        model = serializers.CharField(
            required=False, allow_blank=True, help_text="Only this model's responses."
        )
        task = serializers.CharField(
            required=False, allow_blank=True, help_text="Only this task (external id)."
        )
        q = serializers.CharField(
            required=False,
            allow_blank=True,
            max_length=selectors.SEARCH_CHARS,
            help_text="Only responses whose text contains this (case-insensitive).",
        )
        sample_index = serializers.IntegerField(
            required=False, min_value=0, max_value=2**31 - 1, help_text="Only this sample."
        )

    @extend_schema_serializer(component_name="ModelResponse")
    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        task = serializers.CharField(source="task.external_id")
        model = serializers.CharField()
        sample_index = serializers.IntegerField()
        external_id = serializers.CharField()
        metadata = serializers.DictField()
        text = serializers.CharField(help_text="Untrusted; render sanitized.")
        created_at = serializers.DateTimeField()

    @extend_schema(
        tags=["responses"],
        summary="The project's responses",
        description=RESPONSE_RULE + " " + BLIND_RULE + " " + FILTERS_RULE,
        parameters=[FilterSerializer],
        responses=responses({200: OutputSerializer(many=True)}, 400, 403, 404),
    )
    def get(self, request: Request, slug: str) -> Response:
        project = project_for(request.user, slug, Perm.VIEW_MODELS)
        filters = query_filters(request, self.FilterSerializer)
        found = selectors.responses_matching(project, **filters)
        return paginated(self, request, found, self.OutputSerializer)


class ResponseDetailApi(APIView):
    OutputSerializer = ResponseListApi.OutputSerializer

    @extend_schema(
        tags=["responses"],
        summary="One response",
        description=RESPONSE_RULE + " " + BLIND_RULE,
        responses=responses({200: OutputSerializer}, 403, 404),
    )
    def get(self, request: Request, pk: int) -> Response:
        return Response(self.OutputSerializer(selectors.response_for(request.user, pk)).data)


class ResponseModelsApi(APIView):
    @extend_schema_serializer(component_name="ResponseModelCount")
    class OutputSerializer(serializers.Serializer):
        model = serializers.CharField()
        responses = serializers.IntegerField(source="n")
        tasks = serializers.IntegerField(help_text="Distinct tasks answered.")

    @extend_schema(
        tags=["responses"],
        summary="How many responses each model has, over how many tasks",
        description=BLIND_RULE,
        responses=responses({200: OutputSerializer(many=True)}, 400, 403, 404),
    )
    def get(self, request: Request, slug: str) -> Response:
        project = project_for(request.user, slug, Perm.VIEW_MODELS)
        query_filters(request, paged=False)
        counts = selectors.response_counts_by_model(project)
        return Response(self.OutputSerializer(counts, many=True).data)


# --- Queues and assignments -----------------------------------------------------------------


@extend_schema_serializer(component_name="Queue")
class QueueSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    grader = serializers.CharField(source="grader.hash")
    version = serializers.IntegerField(source="grader.version_id")
    overlap = serializers.IntegerField()
    lease_seconds = serializers.IntegerField()
    guidelines = serializers.CharField()
    show_reference = serializers.BooleanField()
    items = serializers.IntegerField(source="item_count")
    submitted = serializers.IntegerField()


class QueueListApi(APIView):
    @extend_schema_serializer(component_name="QueueFilter")
    class FilterSerializer(serializers.Serializer):
        grader = serializers.CharField(required=False, help_text="Only queues of this grader.")

    @extend_schema(
        tags=["annotation"],
        summary="The project's queues (an annotator sees the queues they are on)",
        description=FILTERS_RULE,
        parameters=[FilterSerializer],
        responses=responses({200: QueueSerializer(many=True)}, 400, 403, 404),
    )
    def get(self, request: Request, slug: str) -> Response:
        project = project_for(request.user, slug, Perm.VIEW)
        filters = query_filters(request, self.FilterSerializer, paged=False)
        mine = role_allows(project.role, Perm.ANNOTATE)
        queues = selectors.project_queues(project, user=request.user if mine else None)
        if "grader" in filters:
            grader = grader_named(project, filters["grader"])
            queues = queues.filter(grader=grader) if grader else queues.none()
        return Response(QueueSerializer(queues, many=True).data)


class QueueCreateApi(APIView):
    @extend_schema_serializer(component_name="QueueCreate")
    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=200)
        grader = serializers.CharField(
            help_text="Hash of a grader of a published version, or a unique prefix (12+)."
        )
        overlap = serializers.IntegerField(min_value=1, max_value=20)
        annotators = serializers.ListField(child=serializers.CharField(), allow_empty=False)
        lease_seconds = serializers.IntegerField(
            min_value=1, max_value=services.MAX_LEASE_SECONDS, default=30 * 60
        )
        guidelines = serializers.CharField(
            max_length=services.MAX_GUIDELINES_CHARS,
            allow_blank=True,
            default="",
            help_text="Instructions for the annotators, in Markdown (shown sanitized).",
        )
        show_reference = serializers.BooleanField(
            default=False, help_text="Show annotators the task's newest reference answer."
        )
        responses = serializers.ListField(
            child=serializers.IntegerField(),
            required=False,
            help_text="Response ids; default: every response the rubric applies to.",
        )

    @extend_schema(
        tags=["annotation"],
        summary="Make a queue from a published rubric version and responses",
        request=InputSerializer,
        responses=responses({201: QueueSerializer}, 400, 403, 404),
    )
    def post(self, request: Request, slug: str) -> Response:
        project = project_for(request.user, slug, Perm.MANAGE_QUEUES)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        grader = grader_named(project, v["grader"])
        if grader is None:
            raise serializers.ValidationError({"grader": ["No published grader with this hash."]})
        chosen = None
        if "responses" in v:
            chosen = selectors.project_responses(project).filter(pk__in=v["responses"])
        with service_errors():
            queue = services.queue_create(
                project=project,
                grader=grader,
                name=v["name"],
                overlap=v["overlap"],
                annotators=v["annotators"],
                lease_seconds=v["lease_seconds"],
                guidelines=v["guidelines"],
                show_reference=v["show_reference"],
                responses=chosen,
                user=request.user,
            )
        queue = selectors.project_queues(project).get(pk=queue.pk)
        return Response(QueueSerializer(queue).data, status=status.HTTP_201_CREATED)


class QueueDetailApi(APIView):
    @extend_schema_serializer(component_name="QueueProgress")
    class OutputSerializer(serializers.Serializer):
        @extend_schema_serializer(component_name="AnnotatorProgress")
        class AnnotatorSerializer(serializers.Serializer):
            username = serializers.CharField()
            submitted = serializers.IntegerField()
            skipped = serializers.IntegerField()
            active = serializers.IntegerField()
            expired = serializers.IntegerField(help_text="Abandoned: the lease ran out.")
            seconds = serializers.IntegerField(help_text="Time spent on submitted items.")

        items = serializers.IntegerField()
        needed = serializers.IntegerField(help_text="items x overlap")
        submitted = serializers.IntegerField()
        complete_items = serializers.IntegerField()
        annotators = AnnotatorSerializer(many=True)

    @extend_schema(
        tags=["annotation"],
        summary="A queue's progress, per annotator",
        responses=responses({200: OutputSerializer}, 403, 404),
    )
    def get(self, request: Request, pk: int) -> Response:
        queue = selectors.queue_for(request.user, pk, Perm.VIEW_RESULTS)
        return Response(self.OutputSerializer(selectors.queue_progress(queue)).data)


QUEUE_RULE = (
    "A queue's grader and items never change: make a new queue for other work. A queue "
    "with submitted items is never deleted (409): their verdicts count in agreement and "
    "calibration."
)


class QueueUpdateApi(APIView):
    @extend_schema_serializer(component_name="QueueUpdate")
    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=200, required=False)
        overlap = serializers.IntegerField(min_value=1, max_value=20, required=False)
        lease_seconds = serializers.IntegerField(
            min_value=1, max_value=services.MAX_LEASE_SECONDS, required=False
        )
        annotators = serializers.ListField(
            child=serializers.CharField(),
            allow_empty=False,
            required=False,
            help_text="The whole list. Someone taken off gives back their open items; what "
            "they submitted stays.",
        )
        guidelines = serializers.CharField(
            max_length=services.MAX_GUIDELINES_CHARS,
            allow_blank=True,
            trim_whitespace=False,
            required=False,
            help_text="Markdown shown to annotators on every item; empty: none.",
        )
        show_reference = serializers.BooleanField(
            required=False, help_text="Show annotators the task's reference answer."
        )

    @extend_schema(
        tags=["annotation"],
        summary="Rename a queue, or change its overlap, lease, annotators, guidelines or "
        "whether annotators see the reference answer",
        description=QUEUE_RULE,
        request=InputSerializer,
        responses=responses({200: QueueSerializer}, 400, 403, 404),
    )
    def patch(self, request: Request, pk: int) -> Response:
        queue = selectors.queue_for(request.user, pk, Perm.MANAGE_QUEUES)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        if not data.validated_data:
            raise serializers.ValidationError(
                {
                    "non_field_errors": [
                        "Give at least one of name, overlap, lease_seconds, annotators, "
                        "guidelines, show_reference."
                    ]
                }
            )
        with service_errors():
            services.queue_update(queue=queue, actor=request.user, **data.validated_data)
        queue = selectors.project_queues(queue.project).get(pk=queue.pk)
        return Response(QueueSerializer(queue).data)


class QueueDeleteApi(APIView):
    @extend_schema(
        tags=["annotation"],
        summary="Delete a queue nobody has submitted work in",
        description=QUEUE_RULE,
        request=None,
        responses=responses({204: None}, 403, 404, 409),
    )
    def delete(self, request: Request, pk: int) -> Response:
        queue = selectors.queue_for(request.user, pk, Perm.MANAGE_QUEUES)
        with service_errors():
            services.queue_delete(queue=queue)
        return Response(status=status.HTTP_204_NO_CONTENT)


class QueueAssignmentListApi(APIView):
    pagination_class = Pagination

    @extend_schema_serializer(component_name="AssignmentFilter")
    class FilterSerializer(serializers.Serializer):
        status = serializers.ChoiceField(choices=Assignment.Status.choices, required=False)
        annotator = serializers.CharField(required=False, help_text="A username.")

    @extend_schema_serializer(component_name="QueueAssignment")
    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        response = serializers.IntegerField(source="item.response_id")
        annotator = serializers.CharField(source="annotator.username")
        status = serializers.CharField(help_text="active, submitted, skipped or expired.")
        skip_reason = serializers.CharField()
        opened_at = serializers.DateTimeField()
        lease_expires_at = serializers.DateTimeField()
        submitted_at = serializers.DateTimeField(allow_null=True)
        seconds_spent = serializers.IntegerField()

    @extend_schema(
        tags=["annotation"],
        summary="Who holds or did which item of a queue (not their verdicts)",
        description="Assignments are made by claiming and changed by their annotator only. "
        + FILTERS_RULE,
        parameters=[FilterSerializer],
        responses=responses({200: OutputSerializer(many=True)}, 400, 403, 404),
    )
    def get(self, request: Request, pk: int) -> Response:
        queue = selectors.queue_for(request.user, pk, Perm.VIEW_RESULTS)
        filters = query_filters(request, self.FilterSerializer)
        found = selectors.queue_assignments(queue)
        if "status" in filters:
            found = found.filter(status=filters["status"])
        if "annotator" in filters:
            found = found.filter(annotator__username=filters["annotator"])
        return paginated(self, request, found, self.OutputSerializer)


@extend_schema_serializer(component_name="OwnVerdict")
class OwnVerdictSerializer(serializers.Serializer):
    criterion = serializers.IntegerField(source="criterion_id")
    step = serializers.IntegerField(
        allow_null=True,
        help_text="A step criterion's step (the message index); null: the whole response.",
    )
    outcome = serializers.CharField()
    value = serializers.FloatField(allow_null=True)
    explanation = serializers.CharField()
    evidence = serializers.CharField()
    evidence_step = serializers.IntegerField(
        allow_null=True, help_text="The message the evidence is quoted from; null: the answer."
    )
    evidence_anchor = serializers.JSONField(
        allow_null=True,
        help_text='Where in a file of that message: {"file": sha256, "page": n} (optionally '
        '"region": [x, y, w, h], fractions) or {"file": sha256, "sheet": name, "cell": "B7"}.',
    )


@extend_schema_serializer(component_name="Assignment")
class AssignmentSerializer(serializers.Serializer):
    """An annotator's own turn. It never carries a judge's or another person's verdict."""

    @extend_schema_serializer(component_name="AssignmentCriterion")
    class CriterionSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        position = serializers.IntegerField()
        text = serializers.CharField()
        points = serializers.DecimalField(max_digits=7, decimal_places=2)
        scope = serializers.CharField(help_text="outcome, trajectory or step.")
        step_rule = serializers.CharField(help_text="A step criterion's rule: all, share, any.")
        step_tool = serializers.CharField()

    id = serializers.IntegerField(source="assignment.pk")
    queue = serializers.IntegerField(source="assignment.queue_id")
    status = serializers.CharField(source="assignment.status")
    lease_expires_at = serializers.DateTimeField(source="assignment.lease_expires_at")
    task = serializers.CharField(source="response.task.external_id")
    prompt = serializers.CharField(source="response.task.prompt_text")
    response_id = serializers.IntegerField(source="response.pk")
    response = serializers.CharField(source="response.text", help_text="Untrusted Markdown.")
    episode = serializers.SerializerMethodField(
        help_text="The episode (messages in the OpenAI chat format, final_state) when the "
        "response is one; null for a plain text. Untrusted."
    )
    criteria = CriterionSerializer(many=True)
    steps = serializers.SerializerMethodField(
        help_text="Each step criterion's steps (message indexes), by criterion id."
    )
    verdicts = serializers.SerializerMethodField(help_text="Your own drafts or submission.")

    @extend_schema_field(OwnVerdictSerializer(many=True))
    def get_verdicts(self, page) -> list:
        mine = [*page.drafts.values(), *page.step_drafts.values()]
        return OwnVerdictSerializer(mine, many=True).data

    @extend_schema_field(serializers.JSONField(allow_null=True))
    def get_episode(self, page) -> dict | None:
        if page.response.content is None:
            return None
        # Metadata stays out: a producer may have written the model's name there (blind).
        shown = page.episode.as_json()
        return {k: shown[k] for k in ("messages", "final_state") if k in shown}

    @extend_schema_field(serializers.DictField(child=serializers.ListField()))
    def get_steps(self, page) -> dict:
        return {str(k): v for k, v in page.steps.items()}


def _assignment_reply(assignment) -> Response:
    assignment.refresh_from_db()
    page = selectors.annotation_page(selectors.assignment_for(assignment.annotator, assignment.pk))
    return Response(AssignmentSerializer(page).data)


class QueueClaimApi(APIView):
    @extend_schema(
        tags=["annotation"],
        summary="Your next item in a queue (the one you hold, or a new one)",
        request=None,
        responses=responses(
            {200: AssignmentSerializer, 204: OpenApiResponse(description="Nothing left.")},
            403,
            404,
        ),
    )
    def post(self, request: Request, pk: int) -> Response:
        queue = selectors.queue_for(request.user, pk, Perm.ANNOTATE)
        if not queue.annotators.filter(pk=request.user.pk).exists():
            raise PermissionDenied("You are not on this queue.")
        assignment = services.assignment_claim(queue=queue, user=request.user)
        if assignment is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return _assignment_reply(assignment)


class AssignmentDetailApi(APIView):
    @extend_schema(
        tags=["annotation"],
        summary="Your assignment: the task, the response, the criteria and your own verdicts",
        responses=responses({200: AssignmentSerializer}, 403, 404),
    )
    def get(self, request: Request, pk: int) -> Response:
        assignment = selectors.assignment_for(request.user, pk)
        return Response(AssignmentSerializer(selectors.annotation_page(assignment)).data)


class VerdictDraftApi(APIView):
    @extend_schema_serializer(component_name="VerdictDraft")
    class InputSerializer(serializers.Serializer):
        criterion = serializers.IntegerField()
        outcome = serializers.CharField(help_text="met, unmet or na (not applicable).")
        value = serializers.FloatField(required=False, allow_null=True, min_value=0, max_value=1)
        explanation = serializers.CharField(required=False, allow_blank=True, default="")
        evidence = serializers.CharField(
            required=False, allow_blank=True, default="", help_text="A quote from the response."
        )
        step = serializers.IntegerField(
            required=False,
            allow_null=True,
            min_value=0,
            help_text="For a step criterion: the step decided (its message index).",
        )
        evidence_step = serializers.IntegerField(
            required=False,
            allow_null=True,
            min_value=0,
            help_text="The message the evidence is quoted from (a step's: its own); "
            "absent: the final answer.",
        )
        evidence_anchor = serializers.JSONField(
            required=False,
            allow_null=True,
            help_text='Where in a file of the message: {"file": sha256, "page": n} (optionally '
            '"region": [x, y, w, h], fractions of the page) or {"file": sha256, "sheet": name, '
            '"cell": "B7"}; the quote, if any, is what it shows there.',
        )

    @extend_schema(
        tags=["annotation"],
        summary="Save your draft decision on one criterion, or one step of a step criterion "
        "(renews your lease)",
        request=InputSerializer,
        responses=responses({200: OwnVerdictSerializer}, 400, 403, 404),
    )
    def put(self, request: Request, pk: int) -> Response:
        assignment = selectors.assignment_for(request.user, pk)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        with service_errors():
            verdict = services.verdict_save_draft(
                assignment_id=assignment.pk,
                criterion_id=v["criterion"],
                outcome=v["outcome"],
                value=v.get("value"),
                explanation=v["explanation"],
                evidence=v["evidence"],
                step=v.get("step"),
                evidence_step=v.get("evidence_step"),
                evidence_anchor=v.get("evidence_anchor"),
            )
        return Response(OwnVerdictSerializer(verdict).data)


class AssignmentSubmitApi(APIView):
    @extend_schema(
        tags=["annotation"],
        summary="Submit your verdicts on this item (every criterion decided)",
        request=None,
        responses=responses({200: AssignmentSerializer}, 400, 403, 404),
    )
    def post(self, request: Request, pk: int) -> Response:
        assignment = selectors.assignment_for(request.user, pk)
        with service_errors():
            services.assignment_submit(assignment_id=assignment.pk)
        return _assignment_reply(assignment)


class AssignmentSkipApi(APIView):
    @extend_schema_serializer(component_name="AssignmentSkip")
    class InputSerializer(serializers.Serializer):
        reason = serializers.CharField(max_length=2000)

    @extend_schema(
        tags=["annotation"],
        summary="Skip this item with a reason; it goes to someone else",
        request=InputSerializer,
        responses=responses({200: AssignmentSerializer}, 400, 403, 404),
    )
    def post(self, request: Request, pk: int) -> Response:
        assignment = selectors.assignment_for(request.user, pk)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        with service_errors():
            services.assignment_skip(
                assignment_id=assignment.pk, reason=data.validated_data["reason"]
            )
        return _assignment_reply(assignment)


# --- Agreement, disagreements, gold, calibration -------------------------------------------


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


# --- Raters and verdicts: who decided what, for the roles that see results ------------------


class RaterListApi(APIView):
    pagination_class = Pagination

    @extend_schema_serializer(component_name="RaterFilter")
    class FilterSerializer(serializers.Serializer):
        kind = serializers.ChoiceField(choices=Rater.Kind.choices, required=False)

    @extend_schema_serializer(component_name="Rater")
    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        kind = serializers.CharField(help_text="person or judge.")
        name = serializers.CharField()
        username = serializers.CharField(
            source="user.username", allow_null=True, help_text="A person's; null for a judge."
        )

    @extend_schema(
        tags=["agreement"],
        summary="The project's raters: people and judges alike",
        description="Raters are made by the first verdict of a person, or with a judge; they "
        "are never edited or deleted (verdicts name them). " + FILTERS_RULE,
        parameters=[FilterSerializer],
        responses=responses({200: OutputSerializer(many=True)}, 400, 403, 404),
    )
    def get(self, request: Request, slug: str) -> Response:
        project = project_for(request.user, slug, Perm.VIEW_RESULTS)
        filters = query_filters(request, self.FilterSerializer)
        return paginated(
            self,
            request,
            selectors.project_raters(project).filter(**filters),
            self.OutputSerializer,
        )


class ProjectVerdictListApi(APIView):
    pagination_class = Pagination

    @extend_schema_serializer(component_name="VerdictFilter")
    class FilterSerializer(serializers.Serializer):
        run = serializers.IntegerField(required=False, help_text="A grading run's id.")
        response = serializers.IntegerField(required=False, help_text="A response's id.")
        criterion = serializers.IntegerField(required=False, help_text="A criterion's id.")
        rater = serializers.IntegerField(required=False, help_text="A rater's id.")
        rubric_version = serializers.IntegerField(
            required=False, help_text="A rubric version's id (as in /versions/{id}/)."
        )
        grader = serializers.CharField(
            required=False, help_text="A grader's hash, or a unique prefix of 12+ characters."
        )
        task = serializers.CharField(required=False, help_text="A task's external id.")
        outcome = serializers.ChoiceField(choices=Verdict.Outcome.choices, required=False)
        rater_kind = serializers.ChoiceField(choices=Rater.Kind.choices, required=False)

    @extend_schema_serializer(component_name="ProjectVerdict")
    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        response = serializers.IntegerField(source="response_id")
        criterion = serializers.IntegerField(source="criterion_id")
        rater = serializers.IntegerField(source="rater_id")
        rater_kind = serializers.CharField(source="rater.kind", help_text="person or judge.")
        grader = serializers.CharField(source="grader.hash", allow_null=True)
        run = serializers.IntegerField(source="run_id", allow_null=True)
        assignment = serializers.IntegerField(source="assignment_id", allow_null=True)
        sample_index = serializers.IntegerField()
        outcome = serializers.CharField(help_text="met, unmet, na or error.")
        value = serializers.FloatField(allow_null=True)
        explanation = serializers.CharField()
        evidence = serializers.CharField()
        judge_model = serializers.CharField()
        simulated = serializers.BooleanField()
        error = serializers.CharField()
        created_at = serializers.DateTimeField()

    @extend_schema(
        tags=["agreement"],
        summary="Every verdict of the project, judges' and people's, with provenance",
        description="Verdicts are written by runs and by annotators (`/assignments/`), never "
        "here; a person edits their own only until they submit. People's drafts are left "
        "out. " + FILTERS_RULE,
        parameters=[FilterSerializer],
        responses=responses({200: OutputSerializer(many=True)}, 400, 403, 404),
    )
    def get(self, request: Request, slug: str) -> Response:
        project = project_for(request.user, slug, Perm.VIEW_RESULTS)
        f = query_filters(request, self.FilterSerializer)
        lookups = {
            "run": "run_id",
            "response": "response_id",
            "criterion": "criterion_id",
            "rater": "rater_id",
            "rubric_version": "criterion__version_id",
            "task": "response__task__external_id",
            "outcome": "outcome",
            "rater_kind": "rater__kind",
        }
        if "grader" in f:  # its hash or a unique prefix
            grader = grader_named(project, f.pop("grader"))
            f["grader_id"] = grader.pk if grader else 0  # none: matches nothing
        found = selectors.project_verdicts(project).filter(
            **{lookups.get(name, name): value for name, value in f.items()}
        )
        return paginated(self, request, found, self.OutputSerializer)


# --- Calibration settings ------------------------------------------------------------------


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


# --- Background imports --------------------------------------------------------------------


@extend_schema_serializer(component_name="ImportJob")
class ImportJobSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    filename = serializers.CharField()
    status = serializers.CharField(help_text="queued, running, done or failed.")
    percent = serializers.IntegerField()
    rows_total = serializers.IntegerField()
    rows_done = serializers.IntegerField()
    created = serializers.IntegerField()
    already_present = serializers.IntegerField()
    error_count = serializers.IntegerField()
    errors = serializers.ListField(child=serializers.CharField(), help_text="The first ones.")
    attempts = serializers.IntegerField(
        help_text="Workers that took the job: more than 1 when a worker died and it was resumed."
    )
    created_by = serializers.CharField(source="created_by.username", allow_null=True)
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)


IMPORT_RULE = (
    "A worker imports the file with the same rules as `/responses/import/`: every row, or "
    "none, with `rows_done` growing as it goes. A job whose worker dies is queued again by the "
    "recovery sweep (up to ASSAY_IMPORT_MAX_ATTEMPTS tries, then failed saying why: post the "
    "file again to retry). The upload is deleted when the job ends. A job is a record: it is "
    "never edited or deleted."
)


class ImportJobListApi(APIView):
    pagination_class = Pagination
    OutputSerializer = ImportJobSerializer

    @extend_schema_serializer(component_name="ImportJobFilter")
    class FilterSerializer(serializers.Serializer):
        status = serializers.ChoiceField(choices=ImportJob.Status.choices, required=False)

    @extend_schema(
        tags=["responses"],
        summary="The project's background imports, newest first",
        description=IMPORT_RULE + " " + FILTERS_RULE,
        parameters=[FilterSerializer],
        responses=responses({200: OutputSerializer(many=True)}, 400, 403, 404),
    )
    def get(self, request: Request, slug: str) -> Response:
        project = project_for(request.user, slug, Perm.IMPORT_RESPONSES)
        filters = query_filters(request, self.FilterSerializer)
        jobs = import_jobs.project_import_jobs(project).filter(**filters)
        return paginated(self, request, jobs, self.OutputSerializer, ordering=NEWEST_FIRST)


class ImportJobCreateApi(APIView):
    parser_classes = [MultiPartParser]
    OutputSerializer = ImportJobSerializer

    @extend_schema(
        tags=["responses"],
        summary="Import a large file of responses in the background (poll the job)",
        description=IMPORT_RULE,
        request={"multipart/form-data": ResponseImportApi.InputSerializer},
        responses=responses({202: OutputSerializer}, 400, 403, 404, 413),
    )
    def post(self, request: Request, slug: str) -> Response:
        project = project_for(request.user, slug, Perm.IMPORT_RESPONSES)
        data = ResponseImportApi.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            job = import_jobs.import_job_create(
                project=project,
                upload=data.validated_data["file"],
                user=request.user,
                bundle=data.validated_data.get("bundle"),
            )
        except uploads.UploadRefused as exc:
            return Response({exc.field: [exc.text]}, status=exc.status)
        return Response(self.OutputSerializer(job).data, status=status.HTTP_202_ACCEPTED)


class ImportJobDetailApi(APIView):
    OutputSerializer = ImportJobSerializer

    @extend_schema(
        tags=["responses"],
        summary="A background import: status, progress, then counts or errors",
        description=IMPORT_RULE,
        responses=responses({200: OutputSerializer}, 403, 404),
    )
    def get(self, request: Request, pk: int) -> Response:
        job = import_jobs.import_job_for(request.user, pk, Perm.IMPORT_RESPONSES)
        return Response(self.OutputSerializer(job).data)
