"""API tokens: created with scopes and an expiry, stored hashed, revocable."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.core.exceptions import ValidationError
from django.utils import timezone

from rubrics.models import ApiToken

PREFIX = "asy_"
MAX_DAYS = 366
TOUCH_EVERY = timedelta(minutes=5)  # how stale last_used_at may get: not a write per request


def _hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def token_create(
    *, user, name: str, scopes: list[str], expires_in_days: int | None = 90
) -> tuple[ApiToken, str]:
    """(token, the raw key). The raw key is returned here once and stored nowhere."""
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
    raw = PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user,
        name=name,
        prefix=raw[: len(PREFIX) + 6],
        key_hash=_hash(raw),
        scopes=sorted(set(scopes)),
        expires_at=timezone.now() + timedelta(days=expires_in_days) if expires_in_days else None,
    )
    return token, raw


def token_revoke(*, token: ApiToken) -> bool:
    return bool(
        ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        )
    )


def token_authenticate(raw: str) -> ApiToken | None:
    """The active token for `raw`, or None (unknown, expired or revoked)."""
    token = ApiToken.objects.select_related("user").filter(key_hash=_hash(raw)).first()
    now = timezone.now()
    if token is None or not token.is_active(now) or not token.user.is_active:
        return None
    if token.last_used_at is None or now - token.last_used_at > TOUCH_EVERY:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token


def user_tokens(user):
    return ApiToken.objects.filter(user=user)
