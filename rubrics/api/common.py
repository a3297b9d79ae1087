"""What every API module shares: a service's ValidationError as a 400 and its Conflict
as a 409, cursor pagination, the allow-list of query filters, and the error responses the
schema documents.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.core.exceptions import NON_FIELD_ERRORS
from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import APIException, NotFound, ValidationError
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from rubrics import params, selectors, services


def api_validation_error(exc: DjangoValidationError) -> ValidationError:
    """A service's ValidationError as DRF's 400: messages by field, the rest under
    `non_field_errors`."""
    if hasattr(exc, "error_dict"):
        return ValidationError(
            {
                (api_settings.NON_FIELD_ERRORS_KEY if field == NON_FIELD_ERRORS else field): msgs
                for field, msgs in exc.message_dict.items()
            }
        )
    return ValidationError({api_settings.NON_FIELD_ERRORS_KEY: exc.messages})


class ConflictError(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The object's state does not allow this."
    default_code = "conflict"


@contextmanager
def service_errors() -> Iterator[None]:
    """Wrap a service call: its ValidationError becomes a 400 with the field messages, and
    a `Conflict` (published, in use, the last admin) a 409 that says why."""
    try:
        yield
    except services.Conflict as exc:
        raise ConflictError(" ".join(exc.messages)) from exc
    except DjangoValidationError as exc:
        raise api_validation_error(exc) from exc


def grader_named(project, value: str, *, param: str = "grader"):
    """The project's grader that `value` (its hash, or a unique prefix of 12 or more
    characters) names, or None; a 400 naming `param` for a malformed or ambiguous one."""
    with service_errors():
        return selectors.by_hash(selectors.published_graders(project), value, param=param)


HASH_RULE = (
    "A grader is named by its SHA-256 or by a unique prefix of it, 12 hex characters or more "
    "(what pages show): a shorter or ambiguous prefix is a 400 saying so."
)


class Pagination(CursorPagination):
    """Cursor pages: stable while rows are added, and no COUNT(*) over millions of rows.
    `?limit=` sets the page size; follow `next` for the rest."""

    ordering = "pk"
    page_size = 100
    page_size_query_param = "limit"
    max_page_size = 1000
    bad_cursor = "Not a cursor this list gave: follow the `next` or `previous` link as it is."

    def decode_cursor(self, request):
        """DRF's, but a cursor that was not ours is a 400 on `cursor` (DRF answers 404), and
        so is one whose position is not a key, found before it reaches the query."""
        try:
            cursor = super().decode_cursor(request)
        except NotFound:
            raise params.ParameterError("cursor", self.bad_cursor) from None
        ordering = self.ordering if isinstance(self.ordering, str) else self.ordering[0]
        position = cursor.position if cursor else None
        keyed = ordering.lstrip("-") in ("pk", "id")  # every list's order is by primary key
        digits = position is not None and position.isascii() and position.isdigit()
        if keyed and position is not None and not (digits and len(position) <= 19):  # bigint
            raise params.ParameterError("cursor", self.bad_cursor)
        return cursor


NEWEST_FIRST = "-pk"
# Query parameters every list takes besides its filters: DRF's format override, and the
# cursor and page size of paginated lists.
PAGE_PARAMS = frozenset({"cursor", "limit"})
ALWAYS_PARAMS = frozenset({"format"})
FILTERS_RULE = (
    "Lists filter only on the query parameters listed for them; any other parameter is "
    "refused with a 400 that names it. A filter naming an object of another project (or "
    "none) matches nothing: the list is empty."
)


@extend_schema_serializer(component_name="NoFilters")
class NoFilters(serializers.Serializer):
    """A list without filters: every query parameter but the page's is refused."""


def query_filters(request: Request, filter_class=NoFilters, *, paged: bool = True) -> dict:
    """The list's filters from the query string, checked against its allow-list
    (`filter_class`'s fields). An unknown parameter is a 400 naming it, never ignored, so
    a misspelt filter cannot silently return everything. Blank values are dropped."""
    form = filter_class(data=request.query_params)
    allowed = set(form.fields) | ALWAYS_PARAMS | (PAGE_PARAMS if paged else set())
    unknown = sorted(set(request.query_params) - allowed)
    if unknown:
        known = ", ".join(sorted(form.fields)) or "nothing"
        raise ValidationError(
            {
                name: [f"Unknown query parameter '{name}'; this list filters on: {known}."]
                for name in unknown
            }
        )
    form.is_valid(raise_exception=True)
    return {k: v for k, v in form.validated_data.items() if v is not None and v != ""}


def paginated(
    view: APIView, request: Request, queryset, serializer_class, *, ordering: str = "pk"
) -> Response:
    """One page of `queryset`, in `ordering` (a unique key, as cursors need)."""
    paginator = view.pagination_class()
    paginator.ordering = ordering
    page = paginator.paginate_queryset(queryset, request, view=view)
    return paginator.get_paginated_response(serializer_class(page, many=True).data)


@extend_schema_serializer(component_name="ErrorDetail")
class ErrorDetailSerializer(serializers.Serializer):
    detail = serializers.CharField()


ERRORS = {
    400: OpenApiResponse(
        OpenApiTypes.OBJECT,
        description="Invalid input: a list of messages per field, named like "
        "`criteria[3].points`; other messages under `non_field_errors`.",
    ),
    401: OpenApiResponse(
        ErrorDetailSerializer,
        description="Not authenticated: send `Authorization: Token <key>`.",
    ),
    403: OpenApiResponse(
        ErrorDetailSerializer, description="Your role in the project does not allow this."
    ),
    404: OpenApiResponse(
        ErrorDetailSerializer,
        description="No such object in a project you are a member of.",
    ),
    409: OpenApiResponse(
        ErrorDetailSerializer,
        description="The object's state does not allow this (published, in use, or the "
        "last of its kind); `detail` says why and what to do instead.",
    ),
    413: OpenApiResponse(
        OpenApiTypes.OBJECT,
        description="The file or body is over its size limit: the message names the field, "
        "the size and the limit (README, Upload limits). Nothing was written.",
    ),
    429: OpenApiResponse(
        ErrorDetailSerializer, description="Too many failed attempts: wait, then try again."
    ),
}


def responses(ok: dict, *codes: int) -> dict:
    """The schema's responses: `ok`, 401, and the error `codes` the operation can return."""
    return {**ok, 401: ERRORS[401], **{code: ERRORS[code] for code in codes}}
