"""Load benchmark: people annotating and browsing, and RL trainers on the reward endpoint, at
once, against the production server setup. Prints ONE JSON line of figures.

    .venv/bin/python bench/load.py [--duration 60] [--users 50] [--reward-clients 20]

Everything on this machine, loopback only, bounded in time:

* PostgreSQL: its own database (assay_load), created, migrated and dropped;
* Redis: the judge's shared limits under a key prefix of this run only (no Celery worker:
  none of the flows below enqueues work);
* the judge simulator in its own process (`--latency-ms`, default 50 ms a call);
* what stands in for other machines, the simulator (a judge API) and the trainers' client
  process (an RL trainer's reward workers), at `--outside-nice` (19): on one machine they
  use the CPU the server leaves, as they would use CPUs of their own in a deployment;
* gunicorn serving assay.wsgi, DEBUG=0, gthread workers (`--workers 3 --threads 12`: three
  processes for two cores, each with enough threads that requests waiting on the judge do
  not hold up pages; up to 36 PostgreSQL connections, CONN_MAX_AGE 60), `--preload`,
  keep-alive 75 s (longer than the clients' idle expiry), static files collected into a
  temporary STATIC_ROOT and served by WhiteNoise. `--reward-pool N` starts a second gunicorn
  of N workers for the reward clients, each scoring a reward request on every thread
  (ASSAY_REWARD_MAX_CONCURRENT = `--reward-threads`); with `--reward-pool 0` the people's
  processes keep the default bound (2 reward requests each; more are a 503, counted).

The project is seeded through the services: three of the demo's expert tasks with their
15-criterion rubrics, published; 100 responses each (10 models x 10 samples, variants of the
demo answers); a double-annotation queue per rubric (overlap 2) with 50 annotators, the first
30 items of each already annotated by two people; a finished grading run per rubric graded by
the simulator (batched); an engineer with an API token of scope `grade`.

Virtual users log in before the clock starts: `--password-logins` (5) of them through the login
page (CSRF token, a production-strength PBKDF2 check, session cookie), the others with a
session made beforehand as Django's test client makes one (fifty PBKDF2 checks would take the
two cores for half a minute); each then opens the home page (the CSRF cookie) and fetches its
static files. Then for `--duration` seconds, with a think time drawn uniformly from 0 to
`--think-max` (1 s) before each request:

* annotators (users - leads): open their queues page, claim the next item, open the
  annotation page, save a draft verdict for each of the 15 criteria as htmx POSTs, "Submit
  and next" (which claims the next item), and after one item in three look at the project,
  task, rubric or grader page;
* leads (one user in five: reviewers and engineers, who may see results; annotators are blind
  to them): browse the project, rubric, run, score, agreement and queue progress pages;
* reward clients (`--reward-clients`, no think time, as a trainer's reward workers): POST
  /api/graders/{hash}/score/ with one fresh response each time (so never from the cache),
  token auth; the latency is reported, and the overhead above the simulator's latency.

Figures are client-side wall times (request sent to body read) per group: pages (HTML GETs),
writes (htmx draft saves, claims, submits), reward; p50/p95/p99 in ms and errors by status.
An error is any status outside 2xx/3xx, a redirect to the login page, a draft not saved, a
reward with an error verdict, an exception or a timeout; each is counted, none retried.
Targets: pages p95 < 300 ms, 0 errors.

`--idle-burners N` adds N processes that spin at SCHED_IDLE, the lowest CPU priority, while
the load runs: Linux lets every other thread go first, so what they cost the pages is what
this machine charges for sharing its cores, not what the scheduler decides (on a 2-vCPU VM
it is not nothing: see the README's Load section).

Environment: BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/assay_load),
BENCH_BROKER_URL (default redis://127.0.0.1:6379/12). The load generator runs on the same
cores as the server, so on a shared 2-core machine the figures are pessimistic; the load
average and the CPU seconds of each part are reported with them.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _django import emit, free_port, log, wait  # noqa: E402 - beside this file

DEMO_TASKS = (  # the demo's 15-criterion rubrics
    "clinical-warfarin-interactions",
    "investment-ic-memo-buyout",
    "investment-credit-memo-incremental",
)
PASSWORD = "load-bench-password-1"  # noqa: S105 - accounts of a throwaway benchmark database
TARGET_PAGES_P95_MS = 300


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process, from /proc (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_cpu_seconds() -> float:
    """CPU seconds of every PostgreSQL process on this machine (the server is shared)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        if text.split("(", 1)[1].startswith("postgres"):
            total += cpu_seconds(int(stat.parent.name))
    return total


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


def percentile(sorted_ms: list[float], q: float) -> float | None:
    """Nearest rank: the smallest value with at least q of the samples at or below it."""
    if not sorted_ms:
        return None
    return round(sorted_ms[max(0, math.ceil(q * len(sorted_ms)) - 1)], 1)


def variant(text: str, rng: random.Random) -> str:
    """A plausible other sample of an answer: some paragraphs dropped, a pair swapped."""
    paragraphs = [p for p in text.split("\n\n") if p.strip()]
    kept = [p for p in paragraphs if rng.random() > 0.25] or paragraphs[:1]
    if len(kept) > 2 and rng.random() < 0.5:
        i = rng.randrange(len(kept) - 1)
        kept[i], kept[i + 1] = kept[i + 1], kept[i]
    return "\n\n".join(kept)


# --- Seeding, through the project's services -----------------------------------------------


@dataclass
class Seed:
    slug: str
    queues: list[int]
    rubrics: list[int]
    versions: list[int]
    runs: list[int]
    scores: list[tuple[int, int]]  # (run, score)
    tasks: list[str]
    grader_hash: str
    reward_task: str
    reward_texts: list[str]
    annotators: list[str]
    leads: list[str]
    token: str
    sessions: dict[str, str]  # username -> session key, minted as Django's test client does
    responses: int
    criteria: int


def seed_rubrics(project, owner, external_ids, per_task: int, rng) -> tuple[list, list]:
    """The demo's tasks `external_ids` with their rubrics, published, and `per_task` responses
    each (10 models, variants of the demo answers), imported as JSONL. Returns (graders,
    tasks)."""
    from decimal import Decimal

    from annotation import services as annotation_services
    from rubrics import services as rubric_services

    content = {
        t["external_id"]: t for t in json.loads((ROOT / "assay/demo/tasks.json").read_text())
    }
    graders, tasks, lines = [], [], []
    models = [f"model-{m}" for m in "abcdefghij"]
    for external_id in external_ids:
        item = content[external_id]
        task = rubric_services.task_create(
            project=project,
            external_id=external_id,
            title=item["title"],
            messages=item["messages"],
            tags=item.get("tags", []),
            reference=item.get("reference", ""),
            user=owner,
        )
        rubric = rubric_services.rubric_create(
            project=project,
            task=task,
            title=f"{item['title']}: rubric",
            user=owner,
            criteria=[
                rubric_services.clean_criterion(c["text"], Decimal(str(c["points"])))
                for c in item["criteria"]
            ],
        )
        graders.append(rubric_services.version_publish(version=rubric.versions.get(), user=owner))
        tasks.append(task)
        answers = list(item["responses"].values())
        for i in range(per_task):
            lines.append(
                json.dumps(
                    {
                        "task_id": external_id,
                        "model": models[i % len(models)],
                        "sample_index": i // len(models),
                        "response": variant(answers[i % len(answers)], rng),
                    }
                )
            )
    result = annotation_services.responses_import_jsonl(project=project, lines=lines)
    assert result.ok, result.errors
    return graders, tasks


def seed_queues(project, owner, graders, annotators: list[str]) -> list:
    """A double-annotation queue (overlap 2) per grader, for `annotators`."""
    from annotation import services as annotation_services

    return [
        annotation_services.queue_create(
            project=project,
            grader=g,
            name=f"{g.version.rubric.task.external_id}: double annotation",
            overlap=2,
            annotators=annotators,
            user=owner,
        )
        for g in graders
    ]


def seed_annotated(project, queues, annotators: list[str], prefilled: int, rng) -> list:
    """What came before: the first `prefilled` items of each queue annotated by two people
    and submitted, written in bulk. Returns their verdicts, not yet saved."""
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from annotation import services as annotation_services
    from annotation.models import Assignment, QueueItem, Verdict

    user_model = get_user_model()
    raters = {
        u.username: annotation_services.person_rater(project=project, user=u)
        for u in user_model.objects.filter(username__in=annotators)
    }
    users = dict(user_model.objects.filter(username__in=annotators).values_list("username", "pk"))
    now = timezone.now()
    turns, verdicts = [], []
    for q in queues:
        items = list(QueueItem.objects.filter(queue=q).values_list("pk", flat=True))
        for n, item_id in enumerate(items[:prefilled]):
            for name in (
                annotators[(2 * n) % len(annotators)],
                annotators[(2 * n + 1) % len(annotators)],
            ):
                turns.append(
                    Assignment(
                        item_id=item_id,
                        queue=q,
                        annotator_id=users[name],
                        rater=raters[name],
                        status=Assignment.Status.SUBMITTED,
                        opened_at=now,
                        lease_expires_at=now,
                        submitted_at=now,
                        seconds_spent=rng.randint(120, 900),
                    )
                )
    Assignment.objects.bulk_create(turns, batch_size=2000)
    for a in Assignment.objects.filter(queue__in=queues).select_related("item", "queue__grader"):
        for c in a.queue.grader.version.criteria.values_list("pk", flat=True):
            verdicts.append(
                Verdict(
                    response_id=a.item.response_id,
                    criterion_id=c,
                    rater_id=a.rater_id,
                    grader_id=a.queue.grader_id,
                    assignment=a,
                    outcome=rng.choice(["met", "met", "unmet"]),
                )
            )
    return verdicts


def seed(args, sim_url: str, tag: str) -> Seed:

    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password
    from django.db import connection

    from annotation.models import Verdict
    from grading import services as grading_services
    from grading.models import GradingRun, Score
    from rubrics import services as rubric_services
    from rubrics import tokens
    from rubrics.models import Role

    rng = random.Random(7)
    content = {
        t["external_id"]: t for t in json.loads((ROOT / "assay/demo/tasks.json").read_text())
    }
    user_model = get_user_model()
    # One PBKDF2 hash for every account: seeding stays fast, and each login still verifies a
    # production-strength hash on the server.
    hashed = make_password(PASSWORD)
    n_leads = args.leads
    n_annotators = max(args.annotator_accounts, args.users - n_leads)
    annotators = [f"ann{i:02d}" for i in range(n_annotators)]
    leads = [f"{'reviewer' if i % 2 == 0 else 'engineer'}{i:02d}" for i in range(n_leads)]
    user_model.objects.bulk_create(
        user_model(username=name, password=hashed) for name in ["owner", *annotators, *leads]
    )
    owner = user_model.objects.get(username="owner")
    project = rubric_services.project_create(name=f"Load {tag}", user=owner)
    for name in annotators:
        rubric_services.membership_set(project=project, username=name, role=Role.ANNOTATOR)
    for name in leads:
        role = Role.REVIEWER if name.startswith("reviewer") else Role.ENGINEER
        rubric_services.membership_set(project=project, username=name, role=role)
    engineer = user_model.objects.create(username="trainer", password=hashed)
    rubric_services.membership_set(project=project, username="trainer", role=Role.ENGINEER)
    _, raw_token = tokens.token_create(user=engineer, name="rl trainer", scopes=["grade"])

    graders, tasks = seed_rubrics(
        project, owner, DEMO_TASKS[: args.tasks], args.responses_per_task, rng
    )
    judge = grading_services.judge_create(
        project=project, name="simulator", base_url=sim_url, model="load-judge", max_concurrency=64
    )
    queues = seed_queues(project, owner, graders, annotators)
    Verdict.objects.bulk_create(
        seed_annotated(project, queues, annotators, args.prefilled, rng), batch_size=5000
    )

    # A finished run per rubric, graded by the simulator in this process, as `manage.py grade`.
    runs = []
    for g, task in zip(graders, tasks, strict=True):
        run = grading_services.run_create(
            project=project,
            grader=g,
            judge=judge,
            user=owner,
            responses=task.responses.all(),
            mode="batched",
            start=False,
        )
        grading_services.run_start(run_id=run.pk, enqueue=False)
        runs.append(run)
    pending = list(Score.objects.filter(run__in=runs).values_list("run_id", "response_id"))

    def grade(pair: tuple[int, int]) -> None:
        try:
            grading_services.grade_response(run_id=pair[0], response_id=pair[1])
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(grade, pending))
    statuses = set(
        GradingRun.objects.filter(pk__in=[r.pk for r in runs]).values_list("status", flat=True)
    )
    assert statuses == {GradingRun.Status.COMPLETED}, statuses
    scores = list(Score.objects.filter(run__in=runs).values_list("run_id", "pk")[:50])

    # Sessions for the people who do not type their password (see --password-logins): made
    # the way Django's test client logs in, stored in the database like any other session.
    from django.test import Client

    sessions = {}
    for name in [*annotators, *leads]:
        client = Client()
        client.force_login(
            user_model.objects.get(username=name),
            backend="django.contrib.auth.backends.ModelBackend",
        )
        sessions[name] = client.cookies["sessionid"].value

    reward_item = content[DEMO_TASKS[0]]
    return Seed(
        slug=project.slug,
        queues=[q.pk for q in queues],
        rubrics=[g.version.rubric_id for g in graders],
        versions=[g.version_id for g in graders],
        runs=[r.pk for r in runs],
        scores=scores,
        tasks=[t.external_id for t in tasks],
        grader_hash=graders[0].hash,
        reward_task=DEMO_TASKS[0],
        reward_texts=list(reward_item["responses"].values()),
        annotators=annotators,
        leads=leads,
        token=raw_token,
        sessions=sessions,
        responses=len(tasks) * args.responses_per_task,
        criteria=len(graders[0].spec["criteria"]),
    )


# --- The load generator ----------------------------------------------------------------------


@dataclass
class Sample:
    group: str
    name: str
    ms: float
    status: str  # the HTTP status, or the exception's name; "ok" statuses are 2xx/3xx
    error: bool


@dataclass
class Recorder:
    samples: list[Sample] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, sample: Sample) -> None:
        with self.lock:
            self.samples.append(sample)


CRITERION = re.compile(r'data-criterion="(\d+)"')
NEXT_FORM = re.compile(r'action="/queues/(\d+)/next/"')
CSRF_FIELD = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


class User:
    """One person's browser: a cookie jar and an htmx-speaking client."""

    def __init__(self, base: str, recorder: Recorder, timeout: float):
        import httpx

        self.http = httpx.Client(base_url=base, timeout=timeout, follow_redirects=False)
        self.recorder = recorder
        self.measuring = False

    def close(self) -> None:
        self.http.close()

    def csrf(self) -> str:
        return self.http.cookies.get("csrftoken", "")

    def request(self, group: str, name: str, method: str, url: str, check=None, **kw):
        """Send, time to the end of the body, and record; returns the response or None."""
        import httpx

        if not self.measuring and group not in ("login", "static"):
            group = "warmup"
        start = time.perf_counter()
        try:
            reply = self.http.request(method, url, **kw)
            reply.read()
        except httpx.HTTPError as exc:
            ms = 1000 * (time.perf_counter() - start)
            self.recorder.add(Sample(group, name, ms, type(exc).__name__, True))
            return None
        ms = 1000 * (time.perf_counter() - start)
        status = str(reply.status_code)
        error = not 200 <= reply.status_code < 400
        if not error and reply.is_redirect and "/login/" in reply.headers.get("location", ""):
            status, error = "redirect-to-login", True
        if not error and check is not None:
            problem = check(reply)
            if problem:
                status, error = problem, True
        self.recorder.add(Sample(group, name, ms, status, error))
        return None if error else reply

    def login(self, username: str, session: str | None = None) -> bool:
        """Through the login page (a PBKDF2 check on the server), or with a session made
        beforehand; then the home page (the CSRF cookie) and its static files."""
        if session is not None:
            self.http.cookies.set("sessionid", session, domain="127.0.0.1", path="/")
            return self.home("/")
        page = self.request("login", "login-page", "GET", "/login/")
        if page is None:
            return False
        token = CSRF_FIELD.search(page.text)
        reply = self.request(
            "login",
            "login",
            "POST",
            "/login/",
            data={
                "username": username,
                "password": PASSWORD,
                "csrfmiddlewaretoken": token.group(1) if token else "",
            },
            check=lambda r: None if r.status_code == 302 else "login refused",
        )
        return reply is not None and self.home(reply.headers["location"])

    def home(self, url: str) -> bool:
        home = self.request("login", "home", "GET", url)
        if home is None:
            return False
        # A browser with an empty cache fetches the page's static files once (WhiteNoise).
        for src in re.findall(r'(?:src|href)="(/static/[^"]+)"', home.text):
            self.request("static", "static", "GET", src)
        return True

    def get(self, name: str, url: str):
        return self.request("pages", name, "GET", url)

    def post_form(self, name: str, url: str, data: dict, check=None):
        return self.request(
            "writes",
            name,
            "POST",
            url,
            data={**data, "csrfmiddlewaretoken": self.csrf()},
            check=check,
        )

    def post_htmx(self, name: str, url: str, data: dict, check=None):
        headers = {"HX-Request": "true", "X-CSRFToken": self.csrf()}
        return self.request("writes", name, "POST", url, data=data, headers=headers, check=check)


def draft_saved(reply) -> str | None:
    try:
        return None if reply.json().get("saved") else "draft not saved"
    except ValueError:
        return "draft reply not JSON"


def annotator_loop(user: User, seed: Seed, first_queue: int, end: float, rng, think) -> None:
    queues = seed.queues[first_queue:] + seed.queues[:first_queue]
    done_queues: set[int] = set()

    def browse() -> None:
        think()
        pick = rng.randrange(4)
        i = rng.randrange(len(seed.tasks))
        if pick == 0:
            user.get("project", f"/p/{seed.slug}/")
        elif pick == 1:
            user.get("task", f"/p/{seed.slug}/tasks/{seed.tasks[i]}/")
        elif pick == 2:
            user.get("rubric", f"/rubrics/{seed.rubrics[i]}/")
        else:
            user.get("queues", f"/p/{seed.slug}/queues/")

    where = None  # the next assignment's URL, from a claim or a "submit and next"
    while time.monotonic() < end:
        if where is None:
            open_queues = [q for q in queues if q not in done_queues]
            if not open_queues:  # every queue done for this person: they browse
                browse()
                continue
            think()
            page = user.get("queues", f"/p/{seed.slug}/queues/")
            if page is None or time.monotonic() >= end:
                continue
            think()
            q = open_queues[0]
            claim = user.post_form("claim", f"/queues/{q}/next/", {})
            if claim is None:
                continue
            where = claim.headers.get("location", "")
            if not where.startswith("/assignments/"):
                done_queues.add(q)
                where = None
                continue
        if time.monotonic() >= end:
            break
        page = user.get("annotate", where)
        if page is None:
            where = None
            continue
        draft_url = where.rstrip("/") + "/draft/"
        submit_url = where.rstrip("/") + "/submit/"
        for criterion in CRITERION.findall(page.text):
            think()
            if time.monotonic() >= end:
                return
            data = {
                "criterion": criterion,
                "outcome": rng.choices(["met", "unmet", "na"], weights=[6, 3, 1])[0],
                "explanation": "" if rng.random() < 0.7 else "Stated plainly in the answer.",
                "evidence": "",
            }
            user.post_htmx("draft", draft_url, data, check=draft_saved)
        think()
        if time.monotonic() >= end:
            return
        done = user.post_form("submit", submit_url, {"next": "1"})
        where = None
        if done is not None:
            following = done.headers.get("location", "")
            if following.startswith("/assignments/"):
                where = following
            else:  # nothing left in that queue for this person
                done_queues.add(next(q for q in queues if q not in done_queues))
        if rng.random() < 1 / 3:
            browse()


def lead_loop(user: User, seed: Seed, end: float, rng, think) -> None:
    """Reviewers and engineers read results: never annotate, see everything annotators may not."""
    while time.monotonic() < end:
        think()
        if time.monotonic() >= end:
            return
        i = rng.randrange(len(seed.runs))
        pick = rng.choices(range(7), weights=[2, 2, 3, 2, 3, 1, 1])[0]
        if pick == 0:
            user.get("project", f"/p/{seed.slug}/")
        elif pick == 1:
            user.get("rubric", f"/rubrics/{seed.rubrics[i]}/")
        elif pick == 2:
            user.get("run", f"/runs/{seed.runs[i]}/")
        elif pick == 3:
            run, score = rng.choice(seed.scores)
            user.get("score", f"/runs/{run}/scores/{score}/")
        elif pick == 4:
            user.get("agreement", f"/versions/{seed.versions[i]}/agreement/")
        elif pick == 5:
            user.get("queue", f"/queues/{seed.queues[i]}/")
        else:
            user.get("runs", f"/p/{seed.slug}/runs/")


def reward_loop(base: str, seed: Seed, recorder: Recorder, end: float, n: int, args) -> int:
    import httpx

    rng = random.Random(1000 + n)
    headers = {"Authorization": f"Token {seed.token}"}
    url = f"/api/graders/{seed.grader_hash}/score/"
    sent = 0
    with httpx.Client(base_url=base, timeout=args.timeout, headers=headers) as http:
        while time.monotonic() < end:
            sent += 1
            # A fresh response every time (the trainer's newest sample), so never a cache hit.
            text = variant(rng.choice(seed.reward_texts), rng) + f"\n\n(rollout {n}-{sent})"
            body = {"task": seed.reward_task, "responses": [text]}
            if args.reward_mode:
                body["mode"] = args.reward_mode
            start = time.perf_counter()
            try:
                reply = http.post(url, json=body)
            except httpx.HTTPError as exc:
                ms = 1000 * (time.perf_counter() - start)
                recorder.add(Sample("reward", "score", ms, type(exc).__name__, True))
                continue
            ms = 1000 * (time.perf_counter() - start)
            status, error = str(reply.status_code), reply.status_code != 200
            if not error:
                results = reply.json()
                if len(results) != 1 or any(
                    v["outcome"] == "error" for v in results[0]["verdicts"]
                ):
                    status, error = "judge error", True
            recorder.add(Sample("reward", "score", ms, status, error))
    return sent


def reward_process(reward_base: str, seed: Seed, end: float, args, conn) -> None:
    """The trainers: `--reward-clients` threads in a process of their own (as a trainer's
    reward workers run on other machines), so their client work never holds up the people's
    threads in this process. Sends back its samples and CPU seconds."""
    if args.outside_nice:
        os.nice(args.outside_nice)
    recorder = Recorder()
    cpu0 = time.process_time()
    threads = [
        threading.Thread(target=reward_loop, args=(reward_base, seed, recorder, end, n, args))
        for n in range(args.reward_clients)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    conn.send(([s.__dict__ for s in recorder.samples], time.process_time() - cpu0))
    conn.close()


def summarise(samples: list[Sample]) -> dict:
    ms = sorted(s.ms for s in samples)
    errors = Counter(s.status for s in samples if s.error)
    return {
        "count": len(samples),
        "p50_ms": percentile(ms, 0.50),
        "p95_ms": percentile(ms, 0.95),
        "p99_ms": percentile(ms, 0.99),
        "max_ms": round(ms[-1], 1) if ms else None,
        "errors": sum(errors.values()),
        "errors_by_status": dict(errors),
    }


def load(args, base: str, reward_base: str, seed: Seed, pools: list, simulator: int) -> dict:
    recorder = Recorder()
    n_leads = min(args.leads, args.users)
    names = seed.annotators[: args.users - n_leads] + seed.leads[:n_leads]
    people = [(name, User(base, recorder, args.timeout)) for name in names]

    typed = set(
        names[:: max(1, len(names) // max(1, args.password_logins))][: args.password_logins]
    )
    log(f"logging {len(people)} users in, {len(typed)} through the login page")
    login_start = time.monotonic()

    def log_in(person: tuple[str, User]) -> bool:
        name, user = person
        return user.login(name, None if name in typed else seed.sessions[name])

    with ThreadPoolExecutor(max_workers=8) as pool:
        logged = list(pool.map(log_in, people))
    login_s = time.monotonic() - login_start

    by_pool = [children(pool.pid) for pool in pools]

    def cpu_of(pids) -> float:
        return sum(cpu_seconds(p) for p in pids)

    pool_cpu0 = [cpu_of(pids) for pids in by_pool]
    sim_cpu0 = cpu_seconds(simulator)
    self0 = time.process_time()
    pg0 = postgres_cpu_seconds()
    load_before = os.getloadavg()
    start = time.monotonic()
    end = start + args.duration
    log(f"{sum(logged)} logged in ({login_s:.1f} s); load for {args.duration:g} s")
    for _, user in people:
        user.measuring = True
    peak_load = [os.getloadavg()[0]]

    def sample_load() -> None:
        while time.monotonic() < end:
            time.sleep(min(5, max(0.1, end - time.monotonic())))
            peak_load.append(os.getloadavg()[0])

    def run_person(i: int) -> None:
        name, user = people[i]
        if not logged[i]:
            return
        rng = random.Random(i)

        def think() -> None:
            time.sleep(rng.uniform(0, args.think_max))

        try:
            if name in seed.leads:
                lead_loop(user, seed, end, rng, think)
            else:
                annotator_loop(user, seed, i % len(seed.queues), end, rng, think)
        except Exception as exc:  # noqa: BLE001 - a crash of the generator is an error too
            recorder.add(Sample("pages", "generator", 0.0, f"generator {type(exc).__name__}", True))
            log(f"user {name}: {exc!r}")

    trainers = None
    if args.reward_clients:
        # Forked before this process starts its people's threads; the child only speaks HTTP.
        ctx = multiprocessing.get_context("fork")
        receive, send = ctx.Pipe(duplex=False)
        trainers = ctx.Process(target=reward_process, args=(reward_base, seed, end, args, send))
        trainers.start()
        send.close()
    threads = [threading.Thread(target=run_person, args=(i,)) for i in range(len(people))]
    threads.append(threading.Thread(target=sample_load, daemon=True))
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=max(0.1, end - time.monotonic()) + args.timeout + 5)
    trainers_cpu = 0.0
    if trainers is not None:
        if receive.poll(max(0.1, end - time.monotonic()) + args.timeout + 5):
            samples, trainers_cpu = receive.recv()
            for sample in samples:
                recorder.add(Sample(**sample))
        else:
            recorder.add(Sample("reward", "trainers", 0.0, "trainers never reported", True))
        trainers.join(timeout=5)
    wall = time.monotonic() - start
    log(f"load done after {wall:.1f} s")
    pool_cpu = [cpu_of(pids) - c0 for pids, c0 in zip(by_pool, pool_cpu0, strict=True)]
    sim_cpu = cpu_seconds(simulator) - sim_cpu0
    self1 = time.process_time()
    pg1 = postgres_cpu_seconds()
    load_after = os.getloadavg()
    for _, user in people:
        user.close()

    by_group = defaultdict(list)
    by_name = defaultdict(list)
    for s in recorder.samples:
        by_group[s.group].append(s)
        if s.group in ("pages", "writes"):
            by_name[f"{s.group}:{s.name}"].append(s)
    measured = [s for s in recorder.samples if s.group in ("pages", "writes", "reward")]
    groups = {g: summarise(by_group.get(g, [])) for g in ("pages", "writes", "reward")}
    groups["reward"]["judge_latency_ms"] = args.latency_ms
    for q in ("p50", "p95", "p99"):
        value = groups["reward"][f"{q}_ms"]
        groups["reward"][f"{q}_overhead_ms"] = (
            None if value is None else round(value - args.latency_ms, 1)
        )
    errors = sum(1 for s in recorder.samples if s.error)
    return {
        "groups": groups,
        "per_page": {
            k: {
                "count": len(v),
                **{f"p{q}_ms": percentile(sorted(x.ms for x in v), q / 100) for q in (50, 95)},
            }
            for k, v in sorted(by_name.items())
        },
        "login": {**summarise(by_group.get("login", [])), "phase_s": round(login_s, 1)},
        "static": summarise(by_group.get("static", [])),
        "warmup_errors": sum(1 for s in by_group.get("warmup", []) if s.error),
        "users_logged_in": sum(logged),
        "password_logins": len(typed),
        "errors": errors,
        "requests": len(measured),
        "wall_s": round(wall, 1),
        "requests_per_s": round(len(measured) / wall, 1),
        "gunicorn_cpu_s": round(sum(pool_cpu), 1),
        "gunicorn_cpu_ms_per_request": round(1000 * sum(pool_cpu) / max(1, len(measured)), 1),
        # The people's pool, then (with --reward-pool) the trainers' pool.
        "gunicorn_cpu_s_by_pool": [round(c, 1) for c in pool_cpu],
        "simulator_cpu_s": round(sim_cpu, 1),
        "generator_cpu_s": round(self1 - self0, 1),
        "trainers_cpu_s": round(trainers_cpu, 1),
        "postgres_cpu_s": round(pg1 - pg0, 1),
        "load_average": {
            "before": [round(x, 2) for x in load_before],
            "after": [round(x, 2) for x in load_after],
            "peak_1min": round(max(peak_load), 2),
        },
    }


# --- The run ---------------------------------------------------------------------------------


IDLE_BURNER = """
import os
os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
try:
    while True:
        pass
except KeyboardInterrupt:
    pass
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=60, help="seconds of load")
    parser.add_argument("--users", type=int, default=50, help="virtual users, leads included")
    parser.add_argument("--leads", type=int, default=None, help="reviewers/engineers among users")
    parser.add_argument("--reward-clients", type=int, default=20)
    parser.add_argument("--reward-mode", choices=["per_criterion", "batched"], default="")
    parser.add_argument("--latency-ms", type=float, default=50, help="the simulator's latency")
    parser.add_argument("--think-max", type=float, default=1.0, help="think time: U(0, this) s")
    parser.add_argument("--workers", type=int, default=6, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=4, help="gunicorn threads per worker")
    parser.add_argument(
        "--reward-pool",
        type=int,
        default=2,
        help="serve the reward clients from a second gunicorn with this many workers "
        "(0: the same gunicorn as people)",
    )
    parser.add_argument(
        "--reward-threads",
        type=int,
        default=12,
        help="threads per reward worker (a reward request mostly waits on the judge)",
    )
    parser.add_argument(
        "--reward-nice",
        type=int,
        default=19,
        help="CPU niceness of the reward pool (with --reward-pool): people's pages first",
    )
    parser.add_argument(
        "--outside-nice",
        type=int,
        default=19,
        help="CPU niceness of what stands in for other machines: the judge simulator (a "
        "judge API) and the trainers' client process (a trainer's reward workers)",
    )
    parser.add_argument(
        "--idle-burners",
        type=int,
        default=0,
        help="processes that spin at the lowest CPU priority (SCHED_IDLE) while the load runs: "
        "what other work costs the pages when the scheduler always lets the pages go first",
    )
    parser.add_argument("--tasks", type=int, default=3, choices=[1, 2, 3])
    parser.add_argument("--responses-per-task", type=int, default=100)
    parser.add_argument("--annotator-accounts", type=int, default=50)
    parser.add_argument("--prefilled", type=int, default=30, help="items annotated beforehand")
    parser.add_argument("--timeout", type=float, default=30, help="client timeout, seconds")
    parser.add_argument(
        "--password-logins",
        type=int,
        default=5,
        help="people who log in through the login page (PBKDF2, ~0.5 s of CPU each); the "
        "others start with a session made beforehand",
    )
    args = parser.parse_args()
    if args.leads is None:
        args.leads = max(1, args.users // 5)
    if not 0 < args.leads < args.users:
        parser.error("--leads must be at least 1 and fewer than --users")

    db_url = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/assay_load")
    broker = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/12")
    for url in (db_url, broker):
        if urlsplit(url).hostname not in ("127.0.0.1", "localhost", "::1"):
            sys.exit("The benchmark runs on loopback only.")
    tag = uuid.uuid4().hex[:8]
    static_root = Path(tempfile.mkdtemp(prefix="assay-load-static-"))
    env = dict(os.environ)
    env.update(
        DATABASE_URL=db_url,
        CELERY_BROKER_URL=broker,
        CELERY_QUEUE=f"load-{tag}",
        ASSAY_REDIS_PREFIX=f"load-{tag}",
        ASSAY_STATIC_ROOT=str(static_root),
        SECRET_KEY=os.environ.get("SECRET_KEY", "bench-only-secret-load"),
        ALLOWED_HOSTS="127.0.0.1",
        DEBUG="0",
        ASSAY_SSL_REDIRECT="0",  # plain HTTP on loopback; cookies without the Secure flag
        ASSAY_SECURE_COOKIES="0",
        LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
        ASSAY_JUDGE_ALLOW_PRIVATE_URLS="1",  # the simulator is on loopback
    )
    os.environ.update(env)
    os.environ["DJANGO_SETTINGS_MODULE"] = "assay.settings"

    import psycopg

    dbname = urlsplit(db_url).path.lstrip("/")
    admin_url = urlsplit(db_url)._replace(path="/postgres").geturl()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{dbname}"')
        conn.execute(f"ALTER DATABASE \"{dbname}\" SET assay.allow_audit_truncate = 'on'")

    py = sys.executable
    var = ROOT / "var"
    var.mkdir(exist_ok=True)
    procs: list[subprocess.Popen] = []
    wall_start = time.monotonic()
    try:
        # Static files collect (and compress) while the database migrates.
        collect = subprocess.Popen(
            [py, "manage.py", "collectstatic", "--noinput", "-v", "0"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=(var / "bench-load-collectstatic.log").open("wb"),
        )
        procs.append(collect)
        sim_port = free_port()
        simulator = subprocess.Popen(
            (["nice", "-n", str(args.outside_nice)] if args.outside_nice else [])
            + [py, "manage.py", "judge_simulator", "--port", str(sim_port)]
            + ["--latency-ms", str(args.latency_ms)],
            cwd=ROOT,
            env=env,
            stdout=(var / "bench-load-simulator.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        procs.append(simulator)
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        log("migrated")
        import httpx

        def answers(url: str) -> bool:
            try:  # a worker's first request imports the views (numpy, scikit-learn...): slow
                return httpx.get(url, timeout=30).status_code < 500
            except httpx.HTTPError:
                return False

        wait(lambda: answers(f"http://127.0.0.1:{sim_port}/stats"), 30, "the simulator to answer")
        seed_start = time.monotonic()
        data = seed(args, f"http://127.0.0.1:{sim_port}/v1", tag)
        seed_s = time.monotonic() - seed_start
        log(f"seeded in {seed_s:.1f} s: {data.responses} responses, {len(data.queues)} queues")
        from django.db import connections

        connections.close_all()
        if collect.wait(timeout=120) != 0:
            raise RuntimeError("collectstatic failed: see var/bench-load-collectstatic.log")
        log("static files collected")

        def serve(
            name: str, workers: int, threads: int, nice: int = 0, reward_places: int = 0
        ) -> tuple[str, subprocess.Popen, list]:
            port = free_port()
            options = [
                # The app is imported once and forked: workers start in a second, not ten.
                "--preload",
                "--workers",
                str(workers),
                "--worker-class",
                "gthread",
                "--threads",
                str(threads),
                "--timeout",
                "60",
                "--graceful-timeout",
                "5",
                # Longer than the clients' idle expiry (httpx: 5 s), so the client always
                # closes an idle connection first and never sends into one being closed.
                "--keep-alive",
                "75",
                "--log-level",
                "warning",
            ]
            proc = subprocess.Popen(
                (["nice", "-n", str(nice)] if nice else [])
                + [py, "-m", "gunicorn", "assay.wsgi:application", "--bind", f"127.0.0.1:{port}"]
                + options,
                cwd=ROOT,
                # The trainers' pool may score a reward request on every thread (README,
                # Production); the people's keeps the default bound, below its threads.
                env={**env, "ASSAY_REWARD_MAX_CONCURRENT": str(reward_places)}
                if reward_places
                else env,
                stdout=(var / f"bench-load-gunicorn-{name}.log").open("wb"),
                stderr=subprocess.STDOUT,
            )
            procs.append(proc)
            base = f"http://127.0.0.1:{port}"
            wait(lambda: answers(f"{base}/login/"), 60, f"gunicorn ({name}) to answer")
            # Every worker up, so the first requests do not time a worker's start.
            wait(lambda: len(children(proc.pid)) >= workers, 30, f"the {name} workers to start")
            log(f"gunicorn ({name}) up at {base}")
            return base, proc, options

        base, gunicorn, options = serve("people", args.workers, args.threads)
        server = {
            "command": "gunicorn assay.wsgi:application " + " ".join(options),
            "static": "WhiteNoise, CompressedManifestStaticFilesStorage",
            "database": "PostgreSQL, CONN_MAX_AGE 60",
        }
        pools = [gunicorn]
        reward_base = base
        if args.reward_pool:
            reward_base, trainers, options = serve(
                "trainers",
                args.reward_pool,
                args.reward_threads,
                args.reward_nice,
                reward_places=args.reward_threads,
            )
            pools.append(trainers)
            server["trainers_command"] = "gunicorn assay.wsgi:application " + " ".join(options)
        server["reward_on"] = "its own gunicorn" if args.reward_pool else "the same gunicorn"
        for _ in range(args.idle_burners):
            procs.append(subprocess.Popen([py, "-c", IDLE_BURNER]))
        sim_before = httpx.get(f"http://127.0.0.1:{sim_port}/stats", timeout=5).json()
        figures = load(args, base, reward_base, data, pools, simulator.pid)
        sim_after = httpx.get(f"http://127.0.0.1:{sim_port}/stats", timeout=5).json()
        groups = figures["groups"]
        pages_p95 = groups["pages"]["p95_ms"]
        result = {
            "duration_s": args.duration,
            "users": args.users,
            "annotators": args.users - args.leads,
            "leads": args.leads,
            "reward_clients": args.reward_clients,
            "reward_mode": args.reward_mode or "per_criterion",
            "think_s": [0, args.think_max],
            "judge_latency_ms": args.latency_ms,
            "nice": {"trainers_pool": args.reward_nice, "outside": args.outside_nice},
            "idle_burners": args.idle_burners,
            **figures,
            "judge_calls": sim_after["requests"] - sim_before["requests"],
            "seed": {
                "responses": data.responses,
                "criteria_per_rubric": data.criteria,
                "queues": len(data.queues),
                "annotator_accounts": len(data.annotators),
                "seconds": round(seed_s, 1),
            },
            "server": server,
            "targets": {"pages_p95_ms": TARGET_PAGES_P95_MS, "errors": 0},
            "pass": bool(
                pages_p95 is not None
                and pages_p95 < TARGET_PAGES_P95_MS
                and figures["errors"] == 0
                and figures["users_logged_in"] == args.users
            ),
            "total_wall_s": round(time.monotonic() - wall_start, 1),
        }
        emit("load", result)
    finally:
        log("stopping")
        for p in reversed(procs):
            if p.poll() is None:  # SIGINT: gunicorn's quick shutdown (SIGTERM waits)
                p.send_signal(signal.SIGINT)
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(static_root, ignore_errors=True)
        try:
            from django.db import connections

            connections.close_all()
            with psycopg.connect(admin_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        except Exception as exc:  # noqa: BLE001 - cleanup must not hide the figures
            log(f"cleanup: {exc}")
        log("stopped")


if __name__ == "__main__":
    main()
