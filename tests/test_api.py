"""The JSON API: the whole flow with a real worker, JSONL import, input errors, the schema.

Who may call each endpoint is in roles_matrix.py, query counts in test_api_queries.py.
"""

from __future__ import annotations

import json
import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from drf_spectacular.validation import validate_schema
from rest_framework.test import APIClient

from annotation.models import Response
from assay import api_urls
from grading.judges.simulator import simulated_verdict
from rubrics import tokens
from rubrics.models import RubricVersion
from tests import factories
from tests.conftest import wait_for


def accept_invitation(user, slug: str):
    """`user` accepts their invitation to the project `slug`, through the API."""
    client = api_client(user)
    (invitation,) = [i for i in client.get("/api/invitations/").data if i["project"] == slug]
    return client.post(f"/api/invitations/{invitation['id']}/accept/")


def api_client(user=None) -> APIClient:
    """A client that authenticates as `user` with an API token, or anonymous."""
    client = APIClient()
    if user is not None:
        _, raw = tokens.token_create(user=user, name="tests", scopes=["read", "write", "grade"])
        client.credentials(HTTP_AUTHORIZATION=f"Token {raw}")
    return client


def jsonl_file(rows: list, name: str = "responses.jsonl") -> SimpleUploadedFile:
    """JSONL from rows: dicts become JSON lines, strings are written as they are."""
    lines = [row if isinstance(row, str) else json.dumps(row) for row in rows]
    return SimpleUploadedFile(name, ("\n".join(lines) + "\n").encode(), "application/jsonl")


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


# --- The flow, end to end with a real worker and the judge simulator -----------------------

CRITERIA = [
    ("Advises hydration with electrolyte solution", 5),
    ("Recommends urgent evaluation for persistent vomiting", 4),
    ("Warns about dangerous dehydration symptoms", 3),
    ("Mentions paracetamol dosing limits", 2),
    ("Prescribes codeine syrup dosage", -4),
]
POSITIVE = sum(points for _, points in CRITERIA if points > 0)
# (model, sample index) -> the criteria its response meets under the simulator's rule.
PLANS = {
    ("strong", 0): [0, 1, 2, 3],
    ("strong", 1): [0, 1, 2],
    ("medium", 0): [0, 2],
    ("medium", 1): [1, 3, 4],
    ("careless", 0): [4],
    ("careless", 1): [3, 4],
}


def response_text(met: list[int]) -> str:
    return "Answer: " + ". ".join(CRITERIA[i][0] for i in met) + "."


def expected_raw(met: list[int]) -> float:
    return sum(CRITERIA[i][1] for i in met) / POSITIVE


@pytest.mark.django_db(transaction=True)
def test_api_flow_from_token_to_verdicts(personas, sim, celery_worker):
    anonymous = APIClient()
    reply = anonymous.post(
        "/api/auth/token/",
        {"username": personas.admin.username, "password": factories.PASSWORD},
        format="json",
    )
    assert reply.status_code == 200, reply.data
    admin = APIClient()
    admin.credentials(HTTP_AUTHORIZATION=f"Token {reply.data['token']}")
    author, engineer = api_client(personas.author), api_client(personas.engineer)

    # Project and members.
    reply = admin.post("/api/projects/", {"name": "Clinic answers"}, format="json")
    assert reply.status_code == 201, reply.data
    assert reply.data["role"] == "admin"
    assert "manage_judges" in reply.data["permissions"]
    slug = reply.data["slug"]
    for user, role in [
        (personas.author, "author"),
        (personas.engineer, "engineer"),
        (personas.reviewer, "reviewer"),
    ]:
        reply = admin.post(
            f"/api/projects/{slug}/members/",
            {"username": user.username, "role": role},
            format="json",
        )
        assert reply.status_code == 202, reply.data
        assert reply.data == {**reply.data, "username": user.username, "role": role}
        reply = accept_invitation(user, slug)
        assert reply.status_code == 200, reply.data
        assert reply.data == {**reply.data, "username": user.username, "role": role}
    members = admin.get(f"/api/projects/{slug}/members/").data
    assert {m["username"]: m["role"] for m in members} == {
        personas.admin.username: "admin",
        personas.author.username: "author",
        personas.engineer.username: "engineer",
        personas.reviewer.username: "reviewer",
    }
    mine = {p["slug"]: p["role"] for p in author.get("/api/projects/").data}
    assert mine == {slug: "author", personas.project.slug: "author"}

    # The author writes a task, a rubric, revises its criteria and publishes it.
    reply = author.post(
        f"/api/projects/{slug}/tasks/",
        {
            "external_id": "fever-01",
            "title": "Child with fever and vomiting",
            "messages": [
                {"role": "system", "content": "You are a careful clinician."},
                {"role": "user", "content": "My child has a fever and keeps vomiting."},
            ],
            "context": "Outpatient, no chronic conditions.",
            "tags": ["pediatrics", "triage"],
            "reference": "Give **oral rehydration** and watch for dehydration.",
        },
        format="json",
    )
    assert reply.status_code == 201, reply.data
    assert reply.data["tags"] == ["pediatrics", "triage"]
    assert [r["body"] for r in reply.data["references"]] == [
        "Give **oral rehydration** and watch for dehydration."
    ]
    task = author.get(f"/api/projects/{slug}/tasks/fever-01/").data
    assert [m["role"] for m in task["messages"]] == ["system", "user"]

    reply = author.post(
        f"/api/projects/{slug}/rubrics/",
        {
            "task": "fever-01",
            "title": "Fever triage",
            "criteria": [{"text": "Is kind", "points": 1}],
        },
        format="json",
    )
    assert reply.status_code == 201, reply.data
    rubric_id = reply.data["id"]
    assert reply.data["task"] == "fever-01"
    assert [(v["number"], v["status"]) for v in reply.data["versions"]] == [(1, "draft")]

    reply = author.put(
        f"/api/rubrics/{rubric_id}/draft/criteria/",
        {"criteria": [{"text": text, "points": points} for text, points in CRITERIA]},
        format="json",
    )
    assert reply.status_code == 200, reply.data
    (draft,) = reply.data["versions"]
    assert [(c["text"], c["points"]) for c in draft["criteria"]] == CRITERIA
    assert draft["points_total"] == POSITIVE
    assert draft["grader"] is None

    # Only a reviewer publishes, by approving what the author submitted.
    reply = author.post(f"/api/rubrics/{rubric_id}/submit/")
    assert reply.status_code == 200, reply.data
    reply = api_client(personas.reviewer).post(f"/api/rubrics/{rubric_id}/approve/")
    assert reply.status_code == 201, reply.data
    grader_hash = reply.data["hash"]
    assert re.fullmatch(r"[0-9a-f]{64}", grader_hash)
    assert [c["text"] for c in reply.data["spec"]["criteria"]] == [t for t, _ in CRITERIA]
    assert reply.data["version"]["status"] == "published"
    assert author.get(f"/api/graders/{grader_hash}/").data["spec"] == reply.data["spec"]

    (published,) = author.get(f"/api/rubrics/{rubric_id}/").data["versions"]
    assert published["status"] == "published"
    assert published["grader"] == grader_hash
    assert published["content_hash"] == reply.data["spec"]["rubric"]["content_hash"]
    assert published["published_by"] == personas.reviewer.username

    # The engineer imports responses; the admin adds the simulator as a judge.
    rows = [
        {
            "task_id": "fever-01",
            "model": model,
            "sample_index": sample,
            "response": response_text(m),
        }
        for (model, sample), m in PLANS.items()
    ]
    for met in PLANS.values():  # the simulator's own rule agrees with each plan
        text = response_text(met)
        assert [i for i, (c, _) in enumerate(CRITERIA) if simulated_verdict(c, text)[0]] == met
    reply = engineer.post(
        f"/api/projects/{slug}/responses/import/", {"file": jsonl_file(rows)}, format="multipart"
    )
    assert reply.status_code == 201, reply.data
    assert reply.data["created"] == len(PLANS)

    reply = admin.post(
        f"/api/projects/{slug}/judges/",
        {"name": "simulator", "base_url": sim.url, "model": "judge-model", "max_concurrency": 4},
        format="json",
    )
    assert reply.status_code == 201, reply.data
    judge_id = reply.data["id"]

    # The engineer starts a run and polls it until it completes.
    reply = engineer.post(
        f"/api/projects/{slug}/runs/", {"grader": grader_hash, "judge": judge_id}, format="json"
    )
    assert reply.status_code == 201, reply.data
    run_id = reply.data["id"]
    assert reply.data["total_items"] == len(PLANS) * len(CRITERIA)
    assert [r["id"] for r in engineer.get(f"/api/projects/{slug}/runs/").data["results"]] == [
        run_id
    ]

    def finished():
        data = engineer.get(f"/api/runs/{run_id}/").data
        return data if data["status"] == "completed" else None

    run = wait_for(finished, timeout=120, what="the run to complete")
    total = len(PLANS) * len(CRITERIA)
    assert run["progress"] == {
        **run["progress"],
        "done": total,
        "total": total,
        "errors": 0,
        "percent": 100,
        "responses_done": len(PLANS),
    }
    assert run["progress"]["prompt_tokens"] > 0 and run["progress"]["completion_tokens"] > 0
    assert run["simulated"] is True
    summaries = {s["model"]: s for s in run["summaries"]}
    for model in ("strong", "medium", "careless"):
        raws = [expected_raw(m) for (name, _), m in PLANS.items() if name == model]
        mean_raw = sum(raws) / len(raws)
        assert summaries[model]["mean_raw"] == pytest.approx(mean_raw)
        assert summaries[model]["mean"] == pytest.approx(min(1.0, max(0.0, mean_raw)))
    assert summaries["careless"]["mean_raw"] < 0 and summaries["careless"]["mean"] == 0

    scores = engineer.get(f"/api/runs/{run_id}/scores/").data
    assert len(scores["results"]) == len(PLANS) and scores["next"] is None
    for score in scores["results"]:
        met = PLANS[(score["model"], score["sample_index"])]
        assert score["task"] == "fever-01"
        assert score["status"] == "done"
        assert score["raw"] == pytest.approx(expected_raw(met))
        assert score["clipped"] == pytest.approx(min(1.0, max(0.0, expected_raw(met))))
        assert score["possible_points"] == POSITIVE
        assert score["error_count"] == 0

    score = next(s for s in scores["results"] if (s["model"], s["sample_index"]) == ("medium", 1))
    verdicts = engineer.get(f"/api/runs/{run_id}/scores/{score['id']}/verdicts/").data
    assert [(v["criterion"]["text"], v["outcome"]) for v in verdicts] == [
        (text, "met" if i in PLANS[("medium", 1)] else "unmet")
        for i, (text, _) in enumerate(CRITERIA)
    ]
    assert all(v["simulated"] and v["judge_model"].startswith("assay-simulator/") for v in verdicts)
    assert all(
        v["explanation"].startswith("Simulated verdict") and not v["error"] for v in verdicts
    )
    assert sim.stats.requests == total

    # Annotators are blind to the judge; a finished run cannot be cancelled.
    admin.post(
        f"/api/projects/{slug}/members/",
        {"username": personas.annotator.username, "role": "annotator"},
        format="json",
    )
    assert accept_invitation(personas.annotator, slug).status_code == 200
    assert api_client(personas.annotator).get(f"/api/runs/{run_id}/").status_code == 403
    reply = engineer.post(f"/api/runs/{run_id}/cancel/")
    assert reply.data == {"cancelled": False, "status": "completed"}


# --- JSONL import -------------------------------------------------------------------------


def test_import_good_file_creates_every_response(personas):
    factories.make_task(personas.project, external_id="t1")
    factories.make_task(personas.project, external_id="t2")
    rows = [
        {"task_id": "t1", "model": "m-a", "response": "One."},
        {"task_id": "t1", "model": "m-b", "response": "Two.", "metadata": {"temperature": 1}},
        {"task_id": "t2", "model": "m-a", "response": "Three.", "sample_index": 3},
    ]
    reply = api_client(personas.engineer).post(
        f"/api/projects/{personas.project.slug}/responses/import/",
        {"file": jsonl_file(rows, "batch.jsonl")},
        format="multipart",
    )
    assert reply.status_code == 201, reply.data
    assert reply.data == {"created": 3, "filename": "batch.jsonl"}
    assert Response.objects.filter(task__project=personas.project).count() == 3

    # Annotators grade blind: the list names models, so it is not theirs (test_blindness.py).
    slug = personas.project.slug
    assert api_client(personas.annotator).get(f"/api/projects/{slug}/responses/").status_code == 403
    client = api_client(personas.reviewer)
    listing = client.get(f"/api/projects/{personas.project.slug}/responses/").data
    assert len(listing["results"]) == 3
    only_a = client.get(f"/api/projects/{personas.project.slug}/responses/?model=m-a").data
    assert {(r["task"], r["sample_index"]) for r in only_a["results"]} == {("t1", 0), ("t2", 3)}
    only_t1 = client.get(f"/api/projects/{personas.project.slug}/responses/?task=t1").data
    assert {r["model"] for r in only_t1["results"]} == {"m-a", "m-b"}
    counts = client.get(f"/api/projects/{personas.project.slug}/responses/models/").data
    assert counts == [
        {"model": "m-a", "responses": 2, "tasks": 2},
        {"model": "m-b", "responses": 1, "tasks": 1},
    ]


def test_import_bad_file_lists_every_error_and_imports_nothing(personas):
    factories.make_task(personas.project, external_id="t1")
    rows = [
        {"task_id": "t1", "model": "m", "response": "Fine."},
        '{"task_id": "t1", "model": ',
        {"task_id": "nope", "model": "m", "response": "Unknown task."},
        {"task_id": "t1", "response": "No model.", "sample_index": 1},
    ]
    reply = api_client(personas.engineer).post(
        f"/api/projects/{personas.project.slug}/responses/import/",
        {"file": jsonl_file(rows)},
        format="multipart",
    )
    assert reply.status_code == 400
    assert reply.data["error_count"] == 3
    assert [(e["line"], e["field"]) for e in reply.data["errors"]] == [
        (2, ""),
        (3, "task_id"),
        (4, "model"),
    ]
    assert "not valid JSON" in reply.data["errors"][0]["message"]
    assert "nope" in reply.data["errors"][1]["message"]
    assert Response.objects.count() == 0


def test_import_without_a_file_is_refused(personas):
    reply = api_client(personas.engineer).post(
        f"/api/projects/{personas.project.slug}/responses/import/", {}, format="multipart"
    )
    assert reply.status_code == 400
    assert reply.data["errors"] == [
        {"line": 0, "field": "file", "message": "Upload a JSONL file in the field 'file'."}
    ]


# --- Input errors: a service's ValidationError is a 400 naming the field -----------------


def test_criteria_errors_are_named_by_index_and_leave_the_draft_alone(personas):
    client = api_client(personas.author)
    reply = client.post(
        f"/api/projects/{personas.project.slug}/rubrics/",
        {"title": "Template", "criteria": [{"text": "Is accurate", "points": 2}]},
        format="json",
    )
    assert reply.status_code == 201, reply.data
    assert reply.data["task"] is None
    rubric_id = reply.data["id"]
    reply = client.put(
        f"/api/rubrics/{rubric_id}/draft/criteria/",
        {
            "criteria": [
                {"text": "Fine", "points": "1.5"},
                {"text": "Zero", "points": 0},
                "not an object",
                {"text": "  ", "points": 1},
                {"text": "Extra", "points": 1, "colour": "blue"},
                {"text": "Too precise", "points": 1.005},
                {"text": "No points"},
            ]
        },
        format="json",
    )
    assert reply.status_code == 400
    assert set(reply.data) == {
        "criteria[1].points",
        "criteria[2]",
        "criteria[3].text",
        "criteria[4].colour",
        "criteria[5].points",
        "criteria[6].points",
    }
    (draft,) = client.get(f"/api/rubrics/{rubric_id}/").data["versions"]
    assert [c["text"] for c in draft["criteria"]] == ["Is accurate"]

    reply = client.post(
        f"/api/projects/{personas.project.slug}/rubrics/",
        {"task": "missing", "criteria": [{"text": "Bad", "points": "x"}]},
        format="json",
    )
    assert reply.status_code == 400
    assert set(reply.data) == {"task"}


def test_editing_a_published_rubric_starts_a_new_draft(personas):
    task = factories.make_task(personas.project, external_id="t1")
    grader = factories.make_published_rubric(
        personas.project, task, [("Advises rest", 1)], personas.admin
    )
    rubric_id = grader.version.rubric_id
    client = api_client(personas.author)
    reply = client.post(f"/api/rubrics/{rubric_id}/submit/")
    assert reply.status_code == 400
    assert reply.data == {"non_field_errors": ["No draft or version in review."]}

    reply = client.put(
        f"/api/rubrics/{rubric_id}/draft/criteria/",
        {"criteria": [{"text": "Advises rest", "points": 1}, {"text": "Is kind", "points": 2}]},
        format="json",
    )
    assert reply.status_code == 200, reply.data
    assert [(v["number"], v["status"], len(v["criteria"])) for v in reply.data["versions"]] == [
        (2, "draft", 2),
        (1, "published", 1),
    ]
    assert reply.data["versions"][1]["grader"] == grader.hash

    reply = client.put(f"/api/rubrics/{rubric_id}/draft/criteria/", {"criteria": []}, format="json")
    assert reply.status_code == 200
    reply = client.post(f"/api/rubrics/{rubric_id}/submit/")
    assert reply.status_code == 400
    assert reply.data == {
        "non_field_errors": ["A rubric needs at least one criterion before it is published."]
    }
    assert RubricVersion.objects.filter(rubric_id=rubric_id, status="draft").count() == 1


def test_task_errors_name_the_field_and_the_message(personas):
    client = api_client(personas.author)
    url = f"/api/projects/{personas.project.slug}/tasks/"
    reply = client.post(
        url, {"external_id": "t1", "messages": [{"role": "robot", "content": "Hi"}]}, format="json"
    )
    assert reply.status_code == 400
    assert set(reply.data) == {"messages[0].role"}
    reply = client.post(url, {"external_id": "t1", "messages": "Just a prompt"}, format="json")
    assert reply.status_code == 201, reply.data
    assert reply.data["title"] == "t1"
    assert reply.data["messages"] == [{"role": "user", "content": "Just a prompt"}]
    reply = client.post(url, {"external_id": "t1", "messages": "Again"}, format="json")
    assert reply.status_code == 400
    assert reply.data == {"external_id": ["A task 't1' already exists."]}
    reply = client.post(url, {"external_id": "bad id!", "messages": "Hi"}, format="json")
    assert set(reply.data) == {"external_id"}
    assert client.get(f"{url}missing/").status_code == 404


def test_members_and_projects_refuse_bad_input(personas):
    admin = api_client(personas.admin)
    url = f"/api/projects/{personas.project.slug}/members/"
    # No username oracle: a name nobody has is "invited" like any other.
    reply = admin.post(url, {"username": "nobody", "role": "author"}, format="json")
    assert reply.status_code == 202 and "if a user named 'nobody' exists" in reply.data["detail"]
    reply = admin.post(url, {"username": personas.admin.username, "role": "author"}, format="json")
    assert reply.data == {"role": ["A project keeps at least one admin."]}
    reply = admin.post(url, {"username": personas.author.username, "role": "boss"}, format="json")
    assert set(reply.data) == {"role"}
    reply = admin.post(
        url, {"username": personas.author.username, "role": "reviewer"}, format="json"
    )
    assert reply.status_code == 200
    assert reply.data["role"] == "reviewer"

    reply = admin.post("/api/projects/", {"name": "Other", "slug": personas.project.slug})
    assert reply.status_code == 400
    assert set(reply.data) == {"slug"}
    assert admin.put("/api/projects/", {}, format="json").status_code == 405
    assert APIClient().put("/api/projects/", {}, format="json").status_code == 401


def test_judges_never_take_or_show_a_key(personas, settings):
    settings.JUDGE_KEY_VARIABLES = ["OPENAI_API_KEY@api.example.com"]
    admin = api_client(personas.admin)
    url = f"/api/projects/{personas.project.slug}/judges/"
    judge = {"name": "gpt", "base_url": "https://api.example.com/v1", "model": "gpt-4.1"}
    reply = admin.post(url, {**judge, "api_key_env": "sk-live-1234"}, format="json")
    assert reply.status_code == 400
    assert set(reply.data) == {"api_key_env"}
    reply = admin.post(url, {**judge, "base_url": "ftp://example.com"}, format="json")
    assert set(reply.data) == {"base_url"}
    reply = admin.post(url, {**judge, "api_key_env": "OPENAI_API_KEY"}, format="json")
    assert reply.status_code == 201, reply.data
    expected_keys = {
        "id",
        "name",
        "base_url",
        "model",
        "api_key_env",
        "api_key_set",
        "api_key_last4",
        "max_concurrency",
        "requests_per_minute",
        "tokens_per_minute",
        "temperature",
        "use_json_schema",
        "accepts_images",
        "accepts_files",
        "send_cache_key",
        "created_at",
    }
    assert set(reply.data) == expected_keys
    assert reply.data["max_concurrency"] == 8 and reply.data["use_json_schema"] is True
    (listed,) = api_client(personas.engineer).get(url).data
    assert set(listed) == expected_keys
    assert listed["api_key_env"] == "OPENAI_API_KEY"
    reply = admin.post(url, {**judge, "api_key_env": "OPENAI_API_KEY"}, format="json")
    assert reply.data == {"name": ["A judge named 'gpt' exists."]}


def test_runs_refuse_graders_and_judges_of_other_projects(personas):
    project = personas.project
    other = factories.make_project(owner=personas.admin)
    other_task = factories.make_task(other, external_id="t1")
    other_grader = factories.make_published_rubric(
        other, other_task, [("Advises rest", 1)], personas.admin
    )
    other_judge = factories.make_judge(other, "http://127.0.0.1:9/v1")
    client = api_client(personas.engineer)
    reply = client.post(
        f"/api/projects/{project.slug}/runs/",
        {"grader": other_grader.hash, "judge": other_judge.pk},
        format="json",
    )
    assert reply.status_code == 400
    assert set(reply.data) == {"grader", "judge"}
    reply = client.post(
        f"/api/projects/{project.slug}/runs/", {"grader": "f00", "judge": 10**20}, format="json"
    )
    assert reply.status_code == 400
    assert set(reply.data) == {"grader", "judge"}

    task = factories.make_task(project, external_id="t1")
    grader = factories.make_published_rubric(project, task, [("Advises rest", 1)], personas.admin)
    judge = factories.make_judge(project, "http://127.0.0.1:9/v1")
    reply = client.post(
        f"/api/projects/{project.slug}/runs/",
        {"grader": grader.hash, "judge": judge.pk},
        format="json",
    )
    assert reply.status_code == 400
    assert reply.data == {
        "non_field_errors": ["There are no responses to grade for this rubric; import some."]
    }


# --- The schema and the docs ----------------------------------------------------------------


def openapi_path(route: str) -> str:
    """`projects/<slug:slug>/` as the schema names it: `/api/projects/{slug}/` (pk is id)."""
    route = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route)
    return "/api/" + route.replace("{pk}", "{id}")


def test_schema_is_valid_and_lists_every_endpoint(client, db, tmp_path):
    reply = client.get("/api/schema/?format=json")
    assert reply.status_code == 200
    schema = json.loads(reply.content)
    validate_schema(schema)
    expected = set()
    for pattern in api_urls.urlpatterns:
        view = pattern.callback.cls
        for method in ("get", "post", "put", "patch", "delete"):
            if hasattr(view, method):
                expected.add((method, openapi_path(str(pattern.pattern))))
    documented = {
        (method, path)
        for path, operations in schema["paths"].items()
        if path.startswith("/api/")
        for method in operations
        if method != "parameters"
    }
    assert documented == expected
    # The same check the build runs: no warnings at all.
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", tmp_path / "s.yaml")


def test_docs_page_is_served_to_a_logged_in_user(client, personas):
    client.force_login(personas.engineer)
    reply = client.get("/api/docs/")
    assert reply.status_code == 200
    assert b"swagger" in reply.content.lower()


def test_review_over_the_api_with_every_criterion_field(personas):
    author, reviewer = api_client(personas.author), api_client(personas.reviewer)
    slug = personas.project.slug
    reply = author.post(
        f"/api/projects/{slug}/rubrics/",
        {
            "title": "Kinds",
            "criteria": [
                {"text": "Advises rest", "points": 2, "importance": "essential", "gate": True},
                {
                    "text": "Clarity",
                    "points": 3,
                    "kind": "scale",
                    "scale": ["Unclear", "Clear"],
                    "tags": ["communication quality"],
                },
                {
                    "text": "Says 911",
                    "points": 1,
                    "kind": "checked",
                    "check": {"type": "contains", "value": "911"},
                },
                {"text": "Scares the patient", "points": -2},
            ],
        },
        format="json",
    )
    assert reply.status_code == 201, reply.data
    rubric_id = reply.data["id"]
    criteria = reply.data["versions"][0]["criteria"]
    assert criteria[0]["gate"] is True and criteria[0]["importance"] == "essential"
    assert criteria[1]["scale"] == ["Unclear", "Clear"]
    assert criteria[2]["check"] == {"type": "contains", "value": "911", "case_sensitive": False}
    assert criteria[3]["importance"] == "pitfall"

    bad = author.post(
        f"/api/projects/{slug}/rubrics/",
        {"criteria": [{"text": "x", "points": 1, "kind": "scale", "scale": ["one"]}]},
        format="json",
    )
    assert bad.status_code == 400 and "criteria[0].scale" in bad.data

    assert author.post(f"/api/rubrics/{rubric_id}/submit/").status_code == 200
    refused = author.post(f"/api/rubrics/{rubric_id}/approve/")
    assert refused.status_code == 403  # authors never approve
    approved = reviewer.post(f"/api/rubrics/{rubric_id}/approve/")
    assert approved.status_code == 201, approved.data
    assert approved.data["version"]["status"] == "published"

    author.put(
        f"/api/rubrics/{rubric_id}/draft/criteria/",
        {"criteria": [{"text": "Advises rest", "points": 2}]},
        format="json",
    )
    diff = author.get(f"/api/rubrics/{rubric_id}/diff/?a=1&b=2").data
    assert sorted(r["status"] for r in diff) == [
        "added",
        "removed",
        "removed",
        "removed",
        "removed",
    ]


def test_review_comments_over_the_api_block_approval_until_resolved(personas):
    author, reviewer = api_client(personas.author), api_client(personas.reviewer)
    reply = author.post(
        f"/api/projects/{personas.project.slug}/rubrics/",
        {"title": "R", "criteria": [{"text": "Advises rest", "points": 1}]},
        format="json",
    )
    rubric_id = reply.data["id"]
    criterion_id = reply.data["versions"][0]["criteria"][0]["id"]
    author.post(f"/api/rubrics/{rubric_id}/submit/")
    comment = reviewer.post(
        f"/api/rubrics/{rubric_id}/comments/",
        {"body": "For how long?", "criterion": criterion_id},
        format="json",
    )
    assert comment.status_code == 201 and comment.data["criterion"] == criterion_id
    assert reviewer.post(
        f"/api/rubrics/{rubric_id}/comments/", {"body": "x", "criterion": 999999}, format="json"
    ).data == {"criterion": ["No criterion 999999 here."]}
    refused = reviewer.post(f"/api/rubrics/{rubric_id}/approve/")
    assert refused.status_code == 400 and "unresolved" in str(refused.data)
    resolved = author.post(f"/api/comments/{comment.data['id']}/resolve/")
    assert resolved.status_code == 200 and resolved.data["resolved_by"] == personas.author.username
    assert reviewer.post(f"/api/rubrics/{rubric_id}/approve/").status_code == 201


@pytest.mark.django_db
def test_an_api_url_that_matches_no_route_answers_json_and_a_page_keeps_the_html_404(personas):
    client = api_client(personas.admin)
    for path in ("/api/rubrics/1/versions/-5/retire/", "/api/no-such-thing/"):
        response = client.post(path) if "retire" in path else client.get(path)
        assert response.status_code == 404, path
        assert response["Content-Type"] == "application/json", path
        assert response.json() == {"detail": "Not found."}
    page = client.get("/no-such-page/")
    assert page.status_code == 404
    assert page["Content-Type"].startswith("text/html")
