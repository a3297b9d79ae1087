"""HTML and htmx doors for projects, members, tasks and rubrics."""

from __future__ import annotations

import json

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import UserCreationForm
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from rubrics import selectors, services
from rubrics.forms import CriterionForm, MemberForm, ProjectForm, RubricForm, TaskForm
from rubrics.models import RubricVersion
from rubrics.permissions import Perm, project_for, role_allows


def _pretty(spec: dict) -> str:
    """The grader for people to read; the hash is over its canonical (compact) form."""
    return json.dumps(spec, indent=2, sort_keys=True, ensure_ascii=False)


def _errors(exc: ValidationError) -> list[str]:
    if hasattr(exc, "error_dict"):
        return [f"{field}: {m}" for field, errs in exc.message_dict.items() for m in errs]
    return exc.messages


@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    form = UserCreationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user)
        return redirect("home")
    return render(request, "registration/signup.html", {"form": form})


@login_required
@require_http_methods(["GET", "POST"])
def home(request: HttpRequest) -> HttpResponse:
    form = ProjectForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            project = services.project_create(name=form.cleaned_data["name"], user=request.user)
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            return redirect("project", slug=project.slug)
    memberships = selectors.memberships_for_user(request.user)
    return render(request, "rubrics/home.html", {"memberships": memberships, "form": form})


@login_required
@require_GET
def project_detail(request: HttpRequest, slug: str) -> HttpResponse:
    project = project_for(request.user, slug, Perm.VIEW)
    return render(
        request,
        "rubrics/project.html",
        {
            "project": project,
            "tasks": selectors.project_tasks(project),
            "rubrics": selectors.project_rubrics(project),
            "can_edit": role_allows(project.role, Perm.EDIT_RUBRICS),
            "can_see_results": role_allows(project.role, Perm.VIEW_RESULTS),
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
def members(request: HttpRequest, slug: str) -> HttpResponse:
    perm = Perm.MANAGE_MEMBERS if request.method == "POST" else Perm.VIEW
    project = project_for(request.user, slug, perm)
    form = MemberForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            membership = services.membership_set(project=project, **form.cleaned_data)
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            messages.success(request, f"{membership.user} is now {membership.role}.")
            return redirect("members", slug=slug)
    return render(
        request,
        "rubrics/members.html",
        {
            "project": project,
            "members": selectors.project_members(project),
            "form": form,
            "can_manage": role_allows(project.role, Perm.MANAGE_MEMBERS),
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
def task_new(request: HttpRequest, slug: str) -> HttpResponse:
    project = project_for(request.user, slug, Perm.EDIT_RUBRICS)
    form = TaskForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            task = services.task_create(
                project=project,
                external_id=data["external_id"],
                title=data["title"],
                messages=form.messages(),
                tags=[t.strip() for t in data["tags"].split(",") if t.strip()],
                reference=data["reference"],
                user=request.user,
            )
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            return redirect("task", slug=slug, external_id=task.external_id)
    return render(request, "rubrics/task_new.html", {"project": project, "form": form})


@login_required
@require_GET
def task_detail(request: HttpRequest, slug: str, external_id: str) -> HttpResponse:
    project = project_for(request.user, slug, Perm.VIEW)
    task = selectors.task_for(request.user, project, external_id)
    return render(
        request,
        "rubrics/task.html",
        {
            "project": project,
            "task": task,
            "references": task.references.all(),
            "rubrics": task.rubrics.all(),
            "can_edit": role_allows(project.role, Perm.EDIT_RUBRICS),
        },
    )


@login_required
@require_POST
def rubric_new(request: HttpRequest, slug: str, external_id: str) -> HttpResponse:
    project = project_for(request.user, slug, Perm.EDIT_RUBRICS)
    task = selectors.task_for(request.user, project, external_id, Perm.EDIT_RUBRICS)
    form = RubricForm(request.POST)
    form.is_valid()
    rubric = services.rubric_create(
        project=project, task=task, title=form.cleaned_data.get("title", ""), user=request.user
    )
    return redirect("rubric", pk=rubric.pk)


def _editor_context(request: HttpRequest, rubric, *, version=None, errors=None) -> dict:
    versions = list(selectors.rubric_versions(rubric))
    draft = next((v for v in versions if v.is_draft), None)
    shown = version or draft or (versions[0] if versions else None)
    criteria = list(selectors.version_criteria(shown)) if shown else []
    grader = next(iter(shown.graders.all()), None) if shown else None
    role = rubric.project.role
    return {
        "project": rubric.project,
        "rubric": rubric,
        "versions": versions,
        "version": shown,
        "draft": draft,
        "criteria": criteria,
        "points_total": selectors.points_total(criteria),
        "grader": grader,
        "grader_json": _pretty(grader.spec) if grader else "",
        "editable": bool(shown and shown.is_draft and role_allows(role, Perm.EDIT_RUBRICS)),
        "can_edit": role_allows(role, Perm.EDIT_RUBRICS),
        "can_publish": bool(shown and shown.is_draft and role_allows(role, Perm.PUBLISH)),
        "errors": errors or [],
        "new_form": CriterionForm(),
    }


def _render_editor(request, rubric, *, partial: str | None = None, **kwargs) -> HttpResponse:
    context = _editor_context(request, rubric, **kwargs)
    template = "rubrics/rubric.html"
    if partial and request.htmx:
        template = f"{template}#{partial}"
    return render(request, template, context)


@login_required
@require_GET
def rubric_detail(request: HttpRequest, pk: int) -> HttpResponse:
    rubric = selectors.rubric_for(request.user, pk, Perm.VIEW)
    number = request.GET.get("version")
    version = None
    if number and number.isdigit():
        version = rubric.versions.filter(number=int(number)).first()
    return _render_editor(request, rubric, version=version)


@login_required
@require_POST
def rubric_edit(request: HttpRequest, pk: int) -> HttpResponse:
    """Start (or reopen) the draft of a rubric whose latest version is published."""
    rubric = selectors.rubric_for(request.user, pk, Perm.EDIT_RUBRICS)
    services.draft_for_edit(rubric=rubric, user=request.user)
    return redirect("rubric", pk=pk)


@login_required
@require_POST
def criterion_add(request: HttpRequest, pk: int) -> HttpResponse:
    rubric = selectors.rubric_for(request.user, pk, Perm.EDIT_RUBRICS)
    draft = services.draft_for_edit(rubric=rubric, user=request.user)
    errors = []
    try:
        services.criterion_add(
            version=draft, text=request.POST.get("text", ""), points=request.POST.get("points")
        )
    except ValidationError as exc:
        errors = _errors(exc)
    return _render_editor(request, rubric, partial="criteria", errors=errors)


@login_required
@require_POST
def criterion_update(request: HttpRequest, pk: int) -> HttpResponse:
    criterion = selectors.criterion_for(request.user, pk, Perm.EDIT_RUBRICS)
    rubric = selectors.rubric_for(request.user, criterion.version.rubric_id, Perm.EDIT_RUBRICS)
    errors = []
    try:
        services.criterion_update(
            criterion=criterion,
            text=request.POST.get("text", ""),
            points=request.POST.get("points"),
        )
    except ValidationError as exc:
        errors = _errors(exc)
    return _render_editor(request, rubric, partial="criteria", errors=errors)


@login_required
@require_POST
def criterion_delete(request: HttpRequest, pk: int) -> HttpResponse:
    criterion = selectors.criterion_for(request.user, pk, Perm.EDIT_RUBRICS)
    rubric = selectors.rubric_for(request.user, criterion.version.rubric_id, Perm.EDIT_RUBRICS)
    errors = []
    try:
        services.criterion_delete(criterion=criterion)
    except ValidationError as exc:
        errors = _errors(exc)
    return _render_editor(request, rubric, partial="criteria", errors=errors)


@login_required
@require_POST
def criterion_move(request: HttpRequest, pk: int, direction: str) -> HttpResponse:
    criterion = selectors.criterion_for(request.user, pk, Perm.EDIT_RUBRICS)
    rubric = selectors.rubric_for(request.user, criterion.version.rubric_id, Perm.EDIT_RUBRICS)
    errors = []
    try:
        services.criterion_move(criterion=criterion, offset=-1 if direction == "up" else 1)
    except ValidationError as exc:
        errors = _errors(exc)
    return _render_editor(request, rubric, partial="criteria", errors=errors)


@login_required
@require_POST
def rubric_publish(request: HttpRequest, pk: int) -> HttpResponse:
    rubric = selectors.rubric_for(request.user, pk, Perm.PUBLISH)
    draft = rubric.versions.filter(status=RubricVersion.Status.DRAFT).first()
    if draft is None:
        messages.error(request, "There is no draft to publish.")
        return redirect("rubric", pk=pk)
    try:
        grader = services.version_publish(version=draft, user=request.user)
    except ValidationError as exc:
        for error in _errors(exc):
            messages.error(request, error)
    else:
        messages.success(request, f"Published version {draft.number}: grader {grader.short_hash}.")
    return redirect("rubric", pk=pk)


@login_required
@require_GET
def grader_detail(request: HttpRequest, grader_hash: str) -> HttpResponse:
    grader = selectors.grader_for(request.user, grader_hash, Perm.VIEW)
    return render(
        request,
        "rubrics/grader.html",
        {
            "project": grader.version.rubric.project,
            "grader": grader,
            "grader_json": _pretty(grader.spec),
        },
    )
