"""JSON doors for judges, grading runs, scores and verdicts.

Everything here but the writes needs VIEW_RESULTS: annotators stay blind to the judge.
"""

from __future__ import annotations

import logging
import threading

from django.db import transaction
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import (
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    extend_schema_serializer,
)
from rest_framework import serializers, status
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.content.episode import ContentError, Episode
from annotation.content.intake import RequestIntake
from annotation.models import Verdict
from grading import selectors, services
from grading.models import GradingRun, Score
from rubrics import suites
from rubrics.api.common import (
    FILTERS_RULE,
    HASH_RULE,
    NEWEST_FIRST,
    ErrorDetailSerializer,
    Pagination,
    grader_named,
    paginated,
    query_filters,
    responses,
    service_errors,
)
from rubrics.permissions import Perm, project_for
from rubrics.selectors import grader_to_score, suite_to_score, task_for

logger = logging.getLogger(__name__)

# --- Judges -----------------------------------------------------------------------------


@extend_schema_serializer(component_name="Judge")
class JudgeSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    base_url = serializers.CharField()
    model = serializers.CharField()
    api_key_env = serializers.CharField(
        help_text="A deployment variable the operator bound to this host; never the key."
    )
    api_key_set = serializers.SerializerMethodField(
        help_text="Whether the project's own key is set (it is never shown)."
    )
    api_key_last4 = serializers.CharField(
        help_text="The last 4 characters of the project's key (long keys only), or ''."
    )
    max_concurrency = serializers.IntegerField(help_text="Max requests in flight, all workers.")
    requests_per_minute = serializers.IntegerField(help_text="0: no limit.")
    tokens_per_minute = serializers.IntegerField(help_text="0: no limit.")
    temperature = serializers.FloatField()
    use_json_schema = serializers.BooleanField()
    send_cache_key = serializers.BooleanField()
    accepts_images = serializers.BooleanField(
        help_text="Sees images: images and a PDF's first pages are sent as image_url parts."
    )
    accepts_files = serializers.BooleanField(
        help_text="Reads files natively: documents are sent as file parts beside their text."
    )
    created_at = serializers.DateTimeField()

    def get_api_key_set(self, judge) -> bool:
        return bool(judge.api_key_secret)


class JudgeListApi(APIView):
    OutputSerializer = JudgeSerializer

    @extend_schema(
        tags=["grading"],
        summary="The project's judges",
        responses=responses({200: OutputSerializer(many=True)}, 400, 403, 404),
    )
    def get(self, request: Request, slug: str) -> Response:
        project = project_for(request.user, slug, Perm.VIEW_RESULTS)
        query_filters(request, paged=False)
        judges = selectors.project_judges(project)
        return Response(self.OutputSerializer(judges, many=True).data)


class JudgeCreateApi(APIView):
    @extend_schema_serializer(component_name="JudgeCreate")
    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=100)
        base_url = serializers.CharField(
            max_length=500, help_text="OpenAI-compatible, e.g. https://api.openai.com/v1"
        )
        model = serializers.CharField(max_length=200)
        api_key = serializers.CharField(
            max_length=2000,
            required=False,
            allow_blank=True,
            write_only=True,
            style={"input_type": "password"},
            help_text="The project's own API key for this endpoint: stored encrypted, sent "
            "only to base_url's host, never shown again. Changing base_url to another host "
            "clears it unless it is given again; '' clears it.",
        )
        api_key_env = serializers.CharField(
            max_length=100,
            required=False,
            allow_blank=True,
            help_text="Instead of api_key: the *name* of a deployment variable the operator "
            "bound to base_url's host (ASSAY_JUDGE_KEY_VARIABLES); never the key itself.",
        )
        max_concurrency = serializers.IntegerField(min_value=1, max_value=1024, required=False)
        temperature = serializers.FloatField(min_value=0, max_value=2, required=False)
        use_json_schema = serializers.BooleanField(required=False)
        requests_per_minute = serializers.IntegerField(
            min_value=0, max_value=services.MAX_PER_MINUTE, required=False
        )
        tokens_per_minute = serializers.IntegerField(
            min_value=0, max_value=services.MAX_PER_MINUTE, required=False
        )
        send_cache_key = serializers.BooleanField(required=False)
        accepts_images = serializers.BooleanField(
            required=False,
            help_text="A vision model: images and a PDF's first pages are sent as image_url "
            "parts; a judge that cannot see images is told one was there (default false).",
        )
        accepts_files = serializers.BooleanField(
            required=False,
            help_text="Reads files natively: documents are also sent as file parts (default "
            "false). Every judge reads a file's text as Assay converts it.",
        )

    OutputSerializer = JudgeSerializer

    @extend_schema(
        tags=["grading"],
        summary="Add a judge (admins only)",
        request=InputSerializer,
        responses=responses({201: OutputSerializer}, 400, 403, 404),
    )
    def post(self, request: Request, slug: str) -> Response:
        project = project_for(request.user, slug, Perm.MANAGE_JUDGES)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        with service_errors():
            judge = services.judge_create(
                project=project, actor=request.user, **data.validated_data
            )
        return Response(self.OutputSerializer(judge).data, status=status.HTTP_201_CREATED)


JUDGE_RULE = (
    "Limits, temperature, name and the key may change at any time; new calls use "
    "them at once. A judge that has graded (runs, reward calls or verdicts) keeps its base "
    "URL and model, so its verdicts still say who judged (409): add a new judge instead. "
    "Such a judge is never deleted (409)."
)


class JudgeDetailApi(APIView):
    OutputSerializer = JudgeSerializer

    @extend_schema(
        tags=["grading"],
        summary="A judge's settings (never its key)",
        responses=responses({200: OutputSerializer}, 403, 404),
    )
    def get(self, request: Request, pk: int) -> Response:
        return Response(
            self.OutputSerializer(selectors.judge_for(request.user, pk, Perm.VIEW_RESULTS)).data
        )


class JudgeUpdateApi(APIView):
    OutputSerializer = JudgeSerializer

    @extend_schema(
        tags=["grading"],
        summary="Change some of a judge's settings (admins only)",
        description=JUDGE_RULE,
        request=JudgeCreateApi.InputSerializer,
        responses=responses({200: OutputSerializer}, 400, 403, 404, 409),
    )
    def patch(self, request: Request, pk: int) -> Response:
        judge = selectors.judge_for(request.user, pk, Perm.MANAGE_JUDGES)
        data = JudgeCreateApi.InputSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        if not data.validated_data:
            raise ValidationError({"non_field_errors": ["Give at least one setting to change."]})
        with service_errors():
            judge = services.judge_update(judge=judge, **data.validated_data)
        return Response(self.OutputSerializer(judge).data)


class JudgeTestApi(APIView):
    class OutputSerializer(serializers.Serializer):
        ok = serializers.BooleanField(help_text="The judge answered with a chat completion.")
        latency_ms = serializers.IntegerField(
            help_text="From sending to the reply read (or the failure)."
        )
        model = serializers.CharField(help_text="The model that answered, as the judge named it.")
        answer = serializers.CharField(help_text="Its answer, cut to 200 characters.")
        simulated = serializers.BooleanField(help_text="Answered by Assay's judge simulator.")
        prompt_tokens = serializers.IntegerField()
        completion_tokens = serializers.IntegerField()
        reason = serializers.CharField(
            help_text="Why it failed, short (address_refused, key_refused, timeout, "
            "connection, http_401, ...); empty when ok."
        )
        message = serializers.CharField(help_text="What went wrong, for a person; empty when ok.")

    @extend_schema(
        tags=["grading"],
        summary="Test a judge's connection (admins and engineers)",
        description="Sends one tiny request through the grading client (the same address and "
        "key checks, the same deadline), tried once. Always 200: a failure is an outcome, "
        "with `ok` false. Nothing is recorded.",
        request=None,
        responses=responses({200: OutputSerializer}, 403, 404),
    )
    def post(self, request: Request, pk: int) -> Response:
        judge = selectors.judge_for(request.user, pk, Perm.RUN_GRADING)
        outcome = services.judge_test_connection(judge=judge)
        return Response(self.OutputSerializer(outcome).data)


class JudgeDeleteApi(APIView):
    @extend_schema(
        tags=["grading"],
        summary="Delete a judge that never graded (admins only)",
        description=JUDGE_RULE,
        request=None,
        responses=responses({204: None}, 403, 404, 409),
    )
    def delete(self, request: Request, pk: int) -> Response:
        judge = selectors.judge_for(request.user, pk, Perm.MANAGE_JUDGES)
        with service_errors():
            services.judge_delete(judge=judge)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ProjectDeleteApi(APIView):
    @extend_schema(
        tags=["projects"],
        summary="Delete a project that holds no graded work (admins only)",
        description="A project with a published (or retired) rubric version or any response "
        "stays (409): runs, verdicts and datasets name them. Otherwise its tasks, drafts, "
        "references, judges, snapshots and memberships are deleted with it.",
        request=None,
        responses=responses({204: None}, 403, 404, 409),
    )
    def delete(self, request: Request, slug: str) -> Response:
        project = project_for(request.user, slug, Perm.MANAGE_MEMBERS)
        with service_errors():
            services.project_delete(project=project)
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- Runs -------------------------------------------------------------------------------


@extend_schema_serializer(component_name="Run")
class RunSerializer(serializers.Serializer):
    @extend_schema_serializer(component_name="RunGrader")
    class GraderSerializer(serializers.Serializer):
        hash = serializers.CharField()
        rubric = serializers.IntegerField(source="version.rubric_id")
        rubric_title = serializers.CharField(source="version.rubric.title")
        version = serializers.IntegerField(source="version.number")

    @extend_schema_serializer(component_name="RunJudge")
    class JudgeSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        name = serializers.CharField()
        model = serializers.CharField()

    @extend_schema_serializer(component_name="RunSuite")
    class SuiteSerializer(serializers.Serializer):
        id = serializers.IntegerField(source="suite_id")
        name = serializers.CharField(source="suite.name")
        version = serializers.IntegerField(source="number")
        content_hash = serializers.CharField()
        tasks = serializers.IntegerField(source="task_count")

    id = serializers.IntegerField()
    status = serializers.ChoiceField(choices=GradingRun.Status.choices)
    suite = SuiteSerializer(
        source="suite_version",
        help_text="The frozen suite version graded: each response by its task's pinned grader.",
    )
    grader = GraderSerializer(
        source="suite_version.sole_grader",
        allow_null=True,
        help_text="The grader, when every task of the suite version has the same one (a run "
        "over one rubric); null when tasks have their own.",
    )
    selection = serializers.JSONField(
        help_text="The responses asked for: models, sample_indices, tasks (absent: all)."
    )
    judge = JudgeSerializer()
    mode = serializers.ChoiceField(choices=GradingRun.Mode.choices)
    samples = serializers.IntegerField()
    use_cache = serializers.BooleanField()
    estimate = serializers.JSONField(
        help_text="Before starting, without the cache: calls, input_tokens, output_tokens, "
        "images (sent beside the prompts), cost when the judge model has a price, and "
        "warnings ([{code, judge, message}]: e.g. judge_cannot_see_images, when responses, "
        "tasks or criteria need images a judge of the run cannot see)."
    )
    total_items = serializers.IntegerField(help_text="Responses x criteria x judges x samples.")
    simulated = serializers.BooleanField(help_text="Graded by the judge simulator.")
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)


RUN_RULE = (
    "Runs are never edited or deleted: verdicts, scores and datasets name them. Cancel a "
    "run to stop it; resume or retry its failed items to finish it."
)


class RunListApi(APIView):
    pagination_class = Pagination
    OutputSerializer = RunSerializer

    @extend_schema_serializer(component_name="RunFilter")
    class FilterSerializer(serializers.Serializer):
        status = serializers.ChoiceField(choices=GradingRun.Status.choices, required=False)
        grader = serializers.CharField(
            required=False, help_text="A grader's hash, or a unique prefix of 12+ characters."
        )
        judge = serializers.IntegerField(required=False, help_text="The lead judge's id.")
        suite = serializers.IntegerField(required=False, help_text="A suite's id.")

    @extend_schema(
        tags=["grading"],
        summary="The project's grading runs, newest first",
        description=RUN_RULE + " " + FILTERS_RULE,
        parameters=[FilterSerializer],
        responses=responses({200: OutputSerializer(many=True)}, 400, 403, 404),
    )
    def get(self, request: Request, slug: str) -> Response:
        project = project_for(request.user, slug, Perm.VIEW_RESULTS)
        f = query_filters(request, self.FilterSerializer)
        runs = selectors.project_runs(project).order_by("-created_at", "-pk")
        if "status" in f:
            runs = runs.filter(status=f["status"])
        if "grader" in f:
            grader = grader_named(project, f["grader"])
            runs = (
                runs.filter(suite_version__entries__grader=grader).distinct()
                if grader
                else runs.none()
            )
        if "suite" in f:
            runs = runs.filter(suite_version__suite_id=f["suite"])
        if "judge" in f:
            runs = runs.filter(judge_id=f["judge"])
        return paginated(self, request, runs, self.OutputSerializer, ordering=NEWEST_FIRST)


class RunCreateApi(APIView):
    @extend_schema_serializer(component_name="RunCreate")
    class InputSerializer(serializers.Serializer):
        suite = serializers.IntegerField(
            min_value=1,
            required=False,
            help_text="A suite's id: each response is graded by its task's grader pinned in the "
            "suite version. Give a suite or a grader.",
        )
        suite_version = serializers.IntegerField(
            min_value=1, required=False, help_text="The suite version's number; default newest."
        )
        grader = serializers.CharField(
            required=False,
            help_text="Or one published grader (its hash, or a unique prefix of 12+ characters): "
            "a run over that rubric's suite of one.",
        )
        models = serializers.ListField(
            child=serializers.CharField(max_length=200),
            required=False,
            max_length=1000,
            help_text="Only these models' responses (default all).",
        )
        sample_indices = serializers.ListField(
            child=serializers.IntegerField(min_value=0),
            required=False,
            max_length=1000,
            help_text="Only these sample indices (default all).",
        )
        tasks = serializers.ListField(
            child=serializers.CharField(max_length=200),
            required=False,
            max_length=100_000,
            help_text="Only these tasks, by external id (default all the suite's).",
        )
        judge = serializers.IntegerField(min_value=1, help_text="The (lead) judge's id.")
        panel = serializers.ListField(
            child=serializers.IntegerField(min_value=1),
            required=False,
            help_text="More judges; the run's verdict is the panel's majority.",
        )
        mode = serializers.ChoiceField(choices=GradingRun.Mode.choices, required=False)
        samples = serializers.IntegerField(min_value=1, max_value=16, required=False)
        use_cache = serializers.BooleanField(required=False)

    OutputSerializer = RunSerializer

    @extend_schema(
        tags=["grading"],
        summary="Start a run: grade the grader's responses with a judge",
        request=InputSerializer,
        responses=responses({201: OutputSerializer}, 400, 403, 404),
    )
    def post(self, request: Request, slug: str) -> Response:
        project = project_for(request.user, slug, Perm.RUN_GRADING)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        errors = {}
        given = data.validated_data
        grader = suite_version = None
        if ("grader" in given) == ("suite" in given):
            errors["suite"] = ["Give a suite (its id) or a grader (its hash), not both."]
        elif "grader" in given:
            try:  # a malformed or ambiguous hash is reported with the other fields' errors
                grader = grader_named(project, given["grader"])
            except ValidationError as exc:
                errors["grader"] = exc.detail["grader"]
            if grader is None and "grader" not in errors:
                errors["grader"] = ["No published grader with that hash in this project."]
        else:
            suite = suites.project_suites(project).filter(pk=given["suite"]).first()
            suite_version = suite and suites.version_of(suite, given.get("suite_version"))
            if suite is None:
                errors["suite"] = ["No suite with that id in this project."]
            elif suite_version is None:
                errors["suite_version"] = ["The suite has no such version; freeze one first."]
        judge = selectors.project_judges(project).filter(pk=data.validated_data["judge"]).first()
        if judge is None:
            errors["judge"] = ["No judge with that id in this project."]
        panel_ids = data.validated_data.get("panel", [])
        panel = list(selectors.project_judges(project).filter(pk__in=panel_ids))
        if len(panel) != len(set(panel_ids)):
            errors["panel"] = ["Every panel judge must be a judge of this project."]
        if errors:
            raise ValidationError(errors)
        with service_errors():
            run = services.run_create(
                project=project,
                grader=grader,
                suite_version=suite_version,
                models=given.get("models"),
                sample_indices=given.get("sample_indices"),
                tasks=given.get("tasks"),
                judge=judge,
                user=request.user,
                panel=panel,
                mode=data.validated_data.get("mode", GradingRun.Mode.PER_CRITERION),
                samples=data.validated_data.get("samples", 1),
                use_cache=data.validated_data.get("use_cache", True),
            )
        return Response(self.OutputSerializer(run).data, status=status.HTTP_201_CREATED)


class RunDetailApi(APIView):
    @extend_schema_serializer(component_name="RunDetail")
    class OutputSerializer(RunSerializer):
        @extend_schema_serializer(component_name="RunProgress")
        class ProgressSerializer(serializers.Serializer):
            done = serializers.IntegerField(help_text="Verdicts written, errors included.")
            total = serializers.IntegerField(help_text="Verdicts to write.")
            errors = serializers.IntegerField(help_text="Verdicts that are errors.")
            percent = serializers.IntegerField()
            responses_done = serializers.IntegerField()
            responses_total = serializers.IntegerField()
            prompt_tokens = serializers.IntegerField()
            completion_tokens = serializers.IntegerField()

        @extend_schema_serializer(component_name="RunModelSummary")
        class SummarySerializer(serializers.Serializer):
            model = serializers.CharField()
            responses = serializers.IntegerField()
            scored = serializers.IntegerField(
                help_text="Responses with a score (no errors): the mean's n."
            )
            tasks = serializers.IntegerField(
                source="score.tasks", help_text="Tasks with a scored response."
            )
            errors = serializers.IntegerField(help_text="Responses with an error verdict.")
            mean = serializers.FloatField(
                allow_null=True,
                help_text="Mean raw score over the scored responses, clipped to [0, 1] once "
                "averaged (HealthBench); the same figure as the run's leaderboard.",
            )
            mean_raw = serializers.FloatField(allow_null=True, help_text="Mean before clipping.")
            histogram = serializers.ListField(
                child=serializers.IntegerField(), help_text="Clipped scores in ten bins of 0.1."
            )
            ci = serializers.ListField(
                child=serializers.FloatField(),
                allow_null=True,
                help_text="95% percentile-bootstrap interval of the clipped mean that resamples "
                "the run's tasks (as the leaderboard's overall cell); null below two tasks.",
            )

        @extend_schema_serializer(component_name="RunCosts")
        class CostsSerializer(serializers.Serializer):
            calls = serializers.IntegerField(help_text="Judge calls (a batch is one call).")
            requests = serializers.IntegerField(help_text="HTTP requests, retries included.")
            prompt_tokens = serializers.IntegerField()
            cached_tokens = serializers.IntegerField()
            completion_tokens = serializers.IntegerField()
            cost = serializers.FloatField(
                allow_null=True, help_text="Null when a judge model has no price set."
            )

        @extend_schema_serializer(component_name="RunErrorReason")
        class ErrorReasonSerializer(serializers.Serializer):
            reason = serializers.CharField()
            n = serializers.IntegerField()

        @extend_schema_serializer(component_name="RunWaiting")
        class WaitingSerializer(serializers.Serializer):
            pending = serializers.IntegerField(help_text="Responses not scored yet.")
            retrying = serializers.BooleanField(
                help_text="The judge's recent calls for the run failed or were retried."
            )
            stalled = serializers.BooleanField(
                help_text="Nothing graded for ASSAY_RUN_STALL_S: the stall sweep re-queues them."
            )
            last_activity = serializers.DateTimeField()
            requeue_by = serializers.DateTimeField(
                allow_null=True, help_text="When the stall sweep re-queues them; null if it is off."
            )

        project = serializers.SlugField(source="project.slug")
        created_by = serializers.CharField(source="created_by.username", allow_null=True)
        progress = ProgressSerializer()
        summaries = SummarySerializer(many=True)
        costs = CostsSerializer()
        errors_by_reason = ErrorReasonSerializer(many=True)
        workers_running = serializers.BooleanField(
            help_text="False while the run is not finished and no worker has written a heartbeat "
            "lately: its work waits for one (celery -A assay worker)."
        )
        waiting = WaitingSerializer(
            allow_null=True,
            help_text="For a running run's last responses: what they wait for. Null otherwise.",
        )

    @extend_schema(
        tags=["grading"],
        summary="A run: status, progress and per-model scores",
        description=RUN_RULE,
        responses=responses({200: OutputSerializer}, 403, 404),
    )
    def get(self, request: Request, pk: int) -> Response:
        run = selectors.run_for(request.user, pk, Perm.VIEW_RESULTS)
        run.progress = selectors.run_progress(run)
        run.summaries = selectors.model_summaries(run)
        run.costs = selectors.run_costs(run, run.progress)
        run.errors_by_reason = selectors.run_error_reasons(run)
        run.workers_running = not selectors.workers_missing(run)
        run.waiting = selectors.run_waiting(run, run.progress)
        return Response(self.OutputSerializer(run).data)


class RunCancelApi(APIView):
    @extend_schema_serializer(component_name="RunCancel")
    class OutputSerializer(serializers.Serializer):
        cancelled = serializers.BooleanField(
            help_text="False when the run had already finished or been cancelled."
        )
        status = serializers.ChoiceField(choices=GradingRun.Status.choices)

    @extend_schema(
        tags=["grading"],
        summary="Cancel a run: no new judge calls start",
        request=None,
        responses=responses({200: OutputSerializer}, 403, 404),
    )
    def post(self, request: Request, pk: int) -> Response:
        run = selectors.run_for(request.user, pk, Perm.RUN_GRADING)
        cancelled = services.run_cancel(run=run)
        run_status = GradingRun.Status.CANCELLED if cancelled else run.status
        return Response(self.OutputSerializer({"cancelled": cancelled, "status": run_status}).data)


class RunRetryFailedApi(APIView):
    @extend_schema_serializer(component_name="RunRetryFailed")
    class OutputSerializer(serializers.Serializer):
        requeued = serializers.IntegerField(help_text="Error verdicts removed and re-queued.")

    @extend_schema(
        tags=["grading"],
        summary="Re-queue only the items whose verdict is an error (finished runs)",
        request=None,
        responses=responses({200: OutputSerializer}, 400, 403, 404),
    )
    def post(self, request: Request, pk: int) -> Response:
        run = selectors.run_for(request.user, pk, Perm.RUN_GRADING)
        with service_errors():
            n = services.run_retry_failed(run=run)
        return Response(self.OutputSerializer({"requeued": n}).data)


class RunResumeApi(APIView):
    @extend_schema_serializer(component_name="RunResume")
    class OutputSerializer(serializers.Serializer):
        resumed = serializers.BooleanField(help_text="False when the run had completed.")

    @extend_schema(
        tags=["grading"],
        summary="Resume a cancelled or interrupted run: only pending work is queued",
        request=None,
        responses=responses({200: OutputSerializer}, 403, 404),
    )
    def post(self, request: Request, pk: int) -> Response:
        run = selectors.run_for(request.user, pk, Perm.RUN_GRADING)
        return Response(self.OutputSerializer({"resumed": services.run_resume(run=run)}).data)


# --- The reward endpoint -----------------------------------------------------------------


REWARD_BUSY = OpenApiResponse(
    ErrorDetailSerializer,
    description="This server process already scores as many reward requests as it may at once "
    "(ASSAY_REWARD_MAX_CONCURRENT): retry after `Retry-After` seconds. Nothing was graded.",
)
MAX_REWARD_RESPONSES = 256

# An episode as the reward endpoints take it (annotation.content.episode validates it).
EPISODE_PART_SCHEMA = {
    "type": "object",
    "description": "A part of a message's content: text, an image or a file. An image or a file "
    "comes inline as a base64 data: URI (data:image/png;base64,...), or as sha256:<hash> of a "
    "file the project already holds; it is sniffed from its bytes (PNG, JPEG, WebP; PDF, DOCX, "
    "XLSX, PPTX, CSV; never SVG or HTML), at most ASSAY_FILE_MAX_BYTES, and stored by its "
    "SHA-256. URLs are never fetched, and bundle paths are refused (a request has no bundle). "
    "grading/reward_client.py's image_part and file_part build these.",
    "properties": {
        "type": {"type": "string", "enum": ["text", "image_url", "file"]},
        "text": {"type": "string", "description": "A text part's text."},
        "image_url": {
            "type": "object",
            "properties": {"url": {"type": "string", "description": "data: URI or sha256:<hash>"}},
            "required": ["url"],
        },
        "file": {
            "type": "object",
            "properties": {
                "file_data": {"type": "string", "description": "A base64 data: URI."},
                "sha256": {"type": "string", "description": "Or a held file's hash."},
                "filename": {"type": "string", "description": "The name shown and judged."},
            },
        },
    },
    "required": ["type"],
}
EPISODE_MESSAGE_SCHEMA = {
    "type": "object",
    "description": "A chat message in the OpenAI format.",
    "properties": {
        "role": {"type": "string", "enum": ["system", "developer", "user", "assistant", "tool"]},
        "content": {
            "oneOf": [{"type": "string"}, {"type": "array", "items": EPISODE_PART_SCHEMA}],
            "nullable": True,
        },
        "tool_calls": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "id": {"type": "string"},
                    "type": {"type": "string", "enum": ["function"]},
                    "function": {
                        "type": "object",
                        "properties": {
                            "name": {"type": "string"},
                            "arguments": {
                                "description": "A JSON object, or a string holding one.",
                                "oneOf": [{"type": "string"}, {"type": "object"}],
                            },
                        },
                        "required": ["name"],
                    },
                },
                "required": ["id", "function"],
            },
        },
        "tool_call_id": {"type": "string", "description": "A tool message's call."},
        "name": {"type": "string"},
        "reasoning": {"type": "string"},
    },
    "required": ["role"],
}
EPISODE_SCHEMA = {
    "type": "object",
    "description": "An agent's episode: its messages, and the environment's final state.",
    "properties": {
        "messages": {"type": "array", "items": EPISODE_MESSAGE_SCHEMA, "minItems": 1},
        "final_state": {"description": "Any JSON: the environment after the episode."},
        "metadata": {"type": "object"},
    },
    "required": ["messages"],
}


@extend_schema_field(
    {
        "oneOf": [
            {"type": "string"},
            EPISODE_SCHEMA,
            {"type": "array", "items": EPISODE_MESSAGE_SCHEMA, "minItems": 1},
        ],
        "nullable": True,
        "description": "A model output: a text (empty, blank or null: scored without a judge "
        "call, its judged criteria not met), or a multi-turn rollout: a list of chat messages "
        "with tool calls and tool results, or {messages, final_state, metadata}. Outcome "
        "criteria grade its last assistant text; trajectory and step criteria the episode. "
        "A message's content may hold image and file parts (PNG, JPEG, WebP, PDF, DOCX, XLSX, "
        "PPTX, CSV) as base64 data: URIs, each at most ASSAY_FILE_MAX_BYTES, or as "
        "sha256:<hash> of a file the project holds; URLs and bundle paths are refused.",
    }
)
class RewardResponseField(serializers.Field):
    """A text, or an episode validated by annotation.content.episode (errors name the field
    path inside the response, e.g. messages[3].tool_calls[0].function.arguments)."""

    def __init__(self, **kwargs):
        super().__init__(allow_null=True, **kwargs)

    def to_internal_value(self, data):
        if isinstance(data, str):
            return data
        if isinstance(data, dict | list):
            try:
                # Image and file parts are stored in the project by the view's intake
                # (context "files"), once the caller's role is checked.
                return Episode.parse(data, files=self.context.get("files"))
            except ContentError as exc:
                raise serializers.ValidationError(str(exc)) from None
        raise serializers.ValidationError(
            "A response is a text, a list of chat messages, or an object with messages "
            "(and final_state, metadata)."
        )

    def to_representation(self, value):
        return value.as_json() if isinstance(value, Episode) else value


class RewardStepSerializer(serializers.Serializer):
    step = serializers.IntegerField(
        help_text="The step: the index of its assistant message in the episode's messages "
        "(0-based)."
    )
    criterion = serializers.IntegerField(
        source="criterion_id", help_text="The step criterion that produced this reward."
    )
    outcome = serializers.CharField(help_text="met, unmet, na or error, at this step.")
    reward = serializers.FloatField(
        allow_null=True,
        help_text="The criterion's points times the step's credit (1 met, a scale's value, 0 "
        "not met) over the rubric's sum of positive points: a pitfall met at a step is "
        "negative. Null on an error.",
    )


class RewardScoreApi(APIView):
    """Synchronous scores for RL trainers, through the same engine, cache and limits as runs."""

    @extend_schema_serializer(component_name="RewardRequest")
    class InputSerializer(serializers.Serializer):
        @extend_schema_serializer(component_name="RewardMessage")
        class MessageSerializer(serializers.Serializer):
            # A plain string: a second enum named "role" would collide with project roles.
            role = serializers.CharField(help_text="system, developer, user or assistant.")
            content = serializers.CharField(allow_blank=True, trim_whitespace=False)

            def validate_role(self, value: str) -> str:
                if value not in ("system", "developer", "user", "assistant"):
                    raise serializers.ValidationError("system, developer, user or assistant.")
                return value

        task = serializers.CharField(
            required=False, help_text="A task's external id (its messages are the prompt)."
        )
        messages = MessageSerializer(many=True, required=False, help_text="Or the prompt.")
        responses = serializers.ListField(
            child=RewardResponseField(),
            min_length=1,
            max_length=MAX_REWARD_RESPONSES,
            help_text="Model outputs: texts or episodes. An empty, blank or null one is scored "
            "without a judge call: its judged criteria are not met. A bad episode is a 400 "
            "naming the response's index and the field inside it.",
        )
        judge = serializers.IntegerField(
            min_value=1, required=False, help_text="A judge's id; default: the project's first."
        )
        mode = serializers.ChoiceField(choices=GradingRun.Mode.choices, required=False)

        def validate(self, attrs):
            if bool(attrs.get("task")) == bool(attrs.get("messages")):
                raise serializers.ValidationError("Give either task or messages.")
            return attrs

    @extend_schema_serializer(component_name="RewardResult")
    class OutputSerializer(serializers.Serializer):
        @extend_schema_serializer(component_name="RewardVerdict")
        class VerdictSerializer(serializers.Serializer):
            criterion = serializers.IntegerField(source="criterion_id")
            outcome = serializers.CharField(help_text="met, unmet or error.")
            value = serializers.FloatField(allow_null=True)
            explanation = serializers.CharField()
            error = serializers.CharField(
                help_text="For an error, '<reason>: <what went wrong>' (unparseable: the "
                "judge's reply could not be read as a verdict; timeout, rate_limited, "
                "http_500, ...); empty otherwise. A judge's reply never makes this endpoint "
                "fail: it answers 200 with the error here and a null score."
            )
            cached = serializers.BooleanField()

        score = serializers.FloatField(allow_null=True, help_text="Raw; null on an error.")
        clipped = serializers.FloatField(allow_null=True)
        gated = serializers.BooleanField(
            help_text="A gate criterion was not met: the score is capped at min(score, 0)."
        )
        gated_by = serializers.ListField(
            child=serializers.IntegerField(),
            help_text="Ids of the gate criteria not met, in rubric order; empty when not gated.",
        )
        verdicts = VerdictSerializer(many=True)
        flags = serializers.ListField(
            child=serializers.CharField(),
            help_text="Why the response looks aimed at its grader (instructions to the grader, "
            "forged verdicts, fake fences, master-key replies); empty when nothing was found. "
            "The score is not changed.",
        )
        steps = RewardStepSerializer(
            many=True,
            help_text="Per-step (process) rewards: each step criterion's verdict at each step "
            "of an episode, by step then rubric order. Its verdict on the whole response (by "
            "its step rule: all, share or any) is in verdicts and the score. Empty for a text "
            "response or a rubric without step criteria.",
        )

    @extend_schema(
        tags=["grading"],
        summary="Score 1..256 responses now (reward endpoint for RL trainers)",
        description=HASH_RULE,
        request=InputSerializer,
        responses={
            **responses({200: OutputSerializer(many=True)}, 400, 403, 404),
            503: REWARD_BUSY,
        },
    )
    def post(self, request: Request, grader_hash: str) -> Response:
        with service_errors():  # a malformed, short or ambiguous hash prefix: 400
            grader, project, task = grader_to_score(request.user, grader_hash, Perm.RUN_GRADING)
        data = self.InputSerializer(data=request.data, context={"files": reward_intake(project)})
        valid_with_files(data)
        judge = selectors.project_judge(project, data.validated_data.get("judge"))
        if judge is None:
            raise ValidationError({"judge": ["No such judge in this grader's project."]})
        if data.validated_data.get("task"):
            # The rubric's task, read with the grader, is usually the one asked for.
            if task is None or task.external_id != data.validated_data["task"]:
                task = task_for(
                    request.user, project, data.validated_data["task"], Perm.RUN_GRADING
                )
            messages = task.messages
        else:
            messages = [dict(m) for m in data.validated_data["messages"]]
        try:
            (results,), store = services.reward_score(
                items=[services.RewardItem(grader, messages, data.validated_data["responses"])],
                judge=judge,
                mode=data.validated_data.get("mode", GradingRun.Mode.PER_CRITERION),
            )
        except services.RewardBusy as exc:
            return _busy(exc)
        return _ThenResponse([_reward_out(r) for r in results], then=store)


def reward_intake(project) -> RequestIntake:
    return RequestIntake(project, door="the reward endpoint")


def valid_with_files(data: serializers.Serializer) -> None:
    """Validate a reward request whose episodes may carry files: each is stored as it is read;
    a 400 anywhere in the request keeps none of the project's new file rows."""
    with transaction.atomic():
        data.is_valid(raise_exception=True)


def _float(value) -> float | None:
    return None if value is None else float(value)


def _reward_out(reward: services.Reward) -> dict:
    """One response's score, as both reward endpoints answer it: what
    RewardScoreApi.OutputSerializer (RewardResult, the schema) makes of it, built directly.
    A trainer waits for this on every request, and DRF's serializers, made afresh for each
    reply and reading each of 20 verdicts field by field, took over a millisecond of it;
    tests/test_reward_endpoint.py holds the two to the same output."""
    figures = reward.figures
    return {
        "score": _float(figures.raw),
        "clipped": _float(figures.clipped),
        "gated": bool(figures.gated),
        "gated_by": [int(pk) for pk in figures.gated_by],
        "verdicts": [
            {
                "criterion": int(g.criterion_id),
                "outcome": str(g.outcome),
                "value": _float(g.value),
                "explanation": str(g.explanation),
                "error": str(g.error),
                "cached": bool(g.cached),
            }
            for g in reward.graded
        ],
        "flags": [str(flag) for flag in reward.flags],
        "steps": [
            {
                "step": int(s.step),
                "criterion": int(s.criterion_id),
                "outcome": str(s.outcome),
                "reward": _float(s.reward),
            }
            for s in reward.steps
        ],
    }


def _busy(exc: services.RewardBusy) -> Response:
    return Response(
        {"detail": str(exc)}, status=503, headers={"Retry-After": str(exc.retry_after_s)}
    )


class SuiteRewardScoreApi(APIView):
    """One reward URL per suite: each response graded by its task's pinned grader, through the
    same path (engine, cache, judge limits, deadline, concurrency bound) as RewardScoreApi."""

    @extend_schema_serializer(component_name="SuiteRewardRequest")
    class InputSerializer(serializers.Serializer):
        @extend_schema_serializer(component_name="SuiteRewardItem")
        class ItemSerializer(serializers.Serializer):
            task = serializers.CharField(
                max_length=200, help_text="A task's external id in the suite version."
            )
            responses = serializers.ListField(
                child=RewardResponseField(),
                min_length=1,
                max_length=MAX_REWARD_RESPONSES,
                help_text="Model outputs to this task: texts or episodes. An empty, blank or "
                "null one is scored without a judge call: its judged criteria are not met. A "
                "bad episode is a 400 naming the item, the response's index and the field "
                "inside it.",
            )

        items = ItemSerializer(
            many=True,
            allow_empty=False,
            help_text=f"Tasks (mixed, in any order) and their responses: 1 to "
            f"{MAX_REWARD_RESPONSES} responses in all.",
        )
        judge = serializers.IntegerField(
            min_value=1, required=False, help_text="A judge's id; default: the project's first."
        )
        mode = serializers.ChoiceField(choices=GradingRun.Mode.choices, required=False)

        def validate_items(self, items):
            total = sum(len(item["responses"]) for item in items)
            if total > MAX_REWARD_RESPONSES:
                raise serializers.ValidationError(
                    f"At most {MAX_REWARD_RESPONSES} responses a request, in all items; "
                    f"this one has {total}."
                )
            return items

    @extend_schema_serializer(component_name="SuiteRewardResult")
    class OutputSerializer(serializers.Serializer):
        @extend_schema_serializer(component_name="SuiteRewardItemResult")
        class ItemSerializer(serializers.Serializer):
            task = serializers.CharField(help_text="The task's external id, as sent.")
            grader = serializers.CharField(help_text="The hash of the task's pinned grader.")
            results = RewardScoreApi.OutputSerializer(
                many=True, help_text="Per response, in the order sent."
            )

        suite = serializers.IntegerField()
        version = serializers.IntegerField(help_text="The suite version graded with.")
        content_hash = serializers.CharField(help_text="That version's manifest hash.")
        items = ItemSerializer(many=True, help_text="Per item, in the order sent.")

    def _post(self, request: Request, pk: int, number: int | None) -> Response:
        # The role is checked before the body is read (its files would be stored) or its
        # errors told: a caller who may not grade learns nothing from a 400. The tasks asked
        # for are read with it, in one query.
        target = suite_to_score(
            request.user, pk, number, _asked_tasks(request.data), Perm.RUN_GRADING
        )
        data = self.InputSerializer(
            data=request.data, context={"files": reward_intake(target.project)}
        )
        valid_with_files(data)
        if target.unknown:
            listed = ", ".join(target.unknown[:20])
            more = f" and {len(target.unknown) - 20} more" if len(target.unknown) > 20 else ""
            raise ValidationError(
                {
                    "items": [
                        f"Not in version {target.version.number} of this suite: {listed}{more}."
                    ]
                }
            )
        judge = selectors.project_judge(target.project, data.validated_data.get("judge"))
        if judge is None:
            raise ValidationError({"judge": ["No such judge in this suite's project."]})
        sent = data.validated_data["items"]
        items = []
        for item in sent:
            task, grader = target.pinned[item["task"]]
            items.append(services.RewardItem(grader, task.messages, item["responses"]))
        try:
            results, store = services.reward_score(
                items=items,
                judge=judge,
                mode=data.validated_data.get("mode", GradingRun.Mode.PER_CRITERION),
            )
        except services.RewardBusy as exc:
            return _busy(exc)
        out = {
            "suite": pk,
            "version": target.version.number,
            "content_hash": target.version.content_hash,
            "items": [
                {
                    "task": item["task"],
                    "grader": graded.grader.hash,
                    "results": [_reward_out(r) for r in rewards],
                }
                for item, graded, rewards in zip(sent, items, results, strict=True)
            ],
        }
        return _ThenResponse(out, then=store)

    @extend_schema(
        tags=["grading"],
        summary="Score 1..256 responses to a suite's tasks now, by the newest version "
        "(one reward URL per suite)",
        description="Each response is graded by its task's grader as the suite's newest "
        "version pins it. An unknown task is a 400 naming it, before any judge call.",
        request=InputSerializer,
        responses={**responses({200: OutputSerializer}, 400, 403, 404), 503: REWARD_BUSY},
    )
    def post(self, request: Request, pk: int) -> Response:
        return self._post(request, pk, None)


def _asked_tasks(body) -> list[str]:
    """The task ids a suite reward request names, read before it is validated (as the
    serializer takes them: text of at most 200 characters)."""
    items = body.get("items") if isinstance(body, dict) else None
    if not isinstance(items, list):
        return []
    return [
        item["task"]
        for item in items[:MAX_REWARD_RESPONSES]
        if isinstance(item, dict) and isinstance(item.get("task"), str) and len(item["task"]) <= 200
    ]


class SuiteVersionRewardScoreApi(SuiteRewardScoreApi):
    @extend_schema(
        tags=["grading"],
        summary="Score 1..256 responses to a suite's tasks now, by suite version `number`",
        description="As the suite's reward URL, with the graders this version pins.",
        request=SuiteRewardScoreApi.InputSerializer,
        responses={
            **responses({200: SuiteRewardScoreApi.OutputSerializer}, 400, 403, 404),
            503: REWARD_BUSY,
        },
    )
    def post(self, request: Request, pk: int, number: int) -> Response:
        return self._post(request, pk, number)


class _AfterReply:
    """How many writes of this process still wait to run after their reply was sent
    (`_ThenResponse`): a test, or a process about to stop, waits for them with `wait_idle`."""

    def __init__(self):
        self._pending = 0
        self._idle = threading.Condition()

    def add(self) -> None:
        with self._idle:
            self._pending += 1

    def done(self) -> None:
        with self._idle:
            self._pending -= 1
            self._idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        with self._idle:
            return self._idle.wait_for(lambda: self._pending <= 0, timeout)


AFTER_REPLY = _AfterReply()


class _ThenResponse(Response):
    """A response that runs `then()` once it is sent: a WSGI server closes the response after
    writing its body (gunicorn before it reads the connection's next request; Django's test
    client before it returns), so the trainer does not wait on the cache and cost rows, and
    its next request on the connection finds them written. A crash in between loses only them."""

    def __init__(self, data, *, then, **kwargs):
        super().__init__(data, **kwargs)
        self._then = then
        AFTER_REPLY.add()

    def close(self) -> None:
        then, self._then = self._then, None
        try:
            if then is not None:
                then()
        except Exception:
            logger.exception("writing the reward endpoint's cache and cost rows failed")
        finally:
            if then is not None:
                AFTER_REPLY.done()
            super().close()


# --- Comparing two runs -----------------------------------------------------------------


@extend_schema_serializer(component_name="CompareModel")
class ComparePairSerializer(serializers.Serializer):
    model_a = serializers.CharField()
    model_b = serializers.CharField()
    tasks = serializers.IntegerField(help_text="Tasks both runs scored for this pair.")
    responses_a = serializers.IntegerField()
    responses_b = serializers.IntegerField()
    mean_a = serializers.FloatField(allow_null=True, help_text="Clipped mean, shared tasks.")
    mean_b = serializers.FloatField(allow_null=True)
    delta = serializers.FloatField(allow_null=True, help_text="mean_b - mean_a.")
    ci = serializers.ListField(
        child=serializers.FloatField(),
        allow_null=True,
        help_text="95% paired bootstrap interval of delta, by task; null below 2 tasks.",
    )


@extend_schema_serializer(component_name="CompareTask")
class CompareTaskSerializer(serializers.Serializer):
    task = serializers.CharField(help_text="The task's external id.")
    model_a = serializers.CharField()
    model_b = serializers.CharField()
    responses_a = serializers.IntegerField()
    responses_b = serializers.IntegerField()
    mean_a = serializers.FloatField()
    mean_b = serializers.FloatField()
    delta = serializers.FloatField()


@extend_schema_serializer(component_name="CompareCriterion")
class CompareCriterionSerializer(serializers.Serializer):
    task = serializers.CharField()
    criterion_a = serializers.IntegerField()
    criterion_b = serializers.IntegerField()
    position = serializers.IntegerField(help_text="In B's grader, from 0.")
    text = serializers.CharField(help_text="As B's grader words it.")
    met_a = serializers.IntegerField()
    decided_a = serializers.IntegerField()
    met_b = serializers.IntegerField()
    decided_b = serializers.IntegerField()
    rate_a = serializers.FloatField()
    rate_b = serializers.FloatField()
    delta = serializers.FloatField()


@extend_schema_serializer(component_name="CompareFlip")
class CompareFlipSerializer(serializers.Serializer):
    response = serializers.IntegerField()
    task = serializers.CharField()
    model = serializers.CharField()
    sample_index = serializers.IntegerField()
    criterion_a = serializers.IntegerField()
    criterion_b = serializers.IntegerField()
    position = serializers.IntegerField()
    text = serializers.CharField()
    before = serializers.CharField(help_text="The outcome in A: met or unmet.")
    after = serializers.CharField(help_text="The outcome in B.")
    score_a = serializers.IntegerField(help_text="The response's score in A.")
    score_b = serializers.IntegerField()


@extend_schema_serializer(component_name="CompareAgreement")
class CompareAgreementSerializer(serializers.Serializer):
    items = serializers.IntegerField(help_text="Items both lead judges decided.")
    agree = serializers.IntegerField()
    percent = serializers.FloatField(allow_null=True)
    kappa = serializers.FloatField(allow_null=True, help_text="Cohen's kappa; null if undefined.")


@extend_schema_serializer(component_name="CompareTaskPage")
class CompareTaskPageSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    page = serializers.IntegerField()
    pages = serializers.IntegerField()
    results = CompareTaskSerializer(many=True)


@extend_schema_serializer(component_name="CompareCriterionPage")
class CompareCriterionPageSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    page = serializers.IntegerField()
    pages = serializers.IntegerField()
    results = CompareCriterionSerializer(many=True)


@extend_schema_serializer(component_name="CompareFlipPage")
class CompareFlipPageSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    page = serializers.IntegerField()
    pages = serializers.IntegerField()
    results = CompareFlipSerializer(many=True)


@extend_schema_serializer(component_name="CompareFilter")
class CompareFilterSerializer(serializers.Serializer):
    tasks_page = serializers.IntegerField(required=False, min_value=1, max_value=10**6)
    criteria_page = serializers.IntegerField(required=False, min_value=1, max_value=10**6)
    flips_page = serializers.IntegerField(required=False, min_value=1, max_value=10**6)


@extend_schema_serializer(component_name="RunComparison")
class CompareOutputSerializer(serializers.Serializer):
    a = RunSerializer()
    b = RunSerializer()
    same_version = serializers.BooleanField()
    pairing = serializers.CharField(help_text="Which models were compared, and why.")
    interval_rule = serializers.CharField()
    criteria_rule = serializers.CharField()
    verdicts_rule = serializers.CharField()
    models = ComparePairSerializer(many=True, help_text="Per model pair (see pairing).")
    tasks_only_a = serializers.IntegerField(help_text="Tasks only A scored: left out.")
    tasks_only_b = serializers.IntegerField(help_text="Tasks only B scored: left out.")
    shared_responses = serializers.IntegerField(help_text="Responses graded in both runs.")
    agreement = CompareAgreementSerializer(
        allow_null=True, help_text="Lead judges on shared items; null: no shared response."
    )
    tasks = CompareTaskPageSerializer(help_text="Per task, largest |delta| first.")
    criteria = CompareCriterionPageSerializer(help_text="Per criterion, largest |delta| first.")
    flips = CompareFlipPageSerializer(help_text="Items met in one run and unmet in the other.")


class RunCompareApi(APIView):
    FilterSerializer = CompareFilterSerializer
    OutputSerializer = CompareOutputSerializer

    @extend_schema(
        tags=["grading"],
        summary="Run B (other_id) against run A (id): deltas, flips, agreement",
        description=(
            "Both runs must grade the same suite (any two versions); otherwise a 400 on "
            "`other_id` says why. Deltas are B minus A. The task, criterion and flip lists "
            "come 50 rows a page (`tasks_page`, `criteria_page`, `flips_page`; a page past "
            "the end gives the last)."
        ),
        parameters=[FilterSerializer],
        responses=responses({200: OutputSerializer}, 400, 403, 404),
    )
    def get(self, request: Request, pk: int, other_id: int) -> Response:
        from grading import comparison

        a = selectors.run_for(request.user, pk, Perm.VIEW_RESULTS)
        b = selectors.run_for(request.user, other_id, Perm.VIEW_RESULTS)
        f = query_filters(request, self.FilterSerializer, paged=False)
        with service_errors():
            result = comparison.compare(a, b)
        pages = {
            "tasks": result.tasks_page(f.get("tasks_page")),
            "criteria": result.criteria_page(f.get("criteria_page")),
            "flips": result.flips_page(f.get("flips_page")),
        }
        data = {
            "a": a,
            "b": b,
            "same_version": result.same_version,
            "pairing": result.pairing,
            "interval_rule": result.interval_rule,
            "criteria_rule": result.criteria_rule,
            "verdicts_rule": result.verdicts_rule,
            "models": result.pairs,
            "tasks_only_a": result.tasks_only_a,
            "tasks_only_b": result.tasks_only_b,
            "shared_responses": result.shared_responses,
            "agreement": result.agreement,
            **{
                name: {
                    "count": page.paginator.count,
                    "page": page.number,
                    "pages": page.paginator.num_pages,
                    "results": list(page.object_list),
                }
                for name, page in pages.items()
            },
        }
        return Response(self.OutputSerializer(data).data)


# --- Scores and verdicts ----------------------------------------------------------------


class ScoreListApi(APIView):
    pagination_class = Pagination

    @extend_schema_serializer(component_name="Score")
    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        response = serializers.IntegerField(source="response_id")
        task = serializers.CharField(source="response.task.external_id")
        model = serializers.CharField(source="response.model")
        sample_index = serializers.IntegerField(source="response.sample_index")
        # A plain string: a second enum named "status" would collide in the schema.
        status = serializers.CharField(help_text="pending or done.")
        raw = serializers.FloatField(
            allow_null=True,
            help_text="Met points / possible points; may fall below 0; a missed gate caps it at "
            "min(raw, 0). Null while pending or when a verdict is an error.",
        )
        clipped = serializers.FloatField(allow_null=True, help_text="Raw clipped to [0, 1].")
        met_points = serializers.FloatField()
        possible_points = serializers.FloatField()
        error_count = serializers.IntegerField()
        gated = serializers.BooleanField(
            help_text="A gate criterion was not met: raw is capped at min(raw, 0)."
        )
        gated_by = serializers.ListField(
            child=serializers.IntegerField(),
            help_text="Ids of the gate criteria not met, in rubric order; empty when not gated.",
        )
        finished_at = serializers.DateTimeField(allow_null=True)

    @extend_schema_serializer(component_name="ScoreFilter")
    class FilterSerializer(serializers.Serializer):
        status = serializers.ChoiceField(choices=Score.Status.choices, required=False)
        model = serializers.CharField(required=False, help_text="Only this model's responses.")
        task = serializers.CharField(required=False, help_text="A task's external id.")
        response = serializers.IntegerField(required=False, help_text="A response's id.")

    @extend_schema(
        tags=["grading"],
        summary="A run's score for each response",
        description=FILTERS_RULE,
        parameters=[FilterSerializer],
        responses=responses({200: OutputSerializer(many=True)}, 400, 403, 404),
    )
    def get(self, request: Request, pk: int) -> Response:
        run = selectors.run_for(request.user, pk, Perm.VIEW_RESULTS)
        f = query_filters(request, self.FilterSerializer)
        scores = selectors.run_scores(run)
        lookups = {
            "status": "status",
            "model": "response__model",
            "task": "response__task__external_id",
            "response": "response_id",
        }
        scores = scores.filter(**{lookups[name]: value for name, value in f.items()})
        return paginated(self, request, scores, self.OutputSerializer)


class VerdictListApi(APIView):
    @extend_schema_serializer(component_name="Verdict")
    class OutputSerializer(serializers.Serializer):
        @extend_schema_serializer(component_name="VerdictCriterion")
        class CriterionSerializer(serializers.Serializer):
            id = serializers.IntegerField()
            position = serializers.IntegerField()
            text = serializers.CharField()
            points = serializers.DecimalField(
                max_digits=7, decimal_places=2, coerce_to_string=False
            )

        id = serializers.IntegerField()
        criterion = CriterionSerializer()
        step = serializers.IntegerField(
            allow_null=True,
            help_text="A step criterion's verdict at one step of an episode: the index of that "
            "assistant message (0-based; pages show it as #index+1). Null: the verdict on the "
            "whole response (for a step criterion, its step rule's result).",
        )
        outcome = serializers.ChoiceField(choices=Verdict.Outcome.choices)
        explanation = serializers.CharField()
        error = serializers.CharField(help_text="Why the verdict is an error, if it is.")
        simulated = serializers.BooleanField()
        judge_model = serializers.CharField()
        prompt_tokens = serializers.IntegerField()
        completion_tokens = serializers.IntegerField()
        created_at = serializers.DateTimeField()

    @extend_schema(
        tags=["grading"],
        summary="The judge's verdicts on one scored response, by criterion (then step)",
        responses=responses({200: OutputSerializer(many=True)}, 400, 403, 404),
    )
    def get(self, request: Request, pk: int, score_pk: int) -> Response:
        score = selectors.score_for(request.user, pk, score_pk, Perm.VIEW_RESULTS)
        query_filters(request, paged=False)
        verdicts = selectors.score_verdicts(score)
        return Response(self.OutputSerializer(verdicts, many=True).data)


# --- Model prices: one table for every project, kept by staff ------------------------------


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
