"""JSON doors for responses, queues and assignments, agreement, gold and calibration."""

from __future__ import annotations

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

from annotation import selectors, services
from rubrics.api import Pagination, paginated, responses, service_errors
from rubrics.models import Criterion
from rubrics.permissions import Perm, project_for, role_allows

FIELDS_HELP = "; ".join(f"`{name}`: {help}" for name, help in services.RESPONSE_FIELDS.items())


class ResponseImportApi(APIView):
    parser_classes = [MultiPartParser]

    @extend_schema_serializer(component_name="ResponseImport")
    class InputSerializer(serializers.Serializer):
        file = serializers.FileField(help_text=f"JSONL, one response per line. {FIELDS_HELP}.")

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
        summary="Import model responses from a JSONL file: all of them, or none",
        request={"multipart/form-data": InputSerializer},
        responses=responses(
            {
                201: OutputSerializer,
                400: OpenApiResponse(
                    ErrorsSerializer, description="Nothing was imported: every error, by line."
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
            result = services.responses_import_jsonl(
                project=project, lines=upload, filename=upload.name
            )
        if not result.ok:
            return Response(self.ErrorsSerializer(result).data, status=status.HTTP_400_BAD_REQUEST)
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
        parameters=[FilterSerializer],
        responses=responses({200: OutputSerializer(many=True)}, 400, 404),
    )
    def get(self, request: Request, slug: str) -> Response:
        project = project_for(request.user, slug, Perm.VIEW)
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        found = selectors.project_responses(project)
        if model := filters.validated_data.get("model"):
            found = found.filter(model=model)
        if task := filters.validated_data.get("task"):
            found = found.filter(task__external_id=task)
        return paginated(self, request, found, self.OutputSerializer)


class ResponseModelsApi(APIView):
    @extend_schema_serializer(component_name="ResponseModelCount")
    class OutputSerializer(serializers.Serializer):
        model = serializers.CharField()
        responses = serializers.IntegerField(source="n")
        tasks = serializers.IntegerField(help_text="Distinct tasks answered.")

    @extend_schema(
        tags=["responses"],
        summary="How many responses each model has, over how many tasks",
        responses=responses({200: OutputSerializer(many=True)}, 404),
    )
    def get(self, request: Request, slug: str) -> Response:
        project = project_for(request.user, slug, Perm.VIEW)
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
    items = serializers.IntegerField(source="item_count")
    submitted = serializers.IntegerField()


class QueueListApi(APIView):
    @extend_schema(
        tags=["annotation"],
        summary="The project's queues (an annotator sees the queues they are on)",
        responses=responses({200: QueueSerializer(many=True)}, 403, 404),
    )
    def get(self, request: Request, slug: str) -> Response:
        project = project_for(request.user, slug, Perm.VIEW)
        mine = role_allows(project.role, Perm.ANNOTATE)
        queues = selectors.project_queues(project, user=request.user if mine else None)
        return Response(QueueSerializer(queues, many=True).data)


class QueueCreateApi(APIView):
    @extend_schema_serializer(component_name="QueueCreate")
    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=200)
        grader = serializers.CharField(help_text="Hash of a grader of a published version.")
        overlap = serializers.IntegerField(min_value=1, max_value=20)
        annotators = serializers.ListField(child=serializers.CharField(), allow_empty=False)
        lease_seconds = serializers.IntegerField(min_value=1, default=30 * 60)
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
        grader = selectors.published_graders(project).filter(hash=v["grader"]).first()
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


@extend_schema_serializer(component_name="OwnVerdict")
class OwnVerdictSerializer(serializers.Serializer):
    criterion = serializers.IntegerField(source="criterion_id")
    outcome = serializers.CharField()
    value = serializers.FloatField(allow_null=True)
    explanation = serializers.CharField()
    evidence = serializers.CharField()


@extend_schema_serializer(component_name="Assignment")
class AssignmentSerializer(serializers.Serializer):
    """An annotator's own turn. It never carries a judge's or another person's verdict."""

    @extend_schema_serializer(component_name="AssignmentCriterion")
    class CriterionSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        position = serializers.IntegerField()
        text = serializers.CharField()
        points = serializers.DecimalField(max_digits=7, decimal_places=2)

    id = serializers.IntegerField(source="assignment.pk")
    queue = serializers.IntegerField(source="assignment.queue_id")
    status = serializers.CharField(source="assignment.status")
    lease_expires_at = serializers.DateTimeField(source="assignment.lease_expires_at")
    task = serializers.CharField(source="response.task.external_id")
    prompt = serializers.CharField(source="response.task.prompt_text")
    response_id = serializers.IntegerField(source="response.pk")
    response = serializers.CharField(source="response.text", help_text="Untrusted Markdown.")
    criteria = CriterionSerializer(many=True)
    verdicts = serializers.SerializerMethodField(help_text="Your own drafts or submission.")

    @extend_schema_field(OwnVerdictSerializer(many=True))
    def get_verdicts(self, page) -> list:
        return OwnVerdictSerializer(page.drafts.values(), many=True).data


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

    @extend_schema(
        tags=["annotation"],
        summary="Save your draft decision on one criterion (renews your lease)",
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
        outcomes = serializers.DictField(child=serializers.ListField(child=serializers.CharField()))
        people_disagree = serializers.BooleanField()
        judge_disagrees = serializers.BooleanField()
        gold = serializers.CharField(allow_null=True)

    @extend_schema(
        tags=["agreement"],
        summary="(response, criterion) pairs where raters disagree",
        parameters=[FilterSerializer],
        responses=responses({200: OutputSerializer(many=True)}, 400, 403, 404),
    )
    def get(self, request: Request, pk: int) -> Response:
        version = selectors.version_for(request.user, pk, Perm.VIEW_RESULTS)
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        found = selectors.disagreements(version, **filters.validated_data)
        return Response(self.OutputSerializer(found, many=True).data)


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

    @extend_schema_serializer(component_name="Gold")
    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        response = serializers.IntegerField(source="response_id")
        criterion = serializers.IntegerField(source="criterion_id")
        outcome = serializers.CharField()
        note = serializers.CharField()
        decided_by = serializers.CharField(source="decided_by.username")
        decided_at = serializers.DateTimeField()
        replaces = serializers.IntegerField(source="replaces_id", allow_null=True)

    @extend_schema(
        tags=["agreement"],
        summary="Record a gold verdict (audited: the decision it replaces is kept)",
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
            )
        return Response(self.OutputSerializer(gold).data, status=status.HTTP_201_CREATED)


class CalibrationApi(APIView):
    @extend_schema_serializer(component_name="Calibration")
    class OutputSerializer(serializers.Serializer):
        @extend_schema_serializer(component_name="CriterionCalibration")
        class CriterionSerializer(serializers.Serializer):
            criterion = serializers.IntegerField()
            position = serializers.IntegerField()
            flagged = serializers.BooleanField(help_text="Below the project's threshold.")
            people_alpha = serializers.FloatField(allow_null=True)
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
        judge = request.query_params.get("judge", "")
        report = selectors.calibration_report(version, int(judge) if judge.isdigit() else None)
        f = report.figures
        rows = []
        for c in report.criteria:
            x = f.per_criterion.get(c.pk) if f else None
            rows.append(
                {
                    "criterion": c.pk,
                    "position": c.position,
                    "flagged": c.pk in report.flagged,
                    "people_alpha": report.alpha.get(c.pk),
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
