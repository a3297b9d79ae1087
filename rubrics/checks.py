"""Checked criteria: deterministic tests of a response, graded in code with no judge call.

Never arbitrary code: a check is data of one of the kinds below, validated when saved.

    {"type": "contains", "value": "911", "case_sensitive": false}
    {"type": "not_contains", "value": "guaranteed returns", "case_sensitive": false}
    {"type": "regex", "pattern": "\\\\bINR\\\\b", "ignore_case": true}
    {"type": "number", "value": 6.2, "tolerance": 0.05}     # some number in the text
    {"type": "json_field", "path": "decision.rating", "equals": "buy"}
"""

from __future__ import annotations

import functools
import json
import re

import re2

from rubrics import uploads

CHECK_TYPES = ("contains", "not_contains", "regex", "number", "json_field")
MAX_PATTERN = 500
MAX_TEXT = 200_000  # longer responses are checked on their first 200,000 characters
# Patterns are written by experts and run on every response, in web requests (try it, the
# reward endpoint) and in workers: RE2 matches in time linear in the text, whatever the
# pattern, so a pattern such as ^(a+)+$ cannot hold a process (ReDoS).
REGEX_SYNTAX = (
    "RE2 syntax (as in Go and Rust): classes, groups, alternation, repetition, anchors and "
    "\\b work; backreferences (\\1) and lookaround ((?=...), (?!...), (?<=...)) do not"
)
NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")


class CheckError(ValueError):
    """A check that is not valid; `field` names the part that is wrong."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field


def validate(check: object) -> dict:
    """The check, normalised, or CheckError naming the field."""
    if not isinstance(check, dict):
        raise CheckError("check", "must be an object with a 'type'")
    kind = check.get("type")
    if kind not in CHECK_TYPES:
        raise CheckError("check.type", f"must be one of {', '.join(CHECK_TYPES)}")
    if kind in ("contains", "not_contains"):
        value = check.get("value")
        if not isinstance(value, str) or not value:
            raise CheckError("check.value", "give the text to look for")
        return {"type": kind, "value": value, "case_sensitive": bool(check.get("case_sensitive"))}
    if kind == "regex":
        pattern = check.get("pattern")
        if not isinstance(pattern, str) or not pattern or len(pattern) > MAX_PATTERN:
            raise CheckError("check.pattern", f"give a pattern of 1-{MAX_PATTERN} characters")
        ignore_case = bool(check.get("ignore_case"))
        compiled_pattern(pattern, ignore_case)
        return {"type": kind, "pattern": pattern, "ignore_case": ignore_case}
    if kind == "number":
        try:
            value = float(check.get("value"))
            tolerance = float(check.get("tolerance", 0))
        except (TypeError, ValueError):
            raise CheckError("check.value", "value and tolerance must be numbers") from None
        if tolerance < 0:
            raise CheckError("check.tolerance", "must be >= 0")
        return {"type": kind, "value": value, "tolerance": tolerance}
    path = check.get("path")
    if not isinstance(path, str) or not path.strip():
        raise CheckError("check.path", "give a dotted path, e.g. decision.rating or items.0.id")
    if "equals" not in check:
        raise CheckError("check.equals", "give the value the field must equal")
    return {"type": kind, "path": path.strip(), "equals": check["equals"]}


@functools.lru_cache(maxsize=512)
def compiled_pattern(pattern: str, ignore_case: bool):
    """The RE2 matcher of a regex check, compiled once per process; CheckError on
    `check.pattern` when RE2 refuses it. Saving and grading (try it, runs, the reward
    endpoint) both come here, so a pattern that saved is the pattern that runs."""
    options = re2.Options()
    options.log_errors = False  # a refused pattern is the author's 400, not a log line
    options.case_sensitive = not ignore_case
    try:
        return re2.compile(pattern, options)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise CheckError(
            "check.pattern", f"not a regular expression RE2 accepts ({reason}); use {REGEX_SYNTAX}"
        ) from None


def _json_in(text: str) -> object:
    text = text.strip()
    fenced = re.search(r"```(?:json)?\s*(.*?)```", text, re.DOTALL)
    if fenced:
        text = fenced.group(1)
    # A response nested thousands deep is "not JSON" here, never a RecursionError mid-run.
    return uploads.loads(text)


def evaluate(check: dict, text: str, episode=None) -> tuple[bool, str]:
    """(met, explanation) for a validated check. `text` is the final answer; `episode` (an
    annotation.content.episode.Episode, read by duck typing: this app imports neither of the
    others) is the whole response, which checks over tool calls, steps and the final state
    read."""
    text = text[:MAX_TEXT]
    kind = check["type"]
    if kind in ("contains", "not_contains"):
        needle, haystack = check["value"], text
        if not check.get("case_sensitive"):
            needle, haystack = needle.casefold(), haystack.casefold()
        found = needle in haystack
        met = found if kind == "contains" else not found
        return met, f"'{check['value']}' {'found' if found else 'not found'} in the response."
    if kind == "regex":
        matcher = compiled_pattern(check["pattern"], bool(check.get("ignore_case")))
        match = matcher.search(text)
        if match:
            return True, f"Pattern matched: '{match.group(0)[:80]}'."
        return False, "Pattern did not match."
    if kind == "number":
        target, tolerance = check["value"], check["tolerance"]
        for raw in NUMBER.findall(text):
            number = float(raw.replace(",", ""))
            if abs(number - target) <= tolerance:
                return True, f"Found {raw}, within {tolerance:g} of {target:g}."
        return False, f"No number within {tolerance:g} of {target:g}."
    try:
        node = _json_in(text)
    except uploads.JsonRefused as exc:
        return False, f"The response is not usable JSON: {exc}."
    except (ValueError, TypeError):
        return False, "The response is not JSON."
    for part in check["path"].split("."):
        index = part.isascii() and part.isdigit()  # "²".isdigit(), yet int("²") fails
        if isinstance(node, list) and index and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return False, f"No field at '{check['path']}'."
    met = node == check["equals"]
    return met, f"'{check['path']}' is {json.dumps(node)[:80]}."
