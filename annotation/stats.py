"""Agreement and calibration figures over plain rows, computed with reference libraries.

Pure functions: no database. `selectors` turns verdicts into `Rating`s and gold into a dict;
everything here is numbers. Outcomes are coded met=1, unmet=0, na=2 (nominal); scale values
are ordinal.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from functools import cache
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
from threadpoolctl import ThreadpoolController

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
    values = matrix[~np.isnan(matrix)]
    if len(np.unique(values)) < 2:
        return None  # one value in the domain: alpha has no expected disagreement
    pairable = (~np.isnan(matrix)).sum(axis=0) >= 2
    if not pairable.any():
        return None
    return _finite(krippendorff.alpha(reliability_data=matrix, level_of_measurement=level))


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
    return _percent(counts)


def _percent(counts: np.ndarray) -> float:
    """counts: items (rated at least twice) x labels."""
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

    The same figures as `kappa` on each pair's shared items, for all pairs together: fifty
    raters make 1,275 pairs, and a contingency table for each costs more than the arrays
    here. The arithmetic is statsmodels' (observed share of agreement, and the chance
    agreement summed over labels in order), so the kappas are the same numbers."""
    present = rated.astype(float)
    shared = (present @ present.swapaxes(-1, -2)).astype(int)
    agree = np.zeros_like(shared)
    kappas = np.full(shared.shape, np.nan)
    diagonal = np.arange(shared.shape[-1])
    agree[..., diagonal, diagonal] = shared[..., diagonal, diagonal]
    # With many raters and a small overlap most pairs share no item: only the others count,
    # on the items rated at least twice.
    *lead, first, second = np.nonzero(np.triu(shared > 0, k=1))
    if not len(first):
        return PairFigures(shared=shared, agree=agree, kappa=kappas)
    multi = rated.sum(axis=-2) >= 2
    multi = multi.any(axis=tuple(range(multi.ndim - 1)))
    labels, rated = labels[..., multi], rated[..., multi]
    values, codes = np.unique(labels[rated], return_inverse=True)
    coded = np.zeros(labels.shape, dtype=np.intp)
    coded[rated] = codes
    both = rated[(*lead, first)] & rated[(*lead, second)]  # pairs x items
    pair, item = np.nonzero(both)
    a_codes = coded[(*lead, first)][pair, item]
    b_codes = coded[(*lead, second)][pair, item]
    n, k = len(first), len(values)
    same = np.bincount(pair[a_codes == b_codes], minlength=n)
    # Each rater's marginals in the pair's contingency table.
    a_gave = np.bincount(pair * k + a_codes, minlength=n * k).reshape(n, k)
    b_gave = np.bincount(pair * k + b_codes, minlength=n * k).reshape(n, k)
    items = shared[(*lead, first, second)]
    expected = np.zeros(n)
    for label in range(k):
        # Labels a pair did not use add exact zeros: the sum is statsmodels' own.
        expected += (b_gave[:, label] / items) * (a_gave[:, label] / items)
    with np.errstate(invalid="ignore", divide="ignore"):
        pair_kappa = (same / items - expected) / (1 - expected)
    # numpy sums eight labels or more pairwise, not in order; so rare a table (a scale with
    # many points) is left to `kappa`, so that every figure is the same to the last bit.
    for p in np.flatnonzero(((a_gave > 0) | (b_gave > 0)).sum(axis=1) >= 8):
        mine = pair == p
        alone = kappa(values[a_codes[mine]], values[b_codes[mine]])
        pair_kappa[p] = np.nan if alone is None else alone
    for a, b in ((first, second), (second, first)):
        agree[(*lead, a, b)] = same
        kappas[(*lead, a, b)] = pair_kappa
    return PairFigures(shared=shared, agree=agree, kappa=kappas)


def _figures(by_item: dict, raters: list[int], ordinal: bool) -> Figures:
    """by_item: item -> {rater: code or value}."""
    index = {r: i for i, r in enumerate(raters)}
    matrix = np.full((len(raters), len(by_item)), np.nan)
    for j, by_rater in enumerate(by_item.values()):
        for r, v in by_rater.items():
            matrix[index[r], j] = v
    return _matrix_figures(matrix, ordinal)[0]


def _matrix_figures(matrix: np.ndarray, ordinal: bool) -> tuple[Figures, PairFigures]:
    """matrix: raters x items of codes (or scale values when ordinal), nan where not rated."""
    return _stacked_figures(matrix[None], [matrix.shape[1]], [ordinal])[0]


# Cells (criteria x raters x items) worked on together: enough for a version's criteria at
# once, few enough that a version of thousands of responses does not take gigabytes.
STACK_CELLS = 2_000_000


def _criteria_figures(
    matrix: np.ndarray, criterion_of: np.ndarray, ordinal: set[int]
) -> dict[int, Figures]:
    """Figures of each criterion. matrix: raters x items of every criterion (codes, or scale
    values for ordinal ones), nan where not rated; criterion_of: each column's criterion.
    Criteria are stacked, their items padded with unrated ones, and worked on together: a
    criterion alone is too small a matrix to pay for numpy's calls."""
    criteria = np.unique(criterion_of).tolist()
    columns = [np.flatnonzero(criterion_of == c) for c in criteria]
    width = max((len(cols) for cols in columns), default=0)
    step = max(1, STACK_CELLS // max(1, matrix.shape[0] * width))
    out = {}
    for start in range(0, len(criteria), step):
        chunk = range(start, min(start + step, len(criteria)))
        grid = np.full((len(chunk), matrix.shape[0], width), np.nan)
        for i, k in enumerate(chunk):
            grid[i, :, : len(columns[k])] = matrix[:, columns[k]]
        figures = _stacked_figures(
            grid, [len(columns[k]) for k in chunk], [criteria[k] in ordinal for k in chunk]
        )
        for k, (fig, _) in zip(chunk, figures, strict=True):
            out[criteria[k]] = fig
    return out


def _stacked_figures(
    grid: np.ndarray, widths: list[int], ordinal: list[bool]
) -> list[tuple[Figures, PairFigures]]:
    """grid: sets x raters x items, nan where not rated (and in the padding past each set's
    width); each set's figures, and its pairs'."""
    rated = ~np.isnan(grid)
    scale = np.array(ordinal, dtype=bool)[:, None, None]
    labels = np.nan_to_num(np.where(scale, np.round(grid * 1000), grid)).astype(int)
    per_item = rated.sum(axis=1)
    # Percent agreement: pairs agreeing on an item over its pairs. The counts are whole
    # numbers, exact in any order, so all labels of all sets are counted together.
    agreeing = np.zeros(per_item.shape, dtype=np.int64)
    for label in np.unique(labels[rated]):
        count = (rated & (labels == label)).sum(axis=1)
        agreeing += count * (count - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = agreeing / (per_item * (per_item - 1))
    # Fleiss' kappa counts outcome codes.
    table = np.stack([(rated & (labels == code)).sum(axis=1) for code in range(3)], axis=-1)
    pairs = pair_figures(labels, rated)
    upper = np.triu(pairs.shared >= 2, k=1)
    out = []
    for i, (width, scaled) in enumerate(zip(widths, ordinal, strict=True)):
        fig = Figures(items=width, ratings=int(per_item[i].sum()))
        multi = per_item[i, :width] >= 2
        if multi.any():
            fig.percent = float(shares[i, :width][multi].mean())
        if not scaled:
            fig.fleiss, fig.fleiss_items = _fleiss(table[i, :width])
        matrix = grid[i, :, :width]
        fig.alpha = alpha(matrix[rated[i].any(axis=1)], "ordinal" if scaled else "nominal")
        # Only pairs of raters with at least two items in common count towards the mean.
        kappas = pairs.kappa[i][upper[i]]
        kappas = kappas[~np.isnan(kappas)]
        fig.mean_kappa = float(np.mean(kappas)) if kappas.size else None
        out.append((fig, PairFigures(pairs.shared[i], pairs.agree[i], pairs.kappa[i])))
    return out


def _grid(rater: np.ndarray, item: np.ndarray, value: np.ndarray, n_raters: int):
    """raters x items from one row per rating: items in order of first appearance, the last
    of repeated ratings of an item by a rater wins (as dict assignment would), nan where not
    rated. Returns the matrix and the item keys in column order."""
    keys, first, inverse = np.unique(item, return_index=True, return_inverse=True)
    order = np.argsort(first)
    column = np.empty_like(order)
    column[order] = np.arange(len(order))
    column = column[inverse]
    cell = column * n_raters + rater
    _, last = np.unique(cell[::-1], return_index=True)
    last = len(cell) - 1 - last
    matrix = np.full((n_raters, len(keys)), np.nan)
    matrix[rater[last], column[last]] = value[last]
    return matrix, keys[order]


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


@cache
def _blas() -> ThreadpoolController:
    return ThreadpoolController()  # finds the loaded BLAS libraries once (a millisecond)


def agreement(ratings: list[Rating]) -> Agreement:
    """Agreement per criterion, overall (items are (response, criterion) pairs), per pair of
    raters (Cohen's kappa) and per rater against the others."""
    # The matrices are small (raters x items): OpenBLAS would start threads on every core
    # and spin them, costing several times the product itself on a busy server.
    with _blas().limit(limits=1, user_api="blas"):
        return _agreement(ratings)


def _agreement(ratings: list[Rating]) -> Agreement:
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
    matrix, keys = _grid(rater[counted], item[counted], scores[counted], len(raters))
    per_criterion = _criteria_figures(matrix, keys // base, ordinal)
    # Overall, items are (criterion, response) with outcome codes (scale criteria join
    # through theirs): nominal criteria first, in order of appearance, then scale ones.
    _, criterion_first, criterion_of = np.unique(
        np.where(is_ordinal, -1, criterion), return_index=True, return_inverse=True
    )
    order = np.lexsort((np.arange(count), criterion_first[criterion_of], is_ordinal))
    pooled, _ = _grid(rater[order], item[order], code[order], len(raters))
    overall, figures = _matrix_figures(pooled, ordinal=False)

    items_of = dict(zip(raters, (~np.isnan(pooled)).sum(axis=1).tolist(), strict=True))
    first, second = np.triu_indices(len(raters), k=1)  # the order of combinations(raters, 2)
    shared = figures.shared[first, second].tolist()
    agree = figures.agree[first, second].tolist()
    kappas = figures.kappa[first, second].tolist()
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
