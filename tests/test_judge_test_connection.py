"""A judge's "Test connection" button (issue 18): one tiny request through the grading
client, its outcome shown in place via htmx, whatever goes wrong; admins and engineers only."""

from __future__ import annotations

import socket
import time

import pytest
from django.test import Client
from django.urls import reverse

from grading import services
from grading.models import JudgeCall

HTMX = {"HTTP_HX_REQUEST": "true"}


def judge_at(project, base_url: str, **fields):
    return services.judge_create(project=project, name="j", base_url=base_url, model="m", **fields)


def post_test(user, judge):
    client = Client()
    client.force_login(user)
    return client.post(reverse("judge_test", args=[judge.pk]), **HTMX)


def test_engineer_sees_the_judge_answer_with_model_and_latency(personas, sim):
    judge = judge_at(personas.project, sim.url)
    response = post_test(personas.engineer, judge)
    assert response.status_code == 200
    html = response.content.decode()
    assert f'id="judge-test-{judge.pk}"' in html
    assert "Connected" in html and " ms" in html
    assert "assay-simulator/m" in html and "simulated" in html
    # One request, no schema: a tiny one, and nothing recorded as a grading call.
    assert sim.stats.requests == 1
    assert "response_format" not in str(sim.received[-1])
    assert JudgeCall.objects.count() == 0


def test_admin_may_test_too(personas, sim):
    judge = judge_at(personas.project, sim.url)
    assert "Connected" in post_test(personas.admin, judge).content.decode()


def test_a_server_error_is_shown_and_not_retried(personas, sim):
    judge = judge_at(personas.project, sim.url)
    sim.config.fault_rate, sim.config.faults = 1.0, ("500",)
    response = post_test(personas.engineer, judge)
    assert response.status_code == 200
    html = response.content.decode()
    assert "Failed" in html and "http_500" in html and "the judge answered HTTP 500" in html
    assert sim.stats.requests == 1


def test_a_silent_judge_ends_at_the_timeout(personas, sim, settings):
    judge = judge_at(personas.project, sim.url)
    settings.JUDGE_TIMEOUT_S = 0.5
    sim.config.fault_rate, sim.config.faults, sim.config.timeout_s = 1.0, ("timeout",), 2.0
    started = time.monotonic()
    html = post_test(personas.engineer, judge).content.decode()
    assert time.monotonic() - started < 2
    assert "Failed" in html and "timeout" in html


def test_nothing_listening_is_a_connection_error(personas):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed when the block ends: nothing listens there
    judge = judge_at(personas.project, f"http://127.0.0.1:{port}/v1")
    response = post_test(personas.engineer, judge)
    assert response.status_code == 200
    html = response.content.decode()
    assert "Failed" in html and "connection" in html and "could not reach the judge" in html


def test_the_address_checks_hold_at_test_time(personas, sim, settings):
    judge = judge_at(personas.project, sim.url)  # loopback allowed when saved (tests)
    settings.JUDGE_ALLOW_PRIVATE_URLS = False
    settings.JUDGE_PRIVATE_NETWORKS = []
    html = post_test(personas.engineer, judge).content.decode()
    assert "Failed" in html and "address_refused" in html
    assert sim.stats.requests == 0


def test_an_unbound_deployment_key_is_not_sent(personas, sim, monkeypatch):
    monkeypatch.setenv("ASSAY_TEST_JUDGE_KEY", "sk-secret-value-1234")
    judge = judge_at(personas.project, sim.url)
    judge.api_key_env = "ASSAY_TEST_JUDGE_KEY"  # set behind the form's back: not bound
    judge.save(update_fields=["api_key_env"])
    html = post_test(personas.engineer, judge).content.decode()
    assert "Failed" in html and "key_refused" in html
    assert "sk-secret-value-1234" not in html
    assert sim.stats.requests == 0


def test_a_reply_that_is_not_a_completion_is_an_error(personas):
    # A server that answers 200 with a body that is no chat completion.
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from threading import Thread

    class Odd(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = b'{"hello": "<script>alert(1)</script>"}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Odd)
    Thread(target=server.serve_forever, daemon=True).start()
    try:
        judge = judge_at(personas.project, f"http://127.0.0.1:{server.server_address[1]}/v1")
        response = post_test(personas.engineer, judge)
    finally:
        server.shutdown()
        server.server_close()
    assert response.status_code == 200
    html = response.content.decode()
    assert "Failed" in html and "not_a_completion" in html
    assert "<script>" not in html


@pytest.mark.parametrize(
    ("role", "status"),
    [("author", 403), ("reviewer", 403), ("annotator", 403), ("outsider", 404)],
)
def test_others_may_not_test(personas, sim, role, status):
    judge = judge_at(personas.project, sim.url)
    assert post_test(personas.by_role()[role], judge).status_code == status
    assert sim.stats.requests == 0


def test_get_is_refused(personas, sim):
    judge = judge_at(personas.project, sim.url)
    client = Client()
    client.force_login(personas.engineer)
    assert client.get(reverse("judge_test", args=[judge.pk])).status_code == 405


def test_the_button_shows_for_operators_only(personas, sim):
    judge = judge_at(personas.project, sim.url)
    url = reverse("judge_test", args=[judge.pk])
    for user, shown in [
        (personas.engineer, True),
        (personas.admin, True),
        (personas.reviewer, False),
    ]:
        client = Client()
        client.force_login(user)
        html = client.get(reverse("judges", args=[personas.project.slug])).content.decode()
        assert (url in html) is shown
        assert ("Test connection" in html) is shown


def test_api_says_the_same(personas, sim):
    from tests.test_api import api_client

    judge = judge_at(personas.project, sim.url)
    got = api_client(personas.engineer).post(f"/api/judges/{judge.pk}/test/")
    assert got.status_code == 200
    body = got.json()
    assert body["ok"] is True and body["model"] == "assay-simulator/m" and body["simulated"]
    assert body["reason"] == "" and body["latency_ms"] >= 0
    sim.config.fault_rate, sim.config.faults = 1.0, ("500",)
    body = api_client(personas.engineer).post(f"/api/judges/{judge.pk}/test/").json()
    assert body["ok"] is False and body["reason"] == "http_500"
    assert api_client(personas.reviewer).post(f"/api/judges/{judge.pk}/test/").status_code == 403
