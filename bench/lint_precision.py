"""Precision of each rubric lint rule on the labelled set in tests/lint_labels.py.

    .venv/bin/python bench/lint_precision.py

Prints one JSON line: per rule, the warnings it gave, how many a reviewer agrees with, its
precision, and the labelled cases it missed."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.lint_labels import precision  # noqa: E402

if __name__ == "__main__":
    from _django import emit  # beside this file

    emit("lint_precision", {"rules": precision()})
