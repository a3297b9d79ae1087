"""Shared harness: PostgreSQL, a real Celery worker on a real broker, the judge simulator,
personas, and headless Chromium. Nothing of the project's own is mocked."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.conf import settings

from grading.judges.simulator import SimulatorConfig, SimulatorServer
from rubrics.models import Role
from tests import factories, shared

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = shared.SHARED_DATA  # ../shared/data (tests/shared.py finds it)
# Files the test run stores (snapshots), shared by this process and its worker processes.
MEDIA_DIR = tempfile.mkdtemp(prefix="assay-test-media-")
# Playwright's sync API runs an event loop in the test thread; Django's guard against ORM use
# from async code would otherwise refuse the test's own database reads.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


def pytest_configure(config):
    # Personas are made per test; PBKDF2 at production strength would dominate the run time.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # The test client and the live server speak plain HTTP on loopback.
    settings.SECURE_SSL_REDIRECT = False
    # The live server serves static files from the finders, by their plain names; the
    # hashed-manifest storage of production needs collectstatic first.
    settings.STORAGES = {
        **settings.STORAGES,
        # Snapshots and uploads of the test run go to a fresh folder, not the demo's var/.
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": MEDIA_DIR},
        },
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    # Shared judge limits live in Redis: this session's keys must not meet another's.
    prefix = f"assay-test-{uuid.uuid4().hex[:8]}"
    os.environ["ASSAY_REDIS_PREFIX"] = prefix  # inherited by worker subprocesses
    settings.ASSAY_REDIS_PREFIX = prefix
    # Workers give up on a silent judge after 3 s (the simulator's "timeout" fault), so fault
    # tests and the leases of killed workers (timeout + 10 s) stay short.
    os.environ.setdefault("ASSAY_JUDGE_TIMEOUT_S", "3")
    # The simulator listens on loopback, which production refuses for judges unless the
    # operator allows it: the tests allow it, here and in their workers. Tests of refusal turn
    # it off with the `settings` fixture (tests/test_judge_urls.py).
    os.environ["ASSAY_JUDGE_ALLOW_PRIVATE_URLS"] = "1"
    settings.JUDGE_ALLOW_PRIVATE_URLS = True
    # Project judge keys are stored encrypted; outside DEBUG that needs ASSAY_SECRETS_KEY, here
    # and in the workers (which decrypt them).
    from cryptography.fernet import Fernet

    os.environ.setdefault("ASSAY_SECRETS_KEY", Fernet.generate_key().decode())
    settings.SECRETS_KEYS = [os.environ["ASSAY_SECRETS_KEY"].split(",")[0].strip()]
    engine = settings.DATABASES["default"]["ENGINE"]
    if "postgresql" not in engine:
        raise pytest.UsageError(
            "The tests run against PostgreSQL: set DATABASE_URL (scripts/test does)."
        )
    if settings.CELERY_BROKER_URL.startswith("filesystem"):
        raise pytest.UsageError(
            "The tests run a real worker on a real broker: set CELERY_BROKER_URL (scripts/test)."
        )
    _flush_only_when_quiet()


def _flush_only_when_quiet() -> None:
    """A transactional test ends by emptying every table (TRUNCATE). Writers its test set off
    may still be at work then: the reward endpoint's cost rows after the reply, and the
    session's worker grading a run the test started but did not wait for. A TRUNCATE beside
    them deadlocks, so the flush first waits for both (and drops the test's queued messages,
    which no later test may meet), and retries the rare deadlock PostgreSQL still reports."""
    from django.core.management.base import CommandError
    from django.test import TransactionTestCase

    flush = TransactionTestCase._fixture_teardown

    def quiet_then_flush(self) -> None:
        from grading.api.reward import AFTER_REPLY

        AFTER_REPLY.wait_idle(timeout=30)
        if SESSION_WORKER is not None:
            SESSION_WORKER.wait_idle(timeout=60)
        for attempt in range(3):
            try:
                return flush(self)
            except CommandError as exc:
                if attempt == 2 or "deadlock" not in str(exc.__cause__):
                    raise
                time.sleep(0.5)

    TransactionTestCase._fixture_teardown = quiet_then_flush


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """The test database may TRUNCATE the append-only audit log: transactional tests empty
    every table between tests (rubrics/migrations/0007_audit_event_append_only)."""
    from django.db import connection

    with django_db_blocker.unblock():
        with connection.cursor() as cursor:
            name = connection.ops.quote_name(connection.settings_dict["NAME"])
            cursor.execute(f"ALTER DATABASE {name} SET assay.allow_audit_truncate = 'on'")
        connection.close()  # the next connection, like the worker's, starts with it set


# --- The judge simulator -----------------------------------------------------------------


@pytest.fixture(scope="session")
def simulator():
    server = SimulatorServer("127.0.0.1", 0, SimulatorConfig())
    server.start_in_thread()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def sim(simulator):
    """The session's simulator, with default settings and counters reset for this test. A
    request an earlier test left held (a timeout fault holds one for timeout_s after its
    client gave up) would land in this test's counters and `received`: wait it out first."""
    deadline = time.monotonic() + 15
    while simulator.stats.in_flight > 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    simulator.config.__init__()
    simulator.reset()
    return simulator


# --- A real Celery worker ----------------------------------------------------------------


@pytest.fixture(scope="session")
def celery_queue():
    queue = f"assay-test-{uuid.uuid4().hex[:8]}"
    from assay.celery import app

    app.conf.task_default_queue = queue
    return queue


# The session's worker, once a test has asked for it (the flush waits for it: see above).
SESSION_WORKER: WorkerProcess | None = None


def _worker_env(queue: str, broker_url: str | None = None) -> dict[str, str]:
    db = settings.DATABASES["default"]
    env = dict(os.environ)
    env.update(
        DATABASE_URL=(
            f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
        ),
        CELERY_BROKER_URL=broker_url or settings.CELERY_BROKER_URL,
        CELERY_QUEUE=queue,
        ASSAY_MEDIA_DIR=MEDIA_DIR,
        ASSAY_DOTENV="off",  # a demo install's .env (assay/dotenv.py) is not the tests'
        PYTHONUNBUFFERED="1",
    )
    return env


class WorkerProcess:
    def __init__(self, queue: str, concurrency: int = 2, broker_url: str | None = None):
        """A worker on `queue` of the session's broker, or of the one at `broker_url` (then
        this process's Celery app must be on it too, for the ping: see `celery_app_on`)."""
        self.queue = queue
        self.concurrency = concurrency
        self.broker_url = broker_url
        self.proc: subprocess.Popen | None = None
        scheme = f"-{broker_url.split(':', 1)[0]}" if broker_url else ""
        self.log = ROOT / "var" / f"worker-{queue}{scheme}.log"

    def start(self) -> None:
        from assay.celery import app

        self.log.parent.mkdir(parents=True, exist_ok=True)
        name = f"test-{uuid.uuid4().hex[:6]}@%h"
        self.hostname = name.replace("%h", os.uname().nodename)
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "assay",
                "worker",
                "-l",
                "info",
                "-Q",
                self.queue,
                "-c",
                str(self.concurrency),
                "-n",
                name,
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
            cwd=ROOT,
            env=_worker_env(self.queue, self.broker_url),
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited; see {self.log}")
            if app.control.ping(destination=[self.hostname], timeout=0.5):
                return
        raise RuntimeError(f"worker did not answer within 60 s; see {self.log}")

    def wait_idle(self, timeout: float) -> None:
        """Drop the messages waiting on this worker's queue, then wait until it runs and holds
        none: no task of a finished test writes beside the next one."""
        from assay.celery import app

        if self.proc is None or self.proc.poll() is not None:
            return
        app.control.purge()
        held = app.control.inspect(destination=[self.hostname], timeout=2, limit=1).scheduled()
        if later := [t["request"]["id"] for tasks in (held or {}).values() for t in tasks]:
            app.control.revoke(later)  # a countdown's task does not wake in the next test
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            inspect = app.control.inspect(destination=[self.hostname], timeout=2, limit=1)
            busy = [inspect.active(), inspect.reserved()]
            if all(reply and not any(reply.values()) for reply in busy):
                return
            time.sleep(0.1)
        raise AssertionError(f"the worker was still busy after {timeout} s; see {self.log}")

    def kill(self) -> None:
        """kill -9 the worker and its pool processes, as a machine crash would."""
        assert self.proc is not None
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        pids = [int(p) for p in children.read_text().split()] if children.exists() else []
        for pid in [self.proc.pid, *pids]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="session")
def celery_worker(django_db_setup, django_db_blocker, celery_queue):
    """A real `celery worker` process against the test database and the test broker."""
    from assay.celery import app

    with django_db_blocker.unblock():
        app.control.purge()
    global SESSION_WORKER
    worker = WorkerProcess(celery_queue)
    worker.start()
    SESSION_WORKER = worker
    yield worker
    SESSION_WORKER = None
    worker.stop()


def _redis_url_for(broker_url: str) -> str:
    """ASSAY_REDIS_URL as a process whose CELERY_BROKER_URL is `broker_url` derives it."""
    if os.environ.get("ASSAY_REDIS_URL"):
        return os.environ["ASSAY_REDIS_URL"]
    return broker_url if broker_url.startswith(("redis://", "rediss://")) else ""


@contextlib.contextmanager
def celery_app_on(broker_url: str):
    """This process (the web side: run_create's sends, the worker pings) on the broker at
    `broker_url`, configured as a deployment with that CELERY_BROKER_URL would be; back on the
    session's broker after. Celery reads the CELERY_BROKER_URL variable before its own conf,
    and keeps its connection and producer pools (the control mailbox too) once made."""
    from django.test import override_settings
    from kombu import pools

    from assay.celery import app

    def drop_pools(close: bool) -> None:
        if close:
            key = app.connection_for_write()
            for group in (pools.producers, pools.connections):
                with contextlib.suppress(KeyError):
                    group[key].force_close_all()
                    del group[key]
        app._pool = None
        app.amqp._producer_pool = None
        app.control.mailbox.__dict__.pop("producer_pool", None)

    saved_env, saved_conf = os.environ.get("CELERY_BROKER_URL"), app.conf.broker_url
    drop_pools(close=False)  # the session broker's pools stay registered for its return
    os.environ["CELERY_BROKER_URL"] = app.conf.broker_url = broker_url
    try:
        with override_settings(
            CELERY_BROKER_URL=broker_url, ASSAY_REDIS_URL=_redis_url_for(broker_url)
        ):
            yield app
    finally:
        drop_pools(close=True)
        if saved_env is None:
            os.environ.pop("CELERY_BROKER_URL", None)
        else:
            os.environ["CELERY_BROKER_URL"] = saved_env
        app.conf.broker_url = saved_conf


def broker_answers(broker_url: str) -> str | None:
    """None if something listens at the broker URL's host and port, else why not."""
    url = urlsplit(broker_url)
    try:
        socket.create_connection((url.hostname, url.port), timeout=3).close()
    except OSError as exc:
        return f"{url.scheme}://{url.hostname}:{url.port} is not answering ({exc})"
    return None


@pytest.fixture
def worker_on_broker(django_db_setup, celery_queue):
    """A factory: `worker_on_broker(url)` puts this process on the broker at `url` (as
    `celery_app_on`) and starts a real worker there on the session's queue name; after the
    test the worker stops, that queue and its exchange are deleted from that broker, and this
    process is back on the session's broker. A broker that does not answer fails the test."""
    stack = contextlib.ExitStack()

    def start(broker_url: str, concurrency: int = 2) -> WorkerProcess:
        assert broker_url != settings.CELERY_BROKER_URL, "the session's broker: use celery_worker"
        if why := broker_answers(broker_url):
            pytest.fail(f"{why}: start it (.ci/run shows how).")
        app = stack.enter_context(celery_app_on(broker_url))

        def delete_queue() -> None:
            with app.connection_for_write(connect_timeout=3) as conn:
                conn.ensure_connection(max_retries=2)  # a broker gone away: fail, not hang
                conn.default_channel.queue_delete(celery_queue)
                conn.default_channel.exchange_delete(celery_queue)

        stack.callback(delete_queue)
        worker = WorkerProcess(celery_queue, concurrency=concurrency, broker_url=broker_url)
        stack.callback(worker.stop)
        worker.start()
        return worker

    with stack:
        yield start


def wait_for(predicate, timeout: float = 60, interval: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


# --- Personas ----------------------------------------------------------------------------


class Personas:
    """A project with one user per role, and an outsider."""

    def __init__(self):
        self.admin = factories.make_user()
        self.project = factories.make_project(owner=self.admin)
        self.author = factories.add_member(self.project, Role.AUTHOR)
        self.annotator = factories.add_member(self.project, Role.ANNOTATOR)
        self.reviewer = factories.add_member(self.project, Role.REVIEWER)
        self.engineer = factories.add_member(self.project, Role.ENGINEER)
        self.outsider = factories.make_user()

    def by_role(self) -> dict[str, object]:
        return {
            "admin": self.admin,
            "author": self.author,
            "annotator": self.annotator,
            "reviewer": self.reviewer,
            "engineer": self.engineer,
            "outsider": self.outsider,
        }


@pytest.fixture
def personas(db):
    return Personas()


# --- Headless Chromium -------------------------------------------------------------------

CHROMIUM = os.environ.get("ASSAY_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}; install Debian's chromium package.")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(15_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # Anything the Content-Security-Policy refuses (Chromium logs it as a console error) is a
    # bug: our own scripts and styles must all be allowed by it.
    page.on(
        "console",
        lambda m: (
            errors.append(m.text)
            if m.type == "error" and "Content Security Policy" in m.text
            else None
        ),
    )
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"
