"""A labelled set for the rubric lint: which warnings a careful reviewer agrees with.

Criteria come from the demo's six rubrics, the shared HealthBench sample (five physician
rubrics), the shared PaperBench tree, and hand-written cases below that aim at each rule's
edges. `EXPECTED` names, per criterion, every rule that *should* fire on it; a criterion not
named should draw no criterion-level warning. Labels were decided by reading each criterion
against the rule's own promise (its message): "vague" is a word two graders would read
differently as the criterion's standard; "could_be_checked" is a criterion whose whole
substance is one literal that code can match; "near_duplicate" counts the same check twice.

`precision()` is what the lint test asserts and what bench/lint_precision.py prints.
"""

from __future__ import annotations

import json
from collections import Counter

from rubrics import lint
from tests.shared import ROOT, SHARED_DATA

# Keys are "source#position" (positions from 0 in the rubric's criterion order).
EXPECTED: dict[str, set[str]] = {
    # demo
    "demo:clinical-chest-pain#13": {"double_barreled"},  # attributes ... and suggests (pitfall)
    "demo:clinical-warfarin-interactions#7": {"could_be_checked"},  # "about 3,000 mg"
    # HealthBench sample
    "hb:1f548d5b#11": {"vague"},  # strategies "appropriate for the postpartum period"
    "hb:1f548d5b#15": {"vague"},  # "fails to adequately explain"
    "hb:1f548d5b#17": {"vague", "long"},  # the 450-word precision cluster criterion
    "hb:1f548d5b#18": {"vague", "long"},  # the 480-word helpfulness cluster criterion
    "hb:6f7a2ee9#0": {"vague", "long"},
    "hb:6f7a2ee9#1": {"vague", "long"},
    "hb:19ec4833#8": {"vague"},  # "appropriate hedging language"
    "hb:19ec4833#10": {"vague"},  # "without providing adequate contextual information"
    "hb:19ec4833#18": {"long"},  # the 122-word step-by-step criterion
    "hb:7ebc830a#9": {"double_barreled"},  # acknowledges location and provides information
    "hb:7ebc830a#11": {"vague", "long"},
    "hb:7ebc830a#12": {"vague", "long"},
    # PaperBench: the same leaf twice, a near twin, and a 67-word leaf
    "pb#35": {"near_duplicate"},
    "pb#36": {"near_duplicate"},
    "pb#24": {"near_duplicate"},  # "to reduce toxicity" / "to remove toxicity": missed today
    "pb#31": {"long"},  # a 67-word leaf stating several results at once
}

# Hand-written edges: (text, points, rules that should fire). One rubric.
OWN: list[tuple[str, float, set[str]]] = [
    ("Says the dose is 81 mg", 2, {"could_be_checked"}),
    ('Uses the phrase "call an ambulance"', 2, {"could_be_checked"}),
    ("Mentions 'warfarin' by name", 1, {"could_be_checked"}),
    ("States the final answer is 42", 3, {"could_be_checked"}),
    ("Gives the maximum daily dose of 4 g", 2, {"could_be_checked"}),
    ("Identifies M.G.L. c. 149, § 24L as the governing statute", 3, set()),
    ("Notes the June 2026 covenant step-down to 5.75x", 2, set()),
    ("Explains that 18 months exceeds the 12-month statutory maximum", 3, set()),
    ("Treats Halstead's 17% share as a concentration risk", 2, set()),
    ("Recommends an INR recheck within 3-5 days", 2, set()),
    ("Advises an immediate call to emergency services (911)", 5, set()),
    ("Computes leverage of about 6.0x net before synergies", 2, set()),
    ("Reassures the patient that a short delay is reasonable", -5, set()),
    ("Lists red-flag symptoms (chest pain, fainting, etc.)", 2, set()),
    ("Summarises the user's context, including good family support", 1, set()),
    ("Gives appropriate advice about hydration", 1, {"vague"}),
    ("Explains the risks adequately", 2, {"vague"}),
    ("Covers the relevant drug interactions", 2, {"vague"}),
    ("Mentions ibuprofen and recommends taking it with food", 2, {"double_barreled"}),
    ("Advises rest and recommends ice for the first two days", 2, {"double_barreled"}),
    ("Advises rest for three days after the injury", 1, {"near_duplicate"}),
    ("Advises rest for three days after an injury", 1, set()),
    ("Recommends seeing a cardiologist within a week", 2, set()),
    ("Recommends seeing a dermatologist within a week", 2, set()),
    ("The probe was trained on the training split", 1, set()),
    ("The probe was evaluated on the training split", 1, set()),
    ("Suggests delaying care until the weekend", -4, set()),
    ("Names the drug class of the prescribed medicine", 1, set()),
]

# Hand-written criteria of an agent's rubric, with their scope over episodes: (text, points,
# scope, step rule, rules that should fire). One rubric; the pitfall keeps it from drawing
# the rubric-level no_pitfalls.
EPISODE: list[tuple[str, float, str, str, set[str]]] = [
    ("Looks the order up before it refunds", 3, "step", "all", set()),
    (
        "The final answer tells the customer when the refund arrives",
        2,
        "step",
        "all",
        {"step_names_final"},
    ),
    ("In the end the customer knows the refund amount", 2, "step", "share", {"step_names_final"}),
    ("The overall response is courteous", 1, "step", "all", {"step_names_final"}),
    ("Each reply answers the customer's last question", 2, "step", "share", set()),
    ("The final answer states the refund amount", 2, "outcome", "", set()),
    ("Ends with a clear summary of what was done", 1, "trajectory", "", set()),
    ("Issues a refund without checking the order", -5, "step", "share", {"pitfall_share"}),
    ("Promises a refund it cannot give", -3, "step", "any", set()),
    ("Shares another customer's data", -5, "step", "any", set()),
    ("Never asks for the order number twice", 1, "trajectory", "", set()),
    ("Keeps each tool call's arguments well formed", 1, "step", "all", set()),
]


def rubrics() -> list[tuple[str, list[tuple]]]:
    """Every labelled rubric: (source, [(criterion text, points[, kind, scope, step rule])])."""
    sets = []
    for task in json.loads((ROOT / "assay" / "demo" / "tasks.json").read_text()):
        criteria = [(c["text"], float(c["points"])) for c in task["criteria"]]
        sets.append((f"demo:{task['external_id']}", criteria))
    with (SHARED_DATA / "healthbench" / "oss_eval_sample.jsonl").open() as rows:
        for line in rows:
            row = json.loads(line)
            criteria = [(c["criterion"], float(c["points"])) for c in row["rubrics"]]
            sets.append((f"hb:{row['prompt_id'][:8]}", criteria))
    leaves: list[tuple[str, float]] = []

    def walk(node: dict) -> None:
        for child in node.get("sub_tasks") or []:
            walk(child)
        if not node.get("sub_tasks"):
            leaves.append((node["requirements"], 1.0))

    walk(
        json.loads(
            (SHARED_DATA / "paperbench" / "mechanistic-understanding.rubric.json").read_text()
        )
    )
    sets.append(("pb", leaves))
    sets.append(("own", [(text, points) for text, points, _ in OWN]))
    episode = [(text, points, "binary", scope, rule) for text, points, scope, rule, _ in EPISODE]
    sets.append(("episode", episode))
    return sets


def expected(source: str, position: int) -> set[str]:
    if source == "own":
        return OWN[position][2]
    if source == "episode":
        return EPISODE[position][4]
    return EXPECTED.get(f"{source}#{position}", set())


def precision() -> dict[str, dict[str, float | int]]:
    """Per criterion-level rule: warnings given, how many a reviewer agrees with, precision,
    and how many labelled cases it missed."""
    fired: Counter[str] = Counter()
    agreed: Counter[str] = Counter()
    missed: Counter[str] = Counter()
    criteria = 0
    for source, rows in rubrics():
        items = [lint.Item(i, *row) for i, row in enumerate(rows)]
        criteria += len(items)
        given: dict[int, set[str]] = {}
        for warning in lint.lint(items):
            if warning.position is not None:
                given.setdefault(warning.position, set()).add(warning.code)
        for item in items:
            want, got = expected(source, item.position), given.get(item.position, set())
            for code in got:
                fired[code] += 1
                agreed[code] += code in want
            for code in want - got:
                missed[code] += 1
    rules = sorted(set(fired) | set(missed))
    return {
        code: {
            "warnings": fired[code],
            "agreed": agreed[code],
            "precision": round(agreed[code] / fired[code], 3) if fired[code] else None,
            "missed": missed[code],
            "criteria": criteria,
        }
        for code in rules
    }
