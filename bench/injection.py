"""Prompt-injection detector figures. Prints ONE JSON line.

    .venv/bin/python bench/injection.py

No database, broker or judge: the detector (grading.injection) is a pure function of the text.

* catch rate: attacks in grading/injection_corpus.jsonl that the detector flags / attacks
  (the empty replies are left to the engine's empty rule and counted separately: each must be
  recognised as empty, so it is graded "not met" without a judge call);
* false flags on the corpus's honest hard negatives (answers that talk about criteria,
  judges, scores, JSON or instructions honestly);
* false-flag rate on the demo's model outputs (assay/demo/tasks.json) and on HealthBench's
  ideal and reference completions in ../shared/data/healthbench (found as the tests find it,
  tests/shared.py);
* gullible: attacks that fool the simulator's gullible judge, and how many of those the
  detector flags (the simulator's cue list is its own, not the detector's);
* speed: mean microseconds per response over the whole corpus and the real texts.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from grading import injection  # noqa: E402
from grading.judges.simulator import gullible_obeys  # noqa: E402
from tests.shared import SHARED_DATA  # noqa: E402

DEMO = ROOT / "assay" / "demo" / "tasks.json"
HEALTHBENCH = SHARED_DATA / "healthbench" / "oss_eval_sample.jsonl"


def demo_outputs(path: Path = DEMO) -> list[str]:
    """Every model output of the demo project (three models x six tasks)."""
    return [text for task in json.loads(path.read_text()) for text in task["responses"].values()]


def healthbench_completions(path: Path = HEALTHBENCH) -> list[str]:
    """HealthBench's ideal completion and reference completions of each row that has them."""
    texts = []
    for line in path.read_text().splitlines():
        data = json.loads(line).get("ideal_completions_data") or {}
        if data.get("ideal_completion"):
            texts.append(data["ideal_completion"])
        texts.extend(data.get("ideal_completions_ref_completions") or [])
    return texts


def flagged(texts: list[str | None]) -> list[int]:
    return [i for i, text in enumerate(texts) if injection.detect(text) is not None]


def rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def figures() -> dict:
    corpus = injection.load_corpus()
    attacks = [s for s in corpus if s.attack and not s.handled_by]
    empties = [s for s in corpus if s.handled_by == "empty-rule"]
    honest = [s for s in corpus if not s.attack]
    missed = [s.id for s in attacks if injection.detect(s.text) is None]
    fooled = [s for s in attacks if gullible_obeys(s.text or "")]
    demo = demo_outputs()
    healthbench = healthbench_completions()
    texts = [s.text for s in corpus] + demo + healthbench
    start = time.perf_counter()
    for text in texts:
        injection.detect(text)
    elapsed = time.perf_counter() - start
    demo_flagged = flagged(demo)
    hb_flagged = flagged(healthbench)
    honest_flagged = [honest[i].id for i in flagged([s.text for s in honest])]
    return {
        "detector": injection.DETECTOR,
        "corpus_attacks": len(attacks),
        "attacks_flagged": len(attacks) - len(missed),
        "catch_rate": rate(len(attacks) - len(missed), len(attacks)),
        "missed": missed,
        "empty_replies": len(empties),
        "empty_recognised": sum(injection.is_empty(s.text) for s in empties),
        "corpus_honest": len(honest),
        "corpus_honest_flagged": honest_flagged,
        "demo_outputs": len(demo),
        "demo_flagged": len(demo_flagged),
        "demo_false_flag_rate": rate(len(demo_flagged), len(demo)),
        "healthbench_completions": len(healthbench),
        "healthbench_flagged": len(hb_flagged),
        "healthbench_false_flag_rate": rate(len(hb_flagged), len(healthbench)),
        "gullible_fooled": len(fooled),
        "gullible_fooled_flagged": sum(injection.detect(s.text) is not None for s in fooled),
        "us_per_response": round(1e6 * elapsed / len(texts), 1),
    }


if __name__ == "__main__":
    from _django import emit  # beside this file (the tests import this module from bench)

    emit("injection", figures())
