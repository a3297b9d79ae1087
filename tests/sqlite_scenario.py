"""tests/test_sqlite.py's program, run in one subprocess on the embedded default (SQLite,
filesystem broker): `python -m tests.sqlite_scenario PROGRAM`, where PROGRAM is a JSON list
of ["manage", command, args...] (run as manage.py runs it) or [step, args...] (what no command
does). Prints a JSON list of results, one per line of the program, on its last line."""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys

import django


def setup() -> dict:
    """Two projects (a source and a copy) and their owner."""
    from tests import factories

    owner = factories.make_user("sqlite-owner")
    source = factories.make_project(owner=owner, name="SQLite source")
    target = factories.make_project(owner=owner, name="SQLite copy")
    return {"source": source.slug, "target": target.slug, "owner": owner.username}


def project(name: str) -> dict:
    """Another project of the owner, for one test's own imports."""
    from django.contrib.auth import get_user_model

    from tests import factories

    owner = get_user_model().objects.get(username="sqlite-owner")
    return {"slug": factories.make_project(owner=owner, name=name).slug}


def paperbench_id(slug: str) -> int:
    from rubrics.models import Rubric

    return Rubric.objects.filter(project__slug=slug).values_list("pk", flat=True).get()


def grade(slug: str) -> dict:
    """A published rubric on task t1, a run's judge verdicts and scores (cached and not), a
    person's submitted verdicts and another's unsubmitted draft."""
    from annotation.models import Rater, Response, Verdict
    from grading.models import Score
    from rubrics.models import Project, Role, Task
    from tests import factories

    project = Project.objects.get(slug=slug)
    owner = project.created_by
    task = Task.objects.get(project=project, external_id="t1")
    grader = factories.make_published_rubric(
        project, task, [("Mentions water", 2), ("Recommends antibiotics", -1)], owner
    )
    judge = factories.make_judge(project, "http://127.0.0.1:9/v1")
    responses = list(Response.objects.filter(task=task).order_by("pk"))
    run = factories.make_run(
        project=project, grader=grader, judge=judge, total_items=len(responses), status="completed"
    )
    rater = Rater.objects.get(pk=judge.rater_id)
    criteria = list(grader.version.criteria.order_by("position"))
    for i, response in enumerate(responses):
        for criterion in criteria:
            Verdict.objects.create(
                response=response,
                criterion=criterion,
                rater=rater,
                grader=grader,
                run=run,
                outcome="met" if i % 2 == 0 else "unmet",
                judge_model="judge-model",
                simulated=True,
            )
        Score.objects.create(
            run=run, response=response, grader=grader, status="done", raw=1.0 - i / 4
        )
    person = factories.add_member(project, Role.ANNOTATOR, "sqlite-annotator")
    drafter = factories.add_member(project, Role.ANNOTATOR, "sqlite-drafter")
    queue = factories.make_queue(project, grader, [person, drafter], owner, overlap=2)
    factories.annotate(queue, person, "met")
    factories.annotate(queue, drafter, "unmet", submit=False)
    drafts = list(Verdict.objects.filter(rater__user=drafter).values_list("pk", flat=True))
    return {
        "run": run.pk,
        "drafts": drafts,
        "verdicts": Verdict.objects.count(),
        "suite": run.suite_version.suite.name,
        "suite_hash": run.suite_version.content_hash,
    }


def snapshots(slug: str) -> dict:
    """Every dataset format built through the snapshot service, as a worker builds it."""
    from django.core.files.storage import default_storage

    from grading.datasets import formats, snapshots
    from grading.models import DatasetSnapshot, GradingRun
    from rubrics.models import Project

    project = Project.objects.get(slug=slug)
    run = GradingRun.objects.filter(project=project).first()
    built = {}
    # Each format with what it needs (a run, a suite version); those a suite version narrows
    # are built a second time for the run's suite version, under "<format>+suite".
    wanted = [(fmt, fmt) for fmt in snapshots.FORMATS] + [
        (f"{fmt}+suite", fmt) for fmt in sorted(formats.TAKE_VERSION)
    ]
    for key, fmt in wanted:
        snapshot = snapshots.snapshot_create(
            project=project,
            name=f"sqlite {key.replace('+', ' ')}",
            format=fmt,
            user=project.created_by,
            run_id=run.pk if fmt in formats.RUN_EXPORTS else None,
            min_margin=0.1,
            suite_version_id=run.suite_version_id
            if fmt in formats.VERSION_EXPORTS or key.endswith("+suite")
            else None,
        )
        with contextlib.suppress(Exception):  # a failure is recorded on the row: see below
            snapshots.snapshot_build(snapshot_id=snapshot.pk)
        snapshot = DatasetSnapshot.objects.get(pk=snapshot.pk)
        content = ""
        if snapshot.status == "ready" and not snapshot.file.endswith((".parquet", ".zip")):
            with default_storage.open(snapshot.file, "rb") as f:
                content = f.read().decode()
        built[key] = {
            "status": snapshot.status,
            "error": snapshot.error,
            "rows": snapshot.rows_done,
            "content": content,
            "file": default_storage.path(snapshot.file) if snapshot.file else "",
            "card": snapshot.card,
        }
    return built


def pages(slug: str) -> dict:
    """What reading a suite's results asks of the database, on SQLite: the run page with its
    leaderboard, the suite page, both leaderboards and the comparison of two runs over the
    suite (a second run with the first's verdicts, half of them flipped), page and API, as the
    project's owner reads them. {url: (status, a piece of the body)}."""
    from django.conf import settings
    from django.test import Client

    from annotation.models import Verdict
    from grading.models import GradingRun, Score
    from rubrics.models import Project
    from tests import factories

    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    # Pages name static files, which no collectstatic has hashed here (as in the tests).
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    project = Project.objects.get(slug=slug)
    run = GradingRun.objects.filter(project=project).order_by("pk").first()
    other = factories.make_run(
        project=project,
        grader=run.sole_grader,
        judge=run.judge,
        total_items=run.total_items,
        status="completed",
    )
    Score.objects.bulk_create(
        Score(
            run=other,
            response_id=s.response_id,
            grader_id=s.grader_id,
            status="done",
            raw=(s.raw or 0) / 2,
        )
        for s in Score.objects.filter(run=run)
    )
    verdicts = list(Verdict.objects.filter(run=run).order_by("pk"))
    for i, v in enumerate(verdicts):
        v.pk, v.run_id = None, other.pk
        if i % 2:
            v.outcome = "unmet" if v.outcome == "met" else "met"
    Verdict.objects.bulk_create(verdicts)
    suite = run.suite_version.suite_id
    client = Client()
    client.force_login(project.created_by)
    urls = [
        f"/runs/{run.pk}/",
        f"/p/{slug}/runs/",
        f"/suites/{suite}/",
        f"/api/runs/{run.pk}/leaderboard/",
        f"/api/suites/{suite}/leaderboard/",
        f"/runs/{run.pk}/compare/{other.pk}/",
        f"/api/runs/{run.pk}/compare/{other.pk}/",
    ]
    shown = {}
    for url in urls:
        reply = client.get(url)
        shown[url] = [reply.status_code, reply.content.decode()[:20000]]
    return shown


def vendor() -> str:
    from django.db import connection

    return connection.vendor


STEPS = {
    "setup": setup,
    "project": project,
    "paperbench_id": paperbench_id,
    "grade": grade,
    "snapshots": snapshots,
    "vendor": vendor,
    "pages": pages,
}


def manage(*argv: str) -> dict:
    """One management command as manage.py runs it: its output, and its error if it fails."""
    from django.core.management import CommandError, call_command

    out, err = io.StringIO(), io.StringIO()
    error = None
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            call_command(*argv, stdout=out, stderr=err)
    except (CommandError, SystemExit) as exc:
        error = str(exc) or "failed"
    return {"out": out.getvalue(), "err": err.getvalue(), "error": error}


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "assay.settings")
    django.setup()
    results = []
    for name, *args in json.loads(sys.argv[1]):
        results.append(manage(*args) if name == "manage" else STEPS[name](*args))
    print(json.dumps(results))  # noqa: T201
