from django.urls import path

from rubrics import views

urlpatterns = [
    path("", views.home, name="home"),
    path("signup/", views.signup, name="signup"),
    path("p/<slug:slug>/", views.project_detail, name="project"),
    path("p/<slug:slug>/members/", views.members, name="members"),
    path(
        "p/<slug:slug>/members/<str:username>/remove/",
        views.member_remove,
        name="member_remove",
    ),
    path(
        "p/<slug:slug>/invitations/<str:username>/cancel/",
        views.invitation_cancel,
        name="invitation_cancel",
    ),
    path(
        "invitations/<int:pk>/accept/",
        views.invitation_answer,
        {"answer": "accept"},
        name="invitation_accept",
    ),
    path(
        "invitations/<int:pk>/decline/",
        views.invitation_answer,
        {"answer": "decline"},
        name="invitation_decline",
    ),
    path("p/<slug:slug>/audit/", views.audit_log, name="audit_log"),
    path("p/<slug:slug>/reviews/", views.review_inbox, name="review_inbox"),
    path("p/<slug:slug>/tasks/new/", views.task_new, name="task_new"),
    path("p/<slug:slug>/preview/markdown/", views.markdown_preview, name="markdown_preview"),
    path("p/<slug:slug>/imports/tasks/", views.tasks_import, name="tasks_import"),
    path("p/<slug:slug>/tasks/<str:external_id>/", views.task_detail, name="task"),
    path("p/<slug:slug>/tasks/<str:external_id>/rubrics/", views.rubric_new, name="rubric_new"),
    path(
        "p/<slug:slug>/tasks/<str:external_id>/references/",
        views.reference_add,
        name="reference_add",
    ),
    path("references/<int:pk>/file/", views.reference_file, name="reference_file"),
    path("p/<slug:slug>/files/<str:sha256>/", views.file_view, name="file"),
    path("p/<slug:slug>/files/<str:sha256>/preview/", views.file_preview, name="file_preview"),
    path(
        "p/<slug:slug>/files/<str:sha256>/pages/<int:number>.png",
        views.file_page,
        name="file_page",
    ),
    path("p/<slug:slug>/rubrics/import/", views.rubrics_import, name="rubrics_import"),
    path("p/<slug:slug>/rubrics/export/", views.rubrics_export, name="rubrics_export"),
    path("p/<slug:slug>/templates/new/", views.template_new, name="template_new"),
    path("rubrics/<int:pk>/apply/", views.template_apply, name="template_apply"),
    path("rubrics/<int:pk>/", views.rubric_detail, name="rubric"),
    path("rubrics/<int:pk>/edit/", views.rubric_edit, name="rubric_edit"),
    path("rubrics/<int:pk>/criteria/", views.criterion_add, name="criterion_add"),
    path("rubrics/<int:pk>/settings/", views.rubric_settings, name="rubric_settings"),
    path("rubrics/<int:pk>/submit/", views.rubric_submit, name="rubric_submit"),
    path("rubrics/<int:pk>/reopen/", views.rubric_reopen, name="rubric_reopen"),
    path("rubrics/<int:pk>/approve/", views.rubric_approve, name="rubric_approve"),
    path(
        "rubrics/<int:pk>/versions/<int:number>/retire/", views.rubric_retire, name="rubric_retire"
    ),
    path("rubrics/<int:pk>/comments/", views.comment_add, name="comment_add"),
    path("rubrics/<int:pk>/diff/", views.rubric_diff, name="rubric_diff"),
    path("rubrics/<int:pk>/history/", views.rubric_history, name="rubric_history"),
    path("comments/<int:pk>/resolve/", views.comment_resolve, name="comment_resolve"),
    path("comments/<int:pk>/replies/", views.comment_reply, name="comment_reply"),
    path("groups/<int:pk>/", views.group_update, name="group_update"),
    path("criteria/<int:pk>/", views.criterion_update, name="criterion_update"),
    path("criteria/<int:pk>/delete/", views.criterion_delete, name="criterion_delete"),
    path(
        "criteria/<int:pk>/move/<str:direction>/",
        views.criterion_move,
        name="criterion_move",
    ),
    path("graders/<str:grader_hash>/", views.grader_detail, name="grader"),
]

from rubrics import views_tokens  # noqa: E402 - the tokens page sits apart from project pages

urlpatterns += [
    path("tokens/", views_tokens.api_tokens, name="api_tokens_page"),
    path("tokens/<int:pk>/revoke/", views_tokens.api_token_revoke, name="api_token_revoke_page"),
]
