"""Updates and deletes over the API, and the integrity rules they keep: what is published,
graded or in use stays (409, with why), everything else changes through the services.

Who may call each endpoint is in roles_matrix.py; other projects' objects in
test_api_isolation.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from annotation import services as annotation_services
from annotation.models import Assignment, ImportJob, Rater, Response, Verdict
from grading import services as grading_services
from grading.datasets import snapshots
from grading.models import DatasetSnapshot, Judge, ModelPrice
from rubrics import services as rubric_services
from rubrics.models import Membership, Project, ReferenceDeliverable, Rubric, RubricVersion, Task
from tests import factories
from tests.conftest import wait_for
from tests.test_api import api_client, jsonl_file


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def respond(project, task_id: str, model: str = "m", text: str = "Rest and drink water."):
    factories.import_responses(project, [{"task_id": task_id, "model": model, "response": text}])


# --- Projects and members --------------------------------------------------------------------


def test_a_project_is_renamed_and_deleted_only_without_graded_work(personas):
    admin = api_client(personas.admin)
    slug = personas.project.slug
    reply = admin.patch(f"/api/projects/{slug}/", {"name": "Cardiology"}, format="json")
    assert reply.status_code == 200 and reply.data["name"] == "Cardiology"
    assert reply.data["slug"] == slug  # the slug never changes
    assert admin.patch(f"/api/projects/{slug}/", {}, format="json").status_code == 400

    task = factories.make_task(personas.project, "t1")
    factories.make_published_rubric(personas.project, task, [("Advises rest", 1)], personas.admin)
    reply = admin.delete(f"/api/projects/{slug}/")
    assert reply.status_code == 409
    assert "1 published rubric version(s) and 0 response(s)" in reply.data["detail"]
    assert Project.objects.filter(slug=slug).exists()

    # A project of drafts, references, a template, a judge and members goes whole.
    empty = admin.post("/api/projects/", {"name": "Scratch"}, format="json").data["slug"]
    project = Project.objects.get(slug=empty)
    draft_task = factories.make_task(project, "t1")
    rubric_services.reference_add(task=draft_task, body="Rest.", user=personas.admin)
    template = rubric_services.rubric_create(
        project=project, title="Generic", user=personas.admin, is_template=True
    )
    rubric_services.rubric_create(
        project=project, task=draft_task, title="Draft", user=personas.admin, template=template
    )
    judge = factories.make_judge(project, "http://127.0.0.1:9/v1")
    factories.add_member(project, "author")
    assert admin.delete(f"/api/projects/{empty}/").status_code == 204
    assert not Project.objects.filter(slug=empty).exists()
    assert not Judge.objects.filter(pk=judge.pk).exists()
    assert not Rater.objects.filter(pk=judge.rater_id).exists()
    assert not Task.objects.filter(pk=draft_task.pk).exists()


def test_members_change_role_and_leave_their_queues(personas):
    p = personas
    admin = api_client(p.admin)
    members = f"/api/projects/{p.project.slug}/members/"
    reply = admin.get(f"{members}{p.author.username}/")
    assert reply.status_code == 200 and reply.data["role"] == "author"
    reply = admin.patch(f"{members}{p.author.username}/", {"role": "reviewer"}, format="json")
    assert reply.status_code == 200 and reply.data["role"] == "reviewer"
    reply = admin.patch(f"{members}{p.admin.username}/", {"role": "author"}, format="json")
    assert reply.data == {"role": ["A project keeps at least one admin."]}
    reply = admin.delete(f"{members}{p.admin.username}/")
    assert reply.status_code == 409
    assert reply.data["detail"].startswith("A project keeps at least one admin")
    assert admin.get(f"{members}nobody/").status_code == 404
    assert [m["username"] for m in admin.get(members, {"role": "annotator"}).data] == [
        p.annotator.username
    ]

    # The annotator submitted one item and holds another with a draft.
    task = factories.make_task(p.project, "t1")
    grader = factories.make_published_rubric(p.project, task, [("Advises rest", 1)], p.admin)
    respond(p.project, "t1", "a")
    respond(p.project, "t1", "b")
    other = factories.add_member(p.project, "annotator")
    queue = factories.make_queue(p.project, grader, [p.annotator, other], p.admin, overlap=1)
    submitted = factories.annotate(queue, p.annotator)
    held = factories.annotate(queue, p.annotator, submit=False)
    assert held.verdicts.count() == 1

    assert admin.delete(f"{members}{p.annotator.username}/").status_code == 204
    assert not Membership.objects.filter(project=p.project, user=p.annotator).exists()
    assert list(queue.annotators.all()) == [other]
    held.refresh_from_db()
    assert held.status == Assignment.Status.SKIPPED and held.skip_reason == "Left the project."
    assert not held.verdicts.exists()  # drafts are nobody's verdicts
    assert Assignment.objects.get(pk=submitted.pk).status == Assignment.Status.SUBMITTED
    assert Verdict.objects.filter(assignment=submitted).count() == 1
    # The item they held goes to the annotator still on the queue.
    assert annotation_services.assignment_claim(queue=queue, user=other).item_id == held.item_id
    assert api_client(p.annotator).get(f"/api/projects/{p.project.slug}/").status_code == 404


# --- Tasks and references ------------------------------------------------------------------


def test_a_tasks_prompt_is_frozen_once_responses_answer_it(personas):
    p = personas
    author = api_client(p.author)
    url = f"/api/projects/{p.project.slug}/tasks/t1/"
    factories.make_task(p.project, "t1")
    reply = author.patch(
        url, {"messages": "Is a fever dangerous?", "tags": ["fever"]}, format="json"
    )
    assert reply.status_code == 200, reply.data
    assert reply.data["messages"] == [{"role": "user", "content": "Is a fever dangerous?"}]
    assert reply.data["tags"] == ["fever"]
    assert author.patch(url, {}, format="json").status_code == 400
    reply = author.patch(url, {"messages": [{"role": "robot", "content": "x"}]}, format="json")
    assert reply.status_code == 400 and set(reply.data) == {"messages[0].role"}

    respond(p.project, "t1")
    reply = author.patch(url, {"messages": "Something else"}, format="json")
    assert reply.status_code == 409
    assert "has responses, which answer its prompt" in reply.data["detail"]
    assert author.patch(url, {"context": "New context"}, format="json").status_code == 409
    # The same prompt again, a title, tags: fine.
    reply = author.patch(
        url, {"messages": "Is a fever dangerous?", "title": "Fever", "tags": []}, format="json"
    )
    assert reply.status_code == 200 and reply.data["title"] == "Fever"
    assert Task.objects.get(external_id="t1").messages[0]["content"] == "Is a fever dangerous?"


def test_a_task_is_deleted_only_without_responses_or_published_rubrics(personas):
    p = personas
    author = api_client(p.author)
    tasks = f"/api/projects/{p.project.slug}/tasks/"
    answered = factories.make_task(p.project, "answered")
    respond(p.project, "answered")
    reply = author.delete(f"{tasks}answered/")
    assert reply.status_code == 409 and "1 response(s)" in reply.data["detail"]

    published = factories.make_task(p.project, "published")
    factories.make_published_rubric(p.project, published, [("Advises rest", 1)], p.admin)
    assert author.delete(f"{tasks}published/").status_code == 409

    drafted = factories.make_task(p.project, "drafted")
    rubric = rubric_services.rubric_create(
        project=p.project, task=drafted, title="Draft", user=p.author
    )
    rubric_services.reference_add(task=drafted, body="Rest.", user=p.author)
    assert author.delete(f"{tasks}drafted/").status_code == 204
    assert not Rubric.objects.filter(pk=rubric.pk).exists()
    assert not ReferenceDeliverable.objects.filter(task_id=drafted.pk).exists()
    assert Task.objects.filter(pk__in=[answered.pk, published.pk]).count() == 2


def test_references_change_but_a_published_grader_keeps_its_copy(personas):
    p = personas
    author = api_client(p.author)
    factories.make_task(p.project, "t1")
    reply = author.post(
        f"/api/projects/{p.project.slug}/tasks/t1/references/", {"body": "Rest."}, format="json"
    )
    assert reply.status_code == 201, reply.data
    ref = reply.data["id"]
    assert reply.data["author"] == p.author.username
    rubric = rubric_services.rubric_create(
        project=p.project,
        task=Task.objects.get(external_id="t1"),
        title="R",
        user=p.author,
        criteria=[rubric_services.clean_criterion("Advises rest", 1)],
    )
    reply = author.patch(f"/api/rubrics/{rubric.pk}/", {"include_reference": True}, format="json")
    assert reply.status_code == 200 and reply.data["include_reference"] is True
    grader = rubric_services.version_publish(version=rubric.versions.get(), user=p.author)
    assert grader.spec["reference"] == "Rest."

    reply = author.patch(f"/api/references/{ref}/", {"body": "Rest, fluids."}, format="json")
    assert reply.status_code == 200 and reply.data["body"] == "Rest, fluids."
    assert author.patch(f"/api/references/{ref}/", {"body": " "}, format="json").status_code == 400
    assert author.get(f"/api/references/{ref}/").data["body"] == "Rest, fluids."
    assert author.delete(f"/api/references/{ref}/").status_code == 204
    assert author.get(f"/api/references/{ref}/").status_code == 404
    grader.refresh_from_db()
    assert grader.spec["reference"] == "Rest."  # published: immutable


# --- Rubrics, versions and criteria ----------------------------------------------------------


def test_rubric_rename_delete_discard_reopen_retire(personas):
    p = personas
    author, reviewer = api_client(p.author), api_client(p.reviewer)
    task = factories.make_task(p.project, "t1")
    grader = factories.make_published_rubric(p.project, task, [("Advises rest", 1)], p.admin)
    rubric = grader.version.rubric
    url = f"/api/rubrics/{rubric.pk}/"

    reply = author.patch(url, {"title": "Fever rubric"}, format="json")
    assert reply.status_code == 200 and reply.data["title"] == "Fever rubric"
    grader.refresh_from_db()
    assert grader.spec["rubric"]["title"] != "Fever rubric"  # the grader keeps its title
    assert author.patch(url, {}, format="json").status_code == 400
    reply = author.delete(url)
    assert reply.status_code == 409 and "Retire its versions instead" in reply.data["detail"]

    # A draft on top of the published version: discarded, and then there is none.
    reply = author.post(f"{url}draft/criteria/", {"text": "Is kind", "points": 1}, format="json")
    assert reply.status_code == 201, reply.data
    reply = author.delete(f"{url}draft/")
    assert reply.status_code == 200
    assert [(v["number"], v["status"]) for v in reply.data["versions"]] == [(1, "published")]
    assert author.delete(f"{url}draft/").status_code == 409

    # Submit, reopen, submit again.
    author.post(f"{url}draft/criteria/", {"text": "Is kind", "points": 1}, format="json")
    assert author.post(f"{url}submit/").status_code == 200
    reply = author.post(f"{url}reopen/")
    assert reply.status_code == 200 and reply.data["versions"][0]["status"] == "draft"
    assert author.post(f"{url}reopen/").status_code == 400

    # Retire the published version: readable, its grader unchanged; retiring twice is refused.
    reply = reviewer.post(f"{url}versions/1/retire/")
    assert reply.status_code == 200, reply.data
    assert [v["status"] for v in reply.data["versions"]] == ["draft", "retired"]
    assert reviewer.post(f"{url}versions/1/retire/").status_code == 400
    assert reviewer.post(f"{url}versions/9/retire/").status_code == 404
    assert author.get(f"/api/graders/{grader.hash}/").status_code == 200

    # A rubric that was never published goes; a template others build on stays.
    template = rubric_services.rubric_create(
        project=p.project, title="Generic", user=p.author, is_template=True
    )
    child = rubric_services.rubric_create(
        project=p.project,
        task=factories.make_task(p.project),
        title="C",
        user=p.author,
        template=template,
    )
    assert author.delete(f"/api/rubrics/{template.pk}/").status_code == 409
    assert author.delete(f"/api/rubrics/{child.pk}/").status_code == 204
    assert author.delete(f"/api/rubrics/{template.pk}/").status_code == 204
    reply = author.delete(f"/api/rubrics/{rubric.pk}/draft/")
    assert reply.status_code == 200
    assert RubricVersion.objects.filter(rubric=rubric).count() == 1


def test_criteria_change_only_in_a_draft(personas):
    p = personas
    author = api_client(p.author)
    rubric = rubric_services.rubric_create(project=p.project, title="R", user=p.author)
    add = f"/api/rubrics/{rubric.pk}/draft/criteria/"
    first = author.post(add, {"text": "Advises rest", "points": 2}, format="json").data
    assert first["version_status"] == "draft" and first["position"] == 0
    last = author.post(add, {"text": "Is kind", "points": 1}, format="json").data
    middle = author.post(
        add, {"text": "Advises fluids", "points": 1, "after": first["id"]}, format="json"
    ).data
    assert (middle["position"], author.get(f"/api/criteria/{last['id']}/").data["position"]) == (
        1,
        2,
    )
    reply = author.post(add, {"text": "x", "points": 1, "after": 999999}, format="json")
    assert reply.data == {"after": ["No criterion 999999 in the draft."]}

    url = f"/api/criteria/{middle['id']}/"
    reply = author.patch(f"{url}?revision={middle['revision']}", {"points": 3}, format="json")
    assert reply.status_code == 200 and reply.data["points"] == 3
    reply = author.patch(f"{url}?revision={middle['revision']}", {"points": 4}, format="json")
    assert reply.status_code == 400 and "Someone else saved this draft" in reply.data["revision"][0]
    reply = author.patch(url, {"colour": "red", "points": 0}, format="json")
    assert reply.status_code == 400 and set(reply.data) == {"colour"}
    reply = author.patch(url, {"points": 0}, format="json")
    assert reply.status_code == 400 and set(reply.data) == {"points"}
    assert author.patch(url, {}, format="json").status_code == 400
    assert author.delete(url).status_code == 204
    assert author.get(url).status_code == 404

    # Submitted: read-only until reopened. Published: never again.
    assert author.post(f"/api/rubrics/{rubric.pk}/submit/").status_code == 200
    reply = author.patch(f"/api/criteria/{first['id']}/", {"points": 5}, format="json")
    assert reply.status_code == 409 and "is in review" in reply.data["detail"]
    version = rubric.versions.get()
    rubric_services.version_reopen(version=version, user=p.author)
    rubric_services.version_publish(version=version, user=p.author)
    reply = author.delete(f"/api/criteria/{first['id']}/")
    assert reply.status_code == 409 and "published and cannot change" in reply.data["detail"]
    assert author.get(f"/api/criteria/{first['id']}/").data["points"] == 2


# --- Judges, queues, snapshots, prices, calibration ------------------------------------------


def test_a_judge_that_graded_keeps_who_it_is(personas):
    p = personas
    admin = api_client(p.admin)
    fresh = factories.make_judge(p.project, "http://127.0.0.1:9/v1", name="fresh")
    url = f"/api/judges/{fresh.pk}/"
    reply = admin.patch(url, {"model": "other-model", "max_concurrency": 3}, format="json")
    assert reply.status_code == 200, reply.data
    assert (reply.data["model"], reply.data["max_concurrency"]) == ("other-model", 3)
    reply = admin.patch(url, {"api_key_env": "sk-live-abc"}, format="json")
    assert reply.status_code == 400 and set(reply.data) == {"api_key_env"}
    assert admin.delete(url).status_code == 204
    assert not Rater.objects.filter(pk=fresh.rater_id).exists()

    task = factories.make_task(p.project, "t1")
    grader = factories.make_published_rubric(p.project, task, [("Advises rest", 1)], p.admin)
    respond(p.project, "t1")
    used = factories.make_judge(p.project, "http://127.0.0.1:9/v1", name="used")
    grading_services.run_create(project=p.project, grader=grader, judge=used, user=p.admin)
    url = f"/api/judges/{used.pk}/"
    reply = admin.patch(url, {"requests_per_minute": 60, "name": "lead"}, format="json")
    assert reply.status_code == 200 and reply.data["name"] == "lead"
    assert Rater.objects.get(pk=used.rater_id).name == "judge: lead"
    reply = admin.patch(url, {"model": "gpt-5"}, format="json")
    assert reply.status_code == 409 and "Add a new judge instead" in reply.data["detail"]
    assert admin.patch(url, {"model": "judge-model"}, format="json").status_code == 200
    assert admin.delete(url).status_code == 409
    assert Judge.objects.get(pk=used.pk).model == "judge-model"


def test_queues_change_annotators_and_keep_submitted_work(personas):
    p = personas
    admin = api_client(p.admin)
    task = factories.make_task(p.project, "t1")
    grader = factories.make_published_rubric(p.project, task, [("Advises rest", 1)], p.admin)
    respond(p.project, "t1", "a")
    respond(p.project, "t1", "b")
    other = factories.add_member(p.project, "annotator")
    queue = factories.make_queue(p.project, grader, [p.annotator, other], p.admin, overlap=2)
    held = factories.annotate(queue, p.annotator, submit=False)
    url = f"/api/queues/{queue.pk}/"

    reply = admin.patch(url, {"annotators": [other.username]}, format="json")
    assert reply.status_code == 400 and set(reply.data) == {"overlap"}
    reply = admin.patch(url, {"annotators": [p.reviewer.username]}, format="json")
    assert reply.status_code == 400 and set(reply.data) == {"annotators"}
    reply = admin.patch(url, {"lease_seconds": 10**9}, format="json")
    assert reply.status_code == 400 and set(reply.data) == {"lease_seconds"}
    reply = admin.patch(
        url, {"annotators": [other.username], "overlap": 1, "name": "Round 2"}, format="json"
    )
    assert reply.status_code == 200, reply.data
    assert (reply.data["name"], reply.data["overlap"]) == ("Round 2", 1)
    held.refresh_from_db()
    assert held.status == Assignment.Status.SKIPPED and not held.verdicts.exists()
    assert api_client(p.annotator).post(f"{url}claim/").status_code == 403

    listed = admin.get(f"{url}assignments/", {"status": "skipped"}).data["results"]
    assert [(a["id"], a["annotator"]) for a in listed] == [(held.pk, p.annotator.username)]

    factories.annotate(queue, other)
    reply = admin.delete(url)
    assert reply.status_code == 409 and "1 submitted item(s)" in reply.data["detail"]
    empty = factories.make_queue(p.project, grader, [other], p.admin, overlap=1)
    assert admin.delete(f"/api/queues/{empty.pk}/").status_code == 204


def test_a_snapshot_is_deleted_with_its_file_but_not_while_built(
    personas, django_capture_on_commit_callbacks
):
    p = personas
    engineer = api_client(p.engineer)
    snapshot = snapshots.snapshot_create(
        project=p.project, name="snap", format="responses-jsonl", user=p.admin
    )
    snapshots.snapshot_build(snapshot_id=snapshot.pk)
    snapshot.refresh_from_db()
    path = Path(snapshots.snapshot_path(snapshot))
    assert path.exists()
    with django_capture_on_commit_callbacks(execute=True):
        assert engineer.delete(f"/api/datasets/{snapshot.pk}/").status_code == 204
    assert not path.exists()
    assert not DatasetSnapshot.objects.filter(pk=snapshot.pk).exists()

    building = snapshots.snapshot_create(
        project=p.project, name="later", format="responses-jsonl", user=p.admin
    )
    DatasetSnapshot.objects.filter(pk=building.pk).update(status=DatasetSnapshot.Status.BUILDING)
    reply = engineer.delete(f"/api/datasets/{building.pk}/")
    assert reply.status_code == 409 and "is being built" in reply.data["detail"]
    listed = engineer.get(f"/api/projects/{p.project.slug}/datasets/", {"status": "building"})
    assert [s["id"] for s in listed.data["results"]] == [building.pk]


def test_model_prices_are_kept_by_staff(personas):
    staff = factories.make_user()
    staff.is_staff = True
    staff.save()
    client = api_client(staff)
    reply = client.post(
        "/api/model-prices/",
        {"model": "gpt-x", "input_per_mtok": "2.5", "output_per_mtok": 10},
        format="json",
    )
    assert reply.status_code == 201, reply.data
    pk = reply.data["id"]
    assert reply.data["cached_input_per_mtok"] == 0
    assert client.post("/api/model-prices/", {"model": "gpt-x"}, format="json").data == {
        "model": ["'gpt-x' has a price already; change that one."]
    }
    reply = client.patch(f"/api/model-prices/{pk}/", {"input_per_mtok": -1}, format="json")
    assert reply.status_code == 400 and set(reply.data) == {"input_per_mtok"}
    reply = client.patch(f"/api/model-prices/{pk}/", {"cached_input_per_mtok": 1}, format="json")
    assert reply.status_code == 200 and reply.data["input_per_mtok"] == 2.5
    assert ModelPrice.objects.get(pk=pk).cached_input_per_mtok == 1

    admin = api_client(personas.admin)  # a project admin: prices hold for every project
    assert admin.get(f"/api/model-prices/{pk}/").data["model"] == "gpt-x"
    assert (
        admin.patch(f"/api/model-prices/{pk}/", {"input_per_mtok": 0}, format="json").status_code
        == 403
    )
    assert admin.delete(f"/api/model-prices/{pk}/").status_code == 403
    assert client.delete(f"/api/model-prices/{pk}/").status_code == 204
    assert not ModelPrice.objects.filter(pk=pk).exists()


def test_calibration_threshold_is_set_by_admins(personas):
    url = f"/api/projects/{personas.project.slug}/calibration-settings/"
    admin = api_client(personas.admin)
    assert admin.get(url).data == {"threshold": 0.6, "min_items": 10}
    reply = admin.put(url, {"threshold": 0.4}, format="json")
    assert reply.data == {"threshold": 0.4, "min_items": 10}
    reply = admin.put(url, {"threshold": 0.4, "min_items": 3}, format="json")
    assert reply.data == {"threshold": 0.4, "min_items": 3}
    assert api_client(personas.engineer).get(url).data == {"threshold": 0.4, "min_items": 3}
    reply = admin.put(url, {"threshold": 0.4, "min_items": 0}, format="json")
    assert reply.status_code == 400 and set(reply.data) == {"min_items"}
    reply = admin.put(url, {"threshold": 2}, format="json")
    assert reply.status_code == 400 and set(reply.data) == {"threshold"}


# --- Reads: verdicts, gold, raters, comments, history, tokens ---------------------------------


def test_verdicts_gold_and_raters_are_listed_with_provenance(personas):
    p = personas
    task = factories.make_task(p.project, "t1")
    grader = factories.make_published_rubric(p.project, task, [("Advises rest", 1)], p.admin)
    respond(p.project, "t1")
    judge = factories.make_judge(p.project, "http://127.0.0.1:9/v1")
    run = grading_services.run_create(project=p.project, grader=grader, judge=judge, user=p.admin)
    criterion = grader.version.criteria.get()
    response = Response.objects.get()
    Verdict.objects.create(
        response=response,
        criterion=criterion,
        rater=judge.rater,
        grader=grader,
        run=run,
        outcome=Verdict.Outcome.UNMET,
    )
    other = factories.add_member(p.project, "annotator")
    queue = factories.make_queue(p.project, grader, [p.annotator, other], p.admin, overlap=2)
    factories.annotate(queue, p.annotator, "met")
    factories.annotate(queue, other, "met", submit=False)  # a draft: nobody's verdict yet

    engineer = api_client(p.engineer)
    url = f"/api/projects/{p.project.slug}/verdicts/"
    listed = engineer.get(url).data["results"]
    assert sorted((v["rater_kind"], v["outcome"], v["run"]) for v in listed) == [
        ("judge", "unmet", run.pk),
        ("person", "met", None),
    ]
    assert all(v["grader"] == grader.hash for v in listed)
    assert [v["outcome"] for v in engineer.get(url, {"run": run.pk}).data["results"]] == ["unmet"]
    assert engineer.get(url, {"rubric_version": grader.version_id}).data["results"] != []
    reply = engineer.get(url, {"run": "x"})
    assert reply.status_code == 400 and set(reply.data) == {"run"}

    raters = engineer.get(f"/api/projects/{p.project.slug}/raters/", {"kind": "person"})
    assert sorted(r["username"] for r in raters.data["results"]) == sorted(
        [p.annotator.username, other.username]
    )

    gold = f"/api/versions/{grader.version_id}/gold/"
    admin = api_client(p.admin)
    body = {"response": response.pk, "criterion": criterion.pk, "outcome": "met"}
    first = admin.post(gold, body, format="json").data
    second = admin.post(gold, {**body, "outcome": "unmet", "note": "On reflection"}, format="json")
    assert second.data["replaces"] == first["id"]
    assert [g["id"] for g in engineer.get(gold).data["results"]] == [second.data["id"], first["id"]]
    assert [g["outcome"] for g in engineer.get(gold, {"current": "true"}).data["results"]] == [
        "unmet"
    ]


def test_comments_history_and_token_detail(personas):
    p = personas
    rubric = rubric_services.rubric_create(
        project=p.project,
        title="R",
        user=p.author,
        criteria=[rubric_services.clean_criterion("Advises rest", 1)],
    )
    version = rubric.versions.get()
    rubric_services.version_submit(version=version, user=p.author)
    comment = rubric_services.comment_add(version=version, user=p.reviewer, body="Vague")
    rubric_services.comment_add(version=version, user=p.reviewer, body="Typo")
    rubric_services.comment_resolve(comment=comment, user=p.author)
    client = api_client(p.annotator)
    url = f"/api/rubrics/{rubric.pk}/comments/"
    assert [c["body"] for c in client.get(url).data["results"]] == ["Vague", "Typo"]
    assert [c["body"] for c in client.get(url, {"resolved": "false"}).data["results"]] == ["Typo"]
    history = client.get(f"/api/rubrics/{rubric.pk}/history/").data["results"]
    assert [e["action"] for e in history][:2] == ["comment_resolved", "commented"]
    assert history[-1]["action"] == "created"

    mine = (
        api_client(p.author)
        .post("/api/tokens/", {"name": "ci", "scopes": ["read"]}, format="json")
        .data
    )
    author = api_client(p.author)
    reply = author.get(f"/api/tokens/{mine['id']}/")
    assert reply.status_code == 200 and "token" not in reply.data and reply.data["name"] == "ci"
    assert api_client(p.reviewer).get(f"/api/tokens/{mine['id']}/").status_code == 404


# --- A background import, with a real worker ----------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_background_import_over_the_api(personas, celery_worker):
    p = personas
    factories.make_task(p.project, "t1")
    engineer = api_client(p.engineer)
    rows = [
        {"task_id": "t1", "model": "m", "sample_index": i, "response": f"R{i}"} for i in range(5)
    ]
    reply = engineer.post(
        f"/api/projects/{p.project.slug}/imports/",
        {"file": jsonl_file(rows, "big.jsonl")},
        format="multipart",
    )
    assert reply.status_code == 202, reply.data
    url = f"/api/imports/{reply.data['id']}/"
    done = wait_for(
        lambda: (d := engineer.get(url).data)["status"] in ("done", "failed") and d,
        what="the import job",
    )
    assert (done["status"], done["created"], done["percent"]) == ("done", 5, 100)
    assert Response.objects.filter(task__project=p.project).count() == 5
    jobs = engineer.get(f"/api/projects/{p.project.slug}/imports/", {"status": "done"})
    assert [j["id"] for j in jobs.data["results"]] == [done["id"]]
    reply = engineer.post(
        f"/api/projects/{p.project.slug}/imports/",
        {"file": SimpleUploadedFile("x.jsonl", b"")},
        format="multipart",
    )
    assert reply.status_code == 400 and set(reply.data) == {"file"}
    assert ImportJob.objects.count() == 1
