"""Try a rubric draft before publishing: the exact judge prompt for one criterion, and a
grade of one response now with the project's judge (or the simulator).

It lives in grading/ because it grades; the rubric editor only links here (rubrics never
imports grading). The draft is compiled without storing anything, and grading goes through
`engine.grade_now`, the same path runs and the reward endpoint use.

The response may be a text, or an episode (annotation.content.episode) pasted or uploaded as
JSON, or an imported response of either kind; an episode shows as a trajectory. An episode's
image and file parts come inline as data: URIs; a deliverable (PDF, XLSX, DOCX, an image, ...)
may be uploaded as it is, and is then the response's file part, beside its text. Those files
are stored in the project by hash (the judge and the page read them from there), and listed
with the result.
"""

from __future__ import annotations

import json

from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_http_methods

from annotation import selectors as annotation_selectors
from annotation.content.episode import ContentError, Episode, Message, Part
from annotation.content.intake import RequestIntake
from annotation.content.render import TEXT_ONLY
from annotation.models import Response, Verdict
from grading import engine, injection, selectors, services
from grading.judges import prompts
from rubrics import params, scoring
from rubrics import selectors as rubric_selectors
from rubrics.files import parts as file_parts
from rubrics.files import store
from rubrics.files.sniff import FileRefused
from rubrics.permissions import Perm

MAX_RESPONSE = 100_000
# An episode's JSON, with a few images or a deliverable inline as base64 (each file is held to
# ASSAY_FILE_MAX_BYTES when it is taken).
MAX_EPISODE_BYTES = 32 * 1024 * 1024


@login_required
@require_http_methods(["GET", "POST"])
def rubric_try(request: HttpRequest, pk: int) -> HttpResponse:
    rubric = rubric_selectors.rubric_for(request.user, pk, Perm.VIEW_RESULTS)
    project = rubric.project
    version = rubric_selectors.open_or_latest_version(rubric)
    spec = rubric_selectors.version_spec(version) if version else None
    judges = list(selectors.project_judges(project))
    imported = (
        list(Response.objects.filter(task_id=rubric.task_id).order_by("model", "sample_index")[:50])
        if rubric.task_id
        else []
    )
    data = request.POST if request.method == "POST" else request.GET
    errors: list[str] = []
    response_text = data.get("response", "")
    episode_text = data.get("episode", "")
    # Files are taken (stored in the project) from a POST only, never from a link's query.
    files = RequestIntake(project, door="try-it") if request.method == "POST" else None
    episode = given_episode(episode_text, request.FILES.get("episode_file"), errors, files)
    if episode is not None:
        if response_text.strip():
            errors.append("episode: give a text response or an episode, not both.")
        response_text = episode.final_text
    picked = params.whole_number(data, "response_id")
    deliverable = request.FILES.get("deliverable") if request.method == "POST" else None
    if deliverable is not None:
        if episode is not None or picked is not None:
            errors.append(
                "deliverable: attach it to a text response; an episode carries its files "
                "as parts, and an imported response has its own."
            )
        else:
            episode = deliverable_episode(project, response_text, deliverable, errors)
    if picked is not None:
        chosen = next((r for r in imported if r.pk == picked), None)
        if chosen is None:
            errors.append("response_id: no such imported response for this task.")
        else:
            response_text = chosen.text
            episode = None if chosen.content is None else chosen.episode
    if len(response_text) > MAX_RESPONSE:
        errors.append(f"response: keep it under {MAX_RESPONSE:,} characters.")
    messages = rubric.task.messages if rubric.task_id else []
    criteria = spec["criteria"] if spec else []
    preview = None
    raw_criterion = data.get("criterion", "")
    criterion = next((c for c in criteria if str(c["id"]) == raw_criterion), None)
    if criterion is None and criteria:
        criterion = criteria[0]
    chosen_judge = next((j for j in judges if str(j.pk) == data.get("judge")), None)
    if data.get("action") == "preview" and criterion and not errors:
        if criterion["kind"] == "checked":
            preview = {"checked": True, "check": criterion["check"]}
        else:
            # The prompt the chosen judge (else the first) is sent, rendered for what it sees,
            # as runs render it: a vision judge gets the images, a blind one a line for each.
            shown = chosen_judge or (judges[0] if judges else None)
            sight = engine.sight_of(services.judge_settings(shown)) if shown else TEXT_ONLY
            prompt = engine.criterion_prompt(
                spec,
                criterion,
                messages=messages,
                response=episode if episode is not None else response_text,
                sight=sight,
            )
            preview = {
                "judge": shown,
                "messages": _shown_messages(prompt or []),
                "no_step": prompt is None,
                "schema": prompts.output_schema(spec, criterion),
            }
    results = score = None
    step_graded: list[engine.Graded] = []
    judge = None
    if request.method == "POST" and data.get("action") == "grade" and not errors:
        judge = chosen_judge
        if judge is None:
            errors.append("judge: choose one of the project's judges (an admin adds them).")
        elif not response_text.strip() and episode is None:
            errors.append("response: paste a response or pick an imported one.")
        elif not criteria:
            errors.append("The draft has no criteria yet.")
        else:
            # An episode is graded as runs grade it: outcome criteria on its final answer,
            # trajectory criteria on the whole, step criteria at each step, checks on all.
            graded = engine.grade_now(
                spec,
                services.judge_settings(judge),
                messages=messages,
                response=episode if episode is not None else response_text,
                concurrency=judge.max_concurrency,
                judge_id=judge.pk,  # try-it shares the judge's limits with its runs
                steps=step_graded,
            )
            by_id = {c["id"]: c for c in criteria}
            results = [(by_id[g.criterion_id], g) for g in graded]
            score = scoring.score(spec, {g.criterion_id: g.as_outcome() for g in graded})
    acted = data.get("action") in ("preview", "grade") and not errors
    context = {
        "flag": (
            injection.detect(episode if episode is not None else response_text) if acted else None
        ),
        "project": project,
        "rubric": rubric,
        "version": version,
        "spec": spec,
        "judges": judges,
        "imported": imported,
        "response_text": (
            "" if episode is not None and picked is None and deliverable is None else response_text
        ),
        "episode_text": episode_text,
        "trajectory": (
            annotation_selectors.episode_trajectory(
                episode, blind=False, step_verdicts=_step_rows(step_graded, criteria)
            )
            if acted and episode
            else None
        ),
        "files": [ref for _, ref in episode.files()] if acted and episode else [],
        "criterion": criterion,
        "criteria": criteria,
        "preview": preview,
        "results": results,
        "score": score,
        "formula": scoring.formula(spec) if spec else "",
        "judge": judge,
        "errors": errors,
    }
    template = "grading/tryit.html"
    if request.htmx:
        template += "#result"
    return render(request, template, context)


def _shown_messages(prompt: list[dict]) -> list[dict]:
    """A judge prompt for the page: each message's role and its pieces in order, a text or a
    file (an image or file part in the stored shape, shown as the file it names, never
    inlined)."""
    out = []
    for message in prompt:
        content = message["content"]
        pieces = []
        for part in content if isinstance(content, list) else [content]:
            if isinstance(part, str):
                pieces.append({"text": part})
            elif part.get("type") == "text":
                pieces.append({"text": part.get("text", "")})
            else:
                for ref in file_parts.refs([part]):
                    pieces.append({"file": ref, "image": part.get("type") == "image_url"})
        out.append({"role": message["role"], "pieces": pieces})
    return out


def _step_rows(graded: list[engine.Graded], criteria: list[dict]) -> list[Verdict]:
    """Try-it's verdicts at each step as the trajectory view shows stored ones (unsaved)."""
    text = {c["id"]: c["text"] for c in criteria}
    rows = []
    for g in graded:
        row = Verdict(
            step=g.step,
            outcome=g.outcome,
            value=g.value,
            explanation=g.explanation,
            error=g.error,
            simulated=g.simulated,
        )
        row.step_label = text.get(g.criterion_id, "")[:80]
        rows.append(row)
    return rows


def deliverable_episode(project, text: str, upload, errors: list[str]) -> Episode | None:
    """A text response with an uploaded deliverable as its file part (an image as an image
    part): one assistant message. The file is checked and stored by rubrics.files.store; a
    refusal goes to `errors` naming the field and the file."""
    if upload.size > store.limit():
        errors.append(
            f"deliverable: '{upload.name}' is {upload.size / 1048576:.1f} MB; files may be at "
            f"most {store.limit() / 1048576:.1f} MB (ASSAY_FILE_MAX_BYTES)."
        )
        return None
    try:
        ref = store.put(project, upload.read(), name=upload.name or "deliverable")
    except FileRefused as exc:
        errors.append(f"deliverable: {exc}")
        return None
    parts = (Part("text", text),) if text.strip() else ()
    part = Part("image_url" if ref.is_image else "file", file=ref)
    return Episode(messages=(Message("assistant", (*parts, part)),))


def given_episode(text: str, upload, errors: list[str], files=None) -> Episode | None:
    """The episode pasted (`text`) or uploaded as JSON, or None when neither was given; a
    problem goes to `errors` naming the field, and the path inside the episode. Its image and
    file parts are taken by `files` (none: refused); a refused episode keeps none of them."""
    where = "episode"
    if upload is not None:
        where = "episode_file"
        if text.strip():
            errors.append("episode: paste an episode or upload one, not both.")
            return None
        if upload.size > MAX_EPISODE_BYTES:
            errors.append(f"episode_file: keep it under {MAX_EPISODE_BYTES:,} bytes.")
            return None
        try:
            text = upload.read().decode("utf-8")
        except UnicodeDecodeError:
            errors.append("episode_file: not UTF-8 text.")
            return None
    if not text.strip():
        return None
    if len(text.encode()) > MAX_EPISODE_BYTES:
        errors.append(f"{where}: keep it under {MAX_EPISODE_BYTES:,} bytes.")
        return None
    try:
        value = json.loads(text)
    except ValueError as exc:
        detail = (
            f"line {exc.lineno} column {exc.colno}: {exc.msg}"
            if isinstance(exc, json.JSONDecodeError)
            else str(exc)
        )
        errors.append(f"{where}: not valid JSON ({detail}).")
        return None
    try:
        with transaction.atomic():
            return Episode.parse(value, files=files)
    except ContentError as exc:
        errors.append(f"{where}: {exc}")
        return None
