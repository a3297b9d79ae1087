"""API tokens: hashed at rest, scoped, expiring, revocable."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from rubrics import tokens
from rubrics.models import ApiToken
from tests import factories

pytestmark = pytest.mark.django_db


def client_with(raw: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {raw}")
    return client


def test_only_the_hash_is_stored(personas):
    token, raw = tokens.token_create(user=personas.admin, name="ci", scopes=["read"])
    assert raw.startswith("asy_") and len(raw) > 40
    stored = ApiToken.objects.get(pk=token.pk)
    assert raw not in (stored.key_hash, stored.prefix) and stored.prefix == raw[:10]
    assert client_with(raw).get("/api/projects/").status_code == 200
    assert raw not in str(client_with(raw).get("/api/tokens/").json())


def test_scopes_limit_what_a_token_may_do(personas):
    slug = personas.project.slug
    _, read_only = tokens.token_create(user=personas.admin, name="r", scopes=["read"])
    reply = client_with(read_only).post(f"/api/projects/{slug}/tasks/", {}, format="json")
    assert reply.status_code == 403 and "'write' scope" in reply.json()["detail"]
    _, writer = tokens.token_create(user=personas.admin, name="w", scopes=["read", "write"])
    reply = client_with(writer).post(f"/api/projects/{slug}/runs/", {}, format="json")
    assert reply.status_code == 403 and "'grade' scope" in reply.json()["detail"]
    assert (
        client_with(writer).post(f"/api/projects/{slug}/tasks/", {}, format="json").status_code
        == 400
    )
    # A token cannot mint a token with more scopes than it has.
    reply = client_with(writer).post(
        "/api/tokens/", {"name": "x", "scopes": ["grade"]}, format="json"
    )
    assert reply.status_code == 403


def test_expired_and_revoked_tokens_stop_working(personas):
    token, raw = tokens.token_create(user=personas.admin, name="t", scopes=["read", "write"])
    client = client_with(raw)
    created = client.post("/api/tokens/", {"name": "second", "scopes": ["read"]}, format="json")
    assert created.status_code == 201
    second = created.json()
    assert client_with(second["token"]).get("/api/projects/").status_code == 200
    assert client.delete(f"/api/tokens/{second['id']}/").status_code == 204
    reply = client_with(second["token"]).get("/api/projects/")
    assert reply.status_code == 401 and "revoked" in reply.json()["detail"]
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert client.get("/api/projects/").status_code == 401


def test_password_exchange_gives_an_expiring_token(personas):
    reply = APIClient().post(
        "/api/auth/token/",
        {"username": personas.engineer.username, "password": factories.PASSWORD},
        format="json",
    )
    assert reply.status_code == 200
    body = reply.json()
    assert sorted(body["scopes"]) == ["grade", "read", "write"] and body["expires_at"]
    assert client_with(body["token"]).get("/api/projects/").status_code == 200
    wrong = APIClient().post(
        "/api/auth/token/", {"username": personas.engineer.username, "password": "no"}
    )
    assert wrong.status_code == 400


def test_bad_token_requests_are_refused_with_a_reason(personas):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token")
    assert client.get("/api/projects/").status_code == 401
    reply = client_with(personas.admin.username).get("/api/projects/")
    assert reply.status_code == 401 and "Unknown" in reply.json()["detail"]
    reply = client_with("x").post("/api/tokens/", {"name": "", "scopes": []}, format="json")
    assert reply.status_code == 401


def test_the_tokens_page_shows_a_key_once_and_revokes(client, personas):
    client.force_login(personas.author)
    page = client.post(
        "/tokens/", {"name": "trainer", "scopes": ["read", "grade"], "expires_in_days": 30}
    )
    assert page.status_code == 200
    token = ApiToken.objects.get(user=personas.author)
    raw = page.context["created"]["raw"]
    assert raw.encode() in page.content
    assert raw.encode() not in client.get("/tokens/").content  # never shown again
    # Another user's token cannot be revoked from here.
    other, _ = tokens.token_create(user=personas.admin, name="admin's", scopes=["read"])
    assert client.post(f"/tokens/{other.pk}/revoke/").status_code == 404
    assert client.post(f"/tokens/{token.pk}/revoke/").status_code == 302
    assert client_with(raw).get("/api/projects/").status_code == 401
    client.logout()
    assert client.get("/tokens/").status_code == 302


def test_a_token_never_makes_one_that_outlives_or_out_scopes_it(personas):
    """Issue 19, item 9: a one-day `write` token made a child that never expired and kept
    working after the parent was revoked."""
    parent, raw = tokens.token_create(
        user=personas.admin, name="ci", scopes=["read", "write"], expires_in_days=1
    )
    client = client_with(raw)
    reply = client.post(
        "/api/tokens/",
        {"name": "child", "scopes": ["read", "write", "grade"], "expires_in_days": None},
        format="json",
    )
    assert reply.status_code == 403 and "grade" in reply.json()["detail"]
    reply = client.post(
        "/api/tokens/",
        {"name": "child", "scopes": ["read", "write"], "expires_in_days": None},
        format="json",
    )
    assert reply.status_code == 201, reply.content
    child = reply.json()
    parent.refresh_from_db()
    assert child["expires_at"] is not None
    assert ApiToken.objects.get(pk=child["id"]).expires_at == parent.expires_at
    # A grandchild, then revoking the parent: all three stop working at once.
    reply = client_with(child["token"]).post(
        "/api/tokens/", {"name": "grandchild", "scopes": ["read"]}, format="json"
    )
    assert reply.status_code == 201, reply.content
    grandchild = reply.json()
    assert client_with(grandchild["token"]).get("/api/projects/").status_code == 200
    assert client.delete(f"/api/tokens/{parent.pk}/").status_code == 204
    for key in (raw, child["token"], grandchild["token"]):
        assert client_with(key).get("/api/projects/").status_code == 401
    assert not ApiToken.objects.filter(
        pk__in=[child["id"], grandchild["id"]], revoked_at=None
    ).exists()


def test_a_child_stops_working_when_an_ancestor_expires_or_was_revoked_before(personas):
    """Rows made before revocation cascaded: authentication checks the ancestors itself."""
    parent, raw = tokens.token_create(user=personas.admin, name="ci", scopes=["read"])
    child, child_raw = tokens.token_create(
        user=personas.admin, name="child", scopes=["read"], parent=parent
    )
    assert client_with(child_raw).get("/api/projects/").status_code == 200
    ApiToken.objects.filter(pk=parent.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert client_with(child_raw).get("/api/projects/").status_code == 401
    ApiToken.objects.filter(pk=parent.pk).update(expires_at=None, revoked_at=timezone.now())
    assert ApiToken.objects.get(pk=child.pk).revoked_at is None  # revoked around the service
    assert client_with(child_raw).get("/api/projects/").status_code == 401
