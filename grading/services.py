"""Writes for judges and grading runs. The worker's unit of work is a chunk of a run's
responses (`grade_responses`)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal, InvalidOperation

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.storage import default_storage
from django.db import Error as DatabaseFailure
from django.db import InterfaceError, OperationalError, connection, transaction
from django.db.models import Exists, OuterRef, ProtectedError, Q, QuerySet, TextField
from django.db.models.functions import Cast
from django.utils import timezone

from annotation.content import render
from annotation.content.episode import Episode
from annotation.models import Rater, Response, ResponseFlag, Verdict
from assay import secrets as assay_secrets
from grading import broker, engine, injection
from grading.judges import addresses, prompts
from grading.judges.client import JudgeClient, JudgeError, JudgeSettings
from grading.judges.limits import REDIS_DOWN, Limits, redis_client
from grading.models import CachedVerdict, GradingRun, Judge, JudgeCall, ModelPrice, Score
from grading.results import leaderboard
from rubrics import audit, bulk, scoring, suites
from rubrics.models import (
    AuditEvent,
    Grader,
    Project,
    Rubric,
    RubricVersion,
    SuiteEntry,
    SuiteVersion,
    Task,
)
from rubrics.services import Conflict

logger = logging.getLogger(__name__)


# --- Judges -----------------------------------------------------------------------------


def _clean_judge_fields(
    *,
    name: str,
    base_url: str,
    model: str,
    api_key_env: str,
    max_concurrency: int,
    resolve_url: bool = True,
) -> dict:
    name, base_url, model = name.strip(), base_url.strip(), model.strip()
    if not name:
        raise ValidationError({"name": "A judge needs a name."})
    # Where graded text (and the key) goes: the URL's form, and the addresses its host
    # resolves to now; the transport checks the addresses again at every connection.
    try:
        addresses.check_url(base_url) if resolve_url else addresses.parse(base_url)
    except addresses.RefusedURL as exc:
        raise ValidationError({"base_url": str(exc)}) from None
    if not model:
        raise ValidationError({"model": "Name the judge model, e.g. gpt-4.1."})
    if api_key_env and not api_key_env.replace("_", "").isalnum():
        raise ValidationError(
            {
                "api_key_env": "Give the *name* of an environment variable (e.g. OPENAI_API_KEY), "
                "not the key itself."
            }
        )
    if api_key_env.startswith(("sk-", "sk_")):
        raise ValidationError(
            {
                "api_key_env": "That looks like a key: enter it as the judge's API key "
                "instead, where it is stored encrypted."
            }
        )
    if api_key_env:
        why = addresses.key_refusal(api_key_env, addresses.parse(base_url).host)
        if why:
            raise ValidationError({"api_key_env": f"{why[:1].upper()}{why[1:]}."})
    if not 1 <= int(max_concurrency) <= 1024:
        raise ValidationError({"max_concurrency": "Between 1 and 1024."})
    return {
        "name": name,
        "base_url": base_url,
        "model": model,
        "api_key_env": api_key_env,
        "max_concurrency": int(max_concurrency),
    }


NO_PROJECT_KEY = {"api_key_secret": "", "api_key_last4": "", "api_key_host": ""}


def _project_key_fields(api_key: str, *, base_url: str, api_key_env: str) -> dict:
    """The project's own key for a judge at `base_url`: encrypted, with its last characters
    (long keys only) and the one host it may be sent to. "" clears it."""
    api_key = (api_key or "").strip()
    if not api_key:
        return dict(NO_PROJECT_KEY)
    if api_key_env:
        raise ValidationError(
            {"api_key": "Give the project's own key or a deployment variable, not both."}
        )
    if len(api_key) > 2000 or not all(33 <= ord(c) < 127 for c in api_key):
        raise ValidationError(
            {"api_key": "An API key is one line of printable ASCII characters, no spaces."}
        )
    try:
        secret = assay_secrets.encrypt(api_key)
    except assay_secrets.SecretsUnavailable as exc:
        raise ValidationError({"api_key": f"The key cannot be stored: {exc}."}) from None
    return {
        "api_key_secret": secret,
        "api_key_last4": api_key[-4:] if len(api_key) >= 16 else "",
        "api_key_host": addresses.parse(base_url).host.lower().rstrip("."),
    }


@transaction.atomic
def judge_create(
    *,
    project: Project,
    name: str,
    base_url: str,
    model: str,
    api_key_env: str = "",
    max_concurrency: int = 8,
    temperature: float = 0.0,
    use_json_schema: bool = True,
    requests_per_minute: int = 0,
    tokens_per_minute: int = 0,
    send_cache_key: bool = True,
    accepts_images: bool = False,
    accepts_files: bool = False,
    api_key: str = "",
    actor=None,
) -> Judge:
    """A judge for the project. Its URL decides where graded text goes: audited. `api_key`
    is the project's own key, stored encrypted and sent only to the URL's host."""
    fields = _clean_judge_fields(
        name=name,
        base_url=base_url,
        model=model,
        api_key_env=api_key_env,
        max_concurrency=max_concurrency,
    )
    fields.update(
        _project_key_fields(api_key, base_url=fields["base_url"], api_key_env=fields["api_key_env"])
    )
    if Judge.objects.filter(project=project, name=fields["name"]).exists():
        raise ValidationError({"name": f"A judge named '{fields['name']}' exists."})
    rater = Rater.objects.create(
        project=project, kind=Rater.Kind.JUDGE, name=f"judge: {fields['name']}"
    )
    judge = Judge.objects.create(
        project=project,
        rater=rater,
        temperature=temperature,
        use_json_schema=use_json_schema,
        requests_per_minute=max(0, int(requests_per_minute or 0)),
        tokens_per_minute=max(0, int(tokens_per_minute or 0)),
        send_cache_key=send_cache_key,
        accepts_images=bool(accepts_images),
        accepts_files=bool(accepts_files),
        **fields,
    )
    audit.record(
        AuditEvent.Action.JUDGE_CREATED,
        actor=actor,
        project=project,
        target_type="judge",
        target_id=judge.pk,
        target_label=judge.name,
        details={
            "base_url": judge.base_url,
            "model": judge.model,
            "api_key_env": judge.api_key_env,  # the variable's name; the key is never stored
            "api_key": "set" if judge.api_key_secret else None,  # never the key itself
            "max_concurrency": judge.max_concurrency,
            "requests_per_minute": judge.requests_per_minute,
            "tokens_per_minute": judge.tokens_per_minute,
            "temperature": judge.temperature,
            "accepts_images": judge.accepts_images,
            "accepts_files": judge.accepts_files,
        },
    )
    return judge


@transaction.atomic
def model_price_save(*, price: ModelPrice, actor, created: bool) -> ModelPrice:
    """Save a model's price (it sets what runs are estimated and charged at): audited."""
    before = (
        None
        if created
        else ModelPrice.objects.filter(pk=price.pk).values(*AUDITED_PRICE_FIELDS).first()
    )
    price.save()
    changes = {
        name: [str(before[name]) if before else None, str(getattr(price, name))]
        for name in AUDITED_PRICE_FIELDS
        if before is None or before[name] != getattr(price, name)
    }
    if changes:
        _price_event(AuditEvent.Action.MODEL_PRICE_CHANGED, price, actor, changes)
    return price


@transaction.atomic
def model_price_delete(*, price: ModelPrice, actor=None) -> None:
    """Without a price, the model's costs show as unknown (null), never as zero. Audited."""
    before = {name: str(getattr(price, name)) for name in AUDITED_PRICE_FIELDS}
    _price_event(AuditEvent.Action.MODEL_PRICE_DELETED, price, actor, before)
    price.delete()


AUDITED_PRICE_FIELDS = (
    "model",
    "input_per_mtok",
    "cached_input_per_mtok",
    "output_per_mtok",
)


def _price_event(action: str, price: ModelPrice, actor, details: dict) -> None:
    audit.record(
        action,
        actor=actor,
        target_type="model_price",
        target_id=price.pk,
        target_label=price.model,
        details=details,
    )


# Settings that say how a judge behaves, and may change at any time; its endpoint and model
# say *who* judged, so they are fixed once the judge has graded anything.
JUDGE_TUNABLE = (
    "name",
    "api_key_env",
    "max_concurrency",
    "temperature",
    "use_json_schema",
    "requests_per_minute",
    "tokens_per_minute",
    "send_cache_key",
    "accepts_images",
    "accepts_files",
)
JUDGE_IDENTITY = ("base_url", "model")
MAX_PER_MINUTE = 2_000_000_000


def judge_has_graded(judge: Judge) -> bool:
    return (
        GradingRun.objects.filter(judge=judge).exists()
        or judge.panel_runs.exists()
        or JudgeCall.objects.filter(judge=judge).exists()
        or Verdict.objects.filter(rater_id=judge.rater_id).exists()
    )


@transaction.atomic
def judge_update(*, judge: Judge, **changes) -> Judge:
    """Change some of a judge's settings; the ones not given keep their values. Limits take
    effect for new calls at once. A judge that has graded keeps its base URL and model, so
    its runs and verdicts still say who judged: add a new judge for another model."""
    judge = Judge.objects.select_for_update().get(pk=judge.pk)
    api_key = changes.pop("api_key", None)
    unknown = sorted(set(changes) - set(JUDGE_TUNABLE) - set(JUDGE_IDENTITY))
    if unknown:
        raise ValidationError({name: "A judge has no such setting." for name in unknown})
    identity = {k: changes[k] for k in JUDGE_IDENTITY if k in changes}
    if any(str(v).strip() != getattr(judge, k) for k, v in identity.items()) and (
        judge_has_graded(judge)
    ):
        raise Conflict(
            f"Judge '{judge.name}' has graded, and its verdicts name its endpoint and model; "
            "those cannot change. Add a new judge instead."
        )
    merged = {name: getattr(judge, name) for name in (*JUDGE_TUNABLE, *JUDGE_IDENTITY)}
    merged.update(changes)
    fields = _clean_judge_fields(
        name=merged["name"],
        base_url=merged["base_url"],
        model=merged["model"],
        api_key_env=merged["api_key_env"],
        max_concurrency=merged["max_concurrency"],
        # A kept URL is not looked up again: its calls are checked as they connect.
        resolve_url=str(merged["base_url"]).strip() != judge.base_url,
    )
    # The project's key goes only to the host it was entered for: a new host clears it,
    # unless a new key comes with it.
    host = addresses.parse(fields["base_url"]).host.lower().rstrip(".")
    if api_key is not None:
        fields.update(
            _project_key_fields(
                api_key, base_url=fields["base_url"], api_key_env=fields["api_key_env"]
            )
        )
    elif judge.api_key_secret and host != judge.api_key_host:
        fields.update(NO_PROJECT_KEY)
    elif judge.api_key_secret and fields["api_key_env"]:
        raise ValidationError(
            {
                "api_key_env": "This judge has the project's own key: clear it (an empty "
                "api_key) to use a deployment variable instead."
            }
        )
    errors = {}
    if (
        Judge.objects.filter(project_id=judge.project_id, name=fields["name"])
        .exclude(pk=judge.pk)
        .exists()
    ):
        errors["name"] = f"A judge named '{fields['name']}' exists."
    temperature = float(merged["temperature"])
    if not 0 <= temperature <= 2:
        errors["temperature"] = "Between 0 and 2."
    for name in ("requests_per_minute", "tokens_per_minute"):
        if not 0 <= int(merged[name]) <= MAX_PER_MINUTE:
            errors[name] = f"From 0 (no limit) to {MAX_PER_MINUTE:,}."
    if errors:
        raise ValidationError(errors)
    for name, value in fields.items():
        setattr(judge, name, value)
    judge.temperature = temperature
    judge.use_json_schema = bool(merged["use_json_schema"])
    judge.send_cache_key = bool(merged["send_cache_key"])
    judge.accepts_images = bool(merged["accepts_images"])
    judge.accepts_files = bool(merged["accepts_files"])
    judge.requests_per_minute = int(merged["requests_per_minute"])
    judge.tokens_per_minute = int(merged["tokens_per_minute"])
    judge.save()
    Rater.objects.filter(pk=judge.rater_id).update(name=f"judge: {judge.name}")
    return judge


def judge_keys_rotate() -> int:
    """Re-encrypt every project judge key under the first of ASSAY_SECRETS_KEY; the number
    re-encrypted. Run after putting a new key first; then the old one may go."""
    count = 0
    for pk in Judge.objects.exclude(api_key_secret="").values_list("pk", flat=True):
        with transaction.atomic():
            judge = Judge.objects.select_for_update().get(pk=pk)
            if judge.api_key_secret:
                judge.api_key_secret = assay_secrets.rotate(judge.api_key_secret)
                judge.save(update_fields=["api_key_secret"])
                count += 1
    return count


@transaction.atomic
def judge_delete(*, judge: Judge) -> None:
    """Delete a judge that never graded (no runs, calls or verdicts), with its rater. One
    that graded stays, so its verdicts keep their provenance and its calls their cost."""
    judge = Judge.objects.select_for_update().get(pk=judge.pk)
    if judge_has_graded(judge):
        raise Conflict(
            f"Judge '{judge.name}' has graded; its runs, verdicts and costs name it, so it "
            "cannot be deleted."
        )
    rater_id = judge.rater_id
    try:
        judge.delete()
        Rater.objects.filter(pk=rater_id).delete()
    except ProtectedError as exc:  # a reference this check does not know yet
        raise Conflict(f"Judge '{judge.name}' is still referred to: {exc.args[0]}") from None


# --- Projects: deleted here, the one module that knows everything a project holds ---------


@transaction.atomic
def project_delete(*, project: Project) -> None:
    """Delete a project that holds no graded work: no published (or retired) rubric version
    and no responses. Its tasks, drafts, references, judges, snapshots and members go too."""
    from grading.models import DatasetSnapshot

    project = Project.objects.select_for_update().get(pk=project.pk)
    published = (
        RubricVersion.objects.filter(rubric__project=project)
        .exclude(status__in=[RubricVersion.Status.DRAFT, RubricVersion.Status.IN_REVIEW])
        .count()
    )
    responses = Response.objects.filter(task__project=project).count()
    if published or responses:
        raise Conflict(
            f"Project '{project.name}' holds {published} published rubric version(s) and "
            f"{responses} response(s); graded work and datasets name them, so it cannot be "
            "deleted."
        )
    files = [
        name
        for name in DatasetSnapshot.objects.filter(project=project).values_list("file", flat=True)
        if name
    ]
    # Foreign keys that PROTECT their target are deleted first, from the referring side.
    try:
        for judge in Judge.objects.filter(project=project):
            judge.delete()
        Rubric.objects.filter(project=project, template__isnull=False).delete()
        project.delete()
    except ProtectedError as exc:  # a reference this check does not know yet
        raise Conflict(f"Project '{project.name}' is still referred to: {exc.args[0]}") from None
    transaction.on_commit(lambda: [default_storage.delete(name) for name in files])


# --- Model prices: one table for every project, kept by staff ------------------------------

PRICE_FIELDS = ("input_per_mtok", "cached_input_per_mtok", "output_per_mtok")
MAX_PRICE = Decimal("999999.9999")


def _clean_price(value, field: str) -> Decimal:
    try:
        price = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise ValidationError({field: f"'{value}' is not a number."}) from None
    if not price.is_finite() or not 0 <= price <= MAX_PRICE:
        raise ValidationError({field: f"A price per million tokens, from 0 to {MAX_PRICE}."})
    if price != price.quantize(Decimal("0.0001")):
        raise ValidationError({field: "At most four decimals."})
    return price


@transaction.atomic
def model_price_set(
    *, model: str, price: ModelPrice | None = None, actor=None, **prices
) -> ModelPrice:
    """Create a model's price, or change `price`; prices not given keep their values (0 for
    a new model). Costs of runs are computed when read, so they follow at once."""
    model = (model or "").strip()
    if not model or len(model) > 200:
        raise ValidationError({"model": "Name the model (1-200 characters), as judges name it."})
    taken = ModelPrice.objects.filter(model=model)
    if price is not None:
        taken = taken.exclude(pk=price.pk)
    if taken.exists():
        raise ValidationError({"model": f"'{model}' has a price already; change that one."})
    row = price or ModelPrice()
    row.model = model
    for field in PRICE_FIELDS:
        if field in prices and prices[field] is not None:
            setattr(row, field, _clean_price(prices[field], field))
    return model_price_save(price=row, actor=actor, created=row.pk is None)


# --- Runs -------------------------------------------------------------------------------

# Output tokens a verdict costs, for estimates only (a short JSON object with a sentence).
EST_COMPLETION_TOKENS_PER_VERDICT = 60
EST_SAMPLE_RESPONSES = 25
# The most a judge's connection test may take (its request blocks a web worker).
CONNECTION_TEST_S = 20.0


def _sent(calls) -> list:
    """The calls that reached the judge (cache hits made none, nor did a call refused before
    it was sent): the ones a row is stored for, in this order."""
    return [c for c in calls if c.usage.attempts]


def _judge_call_rows(calls, *, run_id=None, response_id=None, judge_id=None) -> list[tuple]:
    """Rows for the calls that reached the judge (`_sent`), in the column order of
    _CALL_COLUMNS."""
    return [
        (
            run_id,
            judge_id or c.judge_id,
            response_id,
            c.sample_index,
            c.criteria,
            c.usage.attempts,
            c.usage.prompt_tokens,
            c.usage.cached_tokens,
            c.usage.completion_tokens,
            c.error,
            c.request,
            c.reply,
            math.ceil(c.usage.latency_s * 1000),
        )
        for c in _sent(calls)
    ]


def judge_settings(judge: Judge) -> JudgeSettings:
    return JudgeSettings(
        base_url=judge.base_url,
        model=judge.model,
        api_key_env=judge.api_key_env,
        api_key_secret=judge.api_key_secret,
        api_key_host=judge.api_key_host,
        temperature=judge.temperature,
        use_json_schema=judge.use_json_schema,
        timeout_s=settings.JUDGE_TIMEOUT_S,
        max_attempts=settings.JUDGE_MAX_ATTEMPTS,
        max_reasks=settings.JUDGE_MAX_REASKS,
        deadline_s=settings.JUDGE_ITEM_DEADLINE_S,
        send_cache_key=judge.send_cache_key,
        accepts_images=judge.accepts_images,
        accepts_files=judge.accepts_files,
    )


@dataclass(frozen=True)
class ConnectionTest:
    """The outcome of a judge's "test connection": what answered, or why nothing did."""

    ok: bool
    latency_ms: int
    model: str = ""
    answer: str = ""
    simulated: bool = False
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reason: str = ""  # JudgeError.reason when not ok
    message: str = ""


def judge_test_connection(*, judge: Judge) -> ConnectionTest:
    """One tiny request to the judge through the grading client (its address and key checks,
    transport and deadline), tried once: no retry, no re-ask. Never raises: any failure is
    an outcome to show. Writes nothing; takes no slot of the judge's limits."""
    judge_settings_ = dataclasses.replace(judge_settings(judge), max_attempts=1, max_reasks=0)
    client = JudgeClient(judge_settings_)
    started = time.monotonic()
    try:
        reply = client.ping(deadline=started + min(judge_settings_.deadline_s, CONNECTION_TEST_S))
    except JudgeError as exc:
        return ConnectionTest(
            ok=False,
            latency_ms=round(1000 * (time.monotonic() - started)),
            reason=exc.reason,
            message=str(exc),
        )
    except Exception as exc:  # no failure of a test may become a 500
        logger.exception("judge %s: connection test failed unexpectedly", judge.pk)
        return ConnectionTest(
            ok=False,
            latency_ms=round(1000 * (time.monotonic() - started)),
            reason="error",
            message=f"unexpected error: {type(exc).__name__}",
        )
    finally:
        client.close()
    return ConnectionTest(
        ok=True,
        latency_ms=round(1000 * (time.monotonic() - started)),
        model=reply.model,
        answer=reply.answer,
        simulated=reply.simulated,
        prompt_tokens=reply.usage.prompt_tokens,
        completion_tokens=reply.usage.completion_tokens,
    )


def judge_ref(judge: Judge) -> engine.JudgeRef:
    return engine.JudgeRef(
        judge_id=judge.pk,
        settings=judge_settings(judge),
        limits=Limits(
            judge_id=judge.pk,
            max_in_flight=judge.max_concurrency,
            requests_per_minute=judge.requests_per_minute,
            tokens_per_minute=judge.tokens_per_minute,
            lease_s=settings.JUDGE_TIMEOUT_S + 10,
        ),
    )


# Written out once: every chunk a worker grades reads its run's judges, and the ORM's
# compiling of the query with its subquery took about 2.5 ms of CPU a chunk (see _STORE_SQL).
_JUDGES_SQL = (
    f"SELECT * FROM {Judge._meta.db_table} WHERE id = %s OR id IN "  # noqa: S608 - constants
    f"(SELECT judge_id FROM {GradingRun.panel.through._meta.db_table} WHERE gradingrun_id = %s)"
)


def run_judges(run: GradingRun) -> list[Judge]:
    """The lead judge first, then the panel by id: the order the tie rule uses. One query,
    whether or not the run's lead judge is loaded already."""
    judges = sorted(
        Judge.objects.raw(_JUDGES_SQL, [run.judge_id, run.pk]),
        key=lambda j: (j.pk != run.judge_id, j.pk),
    )
    run.judge = judges[0]
    return judges


def _estimate_chars(spec: dict, responses: list[Response], singles, batch) -> float:
    """Prompt characters of all a grader's calls for each of `responses`, summed."""
    chars = 0
    if responses and singles:
        # judge_messages fills the slots of one template with the response's parts and the
        # criterion's parts, which do not depend on each other (fences are of fixed length):
        # every pair's length follows from each response with one criterion and each
        # criterion with one response, 45 prompts for 25 x 20 instead of 500.
        def size(response, criterion) -> int:
            rendered = prompts.judge_messages(
                spec, messages=response.task.messages, response=response.text, criterion=criterion
            )
            return sum(len(m["content"]) for m in rendered)

        first_response, first_criterion = responses[0], singles[0]
        chars += (
            len(singles) * sum(size(r, first_criterion) for r in responses)
            + len(responses) * sum(size(first_response, c) for c in singles)
            - len(responses) * len(singles) * size(first_response, first_criterion)
        )
    for response in responses:
        if batch:
            rendered = prompts.batch_messages(
                spec, messages=response.task.messages, response=response.text, criteria=batch
            )
            chars += sum(len(m["content"]) for m in rendered)
    return chars


def _calls_of(spec: dict, mode: str) -> tuple[list, list, list]:
    """(judged criteria, batched criteria, criteria called one by one) of a grader in a mode.
    Per criterion: one call each. Batched: one call for the batchable criteria (unless only
    one is), one each for the rest."""
    judged = [c for c in spec["criteria"] if engine.kind_of(c) != "checked"]
    batch = [c for c in judged if prompts.batchable(c)] if mode == engine.BATCHED else []
    if len(batch) == 1:
        batch = []
    return judged, batch, [c for c in judged if c not in batch]


VISUAL_CRITERION = re.compile(
    r"\b(images?|charts?|figures?|photos?|photographs?|diagrams?|pictures?|screenshots?)\b", re.I
)
IMAGE_PART = '"image_url"'


@dataclass(frozen=True)
class GraderShape:
    """What a run's size and estimate need of a grader's criteria, read without its spec (a
    HealthBench suite's 5,000 specs are 40 MB of JSON): how many criteria, how many are
    judged and how many of those can go in a batch, and the numbers of the judged criteria
    about an image, a chart, a figure, a photo or a diagram."""

    criteria: int
    judged: int
    batchable: int
    visual: tuple[int, ...] = ()

    @classmethod
    def of(cls, criteria: list[dict]) -> GraderShape:
        judged = [c for c in criteria if engine.kind_of(c) != "checked"]
        return cls(
            criteria=len(criteria),
            judged=len(judged),
            batchable=sum(1 for c in judged if prompts.batchable(c)),
            visual=tuple(
                n
                for n, c in enumerate(criteria, start=1)
                if engine.kind_of(c) != "checked" and VISUAL_CRITERION.search(c.get("text", ""))
            ),
        )

    def calls(self, mode: str) -> int:
        """Judge calls per response, as `_calls_of` counts them."""
        batch = self.batchable if mode == engine.BATCHED else 0
        if batch == 1:
            batch = 0
        return self.judged - batch + (1 if batch else 0)


# VISUAL_CRITERION's words as substrings of a lowercased text: a superset the database tests
# cheaply, so that only the few criteria it keeps are matched in Python.
_VISUAL_WORDS = [
    f"%{w}%" for w in ("image", "chart", "figure", "photo", "diagram", "picture", "screenshot")
]
# The characters outside ASCII that re.I takes for a letter of those words (Unicode's simple
# case folding): the dotted capital I and the dotless i for i, the long s for s (a word with
# a k would add the Kelvin sign; tests/test_run_create_scale.py tries all of Unicode).
# PostgreSQL's lower() leaves the dotless i and the long s as they are and folds the dotted I
# by the database's locale, so the database swaps them for their letters before lower(): its
# superset then never misses a criterion VISUAL_CRITERION finds.
_CASE_FOLDS = {"\u0130": "i", "\u0131": "i", "\u017f": "s"}
_FOLD_FROM, _FOLD_TO = "".join(_CASE_FOLDS), "".join(_CASE_FOLDS.values())


def grader_shapes(graders: QuerySet) -> dict[int, GraderShape]:
    """{grader id: GraderShape} of the graders whose ids `graders` (a queryset of ids) gives:
    GraderShape.of each one's criteria. On PostgreSQL the database counts the criteria in
    each spec and returns only those counts and the text of the criteria that may be visual;
    elsewhere each spec's criteria are read and counted here."""
    if connection.vendor != "postgresql":
        rows = Grader.objects.filter(pk__in=graders).values_list("pk", "spec__criteria")
        return {pk: GraderShape.of(criteria or []) for pk, criteria in rows}
    subquery, params = graders.query.sql_with_params()
    # engine.kind_of and prompts.batchable in SQL: a missing "kind" is binary; comparing
    # JSON values keeps a null or non-string kind judged but not batchable, as in Python.
    judged = "e.c -> 'kind' IS DISTINCT FROM '\"checked\"'::jsonb"
    batchable = "coalesce(e.c -> 'kind', '\"binary\"'::jsonb) IN ('\"binary\"', '\"scale\"')"
    sql = (
        "SELECT g.id, s.n, s.judged, s.batchable, s.visual "  # noqa: S608 - constants and the compiled subquery
        f"FROM {Grader._meta.db_table} g CROSS JOIN LATERAL ("
        f"SELECT count(*) AS n, count(*) FILTER (WHERE {judged}) AS judged, "
        f"count(*) FILTER (WHERE {batchable}) AS batchable, "
        "jsonb_agg(jsonb_build_array(e.n, e.c -> 'text') ORDER BY e.n) "
        f"FILTER (WHERE {judged} AND lower(translate(e.c ->> 'text', %s, %s)) LIKE ANY (%s)) "
        "AS visual "
        "FROM jsonb_array_elements(g.spec -> 'criteria') WITH ORDINALITY AS e(c, n)) s "
        f"WHERE g.id IN ({subquery})"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [_FOLD_FROM, _FOLD_TO, _VISUAL_WORDS, *params])
        rows = cursor.fetchall()
    shapes = {}
    for pk, n, judged_n, batchable_n, visual in rows:
        if isinstance(visual, str):  # Django reads jsonb as text, for JSONField to decode
            visual = json.loads(visual)
        shapes[pk] = GraderShape(
            criteria=n,
            judged=judged_n,
            batchable=batchable_n,
            visual=tuple(
                number
                for number, text in visual or ()
                if VISUAL_CRITERION.search(text if isinstance(text, str) else "")
            ),
        )
    return shapes


def image_warnings(
    *, work: RunWork, judges: list[Judge], shapes: dict[int, GraderShape]
) -> list[dict]:
    """What a run needs to see that some of its judges cannot: responses or tasks that carry
    images, or criteria about an image, a chart, a figure, a photo or a diagram, graded by a
    judge that does not accept images (it is told an image was there, and grades without it).
    One warning per judge that cannot see images, saying what needs them; none when every
    judge sees images or nothing needs them. Two counts, over the run's responses and their
    tasks as subqueries (no lists of ids), whatever the run's size."""
    blind = [j for j in judges if not j.accepts_images]
    if not blind or not work.pairs:
        return []
    needs = []
    # The stored shape names an image part's type "image_url"; a text quoting it is escaped
    # in the JSON.
    responses = (
        work.responses.annotate(_json=Cast("content", TextField()))
        .filter(_json__contains=IMAGE_PART)
        .count()
    )
    if responses:
        needs.append(f"{responses:,} response{'s carry' if responses != 1 else ' carries'} images")
    tasks = (
        Task.objects.filter(pk__in=work.responses.values("task_id"))
        .annotate(_json=Cast("messages", TextField()))
        .filter(_json__contains=IMAGE_PART)
        .count()
    )
    if tasks:
        needs.append(
            f"{tasks:,} task{'s carry' if tasks != 1 else ' carries'} images in its prompt"
        )
    visual = sorted({n for grader_id in work.by_grader() for n in shapes[grader_id].visual})
    if visual:
        numbers = ", ".join(f"#{n}" for n in visual[:10]) + (" ..." if len(visual) > 10 else "")
        needs.append(f"criteria {numbers} ask about an image, chart, figure, photo or diagram")
    if not needs:
        return []
    return [
        {
            "code": "judge_cannot_see_images",
            "judge": judge.name,
            "message": f"Judge '{judge.name}' cannot see images, but {'; '.join(needs)}: it "
            "will be told an image was there and grade without seeing it. Use a judge that "
            "accepts images.",
        }
        for judge in blind
    ]


def run_estimate(
    *,
    work: RunWork,
    judges: list[Judge],
    mode: str,
    samples: int,
    shapes: dict[int, GraderShape] | None = None,
) -> dict:
    """Calls and tokens a run will cost without the cache, for `work`: calls are counted
    exactly from each grader's shape (`grader_shapes`, read here unless given); tokens come
    from prompts rendered for a sample of EST_SAMPLE_RESPONSES responses spread over the
    graders (only their specs are read), and extrapolated per call to the graders not
    sampled. The cost, where an admin has priced the judges' models.

    A grader with trajectory or step criteria has its sampled responses' prompts rendered as
    the engine renders them (engine.planned_prompts: the episode in the fence, one prompt per
    step for step criteria), and its calls and verdicts per response are the sample's mean:
    how many steps an episode has is known only from its content. Unsampled, such a grader
    counts one call per criterion, as for texts."""
    by_grader = work.by_grader()
    if shapes is None:
        shapes = grader_shapes(work.graders())
    # The sample: graders in turn, one response each, until EST_SAMPLE_RESPONSES.
    picked: dict[int, list[int]] = {}
    queues = {g: list(ids[:EST_SAMPLE_RESPONSES]) for g, ids in by_grader.items()}
    taken = 0
    while taken < EST_SAMPLE_RESPONSES and any(queues.values()):
        for g, ids in queues.items():
            if ids and taken < EST_SAMPLE_RESPONSES:
                picked.setdefault(g, []).append(ids.pop(0))
                taken += 1
    loaded = Response.objects.select_related("task").in_bulk(
        [pk for ids in picked.values() for pk in ids]
    )
    specs = {pk: g.spec for pk, g in Grader.objects.in_bulk(list(picked)).items()}
    calls = input_tokens = output_tokens = checked = 0
    sampled_calls = sampled_tokens = 0.0
    unsampled_calls = 0
    images = 0.0
    # What each judge is sent depends on what it sees (images, files): prompts are planned
    # once per kind of judge, and the tokens and images of a response are the judges' mean.
    sights = [render.Sight(images=j.accepts_images, files=j.accepts_files) for j in judges]
    for grader_id, ids in by_grader.items():
        shape = shapes[grader_id]
        per_response_calls: float = shape.calls(mode)
        verdicts: float = shape.judged
        n = len(ids)
        checked += n * (shape.criteria - shape.judged)
        sample = [loaded[pk] for pk in picked.get(grader_id, []) if pk in loaded]
        spec = specs.get(grader_id)
        planned = None
        if sample and (
            engine.has_episode_scopes(spec)
            or any(engine.has_files(r.episode, r.task.messages) for r in sample)
        ):
            planned = {
                sight: [
                    engine.planned_prompts(
                        spec, messages=r.task.messages, response=r.episode, mode=mode, sight=sight
                    )
                    for r in sample
                ]
                for sight in set(sights)
            }
            first = planned[sights[0]]
            per_response_calls = sum(len(p) for p in first) / len(sample)
            verdicts = sum(k for p in first for k, _ in p) / len(sample)
        calls += n * per_response_calls
        output_tokens += n * verdicts * EST_COMPLETION_TOKENS_PER_VERDICT
        if sample:
            if planned is not None:
                tokens = sum(
                    prompts.prompt_tokens(pr)
                    for sight in sights
                    for p in planned[sight]
                    for _, pr in p
                ) / len(sights)
                shown = sum(
                    prompts.prompt_size(pr)[1]
                    for sight in sights
                    for p in planned[sight]
                    for _, pr in p
                ) / len(sights)
                images += n * shown / len(sample)
            else:
                _, batch, singles = _calls_of(spec, mode)
                tokens = _estimate_chars(spec, sample, singles, batch) / 4
            per_response = tokens / len(sample)
            input_tokens += n * per_response
            sampled_calls += per_response_calls
            sampled_tokens += per_response
        else:
            unsampled_calls += n * per_response_calls
    if unsampled_calls and sampled_calls:
        input_tokens += unsampled_calls * sampled_tokens / sampled_calls
    factor = len(judges) * samples
    estimate = {
        "calls": round(calls * factor),
        "input_tokens": round(input_tokens * factor),
        "output_tokens": round(output_tokens * factor),
        "checked_in_code": checked * factor,
        # Images sent beside the prompts (sampled, counted in input_tokens at
        # prompts.IMAGE_TOKENS each), and what the judges cannot see that the run needs.
        "images": round(images * samples),
        "warnings": image_warnings(work=work, judges=judges, shapes=shapes),
    }
    prices = {p.model: p for p in ModelPrice.objects.filter(model__in={j.model for j in judges})}
    if all(j.model in prices for j in judges):
        estimate["cost"] = round(
            sum(
                prices[j.model].cost(
                    prompt_tokens=estimate["input_tokens"] // len(judges),
                    cached_tokens=0,
                    completion_tokens=estimate["output_tokens"] // len(judges),
                )
                for j in judges
            ),
            4,
        )
    return estimate


def _clean_list(value, field: str, *, kind=str) -> list | None:
    """A selection filter: None (all), or a non-empty list of `kind`."""
    if value in (None, "", []):
        return None
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, list | tuple | set):
        raise ValidationError({field: "A list, or a comma-separated string."})
    try:
        cleaned = sorted({kind(v) for v in value})
    except (TypeError, ValueError):
        raise ValidationError({field: f"Every value must be a {kind.__name__}."}) from None
    return cleaned or None


@dataclass
class RunWork:
    """What a run over a suite version grades: each response with its task's pinned grader."""

    suite_version: SuiteVersion
    selection: dict
    pairs: list[tuple[int, int]]  # (response id, grader id), by response id
    # The same responses as a query: counts over them are subqueries, not lists of ids.
    responses: QuerySet

    def by_grader(self) -> dict[int, list[int]]:
        work: dict[int, list[int]] = {}
        for response_id, grader_id in self.pairs:
            work.setdefault(grader_id, []).append(response_id)
        return work

    def graders(self) -> QuerySet:
        """The ids of the graders the responses are graded by, as a query."""
        return SuiteEntry.objects.filter(
            version=self.suite_version, task_id__in=self.responses.values("task_id")
        ).values("grader_id")


def run_work(
    *,
    project: Project,
    suite_version: SuiteVersion,
    models=None,
    sample_indices=None,
    tasks=None,
    responses=None,
) -> RunWork:
    """The responses a run over `suite_version` grades: those of its tasks, narrowed to
    `models`, `sample_indices` and `tasks` (external ids) when given, or to the `responses`
    queryset a caller picked. An unknown task is refused by name."""
    if suite_version.suite.project_id != project.pk:
        raise ValidationError("The suite must belong to this project.")
    selection = {}
    entries = SuiteEntry.objects.filter(version=suite_version)
    models = _clean_list(models, "models")
    sample_indices = _clean_list(sample_indices, "sample_indices", kind=int)
    tasks = _clean_list(tasks, "tasks")
    if tasks:
        entries = entries.filter(task__external_id__in=tasks)
        known = set(entries.values_list("task__external_id", flat=True))
        unknown = [t for t in tasks if t not in known]
        if unknown:
            raise ValidationError(
                {"tasks": f"Not in suite version {suite_version.number}: {', '.join(unknown[:20])}"}
            )
        selection["tasks"] = tasks
    grader_of = dict(entries.values_list("task_id", "grader_id"))
    # The suite's tasks as a subquery: a HealthBench suite has 5,000.
    query = (responses if responses is not None else Response.objects.all()).filter(
        task__project=project, task_id__in=entries.values("task_id")
    )
    if models:
        query = query.filter(model__in=models)
        selection["models"] = models
    if sample_indices:
        query = query.filter(sample_index__in=sample_indices)
        selection["sample_indices"] = sample_indices
    pairs, seen = [], set()
    for pk, task_id, model in query.order_by("pk").values_list("pk", "task_id", "model"):
        pairs.append((pk, grader_of[task_id]))
        seen.add(model)
    # A model named but absent is a typo far more often than a wish for nothing: say which.
    absent = [m for m in models or () if m not in seen]
    if absent:
        raise ValidationError(
            {
                "models": f"No responses from {', '.join(map(repr, absent[:20]))} to grade in "
                f"{suite_version.suite.name} v{suite_version.number}."
            }
        )
    if not pairs:
        where = "for this rubric" if suite_version.suite.rubric_id else "in this suite"
        raise ValidationError(f"There are no responses to grade {where}; import some.")
    return RunWork(suite_version=suite_version, selection=selection, pairs=pairs, responses=query)


def _clean_run_options(judges: list[Judge], project: Project, mode: str, samples: int) -> None:
    if any(j.project_id != project.pk for j in judges):
        raise ValidationError("The judges must belong to this project.")
    if mode not in GradingRun.Mode.values:
        raise ValidationError({"mode": f"Choose one of {', '.join(GradingRun.Mode.values)}."})
    if not isinstance(samples, int) or not 1 <= samples <= 16:
        raise ValidationError({"samples": "Between 1 and 16 samples per item."})
    if samples > 1 and any(j.temperature <= 0 for j in judges):
        raise ValidationError(
            {"samples": "Several samples need judges with temperature above 0: at 0 they agree."}
        )


def _plan(
    *,
    project,
    judge,
    user,
    suite_version,
    grader,
    responses,
    models,
    sample_indices,
    tasks,
    panel,
    mode,
    samples,
):
    panel = [j for j in panel if j.pk != judge.pk]
    judges = [judge, *panel]
    _clean_run_options(judges, project, mode, samples)
    if (suite_version is None) == (grader is None):
        raise ValidationError("Grade a suite version or one rubric's grader.")
    if grader is not None:
        if grader.version.rubric.project_id != project.pk:
            raise ValidationError("The grader must belong to this project.")
        suite_version = suites.suite_of_grader(grader=grader, user=user)
    work = run_work(
        project=project,
        suite_version=suite_version,
        models=models,
        sample_indices=sample_indices,
        tasks=tasks,
        responses=responses,
    )
    return judges, work


@transaction.atomic
def run_create_estimate(
    *,
    project: Project,
    judge: Judge,
    suite_version: SuiteVersion | None = None,
    grader: Grader | None = None,
    models=None,
    sample_indices=None,
    tasks=None,
    panel: Iterable[Judge] = (),
    mode: str = engine.PER_CRITERION,
    samples: int = 1,
    user=None,
) -> dict:
    """What `run_create` with these arguments would cost, without starting anything."""
    judges, work = _plan(
        project=project,
        judge=judge,
        user=user,
        suite_version=suite_version,
        grader=grader,
        responses=None,
        models=models,
        sample_indices=sample_indices,
        tasks=tasks,
        panel=panel,
        mode=mode,
        samples=samples,
    )
    return run_estimate(work=work, judges=judges, mode=mode, samples=samples)


@transaction.atomic
def run_create(
    *,
    project: Project,
    judge: Judge,
    user,
    suite_version: SuiteVersion | None = None,
    grader: Grader | None = None,
    responses=None,
    models=None,
    sample_indices=None,
    tasks=None,
    panel: Iterable[Judge] = (),
    mode: str = engine.PER_CRITERION,
    samples: int = 1,
    use_cache: bool = True,
    start: bool = True,
) -> GradingRun:
    """A run over a frozen suite version; or over one grader, which is a run over its rubric's
    suite of one frozen with that grader (rubrics.suites.suite_of_grader): one path."""
    judges, work = _plan(
        project=project,
        judge=judge,
        user=user,
        suite_version=suite_version,
        grader=grader,
        responses=responses,
        models=models,
        sample_indices=sample_indices,
        tasks=tasks,
        panel=panel,
        mode=mode,
        samples=samples,
    )
    panel = judges[1:]
    suite_version = work.suite_version
    # Read once for the run's size and its estimate.
    shapes = grader_shapes(work.graders())
    total = (
        sum(len(ids) * shapes[g].criteria for g, ids in work.by_grader().items())
        * len(judges)
        * samples
    )
    run = GradingRun.objects.create(
        project=project,
        suite_version=suite_version,
        selection=work.selection,
        judge=judge,
        created_by=user,
        mode=mode,
        samples=samples,
        use_cache=use_cache,
        total_items=total,
        estimate=run_estimate(work=work, judges=judges, mode=mode, samples=samples, shapes=shapes),
    )
    if panel:
        run.panel.set(panel)
    # One pending score per response (COPY on PostgreSQL): the run's first judge calls wait
    # for this commit.
    bulk.insert_rows(
        Score,
        (
            {"run_id": run.pk, "response_id": response_id, "grader_id": grader_id}
            for response_id, grader_id in work.pairs
        ),
    )
    if start:
        from grading import tasks as celery_tasks  # tasks import services: breaks the cycle

        transaction.on_commit(lambda: _send(celery_tasks.run_start, run.pk))
    return run


def _send_all(task, calls: list[tuple]) -> int:
    """Queue many tasks over one broker connection (queueing is most of a run start's work),
    or stop when the broker is away and leave the rest to the recovery sweep. Returns how many
    were sent."""
    from kombu.exceptions import OperationalError as BrokerUnavailable

    sent = 0
    try:
        with task.app.producer_or_acquire() as producer:
            for args in calls:
                task.apply_async(args, producer=producer)
                sent += 1
    except (BrokerUnavailable, ConnectionError, *REDIS_DOWN) as exc:
        logger.warning(
            "broker unavailable after %d of %d %s; the rest is left to the recovery sweep: %s",
            sent,
            len(calls),
            task.name,
            exc,
        )
    return sent


def _chunks(response_ids: list[int]) -> list[list[int]]:
    """A run's responses in chunks of up to ASSAY_GRADE_CHUNK, one task each: the worker reads
    and writes a chunk's rows in a few statements, where one task per response would make a
    dozen queries and a broker round trip per response. A run too small to keep every
    worker thread busy with whole chunks goes out a response at a time, so its judge calls
    still overlap across threads."""
    size = max(1, min(settings.ASSAY_GRADE_CHUNK, len(response_ids) // CHUNK_SPREAD))
    return [response_ids[i : i + size] for i in range(0, len(response_ids), size)]


# At least this many tasks per run before responses are chunked (bench/grading.py runs 32
# worker threads; more tasks than threads keeps the tail of a run short).
CHUNK_SPREAD = 64


def _send_responses(run_id: int, response_ids: list[int]) -> int:
    """Queue `response_ids` of a run in chunks; returns how many responses were sent."""
    from grading import tasks

    chunks = _chunks(response_ids)
    if all(len(ids) == 1 for ids in chunks):
        return _send_all(tasks.grade_response, [(run_id, ids[0]) for ids in chunks])
    sent = _send_all(tasks.grade_responses, [(run_id, ids) for ids in chunks])
    return sum(len(ids) for ids in chunks[:sent])


def _send(task, *args) -> bool:
    """Queue one task, or leave it to the recovery sweep (runs_recover), which finds its work
    pending in the database, when the broker is away. False when not sent."""
    return _send_all(task, [args]) == 1


def run_start(*, run_id: int, enqueue: bool = True) -> int:
    """Mark a run running and queue every response not yet scored. Safe to call again: it is
    how an interrupted run resumes. Returns how many responses were queued."""

    updated = GradingRun.objects.filter(pk=run_id, status=GradingRun.Status.QUEUED).update(
        status=GradingRun.Status.RUNNING, started_at=timezone.now()
    )
    run = GradingRun.objects.get(pk=run_id)
    if run.status != GradingRun.Status.RUNNING:
        return 0
    pending = list(
        Score.objects.filter(run_id=run_id, status=Score.Status.PENDING)
        .order_by("pk")
        .values_list("response_id", flat=True)
    )
    if enqueue:
        _send_responses(run_id, pending)
    if not pending and updated:
        run_finish_if_done(run_id=run_id)
    return len(pending)


def run_cancel(*, run: GradingRun) -> bool:
    cancelled = bool(
        GradingRun.objects.filter(
            pk=run.pk, status__in=[GradingRun.Status.QUEUED, GradingRun.Status.RUNNING]
        ).update(status=GradingRun.Status.CANCELLED, finished_at=timezone.now())
    )
    if cancelled:
        transaction.on_commit(lambda: _set_cancel_flag(run.pk, True))
    return cancelled


@transaction.atomic
def run_resume(*, run: GradingRun) -> bool:
    """Take up a cancelled or interrupted run where it stopped: only pending work is queued."""
    from grading import tasks

    if run.status == GradingRun.Status.COMPLETED:
        return False
    GradingRun.objects.filter(pk=run.pk).exclude(status=GradingRun.Status.QUEUED).update(
        status=GradingRun.Status.RUNNING, finished_at=None, model_scores=None
    )
    transaction.on_commit(lambda: _set_cancel_flag(run.pk, False))
    transaction.on_commit(lambda: _send(tasks.run_start, run.pk))
    return True


@transaction.atomic
def run_retry_failed(*, run: GradingRun) -> int:
    """Re-queue only the items whose verdict is an error. Their error verdicts are deleted and
    their responses' scores made pending in the same transaction as the re-queueing (sent on
    commit), so an item is never both lost and re-graded twice. Returns the items re-queued."""

    locked = GradingRun.objects.select_for_update().get(pk=run.pk)
    if locked.status != GradingRun.Status.COMPLETED:
        raise ValidationError("Retry failed items once the run has finished (or resume it).")
    errors = Verdict.objects.filter(run_id=run.pk, outcome=Verdict.Outcome.ERROR)
    response_ids = sorted(set(errors.values_list("response_id", flat=True)))
    if not response_ids:
        return 0
    deleted, _ = errors.delete()
    Score.objects.filter(run_id=run.pk, response_id__in=response_ids).update(
        status=Score.Status.PENDING, raw=None, error_count=0, gated_by=[], finished_at=None
    )
    GradingRun.objects.filter(pk=run.pk).update(
        status=GradingRun.Status.RUNNING, finished_at=None, model_scores=None
    )

    transaction.on_commit(lambda: _send_responses(run.pk, response_ids))
    return deleted


# Written out once: every chunk of a run ends with it, and the ORM's compiling of the
# update and its subquery took about 2 ms of a worker's CPU a chunk (see _STORE_SQL).
_FINISH_SQL = (
    f"UPDATE {GradingRun._meta.db_table} SET status = %s, finished_at = %s "  # noqa: S608 - constants
    f"WHERE id = %s AND status = %s AND NOT EXISTS (SELECT 1 FROM {Score._meta.db_table} "
    "WHERE run_id = %s AND status = %s)"
)


def run_finish_if_done(*, run_id: int) -> bool:
    """Completion is derived from the database: a run is done when no score is pending. One
    conditional statement (every chunk of a run ends with it); the chunk that completes the
    run then stores its score per model (`_store_model_scores`)."""
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            _FINISH_SQL,
            [
                GradingRun.Status.COMPLETED,
                connection.ops.adapt_datetimefield_value(now),
                run_id,
                GradingRun.Status.RUNNING,
                run_id,
                Score.Status.PENDING,
            ],
        )
        finished = cursor.rowcount > 0
    if finished:
        _store_model_scores(run_id, finished_at=now)
    return finished


def _store_model_scores(run_id: int, *, finished_at) -> None:
    """Store the run's score per model (grading.results.leaderboard.model_scores), completed at
    `finished_at`: its scores no longer change unless it reopens, and then its finish time
    goes, so they are stored only while it is the one set. A reader in between, or after a
    failure to compute them, computes them itself (and stores them: leaderboard.model_scores).
    Not in the completing statement's transaction: every chunk would pay a BEGIN and a COMMIT
    for the one that completes the run."""
    try:
        scores = leaderboard.compute_model_scores([run_id])[run_id]
    except DatabaseFailure:
        raise  # the caller's to wait out (_with_db), or its transaction's to roll back
    except Exception:
        logger.exception("run %s completed without its model scores stored", run_id)
        return
    GradingRun.objects.filter(
        pk=run_id, status=GradingRun.Status.COMPLETED, finished_at=finished_at
    ).update(model_scores=leaderboard.scores_to_json(scores))


# --- Recovering work the broker lost ------------------------------------------------------


def runs_recover(*, stalled_for_s: float) -> dict[str, list[int]]:
    """Queue again the work of runs that look abandoned; returns what was done, by kind.

    The database says what is left (pending scores), so this never needs the lost messages:
    * a run still queued `stalled_for_s` after it was created: its start is sent again;
    * a running run with pending responses and no verdict or score for `stalled_for_s`:
      every pending response is queued again (recovery_check asks only once the broker's
      queue is empty);
    * with `stalled_for_s=0`, runs cancelled in the last week: their cancel flag is mirrored
      again in Redis.
    Queuing a response twice costs at most some repeated judge calls (a task still running
    it and the new one may both ask), never a second verdict. `stalled_for_s=0` takes every
    queued and running run: the broker's Redis came back empty, so all their tasks are gone.
    """
    from grading import tasks

    cutoff = timezone.now() - timedelta(seconds=stalled_for_s)
    done: dict[str, list[int]] = {"started": [], "requeued": [], "cancel_flags": []}
    for run_id in GradingRun.objects.filter(
        status=GradingRun.Status.QUEUED, created_at__lte=cutoff
    ).values_list("pk", flat=True):
        if _claim_requeue(run_id, forced=stalled_for_s <= 0) and _send(tasks.run_start, run_id):
            done["started"].append(run_id)
    recent_verdicts = Verdict.objects.filter(run=OuterRef("pk"), created_at__gt=cutoff)
    recent_scores = Score.objects.filter(run=OuterRef("pk"), finished_at__gt=cutoff)
    stalled = GradingRun.objects.filter(
        Q(started_at__isnull=True) | Q(started_at__lte=cutoff),
        status=GradingRun.Status.RUNNING,
    )
    if stalled_for_s > 0:
        stalled = stalled.filter(~Exists(recent_verdicts), ~Exists(recent_scores))
    for run_id in stalled.values_list("pk", flat=True):
        if not _claim_requeue(run_id, forced=stalled_for_s <= 0):
            continue  # re-queued within the last stall period (here or by another worker)
        pending = Score.objects.filter(run_id=run_id, status=Score.Status.PENDING)
        calls = list(pending.order_by("pk").values_list("response_id", flat=True))
        if _send_responses(run_id, calls) < len(calls):
            return done
        done["requeued"].append(run_id)
    if stalled_for_s > 0:
        return done
    week_ago = timezone.now() - timedelta(seconds=CANCEL_FLAG_TTL_S)
    for run_id in GradingRun.objects.filter(
        status=GradingRun.Status.CANCELLED, finished_at__gte=week_ago
    ).values_list("pk", flat=True):
        _set_cancel_flag(run_id, True)
        done["cancel_flags"].append(run_id)
    return done


def recovery_check() -> dict[str, list[int]] | None:
    """One look by a worker's recovery sweep (grading.tasks): everything if the broker's Redis
    came back empty since the last look (exactly one worker hears so), else the stalled runs.
    Returns what was done, or None when there was nothing to look at yet."""
    try:
        emptied = broker.came_back_empty()
    except REDIS_DOWN:
        return None  # the broker is away: nothing can be queued now; look again later
    if emptied:
        logger.warning("the broker came back empty: queuing the pending work of every run again")
        return runs_recover(stalled_for_s=0)
    if settings.ASSAY_RUN_STALL_S <= 0:
        return None
    try:
        if broker.queued_tasks():
            # Tasks still wait: a run may be quiet only because its turn has not come, and
            # queuing it again would pile duplicates on the backlog. Lost tasks are looked for
            # once the queue has drained.
            return None
    except broker.BROKER_DOWN:
        return None
    return runs_recover(stalled_for_s=settings.ASSAY_RUN_STALL_S)


def imports_recover() -> dict[str, list]:
    """The recovery sweep's look at background imports (annotation.import_jobs): a queued
    import is queued again only once the broker's queue has drained (it may just be waiting
    its turn), and never while the broker is away or on one whose queue cannot be read."""
    from annotation import import_jobs

    try:
        drained = broker.queued_tasks() == 0
    except broker.BROKER_DOWN:
        drained = False
    return import_jobs.import_jobs_recover(queue_drained=drained)


def _claim_requeue(run_id: int, *, forced: bool) -> bool:
    """A run is started or re-queued as stalled at most once per stall period, by one worker
    of many: a key in Redis says it was (without Redis, each worker's sweep may do it again).
    Re-queued tasks need time to show progress, for instance while a killed worker's judge
    leases expire. `forced` (the broker came back empty) goes ahead regardless and starts the
    period."""
    client = redis_client()
    if client is None:
        return True
    period = max(1, settings.ASSAY_RUN_STALL_S)
    try:
        claimed = client.set(
            f"{settings.ASSAY_REDIS_PREFIX}:run:{run_id}:requeued", "1", nx=not forced, ex=period
        )
    except REDIS_DOWN:
        return forced
    return forced or bool(claimed)


# --- Cancellation, seen between judge calls --------------------------------------------

CANCEL_CHECK_S = 0.5
CANCEL_FLAG_TTL_S = 7 * 24 * 3600
_live: dict[int, tuple[float, bool]] = {}
_live_lock = threading.Lock()


def _cancel_key(run_id: int) -> str:
    return f"{settings.ASSAY_REDIS_PREFIX}:run:{run_id}:cancelled"


def _set_cancel_flag(run_id: int, cancelled: bool) -> None:
    """Mirror a run's cancellation in Redis, where judge threads look between calls without
    opening database connections. The database stays the truth: tasks check it on start."""
    client = redis_client()
    if client is None:
        return
    try:
        if cancelled:
            client.set(_cancel_key(run_id), "1", ex=CANCEL_FLAG_TTL_S)
        else:
            client.delete(_cancel_key(run_id))
    except REDIS_DOWN as exc:
        # The cancel stands in the database, which every task checks when it starts; the
        # recovery sweep mirrors it again once Redis is back.
        logger.warning("could not mirror the cancel of run %s in Redis: %s", run_id, exc)


def run_is_live(run_id: int) -> bool:
    """Whether the run still wants judge calls; looked up at most every half second per
    process (in Redis, or the database without it), so a cancel stops new calls within
    about that."""
    now = time.monotonic()
    with _live_lock:
        seen = _live.get(run_id)
        if seen and now - seen[0] < CANCEL_CHECK_S:
            return seen[1]
    client = redis_client()
    live = None
    if client is not None:
        try:
            live = not client.exists(_cancel_key(run_id))
        except REDIS_DOWN:
            live = None  # Redis is away: ask the database, which is the truth anyway
    if live is None:
        try:
            live = GradingRun.objects.filter(pk=run_id, status=GradingRun.Status.RUNNING).exists()
        except DB_DOWN:
            # Neither answers: keep going as last seen; a cancel is still honoured by every
            # task that starts later, and a resume grades only what is missing.
            live = seen[1] if seen else True
        finally:
            if threading.current_thread().name.startswith("judge"):
                close_db_connection()
    with _live_lock:
        _live[run_id] = (time.monotonic(), live)
    return live


def _stopper(run_id: int):
    return lambda: not run_is_live(run_id)


# --- Combining samples and panels -----------------------------------------------------

TIE_RULE = (
    "Samples of one judge combine by majority (binary) or mean (scale); the panel's verdict is "
    "the majority of its judges. A tie goes to the lead judge (and, among samples, to sample "
    "0). Any error among them makes the item an error, to be retried."
)


def combine(outcomes: list[scoring.Outcome]) -> scoring.Outcome:
    """Majority (binary) or mean (scale) of outcomes in precedence order (lead first)."""
    if len(outcomes) == 1:
        return outcomes[0]
    if any(o.outcome == scoring.ERROR for o in outcomes):
        return scoring.Outcome(scoring.ERROR)
    if any(o.value is not None for o in outcomes):
        values = [o.value or 0.0 for o in outcomes]
        mean = sum(values) / len(values)
        return scoring.Outcome(scoring.MET if mean > 0 else scoring.UNMET, mean)
    met = sum(1 for o in outcomes if o.outcome == scoring.MET)
    unmet = sum(1 for o in outcomes if o.outcome == scoring.UNMET)
    if met == unmet:
        return outcomes[0]
    return scoring.Outcome(scoring.MET if met > unmet else scoring.UNMET)


def combined_outcomes(
    rows: Iterable[tuple[int, int, int, str, float | None]], rater_order: list[int]
) -> dict[int, scoring.Outcome]:
    """rows: (criterion, rater, sample, outcome, value) -> the run's verdict per criterion."""
    grid: dict[int, dict[int, list[tuple[int, scoring.Outcome]]]] = {}
    for criterion_id, rater_id, sample, outcome, value in rows:
        grid.setdefault(criterion_id, {}).setdefault(rater_id, []).append(
            (sample, scoring.Outcome(outcome, value))
        )
    result = {}
    for criterion_id, per_rater in grid.items():
        judges = []
        for rater_id in rater_order:
            if rater_id in per_rater:
                judges.append(combine([o for _, o in sorted(per_rater[rater_id])]))
        result[criterion_id] = combine(judges)
    return result


def score_with_tags(spec: dict, outcomes: dict[int, scoring.Outcome]):
    """The response's score, and one per axis tag over the criteria carrying it."""
    figures = scoring.score(spec, outcomes)
    tags: dict[str, list[dict]] = {}
    for c in spec["criteria"]:
        for tag in c.get("tags") or []:
            tags.setdefault(str(tag), []).append(c)
    by_tag = {}
    for tag, criteria in sorted(tags.items()):
        sub = {**spec, "criteria": criteria, "groups": []}
        if sub.get("aggregation", {}).get("method") == "tree":
            sub["aggregation"] = {"method": "healthbench"}
        by_tag[tag] = scoring.score(sub, outcomes).raw
    return figures, by_tag


# --- Waiting out a database restart -------------------------------------------------------

# The connection broke or could not be made (OperationalError), or a connection that broke
# earlier was used again (InterfaceError).
DB_DOWN = (OperationalError, InterfaceError)


def close_db_connection() -> None:
    with contextlib.suppress(*DB_DOWN):
        connection.close()


def _with_db(fn, *, what: str):
    """`fn()` (reads, or one transaction of writes), done again on a fresh connection while
    PostgreSQL is away (a restart, a failover), for up to ASSAY_SERVICE_WAIT_S. A transaction
    cut off by the restart rolled back; the ones done again here are idempotent (verdicts are
    unique per item, scores and runs change by conditional updates)."""
    away_since = None
    while True:
        try:
            return fn()
        except DB_DOWN as exc:
            if connection.in_atomic_block:
                raise  # an outer transaction is lost as a whole: its owner must start again
            away_since = away_since or time.monotonic()
            close_db_connection()
            if time.monotonic() - away_since > settings.ASSAY_SERVICE_WAIT_S:
                raise
            logger.warning("database unavailable while %s (%s); waiting", what, exc)
            time.sleep(0.5)


# --- The worker's unit of work: one response of a run ---------------------------------


# The judge's answers and its calls are read and written on every graded response and every
# reward request, where the ORM's compiling of a query costs more than the database's answer
# (about 1 ms of CPU against 0.3 ms here): these few statements are written out once.
# Each table's columns: the statements below, and the order of the rows' values, come from
# these.
_CACHE_COLUMNS = (
    "key",
    "outcome",
    "value",
    "explanation",
    "raw_output",
    "judge_model",
    "simulated",
)
_CALL_COLUMNS = (
    "run_id",
    "judge_id",
    "response_id",
    "sample_index",
    "criteria",
    "attempts",
    "prompt_tokens",
    "cached_tokens",
    "completion_tokens",
    "error",
    "request",
    "reply",
    "latency_ms",
)


def _insert_sql(table: str, columns: tuple[str, ...]) -> str:
    """INSERT of rows sent as one JSON array of objects (column: value), stamped now: the
    table's own row type reads each value as its column's type."""
    names = ", ".join(columns)
    return (
        f"INSERT INTO {table} ({names}, created_at) "  # noqa: S608 - constants
        f"SELECT {names}, now() FROM json_populate_recordset(NULL::{table}, %s::json)"
    )


# PostgreSQL: both inserts in one statement (one round trip, and one commit outside a
# transaction), answering the calls' new ids in the order of their rows: ids come from a
# sequence, taken as the rows are inserted in the order the array gives them. The rows go as
# two JSON texts rather than an array per column, which psycopg adapts item by item in
# Python: a per-criterion reward request's 20 calls (their requests and replies, 76 kB) and
# 20 answers took 3.8 ms of CPU that way, 1.7 ms so.
_STORE_SQL = (
    f"WITH calls AS ({_insert_sql(JudgeCall._meta.db_table, _CALL_COLUMNS)} RETURNING id), "  # noqa: S608 - constants
    f"answers AS ({_insert_sql(CachedVerdict._meta.db_table, _CACHE_COLUMNS)} "
    "ON CONFLICT (key) DO NOTHING) "
    "SELECT id FROM calls ORDER BY id"
)
_LOOKUP_SQL = (
    f"SELECT {', '.join(_CACHE_COLUMNS)} FROM {CachedVerdict._meta.db_table} "  # noqa: S608
    "WHERE key IN ({marks})"
)


def _cache_lookup(keys: list[str]) -> dict[str, engine.Graded]:
    if not keys:
        return {}
    marks = ", ".join(["%s"] * len(keys))  # placeholders only: the keys are parameters
    with connection.cursor() as cursor:
        cursor.execute(_LOOKUP_SQL.format(marks=marks), keys)
        rows = cursor.fetchall()
    return {
        key: engine.Graded(
            criterion_id=0,
            outcome=outcome,
            value=value,
            explanation=explanation,
            raw=raw_output,
            judge_model=judge_model,
            simulated=bool(simulated),
        )
        for key, outcome, value, explanation, raw_output, judge_model, simulated in rows
    }


def _cache_rows(to_cache: dict[str, engine.Graded]) -> list[tuple]:
    """Readable answers (errors are asked again), in the column order of _CACHE_COLUMNS."""
    return [
        (key, g.outcome, g.value, g.explanation, g.raw, g.judge_model, g.simulated)
        for key, g in to_cache.items()
        if g.judged
    ]


def _store_answers(cache_rows: list[tuple], call_rows: list[tuple]) -> list[int]:
    """Write the judge's answers to the cache (a key already there is kept) and the rows of
    its calls, together: in one statement on PostgreSQL, else in the caller's transaction or
    one of their own. Returns the calls' ids, in the order of `call_rows`."""
    if not cache_rows and not call_rows:
        return []
    if connection.vendor == "postgresql":
        calls = json.dumps(
            [dict(zip(_CALL_COLUMNS, r, strict=True)) for r in call_rows],
            ensure_ascii=False,
            allow_nan=False,
        )
        answers = json.dumps(
            [dict(zip(_CACHE_COLUMNS, r, strict=True)) for r in cache_rows],
            ensure_ascii=False,
            allow_nan=False,
        )
        with connection.cursor() as cursor:
            cursor.execute(_STORE_SQL, [calls, answers])
            return [row[0] for row in cursor.fetchall()]
    with transaction.atomic():
        CachedVerdict.objects.bulk_create(
            [CachedVerdict(**dict(zip(_CACHE_COLUMNS, r, strict=True))) for r in cache_rows],
            ignore_conflicts=True,
        )
        calls = JudgeCall.objects.bulk_create(
            [JudgeCall(**dict(zip(_CALL_COLUMNS, r, strict=True))) for r in call_rows]
        )
        return [c.pk for c in calls]


def _store_flag(response: Response, finding: injection.Finding) -> None:
    """One row per response, upserted, so concurrent runs of the same response never clash."""
    ResponseFlag.objects.bulk_create(
        [ResponseFlag(response=response, reasons=finding.as_list(), detector=injection.DETECTOR)],
        update_conflicts=True,
        unique_fields=["response"],
        update_fields=["reasons", "detector"],
    )


# Graders are immutable (a published version's compiled spec, named by its hash): a worker
# process reads each once, not once per response.
_graders: dict[int, Grader] = {}
_graders_lock = threading.Lock()


def graders_by_id(ids: Iterable[int]) -> dict[int, Grader]:
    """The graders of `ids`, from this process's cache; the missing ones in one query."""
    wanted = set(ids)
    with _graders_lock:
        found = {pk: _graders[pk] for pk in wanted if pk in _graders}
    missing = wanted - found.keys()
    if missing:
        read = Grader.objects.only("id", "hash", "spec", "version_id").in_bulk(list(missing))
        with _graders_lock:
            if len(_graders) + len(read) > 4096:
                _graders.clear()
            _graders.update(read)
        found.update(read)
    return found


@dataclass
class _Work:
    """What one response of a chunk needs to be graded, read from the database up front."""

    score: Score
    response: Response
    items: list[tuple[int, int, int]]


@dataclass
class _Chunk:
    """What a chunk of one run's responses needs: its run and judges, read once for all."""

    run: GradingRun
    judges: list[Judge]
    work: dict[int, _Work | str]  # response id -> its work, or why there is none


# An item of a response: what makes a verdict unique in a run.
_ITEM_COLUMNS = ("criterion_id", "rater_id", "sample_index")


def _verdict_rows(run_id: int, response_ids: list[int], columns: tuple[str, ...]) -> list[tuple]:
    """(response id, *columns) of the run's verdicts on `response_ids` (on each response, not
    at its steps). Written out: every chunk reads them twice (what is done, then the scores),
    and the ORM's compiling took more CPU than the database's answer (see _STORE_SQL)."""
    if not response_ids:
        return []
    marks = ", ".join(["%s"] * len(response_ids))  # placeholders only: the ids are parameters
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT response_id, {', '.join(columns)} FROM {Verdict._meta.db_table} "  # noqa: S608 - constants
            f"WHERE run_id = %s AND response_id IN ({marks}) AND step IS NULL",
            [run_id, *response_ids],
        )
        return cursor.fetchall()


def _work_for(run_id: int, response_ids: list[int]) -> _Chunk | str:
    """A few queries for the whole chunk, however many tasks and graders it spans: the scores
    with their run, responses and tasks; the judges; the verdicts already given; and the
    graders this process has not read yet."""
    scores = list(
        Score.objects.select_related("run", "response__task").filter(
            run_id=run_id, response_id__in=response_ids
        )
    )
    run = scores[0].run if scores else GradingRun.objects.only("status").get(pk=run_id)
    if run.status != GradingRun.Status.RUNNING:
        return f"run is {run.status}"
    by_response = {s.response_id: s for s in scores if s.status != Score.Status.DONE}
    work: dict[int, _Work | str] = {pk: "already scored" for pk in response_ids}
    if not by_response:
        return _Chunk(run, [], work)
    judges = run_judges(run)
    graders = graders_by_id(s.grader_id for s in by_response.values())
    done: dict[int, set] = {}
    # An item is done once it has its verdict on the response: a step criterion's steps
    # are decided with it (a retry judges its steps again, each stored once).
    for response_id, *item in _verdict_rows(run_id, list(by_response), _ITEM_COLUMNS):
        done.setdefault(response_id, set()).add(tuple(item))
    for response_id, score in by_response.items():
        score.grader = graders[score.grader_id]
        seen = done.get(response_id, set())
        items = [
            (c["id"], j.pk, s)
            for c in score.grader.spec["criteria"]
            for j in judges
            for s in range(run.samples)
            if (c["id"], j.rater_id, s) not in seen
        ]
        work[response_id] = _Work(score, score.response, items)
    return _Chunk(run, judges, work)


@dataclass
class _Graded:
    """One response's judge answers, ready to be written."""

    response: Response
    finding: injection.Finding | None
    verdicts: list[Verdict]
    verdict_call: list[int | None]  # index into `calls` of the call that decided each
    calls: list[tuple]
    cache_rows: list[tuple]
    cancelled: bool


def _plan_one(
    run: GradingRun, refs: list[engine.JudgeRef], work: _Work
) -> tuple[Episode, engine.Plan | Exception]:
    """One response of a chunk: its episode (parsed once: the engine and the detector both
    read it) and its `engine.plan_items`, or what that raised (`_grade_one` ends its items as
    errors)."""
    grader = work.score.grader
    episode = work.response.episode
    try:
        planned = engine.plan_items(
            grader.spec,
            grader_hash=grader.hash,
            judges=refs,
            messages=work.response.task.messages,
            response=episode,
            items=work.items,
            mode=run.mode,
        )
    except Exception as exc:  # noqa: BLE001 - see above
        return episode, exc
    return episode, planned


def _grade_one(
    run: GradingRun,
    judges: list[Judge],
    work: _Work,
    planned: tuple[Episode, engine.Plan | Exception],
    hits: dict[str, engine.Graded] | None,
) -> _Graded:
    """Ask the judges about one response's undecided items (`planned` by `_plan_one`) that
    the chunk's cache read (`hits`) did not decide."""
    run_id, response = run.pk, work.response
    grader = work.score.grader
    rater_of = {j.pk: j.rater_id for j in judges}
    episode, planned = planned
    found: list[injection.Finding | None] = []

    def detect() -> None:
        if not found:
            found.append(injection.detect(episode))

    try:
        if isinstance(planned, Exception):
            raise planned
        # Graded all the same; the judge's verdicts on a flagged response go to a reviewer.
        # Looked for while the judge answers, once every call is sent (as the reward
        # endpoint does): the first calls of a run need not wait, nor the next response.
        outcome = engine.finish_items(
            planned, hits or {}, should_stop=_stopper(run_id), while_waiting=detect
        )
    except DB_DOWN:
        raise  # the task goes back to the queue (grading.tasks.DB_RETRY)
    except Exception as exc:  # noqa: BLE001 - a crash would leave the items to the sweep
        # The items end as errors now, rather than as a task that fails each time the
        # recovery sweep queues it again: "Retry failed items" asks again.
        outcome = engine.Outcome(graded=engine.failed(work.items, exc))
    detect()  # if no call was made (all from the cache, an empty response, a failure)
    finding = found[0]
    # Items stopped by a cancel stay undecided (not errors): a resume grades them.
    kept = [g for g in outcome.graded if g.reason != "cancelled"]
    verdicts = [
        Verdict(
            run_id=run_id,
            response_id=response.pk,
            criterion_id=g.criterion_id,
            rater_id=rater_of[g.judge_id],
            grader_id=grader.pk,
            sample_index=g.sample_index,
            step=g.step,
            outcome=g.outcome,
            value=g.value,
            explanation=g.explanation,
            raw_output=g.raw if g.outcome == scoring.ERROR or not g.cached else "",
            error=g.error,
            judge_model=g.judge_model,
            simulated=g.simulated,
            prompt_tokens=g.prompt_tokens,
            completion_tokens=g.completion_tokens,
            needs_review=finding is not None and g.judged,
        )
        for g in kept
    ]
    # Which stored call decided each item: its verdict points to it once the call has an id.
    call_of = {
        (criterion_id, c.judge_id, c.sample_index, c.step): i
        for i, c in enumerate(_sent(outcome.calls))
        for criterion_id in c.criterion_ids
    }
    return _Graded(
        response=response,
        finding=finding,
        verdicts=verdicts,
        verdict_call=[
            call_of.get((g.criterion_id, g.judge_id, g.sample_index, g.step))
            if not g.cached
            else None
            for g in kept
        ],
        calls=_judge_call_rows(outcome.calls, run_id=run_id, response_id=response.pk),
        cache_rows=_cache_rows(outcome.to_cache),
        cancelled=len(kept) < len(outcome.graded),
    )


def _write(run: GradingRun, graded: list[_Graded]) -> None:
    """The chunk's flags, cached answers, calls and verdicts in one transaction, a statement
    each. Verdicts are unique per item: one already there (a redelivered task) is kept."""
    calls = [row for g in graded for row in g.calls]
    verdicts = []
    offset = 0
    with transaction.atomic():
        for g in graded:
            if g.finding is not None:
                _store_flag(g.response, g.finding)
        ids = _store_answers([row for g in graded for row in g.cache_rows], calls)
        for g in graded:
            for verdict, i in zip(g.verdicts, g.verdict_call, strict=True):
                verdict.call_id = None if i is None else ids[offset + i]
            offset += len(g.calls)
            verdicts += g.verdicts
        Verdict.objects.bulk_create(verdicts, ignore_conflicts=True)
        if any(v.simulated for v in verdicts) and not run.simulated:
            GradingRun.objects.filter(pk=run.pk).update(simulated=True)
            run.simulated = True


# A chunk's verdicts are written together at its end, or as soon as its responses so far have
# taken this long.
CHUNK_WRITE_S = 30


def grade_response(*, run_id: int, response_id: int) -> str:
    """Grade one response of a run (`grade_responses` of one)."""
    return grade_responses(run_id=run_id, response_ids=[response_id])[0]


def grade_responses(*, run_id: int, response_ids: list[int]) -> list[str]:
    """Grade every (criterion, judge, sample) of a chunk of one run's responses that has no
    verdict yet, then score each response (a step criterion's item writes its verdict at each
    step, Verdict.step, beside its verdict on the response; the run's items, its progress and
    its score count only the latter); what became of each, in the order of
    `response_ids`. What the chunk needs, the cache's answers included, is read in a few
    queries, its verdicts written in one transaction (sooner with a slow judge: CHUNK_WRITE_S)
    and its scores in one statement, however many responses, tasks and graders it spans.

    Idempotent: verdicts are unique per (run, response, criterion, rater, sample) in the
    database, so a redelivered task skips what is done and never writes a second verdict.
    A PostgreSQL restart is waited out (`_with_db`): the judge's answers are kept in memory
    and written once the database is back, never thrown away and asked again.
    """
    where = f"grading responses {response_ids[:5]} of run {run_id}"
    chunk = _with_db(lambda: _work_for(run_id, response_ids), what=where)
    if isinstance(chunk, str):
        return [chunk] * len(response_ids)
    run, judges, said = chunk.run, chunk.judges, dict(chunk.work)
    todo = [(pk, w) for pk, w in chunk.work.items() if isinstance(w, _Work)]
    graded: list[_Graded] = []
    stopped: list[int] = []  # responses a cancel stopped (or kept from starting)
    written = time.monotonic()
    refs = [judge_ref(j) for j in judges]
    # Every response planned first (no I/O), so the chunk reads the cache in one query.
    planned = {pk: _plan_one(run, refs, w) for pk, w in todo if w.items}
    hits = None
    if run.use_cache:
        keys = [k for _, p in planned.values() if isinstance(p, engine.Plan) for k in p.keys]
        hits = _with_db(lambda: _cache_lookup(keys), what=where)
    for response_id, work in todo:
        if stopped:
            stopped.append(response_id)
            continue
        said[response_id] = f"graded {len(work.items)} items"
        if not work.items:
            continue
        g = _grade_one(run, judges, work, planned.pop(response_id), hits)
        graded.append(g)
        if g.cancelled:
            stopped.append(response_id)
        elif time.monotonic() - written > CHUNK_WRITE_S:
            # A slow judge: what is decided is saved as it goes, so the run shows progress
            # (and the stall sweep sees it) as it would with a task per response.
            _with_db(lambda batch=graded: _write(run, batch), what=where)
            graded, written = [], time.monotonic()
    if graded:
        _with_db(lambda: _write(run, graded), what=where)
    if stopped:
        resumed = _with_db(
            lambda: GradingRun.objects.filter(pk=run_id, status=GradingRun.Status.RUNNING).exists(),
            what=where,
        )
        if resumed:
            # Resumed while we stopped: the responses are still pending, so queue them again
            # rather than leave them to nobody.
            _send_responses(run_id, stopped)
        for pk in stopped:
            said[pk] = "stopped, then resumed: queued again" if resumed else "cancelled"
    to_score = [w.score for pk, w in todo if pk not in stopped]
    if to_score:
        scored = _with_db(lambda: _score(run, to_score, judges), what=where)
        for score in to_score:
            if score.pk not in scored:
                said[score.response_id] = "incomplete"
    return [said[pk] for pk in response_ids]


def _score(run: GradingRun, scores: list[Score], judges: list[Judge]) -> set[int]:
    """Score each response once all its items have a verdict, in one statement for the
    chunk; the ids of the scores done."""
    rows: dict[int, list] = {s.response_id: [] for s in scores}
    columns = (*_ITEM_COLUMNS, "outcome", "value")
    for response_id, *row in _verdict_rows(run.pk, list(rows), columns):
        rows[response_id].append(row)
    raters = [j.rater_id for j in judges]
    done = []
    for score in scores:
        spec = score.grader.spec
        if len(rows[score.response_id]) < len(spec["criteria"]) * len(judges) * run.samples:
            continue
        figures, by_tag = score_with_tags(spec, combined_outcomes(rows[score.response_id], raters))
        score.raw = figures.raw
        score.met_points = figures.met_points
        score.possible_points = figures.possible_points
        score.error_count = figures.error_count
        score.by_tag = by_tag
        score.gated_by = list(figures.gated_by)
        done.append(score)
    if done:
        _store_scores(done)
        run_finish_if_done(run_id=run.pk)
    return {s.pk for s in done}


_SCORE_FIELDS = {
    "raw": "float8",
    "met_points": "float8",
    "possible_points": "float8",
    "error_count": "int",
    "by_tag": "jsonb",
    "gated_by": "jsonb",
}
# PostgreSQL: a chunk's scores in one statement, each row's figures sent as one array per
# column (as _STORE_SQL sends verdicts); only a pending score changes (a redelivered chunk's
# second scoring is a no-op).
_SCORE_SQL = (
    f"UPDATE {Score._meta.db_table} AS s SET status = %s, finished_at = now(), "  # noqa: S608 - constants
    + ", ".join(f"{f} = d.{f}::{kind}" for f, kind in _SCORE_FIELDS.items())
    + " FROM unnest(%s::bigint[], "
    + ", ".join(f"%s::{'text' if kind == 'jsonb' else kind}[]" for kind in _SCORE_FIELDS.values())
    + f") AS d(id, {', '.join(_SCORE_FIELDS)}) WHERE s.id = d.id AND s.status = %s"
)


def _store_scores(scores: list[Score]) -> None:
    """Mark `scores` done with the figures set on them, those still pending only."""
    if connection.vendor != "postgresql":
        for score in scores:
            score.status, score.finished_at = Score.Status.DONE, timezone.now()
        Score.objects.filter(status=Score.Status.PENDING).bulk_update(
            scores, ["status", "finished_at", *_SCORE_FIELDS]
        )
        return
    columns = [[s.pk for s in scores]]
    for field, kind in _SCORE_FIELDS.items():
        values = [getattr(s, field) for s in scores]
        columns.append([json.dumps(v) for v in values] if kind == "jsonb" else values)
    with connection.cursor() as cursor:
        cursor.execute(_SCORE_SQL, [Score.Status.DONE, *columns, Score.Status.PENDING])


# --- The reward endpoint: synchronous scores, same engine, cache and limits ---------------


@dataclass(frozen=True)
class StepReward:
    """A step criterion's verdict at one step of an episode, as a process reward: in score
    units, the criterion's points times the step's credit (1 met, a scale's value, 0 not
    met) over the rubric's positive points, so a pitfall met at a step is negative and a
    response's steps weigh as its criteria do. None for an error."""

    step: int
    criterion_id: int
    outcome: str
    reward: float | None


@dataclass(frozen=True)
class Reward:
    figures: scoring.ScoreResult
    graded: list[engine.Graded]  # each criterion's verdict on the response, in rubric order
    # Why the response looks aimed at its grader (empty: nothing found). The score stands;
    # a trainer decides what to do with a policy that learns to address its judge.
    flags: list[str]
    # Step criteria's verdicts at each step, by step then rubric order (empty for a text or
    # a rubric without step criteria).
    steps: list[StepReward] = dataclasses.field(default_factory=list)


def step_rewards(spec: dict, graded: list[engine.Graded]) -> list[StepReward]:
    """The per-step rewards (StepReward) of one response's verdicts."""
    order = {c["id"]: i for i, c in enumerate(spec["criteria"])}
    points = {c["id"]: float(c["points"]) for c in spec["criteria"]}
    possible = sum(p for p in points.values() if p > 0) or 1.0
    return [
        StepReward(
            step=g.step,
            criterion_id=g.criterion_id,
            outcome=g.outcome,
            reward=None
            if g.outcome == scoring.ERROR
            else points[g.criterion_id] * g.as_outcome().credit / possible,
        )
        for g in sorted(
            (g for g in graded if g.step is not None),
            key=lambda g: (g.step, order[g.criterion_id]),
        )
    ]


class RewardBusy(Exception):
    """This process already serves settings.REWARD_MAX_CONCURRENT reward requests."""

    retry_after_s = 1


_reward_lock = threading.Lock()
_reward_serving = 0


@contextlib.contextmanager
def _reward_slot():
    """One of the process's REWARD_MAX_CONCURRENT places for a reward request (0: no bound),
    or RewardBusy at once: a request never waits for one, since waiting would hold its
    server thread as much as the judge does."""
    global _reward_serving
    bound = settings.REWARD_MAX_CONCURRENT
    with _reward_lock:
        if bound > 0 and _reward_serving >= bound:
            raise RewardBusy(
                f"this server process is already scoring {bound} reward requests "
                "(ASSAY_REWARD_MAX_CONCURRENT); retry shortly"
            )
        _reward_serving += 1
    try:
        yield
    finally:
        with _reward_lock:
            _reward_serving -= 1


@dataclass(frozen=True)
class RewardItem:
    """Responses to one conversation, graded by one grader: the per-grader endpoint sends one
    item, the suite endpoint one per task of its request. A response is a text (None: empty)
    or an episode (annotation.content.episode.Episode, validated by the caller)."""

    grader: Grader
    messages: list[dict]
    responses: list[str | Episode | None]


def reward_score(
    *,
    items: list[RewardItem],
    judge: Judge,
    mode: str,
    deadline: float | None = None,
) -> tuple[list[list[Reward]], Callable[[], None]]:
    """Score responses now, each by its item's grader. Verdicts are read from the cache
    exactly as runs read them, and calls go through the judge's shared limits. Returns, per
    item and per response in order, its score, its per-criterion verdicts and the injection
    detector's reasons; and the write of the judge's new answers to the cache with the cost
    rows of its calls, for the caller to run (the API runs it once the scores are sent). An
    empty or null response makes no judge call. Every response of every item is graded at
    once: a request over many tasks waits for its slowest response, not their sum.

    Every judge call ends by `deadline` (time.monotonic(); default REWARD_DEADLINE_S from
    now): past it, its criteria are error verdicts. RewardBusy when the process already
    serves REWARD_MAX_CONCURRENT reward requests."""
    if deadline is None:
        deadline = time.monotonic() + settings.REWARD_DEADLINE_S
    with _reward_slot():
        return _reward_score(items=items, judge=judge, mode=mode, deadline=deadline)


def _reward_score(
    *,
    items: list[RewardItem],
    judge: Judge,
    mode: str,
    deadline: float,
) -> tuple[list[list[Reward]], Callable[[], None]]:
    ref = judge_ref(judge)
    # Each response's engine outcome: its cache and cost rows are made when they are written.
    outcomes: list[engine.Outcome] = []

    def plan(job: tuple[RewardItem, str | Episode | None], own_thread: bool = True):
        item, response = job
        spec = item.grader.spec
        try:
            return engine.plan_items(
                spec,
                grader_hash=item.grader.hash,
                judges=[ref],
                messages=item.messages,
                response=response,
                items=[(c["id"], judge.pk, 0) for c in spec["criteria"]],
                mode=mode,
            )
        finally:
            if own_thread:
                connection.close()  # a file's preview may have read its row

    def finish(
        job: tuple[RewardItem, str | Episode | None],
        planned: engine.Plan,
        hits: dict[str, engine.Graded],
        own_thread: bool = True,
    ) -> Reward:
        item, response = job
        spec = item.grader.spec
        found: list[injection.Finding | None] = []

        def detect():
            if not found:
                found.append(injection.detect(response))  # a text or an episode

        try:
            # The detector runs while the judge answers, once all the calls are sent: before
            # that it would hold the GIL against their sending.
            out = engine.finish_items(
                planned, hits, leases_at_once=True, while_waiting=detect, deadline=deadline
            )
        finally:
            if own_thread:
                connection.close()
        outcomes.append(out)  # list.append is atomic under the GIL
        by_id = {g.criterion_id: g for g in out.graded if g.step is None}
        graded = [by_id[c["id"]] for c in spec["criteria"]]
        detect()  # if no call was made (all from the cache, or an empty response)
        finding = found[0]
        return Reward(
            scoring.score(spec, {g.criterion_id: g.as_outcome() for g in graded}),
            graded,
            [str(r) for r in finding.reasons] if finding else [],
            step_rewards(spec, out.graded),
        )

    def store() -> None:
        _store_answers(
            [row for out in outcomes for row in _cache_rows(out.to_cache)],
            [row for out in outcomes for row in _judge_call_rows(out.calls, judge_id=judge.pk)],
        )

    jobs = [(item, response) for item in items for response in item.responses]
    if len(jobs) == 1:
        # The common RL case: all on the request's thread and its open connection.
        planned = plan(jobs[0], own_thread=False)
        hits = _cache_lookup(planned.keys)
        rewards = [finish(jobs[0], planned, hits, own_thread=False)]
    else:
        # Each response, whatever its item, on a thread of its own (views, keys, judge calls,
        # the detector); their calls share the process's judge pool and the judge's limits.
        # The cache is read once for all of them, on the request's connection: a thread that
        # read it opened a PostgreSQL connection of its own, a new backend per response per
        # request (most of a request's CPU over 16 tasks).
        with ThreadPoolExecutor(max_workers=min(32, len(jobs))) as pool:
            plans = list(pool.map(plan, jobs))
            hits = _cache_lookup([key for planned in plans for key in planned.keys])
            rewards = list(pool.map(finish, jobs, plans, [hits] * len(jobs)))
    grouped, start = [], 0
    for item in items:
        grouped.append(rewards[start : start + len(item.responses)])
        start += len(item.responses)
    return grouped, store
