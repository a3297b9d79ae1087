"""The audit log: who did what to whom, recorded by the domain functions themselves.

A domain function calls `record()` inside its own transaction, so an action and its event
commit together or not at all. The actor is passed in explicitly (services already take the
acting user); where the action came from -- the web, the API, a command, a worker -- and the
client's address come from `origin`, which the middleware sets per request and every
management command sets by being an `audit.Command`. Domain functions never see the request.

The table is append-only in the database (rubrics/migrations/0006_audit_event_append_only).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from django.core.management.base import BaseCommand
from django.http import HttpRequest, HttpResponse

from rubrics.models import AuditEvent, Project


@dataclass(frozen=True)
class Origin:
    source: str = AuditEvent.Source.SYSTEM
    ip: str | None = None


_ORIGIN_DEFAULT = Origin()  # frozen: safe to share
_origin: ContextVar[Origin] = ContextVar("assay_audit_origin", default=_ORIGIN_DEFAULT)  # noqa: B039


@contextmanager
def origin(source: str, *, ip: str | None = None) -> Iterator[None]:
    """Events recorded inside the block say they came from `source` (and `ip`)."""
    token = _origin.set(Origin(AuditEvent.Source(source), ip))
    try:
        yield
    finally:
        _origin.reset(token)


def current_origin() -> Origin:
    return _origin.get()


class Command(BaseCommand):
    """The base of every project management command: what it records says it came from a
    command, whichever domain function records it."""

    def execute(self, *args, **options):
        with origin(AuditEvent.Source.COMMAND):
            return super().execute(*args, **options)


def record(
    action: str,
    *,
    actor=None,
    project: Project | None = None,
    target_type: str = "",
    target_id: object = "",
    target_label: str = "",
    details: dict | None = None,
) -> AuditEvent:
    """Append one event. Call it inside the transaction of the change it describes."""
    here = _origin.get()
    person = actor if getattr(actor, "is_authenticated", False) else None
    return AuditEvent.objects.create(
        action=AuditEvent.Action(action),
        actor=person,
        actor_username=person.get_username() if person else "",
        project=project,
        project_slug=project.slug if project else "",
        target_type=target_type,
        target_id=str(target_id or "")[:64],
        target_label=str(target_label)[:300],
        details=details or {},
        source=here.source,
        ip_address=here.ip,
    )


def os_user() -> str:
    """Who runs a management command on the server, as the operating system names them."""
    import getpass

    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name and no passwd entry (some containers)
        return ""


# --- Reads --------------------------------------------------------------------------------


def project_events(project: Project, *, action: str = "", actor: str = ""):
    """The project's events, newest first, optionally of one action or one actor's username."""
    events = AuditEvent.objects.filter(project=project)
    if action:
        events = events.filter(action=action)
    if actor:
        events = events.filter(actor_username=actor)
    return events.order_by("-pk")


def own_token_events(user, *, limit: int = 50):
    """The creation and revocation of `user`'s own API tokens (events of no project)."""
    return AuditEvent.objects.filter(actor=user, target_type="api_token").order_by("-pk")[:limit]


# --- Where a request came from ------------------------------------------------------------


def client_ip(request: HttpRequest) -> str | None:
    """The client's address as django-axes sees it (the same proxy settings as lockouts)."""
    from axes.helpers import get_client_ip_address  # imports models: not at app loading

    return get_client_ip_address(request) or None


class AuditOriginMiddleware:
    """Tag the events a request records with where it came from (web page, API, admin) and
    the client's address."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        path = request.path_info
        source = (
            AuditEvent.Source.API
            if path.startswith("/api/")
            else AuditEvent.Source.ADMIN
            if path.startswith("/admin/")
            else AuditEvent.Source.WEB
        )
        with origin(source, ip=client_ip(request)):
            return self.get_response(request)
