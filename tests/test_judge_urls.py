"""Where judge calls may go: judge URLs are checked when saved and at every connection.

Metadata, link-local and the like are always refused; loopback and private addresses only
when the operator allows them (conftest allows them for the simulator; these tests turn the
allowance off with the `settings` fixture). DNS rebinding is shown by the OS resolver
(`socket.getaddrinfo`) answering differently at save time and at connection time.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import shutil
import socket
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.exceptions import ValidationError

from annotation.models import Verdict
from grading import engine, services
from grading.judges.client import JudgeClient, JudgeError, JudgeSettings
from grading.judges.transport import Transport
from grading.models import Judge
from rubrics.compiler import VERDICT_SCHEMA
from tests import factories
from tests.test_api import api_client
from tests.test_judge_client import messages_for

pytestmark = pytest.mark.django_db

ALLOW_HINT = "ASSAY_JUDGE_ALLOW_PRIVATE_URLS"


@pytest.fixture
def private_off(settings):
    settings.JUDGE_ALLOW_PRIVATE_URLS = False
    settings.JUDGE_PRIVATE_NETWORKS = []
    return settings


def create(project, base_url: str, name: str = "j") -> Judge:
    return services.judge_create(project=project, name=name, base_url=base_url, model="m")


def refusal(project, base_url: str) -> str:
    """The base_url message of a refused judge, after checking nothing was saved."""
    before = Judge.objects.count()
    with pytest.raises(ValidationError) as caught:
        create(project, base_url)
    assert Judge.objects.count() == before
    errors = caught.value.message_dict
    assert set(errors) == {"base_url"}, errors
    return " ".join(errors["base_url"])


class OSResolver:
    """socket.getaddrinfo, answering for one made-up name from a script of addresses (the
    last one repeats); every other name goes to the real resolver."""

    def __init__(self, monkeypatch, name: str, answers: list[str]):
        self.name, self.answers, self.calls = name, list(answers), 0
        self._real = socket.getaddrinfo
        monkeypatch.setattr(socket, "getaddrinfo", self)

    def __call__(self, host, port, *args, **kwargs):
        if host != self.name:
            return self._real(host, port, *args, **kwargs)
        address = self.answers[min(self.calls, len(self.answers) - 1)]
        self.calls += 1
        if ipaddress.ip_address(address).version == 6:
            return [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, int(port), 0, 0))]
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, int(port)))]


# --- When saved --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "scheme"),
    [
        ("ftp://judge.example/v1", "'ftp'"),
        ("file:///etc/passwd", "'file'"),
        ("gopher://127.0.0.1:6379/_INFO", "'gopher'"),
        ("javascript:alert(1)", "'javascript'"),
        ("judge.example/v1", "no scheme"),
    ],
)
def test_only_http_and_https_urls_are_saved(personas, url, scheme):
    message = refusal(personas.project, url)
    assert "http or https only" in message and scheme in message


@pytest.mark.parametrize(
    "url",
    [
        "http://user:secret@judge.example/v1",
        "https://sk-abc@judge.example/v1",
        "http://judge.example@169.254.169.254/",
    ],
)
def test_a_user_or_password_in_the_url_is_refused(personas, url):
    assert "user name or password" in refusal(personas.project, url)


@pytest.mark.parametrize(
    "url",
    [
        "http:///v1",
        "http://judge.example:99999/v1",
        "http://judge .example/v1",
        "http://a\\b/",
        "http://bücher.example/v1",
    ],
)
def test_urls_without_a_usable_host_or_port_are_refused(personas, url):
    assert refusal(personas.project, url)


@pytest.mark.parametrize(
    ("url", "what"),
    [
        ("http://169.254.169.254/latest/meta-data/", "cloud metadata"),
        ("http://2852039166/", "169.254.169.254, a cloud metadata"),  # decimal
        ("http://0xa9fea9fe/", "169.254.169.254, a cloud metadata"),  # hexadecimal
        ("http://0251.0376.0251.0376/", "169.254.169.254, a cloud metadata"),  # octal
        ("http://169.254.43518/", "169.254.169.254, a cloud metadata"),  # a.b.c form
        ("http://[::ffff:169.254.169.254]/", "cloud metadata"),  # IPv4-mapped IPv6
        ("http://[::ffff:a9fe:a9fe]/", "cloud metadata"),
        ("http://[64:ff9b::a9fe:a9fe]/", "cloud metadata"),  # NAT64
        ("http://[fd00:ec2::254]/", "cloud metadata address (AWS (IPv6))"),
        ("http://100.100.100.200/", "Alibaba"),
        ("http://168.63.129.16/", "Azure"),
        ("http://169.254.1.1:8000/v1", "link-local"),
        ("http://[fe80::1]:8000/v1", "link-local"),
        ("http://0.0.0.0:8000/v1", "unspecified"),
        ("http://0:8000/v1", "unspecified"),
        ("http://[::]:8000/v1", "unspecified"),
        ("http://224.0.0.1/", "multicast"),
        ("http://[ff02::1]/", "multicast"),
        ("http://240.0.0.1/", "reserved"),
        ("http://255.255.255.255/", "reserved"),
    ],
)
def test_metadata_and_link_local_are_refused_even_when_private_is_allowed(
    personas, settings, url, what
):
    settings.JUDGE_ALLOW_PRIVATE_URLS = True
    settings.JUDGE_PRIVATE_NETWORKS = [ipaddress.ip_network("169.254.0.0/16")]
    message = refusal(personas.project, url)
    assert what in message and "judge calls never go there" in message


PRIVATE = [
    ("http://127.0.0.1:8000/v1", "loopback"),
    ("http://127.1:8000/v1", "loopback"),
    ("http://2130706433:8000/v1", "loopback"),  # 127.0.0.1 in decimal
    ("http://[::1]:8000/v1", "loopback"),
    ("http://[::ffff:127.0.0.1]:8000/v1", "loopback"),
    ("http://10.0.0.5:8000/v1", "private"),
    ("http://172.16.3.4:11434/v1", "private"),
    ("http://192.168.1.10:8000/v1", "private"),
    ("http://[fd12:3456::1]:8000/v1", "private"),
    ("http://100.64.0.1:8000/v1", "carrier-grade NAT"),
    ("http://198.18.0.1/v1", "private"),
]


@pytest.mark.parametrize(("url", "what"), PRIVATE)
def test_private_and_loopback_are_refused_when_not_allowed(personas, private_off, url, what):
    message = refusal(personas.project, url)
    assert what in message and ALLOW_HINT in message


@pytest.mark.parametrize(("url", "what"), PRIVATE)
def test_private_and_loopback_are_saved_when_allowed(personas, settings, url, what):
    settings.JUDGE_ALLOW_PRIVATE_URLS = True
    assert create(personas.project, url).base_url == url


def test_allowed_networks_open_only_their_own_range(personas, private_off):
    private_off.JUDGE_PRIVATE_NETWORKS = [ipaddress.ip_network("10.0.5.0/24")]
    assert create(personas.project, "http://10.0.5.7:8000/v1").pk
    assert "10.0.6.7 is a private address" in refusal(personas.project, "http://10.0.6.7/v1")
    assert "loopback" in refusal(personas.project, "http://127.0.0.1:8000/v1")


def test_a_hostname_that_resolves_to_loopback_is_refused(personas, private_off):
    # localhost is resolved by the OS (/etc/hosts): the name alone says nothing.
    message = refusal(personas.project, "http://localhost:8000/v1")
    assert "localhost resolves to 127.0.0.1, a loopback address" in message


def test_a_hostname_that_resolves_to_a_private_address_is_refused(
    personas, private_off, monkeypatch
):
    OSResolver(monkeypatch, "vllm.corp.test", ["10.1.2.3"])
    message = refusal(personas.project, "http://vllm.corp.test:8000/v1")
    assert "vllm.corp.test resolves to 10.1.2.3, a private address" in message


def test_one_refused_address_among_several_refuses_the_name(personas, private_off, monkeypatch):
    real = socket.getaddrinfo

    def two_answers(host, port, *args, **kwargs):
        if host != "mixed.test":
            return real(host, port, *args, **kwargs)
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", port)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("169.254.169.254", port)),
        ]

    monkeypatch.setattr(socket, "getaddrinfo", two_answers)
    assert "cloud metadata" in refusal(personas.project, "https://mixed.test/v1")


def test_a_public_name_and_an_unresolvable_name_are_saved(personas, private_off, monkeypatch):
    OSResolver(monkeypatch, "judge.public.test", ["93.184.215.14"])
    assert create(personas.project, "https://judge.public.test/v1", name="a").pk
    # .invalid never resolves; the workers' check at connection time still runs.
    assert create(personas.project, "https://judge.invalid/v1", name="b").pk


def test_changing_a_judges_url_checks_the_new_one(personas, private_off, monkeypatch):
    OSResolver(monkeypatch, "judge.public.test", ["93.184.215.14"])
    judge = create(personas.project, "https://judge.public.test/v1")
    with pytest.raises(ValidationError) as caught:
        services.judge_update(judge=judge, base_url="http://[::ffff:169.254.169.254]/v1")
    assert "cloud metadata" in caught.value.message_dict["base_url"][0]
    judge.refresh_from_db()
    assert judge.base_url == "https://judge.public.test/v1"


def test_the_page_form_shows_the_refusal_at_the_base_url_field(personas, client, private_off):
    client.force_login(personas.admin)
    url = f"/p/{personas.project.slug}/judges/"
    reply = client.post(
        url,
        {
            "name": "meta",
            "base_url": "http://169.254.169.254/latest/",
            "model": "m",
            "max_concurrency": 8,
            "requests_per_minute": 0,
            "tokens_per_minute": 0,
            "temperature": 0,
        },
    )
    assert reply.status_code == 200
    errors = reply.context["form"].errors
    assert set(errors) == {"base_url"}
    assert "cloud metadata" in errors["base_url"][0]
    assert "cloud metadata" in reply.content.decode()
    assert not Judge.objects.filter(project=personas.project).exists()


def test_the_api_names_the_field_and_the_reason(personas, private_off):
    admin = api_client(personas.admin)
    url = f"/api/projects/{personas.project.slug}/judges/"
    reply = admin.post(
        url, {"name": "local", "base_url": "http://localhost:8000/v1", "model": "m"}, format="json"
    )
    assert reply.status_code == 400
    assert set(reply.data) == {"base_url"}
    assert "localhost resolves to 127.0.0.1" in str(reply.data["base_url"][0])
    reply = admin.post(
        url,
        {"name": "mapped", "base_url": "http://[::ffff:169.254.169.254]/", "model": "m"},
        format="json",
    )
    assert reply.status_code == 400 and "cloud metadata" in str(reply.data["base_url"][0])


# --- At connection time ------------------------------------------------------------------


def judge_client(base_url: str, **overrides) -> JudgeClient:
    fields = {"base_url": base_url, "model": "m", "timeout_s": 2, "max_attempts": 3}
    return JudgeClient(JudgeSettings(**{**fields, **overrides}))


def test_dns_rebinding_after_save_is_refused_at_connection(personas, sim, private_off, monkeypatch):
    resolver = OSResolver(monkeypatch, "rebind.test", ["93.184.215.14", "127.0.0.1"])
    port = sim.server_address[1]
    judge = create(personas.project, f"http://rebind.test:{port}/v1")  # public when saved
    assert resolver.calls == 1
    client = JudgeClient(services.judge_settings(judge))
    with pytest.raises(JudgeError) as caught:
        client.grade(messages_for("x"), VERDICT_SCHEMA)
    assert caught.value.reason == "address_refused"
    assert "rebind.test resolves to 127.0.0.1, a loopback address" in str(caught.value)
    # Refused once, not retried: one attempt, one lookup, nothing reached the simulator.
    assert caught.value.usage.attempts == 1 and resolver.calls == 2
    assert sim.stats.requests == 0


def test_the_connection_goes_to_the_address_that_was_checked(sim, settings, monkeypatch):
    # The first answer is checked and used; a second lookup (as socket.create_connection
    # would make) would answer the simulator's address and reach it.
    settings.JUDGE_ALLOW_PRIVATE_URLS = True
    resolver = OSResolver(monkeypatch, "twice.test", ["127.0.0.2", "127.0.0.1"])
    client = judge_client(f"http://twice.test:{sim.server_address[1]}/v1", max_attempts=1)
    with pytest.raises(JudgeError) as caught:
        client.grade(messages_for("x"), VERDICT_SCHEMA)
    assert caught.value.reason == "connection"  # nothing listens on 127.0.0.2
    assert resolver.calls == 1 and sim.stats.requests == 0


def test_a_stored_url_that_is_now_refused_is_refused_at_connection(sim, private_off):
    # A judge saved while loopback was allowed: the setting holds at each connection.
    with pytest.raises(JudgeError) as caught:
        judge_client(sim.url).grade(messages_for("x"), VERDICT_SCHEMA)
    assert caught.value.reason == "address_refused"
    assert ALLOW_HINT in str(caught.value)
    with pytest.raises(JudgeError) as caught:
        judge_client("http://[::ffff:169.254.169.254]/v1").grade(messages_for("x"), VERDICT_SCHEMA)
    assert caught.value.reason == "address_refused" and caught.value.usage.attempts == 1
    assert sim.stats.requests == 0


def test_a_refused_connection_is_an_error_on_each_item_of_the_run(
    personas, sim, private_off, monkeypatch
):
    resolver = OSResolver(monkeypatch, "rebind.test", ["93.184.215.14", "127.0.0.1"])
    project, admin = personas.project, personas.admin
    task = factories.make_task(project, external_id="t-urls")
    grader = factories.make_published_rubric(
        project, task, [("Mentions hydration", 3), ("Mentions electrolytes", 2)], admin
    )
    factories.import_responses(
        project,
        [{"task_id": "t-urls", "model": f"m{i}", "response": f"Drink water {i}"} for i in range(2)],
    )
    judge = create(project, f"http://rebind.test:{sim.server_address[1]}/v1")
    run = services.run_create(project=project, grader=grader, judge=judge, user=admin, start=False)
    services.run_start(run_id=run.pk, enqueue=False)
    for score in run.scores.all():
        services.grade_response(run_id=run.pk, response_id=score.response_id)
    verdicts = Verdict.objects.filter(run=run)
    assert verdicts.count() == run.total_items == 4
    assert {v.outcome for v in verdicts} == {"error"}
    assert all(v.error.startswith("address_refused: judge address refused:") for v in verdicts)
    assert sim.stats.requests == 0
    assert resolver.calls == 1 + 4  # the save, then one lookup per call: no retries


def test_a_stored_url_of_another_scheme_or_with_userinfo_is_refused_at_connection(sim):
    port = sim.server_address[1]
    for url in (f"ftp://127.0.0.1:{port}/v1", f"http://u:p@127.0.0.1:{port}/v1"):
        with pytest.raises(JudgeError) as caught:
            judge_client(url).grade(messages_for("x"), VERDICT_SCHEMA)
        assert caught.value.reason == "address_refused"
    assert sim.stats.requests == 0


# --- Redirects ---------------------------------------------------------------------------


class _Redirect(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.hits += 1
        self.send_response(self.server.status)
        self.send_header("Location", self.server.location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def redirector():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Redirect)
    server.hits, server.status, server.location = 0, 302, ""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirects_are_an_error_and_never_followed(sim, redirector, status):
    redirector.status, redirector.location = status, f"{sim.url}/chat/completions"
    port = redirector.server_address[1]
    with pytest.raises(JudgeError) as caught:
        judge_client(f"http://127.0.0.1:{port}/v1").grade(messages_for("x"), VERDICT_SCHEMA)
    assert caught.value.reason == "redirect"
    assert f"HTTP {status}" in str(caught.value) and "never follow redirects" in str(caught.value)
    assert caught.value.usage.attempts == 1 and redirector.hits == 1
    assert sim.stats.requests == 0


def test_the_default_client_is_the_checked_transport(sim):
    assert isinstance(judge_client(sim.url)._http, Transport)
    assert isinstance(engine.http_client(), Transport)


# --- API keys ----------------------------------------------------------------------------

PLANTED = "sk-planted-4f1d9c2b7e6a5d3c"


class _Echo(BaseHTTPRequestHandler):
    """A judge that quotes the request's Authorization header back: in a verdict's
    explanation and model name on the first path, in a 401 body on the second."""

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        auth = self.headers.get("Authorization") or ""
        self.server.seen.append(auth)
        if self.path.startswith("/denied"):
            body = json.dumps({"error": f"Invalid key in header '{auth}'"}).encode()
            self.send_response(401)
        else:
            verdict = {"criteria_met": True, "explanation": f"You sent {auth}"}
            body = json.dumps(
                {
                    "model": f"echo {auth}",
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


@pytest.fixture
def echo():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    server.seen = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_the_api_key_never_reaches_a_log_a_page_or_the_api(
    personas, echo, monkeypatch, caplog, client, settings
):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("ASSAY_JUDGE_KEY_PLANTED", PLANTED)
    settings.JUDGE_KEY_VARIABLES = ["ASSAY_JUDGE_KEY_PLANTED@127.0.0.1"]
    project, admin = personas.project, personas.admin
    task = factories.make_task(project, external_id="t-key")
    grader = factories.make_published_rubric(project, task, [("Mentions hydration", 3)], admin)
    factories.import_responses(
        project, [{"task_id": "t-key", "model": "m", "response": "Drink water"}]
    )
    port = echo.server_address[1]
    judges = [
        services.judge_create(
            project=project,
            name=name,
            base_url=f"http://127.0.0.1:{port}/{path}",
            model="m",
            api_key_env="ASSAY_JUDGE_KEY_PLANTED",
            actor=admin,
        )
        for name, path in (("echo", "v1"), ("denied", "denied/v1"))
    ]
    runs = []
    for judge in judges:
        run = services.run_create(
            project=project, grader=grader, judge=judge, user=admin, start=False
        )
        services.run_start(run_id=run.pk, enqueue=False)
        for score in run.scores.all():
            services.grade_response(run_id=run.pk, response_id=score.response_id)
        runs.append(run)
    # The key did go out, to the judge, as a bearer token: so it was there to leak.
    assert echo.seen and all(s == f"Bearer {PLANTED}" for s in echo.seen)
    outcomes = {v.run_id: v for v in Verdict.objects.filter(run__in=runs)}
    assert outcomes[runs[0].pk].outcome == "met"
    assert outcomes[runs[1].pk].error.startswith("http_401")

    stored = json.dumps(
        list(Verdict.objects.filter(run__in=runs).values()), default=str
    ) + json.dumps(list(Judge.objects.filter(project=project).values()), default=str)
    client.force_login(admin)
    pages = [
        client.get(f"/p/{project.slug}/judges/"),
        *[client.get(f"/runs/{r.pk}/") for r in runs],
        *[client.get(f"/runs/{r.pk}/scores/{s.pk}/") for r in runs for s in r.scores.all()],
    ]
    api = api_client(admin)
    payloads = [
        api.get(f"/api/projects/{project.slug}/judges/"),
        api.get(f"/api/projects/{project.slug}/verdicts/"),
        api.get(f"/api/projects/{project.slug}/audit/"),
        *[api.get(f"/api/runs/{r.pk}/") for r in runs],
        *[
            api.get(f"/api/runs/{r.pk}/scores/{s.pk}/verdicts/")
            for r in runs
            for s in r.scores.all()
        ],
    ]
    assert all(p.status_code == 200 for p in [*pages, *payloads])
    seen = [stored, caplog.text, *[p.content.decode() for p in [*pages, *payloads]]]
    # What the judge echoed arrived with the key removed: the test would see it otherwise.
    assert "You sent Bearer [API key removed]" in stored
    for text in seen:
        assert PLANTED not in text
        assert PLANTED[3:] not in text
    assert "ASSAY_JUDGE_KEY_PLANTED" in pages[0].content.decode()  # the name is shown, not the key


# --- TLS on the name, connection to the checked address -----------------------------------


def _openssl(*args: str, cwd) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)  # noqa: S603, S607


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    """A throwaway CA, and a certificate it signed for judge.tls.test only."""
    if not shutil.which("openssl"):
        pytest.fail("the TLS tests need the openssl command (Debian's openssl package)")
    d = tmp_path_factory.mktemp("tls")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
             "/CN=Assay test CA", "-keyout", "ca.key", "-out", "ca.pem", cwd=d)  # fmt: skip
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=judge.tls.test",
             "-keyout", "judge.key", "-out", "judge.csr", cwd=d)  # fmt: skip
    (d / "san.ext").write_text("subjectAltName=DNS:judge.tls.test\n")
    _openssl("x509", "-req", "-in", "judge.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", "judge.pem",
             cwd=d)  # fmt: skip
    return d


@pytest.fixture
def tls_judge(tls_files):
    """The echo judge behind TLS on 127.0.0.1, recording the name each client asked for."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls_files / "judge.pem", tls_files / "judge.key")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    server.seen, server.sni = [], []
    context.sni_callback = lambda sock, name, ctx: server.sni.append(name)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_https_verifies_the_certificate_for_the_name_and_sends_it_as_sni(
    tls_files, tls_judge, settings, monkeypatch
):
    settings.JUDGE_ALLOW_PRIVATE_URLS = True
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_files / "ca.pem"))  # trust the test CA only
    port = tls_judge.server_address[1]
    resolver = OSResolver(monkeypatch, "judge.tls.test", ["127.0.0.1"])
    reply = judge_client(f"https://judge.tls.test:{port}/v1").grade(
        messages_for("x"), VERDICT_SCHEMA
    )
    assert reply.met is True and resolver.calls == 1
    assert tls_judge.sni == ["judge.tls.test"]  # SNI is the name, not 127.0.0.1
    # Same address, another name: the certificate does not match it, so nothing is sent.
    OSResolver(monkeypatch, "other.tls.test", ["127.0.0.1"])
    with pytest.raises(JudgeError) as caught:
        judge_client(f"https://other.tls.test:{port}/v1", max_attempts=1).grade(
            messages_for("x"), VERDICT_SCHEMA
        )
    assert caught.value.reason == "connection" and "certificate" in str(caught.value).lower()
    assert len(tls_judge.seen) == 1


# --- Which key may go where ---------------------------------------------------------------


@pytest.mark.parametrize(
    "variable", ["SECRET_KEY", "DATABASE_URL", "AWS_SECRET_ACCESS_KEY", "CELERY_BROKER_URL"]
)
def test_a_judge_cannot_name_the_workers_other_secrets(personas, variable, settings):
    def create(name: str, api_key_env: str):
        return services.judge_create(
            project=personas.project,
            name=name,
            base_url="https://judge.invalid/v1",
            model="m",
            api_key_env=api_key_env,
        )

    # Nothing bound (the default): no deployment variable at all, not even an API key's.
    for name in (variable, "OPENAI_API_KEY", "ASSAY_JUDGE_KEY_VLLM"):
        with pytest.raises(ValidationError) as caught:
            create("thief", name)
        assert set(caught.value.message_dict) == {"api_key_env"}
        assert (
            "lets no judge use a deployment variable"
            in (caught.value.message_dict["api_key_env"][0])
        )
    settings.JUDGE_KEY_VARIABLES = ["OPENAI_API_KEY@judge.invalid"]
    with pytest.raises(ValidationError) as caught:
        create("thief", variable)
    assert "ASSAY_JUDGE_KEY_VARIABLES" in caught.value.message_dict["api_key_env"][0]
    assert create("bound", "OPENAI_API_KEY").api_key_env == "OPENAI_API_KEY"


def test_a_key_bound_to_its_host_goes_nowhere_else(personas, settings, echo, monkeypatch):
    settings.JUDGE_KEY_VARIABLES = [
        "OPENAI_API_KEY@api.openai.com",
        "ASSAY_JUDGE_KEY_LOCAL@127.0.0.1",
    ]
    monkeypatch.setenv("OPENAI_API_KEY", PLANTED)
    project = personas.project
    port = echo.server_address[1]
    with pytest.raises(ValidationError) as caught:
        services.judge_create(
            project=project,
            name="elsewhere",
            base_url=f"http://127.0.0.1:{port}/v1",
            model="m",
            api_key_env="OPENAI_API_KEY",
        )
    message = caught.value.message_dict["api_key_env"][0]
    assert "only to api.openai.com, not 127.0.0.1" in message
    with pytest.raises(ValidationError) as caught:
        services.judge_create(
            project=project,
            name="unlisted",
            base_url="https://api.openai.com/v1",
            model="m",
            api_key_env="ANTHROPIC_API_KEY",
        )
    assert "ASSAY_JUDGE_KEY_VARIABLES" in caught.value.message_dict["api_key_env"][0]
    # A judge saved before the binding (or written around the service): the worker checks
    # again before it reads the variable, and sends nothing.
    client = judge_client(f"http://127.0.0.1:{port}/v1", api_key_env="OPENAI_API_KEY")
    with pytest.raises(JudgeError) as caught:
        client.grade(messages_for("x"), VERDICT_SCHEMA)
    assert caught.value.reason == "key_refused" and PLANTED not in str(caught.value)
    assert echo.seen == []
