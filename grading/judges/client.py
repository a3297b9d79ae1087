"""A client for OpenAI-compatible chat-completions endpoints, with bounded retries.

A reply that cannot be parsed into a verdict is an error that keeps the raw text; it is
never read as "not met". Bodies are read by grading.judges.replies, as hostile input.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from dataclasses import dataclass

import httpx

from assay import secrets as assay_secrets
from grading.judges import addresses, replies
from grading.judges.limits import SlotTimeout
from grading.judges.prompts import prompt_tokens
from grading.judges.replies import MODEL_NAME_CHARS, parse_batch, parse_scale, parse_verdict
from grading.judges.transport import ReplyTooLarge, Transport

logger = logging.getLogger(__name__)

RETRYABLE_STATUS = {408, 409, 429, 500, 502, 503, 504}
MAX_BACKOFF_S = 20.0
MAX_RETRY_AFTER_S = 60.0
# The least time a call is given when its item's deadline is nearly up (a call is only started
# before the deadline): so it ends by the deadline plus this at the latest.
MIN_CALL_S = 0.05
# What a connection test shows of the judge's answer.
PING_ANSWER_CHARS = 200


class JudgeError(Exception):
    """A judge call that failed for good. `reason` is short and countable; `raw` is kept,
    cleaned for storage and cut to replies.RAW_CHARS (`content`: the judge's whole text)."""

    def __init__(self, reason: str, message: str, raw: str = "", retry_after: float | None = None):
        super().__init__(replies.clean(message, 2000))
        self.reason = reason
        self.content = raw
        self.raw = replies.clean(raw, replies.RAW_CHARS)
        self.retry_after = retry_after
        self.usage = Usage()


@dataclass
class Usage:
    """What one logical judge call cost across its attempts and re-asks."""

    attempts: int = 0  # HTTP requests sent
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    # Time spent in HTTP exchanges with the judge (not waiting for a slot or backing off).
    latency_s: float = 0.0

    def add(self, tokens: replies.Tokens) -> None:
        """A reply's counts (read by replies.token_count; absent ones add 0). The sums stay
        within replies.MAX_TOKENS, whatever the number of asks, as the database's do."""
        cap = replies.MAX_TOKENS
        self.prompt_tokens = min(cap, self.prompt_tokens + (tokens.prompt or 0))
        self.completion_tokens = min(cap, self.completion_tokens + (tokens.completion or 0))
        self.cached_tokens = min(cap, self.cached_tokens + (tokens.cached or 0))


@dataclass(frozen=True)
class JudgeSettings:
    base_url: str
    model: str
    api_key_env: str = ""
    # The project's own key, as stored (encrypted), and the host it was entered for: it is
    # decrypted only to be sent, and only to that host.
    api_key_secret: str = ""
    api_key_host: str = ""
    temperature: float = 0.0
    use_json_schema: bool = True
    timeout_s: float = 60.0
    max_attempts: int = 6
    max_reasks: int = 2
    deadline_s: float = 300.0  # per item, across attempts and back-offs
    send_cache_key: bool = False
    # What it takes besides text (annotation.content.render.Sight): image parts, file parts.
    accepts_images: bool = False
    accepts_files: bool = False


@dataclass(frozen=True)
class VerdictReply:
    met: bool
    explanation: str
    value: float | None
    raw: str
    model: str
    simulated: bool
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0
    attempts: int = 1
    latency_s: float = 0.0


@dataclass(frozen=True)
class PingReply:
    """What a judge answered to JudgeClient.ping."""

    model: str
    answer: str  # cleaned, cut to PING_ANSWER_CHARS
    simulated: bool
    usage: Usage


@dataclass(frozen=True)
class BatchReply:
    """A batched call's readable verdicts by criterion id, and what it could not read."""

    verdicts: dict[str, tuple[bool, str, float | None]]  # id -> met, explanation, scale value
    missing: dict[str, str]  # criterion id -> why it could not be read
    raw: str
    model: str
    simulated: bool
    usage: Usage


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return min(MAX_RETRY_AFTER_S, max(0.0, float(value)))
    except ValueError:
        return None


def _backoff(attempt: int) -> float:
    # Full jitter: spread retries of many workers so they do not return in step.
    return random.uniform(0, min(MAX_BACKOFF_S, 0.5 * 2**attempt))  # noqa: S311


@dataclass(frozen=True)
class Prepared:
    """A judge request, built and encoded (JudgeClient.prepare)."""

    body: dict
    content: bytes  # the body, as sent
    tokens: int  # its rough size, for the tokens-per-minute bucket


class JudgeClient:
    """Calls one judge. `limiter` (grading.judges.limits) is taken around every HTTP attempt, never
    across a back-off sleep; `should_stop` is asked before each attempt (cancelled runs)."""

    def __init__(
        self,
        settings: JudgeSettings,
        *,
        http=None,
        limiter=None,
        should_stop=None,
    ):
        self.settings = settings
        self._own_http = http is None
        # The checked transport (grading.judges.transport): addresses checked at each connection,
        # redirects never followed, no proxy from the environment.
        self._http = http or Transport()
        self.limiter = limiter
        self.should_stop = should_stop
        self._key = ""

    def close(self) -> None:
        if self._own_http:
            self._http.close()

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.settings.api_key_secret or self.settings.api_key_env:
            # Checked before any key is read, at every call (settings and bindings may have
            # changed since the judge was saved): a judge must not be a way to send a key,
            # the project's or the workers', to a server of one's choosing.
            try:
                host = addresses.parse(self.settings.base_url).host
            except addresses.RefusedURL as exc:
                raise JudgeError("address_refused", f"judge address refused: {exc}") from None
            key = self._project_key(host) if self.settings.api_key_secret else self._env_key(host)
            headers["Authorization"] = f"Bearer {key}"
            self._key = key
        return headers

    def _project_key(self, host: str) -> str:
        why = addresses.project_key_refusal(self.settings.api_key_host, host)
        if why:
            raise JudgeError("key_refused", f"the API key is not sent: {why}")
        try:
            return assay_secrets.decrypt(self.settings.api_key_secret)
        except assay_secrets.SecretsUnavailable as exc:
            raise JudgeError("key_unreadable", f"the API key is not sent: {exc}") from None

    def _env_key(self, host: str) -> str:
        why = addresses.key_refusal(self.settings.api_key_env, host)
        if why:
            raise JudgeError("key_refused", f"the API key is not sent: {why}")
        key = os.environ.get(self.settings.api_key_env)
        if not key:
            raise JudgeError(
                "missing_api_key",
                f"The environment variable {self.settings.api_key_env} is not set on the worker.",
            )
        return key

    def scrub(self, text: str) -> str:
        """`_scrub`, for text kept of a call (its request, as shown on the call's page)."""
        return self._scrub(text)

    def _scrub(self, text: str) -> str:
        """Text from the judge, without the key: a judge that echoes the request (some
        gateways quote the key in a 401) must not put it in a verdict, a page or a log."""
        key = self._key
        if key and len(key) >= 4 and key in text:
            return text.replace(key, "[API key removed]")
        return text

    def _body(
        self, messages: list[dict], schema: dict, *, name: str = "verdict", cache_key: str = ""
    ) -> dict:
        body: dict = {
            "model": self.settings.model,
            "messages": messages,
            "temperature": self.settings.temperature,
        }
        if self.settings.use_json_schema:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": name, "schema": schema, "strict": True},
            }
        if cache_key and self.settings.send_cache_key:
            body["prompt_cache_key"] = cache_key
        return body

    def prepare(
        self, messages: list[dict], schema: dict, *, name: str = "verdict", cache_key: str = ""
    ) -> Prepared:
        """A request built and encoded ahead of its call: before any slot is taken (a slot is
        held only while the judge works), and possibly on another thread than the call's."""
        return self._prepared(self._body(messages, schema, name=name, cache_key=cache_key))

    @staticmethod
    def _prepared(body: dict) -> Prepared:
        # Rough size for the tokens-per-minute bucket: 4 characters a token, images and files
        # at a set size (never their data: URIs' length), plus the reply; corrected from the
        # reply's usage once the judge has answered.
        tokens = prompt_tokens(body["messages"]) + 200
        return Prepared(body, json.dumps(body).encode(), tokens)

    def _post(
        self, request: Prepared, usage: Usage, deadline: float
    ) -> tuple[httpx.Response, replies.Completion]:
        """One HTTP exchange, retried on 429, 5xx, timeouts and connection errors, with
        exponential back-off and full jitter (or Retry-After), within attempts and deadline.
        The deadline counts the wait for a free slot too. Returns the response and its body
        read as a chat completion (replies.read: whatever the body, it never raises)."""
        url = self.settings.base_url.rstrip("/") + "/chat/completions"
        headers = self._headers()
        tokens, content = request.tokens, request.content
        last: JudgeError | None = None
        for attempt in range(self.settings.max_attempts):
            if last is not None:
                pause = last.retry_after if last.retry_after is not None else _backoff(attempt)
                if time.monotonic() + pause > deadline:
                    break  # the item's time is up: fail with the last reason
                time.sleep(pause)
            if self.should_stop is not None and self.should_stop():
                raise JudgeError("cancelled", "the run was cancelled")
            lease = self._lease(tokens, deadline)
            # Waiting for room may take long: ask again before spending the call.
            if self.should_stop is not None and self.should_stop():
                if lease is not None:
                    self.limiter.release(lease)
                raise JudgeError("cancelled", "the run was cancelled")
            usage.attempts += 1
            reply, delta = None, 0
            sent_at = time.monotonic()
            try:
                # The call ends by the item's deadline at the latest: the transport bounds
                # the whole exchange (connect, send, the reply read to its end) by `timeout`.
                remaining = max(MIN_CALL_S, deadline - time.monotonic())
                response = self._http.post(
                    url,
                    content=content,
                    headers=headers,
                    timeout=min(self.settings.timeout_s, remaining),
                )
                if response.status_code == 200:
                    reply = replies.read(response.content)
                    used = reply.tokens.used
                    delta = used - tokens if used else 0
            except addresses.AddressRefused as exc:
                # Not a passing fault: the address is refused and stays refused. No retry.
                raise JudgeError("address_refused", f"judge address refused: {exc}") from None
            except ReplyTooLarge as exc:
                # Not a passing fault either: the same question would get the same reply.
                raise JudgeError("reply_too_large", str(exc)) from None
            except httpx.TimeoutException as exc:
                last = JudgeError("timeout", str(exc))
                continue
            except httpx.TransportError as exc:
                last = JudgeError("connection", f"could not reach the judge: {exc}")
                continue
            finally:
                usage.latency_s += time.monotonic() - sent_at
                if lease is not None:
                    self.limiter.release(lease, delta)
            if response.status_code == 200:
                assert reply is not None
                return response, reply
            if 300 <= response.status_code < 400:
                # Never followed: the request (and its key) would go where the judge says.
                where = self._scrub(str(response.headers.get("Location") or "")[:300])
                raise JudgeError(
                    "redirect",
                    f"the judge answered HTTP {response.status_code} (a redirect"
                    + (f" to {where}" if where else "")
                    + "); judge calls never follow redirects: give the final URL as base_url",
                    self._scrub(response.text[:2000]),
                )
            reason = {429: "rate_limited"}.get(response.status_code, f"http_{response.status_code}")
            last = JudgeError(
                reason,
                f"the judge answered HTTP {response.status_code}",
                self._scrub(response.text[:2000]),
                retry_after=_retry_after(response),
            )
            if response.status_code not in RETRYABLE_STATUS:
                break
        assert last is not None
        raise last

    def _lease(self, tokens: int, deadline: float) -> str | None:
        if self.limiter is None:
            return None
        try:
            return self.limiter.acquire(tokens, deadline)
        except SlotTimeout:
            raise JudgeError(
                "deadline",
                "no free slot at the judge within the item's deadline "
                f"({self.settings.deadline_s:g} s)",
            ) from None

    def _ask(self, request: Prepared, parse, deadline: float | None = None):
        """Post, read the reply with `parse(content)`, and re-ask (telling the judge what was
        wrong) at most max_reasks times, all before `deadline` (time.monotonic(); default:
        the item deadline from now). A body that is not a chat completion with text is asked
        again as it was, within the same bound. Returns (parsed, content, reply, response,
        usage)."""
        usage = Usage()
        if deadline is None:
            deadline = time.monotonic() + self.settings.deadline_s
        content = ""
        problem = ""
        body = request.body
        try:
            for _ask in range(1 + self.settings.max_reasks):
                response, reply = self._post(request, usage, deadline)
                usage.add(reply.tokens)
                if reply.content is None:
                    content, problem = self._scrub(reply.raw), reply.problem
                    continue
                content = self._scrub(reply.content)
                try:
                    return parse(content), content, reply, response, usage
                except ValueError as exc:
                    problem = str(exc)
                    messages = [
                        *body["messages"],
                        {"role": "assistant", "content": content[:4000]},
                        {
                            "role": "user",
                            "content": f"Your reply could not be read: {problem}. "
                            "Reply again with the JSON object only, matching the schema.",
                        },
                    ]
                    request = self._prepared({**body, "messages": messages})
        except JudgeError as exc:
            exc.usage = usage
            raise
        error = JudgeError("unparseable", f"could not read a verdict: {problem}", content)
        error.usage = usage
        raise error

    def ping(self, *, deadline: float | None = None) -> PingReply:
        """One tiny request for a judge's "test connection": through the same path as a
        verdict (address and key checks at each connection, the checked transport, the
        deadline), without schema, re-asks or cache key. Raises JudgeError as a verdict does."""
        body = {
            "model": self.settings.model,
            "messages": [{"role": "user", "content": "Reply with the single word OK."}],
            "temperature": 0,
            "max_tokens": 5,
        }
        if deadline is None:
            deadline = time.monotonic() + self.settings.deadline_s
        usage = Usage()
        try:
            response, reply = self._post(self._prepared(body), usage, deadline)
        except JudgeError as exc:
            exc.usage = usage
            raise
        usage.add(reply.tokens)
        if reply.content is None:
            error = JudgeError(
                "not_a_completion",
                f"the judge answered, but not with a chat completion: {reply.problem}",
                self._scrub(reply.raw),
            )
            error.usage = usage
            raise error
        model = self._scrub(reply.model or self.settings.model)[:MODEL_NAME_CHARS]
        return PingReply(
            model=model,
            answer=replies.clean(self._scrub(reply.content), PING_ANSWER_CHARS),
            simulated=self._is_simulated(response, model),
            usage=usage,
        )

    @staticmethod
    def _is_simulated(response: httpx.Response, model: str) -> bool:
        return response.headers.get("X-Assay-Simulator") == "1" or model.startswith(
            "assay-simulator"
        )

    def grade(
        self,
        messages: list[dict],
        schema: dict,
        *,
        levels: int = 0,
        cache_key: str = "",
        deadline: float | None = None,
    ) -> VerdictReply:
        """One verdict: binary, or on a 1..levels scale when levels > 0 (met when above 1)."""
        return self.grade_prepared(
            self.prepare(messages, schema, cache_key=cache_key), levels=levels, deadline=deadline
        )

    def grade_prepared(
        self, request: Prepared, *, levels: int = 0, deadline: float | None = None
    ) -> VerdictReply:
        """`grade`, for a request made by `prepare`."""

        def parse(content: str):
            if levels:
                value, explanation = parse_scale(content, levels)
                return value > 0, explanation, value
            met, explanation = parse_verdict(content)
            return met, explanation, None

        (met, explanation, value), content, reply, response, usage = self._ask(
            request, parse, deadline
        )
        model = self._scrub(reply.model or self.settings.model)[:MODEL_NAME_CHARS]
        return VerdictReply(
            met=met,
            explanation=explanation,
            value=value,
            raw=replies.clean(content, replies.RAW_CHARS),
            model=model,
            simulated=self._is_simulated(response, model),
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            cached_tokens=usage.cached_tokens,
            attempts=usage.attempts,
            latency_s=usage.latency_s,
        )

    def grade_batch(
        self,
        messages: list[dict],
        schema: dict,
        ids: list[str],
        *,
        levels: dict[str, int] | None = None,
        cache_key: str = "",
        deadline: float | None = None,
    ) -> BatchReply:
        """All criteria of one response in one call; `levels` names the scale criteria
        (id -> number of levels). A reply missing some verdicts is re-asked (bounded); what
        is still missing after that is reported per criterion."""
        return self.grade_batch_prepared(
            self.prepare(messages, schema, name="verdicts", cache_key=cache_key),
            ids,
            levels=levels,
            deadline=deadline,
        )

    def grade_batch_prepared(
        self,
        request: Prepared,
        ids: list[str],
        *,
        levels: dict[str, int] | None = None,
        deadline: float | None = None,
    ) -> BatchReply:
        """`grade_batch`, for a request made by `prepare(..., name="verdicts")`."""

        def parse(content: str):
            got, missing = parse_batch(content, ids, levels)
            if missing:
                first = next(iter(missing.items()))
                raise ValueError(
                    f"{len(missing)} of {len(ids)} verdicts missing or unreadable "
                    f"(criterion {first[0]}: {first[1]})"
                )
            return got

        try:
            got, content, reply, response, usage = self._ask(request, parse, deadline)
        except JudgeError as exc:
            if exc.reason != "unparseable":
                raise
            # Keep what the last reply did answer; only the rest are errors.
            try:
                got, missing = parse_batch(exc.content, ids, levels)
            except ValueError:
                raise exc from None
            return BatchReply(
                verdicts=got,
                missing=missing,
                raw=exc.raw,
                model=self.settings.model,
                simulated=False,
                usage=exc.usage,
            )
        model = self._scrub(reply.model or self.settings.model)[:MODEL_NAME_CHARS]
        return BatchReply(
            verdicts=got,
            missing={},
            raw=replies.clean(content, replies.RAW_CHARS),
            model=model,
            simulated=self._is_simulated(response, model),
            usage=usage,
        )
