"""Review: reviewers see every field they approve, an inbox, threads, a word-level compare."""

from __future__ import annotations

import html

import pytest

from rubrics import services
from tests import factories

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
