"""Scores from verdicts, by the aggregation a grader names. Pure functions over the spec.

Two methods:

* ``healthbench`` (flat rubrics): the points of met criteria, pitfalls (negative points)
  subtracting, divided by the sum of positive points. A scale criterion earns its points times
  its normalised value in [0, 1]. Criteria judged "not applicable" leave both sums. One
  response's score may fall below 0; means over responses are clipped to [0, 1].
* ``tree`` (PaperBench): a leaf scores 1 when met, 0 when not, its normalised value when it
  is a scale; a group scores the weighted mean of its children; the root's score is the
  response's. A group whose children's weights sum to 0 scores 0 (PaperBench does the same).
  Not-applicable leaves leave their group's mean.

Either way a **gate** (hurdle) criterion that is not met caps the score at ``min(raw, 0)``: a
gate only ever lowers a score, so a harmful answer that also misses a gate keeps its negative
score rather than rising to the 0 of an empty one. Any verdict that is an error leaves the
response without a score: an error is never "not met".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

MET, UNMET, NOT_APPLICABLE, ERROR = "met", "unmet", "na", "error"

FORMULAS = {
    "healthbench": "score = sum(points of met criteria) / sum(positive points); "
    "a response's score may fall below 0; means over responses are clipped to [0, 1]",
    "tree": "score = weighted mean of the children's scores, recursively from the leaves "
    "(met 1, not met 0, scales normalised to [0, 1])",
}
GATE_NOTE = (
    "; a gate criterion that is not met caps the score at min(score, 0): a gate only ever "
    "lowers a score"
)


@dataclass(frozen=True)
class Outcome:
    outcome: str  # met, unmet, na, error
    value: float | None = None  # a scale criterion's value normalised to [0, 1]

    @property
    def credit(self) -> float:
        if self.outcome != MET:
            return 0.0
        return 1.0 if self.value is None else self.value


@dataclass(frozen=True)
class ScoreResult:
    raw: float | None
    met_points: float
    possible_points: float
    error_count: int
    gated: bool
    method: str
    # The gate criteria not met, in rubric order (empty: not gated).
    gated_by: tuple[int, ...] = ()

    @property
    def clipped(self) -> float | None:
        return None if self.raw is None else clip(self.raw)


def clip(value: float) -> float:
    return min(1.0, max(0.0, value))


def formula(spec: dict) -> str:
    method = spec.get("aggregation", {}).get("method", "healthbench")
    gates = any(c.get("gate") for c in spec.get("criteria", []))
    return FORMULAS[method] + (GATE_NOTE if gates else "")


def _as_outcome(value: Outcome | str | None) -> Outcome:
    if isinstance(value, Outcome):
        return value
    return Outcome(value or UNMET)


def score(spec: dict, outcomes: Mapping[int, Outcome | str]) -> ScoreResult:
    """Score one response from its verdicts, keyed by criterion id. Missing means not met."""
    method = spec.get("aggregation", {}).get("method", "healthbench")
    criteria = spec["criteria"]
    got = {c["id"]: _as_outcome(outcomes.get(c["id"])) for c in criteria}
    errors = sum(1 for o in got.values() if o.outcome == ERROR)
    gated_by = tuple(c["id"] for c in criteria if c.get("gate") and got[c["id"]].outcome == UNMET)
    applicable = [c for c in criteria if got[c["id"]].outcome != NOT_APPLICABLE]
    possible = float(sum(c["points"] for c in applicable if c["points"] > 0))
    met_points = float(sum(c["points"] * got[c["id"]].credit for c in applicable))
    raw: float | None
    if errors:
        raw = None
    elif method == "tree":
        raw = tree_score(spec, got)
    else:
        raw = met_points / possible if possible > 0 else 0.0
    if raw is not None and gated_by:
        raw = min(raw, 0.0)
    return ScoreResult(
        raw=raw,
        met_points=met_points,
        possible_points=possible,
        error_count=errors,
        gated=bool(gated_by),
        method=method,
        gated_by=gated_by,
    )


def tree_score(spec: dict, outcomes: Mapping[int, Outcome]) -> float:
    """Weighted mean of children, recursively. Groups: spec["groups"] = [{id, parent, weight}];
    a criterion's "group" names its parent (None: the root); "weight" defaults to 1."""
    children: dict[object, list[tuple[float, object]]] = {}
    for group in spec.get("groups", []):
        children.setdefault(group.get("parent"), []).append(
            (float(group.get("weight", 1)), ("group", group["id"]))
        )
    for criterion in spec["criteria"]:
        children.setdefault(criterion.get("group"), []).append(
            (float(criterion.get("weight", 1)), ("criterion", criterion["id"]))
        )

    def node_score(key: object) -> float | None:
        total = 0.0
        weighted = 0.0
        for weight, (kind, ident) in children.get(key, []):
            if kind == "criterion":
                outcome = outcomes[ident]
                if outcome.outcome == NOT_APPLICABLE:
                    continue
                value: float | None = outcome.credit
            else:
                value = node_score(ident)
                if value is None:
                    continue
            total += weight
            weighted += weight * value
        if not children.get(key):
            return None
        return weighted / total if total > 0 else 0.0

    result = node_score(None)
    return 0.0 if result is None else result


def step_rule_outcome(rule: str, outcomes: Iterable[Outcome | str]) -> Outcome:
    """A step criterion's result for the whole response, from its verdicts at each step.

    ``all``: met iff met at every step; ``share``: "met" with value = the share of steps met
    (scored like a scale value in [0, 1]); ``any`` (for pitfalls): met iff met at any step.
    Steps judged "not applicable" leave the count, as not-applicable criteria leave a score;
    no step left (or none at all) is "na". Any step in error makes the result an error: an
    error is never "not met".
    """
    got = [_as_outcome(o).outcome for o in outcomes]
    if ERROR in got:
        return Outcome(ERROR)
    counted = [o for o in got if o != NOT_APPLICABLE]
    if not counted:
        return Outcome(NOT_APPLICABLE)
    met = sum(1 for o in counted if o == MET)
    if rule == "all":
        return Outcome(MET if met == len(counted) else UNMET)
    if rule == "any":
        return Outcome(MET if met else UNMET)
    if rule == "share":
        return Outcome(MET, met / len(counted))
    raise ValueError(f"Unknown step rule {rule!r}: all, share or any.")
