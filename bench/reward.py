"""The reward endpoint's overhead over the judge's own latency. Prints ONE JSON line.

    .venv/bin/python bench/reward.py [--requests 100] [--criteria 20] [--in-process] [--profile]

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

`--in-process` calls Django through its test client instead (no HTTP; the response's
after-send write then counts in the wall time). `--profile` (in-process) prints a cProfile of
the batched requests to stderr (BENCH_SORT=tottime to sort so): where the overhead goes, since
the wait on the judge shows as time in the socket read.

Environment: BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/assay_bench_reward),
a throwaway database: created if missing, migrated, emptied before seeding.
"""

from __future__ import annotations

import argparse
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
from _django import WORDS, Simulator, bench_grader, free_port, log

ROOT = Path(__file__).resolve().parent.parent
LATENCY_MS = 200
TARGET_MS = 20  # p50 overhead over the judge's own latency, issue 4
# As the README's Production section serves the reward endpoint: its own pool.
GUNICORN = ["--preload", "--workers", "2", "--worker-class", "gthread", "--threads", "12"]
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/assay_bench_reward"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


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
    args = parser.parse_args()
    args.in_process = args.in_process or args.profile

    os.environ["BENCH_DATABASE_URL"] = os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL)
    os.environ["ALLOWED_HOSTS"] = "testserver,127.0.0.1"
    url = urlsplit(os.environ["BENCH_DATABASE_URL"])
    db_name = url.path.lstrip("/")
    os.environ["BENCH_DATABASE_URL"] = url._replace(path="/postgres").geturl()
    _django.setup(db_name)

    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import Client

    from grading import services
    from grading.judges import prompts
    from rubrics.tokens import token_create

    call_command("flush", interactive=False, verbosity=0)

    var = ROOT / "var"
    simulator = Simulator("bench-reward-simulator.log", latency_ms=LATENCY_MS, max_concurrency=64)
    procs = [simulator.proc]
    port, sim_stats = simulator.port, simulator.stats
    try:
        simulator.wait_until_up()

        rng = random.Random(42)
        owner = get_user_model().objects.create_user(username="trainer")
        project, task, grader = bench_grader(
            owner, project_name="Reward bench", criteria=args.criteria, rng=rng
        )
        services.judge_create(
            project=project,
            name="simulator",
            base_url=f"http://127.0.0.1:{port}/v1",
            model="bench-judge",
            max_concurrency=64,
        )
        _, key = token_create(user=owner, name="bench", scopes=["grade"])
        url = f"/api/graders/{grader.hash}/score/"
        headers = {"Authorization": f"Token {key}", "Content-Type": "application/json"}
        if args.in_process:
            # Django's test client: no HTTP, so --profile sees the request's own work.
            web = Client(HTTP_AUTHORIZATION=headers["Authorization"])

            def post(body: dict) -> tuple[int, bytes]:
                reply = web.post(url, body, content_type="application/json")
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
            conn = http.client.HTTPConnection("127.0.0.1", web_port, timeout=30)

            def post(body: dict) -> tuple[int, bytes]:
                conn.request("POST", url, body=json.dumps(body), headers=headers)
                reply = conn.getresponse()
                return reply.status, reply.read()

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
            t0 = time.perf_counter()
            status, content = post(
                {"task": "bench", "responses": [f"Probe {mode} {i}. {words}."], "mode": mode}
            )
            wall = 1000 * (time.perf_counter() - t0)
            assert status == 200, content
            after = sim_stats()
            calls = after["requests"] - before
            expected = 1 if mode == "batched" else args.criteria
            assert calls == expected, f"{mode}: {calls} judge calls, expected {expected}"
            return wall, max(after["recent_latency_ms"][-calls:])

        for i in range(5):  # warm: connections, caches, the judge's client
            probe(-1 - i, "batched")
            probe(-1 - i, "per_criterion")

        figures: dict = {"criteria": args.criteria, "judge_latency_ms": LATENCY_MS}
        profiler = None
        for mode in ("batched", "per_criterion"):
            log(f"{mode}: {args.requests} requests")
            if args.profile and mode == "batched":
                import cProfile

                profiler = cProfile.Profile()
                profiler.enable()
            walls, overheads = [], []

            for i in range(args.requests):
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

        for i in range(5):
            peer(-1 - i)
        overheads = [wall - judge_ms for wall, judge_ms in (peer(i) for i in range(args.requests))]
        figures["peer_per_criterion"] = {
            "overhead_p50_ms": pct(overheads, 0.5),
            "overhead_p90_ms": pct(overheads, 0.9),
            "overhead_min_ms": pct(overheads, 0.0),
        }
        pool.shutdown()
        figures["pass_by_mode"] = {
            m: figures[m]["overhead_p50_ms"] < TARGET_MS for m in ("batched", "per_criterion")
        }
        figures["pass"] = all(figures["pass_by_mode"].values())
        figures["cpus"] = os.cpu_count()
        print(json.dumps(figures))
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
