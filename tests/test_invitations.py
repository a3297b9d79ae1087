"""Membership by invitation (issue 19, item 1): an admin cannot add someone without their
knowing, and inviting tells the admin nothing about which usernames exist."""

from __future__ import annotations

import pytest
from django.urls import reverse

from rubrics.models import AuditEvent, Invitation, Membership
from tests import factories
from tests.test_api import api_client

pytestmark = pytest.mark.django_db


def _told(reply) -> list[str]:
    """What the admin is told after a POST: the messages on the page it redirects to."""
    return [str(m) for m in reply.context["messages"]]


def test_the_admin_gets_the_same_answer_whether_or_not_the_user_exists(client, personas):
    project, admin = personas.project, personas.admin
    existing = factories.make_user()
    client.force_login(admin)
    url = reverse("members", kwargs={"slug": project.slug})
    pages, api_replies = {}, {}
    for name in (existing.username, "no-such-user-x"):
        reply = client.post(url, {"username": name, "role": "author"}, follow=True)
        assert reply.status_code == 200
        pages[name] = [m.replace(name, "NAME") for m in _told(reply)]
        reply = api_client(admin).post(
            f"/api/projects/{project.slug}/members/",
            {"username": name, "role": "reviewer"},
            format="json",
        )
        api_replies[name] = (reply.status_code, reply.json()["detail"].replace(name, "NAME"))
    # Page, API and audit log read the same for both names.
    assert pages[existing.username] == pages["no-such-user-x"]
    assert api_replies[existing.username] == api_replies["no-such-user-x"]
    assert api_replies["no-such-user-x"][0] == 202
    assert "if a user named" in pages["no-such-user-x"][0]
    events = AuditEvent.objects.filter(action="member_invited").order_by("pk")
    assert {e.target_type for e in events} == {"invitation"}
    assert [set(e.details) for e in events] == [{"username", "role"}] * 4
    # Nobody became a member by being named.
    assert not Membership.objects.filter(project=project, user=existing).exists()


def test_the_invited_user_sees_the_invitation_and_accepts_or_declines(client, personas):
    project, admin = personas.project, personas.admin
    invited, other = factories.make_user(), factories.make_user()
    client.force_login(admin)
    url = reverse("members", kwargs={"slug": project.slug})
    client.post(url, {"username": invited.username, "role": "engineer"})
    client.post(url, {"username": other.username, "role": "author"})
    assert invited.username in client.get(url).content.decode()  # pending, for the admin

    # The invitee's home page shows it; nobody else's invitation can be answered.
    client.force_login(invited)
    home = client.get(reverse("home")).content.decode()
    assert project.name in home and "Accept" in home
    (mine,) = Invitation.objects.filter(user=invited)
    theirs = Invitation.objects.get(user=other)
    assert client.post(reverse("invitation_accept", args=[theirs.pk])).status_code == 404
    assert client.get(reverse("project", kwargs={"slug": project.slug})).status_code == 404
    reply = client.post(reverse("invitation_accept", args=[mine.pk]))
    assert reply.status_code == 302
    assert Membership.objects.get(project=project, user=invited).role == "engineer"
    assert client.get(reverse("project", kwargs={"slug": project.slug})).status_code == 200
    assert not Invitation.objects.filter(pk=mine.pk).exists()

    # Declining through the API: no membership, the invitation is gone.
    other_api = api_client(other)
    (listed,) = other_api.get("/api/invitations/").data
    assert listed["project"] == project.slug and listed["role"] == "author"
    assert other_api.post(f"/api/invitations/{theirs.pk}/decline/").status_code == 204
    assert not Membership.objects.filter(project=project, user=other).exists()
    assert other_api.get("/api/invitations/").data == []


def test_a_name_signed_up_after_the_invitation_does_not_inherit_it(client, personas):
    project, admin = personas.project, personas.admin
    client.force_login(admin)
    url = reverse("members", kwargs={"slug": project.slug})
    client.post(url, {"username": "future-user", "role": "admin"})
    squatter = factories.make_user(username="future-user")
    assert api_client(squatter).get("/api/invitations/").data == []
    pending = api_client(admin).get(f"/api/projects/{project.slug}/invitations/").data
    assert [(i["username"], i["role"]) for i in pending] == [("future-user", "admin")]
    # The admin withdraws it, as any pending invitation.
    cancel = reverse("invitation_cancel", kwargs={"slug": project.slug, "username": "future-user"})
    assert client.post(cancel).status_code == 302
    assert not Invitation.objects.filter(project=project).exists()
    client.post(url, {"username": "future-user", "role": "author"})
    base = f"/api/projects/{project.slug}/invitations/"
    assert api_client(admin).delete(f"{base}future-user/").status_code == 204
    assert api_client(admin).delete(f"{base}future-user/").status_code == 400
    assert not Invitation.objects.filter(project=project).exists()


def test_only_admins_invite(personas):
    for persona in (personas.author, personas.reviewer, personas.engineer):
        reply = api_client(persona).post(
            f"/api/projects/{personas.project.slug}/members/",
            {"username": factories.make_user().username, "role": "admin"},
            format="json",
        )
        assert reply.status_code == 403
    assert not Invitation.objects.exists()
