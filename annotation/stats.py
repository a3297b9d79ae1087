"""Agreement and calibration figures over plain rows, computed with reference libraries.

Pure functions: no database. `selectors` turns verdicts into `Rating`s and gold into a dict;
everything here is numbers. Outcomes are coded met=1, unmet=0, na=2 (nominal); scale values
are ordinal.

`agreement` counts its tables from the ratings in bulk (every criterion and every pair of
raters at once) and hands them to the libraries, or, for the pairs' Cohen's kappa, follows
statsmodels' arithmetic step by step: tests hold every figure to the libraries' own on the
same data, to the last bit for the pairs.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import compress
from typing import NamedTuple

import krippendorff
import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)
from statsmodels.stats.inter_rater import cohens_kappa, fleiss_kappa

CODES = {"unmet": 0, "met": 1, "na": 2}
LABELS = ["met", "unmet", "na"]


class Rating(NamedTuple):
    """A tuple, so that rows of a values_list make them cheaply and agreement can transpose
    thousands of them at once."""

    rater_id: int
    response_id: int
    criterion_id: int
    outcome: str
    value: float | None = None


def _finite(x) -> float | None:
    x = float(x)
    return None if np.isnan(x) else x


def kappa(a, b) -> float | None:
    """Cohen's kappa; None when it is undefined (both raters gave one same label throughout).

    statsmodels computes it from the two raters' contingency table. It equals scikit-learn's
    cohen_kappa_score (the tests hold them together) at a twentieth of the cost, which counts:
    the agreement page asks for a kappa per pair of raters, and fifty annotators make 1,275
    pairs."""
    a, b = np.asarray(a), np.asarray(b)
    if len(a) == 0:
        return None
    labels, codes = np.unique(np.concatenate([a, b]), return_inverse=True)
    k = len(labels)
    table = np.bincount(codes[: len(a)] * k + codes[len(a) :], minlength=k * k).reshape(k, k)
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        return _finite(cohens_kappa(table, return_results=False))


def alpha(matrix: np.ndarray, level: str = "nominal") -> float | None:
    """Krippendorff's alpha over raters x items (nan = not rated); None when undefined."""
    if matrix.size == 0 or matrix.shape[0] < 2:
        return None
    domain = np.unique(matrix[~np.isnan(matrix)])
    # Counted as krippendorff counts them from the matrix.
    counts = (matrix.T[..., np.newaxis] == domain[np.newaxis, np.newaxis, :]).sum(axis=1)
    return _alpha(counts, domain, level)


def _alpha(counts: np.ndarray, domain: np.ndarray, level: str) -> float | None:
    """Krippendorff's alpha from items x values counts (of the values in domain, in order)."""
    if len(domain) < 2:
        return None  # one value in the domain: alpha has no expected disagreement
    if not (counts.sum(axis=1) >= 2).any():
        return None  # no item rated twice
    return _finite(
        krippendorff.alpha(value_counts=counts, value_domain=domain, level_of_measurement=level)
    )


def fleiss(items: list[list[int]]) -> tuple[float | None, int]:
    """Fleiss' kappa over items rated by the same number of raters (the most common count,
    at least 2); returns it and how many items it used."""
    rated = [codes for codes in items if len(codes) >= 2]
    table = np.zeros((len(rated), 3), dtype=int)
    for row, codes in zip(table, rated, strict=True):
        row += np.bincount(codes, minlength=3)
    return _fleiss(table)


def _fleiss(table: np.ndarray) -> tuple[float | None, int]:
    """table: items x (unmet, met, na) counts."""
    n = table.sum(axis=1)
    sizes, times = np.unique(n[n >= 2], return_counts=True)
    if not len(sizes):
        return None, 0
    # The most common number of raters; of equally common ones, the largest.
    size = max(zip(times.tolist(), sizes.tolist(), strict=True))[1]
    rows = table[n == size]
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        return _finite(fleiss_kappa(rows, method="fleiss")), len(rows)


def percent_agreement(items: list[list[int]]) -> float | None:
    """Mean over items (rated at least twice) of the share of rater pairs that agree."""
    rated = [codes for codes in items if len(codes) >= 2]
    if not rated:
        return None
    flat = np.concatenate([np.asarray(c) for c in rated])
    _, category = np.unique(flat, return_inverse=True)
    row = np.repeat(np.arange(len(rated)), [len(c) for c in rated])
    counts = np.zeros((len(rated), category.max() + 1))
    np.add.at(counts, (row, category), 1)
    n = counts.sum(axis=1)
    shares = (counts * (counts - 1)).sum(axis=1) / (n * (n - 1))
    return float(shares.mean())


@dataclass
class Figures:
    items: int = 0
    ratings: int = 0
    percent: float | None = None
    fleiss: float | None = None
    fleiss_items: int = 0
    alpha: float | None = None
    mean_kappa: float | None = None


@dataclass
class Pair:
    a: int
    b: int
    items: int
    percent: float | None
    kappa: float | None


@dataclass
class RaterFigures:
    rater_id: int
    items: int
    percent: float | None  # agreement with the others, pooled over pairs
    mean_kappa: float | None


@dataclass
class Agreement:
    raters: list[int]
    overall: Figures
    per_criterion: dict[int, Figures]
    pairs: list[Pair]
    per_rater: list[RaterFigures]
    ordinal: set[int] = field(default_factory=set)

    def kappa_matrix(self) -> list[list[float | None]]:
        index = {r: i for i, r in enumerate(self.raters)}
        grid: list[list[float | None]] = [[None] * len(self.raters) for _ in self.raters]
        for i in range(len(self.raters)):
            grid[i][i] = 1.0
        for p in self.pairs:
            if p.kappa is not None:  # most pairs share nothing
                grid[index[p.a]][index[p.b]] = grid[index[p.b]][index[p.a]] = p.kappa
        return grid


@dataclass
class PairFigures:
    """Every pair of raters at once, as raters x raters arrays: items both rated (`shared`),
    items on which they gave the same label (`agree`), and Cohen's kappa on their shared items
    (nan where it is undefined: no shared item, or one same label throughout)."""

    shared: np.ndarray
    agree: np.ndarray
    kappa: np.ndarray


def pair_figures(labels: np.ndarray, rated: np.ndarray) -> PairFigures:
    """labels: raters x items of integer labels (anything where not rated); rated: raters x
    items, true where rated. Either may have leading dimensions (one set of raters x items
    for each criterion, say): the figures have them too. On the diagonal a rater is paired
    with itself: its items, all agreeing, and no kappa.

    The same figures as `kappa` and counting give on each pair's shared items; see _pairs."""
    *lead, n_raters, n_items = rated.shape
    sets = int(np.prod(lead, dtype=int))
    where, rater, column = np.nonzero(rated.reshape(sets, n_raters, n_items))
    order = np.lexsort((rater, where * n_items + column))
    item = (where * n_items + column)[order]
    found = _pairs(
        np.repeat(np.arange(sets), n_items),
        rater[order],
        item,
        labels.reshape(sets, n_raters, n_items)[where, rater, column][order],
        n_raters,
    )
    shape = (sets, n_raters, n_raters)
    shared, agree = np.zeros(shape, dtype=int), np.zeros(shape, dtype=int)
    kappas = np.full(shape, np.nan)
    diagonal = np.arange(n_raters)
    own = rated.reshape(sets, n_raters, n_items).sum(axis=-1)
    shared[:, diagonal, diagonal] = agree[:, diagonal, diagonal] = own
    for a, b in (("a", "b"), ("b", "a")):
        at = (found["set"], found[a], found[b])
        shared[at], agree[at], kappas[at] = found["shared"], found["agree"], found["kappa"]
    return PairFigures(
        shared.reshape(*lead, n_raters, n_raters),
        agree.reshape(*lead, n_raters, n_raters),
        kappas.reshape(*lead, n_raters, n_raters),
    )


def _pairs(set_of: np.ndarray, rater: np.ndarray, item: np.ndarray, label: np.ndarray, n_raters):
    """Pairs of raters that share items, within each set of items, from one rating per rater
    and item sorted by item then rater: each pair's set, raters a < b, shared items, items
    agreed on and Cohen's kappa (nan where undefined), sorted by set, a, b.

    Fifty raters make 1,275 pairs and with a small overlap most share nothing: only pairs
    met on an item are counted, with bincount, not a contingency table each. The kappa is
    statsmodels' arithmetic (observed share of agreement, and the chance agreement summed
    over the labels in order), so it is the same number as `kappa`'s."""
    per_item = np.bincount(item, minlength=len(set_of))
    first, second = [], []
    for step in range(1, int(per_item.max(initial=0))):
        together = np.flatnonzero(item[:-step] == item[step:])
        first.append(together)
        second.append(together + step)
    ea = np.concatenate(first) if first else np.zeros(0, dtype=int)
    eb = np.concatenate(second) if second else np.zeros(0, dtype=int)
    where = set_of[item[ea]]
    key = (where * n_raters + rater[ea]) * n_raters + rater[eb]
    keys, pair = np.unique(key, return_inverse=True)
    n = len(keys)
    # Labels numbered within each set, in order: the chance term sums over them so.
    lowest = label.min(initial=0)
    span = int(label.max(initial=0)) - lowest + 1
    local, code = np.unique(set_of[item] * span + (label - lowest), return_inverse=True)
    code = code - np.searchsorted(local // span, set_of[item])
    k = int(code.max(initial=-1)) + 1
    a_code, b_code = code[ea], code[eb]
    shared = np.bincount(pair, minlength=n)
    same = np.bincount(pair[a_code == b_code], minlength=n)
    a_gave = np.bincount(pair * k + a_code, minlength=n * k).reshape(n, k)
    b_gave = np.bincount(pair * k + b_code, minlength=n * k).reshape(n, k)
    with np.errstate(invalid="ignore", divide="ignore"):
        # Labels a pair did not use add exact zeros; cumsum adds in order, as numpy sums
        # statsmodels' few labels.
        terms = (b_gave / shared[:, None]) * (a_gave / shared[:, None])
        expected = np.cumsum(terms, axis=1)[:, -1] if k else np.zeros(n)
        kappas = (same / shared - expected) / (1 - expected)
    # numpy sums eight labels or more pairwise, not in order; so rare a table (a scale with
    # many points) is left to `kappa`, so that every figure is the same to the last bit.
    for p in np.flatnonzero(((a_gave > 0) | (b_gave > 0)).sum(axis=1) >= 8):
        mine = pair == p
        alone = kappa(label[ea[mine]], label[eb[mine]])
        kappas[p] = np.nan if alone is None else alone
    return {
        "set": keys // (n_raters * n_raters),
        "a": keys // n_raters % n_raters,
        "b": keys % n_raters,
        "shared": shared,
        "agree": same,
        "kappa": kappas,
    }


def _ratings(rater, key, score, rank, n_raters):
    """One rating per rater and item (the last of repeated ones wins, as dict assignment
    would), sorted by item then rater. Items are numbered by rank, then in order of first
    appearance. Returns rater, item, score of each rating and the key of each item."""
    keys, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    order = np.lexsort((first, rank[first]))
    number = np.empty_like(order)
    number[order] = np.arange(len(order))
    item = number[inverse]
    _, last = np.unique((item * n_raters + rater)[::-1], return_index=True)
    last = len(item) - 1 - last
    return rater[last], item[last], score[last], keys[order]


def _sets_figures(set_of, rater, item, score, ordinal, n_raters):
    """Figures of each set of items (a criterion's, or all of them): set_of gives each item's
    set, in order; ratings as _ratings gives them; ordinal, per set, whether its scores are
    scale values. Returns the figures of each set and its pairs of raters (see _pairs)."""
    scale = ordinal[set_of[item]]
    label = np.where(scale, np.round(score * 1000), score).astype(int)
    per_item = np.bincount(item, minlength=len(set_of))
    # Percent agreement: pairs agreeing on an item over its pairs. The counts are whole
    # numbers, exact in any order.
    values, code = np.unique(label, return_inverse=True)
    counts = np.bincount(item * len(values) + code, minlength=len(set_of) * len(values))
    counts = counts.reshape(len(set_of), len(values))
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = (counts * (counts - 1)).sum(axis=1) / (per_item * (per_item - 1))
    # Fleiss' kappa counts outcome codes (of sets that are not scales).
    nominal = ~scale
    table = np.bincount(item[nominal] * 3 + label[nominal], minlength=len(set_of) * 3).reshape(
        len(set_of), 3
    )
    pairs = _pairs(set_of, rater, item, label, n_raters)
    out = []
    item_bounds = np.searchsorted(set_of, np.arange(len(ordinal) + 1))
    rating_bounds = np.searchsorted(item, item_bounds)
    pair_bounds = np.searchsorted(pairs["set"], np.arange(len(ordinal) + 1))
    for s, scaled in enumerate(ordinal.tolist()):
        lo, hi = item_bounds[s], item_bounds[s + 1]
        fig = Figures(items=int(hi - lo), ratings=int(per_item[lo:hi].sum()))
        multi = per_item[lo:hi] >= 2
        if multi.any():
            fig.percent = float(shares[lo:hi][multi].mean())
        if not scaled:
            fig.fleiss, fig.fleiss_items = _fleiss(table[lo:hi])
        mine = slice(rating_bounds[s], rating_bounds[s + 1])
        if hi > lo and len(np.unique(rater[mine])) >= 2:
            domain, value = np.unique(score[mine], return_inverse=True)
            tally = np.bincount(
                (item[mine] - lo) * len(domain) + value, minlength=(hi - lo) * len(domain)
            ).reshape(hi - lo, len(domain))
            fig.alpha = _alpha(tally, domain, "ordinal" if scaled else "nominal")
        # Only pairs with at least two items in common count towards the mean kappa.
        these = slice(pair_bounds[s], pair_bounds[s + 1])
        kappas = pairs["kappa"][these][pairs["shared"][these] >= 2]
        kappas = kappas[~np.isnan(kappas)]
        fig.mean_kappa = float(np.mean(kappas)) if kappas.size else None
        out.append(fig)
    return out, pairs


def _by_criterion(ratings: list[Rating]) -> tuple[dict[int, dict], set[int]]:
    by_criterion: dict[int, dict] = defaultdict(lambda: defaultdict(dict))
    ordinal = {r.criterion_id for r in ratings if r.value is not None}
    for r in ratings:
        if r.criterion_id in ordinal:
            if r.value is None:
                continue
            v = r.value
        else:
            v = CODES[r.outcome]
        by_criterion[r.criterion_id][r.response_id][r.rater_id] = v
    return by_criterion, ordinal


def alpha_per_criterion(ratings: list[Rating]) -> dict[int, float | None]:
    """Krippendorff's alpha of each criterion alone (what flags need, without the rest)."""
    by_criterion, ordinal = _by_criterion(ratings)
    raters = sorted({r.rater_id for r in ratings})
    index = {r: i for i, r in enumerate(raters)}
    out = {}
    for c, by_item in by_criterion.items():
        matrix = np.full((len(raters), len(by_item)), np.nan)
        for j, by_rater in enumerate(by_item.values()):
            for r, v in by_rater.items():
                matrix[index[r], j] = v
        used = ~np.isnan(matrix).all(axis=1)
        out[c] = alpha(matrix[used], "ordinal" if c in ordinal else "nominal")
    return out


def agreement(ratings: Sequence[Rating | tuple]) -> Agreement:
    """Agreement per criterion, overall (items are (response, criterion) pairs), per pair of
    raters (Cohen's kappa) and per rater against the others. Ratings may be plain tuples in
    Rating's order, as the database gives them."""
    count = len(ratings)
    columns = list(zip(*ratings, strict=True)) if ratings else [()] * 5
    raters = sorted(set(columns[0]))
    index = {r: i for i, r in enumerate(raters)}
    rater = np.array([index[r] for r in columns[0]], dtype=np.int64)
    response = np.array(columns[1], dtype=np.int64)
    criterion = np.array(columns[2], dtype=np.int64)
    code = np.array([CODES[o] for o in columns[3]], dtype=float)
    value = np.array(columns[4], dtype=float)  # None becomes nan
    # A criterion with any scale value is ordinal; its ratings without one do not count in
    # its own figures.
    ordinal = set(np.unique(criterion[~np.isnan(value)]).tolist())
    is_ordinal = np.isin(criterion, list(ordinal))
    base = int(response.max(initial=0)) + 1
    item = criterion * base + response
    # Each criterion's own figures: scale criteria on their values (ratings without one do
    # not count), the others on outcome codes.
    counted = ~is_ordinal | ~np.isnan(value)
    scores = np.where(is_ordinal, value, code)
    by_criterion = _ratings(
        rater[counted], item[counted], scores[counted], criterion[counted], len(raters)
    )
    criterion_ids, set_of = np.unique(by_criterion[3] // base, return_inverse=True)
    figures, _ = _sets_figures(
        set_of,
        *by_criterion[:3],
        np.isin(criterion_ids, list(ordinal)),
        len(raters),
    )
    per_criterion = dict(zip(criterion_ids.tolist(), figures, strict=True))
    # Overall, items are (criterion, response) with outcome codes (scale criteria join
    # through theirs): nominal criteria first, in order of appearance, then scale ones.
    _, criterion_first, criterion_of = np.unique(
        np.where(is_ordinal, -1, criterion), return_index=True, return_inverse=True
    )
    rank = np.where(is_ordinal, count, criterion_first[criterion_of])
    pooled = _ratings(rater, item, code, rank, len(raters))
    (overall,), found = _sets_figures(
        np.zeros(len(pooled[3]), dtype=int), *pooled[:3], np.array([False]), len(raters)
    )
    items_of = dict(
        zip(raters, np.bincount(pooled[0], minlength=len(raters)).tolist(), strict=True)
    )
    first, second = np.triu_indices(len(raters), k=1)  # the order of combinations(raters, 2)
    # Pairs that share nothing have no figures: place the others.
    index = found["a"] * len(raters) - found["a"] * (found["a"] + 1) // 2 + found["b"]
    index -= found["a"] + 1
    shared, agree = np.zeros(len(first), dtype=int), np.zeros(len(first), dtype=int)
    kappas = np.full(len(first), np.nan)
    shared[index], agree[index], kappas[index] = found["shared"], found["agree"], found["kappa"]
    shared, agree, kappas = shared.tolist(), agree.tolist(), kappas.tolist()
    pairs = list(
        map(
            Pair,
            [raters[i] for i in first.tolist()],
            [raters[j] for j in second.tolist()],
            shared,
            [same / n if n else None for same, n in zip(agree, shared, strict=True)],
            [None if k != k else k for k in kappas],  # nan: undefined
        )
    )
    mine: dict[int, list[Pair]] = defaultdict(list)
    for pair in compress(pairs, shared):  # the pairs that share items
        mine[pair.a].append(pair)
        mine[pair.b].append(pair)
    per_rater = []
    for rater in raters:
        n = sum(p.items for p in mine[rater])
        agreeing = sum(p.percent * p.items for p in mine[rater] if p.percent is not None)
        ks = [p.kappa for p in mine[rater] if p.kappa is not None]
        per_rater.append(
            RaterFigures(
                rater_id=rater,
                items=items_of[rater],
                percent=agreeing / n if n else None,
                mean_kappa=float(np.mean(ks)) if ks else None,
            )
        )
    return Agreement(raters, overall, per_criterion, pairs, per_rater, ordinal)


# --- Calibration: a judge against gold ----------------------------------------------------


@dataclass
class CriterionCalibration:
    criterion_id: int
    items: int
    accuracy: float | None
    precision: float | None
    recall: float | None
    f1: float | None
    kappa: float | None
    # rows: gold met, unmet, na; columns: judge met, unmet, na
    confusion: list[list[int]]


@dataclass
class Calibration:
    items: int
    per_criterion: dict[int, CriterionCalibration]
    macro_f1: float | None
    macro_f1_low: float | None
    macro_f1_high: float | None
    accuracy: float | None
    kappa: float | None


def _macro_f1_from_counts(counts: np.ndarray) -> np.ndarray:
    """Macro F1 of met and unmet from confusion counts (..., 3 gold, 3 judge)."""
    f1s = []
    for label in (0, 1):  # met, unmet in LABELS order
        tp = counts[..., label, label]
        fp = counts[..., :, label].sum(axis=-1) - tp
        fn = counts[..., label, :].sum(axis=-1) - tp
        denom = 2 * tp + fp + fn
        f1s.append(np.divide(2 * tp, denom, out=np.zeros(tp.shape, float), where=denom > 0))
    return (f1s[0] + f1s[1]) / 2


def macro_f1_interval(
    gold: np.ndarray, judge: np.ndarray, resamples: int = 1000, seed: int = 0, level=0.95
) -> tuple[float | None, float | None]:
    """Percentile bootstrap interval of macro F1, resampling items with replacement."""
    n = len(gold)
    if n == 0:
        return None, None
    rng = np.random.default_rng(seed)
    cells = gold * 3 + judge
    stats = np.empty(resamples)
    for i in range(resamples):
        sample = cells[rng.integers(0, n, size=n)]
        stats[i] = _macro_f1_from_counts(np.bincount(sample, minlength=9).reshape(3, 3))
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(stats, [tail, 100 - tail])
    return float(low), float(high)


def calibration(
    judge: dict[tuple[int, int], str], gold: dict[tuple[int, int], str], resamples: int = 1000
) -> Calibration:
    """judge and gold: (response_id, criterion_id) -> outcome. Items in both are compared."""
    shared = sorted(judge.keys() & gold.keys())
    by_criterion: dict[int, list] = defaultdict(list)
    for key in shared:
        by_criterion[key[1]].append(key)
    index = {label: i for i, label in enumerate(LABELS)}
    codes = [0, 1, 2]  # LABELS as integers: sklearn checks integer arrays much faster
    gold_all = np.fromiter((index[gold[k]] for k in shared), dtype=int, count=len(shared))
    judge_all = np.fromiter((index[judge[k]] for k in shared), dtype=int, count=len(shared))
    criterion_of = np.fromiter((k[1] for k in shared), dtype=int, count=len(shared))
    per_criterion = {}
    for criterion_id in sorted(by_criterion):
        mask = criterion_of == criterion_id
        yt, yp = gold_all[mask], judge_all[mask]
        p, r, f, _ = precision_recall_fscore_support(
            yt, yp, labels=[0], average=None, zero_division=0
        )
        per_criterion[criterion_id] = CriterionCalibration(
            criterion_id=criterion_id,
            items=int(mask.sum()),
            accuracy=float(accuracy_score(yt, yp)),
            precision=float(p[0]),
            recall=float(r[0]),
            f1=float(f[0]),
            kappa=kappa(yt, yp),
            confusion=confusion_matrix(yt, yp, labels=codes).tolist(),
        )
    if not shared:
        return Calibration(0, per_criterion, None, None, None, None, None)
    macro = float(f1_score(gold_all, judge_all, labels=[0, 1], average="macro", zero_division=0))
    low, high = macro_f1_interval(gold_all, judge_all, resamples)
    yt, yp = gold_all, judge_all
    return Calibration(
        items=len(shared),
        per_criterion=per_criterion,
        macro_f1=macro,
        macro_f1_low=low,
        macro_f1_high=high,
        accuracy=float(accuracy_score(yt, yp)),
        kappa=kappa(yt, yp),
    )
