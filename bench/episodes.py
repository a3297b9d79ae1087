"""Agent-episode grading benchmark. Prints ONE JSON line of figures.

    .venv/bin/python bench/episodes.py [--episodes 1000] [--steps 30] [--workers 2]

The issue's shape: `--episodes` episodes of `--steps` assistant steps (each but the last
calls one of three tools, whose output is ~400 characters) graded against one rubric of 10
criteria: 4 outcome criteria judged on the final answer, 1 trajectory criterion (the whole
episode), 3 step criteria (every assistant turn, rule "all"; each call of `lookup`, rule
"share"; each call of `write`, a pitfall, rule "any") and 2 checked criteria (no judge call).
The judge simulator answers in 200 ms, at most 64 requests at once, and the judge's shared
limit is 64, so the ideal is 64 / 0.2 s = 320 judge calls a second.

Figures:
* `calls_per_s` and `ratio_to_ideal` (target >= 0.9): judge calls over the run's wall time;
* `cpu_ms_per_call`: Assay's CPU per judge call (user + system time of the worker processes,
  which build every prompt, render every episode and write every verdict);
* `input_tokens_per_episode` with and without the judge's episode budget
  (annotation.content.render), estimated as characters / 4 of every judged item's fenced text
  for a sample of the episodes, and `budget_saving` (their ratio);
* `step_verdicts`, `response_verdicts`, `errors` of the run.

Environment: BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/assay_bench_ep),
BENCH_BROKER_URL (default redis://127.0.0.1:6379/14).
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _django import (  # noqa: E402 - beside this file
    WORDS,
    Simulator,
    cpu_seconds,
    emit,
    fresh_database_env,
    log,
    start_workers,
    wait,
)

LATENCY_MS = 200
LIMIT = 64
IDEAL = LIMIT / (LATENCY_MS / 1000)
TOOLS = ("search", "lookup", "write")


def episode(rng: random.Random, steps: int, index: int) -> dict:
    """`steps` assistant turns; turn k < steps - 1 calls TOOLS[k % 3] and gets ~400
    characters back; the last turn is the final answer."""

    def words(n: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(n))

    messages = []
    for k in range(steps - 1):
        tool = TOOLS[k % len(TOOLS)]
        call_id = f"e{index}c{k}"
        messages.append(
            {
                "role": "assistant",
                "content": f"Step {k}: {words(25)}",
                "tool_calls": [
                    {
                        "id": call_id,
                        "type": "function",
                        "function": {"name": tool, "arguments": json.dumps({"q": words(4)})},
                    }
                ],
            }
        )
        messages.append({"role": "tool", "tool_call_id": call_id, "content": words(60)})
    messages.append({"role": "assistant", "content": f"Final answer {index}. {words(120)}."})
    return {"messages": messages, "final_state": {"done": True, "episode": index}}


CRITERIA = [
    # (text, points, scope, step_rule, step_tool, kind, check)
    ("Mentions hydration and electrolyte", 5, "outcome", "", "", "binary", None),
    ("Mentions urgent and evaluation", 3, "outcome", "", "", "binary", None),
    ("Mentions monitoring and temperature", 2, "outcome", "", "", "binary", None),
    ("Mentions dangerous and dehydration", -2, "outcome", "", "", "binary", None),
    ("Mentions followup and appointment", 3, "trajectory", "", "", "binary", None),
    ("Mentions fever and medication", 2, "step", "all", "", "binary", None),
    ("Mentions referral and specialist", 3, "step", "share", "lookup", "binary", None),
    ("Mentions codeine and syrup", -3, "step", "any", "write", "binary", None),
    ("Ends with a final answer", 1, "outcome", "", "", "checked",
     {"type": "contains", "value": "Final answer"}),
    ("Does not mention warfarin", 1, "outcome", "", "", "checked",
     {"type": "not_contains", "value": "warfarin"}),
]  # fmt: skip


def tokens_per_episode(spec: dict, episodes: list, budget: int | None) -> float:
    """Characters / 4 of the fenced text of every judged item of each episode."""
    from annotation.content import render
    from annotation.content.episode import Episode

    kwargs = {} if budget is None else {"budget": budget}
    total = 0
    for raw in episodes:
        ep = Episode.parse(raw)
        for c in spec["criteria"]:
            if c.get("kind") == "checked":
                continue
            scope = c.get("scope", "outcome")
            if scope == "outcome":
                total += len(ep.final_text)
            elif scope == "trajectory":
                total += len(render.for_judge(ep, **kwargs).text)
            else:
                for step in ep.steps(tool=c.get("step_tool", "")):
                    total += len(render.for_judge_step(ep, step, **kwargs).text)
    return total / 4 / len(episodes)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--episodes", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--judge-threads", type=int, default=40)
    args = parser.parse_args()

    env, db_url, tag = fresh_database_env(
        "postgres://postgres@127.0.0.1:5432/assay_bench_ep", judge_threads=args.judge_threads
    )

    procs: list[subprocess.Popen] = []
    var = ROOT / "var"
    var.mkdir(exist_ok=True)
    try:
        simulator = Simulator(
            "bench-episodes-simulator.log", latency_ms=LATENCY_MS, max_concurrency=LIMIT, env=env
        )
        procs.append(simulator.proc)
        simulator.wait_until_up(timeout=180)
        import django

        django.setup()
        from decimal import Decimal

        from django.contrib.auth import get_user_model

        from annotation import services as annotation_services
        from annotation.models import Verdict
        from grading import services
        from grading.models import GradingRun, JudgeCall
        from rubrics import services as rubric_services
        from rubrics.models import Criterion

        admin = get_user_model().objects.create_user(username=f"bench-{tag}")
        project = rubric_services.project_create(name=f"Episodes {tag}", user=admin)
        task = rubric_services.task_create(
            project=project,
            external_id="agent",
            title="Agent task",
            messages=[{"role": "user", "content": "Research and write up the case."}],
        )
        rubric = rubric_services.rubric_create(
            project=project,
            task=task,
            title="Agent rubric",
            user=admin,
            criteria=[
                rubric_services.CriterionInput(
                    text=text, points=Decimal(points), kind=kind, check_spec=check
                )
                for text, points, _s, _r, _t, kind, check in CRITERIA
            ],
        )
        version = rubric.versions.get()
        for position, (_x, _p, scope, rule, tool, _k, _c) in enumerate(CRITERIA):
            Criterion.objects.filter(version=version, text=CRITERIA[position][0]).update(
                scope=scope, step_rule=rule, step_tool=tool
            )
        grader = rubric_services.version_publish(version=version, user=admin)
        rng = random.Random(16)
        episodes = [episode(rng, args.steps, i) for i in range(args.episodes)]
        log(f"importing {len(episodes)} episodes")
        lines = [
            json.dumps(
                {
                    "task_id": "agent",
                    "model": f"agent-{i % 10}",
                    "sample_index": i // 10,
                    **ep,
                }
            )
            for i, ep in enumerate(episodes)
        ]
        result = annotation_services.responses_import_jsonl(project=project, lines=lines)
        assert result.ok, result.errors[:3]
        judge = services.judge_create(
            project=project,
            name="simulator",
            base_url=simulator.url,
            model="bench-judge",
            max_concurrency=LIMIT,
        )
        workers = start_workers(
            env, count=args.workers, name="bench-episodes-worker", threads=args.threads
        )
        procs.extend(workers)
        cpu0 = sum(cpu_seconds(p.pid) for p in workers)
        start = time.monotonic()
        run = services.run_create(
            user=admin, project=project, judge=judge, grader=grader, mode="per_criterion"
        )
        last = [0.0]

        def done() -> bool:
            run.refresh_from_db()
            if time.monotonic() - last[0] > 10:
                last[0] = time.monotonic()
                decided = Verdict.objects.filter(run=run, step__isnull=True).count()
                log(f"run {run.status}: {decided}/{run.total_items} response verdicts")
            return run.status in ("completed", "failed", "cancelled")

        wait(done, 3600, "the run to finish", interval=0.05)
        wall = time.monotonic() - start
        cpu = sum(cpu_seconds(p.pid) for p in workers) - cpu0
        calls = JudgeCall.objects.filter(run=run).count()
        verdicts = Verdict.objects.filter(run=run)
        sample = episodes[:20]
        with_budget = tokens_per_episode(grader.spec, sample, None)
        without = tokens_per_episode(grader.spec, sample, 10**12)
        emit(
            "episodes",
            {
                "episodes": args.episodes,
                "steps": args.steps,
                "criteria": len(CRITERIA),
                "status": run.status,
                "wall_s": round(wall, 2),
                "judge_calls": calls,
                "calls_per_s": round(calls / wall, 1),
                "ideal_per_s": IDEAL,
                "ratio_to_ideal": round(calls / wall / IDEAL, 3),
                "cpu_ms_per_call": round(1000 * cpu / max(1, calls), 2),
                "step_verdicts": verdicts.filter(step__isnull=False).count(),
                "response_verdicts": verdicts.filter(step__isnull=True).count(),
                "errors": verdicts.filter(outcome="error").count(),
                "input_tokens_per_episode": round(with_budget),
                "input_tokens_per_episode_unbudgeted": round(without),
                "budget_saving": round(without / max(1, with_budget), 2),
                "grading_runs": GradingRun.objects.filter(project=project).count(),
            },
        )
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    main()
