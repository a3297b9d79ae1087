"""The audit log: each sensitive action, done through its page or the API, appends exactly one
event naming who, what and from where; a refused action appends none; and the database
refuses to change or delete an event."""

from __future__ import annotations

import hashlib
import json

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import IntegrityError, connection, transaction
from django.urls import reverse

from annotation.models import Adjudication, Response
from grading.datasets import snapshots
from grading.models import DatasetSnapshot, Judge, ModelPrice
from rubrics import audit, services, tokens
from rubrics.models import ApiToken, AuditEvent, Membership, Project, Role, RubricVersion
from tests import factories
from tests.test_api import api_client

pytestmark = pytest.mark.django_db
Action = AuditEvent.Action


def last_pk() -> int:
    return AuditEvent.objects.order_by("-pk").values_list("pk", flat=True).first() or 0


def only_new_event(since: int) -> AuditEvent:
    """The single event recorded after `since`; fails if there are none or several."""
    new = list(AuditEvent.objects.filter(pk__gt=since).order_by("pk"))
    assert len(new) == 1, [(e.action, e.target_label) for e in new]
    return new[0]


def no_new_event(since: int) -> None:
    new = list(AuditEvent.objects.filter(pk__gt=since).values_list("action", flat=True))
    assert new == [], new


def check(event, action, actor, *, project=None, source="web", target_type=None, details=None):
    assert event.action == action
    assert event.actor == actor and event.actor_username == actor.username
    if project is not None:
        assert event.project == project and event.project_slug == project.slug
    assert event.source == source
    assert event.ip_address == "127.0.0.1"
    if target_type is not None:
        assert event.target_type == target_type
    for key, value in (details or {}).items():
        assert event.details.get(key) == value, (key, event.details)


# --- Members and projects --------------------------------------------------------------------


def test_creating_a_project_on_the_home_page_is_recorded(client, personas):
    client.force_login(personas.author)
    since = last_pk()
    assert client.post(reverse("home"), {"name": "Cardiology"}).status_code == 302
    project = Project.objects.get(name="Cardiology")
    event = only_new_event(since)
    check(event, Action.PROJECT_CREATED, personas.author, project=project, target_type="project")
    assert event.details == {"slug": project.slug}


def test_member_added_changed_and_removed_on_the_page(client, personas):
    p = personas
    newcomer = factories.make_user()
    client.force_login(p.admin)
    url = reverse("members", kwargs={"slug": p.project.slug})

    since = last_pk()
    assert client.post(url, {"username": newcomer.username, "role": "annotator"}).status_code == 302
    event = only_new_event(since)
    check(event, Action.MEMBER_INVITED, p.admin, project=p.project, target_type="invitation")
    assert event.details == {"username": newcomer.username, "role": "annotator"}

    # The newcomer joins by accepting: the event is theirs.
    client.force_login(newcomer)
    invitation = newcomer.invitations.get()
    since = last_pk()
    assert client.post(reverse("invitation_accept", args=[invitation.pk])).status_code == 302
    event = only_new_event(since)
    check(event, Action.MEMBER_ADDED, newcomer, project=p.project, target_type="user")
    assert (event.target_id, event.target_label) == (str(newcomer.pk), newcomer.username)
    assert event.details == {"role": "annotator"}
    client.force_login(p.admin)

    since = last_pk()
    assert client.post(url, {"username": newcomer.username, "role": "reviewer"}).status_code == 302
    event = only_new_event(since)
    check(event, Action.MEMBER_ROLE_CHANGED, p.admin, project=p.project)
    assert event.details == {"from": "annotator", "to": "reviewer"}

    since = last_pk()  # the same role again changes nothing, so it records nothing
    assert client.post(url, {"username": newcomer.username, "role": "reviewer"}).status_code == 302
    no_new_event(since)

    since = last_pk()
    remove = reverse(
        "member_remove", kwargs={"slug": p.project.slug, "username": newcomer.username}
    )
    assert client.post(remove).status_code == 302
    assert not Membership.objects.filter(project=p.project, user=newcomer).exists()
    event = only_new_event(since)
    check(event, Action.MEMBER_REMOVED, p.admin, project=p.project, details={"role": "reviewer"})
    assert event.target_label == newcomer.username


def test_refused_member_changes_record_nothing(client, personas):
    p = personas
    client.force_login(p.admin)
    since = last_pk()
    # The last admin can neither be demoted nor removed; a non-admin cannot manage members.
    url = reverse("members", kwargs={"slug": p.project.slug})
    assert client.post(url, {"username": p.admin.username, "role": "author"}).status_code == 200
    remove = reverse("member_remove", kwargs={"slug": p.project.slug, "username": p.admin.username})
    assert client.post(remove).status_code == 302
    assert Membership.objects.get(project=p.project, user=p.admin).role == Role.ADMIN
    client.force_login(p.reviewer)
    assert client.post(url, {"username": p.author.username, "role": "admin"}).status_code == 403
    no_new_event(since)


def test_member_changes_through_the_api(personas):
    p = personas
    client = api_client(p.admin)
    newcomer = factories.make_user()
    base = f"/api/projects/{p.project.slug}/members/"

    since = last_pk()
    reply = client.post(base, {"username": newcomer.username, "role": "engineer"}, format="json")
    assert reply.status_code == 202
    check(only_new_event(since), Action.MEMBER_INVITED, p.admin, project=p.project, source="api")
    newcomer_api = api_client(newcomer)
    since = last_pk()
    (invitation,) = newcomer_api.get("/api/invitations/").data
    reply = newcomer_api.post(f"/api/invitations/{invitation['id']}/accept/")
    assert reply.status_code == 200 and reply.data["role"] == "engineer"
    event = only_new_event(since)
    check(event, Action.MEMBER_ADDED, newcomer, project=p.project, source="api")

    since = last_pk()
    assert client.delete(f"{base}{newcomer.username}/").status_code == 204
    event = only_new_event(since)
    check(event, Action.MEMBER_REMOVED, p.admin, source="api", details={"role": "engineer"})

    since = last_pk()
    reply = client.delete(f"{base}{p.admin.username}/")  # the last admin
    assert reply.status_code == 409 and "admin" in json.dumps(reply.json())
    assert client.delete(f"{base}{newcomer.username}/").status_code in (400, 404)  # not a member
    no_new_event(since)


# --- Review and publishing ---------------------------------------------------------------------


@pytest.fixture
def rubric(personas):
    task = factories.make_task(personas.project, "t-review")
    return services.rubric_create(
        project=personas.project,
        task=task,
        title="Hydration",
        user=personas.author,
        criteria=[services.clean_criterion("Advises fluids", 2)],
    )


def test_submit_return_approve_and_retire_on_the_pages(client, personas, rubric):
    p = personas
    version = rubric.versions.get()
    label = f"Hydration v{version.number}"

    client.force_login(p.author)
    since = last_pk()
    assert client.post(reverse("rubric_submit", kwargs={"pk": rubric.pk})).status_code == 302
    event = only_new_event(since)
    check(
        event, Action.VERSION_SUBMITTED, p.author, project=p.project, target_type="rubric_version"
    )
    assert (event.target_id, event.target_label) == (str(version.pk), label)
    assert event.details == {"rubric": rubric.pk, "version": 1}

    since = last_pk()
    assert client.post(reverse("rubric_reopen", kwargs={"pk": rubric.pk})).status_code == 302
    check(only_new_event(since), Action.VERSION_RETURNED, p.author, project=p.project)
    client.post(reverse("rubric_submit", kwargs={"pk": rubric.pk}))

    client.force_login(p.reviewer)
    since = last_pk()
    assert client.post(reverse("rubric_approve", kwargs={"pk": rubric.pk})).status_code == 302
    version.refresh_from_db()
    assert version.status == RubricVersion.Status.PUBLISHED
    event = only_new_event(since)
    grader = version.graders.get()
    check(
        event,
        Action.VERSION_APPROVED,
        p.reviewer,
        project=p.project,
        details={
            "grader": grader.hash,
            "content_hash": version.content_hash,
            "submitted_by": p.author.username,
        },
    )

    since = last_pk()
    retire = reverse("rubric_retire", kwargs={"pk": rubric.pk, "number": 1})
    assert client.post(retire).status_code == 302
    check(only_new_event(since), Action.VERSION_RETIRED, p.reviewer, project=p.project)
    since = last_pk()
    client.post(retire)  # retired already: refused
    no_new_event(since)


def test_approving_your_own_draft_is_refused_and_records_nothing(client, personas):
    p = personas
    task = factories.make_task(p.project, "t-own")
    own = services.rubric_create(
        project=p.project,
        task=task,
        title="Mine",
        user=p.reviewer,
        criteria=[services.clean_criterion("Advises rest", 1)],
    )
    services.version_submit(version=own.versions.get(), user=p.admin)
    client.force_login(p.reviewer)
    since = last_pk()
    reply = client.post(reverse("rubric_approve", kwargs={"pk": own.pk}), follow=True)
    assert b"another reviewer approves it" in reply.content
    assert own.versions.get().status == RubricVersion.Status.IN_REVIEW
    no_new_event(since)


def test_submit_and_approve_through_the_api(personas, rubric):
    p = personas
    author, reviewer = api_client(p.author), api_client(p.reviewer)
    since = last_pk()
    assert author.post(f"/api/rubrics/{rubric.pk}/submit/").status_code == 200
    check(only_new_event(since), Action.VERSION_SUBMITTED, p.author, source="api")
    since = last_pk()
    assert author.post(f"/api/rubrics/{rubric.pk}/approve/").status_code == 403
    assert reviewer.post(f"/api/rubrics/{rubric.pk}/approve/").status_code == 201
    check(only_new_event(since), Action.VERSION_APPROVED, p.reviewer, source="api")


# --- Gold verdicts and calibration -------------------------------------------------------------


@pytest.fixture
def graded(personas):
    p = personas
    task = factories.make_task(p.project, "t-gold")
    grader = factories.make_published_rubric(p.project, task, [("Mentions water", 1)], p.admin)
    factories.import_responses(p.project, [{"task_id": "t-gold", "model": "m", "response": "x"}])
    return grader.version, Response.objects.get(task=task), grader.version.criteria.get()


def test_gold_verdicts_on_the_page_and_in_the_api(client, personas, graded):
    p = personas
    version, response, criterion = graded
    url = reverse(
        "adjudicate",
        kwargs={"pk": version.pk, "response_pk": response.pk, "criterion_pk": criterion.pk},
    )
    client.force_login(p.reviewer)
    since = last_pk()
    assert client.post(url, {"outcome": "met", "note": "Clearly says water"}).status_code == 302
    first = Adjudication.objects.get()
    event = only_new_event(since)
    check(event, Action.GOLD_DECIDED, p.reviewer, project=p.project, target_type="adjudication")
    assert event.target_id == str(first.pk)
    assert event.details == {
        "response": response.pk,
        "criterion": criterion.pk,
        "outcome": "met",
        "value": None,
        "note": "Clearly says water",
        "replaces": None,
        "previous_outcome": None,
    }

    since = last_pk()
    assert client.post(url, {"outcome": "maybe"}).status_code == 200  # refused
    no_new_event(since)

    admin = api_client(p.admin)
    since = last_pk()
    reply = admin.post(
        f"/api/versions/{version.pk}/gold/",
        {"response": response.pk, "criterion": criterion.pk, "outcome": "unmet", "note": "No"},
        format="json",
    )
    assert reply.status_code == 201
    check(
        only_new_event(since),
        Action.GOLD_DECIDED,
        p.admin,
        source="api",
        details={"outcome": "unmet", "replaces": first.pk, "previous_outcome": "met"},
    )


def test_calibration_threshold(client, personas, graded):
    version = graded[0]
    client.force_login(personas.admin)
    url = reverse("calibration", kwargs={"pk": version.pk})
    since = last_pk()
    assert client.post(url, {"threshold": "0.6"}).status_code == 302
    event = only_new_event(since)
    check(event, Action.CALIBRATION_THRESHOLD_SET, personas.admin, project=personas.project)
    assert event.details == {"from": None, "to": 0.6}
    since = last_pk()
    client.post(url, {"threshold": "0.6"})  # unchanged
    client.post(url, {"threshold": "7"})  # refused
    no_new_event(since)


# --- API tokens ---------------------------------------------------------------------------------


def test_tokens_page_records_creation_and_revocation_never_the_key(client, personas):
    user = personas.engineer
    client.force_login(user)
    since = last_pk()
    page = client.post(
        "/tokens/", {"name": "verl trainer", "scopes": ["read", "grade"], "expires_in_days": 30}
    )
    raw = page.context["created"]["raw"]
    token = ApiToken.objects.get(user=user)
    event = only_new_event(since)
    check(event, Action.TOKEN_CREATED, user, target_type="api_token")
    assert event.project is None and event.project_slug == ""
    assert event.target_id == str(token.pk)
    assert event.details["scopes"] == ["grade", "read"]
    assert event.details["name"] == "verl trainer" and event.details["owner"] == user.username
    assert event.details["prefix"] == token.prefix
    stored = json.dumps([event.details, event.target_label])
    assert raw not in stored and raw[len(token.prefix) :] not in stored
    assert token.key_hash not in stored

    since = last_pk()
    assert client.post(f"/tokens/{token.pk}/revoke/").status_code == 302
    check(only_new_event(since), Action.TOKEN_REVOKED, user, target_type="api_token")
    since = last_pk()
    client.post(f"/tokens/{token.pk}/revoke/")  # revoked already
    no_new_event(since)

    # The owner reads their token events on the tokens page; nobody else's appear there.
    tokens.token_create(user=personas.admin, name="admin's own", scopes=["read"])
    listed = client.get("/tokens/").context["events"]
    assert [e.action for e in listed] == [Action.TOKEN_REVOKED, Action.TOKEN_CREATED]


def test_tokens_through_the_api_and_the_password_exchange(client, personas):
    user = personas.author
    client_api = api_client(user)
    since = last_pk()
    reply = client_api.post("/api/tokens/", {"name": "ci", "scopes": ["read"]}, format="json")
    assert reply.status_code == 201
    event = only_new_event(since)
    check(event, Action.TOKEN_CREATED, user, source="api", details={"scopes": ["read"]})
    assert reply.json()["token"] not in json.dumps(event.details)

    since = last_pk()
    assert client_api.delete(f"/api/tokens/{reply.json()['id']}/").status_code == 204
    check(only_new_event(since), Action.TOKEN_REVOKED, user, source="api")

    since = last_pk()
    exchange = client_api.post(
        "/api/auth/token/",
        {"username": user.username, "password": factories.PASSWORD},
        format="json",
    )
    assert exchange.status_code == 200
    check(only_new_event(since), Action.TOKEN_CREATED, user, source="api")
    since = last_pk()
    wrong = {"username": user.username, "password": "wrong"}
    assert client_api.post("/api/auth/token/", wrong, format="json").status_code == 400
    no_new_event(since)


# --- Judges and prices ------------------------------------------------------------------------


def test_judges_from_the_page_and_the_api(client, personas, settings):
    settings.JUDGE_KEY_VARIABLES = ["OPENAI_API_KEY@judge.example"]
    p = personas
    client.force_login(p.admin)
    since = last_pk()
    form = {
        "name": "gpt",
        "base_url": "https://judge.example/v1",
        "model": "gpt-4.1",
        "api_key_env": "OPENAI_API_KEY",
        "max_concurrency": 4,
        "temperature": 0,
        "use_json_schema": "on",
        "requests_per_minute": 0,
        "tokens_per_minute": 0,
    }
    assert client.post(reverse("judges", kwargs={"slug": p.project.slug}), form).status_code == 302
    judge = Judge.objects.get(name="gpt")
    event = only_new_event(since)
    check(event, Action.JUDGE_CREATED, p.admin, project=p.project, target_type="judge")
    assert event.target_id == str(judge.pk)
    assert event.details["base_url"] == "https://judge.example/v1"
    assert event.details["api_key_env"] == "OPENAI_API_KEY"

    admin = api_client(p.admin)
    since = last_pk()
    reply = admin.post(
        f"/api/projects/{p.project.slug}/judges/",
        {"name": "local", "base_url": "http://127.0.0.1:9/v1", "model": "m"},
        format="json",
    )
    assert reply.status_code == 201
    check(only_new_event(since), Action.JUDGE_CREATED, p.admin, source="api")
    since = last_pk()
    dup = {"name": "local", "base_url": "http://127.0.0.1:9/v1", "model": "m"}
    reply = admin.post(f"/api/projects/{p.project.slug}/judges/", dup, format="json")
    assert reply.status_code == 400
    no_new_event(since)


def test_model_prices_set_and_deleted_in_the_admin(client):
    staff = get_user_model().objects.create_superuser("root", password=factories.PASSWORD)
    client.force_login(staff)
    since = last_pk()
    fields = {
        "model": "gpt-4.1",
        "input_per_mtok": "2",
        "cached_input_per_mtok": "0.5",
        "output_per_mtok": "8",
    }
    assert client.post("/admin/grading/modelprice/add/", fields).status_code == 302
    price = ModelPrice.objects.get()
    event = only_new_event(since)
    check(event, Action.MODEL_PRICE_CHANGED, staff, source="admin", target_type="model_price")
    assert event.details["output_per_mtok"] == [None, "8"]

    since = last_pk()
    change = f"/admin/grading/modelprice/{price.pk}/change/"
    assert client.post(change, {**fields, "output_per_mtok": "10"}).status_code == 302
    event = only_new_event(since)
    assert event.details == {"output_per_mtok": ["8.0000", "10"]}
    since = last_pk()
    assert client.post(change, {**fields, "output_per_mtok": "10.0"}).status_code == 302
    no_new_event(since)  # the same price written differently is no change

    since = last_pk()
    delete = f"/admin/grading/modelprice/{price.pk}/delete/"
    assert client.post(delete, {"post": "yes"}).status_code == 302
    assert not ModelPrice.objects.exists()
    check(only_new_event(since), Action.MODEL_PRICE_DELETED, staff, source="admin")


# --- Datasets and exports ------------------------------------------------------------------------


def test_snapshots_requested_and_downloaded(client, personas, graded):
    p = personas
    engineer = api_client(p.engineer)
    since = last_pk()
    reply = engineer.post(
        f"/api/projects/{p.project.slug}/datasets/",
        {"name": "gold-v1", "format": "verdicts-jsonl", "license": "CC-BY-4.0"},
        format="json",
    )
    assert reply.status_code == 202
    snapshot = DatasetSnapshot.objects.get(pk=reply.json()["id"])
    event = only_new_event(since)
    check(event, Action.SNAPSHOT_REQUESTED, p.engineer, project=p.project, source="api")
    assert event.details == {"format": "verdicts-jsonl", "params": {}, "license": "CC-BY-4.0"}

    since = last_pk()  # not built yet: 404, and nothing left Assay
    assert engineer.get(f"/api/datasets/{snapshot.pk}/download/").status_code == 404
    no_new_event(since)

    snapshots.snapshot_build(snapshot_id=snapshot.pk)  # the worker's function, run here
    snapshot.refresh_from_db()
    since = last_pk()
    assert engineer.get(f"/api/datasets/{snapshot.pk}/download/").status_code == 200
    check(
        only_new_event(since),
        Action.SNAPSHOT_DOWNLOADED,
        p.engineer,
        source="api",
        details={"sha256": snapshot.sha256, "format": "verdicts-jsonl"},
    )
    client.force_login(p.author)
    since = last_pk()
    reply = client.get(reverse("snapshot_download", kwargs={"pk": snapshot.pk}))
    assert reply.status_code == 200
    b"".join(reply.streaming_content)
    check(only_new_event(since), Action.SNAPSHOT_DOWNLOADED, p.author, project=p.project)

    since = last_pk()  # a duplicate name is refused
    again = {"name": "gold-v1", "format": "verdicts-jsonl"}
    assert engineer.post(f"/api/projects/{p.project.slug}/datasets/", again).status_code == 400
    no_new_event(since)


def test_export_dataset_command_is_recorded(personas, graded, tmp_path):
    path = tmp_path / "verdicts.jsonl"
    since = last_pk()
    args = ["--project", personas.project.slug, "--format", "responses-jsonl"]
    call_command("export_dataset", *args, "--output", str(path))
    event = only_new_event(since)
    assert event.action == Action.DATASET_EXPORTED and event.source == "command"
    assert event.actor is None and event.actor_username == "" and event.ip_address is None
    assert event.project == personas.project
    assert event.details["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert event.details["rows"] == 1 and event.details["destination"] == str(path.resolve())

    since = last_pk()
    with pytest.raises(Exception, match="no project"):
        call_command("export_dataset", "--project", "nope", "--output", str(path))
    no_new_event(since)


def test_every_project_command_records_its_events_as_from_a_command():
    """Each management command of the project's apps is an `audit.Command`, so whatever domain
    function it calls, its events say "command" (not "system")."""
    from django.core.management import get_commands, load_command_class

    ours = {name: app for name, app in get_commands().items() if app.split(".")[0] in PROJECT_APPS}
    assert {"import_rubrics", "import_responses", "grade", "load_demo"} <= set(ours)
    plain = [
        name
        for name, app in ours.items()
        if not isinstance(load_command_class(app, name), audit.Command)
    ]
    assert plain == []


PROJECT_APPS = {"rubrics", "annotation", "grading", "assay"}


def test_an_import_by_command_records_the_publish_and_the_suite_as_from_a_command(
    personas, tmp_path
):
    path = tmp_path / "hb.jsonl"
    row = {
        "prompt_id": "cmd-1",
        "prompt": [{"role": "user", "content": "Is water wet?"}],
        "rubrics": [{"criterion": "Says yes", "points": 1, "tags": []}],
    }
    path.write_text(json.dumps(row) + "\n")
    since = last_pk()
    call_command(
        "import_rubrics",
        str(path),
        "--format",
        "healthbench",
        "--project",
        personas.project.slug,
        "--user",
        personas.author.username,
        "--publish",
        "--suite",
        "by-command",
    )
    new = list(AuditEvent.objects.filter(pk__gt=since))
    assert {e.action for e in new} >= {Action.VERSION_PUBLISHED, Action.SUITE_FROZEN}
    assert {e.source for e in new} == {"command"}
    assert audit.current_origin().source == "system"  # the command's origin ends with it


def test_rubric_export_page_is_recorded(client, personas, graded):
    client.force_login(personas.annotator)
    since = last_pk()
    url = reverse("rubrics_export", kwargs={"slug": personas.project.slug})
    assert client.get(url).status_code == 200
    check(
        only_new_event(since),
        Action.RUBRICS_EXPORTED,
        personas.annotator,
        project=personas.project,
        details={"format": "healthbench"},
    )
    since = last_pk()
    assert client.get(url, {"format": "nonsense"}).status_code == 404
    no_new_event(since)


# --- Reading the log ------------------------------------------------------------------------------


def test_the_audit_page_filters_and_pages_back(client, personas, django_assert_max_num_queries):
    p = personas
    for i in range(60):
        audit.record(
            Action.JUDGE_CREATED, actor=p.admin, project=p.project, target_label=f"judge {i}"
        )
    other = factories.make_project(owner=p.reviewer)  # another project's events stay out
    client.force_login(p.admin)
    url = reverse("audit_log", kwargs={"slug": p.project.slug})
    with django_assert_max_num_queries(8):
        first = client.get(url)
    events = first.context["events"]
    assert len(events) == 50 and events[0].target_label == "judge 59"
    assert all(e.project_id == p.project.pk for e in events)
    older = client.get(url, {"before": first.context["older"]}).context["events"]
    labels = [e.target_label for e in events] + [e.target_label for e in older]
    assert labels[:60] == [f"judge {i}" for i in range(59, -1, -1)]
    # The personas' own set-up (project, members) is older still.
    assert [e.action for e in older[10:]] == [Action.MEMBER_ADDED] * 4 + [Action.PROJECT_CREATED]

    members = client.get(url, {"action": "member_added"}).context["events"]
    assert [e.target_label for e in members] == [
        p.engineer.username,
        p.reviewer.username,
        p.annotator.username,
        p.author.username,
    ]
    assert client.get(url, {"actor": p.reviewer.username}).context["events"] == []
    assert b"judge 59" in first.content
    assert not AuditEvent.objects.filter(project=other).filter(
        pk__in=[e.pk for e in events + older]
    )


def test_the_audit_api_pages_with_a_cursor_and_refuses_a_bad_filter(personas):
    p = personas
    for i in range(5):
        audit.record(Action.JUDGE_CREATED, actor=p.author, project=p.project, target_label=str(i))
    client = api_client(p.admin)
    url = f"/api/projects/{p.project.slug}/audit/"
    page = client.get(url, {"limit": 3, "actor": p.author.username}).json()
    assert [e["target_label"] for e in page["results"]] == ["4", "3", "2"]
    assert page["results"][0]["actor"] == p.author.username
    assert page["results"][0]["action"] == "judge_created"
    rest = client.get(page["next"]).json()
    assert [e["target_label"] for e in rest["results"]] == ["1", "0"] and rest["next"] is None
    bad = client.get(url, {"action": "deleted_everything"})
    assert bad.status_code == 400 and "action" in bad.json()
    assert api_client(p.reviewer).get(url).status_code == 403


# --- Append-only, in the database -----------------------------------------------------------------


@pytest.fixture
def event(personas):
    return AuditEvent.objects.filter(project=personas.project).first()


def refused(action) -> str:
    with pytest.raises(IntegrityError) as caught, transaction.atomic():
        action()
    return str(caught.value)


def raw(sql: str, params=()):
    def run():
        with connection.cursor() as cursor:
            cursor.execute(sql, params)

    return run


def test_the_database_refuses_to_change_or_delete_an_event(event, personas):
    events = AuditEvent.objects.filter(pk=event.pk)
    assert "append-only" in refused(lambda: events.update(action=Action.JUDGE_CREATED))
    assert "append-only" in refused(lambda: events.update(details={"forged": True}))
    assert "append-only" in refused(lambda: events.update(actor=personas.outsider))
    assert "append-only" in refused(lambda: events.delete())
    assert "append-only" in refused(lambda: AuditEvent.objects.get(pk=event.pk).delete())
    table = AuditEvent._meta.db_table
    assert "append-only" in refused(
        raw(f"UPDATE {table} SET actor_username = 'someone' WHERE id = %s", [event.pk])  # noqa: S608
    )
    assert "append-only" in refused(raw(f"DELETE FROM {table}"))  # noqa: S608

    def truncate():
        # The test database allows TRUNCATE (tests empty tables); production does not.
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL assay.allow_audit_truncate = 'off'")
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # TRUNCATE waits for none
            cursor.execute(f"TRUNCATE {table}")

    assert "TRUNCATE" in refused(truncate)
    again = AuditEvent.objects.get(pk=event.pk)
    assert (again.action, again.details, again.actor_id) == (
        event.action,
        event.details,
        event.actor_id,
    )


def test_deleting_a_user_or_a_project_keeps_their_events(personas):
    p = personas
    newcomer = factories.make_user()
    services.membership_set(
        project=p.project, username=newcomer.username, role="author", actor=p.admin
    )
    token, _ = tokens.token_create(user=newcomer, name="laptop", scopes=["read"])
    created = AuditEvent.objects.get(action=Action.TOKEN_CREATED, target_id=str(token.pk))
    newcomer.delete()
    created.refresh_from_db()
    assert created.actor is None and created.actor_username == newcomer.username

    lonely = factories.make_project(owner=p.outsider, name="Short-lived")
    slug = lonely.slug
    lonely.delete()
    kept = AuditEvent.objects.get(action=Action.PROJECT_CREATED, project_slug=slug)
    assert kept.project is None and kept.actor == p.outsider


def test_the_admin_shows_events_but_cannot_add_change_or_delete(client, event):
    staff = get_user_model().objects.create_superuser("auditor", password=factories.PASSWORD)
    client.force_login(staff)
    assert client.get("/admin/rubrics/auditevent/").status_code == 200
    page = client.get(f"/admin/rubrics/auditevent/{event.pk}/change/")
    assert page.status_code == 200 and b'name="action"' not in page.content  # read-only
    assert client.post(f"/admin/rubrics/auditevent/{event.pk}/change/", {}).status_code == 403
    assert client.get("/admin/rubrics/auditevent/add/").status_code == 403
    delete = f"/admin/rubrics/auditevent/{event.pk}/delete/"
    assert client.post(delete, {"post": "yes"}).status_code == 403
    assert AuditEvent.objects.filter(pk=event.pk).exists()


def test_services_without_an_actor_record_the_system(personas):
    since = last_pk()
    factories.make_judge(personas.project, "http://127.0.0.1:9/v1", name="scripted")
    event = only_new_event(since)
    assert event.actor is None and event.actor_username == "" and event.source == "system"
    assert event.ip_address is None and event.details["model"] == "judge-model"
