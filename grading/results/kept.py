"""Figures of completed runs, kept in the cache under their finish time.

A completed run's verdicts, scores and judge calls no longer change: retrying failed items or
resuming reopens the run (its finish time goes) and finishing again gives it a new one, so a
key with the finish time never serves figures of another state. Counting a HealthBench-sized
run (100,000 verdicts and judge calls, 10,000 scores, a bootstrap over 5,000 tasks) on every
view of its page would cost most of a second; leads open finished runs far more often than
they grade. A run still going is always computed afresh.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from django.core.cache import cache

from grading.models import GradingRun

CACHE_S = 3600


def key(run: GradingRun, name: str) -> str:
    """Where the completed `run`'s figure `name` is kept; "" while it is not completed."""
    if run.status != GradingRun.Status.COMPLETED or run.finished_at is None:
        return ""
    return f"assay:run-{name}:{run.pk}:{run.finished_at.isoformat()}"


def finished[T](run: GradingRun, name: str, compute: Callable[[], T]) -> T:
    """`compute()`, kept when the run is completed."""
    where = key(run, name)
    if not where:
        return compute()
    value = cache.get(where)
    if value is None:
        value = compute()
        cache.set(where, value, timeout=CACHE_S)
    return value


def finished_many[T](
    runs: Sequence[GradingRun], name: str, compute: Callable[[list[int]], dict[int, T]]
) -> dict[int, T]:
    """Per run id, its figure `name`: the completed runs' kept ones read at once, the others
    made by one `compute(run ids)` (for a list of runs: one query for all of them)."""
    keys = {run.pk: where for run in runs if (where := key(run, name))}
    kept = cache.get_many(list(keys.values())) if keys else {}
    found = {pk: kept[where] for pk, where in keys.items() if where in kept}
    missing = list(dict.fromkeys(run.pk for run in runs if run.pk not in found))
    if missing:
        fresh = compute(missing)
        found.update(fresh)
        cache.set_many({keys[pk]: fresh[pk] for pk in fresh if pk in keys}, timeout=CACHE_S)
    return found
