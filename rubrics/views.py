"""HTML and htmx doors for projects, members, tasks and rubrics."""

from __future__ import annotations

import json
import uuid

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import UserCreationForm
from django.core.exceptions import ValidationError
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from rubrics import (
    audit,
    checks,
    formats,
    lint,
    params,
    scoring,
    selectors,
    services,
    suites,
    task_import,
    uploads,
    wording,
)
from rubrics.files import checks as file_checks
from rubrics.forms import (
    AuditFilterForm,
    MemberForm,
    ProjectForm,
    RubricForm,
    TaskForm,
    editor_rows,
    posted_messages,
)
from rubrics.models import Criterion, RubricVersion
from rubrics.permissions import Perm, project_for, role_allows


def _pretty(spec: dict) -> str:
    """The grader for people to read; the hash is over its canonical (compact) form."""
    return json.dumps(spec, indent=2, sort_keys=True, ensure_ascii=False)


def _max_file_mb() -> str:
    return selectors.reference_file_max_mb()


def _errors(exc: ValidationError) -> list[str]:
    return selectors.error_messages(exc)


@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    # Open sign-up is the operator's choice (ASSAY_SIGNUP); otherwise there is no such page.
    if not settings.SIGNUP_OPEN:
        raise Http404("Sign-up is closed on this server: ask its operator for an account.")
    form = UserCreationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        # Two backends are configured (django-axes and the model backend): name the one
        # that holds the account, or login() cannot choose and fails.
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
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
    return render(
        request,
        "rubrics/home.html",
        {
            "memberships": memberships,
            "invitations": selectors.user_invitations(request.user),
            "form": form,
        },
    )


@login_required
@require_POST
def invitation_answer(request: HttpRequest, pk: int, answer: str) -> HttpResponse:
    """Accept or decline one's own invitation; anyone else's is a 404."""
    invitation = get_object_or_404(selectors.user_invitations(request.user), pk=pk)
    if answer == "accept":
        membership = services.invitation_accept(user=request.user, invitation_id=invitation.pk)
        messages.success(request, f"You joined {membership.project.name} as {membership.role}.")
        return redirect("project", slug=membership.project.slug)
    services.invitation_decline(user=request.user, invitation_id=invitation.pk)
    messages.info(request, f"Invitation to {invitation.project.name} declined.")
    return redirect("home")


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
            outcome = services.member_invite(
                project=project, actor=request.user, **form.cleaned_data
            )
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            if outcome == "member":
                text = f"{form.cleaned_data['username']} is now {form.cleaned_data['role']}."
            else:
                text = services.INVITED.format(**form.cleaned_data)
            messages.success(request, text)
            return redirect("members", slug=slug)
    can_manage = role_allows(project.role, Perm.MANAGE_MEMBERS)
    return render(
        request,
        "rubrics/members.html",
        {
            "project": project,
            "members": selectors.project_members(project),
            "invitations": selectors.project_invitations(project) if can_manage else [],
            "form": form,
            "can_manage": can_manage,
        },
    )


@login_required
@require_POST
def invitation_cancel(request: HttpRequest, slug: str, username: str) -> HttpResponse:
    project = project_for(request.user, slug, Perm.MANAGE_MEMBERS)
    try:
        services.invitation_cancel(project=project, username=username, actor=request.user)
    except ValidationError as exc:
        for error in _errors(exc):
            messages.error(request, error)
    else:
        messages.success(request, f"Invitation for {username} withdrawn.")
    return redirect("members", slug=slug)


@login_required
@require_POST
def member_remove(request: HttpRequest, slug: str, username: str) -> HttpResponse:
    project = project_for(request.user, slug, Perm.MANAGE_MEMBERS)
    try:
        services.membership_remove(project=project, username=username, actor=request.user)
    except ValidationError as exc:
        for error in _errors(exc):
            messages.error(request, error)
    else:
        messages.success(request, f"{username} is no longer a member.")
    return redirect("members", slug=slug)


AUDIT_PAGE = 50


@login_required
@require_GET
def audit_log(request: HttpRequest, slug: str) -> HttpResponse:
    """The project's audit log, newest first; `?before=<id>` pages back without a COUNT."""
    project = project_for(request.user, slug, Perm.VIEW_AUDIT)
    form = AuditFilterForm(request.GET or None)
    filters = form.cleaned_data if form.is_valid() else {}
    events = audit.project_events(
        project, action=filters.get("action", ""), actor=filters.get("actor", "")
    )
    if filters.get("before"):
        events = events.filter(pk__lt=filters["before"])
    page = list(events[: AUDIT_PAGE + 1])
    older = page[AUDIT_PAGE - 1].pk if len(page) > AUDIT_PAGE else None
    return render(
        request,
        "rubrics/audit.html",
        {"project": project, "events": page[:AUDIT_PAGE], "form": form, "older": older},
    )


@login_required
@require_GET
def review_inbox(request: HttpRequest, slug: str) -> HttpResponse:
    """The project's rubrics in review, and which of them the user may approve."""
    project = project_for(request.user, slug, Perm.DISCUSS)
    versions = selectors.mark_approvable(
        selectors.review_inbox(project), request.user, project.role
    )
    return render(request, "rubrics/reviews.html", {"project": project, "versions": versions})


def _editor(project, rows: list[dict]) -> dict:
    return selectors.messages_editor(project, rows)


@login_required
@require_http_methods(["GET", "POST"])
def task_new(request: HttpRequest, slug: str) -> HttpResponse:
    project = project_for(request.user, slug, Perm.EDIT_RUBRICS)
    form = TaskForm(request.POST or None)
    rows = editor_rows([{"role": "user", "content": ""}])
    errors: list[str] = []
    if request.method == "POST":
        found: dict[str, list[str]] = {}
        try:
            posted = posted_messages(request.POST)
            rows = editor_rows(posted)
            if form.is_valid():
                data = form.cleaned_data
                task = services.task_create(
                    project=project,
                    external_id=data["external_id"],
                    title=data["title"],
                    messages=posted,
                    tags=[t.strip() for t in data["tags"].split(",") if t.strip()],
                    reference=data["reference"],
                    user=request.user,
                )
                return redirect("task", slug=slug, external_id=task.external_id)
        except ValidationError as exc:
            errors = _errors(exc)
            found = exc.message_dict if hasattr(exc, "error_dict") else {}
            rows = editor_rows([{k: r[k] for k in ("role", "content")} for r in rows], found)
    context = {"project": project, "form": form, "errors": errors, **_editor(project, rows)}
    return render(request, "rubrics/task_new.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def tasks_import(request: HttpRequest, slug: str) -> HttpResponse:
    """Upload many tasks at once, JSONL or Parquet: all of them, or none with every error."""
    project = project_for(request.user, slug, Perm.EDIT_RUBRICS)
    result, filename = None, ""
    if request.method == "POST":
        upload = request.FILES.get("file")
        if upload is None:
            result = task_import.TaskImportResult(
                errors=["file: choose a JSONL or Parquet file to upload"], error_count=1
            )
        else:
            filename = upload.name
            result = task_import.tasks_import_file(
                project=project, upload=upload, filename=filename, user=request.user
            )
            if result.ok:
                messages.success(
                    request,
                    f"Imported {result.created:,} tasks from {filename} "
                    f"({result.already_present:,} already present).",
                )
                return redirect("project", slug=slug)
    context = {
        "project": project,
        "result": result,
        "filename": filename,
        "fields": task_import.TASK_FIELDS,
    }
    return render(request, "rubrics/tasks_import.html", context)


@login_required
@require_GET
def task_detail(request: HttpRequest, slug: str, external_id: str) -> HttpResponse:
    project = project_for(request.user, slug, Perm.VIEW)
    task = selectors.task_for(request.user, project, external_id)
    return render(request, "rubrics/task.html", selectors.task_page_context(project, task))


@login_required
@require_POST
def markdown_preview(request: HttpRequest, slug: str) -> HttpResponse:
    """A message's Markdown as the task page shows it (sanitized by assay.markdown), for the
    messages editor's preview (an htmx request)."""
    project_for(request.user, slug, Perm.EDIT_RUBRICS)
    text = request.POST.get("content", "")
    if len(text) > settings.TASK_MESSAGE_MAX_CHARS:
        context = {"too_long": len(text), "limit": settings.TASK_MESSAGE_MAX_CHARS}
        return render(request, "rubrics/_markdown_preview.html", context)
    return render(request, "rubrics/_markdown_preview.html", {"text": text})


@login_required
@require_POST
def reference_add(request: HttpRequest, slug: str, external_id: str) -> HttpResponse:
    """A new reference answer for a task: Markdown and/or an attached file."""
    project = project_for(request.user, slug, Perm.EDIT_RUBRICS)
    task = selectors.task_for(request.user, project, external_id, Perm.EDIT_RUBRICS)
    try:
        reference = services.reference_create(
            task=task,
            body=request.POST.get("body", ""),
            file=request.FILES.get("file"),
            keep_file=request.POST.get("keep_file") == "on",
            user=request.user,
        )
    except ValidationError as exc:
        for error in _errors(exc):
            messages.error(request, f"Reference not saved: {error}")
    else:
        attached = f" with {reference.file_name}" if reference.has_file else ""
        messages.success(request, f"Saved the reference answer{attached}.")
    back = request.POST.get("next", "")
    # Only a path on this site; never redirect(back), which takes "²" for a view name.
    if back.startswith("/") and url_has_allowed_host_and_scheme(
        back, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return HttpResponseRedirect(back)
    return redirect("task", slug=slug, external_id=task.external_id)


@login_required
@require_GET
def reference_file(request: HttpRequest, pk: int) -> FileResponse:
    """A reference's attached file, for members of its project only. Always a download
    (never shown inline) under its sanitized name."""
    reference = selectors.reference_for(request.user, pk, Perm.VIEW)
    return selectors.reference_download(reference)


# What an image opened on its own may do: show itself. Chromium lays out an image it opens in
# a tab with inline styles of its own, which `default-src 'none'` refused (a console error on
# every image); no script, frame or other fetch is allowed, and the document stays sandboxed.
IMAGE_CSP = "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; sandbox"
DOWNLOAD_CSP = "default-src 'none'; sandbox"


@login_required
@require_GET
def file_view(request: HttpRequest, slug: str, sha256: str) -> FileResponse:
    """A file the project holds (`rubrics.files.store`), for its members only: an image
    inline (the re-encoded copy), anything else as a download; `?download=1` and `?name=`
    (sanitised) for the name a download is saved under."""
    from rubrics.files.sniff import safe_name

    project = project_for(request.user, slug, Perm.VIEW)
    handle, ref = selectors.stored_file(project, sha256)
    download = request.GET.get("download") == "1" or not ref.is_image
    name = safe_name(request.GET.get("name") or ref.name)
    response = FileResponse(
        handle,
        as_attachment=download,
        filename=name,
        content_type=ref.mime if not download else "application/octet-stream",
    )
    response["X-Content-SHA256"] = ref.sha256
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = DOWNLOAD_CSP if download else IMAGE_CSP
    response["Cache-Control"] = "private, max-age=3600, immutable"
    return response


@login_required
@require_GET
def file_preview(request: HttpRequest, slug: str, sha256: str) -> HttpResponse:
    """The preview of a document the project holds, for its members only: a fragment pages
    load lazily with htmx (rubrics/_file_preview.html#body). `?sheet=` picks a workbook's
    sheet (from 0). Nothing in it names a model, so annotators see it too."""
    from rubrics.files import preview

    project = project_for(request.user, slug, Perm.VIEW)
    ref = selectors.stored_file_ref(project, sha256)
    shown = preview.describe(ref, sheet=params.whole_number(request.GET, "sheet", 0))
    return render(
        request, "rubrics/_file_preview.html#body", {"project": project, "preview": shown}
    )


@login_required
@require_GET
def file_page(request: HttpRequest, slug: str, sha256: str, number: int) -> FileResponse:
    """Page `number` of a PDF the project holds, rendered on the server to PNG (the PDF's own
    content never reaches the browser), for its members only; 404 for a page not rendered."""
    from rubrics.files import preview

    project = project_for(request.user, slug, Perm.VIEW)
    ref = selectors.stored_file_ref(project, sha256)
    if ref.kind != "pdf":
        raise Http404("Only a PDF has pages.")
    try:
        handle = preview.page_file(ref, number)
    except FileNotFoundError:
        raise Http404("That page is not rendered.") from None
    except preview.FileRefused as exc:
        raise Http404(str(exc)) from None
    response = FileResponse(handle, content_type="image/png")
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = IMAGE_CSP
    response["Cache-Control"] = "private, max-age=3600, immutable"
    return response


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


def _revision(request: HttpRequest) -> int | None:
    return params.whole_number(request.POST, "revision")


def _posted_value(raw: str) -> object:
    """A value typed in a plain field: JSON when it reads as JSON (true, 3, "A17", [1]),
    else the text as typed."""
    try:
        return uploads.loads(raw)
    except ValueError:  # not JSON, or nested too deeply: kept as the text typed
        return raw


def _check_from(post) -> dict:
    """A checked criterion's check from the editor's plain fields (no JSON for authors)."""
    kind, value = post.get("check_type", ""), post.get("check_value", "")
    match_case = post.get("check_case") in ("on", "1", "true")
    if kind in ("contains", "not_contains"):
        return {"type": kind, "value": value, "case_sensitive": match_case}
    if kind == "regex":
        return {"type": kind, "pattern": value, "ignore_case": not match_case}
    if kind == "number":
        return {"type": kind, "value": value, "tolerance": post.get("check_tolerance") or 0}
    if kind == "json_field":
        return {"type": kind, "path": post.get("check_path", ""), "equals": _posted_value(value)}
    if kind in ("tool_called", "tool_not_called"):
        check: dict = {"type": kind, "tool": post.get("check_tool", "")}
        where_path, where_value = post.get("check_where_path", ""), post.get("check_where", "")
        if where_path.strip() or where_value.strip():
            check["where"] = {"path": where_path}
            if where_value.strip():
                check["where"]["equals"] = _posted_value(where_value)
        return check
    if kind == "tool_order":
        return {
            "type": kind,
            "first": post.get("check_first", ""),
            "then": post.get("check_then", ""),
        }
    if kind in ("max_calls", "max_steps"):
        check = {"type": kind, "max": post.get("check_max", "")}
        if kind == "max_calls":
            check["tool"] = post.get("check_tool", "")
        return check
    if kind in checks.FILE_CHECK_TYPES:
        return _file_check_from(post, kind)
    if kind == "final_state":
        check = {"type": kind, "path": post.get("check_path", "")}
        test = post.get("check_state_test", "equals")
        if test == "within":
            check.update(value=value, tolerance=post.get("check_tolerance") or 0)
        elif value.strip():
            check["contains" if test == "contains" else "equals"] = _posted_value(value)
        return check
    return {"type": kind}


def _file_check_from(post, kind: str) -> dict:
    """A check over the response's files from the editor's plain fields; an empty optional
    field is left out, so validation names only what the author set wrong."""
    check: dict = {"type": kind}
    for field, key in (("check_name", "name"), ("check_min", "min"), ("check_max", "max")):
        if post.get(field, "").strip():
            check[key] = post[field]
    if kind == "pdf_max_pages":
        check.setdefault("max", "")
    if kind in ("file_present", "file_text"):
        check["kind"] = post.get("check_kind", "any")
        check.pop("max", None)
    if kind == "file_text":
        check.pop("min", None)
        inner = dict(post.items())
        inner["check_type"] = post.get("check_text_type", "contains")
        check["check"] = _check_from(inner)
    if kind == "xlsx_cell":
        check.pop("min", None)
        check.pop("max", None)
        value = post.get("check_value", "").strip()
        cell = post.get("check_cell", "")
        check.update(sheet=post.get("check_sheet", ""), cell=cell)
        if ":" in cell:
            check["aggregate"] = post.get("check_aggregate", "every")
        try:
            float(value.replace(",", ""))
        except ValueError:  # text: the cell must hold it, case and spaces aside
            check["equals"] = post.get("check_value", "")
        else:
            check.update(
                value=value,
                tolerance=post.get("check_tolerance") or 0,
                relative=post.get("check_relative") in ("on", "1", "true"),
            )
    return check


# How an xlsx_cell check compares a range of cells, as the editor offers it.
CELL_AGGREGATES = (("every", "every cell equals"), ("sum", "their sum equals"))

# How a final_state check tests the value at its path, as the editor offers it.
STATE_TESTS = (("equals", "equals"), ("contains", "contains"), ("within", "is within tolerance of"))

TEXT_FIELDS = (
    "text",
    "points",
    "importance",
    "guidance",
    "example_met",
    "example_unmet",
    "kind",
    "weight",
    "tags",
    "scale",
    "scope",
    "step_rule",
    "step_tool",
)


def _criterion_fields(post) -> dict:
    """The fields a form sent; the ones it did not send keep their values."""
    fields = {name: post[name] for name in TEXT_FIELDS if name in post}
    if "gate_shown" in post:  # an unticked checkbox sends nothing
        fields["gate"] = post.get("gate") == "on"
    if "scope" in fields and fields["scope"] != Criterion.Scope.STEP:
        # The step rule and tool show only for a step criterion; once it is not, they are gone.
        fields["step_rule"] = fields["step_tool"] = ""
    if fields.get("kind", post.get("kind_now")) == "checked":
        if "check_type" in post:
            fields["check_spec"] = _check_from(post)
        elif post.get("kind_now") != "checked":
            # Just switched to checked: start from what the lint saw, for the author to refine.
            fields["check_spec"] = lint.suggest_check(post.get("text", ""))
    return fields


def _editor_context(
    request: HttpRequest, rubric, *, version=None, errors=None, focus="", errors_for=None
) -> dict:
    versions = list(selectors.rubric_versions(rubric))
    draft = next((v for v in versions if v.is_open), None)
    shown = version or draft or (versions[0] if versions else None)
    criteria = list(selectors.version_criteria(shown)) if shown else []
    groups = list(selectors.version_groups(shown)) if shown else []
    comments = list(selectors.version_comments(shown)) if shown else []
    grader = next(iter(shown.graders.all()), None) if shown else None
    role = rubric.project.role
    user = request.user
    in_review = bool(shown and shown.status == RubricVersion.Status.IN_REVIEW)
    # "/criteria/0/" -> "/criteria/": each row's URLs are its pk appended, not 1,400 reverse()s.
    url_prefix = reverse("criterion_update", kwargs={"pk": 0})[: -len("0/")]
    rows = selectors.editor_rows(criteria, groups, comments, url_prefix=url_prefix)
    warnings = lint.lint_criteria(criteria)
    by_position = {row.criterion.position: row for row in rows}
    for warning in warnings:
        if warning.position in by_position:
            by_position[warning.position].warnings.append(warning)
    return {
        "project": rubric.project,
        "rubric": rubric,
        "versions": versions,
        "version": shown,
        "draft": draft,
        "criteria": criteria,
        "rows": rows,
        "comments": comments,
        "open_comments": sum(1 for c in comments if c.resolved_at is None),
        "lint": warnings,
        "points_total": selectors.points_total(criteria),
        "method": "tree" if groups else "healthbench",
        "formula": scoring.FORMULAS["tree" if groups else "healthbench"]
        + (scoring.GATE_NOTE if any(c.gate for c in criteria) else ""),
        "grader": grader,
        "grader_json": _pretty(grader.spec) if grader else "",
        "editable": bool(shown and shown.is_draft and role_allows(role, Perm.EDIT_RUBRICS)),
        "can_edit": role_allows(role, Perm.EDIT_RUBRICS),
        "can_try": role_allows(role, Perm.VIEW_RESULTS),  # try-it shows a judge's verdicts
        "can_submit": bool(shown and shown.is_draft and role_allows(role, Perm.EDIT_RUBRICS)),
        "can_comment": in_review and role_allows(role, Perm.REVIEW),
        "can_reply": bool(shown and shown.is_open and role_allows(role, Perm.DISCUSS)),
        "can_retire": role_allows(role, Perm.PUBLISH),
        "history_url": reverse("rubric_history", kwargs={"pk": rubric.pk}),
        "can_approve": bool(shown and selectors.may_approve(shown, user, role)),
        "in_review": in_review,
        "errors": errors or [],
        "errors_for": errors_for,  # the criterion the errors belong to (None: the draft)
        "focus": focus,
        "importances": Criterion.Importance.choices,
        "kinds": Criterion.Kind.choices,
        "check_types": checks.CHECK_TYPES,
        "state_tests": STATE_TESTS,
        "file_kinds": file_checks.KINDS,
        "cell_aggregates": CELL_AGGREGATES,
        "file_text_checks": file_checks.INNER_TYPES,
        "references": list(selectors.task_references(rubric.task)[:1]) if rubric.task_id else [],
        "task_files": rubric.task.files if rubric.task_id else [],
        "max_file_mb": _max_file_mb(),
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
    number = params.whole_number(request.GET, "version")
    version = None
    if number is not None:
        version = rubric.versions.filter(number=number).first()
    return _render_editor(request, rubric, version=version)


@login_required
@require_POST
def template_new(request: HttpRequest, slug: str) -> HttpResponse:
    project = project_for(request.user, slug, Perm.EDIT_RUBRICS)
    try:
        rubric = services.rubric_create(
            project=project,
            title=request.POST.get("title", ""),
            user=request.user,
            is_template=True,
        )
    except ValidationError as exc:
        for error in _errors(exc):
            messages.error(request, error)
        return redirect("project", slug=slug)
    return redirect("rubric", pk=rubric.pk)


@login_required
@require_POST
def template_apply(request: HttpRequest, pk: int) -> HttpResponse:
    """Apply a template to every task of the project that has no rubric of its own."""
    template = selectors.rubric_for(request.user, pk, Perm.EDIT_RUBRICS)
    tasks = selectors.project_tasks(template.project).filter(rubrics__isnull=True)
    try:
        applied = services.template_apply(template=template, tasks=tasks, user=request.user)
    except ValidationError as exc:
        for error in _errors(exc):
            messages.error(request, error)
    else:
        messages.success(request, f"Applied to {len(applied)} task(s) without a rubric.")
    return redirect("rubric", pk=pk)


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
    fields = _criterion_fields(request.POST)
    text, points = fields.pop("text", ""), fields.pop("points", None)
    try:
        services.criterion_add(
            version=draft,
            text=text,
            points=points,
            user=request.user,
            expected_revision=_revision(request),
            **fields,
        )
    except ValidationError as exc:
        errors = _errors(exc)
    response = _render_editor(request, rubric, partial="criteria", errors=errors, focus="new")
    return _saved(response, not errors)


def _saved(response: HttpResponse, saved: bool) -> HttpResponse:
    """Tells the editor's script whether the values it sent were stored: only then may the
    server's rendering replace what the author typed."""
    response["X-Assay-Saved"] = "1" if saved else "0"
    return response


def _criterion_and_rubric(request: HttpRequest, pk: int):
    criterion = selectors.criterion_for(request.user, pk, Perm.EDIT_RUBRICS)
    rubric = selectors.rubric_for(request.user, criterion.version.rubric_id, Perm.EDIT_RUBRICS)
    return criterion, rubric


@login_required
@require_POST
def criterion_update(request: HttpRequest, pk: int) -> HttpResponse:
    """Autosave of one criterion. htmx gets only the save status, lint and totals back, so
    the author's cursor stays where it is; the revision guards against a second author."""
    criterion, rubric = _criterion_and_rubric(request, pk)
    errors, stale = [], False
    try:
        services.criterion_update(
            criterion=criterion,
            user=request.user,
            expected_revision=_revision(request),
            **_criterion_fields(request.POST),
        )
    except ValidationError as exc:
        errors = _errors(exc)
        stale = "revision" in getattr(exc, "error_dict", {})
    # An error about the criterion's fields shows at the criterion; one about the version
    # (a stale revision, a version no longer a draft) at the top of the list.
    errors_for = criterion.pk if not stale and criterion.version.is_draft else None
    if not request.htmx or request.POST.get("full"):
        response = _render_editor(
            request,
            rubric,
            partial="criteria",
            errors=errors,
            focus=f"crit-{criterion.pk}",
            errors_for=errors_for,
        )
        return _saved(response, not errors)
    context = _editor_context(request, rubric, errors=errors, errors_for=errors_for)
    context.update(saved_criterion=criterion, stale=stale, oob=True)
    return _saved(render(request, "rubrics/rubric.html#saved", context), not errors)


def _structural(request, pk: int, action) -> HttpResponse:
    criterion, rubric = _criterion_and_rubric(request, pk)
    errors = []
    try:
        action(criterion=criterion, user=request.user, expected_revision=_revision(request))
    except ValidationError as exc:
        errors = _errors(exc)
    return _render_editor(
        request, rubric, partial="criteria", errors=errors, focus=f"crit-{criterion.pk}"
    )


@login_required
@require_POST
def criterion_delete(request: HttpRequest, pk: int) -> HttpResponse:
    return _structural(request, pk, services.criterion_delete)


@login_required
@require_POST
def criterion_move(request: HttpRequest, pk: int, direction: str) -> HttpResponse:
    actions = {
        "up": lambda **kw: services.criterion_move(offset=-1, **kw),
        "down": lambda **kw: services.criterion_move(offset=1, **kw),
        "in": services.criterion_indent,
        "out": services.criterion_outdent,
    }
    if direction not in actions:
        raise Http404("No such move.")
    return _structural(request, pk, actions[direction])


@login_required
@require_POST
def group_update(request: HttpRequest, pk: int) -> HttpResponse:
    group = selectors.group_for(request.user, pk, Perm.EDIT_RUBRICS)
    rubric = selectors.rubric_for(request.user, group.version.rubric_id, Perm.EDIT_RUBRICS)
    errors = []
    try:
        services.group_update(
            group=group,
            title=request.POST.get("title", ""),
            weight=request.POST.get("weight"),
            user=request.user,
            expected_revision=_revision(request),
        )
    except ValidationError as exc:
        errors = _errors(exc)
    return _saved(_render_editor(request, rubric, partial="criteria", errors=errors), not errors)


@login_required
@require_POST
def rubric_settings(request: HttpRequest, pk: int) -> HttpResponse:
    rubric = selectors.rubric_for(request.user, pk, Perm.EDIT_RUBRICS)
    try:
        services.rubric_settings_update(
            rubric=rubric,
            include_reference=request.POST.get("include_reference") == "on",
            user=request.user,
            expected_revision=_revision(request),
        )
    except ValidationError as exc:
        for error in _errors(exc):
            messages.error(request, error)
    return redirect("rubric", pk=pk)


def _open_version(rubric):
    return rubric.versions.filter(
        status__in=[RubricVersion.Status.DRAFT, RubricVersion.Status.IN_REVIEW]
    ).first()


def _review_action(request, pk: int, perm: Perm, action, done: str) -> HttpResponse:
    rubric = selectors.rubric_for(request.user, pk, perm)
    version = _open_version(rubric)
    if version is None:
        messages.error(request, "There is no draft or version in review.")
        return redirect("rubric", pk=pk)
    try:
        result = action(version=version, user=request.user, role=rubric.project.role)
    except ValidationError as exc:
        for error in _errors(exc):
            messages.error(request, error)
    else:
        messages.success(request, done.format(v=version, result=result))
    return redirect("rubric", pk=pk)


@login_required
@require_POST
def rubric_submit(request: HttpRequest, pk: int) -> HttpResponse:
    return _review_action(
        request,
        pk,
        Perm.EDIT_RUBRICS,
        lambda version, user, role: services.version_submit(version=version, user=user),
        "Version {v.number} is in review.",
    )


@login_required
@require_POST
def rubric_reopen(request: HttpRequest, pk: int) -> HttpResponse:
    return _review_action(
        request,
        pk,
        Perm.EDIT_RUBRICS,
        lambda version, user, role: services.version_reopen(version=version, user=user),
        "Version {v.number} is a draft again.",
    )


@login_required
@require_POST
def rubric_approve(request: HttpRequest, pk: int) -> HttpResponse:
    return _review_action(
        request,
        pk,
        Perm.APPROVE,
        services.version_approve,
        "Approved and published version {v.number}: grader {result.short_hash}.",
    )


@login_required
@require_POST
def rubric_retire(request: HttpRequest, pk: int, number: int) -> HttpResponse:
    """Retire a published version: it stays readable, and new runs should not use it."""
    rubric = selectors.rubric_for(request.user, pk, Perm.PUBLISH)
    version = rubric.versions.filter(number=number).first()
    if version is None:
        raise Http404("No such version.")
    try:
        services.version_retire(version=version, user=request.user)
    except ValidationError as exc:
        for error in _errors(exc):
            messages.error(request, error)
    else:
        messages.success(request, f"Retired version {number}.")
    return redirect(f"{reverse('rubric', kwargs={'pk': pk})}?version={number}")


@login_required
@require_POST
def comment_add(request: HttpRequest, pk: int) -> HttpResponse:
    rubric = selectors.rubric_for(request.user, pk, Perm.REVIEW)
    version = _open_version(rubric)
    picked = params.whole_number(request.POST, "criterion")
    criterion = version.criteria.filter(pk=picked).first() if version and picked else None
    try:
        if version is None:
            raise ValidationError("There is no version in review.")
        services.comment_add(
            version=version,
            user=request.user,
            body=request.POST.get("body", ""),
            criterion=criterion,
        )
    except ValidationError as exc:
        for error in _errors(exc):
            messages.error(request, error)
    return redirect("rubric", pk=pk)


@login_required
@require_POST
def comment_reply(request: HttpRequest, pk: int) -> HttpResponse:
    comment = selectors.comment_for(request.user, pk, Perm.DISCUSS)
    try:
        services.comment_reply(
            comment=comment, user=request.user, body=request.POST.get("body", "")
        )
    except ValidationError as exc:
        for error in _errors(exc):
            messages.error(request, error)
    return redirect("rubric", pk=comment.version.rubric_id)


@login_required
@require_POST
def comment_resolve(request: HttpRequest, pk: int) -> HttpResponse:
    comment = selectors.comment_for(request.user, pk, Perm.EDIT_RUBRICS)
    try:
        services.comment_resolve(comment=comment, user=request.user)
    except ValidationError as exc:
        for error in _errors(exc):
            messages.error(request, error)
    return redirect("rubric", pk=comment.version.rubric_id)


@login_required
@require_GET
def rubric_diff(request: HttpRequest, pk: int) -> HttpResponse:
    rubric = selectors.rubric_for(request.user, pk, Perm.VIEW)
    versions = list(rubric.versions.order_by("number"))
    by_number = {v.number: v for v in versions}

    a, b = params.whole_number(request.GET, "a"), params.whole_number(request.GET, "b")
    right = by_number.get(b) if b is not None else (versions[-1] if versions else None)
    left = by_number.get(a) if a is not None else (versions[-2] if len(versions) > 1 else right)
    rows = selectors.version_diff(left, right) if left and right else []
    return render(
        request,
        "rubrics/diff.html",
        {
            "project": rubric.project,
            "rubric": rubric,
            "versions": versions,
            "left": left,
            "right": right,
            "rows": rows,
            "counts": {
                s: sum(1 for r in rows if r["status"] == s)
                for s in ("added", "removed", "changed", "moved")
            },
        },
    )


@login_required
@require_GET
def rubric_history(request: HttpRequest, pk: int) -> HttpResponse:
    rubric = selectors.rubric_for(request.user, pk, Perm.VIEW)
    lineage = request.GET.get("criterion", "")
    try:
        lineage = str(uuid.UUID(lineage)) if lineage else ""
    except ValueError:
        raise Http404("No such criterion.") from None
    criterion = (
        Criterion.objects.filter(version__rubric=rubric, lineage=lineage)
        .order_by("-version__number")
        .first()
        if lineage
        else None
    )
    return render(
        request,
        "rubrics/history.html",
        {
            "project": rubric.project,
            "rubric": rubric,
            "criterion": criterion,
            "events": selectors.rubric_history(rubric, lineage=lineage or None),
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
def rubrics_import(request: HttpRequest, slug: str) -> HttpResponse:
    """Upload a rubric file (HealthBench, PaperBench, CSV or XLSX); all of it or nothing. With
    a suite name, the file's tasks join that suite and a new version of it is frozen, in the
    same transaction (rubrics.suites.suite_import, as `manage.py import_rubrics --suite`)."""
    project = project_for(request.user, slug, Perm.EDIT_RUBRICS)
    errors: list[str] = []
    chosen = request.POST.get("format", "healthbench")
    suite_name = request.POST.get("suite", "").strip()
    publish = request.POST.get("publish") == "on"
    done = None
    if request.method == "POST":
        upload = request.FILES.get("file")
        if chosen not in formats.ALL_FORMATS:
            errors.append(f"format: choose one of {', '.join(formats.ALL_FORMATS)}.")
        elif upload is None:
            errors.append("file: choose a file to import.")
        elif suite_name and not role_allows(project.role, Perm.MANAGE_SUITES):
            errors.append("suite: your role may import rubrics but not make suites.")
        else:
            try:
                pairs = [
                    f"{name}={request.POST[f'map_{name}']}"
                    for name in formats.SHEET_FIELDS
                    if request.POST.get(f"map_{name}", "").strip()
                ]
                done = suites.suite_import(
                    project=project,
                    upload=upload,
                    name=upload.name,
                    format=chosen,
                    mapping=formats.parse_mapping(pairs),
                    user=request.user,
                    publish=publish,
                    suite=suite_name,
                )
            except ValidationError as exc:
                errors = [f"{upload.name}, {e}" for e in _errors(exc)]
                errors.append("Nothing was imported.")
            else:
                result = done.result
                messages.success(
                    request,
                    f"Imported {result.rubrics} rubric(s) with {result.criteria} criteria.",
                )
                if done.version is None:
                    return redirect("project", slug=slug)
                # The suite's page is grading's; this page links to it by URL name.
    return render(
        request,
        "rubrics/import.html",
        {
            "project": project,
            "errors": errors,
            "formats": formats.ALL_FORMATS,
            "chosen": chosen,
            "suite_name": suite_name,
            "publish": publish,
            "done": done,
            "suites": suites.project_suites(project, include_rubric_suites=False).values_list(
                "name", flat=True
            ),
            "sheet_fields": formats.SHEET_FIELDS,
            "gate_yes": sorted(formats.GATE_YES),
            "gate_no": sorted(w for w in formats.GATE_NO if w),
        },
    )


@login_required
@require_GET
def rubrics_export(request: HttpRequest, slug: str) -> HttpResponse:
    project = project_for(request.user, slug, Perm.VIEW)
    fmt = request.GET.get("format", "healthbench")
    if fmt == "healthbench":
        picked = params.whole_number(request.GET, "rubric")
        rubric, name = None, f"{slug}-healthbench.jsonl"
        if picked is not None:
            try:
                rubric = formats.task_rubric_for_export(project=project, pk=picked)
            except ValidationError as exc:
                raise Http404(" ".join(_errors(exc))) from None
            name = f"{slug}-rubric-{rubric.pk}-healthbench.jsonl"
        try:
            body = "".join(
                f"{line}\n" for line in formats.export_healthbench(project=project, rubric=picked)
            )
        except ValidationError as exc:  # a prompt's file the storage lost, named
            raise Http404(" ".join(_errors(exc))) from None
        formats.export_recorded(project=project, format=fmt, actor=request.user, rubric=rubric)
        response = HttpResponse(body, content_type="application/x-ndjson; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response
    if fmt == "csv":
        body = "".join(formats.export_spreadsheet(project=project))
        formats.export_recorded(project=project, format=fmt, actor=request.user)
        response = HttpResponse(body, content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{slug}-rubrics.csv"'
        return response
    if fmt != "paperbench":
        raise Http404("Unknown format.")
    picked = params.whole_number(request.GET, "rubric")
    try:
        rubric = formats.tree_rubric_for_export(project=project, pk=picked)
    except ValidationError as exc:
        raise Http404(" ".join(_errors(exc))) from None
    body = json.dumps(formats.export_paperbench(rubric=rubric), indent=2, ensure_ascii=False)
    formats.export_recorded(project=project, format=fmt, actor=request.user, rubric=rubric)
    response = HttpResponse(body + "\n", content_type="application/json; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{slug}-rubric-{rubric.pk}.json"'
    return response


@login_required
@require_GET
def grader_detail(request: HttpRequest, grader_hash: str) -> HttpResponse:
    try:  # the full hash, or a unique prefix of 12 or more characters
        grader = selectors.grader_for(request.user, grader_hash, Perm.VIEW)
    except ValidationError as exc:
        reason = " ".join(exc.messages)
        context = {"title": "Not a grader's hash", "reason": reason}
        return render(request, "problem.html", context, status=400)
    return render(
        request,
        "rubrics/grader.html",
        {
            "project": grader.version.rubric.project,
            "grader": grader,
            "grader_json": _pretty(grader.spec),
            "criteria": wording.grader_criteria(grader.spec),
        },
    )
