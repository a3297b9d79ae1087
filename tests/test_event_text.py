"""History and audit pages speak in sentences, not action codes and Python dicts."""

from __future__ import annotations

import re

import pytest

from rubrics import event_text, services
from tests import factories

pytestmark = pytest.mark.django_db


def test_each_rubric_event_reads_as_a_sentence():
    assert (
        event_text.rubric_event(
            "criterion_changed", {"points": ["5", "3"], "text": ["Old", "New"], "group": [1, 2]}
        )
        == "Changed the criterion's points from “5” to “3”, text from “Old” to “New” and "
        "moved it to another group."
    )
    assert (
        event_text.rubric_event("criterion_moved", {"to": 2}) == "Moved a criterion to position 3."
    )
    assert event_text.rubric_event("published", {"grader": "ab" * 32}) == (
        "Published; grader abababababab."
    )
    assert event_text.rubric_event("brand_new_thing", {"count": 3}) == "Brand new thing: count 3."


def test_audit_details_read_as_words():
    assert event_text.details({"from": "annotator", "to": "reviewer"}) == (
        "from “annotator” to “reviewer”"
    )
    assert event_text.details({"format": "verdicts-jsonl", "params": {}}) == (
        "format “verdicts-jsonl”; parameters none"
    )
    assert event_text.details({"output_per_mtok": ["8.0000", "10"]}) == (
        "output price per million tokens from “8.0000” to “10”"
    )


def test_history_and_audit_pages_show_no_codes_or_dicts(client, personas):
    p = personas
    task = factories.make_task(p.project)
    rubric = services.rubric_create(project=p.project, title="Triage", user=p.author, task=task)
    version = rubric.versions.get()
    criterion = services.criterion_add(
        version=version, user=p.author, text="Names the drug", points=3
    )
    services.criterion_update(criterion=criterion, user=p.author, points=5)
    services.membership_set(
        project=p.project, username=p.annotator.username, role="reviewer", actor=p.admin
    )

    client.force_login(p.admin)
    history = client.get(f"/rubrics/{rubric.pk}/history/").content.decode()
    assert "Added the criterion “Names the drug” (3 points)." in history
    assert "Changed the criterion&#x27;s points from 3 to 5." in history
    audit = client.get(f"/p/{p.project.slug}/audit/").content.decode()
    assert "from “annotator” to “reviewer”" in audit
    for body in (history, audit):
        visible = re.sub(r"<[^>]+>", " ", body)  # attributes may keep the codes for scripts
        assert not re.search(r"\{'|\{&#x27;|criterion_added|criterion_changed", visible)
