"""HTML doors for suites: the project's suites, one suite's page (members, versions, what
changed between two, runs over time), and making, changing and freezing a suite."""

from __future__ import annotations

import json

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from grading import selectors
from grading.forms import SUITE_CHECKBOXES, SuiteEditForm, SuiteForm
from grading.results import leaderboard
from rubrics import suites
from rubrics.models import Suite
from rubrics.params import whole_number
from rubrics.permissions import Perm, project_for, role_allows


def _add_errors(form, exc: ValidationError) -> None:
    """A service's errors on the form: by field when the form has that field, else on top."""
    if not hasattr(exc, "error_dict"):
        form.add_error(None, exc)
        return
    for field, errors in exc.error_dict.items():
        form.add_error(field if field in form.fields else None, errors)


@login_required
@require_http_methods(["GET", "POST"])
def suites_list(request: HttpRequest, slug: str) -> HttpResponse:
    perm = Perm.MANAGE_SUITES if request.method == "POST" else Perm.VIEW_RESULTS
    project = project_for(request.user, slug, perm)
    can_manage = role_allows(project.role, Perm.MANAGE_SUITES)
    form = None
    if can_manage:
        choices = selectors.suite_task_choices(project, SUITE_CHECKBOXES)
        form = SuiteForm(request.POST or None, tasks=choices)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                picked = [int(pk) for pk in data.get("tasks", [])]
                picked += suites.tasks_by_external_id(
                    project, data["external_ids"], field="external_ids"
                )
                suite = suites.suite_create(
                    project=project,
                    name=data["name"],
                    user=request.user,
                    description=data["description"],
                    task_ids=picked,
                    tags=data["tags"],
                )
            except ValidationError as exc:
                _add_errors(form, exc)
            else:
                messages.success(request, f"Suite {suite.name} made: freeze it to grade it.")
                return redirect("suite", pk=suite.pk)
    own, of_rubrics = selectors.project_suite_rows(project)
    return render(
        request,
        "grading/suites.html",
        {
            "project": project,
            "suites": own,
            "rubric_suites": of_rubrics,
            "form": form,
            "can_manage": can_manage,
        },
    )


@login_required
@require_GET
def suite_detail(request: HttpRequest, pk: int) -> HttpResponse:
    suite = selectors.suite_for(request.user, pk, Perm.VIEW_RESULTS)
    return _suite_page(request, suite)


def _suite_page(request: HttpRequest, suite: Suite, edit_form=None, status: int = 200):
    project = suite.project
    can_manage = role_allows(project.role, Perm.MANAGE_SUITES) and suite.rubric_id is None
    page = whole_number(request.GET, "page", 1, minimum=1)
    versions = selectors.suite_versions(suite)
    by_number = {v.number: v for v in versions}
    newest = versions[0] if versions else None
    # What changed: `from` -> `to` (version numbers); by default the newest and the one before.
    to_number = whole_number(request.GET, "to", newest.number if newest else None, minimum=1)
    from_number = whole_number(
        request.GET, "from", (to_number - 1) if to_number else None, minimum=1
    )
    diff, diff_error = None, ""
    if to_number and from_number:
        unknown = [n for n in (from_number, to_number) if n not in by_number]
        if unknown and ("from" in request.GET or "to" in request.GET):
            diff_error = f"This suite has no version {unknown[0]}."
        elif not unknown:
            diff = suites.version_diff(by_number[from_number], by_number[to_number])
    tasks_page = selectors.suite_task_page(suite, page, newest)
    run_rows = selectors.suite_run_rows(suite)
    if can_manage and edit_form is None:
        choices = selectors.suite_task_choices(project, SUITE_CHECKBOXES)
        initial = {
            "name": suite.name,
            "description": suite.description,
            "tags": ", ".join(suite.tags),
            "picked": choices is not None,
        }
        if choices is not None:
            initial["tasks"] = [str(pk) for pk in selectors.suite_picked_ids(suite)]
        edit_form = SuiteEditForm(initial=initial, tasks=choices)
    context = {
        "project": project,
        "suite": suite,
        "can_manage": can_manage,
        "task_count": tasks_page.paginator.count,
        "tasks_page": tasks_page,
        "versions": versions,
        "newest": newest,
        "diff": diff,
        "diff_error": diff_error,
        "diff_from": from_number,
        "diff_to": to_number,
        "run_rows": run_rows,
        "runs_shown": selectors.SUITE_RUNS_SHOWN,
        # In an attribute, not a <script>: the CSP runs no inline script (static/assay.js).
        "chart_json": json.dumps(selectors.suite_chart_data(run_rows)),
        "edit_form": edit_form,
    }
    context["board"], board_error = _suite_board(request, suite)
    if board_error:
        context["board_error"], status = board_error, 400
    return render(request, "grading/suite.html", context, status=status)


def _suite_board(request: HttpRequest, suite) -> tuple[leaderboard.Shown, str]:
    """The suite's leaderboard on `?version=N` (default: the newest); a version that is not
    a number or not the suite's is said, naming the field, over the newest's."""
    raw, number, error = request.GET.get("version", ""), None, ""
    if raw:
        if raw.isascii() and raw.isdigit() and 0 < int(raw) < 2**31:
            number = int(raw)
        else:
            error = f"version: {raw[:40]!r} is not a version number."
    try:
        board = leaderboard.suite_leaderboard(suite, number)
    except ValidationError as exc:
        error = "version: " + " ".join(exc.messages)
        board = leaderboard.suite_leaderboard(suite)
    all_tasks = request.GET.get("tasks") == "all"
    return leaderboard.shown(board, all_tasks=all_tasks), error


@login_required
@require_POST
def suite_edit(request: HttpRequest, pk: int) -> HttpResponse:
    suite = selectors.suite_for(request.user, pk, Perm.MANAGE_SUITES)
    project = suite.project
    choices = selectors.suite_task_choices(project, SUITE_CHECKBOXES)
    form = SuiteEditForm(request.POST, tasks=choices)
    if form.is_valid():
        data = form.cleaned_data
        try:
            if choices is not None and data["picked"]:
                picked = {int(pk) for pk in data.get("tasks", [])}
            else:
                picked = set(selectors.suite_picked_ids(suite))
            picked |= set(
                suites.tasks_by_external_id(project, data["external_ids"], field="external_ids")
            )
            picked -= set(
                suites.tasks_by_external_id(project, data["remove_ids"], field="remove_ids")
            )
            suites.suite_update(
                suite=suite,
                user=request.user,
                name=data["name"],
                description=data["description"],
                task_ids=sorted(picked),
                tags=data["tags"],
            )
        except ValidationError as exc:
            _add_errors(form, exc)
        else:
            messages.success(request, "Suite saved: freeze a new version to grade the change.")
            return redirect("suite", pk=suite.pk)
    return _suite_page(request, suite, edit_form=form)


@login_required
@require_POST
def suite_freeze(request: HttpRequest, pk: int) -> HttpResponse:
    suite = selectors.suite_for(request.user, pk, Perm.MANAGE_SUITES)
    try:
        version, created = suites.suite_freeze(suite=suite, user=request.user)
    except ValidationError as exc:
        messages.error(request, "Not frozen: " + " ".join(exc.messages))
    else:
        if created:
            messages.success(
                request, f"Froze v{version.number}: {version.task_count} tasks, each pinned."
            )
        else:
            messages.info(
                request,
                f"Nothing changed since v{version.number}: every task still has the same "
                "grader, so no new version was made.",
            )
    return redirect("suite", pk=suite.pk)
