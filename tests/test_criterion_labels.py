"""Chart labels for criteria are cut between words, never inside one."""

from __future__ import annotations

from grading.selectors import CriterionRate


def label(text: str) -> str:
    return CriterionRate(1, 2, text, 1.0, 0, 0, 0).label


def test_a_long_criterion_is_cut_between_words_with_an_ellipsis():
    text = "Advises calling emergency services immediately for crushing chest pain"
    assert label(text) == "3. Advises calling emergency services…"
    assert label("Short  criterion\ntext") == "3. Short criterion text"
    assert label("x" * 60) == "3. " + "x" * 40 + "…"
