"""JSON doors for grading runs: list, start, read (progress, per-model scores, costs),
cancel, retry the failed items, resume.

Reading needs VIEW_RESULTS: annotators stay blind to the judge.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from grading import selectors, services
from grading.models import GradingRun
from rubrics import suites
from rubrics.api.common import (
    FILTERS_RULE,
    NEWEST_FIRST,
    Pagination,
    grader_named,
    paginated,
    query_filters,
    responses,
    service_errors,
)
from rubrics.permissions import Perm, project_for


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
