"""Requests that must never become a 500.

A database that stops answering (a PostgreSQL restart, a failover) is an outage to report
plainly, not a bug to show as a 500 page with a traceback in the logs of every poll. Input
no view could store or parse (NUL, lone surrogates, a whole number that is not one) is the
caller's mistake: a 400 that names the parameter, or a 404 for a path.
"""

from __future__ import annotations

import logging

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse, UnreadablePostError
from django.utils.html import escape

from assay.upload_guards import unstorable_parameter
from rubrics import uploads
from rubrics.params import ParameterError

logger = logging.getLogger(__name__)

RETRY_AFTER_S = 5
MESSAGE = (
    "Assay's database is not answering right now (it may be restarting). Nothing saved is "
    "lost, and grading runs carry on once it is back. Try again in a few seconds.\n"
)


class DatabaseUnavailableMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        # OperationalError: the connection broke or could not be made; InterfaceError: a kept
        # connection that broke earlier was used again. Both are the database being away.
        if not isinstance(exception, OperationalError | InterfaceError):
            return None
        logger.warning("database unavailable for %s: %s", request.path, exception)
        response = HttpResponse(MESSAGE, status=503, content_type="text/plain; charset=utf-8")
        response["Retry-After"] = str(RETRY_AFTER_S)
        return response


class BadInputMiddleware:
    """Before any view reads them: a URL path holding NUL or a lone surrogate names nothing
    (404); a query or form parameter (name or value) holding one is refused with a 400 that
    names it, since PostgreSQL stores neither. JSON bodies get the same check in the API's
    parser (assay.upload_guards.JSONParser). And a page view's `rubrics.params.ParameterError`
    becomes the same 400 (API views answer it through DRF)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if uploads.text_problem(request.path_info):
            return refusal(
                request,
                404,
                "path",
                "No such page: the path holds a NUL character or a lone surrogate.",
            )
        problem = self.parameter_problem(request)
        if problem:
            return refusal(request, 400, *problem)
        return self.get_response(request)

    @staticmethod
    def parameter_problem(request: HttpRequest) -> tuple[str, str] | None:
        try:
            form = request.POST  # empty unless a form or multipart body
        except UnreadablePostError:
            form = None  # the client went away; the view meets the same error, as CSRF does
        for params in (request.GET, form):
            bad = unstorable_parameter(params) if params is not None else None
            if bad:
                return bad
        return None

    def process_exception(self, request: HttpRequest, exception: Exception):
        if isinstance(exception, ParameterError):
            return refusal(request, 400, exception.name, exception.message)
        return None


def refusal(request: HttpRequest, status: int, field: str, message: str) -> HttpResponse:
    """The API's shape for a field's error ({field: [message]}), or a small page naming it."""
    if request.path_info.startswith("/api/"):
        return JsonResponse({field: [message]}, status=status)
    title = "Not found" if status == 404 else "Bad request"
    page = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        f'</head><body><h1>{title}</h1><p role="alert"><code>{escape(field)}</code>: '
        f"{escape(message)}</p></body></html>"
    )
    return HttpResponse(page, status=status)
