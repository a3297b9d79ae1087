"""Brute force on the login page and the API's password exchange is cut off (django-axes)."""

from __future__ import annotations

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from tests import factories

pytestmark = pytest.mark.django_db


def test_repeated_wrong_passwords_lock_the_login_page_then_the_api(client, personas):
    username = personas.author.username
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        page = client.post("/login/", {"username": username, "password": "wrong"})
        assert page.status_code == 200  # the form again, with its error
    locked = client.post("/login/", {"username": username, "password": "wrong"})
    assert locked.status_code == 429 and b"Too many failed logins" in locked.content
    # Now even the right password is refused, on the page and through the API.
    right = client.post("/login/", {"username": username, "password": factories.PASSWORD})
    assert right.status_code == 429
    api = APIClient().post(
        "/api/auth/token/", {"username": username, "password": factories.PASSWORD}, format="json"
    )
    assert api.status_code == 429 and "Too many failed logins" in api.json()["detail"]
    # Another user from the same address is not affected.
    other = client.post(
        "/login/", {"username": personas.reviewer.username, "password": factories.PASSWORD}
    )
    assert other.status_code == 302


def test_a_success_resets_the_count(client, personas):
    username = personas.engineer.username
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        client.post("/login/", {"username": username, "password": "wrong"})
    assert (
        client.post("/login/", {"username": username, "password": factories.PASSWORD}).status_code
        == 302
    )
    client.logout()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert (
            client.post("/login/", {"username": username, "password": "wrong"}).status_code == 200
        )
