"""Shared harness: PostgreSQL, a real Celery worker on a real broker, the judge simulator,
personas, and headless Chromium. Nothing of the project's own is mocked."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

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
    """The session's simulator, with default settings and counters reset for this test."""
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


def _worker_env(queue: str) -> dict[str, str]:
    db = settings.DATABASES["default"]
    env = dict(os.environ)
    env.update(
        DATABASE_URL=(
            f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
        ),
        CELERY_BROKER_URL=settings.CELERY_BROKER_URL,
        CELERY_QUEUE=queue,
        ASSAY_MEDIA_DIR=MEDIA_DIR,
        ASSAY_DOTENV="off",  # a demo install's .env (assay/dotenv.py) is not the tests'
        PYTHONUNBUFFERED="1",
    )
    return env


class WorkerProcess:
    def __init__(self, queue: str, concurrency: int = 2):
        self.queue = queue
        self.concurrency = concurrency
        self.proc: subprocess.Popen | None = None
        self.log = ROOT / "var" / f"worker-{queue}.log"

    def start(self) -> None:
        from assay.celery import app

        self.log.parent.mkdir(parents=True, exist_ok=True)
        name = f"test-{uuid.uuid4().hex[:6]}@%h"
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
            env=_worker_env(self.queue),
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited; see {self.log}")
            if app.control.ping(destination=[name.replace("%h", os.uname().nodename)], timeout=0.5):
                return
        raise RuntimeError(f"worker did not answer within 60 s; see {self.log}")

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
    worker = WorkerProcess(celery_queue)
    worker.start()
    yield worker
    worker.stop()


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
