"""Grading throughput benchmark. Prints ONE JSON line of figures.

    .venv/bin/python bench/grading.py [--responses 1000] [--criteria 20] [--workers 2]
    .venv/bin/python bench/grading.py --shape healthbench [--tasks 5000]

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

`--shape healthbench` adds, in the same invocation (same workers, simulator and judge limit)
and the same JSON line under "healthbench", a HealthBench-shaped case after the one above:
`--tasks` (5,000) tasks imported through the HealthBench importer, each its own rubric of
8-15 criteria (seeded), published in bulk (bench/_django.py `publish_in_bulk`: the real
compiled graders and hashes, without the service's per-rubric history and audit rows), one
suite frozen over them (`rubrics.suites.suite_freeze`, timed: target < 5 s), two models with
one response per task each, and one per-criterion run over the suite version, cache empty:
the seconds `grading.services.run_create` takes to start it (in the run's wall time; target
< 2 s), verdicts per second and their ratio to the ideal 320/s (target >= 0.9), Assay CPU ms
per verdict and its ratio to the one-task case's (target <= 1), the judge's occupancy; then the
same (response, criterion) pairs through the peer loop, and the ratio of its wall time to
Assay's. The peer formats each prompt in its threads, as the HealthBench reference grader
does (a list of 100,000 prompts built beforehand would take gigabytes).

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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _django import (  # noqa: E402 - beside this file
    WORDS,
    Simulator,
    bench_grader,
    cpu_seconds,
    drop_database,
    emit,
    fresh_database_env,
    healthbench_case,
    start_workers,
    wait,
)

LATENCY_MS = 200
LIMIT = 64
PHASE_TIMEOUT_S = 900
IDEAL = LIMIT / (LATENCY_MS / 1000)  # verdicts per second at the judge's limit: 320


def build_healthbench(admin, *, tag: str, tasks: int, sim_url: str) -> dict:
    """The HealthBench-shaped case's project (see the module's docstring): its suite version,
    two models' responses, and a judge on the simulator. Django must be set up."""
    case = healthbench_case(
        admin,
        project_name=f"Bench HealthBench {tag}",
        tasks=tasks,
        rng=random.Random(5000),
        judge_url=sim_url,
        judge_limit=LIMIT,
        response="{model} on {task}. {words}.",
    )
    return {
        "project": case.project,
        "version": case.version,
        "judge": case.judge,
        "responses": case.responses,
        "criteria": case.criteria,
        "pairs": 2 * case.criteria,  # one response per task per model
        **case.timings,
    }


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
    parser.add_argument(
        "--shape",
        choices=["one-task", "healthbench"],
        default="one-task",
        help="healthbench: the one-task case, then a HealthBench-shaped suite run",
    )
    parser.add_argument("--tasks", type=int, default=5000, help="tasks of the healthbench case")
    args = parser.parse_args()

    env, db_url, tag = fresh_database_env(
        "postgres://postgres@127.0.0.1:5432/assay_bench", judge_threads=args.judge_threads
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
        simulator.wait_until_up(timeout=180)
        import django
        import httpx

        django.setup()

        from django.db.models import Count, Max, Min, Sum

        from annotation import services as annotation_services
        from annotation.models import Verdict
        from grading import services
        from grading.judges import prompts
        from grading.models import GradingRun, JudgeCall, Score
        from rubrics.models import Grader

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
        hb = None
        if args.shape == "healthbench":
            hb = build_healthbench(admin, tag=tag, tasks=args.tasks, sim_url=sim_url)

        workers = start_workers(
            env,
            count=args.workers,
            name="bench-worker",
            threads=args.threads,
            log_level=os.environ.get("BENCH_LOGLEVEL", "warning"),
        )
        procs.extend(workers)

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

        run_create_s: dict[str, float] = {}  # the last run_create's seconds, by mode

        def grade(
            mode: str, use_cache: bool, occupancy=None, *, target=None, timeout=PHASE_TIMEOUT_S
        ) -> tuple[GradingRun, float]:
            """Run and wait; `target`: run_create's project, judge and what to grade (the
            one-task case's grader by default)."""
            target = target or {"project": project, "judge": judge, "grader": grader}
            if occupancy is not None:
                occupancy.thread.start()
            start = time.monotonic()
            run = services.run_create(user=admin, mode=mode, use_cache=use_cache, **target)
            created = time.monotonic()
            wait(
                lambda: GradingRun.objects.filter(pk=run.pk, status="completed").exists(),
                timeout,
                f"the {mode} run to complete",
                # The run's wall time is read to within 20 ms, as the peer's is to the
                # microsecond; a coarser poll would add up to its interval to Assay's time.
                interval=0.02,
            )
            wall = time.monotonic() - start
            run_create_s[mode] = created - start
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
            if os.environ.get("BENCH_DEBUG"):
                print(f"{mode}: run_create {created - start:.3f} s", file=sys.stderr)
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
        client = httpx.Client(
            timeout=60, limits=httpx.Limits(max_connections=128, max_keepalive_connections=128)
        )

        def peer_grade(job: tuple) -> bool:
            spec, messages, text, criterion = job
            prompt = prompts.judge_messages(
                spec, messages=messages, response=text, criterion=criterion
            )
            for attempt in range(20):
                r = client.post(
                    f"{sim_url}/chat/completions",
                    json={"model": "bench-judge", "messages": prompt, "temperature": 0},
                )
                if r.status_code == 200:
                    content = r.json()["choices"][0]["message"]["content"]
                    return bool(json.loads(content)["criteria_met"])
                time.sleep(min(2.0, 0.05 * 2**attempt))
            raise RuntimeError("peer call failed")

        def peer_jobs(run) -> list[tuple]:
            """Every (response, criterion) pair of the run, each with its task's grader."""
            rows = list(
                run.scores.order_by("pk").values_list(
                    "grader_id", "response__task__messages", "response__text"
                )
            )
            specs = {
                pk: g.spec for pk, g in Grader.objects.in_bulk({g for g, _, _ in rows}).items()
            }
            return [
                (specs[g], messages, text, c)
                for g, messages, text in rows
                for c in specs[g]["criteria"]
            ]

        def peer(jobs: list[tuple]) -> tuple[list[bool], float, float, Occupancy]:
            """A pool of LIMIT threads, each taking the next pair: (outcomes, wall s, CPU s,
            occupancy)."""
            results: list[bool] = []
            lock = threading.Lock()
            pending = iter(jobs)

            def loop():
                while True:
                    with lock:
                        job = next(pending, None)
                    if job is None:
                        return
                    met = peer_grade(job)
                    with lock:
                        results.append(met)

            occupancy = Occupancy()
            occupancy.thread.start()
            start, cpu = time.monotonic(), time.process_time()
            with ThreadPoolExecutor(max_workers=LIMIT) as pool:
                for f in [pool.submit(loop) for _ in range(LIMIT)]:
                    f.result()
            wall = time.monotonic() - start
            cpu = time.process_time() - cpu
            occupancy.stop.set()
            occupancy.thread.join()
            return results, wall, cpu, occupancy

        jobs = peer_jobs(run1)
        peer_results, peer_wall, peer_cpu, peer_occupancy = peer(jobs)
        stats = sim_stats()

        rate = verdicts1 / wall1
        cpu_per_verdict1 = 1000 * (cpu1 - cpu0) / max(1, verdicts1)
        healthbench = None
        if hb is not None:
            # 5. The HealthBench-shaped suite run, then the same pairs through the peer loop.
            target = {
                "project": hb["project"],
                "judge": hb["judge"],
                "suite_version": hb["version"],
            }
            pairs_hb = hb["pairs"]
            timeout = max(PHASE_TIMEOUT_S, 4 * pairs_hb / IDEAL)
            faults0 = stats["faults"].get("429", 0)
            cpu0 = worker_cpu()
            hb_occupancy = Occupancy()
            run_hb, wall_hb = grade(
                "per_criterion", True, hb_occupancy, target=target, timeout=timeout
            )
            cpu_hb = worker_cpu() - cpu0
            verdicts_hb = Verdict.objects.filter(run=run_hb).count()
            errors_hb = Verdict.objects.filter(run=run_hb, outcome="error").count()
            calls_hb = calls_of(run_hb)
            hb_jobs = peer_jobs(run_hb)
            assert len(hb_jobs) == pairs_hb, (len(hb_jobs), pairs_hb)
            hb_peer, hb_peer_wall, hb_peer_cpu, hb_peer_occupancy = peer(hb_jobs)
            del hb_jobs
            hb_stats = sim_stats()
            rate_hb = verdicts_hb / wall_hb
            cpu_per_verdict_hb = 1000 * cpu_hb / max(1, verdicts_hb)
            healthbench = {
                "tasks": args.tasks,
                "criteria_per_task": "8-15",
                "criteria": hb["criteria"],
                "models": 2,
                "responses": hb["responses"],
                "pairs": pairs_hb,
                "import_s": round(hb["import_s"], 2),
                "publish_in_bulk_s": round(hb["publish_s"], 2),
                "suite_freeze_s": round(hb["suite_freeze_s"], 3),
                "suite_freeze_under_5s": hb["suite_freeze_s"] < 5,
                "per_criterion_wall_s": round(wall_hb, 2),
                # Starting the run (grading.services.run_create, in the wall time above):
                # bench/run_create.py times it apart, with its estimate and the doors.
                "run_create_s": round(run_create_s["per_criterion"], 3),
                "run_create_under_2s": run_create_s["per_criterion"] < 2,
                "verdicts": verdicts_hb,
                "errors": errors_hb,
                "judge_calls": calls_hb["calls"],
                "verdicts_per_s": round(rate_hb, 1),
                "ratio_to_ideal_320": round(rate_hb / IDEAL, 3),
                "assay_cpu_ms_per_verdict": round(cpu_per_verdict_hb, 3),
                "one_task_assay_cpu_ms_per_verdict": round(cpu_per_verdict1, 3),
                "cpu_per_verdict_ratio_to_one_task": round(
                    cpu_per_verdict_hb / max(1e-9, cpu_per_verdict1), 3
                ),
                "occupancy": hb_occupancy.summary(wall_hb),
                "peer_wall_s": round(hb_peer_wall, 2),
                "peer_met": sum(hb_peer),
                "peer_cpu_ms_per_verdict": round(1000 * hb_peer_cpu / pairs_hb, 3),
                "wall_ratio_peer_to_assay": round(hb_peer_wall / wall_hb, 3),
                "peer_occupancy": hb_peer_occupancy.summary(hb_peer_wall),
                "simulator_429s": hb_stats["faults"].get("429", 0) - faults0,
            }
        client.close()
        emit(
            "grading",
            {
                "shape": args.shape,
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
                "ratio_to_ideal_320": round(rate / IDEAL, 3),
                "assay_cpu_ms_per_verdict": round(cpu_per_verdict1, 3),
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
                **({"healthbench": healthbench} if healthbench else {}),
            },
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
            drop_database(db_url)
        except Exception as exc:  # noqa: BLE001 - cleanup must not hide the figures
            print(f"cleanup: {exc}", file=sys.stderr)


if __name__ == "__main__":
    main()
