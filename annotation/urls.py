from django.urls import path

from annotation import views

urlpatterns = [
    # The task page is rubrics'; its Edit form posts here, where the prompt's freeze is known.
    path("p/<slug:slug>/tasks/<str:external_id>/edit/", views.task_edit, name="task_edit"),
    path("p/<slug:slug>/responses/", views.responses, name="responses"),
    path("responses/<int:pk>/", views.response_detail, name="response"),
    path("imports/<int:pk>/", views.import_job, name="import_job"),
    path("p/<slug:slug>/queues/", views.queues, name="queues"),
    path("p/<slug:slug>/my-work/", views.my_work, name="my_work"),
    path("queues/<int:pk>/", views.queue_detail, name="queue"),
    path("queues/<int:pk>/next/", views.queue_next, name="queue_next"),
    path("assignments/<int:pk>/", views.assignment_page, name="assignment"),
    path("assignments/<int:pk>/draft/", views.assignment_draft, name="assignment_draft"),
    path("assignments/<int:pk>/submit/", views.assignment_submit, name="assignment_submit"),
    path("assignments/<int:pk>/skip/", views.assignment_skip, name="assignment_skip"),
    path("versions/<int:pk>/agreement/", views.agreement, name="agreement"),
    path("versions/<int:pk>/disagreements/", views.disagreements, name="disagreements"),
    path(
        "versions/<int:pk>/adjudicate/<int:response_pk>/<int:criterion_pk>/",
        views.adjudicate,
        name="adjudicate",
    ),
    path("versions/<int:pk>/calibration/", views.calibration, name="calibration"),
    path("calibration/versions/<int:pk>/flags/", views.calibration_flags, name="calibration_flags"),
]
