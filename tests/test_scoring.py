"""The scoring formulas on hand-worked examples."""

from __future__ import annotations

import pytest

from rubrics import checks, scoring
from rubrics.scoring import Outcome

FLAT = {
    "aggregation": {"method": "healthbench"},
    "criteria": [
        {"id": 1, "points": 5},
        {"id": 2, "points": 3},
        {"id": 3, "points": 2},
        {"id": 4, "points": -4},  # pitfall
    ],
}


@pytest.mark.parametrize(
    ("outcomes", "raw"),
    [
        ({1: "met", 2: "met", 3: "met"}, 1.0),  # 10 / 10
        ({1: "met"}, 0.5),  # 5 / 10
        ({1: "met", 4: "met"}, 0.1),  # (5 - 4) / 10
        ({4: "met"}, -0.4),  # below zero for one response
        ({1: "met", 3: "na"}, 5 / 8),  # n/a leaves the denominator
        ({}, 0.0),
    ],
)
def test_healthbench_flat_formula(outcomes, raw):
    result = scoring.score(FLAT, outcomes)
    assert result.raw == pytest.approx(raw)
    assert result.clipped == pytest.approx(min(1, max(0, raw)))


def test_an_error_leaves_the_response_without_a_score():
    result = scoring.score(FLAT, {1: "met", 2: "error"})
    assert result.raw is None and result.error_count == 1


def test_a_scale_criterion_earns_points_times_its_normalised_value():
    result = scoring.score(FLAT, {1: Outcome("met", 0.75), 2: "met"})
    assert result.raw == pytest.approx((5 * 0.75 + 3) / 10)


def test_an_unmet_gate_caps_a_positive_score_at_zero():
    spec = {**FLAT, "criteria": [{**FLAT["criteria"][0], "gate": True}, *FLAT["criteria"][1:]]}
    gated = scoring.score(spec, {2: "met", 3: "met"})  # (3 + 2) / 10 = 0.5, gate 1 missed
    assert gated.raw == 0.0 and gated.gated and gated.gated_by == (1,)
    passed = scoring.score(spec, {1: "met", 2: "met"})
    assert passed.raw == pytest.approx(0.8) and not passed.gated and passed.gated_by == ()
    assert "min(score, 0)" in scoring.formula(spec)


# Issue 18: a response that meets a -10 pitfall and misses a gate.
# Positive points 20 + 25 = 45; raw = -10 / 45 = -0.222...
HARMFUL = {
    "aggregation": {"method": "healthbench"},
    "criteria": [
        {"id": 1, "points": 20, "gate": True},
        {"id": 2, "points": 25},
        {"id": 3, "points": -10},  # pitfall
        {"id": 4, "points": 5, "gate": True},
    ],
}


def test_a_failed_gate_never_raises_a_harmful_answer_to_zero():
    result = scoring.score({**HARMFUL, "criteria": HARMFUL["criteria"][:3]}, {3: "met"})
    assert result.raw == pytest.approx(-10 / 45)  # -0.22, not 0
    assert round(result.raw, 2) == -0.22
    assert result.gated and result.gated_by == (1,)
    assert result.clipped == 0.0


def test_every_missed_gate_is_named_in_rubric_order():
    # positives 20 + 25 + 5 = 50; met 25 - 10 = 15 -> 0.3, capped at 0 by gates 1 and 4
    result = scoring.score(HARMFUL, {2: "met", 3: "met"})
    assert result.raw == 0.0 and result.gated_by == (1, 4)
    # a gate judged not applicable does not gate: (20 + 25 - 10) / 45
    result = scoring.score(HARMFUL, {1: "met", 2: "met", 3: "met", 4: "na"})
    assert result.raw == pytest.approx(35 / 45) and result.gated_by == ()


def test_an_error_is_not_a_failed_gate():
    result = scoring.score(HARMFUL, {1: "error", 3: "met"})
    assert result.raw is None and result.gated_by == (4,)


TREE = {
    "aggregation": {"method": "tree"},
    "groups": [
        {"id": "a", "parent": None, "weight": 3},
        {"id": "b", "parent": None, "weight": 1},
        {"id": "a1", "parent": "a", "weight": 1},
        {"id": "z", "parent": None, "weight": 2},  # zero-weight children
    ],
    "criteria": [
        {"id": 1, "points": 1, "group": "a", "weight": 1},
        {"id": 2, "points": 1, "group": "a1", "weight": 2},
        {"id": 3, "points": 1, "group": "a1", "weight": 2},
        {"id": 4, "points": 1, "group": "b", "weight": 1},
        {"id": 5, "points": 1, "group": "z", "weight": 0},
    ],
}


def test_tree_weighted_mean_by_hand():
    # a1 = (2*1 + 2*0) / 4 = 0.5; a = (1*1 + 1*0.5) / 2 = 0.75; b = 1; z = 0 (zero total)
    # root = (3*0.75 + 1*1 + 2*0) / 6 = 3.25 / 6
    result = scoring.score(TREE, {1: "met", 2: "met", 4: "met", 5: "met"})
    assert result.raw == pytest.approx(3.25 / 6)


def test_a_tree_rubric_gate_caps_its_score_at_zero():
    # Tree scores lie in [0, 1], so min(raw, 0) is 0 when a gate is missed: 3.25 / 6 -> 0.
    spec = {**TREE, "criteria": [{**TREE["criteria"][2], "gate": True}, *TREE["criteria"][:2]]}
    spec["criteria"] += TREE["criteria"][3:]
    result = scoring.score(spec, {1: "met", 2: "met", 4: "met", 5: "met"})
    assert result.raw == 0.0 and result.gated_by == (3,)
    result = scoring.score(spec, {1: "met", 2: "met", 3: "met", 4: "met"})
    # a1 = 1; a = 1; b = 1; root = (3 + 1) / 6
    assert result.raw == pytest.approx(4 / 6) and not result.gated


def test_tree_with_all_zero_weights_scores_zero_without_crashing():
    spec = {"aggregation": {"method": "tree"}, "criteria": [{"id": 1, "points": 1, "weight": 0}]}
    assert scoring.score(spec, {1: "met"}).raw == 0.0


@pytest.mark.parametrize(
    ("check", "text", "met"),
    [
        ({"type": "contains", "value": "911"}, "Call 911 now", True),
        ({"type": "contains", "value": "ECG", "case_sensitive": True}, "an ecg", False),
        ({"type": "not_contains", "value": "guaranteed"}, "Returns are GUARANTEED", False),
        ({"type": "regex", "pattern": r"\bINR\b", "ignore_case": True}, "check inr daily", True),
        ({"type": "number", "value": 6.2, "tolerance": 0.05}, "leverage of 6.24x", True),
        ({"type": "number", "value": 1500000, "tolerance": 0}, "a $1,500,000 cap", True),
        ({"type": "number", "value": 6.2, "tolerance": 0.01}, "leverage of 6.24x", False),
        ({"type": "json_field", "path": "rating", "equals": "buy"}, '{"rating": "buy"}', True),
        ({"type": "json_field", "path": "a.0", "equals": 2}, '```json\n{"a": [2]}\n```', True),
        ({"type": "json_field", "path": "a.1", "equals": 2}, '{"a": [2]}', False),
        ({"type": "json_field", "path": "a", "equals": 2}, "not json", False),
    ],
)
def test_checks(check, text, met):
    assert checks.evaluate(checks.validate(check), text)[0] is met


@pytest.mark.parametrize(
    ("check", "field"),
    [
        ({"type": "exec", "code": "1"}, "check.type"),
        ({"type": "regex", "pattern": "("}, "check.pattern"),
        ({"type": "contains"}, "check.value"),
        ({"type": "number", "value": "x"}, "check.value"),
        ({"type": "json_field", "path": "a"}, "check.equals"),
    ],
)
def test_invalid_checks_name_the_field(check, field):
    with pytest.raises(checks.CheckError) as caught:
        checks.validate(check)
    assert caught.value.field == field


def test_scale_and_checked_criteria_through_the_engine(sim):
    from grading import engine
    from grading.judges.client import JudgeSettings
    from grading.judges.simulator import simulated_scale
    from rubrics.compiler import SCALE_SCHEMA, SYSTEM_TEMPLATE, USER_TEMPLATE, VERDICT_SCHEMA

    spec = {
        "judge": {
            "system_template": SYSTEM_TEMPLATE,
            "user_template": USER_TEMPLATE,
            "output_schema": VERDICT_SCHEMA,
            "scale_output_schema": SCALE_SCHEMA,
        },
        "aggregation": {"method": "healthbench"},
        "criteria": [
            {
                "id": 1,
                "points": 4,
                "kind": "scale",
                "text": "Explains hydration electrolytes vomiting",
                "scale": {"descriptors": ["none", "some", "most", "all", "superb"]},
            },
            {
                "id": 2,
                "points": 2,
                "kind": "checked",
                "text": "Says 911",
                "check": checks.validate({"type": "contains", "value": "911"}),
            },
        ],
    }
    response = "Hydration with electrolytes matters. Call 911 if confused."
    graded = engine.grade_now(
        spec,
        JudgeSettings(base_url=sim.url, model="m"),
        messages=[{"role": "user", "content": "I keep vomiting"}],
        response=response,
    )
    level, _ = simulated_scale("Explains hydration electrolytes vomiting", response, 5)
    assert level == 1 + round(2 / 3 * 4)  # 2 of 3 key words
    assert graded[0].value == pytest.approx((level - 1) / 4)
    assert graded[1].outcome == "met" and not graded[1].judged
    assert sim.stats.requests == 1  # the checked criterion made no judge call
    result = scoring.score(spec, {g.criterion_id: g.as_outcome() for g in graded})
    assert result.raw == pytest.approx((4 * graded[0].value + 2) / 6)
