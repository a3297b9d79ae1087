"""Starting a run over a suite reads as many queries, of the same length, for 50 tasks as for 5:
no query per task or per grader, and no list of ids in a query (a HealthBench suite has 5,000
tasks, and a query with 10,000 ids takes longer to build than to run). The criteria counts the
database reads from the graders' specs are those of the specs."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from grading import services
from grading.models import Score
from rubrics import services as rubric_services
from rubrics.models import Grader
from tests import factories

pytestmark = pytest.mark.django_db

MODELS = ("model-a", "model-b")
FEW, MANY = 5, 50
NUMBER = re.compile(r"\b\d+\b")


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def queries_of(fn, **kwargs) -> tuple[object, list[str]]:
    with CaptureQueriesContext(connection) as captured:
        result = fn(**kwargs)
    return result, [q["sql"] for q in captured.captured_queries]


def test_starting_a_run_reads_the_same_queries_for_50_tasks_as_for_5():
    made = {}
    for n in (FEW, MANY):
        project, version, judge, admin, criteria = factories.frozen_suite(n, models=MODELS)
        target = {"project": project, "suite_version": version, "judge": judge}
        estimate, estimate_sql = queries_of(services.run_create_estimate, **target)
        run, create_sql = queries_of(services.run_create, **target, user=admin, start=False)
        # What the run holds follows the suite: a pending score per response, each by its
        # task's grader; every criterion of every response to grade.
        assert Score.objects.filter(run=run, status="pending").count() == 2 * n
        assert run.total_items == 2 * criteria
        assert estimate["calls"] == 2 * criteria == run.estimate["calls"]
        made[n] = (estimate_sql, create_sql)
    for few, many in zip(made[FEW], made[MANY], strict=True):
        assert len(few) == len(many), "\n".join(many)
        # No query lists the run's responses, tasks or graders: at most the ids of the
        # responses the estimate renders prompts for (a sample of a fixed size).
        for sql in many:
            assert len(NUMBER.findall(sql)) <= services.EST_SAMPLE_RESPONSES + 10, sql


def test_the_criteria_counted_in_the_database_are_those_of_the_spec():
    admin = factories.make_user()
    project = factories.make_project(owner=admin)
    task = factories.make_task(project, external_id="chart")
    inputs = [
        ("Describes the chart's trend", {}),
        ("Mentions imaging", {}),  # "imag" but not the word "image"
        (
            "Explains the risk shown in the Figure",
            {"kind": "scale", "scale": ("none", "some", "full")},
        ),
        (
            "Quotes the photo's caption",
            {"kind": "checked", "check_spec": {"type": "contains", "value": "caption"}},
        ),
        ("Says PHOTOGRAPHS are attached", {}),
        ("Is short", {}),
    ]
    rubric = rubric_services.rubric_create(
        project=project,
        task=task,
        title="Charts",
        user=admin,
        criteria=[
            rubric_services.CriterionInput(text=text, points=Decimal(1), **extra)
            for text, extra in inputs
        ],
    )
    grader = rubric_services.version_publish(version=rubric.versions.get(), user=admin)

    shapes = services.grader_shapes(Grader.objects.filter(pk=grader.pk).values("pk"))
    expected = services.GraderShape(criteria=6, judged=5, batchable=5, visual=(1, 3, 5))
    assert shapes == {grader.pk: expected}
    assert services.GraderShape.of(grader.spec["criteria"]) == expected
    assert (expected.calls("per_criterion"), expected.calls("batched")) == (5, 1)

    factories.import_responses(
        project, [{"task_id": "chart", "model": "m", "response": "It rises."}]
    )
    judge = factories.make_judge(project, "http://127.0.0.1:9/v1")
    estimate = services.run_create_estimate(
        project=project, judge=judge, grader=grader, mode="batched"
    )
    assert (estimate["calls"], estimate["checked_in_code"]) == (1, 1)
    [warning] = estimate["warnings"]
    assert "criteria #1, #3, #5 ask about an image" in warning["message"]


def test_the_database_keeps_every_criterion_pythons_case_folding_finds_visual():
    """The database's prefilter of visual criteria (LIKE over lower()) keeps every criterion
    VISUAL_CRITERION (re.I) matches: Python's case folding takes the dotless i, the dotted
    capital I and the long s for i, i and s, which PostgreSQL's lower() leaves as they are
    (or folds by the database's locale)."""
    admin = factories.make_user()
    project = factories.make_project(owner=admin)
    task = factories.make_task(project, external_id="folds")
    texts = [
        "Describes the \u0131MAGE",  # dotless i: lower() keeps it
        "Reads the \u017fCREENSHOT",  # long s
        "Names the d\u0130AGRAM's axes",  # dotted capital I
        "Is short",
        "Uses \u0131magery",  # not the word: not visual in Python either
    ]
    assert [bool(services.VISUAL_CRITERION.search(t)) for t in texts] == [
        True,
        True,
        True,
        False,
        False,
    ]
    rubric = rubric_services.rubric_create(
        project=project,
        task=task,
        title="Folds",
        user=admin,
        criteria=[rubric_services.CriterionInput(text=t, points=Decimal(1)) for t in texts],
    )
    grader = rubric_services.version_publish(version=rubric.versions.get(), user=admin)
    assert [c["text"] for c in grader.spec["criteria"]] == texts  # stored as written
    shapes = services.grader_shapes(Grader.objects.filter(pk=grader.pk).values("pk"))
    assert shapes[grader.pk].visual == (1, 2, 3)
    assert shapes[grader.pk] == services.GraderShape.of(grader.spec["criteria"])


def test_the_folds_the_database_is_told_are_every_non_ascii_letter_re_i_takes_for_ascii():
    """services._CASE_FOLDS lists every character outside ASCII that VISUAL_CRITERION's
    case-insensitive matching takes for a letter of its words (all of Unicode is tried)."""
    letters = sorted({ch for w in services._VISUAL_WORDS for ch in w.strip("%")})
    any_letter = re.compile(f"[{''.join(letters)}]", re.I)
    folds = {chr(cp) for cp in range(0x80, 0x110000) if any_letter.fullmatch(chr(cp))}
    assert folds == set(services._CASE_FOLDS)
    for char, ascii_letter in services._CASE_FOLDS.items():
        assert re.fullmatch(ascii_letter, char, re.I)
