"""Checked criteria: deterministic tests of a response, graded in code with no judge call.

Never arbitrary code: a check is data of one of the kinds below, validated when saved.

    {"type": "contains", "value": "911", "case_sensitive": false}
    {"type": "not_contains", "value": "guaranteed returns", "case_sensitive": false}
    {"type": "regex", "pattern": "\\\\bINR\\\\b", "ignore_case": true}
    {"type": "number", "value": 6.2, "tolerance": 0.05}     # some number in the text
    {"type": "json_field", "path": "decision.rating", "equals": "buy"}

Checks over an episode (its tool calls, steps and final state; see annotation.content):

    {"type": "tool_called", "tool": "lookup_order", "where": {"path": "id", "equals": "A17"}}
    {"type": "tool_not_called", "tool": "refund"}            # `where` optional on both
    {"type": "tool_order", "first": "lookup_order", "then": "refund"}
    {"type": "max_calls", "tool": "search", "max": 5}       # tool "" counts every call
    {"type": "max_steps", "max": 30}                        # assistant turns
    {"type": "final_state", "path": "orders.A17.refunded", "equals": true}
    {"type": "final_state", "path": "calendar.events", "contains": "standup"}
    {"type": "final_state", "path": "invoice.total", "value": 6.2, "tolerance": 0.05}

Checks over the files a response delivers (its XLSX, CSV, PDF, DOCX, PPTX and images; see
rubrics.files.checks for which files, how a cell is read and what a formula without a saved
value gives):

    {"type": "file_present", "kind": "xlsx", "name": "debt*.xlsx", "min": 1}
    {"type": "xlsx_cell", "sheet": "Debt", "cell": "B7", "value": 1200000, "tolerance": 0.01,
     "relative": true}
    {"type": "pdf_max_pages", "max": 10}
    {"type": "file_text", "kind": "docx", "check": {"type": "contains", "value": "EBITDA"}}

`tool_order` is met when every call of `then` comes after some call of `first` (and when
`then` is never called). On a plain text response the episode is that text as one step: tool
checks see no calls, `max_steps` sees 1, `final_state` checks are unmet (no final state).
"""

from __future__ import annotations

import functools
import json
import math
import re

import re2

from rubrics import uploads
from rubrics.files import checks as file_checks

TEXT_CHECK_TYPES = ("contains", "not_contains", "regex", "number", "json_field")
EPISODE_CHECK_TYPES = (
    "tool_called",
    "tool_not_called",
    "tool_order",
    "max_calls",
    "max_steps",
    "final_state",
)
FILE_CHECK_TYPES = file_checks.FILE_CHECK_TYPES
CHECK_TYPES = TEXT_CHECK_TYPES + EPISODE_CHECK_TYPES + FILE_CHECK_TYPES
MAX_TOOL_NAME = 200  # as a tool call's name in an episode
MAX_BOUND = 1_000_000
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
    if kind in EPISODE_CHECK_TYPES:
        return _validate_episode_check(kind, check)
    if kind in FILE_CHECK_TYPES:
        return file_checks.validate(kind, check)
    path = _path(check, "check.path", "decision.rating or items.0.id")
    if "equals" not in check:
        raise CheckError("check.equals", "give the value the field must equal")
    return {"type": kind, "path": path, "equals": check["equals"]}


def _path(check: dict, field: str, example: str) -> str:
    path = check.get("path")
    if not isinstance(path, str) or not path.strip():
        raise CheckError(field, f"give a dotted path, e.g. {example}")
    return path.strip()


def _tool(check: dict, name: str, *, required: bool = True) -> str:
    tool = check.get(name, "")
    if tool is None:
        tool = ""
    if not isinstance(tool, str) or len(tool.strip()) > MAX_TOOL_NAME:
        raise CheckError(f"check.{name}", f"give a tool name of at most {MAX_TOOL_NAME} characters")
    if required and not tool.strip():
        raise CheckError(f"check.{name}", "give the tool's name, as the episode's calls name it")
    return tool.strip()


def _bound(check: dict, least: int) -> int:
    value = check.get("max")
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        value = int(value.strip())  # the editor's plain fields send text
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not least <= value <= MAX_BOUND:
        raise CheckError("check.max", f"give a whole number from {least} to {MAX_BOUND:,}")
    return value


def _validate_episode_check(kind: str, check: dict) -> dict:
    if kind in ("tool_called", "tool_not_called"):
        out: dict = {"type": kind, "tool": _tool(check, "tool")}
        where = check.get("where")
        if where not in (None, {}):
            if not isinstance(where, dict):
                raise CheckError("check.where", "give an object with a path and equals")
            path = _path(where, "check.where.path", "id or customer.email")
            if "equals" not in where:
                raise CheckError("check.where.equals", "give the value the argument must equal")
            out["where"] = {"path": path, "equals": where["equals"]}
        return out
    if kind == "tool_order":
        first, then = _tool(check, "first"), _tool(check, "then")
        if first == then:
            raise CheckError("check.then", "name a tool other than the first one")
        return {"type": kind, "first": first, "then": then}
    if kind == "max_calls":
        return {"type": kind, "tool": _tool(check, "tool", required=False), "max": _bound(check, 0)}
    if kind == "max_steps":
        return {"type": kind, "max": _bound(check, 1)}
    path = _path(check, "check.path", "orders.A17.refunded or calendar.events.0.title")
    given = [name for name in ("equals", "contains", "value") if name in check]
    if len(given) != 1:
        raise CheckError(
            "check.equals",
            "give exactly one of equals (a value), contains (a value) or value with tolerance",
        )
    if given[0] != "value":
        return {"type": kind, "path": path, given[0]: check[given[0]]}
    try:
        value = float(check["value"])
        tolerance = float(check.get("tolerance", 0) or 0)
    except (TypeError, ValueError):
        raise CheckError("check.value", "value and tolerance must be numbers") from None
    if not math.isfinite(value):
        raise CheckError("check.value", "must be a finite number")
    if not math.isfinite(tolerance) or tolerance < 0:
        raise CheckError("check.tolerance", "must be a number >= 0")
    return {"type": kind, "path": path, "value": value, "tolerance": tolerance}


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
    others) is the whole response, which checks over tool calls, steps, the final state and
    the files delivered read."""
    kind = check["type"]
    if kind in EPISODE_CHECK_TYPES:
        return _evaluate_episode_check(check, episode)
    if kind in FILE_CHECK_TYPES:
        return file_checks.evaluate(check, episode)
    return evaluate_text(check, text)


def evaluate_text(check: dict, text: str, *, subject: str = "the response") -> tuple[bool, str]:
    """A check of a text (contains, not_contains, regex, number, json_field): of the final
    answer, or (file_text) of a file's extracted text, which `subject` names."""
    text = text[:MAX_TEXT]
    kind = check["type"]
    # The final answer's explanations read as they always have; a file's name the file.
    where = "" if subject == "the response" else f" in {subject}"
    if kind in ("contains", "not_contains"):
        needle, haystack = check["value"], text
        if not check.get("case_sensitive"):
            needle, haystack = needle.casefold(), haystack.casefold()
        found = needle in haystack
        met = found if kind == "contains" else not found
        return met, f"'{check['value']}' {'found' if found else 'not found'} in {subject}."
    if kind == "regex":
        matcher = compiled_pattern(check["pattern"], bool(check.get("ignore_case")))
        match = matcher.search(text)
        if match:
            return True, f"Pattern matched{where}: '{match.group(0)[:80]}'."
        return False, f"Pattern did not match{where}."
    if kind == "number":
        target, tolerance = check["value"], check["tolerance"]
        for raw in NUMBER.findall(text):
            number = float(raw.replace(",", ""))
            if abs(number - target) <= tolerance:
                return True, f"Found {raw}{where}, within {tolerance:g} of {target:g}."
        return False, f"No number within {tolerance:g} of {target:g}{where}."
    try:
        node = _json_in(text)
    except uploads.JsonRefused as exc:
        return False, f"{subject[0].upper()}{subject[1:]} is not usable JSON: {exc}."
    except (ValueError, TypeError):
        return False, f"{subject[0].upper()}{subject[1:]} is not JSON."
    found, node = walk(node, check["path"])
    if not found:
        return False, f"No field at '{check['path']}'."
    met = same(node, check["equals"])
    return met, f"'{check['path']}' is {_shown(node)}."


def walk(node: object, path: str) -> tuple[bool, object]:
    """(found, value) at a dotted path: object keys by name, list items by number
    (`items.0.id`). Shared by json_field, the `where` of tool checks and final_state."""
    for part in path.split("."):
        index = part.isascii() and part.isdigit()  # "²".isdigit(), yet int("²") fails
        if isinstance(node, list) and index and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return False, None
    return True, node


def same(a: object, b: object) -> bool:
    """JSON equality: true is not 1 (as Python's == has it), 1 is 1.0."""
    return a == b and isinstance(a, bool) == isinstance(b, bool)


def _shown(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)[:80]


def _at(index: int) -> str:
    """A message index as people see it (annotation.content.render.label): #1 is the first."""
    return f"#{index + 1}"


def _ats(indexes: list[int]) -> str:
    shown = ", ".join(_at(i) for i in indexes[:5])
    return shown + (f" and {len(indexes) - 5} more" if len(indexes) > 5 else "")


def _evaluate_episode_check(check: dict, episode) -> tuple[bool, str]:
    """An episode check, reading the episode by duck typing: `tool_calls()` yields
    (message index, call with .name and .arguments), `steps()` the assistant turns,
    `has_final_state` and `final_state` the end state. No episode: a plain text response,
    one step with no calls and no state."""
    kind = check["type"]
    calls = list(episode.tool_calls()) if episode is not None else []
    if kind in ("tool_called", "tool_not_called"):
        tool, where = check["tool"], check.get("where")
        named = [(i, c) for i, c in calls if c.name == tool]
        matching = named
        if where:
            matching = [(i, c) for i, c in named if _matches(c.arguments, where)]
        condition = f" with {where['path']} = {_shown(where['equals'])}" if where else ""
        at = _ats([i for i, _ in matching])
        if kind == "tool_called":
            if matching:
                return True, f"{tool}{condition} called at {at}."
        elif matching:
            return False, f"{tool}{condition} called at {at}."
        if named and where:
            seen = sorted({_shown(walk(c.arguments, where["path"])[1]) for _, c in named})
            found = f"{tool} called {len(named)} time(s), {where['path']} was {', '.join(seen[:3])}"
        else:
            found = f"{tool} never called"
            if not calls:
                found += " (no tool calls in the response)"
        return kind == "tool_not_called", f"{found}."
    if kind == "tool_order":
        first, then = check["first"], check["then"]
        firsts = [i for i, c in calls if c.name == first]
        thens = [i for i, c in calls if c.name == then]
        early, seen_first = [], False
        for i, call in calls:  # in the order made, calls within one turn included
            seen_first = seen_first or call.name == first
            if call.name == then and not seen_first:
                early.append(i)
        if not thens:
            return True, f"{then} never called."
        if early:
            later = f" (first at {_at(firsts[0])})" if firsts else f"; {first} never called"
            return False, f"{then} called at {_ats(early)} before any {first}{later}."
        return True, f"{first} at {_at(firsts[0])}, then {then} at {_ats(thens)}."
    if kind == "max_calls":
        tool, limit = check["tool"], check["max"]
        counted = [i for i, c in calls if not tool or c.name == tool]
        what = f"{tool} calls" if tool else "tool calls"
        return len(counted) <= limit, f"{len(counted)} {what}; at most {limit} allowed."
    if kind == "max_steps":
        steps = len(episode.steps()) if episode is not None else 1
        noun = "step" if steps == 1 else "steps"
        return steps <= check["max"], f"{steps} {noun}; at most {check['max']} allowed."
    if episode is None or not episode.has_final_state:
        return False, "No final state in the response."
    path = check["path"]
    found, node = walk(episode.final_state, path)
    if not found:
        return False, f"No field at '{path}' in the final state."
    if "equals" in check:
        return same(node, check["equals"]), f"'{path}' is {_shown(node)}."
    if "contains" in check:
        return _contains(node, check["contains"]), f"'{path}' is {_shown(node)}."
    target, tolerance = check["value"], check["tolerance"]
    if isinstance(node, bool) or not isinstance(node, int | float):
        return False, f"'{path}' is {_shown(node)}, not a number."
    met = abs(node - target) <= tolerance
    within = "within" if met else "not within"
    return met, f"'{path}' is {node:g}, {within} {tolerance:g} of {target:g}."


def _matches(arguments: object, where: dict) -> bool:
    found, value = walk(arguments, where["path"])
    return found and same(value, where["equals"])


def _contains(node: object, value: object) -> bool:
    """A text holds the text, a list holds the item, an object has the key."""
    if isinstance(node, str):
        return isinstance(value, str) and value in node
    if isinstance(node, list):
        return value in node
    if isinstance(node, dict):
        return isinstance(value, str) and value in node
    return False
