"""HTML doors for responses, queues, the annotation page, agreement, adjudication and
calibration. Each checks the role through a selector's helper and calls one service."""

from __future__ import annotations

import json
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.functional import SimpleLazyObject
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect

from annotation import import_jobs, selectors, services
from annotation.content import render as render_content
from annotation.forms import ResponseSearchForm
from annotation.models import Response, Verdict
from rubrics import forms as task_forms
from rubrics import params, uploads
from rubrics import selectors as rubric_selectors
from rubrics.models import Criterion
from rubrics.permissions import Perm, project_for, role_allows
from rubrics.services import Conflict

PAGE = 200


def _errors(exc: ValidationError) -> dict[str, str]:
    if hasattr(exc, "error_dict"):
        return {k: " ".join(v) for k, v in exc.message_dict.items()}
    return {"form": " ".join(exc.messages)}


@login_required
@require_POST
def task_edit(request: HttpRequest, slug: str, external_id: str) -> HttpResponse:
    """The task page's Edit form: title, tags, and (until responses answer the task) its
    messages and context, through the service the API's PATCH uses. A frozen prompt is
    refused as the API refuses it (409 there), as a message on the task page."""
    project = project_for(request.user, slug, Perm.EDIT_RUBRICS)
    task = rubric_selectors.task_for(request.user, project, external_id, Perm.EDIT_RUBRICS)
    post = request.POST
    posted = {
        "title": post.get("title", ""),
        "tags": post.get("tags", ""),
        "context": post.get("context", ""),
        "messages": [],
    }
    try:
        posted["messages"] = task_forms.posted_messages(post)
        services.task_update(
            task=task,
            title=posted["title"],
            tags=[t.strip() for t in posted["tags"].split(",") if t.strip()],
            context=posted["context"],
            messages=posted["messages"],
            attach=request.FILES.get("attach"),
        )
    except Conflict as exc:
        messages.error(request, f"Task not saved: {' '.join(exc.messages)}")
    except ValidationError as exc:
        task.refresh_from_db()
        context = rubric_selectors.task_page_context(project, task, posted=posted, errors=exc)
        return render(request, "rubrics/task.html", context, status=400)
    else:
        messages.success(request, "Saved the task.")
    return redirect("task", slug=slug, external_id=task.external_id)


@login_required
@require_http_methods(["GET", "POST"])
def responses(request: HttpRequest, slug: str) -> HttpResponse:
    # Annotators grade blind: the page lists every response beside its model, so it is not
    # theirs (refused rather than shown without models: they have nothing to do here).
    perm = Perm.IMPORT_RESPONSES if request.method == "POST" else Perm.VIEW_MODELS
    project = project_for(request.user, slug, perm)
    result = None
    if request.method == "POST":
        upload = request.FILES.get("file")
        bundle = request.FILES.get("bundle")  # the files the rows name, if any
        if upload is None:
            result = services.ImportResult(
                errors=[services.LineError(0, "file", "choose a file of responses to upload")],
                error_count=1,
            )
        elif upload.size + (bundle.size if bundle else 0) > import_jobs.BACKGROUND_ABOVE_BYTES:
            try:
                job = import_jobs.import_job_create(
                    project=project, upload=upload, user=request.user, bundle=bundle
                )
            except uploads.UploadRefused as exc:
                result = services.ImportResult(
                    errors=[services.LineError(0, "file", exc.text)],
                    error_count=1,
                    filename=upload.name,
                )
            else:
                if request.htmx:
                    return HttpResponseClientRedirect(reverse("import_job", args=[job.pk]))
                return redirect("import_job", pk=job.pk)
        else:
            result = services.responses_import_file(
                project=project,
                upload=upload,
                filename=upload.name,
                bundle=bundle,
                bundle_name=bundle.name if bundle else "",
            )
    context = {
        "project": project,
        "result": result,
        "counts": selectors.response_counts_by_model(project),
        **_responses_page(project, request.GET),
        "fields": services.RESPONSE_FIELDS,
        "can_import": role_allows(project.role, Perm.IMPORT_RESPONSES),
    }
    template = "annotation/responses.html"
    if request.method == "POST" and request.htmx:
        template += "#import"
    return render(request, template, context)


def _responses_page(project, query) -> dict:
    """One page of the Responses list, searched and filtered, from cursor `after` (keyset on
    the id, as the API's cursor: a page is PAGE rows whatever the offset)."""
    search = ResponseSearchForm(query)
    rows: list[Response] = []
    if search.is_valid():
        found = selectors.responses_matching(project, **search.filters()).order_by("pk")
        if search.cleaned_data["after"] is not None:
            found = found.filter(pk__gt=search.cleaned_data["after"])
        rows = list(found[: PAGE + 1])
    more = len(rows) > PAGE
    rows = rows[:PAGE]
    next_query = None
    if more:
        following = query.copy()
        following["after"] = rows[-1].pk
        next_query = following.urlencode()
    return {
        "search": search,
        "responses": rows,
        "page_size": PAGE,
        "next_query": next_query,
        "searching": search.is_bound and any(query.get(k) for k in search.fields if k != "after"),
    }


@login_required
@require_GET
def response_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """One response: its text (sanitized), metadata and scores in every run. Annotators are
    refused it, as the list (they grade blind)."""
    response = selectors.response_for(request.user, pk)
    return render(
        request,
        "annotation/response.html",
        {
            "project": response.task.project,
            "response": response,
            "scores": list(selectors.response_scores(response)),
            "trajectory": selectors.response_trajectory(response, blind=False),
            "metadata_json": json.dumps(response.metadata, indent=2, ensure_ascii=False),
        },
    )


@login_required
@require_GET
def import_job(request: HttpRequest, pk: int) -> HttpResponse:
    job = import_jobs.import_job_for(request.user, pk, Perm.IMPORT_RESPONSES)
    context = {"project": job.project, "job": job}
    if request.htmx:
        return render(request, "annotation/import_job.html#status", context)
    return render(request, "annotation/import_job.html", context)


# --- Queues ---------------------------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def queues(request: HttpRequest, slug: str) -> HttpResponse:
    perm = Perm.MANAGE_QUEUES if request.method == "POST" else Perm.VIEW
    project = project_for(request.user, slug, perm)
    can_manage = role_allows(project.role, Perm.MANAGE_QUEUES)
    annotating = role_allows(project.role, Perm.ANNOTATE)
    errors: dict[str, str] = {}
    if request.method == "POST":
        overlap = params.whole_number(request.POST, "overlap", -1)
        try:
            chosen_hash = request.POST.get("grader", "")
            graders = selectors.published_graders(project)
            grader = rubric_selectors.by_hash(graders, chosen_hash) if chosen_hash else None
            if grader is None:
                raise ValidationError({"grader": "Choose a published rubric version."})
            models = request.POST.getlist("models")
            chosen = None
            if models:  # only these models' outputs; default: every response the rubric fits
                chosen = selectors.project_responses(project).filter(model__in=models)
            queue = services.queue_create(
                project=project,
                grader=grader,
                name=request.POST.get("name", ""),
                overlap=overlap,
                annotators=request.POST.getlist("annotators"),
                responses=chosen,
                guidelines=request.POST.get("guidelines", ""),
                show_reference=request.POST.get("show_reference") == "1",
                user=request.user,
            )
        except ValidationError as exc:
            errors = _errors(exc)
        else:
            messages.success(request, f"Queue {queue.name} made with {queue.items.count()} items.")
            return redirect("queue", pk=queue.pk)
    # An annotator sees the queues they are on; everyone else sees them all.
    shown = selectors.project_queues(project, user=request.user if annotating else None)
    return render(
        request,
        "annotation/queues.html",
        {
            "project": project,
            "queues": shown,
            "can_manage": can_manage,
            "annotating": annotating,
            "graders": selectors.published_graders(project) if can_manage else [],
            "annotators": selectors.project_annotators(project) if can_manage else [],
            "models": selectors.response_counts_by_model(project) if can_manage else [],
            "errors": errors,
            "posted": request.POST,
        },
    )


@login_required
@require_GET
def my_work(request: HttpRequest, slug: str) -> HttpResponse:
    """An annotator's own turns across the project's queues: continue one in progress, or
    revisit a submitted one (read-only: the annotation page shows a submitted turn's verdicts
    and accepts no more changes)."""
    project = project_for(request.user, slug, Perm.ANNOTATE)
    return render(
        request,
        "annotation/my_work.html",
        {"project": project, "turns": selectors.my_work(project, request.user)},
    )


@login_required
@require_http_methods(["GET", "POST"])
def queue_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """A queue's progress; for those who manage queues, its guidelines and whether
    annotators see the reference answer, editable (POST, through the API's service)."""
    perm = Perm.MANAGE_QUEUES if request.method == "POST" else Perm.VIEW_RESULTS
    queue = selectors.queue_for(request.user, pk, perm)
    errors: dict[str, str] = {}
    if request.method == "POST":
        if "guidelines" not in request.POST:
            errors["guidelines"] = "Send the guidelines (empty for none)."
        else:
            try:
                services.queue_update(
                    queue=queue,
                    guidelines=request.POST["guidelines"],
                    show_reference=request.POST.get("show_reference") == "1",
                    actor=request.user,
                )
            except ValidationError as exc:
                errors = _errors(exc)
            else:
                messages.success(request, f"Queue {queue.name}: guidelines and settings saved.")
                return redirect("queue", pk=queue.pk)
    progress = selectors.queue_progress(queue)
    chart = {
        "annotators": [a.username for a in progress.annotators],
        "submitted": [a.submitted for a in progress.annotators],
        "active": [a.active for a in progress.annotators],
        "remaining": [a.remaining for a in progress.annotators],
    }
    return render(
        request,
        "annotation/queue.html",
        {
            "project": queue.project,
            "queue": queue,
            "progress": progress,
            "chart_json": json.dumps(chart),
            "can_manage": role_allows(queue.project.role, Perm.MANAGE_QUEUES),
            "errors": errors,
            "posted": request.POST if errors else None,
        },
    )


@login_required
@require_POST
def queue_next(request: HttpRequest, pk: int) -> HttpResponse:
    queue = selectors.queue_for(request.user, pk, Perm.ANNOTATE)
    if not queue.annotators.filter(pk=request.user.pk).exists():
        raise PermissionDenied("You are not on this queue.")
    assignment = services.assignment_claim(queue=queue, user=request.user)
    if assignment is None:
        if selectors.queue_held_by_others(queue, request.user):
            messages.info(
                request,
                f"Nothing for you in {queue.name} right now: others hold the rest. "
                "Items they skip or abandon come back; try again later.",
            )
        else:
            messages.success(request, f"Nothing left for you in {queue.name}. Thank you!")
        return redirect("queues", slug=queue.project.slug)
    return redirect("assignment", pk=assignment.pk)


# --- The annotation page ----------------------------------------------------------------------


STEP_RULES = {
    "all": "met when met at every step",
    "share": "earns the share of steps where it is met",
    "any": "met when met at any step",
}


def _annotation_rows(page: selectors.AnnotationPage) -> tuple[list[dict], int]:
    """One row per criterion; a step criterion's row carries a cell per step with the
    annotator's own decision there. Also how many criteria are fully decided."""
    rows = []
    decided = 0
    # Each draft's anchor in words and as JSON (the file's name is read from the episode).
    selectors.with_anchors(page.response, [*page.drafts.values(), *page.step_drafts.values()])
    for c in page.criteria:
        row = {"criterion": c, "draft": page.drafts.get(c.pk), "scale": page.scales.get(c.pk)}
        if c.scope == Criterion.Scope.STEP:
            # [message index, outcome, rationale, evidence, anchor, anchor in words] per
            # step: the page's script draws the grid from it (a 200-step episode would be
            # thousands of nodes).
            cells = []
            for step in page.steps[c.pk]:
                v = page.step_drafts.get((c.pk, step))
                cells.append(
                    [step, v.outcome, v.explanation, v.evidence, v.evidence_anchor, v.evidence_at]
                    if v
                    else [step]
                )
            row["cells"] = cells
            row["cells_id"] = f"cells-{c.pk}"
            row["rule"] = STEP_RULES.get(c.step_rule, c.step_rule)
            row["done"] = all(len(cell) > 1 for cell in cells)
        else:
            row["done"] = row["draft"] is not None
        decided += row["done"]
        rows.append(row)
    return rows, decided


@login_required
@require_GET
def assignment_page(request: HttpRequest, pk: int) -> HttpResponse:
    assignment = selectors.assignment_for(request.user, pk)
    page = selectors.annotation_page(assignment)
    rows, decided = _annotation_rows(page)
    # Blind: the trajectory view shows messages and the final state, never the metadata. A
    # response never changes, so its view is rendered once and cached; built only then.
    trajectory = None
    if page.response.content is not None:
        trajectory = SimpleLazyObject(lambda: render_content.for_page(page.episode))
    return render(
        request,
        "annotation/annotate.html",
        {
            "project": assignment.queue.project,
            "assignment": assignment,
            "queue": assignment.queue,
            "task": page.response.task,
            "response": page.response,
            "trajectory": trajectory,
            "rows": rows,
            "reference": page.reference,
            "decided": decided,
            "outcomes": [
                (Verdict.Outcome.MET, "Met", "1"),
                (Verdict.Outcome.UNMET, "Not met", "2"),
                (Verdict.Outcome.NOT_APPLICABLE, "N/A", "3"),
            ],
        },
    )


@login_required
@require_POST
def assignment_draft(request: HttpRequest, pk: int) -> HttpResponse:
    """Save one criterion's draft (or one step's, for a step criterion); answers JSON to the
    page's scripts (htmx, or fetch asking for JSON), else redirects."""
    assignment = selectors.turn_for(request.user, pk)
    criterion_id = params.whole_number(request.POST, "criterion", 0)
    outcome, value = request.POST.get("outcome", ""), request.POST.get("value") or None
    if request.POST.get("na"):  # a scale criterion marked not applicable
        outcome, value = "na", None
    error = ""
    verdict = None
    try:
        verdict = services.verdict_save_draft(
            assignment_id=assignment.pk,
            criterion_id=criterion_id,
            outcome=outcome,
            explanation=request.POST.get("explanation", ""),
            evidence=request.POST.get("evidence", ""),
            value=value,
            step=params.whole_number(request.POST, "step"),
            evidence_step=params.whole_number(request.POST, "evidence_step"),
            evidence_anchor=request.POST.get("evidence_anchor") or None,
        )
    except ValidationError as exc:
        error = "; ".join(f"{k}: {v}" for k, v in _errors(exc).items())
    wants_json = request.htmx or request.headers.get("Accept") == "application/json"
    if not wants_json:
        if error:
            messages.error(request, error)
        return redirect("assignment", pk=pk)
    status = 400 if error else 200
    body = json.dumps({"saved": verdict is not None, "error": error})
    return HttpResponse(body, status=status, content_type="application/json")


@login_required
@require_POST
def assignment_submit(request: HttpRequest, pk: int) -> HttpResponse:
    assignment = selectors.turn_for(request.user, pk)
    try:
        services.assignment_submit(assignment_id=assignment.pk)
    except ValidationError as exc:
        for message in _errors(exc).values():
            messages.error(request, message)
        return redirect("assignment", pk=pk)
    messages.success(request, "Submitted.")
    if request.POST.get("next") == "1":
        return queue_next(request, assignment.queue_id)
    return redirect("queues", slug=assignment.queue.project.slug)


@login_required
@require_POST
def assignment_skip(request: HttpRequest, pk: int) -> HttpResponse:
    assignment = selectors.turn_for(request.user, pk)
    try:
        services.assignment_skip(assignment_id=assignment.pk, reason=request.POST.get("reason", ""))
    except ValidationError as exc:
        for message in _errors(exc).values():
            messages.error(request, message)
        return redirect("assignment", pk=pk)
    messages.success(request, "Skipped; the item goes to someone else.")
    return redirect("queues", slug=assignment.queue.project.slug)


# --- Agreement, adjudication, calibration -----------------------------------------------------


def _fmt(x) -> float | None:
    return None if x is None else round(x, 4)


def _heat_cells(row: list[float | None]) -> str:
    """One row of the kappa heatmap's cells, as the template would write them (the raw value,
    4 places, in data-kappa; 2 places shown). Fifty raters make 2,601 cells, which would take
    the template engine longer than the figures take to compute."""
    return mark_safe(  # noqa: S308 - numbers only; the raters' names stay in the template
        "".join(
            '<td data-kappa="">—</td>' if k is None else f'<td data-kappa="{k}">{k:.2f}</td>'
            for k in map(_fmt, row)
        )
    )


def _share_cells(row: list[int], gold: str) -> str:
    """One gold row of a confusion matrix as cells of a 3-column heatmap grid: the count, and
    its share of the row in data-share for the page's script to shade (the CSP allows no
    inline styles)."""
    total = sum(row) or 1
    return mark_safe(  # noqa: S308 - integers and fixed labels only
        "".join(
            f'<span data-share="{n / total:.3f}" title="gold {gold}, judge {judged}: {n}">'
            f"{n}</span>"
            for n, judged in zip(row, ("met", "unmet", "n/a"), strict=True)
        )
    )


@login_required
@require_GET
def agreement(request: HttpRequest, pk: int) -> HttpResponse:
    version = selectors.version_for(request.user, pk, Perm.VIEW_RESULTS)
    report = selectors.agreement_report(version)
    names = {pk: info.name for pk, info in report.raters.items()}
    figures = report.figures
    criteria = [(c, figures.per_criterion.get(c.pk)) for c in report.criteria]
    chart = {
        "alpha": {
            "labels": [f"#{c.position + 1}" for c, _ in criteria],
            "values": [_fmt(f.alpha) if f else None for _, f in criteria],
            "threshold": selectors.project_threshold(version.rubric.project),
        },
    }
    heatmap = [
        (names[r], _heat_cells(row))
        for r, row in zip(figures.raters, figures.kappa_matrix(), strict=True)
    ]
    return render(
        request,
        "annotation/agreement.html",
        {
            "project": version.rubric.project,
            "version": version,
            "report": report,
            "criteria": criteria,
            # With many annotators and a small overlap most pairs share no item: no figures.
            "pairs": [(names[p.a], names[p.b], p) for p in figures.pairs if p.items],
            "per_rater": [(report.raters[r.rater_id], r) for r in figures.per_rater],
            "chart": chart,
            "heatmap": heatmap,
            "step_criteria": [
                (c, report.at_steps.per_criterion.get(c.pk))
                for c in report.criteria
                if report.at_steps and c.pk in report.at_steps.per_criterion
            ],
        },
    )


AMONG = {
    "all": "Anyone",
    "people": "People among themselves",
    "judge": "People vs a judge",
    "flagged": "Flagged: the response addresses its grader",
}
STATUS = {"open": "Not yet decided", "decided": "Decided", "all": "All"}


def _disagreement_filter(query) -> tuple[str, int | None, str]:
    """The list's filter (who disagrees, which criterion) from a query or form, and the same
    as a query string, which the adjudication page carries to find the next one."""
    among = query.get("among", "all")
    among = among if among in AMONG else "all"
    criterion = params.whole_number(query, "criterion")
    kept = {"among": among} if criterion is None else {"among": among, "criterion": criterion}
    return among, criterion, urlencode(kept)


@login_required
@require_GET
def disagreements(request: HttpRequest, pk: int) -> HttpResponse:
    version = selectors.version_for(request.user, pk, Perm.VIEW_RESULTS)
    among, criterion, kept = _disagreement_filter(request.GET)
    status = request.GET.get("status", "open")
    status = status if status in STATUS else "open"
    found = selectors.disagreements(version, among=among, status=status, criterion=criterion)
    return render(
        request,
        "annotation/disagreements.html",
        {
            "project": version.rubric.project,
            "version": version,
            "found": found,
            "criteria": Criterion.objects.filter(version=version),
            "among": among,
            "status": status,
            "criterion": criterion,
            "kept": kept,
            "AMONG": AMONG,
            "STATUS": STATUS,
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
def adjudicate(request: HttpRequest, pk: int, response_pk: int, criterion_pk: int) -> HttpResponse:
    perm = Perm.ADJUDICATE if request.method == "POST" else Perm.VIEW_RESULTS
    version = selectors.version_for(request.user, pk, perm)
    criterion = get_object_or_404(Criterion, pk=criterion_pk, version=version)
    response = get_object_or_404(
        Response.objects.select_related("task"),
        pk=response_pk,
        task__project=version.rubric.project,
    )
    # The list's filter comes along, so "record and next" walks the same list.
    among, only_criterion, kept = _disagreement_filter(
        request.POST if request.method == "POST" else request.GET
    )
    # A step criterion is adjudicated step by step: the step is part of the item.
    step = params.whole_number(request.GET, "step")
    if step is not None and (
        criterion.scope != Criterion.Scope.STEP
        or step not in response.episode.steps(tool=criterion.step_tool)
    ):
        raise Http404("No such step of this criterion.")
    here = f"{kept}&step={step}" if step is not None else kept
    errors: dict[str, str] = {}
    if request.method == "POST":
        outcome, value = request.POST.get("outcome", ""), request.POST.get("value") or None
        if request.POST.get("na"):  # a scale criterion marked not applicable
            outcome, value = Verdict.Outcome.NOT_APPLICABLE, None
        try:
            services.gold_decide(
                response=response,
                criterion=criterion,
                outcome=outcome,
                value=value,
                note=request.POST.get("note", ""),
                user=request.user,
                step=step,
                evidence_anchor=request.POST.get("evidence_anchor") or None,
            )
        except ValidationError as exc:
            errors = _errors(exc)
        else:
            if request.POST.get("next") != "1":
                messages.success(request, "Gold verdict recorded.")
                url = reverse("adjudicate", args=[pk, response_pk, criterion_pk])
                return redirect(f"{url}?{here}")
            following = selectors.next_disagreement(
                version,
                response=response,
                criterion=criterion,
                among=among,
                only_criterion=only_criterion,
                step=step,
            )
            if following is None:
                messages.success(
                    request,
                    "Gold verdict recorded. No open disagreement is left in this list.",
                )
                return redirect(f"{reverse('disagreements', args=[pk])}?{kept}")
            messages.success(request, "Gold verdict recorded; here is the next disagreement.")
            url = reverse("adjudicate", args=[pk, following.response_id, following.criterion_id])
            if following.step is not None:
                return redirect(f"{url}?{kept}&step={following.step}")
            return redirect(f"{url}?{kept}")
    history = selectors.gold_history(response, criterion, step)
    # The gold form's anchor: the current gold's; when the form was refused, what was sent
    # (unless the anchor itself was refused: then none).
    gold_anchor = (history[0].anchor_json, history[0].evidence_at) if history else ("", "")
    if errors:
        gold_anchor = ("", "")
        if "evidence_anchor" not in errors:
            gold_anchor = selectors.anchor_in_words(
                response, request.POST.get("evidence_anchor", "")
            )
    step_message = None
    if step is not None:
        step_message = render_content.for_page(response.episode)["messages"][step]
    return render(
        request,
        "annotation/adjudicate.html",
        {
            "project": version.rubric.project,
            "version": version,
            "criterion": criterion,
            "response": response,
            "verdicts": selectors.item_verdicts(response, criterion, step),
            "trajectory": selectors.item_trajectory(response, criterion),
            "step": step,
            "step_message": step_message,
            "step_trajectory": (
                {
                    "messages": [step_message],
                    "steps": 1,
                    "tool_calls": len(step_message["calls"]),
                    "metadata_items": [],
                }
                if step_message
                else None
            ),
            "here": here,
            "scale": selectors.criterion_scale(criterion),
            "history": history,
            "current": history[0] if history else None,
            "gold_anchor_json": gold_anchor[0],
            "gold_anchor_label": gold_anchor[1],
            "flag": selectors.response_flag(response),
            "errors": errors,
            "can_adjudicate": role_allows(version.rubric.project.role, Perm.ADJUDICATE),
            "can_see_runs": role_allows(version.rubric.project.role, Perm.VIEW_RESULTS),
            "among": among,
            "only_criterion": only_criterion,
            "kept": kept,
            "outcomes": [
                (Verdict.Outcome.MET, "Met", "1"),
                (Verdict.Outcome.UNMET, "Not met", "2"),
                (Verdict.Outcome.NOT_APPLICABLE, "Not applicable", "3"),
            ],
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
def calibration(request: HttpRequest, pk: int) -> HttpResponse:
    perm = Perm.MANAGE_MEMBERS if request.method == "POST" else Perm.VIEW_RESULTS
    version = selectors.version_for(request.user, pk, perm)
    project = version.rubric.project
    if request.method == "POST":
        try:
            services.calibration_threshold_set(
                project=project,
                threshold=request.POST.get("threshold"),
                min_items=request.POST.get("min_items"),
                actor=request.user,
            )
        except ValidationError as exc:
            for field, message in _errors(exc).items():
                messages.error(request, f"{field}: {message}")
        return redirect("calibration", pk=pk)
    judge = params.whole_number(request.GET, "judge")
    report = selectors.calibration_report(version, judge)
    rows = []
    for c in report.criteria:
        f = report.figures.per_criterion.get(c.pk) if report.figures else None
        confusion = (
            [_share_cells(row, ("met", "unmet", "n/a")[i]) for i, row in enumerate(f.confusion)]
            if f
            else []
        )
        rows.append(
            (
                c,
                f,
                report.alpha.get(c.pk),
                c.pk in report.flagged,
                report.alpha_items.get(c.pk, 0),
                report.too_few.get(c.pk, ""),
                confusion,
            )
        )
    return render(
        request,
        "annotation/calibration.html",
        {
            "project": project,
            "version": version,
            "report": report,
            "rows": rows,
            "can_set_threshold": role_allows(project.role, Perm.MANAGE_MEMBERS),
            "can_adjudicate": role_allows(project.role, Perm.ADJUDICATE),
        },
    )


@login_required
@require_GET
def calibration_flags(request: HttpRequest, pk: int) -> HttpResponse:
    """The rubric editor's flags, as an htmx fragment: criteria of the latest published
    version whose judge or whose people fall below the project's threshold."""
    version = selectors.version_for(request.user, pk, Perm.VIEW_RESULTS)
    shown = selectors.flag_version_for(version)
    report = selectors.calibration_report(shown, resamples=200) if shown else None
    flagged = []
    if report is not None:
        for c in report.criteria:
            if c.pk in report.flagged:
                f = report.figures.per_criterion.get(c.pk) if report.figures else None
                flagged.append((c, f, report.alpha.get(c.pk)))
    # The rubric editor asks for the flags region (htmx); opened directly, the whole page.
    return render(
        request,
        "annotation/flags.html#flags" if request.htmx else "annotation/flags.html",
        {
            "project": version.rubric.project,
            "version": version,
            "shown": shown,
            "report": report,
            "flagged": flagged,
            "can_adjudicate": role_allows(version.rubric.project.role, Perm.ADJUDICATE),
        },
    )
