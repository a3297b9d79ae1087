"""Try it and the prompt preview: a draft graded now, through the real engine and simulator."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils.html import escape

from annotation.models import Verdict
from grading.judges import prompts
from rubrics import selectors, services
from rubrics.models import Grader
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def draft(personas):
    task = services.task_create(
        project=personas.project,
        external_id="chest",
        title="Chest pain",
        messages="I have chest pain. What should I do?",
        reference="Call emergency services now.",
    )
    rubric = services.rubric_create(
        project=personas.project,
        task=task,
        title="Chest pain rubric",
        user=personas.author,
        criteria=[
            services.clean_criterion("Advises calling emergency services immediately", 5),
            services.clean_criterion(
                "Mentions 911", 2, kind="checked", check_spec={"type": "contains", "value": "911"}
            ),
            services.clean_criterion("Recommends waiting overnight at home", -5),
        ],
    )
    return rubric


def test_try_it_grades_a_draft_with_the_project_judge(client, personas, sim, draft):
    judge = factories.make_judge(personas.project, sim.url)
    client.force_login(personas.author)
    reply = client.post(
        reverse("rubric_try", kwargs={"pk": draft.pk}),
        {
            "action": "grade",
            "judge": judge.pk,
            "response": "Call emergency services immediately: dial 911.",
        },
    )
    assert reply.status_code == 200
    body = reply.content.decode()
    assert body.count('data-testid="try-verdict"') == 3
    # 5 (judged, met) + 2 (checked, met) of 7 positive points; the pitfall is not met.
    assert "Score: <strong>1.000</strong>" in body
    assert "checked" in body and "simulated" in body
    assert sim.stats.requests == 2  # the checked criterion made no judge call
    # Nothing was stored: no verdicts, no grader, the draft is still a draft.
    assert not Verdict.objects.exists() and not Grader.objects.exists()
    assert draft.versions.get().status == "draft"


def test_try_it_says_a_missed_gate_capped_the_score(client, personas, sim, draft):
    version = draft.versions.get()
    gate = version.criteria.get(position=0)
    services.criterion_update(criterion=gate, gate=True)
    judge = factories.make_judge(personas.project, sim.url)
    client.force_login(personas.author)
    reply = client.post(
        reverse("rubric_try", kwargs={"pk": draft.pk}),
        {"action": "grade", "judge": judge.pk, "response": "Recommends waiting overnight at home"},
    )
    body = reply.content.decode()
    # The pitfall is met (-5 of 7 positive points) and the gate missed: -0.714 stays.
    assert "Score: <strong>-0.714</strong>" in body
    assert 'data-testid="try-gated"' in body and f"“{gate.text}”" in body


def test_try_it_names_missing_inputs(client, personas, draft):
    client.force_login(personas.author)
    reply = client.post(
        reverse("rubric_try", kwargs={"pk": draft.pk}), {"action": "grade", "response": "x"}
    )
    assert "judge: choose one" in reply.content.decode()


def test_prompt_preview_shows_the_exact_judge_messages(client, personas, draft):
    criterion = draft.versions.get().criteria.get(position=0)
    client.force_login(personas.reviewer)
    reply = client.get(
        reverse("rubric_try", kwargs={"pk": draft.pk}),
        {"action": "preview", "criterion": criterion.pk, "response": "Rest & wait."},
    )
    spec = selectors.version_spec(draft.versions.get())
    expected = prompts.judge_messages(
        spec,
        messages=draft.task.messages,
        response="Rest & wait.",
        criterion=next(c for c in spec["criteria"] if c["id"] == criterion.pk),
    )
    body = reply.content.decode()
    for message in expected:
        assert escape(message["content"]) in body
    assert "Reference answer" not in expected[1]["content"]


def test_the_reference_reaches_the_prompt_when_the_rubric_includes_it(personas, draft):
    services.rubric_settings_update(rubric=draft, include_reference=True, user=personas.author)
    spec = selectors.version_spec(draft.versions.get())
    (user_message,) = [
        m
        for m in prompts.judge_messages(
            spec, messages=[], response="r", criterion=spec["criteria"][0]
        )
        if m["role"] == "user"
    ]
    assert "Call emergency services now." in user_message["content"]
    assert "REFERENCE" in user_message["content"]
