"""Each lint rule is right at least 8 times in 10 on a labelled set of real rubrics."""

from __future__ import annotations

from tests.lint_labels import precision

FLOOR = 0.8


def test_every_rule_that_fires_is_right_at_least_eight_times_in_ten():
    figures = precision()
    assert set(figures) >= {"vague", "double_barreled", "long", "could_be_checked"}
    low = {code: f for code, f in figures.items() if f["warnings"] and f["precision"] < FLOOR}
    assert not low, low


def test_numbers_in_reasoning_citations_and_dates_are_not_checkable_literals():
    from rubrics import lint

    for text in (
        "Identifies the Noncompetition Agreement Act, M.G.L. c. 149, § 24L, as governing",
        "Flags the December 2026 swap expiry and the floating-rate exposure",
        "Treats ValueMart's 31% share and the top five's 62% as a concentration risk",
        "Shows interest coverage falling to about 1.7x after roughly $6M of extra interest",
    ):
        assert not [w for w in lint.lint([lint.Item(0, text, 1.0)]) if w.code == "could_be_checked"]
