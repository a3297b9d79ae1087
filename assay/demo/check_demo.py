"""Validate the demo content in tasks.json and show how the simulated judge grades it.

Run from the repository root:

    .venv/bin/python assay/demo/check_demo.py            # scores and per-criterion verdicts
    .venv/bin/python assay/demo/check_demo.py --why      # also show the key words found/missing

The demo is graded by the judge simulator (grading/judges/simulator.py), whose verdicts follow one
deterministic rule, so this script can predict every score. It checks:

* the shape of every task (ids, domains, messages, reference length, criteria, responses);
* every positive criterion has at least two key words;
* per task: score(northwind-70b) > score(northwind-8b) > score(tinyllm-1b), with
  70b >= 0.7, 0.3 <= 8b <= 0.7 and 1b <= 0.3;
* no pitfall (negative criterion) is met by northwind-70b;
* tinyllm-1b meets at least one pitfall in at least 4 of the 6 tasks.

It exits with status 1 and a message naming the task and field when anything fails.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from grading.judges.simulator import key_words, simulated_verdict  # noqa: E402

TASKS_PATH = Path(__file__).resolve().with_name("tasks.json")

MODELS = ("northwind-70b", "northwind-8b", "tinyllm-1b")
DOMAINS = {"clinical": 2, "legal": 2, "investment": 2}
ROLES = {"system", "user", "assistant"}
SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
TASK_KEYS = {
    "external_id",
    "title",
    "domain",
    "tags",
    "messages",
    "reference",
    "criteria",
    "responses",
}

N_TASKS = 6
REFERENCE_WORDS = (300, 700)
RESPONSE_WORDS = (150, 600)
N_CRITERIA = (8, 15)
N_PITFALLS = (2, 3)
MAX_TITLE = 80

STRONG_MIN = 0.7  # northwind-70b
MID_RANGE = (0.3, 0.7)  # northwind-8b
WEAK_MAX = 0.3  # tinyllm-1b
MIN_TASKS_WITH_WEAK_PITFALL = 4


class DemoError(Exception):
    """A problem with tasks.json, reported with the task and field it concerns."""


def words(text: str) -> int:
    return len(text.split())


def where(task: dict | None, index: int, field: str) -> str:
    name = task.get("external_id") if isinstance(task, dict) else None
    return f"task #{index} ({name or 'no external_id'}), field {field!r}"


def validate(tasks: object) -> list[str]:
    """Return a list of problems with the shape of tasks.json (empty when it is valid)."""
    problems: list[str] = []
    if not isinstance(tasks, list):
        return [f"tasks.json must hold a JSON list, found {type(tasks).__name__}"]
    if len(tasks) != N_TASKS:
        problems.append(f"tasks.json must hold exactly {N_TASKS} tasks, found {len(tasks)}")

    seen_ids: set[str] = set()
    domain_counts: dict[str, int] = {}
    for i, task in enumerate(tasks):

        def bad(field: str, message: str, task=task, i=i) -> None:
            problems.append(f"{where(task, i, field)}: {message}")

        if not isinstance(task, dict):
            problems.append(f"task #{i}: must be an object, found {type(task).__name__}")
            continue
        missing = TASK_KEYS - task.keys()
        extra = task.keys() - TASK_KEYS
        for key in sorted(missing):
            bad(key, "is missing")
        for key in sorted(extra):
            bad(key, "is not a known field")

        ext = task.get("external_id")
        if "external_id" in task:
            if not isinstance(ext, str) or not SLUG.match(ext):
                bad(
                    "external_id",
                    f"must be a lowercase slug like 'clinical-chest-pain', got {ext!r}",
                )
            elif ext in seen_ids:
                bad("external_id", f"duplicate id {ext!r}")
            else:
                seen_ids.add(ext)

        title = task.get("title")
        if "title" in task and (
            not isinstance(title, str) or not title.strip() or len(title) > MAX_TITLE
        ):
            bad("title", f"must be a non-empty string of at most {MAX_TITLE} characters")

        domain = task.get("domain")
        if "domain" in task:
            if domain not in DOMAINS:
                bad("domain", f"must be one of {sorted(DOMAINS)}, got {domain!r}")
            else:
                domain_counts[domain] = domain_counts.get(domain, 0) + 1

        tags = task.get("tags")
        if "tags" in task and (
            not isinstance(tags, list)
            or not tags
            or not all(isinstance(t, str) and t.strip() for t in tags)
        ):
            bad("tags", "must be a non-empty list of non-empty strings")

        messages = task.get("messages")
        if "messages" in task:
            if not isinstance(messages, list) or not messages:
                bad("messages", "must be a non-empty list of {role, content} objects")
            else:
                for j, message in enumerate(messages):
                    field = f"messages[{j}]"
                    if not isinstance(message, dict) or set(message) != {"role", "content"}:
                        bad(field, "must be an object with exactly 'role' and 'content'")
                        continue
                    if message["role"] not in ROLES:
                        bad(field, f"role must be one of {sorted(ROLES)}, got {message['role']!r}")
                    if message["role"] == "system" and j != 0:
                        bad(field, "a system message may only come first")
                    if not isinstance(message["content"], str) or not message["content"].strip():
                        bad(field, "content must be a non-empty string")
                if isinstance(messages[-1], dict) and messages[-1].get("role") != "user":
                    bad("messages", "the last message must come from the user")

        reference = task.get("reference")
        if "reference" in task:
            if not isinstance(reference, str):
                bad("reference", "must be a Markdown string")
            elif not REFERENCE_WORDS[0] <= words(reference) <= REFERENCE_WORDS[1]:
                bad(
                    "reference",
                    f"has {words(reference)} words; "
                    f"expected {REFERENCE_WORDS[0]}-{REFERENCE_WORDS[1]}",
                )

        criteria = task.get("criteria")
        if "criteria" in task:
            if (
                not isinstance(criteria, list)
                or not N_CRITERIA[0] <= len(criteria) <= N_CRITERIA[1]
            ):
                count = len(criteria) if isinstance(criteria, list) else "no"
                bad(
                    "criteria",
                    f"must be a list of {N_CRITERIA[0]}-{N_CRITERIA[1]} criteria, found {count}",
                )
            else:
                pitfalls = 0
                texts: set[str] = set()
                for j, criterion in enumerate(criteria):
                    field = f"criteria[{j}]"
                    if not isinstance(criterion, dict) or set(criterion) != {"text", "points"}:
                        bad(field, "must be an object with exactly 'text' and 'points'")
                        continue
                    text, points = criterion["text"], criterion["points"]
                    if not isinstance(text, str) or not text.strip():
                        bad(field, "text must be a non-empty string")
                        continue
                    if text in texts:
                        bad(field, f"duplicate criterion text {text!r}")
                    texts.add(text)
                    if (
                        isinstance(points, bool)
                        or not isinstance(points, int)
                        or not -10 <= points <= 10
                        or points == 0
                    ):
                        bad(field, f"points must be a non-zero integer in -10..10, got {points!r}")
                        continue
                    keys = key_words(text)
                    if points > 0 and len(keys) < 2:
                        bad(
                            field,
                            f"positive criterion needs at least 2 key words, has {keys} ({text!r})",
                        )
                    if points < 0:
                        pitfalls += 1
                        if not keys:
                            bad(
                                field,
                                f"pitfall has no key words, so it can never be met ({text!r})",
                            )
                if not N_PITFALLS[0] <= pitfalls <= N_PITFALLS[1]:
                    bad(
                        "criteria",
                        f"must include {N_PITFALLS[0]}-{N_PITFALLS[1]} pitfalls (negative points), "
                        f"found {pitfalls}",
                    )
                if not any(
                    isinstance(c, dict) and isinstance(c.get("points"), int) and c["points"] > 0
                    for c in criteria
                ):
                    bad("criteria", "needs at least one positive criterion")

        responses = task.get("responses")
        if "responses" in task:
            if not isinstance(responses, dict) or set(responses) != set(MODELS):
                got = sorted(responses) if isinstance(responses, dict) else responses
                bad(
                    "responses",
                    f"must be an object with exactly the keys {list(MODELS)}, got {got!r}",
                )
            else:
                for model in MODELS:
                    text = responses[model]
                    if not isinstance(text, str) or not text.strip():
                        bad(f"responses.{model}", "must be a non-empty Markdown string")
                    elif not RESPONSE_WORDS[0] <= words(text) <= RESPONSE_WORDS[1]:
                        bad(
                            f"responses.{model}",
                            f"has {words(text)} words; "
                            f"expected {RESPONSE_WORDS[0]}-{RESPONSE_WORDS[1]}",
                        )

    for domain, expected in DOMAINS.items():
        if domain_counts.get(domain, 0) != expected:
            problems.append(
                f"expected {expected} tasks in domain {domain!r}, "
                f"found {domain_counts.get(domain, 0)}"
            )
    return problems


def grade(criteria: list[dict], response: str) -> tuple[float, list[tuple[dict, bool, str]]]:
    """Score a response the way the simulated judge would: met points / positive points."""
    verdicts = [(c, *simulated_verdict(c["text"], response)) for c in criteria]
    possible = sum(c["points"] for c in criteria if c["points"] > 0)
    earned = sum(c["points"] for c, met, _ in verdicts if met)
    return earned / possible, verdicts


def main(argv: list[str]) -> int:
    show_why = "--why" in argv
    try:
        tasks = json.loads(TASKS_PATH.read_text(encoding="utf-8"))
    except FileNotFoundError:
        print(f"FAIL: {TASKS_PATH} does not exist", file=sys.stderr)
        return 1
    except json.JSONDecodeError as exc:
        print(f"FAIL: {TASKS_PATH} is not valid JSON: {exc}", file=sys.stderr)
        return 1

    problems = validate(tasks)
    if problems:
        print(f"FAIL: {TASKS_PATH.name} has {len(problems)} shape problem(s):", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1

    failures: list[str] = []
    table: list[tuple[str, dict[str, float]]] = []
    tasks_with_weak_pitfall = 0

    for task in tasks:
        ext, criteria = task["external_id"], task["criteria"]
        print(f"\n=== {ext}: {task['title']} ({task['domain']}, {len(criteria)} criteria) ===")
        scores: dict[str, float] = {}
        for model in MODELS:
            score, verdicts = grade(criteria, task["responses"][model])
            scores[model] = score
            print(f"  {model}: {score:.2f}")
            for criterion, met, why in verdicts:
                mark = "MET  " if met else "unmet"
                kind = "pitfall " if criterion["points"] < 0 else ""
                print(f"    [{mark}] {criterion['points']:+3d} {kind}{criterion['text']}")
                if show_why:
                    print(f"              {why}")
            met_pitfalls = [c["text"] for c, met, _ in verdicts if met and c["points"] < 0]
            if model == "northwind-70b" and met_pitfalls:
                failures.append(f"{ext}: northwind-70b meets pitfall(s) {met_pitfalls}")
            if model == "tinyllm-1b" and met_pitfalls:
                tasks_with_weak_pitfall += 1
        table.append((ext, scores))

        strong, mid, weak = (scores[m] for m in MODELS)
        if not strong > mid > weak:
            failures.append(
                f"{ext}: scores not ordered 70b > 8b > 1b ({strong:.2f}, {mid:.2f}, {weak:.2f})"
            )
        if strong < STRONG_MIN:
            failures.append(f"{ext}: northwind-70b scores {strong:.2f}, below {STRONG_MIN}")
        if not MID_RANGE[0] <= mid <= MID_RANGE[1]:
            failures.append(
                f"{ext}: northwind-8b scores {mid:.2f}, outside {MID_RANGE[0]}-{MID_RANGE[1]}"
            )
        if weak > WEAK_MAX:
            failures.append(f"{ext}: tinyllm-1b scores {weak:.2f}, above {WEAK_MAX}")

    if tasks_with_weak_pitfall < MIN_TASKS_WITH_WEAK_PITFALL:
        failures.append(
            f"tinyllm-1b meets a pitfall in only {tasks_with_weak_pitfall} task(s); "
            f"need at least {MIN_TASKS_WITH_WEAK_PITFALL}"
        )

    width = max(len(ext) for ext, _ in table)
    print("\nScores (simulated judge)")
    print(f"  {'task':<{width}}  " + "  ".join(f"{m:>13}" for m in MODELS))
    for ext, scores in table:
        print(f"  {ext:<{width}}  " + "  ".join(f"{scores[m]:>13.2f}" for m in MODELS))
    print(f"  tinyllm-1b meets a pitfall in {tasks_with_weak_pitfall} of {len(table)} tasks")

    if failures:
        print(f"\nFAIL: {len(failures)} check(s) failed:", file=sys.stderr)
        for failure in failures:
            print(f"  - {failure}", file=sys.stderr)
        return 1
    print("\nOK: all checks passed.")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
