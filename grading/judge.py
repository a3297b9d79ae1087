"""A client for OpenAI-compatible chat-completions endpoints, with bounded retries.

A reply that cannot be parsed into a verdict is an error that keeps the raw text; it is
never read as "not met".
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import time
from dataclasses import dataclass

import httpx

logger = logging.getLogger(__name__)

RETRYABLE_STATUS = {408, 409, 429, 500, 502, 503, 504}
MAX_BACKOFF_S = 20.0
MAX_RETRY_AFTER_S = 60.0
FENCED_JSON = re.compile(r"```(?:json)?\s*(\{.*?\})\s*```", re.DOTALL)


class JudgeError(Exception):
    """A judge call that failed for good. `reason` is short and countable; `raw` is kept."""

    def __init__(self, reason: str, message: str, raw: str = "", retry_after: float | None = None):
        super().__init__(message)
        self.reason = reason
        self.raw = raw
        self.retry_after = retry_after


@dataclass(frozen=True)
class JudgeSettings:
    base_url: str
    model: str
    api_key_env: str = ""
    temperature: float = 0.0
    use_json_schema: bool = True
    timeout_s: float = 60.0
    max_attempts: int = 4
    max_reasks: int = 2


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


def _json_object(content: str) -> dict:
    text = content.strip()
    fenced = FENCED_JSON.search(text)
    if fenced:
        text = fenced.group(1)
    elif not text.startswith("{"):
        start, end = text.find("{"), text.rfind("}")
        if start == -1 or end <= start:
            raise ValueError("no JSON object in the reply")
        text = text[start : end + 1]
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON ({exc.msg})") from None
    if not isinstance(data, dict):
        raise ValueError("the reply is not a JSON object")
    return data


def parse_verdict(content: str) -> tuple[bool, str]:
    """(criteria_met, explanation) from the judge's reply, or ValueError saying what is wrong."""
    data = _json_object(content)
    met = data.get("criteria_met")
    if not isinstance(met, bool):
        raise ValueError("'criteria_met' is missing or not true/false")
    explanation = data.get("explanation", "")
    if not isinstance(explanation, str):
        raise ValueError("'explanation' is not text")
    return met, explanation


def parse_scale(content: str, levels: int) -> tuple[float, str]:
    """(value normalised to [0, 1], explanation) from a reply to a 1..levels scale."""
    data = _json_object(content)
    score = data.get("score")
    if isinstance(score, bool) or not isinstance(score, int) or not 1 <= score <= levels:
        raise ValueError(f"'score' is missing or not a whole number from 1 to {levels}")
    explanation = data.get("explanation", "")
    if not isinstance(explanation, str):
        raise ValueError("'explanation' is not text")
    return (score - 1) / (levels - 1) if levels > 1 else 1.0, explanation


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


class JudgeClient:
    def __init__(self, settings: JudgeSettings, *, http: httpx.Client | None = None):
        self.settings = settings
        self._http = http or httpx.Client(timeout=settings.timeout_s, follow_redirects=False)

    def close(self) -> None:
        self._http.close()

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.settings.api_key_env:
            key = os.environ.get(self.settings.api_key_env)
            if not key:
                raise JudgeError(
                    "missing_api_key",
                    f"The environment variable {self.settings.api_key_env} is not set "
                    "on the worker.",
                )
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _body(self, messages: list[dict], schema: dict) -> dict:
        body: dict = {
            "model": self.settings.model,
            "messages": messages,
            "temperature": self.settings.temperature,
        }
        if self.settings.use_json_schema:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "verdict", "schema": schema, "strict": True},
            }
        return body

    def _post(self, body: dict) -> httpx.Response:
        """One HTTP exchange, retried on 429, 5xx, timeouts and connection errors."""
        url = self.settings.base_url.rstrip("/") + "/chat/completions"
        headers = self._headers()
        last: JudgeError | None = None
        for attempt in range(self.settings.max_attempts):
            if last is not None:
                time.sleep(last.retry_after if last.retry_after is not None else _backoff(attempt))
            try:
                response = self._http.post(url, json=body, headers=headers)
            except httpx.TimeoutException:
                last = JudgeError("timeout", f"no reply within {self.settings.timeout_s:g} s")
                continue
            except httpx.TransportError as exc:
                last = JudgeError("connection", f"could not reach the judge: {exc}")
                continue
            if response.status_code == 200:
                return response
            reason = {429: "rate_limited"}.get(response.status_code, f"http_{response.status_code}")
            last = JudgeError(
                reason,
                f"the judge answered HTTP {response.status_code}",
                response.text[:2000],
                retry_after=_retry_after(response),
            )
            if response.status_code not in RETRYABLE_STATUS:
                break
        assert last is not None
        raise last

    def grade(self, messages: list[dict], schema: dict, *, levels: int = 0) -> VerdictReply:
        """One verdict: binary, or on a 1..levels scale when levels > 0 (met when above 1)."""
        body = self._body(messages, schema)
        content = ""
        problem = ""
        for _ask in range(1 + self.settings.max_reasks):
            response = self._post(body)
            try:
                payload = response.json()
                content = payload["choices"][0]["message"]["content"] or ""
                usage = payload.get("usage") or {}
            except (ValueError, KeyError, IndexError, TypeError):
                content, problem = response.text[:10000], "the reply is not a chat completion"
                continue
            try:
                if levels:
                    value, explanation = parse_scale(content, levels)
                    met = value > 0
                else:
                    (met, explanation), value = parse_verdict(content), None
            except ValueError as exc:
                problem = str(exc)
                continue
            model = str(payload.get("model") or self.settings.model)
            return VerdictReply(
                met=met,
                explanation=explanation,
                value=value,
                raw=content,
                model=model,
                simulated=response.headers.get("X-Assay-Simulator") == "1"
                or model.startswith("assay-simulator"),
                prompt_tokens=int(usage.get("prompt_tokens") or 0),
                completion_tokens=int(usage.get("completion_tokens") or 0),
            )
        raise JudgeError("unparseable", f"could not read a verdict: {problem}", content)
