"""Sign-up: closed unless the operator opens it (ASSAY_SIGNUP); when open, the new account
is signed in (issue 19, item 8: it answered 500 after creating the account)."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

pytestmark = pytest.mark.django_db

FORM = {"username": "newcomer", "password1": "a-long-Passphrase-42", "password2": ""}
FORM["password2"] = FORM["password1"]


def test_signup_when_open_creates_the_account_and_signs_it_in(client, settings):
    settings.SIGNUP_OPEN = True
    assert b"Sign up" in client.get("/login/").content
    assert client.get("/signup/").status_code == 200
    reply = client.post("/signup/", FORM)
    assert reply.status_code == 302 and reply["Location"] == "/"
    user = get_user_model().objects.get(username="newcomer")
    home = client.get("/")
    assert home.status_code == 200 and home.context["user"] == user
    # The new account signs in again with its password, through the throttled backend too.
    client.logout()
    reply = client.post("/login/", {"username": "newcomer", "password": FORM["password1"]})
    assert reply.status_code == 302


def test_signup_is_closed_by_default(client, settings):
    assert settings.SIGNUP_OPEN is False  # the test settings are the default's
    assert client.get("/signup/").status_code == 404
    assert client.post("/signup/", FORM).status_code == 404
    assert not get_user_model().objects.filter(username="newcomer").exists()
    login = client.get("/login/").content.decode()
    assert "/signup/" not in login and "Ask this server's operator" in login
