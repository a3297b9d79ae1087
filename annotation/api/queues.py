"""JSON doors for annotation queues and their assignments: an item claimed, its verdicts
drafted, then submitted or skipped.
"""

from __future__ import annotations

from drf_spectacular.utils import (
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    extend_schema_serializer,
)
from rest_framework import serializers, status
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation import selectors, services
from annotation.models import Assignment
from rubrics.api.common import (
    FILTERS_RULE,
    Pagination,
    grader_named,
    paginated,
    query_filters,
    responses,
    service_errors,
)
from rubrics.permissions import Perm, project_for, role_allows


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
