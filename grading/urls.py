from django.urls import path

from grading import tryit, views

urlpatterns = [
    path("p/<slug:slug>/judges/", views.judges, name="judges"),
    path("p/<slug:slug>/runs/", views.runs, name="runs"),
    path("runs/<int:pk>/", views.run_detail, name="run"),
    path("runs/<int:pk>/cancel/", views.run_cancel, name="run_cancel"),
    path("runs/<int:pk>/scores/<int:score_pk>/", views.score_detail, name="score"),
    path("rubrics/<int:pk>/try/", tryit.rubric_try, name="rubric_try"),
]
