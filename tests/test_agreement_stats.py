"""Agreement and calibration figures equal the reference libraries on fixed data, and a small
example worked by hand."""

from __future__ import annotations

import krippendorff
import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score, f1_score
from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa

from annotation import stats
from annotation.stats import Rating

# Three raters, three responses, one criterion; worked by hand below.
HAND = [
    Rating(1, 1, 10, "met"),
    Rating(2, 1, 10, "met"),
    Rating(3, 1, 10, "unmet"),
    Rating(1, 2, 10, "unmet"),
    Rating(2, 2, 10, "unmet"),
    Rating(3, 2, 10, "unmet"),
    Rating(1, 3, 10, "met"),
    Rating(2, 3, 10, "unmet"),
    Rating(3, 3, 10, "met"),
]


def test_hand_worked_example():
    a = stats.agreement(HAND)
    # Pairs agreeing per item: 1 of 3, 3 of 3, 1 of 3 -> (1/3 + 1 + 1/3) / 3 = 5/9.
    assert a.overall.percent == pytest.approx(5 / 9)
    # Raters 1 and 2: met,unmet,met vs met,unmet,unmet. p_o = 2/3; p_e = 2/3*1/3 + 1/3*2/3
    # = 4/9; kappa = (2/3 - 4/9) / (1 - 4/9) = 2/5.
    pair = next(p for p in a.pairs if (p.a, p.b) == (1, 2))
    assert pair.percent == pytest.approx(2 / 3)
    assert pair.kappa == pytest.approx(0.4)
    # Raters 2 and 3: met,unmet,unmet vs unmet,unmet,met. p_o = 1/3; both say met 1/3 of the
    # time, so p_e = 1/9 + 4/9 = 5/9; kappa = (1/3 - 5/9) / (4/9) = -1/2.
    assert next(p for p in a.pairs if (p.a, p.b) == (2, 3)).kappa == pytest.approx(-0.5)
    # Fleiss: P_i = 1/3, 1, 1/3 -> P = 5/9; p_met = 4/9, p_unmet = 5/9 -> P_e = 41/81;
    # kappa = (5/9 - 41/81) / (1 - 41/81) = (45 - 41) / (81 - 41) = 0.1.
    assert a.overall.fleiss == pytest.approx(0.1)
    # Krippendorff (nominal): each item adds its ordered pairs / (3 - 1) to the coincidences:
    # o(met,met) = 2, o(met,unmet) = o(unmet,met) = 2, o(unmet,unmet) = 3; n = 9, n_met = 4,
    # n_unmet = 5. alpha = 1 - (n - 1) * 4 / (2 * n_met * n_unmet) = 1 - 32/40 = 0.2.
    assert a.overall.alpha == pytest.approx(0.2)
    # Rater 1 agrees with the others on 4 of 6 pairings.
    assert next(r for r in a.per_rater if r.rater_id == 1).percent == pytest.approx(4 / 6)


def _random_ratings(seed: int, raters: int = 4, responses: int = 40, criteria: int = 3):
    rng = np.random.default_rng(seed)
    out = []
    outcomes = ["met", "unmet", "na"]
    for c in range(criteria):
        for resp in range(responses):
            truth = rng.integers(0, 2)
            for r in range(raters):
                if rng.random() < 0.1:
                    continue  # some raters skip some items
                o = truth if rng.random() > 0.25 else rng.integers(0, 3)
                out.append(Rating(r, resp, c, outcomes[o]))
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_figures_equal_the_reference_libraries(seed):
    ratings = _random_ratings(seed)
    a = stats.agreement(ratings)
    raters = sorted({r.rater_id for r in ratings})
    for c in {r.criterion_id for r in ratings}:
        rows = [r for r in ratings if r.criterion_id == c]
        responses = sorted({r.response_id for r in rows})
        matrix = np.full((len(raters), len(responses)), np.nan)
        for r in rows:
            matrix[raters.index(r.rater_id), responses.index(r.response_id)] = stats.CODES[
                r.outcome
            ]
        expected = krippendorff.alpha(reliability_data=matrix, level_of_measurement="nominal")
        assert a.per_criterion[c].alpha == pytest.approx(expected)
        # Fleiss over the items every rater rated.
        full = matrix[:, ~np.isnan(matrix).any(axis=0)].T.astype(int)
        table, _ = aggregate_raters(full, n_cat=3)
        assert a.per_criterion[c].fleiss == pytest.approx(fleiss_kappa(table))
        assert a.per_criterion[c].fleiss_items == len(full)
    for pair in a.pairs:
        shared = {
            (r.criterion_id, r.response_id): r.outcome for r in ratings if r.rater_id == pair.a
        }
        other = {
            (r.criterion_id, r.response_id): r.outcome for r in ratings if r.rater_id == pair.b
        }
        keys = sorted(shared.keys() & other.keys())
        assert pair.items == len(keys)
        assert pair.kappa == pytest.approx(
            cohen_kappa_score([shared[k] for k in keys], [other[k] for k in keys])
        )


def test_ordinal_alpha_for_scale_values():
    values = [[0.0, 0.5, 1.0, 0.5], [0.0, 0.5, 1.0, 1.0], [0.5, 0.5, 1.0, np.nan]]
    ratings = [
        Rating(r, item, 7, "met", v)
        for r, row in enumerate(values)
        for item, v in enumerate(row)
        if not np.isnan(v)
    ]
    a = stats.agreement(ratings)
    expected = krippendorff.alpha(reliability_data=np.array(values), level_of_measurement="ordinal")
    assert a.per_criterion[7].alpha == pytest.approx(expected)
    assert 7 in a.ordinal


def test_calibration_equals_sklearn_and_the_interval_holds_the_point():
    rng = np.random.default_rng(5)
    labels = np.array(["met", "unmet", "na"])
    gold, judge = {}, {}
    for resp in range(200):
        for c in range(3):
            g = labels[rng.choice(3, p=[0.5, 0.4, 0.1])]
            gold[(resp, c)] = g
            judge[(resp, c)] = g if rng.random() < 0.8 else labels[rng.integers(0, 3)]
    cal = stats.calibration(judge, gold)
    keys = sorted(gold)
    yt, yp = [gold[k] for k in keys], [judge[k] for k in keys]
    assert cal.macro_f1 == pytest.approx(f1_score(yt, yp, labels=["met", "unmet"], average="macro"))
    assert cal.macro_f1_low < cal.macro_f1 < cal.macro_f1_high
    # the bootstrap's own F1 on the full sample is sklearn's figure
    index = {x: i for i, x in enumerate(stats.LABELS)}
    cells = np.array([index[g] * 3 + index[j] for g, j in zip(yt, yp, strict=True)])
    counts = np.bincount(cells, minlength=9).reshape(3, 3)
    assert stats._macro_f1_from_counts(counts) == pytest.approx(cal.macro_f1)
    c0 = cal.per_criterion[0]
    k0 = [k for k in keys if k[1] == 0]
    t0, p0 = [gold[k] for k in k0], [judge[k] for k in k0]
    assert c0.kappa == pytest.approx(cohen_kappa_score(t0, p0))
    assert c0.f1 == pytest.approx(f1_score(t0, p0, labels=["met"], average="macro"))
    assert sum(map(sum, c0.confusion)) == len(k0)
    assert c0.confusion[0][0] == sum(1 for t, p in zip(t0, p0, strict=True) if t == p == "met")


@pytest.mark.parametrize("seed", range(6))
def test_kappa_equals_scikit_learns_on_any_labels(seed):
    """stats.kappa counts a contingency table for statsmodels; scikit-learn's cohen_kappa_score
    is the reference, on codes, scale values x 1000 and strings alike."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 60))
    alphabet = [[0, 1, 2], [0, 250, 500, 750, 1000], ["met", "unmet", "na"]][seed % 3]
    a = [alphabet[i] for i in rng.integers(0, len(alphabet), n)]
    b = [x if rng.random() < 0.6 else alphabet[rng.integers(0, len(alphabet))] for x in a]
    assert stats.kappa(a, b) == pytest.approx(cohen_kappa_score(a, b))


def test_kappa_is_none_when_undefined():
    assert stats.kappa([], []) is None
    assert stats.kappa([1, 1, 1], [1, 1, 1]) is None  # one label throughout: no chance term
    assert stats.kappa([0, 1], [1, 0]) == pytest.approx(-1.0)


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("level", ["nominal", "ordinal"])
def test_pair_figures_equal_kappa_on_each_pair(seed, level):
    """pair_figures computes every pair of raters at once; each figure is the one `kappa` and
    counting give on that pair's shared items, to the last bit, whatever is missing."""
    rng = np.random.default_rng(seed)
    raters, items = int(rng.integers(2, 10)), int(rng.integers(1, 50))
    if level == "nominal":
        alphabet = np.array([0, 1, 2])
    else:  # scale values x 1000, up to eleven points: pairs with eight labels or more too
        alphabet = np.round(np.linspace(0, 1, int(rng.integers(2, 12))) * 1000).astype(int)
    truth = rng.integers(0, len(alphabet), items)
    noisy = np.where(
        rng.random((raters, items)) < 0.7, truth, rng.integers(0, len(alphabet), (raters, items))
    )
    labels = alphabet[noisy]
    rated = rng.random((raters, items)) < rng.uniform(0.2, 1.0)
    rated[0] = rated[1] = True  # a pair that shares everything
    if seed % 4 == 0:
        labels[2 % raters] = labels[3 % raters] = alphabet[0]  # one label throughout
    figures = stats.pair_figures(labels, rated)
    for a in range(raters):
        for b in range(raters):
            if a == b:
                continue
            both = rated[a] & rated[b]
            assert figures.shared[a, b] == both.sum()
            assert figures.agree[a, b] == (labels[a, both] == labels[b, both]).sum()
            expected = stats.kappa(labels[a, both], labels[b, both])
            if expected is None:
                assert np.isnan(figures.kappa[a, b])
            else:
                assert figures.kappa[a, b] == expected


def test_pairs_without_shared_items_have_no_figures():
    ratings = [Rating(1, 1, 10, "met"), Rating(2, 2, 10, "met"), Rating(3, 1, 10, "met")]
    a = stats.agreement(ratings)
    apart = next(p for p in a.pairs if (p.a, p.b) == (1, 2))
    assert (apart.items, apart.percent, apart.kappa) == (0, None, None)
    together = next(p for p in a.pairs if (p.a, p.b) == (1, 3))
    assert (together.items, together.percent, together.kappa) == (1, 1.0, None)
    assert a.overall.mean_kappa is None  # no pair shares two items
    assert [r.items for r in a.per_rater] == [1, 1, 1]
    assert next(r for r in a.per_rater if r.rater_id == 2).percent is None


def test_pair_figures_of_stacked_sets_are_each_sets_own():
    """Criteria stacked (sets x raters x items, padded with unrated items) give each one's
    figures."""
    rng = np.random.default_rng(11)
    labels = rng.integers(0, 3, (4, 6, 30)) * np.array([1, 1, 250, 1])[:, None, None]
    rated = rng.random((4, 6, 30)) < 0.4
    rated[2, :, 20:] = False  # a shorter set, padded
    stacked = stats.pair_figures(labels, rated)
    for i in range(4):
        alone = stats.pair_figures(labels[i], rated[i])
        assert (stacked.shared[i] == alone.shared).all()
        assert (stacked.agree[i] == alone.agree).all()
        assert np.array_equal(stacked.kappa[i], alone.kappa, equal_nan=True)


def test_agreement_takes_plain_rows_as_ratings():
    """The agreement page passes the database's rows (tuples in Rating's order) as they are."""
    ratings = _random_ratings(4) + [Rating(9, 1, 5, "met", 0.5), Rating(8, 1, 5, "unmet", 1.0)]
    assert stats.agreement([tuple(r) for r in ratings]) == stats.agreement(ratings)
