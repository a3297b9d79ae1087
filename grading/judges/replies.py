"""Reading a judge's reply, treated as hostile input from end to end.

A judge is a server of someone else's: its body may be any bytes, any JSON shape, nested
50,000 deep, with token counts that are text, negative, 1e999 or 10**30, and text holding NUL
characters or lone surrogates (which PostgreSQL and psycopg cannot store). Everything here
turns such a body into either readable text or a short problem, and never raises: the judge
client then makes a verdict of it or an error verdict that keeps the raw text, cleaned for
storage and cut to `RAW_CHARS`.

The verdict JSON inside the reply's text is read here too (`parse_verdict`, `parse_scale`,
`parse_batch`), so there is one path from the body's bytes to a verdict.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass

from django.conf import settings

from rubrics import uploads

logger = logging.getLogger(__name__)

# What an error verdict keeps of a reply's text (or of its body, when it has no text).
RAW_CHARS = 20_000
# The model a reply names is whatever the endpoint says; verdicts keep up to this much of it.
MODEL_NAME_CHARS = 200
# A token count above this is not a count (no model reads or writes that much in one call);
# it is stored as this, so sums over calls and costs stay within the database's integers.
MAX_TOKENS = 100_000_000
# NUL, which PostgreSQL refuses in text, and lone surrogates, which are not Unicode text.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def clean(text: str, limit: int | None = None) -> str:
    """`text` as the database can store it: NUL and lone surrogates replaced by U+FFFD, and
    when longer than `limit` characters, cut there with a note saying how much was cut."""
    if limit is not None and len(text) > limit:
        text = f"{text[:limit]}\n[... {len(text) - limit:,} more characters cut]"
    if text.isascii() and "\x00" not in text:
        # No surrogate can be there, and a NUL is looked for at C speed: every judge call
        # keeps its request (tens of kilobytes of JSON, all ASCII) through here.
        return text
    return _UNSTORABLE.sub("\ufffd", text)


def token_count(value: object) -> int | None:
    """A token count from a reply's `usage`: a whole number from 0 up, capped at MAX_TOKENS;
    None when absent or not a count (text, negative, NaN, infinite, true/false, ...)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            return None
        value = int(value)
    if not isinstance(value, int) or value < 0:
        return None
    return min(value, MAX_TOKENS)


@dataclass(frozen=True)
class Tokens:
    """What a reply's `usage` says it cost; None where it says nothing readable."""

    prompt: int | None = None
    completion: int | None = None
    cached: int | None = None

    @property
    def used(self) -> int:
        return (self.prompt or 0) + (self.completion or 0)


def tokens_of(usage: object) -> Tokens:
    if not isinstance(usage, dict):
        return Tokens()
    details = usage.get("prompt_tokens_details")
    return Tokens(
        prompt=token_count(usage.get("prompt_tokens")),
        completion=token_count(usage.get("completion_tokens")),
        cached=token_count(details.get("cached_tokens")) if isinstance(details, dict) else None,
    )


@dataclass(frozen=True)
class Completion:
    """A chat-completions body, read. `content` is the judge's text (cleaned), or None with
    `problem` saying why there is none; `raw` is what to keep of it for a person, cleaned (and
    cut to RAW_CHARS where it is kept): the text, or the body when there is no text."""

    content: str | None
    problem: str
    raw: str
    model: str = ""
    tokens: Tokens = Tokens()


def _kind(value: object) -> str:
    if value is None:
        return "null"
    return {
        bool: "true/false",
        int: "a number",
        float: "a number",
        str: "text",
        list: "a list",
        dict: "an object",
    }.get(type(value), type(value).__name__)


def load_json(text: str) -> object:
    """json.loads with nesting capped (ASSAY_JSON_MAX_DEPTH) before parsing; ValueError
    saying what is wrong for anything that is not JSON (or too deep, or a number of more than
    4,300 digits)."""
    try:
        return uploads.loads(text, max_depth=settings.JSON_MAX_DEPTH)
    except RecursionError:  # a nesting the depth scan could not see
        raise ValueError("nested too deeply") from None


def _text_of(content: object) -> tuple[str | None, str]:
    """(the message's text, "") or (None, why it has none). A list of text parts, as some
    gateways send, is read as their text joined."""
    if isinstance(content, str):
        return content, ""
    if isinstance(content, list) and content:
        texts = [
            part.get("text")
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        ]
        if len(texts) == len(content) and all(isinstance(t, str) for t in texts):
            return "".join(texts), ""
    return None, f"'message.content' is {_kind(content)}, not text"


def _read(body: bytes) -> Completion:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raw = clean(body.decode("utf-8", errors="replace"))
        return Completion(None, f"the reply is not UTF-8 text (byte {exc.start + 1})", raw)
    raw = clean(text)
    try:
        payload = load_json(text)
    except ValueError as exc:
        return Completion(None, f"the reply is not a chat completion: {exc}", raw)
    if not isinstance(payload, dict):
        return Completion(
            None, f"the reply is not a chat completion: {_kind(payload)}, not an object", raw
        )
    model = payload.get("model")
    model = clean(model[:MODEL_NAME_CHARS]) if isinstance(model, str) else ""
    tokens = tokens_of(payload.get("usage"))

    def refused(problem: str) -> Completion:
        return Completion(None, problem, raw, model, tokens)

    choices = payload.get("choices")
    if not isinstance(choices, list) or not choices:
        return refused(f"'choices' is {_kind(choices)}, not a list of at least one choice")
    message = choices[0].get("message") if isinstance(choices[0], dict) else None
    if not isinstance(message, dict):
        return refused("'choices[0].message' is missing or not an object")
    content, problem = _text_of(message.get("content"))
    if content is None:
        refusal = message.get("refusal")
        if isinstance(refusal, str) and refusal:
            problem = f"the judge refused: {clean(refusal[:300])}"
        return refused(problem)
    content = clean(content)
    return Completion(content, "", content, model, tokens)


def read(body: bytes) -> Completion:
    """A chat-completions body read as hostile input. Never raises."""
    try:
        return _read(body)
    except Exception as exc:  # noqa: BLE001 - a reply must end as an error, never a crash
        logger.exception("a judge reply could not be read")
        raw = clean(body[:RAW_CHARS].decode("utf-8", errors="replace"))
        return Completion(None, f"the reply could not be read ({type(exc).__name__})", raw)


# --- The verdict JSON inside the reply's text ---------------------------------------------


def _fenced_object(text: str) -> str | None:
    """The first fenced block (```json ... ``` or ``` ... ```) holding a JSON object, found in
    one pass: a regular expression took quadratic time on a reply of many unclosed fences
    (30 s of CPU for 80,000 characters)."""
    start = text.find("```")
    while start != -1:
        inside = start + 3
        if text.startswith("json", inside):
            inside += 4
        end = text.find("```", inside)
        if end == -1:
            return None
        block = text[inside:end].strip()
        if block.startswith("{") and block.endswith("}"):
            return block
        start = end  # a closing fence may open the next block
    return None


def _json_object(content: str) -> dict:
    text = content.strip()
    fenced = _fenced_object(text)
    if fenced is not None:
        text = fenced
    elif not text.startswith("{"):
        start, end = text.find("{"), text.rfind("}")
        if start == -1 or end <= start:
            raise ValueError("no JSON object in the reply")
        text = text[start : end + 1]
    data = load_json(text)  # its ValueError says what is wrong
    if not isinstance(data, dict):
        raise ValueError("the reply is not a JSON object")
    return data


def _explanation(data: dict) -> str:
    explanation = data.get("explanation", "")
    if not isinstance(explanation, str):
        raise ValueError("'explanation' is not text")
    return clean(explanation)


def parse_verdict(content: str) -> tuple[bool, str]:
    """(criteria_met, explanation) from the judge's reply, or ValueError saying what is wrong."""
    data = _json_object(content)
    met = data.get("criteria_met")
    if not isinstance(met, bool):
        raise ValueError("'criteria_met' is missing or not true/false")
    return met, _explanation(data)


def parse_scale(content: str, levels: int) -> tuple[float, str]:
    """(value normalised to [0, 1], explanation) from a reply to a 1..levels scale."""
    data = _json_object(content)
    score = data.get("score")
    if isinstance(score, bool) or not isinstance(score, int) or not 1 <= score <= levels:
        raise ValueError(f"'score' is missing or not a whole number from 1 to {levels}")
    explanation = _explanation(data)
    return (score - 1) / (levels - 1) if levels > 1 else 1.0, explanation


def parse_batch(
    content: str, ids: list[str], levels: dict[str, int] | None = None
) -> tuple[dict[str, tuple[bool, str, float | None]], dict[str, str]]:
    """Read a batched reply {"verdicts": [{"id", "criteria_met", "explanation"}], "levels":
    [{"id", "level", "explanation"}]}: binary criteria answer in "verdicts", scale criteria
    (`levels`: id -> number of levels) a whole level from 1 to N in "levels". Returns the
    readable verdicts by id as (met, explanation, value: the level normalised to [0, 1], or
    None for binary), and for each id not readable, why."""
    levels = levels or {}
    data = _json_object(content)
    lists = []
    for name, wanted in (("verdicts", set(ids) - set(levels)), ("levels", set(levels))):
        items = data.get(name)
        if wanted and not isinstance(items, list):
            raise ValueError(f"'{name}' is missing or not a list")
        lists.append(items if isinstance(items, list) else [])
    got: dict[str, tuple[bool, str, float | None]] = {}
    why: dict[str, str] = {}
    wanted = set(ids)
    for item in (*lists[0], *lists[1]):
        if not isinstance(item, dict):
            continue
        ident = item.get("id")
        # Only ids asked for count; anything else (a list, a 4,000-digit number) is skipped.
        ident = ident if isinstance(ident, str) else str(ident) if isinstance(ident, int) else ""
        if ident not in wanted or ident in got:
            continue
        explanation = item.get("explanation", "")
        if not isinstance(explanation, str):
            why[ident] = "'explanation' is not text"
            continue
        explanation = clean(explanation)
        if ident in levels:
            n, level = levels[ident], item.get("level")
            if isinstance(level, bool) or not isinstance(level, int) or not 1 <= level <= n:
                why[ident] = f"'level' is missing or not a whole number from 1 to {n}"
                continue
            value = (level - 1) / (n - 1) if n > 1 else 1.0
            got[ident] = (value > 0, explanation, value)
        else:
            met = item.get("criteria_met")
            if not isinstance(met, bool):
                why[ident] = "'criteria_met' is missing or not true/false"
                continue
            got[ident] = (met, explanation, None)
    missing = {
        i: why.get(i, "no readable verdict for this criterion in the reply")
        for i in ids
        if i not in got
    }
    return got, missing
