"""Sentences for people from the history of a rubric and from the audit log.

Both logs store what happened as data (an action code and a JSON object of changes); the
History and Audit pages read these sentences instead, so nobody meets `criterion_added` or
`{'group': 4, ...}`. Unknown actions and keys still read sensibly, so a new event type shows
as words before anyone writes a sentence for it.
"""

from __future__ import annotations

from collections.abc import Mapping

# How a stored key reads in a sentence.
FIELD_NAMES = {
    "text": "text",
    "points": "points",
    "kind": "kind",
    "importance": "importance",
    "gate": "gate",
    "group": "group",
    "weight": "weight",
    "tags": "tags",
    "scope": "scope",
    "step_rule": "step rule",
    "step_tool": "step tool",
    "title": "title",
    "include_reference": "reference answer shown to the judge",
    "output_per_mtok": "output price per million tokens",
    "input_per_mtok": "input price per million tokens",
    "cached_input_per_mtok": "cached input price per million tokens",
    "sha256": "SHA-256",
    "params": "parameters",
    "previous_outcome": "previous outcome",
    "replaces": "replaces gold decision",
    "size_bytes": "size in bytes",
    "os_user": "server user",
    "base_url": "URL",
    "tasks_added": "tasks put in",
    "tasks_added_named": "put in",
    "tasks_removed": "tasks taken out",
    "tasks_removed_named": "taken out",
}

_LONG = 120


def _words(key: str) -> str:
    return FIELD_NAMES.get(key, key.replace("_", " "))


def _value(value: object) -> str:
    """A stored value as a person reads it: quoted text, yes/no, lists joined, no braces."""
    if value is None or value == "":
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        text = value if len(value) <= _LONG else value[: _LONG - 1] + "…"
        return f"“{text}”"
    if isinstance(value, list | tuple):
        return ", ".join(_value(v) for v in value) if value else "none"
    if isinstance(value, Mapping):
        return "; ".join(f"{_words(str(k))} {_value(v)}" for k, v in value.items()) or "none"
    return str(value)


def _change(key: str, pair: object) -> str:
    if key == "group":
        return "moved it to another group"
    if isinstance(pair, list | tuple) and len(pair) == 2:
        before, after = pair
        return f"{_words(key)} from {_value(before)} to {_value(after)}"
    return f"{_words(key)} to {_value(pair)}"


def _joined(parts: list[str]) -> str:
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def rubric_event(action: str, changes: Mapping | None) -> str:
    """One sentence for one entry of a rubric's history."""
    c = dict(changes or {})
    text = _value(c.get("text")) if c.get("text") else "a criterion"
    match action:
        case "created":
            return f"Created the rubric {_value(c.get('title'))}."
        case "draft_started":
            return "Started a new draft."
        case "criterion_added":
            return f"Added the criterion {text} ({_value(c.get('points'))} points)."
        case "criterion_changed":
            parts = [_change(k, v) for k, v in c.items()]
            return f"Changed the criterion's {_joined(parts)}." if parts else "Changed a criterion."
        case "criterion_removed":
            return f"Removed the criterion {text}."
        case "criterion_moved":
            to = c.get("to")
            where = f" to position {to + 1}" if isinstance(to, int) else ""
            return f"Moved a criterion{where}."
        case "criterion_indented":
            return f"Moved a criterion into the group {_value(c.get('group'))}."
        case "criterion_outdented":
            return f"Moved a criterion out of the group {_value(c.get('from'))}."
        case "group_changed":
            return f"Changed a group's {_joined([_change(k, v) for k, v in c.items()])}."
        case "settings_changed":
            shown = c.get("include_reference")
            return (
                "Set the judge to see the reference answer."
                if shown
                else "Set the judge not to see the reference answer."
            )
        case "criteria_replaced":
            return f"Replaced all criteria ({c.get('count', 0)} now)."
        case "submitted":
            return "Submitted the draft for review."
        case "reopened":
            return "Returned the version to draft."
        case "commented":
            return f"Commented: {_value(c.get('body'))}."
        case "comment_replied":
            return f"Replied to a comment: {_value(c.get('body'))}."
        case "comment_resolved":
            return f"Resolved the comment {_value(c.get('body'))}."
        case "published":
            grader = str(c.get("grader") or "")
            return f"Published; grader {grader[:12]}." if grader else "Published."
        case "retired":
            return "Retired the version."
        case "renamed":
            return f"Renamed the rubric: {_change('title', c.get('title'))}."
        case "draft_discarded":
            return f"Discarded draft v{c.get('number')}."
        case "template_applied":
            return f"Built the rubric on the template {_value(c.get('template'))}."
    detail = details(c)
    return f"{action.replace('_', ' ').capitalize()}{': ' + detail if detail else ''}."


def details(values: Mapping | None) -> str:
    """An audit event's details as "key value; key from a to b" text."""
    values = dict(values or {})
    parts = []
    if "from" in values and "to" in values:
        parts.append(f"from {_value(values.pop('from'))} to {_value(values.pop('to'))}")
    for key, value in values.items():
        if isinstance(value, list | tuple) and len(value) == 2 and key not in ("scopes",):
            parts.append(_change(key, value))
        else:
            parts.append(f"{_words(key)} {_value(value)}")
    return "; ".join(parts)
