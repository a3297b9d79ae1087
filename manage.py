#!/usr/bin/env python
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent


def _use_the_project_venv() -> None:
    """`python manage.py ...` as the README prints it, with a python outside the install's
    .venv (no Django there): run the same command with the .venv's python instead."""
    try:
        import django  # noqa: F401
    except ImportError:
        venv = ROOT / ".venv"
        if (venv / "bin" / "python").exists() and Path(sys.prefix).resolve() != venv.resolve():
            python = str(venv / "bin" / "python")
            os.execv(python, [python, *sys.argv])  # noqa: S606 - the same argv, no shell
        raise


if __name__ == "__main__":
    _use_the_project_venv()
    from assay import dotenv

    try:
        # The demo install's .env (scripts/demo writes it): names the environment lacks.
        dotenv.load()
    except dotenv.DotenvError as exc:
        sys.exit(f"Bad .env: {exc}")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "assay.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
