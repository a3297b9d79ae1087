"""Where judge keys live and which hosts they may reach (README, "Security model").

An attacker with an account makes a project and a judge pointing at their own server: the
deployment's keys never reach it, at save time or at call time. A project's own key is
stored encrypted, shown to nobody, and sent only to the host it was entered for."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection

from annotation.models import Verdict
from assay.env import env_key_bindings
from grading import services
from grading.models import Judge
from tests import factories
from tests.test_api import api_client

DEPLOYMENT_KEY = "sk-deployment-7c1e9a4b2d8f6e30"
PROJECT_KEY = "sk-project-5b2e8d1c9a7f4e63"


class _Recorder(BaseHTTPRequestHandler):
    """The attacker's server: records each request's Authorization header, answers 'met'."""

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.seen.append((self.headers.get("Host"), self.headers.get("Authorization")))
        verdict = {"criteria_met": True, "explanation": "ok"}
        body = json.dumps(
            {
                "model": "m",
                "choices": [{"message": {"content": json.dumps(verdict)}}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5},
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class _Redirector(BaseHTTPRequestHandler):
    """A judge that answers every call with a redirect to the attacker's server."""

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.seen.append((self.headers.get("Host"), self.headers.get("Authorization")))
        self.send_response(307)
        self.send_header("Location", self.server.target)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def attacker():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    server.seen = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _keys_seen(server) -> list[str]:
    return [auth for _host, auth in server.seen if auth]


def _published(project, admin, external_id="t-keys"):
    task = factories.make_task(project, external_id=external_id)
    return factories.make_published_rubric(project, task, [("Mentions hydration", 3)], admin)


def _reward(client, grader, judge, text="Drink water"):
    # Each call a new text: a cached answer would make no call at all.
    return client.post(
        f"/api/graders/{grader.hash}/score/",
        {"task": "t-keys", "responses": [text], "judge": judge.pk},
        format="json",
    )


def _run(project, grader, judge, admin):
    run = services.run_create(project=project, grader=grader, judge=judge, user=admin, start=False)
    services.run_start(run_id=run.pk, enqueue=False)
    for score in run.scores.all():
        services.grade_response(run_id=run.pk, response_id=score.response_id)
    return run


def test_a_self_registered_user_cannot_send_the_deployments_key_to_their_server(
    personas, attacker, monkeypatch, settings
):
    """Issue 19, item 1, as reported: the deployment's OPENAI_API_KEY, a judge naming it and
    pointing at the attacker, the reward endpoint and a run. Nothing reaches the attacker."""
    monkeypatch.setenv("OPENAI_API_KEY", DEPLOYMENT_KEY)
    project, admin = personas.project, personas.admin
    grader = _published(project, admin)
    factories.import_responses(
        project, [{"task_id": "t-keys", "model": "m", "response": "Drink water"}]
    )
    url = f"http://127.0.0.1:{attacker.server_address[1]}/v1"
    api = api_client(admin)
    reply = api.post(
        f"/api/projects/{project.slug}/judges/",
        {"name": "thief", "base_url": url, "model": "m", "api_key_env": "OPENAI_API_KEY"},
        format="json",
    )
    assert reply.status_code == 400, reply.data
    assert "lets no judge use a deployment variable" in str(reply.data["api_key_env"])

    # A judge saved while the operator had bound the variable to this host, then unbound it
    # (or a judge written around the service): the call-time check sends nothing.
    settings.JUDGE_KEY_VARIABLES = ["OPENAI_API_KEY@127.0.0.1"]
    judge = services.judge_create(
        project=project, name="thief", base_url=url, model="m", api_key_env="OPENAI_API_KEY"
    )
    settings.JUDGE_KEY_VARIABLES = ["OPENAI_API_KEY@api.openai.com"]
    reply = _reward(api, grader, judge)
    run = _run(project, grader, judge, admin)
    settings.JUDGE_KEY_VARIABLES = []
    reply_unbound = _reward(api, grader, judge, "Drink more water")
    run_unbound = _run(project, grader, judge, admin)

    assert DEPLOYMENT_KEY not in json.dumps(attacker.seen)
    assert _keys_seen(attacker) == []
    assert DEPLOYMENT_KEY not in reply.content.decode() + reply_unbound.content.decode()
    verdicts = Verdict.objects.filter(run__in=[run, run_unbound])
    errors = list(verdicts.order_by("run_id").values_list("error", flat=True))
    assert len(errors) == 2 and all(e.startswith("key_refused") for e in errors), errors
    assert "may be sent only to api.openai.com, not 127.0.0.1" in errors[0]
    assert "lets no judge use a deployment variable" in errors[1]


def test_a_project_key_is_encrypted_never_shown_and_sent_only_to_its_host(
    personas, attacker, client
):
    project, admin = personas.project, personas.admin
    grader = _published(project, admin)
    port = attacker.server_address[1]
    api = api_client(admin)
    reply = api.post(
        f"/api/projects/{project.slug}/judges/",
        {
            "name": "own",
            "base_url": f"http://127.0.0.1:{port}/v1",
            "model": "m",
            "api_key": PROJECT_KEY,
        },
        format="json",
    )
    assert reply.status_code == 201, reply.data
    assert reply.data["api_key_set"] is True and reply.data["api_key_last4"] == PROJECT_KEY[-4:]
    judge = Judge.objects.get(pk=reply.data["id"])

    # At rest: the raw row holds neither the key nor any long piece of it.
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {Judge._meta.db_table} WHERE id = %s", [judge.pk])  # noqa: S608
        raw = json.dumps(cursor.fetchall(), default=str)
    assert PROJECT_KEY not in raw and PROJECT_KEY[:-4] not in raw

    # Shown to nobody: pages and API of every role that may see judges.
    client.force_login(admin)
    texts = [
        reply.content.decode(),
        client.get(f"/p/{project.slug}/judges/").content.decode(),
        api.get(f"/api/projects/{project.slug}/judges/").content.decode(),
        api.get(f"/api/judges/{judge.pk}/").content.decode(),
        api.get(f"/api/projects/{project.slug}/audit/").content.decode(),
        api_client(personas.engineer).get(f"/api/projects/{project.slug}/judges/").content.decode(),
    ]
    for text in texts:
        assert PROJECT_KEY not in text and PROJECT_KEY[:-4] not in text
    assert "project key set" in texts[1]

    # Another host (the same server under another name): the key is cleared, not carried.
    moved = api.patch(
        f"/api/judges/{judge.pk}/", {"base_url": f"http://localhost:{port}/v1"}, format="json"
    )
    assert moved.status_code == 200, moved.data
    assert moved.data["api_key_set"] is False
    assert _reward(api, grader, Judge.objects.get(pk=judge.pk), "One").status_code == 200
    assert attacker.seen and _keys_seen(attacker) == []

    # Entered again for that host: sent there, as a bearer token.
    again = api.patch(f"/api/judges/{judge.pk}/", {"api_key": PROJECT_KEY}, format="json")
    assert again.status_code == 200 and again.data["api_key_set"] is True
    assert PROJECT_KEY not in again.content.decode()
    assert _reward(api, grader, Judge.objects.get(pk=judge.pk), "Two").status_code == 200
    assert _keys_seen(attacker) == [f"Bearer {PROJECT_KEY}"]

    # Written around the service (URL changed in the database, key kept): the call-time
    # check compares with the host the key was entered for, and sends nothing.
    Judge.objects.filter(pk=judge.pk).update(base_url=f"http://127.0.0.1:{port}/v1")
    attacker.seen.clear()
    reply = _reward(api, grader, Judge.objects.get(pk=judge.pk), "Three")
    assert PROJECT_KEY not in reply.content.decode()
    assert _keys_seen(attacker) == []


@pytest.mark.django_db(transaction=True)
def test_a_project_key_reaches_the_judge_from_a_real_worker(personas, attacker, celery_worker):
    from grading.models import GradingRun
    from tests.conftest import wait_for

    project, admin = personas.project, personas.admin
    grader = _published(project, admin)
    factories.import_responses(
        project, [{"task_id": "t-keys", "model": "m", "response": "Drink water"}]
    )
    judge = services.judge_create(
        project=project,
        name="own",
        base_url=f"http://127.0.0.1:{attacker.server_address[1]}/v1",
        model="m",
        api_key=PROJECT_KEY,
    )
    run = services.run_create(project=project, grader=grader, judge=judge, user=admin)
    wait_for(lambda: GradingRun.objects.get(pk=run.pk).status == "completed", timeout=60)
    assert _keys_seen(attacker) == [f"Bearer {PROJECT_KEY}"]


def test_a_key_that_cannot_be_stored_is_refused_not_kept_in_clear(personas, settings):
    settings.SECRETS_KEYS = []
    settings.DEBUG = False
    api = api_client(personas.admin)
    reply = api.post(
        f"/api/projects/{personas.project.slug}/judges/",
        {"name": "own", "base_url": "https://judge.invalid/v1", "model": "m", "api_key": "k" * 20},
        format="json",
    )
    assert reply.status_code == 400
    assert "ASSAY_SECRETS_KEY" in str(reply.data["api_key"])
    assert not Judge.objects.filter(name="own").exists()


def test_a_deployment_variable_needs_a_host_at_startup(monkeypatch):
    monkeypatch.setenv("ASSAY_JUDGE_KEY_VARIABLES", "OPENAI_API_KEY")
    with pytest.raises(ImproperlyConfigured, match="OPENAI_API_KEY@api.openai.com"):
        env_key_bindings("ASSAY_JUDGE_KEY_VARIABLES")
    monkeypatch.setenv(
        "ASSAY_JUDGE_KEY_VARIABLES", "OPENAI_API_KEY@API.openai.com., VLLM_KEY@a.internal|b"
    )
    assert env_key_bindings("ASSAY_JUDGE_KEY_VARIABLES") == [
        "OPENAI_API_KEY@api.openai.com",
        "VLLM_KEY@a.internal|b",
    ]


def test_rotation_re_encrypts_under_the_new_key(personas, settings):
    from cryptography.fernet import Fernet

    old = settings.SECRETS_KEYS[0]
    judge = services.judge_create(
        project=personas.project,
        name="own",
        base_url="https://judge.invalid/v1",
        model="m",
        api_key=PROJECT_KEY,
    )
    settings.SECRETS_KEYS = [Fernet.generate_key().decode(), old]
    assert services.judge_keys_rotate() == 1
    settings.SECRETS_KEYS = settings.SECRETS_KEYS[:1]
    from assay import secrets

    assert secrets.decrypt(Judge.objects.get(pk=judge.pk).api_key_secret) == PROJECT_KEY


def test_a_redirect_never_carries_the_key_to_another_host(personas, attacker):
    redirector = ThreadingHTTPServer(("127.0.0.1", 0), _Redirector)
    redirector.seen = []
    redirector.target = f"http://127.0.0.1:{attacker.server_address[1]}/v1/chat/completions"
    threading.Thread(target=redirector.serve_forever, daemon=True).start()
    try:
        project, admin = personas.project, personas.admin
        grader = _published(project, admin)
        judge = services.judge_create(
            project=project,
            name="bouncing",
            base_url=f"http://localhost:{redirector.server_address[1]}/v1",
            model="m",
            api_key=PROJECT_KEY,
        )
        reply = _reward(api_client(admin), grader, judge)
        assert PROJECT_KEY not in reply.content.decode()
    finally:
        redirector.shutdown()
        redirector.server_close()
    assert [auth for _host, auth in redirector.seen] == [f"Bearer {PROJECT_KEY}"]
    assert attacker.seen == []


def test_the_judge_form_stores_the_key_and_never_shows_it_back(client, personas):
    client.force_login(personas.admin)
    url = f"/p/{personas.project.slug}/judges/"
    form = {
        "name": "own",
        "base_url": "https://judge.invalid/v1",
        "model": "",
        "api_key": PROJECT_KEY,
        "max_concurrency": 4,
        "requests_per_minute": 0,
        "tokens_per_minute": 0,
        "temperature": 0,
    }
    refused = client.post(url, form)  # no model: the form comes back, without the key
    assert refused.status_code == 200 and PROJECT_KEY not in refused.content.decode()
    assert client.post(url, {**form, "model": "m"}).status_code == 302
    judge = Judge.objects.get(name="own")
    assert judge.api_key_secret and PROJECT_KEY not in judge.api_key_secret
    assert judge.api_key_host == "judge.invalid"
    page = client.get(url).content.decode()
    assert PROJECT_KEY not in page and PROJECT_KEY[-4:] in page
