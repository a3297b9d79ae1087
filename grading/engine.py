"""Grade one response against a grader spec, criterion by criterion, by kind:

* ``binary`` and ``scale`` criteria ask the judge (scale replies are normalised to [0, 1]);
* ``checked`` criteria run a deterministic check in code, with no judge call.

Runs (grading.services), the reward endpoint and the rubric editor's "try it" all grade
through `grade_now`, so a verdict means the same everywhere.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from grading import prompts
from grading.judge import JudgeClient, JudgeError, JudgeSettings
from rubrics import checks, scoring


@dataclass(frozen=True)
class Graded:
    criterion_id: int
    outcome: str  # met, unmet, error
    value: float | None = None
    explanation: str = ""
    raw: str = ""
    error: str = ""
    judge_model: str = ""
    simulated: bool = False
    prompt_tokens: int = 0
    completion_tokens: int = 0
    judged: bool = True  # False for checked criteria: no judge call was made

    def as_outcome(self) -> scoring.Outcome:
        return scoring.Outcome(self.outcome, self.value)


def kind_of(criterion: dict) -> str:
    return criterion.get("kind", "binary")


def grade_checked(criterion: dict, response: str) -> Graded:
    met, why = checks.evaluate(criterion["check"], response)
    return Graded(
        criterion_id=criterion["id"],
        outcome=scoring.MET if met else scoring.UNMET,
        explanation=f"Checked in code: {why}",
        judged=False,
    )


def grade_judged(
    client: JudgeClient, spec: dict, criterion: dict, *, messages: list[dict], response: str
) -> Graded:
    levels = len(criterion["scale"]["descriptors"]) if kind_of(criterion) == "scale" else 0
    prompt = prompts.judge_messages(spec, messages=messages, response=response, criterion=criterion)
    try:
        reply = client.grade(prompt, prompts.output_schema(spec, criterion), levels=levels)
    except JudgeError as exc:
        return Graded(
            criterion_id=criterion["id"],
            outcome=scoring.ERROR,
            error=f"{exc.reason}: {exc}",
            raw=exc.raw,
        )
    return Graded(
        criterion_id=criterion["id"],
        outcome=scoring.MET if reply.met else scoring.UNMET,
        value=reply.value,
        explanation=reply.explanation,
        raw=reply.raw,
        judge_model=reply.model,
        simulated=reply.simulated,
        prompt_tokens=reply.prompt_tokens,
        completion_tokens=reply.completion_tokens,
    )


def grade_now(
    spec: dict,
    settings: JudgeSettings,
    *,
    messages: list[dict],
    response: str,
    criteria: list[dict] | None = None,
    concurrency: int = 8,
) -> list[Graded]:
    """Grade `criteria` (default: all of the spec's) of one response, in the spec's order."""
    criteria = spec["criteria"] if criteria is None else criteria
    results: dict[int, Graded] = {}
    judged = []
    for criterion in criteria:
        if kind_of(criterion) == "checked":
            results[criterion["id"]] = grade_checked(criterion, response)
        else:
            judged.append(criterion)
    if judged:
        client = JudgeClient(settings)
        try:
            with ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(judged)))) as pool:
                for graded in pool.map(
                    lambda c: grade_judged(client, spec, c, messages=messages, response=response),
                    judged,
                ):
                    results[graded.criterion_id] = graded
        finally:
            client.close()
    return [results[c["id"]] for c in criteria]
