"""A database that stops answering (a PostgreSQL restart, a failover) is an outage to report
plainly, not a bug to show as a 500 page with a traceback in the logs of every poll."""

from __future__ import annotations

import logging

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse

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
