"""Grading episodes: every scope (outcome, trajectory, step) and every step rule, on
hand-worked examples, through the engine, the judge simulator and a real Celery worker."""

from __future__ import annotations

import pytest

from rubrics import scoring
from rubrics.scoring import ERROR, MET, NOT_APPLICABLE, UNMET, Outcome, step_rule_outcome

# --- The step rules, by hand -------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "steps", "expected"),
    [
        # all: met iff met at every step
        ("all", [MET, MET, MET], Outcome(MET)),
        ("all", [MET, UNMET, MET], Outcome(UNMET)),
        ("all", [], Outcome(NOT_APPLICABLE)),
        ("all", [MET, NOT_APPLICABLE], Outcome(MET)),  # na steps leave the rule
        ("all", [NOT_APPLICABLE], Outcome(NOT_APPLICABLE)),
        # share: met, valued at the share of steps met
        ("share", [MET, UNMET, MET, UNMET], Outcome(MET, 0.5)),
        ("share", [MET, MET, UNMET], Outcome(MET, 2 / 3)),
        ("share", [UNMET, UNMET], Outcome(MET, 0.0)),
        ("share", [], Outcome(NOT_APPLICABLE)),
        # any: met iff met at some step (a pitfall)
        ("any", [UNMET, UNMET, MET], Outcome(MET)),
        ("any", [UNMET, UNMET], Outcome(UNMET)),
        ("any", [], Outcome(UNMET)),
        # an error at any step makes the whole an error, whatever the rule
        ("all", [MET, ERROR], Outcome(ERROR)),
        ("share", [ERROR, MET], Outcome(ERROR)),
        ("any", [MET, ERROR], Outcome(ERROR)),
    ],
)
def test_step_rule_outcome(rule, steps, expected):
    got = step_rule_outcome(rule, [Outcome(s) for s in steps])
    assert got.outcome == expected.outcome
    assert got.value == pytest.approx(expected.value) if expected.value is not None else True
    assert (got.value is None) == (expected.value is None)


def test_step_rule_outcome_on_scale_steps():
    values = [Outcome(MET, 1.0), Outcome(MET, 0.5), Outcome(UNMET, 0.0)]
    assert step_rule_outcome("share", values) == Outcome(MET, 0.5)
    assert step_rule_outcome("all", values) == Outcome(UNMET, 0.0)
    assert step_rule_outcome("any", values) == Outcome(MET, 1.0)
    assert step_rule_outcome("all", values[:2]) == Outcome(MET, 0.5)


def test_step_rule_outcome_refuses_an_unknown_rule():
    with pytest.raises(ValueError, match="unknown step rule 'most'"):
        step_rule_outcome("most", [MET])


def test_a_share_scores_like_a_scale_value():
    spec = {"criteria": [{"id": 1, "points": 4}, {"id": 2, "points": 4}]}
    share = step_rule_outcome("share", [Outcome(MET), Outcome(UNMET), Outcome(MET), Outcome(MET)])
    figures = scoring.score(spec, {1: share, 2: Outcome(MET)})
    assert figures.met_points == pytest.approx(4 * 0.75 + 4)
    assert figures.raw == pytest.approx(7 / 8)
