"""Suites and their frozen versions: freezing, what changed, immutability in the database,
and the pages and API that make, change, freeze and read them."""

from __future__ import annotations

import json
import re

import pytest
from django.core.exceptions import ValidationError
from django.db import DatabaseError, connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext

from annotation.models import Response
from grading import views_suites
from grading.models import GradingRun, Score
from rubrics import services as rubric_services
from rubrics import suites
from rubrics.models import AuditEvent, Suite, SuiteEntry, SuiteVersion
from tests import factories
from tests.test_api import api_client

pytestmark = pytest.mark.django_db


def publish_next(grader, user, *, add=(), remove=()):
    """Publish the next version of `grader`'s rubric, with criteria `add`ed (text, points)
    and those whose text is in `remove` taken out. The new Grader."""
    version = rubric_services.draft_for_edit(rubric=grader.version.rubric, user=user)
    for criterion in version.criteria.all():
        if criterion.text in remove:
            rubric_services.criterion_delete(criterion=criterion)
    for text, points in add:
        rubric_services.criterion_add(version=version, text=text, points=points)
    return rubric_services.version_publish(version=version, user=user)


@pytest.fixture
def two_tasks(personas):
    p = personas
    fever = factories.make_task(p.project, "fever")
    cough = factories.make_task(p.project, "cough")
    graders = {
        "fever": factories.make_published_rubric(
            p.project, fever, [("Advises fluids", 2), ("Advises rest", 1)], p.author
        ),
        "cough": factories.make_published_rubric(
            p.project, cough, [("Asks about duration", 1)], p.author
        ),
    }
    return {"fever": fever, "cough": cough}, graders


def page_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


# --- Freezing -------------------------------------------------------------------------------


def test_freezing_pins_the_graders_in_force(personas, two_tasks):
    tasks, graders = two_tasks
    suite = suites.suite_create(
        project=personas.project,
        name="Eval",
        user=personas.author,
        task_ids=[t.pk for t in tasks.values()],
    )
    version, created = suites.suite_freeze(suite=suite, user=personas.author)
    assert created and version.number == 1 and version.task_count == 2
    assert version.manifest == {"cough": graders["cough"].hash, "fever": graders["fever"].hash}
    assert version.content_hash == suites.manifest_hash(version.manifest)
    assert suites.pinned_graders(version) == {
        tasks["fever"].pk: graders["fever"].pk,
        tasks["cough"].pk: graders["cough"].pk,
    }
    assert version.sole_grader_id is None  # each task has its own grader
    assert AuditEvent.objects.filter(
        action=AuditEvent.Action.SUITE_FROZEN, target_id=suite.pk
    ).exists()


def test_a_new_rubric_version_makes_v2_and_the_diff_names_the_task_and_its_criteria(
    personas, two_tasks
):
    tasks, graders = two_tasks
    suite = suites.suite_create(
        project=personas.project, name="Eval", task_ids=[t.pk for t in tasks.values()]
    )
    v1, _ = suites.suite_freeze(suite=suite, user=personas.author)
    newer = publish_next(
        graders["fever"],
        personas.author,
        add=[("Warns about dehydration signs", 2)],
        remove={"Advises rest"},
    )
    v2, created = suites.suite_freeze(suite=suite, user=personas.author)
    assert created and v2.number == 2 and v2.manifest["fever"] == newer.hash
    assert v2.manifest["cough"] == v1.manifest["cough"]
    # Frozen again with nothing changed: v2 comes back, no v3.
    again, created = suites.suite_freeze(suite=suite, user=personas.author)
    assert not created and again.pk == v2.pk
    assert SuiteVersion.objects.filter(suite=suite).count() == 2

    diff = suites.version_diff(v1, v2)
    assert diff.added == [] and diff.removed == [] and diff.unchanged == 1
    (change,) = diff.changed
    assert change.external_id == "fever"
    assert (change.old_grader, change.new_grader) == (graders["fever"].hash, newer.hash)
    assert change.criteria_added == ["Warns about dehydration signs"]
    assert change.criteria_removed == ["Advises rest"]

    # The page shows the same, for the two versions picked.
    html = page_client(personas.reviewer).get(f"/suites/{suite.pk}/?from=1&to=2").content.decode()
    diff_html = html[html.index('data-testid="suite-diff"') :]
    assert "fever" in diff_html and "cough" not in diff_html.split("</table>")[0]
    assert "Warns about dehydration signs" in diff_html and "Advises rest" in diff_html
    # And the API.
    reply = api_client(personas.reviewer).get(f"/api/suites/{suite.pk}/diff/?from=1&to=2")
    assert reply.status_code == 200, reply.content
    body = reply.json()
    assert body["from"]["number"] == 1 and body["to"]["number"] == 2
    assert body["changed"] == [
        {
            "task": "fever",
            "old_grader": graders["fever"].hash,
            "new_grader": newer.hash,
            "criteria_added": ["Warns about dehydration signs"],
            "criteria_removed": ["Advises rest"],
        }
    ]
    assert body["unchanged"] == 1


def test_a_task_without_a_published_rubric_refuses_the_freeze_and_writes_nothing(
    personas, two_tasks
):
    tasks, _ = two_tasks
    drafty = factories.make_task(personas.project, "drafty")
    rubric_services.rubric_create(
        project=personas.project,
        task=drafty,
        title="Only a draft",
        user=personas.author,
        criteria=[rubric_services.clean_criterion("Says hello", 1)],
    )
    bare = factories.make_task(personas.project, "bare")
    suite = suites.suite_create(
        project=personas.project,
        name="Eval",
        task_ids=[tasks["fever"].pk, drafty.pk, bare.pk],
    )
    with pytest.raises(ValidationError) as refused:
        suites.suite_freeze(suite=suite, user=personas.author)
    message = " ".join(refused.value.messages)
    assert "2 task(s)" in message and "bare" in message and "drafty" in message
    assert "fever" not in message
    assert not SuiteVersion.objects.filter(suite=suite).exists()
    assert not SuiteEntry.objects.filter(version__suite=suite).exists()
    assert not AuditEvent.objects.filter(action=AuditEvent.Action.SUITE_FROZEN).exists()

    # The page says which, as an error; the API names `tasks`.
    client = page_client(personas.author)
    reply = client.post(f"/suites/{suite.pk}/freeze/", follow=True)
    html = reply.content.decode()
    assert re.search(r'<li class="error">Not frozen: 2 task\(s\) have no published rubric', html)
    assert "bare, drafty" in html
    reply = api_client(personas.author).post(f"/api/suites/{suite.pk}/freeze/")
    assert reply.status_code == 400 and list(reply.json()) == ["tasks"], reply.content
    assert "bare, drafty" in reply.json()["tasks"][0]
    assert not SuiteVersion.objects.filter(suite=suite).exists()


def test_a_task_rubric_built_on_a_template_counts(personas):
    p = personas
    template = rubric_services.rubric_create(
        project=p.project,
        title="Clinical safety",
        user=p.author,
        is_template=True,
        criteria=[rubric_services.clean_criterion("Advises seeing a clinician", 3)],
    )
    rubric_services.version_publish(version=template.versions.get(), user=p.author)
    task = factories.make_task(p.project, "knee")
    (rubric,) = rubric_services.template_apply(template=template, tasks=[task], user=p.author)
    rubric_services.criterion_add(version=rubric.versions.get(), text="Mentions ice", points=2)
    grader = rubric_services.version_publish(version=rubric.versions.get(), user=p.author)
    suite = suites.suite_create(project=p.project, name="Knees", task_ids=[task.pk])
    version, created = suites.suite_freeze(suite=suite, user=p.author)
    assert created and version.manifest == {"knee": grader.hash}
    assert [c["text"] for c in grader.spec["criteria"]] == [
        "Advises seeing a clinician",
        "Mentions ice",
    ]


def test_a_suite_by_tag_takes_tasks_tagged_later(personas, two_tasks):
    tasks, graders = two_tasks
    suite = suites.suite_create(project=personas.project, name="Tagged", tags=["peds"])
    with pytest.raises(ValidationError):
        suites.suite_freeze(suite=suite)  # no task carries the tag yet
    rubric_services.task_fields_update(task=tasks["cough"], prompt_frozen=False, tags=["peds"])
    version, _ = suites.suite_freeze(suite=suite)
    assert version.manifest == {"cough": graders["cough"].hash}


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the triggers are PostgreSQL's")
@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE rubrics_suiteversion SET content_hash = 'forged' WHERE suite_id = %s",
        "UPDATE rubrics_suiteversion SET manifest = '{}'::jsonb WHERE suite_id = %s",
        "UPDATE rubrics_suiteentry SET grader_id = grader_id WHERE version_id IN "
        "(SELECT id FROM rubrics_suiteversion WHERE suite_id = %s)",
    ],
)
def test_the_database_refuses_to_change_a_frozen_version(personas, two_tasks, sql):
    tasks, _ = two_tasks
    suite = suites.suite_create(
        project=personas.project, name="Eval", task_ids=[t.pk for t in tasks.values()]
    )
    version, _ = suites.suite_freeze(suite=suite)
    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, [suite.pk])
    version.refresh_from_db()
    assert version.content_hash == suites.manifest_hash(version.manifest)
    assert SuiteEntry.objects.filter(version=version).count() == 2


# --- Pages ----------------------------------------------------------------------------------


def test_making_a_suite_on_the_page_by_external_ids_and_checkboxes(personas, two_tasks):
    tasks, _ = two_tasks
    client = page_client(personas.engineer)
    page = client.get(f"/p/{personas.project.slug}/suites/").content.decode()
    assert 'data-testid="suite-form"' in page and 'name="tasks"' in page  # few tasks: boxes
    reply = client.post(
        f"/p/{personas.project.slug}/suites/",
        {
            "name": "Both",
            "description": "Two tasks",
            "tasks": [str(tasks["fever"].pk)],
            "external_ids": "cough\n\n",
            "tags": "",
        },
    )
    suite = Suite.objects.get(name="Both")
    assert reply.status_code == 302 and reply.url == f"/suites/{suite.pk}/"
    assert suites.suite_task_ids(suite) == sorted([tasks["fever"].pk, tasks["cough"].pk])
    assert AuditEvent.objects.filter(action=AuditEvent.Action.SUITE_CREATED).exists()
    # An unknown external id: the form again, the field named, nothing made.
    reply = client.post(
        f"/p/{personas.project.slug}/suites/", {"name": "Typo", "external_ids": "fevr"}
    )
    assert reply.status_code == 200
    assert "No task of this project has the external id &#x27;fevr&#x27;" in reply.content.decode()
    assert not Suite.objects.filter(name="Typo").exists()
    # The same name twice is refused on `name`.
    reply = client.post(f"/p/{personas.project.slug}/suites/", {"name": "Both"})
    assert "already has a suite named" in reply.content.decode()
    # The list shows it, with its task count.
    listed = client.get(f"/p/{personas.project.slug}/suites/").content.decode()
    assert f'href="/suites/{suite.pk}/"' in listed


def test_a_large_project_picks_tasks_by_external_id_only(personas, two_tasks, monkeypatch):
    """Past SUITE_CHECKBOXES tasks the forms offer no checkbox: external ids, pasted, add and
    take out tasks."""
    tasks, _ = two_tasks
    monkeypatch.setattr(views_suites, "SUITE_CHECKBOXES", 1)
    client = page_client(personas.author)
    page = client.get(f"/p/{personas.project.slug}/suites/").content.decode()
    assert 'name="tasks"' not in page and 'name="external_ids"' in page
    reply = client.post(
        f"/p/{personas.project.slug}/suites/", {"name": "Big", "external_ids": "fever, cough"}
    )
    suite = Suite.objects.get(name="Big")
    assert reply.status_code == 302
    assert suites.suite_task_ids(suite) == sorted(t.pk for t in tasks.values())
    page = client.get(f"/suites/{suite.pk}/").content.decode()
    assert 'name="remove_ids"' in page and 'name="tasks"' not in page
    reply = client.post(f"/suites/{suite.pk}/edit/", {"name": "Big", "remove_ids": "cough"})
    assert reply.status_code == 302
    assert suites.suite_task_ids(suite) == [tasks["fever"].pk]
    reply = client.post(f"/suites/{suite.pk}/edit/", {"name": "Big", "remove_ids": "nope"})
    assert reply.status_code == 200
    assert "No task of this project has the external id &#x27;nope&#x27;" in reply.content.decode()
    assert suites.suite_task_ids(suite) == [tasks["fever"].pk]


def test_the_api_lists_suites_apart_from_rubrics_suites_of_one(personas, two_tasks):
    tasks, graders = two_tasks
    suites.suite_create(project=personas.project, name="Eval", task_ids=[tasks["fever"].pk])
    suites.suite_of_grader(grader=graders["cough"])
    api = api_client(personas.reviewer)
    url = f"/api/projects/{personas.project.slug}/suites/"
    names = lambda query: [s["name"] for s in api.get(url + query).json()["results"]]  # noqa: E731
    assert len(names("")) == 2
    assert names("?of_rubrics=false") == ["Eval"]
    (of_rubric,) = api.get(url + "?of_rubrics=true").json()["results"]
    assert of_rubric["rubric"] == graders["cough"].version.rubric_id
    assert of_rubric["newest_version"]["sole_grader"] == graders["cough"].hash


def test_a_reviewer_reads_suites_but_cannot_make_change_or_freeze_them(personas, two_tasks):
    tasks, _ = two_tasks
    suite = suites.suite_create(project=personas.project, name="Eval", task_ids=[tasks["fever"].pk])
    client = page_client(personas.reviewer)
    listed = client.get(f"/p/{personas.project.slug}/suites/")
    assert listed.status_code == 200 and b'data-testid="suite-form"' not in listed.content
    page = client.get(f"/suites/{suite.pk}/")
    assert page.status_code == 200 and b'data-testid="freeze"' not in page.content
    assert client.post(f"/suites/{suite.pk}/freeze/").status_code == 403
    assert client.post(f"/suites/{suite.pk}/edit/", {"name": "X"}).status_code == 403
    annotator = page_client(personas.annotator)
    assert annotator.get(f"/suites/{suite.pk}/").status_code == 403
    assert annotator.get(f"/p/{personas.project.slug}/suites/").status_code == 403
    nav = client.get(f"/p/{personas.project.slug}/").content.decode()
    assert f'href="/p/{personas.project.slug}/suites/"' in nav
    nav = annotator.get(f"/p/{personas.project.slug}/").content.decode()
    assert f'href="/p/{personas.project.slug}/suites/"' not in nav


def test_editing_a_suite_on_its_page(personas, two_tasks):
    tasks, _ = two_tasks
    suite = suites.suite_create(project=personas.project, name="Eval", task_ids=[tasks["fever"].pk])
    client = page_client(personas.author)
    reply = client.post(
        f"/suites/{suite.pk}/edit/",
        {
            "name": "Eval renamed",
            "description": "Now both",
            "picked": "True",
            "tasks": [str(tasks["fever"].pk)],
            "external_ids": "cough",
            "remove_ids": "fever",
        },
    )
    assert reply.status_code == 302, reply.content.decode()[:2000]
    suite.refresh_from_db()
    assert suite.name == "Eval renamed" and suite.description == "Now both"
    assert suites.suite_task_ids(suite) == [tasks["cough"].pk]
    reply = client.post(f"/suites/{suite.pk}/edit/", {"name": "", "remove_ids": "nope"})
    assert reply.status_code == 200 and b"This field is required" in reply.content


def test_freezing_on_the_page_then_nothing_changed(personas, two_tasks):
    tasks, _ = two_tasks
    suite = suites.suite_create(
        project=personas.project, name="Eval", task_ids=[t.pk for t in tasks.values()]
    )
    client = page_client(personas.author)
    html = client.post(f"/suites/{suite.pk}/freeze/", follow=True).content.decode()
    assert "Froze v1: 2 tasks" in html and 'data-version="1"' in html
    html = client.post(f"/suites/{suite.pk}/freeze/", follow=True).content.decode()
    assert "Nothing changed since v1" in html
    assert SuiteVersion.objects.filter(suite=suite).count() == 1


def test_the_suite_page_charts_each_runs_clipped_mean_per_model(personas, two_tasks):
    tasks, _ = two_tasks
    p = personas
    suite = suites.suite_create(
        project=p.project, name="Eval", task_ids=[t.pk for t in tasks.values()]
    )
    version, _ = suites.suite_freeze(suite=suite)
    factories.import_responses(
        p.project,
        [
            {"task_id": task, "model": model, "response": "Rest."}
            for task in ("fever", "cough")
            for model in ("m-a", "m-b")
        ],
    )
    judge = factories.make_judge(p.project, "http://127.0.0.1:9/v1")
    run = GradingRun.objects.create(project=p.project, suite_version=version, judge=judge)
    pinned = suites.pinned_graders(version)
    raws = {("fever", "m-a"): 1.5, ("cough", "m-a"): -0.5, ("fever", "m-b"): 0.5}
    for response in Response.objects.filter(task__project=p.project).select_related("task"):
        raw = raws.get((response.task.external_id, response.model))
        Score.objects.create(
            run=run,
            response=response,
            grader_id=pinned[response.task_id],
            raw=raw,
            status=Score.Status.DONE if raw is not None else Score.Status.PENDING,
        )
    html = page_client(p.reviewer).get(f"/suites/{suite.pk}/").content.decode()
    data = json.loads(
        re.search(r'id="suite-chart-data" hidden data-json="([^"]*)"', html)
        .group(1)
        .replace("&quot;", '"')
    )
    # m-a: clipped 1.0 and 0.0 -> 0.5 (the raw mean would be 0.5 too, so m-b checks it: 0.5).
    assert data["models"] == ["m-a", "m-b"]
    assert data["series"] == [[0.5], [0.5]]
    assert data["labels"][0].startswith(f"#{run.pk} v1 ")
    assert 'data-chart="suite-runs"' in html


def test_the_suite_page_reads_a_fixed_number_of_queries(personas, two_tasks):
    """Tasks, versions and runs add rows, not queries."""
    tasks, _ = two_tasks
    p = personas
    suite = suites.suite_create(project=p.project, name="Eval", task_ids=[tasks["fever"].pk])
    suites.suite_freeze(suite=suite)
    suites.suite_add_tasks(suite=suite, task_ids=[tasks["cough"].pk])
    suites.suite_freeze(suite=suite)  # two versions: the page shows what changed
    judge = factories.make_judge(p.project, "http://127.0.0.1:9/v1")
    GradingRun.objects.create(project=p.project, suite_version=suite.versions.first(), judge=judge)
    client = page_client(p.admin)
    client.get(f"/suites/{suite.pk}/")  # warm the session and the caches

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(f"/suites/{suite.pk}/").status_code == 200
        return len(captured)

    few = queries()
    more = []
    for i in range(12):
        task = factories.make_task(p.project, f"extra-{i}")
        factories.make_published_rubric(p.project, task, [("Says hi", 1)], p.admin)
        more.append(task.pk)
    suites.suite_add_tasks(suite=suite, task_ids=more)
    suites.suite_freeze(suite=suite)
    for version in SuiteVersion.objects.filter(suite=suite):
        GradingRun.objects.create(project=p.project, suite_version=version, judge=judge)
    assert queries() == few


# --- API ------------------------------------------------------------------------------------


def test_api_make_change_freeze_and_read_a_suite(personas, two_tasks):
    tasks, graders = two_tasks
    api = api_client(personas.engineer)
    slug = personas.project.slug
    reply = api.post(
        f"/api/projects/{slug}/suites/",
        {"name": "Eval", "description": "d", "tasks": ["fever"], "tags": []},
        format="json",
    )
    assert reply.status_code == 201, reply.content
    made = reply.json()
    assert made["tasks"] == ["fever"] and made["task_count"] == 1
    assert made["newest_version"] is None and made["run_count"] == 0
    pk = made["id"]

    # Bad input names its field, and writes nothing.
    for body, field in [
        ({"name": "", "tasks": ["fever"]}, "name"),
        ({"name": "Other", "tasks": ["fevr", "cough"]}, "tasks"),
        ({"name": "Eval"}, "name"),
        ({"name": "Other", "tags": "peds"}, "tags"),
    ]:
        reply = api.post(f"/api/projects/{slug}/suites/", body, format="json")
        assert reply.status_code == 400 and list(reply.json()) == [field], (body, reply.content)
    assert (
        "'fevr'"
        in api.post(
            f"/api/projects/{slug}/suites/", {"name": "Other", "tasks": ["fevr"]}, format="json"
        ).json()["tasks"][0]
    )
    assert Suite.objects.filter(project=personas.project).count() == 1

    reply = api.post(f"/api/suites/{pk}/freeze/")
    assert reply.status_code == 201, reply.content
    assert reply.json()["number"] == 1 and reply.json()["manifest"] == {
        "fever": graders["fever"].hash
    }
    reply = api.post(f"/api/suites/{pk}/freeze/")
    assert reply.status_code == 200 and reply.json()["number"] == 1

    reply = api.patch(f"/api/suites/{pk}/", {"tasks": ["fever", "cough"]}, format="json")
    assert reply.status_code == 200, reply.content
    assert reply.json()["tasks"] == ["cough", "fever"] and reply.json()["task_count"] == 2
    assert api.patch(f"/api/suites/{pk}/", {}, format="json").status_code == 400
    reply = api.patch(f"/api/suites/{pk}/", {"tasks": ["nope"]}, format="json")
    assert reply.status_code == 400 and list(reply.json()) == ["tasks"]
    reply = api.patch(f"/api/suites/{pk}/", {"name": "Eval 2"}, format="json")
    assert reply.status_code == 200 and reply.json()["name"] == "Eval 2"
    assert api.post(f"/api/suites/{pk}/freeze/").status_code == 201

    versions = api.get(f"/api/suites/{pk}/versions/").json()
    assert [v["number"] for v in versions["results"]] == [2, 1]
    assert all("manifest" not in v for v in versions["results"])
    v2 = api.get(f"/api/suites/{pk}/versions/2/").json()
    assert v2["manifest"] == {"cough": graders["cough"].hash, "fever": graders["fever"].hash}
    assert api.get(f"/api/suites/{pk}/versions/9/").status_code == 404

    diff = api.get(f"/api/suites/{pk}/diff/").json()  # default: the newest and the one before
    assert (diff["from"]["number"], diff["to"]["number"]) == (1, 2)
    assert diff["added"] == ["cough"] and diff["removed"] == [] and diff["changed"] == []
    reply = api.get(f"/api/suites/{pk}/diff/?from=9&to=2")
    assert reply.status_code == 400 and list(reply.json()) == ["from"]
    reply = api.get(f"/api/suites/{pk}/diff/?to=abc")
    assert reply.status_code == 400 and list(reply.json()) == ["to"]
    reply = api.get(f"/api/suites/{pk}/diff/?too=1")
    assert reply.status_code == 400 and list(reply.json()) == ["too"]

    listed = api.get(f"/api/projects/{slug}/suites/").json()["results"]
    assert [(s["name"], s["task_count"], s["newest_version"]["number"]) for s in listed] == [
        ("Eval 2", 2, 2)
    ]


def test_api_roles(personas, two_tasks):
    tasks, _ = two_tasks
    suite = suites.suite_create(project=personas.project, name="Eval", task_ids=[tasks["fever"].pk])
    slug = personas.project.slug
    annotator = api_client(personas.annotator)
    assert annotator.get(f"/api/projects/{slug}/suites/").status_code == 403
    assert annotator.get(f"/api/suites/{suite.pk}/").status_code == 403
    reply = annotator.post(f"/api/projects/{slug}/suites/", {"name": "Mine"}, format="json")
    assert reply.status_code == 403
    assert annotator.post(f"/api/suites/{suite.pk}/freeze/").status_code == 403
    reviewer = api_client(personas.reviewer)
    assert reviewer.get(f"/api/suites/{suite.pk}/").status_code == 200
    assert (
        reviewer.patch(f"/api/suites/{suite.pk}/", {"name": "X"}, format="json").status_code == 403
    )
    assert api_client(personas.outsider).get(f"/api/suites/{suite.pk}/").status_code == 404
    assert not SuiteVersion.objects.exists() and Suite.objects.get().name == "Eval"


def test_a_rubrics_suite_of_one_is_not_changed_by_hand(personas, two_tasks):
    _, graders = two_tasks
    version = suites.suite_of_grader(grader=graders["fever"])
    api = api_client(personas.admin)
    pk = version.suite_id
    assert api.post(f"/api/suites/{pk}/freeze/").status_code == 409
    assert api.patch(f"/api/suites/{pk}/", {"name": "Mine"}, format="json").status_code == 409
    html = page_client(personas.admin).get(f"/suites/{pk}/").content.decode()
    assert 'data-testid="rubric-suite"' in html and 'data-testid="freeze"' not in html
    listed = page_client(personas.admin).get(f"/p/{personas.project.slug}/suites/").content
    assert b'data-testid="rubric-suites"' in listed


# --- Editing a suite is audited -------------------------------------------------------------


def test_changing_a_suite_is_audited_with_what_changed_and_nothing_when_nothing_did(
    personas, two_tasks
):
    tasks, _ = two_tasks
    p = personas
    suite = suites.suite_create(
        project=p.project, name="Eval", user=p.author, task_ids=[tasks["fever"].pk], tags=["a"]
    )
    api = api_client(p.engineer)
    reply = api.patch(
        f"/api/suites/{suite.pk}/",
        {"name": "Eval 2", "tasks": ["cough"], "tags": ["a", "b"]},
        format="json",
    )
    assert reply.status_code == 200, reply.content
    event = AuditEvent.objects.get(action=AuditEvent.Action.SUITE_CHANGED)
    assert event.actor == p.engineer and event.source == AuditEvent.Source.API
    assert event.project == p.project and event.target_type == "suite"
    assert event.target_id == str(suite.pk) and event.target_label == "Eval 2"
    assert event.details == {
        "name": ["Eval", "Eval 2"],
        "tags": [["a"], ["a", "b"]],
        "tasks_added": 1,
        "tasks_added_named": ["cough"],
        "tasks_removed": 1,
        "tasks_removed_named": ["fever"],
    }
    # In words on the Audit page (in the order the database keeps the keys).
    assert event.details_text() == (
        "name from “Eval” to “Eval 2”; tags from “a” to “a”, “b”; tasks put in 1; "
        "tasks taken out 1; put in “cough”; taken out “fever”"
    )

    # The same values again (the edit page sends every field): no event.
    suites.suite_update(
        suite=Suite.objects.get(pk=suite.pk),
        user=p.author,
        name="Eval 2",
        description="",
        task_ids=[tasks["cough"].pk],
        tags=["b", "a"],
    )
    assert AuditEvent.objects.filter(action=AuditEvent.Action.SUITE_CHANGED).count() == 1

    # The edit page: a description, by the web; a refused change records nothing.
    client = page_client(p.author)
    reply = client.post(
        f"/suites/{suite.pk}/edit/",
        {
            "name": "Eval 2",
            "description": "Triage set",
            "tags": "a, b",
            "picked": "1",
            "tasks": [str(tasks["cough"].pk)],
        },
    )
    assert reply.status_code == 302, reply.content.decode()[-1500:]
    web = AuditEvent.objects.filter(action=AuditEvent.Action.SUITE_CHANGED).first()
    assert web.source == AuditEvent.Source.WEB and web.actor == p.author
    assert web.details == {"description": ["", "Triage set"]}
    other = suites.suite_create(project=p.project, name="Other", user=p.author)
    with pytest.raises(ValidationError):
        suites.suite_update(suite=other, user=p.author, name="Eval 2", tags=["z"])
    assert AuditEvent.objects.filter(action=AuditEvent.Action.SUITE_CHANGED).count() == 2
    assert Suite.objects.get(pk=other.pk).tags == []
