"""A criterion's guidance and its examples of "met" and "not met" reach the judge: in the
compiled grader (so its hash follows them), in the prompt preview, and in the requests the
judge (the simulator) actually receives, per criterion and batched. They come after
everything a response's criteria share, fenced as data."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse
from django.utils.html import escape

from grading import services as grading_services
from grading.judges import prompts
from grading.models import GradingRun
from rubrics import compiler, selectors, services
from tests import factories
from tests.conftest import wait_for

GUIDANCE = "Count 911, 112 or 'an ambulance' as emergency services."
MET = "Call 911 right now."
UNMET = "See your GP next week."
CRITERIA = [
    ("Advises calling emergency services immediately", 5),
    ("Mentions electrocardiogram testing", 3),
    ("Suggests waiting at home overnight", -4),
]


def make_rubric(personas, *, publish: bool = False):
    task = services.task_create(
        project=personas.project,
        external_id="chest",
        title="Chest pain",
        messages="I have chest pain. What should I do?",
    )
    rubric = services.rubric_create(
        project=personas.project,
        task=task,
        title="Chest pain",
        user=personas.author,
        criteria=[
            services.clean_criterion(
                CRITERIA[0][0],
                CRITERIA[0][1],
                guidance=GUIDANCE,
                example_met=MET,
                example_unmet=UNMET,
            ),
            services.clean_criterion(CRITERIA[1][0], CRITERIA[1][1], guidance="ECG counts too."),
            services.clean_criterion(*CRITERIA[2]),
        ],
    )
    version = rubric.versions.get()
    grader = services.version_publish(version=version, user=personas.admin) if publish else None
    return rubric, version, grader


def user_text(messages: list[dict]) -> str:
    (user,) = [m["content"] for m in messages if m["role"] == "user"]
    return user


def fenced(name: str, text: str) -> str:
    match = re.search(rf"<<<{name} (\w+)\n(.*?)\n{name} \1>>>", text, re.DOTALL)
    assert match, f"no {name} block in:\n{text}"
    return match.group(2)


@pytest.mark.django_db
def test_the_grader_carries_guidance_and_examples_and_its_hash_follows_them(personas):
    rubric, version, _ = make_rubric(personas)
    spec = selectors.version_spec(version)
    first = spec["criteria"][0]
    assert first["guidance"] == GUIDANCE
    assert first["examples"] == {"met": MET, "not_met": UNMET}
    assert spec["judge"]["guidance_template"] == compiler.GUIDANCE_TEMPLATE
    before = compiler.sha256_of(spec)
    content_before = spec["rubric"]["content_hash"]
    criterion = version.criteria.get(position=0)
    for field, value in [("guidance", GUIDANCE + " Not 'a doctor'."), ("example_unmet", "Rest.")]:
        services.criterion_update(criterion=criterion, user=personas.author, **{field: value})
        spec = selectors.version_spec(version)
        after = compiler.sha256_of(spec)
        assert after != before, field
        # The content hash (what names a published version) follows them too.
        assert spec["rubric"]["content_hash"] != content_before, field
        before, content_before = after, spec["rubric"]["content_hash"]


@pytest.mark.django_db
def test_per_criterion_prompt_puts_guidance_after_the_shared_prefix(personas):
    _, version, _ = make_rubric(personas)
    spec = selectors.version_spec(version)
    response = "Call an ambulance."
    with_guidance = prompts.judge_messages(
        spec,
        messages=[{"role": "user", "content": "Q"}],
        response=response,
        criterion=spec["criteria"][0],
    )
    without = prompts.judge_messages(
        spec,
        messages=[{"role": "user", "content": "Q"}],
        response=response,
        criterion=spec["criteria"][2],
    )
    text = user_text(with_guidance)
    block = fenced("GUIDANCE", text)
    assert block == (
        f"Guidance for graders: {GUIDANCE}\n"
        f"Example of a response that meets the criterion: {MET}\n"
        f"Example of a response that does not meet the criterion: {UNMET}"
    )
    # Shared first (instructions, conversation, response), then the criterion, then guidance.
    assert text.index("<<<RESPONSE") < text.index("<<<CRITERION") < text.index("<<<GUIDANCE")
    assert with_guidance[0] == without[0]  # the same system message for every criterion
    shared = text[: text.index("# Rubric criterion")]
    assert user_text(without).startswith(shared)
    assert "GUIDANCE" not in user_text(without)
    assert "author's guidance" in with_guidance[0]["content"]


@pytest.mark.django_db
def test_a_grader_compiled_before_guidance_renders_as_it_always_did(personas):
    _, version, _ = make_rubric(personas)
    spec = selectors.version_spec(version)
    old = {**spec, "judge": {k: v for k, v in spec["judge"].items() if "guidance" not in k}}
    old["judge"]["user_template"] = old["judge"]["user_template"].replace("{guidance}", "")
    (user,) = [
        m["content"]
        for m in prompts.judge_messages(
            old, messages=[], response="r", criterion=old["criteria"][0]
        )
        if m["role"] == "user"
    ]
    assert "GUIDANCE" not in user and GUIDANCE not in user
    assert prompts.batch_guidance_section(old, old["criteria"]) == ""


@pytest.mark.django_db
def test_the_prompt_preview_shows_guidance_and_examples(client, personas):
    rubric, version, _ = make_rubric(personas)
    criterion = version.criteria.get(position=0)
    client.force_login(personas.author)
    reply = client.get(
        reverse("rubric_try", kwargs={"pk": rubric.pk}),
        {"action": "preview", "criterion": criterion.pk, "response": "Call an ambulance."},
    )
    body = reply.content.decode()
    for text in (GUIDANCE, MET, UNMET):
        assert escape(text) in body
    assert "&lt;&lt;&lt;GUIDANCE" in body


@pytest.mark.django_db
def test_try_it_sends_the_judge_guidance_and_examples(client, personas, sim):
    rubric, version, _ = make_rubric(personas)
    judge = factories.make_judge(personas.project, sim.url)
    client.force_login(personas.author)
    reply = client.post(
        reverse("rubric_try", kwargs={"pk": rubric.pk}),
        {"action": "grade", "judge": judge.pk, "response": "Call an ambulance now."},
    )
    assert reply.status_code == 200
    received = [user_text(messages) for messages in sim.received]
    assert len(received) == 3
    (first,) = [t for t in received if CRITERIA[0][0] in fenced("CRITERION", t)]
    block = fenced("GUIDANCE", first)
    assert GUIDANCE in block and MET in block and UNMET in block
    (second,) = [t for t in received if CRITERIA[1][0] in fenced("CRITERION", t)]
    assert fenced("GUIDANCE", second) == "Guidance for graders: ECG counts too."
    (pitfall,) = [t for t in received if CRITERIA[2][0] in fenced("CRITERION", t)]
    assert "GUIDANCE" not in pitfall


@pytest.mark.django_db(transaction=True)
def test_a_batched_run_sends_guidance_by_criterion_id(personas, sim, celery_worker):
    _, version, grader = make_rubric(personas, publish=True)
    factories.import_responses(
        personas.project, [{"task_id": "chest", "model": "m", "response": "Call 911 now."}]
    )
    judge = factories.make_judge(personas.project, sim.url)
    run = grading_services.run_create(
        project=personas.project, grader=grader, judge=judge, user=personas.admin, mode="batched"
    )
    wait_for(
        lambda: GradingRun.objects.get(pk=run.pk).status == "completed",
        timeout=120,
        what="the batched run to complete",
    )
    (messages,) = list(sim.received)
    text = user_text(messages)
    ids = {c.text: c.pk for c in version.criteria.all()}
    assert fenced("GUIDANCE", text).splitlines() == [
        f"[{ids[CRITERIA[0][0]]}] Guidance for graders: {GUIDANCE}",
        f"[{ids[CRITERIA[0][0]]}] Example of a response that meets the criterion: {MET}",
        f"[{ids[CRITERIA[0][0]]}] Example of a response that does not meet the criterion: {UNMET}",
        f"[{ids[CRITERIA[1][0]]}] Guidance for graders: ECG counts too.",
    ]
    assert text.index("<<<RESPONSE") < text.index("<<<CRITERIA") < text.index("<<<GUIDANCE")
    # Guidance does not change what the criteria are: the simulator still reads three.
    assert len(fenced("CRITERIA", text).splitlines()) == 3
