"""The reward endpoint's overhead over the judge's own latency. Prints ONE JSON line.

    .venv/bin/python bench/reward.py [--requests 100] [--criteria 20] [--in-process] [--profile]
        [--suite-tasks 5000] [--spread 1,4,16] [--only-suite] [--phase-seconds 90]

A trainer posts one fresh response at a time, back to back on one keep-alive connection, to
`POST /api/graders/{hash}/score/` with a grade-scoped API token. The server is gunicorn as the
README's Production section runs the reward pool (2 workers x 12 threads); the judge is the
simulator, in its own process, at 200 ms. For each request, overhead = wall time at the
client - the judge's own latency for that request as the simulator measured it (from the
request line's arrival to the reply written, as a server's access log times a request):

- batched: one judge call grading all 20 criteria; overhead over that call's latency;
- per_criterion: 20 calls at once; overhead over the slowest of them.

It prints p50, p90 and min of both, the p50 over the nominal 200 ms, "pass_by_mode" (p50
under 20 ms) and "pass" (both); and for a floor, the same 20 per-criterion calls from a bare
thread-pool loop in the benchmark's process ("peer_per_criterion").

The suite case (`--suite-tasks 5000`, 0 to skip it): a suite of that many tasks, each its
own grader of `--criteria` criteria (imported as HealthBench rows, published, frozen), graded
through `POST /api/suites/{id}/score/`. For each mode, pairs of requests alternate between the
suite URL and the per-grader URL on the same random task (one fresh response each), so both
endpoints are measured in the same run under the same conditions: "suite" reports the
p50 of each, their difference and ratio ("within 2 ms" is the target). Then, batched,
requests carry one fresh response on each of N random tasks (`--spread 1,4,16`): overhead
over the slowest of their N judge calls. `--only-suite` skips the per-grader modes above
and the peer loop.

`--reuse` keeps the previous run's database and suite instead of seeding them again (the
suite's graders are published in bulk, `_django.publish_in_bulk`: 500 tasks take seconds).

CPU a request, which does not move with the machine's load as wall time does: over HTTP the
server's workers' ("server_cpu_ms_mean", from /proc), in process the request thread's (the
view, the engine, a batched call, the after-reply write) and the process's (with the judge
pool's threads), per mode, per endpoint of the suite pairs and per spread.

Every measured loop ends after `--phase-seconds` (90) whatever `--requests` asks: "phases"
says how many requests each made and whether its bound cut it. (Without a bound, `--requests
300 --suite-tasks 500` made some 3,000 requests of at least 200 ms each in eight loops, its
16-task requests at about a second each: over 20 minutes on a loaded host.)

`--in-process` calls Django through its test client instead (no HTTP; the response's
after-send write then counts in the wall time). `--profile` (in-process) prints a cProfile of
the batched requests to stderr (BENCH_SORT=tottime to sort so): where the overhead goes, since
the wait on the judge shows as time in the socket read.

Environment: BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/assay_bench_reward),
a throwaway database: created if missing, migrated, emptied before seeding; BENCH_BROKER_URL
(default redis://127.0.0.1:6379/14), the Redis that holds the judge's limits, under a key
prefix of the run's own.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import _django
from _django import WORDS, Simulator, bench_grader, emit, free_port, import_suite, log

ROOT = Path(__file__).resolve().parent.parent
LATENCY_MS = 200
TARGET_MS = 20  # p50 overhead over the judge's own latency, issue 4
SUITE_TARGET_MS = 2  # the suite URL's p50 overhead over the per-grader URL's, issue 15
# As the README's Production section serves the reward endpoint: its own pool.
GUNICORN = ["--preload", "--workers", "2", "--worker-class", "gthread", "--threads", "12"]
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/assay_bench_reward"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


def worker_cpu_s(master: int) -> float:
    """User + system CPU seconds of a gunicorn master's live workers (its children), from
    /proc: the server's CPU, which does not depend on the machine's load as wall time does."""
    try:
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    except OSError:
        return 0.0
    total = 0.0
    for pid in children:
        with contextlib.suppress(OSError):
            total += _django.cpu_seconds(int(pid))
    return total


class CpuMeter:
    """CPU per request, load-independent. In process: the request thread's CPU (the view,
    the engine, the batched call and the after-reply write all run on it) and the process's
    (with the judge pool's threads and the test client). Over HTTP: the server's workers'."""

    def __init__(self, server_pid: int | None):
        self.server_pid = server_pid
        self.samples: dict[str, list[tuple[float, float]]] = {}

    def now(self) -> tuple[float, float]:
        if self.server_pid is not None:
            return 0.0, worker_cpu_s(self.server_pid)
        return time.thread_time(), time.process_time()

    def add(self, phase: str, before: tuple[float, float]) -> None:
        after = self.now()
        self.samples.setdefault(phase, []).append(
            (1000 * (after[0] - before[0]), 1000 * (after[1] - before[1]))
        )

    def figures(self, phase: str) -> dict:
        got = self.samples.get(phase, [])
        if not got:
            return {}
        threads, processes = [t for t, _ in got], [p for _, p in got]
        if self.server_pid is not None:  # clock ticks of 10 ms: only the mean means much
            return {"server_cpu_ms_mean": round(statistics.mean(processes), 2)}
        return {
            "thread_cpu_ms_p50": pct(threads, 0.5),
            "thread_cpu_ms_mean": round(statistics.mean(threads), 2),
            "process_cpu_ms_p50": pct(processes, 0.5),
            "process_cpu_ms_mean": round(statistics.mean(processes), 2),
        }


class Budget:
    """Every measured loop ends `seconds` after it began, whether or not it has made all its
    requests (it then says so in "phases" and in the log): a benchmark must end. Each request
    is bounded too (the client's timeout, the endpoint's deadline)."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.phases: dict[str, dict] = {}

    def loop(self, name: str, n: int):
        started = time.monotonic()
        done = 0
        for i in range(n):
            if time.monotonic() - started > self.seconds:
                log(f"{name}: stopped at its {self.seconds:g} s bound, after {i} of {n}")
                break
            yield i
            done += 1
        self.phases[name] = {
            "requests": done,
            "seconds": round(time.monotonic() - started, 1),
            "cut": done < n,
        }


def seed_suite(owner, project, tasks: int, criteria: int, rng) -> tuple[str, dict[str, str]]:
    """`tasks` HealthBench rows, each its own rubric of `criteria` criteria naming two of
    WORDS, imported, published in bulk and frozen in one suite (`_django.import_suite`: through
    the service, one rubric at a time, 5,000 rubrics of 20 criteria took 20 minutes on a loaded
    host). Returns (its score URL, manifest)."""
    rows = []
    for i in range(tasks):
        items = []
        for j in range(criteria):
            a, b = rng.sample(WORDS, 2)
            items.append(
                {
                    "criterion": f"Mentions {a} and {b}",
                    "points": rng.choice([1, 2, 3, 5, -2]) if j else 5,
                    "tags": [],
                }
            )
        prompt = [{"role": "user", "content": f"Case {i}: fever and vomiting. What now?"}]
        rows.append(json.dumps({"prompt_id": f"hb-{i:05d}", "prompt": prompt, "rubrics": items}))
    suite, version, timings = import_suite(owner, project, rows)
    log(
        f"suite of {version.task_count} tasks: imported in {timings['import_s']:.1f} s, "
        f"published in {timings['publish_s']:.1f} s, frozen in {timings['suite_freeze_s']:.1f} s"
    )
    return f"/api/suites/{suite.pk}/score/", dict(version.manifest)


def suite_case(
    args,
    post,
    sim_stats,
    suite_url: str,
    manifest: dict[str, str],
    rng,
    meter: CpuMeter,
    budget: Budget,
) -> dict:
    """The suite URL against the per-grader URL, alternating in the same run, per mode; then
    suite requests spanning N tasks (batched)."""
    task_ids = sorted(manifest)

    def text(tag: str) -> str:
        return f"{tag}. " + " ".join(rng.choice(WORDS) for _ in range(120)) + "."

    def timed(to: str, body: dict, calls: int, phase: str = "") -> float:
        """Overhead: wall time less the slowest of the request's `calls` judge calls."""
        before = sim_stats()["requests"]
        cpu0 = meter.now()
        t0 = time.perf_counter()
        status, content = post(body, to)
        wall = 1000 * (time.perf_counter() - t0)
        meter.add(phase or "warm", cpu0)
        assert status == 200, content
        after = sim_stats()
        made = after["requests"] - before
        assert made == calls, f"{to}: {made} judge calls, expected {calls}"
        return wall - max(after["recent_latency_ms"][-calls:])

    def pair(i: int, mode: str) -> tuple[float, float]:
        task = rng.choice(task_ids)
        calls = 1 if mode == "batched" else args.criteria
        suite_body = {"items": [{"task": task, "responses": [text(f"S{mode}{i}")]}], "mode": mode}
        grader_body = {"task": task, "responses": [text(f"G{mode}{i}")], "mode": mode}
        grader_url = f"/api/graders/{manifest[task]}/score/"
        on_suite, on_grader = (f"suite {mode}", f"grader {mode}") if i >= 0 else ("", "")
        if i % 2:  # alternate which goes first
            g = timed(grader_url, grader_body, calls, on_grader)
            return timed(suite_url, suite_body, calls, on_suite), g
        s = timed(suite_url, suite_body, calls, on_suite)
        return s, timed(grader_url, grader_body, calls, on_grader)

    out: dict = {"tasks": len(task_ids), "vs_grader": {}, "spread_batched": {}}
    for mode in ("batched", "per_criterion"):
        for i in range(10):  # warm both endpoints in every server process
            pair(-1 - i, mode)
        log(f"suite vs grader, {mode}: {args.requests} pairs")
        pairs = [pair(i, mode) for i in budget.loop(f"suite vs grader {mode}", args.requests)]
        suite_p50 = pct([s for s, _ in pairs], 0.5)
        grader_p50 = pct([g for _, g in pairs], 0.5)
        out["vs_grader"][mode] = {
            "suite_overhead_p50_ms": suite_p50,
            "grader_overhead_p50_ms": grader_p50,
            "difference_p50_ms": round(suite_p50 - grader_p50, 1),
            "paired_difference_p50_ms": pct([s - g for s, g in pairs], 0.5),
            "ratio_p50": round(suite_p50 / grader_p50, 2) if grader_p50 > 0 else None,
            "suite_overhead_p90_ms": pct([s for s, _ in pairs], 0.9),
            "pass": suite_p50 - grader_p50 <= SUITE_TARGET_MS,
            "suite_cpu": meter.figures(f"suite {mode}"),
            "grader_cpu": meter.figures(f"grader {mode}"),
        }
    for n in [int(x) for x in args.spread.split(",") if x.strip()]:
        log(f"suite, batched, {n} task(s) a request: {args.requests} requests")

        def spread(i: int, n: int = n) -> float:
            items = [
                {"task": task, "responses": [text(f"N{n}-{i}-{j}")]}
                for j, task in enumerate(rng.sample(task_ids, n))
            ]
            return timed(
                suite_url, {"items": items, "mode": "batched"}, n, f"spread {n}" if i >= 0 else ""
            )

        for i in range(3):
            spread(-1 - i)
        overheads = [spread(i) for i in budget.loop(f"spread {n}", args.requests)]
        out["spread_batched"][str(n)] = {
            "overhead_p50_ms": pct(overheads, 0.5),
            "overhead_p90_ms": pct(overheads, 0.9),
            **meter.figures(f"spread {n}"),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=100, help="per mode")
    parser.add_argument("--criteria", type=int, default=20)
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="call Django in this process (the test client) instead of gunicorn over HTTP",
    )
    parser.add_argument("--profile", action="store_true", help="implies --in-process")
    parser.add_argument("--suite-tasks", type=int, default=5000, help="0: no suite case")
    parser.add_argument("--spread", default="1,4,16", help="tasks a suite request spans")
    parser.add_argument("--only-suite", action="store_true", help="skip the per-grader modes")
    parser.add_argument(
        "--phase-seconds",
        type=float,
        default=90,
        help="each measured loop ends after this long, whatever --requests says",
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="keep the database and the suite a previous run seeded (seeding 5,000 graders "
        "takes minutes)",
    )
    args = parser.parse_args()
    args.in_process = args.in_process or args.profile

    os.environ["BENCH_DATABASE_URL"] = os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL)
    os.environ["ALLOWED_HOSTS"] = "testserver,127.0.0.1"
    url = urlsplit(os.environ["BENCH_DATABASE_URL"])
    db_name = url.path.lstrip("/")
    os.environ["BENCH_DATABASE_URL"] = url._replace(path="/postgres").geturl()
    # The judge's limits live in Redis under the judge's id, which starts at 1 in every
    # emptied database: a Redis database and key prefix of this run's own, so two benchmarks
    # on one machine never share a judge's leases (the server processes inherit both).
    broker = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/14")
    if urlsplit(broker).hostname not in ("127.0.0.1", "localhost", "::1"):
        sys.exit("The benchmark runs on loopback only.")
    os.environ["CELERY_BROKER_URL"] = broker
    os.environ["ASSAY_REDIS_PREFIX"] = f"bench-reward-{os.urandom(4).hex()}"
    _django.setup(db_name)

    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import Client

    from grading import services
    from grading.judges import prompts
    from rubrics.tokens import token_create

    if not args.reuse:
        call_command("flush", interactive=False, verbosity=0)

    var = ROOT / "var"
    simulator = Simulator("bench-reward-simulator.log", latency_ms=LATENCY_MS, max_concurrency=64)
    procs = [simulator.proc]
    port, sim_stats = simulator.port, simulator.stats
    try:
        simulator.wait_until_up(timeout=120)  # a loaded host starts Django slowly

        rng = random.Random(42)
        suite_url, manifest = None, {}
        if args.reuse:  # the previous run's project and suite, with a judge at this simulator
            from rubrics.models import Grader, Suite, SuiteVersion

            owner = get_user_model().objects.get(username="trainer")
            grader = Grader.objects.select_related("version__rubric__task__project").get(
                version__rubric__task__external_id="bench"
            )
            task, project = grader.version.rubric.task, grader.version.rubric.task.project
            suite = Suite.objects.get(project=project, name="HealthBench-shaped")
            version = SuiteVersion.objects.filter(suite=suite).order_by("-number").first()
            suite_url, manifest = f"/api/suites/{suite.pk}/score/", dict(version.manifest)
        else:
            owner = get_user_model().objects.create_user(username="trainer")
            project, task, grader = bench_grader(
                owner, project_name="Reward bench", criteria=args.criteria, rng=rng
            )
        judge = services.judge_create(
            project=project,
            name=f"simulator-{port}",
            base_url=f"http://127.0.0.1:{port}/v1",
            model="bench-judge",
            max_concurrency=64,
        )
        _, key = token_create(user=owner, name="bench", scopes=["grade"])
        if args.suite_tasks and not args.reuse:
            suite_url, manifest = seed_suite(owner, project, args.suite_tasks, args.criteria, rng)
        url = f"/api/graders/{grader.hash}/score/"
        headers = {"Authorization": f"Token {key}", "Content-Type": "application/json"}
        meter = CpuMeter(None)
        if args.in_process:
            # Django's test client: no HTTP, so --profile sees the request's own work.
            web = Client(HTTP_AUTHORIZATION=headers["Authorization"])

            def post(body: dict, to: str = url) -> tuple[int, bytes]:
                body = {**body, "judge": judge.pk} if body else body
                reply = web.post(to, body, content_type="application/json")
                return reply.status_code, reply.content
        else:
            web_port = free_port()
            server = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "assay.wsgi:application"]
                + ["--bind", f"127.0.0.1:{web_port}", *GUNICORN],
                cwd=ROOT,
                # As Production runs the reward pool: a reward request on every thread.
                env={**os.environ, "ASSAY_REWARD_MAX_CONCURRENT": "12"},
                stdout=(var / "bench-reward-gunicorn.log").open("wb"),
                stderr=subprocess.STDOUT,
            )
            procs.append(server)
            meter = CpuMeter(server.pid)
            conn = http.client.HTTPConnection("127.0.0.1", web_port, timeout=30)

            def post(body: dict, to: str = url) -> tuple[int, bytes]:
                body = {**body, "judge": judge.pk} if body else body
                for attempt in range(2):
                    try:
                        conn.request("POST", to, body=json.dumps(body), headers=headers)
                        reply = conn.getresponse()
                        return reply.status, reply.read()
                    except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
                        # gunicorn closes a keep-alive connection left idle (the peer loop):
                        # open another.
                        conn.close()
                        if attempt:
                            raise
                raise AssertionError("unreachable")

            deadline = time.monotonic() + 60
            while True:
                try:
                    post({})
                    break
                except OSError:
                    conn.close()
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.3)

        def probe(i: int, mode: str) -> tuple[float, float]:
            """(wall ms, the judge's own latency ms for this request)."""
            before = sim_stats()["requests"]
            words = " ".join(rng.choice(WORDS) for _ in range(120))
            cpu0 = meter.now()
            t0 = time.perf_counter()
            status, content = post(
                {"task": "bench", "responses": [f"Probe {mode} {i}. {words}."], "mode": mode}
            )
            wall = 1000 * (time.perf_counter() - t0)
            meter.add(mode if i >= 0 else "warm", cpu0)
            assert status == 200, content
            after = sim_stats()
            calls = after["requests"] - before
            expected = 1 if mode == "batched" else args.criteria
            assert calls == expected, f"{mode}: {calls} judge calls, expected {expected}"
            return wall, max(after["recent_latency_ms"][-calls:])

        for i in range(0 if args.only_suite else 5):  # warm: connections, caches, the client
            probe(-1 - i, "batched")
            probe(-1 - i, "per_criterion")

        figures: dict = {"criteria": args.criteria, "judge_latency_ms": LATENCY_MS}
        budget = Budget(args.phase_seconds)
        profiler = None
        for mode in () if args.only_suite else ("batched", "per_criterion"):
            log(f"{mode}: {args.requests} requests")
            if args.profile and mode == "batched":
                import cProfile

                profiler = cProfile.Profile()
                profiler.enable()
            walls, overheads = [], []

            for i in budget.loop(mode, args.requests):
                wall, judge_ms = probe(i, mode)
                walls.append(wall)
                overheads.append(wall - judge_ms)
            if profiler is not None:
                profiler.disable()

            figures[mode] = {
                "overhead_p50_ms": pct(overheads, 0.5),
                "overhead_p90_ms": pct(overheads, 0.9),
                "overhead_min_ms": pct(overheads, 0.0),
                "over_nominal_p50_ms": pct([w - LATENCY_MS for w in walls], 0.5),
                "wall_mean_ms": round(statistics.mean(walls), 1),
                **meter.figures(mode),
            }
        # The floor for per-criterion: the same 20 calls from a bare HealthBench-style loop
        # in this process (a thread each, http.client keep-alive, the same prompts; no Django,
        # database, cache or limits), overhead over the slowest call likewise.
        spec = grader.spec
        pool = ThreadPoolExecutor(max_workers=args.criteria)
        conns = threading.local()

        def peer_call(messages: list[dict]) -> bool:
            if not hasattr(conns, "c"):
                conns.c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            body = json.dumps({"model": "bench-judge", "messages": messages, "temperature": 0})
            conns.c.request(
                "POST", "/v1/chat/completions", body, {"Content-Type": "application/json"}
            )
            reply = json.loads(conns.c.getresponse().read())
            return bool(json.loads(reply["choices"][0]["message"]["content"])["criteria_met"])

        def peer(i: int) -> tuple[float, float]:
            words = " ".join(rng.choice(WORDS) for _ in range(120))
            before = sim_stats()["requests"]
            t0 = time.perf_counter()
            text = f"Peer {i}. {words}."
            jobs = [
                prompts.judge_messages(spec, messages=task.messages, response=text, criterion=c)
                for c in spec["criteria"]
            ]
            list(pool.map(peer_call, jobs))
            wall = 1000 * (time.perf_counter() - t0)
            after = sim_stats()
            calls = after["requests"] - before
            assert calls == args.criteria, calls
            return wall, max(after["recent_latency_ms"][-calls:])

        if not args.only_suite:
            for i in range(5):
                peer(-1 - i)
            overheads = [
                wall - judge_ms
                for wall, judge_ms in (peer(i) for i in budget.loop("peer", args.requests))
            ]
            figures["peer_per_criterion"] = {
                "overhead_p50_ms": pct(overheads, 0.5),
                "overhead_p90_ms": pct(overheads, 0.9),
                "overhead_min_ms": pct(overheads, 0.0),
            }
            figures["pass_by_mode"] = {
                m: figures[m]["overhead_p50_ms"] < TARGET_MS for m in ("batched", "per_criterion")
            }
        pool.shutdown()

        if suite_url:
            figures["suite"] = suite_case(
                args, post, sim_stats, suite_url, manifest, rng, meter, budget
            )
            figures["pass_by_mode"] = {
                **figures.get("pass_by_mode", {}),
                **{f"suite_{m}": f["pass"] for m, f in figures["suite"]["vs_grader"].items()},
            }
        figures["pass"] = all(figures["pass_by_mode"].values())
        figures["phases"] = budget.phases
        emit("reward", figures)
        if profiler is not None:
            import pstats

            pstats.Stats(profiler, stream=sys.stderr).sort_stats(
                os.environ.get("BENCH_SORT", "cumulative")
            ).print_stats(45)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=20)


if __name__ == "__main__":
    main()
