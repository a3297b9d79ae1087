"""Criteria in words, as the rubric and grader pages state them: what of an episode a
criterion judges (its scope and step rule) and what an episode or file check tests."""

from __future__ import annotations

import json

from rubrics.files import checks as file_checks

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
    """An episode or file check as a sentence; "" for the checks of the final text, which the
    pages show field by field."""
    if not check:
        return ""
    kind = check.get("type")
    if kind in file_checks.FILE_CHECK_TYPES:
        return file_check_in_words(check)
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


def _file_words(kind: str, name: str) -> str:
    """ "an XLSX file named debt*" / "a file"."""
    return file_checks.kind_words(kind) + (f" named {name}" if name else "")


def text_check_in_words(check: dict) -> str:
    """What a text check asks of a text: "contains 'EBITDA'", "matches the pattern ..."."""
    kind = check.get("type")
    if kind in ("contains", "not_contains"):
        case = " (matching case)" if check.get("case_sensitive") else ""
        verb = "contains" if kind == "contains" else "does not contain"
        return f"{verb} {_value(check['value'])}{case}"
    if kind == "regex":
        case = " (ignoring case)" if check.get("ignore_case") else ""
        return f"matches the pattern {_value(check['pattern'])}{case}"
    if kind == "number":
        within = f"within {check['tolerance']:g} of " if check.get("tolerance") else ""
        return f"holds a number {within}{check['value']:g}"
    if kind == "json_field":
        return f"is JSON whose {check['path']} equals {_value(check['equals'])}"
    return ""


def file_check_in_words(check: dict) -> str:
    """A check over the response's files as a sentence, e.g. "in the first spreadsheet
    (XLSX or CSV), sheet 'Debt', B7 is 1,200,000 ± 1%"."""
    kind, name = check.get("type"), check.get("name", "")
    if kind == "file_present":
        least = check.get("min", 1)
        if least > 1:
            what = file_checks.kind_words(check["kind"], plural=True)
            return f"the response delivers at least {least} {what}" + (
                f" named {name}" if name else ""
            )
        return f"the response delivers {_file_words(check['kind'], name)}"
    if kind == "pdf_max_pages":
        pdf = f"the PDF named {name}" if name else "the response's first PDF"
        if check.get("min"):
            return f"{pdf} has {check['min']} to {check['max']} pages"
        return f"{pdf} has at most {check['max']} pages"
    if kind == "file_text":
        inner = check.get("check") or {}
        if check.get("kind", "any") == "any":
            of = f"the file named {name}" if name else "the response's first document"
        else:
            of = f"the first {_file_words(check['kind'], name).split(' ', 1)[1]}"
        return f"the text of {of} {text_check_in_words(inner)}"
    if kind == "xlsx_cell":
        book = f"the spreadsheet named {name}" if name else "the first spreadsheet (XLSX or CSV)"
        sheet = f", sheet {check['sheet']!r}" if check.get("sheet") else ""
        cell, expected = check["cell"], file_checks.expected_words(check)
        test = "equals" if "equals" in check else "is"
        case = " (ignoring case and surrounding spaces)" if "equals" in check else ""
        if check.get("aggregate") == "every":
            return f"in {book}{sheet}, every cell of {cell} {test} {expected}{case}"
        if check.get("aggregate") == "sum":
            return f"in {book}{sheet}, the sum of {cell} is {expected}"
        return f"in {book}{sheet}, {cell} {test} {expected}{case}"
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


def _plain(value: object) -> str:
    """A number or text as a plain field shows it: 1200000.0 as 1200000, None as ""."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value)


def check_fields(check: dict | None) -> dict:
    """What the editor's plain check fields show for a check, by field: the value (a text
    check's text or pattern, a final state's or JSON field's value, a cell's expected number
    or text, a file_text's inner value), the tolerance, match case, and a file check's own."""
    check = check or {}
    kind = check.get("type")
    inner = check.get("check") if kind == "file_text" else check
    inner = inner if isinstance(inner, dict) else {}
    if "equals" in inner and inner.get("type") in ("final_state", "json_field"):
        value = editable_value(inner["equals"])
    elif "contains" in inner and inner.get("type") == "final_state":
        value = editable_value(inner["contains"])
    elif "equals" in inner:  # a cell's text
        value = str(inner["equals"])
    elif "pattern" in inner:
        value = inner["pattern"]
    else:
        value = _plain(inner.get("value"))
    return {
        "value": value,
        "tolerance": _plain(inner.get("tolerance")),
        "match_case": bool(inner.get("case_sensitive") or inner.get("ignore_case") is False),
        "text_type": inner.get("type", "contains") if kind == "file_text" else "contains",
        "path": inner.get("path", ""),
        "kind": check.get("kind", "any"),
        "name": check.get("name", ""),
        "min": _plain(check.get("min")),
        "sheet": check.get("sheet", ""),
        "cell": check.get("cell", ""),
        "aggregate": check.get("aggregate", "every"),
        "relative": bool(check.get("relative")),
    }


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
