"""Samples and panels combine by a documented rule (grading.services.TIE_RULE)."""

from grading.services import combine, combined_outcomes
from rubrics.scoring import Outcome

MET, UNMET, ERR = Outcome("met"), Outcome("unmet"), Outcome("error")


def test_majority_wins_and_a_tie_goes_to_the_first():
    assert combine([MET, UNMET, UNMET]) == Outcome("unmet")
    assert combine([UNMET, MET, MET]) == Outcome("met")
    assert combine([MET, UNMET]) == MET
    assert combine([UNMET, MET]) == UNMET


def test_any_error_is_an_error_never_unmet():
    assert combine([MET, ERR, MET]).outcome == "error"


def test_scale_samples_take_the_mean():
    got = combine([Outcome("met", 1.0), Outcome("unmet", 0.0), Outcome("met", 0.5)])
    assert got.value == 0.5 and got.outcome == "met"


def test_panel_of_judges_each_with_samples():
    rows = [
        # criterion 1: lead judge (rater 10) met twice; rater 20 unmet, unmet; rater 30 unmet
        (1, 10, 0, "met", None),
        (1, 10, 1, "met", None),
        (1, 20, 0, "unmet", None),
        (1, 20, 1, "unmet", None),
        (1, 30, 0, "unmet", None),
        (1, 30, 1, "met", None),  # tie within rater 30: sample 0 decides (unmet)
        # criterion 2: two judges disagree: the lead decides
        (2, 10, 0, "unmet", None),
        (2, 20, 0, "met", None),
    ]
    got = combined_outcomes(rows, [10, 20, 30])
    assert got[1].outcome == "unmet"
    got = combined_outcomes(rows[6:], [10, 20])
    assert got[2].outcome == "unmet"
    assert combined_outcomes(rows[6:], [20, 10])[2].outcome == "met"
