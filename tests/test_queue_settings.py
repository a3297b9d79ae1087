"""A queue's guidelines and reference setting change after creation, by the API (PATCH) and
the queue page, for roles that manage queues only; each change is audited."""

from __future__ import annotations

import pytest
from django.test import Client

from annotation.models import Queue
from rubrics.models import AuditEvent
from tests import factories
from tests.test_api import api_client

pytestmark = pytest.mark.django_db


@pytest.fixture
def queue(personas):
    project, admin = personas.project, personas.admin
    task = factories.make_task(project, "t1")
    grader = factories.make_published_rubric(project, task, [("Advises rest", 1)], admin)
    factories.import_responses(project, [{"task_id": "t1", "model": "m", "response": "Rest."}])
    return factories.make_queue(
        project, grader, [personas.annotator], admin, overlap=1, guidelines="Old rules."
    )


@pytest.mark.parametrize("role", ["admin", "engineer"])
def test_patch_changes_guidelines_and_reference_and_is_audited(personas, queue, role):
    user = personas.by_role()[role]
    answer = api_client(user).patch(
        f"/api/queues/{queue.pk}/",
        {"guidelines": "  Quote the response **before** deciding.  ", "show_reference": True},
        format="json",
    )
    assert answer.status_code == 200, answer.content
    assert answer.json()["guidelines"] == "Quote the response **before** deciding."
    assert answer.json()["show_reference"] is True
    queue.refresh_from_db()
    assert queue.guidelines == "Quote the response **before** deciding."
    assert queue.show_reference is True
    event = AuditEvent.objects.get(action=AuditEvent.Action.QUEUE_CHANGED)
    assert event.actor == user
    assert event.source == AuditEvent.Source.API
    assert event.target_id == str(queue.pk)
    assert event.details == {
        "guidelines": ["Old rules.", "Quote the response **before** deciding."],
        "show_reference": [False, True],
    }


def test_patch_to_empty_guidelines_clears_them(personas, queue):
    answer = api_client(personas.admin).patch(
        f"/api/queues/{queue.pk}/", {"guidelines": ""}, format="json"
    )
    assert answer.status_code == 200, answer.content
    assert Queue.objects.get(pk=queue.pk).guidelines == ""


@pytest.mark.parametrize("role", ["annotator", "author", "reviewer"])
def test_roles_that_do_not_manage_queues_get_403_and_nothing_changes(personas, queue, role):
    answer = api_client(personas.by_role()[role]).patch(
        f"/api/queues/{queue.pk}/", {"guidelines": "Mine now."}, format="json"
    )
    assert answer.status_code == 403
    assert Queue.objects.get(pk=queue.pk).guidelines == "Old rules."
    assert not AuditEvent.objects.filter(action=AuditEvent.Action.QUEUE_CHANGED).exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"guidelines": "x" * 20_001}, "guidelines"),
        ({"guidelines": None}, "guidelines"),
        ({"guidelines": ["a list"]}, "guidelines"),
        ({"guidelines": "nul \x00 byte"}, "guidelines"),
        ({"show_reference": "perhaps"}, "show_reference"),
        ({"show_reference": None}, "show_reference"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(personas, queue, body, field):
    answer = api_client(personas.admin).patch(f"/api/queues/{queue.pk}/", body, format="json")
    assert answer.status_code == 400
    assert field in str(answer.json())
    assert Queue.objects.get(pk=queue.pk).guidelines == "Old rules."


def test_queue_page_edits_guidelines_for_managers_only(personas, queue):
    admin = Client()
    admin.force_login(personas.admin)
    page = admin.get(f"/queues/{queue.pk}/")
    assert b'data-testid="queue-settings"' in page.content
    assert b"Old rules." in page.content
    saved = admin.post(
        f"/queues/{queue.pk}/", {"guidelines": "New rules.", "show_reference": "1"}, follow=True
    )
    assert saved.status_code == 200
    assert b"New rules." in saved.content
    queue.refresh_from_db()
    assert (queue.guidelines, queue.show_reference) == ("New rules.", True)
    event = AuditEvent.objects.get(action=AuditEvent.Action.QUEUE_CHANGED)
    assert event.source == AuditEvent.Source.WEB
    # Too long: the form again, with the error at the field and the text kept.
    too_long = admin.post(f"/queues/{queue.pk}/", {"guidelines": "y" * 20_001})
    assert too_long.status_code == 200
    assert b"guidelines: Guidelines are at most 20,000 characters" in too_long.content
    assert Queue.objects.get(pk=queue.pk).guidelines == "New rules."
    # A reviewer sees the guidelines, without the form, and may not post.
    reviewer = Client()
    reviewer.force_login(personas.reviewer)
    shown = reviewer.get(f"/queues/{queue.pk}/")
    assert b"New rules." in shown.content
    assert b'data-testid="queue-settings"' not in shown.content
    assert reviewer.post(f"/queues/{queue.pk}/", {"guidelines": "x"}).status_code == 403
    annotator = Client()
    annotator.force_login(personas.annotator)
    assert annotator.post(f"/queues/{queue.pk}/", {"guidelines": "x"}).status_code == 403
    assert Queue.objects.get(pk=queue.pk).guidelines == "New rules."
