"""Shared set-up for benchmarks: a dedicated PostgreSQL database, migrated, and Django ready;
the judge simulator and workers in processes of their own; the data they seed (bench_grader,
healthbench_case).

Benchmarks print one JSON line of figures on stdout (`emit`); progress goes to stderr."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def setup(db_name: str) -> None:
    import psycopg

    base = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    url = urlsplit(base)
    with psycopg.connect(base, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [db_name]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{db_name}"')
        # Benchmarks TRUNCATE ... CASCADE their tables, which reaches the append-only audit
        # log; a disposable benchmark database may (rubrics/migrations/0007).
        conn.execute(f"ALTER DATABASE \"{db_name}\" SET assay.allow_audit_truncate = 'on'")
    os.environ["DATABASE_URL"] = url._replace(path=f"/{db_name}").geturl()
    os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/12")
    os.environ.setdefault("SECRET_KEY", "bench-only")
    os.environ.setdefault("DEBUG", "0")
    os.environ.setdefault("ASSAY_SSL_REDIRECT", "0")  # benchmarks speak HTTP on loopback
    os.environ.setdefault("ASSAY_JUDGE_ALLOW_PRIVATE_URLS", "1")  # the simulator is on loopback
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "assay.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def log(message: str) -> None:
    sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


def emit(bench: str, figures: dict) -> None:
    """Print a benchmark's one JSON line on stdout: its name, its figures, and how loaded the
    machine was as it ended (the 1-minute load average, the CPUs)."""
    line = {"bench": bench, **figures}
    line.update(load_avg_1m=round(os.getloadavg()[0], 2), cpus=os.cpu_count())
    print(json.dumps(line), flush=True)


def wait(predicate, timeout: float, what: str, interval: float = 0.2) -> None:
    """Until `predicate()` holds; TimeoutError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise TimeoutError(f"{what} did not happen within {timeout} s")


def peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its reaped and live children, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    # utime, stime, cutime, cstime are fields 14-17 (1-based); after the ")" split, index 11..
    return sum(int(x) for x in fields[11:15]) / ticks


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Simulator:
    """The judge simulator (`manage.py judge_simulator`) in its own process on a free loopback
    port, logging to var/`log_name`. `stop()` it when done (or terminate `proc`)."""

    def __init__(self, log_name: str, *, latency_ms: float, max_concurrency: int, env=None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        (ROOT / "var").mkdir(exist_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", "judge_simulator", "--port", str(self.port)]
            + ["--latency-ms", str(latency_ms), "--max-concurrency", str(max_concurrency)],
            cwd=ROOT,
            env=env,
            stdout=(ROOT / "var" / log_name).open("wb"),
            stderr=subprocess.STDOUT,
        )
        self._http = None

    def stats(self) -> dict:
        """GET /stats: requests seen, in flight, peak, recent latencies."""
        import httpx

        if self._http is None:
            self._http = httpx.Client(timeout=5)
        return self._http.get(f"http://127.0.0.1:{self.port}/stats").json()

    def answers(self) -> bool:
        import httpx

        try:
            self.stats()
            return True
        except httpx.HTTPError:
            return False

    def wait_until_up(self, timeout: float = 30) -> None:
        wait(self.answers, timeout, "the simulator to answer")


def fresh_database_env(default_db: str, *, judge_threads: int) -> tuple[dict, str, str]:
    """The environment of a benchmark that runs a web side, workers and the simulator on
    loopback: a fresh PostgreSQL database of its own (BENCH_DATABASE_URL, else `default_db`),
    dropped, made and migrated; its own queue and Redis prefix on BENCH_BROKER_URL. This
    process takes the same environment. Returns (env, database URL, the run's tag); the
    database goes with `drop_database`."""
    import uuid

    import psycopg

    db_url = os.environ.get("BENCH_DATABASE_URL", default_db)
    broker = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/14")
    for url in (db_url, broker):
        if urlsplit(url).hostname not in ("127.0.0.1", "localhost", "::1"):
            sys.exit("The benchmark runs on loopback only.")
    tag = uuid.uuid4().hex[:8]
    env = dict(os.environ)
    env.update(
        DATABASE_URL=db_url,
        CELERY_BROKER_URL=broker,
        CELERY_QUEUE=f"bench-{tag}",
        ASSAY_REDIS_PREFIX=f"bench-{tag}",
        SECRET_KEY=os.environ.get("SECRET_KEY", "bench-only-secret"),
        ALLOWED_HOSTS="testserver,127.0.0.1",
        DEBUG="0",
        ASSAY_DOTENV="off",
        ASSAY_JUDGE_ALLOW_PRIVATE_URLS="1",  # the simulator is on loopback
        PYTHONUNBUFFERED="1",
        ASSAY_JUDGE_THREADS=str(judge_threads),
    )
    os.environ.update(env)
    os.environ["DJANGO_SETTINGS_MODULE"] = "assay.settings"
    dbname = urlsplit(db_url).path.lstrip("/")
    with psycopg.connect(db_url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{dbname}"')
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v", "0"],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=300,
    )
    return env, db_url, tag


def drop_database(db_url: str) -> None:
    """Drop a benchmark's database (fresh_database_env), after closing this process's
    connections to it."""
    import psycopg
    from django.db import connections

    connections.close_all()
    dbname = urlsplit(db_url).path.lstrip("/")
    with psycopg.connect(db_url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


def start_workers(
    env: dict,
    *,
    count: int,
    name: str,
    threads: int = 0,
    log_level: str = "warning",
    timeout: float = 180,
) -> list[subprocess.Popen]:
    """`count` Celery workers on env["CELERY_QUEUE"] (a thread pool of `threads` when given,
    else one prefork process), logging to var/`name`<n>.log, each answering a ping before this
    returns (a loaded 2-core machine can take a minute to start two)."""
    from assay.celery import app

    (ROOT / "var").mkdir(exist_ok=True)
    pool = ["-P", "threads", "-c", str(threads)] if threads else ["-c", "1"]
    tag = os.urandom(4).hex()
    names = [f"{name}{w}-{tag}@{os.uname().nodename}" for w in range(count)]
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "assay", "worker", *pool]
            + ["-Q", env["CELERY_QUEUE"], "-n", node, "-l", log_level]
            + ["--without-gossip", "--without-mingle", "--without-heartbeat"],
            cwd=ROOT,
            env=env,
            stdout=(ROOT / "var" / f"{name}{w}.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        for w, node in enumerate(names)
    ]
    app.conf.task_default_queue = env["CELERY_QUEUE"]
    wait(
        lambda: len(app.control.ping(destination=names, timeout=0.5) or []) >= count,
        timeout,
        "the workers to answer",
    )
    return workers


# Key words the simulated judge looks for: criteria name two, responses draw from all.
WORDS = (  # noqa: SIM905 - easier to read as prose
    "hydration electrolyte urgent evaluation persistent vomiting dangerous dehydration "
    "monitoring temperature antibiotic resistance paracetamol dosing isolation hygiene "
    "followup appointment codeine syrup fever contraindication anticoagulant interaction "
    "bleeding warfarin vitamin potassium kidney function cardiac troponin ischemia aspirin "
    "nitroglycerin ambulance emergency imaging tomography ultrasound referral specialist "
    "counseling lifestyle exercise nutrition sodium sleep stress medication adherence"
).split()


def bench_grader(owner, *, project_name: str, criteria: int, rng):
    """A project with the task "bench" (one user message) and a published rubric of
    `criteria` criteria, each naming two of WORDS, points drawn from `rng` (the first 5).
    Returns (project, task, grader). Django must be set up."""
    from decimal import Decimal

    from rubrics import services as rubric_services

    project = rubric_services.project_create(name=project_name, user=owner)
    task = rubric_services.task_create(
        project=project,
        external_id="bench",
        title="Bench task",
        messages=[{"role": "user", "content": "I have had a fever and vomiting. What now?"}],
    )
    inputs = [
        rubric_services.CriterionInput(
            text=f"Mentions {WORDS[(3 * i) % len(WORDS)]} and {WORDS[(3 * i + 1) % len(WORDS)]}",
            points=Decimal(rng.choice([1, 2, 3, 5, -2])) if i else Decimal(5),
        )
        for i in range(criteria)
    ]
    rubric = rubric_services.rubric_create(
        project=project, task=task, title="Bench rubric", user=owner, criteria=inputs
    )
    grader = rubric_services.version_publish(version=rubric.versions.get(), user=owner)
    return project, task, grader


# Axis tags of HealthBench's rubric items (a criterion carries one, as in the public file).
AXES = ("axis:accuracy", "axis:completeness", "axis:communication_quality")


def healthbench_lines(tasks: int, *, rng, criteria=(8, 15)) -> list[str]:
    """`tasks` lines of a HealthBench-shaped file: each task its own one-message prompt and a
    rubric of `criteria` (a range, drawn from `rng`) items, each naming two of WORDS, with an
    axis tag; the first item of each rubric is worth 5 points, so every rubric publishes."""
    lines = []
    for t in range(tasks):
        n = rng.randint(*criteria)
        items = []
        for i in range(n):
            a, b = rng.sample(WORDS, 2)
            items.append(
                {
                    "criterion": f"Task {t}: mentions {a} and {b}",
                    "points": 5 if i == 0 else rng.choice([1, 2, 3, 5, -2, -5]),
                    "tags": [rng.choice(AXES)],
                }
            )
        words = " ".join(rng.choice(WORDS) for _ in range(25))
        lines.append(
            json.dumps(
                {
                    "prompt": [{"role": "user", "content": f"Case {t}: {words}. What now?"}],
                    "prompt_id": f"hb-{t:05d}",
                    "rubrics": items,
                    "example_tags": [f"theme:{rng.choice(('emergency', 'hedging', 'context'))}"],
                }
            )
        )
    return lines


def publish_in_bulk(version_ids: list[int], user) -> int:
    """Publish draft rubric versions as `rubrics.services.version_publish` does, many at once:
    each compiles with `rubrics.compiler.compile_grader` from its criteria in order (the real
    spec and the real hash), then the versions go to published in one UPDATE (the database's
    frozen-version trigger allows draft -> published) and the graders in one COPY.

    What the per-rubric service adds and this leaves out: a row-locked re-read, a history
    event and an audit event per version (about ten queries a rubric: 5,000 rubrics take about
    a minute that way; this takes seconds). Returns how many graders it wrote. Benchmarks
    only: the product publishes through the service."""
    from django.db import connection, transaction
    from django.utils import timezone

    from rubrics import bulk, compiler
    from rubrics.models import Criterion, Grader, RubricVersion

    versions = {
        v.pk: v
        for v in RubricVersion.objects.filter(
            pk__in=version_ids, status=RubricVersion.Status.DRAFT
        ).select_related("rubric__task")
    }
    criteria: dict[int, list] = {pk: [] for pk in versions}
    for c in Criterion.objects.filter(version_id__in=list(versions)).order_by(
        "version_id", "position"
    ):
        criteria[c.version_id].append(c)
    rows, ids, hashes = [], [], []
    for pk, version in versions.items():
        assert not version.rubric.template_id, "templates compile through the service"
        grader_hash, spec = compiler.compile_grader(version, criteria[pk])
        rows.append({"hash": grader_hash, "version_id": pk, "spec": spec})
        ids.append(pk)
        hashes.append(spec["rubric"]["content_hash"])
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "UPDATE rubrics_rubricversion v SET status = %s, content_hash = d.h, "
            "published_by_id = %s, published_at = %s "
            "FROM (SELECT unnest(%s::bigint[]) AS id, unnest(%s::text[]) AS h) d "
            "WHERE v.id = d.id",
            [RubricVersion.Status.PUBLISHED, user.pk, timezone.now(), ids, hashes],
        )
        bulk.insert_rows(Grader, rows)
    return len(rows)


def import_suite(owner, project, lines: list[str]):
    """HealthBench-shaped `lines` (healthbench_lines, or rows of a bench's own) imported into
    `project` through the HealthBench importer (`rubrics.formats.import_healthbench`), their
    rubrics published (`publish_in_bulk`), their tasks in one suite, frozen
    (`rubrics.suites.suite_freeze`). Returns (suite, its version, timings in s: import_s,
    publish_s, suite_freeze_s)."""
    from rubrics import formats, suites
    from rubrics.models import RubricVersion

    timings = {}
    t0 = time.monotonic()
    imported = formats.import_healthbench(project=project, lines=lines, user=owner)
    timings["import_s"] = time.monotonic() - t0
    t0 = time.monotonic()
    drafts = RubricVersion.objects.filter(rubric__task_id__in=imported.task_ids)
    published = publish_in_bulk(list(drafts.values_list("pk", flat=True)), owner)
    assert published == len(lines), (published, len(lines))
    timings["publish_s"] = time.monotonic() - t0
    suite = suites.suite_create(
        project=project, name="HealthBench-shaped", user=owner, task_ids=imported.task_ids
    )
    t0 = time.monotonic()
    version, created = suites.suite_freeze(suite=suite, user=owner)
    timings["suite_freeze_s"] = time.monotonic() - t0
    assert created and version.task_count == len(lines), (created, version.task_count)
    return suite, version, timings


# The models of the HealthBench-shaped case: one response per task each.
MODELS = ("model-a", "model-b")


@dataclass
class HealthBenchCase:
    """What `healthbench_case` seeds."""

    project: Any
    suite: Any
    version: Any  # the suite's frozen version
    judge: Any
    responses: int
    criteria: int
    # import_s, publish_s, suite_freeze_s (import_suite), responses_import_s
    timings: dict[str, float]


def healthbench_case(
    owner,
    *,
    project_name: str,
    tasks: int,
    rng,
    judge_url: str,
    judge_limit: int | None = None,
    response: str = "{model} on {task}: {words}",
    response_words: int = 120,
) -> HealthBenchCase:
    """The HealthBench-shaped case of the grading, pages and run_create benches, everything
    drawn from `rng` in the same order for the same figures: a project of `tasks` tasks, each
    its own rubric of 8-15 criteria (healthbench_lines), imported, published in bulk and frozen
    in one suite (import_suite), a few of its graders compiled again (check_published); each
    of MODELS with one response per task, `response` formatted with the model, the task's
    external id and `response_words` of WORDS, through the responses importer; and a judge
    "simulator" at `judge_url` (`judge_limit` calls at once, else the service's default).
    Django must be set up."""
    from annotation import services as annotation_services
    from grading import services as grading_services
    from rubrics import services as rubric_services
    from rubrics.models import Criterion

    project = rubric_services.project_create(name=project_name, user=owner)
    suite, version, timings = import_suite(owner, project, healthbench_lines(tasks, rng=rng))
    check_published(project)
    lines = [
        json.dumps(
            {
                "task_id": external_id,
                "model": model,
                "response": response.format(
                    model=model,
                    task=external_id,
                    words=" ".join(rng.choice(WORDS) for _ in range(response_words)),
                ),
            }
        )
        for external_id in project.tasks.order_by("pk").values_list("external_id", flat=True)
        for model in MODELS
    ]
    t0 = time.monotonic()
    result = annotation_services.responses_import_jsonl(project=project, lines=lines)
    assert result.ok, result.errors
    timings["responses_import_s"] = time.monotonic() - t0
    judge = grading_services.judge_create(
        project=project,
        name="simulator",
        base_url=judge_url,
        model="bench-judge",
        **({"max_concurrency": judge_limit} if judge_limit else {}),
    )
    return HealthBenchCase(
        project=project,
        suite=suite,
        version=version,
        judge=judge,
        responses=len(lines),
        criteria=Criterion.objects.filter(version__rubric__project=project).count(),
        timings=timings,
    )


def check_published(project, sample: int = 5) -> None:
    """A few of the bulk-published graders compile again, through what the service reads
    (`rubrics.selectors.grader_parts`), to the hash stored: the graders are the real ones."""
    from rubrics import compiler
    from rubrics.models import Grader
    from rubrics.selectors import grader_parts

    for grader in Grader.objects.filter(version__rubric__project=project).select_related(
        "version__rubric__task"
    )[:sample]:
        version = grader.version
        parts = grader_parts(version, version.rubric)
        grader_hash, _ = compiler.compile_grader(
            version,
            parts.criteria,
            groups=parts.groups,
            reference=parts.reference,
            template=parts.template,
        )
        assert grader_hash == grader.hash, f"grader {grader.pk} compiles to another hash"
