"""Reads for responses, queues, the annotation page, agreement, gold and calibration."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property

from django.db.models import Count, F, IntegerField, OuterRef, Q, Subquery, Sum
from django.db.models.functions import Coalesce
from django.http import Http404
from django.shortcuts import get_object_or_404
from django.utils import timezone

from annotation import stats
from annotation.content import evidence, render
from annotation.content.episode import Episode
from annotation.models import (
    Adjudication,
    Assignment,
    CalibrationSettings,
    Queue,
    QueueItem,
    Rater,
    Response,
    ResponseFlag,
    Verdict,
)
from rubrics.models import (
    Criterion,
    Grader,
    Membership,
    Project,
    ReferenceDeliverable,
    Role,
    RubricVersion,
)
from rubrics.permissions import Perm, check


def project_responses(project: Project):
    return Response.objects.filter(task__project=project).select_related("task")


# The longest text the Responses page searches for (a longer one is refused, not cut).
SEARCH_CHARS = 200


def responses_matching(
    project: Project,
    *,
    q: str = "",
    model: str = "",
    task: str = "",
    sample_index: int | None = None,
):
    """The project's responses for the Responses page and GET /api/.../responses/: those whose
    text contains `q` (case-insensitive, at most SEARCH_CHARS), of `model`, of `task` (its
    external id), with `sample_index`; blank filters match all."""
    found = project_responses(project)
    if q:
        if len(q) > SEARCH_CHARS:
            raise ValueError(f"search text longer than {SEARCH_CHARS} characters")
        found = found.filter(text__icontains=q)
    if model:
        found = found.filter(model=model)
    if task:
        found = found.filter(task__external_id=task)
    if sample_index is not None:
        found = found.filter(sample_index=sample_index)
    return found


def response_scores(response: Response):
    """A response's scores in every run that graded it, newest run first, with what the
    Responses detail page shows of each run."""
    return response.scores.select_related("run__judge").order_by("-run_id")


def response_for(user, pk: int) -> Response:
    response = get_object_or_404(Response.objects.select_related("task__project"), pk=pk)
    response.task.project.role = check(user, response.task.project, Perm.VIEW_MODELS)
    return response


def project_raters(project: Project):
    return Rater.objects.filter(project=project).select_related("user")


def project_verdicts(project: Project):
    """Judges' verdicts and people's submitted ones (drafts are nobody's verdict yet)."""
    return (
        Verdict.objects.submitted()
        .filter(response__task__project=project)
        .select_related("rater", "grader")
    )


def response_counts_by_model(project: Project) -> list[dict]:
    return list(
        Response.objects.filter(task__project=project)
        .values("model")
        .annotate(n=Count("pk"), tasks=Count("task", distinct=True))
        .order_by("model")
    )


# --- Permission helpers: an object the user may not see is a 404 ----------------------------


def queue_for(user, pk: int, perm: Perm) -> Queue:
    queue = get_object_or_404(
        Queue.objects.select_related("project", "grader__version__rubric"), pk=pk
    )
    queue.project.role = check(user, queue.project, perm)
    return queue


def assignment_for(user, pk: int) -> Assignment:
    """Only the annotator whose turn it is may see it: anyone else gets 404 (or 403 for a
    role that never annotates), so the blind stays blind."""
    assignment = get_object_or_404(
        Assignment.objects.select_related(
            "queue__project", "queue__grader__version__rubric", "item__response__task"
        ),
        pk=pk,
    )
    assignment.queue.project.role = check(user, assignment.queue.project, Perm.ANNOTATE)
    if assignment.annotator_id != user.pk:
        raise Http404("No such assignment.")
    return assignment


def turn_for(user, pk: int) -> Assignment:
    """`assignment_for` for the writes of a turn (draft, submit, skip): the same 404 and 403,
    in one query that reads the turn, its project and the user's role, and none of the page's
    response, task and grader (the services read what they need under the item's lock)."""
    if not user.is_authenticated:
        raise Http404("No such project.")
    role = Membership.objects.filter(project=OuterRef("queue__project"), user=user)
    assignment = get_object_or_404(
        Assignment.objects.select_related("queue__project")
        .only("annotator", "queue__project")
        .annotate(user_role=Subquery(role.values("role")[:1])),
        pk=pk,
    )
    project = assignment.queue.project
    if assignment.user_role is not None:
        project._role_cache = {user.pk: assignment.user_role}
    project.role = check(user, project, Perm.ANNOTATE)
    if assignment.annotator_id != user.pk:
        raise Http404("No such assignment.")
    return assignment


def version_for(user, pk: int, perm: Perm) -> RubricVersion:
    version = get_object_or_404(
        RubricVersion.objects.select_related("rubric__project", "rubric__task"), pk=pk
    )
    version.rubric.project.role = check(user, version.rubric.project, perm)
    return version


# --- Queues -----------------------------------------------------------------------------------


def _count_of(queryset) -> Coalesce:
    """COUNT(*) of a correlated queryset as a subquery, 0 when it has no rows."""
    counted = queryset.order_by().values("queue").annotate(n=Count("pk")).values("n")[:1]
    return Coalesce(Subquery(counted, output_field=IntegerField()), 0)


def project_queues(project: Project, user=None):
    """Queues with their progress; for an annotator, only the queues they are on.

    Each count is its own subquery: counting items and assignments through joins multiplies
    them (a queue of 300 items and 60 turns made 18,000 rows to sort, on every queues page)."""
    queues = (
        Queue.objects.filter(project=project)
        .select_related("grader__version__rubric")
        .annotate(
            item_count=_count_of(QueueItem.objects.filter(queue=OuterRef("pk"))),
            submitted=_count_of(
                Assignment.objects.filter(queue=OuterRef("pk"), status=Assignment.Status.SUBMITTED)
            ),
        )
        # Every item graded by `overlap` people: the queue has nothing left to hand out.
        .annotate(turns=F("item_count") * F("overlap"))
        .order_by("-created_at")
    )
    if user is not None:
        queues = queues.filter(annotators=user).annotate(
            mine=_count_of(
                Assignment.objects.filter(
                    queue=OuterRef("pk"),
                    annotator=user,
                    status=Assignment.Status.SUBMITTED,
                )
            )
        )
    return queues


def queue_assignments(queue: Queue):
    return queue.assignments.select_related("item", "annotator")


def queue_held_by_others(queue: Queue, user) -> bool:
    """Whether someone else holds a live lease in the queue (so work may come back)."""
    return (
        Assignment.objects.filter(
            queue=queue, status=Assignment.Status.ACTIVE, lease_expires_at__gt=timezone.now()
        )
        .exclude(annotator=user)
        .exists()
    )


@dataclass
class AnnotatorProgress:
    username: str
    submitted: int
    skipped: int
    active: int
    expired: int
    seconds: int
    # Items still open to them: short of `overlap` live turns, and neither submitted,
    # skipped nor held by them (what `assignment_claim` could still hand them).
    remaining: int = 0

    @property
    def mean_seconds(self) -> float | None:
        return self.seconds / self.submitted if self.submitted else None


@dataclass
class QueueProgress:
    items: int
    needed: int  # items x overlap
    submitted: int
    complete_items: int
    annotators: list[AnnotatorProgress]

    @property
    def share(self) -> float:
        return self.submitted / self.needed if self.needed else 0.0


def queue_progress(queue: Queue) -> QueueProgress:
    items = queue.items.count()
    per_user: dict[int, dict] = {}
    names = dict(queue.annotators.values_list("pk", "username"))
    members = set(names)  # others appear below only through turns taken before removal
    for uid in names:
        per_user[uid] = defaultdict(int)
    rows = queue.assignments.values("annotator_id", "annotator__username", "status").annotate(
        n=Count("pk"), seconds=Sum("seconds_spent")
    )
    for row in rows:
        names.setdefault(row["annotator_id"], row["annotator__username"])
        counts = per_user.setdefault(row["annotator_id"], defaultdict(int))
        counts[row["status"]] += row["n"]
        if row["status"] == Assignment.Status.SUBMITTED:
            counts["seconds"] += row["seconds"] or 0
    complete = (
        queue.items.annotate(
            n=Count("assignments", filter=Q(assignments__status=Assignment.Status.SUBMITTED))
        )
        .filter(n__gte=queue.overlap)
        .count()
    )
    # Open items, counted as `assignment_claim` counts them: submitted turns and live leases.
    open_items = queue.items.annotate(
        live=Count(
            "assignments",
            filter=Q(assignments__status=Assignment.Status.SUBMITTED)
            | Q(
                assignments__status=Assignment.Status.ACTIVE,
                assignments__lease_expires_at__gt=timezone.now(),
            ),
        )
    ).filter(live__lt=queue.overlap)
    open_count = open_items.count()
    taken = dict(
        queue.assignments.filter(
            status__in=[
                Assignment.Status.SUBMITTED,
                Assignment.Status.SKIPPED,
                Assignment.Status.ACTIVE,
            ],
            item__in=open_items.values("pk"),
        )
        .values("annotator_id")
        .annotate(n=Count("item", distinct=True))
        .values_list("annotator_id", "n")
    )
    annotators = [
        AnnotatorProgress(
            username=names[uid],
            submitted=c["submitted"],
            skipped=c["skipped"],
            active=c["active"],
            expired=c["expired"],
            seconds=c["seconds"],
            remaining=open_count - taken.get(uid, 0) if uid in members else 0,
        )
        for uid, c in sorted(per_user.items(), key=lambda kv: names[kv[0]])
    ]
    return QueueProgress(
        items=items,
        needed=items * queue.overlap,
        submitted=sum(a.submitted for a in annotators),
        complete_items=complete,
        annotators=annotators,
    )


def published_graders(project: Project):
    return (
        Grader.objects.filter(version__rubric__project=project)
        .exclude(version__status=RubricVersion.Status.DRAFT)
        .select_related("version__rubric")
        .order_by("version__rubric__title", "-version__number")
    )


def project_annotators(project: Project) -> list[str]:
    return list(
        Membership.objects.filter(project=project, role=Role.ANNOTATOR)
        .order_by("user__username")
        .values_list("user__username", flat=True)
    )


def spec_scales(spec: dict) -> dict[int, list[tuple[int, float, str]]]:
    """criterion id -> [(level 1..L, value in [0, 1], descriptor)] for a spec's scale criteria;
    the values are the judge's normalisation, (level - 1) / (L - 1)."""
    scales = {}
    for c in spec.get("criteria", []):
        descriptors = c.get("scale", {}).get("descriptors", []) if c.get("kind") == "scale" else []
        if len(descriptors) > 1:
            last = len(descriptors) - 1
            scales[c["id"]] = [(i + 1, i / last, str(d)) for i, d in enumerate(descriptors)]
    return scales


def criterion_scale(criterion: Criterion) -> list[tuple[int, float, str]] | None:
    grader = criterion.version.graders.order_by("-created_at").first()
    return spec_scales(grader.spec).get(criterion.pk) if grader else None


@dataclass
class AnnotationPage:
    assignment: Assignment
    response: Response
    criteria: list[Criterion]
    # criterion id -> the annotator's own verdict on the whole response
    drafts: dict[int, Verdict]
    # criterion id -> [(level 1..L, value in [0, 1], descriptor)] for scale criteria
    scales: dict[int, list[tuple[int, float, str]]]
    # The task's newest reference answer (Markdown), when the queue shows it; else "".
    reference: str = ""
    # (criterion id, step) -> the annotator's own verdict at that step of a step criterion
    step_drafts: dict[tuple[int, int], Verdict] = field(default_factory=dict)
    # step criterion id -> its steps (message indexes) in this response's episode
    steps: dict[int, list[int]] = field(default_factory=dict)

    @cached_property
    def episode(self):
        return self.response.episode


def annotation_page(assignment: Assignment) -> AnnotationPage:
    """What the annotator sees: the task, the response, the criteria and their OWN drafts
    (at each step of step criteria). Nothing from judges or other people is read here, so
    nothing can leak into the page. The queries do not grow with the episode's steps."""
    criteria = list(Criterion.objects.filter(version_id=assignment.queue.grader.version_id))
    drafts: dict[int, Verdict] = {}
    step_drafts: dict[tuple[int, int], Verdict] = {}
    for v in Verdict.objects.filter(assignment=assignment).only(
        "criterion_id",
        "step",
        "outcome",
        "value",
        "explanation",
        "evidence",
        "evidence_step",
        "evidence_anchor",
    ):
        if v.step is None:
            drafts[v.criterion_id] = v
        else:
            step_drafts[(v.criterion_id, v.step)] = v
    scales = spec_scales(assignment.queue.grader.spec)
    response = assignment.item.response
    page = AnnotationPage(assignment, response, criteria, drafts, scales)
    if any(c.scope == Criterion.Scope.STEP for c in criteria):
        episode = page.episode
        page.steps = {
            c.pk: episode.steps(tool=c.step_tool)
            for c in criteria
            if c.scope == Criterion.Scope.STEP
        }
    page.step_drafts = step_drafts
    if assignment.queue.show_reference:
        newest = (
            ReferenceDeliverable.objects.filter(task_id=response.task_id)
            .order_by("-created_at", "-pk")
            .values_list("body", flat=True)
            .first()
        )
        page.reference = newest or ""
    return page


def my_work(project: Project, user) -> list[Assignment]:
    """The user's own turns in the project's queues, in progress first, then submitted, newest
    first, with how many criteria each has decided. Never anyone else's turns; blind like the
    annotation page: only the queue and the task are named, never the model or the sample."""
    decided = (
        Verdict.objects.filter(assignment=OuterRef("pk"))
        .order_by()
        .values("assignment")
        .annotate(n=Count("criterion_id", distinct=True))  # a step criterion counts once
        .values("n")
    )
    status_order = {Assignment.Status.ACTIVE: 0, Assignment.Status.SUBMITTED: 1}
    turns = list(
        Assignment.objects.filter(
            queue__project=project,
            annotator=user,
            status__in=list(status_order),
        )
        .select_related("queue", "item__response__task")
        .only(
            "status",
            "opened_at",
            "submitted_at",
            "queue__name",
            "item__response__task__title",
            "item__response__task__external_id",
        )
        .annotate(decided=Coalesce(Subquery(decided, output_field=IntegerField()), 0))
        .order_by("-submitted_at", "-pk")
    )
    turns.sort(key=lambda a: status_order[a.status])
    return turns


# --- Ratings for agreement, gold, disagreements -----------------------------------------------


@dataclass(frozen=True)
class RaterInfo:
    pk: int
    name: str
    kind: str


def version_ratings(version: RubricVersion) -> tuple[list[stats.Rating], dict[int, RaterInfo]]:
    """Every counted decision on this version's criteria: people's submitted verdicts and
    judges' parsed verdicts (the latest run's, sample 0). Drafts and errors do not count."""
    rows, raters = _version_rating_rows(version)
    return [stats.Rating(*row) for row in rows], raters


def _version_rating_rows(version: RubricVersion) -> tuple[list[tuple], dict[int, RaterInfo]]:
    """version_ratings' ratings as the rows the database gives (tuples in Rating's order):
    the agreement page takes them as they are, thousands of them."""
    # Verdicts on the whole response only: a step criterion's is its step rule's result; its
    # verdicts at each step are compared step by step (step_ratings).
    return _counted(version, ("outcome", "value"), at_steps=False)


def _counted(
    version: RubricVersion, last: tuple[str, ...], *, at_steps: bool
) -> tuple[list[tuple], dict[int, RaterInfo]]:
    """Counted decisions on this version's criteria, on whole responses or at steps, as rows
    (rater, response, criterion[, step], *last): people's submitted ones, and judges' parsed
    ones of the latest run (sample 0); and the raters."""
    key = ("rater_id", "response_id", "criterion_id", *(("step",) if at_steps else ()))
    mine = Q(criterion__version=version, step__isnull=not at_steps)
    person = (
        Verdict.objects.submitted().filter(mine, assignment__isnull=False).values_list(*key, *last)
    )
    judged = (
        Verdict.objects.filter(mine, run__isnull=False, sample_index=0)
        .exclude(outcome=Verdict.Outcome.ERROR)
        .order_by("pk")
        .values_list(*key, *last)
    )
    # Fetched whole, not through server-side cursors: their extra round trips cost more than
    # the rows, which are all kept anyway.
    latest = {row[: len(key)]: row for row in judged}  # later runs overwrite earlier ones
    rows = [*person, *latest.values()]
    raters = {
        pk: RaterInfo(pk, name, kind)
        for pk, name, kind in Rater.objects.filter(pk__in={r[0] for r in rows}).values_list(
            "pk", "name", "kind"
        )
    }
    return rows, raters


def version_gold(
    version: RubricVersion, ratings: list[stats.Rating] | None = None
) -> dict[tuple[int, int], tuple[str, str]]:
    """(response, criterion) -> (outcome, source). A reviewer's latest decision is gold; where
    there is none, people who all agree (one or more submitted verdicts) make it."""
    gold: dict[tuple[int, int], tuple[str, str]] = {}
    if ratings is None:
        ratings, _ = version_ratings(version)
    people = set(
        Rater.objects.filter(
            pk__in={r.rater_id for r in ratings}, kind=Rater.Kind.PERSON
        ).values_list("pk", flat=True)
    )
    seen: dict[tuple[int, int], set[str]] = defaultdict(set)
    for r in ratings:
        if r.rater_id in people:
            seen[(r.response_id, r.criterion_id)].add(r.outcome)
    for key, outcomes in seen.items():
        if len(outcomes) == 1:
            gold[key] = (next(iter(outcomes)), "agreed")
    decided = (
        Adjudication.objects.filter(criterion__version=version, step__isnull=True)
        .order_by("pk")
        .values_list("response_id", "criterion_id", "outcome")
    )
    for response_id, criterion_id, outcome in decided:
        gold[(response_id, criterion_id)] = (outcome, "adjudicated")
    return gold


@dataclass
class Disagreement:
    response_id: int
    criterion_id: int
    outcomes: dict[str, list[str]]  # outcome -> rater names
    people_disagree: bool
    judge_disagrees: bool
    gold: str | None
    response: Response | None = None
    criterion: Criterion | None = None
    # Why the response looks aimed at its grader, when a judge verdict on it needs review.
    flag: ResponseFlag | None = None
    # A step criterion's step (message index) the raters differ at; None: the whole response.
    step: int | None = None

    @property
    def step_label(self) -> str:
        return f"#{self.step + 1}" if self.step is not None else ""


def step_ratings(version: RubricVersion) -> tuple[list[tuple], dict[int, RaterInfo]]:
    """Every counted decision at a step of this version's step criteria, as rows (rater,
    response, criterion, step, outcome): people's submitted ones and judges' (the latest
    run's, sample 0), so raters are compared step by step."""
    return _counted(version, ("outcome",), at_steps=True)


def flagged_items(version: RubricVersion) -> set[tuple[int, int]]:
    """(response, criterion) pairs of this version with a judge verdict marked for review
    (the response addresses its grader)."""
    return set(
        Verdict.objects.filter(criterion__version=version, needs_review=True)
        .values_list("response_id", "criterion_id")
        .distinct()
    )


def disagreements(
    version: RubricVersion,
    among: str = "all",
    status: str = "open",
    criterion: int | None = None,
):
    """(response, criterion) pairs to adjudicate: where raters differ, or where a judge's
    verdict is marked for review because the response addresses its grader.
    among: people | judge | flagged | all; status: open (no reviewer decision yet) | decided
    | all; criterion: only this criterion's (an id), when given."""
    ratings, raters = version_ratings(version)
    # Items are (response, criterion, step): step None for the whole response.
    by_item: dict[tuple[int, int, int | None], list[tuple[int, str]]] = defaultdict(list)
    for r in ratings:
        by_item[(r.response_id, r.criterion_id, None)].append((r.rater_id, r.outcome))
    at_steps, step_raters = step_ratings(version)
    raters = {**step_raters, **raters}
    for rater_id, resp, crit, step, outcome in at_steps:
        by_item[(resp, crit, step)].append((rater_id, outcome))
    flagged = flagged_items(version)
    for resp, crit in flagged:
        by_item.setdefault((resp, crit, None), [])  # flagged even where no rating survives
    decided = {
        (resp, crit, step): outcome
        for resp, crit, step, outcome in Adjudication.objects.filter(criterion__version=version)
        .order_by("pk")
        .values_list("response_id", "criterion_id", "step", "outcome")
    }
    found = []
    for (resp, crit, step), rs in by_item.items():
        if criterion is not None and crit != criterion:
            continue
        people = {o for rater, o in rs if raters[rater].kind == Rater.Kind.PERSON}
        judges = {o for rater, o in rs if raters[rater].kind == Rater.Kind.JUDGE}
        people_disagree = len(people) > 1
        # Some person and some judge differ.
        judge_disagrees = bool(people) and bool(judges) and len(people | judges) > 1
        is_flagged = step is None and (resp, crit) in flagged
        if among == "people" and not people_disagree:
            continue
        if among == "judge" and not judge_disagrees:
            continue
        if among == "flagged" and not is_flagged:
            continue
        if among == "all" and not (people_disagree or judge_disagrees or is_flagged):
            continue
        gold = decided.get((resp, crit, step))
        if status == "open" and gold is not None:
            continue
        if status == "decided" and gold is None:
            continue
        outcomes: dict[str, list[str]] = defaultdict(list)
        for rater, o in rs:
            outcomes[o].append(raters[rater].name)
        found.append(
            Disagreement(
                resp, crit, dict(outcomes), people_disagree, judge_disagrees, gold, step=step
            )
        )
    responses = Response.objects.in_bulk({d.response_id for d in found})
    criteria = Criterion.objects.in_bulk({d.criterion_id for d in found})
    flags = (
        ResponseFlag.objects.in_bulk(
            {d.response_id for d in found if (d.response_id, d.criterion_id) in flagged},
            field_name="response_id",
        )
        if flagged
        else {}
    )
    for d in found:
        d.response, d.criterion = responses[d.response_id], criteria[d.criterion_id]
        d.flag = flags.get(d.response_id)
    found.sort(key=_in_list_order)
    return found


def _in_list_order(d: Disagreement) -> tuple[int, int, int, int]:
    return (d.criterion.position, d.criterion_id, d.response_id, -1 if d.step is None else d.step)


def next_disagreement(
    version: RubricVersion,
    *,
    response: Response,
    criterion: Criterion,
    among: str = "all",
    only_criterion: int | None = None,
    step: int | None = None,
) -> Disagreement | None:
    """The open disagreement a reviewer takes after (response, criterion), in the list's
    order and under the same filter: the next one below it, else the first still open above
    it (those the reviewer passed over). None when nothing else is open."""
    found = disagreements(version, among=among, status="open", criterion=only_criterion)
    here = (criterion.position, criterion.pk, response.pk, -1 if step is None else step)
    others = [
        d
        for d in found
        if (d.response_id, d.criterion_id, d.step) != (response.pk, criterion.pk, step)
    ]
    after = [d for d in others if _in_list_order(d) > here]
    return (after or others or [None])[0]


def version_gold_decisions(version: RubricVersion):
    """Every gold decision on the version's criteria, with whether a later one replaced it."""
    return Adjudication.objects.filter(criterion__version=version).select_related(
        "decided_by", "replaced_by"
    )


def item_verdicts(
    response: Response, criterion: Criterion, step: int | None = None
) -> list[Verdict]:
    """Every counted verdict on one (response, criterion), people's and judges', with the
    rationale and evidence, for a reviewer to read side by side. Each carries `label`, which
    names its rater so that no two look alike: a judge by its name, run and the run's mode
    (the same judge grades in many runs), a person by their name. With `step`, the verdicts at
    that step of a step criterion; without, the verdicts on the whole response (a step
    criterion's verdicts at every step: item_step_verdicts)."""
    verdicts = list(
        Verdict.objects.submitted()
        .filter(response=response, criterion=criterion, step=step)
        # The judge and the run live in `grading`; they are read through the relations,
        # by name, as Verdict.run is declared, without importing that app.
        .select_related("rater__judge", "run")
        .order_by("rater__kind", "rater__name", "run_id", "sample_index", "pk")
    )
    for v in verdicts:
        v.label = _rater_label(v)
    with_anchors(response, verdicts)
    seen = Counter(v.label for v in verdicts)
    for v in verdicts:
        if seen[v.label] > 1:  # the same person twice (two queues), or a run-less judge
            v.label = f"{v.label} · verdict #{v.pk}"
    return verdicts


def item_step_verdicts(response: Response, criterion: Criterion) -> list[Verdict]:
    """A step criterion's counted verdicts at each step of one response, every rater's, in
    one query, for the trajectory view; each `step_label` names its rater as
    item_verdicts does (with the queue assignment when one person graded it twice)."""
    verdicts = list(
        Verdict.objects.submitted()
        .filter(response=response, criterion=criterion, step__isnull=False)
        .select_related("rater__judge", "run")
        .order_by("step", "rater__kind", "rater__name", "run_id", "sample_index", "pk")
    )
    with_anchors(response, verdicts)
    items: dict[str, set] = defaultdict(set)
    for v in verdicts:
        v.step_label = _rater_label(v)
        items[v.step_label].add((v.run_id, v.assignment_id, v.sample_index))
    for v in verdicts:
        if len(items[v.step_label]) > 1 and v.assignment_id:
            v.step_label = f"{v.step_label} · assignment #{v.assignment_id}"
    return verdicts


def response_trajectory(
    response: Response, *, blind: bool, step_verdicts: Iterable = ()
) -> dict | None:
    """The trajectory view of a response (annotation/_trajectory.html), or None for a plain
    text response, which pages show as they always have. `blind` for annotators: no
    metadata that could name a model. `step_verdicts` go beside their steps."""
    return episode_trajectory(response.episode, blind=blind, step_verdicts=step_verdicts)


def episode_trajectory(
    episode: Episode, *, blind: bool, step_verdicts: Iterable = ()
) -> dict | None:
    """As response_trajectory, for an episode that is not (yet) a response: try-it's."""
    if episode.is_text:
        return None
    return render.for_page(episode, blind=blind, step_verdicts=step_verdicts)


def item_trajectory(response: Response, criterion: Criterion) -> dict | None:
    """The trajectory view of a disputed item, for reviewers (not blind): the episode, and
    beside its steps every rater's verdicts when the criterion is judged per step. None for
    a plain text."""
    episode = response.episode
    if episode.is_text:
        return None
    steps = item_step_verdicts(response, criterion) if criterion.scope == "step" else ()
    return render.for_page(episode, blind=False, step_verdicts=steps)


def _rater_label(verdict: Verdict) -> str:
    rater = verdict.rater
    if rater.kind != Rater.Kind.JUDGE:
        return rater.name
    judge = getattr(rater, "judge", None)  # None for a judge rater made without a Judge
    name = judge.name if judge is not None else rater.name.removeprefix("judge: ")
    label = f"Judge {name}"
    run = verdict.run
    if run is not None:
        label += f" · run #{run.pk} ({run.mode.replace('_', ' ')})"
        if run.samples > 1:
            label += f" · sample {verdict.sample_index}"
    return label


def response_flag(response: Response) -> ResponseFlag | None:
    return ResponseFlag.objects.filter(response=response).first()


def gold_history(response: Response, criterion: Criterion, step: int | None = None):
    """The gold decisions on one item, newest first, each with `evidence_at` (with_anchors)."""
    return with_anchors(
        response,
        list(
            Adjudication.objects.filter(response=response, criterion=criterion, step=step)
            .select_related("decided_by", "replaces")
            .order_by("-pk")
        ),
    )


def anchor_in_words(response: Response, raw: str) -> tuple[str, str]:
    """An anchor as a form sent it, as (JSON, words) for the form shown again; ("", "") for
    none or one that does not parse."""
    try:
        anchor = evidence.parse_anchor(raw or None)
    except evidence.AnchorError:
        return "", ""
    if anchor is None:
        return "", ""
    return json.dumps(anchor), evidence.anchor_label(anchor, evidence.file_names(response.episode))


def with_anchors(response: Response, decisions: list) -> list:
    """Give each verdict or gold decision `evidence_at`, its evidence anchor in words with the
    file's name ("debt.xlsx › Debt schedule › D3"; "" for none), and `anchor_json`, the
    anchor for the page's script to outline in the previews. The episode is read only when
    one of them has an anchor."""
    names = None
    for d in decisions:
        d.evidence_at, d.anchor_json = "", ""
        if not d.evidence_anchor:
            continue
        if names is None:
            names = evidence.file_names(response.episode)
        d.evidence_at = evidence.anchor_label(d.evidence_anchor, names)
        d.anchor_json = json.dumps(d.evidence_anchor)
    return decisions


# --- Reports ----------------------------------------------------------------------------------


def calibration_settings(project: Project) -> CalibrationSettings:
    """The project's calibration settings, or the defaults (unsaved) when none were set."""
    return CalibrationSettings.objects.filter(project=project).first() or CalibrationSettings(
        project=project
    )


def project_threshold(project: Project) -> float:
    return calibration_settings(project).threshold


@dataclass
class AgreementReport:
    version: RubricVersion
    criteria: list[Criterion]
    raters: dict[int, RaterInfo]
    figures: stats.Agreement
    # Step criteria compared step by step: an item is (response, step), so a step criterion's
    # figures here say how far raters agree on each step, not on its step rule's result.
    # None when no step of this version was rated.
    at_steps: stats.Agreement | None = None


def agreement_report(version: RubricVersion) -> AgreementReport:
    ratings, raters = _version_rating_rows(version)
    step_rows, step_raters = step_ratings(version)
    at_steps = None
    if step_rows:
        item: dict[tuple[int, int], int] = {}
        at_steps = stats.agreement(
            [
                (rater, item.setdefault((response, step), len(item)), criterion, outcome, None)
                for rater, response, criterion, step, outcome in step_rows
            ]
        )
    return AgreementReport(
        version=version,
        criteria=list(Criterion.objects.filter(version=version)),
        raters={**raters, **step_raters},
        figures=stats.agreement(ratings),
        at_steps=at_steps,
    )


@dataclass
class CalibrationReport:
    version: RubricVersion
    judge: RaterInfo | None
    judges: list[RaterInfo]
    criteria: list[Criterion]
    figures: stats.Calibration | None
    alpha: dict[int, float | None]
    threshold: float
    flagged: set[int]
    gold_items: int
    # The n behind each criterion's people's alpha: items rated by two people or more.
    alpha_items: dict[int, int]
    min_items: int
    # Criteria below the threshold on too few items to flag, with why, for the page.
    too_few: dict[int, str]


def calibration_report(
    version: RubricVersion, judge_rater_id: int | None = None, resamples: int = 1000
) -> CalibrationReport:
    ratings, raters = version_ratings(version)
    judges = sorted(
        (r for r in raters.values() if r.kind == Rater.Kind.JUDGE), key=lambda r: r.name
    )
    judge = next((j for j in judges if j.pk == judge_rater_id), judges[0] if judges else None)
    gold = version_gold(version, ratings)
    people = [r for r in ratings if raters[r.rater_id].kind == Rater.Kind.PERSON]
    alpha = stats.alpha_per_criterion(people)
    figures = None
    if judge is not None:
        judged = {
            (r.response_id, r.criterion_id): r.outcome for r in ratings if r.rater_id == judge.pk
        }
        figures = stats.calibration(judged, {k: v[0] for k, v in gold.items()}, resamples=resamples)
    calibration = calibration_settings(version.rubric.project)
    threshold, min_items = calibration.threshold, calibration.min_items
    raters_per_item: Counter[tuple[int, int]] = Counter(
        (r.criterion_id, r.response_id) for r in people
    )
    alpha_items: Counter[int] = Counter(c for (c, _), n in raters_per_item.items() if n >= 2)
    flagged: set[int] = set()
    too_few: dict[int, str] = {}
    low_kappa = {
        c: f.items
        for c, f in (figures.per_criterion.items() if figures is not None else ())
        if f.kappa is not None and f.kappa < threshold
    }
    low_alpha = {c: alpha_items[c] for c, a in alpha.items() if a is not None and a < threshold}
    for figure, low in (("judge kappa", low_kappa), ("people's alpha", low_alpha)):
        for c, n in low.items():
            if n >= min_items:
                flagged.add(c)
            else:
                too_few[c] = (
                    f"{figure} below {threshold:g} on {n} item{'s' if n != 1 else ''}; "
                    f"flags need {min_items}"
                )
    return CalibrationReport(
        version=version,
        judge=judge,
        judges=judges,
        criteria=list(Criterion.objects.filter(version=version)),
        figures=figures,
        alpha=alpha,
        threshold=threshold,
        flagged=flagged,
        gold_items=len(gold),
        alpha_items=dict(alpha_items),
        min_items=min_items,
        too_few={c: why for c, why in too_few.items() if c not in flagged},
    )


def flag_version_for(version: RubricVersion) -> RubricVersion | None:
    """The version whose calibration the editor shows: this one if published, else the
    rubric's latest published version (a draft has no verdicts yet)."""
    if not version.is_draft:
        return version
    return (
        RubricVersion.objects.filter(rubric_id=version.rubric_id)
        .exclude(status=RubricVersion.Status.DRAFT)
        .order_by("-number")
        .first()
    )
