"""Request-level upload limits: a body over its route's limit is refused before it is read,
and API JSON bodies are checked for nesting and unstorable text before they are parsed.

The exact per-file checks (the file's own size, type and content) live in rubrics.uploads and
run in the importers; these guards stop what should never reach them: a multi-gigabyte body
spooled to disk only to be refused, a JSON body nested deep enough to crash the parser.
"""

from __future__ import annotations

import codecs
import json

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import Resolver404, resolve
from django.utils.html import escape
from rest_framework import parsers
from rest_framework.exceptions import ParseError, ValidationError
from rest_framework.settings import api_settings

from rubrics import uploads

# Routes that take a file, and the setting that limits it. Every other route takes at most
# DATA_UPLOAD_MAX_MEMORY_SIZE (ASSAY_MAX_UPLOAD_BYTES), forms and API JSON bodies alike.
ROUTE_LIMITS = {
    "rubrics_import": ("RUBRIC_UPLOAD_MAX_BYTES", "rubric imports"),
    "tasks_import": ("TASK_UPLOAD_MAX_BYTES", "task imports"),
    "api_tasks_import": ("TASK_UPLOAD_MAX_BYTES", "task imports"),
    # Responses may come with a bundle of the files they name: room for both.
    "responses": (("RESPONSE_UPLOAD_MAX_BYTES", "BUNDLE_MAX_BYTES"), "response imports"),
    "api_responses_import": (("RESPONSE_UPLOAD_MAX_BYTES", "BUNDLE_MAX_BYTES"), "response imports"),
    "api_imports": (("RESPONSE_UPLOAD_MAX_BYTES", "BUNDLE_MAX_BYTES"), "response imports"),
    "reference_add": ("REFERENCE_FILE_MAX_BYTES", "reference files"),
    "api_task_references": ("REFERENCE_FILE_MAX_BYTES", "reference files"),
}
# JSON routes with a body limit of their own (never above DATA_UPLOAD_MAX_MEMORY_SIZE, which
# Django applies to every body it reads): the reward endpoints take images and files inline.
BODY_LIMITS = {
    "api_grader_score": ("REWARD_MAX_BODY_BYTES", "reward requests"),
    "api_suite_score": ("REWARD_MAX_BODY_BYTES", "reward requests"),
    "api_suite_version_score": ("REWARD_MAX_BODY_BYTES", "reward requests"),
}
# Room for the multipart framing and the form's other fields beside the file; the file's own
# size is then checked exactly, by name, where it is imported.
MULTIPART_SLACK = 1024 * 1024


def limit_for(path: str) -> tuple[int, str, str, str]:
    """(limit in bytes, setting, what, field) for a request to `path`."""
    try:
        name = resolve(path).url_name
    except Resolver404:
        name = None
    if name in ROUTE_LIMITS:
        names, what = ROUTE_LIMITS[name]
        names = (names,) if isinstance(names, str) else names
        limit = sum(getattr(settings, n) for n in names) + MULTIPART_SLACK
        return limit, " + ".join(f"ASSAY_{n}" for n in names), what, "file"
    if name in BODY_LIMITS and getattr(settings, BODY_LIMITS[name][0]) < (
        settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    ):
        setting, what = BODY_LIMITS[name]
        return getattr(settings, setting), f"ASSAY_{setting}", what, "body"
    return (
        settings.DATA_UPLOAD_MAX_MEMORY_SIZE,
        "ASSAY_MAX_UPLOAD_BYTES",
        "request bodies",
        "body",
    )


class UploadLimitMiddleware:
    """413 for a request whose declared length is over its route's limit, before the body is
    read (and before CSRF checks parse it)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length:
            limit, setting, what, field = limit_for(request.path_info)
            if length > limit:
                return self.refuse(request, length, limit, setting, what, field)
        return self.get_response(request)

    @staticmethod
    def refuse(request, length, limit, setting, what, field) -> HttpResponse:
        message = (
            f"The upload is {uploads.megabytes(length)}; {what} take at most "
            f"{uploads.megabytes(limit)} (the server's {setting}). Nothing was read or stored."
        )
        if request.path_info.startswith("/api/"):
            return JsonResponse(
                {"detail": message, "field": field, "limit_bytes": limit}, status=413
            )
        page = (
            '<!doctype html><html lang="en"><head><meta charset="utf-8">'
            "<title>Upload too large</title></head><body><h1>Upload too large</h1>"
            f'<p role="alert">{escape(message)}</p><p><a href="{escape(request.path)}">'
            "Back</a></p></body></html>"
        )
        return HttpResponse(page, status=413)


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, with nesting capped (ASSAY_JSON_MAX_DEPTH) before parsing, and text
    PostgreSQL cannot store (NUL, lone surrogates) refused with the field that holds it."""

    def parse(self, stream, media_type=None, parser_context=None):
        parser_context = parser_context or {}
        encoding = parser_context.get("encoding", settings.DEFAULT_CHARSET)
        try:
            text = codecs.getreader(encoding)(stream).read()
        except (UnicodeDecodeError, LookupError) as exc:
            message = f"JSON parse error - the body is not {encoding} text ({exc})."
            raise ParseError(message) from None
        text = text.removeprefix("\ufeff")
        depth = settings.JSON_MAX_DEPTH
        if text.count("[") + text.count("{") > depth and uploads.json_depth(text) > depth:
            raise ParseError(
                f"JSON parse error - nested too deeply (more than {depth} levels of arrays "
                "and objects)."
            )
        constant = _refuse_constant if api_settings.STRICT_JSON else None  # NaN, Infinity
        try:
            data = json.loads(text, parse_constant=constant)
        except RecursionError:
            raise ParseError("JSON parse error - nested too deeply.") from None
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
        bad = uploads.row_text_problem(text, data)
        if bad:
            where = f"field '{bad[0]}'" if bad[0] else "the body"
            raise ParseError(f"JSON parse error - {where} {bad[1]}.")
        return data


def unstorable_parameter(params) -> tuple[str, str] | None:
    """(name, message) for the first parameter of a QueryDict (a query string or a form)
    whose name or value PostgreSQL cannot store: NUL, or a lone surrogate."""
    for name, values in params.lists():
        bad = uploads.text_problem(name, name)
        if bad:
            return ascii(name)[1:-1], f"The parameter's name {bad[1]}."
        for value in values:
            bad = uploads.text_problem(value, name) if isinstance(value, str) else None
            if bad:
                return name, f"The value {bad[1]}."
    return None


class FormParser(parsers.FormParser):
    """DRF's, refusing unstorable text with a 400 that names the field. POST forms meet the
    same check earlier (assay.middleware.BadInputMiddleware); PUT and PATCH only here."""

    def parse(self, stream, media_type=None, parser_context=None):
        data = super().parse(stream, media_type, parser_context)
        if bad := unstorable_parameter(data):
            raise ValidationError({bad[0]: [bad[1]]})
        return data


class MultiPartParser(parsers.MultiPartParser):
    """As FormParser, for multipart bodies (a file's own content is checked where it is read)."""

    def parse(self, stream, media_type=None, parser_context=None):
        parsed = super().parse(stream, media_type, parser_context)
        if bad := unstorable_parameter(parsed.data):
            raise ValidationError({bad[0]: [bad[1]]})
        return parsed


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")
