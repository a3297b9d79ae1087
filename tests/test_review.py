"""Review: reviewers see every field they approve, an inbox, threads, a word-level compare."""

from __future__ import annotations

import html

import pytest

from rubrics import services
from tests import factories
from tests.test_api import api_client

pytestmark = pytest.mark.django_db


def _full_rubric(p):
    """A rubric in review whose criteria set every field the editor can set."""
    task = factories.make_task(p.project, "full")
    rubric = services.rubric_create(project=p.project, task=task, title="Full", user=p.author)
    draft = rubric.versions.get()
    services.criterion_add(
        version=draft,
        text="Advises calling emergency services",
        points=5,
        importance="essential",
        tags="accuracy, urgency-tag",
        guidance="Any emergency number counts-guidance.",
        example_met="Call 911 now-met.",
        example_unmet="Rest and see-unmet.",
        gate=True,
    )
    services.criterion_add(
        version=draft,
        text="Clarity",
        points=3,
        kind="scale",
        scale="Confusing-level\nUnderstandable-level\nClear and well ordered-level",
    )
    services.criterion_add(
        version=draft,
        text="Mentions the hotline",
        points=2,
        kind="checked",
        check_spec={"type": "contains", "value": "Hotline-911", "case_sensitive": True},
    )
    rate = services.criterion_add(
        version=draft,
        text="Gives the rate",
        points=2,
        kind="checked",
        check_spec={"type": "number", "value": 6.25, "tolerance": 0.05},
    )
    services.criterion_indent(criterion=rate)  # the previous criterion and this one: a group
    rate.refresh_from_db()
    services.group_update(group=rate.group, title="Checks-group", weight="3")
    services.criterion_update(criterion=rate, weight="2.5")
    services.criterion_add(version=draft, text="Recommends driving oneself", points=-4)
    return rubric, draft


def test_a_reviewer_sees_every_field_of_what_they_approve(client, personas):
    p = personas
    rubric, draft = _full_rubric(p)
    services.version_submit(version=draft, user=p.author)
    client.force_login(p.reviewer)
    for status in ("in review", "published"):
        page = html.unescape(client.get(f"/rubrics/{rubric.pk}/").content.decode())
        for shown in (
            "Advises calling emergency services",
            "Essential",
            "Pitfall",
            "accuracy, urgency-tag",
            "Any emergency number counts-guidance.",
            "Call 911 now-met.",
            "Rest and see-unmet.",
            "yes: not met makes the score 0",
            "Confusing-level",
            "Understandable-level",
            "Clear and well ordered-level",
            "Hotline-911",
            "match case",
            "6.25",
            "tolerance 0.05",
            "Checks-group",
            "weight 3",
            "2.5",
        ):
            assert shown in page, (status, shown)
        if status == "in review":
            services.version_approve(version=draft, user=p.reviewer, role="reviewer")


def test_a_comment_takes_replies_until_it_is_resolved(client, personas):
    p = personas
    rubric, draft = _full_rubric(p)
    services.version_submit(version=draft, user=p.author)
    comment = services.comment_add(version=draft, user=p.reviewer, body="Too vague <b>x</b>")
    # The author answers on the page, the reviewer through the API; both show in the thread.
    client.force_login(p.author)
    answer = client.post(f"/comments/{comment.pk}/replies/", {"body": "Vague how? <i>y</i>"})
    assert answer.status_code == 302
    api = api_client(p.reviewer)
    made = api.post(
        f"/api/comments/{comment.pk}/replies/", {"body": "Name the number."}, format="json"
    )
    assert made.status_code == 201, made.content
    assert made.json()["parent"] == comment.pk
    page = client.get(f"/rubrics/{rubric.pk}/").content.decode()
    assert "Vague how? &lt;i&gt;y&lt;/i&gt;" in page and "Name the number." in page
    listed = api.get(f"/api/rubrics/{rubric.pk}/comments/").json()["results"]
    assert [c["id"] for c in listed] == [comment.pk]  # replies sit in the thread, not the list
    assert [r["body"] for r in listed[0]["replies"]] == ["Vague how? <i>y</i>", "Name the number."]
    # Replies are not open comments: resolving the thread lets the reviewer approve.
    services.comment_resolve(comment=comment, user=p.author)
    refused = api.post(
        f"/api/comments/{comment.pk}/replies/", {"body": "One more thing"}, format="json"
    )
    assert refused.status_code == 400
    assert "resolved" in refused.content.decode()
    assert comment.replies.count() == 2
    client.post(f"/comments/{comment.pk}/replies/", {"body": "late"})
    assert "resolved" in client.get(f"/rubrics/{rubric.pk}/").content.decode()
    services.version_approve(version=draft, user=p.reviewer, role="reviewer")


def test_an_annotator_may_not_reply(personas):
    p = personas
    rubric, draft = _full_rubric(p)
    services.version_submit(version=draft, user=p.author)
    comment = services.comment_add(version=draft, user=p.reviewer, body="Why?")
    answer = api_client(p.annotator).post(
        f"/api/comments/{comment.pk}/replies/", {"body": "x"}, format="json"
    )
    assert answer.status_code == 403
    assert not comment.replies.exists()
