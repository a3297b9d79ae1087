"""Grade one response against a grader spec, by kind:

* ``binary`` and ``scale`` criteria ask the judge (scale replies are normalised to [0, 1]);
* ``checked`` criteria run a deterministic check in code, with no judge call;
* an empty response (None, blank, only invisible characters) asks the judge nothing: its
  judged criteria are "not met" (`grade_empty`), and checked criteria still run as code.

A response is a text or an episode (annotation.content.episode). What the judge reads of it
depends on the criterion's **scope** (a `View` of the response):

* ``outcome`` (the default): the final answer (`Episode.final_text`), exactly as for a text;
* ``trajectory``: the whole episode rendered for the judge (`render.for_judge`) in the
  response fence, with a section after the criterion saying what it is and what the budget
  cut (`Rendered.note`, `prompts.about_section`);
* ``step``: one item per step (`Episode.steps(tool=step_tool)`), each judged on the episode up
  to that step (`render.for_judge_step`; `render.Transcript` makes each message's block once
  for all of them), the prompt saying to judge the last assistant turn
  shown. Each step's verdict comes back with `Graded.step` (the step's message index), and
  then the criterion's verdict on the response (`step` None) by its step rule
  (`rubrics.scoring.step_rule_outcome`), so scores read one verdict per criterion as before.

A plain text response has no episode to render: trajectory criteria read its text as
outcome criteria do, and a step criterion has one step (0) judged on the text. A view with
nothing in it asks the judge nothing (`grade_empty`): an empty final answer (outcome), an
episode whose assistant turns are all empty (trajectory), an empty assistant turn (step).
Checked criteria run once per response, whatever their scope, on the final text and the
episode (`checks.evaluate(check, text, episode)`).

**Images and files** (render's module doc): an outcome view shows the final answer and then
the response's deliverables (the images and files of its assistant messages); every view
shows a document's converted text under its file line. What a judge is sent besides depends
on its `render.Sight` (Judge.accepts_images, accepts_files), so views are made per sight: a
judge that sees images gets them (and a PDF's first pages) attached after the prompt's text;
one that cannot is told an image was there. The task's messages are rendered the same way.

Cache keys cover the text in the fence and what the prompt says of it, so two steps, or two
episodes with one final answer, never share a verdict. A file's hash is in its file line, and
an attachment's label (its hash again, a PDF page's own) in the key, so a changed file is a
new key and the same file, however many responses carry it, is one. In batched mode the
criteria that share one view share a call: the outcome criteria, the trajectory criteria,
and the step criteria judged at the same step (one call per step, per judge and sample).

Runs (grading.services), the reward endpoint, the CLI and the rubric editor's "try it" all
grade through this module, so a verdict means the same everywhere.

`grade_items` is the engine proper (`plan_items`, a cache read, then `finish_items`, which a
run's chunk and the reward endpoint call apart so that they read the cache once for all their
responses): for one response it takes
the items still to decide —
(criterion, judge, sample) — answers what it can from the content-addressed cache, groups the
rest into judge calls (one per criterion, or one per judge and sample in batched mode, binary
and scale criteria alike), runs the calls on a process-wide thread pool, each call inside the
judge's shared limits and before the item's deadline (counted from the moment the calls are
queued, so waiting for a thread or a slot counts), and returns the verdicts, the calls' costs
and what to add to the cache.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial

from django.conf import settings as django_settings

from annotation.content import render
from annotation.content.episode import Episode
from grading import injection
from grading.judges import prompts, replies, transport
from grading.judges.client import JudgeClient, JudgeError, JudgeSettings, Prepared, Usage
from grading.judges.limits import Limits, limiter_for
from grading.judges.transport import Transport
from rubrics import checks, scoring
from rubrics.compiler import canonical_json

logger = logging.getLogger(__name__)

PER_CRITERION, BATCHED = "per_criterion", "batched"


@dataclass(frozen=True)
class Graded:
    criterion_id: int
    outcome: str  # met, unmet, error
    value: float | None = None
    explanation: str = ""
    raw: str = ""
    error: str = ""
    judge_model: str = ""
    simulated: bool = False
    prompt_tokens: int = 0
    completion_tokens: int = 0
    judged: bool = True  # False for checked criteria and empty responses: no judge call
    judge_id: int | None = None
    sample_index: int = 0
    cached: bool = False
    # A step criterion's verdict at one step (the step's message index); None: on the whole
    # response (a step criterion's step-rule result among them).
    step: int | None = None

    def as_outcome(self) -> scoring.Outcome:
        return scoring.Outcome(self.outcome, self.value)

    @property
    def reason(self) -> str:
        return self.error.split(":", 1)[0] if self.error else ""


@dataclass(frozen=True)
class JudgeRef:
    """What the engine needs of a judge; built from grading.models.Judge by the services."""

    judge_id: int
    settings: JudgeSettings
    limits: Limits


# What a call's page keeps of its request (the body as sent, JSON); its reply is kept to
# replies.RAW_CHARS. Either, when longer, is cut with a note saying how much was cut.
REQUEST_CHARS = 64 * 1024


@dataclass
class CallRecord:
    judge_id: int
    sample_index: int
    criteria: int
    usage: Usage
    error: str = ""
    # The ids of the criteria it decided (one, or a batch's), the request's body as sent (never
    # its headers, so never a key; `request`) and the judge's raw reply: for the call's page.
    criterion_ids: tuple[int, ...] = ()
    # Makes `request` from the body as sent, when the call's row is written: the reward
    # endpoint writes it once the trainer has its scores, not while 20 calls' threads that
    # have just had their replies take turns for the GIL.
    kept: Callable[[], str] | None = None
    reply: str = ""
    step: int | None = None  # the step its criteria were judged at (None: the response)

    @property
    def request(self) -> str:
        return self.kept() if self.kept is not None else ""


DATA_URI_BODY = re.compile(r"(data:[\w.+/-]+;base64,)[A-Za-z0-9+/=]{200,}")


def _kept_request(client, request: Prepared) -> str:
    """The body as sent, cut to REQUEST_CHARS, each image's or file's data: URI shortened to
    its length (the part before it names the file and its hash); any key the client sends is
    removed, should the graded text carry one."""
    body = request.content.decode()
    if "data:" in body:  # most requests carry no image or file: no need to look for them
        body = DATA_URI_BODY.sub(
            lambda m: f"{m.group(1)}[{len(m.group(0)) - len(m.group(1)):,} characters]", body
        )
    return client.scrub(replies.clean(body, REQUEST_CHARS))


@dataclass
class Outcome:
    graded: list[Graded] = field(default_factory=list)
    calls: list[CallRecord] = field(default_factory=list)
    to_cache: dict[str, Graded] = field(default_factory=dict)  # cache key -> verdict


def kind_of(criterion: dict) -> str:
    return criterion.get("kind", "binary")


EMPTY_EXPLANATION = "Empty response: not met, decided without a judge call."


def grade_empty(criterion: dict) -> Graded:
    """A judged criterion of an empty response (None, "", only whitespace or invisible
    characters): not met, with no judge call. Positive criteria earn nothing; a pitfall
    (negative points) is "met" only when the response does the undesirable thing, and an
    empty reply does nothing, so it is not met either (HealthBench's reading). A scale
    criterion gets its lowest level."""
    return Graded(
        criterion_id=criterion["id"],
        outcome=scoring.UNMET,
        value=0.0 if kind_of(criterion) == "scale" else None,
        explanation=EMPTY_EXPLANATION,
        judged=False,
    )


def grade_checked(criterion: dict, response: str, episode: Episode | None = None) -> Graded:
    """A checked criterion, in code: on the final text and the episode (a plain text's is
    its one message)."""
    if episode is None:
        episode = Episode.from_text(response)
    try:
        met, why = checks.evaluate(criterion["check"], response, episode)
    except checks.CheckError as exc:
        # A grader published before patterns were held to RE2 (a lookaround, say): an error
        # that says so, never an invented "unmet".
        return Graded(
            criterion_id=criterion["id"],
            outcome=scoring.ERROR,
            error=f"Checked criterion cannot run: {exc}",
            judged=False,
        )
    return Graded(
        criterion_id=criterion["id"],
        outcome=scoring.MET if met else scoring.UNMET,
        explanation=f"Checked in code: {why}",
        judged=False,
    )


def cache_key(
    *,
    grader_hash: str,
    criterion_id: int,
    messages: list[dict],
    response: str,
    judge: JudgeSettings,
    mode: str,
    sample_index: int,
    templates: str = "",
    conversation: str | None = None,
) -> str:
    """Content address of one verdict: everything that shapes the judge's answer.
    `conversation`: the task's messages as rendered for the judge (default: for a judge of
    text only, which is what a task of text messages renders to for any judge)."""
    if conversation is None:
        conversation = prompts.conversation_text(messages)
    return hashlib.sha256(
        canonical_json(
            {
                "grader": grader_hash,
                "criterion": criterion_id,
                "conversation": prompts.content_hash(conversation),
                "response": prompts.digest(response),
                "model": judge.model,
                "base_url": judge.base_url,
                "params": {"temperature": judge.temperature, "mode": mode},
                "templates": templates,
                "sample": sample_index,
            }
        ).encode()
    ).hexdigest()


# --- What the judge reads of a response, by scope --------------------------------------

OUTCOME, TRAJECTORY, STEP = "outcome", "trajectory", "step"


def scope_of(criterion: dict) -> str:
    return criterion.get("scope") or OUTCOME


@dataclass(frozen=True)
class View:
    """What the judge is shown of a response for a criterion: `text` goes in the response
    fence, `about` (outside the fences) says what it is. Criteria with one view share it."""

    key: tuple  # ("outcome",), ("trajectory",) or ("step", i); then the judge's Sight
    text: str
    about: str = ""
    empty: bool = False
    step: int | None = None
    # What is sent after the prompt's text (the response's images and files)...
    attachments: tuple[render.Attachment, ...] = ()
    # ...and the task's messages as this judge reads them (with their own attachments).
    conversation: render.Rendered = render.Rendered("")

    @functools.cached_property
    def cache_text(self) -> str:
        """What the cache key covers of the response: an outcome view's text alone (keys as
        before episodes), else what the prompt says of the episode and its rendering, and the
        labels of what is attached (each names its file's hash)."""
        text = f"{self.about}\n{self.text}" if self.about else self.text
        labels = [a.label for a in (*self.conversation.attachments, *self.attachments)]
        return "\n".join([text, *labels]) if labels else text

    @property
    def all_attachments(self) -> tuple[render.Attachment, ...]:
        return (*self.conversation.attachments, *self.attachments)


def _turn_is_empty(message) -> bool:
    return (
        injection.is_empty(message.text)
        and not message.tool_calls
        and not message.reasoning
        and not message.files
    )


def sight_of(settings: JudgeSettings) -> render.Sight:
    return render.Sight(images=settings.accepts_images, files=settings.accepts_files)


class Views:
    """The views of one response, each rendered once per judge sight however many criteria
    read it."""

    def __init__(self, response: str | Episode | None, messages: list[dict] | None = None):
        self.messages = messages or []
        self._conversations: dict[render.Sight, render.Rendered] = {}
        if isinstance(response, Episode) and not response.is_text:
            self.episode: Episode | None = response
            self.text = response.final_text
            # Its blocks, made once for the trajectory view and every step's.
            self._transcript = render.Transcript(response)
        else:
            self.episode = None
            if isinstance(response, Episode):
                response = response.messages[0].text
            self.text = response
        self._made: dict[tuple, View] = {}

    @property
    def final_text(self) -> str:
        return self.text or ""

    def for_checks(self) -> Episode:
        return self.episode if self.episode is not None else Episode.from_text(self.final_text)

    def steps(self, criterion: dict) -> list[int]:
        """A step criterion's steps: every assistant turn, or each that calls its step tool
        (a plain text: one step, 0, unless a tool is named)."""
        return self.for_checks().steps(tool=criterion.get("step_tool") or "")

    def conversation(self, sight: render.Sight) -> render.Rendered:
        found = self._conversations.get(sight)
        if found is None:
            found = self._conversations[sight] = render.conversation_for_judge(
                self.messages, sight=sight
            )
        return found

    def view(
        self, scope: str, step: int | None = None, sight: render.Sight = render.TEXT_ONLY
    ) -> View:
        key = ((scope,) if scope != STEP else (STEP, step)) + (sight,)
        found = self._made.get(key)
        if found is None:
            found = self._made[key] = self._render(scope, step, sight)
        return found

    def _render(self, scope: str, step: int | None, sight: render.Sight) -> View:
        episode = self.episode
        conversation = self.conversation(sight)
        # What the task's files cost, said after the criteria (a text task: nothing).
        task_note = prompts.files_section(conversation.note.replace("Note: ", "The task: ", 1))
        if episode is None or scope == OUTCOME:
            # A plain text has no episode to render: every scope reads the text; an episode's
            # outcome view is its final answer and its deliverables.
            key = ((OUTCOME,) if scope != STEP else (STEP, step)) + (sight,)
            if episode is None:
                rendered = render.Rendered(self.final_text)
            else:
                rendered = render.for_judge_outcome(episode, sight=sight)
            return View(
                key,
                rendered.text,
                prompts.files_section(rendered.note) + task_note,
                empty=injection.is_empty(self.text)
                and not rendered.attachments
                and rendered.files is None,
                step=step if scope == STEP else None,
                attachments=rendered.attachments,
                conversation=conversation,
            )
        if scope == TRAJECTORY:
            rendered = self._transcript.whole(sight=sight)
            turns = [m for m in episode.messages if m.role == "assistant"]
            return View(
                (TRAJECTORY, sight),
                rendered.text,
                prompts.about_section(TRAJECTORY, note=rendered.note) + task_note,
                empty=all(_turn_is_empty(m) for m in turns),
                attachments=rendered.attachments,
                conversation=conversation,
            )
        rendered = self._transcript.upto(step, sight=sight)
        return View(
            (STEP, step, sight),
            rendered.text,
            prompts.about_section(STEP, note=rendered.note, step=step) + task_note,
            empty=_turn_is_empty(episode.messages[step]),
            step=step,
            attachments=rendered.attachments,
            conversation=conversation,
        )


def step_verdict(criterion: dict, steps: list[Graded], *, judge_id: int, sample: int) -> Graded:
    """A step criterion's verdict on the response from its verdicts at `steps`, by its step
    rule (rubrics.scoring.step_rule_outcome): an error when any step is one, with the first
    such step's reason (so a cancelled step leaves the criterion undecided, as a cancel does)."""
    rule = criterion.get("step_rule") or "all"
    steps = sorted(steps, key=lambda g: g.step or 0)
    outcome = scoring.step_rule_outcome(rule, [g.as_outcome() for g in steps])
    met = sum(1 for g in steps if g.outcome == scoring.MET)
    judged = [g for g in steps if g.judged]
    common = {
        "criterion_id": criterion["id"],
        "judge_id": judge_id,
        "sample_index": sample,
        "judged": bool(judged),
        "judge_model": judged[0].judge_model if judged else "",
        "simulated": any(g.simulated for g in steps),
    }
    if outcome.outcome == scoring.ERROR:
        first = next(g for g in steps if g.outcome == scoring.ERROR)
        return Graded(
            **common,
            outcome=scoring.ERROR,
            error=f"{first.reason}: at step {render.label(first.step or 0)}: {first.error}",
        )
    where = f" (step tool {criterion['step_tool']})" if criterion.get("step_tool") else ""
    return Graded(
        **common,
        outcome=outcome.outcome,
        value=outcome.value,
        explanation=f"Step rule '{rule}': met at {met} of {len(steps)} steps{where}.",
    )


# --- Process-wide resources: one HTTP connection pool and one thread pool ---------------

_lock = threading.Lock()
_http: Transport | None = None
_pool: ThreadPoolExecutor | None = None
_limiters: dict[Limits, object] = {}


def http_client() -> Transport:
    global _http
    with _lock:
        if _http is None:
            _http = Transport()
        return _http


def thread_pool() -> ThreadPoolExecutor:
    """Judge calls of every task in this process share one pool; the judge's limits (in
    Redis) bound the calls in flight across processes."""
    global _pool
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(
                max_workers=django_settings.JUDGE_THREADS, thread_name_prefix="judge"
            )
        return _pool


def limiter(limits: Limits):
    with _lock:
        if limits not in _limiters:
            _limiters[limits] = limiter_for(limits)
        return _limiters[limits]


# --- One call ------------------------------------------------------------------------

INTERNAL = "internal"


def failed(
    items: list[tuple[int, int, int]], exc: BaseException, *, step: int | None = None
) -> list[Graded]:
    """Items (criterion id, judge id, sample) whose grading raised what no rule expects: each
    ends as an error verdict saying so (logged with its traceback), so it is decided, shown,
    and asked again only when a person retries failed items. `step`: the step they were
    judged at."""
    logger.error("grading raised; %d item(s) end as errors", len(items), exc_info=exc)
    error = replies.clean(f"{INTERNAL}: grading failed ({type(exc).__name__}: {exc})", 500)
    return [
        Graded(
            criterion_id=criterion_id,
            outcome=scoring.ERROR,
            error=error,
            judge_id=judge_id,
            sample_index=sample,
            step=step,
        )
        for criterion_id, judge_id, sample in items
    ]


def _error(criterion_id: int, judge_id: int, sample: int, exc: JudgeError, step=None) -> Graded:
    return Graded(
        criterion_id=criterion_id,
        outcome=scoring.ERROR,
        error=f"{exc.reason}: {exc}",
        raw=exc.raw,
        judge_id=judge_id,
        sample_index=sample,
        step=step,
    )


def _single_prompt(spec, criterion, *, messages, view: View) -> list[dict]:
    """The prompt of one judged criterion on one view (stored-shape parts): what runs, the
    reward endpoint, the run estimate and try-it's preview send or show."""
    return prompts.judge_messages(
        spec,
        messages=messages,
        response=view.text,
        criterion=criterion,
        about=view.about,
        conversation=view.conversation,
        attachments=view.attachments,
    )


def _single_request(client, spec, criterion, *, messages, view: View, key) -> Prepared:
    prompt = _single_prompt(spec, criterion, messages=messages, view=view)
    return client.prepare(
        prompts.wire(prompt), prompts.output_schema(spec, criterion), cache_key=key
    )


def _single_call(client, request: Prepared, criterion, *, judge_id, sample, deadline, step=None):
    try:
        reply = client.grade_prepared(
            request, levels=prompts.levels_of(criterion), deadline=deadline
        )
    except JudgeError as exc:
        g = _error(criterion["id"], judge_id, sample, exc, step)
        return [g], CallRecord(
            judge_id,
            sample,
            1,
            exc.usage,
            exc.reason,
            (criterion["id"],),
            partial(_kept_request, client, request) if exc.usage.attempts else None,
            exc.raw,
            step,
        )
    usage = Usage(
        reply.attempts,
        reply.prompt_tokens,
        reply.cached_tokens,
        reply.completion_tokens,
        reply.latency_s,
    )
    g = Graded(
        criterion_id=criterion["id"],
        outcome=scoring.MET if reply.met else scoring.UNMET,
        value=reply.value,
        explanation=reply.explanation,
        raw=reply.raw,
        judge_model=reply.model,
        simulated=reply.simulated,
        prompt_tokens=reply.prompt_tokens,
        completion_tokens=reply.completion_tokens,
        judge_id=judge_id,
        sample_index=sample,
        step=step,
    )
    return [g], CallRecord(
        judge_id,
        sample,
        1,
        usage,
        "",
        (criterion["id"],),
        partial(_kept_request, client, request),
        reply.raw,
        step,
    )


def _batch_request(client, spec, criteria, *, messages, view: View, key) -> Prepared:
    prompt = prompts.batch_messages(
        spec,
        messages=messages,
        response=view.text,
        criteria=criteria,
        about=view.about,
        conversation=view.conversation,
        attachments=view.attachments,
    )
    return client.prepare(
        prompts.wire(prompt), prompts.batch_schema(spec, criteria), name="verdicts", cache_key=key
    )


def _batch_call(client, request: Prepared, criteria, *, judge_id, sample, deadline, step=None):
    ids = [str(c["id"]) for c in criteria]
    levels = {str(c["id"]): prompts.levels_of(c) for c in criteria if prompts.levels_of(c)}
    try:
        reply = client.grade_batch_prepared(request, ids, levels=levels, deadline=deadline)
    except JudgeError as exc:
        graded = [_error(c["id"], judge_id, sample, exc, step) for c in criteria]
        return graded, CallRecord(
            judge_id,
            sample,
            len(criteria),
            exc.usage,
            exc.reason,
            tuple(c["id"] for c in criteria),
            partial(_kept_request, client, request) if exc.usage.attempts else None,
            exc.raw,
            step,
        )
    graded = []
    for i, c in enumerate(criteria):
        ident = str(c["id"])
        # The call's tokens are booked on its first verdict, so sums over verdicts add up.
        tokens = (reply.usage.prompt_tokens, reply.usage.completion_tokens) if i == 0 else (0, 0)
        if ident in reply.verdicts:
            met, explanation, value = reply.verdicts[ident]
            graded.append(
                Graded(
                    criterion_id=c["id"],
                    outcome=scoring.MET if met else scoring.UNMET,
                    value=value,
                    explanation=explanation,
                    raw=reply.raw if i == 0 else "",
                    judge_model=reply.model,
                    simulated=reply.simulated,
                    prompt_tokens=tokens[0],
                    completion_tokens=tokens[1],
                    judge_id=judge_id,
                    sample_index=sample,
                    step=step,
                )
            )
        else:
            graded.append(
                Graded(
                    criterion_id=c["id"],
                    outcome=scoring.ERROR,
                    error=f"unparseable: {reply.missing[ident]}",
                    raw=reply.raw,
                    prompt_tokens=tokens[0],
                    completion_tokens=tokens[1],
                    judge_id=judge_id,
                    sample_index=sample,
                    step=step,
                )
            )
    error = "unparseable" if reply.missing else ""
    return graded, CallRecord(
        judge_id,
        sample,
        len(criteria),
        reply.usage,
        error,
        tuple(c["id"] for c in criteria),
        partial(_kept_request, client, request),
        reply.raw,
        step,
    )


# --- The engine ----------------------------------------------------------------------


_templates: dict[str, str] = {}


def _templates_of(grader_hash: str, spec: dict) -> str:
    """prompts.batch_template_id, once per grader and process: a hash names one spec, and
    the templates in this module do not change while it runs."""
    if not grader_hash:  # a draft's try-it: no hash names its spec
        return prompts.batch_template_id(spec)
    found = _templates.get(grader_hash)
    if found is None:
        if len(_templates) > 4096:
            _templates.clear()
        found = _templates[grader_hash] = prompts.batch_template_id(spec)
    return found


@dataclass
class Plan:
    """One response's items sorted out before any cache read or judge call (`plan_items`):
    the verdicts decided already (checked criteria, empty views), in `result`; the judged
    items still to decide with their cache keys; the step criteria to decide from their
    steps' verdicts."""

    spec: dict
    grader_hash: str
    judges: list[JudgeRef]
    messages: list[dict]
    mode: str
    result: Outcome
    # criterion, judge id, sample, view, cache key
    pending: list[tuple[dict, int, int, View, str]]
    # Step criteria: (criterion, judge id, sample, steps), decided from their steps' verdicts.
    by_step: list[tuple[dict, int, int, list[int]]]

    @property
    def keys(self) -> list[str]:
        """The cache keys of the items still to decide."""
        return [p[4] for p in self.pending]


def grade_items(
    spec: dict,
    *,
    grader_hash: str,
    judges: list[JudgeRef],
    messages: list[dict],
    response: str | Episode | None,
    items: list[tuple[int, int, int]],  # (criterion id, judge id, sample index)
    mode: str = PER_CRITERION,
    cache_lookup=None,
    should_stop=None,
    leases_at_once: bool = False,
    while_waiting=None,
    deadline: float | None = None,
) -> Outcome:
    """Decide `items` for one response: a text, or an Episode (see the module doc for what
    each scope reads). A step criterion's item comes back as one verdict per step (`step`
    set) and its verdict on the response (`step` None). `cache_lookup(keys) -> {key: Graded}`
    reads the cache (None: bypass it). `leases_at_once`: take the judge's leases for all the
    calls in one round trip to Redis and return them in one once the last call ends
    (grading.judges.limits.Together), for a caller that waits for the slowest call anyway (the
    reward endpoint); runs return each lease as its call ends, so no slot stands idle.
    `while_waiting()` is run once every call has been sent, on the thread that sent the last,
    while the judge answers: CPU work that then delays no call. It is not run when a call fails
    before it is sent, nor when no call is made; the caller checks. An empty view makes no
    judge call: its judged criteria are not met (`grade_empty`); checked ones still run.
    `deadline` (time.monotonic()), when given, ends every call by then even if a judge's own
    item deadline is later (the reward endpoint's request deadline).

    It is `plan_items`, the cache read, then `finish_items`: a caller grading many responses
    at once (the reward endpoint) plans them all, reads the cache once for all of them, and
    finishes each."""
    plan = plan_items(
        spec,
        grader_hash=grader_hash,
        judges=judges,
        messages=messages,
        response=response,
        items=items,
        mode=mode,
    )
    hits = cache_lookup(plan.keys) if plan.pending and cache_lookup is not None else {}
    return finish_items(
        plan,
        hits,
        should_stop=should_stop,
        leases_at_once=leases_at_once,
        while_waiting=while_waiting,
        deadline=deadline,
    )


def plan_items(
    spec: dict,
    *,
    grader_hash: str,
    judges: list[JudgeRef],
    messages: list[dict],
    response: str | Episode | None,
    items: list[tuple[int, int, int]],  # (criterion id, judge id, sample index)
    mode: str = PER_CRITERION,
) -> Plan:
    """`grade_items`' first step: the response's views, checked criteria run, empty views
    decided, and every other item's cache key. Reads neither the cache nor a judge."""
    by_id = {c["id"]: c for c in spec["criteria"]}
    refs = {j.judge_id: j for j in judges}
    result = Outcome()
    templates = _templates_of(grader_hash, spec) if mode == BATCHED else ""
    views = Views(response, messages)
    pending: list[tuple[dict, int, int, View, str]] = []
    by_step: list[tuple[dict, int, int, list[int]]] = []
    for criterion_id, judge_id, sample in items:
        criterion = by_id[criterion_id]
        if kind_of(criterion) == "checked":
            g = grade_checked(criterion, views.final_text, views.for_checks())
            result.graded.append(
                Graded(**{**g.__dict__, "judge_id": judge_id, "sample_index": sample})
            )
            continue
        if scope_of(criterion) == STEP:
            by_step.append((criterion, judge_id, sample, views.steps(criterion)))
        for view in _views_of(criterion, views, sight_of(refs[judge_id].settings)):
            if view.empty:
                g = grade_empty(criterion)
                result.graded.append(
                    Graded(
                        **{
                            **g.__dict__,
                            "judge_id": judge_id,
                            "sample_index": sample,
                            "step": view.step,
                        }
                    )
                )
                continue
            key = cache_key(
                grader_hash=grader_hash,
                criterion_id=criterion_id,
                messages=messages,
                response=view.cache_text,
                judge=refs[judge_id].settings,
                mode=mode,
                sample_index=sample,
                templates=templates,
                conversation=view.conversation.text,
            )
            pending.append((criterion, judge_id, sample, view, key))
    return Plan(spec, grader_hash, judges, messages, mode, result, pending, by_step)


def finish_items(
    plan: Plan,
    hits: dict[str, Graded],
    *,
    should_stop=None,
    leases_at_once: bool = False,
    while_waiting=None,
    deadline: float | None = None,
) -> Outcome:
    """`grade_items`' last step: the items of `plan` whose keys are in `hits` (the cache's
    answers) decided from them, the judges asked for the rest, the step criteria decided
    from their steps. Reads no database."""
    result = plan.result
    pending = []
    for criterion, judge_id, sample, view, key in plan.pending:
        hit = hits.get(key)
        if hit is None:
            pending.append((criterion, judge_id, sample, view, key))
        else:
            result.graded.append(
                Graded(
                    **{
                        **hit.__dict__,
                        "criterion_id": criterion["id"],
                        "judge_id": judge_id,
                        "sample_index": sample,
                        "cached": True,
                        "prompt_tokens": 0,
                        "completion_tokens": 0,
                        "step": view.step,
                    }
                )
            )
    if pending:
        _call_judges(
            plan.spec,
            result,
            pending,
            grader_hash=plan.grader_hash,
            judges=plan.judges,
            messages=plan.messages,
            mode=plan.mode,
            should_stop=should_stop,
            leases_at_once=leases_at_once,
            while_waiting=while_waiting,
            deadline=deadline,
        )
    if plan.by_step:
        at = {
            (g.criterion_id, g.judge_id, g.sample_index, g.step): g
            for g in result.graded
            if g.step is not None
        }
        for criterion, judge_id, sample, steps in plan.by_step:
            got = [at[(criterion["id"], judge_id, sample, i)] for i in steps]
            result.graded.append(step_verdict(criterion, got, judge_id=judge_id, sample=sample))
    return result


def _group(pending: list[tuple[dict, int, int, View, str]], mode: str) -> list[tuple]:
    """The calls that decide `pending` items: (kind, criterion or criteria, judge id, sample,
    view). Per criterion: one call each. Batched: one per judge, sample and view for the
    batchable criteria (a lone one is a single call), one each for the rest."""
    if mode != BATCHED:
        return [("single", c, j, s, v) for c, j, s, v, _k in pending]
    calls: list[tuple] = []
    groups: dict[tuple, list[dict]] = {}
    seen: dict[tuple, View] = {}
    for criterion, judge_id, sample, view, _key in pending:
        if prompts.batchable(criterion):
            groups.setdefault((judge_id, sample, view.key), []).append(criterion)
            seen[view.key] = view
        else:
            calls.append(("single", criterion, judge_id, sample, view))
    for (judge_id, sample, view_key), criteria in groups.items():
        kind, what = ("single", criteria[0]) if len(criteria) == 1 else ("batch", criteria)
        calls.append((kind, what, judge_id, sample, seen[view_key]))
    return calls


def _views_of(criterion: dict, views: Views, sight: render.Sight = render.TEXT_ONLY) -> list[View]:
    """The views a judged criterion is decided on (for a judge of `sight`): one, or one per
    step."""
    scope = scope_of(criterion)
    if scope == STEP:
        return [views.view(STEP, i, sight) for i in views.steps(criterion)]
    return [views.view(scope, None, sight)]


def has_episode_scopes(spec: dict) -> bool:
    """Whether any judged criterion reads more than the final answer."""
    return any(kind_of(c) != "checked" and scope_of(c) != OUTCOME for c in spec["criteria"])


def has_files(response: str | Episode | None, messages: list[dict]) -> bool:
    """Whether a response or its task carries images or files (its prompts then differ from a
    text's beyond the final answer)."""
    if isinstance(response, Episode) and any(True for _ in response.files()):
        return True
    return any(isinstance(m, dict) and isinstance(m.get("content"), list) for m in messages)


def planned_prompts(
    spec: dict,
    *,
    messages: list[dict],
    response: str | Episode | None,
    mode: str,
    sight: render.Sight = render.TEXT_ONLY,
) -> list[tuple[int, list[dict]]]:
    """The judge calls `grade_items` makes for every judged criterion of one response, for
    one judge (of `sight`) and sample with no cache: (how many verdicts it decides, its
    prompt, with images and files as stored-shape parts: `prompts.prompt_size` counts them).
    For the run estimate."""
    views = Views(response, messages)
    pending = [
        (c, 0, 0, view, "")
        for c in spec["criteria"]
        if kind_of(c) != "checked"
        for view in _views_of(c, views, sight)
        if not view.empty
    ]
    out = []
    for kind, what, _j, _s, view in _group(pending, mode):
        shared = {
            "messages": messages,
            "response": view.text,
            "about": view.about,
            "conversation": view.conversation,
            "attachments": view.attachments,
        }
        if kind == "batch":
            out.append((len(what), prompts.batch_messages(spec, criteria=what, **shared)))
        else:
            out.append((1, _single_prompt(spec, what, messages=messages, view=view)))
    return out


def criterion_prompt(
    spec: dict,
    criterion: dict,
    *,
    messages: list[dict],
    response: str | Episode | None,
    sight: render.Sight = render.TEXT_ONLY,
) -> list[dict] | None:
    """The prompt a judge of `sight` is sent for one judged criterion of one response, as
    runs render it (the task's images and the response's, attached or named by a line; a
    step criterion: its first step), with stored-shape parts. None when the criterion judges
    no step of it. Try-it's preview."""
    views = _views_of(criterion, Views(response, messages), sight)
    if not views:
        return None
    return _single_prompt(spec, criterion, messages=messages, view=views[0])


def _call_judges(
    spec: dict,
    result: Outcome,
    pending: list[tuple[dict, int, int, View, str]],
    *,
    grader_hash: str,
    judges: list[JudgeRef],
    messages: list[dict],
    mode: str,
    should_stop,
    leases_at_once: bool,
    while_waiting,
    deadline: float | None,
) -> None:
    """Group `pending` items into calls (batched: the batchable criteria sharing one view,
    per judge and sample), send them on the pool and add their verdicts to `result`."""
    keys = {(c["id"], j, s, v.step): k for c, j, s, v, k in pending}
    calls = _group(pending, mode)
    clients = {
        ref.judge_id: JudgeClient(
            ref.settings, http=http_client(), limiter=limiter(ref.limits), should_stop=should_stop
        )
        for ref in judges
    }
    prompt_keys: dict[tuple, str] = {}

    def prompt_key(view: View) -> str:
        if view.key not in prompt_keys:
            prompt_keys[view.key] = prompts.prompt_cache_key(
                grader_hash, messages, view.text, view.conversation.text
            )
        return prompt_keys[view.key]

    # Every request is built here, before any is sent: the pool's threads then only send
    # and wait, rather than contend with each other (and this thread) for the GIL.
    requests = [
        (_batch_request if kind == "batch" else _single_request)(
            clients[judge_id], spec, what, messages=messages, view=view, key=prompt_key(view)
        )
        for kind, what, judge_id, _sample, view in calls
    ]

    # An item's deadline runs from now: waiting for a thread or a free slot counts.
    now = time.monotonic()
    deadlines = {
        ref.judge_id: min(now + ref.settings.deadline_s, deadline or float("inf")) for ref in judges
    }

    unsent, unsent_lock = [len(calls)], threading.Lock()

    def sent() -> None:
        with unsent_lock:
            unsent[0] -= 1
            last = unsent[0] == 0
        if last:
            while_waiting()

    def run(i: int):
        kind, what, judge_id, sample, view = calls[i]
        try:
            with transport.while_waiting(sent if while_waiting is not None else None):
                return (_batch_call if kind == "batch" else _single_call)(
                    clients[judge_id],
                    requests[i],
                    what,
                    judge_id=judge_id,
                    sample=sample,
                    deadline=deadlines[judge_id],
                    step=view.step,
                )
        except Exception as exc:  # noqa: BLE001 - the item ends as an error, never a crash
            criteria = what if kind == "batch" else [what]
            graded = failed([(c["id"], judge_id, sample) for c in criteria], exc, step=view.step)
            return graded, CallRecord(
                judge_id, sample, len(criteria), Usage(), INTERNAL, step=view.step
            )

    held = []
    try:
        for judge_id, client in clients.items() if leases_at_once else ():
            group = client.limiter.together(sum(1 for call in calls if call[2] == judge_id))
            if group is not None:
                held.append(group)
                client.limiter = group
        pool = thread_pool()
        futures = [pool.submit(run, i) for i in range(1, len(calls))]
        done = [run(0)]  # the task's own thread works too
        done += [f.result() for f in futures]
    finally:
        for group in held:
            group.close()
    for graded, record in done:
        result.calls.append(record)
        for g in graded:
            result.graded.append(g)
            if g.outcome != scoring.ERROR:
                result.to_cache[keys[(g.criterion_id, g.judge_id, g.sample_index, g.step)]] = g


def grade_now(
    spec: dict,
    settings: JudgeSettings,
    *,
    messages: list[dict],
    response: str | Episode | None,
    criteria: list[dict] | None = None,
    concurrency: int = 8,
    judge_id: int = 0,
    grader_hash: str = "",
    steps: list[Graded] | None = None,
) -> list[Graded]:
    """Grade `criteria` (default: all of the spec's) of one response (a text or an Episode)
    with one judge, no cache, in the spec's order (the rubric editor's "try it"): each
    criterion's verdict on the response. A step criterion's verdicts at each step go to
    `steps`, when given, in step order."""
    criteria = spec["criteria"] if criteria is None else criteria
    out = grade_items(
        spec,
        grader_hash=grader_hash,
        judges=[JudgeRef(judge_id, settings, Limits(judge_id=judge_id, max_in_flight=concurrency))],
        messages=messages,
        response=response,
        items=[(c["id"], judge_id, 0) for c in criteria],
    )
    by_id = {g.criterion_id: g for g in out.graded if g.step is None}
    if steps is not None:
        order = {c["id"]: i for i, c in enumerate(criteria)}
        steps.extend(
            sorted(
                (g for g in out.graded if g.step is not None),
                key=lambda g: (g.step, order[g.criterion_id]),
            )
        )
    return [by_id[c["id"]] for c in criteria]
