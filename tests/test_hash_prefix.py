"""A grader's hash as pages show it (12 characters) names it wherever a hash is taken: the
reward endpoint, the grader's page and API, and the lists and bodies that take `grader`. A
shorter, malformed or ambiguous prefix is a 400 that says so; pages offer the full hash."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from grading import services as grading_services
from rubrics.models import Grader
from tests import factories
from tests.test_api import api_client

CRITERIA = [("Mentions hydration and electrolytes", 5), ("Mentions urgent evaluation", 3)]
CHIP = re.compile(
    r'<code class="hash" title="([0-9a-f]{64})" data-testid="grader-hash">([0-9a-f]+)</code>'
    r' <button type="button" class="copy" data-copy="([0-9a-f]{64})"'
)


@pytest.fixture
def graded(personas, sim):
    task = factories.make_task(personas.project, "t-prefix")
    grader = factories.make_published_rubric(personas.project, task, CRITERIA, personas.admin)
    judge = factories.make_judge(personas.project, sim.url)
    factories.import_responses(
        personas.project, [{"task_id": "t-prefix", "model": "m", "response": "Drink water."}]
    )
    run = grading_services.run_create(
        project=personas.project, grader=grader, judge=judge, user=personas.admin, start=False
    )
    return grader, run


def shown_prefix(personas, run) -> str:
    """The grader's hash as the run page shows it, and the full one its copy button holds."""
    client = Client()
    client.force_login(personas.engineer)
    page = client.get(f"/runs/{run.pk}/").content.decode()
    title, shown, copied = CHIP.search(page).groups()
    assert title == copied == run.sole_grader.hash and len(shown) == 12
    return shown


@pytest.mark.django_db(transaction=True)
def test_the_reward_endpoint_takes_the_prefix_the_run_page_shows(personas, graded):
    grader, run = graded
    prefix = shown_prefix(personas, run)
    reply = api_client(personas.engineer).post(
        f"/api/graders/{prefix}/score/",
        {"task": "t-prefix", "responses": ["Hydration with electrolytes."], "mode": "batched"},
        format="json",
    )
    assert reply.status_code == 200, reply.content
    assert reply.json()[0]["score"] is not None


@pytest.mark.django_db(transaction=True)
def test_every_door_that_takes_a_grader_hash_takes_its_prefix(personas, graded):
    grader, run = graded
    prefix = shown_prefix(personas, run)
    slug = personas.project.slug
    client = api_client(personas.admin)
    assert client.get(f"/api/graders/{prefix}/").json()["hash"] == grader.hash
    assert client.get(f"/api/graders/{prefix.upper()}/").status_code == 200
    listed = client.get(f"/api/projects/{slug}/runs/?grader={prefix}").json()["results"]
    assert [r["id"] for r in listed] == [run.pk]
    made = client.post(
        f"/api/projects/{slug}/queues/",
        {
            "name": "by prefix",
            "grader": prefix,
            "overlap": 1,
            "annotators": [personas.annotator.username],
        },
        format="json",
    )
    assert made.status_code == 201, made.content
    assert made.json()["grader"] == grader.hash
    queues = client.get(f"/api/projects/{slug}/queues/?grader={prefix}").json()
    assert [q["name"] for q in queues] == ["by prefix"]
    assert client.get(f"/api/projects/{slug}/verdicts/?grader={prefix}").status_code == 200
    started = client.post(
        f"/api/projects/{slug}/runs/",
        {"grader": prefix, "judge": run.judge_id},
        format="json",
    )
    assert started.status_code == 201, started.content
    # A prefix of no grader matches nothing in a list.
    assert client.get(f"/api/projects/{slug}/runs/?grader={'0' * 12}").json()["results"] == []
    page = Client()
    page.force_login(personas.author)
    assert grader.hash in page.get(f"/graders/{prefix}/").content.decode()


@pytest.mark.django_db(transaction=True)
def test_short_malformed_and_ambiguous_prefixes_are_refused_saying_why(personas, graded):
    grader, run = graded
    client = api_client(personas.admin)
    slug = personas.project.slug

    short = client.get(f"/api/graders/{grader.hash[:11]}/")
    assert short.status_code == 400 and "at least 12" in short.json()["grader"][0]
    bad = client.post("/api/graders/not-a-hash-at-all/score/", {"responses": ["x"]}, format="json")
    assert bad.status_code == 400 and "not a hash" in bad.json()["grader"][0]
    assert client.get(f"/api/graders/{'0' * 12}/").status_code == 404
    filtered = client.get(f"/api/projects/{slug}/runs/?grader={grader.hash[:6]}")
    assert filtered.status_code == 400 and "at least 12" in filtered.json()["grader"][0]

    # Two graders whose hashes share their first 12 characters: the 12 name neither.
    twins = [f"abcdef012345{n}" + "0" * 51 for n in (1, 2)]
    for twin in twins:
        Grader.objects.create(hash=twin, version=grader.version, spec=grader.spec)
    for url in ("/api/graders/abcdef012345/", f"/api/projects/{slug}/queues/?grader=abcdef012345"):
        ambiguous = client.get(url)
        assert ambiguous.status_code == 400, url
        assert "more than one" in ambiguous.json()["grader"][0]
    reward = client.post("/api/graders/abcdef012345/score/", {"responses": ["x"]}, format="json")
    assert reward.status_code == 400 and "more than one" in reward.json()["grader"][0]
    assert client.get(f"/api/graders/{twins[0][:13]}/").json()["hash"] == twins[0]
    page = Client()
    page.force_login(personas.author)
    refused = page.get("/graders/abcdef012345/")
    assert refused.status_code == 400
    assert "more than one" in refused.content.decode()


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_copy_button_copies_the_full_hash_in_chromium(page, live_server, personas, graded):
    """Under the Content-Security-Policy (the `page` fixture fails on any refusal)."""
    from playwright.sync_api import expect

    grader, run = graded
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    page.goto(f"{live_server.url}/login/", timeout=60_000)
    page.fill("#id_username", personas.engineer.username)
    page.fill("#id_password", factories.PASSWORD)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Projects")).to_be_visible()
    page.goto(f"{live_server.url}/runs/{run.pk}/")
    expect(page.get_by_test_id("grader-hash")).to_have_text(grader.hash[:12])
    button = page.locator("button[data-copy]").first
    button.click()
    expect(button).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == grader.hash
