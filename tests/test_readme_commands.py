"""Every `python manage.py ...` line of README.md works as printed on the demo install.

The demo writes a `.env` (assay/dotenv.py: SECRET_KEY made once, DEBUG=1, the simulator's
loopback judge allowed) that manage.py reads for names the environment does not set. Here each
README command line runs in a subprocess whose environment holds none of the settings (no
SECRET_KEY, DEBUG or DATABASE_URL): only the demo's .env, pointing the embedded SQLite at a
temporary folder. Placeholders (SLUG, FILE, ID, NAME, F) become a small fixture's; optional
`[...]` parts are left out. Each must end with exit 0, or with a usage error (exit 1 or 2
from argparse or a CommandError), and never with "Set the environment variable".

The Production section's commands run with production's own environment, and `bench/`
scripts make their own PostgreSQL databases, so neither is run here.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from assay import dotenv

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
NOT_SET = "Set the environment variable"


def readme_commands() -> list[str]:
    """The manage.py command lines of README.md outside its Production section: lines of
    code blocks (backslash continuations joined) and inline code spans."""
    sections = README.read_text().split("\n## ")
    text = "\n".join(s for s in sections if not s.startswith("Production"))
    found: list[str] = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            if "manage.py " in line:
                found.append(line.split("#")[0].strip())
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    spans = prose.replace("\n", " ").split("`")[1::2]  # the text between backticks
    found += [span.strip() for span in spans if "manage.py " in span]
    commands = []
    for line in found:
        line = re.sub(r"\s+", " ", line)
        if not line.startswith("python "):
            line = "python " + line  # "`manage.py import_tasks` takes tasks"
        if line not in commands:
            commands.append(line)
    return commands


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Install:
    """The demo install in `folder`: its .env, its SQLite database, the demo data."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.env_file = folder / ".env"
        dotenv.write_demo(self.env_file, extra={"ASSAY_VAR_DIR": str(folder / "var")})
        self.sim_port = free_port()
        self.files = folder / "files"
        self.files.mkdir()

    def environ(self) -> dict[str, str]:
        """What a user's shell has: a PATH (with the install's python first), a home, and
        nothing of Assay's settings but the .env's location."""
        return {
            "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
            "HOME": str(self.folder),
            "LANG": "C.UTF-8",
            "ASSAY_DOTENV": str(self.env_file),
        }

    def run(self, command: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run(  # noqa: S603 - the README's command, argv split as a shell would
            shlex.split(command),
            cwd=ROOT,
            env=self.environ(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def query(self, sql: str) -> list[tuple]:
        with sqlite3.connect(self.folder / "var" / "assay.sqlite3") as db:
            return db.execute(sql).fetchall()


def fill(command: str, install: Install, facts: dict[str, str]) -> str:
    """The README line with its placeholders made real."""
    command = re.sub(r"\s*\[[^\]]*\]", "", command)  # optional parts
    name = command.split()[2]
    files = install.files
    if name == "import_rubrics":
        fmt = re.search(r"--format (\w+)", command).group(1)
        command = re.sub(r"\bFILE\.\w+", str(files / f"rubrics.{fmt}"), command)
    elif name == "grade":
        command = command.replace("FILE.jsonl", str(files / "graded.jsonl"))
        command = command.replace("--rubric-version ID", f"--rubric-version {facts['version']}")
        command = command.replace("--judge NAME", f"--judge {shlex.quote(facts['judge'])}")
    elif name == "import_responses":
        command = command.replace(" FILE ", f" {files / 'responses.jsonl'} ")
    elif name == "export_dataset":
        command = command.replace("--format F", "--format verdicts-jsonl")
        command = command.replace("--output FILE", f"--output {files / 'dataset.jsonl'}")
    elif name == "judge_simulator":
        command = command.replace("--port 8765", f"--port {install.sim_port}")
    return command.replace("SLUG", facts["slug"])


def write_fixture_files(install: Install, task: str) -> None:
    files = install.files
    rows = [{"criterion": "Advises hydration", "points": 5, "tags": ["axis:accuracy"]}]
    healthbench = {
        "prompt": [{"role": "user", "content": "I have a fever. What should I do?"}],
        "prompt_id": "readme-hb-1",
        "rubrics": rows,
        "example_tags": [],
    }
    (files / "rubrics.healthbench").write_text(json.dumps(healthbench) + "\n")
    paperbench = {
        "id": "root",
        "requirements": "The paper is reproduced.",
        "weight": 1,
        "sub_tasks": [
            {"id": "a", "requirements": "The data is split.", "weight": 1, "sub_tasks": []}
        ],
    }
    (files / "rubrics.paperbench").write_text(json.dumps(paperbench))
    (files / "rubrics.csv").write_text(
        f"Task,Criterion text,Pts\n{task},Mentions the dose,2\n{task},Gives a wrong dose,-3\n"
    )
    response = {"task_id": task, "model": "readme-model", "response": "Rest and drink water."}
    (files / "responses.jsonl").write_text(json.dumps(response) + "\n")
    (files / "graded.jsonl").write_text(json.dumps({**response, "model": "readme-graded"}) + "\n")


# Each README command is its own Django process (a few seconds each on a loaded machine), and
# the README grows with the product: the default 300 s is too tight for all of them.
@pytest.mark.timeout(900)
def test_readme_commands_work_as_printed_with_only_the_demos_env(tmp_path):
    install = Install(tmp_path)
    commands = readme_commands()
    names = {c.split()[2] for c in commands}
    assert {"import_rubrics", "export_rubrics", "import_responses", "judge_simulator"} <= names
    assert {"export_dataset", "grade", "import_tasks"} <= names

    # What scripts/demo does before anything else, in a shell with no settings at all.
    for step in ("python manage.py migrate --noinput", "python manage.py load_demo"):
        if step.endswith("load_demo"):
            step += f" --simulator-url http://127.0.0.1:{install.sim_port}/v1"
        done = install.run(step)
        assert done.returncode == 0, f"{step}: {done.stderr[-2000:]}"
    (version, task), *_ = install.query(
        "SELECT v.id, t.external_id FROM rubrics_rubricversion v "
        "JOIN rubrics_rubric r ON r.id = v.rubric_id JOIN rubrics_task t ON t.id = r.task_id "
        "WHERE v.status = 'published' ORDER BY v.id LIMIT 1"
    )
    ((judge,),) = install.query("SELECT name FROM grading_judge LIMIT 1")
    facts = {"slug": "demo", "version": str(version), "judge": judge}
    write_fixture_files(install, task)

    failures = []
    simulator = None
    try:
        for printed in sorted(commands, key=lambda c: "judge_simulator" not in c):
            command = fill(printed, install, facts)
            if "judge_simulator" in command:  # a server: it runs until stopped
                simulator = subprocess.Popen(  # noqa: S603
                    shlex.split(command),
                    cwd=ROOT,
                    env=install.environ(),
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
                if not wait_for_port(install.sim_port, simulator):
                    failures.append(f"{printed}\n  -> {simulator.stdout.read()[-2000:]}")
                continue
            done = install.run(command)
            output = done.stdout + done.stderr
            clean_usage = done.returncode in (1, 2) and (
                "usage:" in output or "CommandError" in output or "Error:" in output
            )
            if NOT_SET in output or not (done.returncode == 0 or clean_usage):
                failures.append(f"{printed}\n  as {command}\n  -> {done.returncode}: {output}")
    finally:
        if simulator is not None:
            simulator.terminate()
            simulator.wait(timeout=20)
    assert not failures, "\n".join(failures)
    assert install.query("SELECT count(*) FROM annotation_response WHERE model = 'readme-model'")


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 120) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.2)
    return False


def test_the_environment_wins_over_the_env_file(tmp_path, monkeypatch):
    path = tmp_path / ".env"
    written = dotenv.write_demo(path)
    assert set(written) == {"SECRET_KEY", *dotenv.DEMO}
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    # Written again: the key made the first time stays.
    assert dotenv.write_demo(path)["SECRET_KEY"] == written["SECRET_KEY"]
    monkeypatch.setenv("DEBUG", "0")
    monkeypatch.delenv("SECRET_KEY", raising=False)
    for name in ("ASSAY_JUDGE_ALLOW_PRIVATE_URLS", "ASSAY_SIGNUP"):
        monkeypatch.delenv(name, raising=False)
    taken = dotenv.load(path)
    assert sorted(taken) == ["ASSAY_JUDGE_ALLOW_PRIVATE_URLS", "ASSAY_SIGNUP", "SECRET_KEY"]
    assert os.environ["DEBUG"] == "0" and os.environ["SECRET_KEY"] == written["SECRET_KEY"]
    path.write_text("SECRET_KEY=x\nnot a setting\n")
    with pytest.raises(dotenv.DotenvError, match=r"\.env:2: expected NAME=value"):
        dotenv.read(path)


def test_the_celery_command_reads_the_demos_env(tmp_path):
    """`celery -A assay worker` (scripts/demo, the README) configures from the same .env."""
    install = Install(tmp_path)
    done = install.run("celery -A assay report", timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "DEBUG: True" in done.stdout and NOT_SET not in done.stdout + done.stderr
