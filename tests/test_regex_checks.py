"""Regex checks run on RE2: linear time whatever the pattern, and the syntax RE2 refuses is
refused when the criterion is saved, naming the field (Assay issue 19, item 6)."""

from __future__ import annotations

import time

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from rubrics import checks, services
from tests import factories
from tests.test_api import api_client

pytestmark = pytest.mark.django_db

CATASTROPHIC = r"^(a+)+$"  # backtracking engines take 2^n steps on "aaa...a!"
HOSTILE = "a" * 28 + "!"


def checked(pattern: str, points: int = 1):
    return services.clean_criterion(
        "Matches the pattern",
        points,
        kind="checked",
        check_spec={"type": "regex", "pattern": pattern},
    )


@pytest.fixture
def task(personas):
    return factories.make_task(personas.project, "t-regex")


def test_try_it_runs_the_catastrophic_pattern_in_linear_time(client, personas, sim, task):
    rubric = services.rubric_create(
        project=personas.project,
        task=task,
        title="Regex",
        user=personas.author,
        criteria=[checked(CATASTROPHIC)],
    )
    judge = factories.make_judge(personas.project, sim.url)
    client.force_login(personas.author)
    url = reverse("rubric_try", kwargs={"pk": rubric.pk})
    client.post(url, {"action": "grade", "judge": judge.pk, "response": "aaa"})  # warm up
    started = time.perf_counter()
    reply = client.post(url, {"action": "grade", "judge": judge.pk, "response": HOSTILE})
    elapsed = time.perf_counter() - started
    assert reply.status_code == 200
    assert "Pattern did not match." in reply.content.decode()
    assert elapsed < 1.0, f"try it took {elapsed:.2f} s"


def test_the_reward_endpoint_runs_the_catastrophic_pattern_in_linear_time(personas, sim, task):
    grader = services.version_publish(
        version=services.rubric_create(
            project=personas.project,
            task=task,
            title="Regex",
            user=personas.admin,
            criteria=[checked(CATASTROPHIC)],
        ).versions.get(),
        user=personas.admin,
    )
    factories.make_judge(personas.project, sim.url)
    client = api_client(personas.engineer)
    url = f"/api/graders/{grader.hash}/score/"
    client.post(url, {"task": task.external_id, "responses": ["aaa"]}, format="json")  # warm up
    started = time.perf_counter()
    reply = client.post(
        url,
        {"task": task.external_id, "responses": [HOSTILE, "a" * 28]},
        format="json",
    )
    elapsed = time.perf_counter() - started
    assert reply.status_code == 200, reply.content
    scores = [r["score"] for r in reply.json()]
    assert scores == [0.0, 1.0]
    assert elapsed < 1.0, f"the reward endpoint took {elapsed:.2f} s"


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        (r"(a)\1", "backreference"),
        (r"price(?= USD)", "lookahead"),
        (r"(?<!not )safe", "lookbehind"),
    ],
)
def test_syntax_re2_refuses_is_refused_when_saved_naming_the_field(pattern, why):
    with pytest.raises(ValidationError) as caught:
        checked(pattern)
    messages = caught.value.message_dict["check.pattern"]
    assert "RE2" in messages[0] and "backreferences" in messages[0], (why, messages)


def test_the_api_names_the_criterion_and_its_pattern(personas, task):
    reply = api_client(personas.author).post(
        f"/api/projects/{personas.project.slug}/rubrics/",
        {
            "task": task.external_id,
            "title": "Regex",
            "criteria": [
                {"text": "Fine", "points": 1},
                {
                    "text": "Repeats a word",
                    "points": 1,
                    "kind": "checked",
                    "check": {"type": "regex", "pattern": r"(\w+) \1"},
                },
            ],
        },
        format="json",
    )
    assert reply.status_code == 400, reply.content
    errors = reply.json()
    assert list(errors) == ["criteria[1].check.pattern"], errors
    assert "backreferences" in errors["criteria[1].check.pattern"][0]


def test_a_pattern_saved_before_re2_is_an_error_verdict_not_unmet():
    """A grader published before this change may hold a lookaround: grading it is an error
    that says why, never an invented "unmet"."""
    from grading import engine

    graded = engine.grade_checked({"id": 1, "check": {"type": "regex", "pattern": r"a(?=b)"}}, "ab")
    assert graded.outcome == "error" and "RE2" in graded.error


def test_the_check_itself_is_linear_on_a_long_hostile_text():
    check = checks.validate({"type": "regex", "pattern": CATASTROPHIC})
    started = time.perf_counter()
    assert checks.evaluate(check, "a" * (checks.MAX_TEXT - 1) + "!")[0] is False
    assert time.perf_counter() - started < 0.5


def test_ignore_case_and_the_match_shown():
    check = checks.validate({"type": "regex", "pattern": r"\bINR\b", "ignore_case": True})
    assert checks.evaluate(check, "paid in inr today") == (True, "Pattern matched: 'inr'.")
    strict = checks.validate({"type": "regex", "pattern": r"\bINR\b"})
    assert checks.evaluate(strict, "paid in inr today")[0] is False


def test_a_json_path_with_a_unicode_digit_is_no_field_not_a_crash():
    check = checks.validate({"type": "json_field", "path": "items.²", "equals": 1})
    assert checks.evaluate(check, '{"items": [1, 2, 3]}') == (False, "No field at 'items.²'.")


def test_the_editor_names_the_pattern_and_keeps_the_saved_one(client, personas, task):
    rubric = services.rubric_create(
        project=personas.project,
        task=task,
        title="Regex",
        user=personas.author,
        criteria=[checked(r"\b911\b")],
    )
    criterion = rubric.versions.get().criteria.get()
    client.force_login(personas.author)
    reply = client.post(
        f"/criteria/{criterion.pk}/",
        {"kind_now": "checked", "check_type": "regex", "check_value": r"(\d)\1"},
        HTTP_HX_REQUEST="true",
    )
    body = reply.content.decode()
    assert "check.pattern" in body and "backreferences" in body, body[:2000]
    criterion.refresh_from_db()
    assert criterion.check_spec["pattern"] == r"\b911\b"
