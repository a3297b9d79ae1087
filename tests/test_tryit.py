"""Try it and the prompt preview: a draft graded now, through the real engine and simulator."""

from __future__ import annotations

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
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


# --- Episodes: pasted or uploaded as JSON ----------------------------------------------------

EPISODE = {
    "messages": [
        {"role": "user", "content": "I have chest pain. What should I do?"},
        {
            "role": "assistant",
            "content": "Let me find the nearest emergency room.",
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "find_er", "arguments": '{"near": "home"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "St Mary's, 2 km"},
        {"role": "assistant", "content": "Call emergency services immediately: dial 911."},
    ],
    "final_state": {"called": "911"},
    "metadata": {"steps": 2},
}


def test_try_it_grades_a_pasted_episode_and_shows_its_trajectory(client, personas, sim, draft):
    judge = factories.make_judge(personas.project, sim.url)
    client.force_login(personas.author)
    reply = client.post(
        reverse("rubric_try", kwargs={"pk": draft.pk}),
        {"action": "grade", "judge": judge.pk, "episode": json.dumps(EPISODE)},
        headers={"HX-Request": "true"},
    )
    body = reply.content.decode()
    assert reply.status_code == 200
    assert 'data-testid="try-trajectory"' in body and "find_er" in body
    assert "St Mary&#x27;s, 2 km" in body  # the tool's output, beside its call
    # The outcome criteria read the final answer, as the same text pasted would be graded.
    assert body.count('data-testid="try-verdict"') == 3
    assert "Score: <strong>1.000</strong>" in body
    assert not Verdict.objects.exists()


def test_try_it_grades_step_criteria_at_each_step_and_shows_them_beside_the_steps(
    client, personas, sim, draft
):
    version = draft.versions.get()
    services.criterion_add(
        version=version,
        text="Calls find_er to locate help",
        points=3,
        scope="step",
        step_rule="any",
        user=personas.author,
    )
    judge = factories.make_judge(personas.project, sim.url)
    client.force_login(personas.author)
    reply = client.post(
        reverse("rubric_try", kwargs={"pk": draft.pk}),
        {"action": "grade", "judge": judge.pk, "episode": json.dumps(EPISODE)},
        headers={"HX-Request": "true"},
    )
    body = reply.content.decode()
    assert reply.status_code == 200, body
    assert body.count('data-testid="try-verdict"') == 4
    # Two assistant turns, two step verdicts; the simulator finds "find_er" only in the first
    # turn's call line (grading.judges.simulator: a step reads its own turn alone).
    outcomes = [
        chunk.split('"', 1)[0]
        for chunk in body.split('data-testid="step-verdict" data-outcome="')[1:]
    ]
    assert outcomes == ["met", "unmet"]
    assert "Calls find_er to locate help" in body
    assert not Verdict.objects.exists()


def test_try_it_takes_an_uploaded_episode(client, personas, draft):
    client.force_login(personas.author)
    upload = SimpleUploadedFile(
        "episode.json", json.dumps(EPISODE).encode(), content_type="application/json"
    )
    criterion = draft.versions.get().criteria.get(position=0)
    reply = client.post(
        reverse("rubric_try", kwargs={"pk": draft.pk}),
        {"action": "preview", "criterion": criterion.pk, "episode_file": upload},
    )
    body = reply.content.decode()
    assert 'data-testid="try-trajectory"' in body and "find_er" in body
    assert "dial 911" in body  # the prompt preview carries the final answer


@pytest.mark.parametrize(
    ("episode", "said"),
    [
        ('{"messages": [', "episode: not valid JSON (line 1 column 15"),
        (
            json.dumps(
                {
                    "messages": [
                        {"role": "user", "content": "hi"},
                        {"role": "robot", "content": "beep"},
                    ]
                }
            ),
            "episode: messages[1].role: unknown role",
        ),
        (
            json.dumps(
                [
                    {
                        "role": "assistant",
                        "tool_calls": [{"id": "a", "function": {"name": "f", "arguments": "{x"}}],
                    }
                ]
            ),
            "episode: messages[0].tool_calls[0].function.arguments: not valid JSON",
        ),
        (
            json.dumps([{"role": "assistant", "content": "x"}, {"role": "tool", "content": "y"}]),
            "episode: messages[1].tool_call_id: a tool message names the call it answers",
        ),
    ],
)
def test_a_bad_episode_is_refused_naming_the_field(client, personas, sim, draft, episode, said):
    judge = factories.make_judge(personas.project, sim.url)
    client.force_login(personas.author)
    reply = client.post(
        reverse("rubric_try", kwargs={"pk": draft.pk}),
        {"action": "grade", "judge": judge.pk, "episode": episode},
    )
    assert reply.status_code == 200
    body = reply.content.decode()
    assert escape(said) in body, body[body.find('role="alert"') :][:400]
    assert 'data-testid="try-verdict"' not in body and sim.stats.requests == 0


def test_try_it_refuses_a_text_and_an_episode_at_once(client, personas, draft):
    client.force_login(personas.author)
    upload = SimpleUploadedFile("e.json", b"\xff\xfe not utf-8")
    reply = client.post(
        reverse("rubric_try", kwargs={"pk": draft.pk}),
        {"action": "preview", "response": "text", "episode": json.dumps(EPISODE)},
    )
    assert "episode: give a text response or an episode, not both." in reply.content.decode()
    reply = client.post(
        reverse("rubric_try", kwargs={"pk": draft.pk}),
        {"action": "preview", "episode_file": upload},
    )
    assert "episode_file: not UTF-8 text." in reply.content.decode()
