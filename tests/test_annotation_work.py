"""Per-queue guidelines and the reference answer on the annotation page, set on create (page
and API); and an annotator's "My work": their own turns only, blind, revisited read-only."""

from __future__ import annotations

import pytest
from django.urls import reverse

from annotation import services
from annotation.models import Assignment, Queue
from rubrics import services as rubric_services
from rubrics.models import Role
from tests import factories
from tests.test_api import api_client

pytestmark = pytest.mark.django_db

CRITERIA = [("Advises hydration", 2), ("Mentions rest", 1)]
GUIDELINES = "Read the **whole** answer first.\n\n<script>alert(1)</script>"


@pytest.fixture
def world(personas):
    p = personas
    task = factories.make_task(p.project, "t1", prompt="Fever, what now?")
    rubric_services.reference_add(task=task, body="Rest and *plenty* of fluids.", user=p.admin)
    grader = factories.make_published_rubric(p.project, task, CRITERIA, p.admin)
    factories.import_responses(
        p.project,
        [
            {"task_id": "t1", "model": "secret-model-x", "response": f"W{i}.", "sample_index": i}
            for i in range(3)
        ],
    )
    return p, grader


def _annotation_page(client, queue, user) -> str:
    client.force_login(user)
    reply = client.post(reverse("queue_next", args=[queue.pk]))
    assert reply.status_code == 302, reply
    page = client.get(reply["Location"])
    assert page.status_code == 200
    return page.content.decode()


def test_guidelines_and_reference_made_on_the_page_show_sanitized_on_the_annotation_page(
    client, world
):
    p, grader = world
    client.force_login(p.admin)
    reply = client.post(
        reverse("queues", args=[p.project.slug]),
        {
            "name": "With help",
            "grader": grader.hash,
            "overlap": "1",
            "annotators": [p.annotator.username],
            "guidelines": GUIDELINES,
            "show_reference": "1",
        },
    )
    assert reply.status_code == 302
    queue = Queue.objects.get(name="With help")
    assert queue.show_reference is True
    assert queue.guidelines.startswith("Read the **whole**")
    html = _annotation_page(client, queue, p.annotator)
    assert 'data-testid="guidelines"' in html
    assert "<strong>whole</strong>" in html
    assert "<script>alert(1)</script>" not in html
    assert 'data-testid="reference"' in html
    assert "<em>plenty</em> of fluids" in html
    assert "secret-model-x" not in html


def test_without_the_setting_the_reference_stays_hidden(client, world):
    p, grader = world
    queue = factories.make_queue(p.project, grader, [p.annotator], p.admin, overlap=1)
    assert queue.show_reference is False and queue.guidelines == ""
    html = _annotation_page(client, queue, p.annotator)
    assert "plenty" not in html
    assert 'data-testid="reference"' not in html
    assert 'data-testid="guidelines"' not in html


def test_too_long_guidelines_are_refused_on_the_page_and_nothing_is_made(client, world):
    p, grader = world
    client.force_login(p.admin)
    reply = client.post(
        reverse("queues", args=[p.project.slug]),
        {
            "name": "Wordy",
            "grader": grader.hash,
            "overlap": "1",
            "annotators": [p.annotator.username],
            "guidelines": "x" * (services.MAX_GUIDELINES_CHARS + 1),
        },
    )
    assert reply.status_code == 200
    assert "guidelines: Guidelines are at most 20,000 characters" in reply.content.decode()
    assert not Queue.objects.filter(name="Wordy").exists()


def test_the_api_sets_and_reports_guidelines_and_the_reference_setting(world):
    p, grader = world
    url = f"/api/projects/{p.project.slug}/queues/"
    body = {
        "name": "By API",
        "grader": grader.hash,
        "overlap": 1,
        "annotators": [p.annotator.username],
        "guidelines": "Be *strict*.",
        "show_reference": True,
    }
    reply = api_client(p.admin).post(url, body, format="json")
    assert reply.status_code == 201, reply.content
    assert reply.json()["guidelines"] == "Be *strict*."
    assert reply.json()["show_reference"] is True
    queue = Queue.objects.get(name="By API")
    assert (queue.guidelines, queue.show_reference) == ("Be *strict*.", True)
    too_long = {**body, "name": "Long", "guidelines": "x" * (services.MAX_GUIDELINES_CHARS + 1)}
    reply = api_client(p.admin).post(url, too_long, format="json")
    assert reply.status_code == 400
    assert "guidelines" in reply.content.decode()
    assert not Queue.objects.filter(name="Long").exists()
    listed = api_client(p.annotator).get(url).json()
    assert [(q["name"], q["show_reference"]) for q in listed] == [("By API", True)]


def test_my_work_lists_only_my_turns_and_links_to_a_read_only_revisit(client, world):
    p, grader = world
    other = factories.add_member(p.project, Role.ANNOTATOR)
    queue = factories.make_queue(
        p.project, grader, [p.annotator, other], p.admin, overlap=2, name="Fever queue"
    )
    done = factories.annotate(queue, p.annotator, outcomes="unmet")
    going = services.assignment_claim(queue=queue, user=p.annotator)
    services.verdict_save_draft(
        assignment_id=going.pk,
        criterion_id=grader.version.criteria.order_by("position").first().pk,
        outcome="met",
    )
    theirs = factories.annotate(queue, other)
    client.force_login(p.annotator)
    html = client.get(reverse("my_work", args=[p.project.slug])).content.decode()
    assert html.count('data-status="') == 2
    assert html.index('data-status="active"') < html.index('data-status="submitted"')
    assert reverse("assignment", args=[done.pk]) in html
    assert reverse("assignment", args=[going.pk]) in html
    assert reverse("assignment", args=[theirs.pk]) not in html
    assert "Fever queue" in html and "Revisit" in html and "Continue" in html
    assert "secret-model-x" not in html
    # The revisit is read-only: the verdicts are shown, the form is disabled, writes refused.
    page = client.get(reverse("assignment", args=[done.pk])).content.decode()
    assert 'data-testid="closed"' in page and '<fieldset class="plain" disabled>' in page
    assert 'value="unmet" checked' in page
    reply = client.post(
        reverse("assignment_draft", args=[done.pk]),
        {"criterion": grader.version.criteria.first().pk, "outcome": "met"},
    )
    assert reply.status_code in (302, 400)
    assert set(done.verdicts.values_list("outcome", flat=True)) == {"unmet"}
    # Another annotator's turn stays theirs; other roles have no My work.
    assert client.get(reverse("assignment", args=[theirs.pk])).status_code == 404
    for user in (p.admin, p.reviewer, p.author, p.engineer):
        client.force_login(user)
        assert client.get(reverse("my_work", args=[p.project.slug])).status_code == 403


def test_my_work_reads_in_a_fixed_number_of_queries(client, world, django_assert_max_num_queries):
    p, grader = world
    queue = factories.make_queue(p.project, grader, [p.annotator], p.admin, overlap=1)
    while factories.annotate(queue, p.annotator) is not None:
        pass
    assert Assignment.objects.filter(annotator=p.annotator).count() == 3
    client.force_login(p.annotator)
    with django_assert_max_num_queries(12):
        reply = client.get(reverse("my_work", args=[p.project.slug]))
    assert reply.content.decode().count('data-status="submitted"') == 3
