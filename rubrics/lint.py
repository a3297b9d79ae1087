"""Warnings about a rubric draft, shown inline as the author types.

Pure functions over plain criterion data, so the editor, the API and tests share them. Each
warning says what is weak, why it matters to the judge, and how to fix it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

VAGUE = (
    "appropriate",
    "appropriately",
    "good",
    "adequate",
    "adequately",
    "properly",
    "reasonable",
    "etc.",
    "as needed",
    "sufficient",
    "relevant",
    "nice",
    "well",
)
# Where a vague word is content, not the criterion's standard: examples in parentheses or after
# "such as" / "including", and the claim a response makes ("Reassures him that waiting is
# reasonable": the pitfall is saying so, which a grader reads the same way every time).
NOT_THE_STANDARD = re.compile(
    r"\([^)]*\)|\b(?:such as|including|e\.g\.|for example|like)\b[^.;]*|"
    r"\b(?:reassures|claims|says|states|tells|implies|asserts|suggests)\b[^.;]*?\bthat\b[^.;]*",
    re.IGNORECASE,
)
LONG_WORDS = 60
NEAR_DUPLICATE = 0.75
# Words that do not change what a criterion asks; two criteria whose other words are the same
# (up to a plural or tense ending) count the same thing twice. One different content word
# ("trained" / "evaluated", "GPT-2" / "GPT-2 fine-tuned with DPO") is a different check.
# fmt: off
FILLER = frozenset((
    "a", "an", "the", "this", "that", "these", "those", "of", "for", "to", "in", "on", "at", "by",
    "with", "from", "as", "and", "or", "is", "are", "was", "were", "be", "been", "being", "has",
    "have", "had", "it", "its", "their", "his", "her", "them", "they", "he", "she", "response",
    "model", "user", "should", "must", "does", "do", "any", "some", "all", "also", "very",
))
# fmt: on
# "and"/"or" joining two verb phrases: "Mentions X and recommends Y".
DOUBLE = re.compile(
    r"\b(and|or|as well as)\s+(also\s+)?(mentions|states|recommends|advises|explains|"
    r"includes|asks|suggests|provides|describes|lists|avoids|identifies|notes|warns|uses)\b",
    re.IGNORECASE,
)
NUMBER = re.compile(
    r"(?<![\w.,§])[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?![\w.]*\d)\s*"
    r"(?:%|mg|mcg|ml|kg|g|mmhg|usd|\$)?",
    re.IGNORECASE,
)
# A quoted phrase: double or curly quotes, or single quotes that are not an apostrophe.
QUOTED = re.compile(r"[\"“]([^\"”]{2,80})[\"”]|(?<![A-Za-z])'([^']{2,80})'(?![A-Za-z])")
# A judged criterion that code could check exactly is one whose whole substance is a literal:
# it asks only that the response say, use or give one phrase or one number ("Says the dose is
# 81 mg", 'Uses the phrase "call an ambulance"'). A number or a quote inside reasoning
# ("Explains that 18 months exceeds the 12-month maximum", "Identifies M.G.L. c. 149, § 24L")
# still needs a judge, and so do citations, dates, multiples and ranges.
SURFACE = re.compile(
    r"^\s*(?:the response\s+)?(?:mentions|says|states|includes|contains|uses|gives|reports|"
    r"answers|outputs|quotes|writes|names|recommends a dose of|prints)\b",
    re.IGNORECASE,
)
NOT_A_LITERAL = re.compile(
    r"§|\bc\.\s*\d|\bsection\b|\barticle\b|\b(?:19|20)\d\d\b|\b(?:jan|feb|mar|apr|may|jun|jul|"
    r"aug|sep|oct|nov|dec)[a-z]*\b|\d(?:\.\d+)?x\b|\d\s*(?:-|–|to)\s*\d",
    re.IGNORECASE,
)
CHECKABLE_WORDS = 15
# A step criterion is judged at each turn, where there is no final answer yet: one that speaks
# of the final answer, the end or the whole response belongs to the outcome.
FINAL_ANSWER = re.compile(
    r"\bfinal (?:answer|response|reply|message|output|result)\b|\bin the end\b|"
    r"\bat the end\b|\boverall (?:response|answer)\b|\bend result\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Warning:
    code: str
    message: str  # what and why
    fix: str  # how
    position: int | None = None  # the criterion's position; None: the whole rubric


@dataclass(frozen=True)
class Item:
    position: int
    text: str
    points: float
    kind: str = "binary"
    scope: str = "outcome"
    step_rule: str = ""
    check: dict | None = None  # a checked criterion's check


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def _content(words: frozenset[str]) -> frozenset[str]:
    """The words that carry a criterion's meaning, with plural and tense endings dropped."""
    return frozenset(re.sub(r"(?:ies|es|s|ed|ing)$", "", w) or w for w in words - FILLER)


def _checkable_literal(c: Item) -> str | None:
    """What a surface criterion asks for ("the phrase 'x'", "the number 81 mg"), else None."""
    if not SURFACE.match(c.text) or len(_words(c.text)) > CHECKABLE_WORDS:
        return None
    quoted = [q for pair in QUOTED.findall(c.text) for q in pair if q]
    if len(quoted) == 1:
        return f"the phrase '{quoted[0]}'"
    if quoted or NOT_A_LITERAL.search(c.text):
        return None
    numbers = [n.strip() for n in NUMBER.findall(c.text)]
    return f"the number {numbers[0]}" if len(numbers) == 1 else None


def lint(criteria: Iterable[Item]) -> list[Warning]:
    items = list(criteria)
    warnings: list[Warning] = []
    for c in items:
        lower = f" {NOT_THE_STANDARD.sub(' ', c.text).lower()} "
        found = [w for w in VAGUE if re.search(rf"(?<![a-z]){re.escape(w)}(?![a-z])", lower)]
        if found:
            warnings.append(
                Warning(
                    "vague",
                    f"Vague wording ({', '.join(repr(w) for w in found)}): two graders will "
                    "read it differently, so the judge agrees with experts less often.",
                    "Say what exactly counts, e.g. name the action, the threshold or the fact.",
                    c.position,
                )
            )
        if DOUBLE.search(c.text):
            warnings.append(
                Warning(
                    "double_barreled",
                    "Two checks in one criterion: a response that does one but not the other "
                    "cannot be graded fairly as met or not met.",
                    "Split it into two criteria, each with its own points.",
                    c.position,
                )
            )
        if len(_words(c.text)) > LONG_WORDS:
            warnings.append(
                Warning(
                    "long",
                    f"Very long ({len(_words(c.text))} words): long criteria usually bundle "
                    "several checks, and judges miss parts of them.",
                    f"Keep it under {LONG_WORDS} words; move context to the guidance field.",
                    c.position,
                )
            )
        literal = _checkable_literal(c) if c.kind in ("binary", "scale") else None
        if literal:
            warnings.append(
                Warning(
                    "could_be_checked",
                    f"This judged criterion only asks for {literal}: code can check that "
                    "exactly, for free and without judge mistakes.",
                    "Make it a checked criterion (contains, or number within a tolerance).",
                    c.position,
                )
            )
        warnings.extend(_scope_warnings(c))
        warnings.extend(_check_warnings(c))
    # Word-set overlap (Jaccard) is cheap enough for a 200-criterion rubric on every keystroke.
    word_sets = [frozenset(_words(c.text)) for c in items]
    content_sets = [_content(words) for words in word_sets]
    # One warning per criterion, naming its first near twin: a long list of one theme
    # would otherwise bury the author in n^2 warnings.
    flagged: set[int] = set()
    for i, a in enumerate(items):
        if i in flagged:
            continue
        for j in range(i + 1, len(items)):
            x, y = word_sets[i], word_sets[j]
            if j in flagged or len(x) < 3 or len(y) < 3:
                continue
            ratio = len(x & y) / len(x | y)
            if ratio >= NEAR_DUPLICATE and content_sets[i] == content_sets[j]:
                flagged.add(j)
                warnings.append(
                    Warning(
                        "near_duplicate",
                        f"Nearly the same as criterion {items[j].position + 1} "
                        f"({ratio:.0%} of words shared): the rubric counts the same thing twice.",
                        "Merge the two, or make the difference explicit.",
                        a.position,
                    )
                )
                break
    if items and not any(c.points < 0 for c in items):
        warnings.append(
            Warning(
                "no_pitfalls",
                "No pitfalls: the rubric rewards good answers but never penalises harmful or "
                "wrong ones, so a long answer that says everything scores high.",
                "Add a criterion with negative points for a mistake a response must not make.",
            )
        )
    if items and sum(c.points for c in items if c.points > 0) <= 0:
        warnings.append(
            Warning(
                "no_positive_points",
                "Positive points sum to zero: every score would divide by zero.",
                "Give at least one criterion positive points.",
            )
        )
    return warnings


def _scope_warnings(c: Item) -> list[Warning]:
    """What a criterion's scope over episodes gets wrong. A step or trajectory criterion on a
    task whose responses are plain texts is fine (the text is a one-step episode), and so is
    a step tool nothing else names: neither is warned about."""
    if c.scope != "step":
        return []
    warnings = []
    final = FINAL_ANSWER.search(c.text)
    if final:
        warnings.append(
            Warning(
                "step_names_final",
                f"A step criterion that speaks of '{final.group(0)}' is judged at every turn, "
                "where there is no final answer yet: early steps are graded on what they "
                "cannot hold.",
                "Set its scope to outcome (the final answer), or say what each step must do.",
                c.position,
            )
        )
    if c.points < 0 and c.step_rule == "share":
        warnings.append(
            Warning(
                "pitfall_share",
                "A pitfall with the share rule costs a response only the share of its steps "
                "where the mistake happens: one refund without a check in ten steps costs a "
                "tenth of the penalty.",
                "Set the step rule to any: the pitfall is met if it happens at any step.",
                c.position,
            )
        )
    return warnings


def _check_warnings(c: Item) -> list[Warning]:
    """What a check's settings get wrong. A spreadsheet's number compared with no tolerance:
    a value Excel computed (0.1 + 0.2, a sum of cents) is rarely the exact decimal typed."""
    check = c.check if c.kind == "checked" and isinstance(c.check, dict) else {}
    if check.get("type") == "xlsx_cell" and "value" in check and not check.get("tolerance"):
        return [
            Warning(
                "exact_cell_number",
                "This cell check wants the number exactly: a value the spreadsheet computed "
                "(a sum of cents, a rate times a balance) often differs in the last digits, "
                "and is then not met.",
                "Give a tolerance: an absolute one (0.005 for cents) or a relative one "
                "(0.001 is 0.1%).",
                c.position,
            )
        ]
    return []


def lint_criteria(criteria) -> list[Warning]:
    """Lint model instances (or anything with position, text, points, kind, scope,
    step_rule and check_spec)."""
    return lint(
        Item(
            c.position,
            c.text,
            float(c.points),
            c.kind,
            c.scope,
            c.step_rule,
            getattr(c, "check_spec", None),
        )
        for c in criteria
    )


def suggest_check(text: str) -> dict:
    """A first check for a criterion turned into a checked one: the quoted phrase or the
    number the lint saw, else the text itself. The author refines it in the editor."""
    quoted = QUOTED.search(text)
    if quoted:
        return {
            "type": "contains",
            "value": quoted.group(1) or quoted.group(2),
            "case_sensitive": False,
        }
    number = re.search(r"(?<![\w.])[-+]?\d+(?:\.\d+)?", text)
    if number:
        return {"type": "number", "value": float(number.group(0)), "tolerance": 0}
    return {"type": "contains", "value": text.strip()[:200] or "?", "case_sensitive": False}
