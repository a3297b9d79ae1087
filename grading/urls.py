from django.urls import path

from grading import tryit, views, views_suites

urlpatterns = [
    path("p/<slug:slug>/judges/", views.judges, name="judges"),
    path("judges/<int:pk>/test/", views.judge_test, name="judge_test"),
    path("p/<slug:slug>/runs/", views.runs, name="runs"),
    path("p/<slug:slug>/runs/graders/", views.run_grader_search, name="run_grader_search"),
    path("p/<slug:slug>/suites/", views_suites.suites_list, name="suites"),
    path("suites/<int:pk>/", views_suites.suite_detail, name="suite"),
    path("suites/<int:pk>/edit/", views_suites.suite_edit, name="suite_edit"),
    path("suites/<int:pk>/freeze/", views_suites.suite_freeze, name="suite_freeze"),
    path("runs/<int:pk>/", views.run_detail, name="run"),
    path("runs/<int:pk>/cancel/", views.run_cancel, name="run_cancel"),
    path("runs/<int:pk>/retry-failed/", views.run_retry_failed, name="run_retry_failed"),
    path("runs/<int:pk>/resume/", views.run_resume, name="run_resume"),
    path("runs/<int:pk>/compare/<int:other_pk>/", views.run_compare, name="run_compare"),
    path("runs/<int:pk>/scores/<int:score_pk>/", views.score_detail, name="score"),
    path("runs/<int:pk>/calls/<int:call_pk>/", views.call_detail, name="judge_call"),
    path("rubrics/<int:pk>/try/", tryit.rubric_try, name="rubric_try"),
]

urlpatterns += [
    path("p/<slug:slug>/datasets/", views.datasets, name="datasets"),
    path("datasets/<int:pk>/", views.snapshot_detail, name="snapshot"),
    path("datasets/<int:pk>/download/", views.snapshot_download, name="snapshot_download"),
    path("datasets/<int:pk>/retry/", views.snapshot_retry, name="snapshot_retry"),
    path("datasets/<int:pk>/delete/", views.snapshot_delete, name="snapshot_delete"),
]
