"""Hostile input on the paths issue 16 added: episodes posted to the reward endpoint and to
try-it, episode rows in an import, step numbers in forms and queries, searches. Each is a
clear 400 or a named error, never a 500, a hang or anything half-written."""

from __future__ import annotations

import copy
import json

import pytest
from django.urls import reverse

from annotation import services as annotation_services
from annotation.models import Response, Verdict
from tests import factories
from tests.episode_fixtures import add_episode, publish_rubric, refund_episode
from tests.test_api import api_client
from tests.test_episode_grading import EPISODE, make_grader

pytestmark = pytest.mark.django_db

DEEP = 300  # levels of nesting: far past ASSAY_JSON_MAX_DEPTH (64)


def deep(levels: int = DEEP) -> object:
    value: object = 1
    for _ in range(levels):
        value = {"a": value}
    return value


def hostile_episodes() -> dict[str, object]:
    nul = copy.deepcopy(EPISODE)
    nul["messages"][0]["content"] = "Refund\x00me"
    deep_state = copy.deepcopy(EPISODE)
    deep_state["final_state"] = deep()
    deep_args = copy.deepcopy(EPISODE)
    deep_args["messages"][1]["tool_calls"][0]["function"]["arguments"] = json.dumps(deep(200))
    digits = copy.deepcopy(EPISODE)
    digits["metadata"] = {"steps": "٣"}
    huge = copy.deepcopy(EPISODE)
    huge["messages"] = [{"role": "assistant", "content": "x"}] * 6_000
    wrong = copy.deepcopy(EPISODE)
    wrong["messages"][1]["tool_calls"] = {"id": "c1"}
    return {
        "nul": nul,
        "deep state": deep_state,
        "deep arguments": deep_args,
        "unicode digits": digits,
        "too many messages": huge,
        "calls not a list": wrong,
    }


@pytest.mark.parametrize("kind", list(hostile_episodes()))
def test_the_reward_endpoints_refuse_hostile_episodes_with_a_400(personas, sim, kind):
    grader = make_grader(personas.project, personas.admin)
    task = grader.version.rubric.task
    factories.make_judge(personas.project, sim.url)
    client = api_client(personas.engineer)
    episode = hostile_episodes()[kind]
    reply = client.post(
        f"/api/graders/{grader.hash}/score/",
        {"task": task.external_id, "responses": [episode]},
        format="json",
    )
    assert reply.status_code in (400, 413), (kind, reply.status_code, reply.content[:300])
    assert sim.stats.requests == 0  # nothing sent to the judge


@pytest.mark.parametrize("kind", list(hostile_episodes()))
def test_an_import_of_a_hostile_episode_names_the_line_and_imports_nothing(personas, kind):
    task = factories.make_task(personas.project, "agent", prompt="Refund me.")
    row = {"task_id": task.external_id, "model": "m", **hostile_episodes()[kind]}
    good = {"task_id": task.external_id, "model": "m", "sample_index": 1, **EPISODE}
    lines = [json.dumps(good), json.dumps(row)]
    result = annotation_services.responses_import_jsonl(project=personas.project, lines=lines)
    assert not result.ok, kind
    assert result.errors and result.errors[0].line == 2, result.errors
    assert not Response.objects.filter(task=task).exists()


@pytest.mark.parametrize("kind", list(hostile_episodes()))
def test_try_it_shows_an_error_for_a_hostile_episode(client, personas, sim, kind):
    task = factories.make_task(personas.project, "try", prompt="Refund me.")
    grader = publish_rubric(personas.project, task, personas.admin)
    factories.make_judge(personas.project, sim.url)
    client.force_login(personas.author)
    reply = client.post(
        reverse("rubric_try", kwargs={"pk": grader.version.rubric_id}),
        {"action": "preview", "episode": json.dumps(hostile_episodes()[kind])},
        headers={"HX-Request": "true"},
    )
    assert reply.status_code in (200, 400), (kind, reply.status_code)
    assert "episode" in reply.content.decode()
    assert sim.stats.requests == 0


@pytest.mark.parametrize("step", ["٣", "²", "-1", "1e3", "\x00", "9" * 40, "99999"])
def test_hostile_step_numbers_are_400s_on_the_draft_and_adjudication_pages(client, personas, step):
    task = factories.make_task(personas.project, "steps", prompt="Refund me.")
    grader = publish_rubric(personas.project, task, personas.admin)
    response = add_episode(task, refund_episode(5))
    queue = factories.make_queue(
        personas.project, grader, [personas.annotator], personas.admin, overlap=1
    )
    assignment = annotation_services.assignment_claim(queue=queue, user=personas.annotator)
    step_criterion = grader.version.criteria.filter(scope="step").first()
    client.force_login(personas.annotator)
    reply = client.post(
        reverse("assignment_draft", kwargs={"pk": assignment.pk}),
        {"criterion": step_criterion.pk, "outcome": "met", "step": step},
    )
    if step == "99999":  # well formed, but no step of the episode: refused with a message
        assert reply.status_code in (302, 400), reply.status_code
    else:
        assert reply.status_code == 400, (step, reply.status_code)
    assert not Verdict.objects.filter(assignment=assignment).exists()
    client.force_login(personas.reviewer)
    page = client.get(
        reverse(
            "adjudicate",
            kwargs={
                "pk": grader.version_id,
                "response_pk": response.pk,
                "criterion_pk": step_criterion.pk,
            },
        ),
        {"step": step},
    )
    assert page.status_code in (400, 404), (step, page.status_code)


@pytest.mark.parametrize("query", ["\x00", "x" * 10_000, "%", "' OR 1=1 --"])
def test_the_grader_search_takes_any_query_without_a_500(client, personas, query):
    client.force_login(personas.admin)
    reply = client.get(
        reverse("run_grader_search", kwargs={"slug": personas.project.slug}),
        {"grader_q": query},
    )
    assert reply.status_code in (200, 400), (query, reply.status_code)
