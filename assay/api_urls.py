"""The JSON API, mounted at /api/. Each operation is its own APIView; `one_path` serves
several of them (say, a list and a create) on one path, chosen by the request's method."""

from __future__ import annotations

from django.urls import path
from rest_framework.views import APIView

from annotation.api.agreement import AgreementApi, DisagreementListApi
from annotation.api.calibration import (
    CalibrationApi,
    CalibrationSettingsApi,
    CalibrationSettingsSetApi,
)
from annotation.api.gold import GoldDecideApi, GoldListApi
from annotation.api.imports import ImportJobCreateApi, ImportJobDetailApi, ImportJobListApi
from annotation.api.members import MemberRemoveApi
from annotation.api.queues import (
    AssignmentDetailApi,
    AssignmentSkipApi,
    AssignmentSubmitApi,
    QueueAssignmentListApi,
    QueueClaimApi,
    QueueCreateApi,
    QueueDeleteApi,
    QueueDetailApi,
    QueueListApi,
    QueueUpdateApi,
    VerdictDraftApi,
)
from annotation.api.raters import ProjectVerdictListApi, RaterListApi
from annotation.api.responses import (
    ResponseDetailApi,
    ResponseImportApi,
    ResponseListApi,
    ResponseModelsApi,
)
from annotation.api.tasks import TaskDeleteApi, TaskUpdateApi
from grading.api.comparison import RunCompareApi
from grading.api.judges import (
    JudgeCreateApi,
    JudgeDeleteApi,
    JudgeDetailApi,
    JudgeListApi,
    JudgeTestApi,
    JudgeUpdateApi,
)
from grading.api.leaderboard import RunLeaderboardApi, SuiteLeaderboardApi
from grading.api.prices import (
    ModelPriceCreateApi,
    ModelPriceDeleteApi,
    ModelPriceDetailApi,
    ModelPriceListApi,
    ModelPriceUpdateApi,
)
from grading.api.projects import ProjectDeleteApi
from grading.api.reward import RewardScoreApi, SuiteRewardScoreApi, SuiteVersionRewardScoreApi
from grading.api.runs import (
    RunCancelApi,
    RunCreateApi,
    RunDetailApi,
    RunListApi,
    RunResumeApi,
    RunRetryFailedApi,
)
from grading.api.scores import ScoreListApi, VerdictListApi
from grading.api.suites import (
    SuiteCreateApi,
    SuiteDetailApi,
    SuiteDiffApi,
    SuiteFreezeApi,
    SuiteListApi,
    SuiteUpdateApi,
    SuiteVersionDetailApi,
    SuiteVersionListApi,
)
from grading.datasets.api import (
    SnapshotCreateApi,
    SnapshotDeleteApi,
    SnapshotDetailApi,
    SnapshotDownloadApi,
    SnapshotListApi,
    SnapshotRetryApi,
)
from rubrics.api.graders import GraderDetailApi
from rubrics.api.projects import (
    AuditEventListApi,
    InvitationAcceptApi,
    InvitationDeclineApi,
    InvitationListApi,
    MemberDetailApi,
    MemberListApi,
    MemberRoleApi,
    MemberSetApi,
    ProjectCreateApi,
    ProjectDetailApi,
    ProjectInvitationCancelApi,
    ProjectInvitationListApi,
    ProjectListApi,
    ProjectUpdateApi,
)
from rubrics.api.references import (
    ReferenceCreateApi,
    ReferenceDeleteApi,
    ReferenceDetailApi,
    ReferenceFileApi,
    ReferenceUpdateApi,
)
from rubrics.api.review import (
    CommentCreateApi,
    CommentListApi,
    CommentReplyApi,
    CommentResolveApi,
    ReviewInboxApi,
    RubricApproveApi,
    RubricDiffApi,
    RubricHistoryApi,
    RubricReopenApi,
    RubricSubmitApi,
    VersionRetireApi,
)
from rubrics.api.rubrics import (
    CriterionAddApi,
    CriterionDeleteApi,
    CriterionDetailApi,
    CriterionUpdateApi,
    DraftCriteriaReplaceApi,
    DraftDiscardApi,
    RubricCreateApi,
    RubricDeleteApi,
    RubricDetailApi,
    RubricListApi,
    RubricUpdateApi,
)
from rubrics.api.tasks import TaskCreateApi, TaskDetailApi, TaskImportApi, TaskListApi
from rubrics.api.tokens import (
    TokenCreateApi,
    TokenDetailApi,
    TokenListApi,
    TokenObtainApi,
    TokenRevokeApi,
)

_SKIPPED = {"options", "head"}


def _methods(view: type[APIView]) -> list[str]:
    return [m for m in view.http_method_names if m not in _SKIPPED and hasattr(view, m)]


def one_path(*views: type[APIView]):
    """One URL for several single-operation APIViews.

    A request goes to the view that handles its method, which does everything (auth,
    permissions, parsing) its own way. The schema generator sees one view carrying each
    operation's handler and `@extend_schema`; other methods get DRF's 401 or 405.
    """
    operations: dict[str, type[APIView]] = {}
    for view in views:
        for method in _methods(view):
            if method in operations:
                raise ValueError(f"{view.__name__} and {operations[method].__name__}: {method}")
            operations[method] = view
    callbacks = {method: view.as_view() for method, view in operations.items()}

    def dispatch(self, request, *args, **kwargs):
        method = request.method.lower()
        callback = callbacks.get("get" if method == "head" else method)
        if callback is None:
            return APIView.dispatch(self, request, *args, **kwargs)
        return callback(request, *args, **kwargs)

    attrs = {method: getattr(view, method) for method, view in operations.items()}
    attrs["dispatch"] = dispatch
    paginated = [v.pagination_class for v in views if getattr(v, "pagination_class", None)]
    if paginated:
        attrs["pagination_class"] = paginated[0]
    name = "".join(view.__name__.removesuffix("Api") for view in views) + "Api"
    return type(name, (APIView,), attrs).as_view()


urlpatterns = [
    path("auth/token/", TokenObtainApi.as_view(), name="api_token"),
    path(
        "tokens/",
        one_path(TokenListApi, TokenCreateApi),
        name="api_tokens",
    ),
    path(
        "tokens/<int:pk>/",
        one_path(TokenDetailApi, TokenRevokeApi),
        name="api_token_revoke",
    ),
    path(
        "projects/",
        one_path(ProjectListApi, ProjectCreateApi),
        name="api_projects",
    ),
    path(
        "projects/<slug:slug>/",
        one_path(ProjectDetailApi, ProjectUpdateApi, ProjectDeleteApi),
        name="api_project",
    ),
    path(
        "projects/<slug:slug>/members/",
        one_path(MemberListApi, MemberSetApi),
        name="api_members",
    ),
    path(
        "projects/<slug:slug>/members/<str:username>/",
        one_path(MemberDetailApi, MemberRoleApi, MemberRemoveApi),
        name="api_member",
    ),
    path(
        "projects/<slug:slug>/invitations/",
        ProjectInvitationListApi.as_view(),
        name="api_project_invitations",
    ),
    path(
        "projects/<slug:slug>/invitations/<str:username>/",
        ProjectInvitationCancelApi.as_view(),
        name="api_project_invitation",
    ),
    path("invitations/", InvitationListApi.as_view(), name="api_invitations"),
    path(
        "invitations/<int:pk>/accept/",
        InvitationAcceptApi.as_view(),
        name="api_invitation_accept",
    ),
    path(
        "invitations/<int:pk>/decline/",
        InvitationDeclineApi.as_view(),
        name="api_invitation_decline",
    ),
    path(
        "projects/<slug:slug>/audit/",
        AuditEventListApi.as_view(),
        name="api_audit",
    ),
    path(
        "projects/<slug:slug>/tasks/",
        one_path(TaskListApi, TaskCreateApi),
        name="api_tasks",
    ),
    path(
        "projects/<slug:slug>/imports/tasks/",
        TaskImportApi.as_view(),
        name="api_tasks_import",
    ),
    path(
        "projects/<slug:slug>/tasks/<str:external_id>/",
        one_path(TaskDetailApi, TaskUpdateApi, TaskDeleteApi),
        name="api_task",
    ),
    path(
        "projects/<slug:slug>/tasks/<str:external_id>/references/",
        ReferenceCreateApi.as_view(),
        name="api_task_references",
    ),
    path(
        "references/<int:pk>/",
        one_path(
            ReferenceDetailApi,
            ReferenceUpdateApi,
            ReferenceDeleteApi,
        ),
        name="api_reference",
    ),
    path(
        "references/<int:pk>/file/",
        ReferenceFileApi.as_view(),
        name="api_reference_file",
    ),
    path(
        "projects/<slug:slug>/reviews/",
        ReviewInboxApi.as_view(),
        name="api_review_inbox",
    ),
    path(
        "projects/<slug:slug>/rubrics/",
        one_path(RubricListApi, RubricCreateApi),
        name="api_rubrics",
    ),
    path(
        "projects/<slug:slug>/responses/",
        ResponseListApi.as_view(),
        name="api_responses",
    ),
    path(
        "projects/<slug:slug>/responses/import/",
        ResponseImportApi.as_view(),
        name="api_responses_import",
    ),
    path(
        "projects/<slug:slug>/responses/models/",
        ResponseModelsApi.as_view(),
        name="api_response_models",
    ),
    path("responses/<int:pk>/", ResponseDetailApi.as_view(), name="api_response"),
    path(
        "projects/<slug:slug>/imports/",
        one_path(ImportJobListApi, ImportJobCreateApi),
        name="api_imports",
    ),
    path("imports/<int:pk>/", ImportJobDetailApi.as_view(), name="api_import"),
    path("projects/<slug:slug>/raters/", RaterListApi.as_view(), name="api_raters"),
    path(
        "projects/<slug:slug>/verdicts/",
        ProjectVerdictListApi.as_view(),
        name="api_project_verdicts",
    ),
    path(
        "projects/<slug:slug>/calibration-settings/",
        one_path(CalibrationSettingsApi, CalibrationSettingsSetApi),
        name="api_calibration_settings",
    ),
    path(
        "projects/<slug:slug>/judges/",
        one_path(JudgeListApi, JudgeCreateApi),
        name="api_judges",
    ),
    path(
        "judges/<int:pk>/",
        one_path(JudgeDetailApi, JudgeUpdateApi, JudgeDeleteApi),
        name="api_judge",
    ),
    path("judges/<int:pk>/test/", JudgeTestApi.as_view(), name="api_judge_test"),
    path(
        "model-prices/",
        one_path(ModelPriceListApi, ModelPriceCreateApi),
        name="api_model_prices",
    ),
    path(
        "model-prices/<int:pk>/",
        one_path(
            ModelPriceDetailApi,
            ModelPriceUpdateApi,
            ModelPriceDeleteApi,
        ),
        name="api_model_price",
    ),
    path(
        "projects/<slug:slug>/runs/",
        one_path(RunListApi, RunCreateApi),
        name="api_runs",
    ),
    path(
        "projects/<slug:slug>/suites/",
        one_path(SuiteListApi, SuiteCreateApi),
        name="api_suites",
    ),
    path(
        "suites/<int:pk>/",
        one_path(SuiteDetailApi, SuiteUpdateApi),
        name="api_suite",
    ),
    path("suites/<int:pk>/freeze/", SuiteFreezeApi.as_view(), name="api_suite_freeze"),
    path(
        "suites/<int:pk>/versions/",
        SuiteVersionListApi.as_view(),
        name="api_suite_versions",
    ),
    path(
        "suites/<int:pk>/versions/<int:number>/",
        SuiteVersionDetailApi.as_view(),
        name="api_suite_version",
    ),
    path("suites/<int:pk>/diff/", SuiteDiffApi.as_view(), name="api_suite_diff"),
    path(
        "projects/<slug:slug>/queues/",
        one_path(QueueListApi, QueueCreateApi),
        name="api_queues",
    ),
    path(
        "queues/<int:pk>/",
        one_path(
            QueueDetailApi,
            QueueUpdateApi,
            QueueDeleteApi,
        ),
        name="api_queue",
    ),
    path(
        "queues/<int:pk>/assignments/",
        QueueAssignmentListApi.as_view(),
        name="api_queue_assignments",
    ),
    path("queues/<int:pk>/claim/", QueueClaimApi.as_view(), name="api_queue_claim"),
    path(
        "assignments/<int:pk>/",
        AssignmentDetailApi.as_view(),
        name="api_assignment",
    ),
    path(
        "assignments/<int:pk>/verdicts/",
        VerdictDraftApi.as_view(),
        name="api_assignment_verdicts",
    ),
    path(
        "assignments/<int:pk>/submit/",
        AssignmentSubmitApi.as_view(),
        name="api_assignment_submit",
    ),
    path(
        "assignments/<int:pk>/skip/",
        AssignmentSkipApi.as_view(),
        name="api_assignment_skip",
    ),
    path("versions/<int:pk>/agreement/", AgreementApi.as_view(), name="api_agreement"),
    path(
        "versions/<int:pk>/disagreements/",
        DisagreementListApi.as_view(),
        name="api_disagreements",
    ),
    path(
        "versions/<int:pk>/gold/",
        one_path(GoldListApi, GoldDecideApi),
        name="api_gold",
    ),
    path(
        "versions/<int:pk>/calibration/",
        CalibrationApi.as_view(),
        name="api_calibration",
    ),
    path(
        "rubrics/<int:pk>/",
        one_path(RubricDetailApi, RubricUpdateApi, RubricDeleteApi),
        name="api_rubric",
    ),
    path("rubrics/<int:pk>/draft/", DraftDiscardApi.as_view(), name="api_draft"),
    path(
        "rubrics/<int:pk>/draft/criteria/",
        one_path(DraftCriteriaReplaceApi, CriterionAddApi),
        name="api_draft_criteria",
    ),
    path(
        "criteria/<int:pk>/",
        one_path(
            CriterionDetailApi,
            CriterionUpdateApi,
            CriterionDeleteApi,
        ),
        name="api_criterion",
    ),
    path(
        "rubrics/<int:pk>/reopen/",
        RubricReopenApi.as_view(),
        name="api_rubric_reopen",
    ),
    path(
        "rubrics/<int:pk>/versions/<int:number>/retire/",
        VersionRetireApi.as_view(),
        name="api_version_retire",
    ),
    path(
        "rubrics/<int:pk>/history/",
        RubricHistoryApi.as_view(),
        name="api_rubric_history",
    ),
    path(
        "rubrics/<int:pk>/submit/",
        RubricSubmitApi.as_view(),
        name="api_rubric_submit",
    ),
    path(
        "rubrics/<int:pk>/approve/",
        RubricApproveApi.as_view(),
        name="api_rubric_approve",
    ),
    path("rubrics/<int:pk>/diff/", RubricDiffApi.as_view(), name="api_rubric_diff"),
    path(
        "rubrics/<int:pk>/comments/",
        one_path(CommentListApi, CommentCreateApi),
        name="api_rubric_comments",
    ),
    path(
        "comments/<int:pk>/resolve/",
        CommentResolveApi.as_view(),
        name="api_comment_resolve",
    ),
    path(
        "comments/<int:pk>/replies/",
        CommentReplyApi.as_view(),
        name="api_comment_reply",
    ),
    path(
        "graders/<str:grader_hash>/",
        GraderDetailApi.as_view(),
        name="api_grader",
    ),
    path(
        "projects/<slug:slug>/datasets/",
        one_path(SnapshotListApi, SnapshotCreateApi),
        name="api_datasets",
    ),
    path(
        "datasets/<int:pk>/",
        one_path(SnapshotDetailApi, SnapshotDeleteApi),
        name="api_dataset",
    ),
    path(
        "datasets/<int:pk>/retry/",
        SnapshotRetryApi.as_view(),
        name="api_dataset_retry",
    ),
    path(
        "datasets/<int:pk>/download/",
        SnapshotDownloadApi.as_view(),
        name="api_dataset_download",
    ),
    path(
        "graders/<str:grader_hash>/score/",
        RewardScoreApi.as_view(),
        name="api_grader_score",
    ),
    path(
        "suites/<int:pk>/score/",
        SuiteRewardScoreApi.as_view(),
        name="api_suite_score",
    ),
    path(
        "suites/<int:pk>/versions/<int:number>/score/",
        SuiteVersionRewardScoreApi.as_view(),
        name="api_suite_version_score",
    ),
    path("runs/<int:pk>/", RunDetailApi.as_view(), name="api_run"),
    path(
        "runs/<int:pk>/retry-failed/",
        RunRetryFailedApi.as_view(),
        name="api_run_retry_failed",
    ),
    path("runs/<int:pk>/resume/", RunResumeApi.as_view(), name="api_run_resume"),
    path("runs/<int:pk>/cancel/", RunCancelApi.as_view(), name="api_run_cancel"),
    path(
        "runs/<int:pk>/compare/<int:other_id>/",
        RunCompareApi.as_view(),
        name="api_run_compare",
    ),
    path("runs/<int:pk>/scores/", ScoreListApi.as_view(), name="api_scores"),
    path(
        "runs/<int:pk>/leaderboard/",
        RunLeaderboardApi.as_view(),
        name="api_run_leaderboard",
    ),
    path(
        "suites/<int:pk>/leaderboard/",
        SuiteLeaderboardApi.as_view(),
        name="api_suite_leaderboard",
    ),
    path(
        "runs/<int:pk>/scores/<int:score_pk>/verdicts/",
        VerdictListApi.as_view(),
        name="api_verdicts",
    ),
]
