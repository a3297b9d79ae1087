"""Settings fail loudly: a production process never starts on a guess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SETUP = (
    "import django; django.setup(); from django.conf import settings; "
    "print(settings.DATABASES['default']['ENGINE'])"
)


def run_with(env: dict[str, str], tmp: Path) -> subprocess.CompletedProcess:
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DEBUG", "SECRET_KEY", "DATABASE_URL", "CELERY_BROKER_URL", "ASSAY_EMBEDDED"}
    }
    return subprocess.run(
        [sys.executable, "-c", SETUP],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={
            **base,
            "DJANGO_SETTINGS_MODULE": "assay.settings",
            "ASSAY_VAR_DIR": str(tmp),
            **env,
        },
    )


@pytest.mark.parametrize(
    ("env", "missing"),
    [
        ({"DEBUG": "0"}, "SECRET_KEY"),
        ({"DEBUG": "0", "SECRET_KEY": "s"}, "DATABASE_URL"),
        ({"DEBUG": "0", "SECRET_KEY": "s", "DATABASE_URL": "postgres://h/db"}, "CELERY_BROKER_URL"),
        ({"DEBUG": "maybe"}, "DEBUG='maybe' is not a boolean"),
        # A deployment key bound to no host could go anywhere: refused, saying how to bind it.
        (
            {"DEBUG": "1", "ASSAY_JUDGE_KEY_VARIABLES": "OPENAI_API_KEY"},
            "OPENAI_API_KEY@api.openai.com",
        ),
        ({"DEBUG": "1", "ASSAY_SECRETS_KEY": "not-a-fernet-key"}, "is not a Fernet key"),
    ],
)
def test_a_missing_production_setting_stops_the_process_naming_it(env, missing, tmp_path):
    result = run_with(env, tmp_path)
    assert result.returncode != 0
    assert missing in result.stderr


def test_debug_runs_on_the_embedded_default(tmp_path):
    result = run_with({"DEBUG": "1"}, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "sqlite3" in result.stdout


def test_production_with_everything_set_starts(tmp_path):
    result = run_with(
        {
            "DEBUG": "0",
            "SECRET_KEY": "s",
            "DATABASE_URL": "postgres://h/db",
            "CELERY_BROKER_URL": "redis://h:6379/0",
        },
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "postgresql" in result.stdout


def test_check_deploy_is_clean_under_production_settings(tmp_path):
    env = {
        "DEBUG": "0",
        "SECRET_KEY": "k" * 30 + "-production-grade-secret-with-enough-entropy-1234567890",
        "DATABASE_URL": "postgres://h/db",
        "CELERY_BROKER_URL": "redis://h:6379/0",
        "ALLOWED_HOSTS": "assay.example.com",
    }
    # Only what a production process would have: none of the test harness's variables.
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ASSAY_", "DEBUG", "DJANGO_ALLOW_ASYNC"))
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        # ASSAY_DOTENV=off: a demo install's .env (assay/dotenv.py) is not production's.
        env={**base, **env, "ASSAY_VAR_DIR": str(tmp_path), "ASSAY_DOTENV": "off"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout
