"""API tokens: created with scopes and an expiry, stored hashed, revocable."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection, transaction
from django.utils import timezone

from rubrics import audit
from rubrics.models import ApiToken, AuditEvent
from rubrics.rows import Rows

PREFIX = "asy_"
MAX_DAYS = 366
TOUCH_EVERY = timedelta(minutes=5)  # how stale last_used_at may get: not a write per request


def _hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def _audit(action: str, token: ApiToken, actor) -> None:
    """A token event names the token, never its key: name, prefix, scopes, expiry, owner."""
    audit.record(
        action,
        actor=actor,
        target_type="api_token",
        target_id=token.pk,
        target_label=f"{token.name} ({token.prefix}…)",
        details={
            "owner": token.user.get_username(),
            "name": token.name,
            "prefix": token.prefix,
            "scopes": list(token.scopes),
            "expires_at": token.expires_at.isoformat() if token.expires_at else None,
        },
    )


@transaction.atomic
def token_create(
    *,
    user,
    name: str,
    scopes: list[str],
    expires_in_days: int | None = 90,
    parent: ApiToken | None = None,
) -> tuple[ApiToken, str]:
    """(token, the raw key). The raw key is returned here once and stored nowhere.

    A token made by another (`parent`, the API call's own token) has none of the scopes its
    parent lacks, expires no later than its parent (a later or no expiry is cut to the
    parent's), and stops working when its parent is revoked or expires."""
    name = name.strip()
    if not name:
        raise ValidationError({"name": "Name the token after where it is used."})
    unknown = sorted(set(scopes) - set(ApiToken.Scope.values))
    if not scopes or unknown:
        raise ValidationError(
            {
                "scopes": f"Choose among {', '.join(ApiToken.Scope.values)}"
                + (f"; unknown: {', '.join(unknown)}" if unknown else "")
            }
        )
    if expires_in_days is not None and not 1 <= expires_in_days <= MAX_DAYS:
        raise ValidationError({"expires_in_days": f"Between 1 and {MAX_DAYS} days."})
    expires_at = timezone.now() + timedelta(days=expires_in_days) if expires_in_days else None
    if parent is not None:
        lacking = sorted(set(scopes) - set(parent.scopes))
        if lacking:
            raise PermissionDenied(
                f"A token cannot create a token with scopes it lacks ({', '.join(lacking)}); "
                f"this one has: {', '.join(parent.scopes)}."
            )
        if parent.user_id != user.pk:
            raise PermissionDenied("A token makes tokens only for its own user.")
        if parent.expires_at is not None and (expires_at is None or expires_at > parent.expires_at):
            expires_at = parent.expires_at
    raw = PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user,
        name=name,
        prefix=raw[: len(PREFIX) + 6],
        key_hash=_hash(raw),
        scopes=sorted(set(scopes)),
        expires_at=expires_at,
        parent=parent,
    )
    _audit(AuditEvent.Action.TOKEN_CREATED, token, user)
    return token, raw


def _descendants(token: ApiToken) -> list[int]:
    found, frontier = [], [token.pk]
    while frontier:
        frontier = list(
            ApiToken.objects.filter(parent_id__in=frontier).values_list("pk", flat=True)
        )
        found += frontier
    return found


@transaction.atomic
def token_revoke(*, token: ApiToken, actor=None) -> bool:
    """Revoke `token` at once, and every token made from it (and from those). False if
    `token` was revoked already; its descendants still are, if some were not."""
    now = timezone.now()
    revoked = bool(
        ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=now)
    )
    if revoked:
        _audit(AuditEvent.Action.TOKEN_REVOKED, token, actor)
    children = ApiToken.objects.filter(pk__in=_descendants(token), revoked_at__isnull=True)
    for child in children.select_related("user").select_for_update(of=("self",)):
        ApiToken.objects.filter(pk=child.pk).update(revoked_at=now)
        _audit(AuditEvent.Action.TOKEN_REVOKED, child, actor)
    return revoked


_tokens = Rows(ApiToken, "t")
_users = Rows(get_user_model(), "u")
# Every API request reads its token and user: one statement, written out once, rather than
# the ORM compiling a two-table select for each request (about 1 ms of CPU here).
_AUTH_SQL = (
    f"SELECT {_tokens.sql}, {_users.sql} FROM {ApiToken._meta.db_table} t "  # noqa: S608
    f"JOIN {get_user_model()._meta.db_table} u ON u.id = t.user_id WHERE t.key_hash = %s"
)


# A token made by another works only while every token above it does: checked at each
# request (not only at revocation), so it holds for rows made before revocation cascaded.
_ANCESTOR_DEAD_SQL = (
    "WITH RECURSIVE up(id, parent_id, revoked_at, expires_at) AS ("  # noqa: S608
    f" SELECT id, parent_id, revoked_at, expires_at FROM {ApiToken._meta.db_table}"
    " WHERE id = %s UNION ALL"
    " SELECT a.id, a.parent_id, a.revoked_at, a.expires_at"
    f" FROM {ApiToken._meta.db_table} a JOIN up ON a.id = up.parent_id)"
    " SELECT 1 FROM up WHERE revoked_at IS NOT NULL OR expires_at <= %s LIMIT 1"
)


def _ancestor_dead(parent_id: int, now) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(_ANCESTOR_DEAD_SQL, [parent_id, now])
        return cursor.fetchone() is not None


def token_authenticate(raw: str) -> ApiToken | None:
    """The active token for `raw`, or None (unknown, expired or revoked, itself or any token
    it was made from)."""
    with connection.cursor() as cursor:
        cursor.execute(_AUTH_SQL, [_hash(raw)])
        row = cursor.fetchone()
    token = None
    if row is not None:
        token = _tokens.build(row)
        token.user = _users.build(row, offset=len(_tokens))
    now = timezone.now()
    if token is None or not token.is_active(now) or not token.user.is_active:
        return None
    if token.parent_id is not None and _ancestor_dead(token.parent_id, now):
        return None
    if token.last_used_at is None or now - token.last_used_at > TOUCH_EVERY:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token


def user_tokens(user):
    return ApiToken.objects.filter(user=user)
