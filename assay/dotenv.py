"""The demo install's `.env`: written once by scripts/demo, read by manage.py and by the
`celery` command, so the README's `python manage.py ...` lines work as printed after
`./scripts/demo`.

A value from the file is used only for a name the environment does not set: the
environment always wins. `.env` is git-ignored; CI has none, and pytest never reads one (it
loads the settings itself). ASSAY_DOTENV names another file, or `off` to read none.

Standard library only: it runs before Django is configured (`python -m assay.dotenv`).
"""

from __future__ import annotations

import os
import re
import secrets
import sys
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
# What scripts/demo runs with: the embedded default (SQLite, filesystem broker) needs DEBUG,
# the simulated judge listens on loopback, and anyone may sign up.
DEMO = {"DEBUG": "1", "ASSAY_JUDGE_ALLOW_PRIVATE_URLS": "1", "ASSAY_SIGNUP": "1"}
_LINE = re.compile(r"(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)")


class DotenvError(ValueError):
    pass


def dotenv_path() -> Path | None:
    """The file to read: ASSAY_DOTENV, else `.env` beside manage.py; None when turned off."""
    named = os.environ.get("ASSAY_DOTENV", "")
    if named.strip().lower() in ("off", "0", "no", "false"):
        return None
    return Path(named) if named else BASE_DIR / ".env"


def read(path: Path) -> dict[str, str]:
    """NAME=value lines (optionally `export`ed or quoted); blank lines and # comments skipped.
    Anything else is an error naming the file and line."""
    values: dict[str, str] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE.fullmatch(line)
        if match is None:
            raise DotenvError(f"{path}:{number}: expected NAME=value, got {line[:60]!r}")
        name, value = match.groups()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        elif " #" in value:  # a comment after an unquoted value
            value = value.split(" #", 1)[0].rstrip()
        values[name] = value
    return values


def load(path: Path | None = None) -> list[str]:
    """Put the file's values into os.environ for the names it does not set yet; the names
    taken. No file, nothing taken."""
    path = path or dotenv_path()
    if path is None or not path.is_file():
        return []
    taken = []
    for name, value in read(path).items():
        if name not in os.environ:
            os.environ[name] = value
            taken.append(name)
    return taken


def write_demo(path: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The demo's settings in `path`: SECRET_KEY generated the first time and kept after, and
    DEMO's values (and `extra`'s) for names the file does not hold yet. Lines already there
    are never changed. The file is readable by its owner only. Returns what the file holds."""
    existing = read(path) if path.is_file() else {}
    wanted = {"SECRET_KEY": secrets.token_urlsafe(50), **DEMO, **(extra or {})}
    missing = {name: value for name, value in wanted.items() if name not in existing}
    if missing:
        text = path.read_text(encoding="utf-8") if path.is_file() else ""
        if not text:
            text = (
                "# Written by scripts/demo for this install: manage.py and celery read it for\n"
                "# names the environment does not set. Never commit it.\n"
            )
        if not text.endswith("\n"):
            text += "\n"
        text += "".join(f"{name}={value}\n" for name, value in missing.items())
        path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
    return {**existing, **missing}


def main(argv: list[str]) -> int:
    if len(argv) not in (1, 2) or argv[0] != "write-demo":
        print("usage: python -m assay.dotenv write-demo [PATH]   (default: .env)", file=sys.stderr)
        return 2
    path = Path(argv[1]) if len(argv) == 2 else BASE_DIR / ".env"
    try:
        write_demo(path)
    except DotenvError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
