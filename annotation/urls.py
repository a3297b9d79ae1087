from django.urls import path

from annotation import views

urlpatterns = [
    path("p/<slug:slug>/responses/", views.responses, name="responses"),
]
