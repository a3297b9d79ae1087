"""HTML and htmx doors for judges, runs and scores."""

from __future__ import annotations

import json

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import reswap, retarget

from annotation import selectors as annotation_selectors
from grading import selectors, services
from grading.forms import JudgeForm, RunForm
from grading.results import comparison, leaderboard
from rubrics import suites
from rubrics.permissions import Perm, project_for, role_allows
from rubrics.selectors import grader_picked, grader_search, published_graders


@login_required
@require_http_methods(["GET", "POST"])
def judges(request: HttpRequest, slug: str) -> HttpResponse:
    perm = Perm.MANAGE_JUDGES if request.method == "POST" else Perm.VIEW_RESULTS
    project = project_for(request.user, slug, perm)
    form = JudgeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            judge = services.judge_create(project=project, actor=request.user, **form.cleaned_data)
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            messages.success(request, f"Judge {judge.name} saved.")
            return redirect("judges", slug=slug)
    return render(
        request,
        "grading/judges.html",
        {
            "project": project,
            "judges": selectors.project_judges(project),
            "form": form,
            "can_manage": role_allows(project.role, Perm.MANAGE_JUDGES),
            "can_test": role_allows(project.role, Perm.RUN_GRADING),
        },
    )


@login_required
@require_POST
def judge_test(request: HttpRequest, pk: int) -> HttpResponse:
    """htmx: one tiny request to the judge, and its outcome in place (admins, engineers)."""
    judge = selectors.judge_for(request.user, pk, Perm.RUN_GRADING)
    outcome = services.judge_test_connection(judge=judge)
    return render(request, "grading/_judge_test.html", {"judge": judge, "outcome": outcome})


@login_required
@require_http_methods(["GET", "POST"])
def runs(request: HttpRequest, slug: str) -> HttpResponse:
    perm = Perm.RUN_GRADING if request.method == "POST" else Perm.VIEW_RESULTS
    project = project_for(request.user, slug, perm)
    can_run = role_allows(project.role, Perm.RUN_GRADING)
    # The form offers the suites (few) in a select and the published graders (5,000 in a
    # HealthBench import) through a search: the first few are shown, the rest are asked for.
    # A search sent with the form (no JavaScript) lists its own matches when drawn again.
    searched = request.POST.get("grader_q", "") if request.method == "POST" else ""
    matches, more = grader_search(project, searched) if can_run else ([], False)
    suite_versions = suites.newest_versions(project) if can_run else []
    judges = list(selectors.project_judges(project)) if can_run else []
    form = RunForm(
        request.POST or None,
        suite_versions=suite_versions,
        judges=judges,
        search_url=reverse("run_grader_search", args=[slug]),
        matches=matches,
        more=more,
    )
    estimate = None
    if request.method == "POST" and form.is_valid():
        try:
            grader = suite_version = None
            picked, typed = form.cleaned_data["grader"]
            if picked or typed:
                grader = grader_picked(project, picked=picked, typed=typed)
            else:
                suite_version = next(
                    v for v in suite_versions if str(v.pk) == form.cleaned_data["suite_version"]
                )
            judge = next(j for j in judges if str(j.pk) == form.cleaned_data["judge"])
            panel = [j for j in judges if str(j.pk) in form.cleaned_data["panel"]]
            options = {
                "mode": form.cleaned_data["mode"],
                "samples": form.cleaned_data["samples"],
                "grader": grader,
                "suite_version": suite_version,
                "models": form.cleaned_data["models"],
                "sample_indices": form.cleaned_data["sample_indices"],
                "panel": panel,
            }
            if "estimate" in request.POST:
                estimate = services.run_create_estimate(project=project, judge=judge, **options)
            else:
                run = services.run_create(
                    project=project,
                    judge=judge,
                    user=request.user,
                    use_cache=form.cleaned_data["use_cache"],
                    **options,
                )
                return redirect("run", pk=run.pk)
        except ValidationError as exc:
            form.add_error(None, exc)
    sort = selectors.clean_run_sort(request.GET.get("sort"))
    page, rows = selectors.runs_page(project, sort=sort, page=request.GET.get("page"))
    return render(
        request,
        "grading/runs.html",
        {
            "project": project,
            "runs": rows,
            "page": page,
            "sort": sort,
            "columns": _run_columns(sort),
            "form": form,
            "can_run": can_run,
            "has_graders": bool(matches or suite_versions)
            or (can_run and bool(searched) and published_graders(project).exists()),
            "has_judges": bool(judges),
            "estimate": estimate,
        },
    )


@login_required
@require_GET
def run_grader_search(request: HttpRequest, slug: str) -> HttpResponse:
    """htmx: the published graders matching `q`, a few at most, to pick one for a run (those
    who may start a run)."""
    project = project_for(request.user, slug, Perm.RUN_GRADING)
    # The picker's box sends itself under its own name (grading.forms.GraderPicker).
    matches, more = grader_search(project, request.GET.get("grader_q", ""))
    context = {"name": "grader", "matches": matches, "more": more}
    return render(request, "grading/_grader_matches.html", context)


# The run list's columns: (sort key or None, heading).
RUN_COLUMNS = [
    ("id", "Run"),
    ("suite", "Suite"),
    ("version", "Version"),
    (None, "Models"),
    ("status", "Status"),
    (None, "Progress"),
    (None, "Score per model"),
    (None, "Cost"),
    ("judge", "Judge"),
    ("started_by", "Started by"),
    ("started", "Started at"),
]


def _run_columns(sort: str) -> list[dict]:
    """Headings whose link sorts by their column: ascending first, then the other way."""
    columns = []
    for key, label in RUN_COLUMNS:
        column = {"key": key, "label": label, "next": None, "state": "none"}
        if key is not None:
            if sort == key:
                column.update(next=f"-{key}", state="ascending")
            elif sort == f"-{key}":
                column.update(next=key, state="descending")
            else:
                column["next"] = key
        columns.append(column)
    return columns


@login_required
@require_GET
def run_detail(request: HttpRequest, pk: int) -> HttpResponse:
    run = selectors.run_for(request.user, pk, Perm.VIEW_RESULTS)
    progress = selectors.run_progress(run)
    context = {
        "project": run.project,
        "run": run,
        "progress": progress,
        "can_run": role_allows(run.project.role, Perm.RUN_GRADING),
        # Said while the run works: its queued tasks wait for the broker (README, faults),
        # or for a worker nobody started; what its last responses wait for.
        "broker_down": not run.is_finished and selectors.broker_unreachable(),
        "workers_missing": selectors.workers_missing(run),
        "waiting": selectors.run_waiting(run, progress),
    }
    # While the run works, htmx polls only the progress region. It asks for the results
    # region too once the run has finished, so the page swaps in the charts and scores.
    if request.htmx and request.GET.get("part") == "progress" and not run.is_finished:
        return render(request, "grading/run.html#progress", context)
    # The leaderboard first: building a completed run's keeps its overall cells as the run's
    # model scores, which the summaries read.
    board = leaderboard.run_leaderboard(run)
    summaries = selectors.model_summaries(run)
    context["summaries"] = summaries
    chart_data = selectors.chart_data(summaries)
    context["scores"] = selectors.run_scores_page(
        run, request.GET.get("page"), count=progress.responses_total
    )
    context["errors_by_reason"] = selectors.run_error_reasons(run) if progress.errors else []
    context["costs"] = selectors.run_costs(run, progress)
    context["flagged"] = selectors.run_flagged_responses(run)
    context["criteria"] = selectors.criterion_rates(run)
    chart_data["criteria"] = [{"label": c.label, "rate": c.met_rate} for c in context["criteria"]]
    # In an attribute, not a <script>: htmx drops the <script> elements of what it swaps in
    # (scripts are off under the CSP), so the live update would bring charts without data.
    context["chart_json"] = json.dumps(chart_data)
    context["board"] = leaderboard.shown(board, all_tasks=request.GET.get("tasks") == "all")
    context["tie_rule"] = services.TIE_RULE
    context["judges"] = services.run_judges(run)
    context["other_runs"] = selectors.comparable_runs(run)
    if request.htmx and request.GET.get("part") == "progress":
        response = render(request, "grading/run.html#live", context)
        return reswap(retarget(response, "#live"), "outerHTML")
    return render(request, "grading/run.html", context)


@login_required
@require_POST
def run_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    run = selectors.run_for(request.user, pk, Perm.RUN_GRADING)
    if services.run_cancel(run=run):
        messages.info(request, "Run cancelled: no new judge calls will start.")
    return redirect("run", pk=pk)


@login_required
@require_POST
def run_retry_failed(request: HttpRequest, pk: int) -> HttpResponse:
    run = selectors.run_for(request.user, pk, Perm.RUN_GRADING)
    try:
        n = services.run_retry_failed(run=run)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.info(request, f"Re-queued {n} failed item{'s' if n != 1 else ''}.")
    return redirect("run", pk=pk)


@login_required
@require_POST
def run_resume(request: HttpRequest, pk: int) -> HttpResponse:
    run = selectors.run_for(request.user, pk, Perm.RUN_GRADING)
    if services.run_resume(run=run):
        messages.info(request, "Run resumed: only pending work is queued.")
    return redirect("run", pk=pk)


def _linked(request: HttpRequest, param: str, page_of):
    """The page `param` asks for, with links to its neighbours that keep the other lists'
    pages where they are."""
    page = page_of(request.GET.get(param))

    def to(number: int) -> str:
        query = request.GET.copy()
        query[param] = str(number)
        return f"?{query.urlencode()}"

    last = page.paginator.num_pages
    page.links = {
        "first": to(1),
        "previous": to(page.previous_page_number()) if page.has_previous() else "",
        "next": to(page.next_page_number()) if page.has_next() else "",
        "last": to(last),
    }
    return page


@login_required
@require_GET
def run_compare(request: HttpRequest, pk: int, other_pk: int) -> HttpResponse:
    run = selectors.run_for(request.user, pk, Perm.VIEW_RESULTS)
    other = selectors.run_for(request.user, other_pk, Perm.VIEW_RESULTS)
    context = {"project": run.project, "a": run, "b": other}
    try:
        result = comparison.compare(run, other)
    except ValidationError as exc:
        context["refused"] = " ".join(exc.messages)
        return render(request, "grading/compare.html", context, status=400)
    context.update(
        {
            "c": result,
            "tasks": _linked(request, "tasks_page", result.tasks_page),
            "criteria": _linked(request, "criteria_page", result.criteria_page),
            "flips": _linked(request, "flips_page", result.flips_page),
            # In an attribute, not a <script>: scripts are off under the CSP (run.html).
            "chart_json": json.dumps(result.chart()),
        }
    )
    return render(request, "grading/compare.html", context)


@login_required
@require_GET
def score_detail(request: HttpRequest, pk: int, score_pk: int) -> HttpResponse:
    score = selectors.score_for(request.user, pk, score_pk, Perm.VIEW_RESULTS)
    verdicts, step_verdicts = selectors.score_page_verdicts(score)
    for v in verdicts:
        v.source = selectors.verdict_source(v)
    gates = {v.criterion_id: v.criterion for v in verdicts if v.criterion_id in score.gated_by}
    return render(
        request,
        "grading/score.html",
        {
            "project": score.run.project,
            "run": score.run,
            "score": score,
            "verdicts": verdicts,
            "gates": [gates[pk] for pk in score.gated_by if pk in gates],
            "trajectory": annotation_selectors.response_trajectory(
                score.response, blind=False, step_verdicts=step_verdicts
            ),
        },
    )


@login_required
@require_GET
def call_detail(request: HttpRequest, pk: int, call_pk: int) -> HttpResponse:
    """One judge call of a run: the request as sent, the raw reply, latency, tokens, cost."""
    found = selectors.call_for(request.user, pk, call_pk, Perm.VIEW_RESULTS)
    return render(
        request,
        "grading/call.html",
        {
            "project": found.call.run.project,
            "run": found.call.run,
            "call": found.call,
            "cost": found.cost,
            "request_json": found.request_json,
            "score": selectors.score_of(found.call.run, found.call.response_id),
        },
    )


# --- Dataset snapshots ----------------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def datasets(request: HttpRequest, slug: str) -> HttpResponse:
    from grading.datasets import snapshots
    from grading.forms import SnapshotForm

    perm = Perm.RUN_GRADING if request.method == "POST" else Perm.VIEW_RESULTS
    project = project_for(request.user, slug, perm)
    runs = selectors.project_runs(project)
    form = SnapshotForm(
        request.POST or None,
        formats=snapshots.FORMATS.items(),
        runs=runs,
        versions=snapshots.project_suite_versions(project),
    )
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            snapshot = snapshots.snapshot_create(
                project=project,
                name=data["name"],
                format=data["format"],
                license=data["license"],
                run_id=data["run"] or None,
                min_margin=data["min_margin"] if data["min_margin"] is not None else 0.1,
                suite_version_id=data["suite_version"] or None,
                user=request.user,
            )
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            return redirect("snapshot", pk=snapshot.pk)
    return render(
        request,
        "grading/datasets.html",
        {
            "project": project,
            "snapshots": snapshots.project_snapshots(project),
            "form": form,
            "can_export": role_allows(project.role, Perm.RUN_GRADING),
        },
    )


@login_required
@require_GET
def snapshot_detail(request: HttpRequest, pk: int) -> HttpResponse:
    from grading.datasets import snapshots

    snapshot = snapshots.snapshot_for(request.user, pk, Perm.VIEW_RESULTS)
    context = {
        "project": snapshot.project,
        "snapshot": snapshot,
        "can_export": role_allows(snapshot.project.role, Perm.RUN_GRADING),
    }
    if request.htmx:
        return render(request, "grading/snapshot.html#status", context)
    return render(request, "grading/snapshot.html", context)


@login_required
@require_POST
def snapshot_retry(request: HttpRequest, pk: int) -> HttpResponse:
    from grading.datasets import snapshots
    from rubrics.services import Conflict

    snapshot = snapshots.snapshot_for(request.user, pk, Perm.RUN_GRADING)
    try:
        snapshots.snapshot_retry(snapshot=snapshot, user=request.user)
    except Conflict as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, f"Snapshot {snapshot.name} is queued again.")
    return redirect("snapshot", pk=snapshot.pk)


@login_required
@require_POST
def snapshot_delete(request: HttpRequest, pk: int) -> HttpResponse:
    from grading.datasets import snapshots
    from rubrics.services import Conflict

    snapshot = snapshots.snapshot_for(request.user, pk, Perm.RUN_GRADING)
    try:
        snapshots.snapshot_delete(snapshot=snapshot)
    except Conflict as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect("snapshot", pk=snapshot.pk)
    messages.success(request, f"Snapshot {snapshot.name} deleted; its name is free.")
    return redirect("datasets", slug=snapshot.project.slug)


@login_required
@require_GET
def snapshot_download(request: HttpRequest, pk: int) -> HttpResponse:
    from grading.datasets import snapshots

    snapshot = snapshots.snapshot_for(request.user, pk, Perm.VIEW_RESULTS)
    return snapshots.snapshot_download(snapshot, actor=request.user)
