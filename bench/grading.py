"""Grading throughput benchmark. Prints ONE JSON line of figures.

    .venv/bin/python bench/grading.py [--responses 1000] [--criteria 20] [--workers 2]

Everything on this machine, loopback only: PostgreSQL (its own database, created and dropped),
Redis (its own queue and key prefix), two Celery worker processes (threads pool), and the
judge simulator in its own process at 200 ms latency with max concurrency 64; the judge's
shared limit is 64 in flight. It grades responses x criteria (response, criterion) pairs:

1. per-criterion mode, cache empty: verdicts per second, ratio to the ideal 64 / 0.2 s = 320/s,
   Assay CPU ms per verdict (user + system time of the worker processes / verdicts), and the
   judge's requests in flight sampled every 50 ms (mean; ramp_s: until 60 were first in
   flight; tail_s: from the last time 60 were in flight to completion);
2. the identical run again: judge calls (expected 0, all from the cache);
3. batched mode (cache bypassed): judge calls and input tokens against per-criterion's;
4. a peer: a 64-thread pool loop in the style of the HealthBench reference grader (one
   chat completion per (response, criterion), same prompt shape, same simulator, retry on
   429), the ratio of its wall time to Assay's and its CPU ms per verdict.

Environment: BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/assay_bench),
BENCH_BROKER_URL (default redis://127.0.0.1:6379/14), BENCH_DEBUG=1 (timings and occupancy
samples on stderr). Each phase is bounded in time.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _django import WORDS, Simulator, bench_grader, wait  # noqa: E402 - beside this file

LATENCY_MS = 200
LIMIT = 64
PHASE_TIMEOUT_S = 900


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its reaped and live children, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    # utime, stime, cutime, cstime are fields 14-17 (1-based); after the ")" split, index 11..
    return sum(int(x) for x in fields[11:15]) / ticks


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--responses", type=int, default=1000)
    parser.add_argument("--criteria", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=16, help="Celery threads per worker")
    parser.add_argument(
        "--judge-threads",
        type=int,
        default=40,
        help="ASSAY_JUDGE_THREADS of the workers: judge calls a worker process makes at once, "
        "set as the README says, near the judge's limit over the worker processes (64 / 2)",
    )
    args = parser.parse_args()

    db_url = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/assay_bench")
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
        ASSAY_JUDGE_ALLOW_PRIVATE_URLS="1",  # the simulator is on loopback
        PYTHONUNBUFFERED="1",
        ASSAY_JUDGE_THREADS=str(args.judge_threads),
    )
    os.environ.update(env)
    os.environ["DJANGO_SETTINGS_MODULE"] = "assay.settings"

    # A fresh database of our own.
    import psycopg

    parts = urlsplit(db_url)
    dbname = parts.path.lstrip("/")
    admin_url = db_url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{dbname}"')
    py = sys.executable
    subprocess.run(
        [py, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True, timeout=300
    )

    procs: list[subprocess.Popen] = []
    var = ROOT / "var"
    var.mkdir(exist_ok=True)
    try:
        simulator = Simulator(
            "bench-simulator.log", latency_ms=LATENCY_MS, max_concurrency=LIMIT, env=env
        )
        procs.append(simulator.proc)
        port, sim_url, sim_stats = simulator.port, simulator.url, simulator.stats
        simulator.wait_until_up()
        import django
        import httpx

        django.setup()

        from django.db.models import Count, Max, Min, Sum

        from annotation import services as annotation_services
        from annotation.models import Verdict
        from grading import services
        from grading.judges import prompts
        from grading.models import GradingRun, JudgeCall, Score

        user = __import__("django.contrib.auth", fromlist=["get_user_model"]).get_user_model()
        admin = user.objects.create_user(username=f"bench-{tag}", password=uuid.uuid4().hex)
        rng = random.Random(42)
        project, task, grader = bench_grader(
            admin, project_name=f"Bench {tag}", criteria=args.criteria, rng=rng
        )
        models = [f"model-{m}" for m in range(10)]
        lines = []
        for i in range(args.responses):
            words = " ".join(rng.choice(WORDS) for _ in range(120))
            lines.append(
                json.dumps(
                    {
                        "task_id": "bench",
                        "model": models[i % len(models)],
                        "sample_index": i // len(models),
                        "response": f"Response {i}. {words}.",
                    }
                )
            )
        result = annotation_services.responses_import_jsonl(project=project, lines=lines)
        assert result.ok, result.errors
        judge = services.judge_create(
            project=project,
            name="simulator",
            base_url=sim_url,
            model="bench-judge",
            max_concurrency=LIMIT,
        )

        workers = []
        for w in range(args.workers):
            workers.append(
                subprocess.Popen(
                    [
                        py,
                        "-m",
                        "celery",
                        "-A",
                        "assay",
                        "worker",
                        "-P",
                        "threads",
                        "-c",
                        str(args.threads),
                        "-Q",
                        env["CELERY_QUEUE"],
                        "-n",
                        f"bench{w}-{tag}@%h",
                        "-l",
                        os.environ.get("BENCH_LOGLEVEL", "warning"),
                        "--without-gossip",
                        "--without-mingle",
                        "--without-heartbeat",
                    ],
                    cwd=ROOT,
                    env=env,
                    stdout=(var / f"bench-worker{w}.log").open("wb"),
                    stderr=subprocess.STDOUT,
                )
            )
        procs.extend(workers)
        from assay.celery import app

        app.conf.task_default_queue = env["CELERY_QUEUE"]
        wait(
            lambda: len(app.control.ping(timeout=0.5) or []) >= args.workers,
            60,
            "the workers to answer",
        )

        def worker_cpu() -> float:
            return sum(cpu_seconds(p.pid) for p in workers)

        class Occupancy:
            """The judge's requests in flight, sampled every 50 ms from the simulator while a
            run goes: where the wall time beyond the ideal goes (ramp-up, steady state, tail)."""

            def __init__(self):
                self.samples: list[tuple[float, int]] = []
                self.stop = threading.Event()
                self.thread = threading.Thread(target=self._poll, daemon=True)

            def _poll(self):
                t0 = time.monotonic()
                with httpx.Client(timeout=5) as c:
                    while not self.stop.is_set():
                        n = c.get(f"http://127.0.0.1:{port}/stats").json()["in_flight"]
                        self.samples.append((time.monotonic() - t0, n))
                        self.stop.wait(0.05)

            def summary(self, wall: float) -> dict:
                busy = [t for t, n in self.samples if n >= LIMIT - 4]
                mean = sum(n for _, n in self.samples) / max(1, len(self.samples))
                # Between the ramp-up and the tail: how full each client keeps the judge.
                steady = [n for t, n in self.samples if busy and busy[0] <= t <= busy[-1]]
                return {
                    "mean_in_flight": round(mean, 1),
                    "steady_mean_in_flight": round(sum(steady) / max(1, len(steady)), 2),
                    "ramp_s": round(busy[0], 2) if busy else None,
                    "tail_s": round(wall - busy[-1], 2) if busy else None,
                }

        def grade(mode: str, use_cache: bool, occupancy=None) -> tuple[GradingRun, float]:
            if occupancy is not None:
                occupancy.thread.start()
            start = time.monotonic()
            run = services.run_create(
                project=project,
                grader=grader,
                judge=judge,
                user=admin,
                mode=mode,
                use_cache=use_cache,
            )
            created = time.monotonic()
            wait(
                lambda: GradingRun.objects.filter(pk=run.pk, status="completed").exists(),
                PHASE_TIMEOUT_S,
                f"the {mode} run to complete",
                # The run's wall time is read to within 20 ms, as the peer's is to the
                # microsecond; a coarser poll would add up to its interval to Assay's time.
                interval=0.02,
            )
            wall = time.monotonic() - start
            if os.environ.get("BENCH_DEBUG"):
                r = GradingRun.objects.get(pk=run.pk)
                marks = Verdict.objects.filter(run=run).aggregate(
                    first=Min("created_at"), last=Max("created_at")
                )
                last_score = Score.objects.filter(run=run).aggregate(last=Max("finished_at"))
                print(
                    f"{mode}: run_create {created - start:.3f} s; from created_at: started "
                    f"{(r.started_at - r.created_at).total_seconds():.3f} s, first verdict "
                    f"{(marks['first'] - r.created_at).total_seconds():.3f} s, last verdict "
                    f"{(marks['last'] - r.created_at).total_seconds():.3f} s, last score "
                    f"{(last_score['last'] - r.created_at).total_seconds():.3f} s, finished "
                    f"{(r.finished_at - r.created_at).total_seconds():.3f} s; observed "
                    f"{wall - (created - start):.3f} s after run_create returned",
                    file=sys.stderr,
                )
            if occupancy is not None:
                occupancy.stop.set()
                occupancy.thread.join()
                if os.environ.get("BENCH_DEBUG"):
                    print(f"occupancy: {occupancy.samples}", file=sys.stderr)
            return run, wall

        def calls_of(run) -> dict:
            return JudgeCall.objects.filter(run=run).aggregate(
                calls=Count("pk"), requests=Sum("attempts"), input_tokens=Sum("prompt_tokens")
            )

        pairs = args.responses * args.criteria
        # 1. Per-criterion, cache empty.
        cpu0 = worker_cpu()
        occupancy = Occupancy()
        run1, wall1 = grade("per_criterion", True, occupancy)
        cpu1 = worker_cpu()
        verdicts1 = Verdict.objects.filter(run=run1).count()
        errors1 = Verdict.objects.filter(run=run1, outcome="error").count()
        per_criterion = calls_of(run1)
        # 2. The identical run: everything from the cache.
        before = sim_stats()["requests"]
        run2, wall2 = grade("per_criterion", True)
        second_calls = sim_stats()["requests"] - before
        # 3. Batched, cache bypassed.
        before = sim_stats()["requests"]
        run3, wall3 = grade("batched", False)
        batched = calls_of(run3)
        batched_requests = sim_stats()["requests"] - before

        # 4. The peer: HealthBench-style thread pool, one call per pair, same prompt shape.
        spec = grader.spec
        responses = list(run1.scores.select_related("response__task").order_by("pk"))
        jobs = [
            prompts.judge_messages(
                spec,
                messages=s.response.task.messages,
                response=s.response.text,
                criterion=c,
            )
            for s in responses
            for c in spec["criteria"]
        ]
        client = httpx.Client(
            timeout=60, limits=httpx.Limits(max_connections=128, max_keepalive_connections=128)
        )

        def peer_grade(messages: list[dict]) -> bool:
            for attempt in range(20):
                r = client.post(
                    f"{sim_url}/chat/completions",
                    json={"model": "bench-judge", "messages": messages, "temperature": 0},
                )
                if r.status_code == 200:
                    content = r.json()["choices"][0]["message"]["content"]
                    return bool(json.loads(content)["criteria_met"])
                time.sleep(min(2.0, 0.05 * 2**attempt))
            raise RuntimeError("peer call failed")

        peer_occupancy = Occupancy()
        peer_occupancy.thread.start()
        peer_start, peer_cpu = time.monotonic(), time.process_time()
        with ThreadPoolExecutor(max_workers=LIMIT) as pool:
            peer_results = list(pool.map(peer_grade, jobs))
        peer_wall = time.monotonic() - peer_start
        peer_occupancy.stop.set()
        peer_occupancy.thread.join()
        peer_cpu = time.process_time() - peer_cpu
        client.close()
        stats = sim_stats()

        rate = verdicts1 / wall1
        print(
            json.dumps(
                {
                    "pairs": pairs,
                    "responses": args.responses,
                    "criteria": args.criteria,
                    "workers": args.workers,
                    "judge_threads_per_worker": args.judge_threads,
                    "judge_latency_ms": LATENCY_MS,
                    "judge_limit": LIMIT,
                    "per_criterion_wall_s": round(wall1, 2),
                    "verdicts": verdicts1,
                    "errors": errors1,
                    "verdicts_per_s": round(rate, 1),
                    "ratio_to_ideal_320": round(rate / (LIMIT / (LATENCY_MS / 1000)), 3),
                    "assay_cpu_ms_per_verdict": round(1000 * (cpu1 - cpu0) / max(1, verdicts1), 3),
                    "per_criterion_calls": per_criterion["calls"],
                    "per_criterion_input_tokens": per_criterion["input_tokens"],
                    "batched_calls": batched["calls"],
                    "batched_http_requests": batched_requests,
                    "batched_input_tokens": batched["input_tokens"],
                    "batched_wall_s": round(wall3, 2),
                    "calls_ratio_per_criterion_to_batched": round(
                        per_criterion["calls"] / max(1, batched["calls"]), 1
                    ),
                    "second_run_calls": second_calls,
                    "second_run_wall_s": round(wall2, 2),
                    "peer": "thread-pool loop, HealthBench style, 64 threads",
                    "peer_wall_s": round(peer_wall, 2),
                    "peer_met": sum(peer_results),
                    "peer_cpu_ms_per_verdict": round(1000 * peer_cpu / len(jobs), 3),
                    "wall_ratio_peer_to_assay": round(peer_wall / wall1, 3),
                    "per_criterion_occupancy": occupancy.summary(wall1),
                    "peer_occupancy": peer_occupancy.summary(peer_wall),
                    "simulator_peak_concurrency": stats["peak_concurrency"],
                    "simulator_429s": stats["faults"].get("429", 0),
                    "cpus": os.cpu_count(),
                }
            )
        )
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        try:
            from django.db import connections

            connections.close_all()
            with psycopg.connect(admin_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        except Exception as exc:  # noqa: BLE001 - cleanup must not hide the figures
            print(f"cleanup: {exc}", file=sys.stderr)


if __name__ == "__main__":
    main()
