"""HTML doors for responses: list and JSONL import."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_http_methods

from annotation import selectors, services
from rubrics.permissions import Perm, project_for, role_allows

PAGE = 200


@login_required
@require_http_methods(["GET", "POST"])
def responses(request: HttpRequest, slug: str) -> HttpResponse:
    perm = Perm.IMPORT_RESPONSES if request.method == "POST" else Perm.VIEW
    project = project_for(request.user, slug, perm)
    result = None
    if request.method == "POST":
        upload = request.FILES.get("file")
        if upload is None:
            result = services.ImportResult(
                errors=[services.LineError(0, "file", "choose a JSONL file to upload")],
                error_count=1,
            )
        else:
            result = services.responses_import_jsonl(
                project=project, lines=upload, filename=upload.name
            )
    context = {
        "project": project,
        "result": result,
        "counts": selectors.response_counts_by_model(project),
        "responses": selectors.project_responses(project)[:PAGE],
        "page_size": PAGE,
        "fields": services.RESPONSE_FIELDS,
        "can_import": role_allows(project.role, Perm.IMPORT_RESPONSES),
    }
    template = "annotation/responses.html"
    if request.method == "POST" and request.htmx:
        template += "#import"
    return render(request, template, context)
