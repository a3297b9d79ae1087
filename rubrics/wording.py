"""Criteria in words, as the rubric and grader pages state them: what of an episode a
criterion judges (its scope and step rule) and what an episode check tests."""

from __future__ import annotations

import json

RULES = {
    "all": "met only if met at every step",
    "share": "earns the share of steps where it is met",
    "any": "met if met at any step",
}


def scope_in_words(scope: str, step_rule: str = "", step_tool: str = "") -> str:
    """e.g. "judged at each call of refund; met only if met at every step"."""
    if scope == "trajectory":
        return "judged on the whole episode at once"
    if scope == "step":
        where = f"at each call of {step_tool}" if step_tool else "at each assistant turn"
        rule = RULES.get(step_rule, "")
        return f"judged {where}; {rule}" if rule else f"judged {where}"
    return "judged on the final answer"


def _value(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


def check_in_words(check: dict | None) -> str:
    """An episode check as a sentence; "" for the checks of the final text, which the pages
    show field by field."""
    if not check:
        return ""
    kind = check.get("type")
    where = check.get("where")
    condition = f" with {where['path']} = {_value(where['equals'])}" if where else ""
    if kind == "tool_called":
        return f"{check['tool']} is called{condition}"
    if kind == "tool_not_called":
        return f"{check['tool']} is never called{condition}"
    if kind == "tool_order":
        return f"{check['then']} is called only after {check['first']}"
    if kind == "max_calls":
        what = f"calls of {check['tool']}" if check.get("tool") else "tool calls"
        return f"at most {check['max']} {what}"
    if kind == "max_steps":
        return f"at most {check['max']} steps (assistant turns)"
    if kind == "final_state":
        path = f"the final state's {check['path']}"
        if "equals" in check:
            return f"{path} equals {_value(check['equals'])}"
        if "contains" in check:
            return f"{path} contains {_value(check['contains'])}"
        return f"{path} is within {check['tolerance']:g} of {check['value']:g}"
    return ""


def editable_value(value: object) -> str:
    """A JSON value as a plain field shows it for editing (the editor reads it back as JSON
    when it is JSON, else as text): text as typed, quoted only when it would read as another
    value ("42", "true"); anything else as JSON. "" for no value."""
    if value is None or value == "":
        return "" if value == "" else "null"
    if isinstance(value, str):
        try:
            json.loads(value)
        except ValueError:
            return value
    return _value(value)


def state_test(check: dict | None) -> str:
    """How a final_state check tests its value: equals, contains or within (a tolerance)."""
    check = check or {}
    if "contains" in check:
        return "contains"
    return "within" if "tolerance" in check else "equals"


def grader_criteria(spec: dict) -> list[dict]:
    """A compiled grader's criteria as the grader page lists them: text, points, and what each
    judges (or checks) in words."""
    return [
        {
            "text": c.get("text", ""),
            "points": c.get("points"),
            "scope": scope_in_words(
                c.get("scope", "outcome"), c.get("step_rule", ""), c.get("step_tool", "")
            ),
            "check": check_in_words(c.get("check")) if c.get("kind") == "checked" else "",
        }
        for c in spec.get("criteria", [])
        if isinstance(c, dict)
    ]
