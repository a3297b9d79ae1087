"""Review: reviewers see every field they approve, an inbox, threads, a word-level compare."""

from __future__ import annotations

import html

import pytest
from django.core.exceptions import ValidationError

from rubrics import event_text, selectors, services
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
    reply = comment.replies.first()
    with pytest.raises(ValidationError, match="first comment"):
        services.comment_resolve(comment=reply, user=p.author)  # a thread resolves as one
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


def test_the_review_inbox_lists_versions_in_review_and_who_may_approve(
    client, personas, django_assert_num_queries
):
    p = personas
    rubric, draft = _full_rubric(p)
    services.version_submit(version=draft, user=p.author)
    services.comment_add(version=draft, user=p.reviewer, body="One")
    done = services.comment_add(version=draft, user=p.reviewer, body="Two")
    services.comment_reply(comment=done, user=p.author, body="A reply is not an open comment")
    services.comment_resolve(comment=done, user=p.author)
    # A reviewer's own draft is in the inbox too, but they may not approve it.
    own = services.rubric_create(
        project=p.project,
        title="Own <script>",
        user=p.reviewer,
        criteria=[services.clean_criterion("Says hello", 1)],
    ).versions.get()
    services.version_submit(version=own, user=p.reviewer)
    services.rubric_create(project=p.project, title="Still a draft", user=p.author)
    other = factories.make_project(owner=factories.make_user())
    services.rubric_create(project=other, title="Elsewhere", user=other.created_by)

    client.force_login(p.reviewer)
    with django_assert_num_queries(4):  # session, user, membership, the versions
        page = client.get(f"/p/{p.project.slug}/reviews/")
    body = page.content.decode()
    assert page.status_code == 200
    assert "Full" in body and "Own &lt;script&gt;" in body and "Still a draft" not in body
    assert "Elsewhere" not in body
    assert f'href="/p/{p.project.slug}/reviews/"' in body  # in the project nav

    items = api_client(p.reviewer).get(f"/api/projects/{p.project.slug}/reviews/").json()
    by_title = {i["rubric_title"]: i for i in items["results"]}
    assert set(by_title) == {"Full", "Own <script>"}
    assert by_title["Full"]["open_comments"] == 1
    assert by_title["Full"]["author"] == p.author.username
    assert by_title["Full"]["submitted_at"]
    assert by_title["Full"]["may_approve"] is True
    assert by_title["Own <script>"]["may_approve"] is False
    # The author sees the inbox, and may approve nothing.
    mine = api_client(p.author).get(f"/api/projects/{p.project.slug}/reviews/").json()
    assert [i["may_approve"] for i in mine["results"]] == [False, False]
    assert (
        api_client(p.annotator).get(f"/api/projects/{p.project.slug}/reviews/").status_code == 403
    )


def test_compare_marks_words_changed_and_criteria_moved(client, personas):
    p = personas
    grader = factories.make_published_rubric(
        p.project,
        factories.make_task(p.project),
        [("Keep", 1), ("Says the dose is 5 mg daily", 2), ("Third", 3), ("Last <b>bold</b>", 4)],
        p.author,
    )
    v1 = grader.version
    v2 = services.draft_for_edit(rubric=v1.rubric, user=p.author)
    dose = v2.criteria.get(text__startswith="Says")
    services.criterion_update(criterion=dose, text="Says the dose is 10 mg <i>twice</i> daily")
    last = v2.criteria.get(text__startswith="Last")
    for _ in range(3):  # to the top: one move, not three criteria pushed down
        services.criterion_move(criterion=last, offset=-1)
    rows = selectors.version_diff(v1, v2)
    assert [(r["status"], (r["right"] or r["left"])["text"][:4]) for r in rows] == [
        ("moved", "Last"),
        ("same", "Keep"),
        ("changed", "Says"),
        ("same", "Thir"),
    ]
    assert rows[0]["moved"] == {"from": 4, "to": 1}
    assert rows[2]["moved"] is None and rows[2]["changed"] == ["text"]
    assert rows[2]["words"] == [
        {"op": "equal", "text": "Says the dose is "},
        {"op": "delete", "text": "5"},
        {"op": "insert", "text": "10"},
        {"op": "equal", "text": " mg "},
        {"op": "insert", "text": "<i>twice</i> "},
        {"op": "equal", "text": "daily"},
    ]
    client.force_login(p.reviewer)
    page = client.get(f"/rubrics/{v1.rubric_id}/diff/?a=1&b=2").content.decode()
    assert "Says the dose is <del>5</del> mg daily" in page  # the old text, deletions marked
    assert "Says the dose is <ins>10</ins> mg <ins>&lt;i&gt;twice&lt;/i&gt; </ins>daily" in page
    assert "<i>twice" not in page
    assert "moved from #4 to #1" in page and "1 moved" in page
    api = api_client(p.reviewer).get(f"/api/rubrics/{v1.rubric_id}/diff/?a=1&b=2").json()
    assert api[0]["moved"] == {"from": 4, "to": 1} and api[2]["words"] == rows[2]["words"]


def test_a_reply_reads_as_a_sentence_in_the_history():
    assert event_text.rubric_event("comment_replied", {"body": "Which number?"}) == (
        "Replied to a comment: “Which number?”."
    )
