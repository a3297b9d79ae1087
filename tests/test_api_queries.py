"""List and detail endpoints make as many queries for many rows as for a few: no N+1."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from annotation import services as annotation_services
from annotation.models import ImportJob, Response, Verdict
from grading import services as grading_services
from grading.datasets import snapshots
from grading.models import ModelPrice, Score
from rubrics import services as rubric_services
from rubrics.models import ReferenceDeliverable
from tests import factories
from tests.test_api import api_client

MORE = 12
CRITERIA = [(f"Criterion number {i} about hydration", i + 1) for i in range(MORE)]


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def world(personas):
    """One of everything: task, reference, rubric, response, judge, run, score, verdict."""
    project, admin = personas.project, personas.admin
    task = factories.make_task(project, external_id="t-0")
    ReferenceDeliverable.objects.create(task=task, body="The reference.", author=admin)
    grader = factories.make_published_rubric(project, task, CRITERIA, admin)
    factories.import_responses(project, [{"task_id": "t-0", "model": "m-0", "response": "Rest."}])
    judge = factories.make_judge(project, "http://127.0.0.1:9/v1")
    run = grading_services.run_create(project=project, grader=grader, judge=judge, user=admin)
    score = run.scores.select_related("response").get()
    world = SimpleNamespace(
        personas=personas,
        project=project,
        admin=admin,
        task=task,
        grader=grader,
        rubric=grader.version.rubric,
        judge=judge,
        run=run,
        score=score,
        queue=factories.make_queue(project, grader, [personas.annotator], admin, overlap=1),
    )
    annotation_services.assignment_claim(queue=world.queue, user=personas.annotator)
    add_verdicts(world, grader.spec["criteria"][:1])
    return world


def add_verdicts(w, criteria) -> None:
    Verdict.objects.bulk_create(
        Verdict(
            response=w.score.response,
            criterion_id=c["id"],
            rater_id=w.judge.rater_id,
            grader=w.grader,
            run=w.run,
            outcome=Verdict.Outcome.MET,
            explanation="Stored by the test.",
        )
        for c in criteria
    )


def more_responses(w, models: int = 1, per_model: int = MORE) -> list[Response]:
    rows = [
        {"task_id": "t-0", "model": f"more-{m}", "sample_index": i, "response": f"Answer {i}."}
        for m in range(models)
        for i in range(per_model)
    ]
    factories.import_responses(w.project, rows)
    return list(Response.objects.filter(model__startswith="more-"))


def grow_projects(w):
    for i in range(MORE):
        project = rubric_services.project_create(name=f"More {i}", user=w.admin)
        factories.make_task(project)


def grow_members(w):
    for _ in range(MORE):
        factories.add_member(w.project, "annotator")


def grow_tasks(w):
    for _ in range(MORE):
        factories.make_task(w.project)


def grow_task_detail(w):
    for i in range(MORE):
        author = factories.add_member(w.project, "author")
        ReferenceDeliverable.objects.create(task=w.task, body=f"Reference {i}", author=author)
        rubric_services.rubric_create(project=w.project, task=w.task, title=f"R{i}", user=author)


def grow_rubrics(w):
    for i in range(MORE):
        rubric_services.rubric_create(project=w.project, title=f"Template {i}", user=w.admin)


def grow_rubric_versions(w):
    for _ in range(3):
        draft = rubric_services.draft_for_edit(rubric=w.rubric, user=w.admin)
        rubric_services.version_publish(version=draft, user=w.admin)
    rubric_services.draft_for_edit(rubric=w.rubric, user=w.admin)


def grow_responses(w):
    more_responses(w)


def grow_response_models(w):
    more_responses(w, models=MORE, per_model=1)


def grow_judges(w):
    for i in range(MORE):
        factories.make_judge(w.project, "http://127.0.0.1:9/v1", name=f"judge-{i}")


def grow_runs(w):
    for _ in range(MORE):
        grading_services.run_create(project=w.project, grader=w.grader, judge=w.judge, user=w.admin)


def grow_scores(w):
    responses = more_responses(w, models=3, per_model=4)
    Score.objects.bulk_create(
        Score(run=w.run, response=r, grader=w.grader, status=Score.Status.DONE, raw=0.5)
        for r in responses
    )


def grow_verdicts(w):
    add_verdicts(w, w.grader.spec["criteria"][1:])


def grow_project_verdicts(w):
    grow_verdicts(w)


def grow_raters(w):
    for _ in range(MORE):
        annotation_services.person_rater(
            project=w.project, user=factories.add_member(w.project, "annotator")
        )


def grow_assignments(w):
    """MORE annotators more on the queue's one item, each holding a turn."""
    annotators = [factories.add_member(w.project, "annotator") for _ in range(MORE)]
    names = [w.personas.annotator.username, *(a.username for a in annotators)]
    annotation_services.queue_update(queue=w.queue, annotators=names, overlap=MORE + 1)
    w.queue.refresh_from_db()
    for user in annotators:
        annotation_services.assignment_claim(queue=w.queue, user=user)


def grow_gold(w):
    criterion = w.grader.version.criteria.order_by("position").first()
    for response in more_responses(w):
        annotation_services.gold_decide(
            response=response, criterion=criterion, outcome="met", note="", user=w.admin
        )


def grow_comments(w):
    draft = rubric_services.draft_for_edit(rubric=w.rubric, user=w.admin)
    rubric_services.version_submit(version=draft, user=w.admin)
    for i in range(MORE):
        reviewer = factories.add_member(w.project, "reviewer")
        comment = rubric_services.comment_add(version=draft, user=reviewer, body=f"Comment {i}")
        rubric_services.comment_reply(comment=comment, user=reviewer, body=f"Reply {i}")


def grow_reviews(w):
    for i in range(MORE):
        author = factories.add_member(w.project, "author")
        draft = rubric_services.rubric_create(
            project=w.project,
            title=f"In review {i}",
            user=author,
            criteria=[rubric_services.clean_criterion("Says hello", 1)],
        ).versions.get()
        rubric_services.version_submit(version=draft, user=author)
        rubric_services.comment_add(version=draft, user=w.admin, body=f"Comment {i}")


def grow_history(w):
    for i in range(MORE):
        author = factories.add_member(w.project, "author")
        rubric_services.rubric_rename(rubric=w.rubric, title=f"Title {i}", user=author)


def grow_imports(w):
    for i in range(MORE):
        ImportJob.objects.create(
            project=w.project, filename=f"{i}.jsonl", file="x", created_by=factories.make_user()
        )


def grow_prices(w):
    ModelPrice.objects.bulk_create(ModelPrice(model=f"model-{i}") for i in range(MORE))


def grow_snapshots(w):
    for i in range(MORE):
        snapshots.snapshot_create(
            project=w.project, name=f"snap-{i}", format="responses-jsonl", user=w.admin
        )


CASES = {
    "projects": ("projects/", grow_projects),
    "members": ("projects/{slug}/members/", grow_members),
    "tasks": ("projects/{slug}/tasks/", grow_tasks),
    "task": ("projects/{slug}/tasks/t-0/", grow_task_detail),
    "rubrics": ("projects/{slug}/rubrics/", grow_rubrics),
    "rubric": ("rubrics/{rubric}/", grow_rubric_versions),
    "responses": ("projects/{slug}/responses/", grow_responses),
    "response models": ("projects/{slug}/responses/models/", grow_response_models),
    "judges": ("projects/{slug}/judges/", grow_judges),
    "runs": ("projects/{slug}/runs/", grow_runs),
    "run": ("runs/{run}/", grow_scores),
    "scores": ("runs/{run}/scores/", grow_scores),
    "verdicts": ("runs/{run}/scores/{score}/verdicts/", grow_verdicts),
    "project verdicts": ("projects/{slug}/verdicts/", grow_project_verdicts),
    "raters": ("projects/{slug}/raters/", grow_raters),
    "queue assignments": ("queues/{queue}/assignments/", grow_assignments),
    "gold": ("versions/{version}/gold/", grow_gold),
    "comments": ("rubrics/{rubric}/comments/", grow_comments),
    "history": ("rubrics/{rubric}/history/", grow_history),
    "reviews": ("projects/{slug}/reviews/", grow_reviews),
    "imports": ("projects/{slug}/imports/", grow_imports),
    "model prices": ("model-prices/", grow_prices),
    "datasets": ("projects/{slug}/datasets/", grow_snapshots),
}


def size(data) -> int:
    """How much a reply holds: rows of a list, or the rows nested in a detail."""
    if isinstance(data, list):
        return len(data) + sum(size(item) for item in data)
    if isinstance(data, dict):
        return sum(size(value) for value in data.values())
    return 0


@pytest.mark.parametrize("name", CASES)
def test_query_count_does_not_grow_with_rows(name, world, django_assert_max_num_queries):
    path, grow = CASES[name]
    url = "/api/" + path.format(
        slug=world.project.slug,
        rubric=world.rubric.pk,
        run=world.run.pk,
        score=world.score.pk,
        queue=world.queue.pk,
        version=world.grader.version_id,
    )
    client = api_client(world.admin)
    with CaptureQueriesContext(connection) as few:
        reply = client.get(url)
    assert reply.status_code == 200, reply.data
    small = size(reply.data)
    grow(world)
    with django_assert_max_num_queries(len(few)):
        reply = client.get(url)
    assert reply.status_code == 200, reply.data
    assert size(reply.data) > small, "the rows did not grow"


def test_pages_follow_cursors_to_the_end(world):
    grow_tasks(world)
    client = api_client(world.admin)
    url = f"/api/projects/{world.project.slug}/tasks/"
    first = client.get(url, {"limit": 5}).data
    assert len(first["results"]) == 5 and first["next"] and first["previous"] is None
    seen, page = [], first
    while True:
        seen += [t["external_id"] for t in page["results"]]
        if not page["next"]:
            break
        page = client.get(page["next"]).data
    assert len(seen) == len(set(seen)) == MORE + 1  # every task once, none skipped
    assert "count" not in first  # no COUNT(*) over the whole table
