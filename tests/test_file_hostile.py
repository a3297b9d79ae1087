"""Hostile input on the doors images and files came in by: message parts, evidence anchors,
file-check parameters, the reward endpoint, and a judge that answers a prompt carrying images
with something that is not a verdict. Each is refused with a named error (never a 500, a
RecursionError or an unbounded retry) and nothing of it is stored."""

from __future__ import annotations

import pytest

from annotation.content.episode import ContentError, Episode
from annotation.content.evidence import AnchorError, parse_anchor
from annotation.content.intake import ProjectIntake
from rubrics.checks import CheckError
from rubrics.files import checks as file_checks
from rubrics.models import StoredFile
from tests import factories
from tests.file_fixtures import data_uri, make_png, make_xlsx
from tests.test_api import api_client
from tests.test_file_judging import deliverable, grade, image_part, make_grader, vision_judge

pytestmark = pytest.mark.django_db

SHA = "a" * 64


def deep(levels: int) -> dict:
    value: dict = {}
    for _ in range(levels):
        value = {"file": value}
    return value


def with_part(part) -> dict:
    return {
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Read it."}, part]},
            {"role": "assistant", "content": "Done."},
        ]
    }


@pytest.mark.parametrize(
    ("part", "words"),
    [
        # A NUL or a lone surrogate in a name: the name is sanitised, never stored raw.
        (
            {
                "type": "file",
                "file": {"file_data": data_uri(make_xlsx()), "filename": "a\x00.xlsx"},
            },
            None,
        ),
        (
            {
                "type": "file",
                "file": {"file_data": data_uri(make_xlsx()), "filename": "b\ud800.xlsx"},
            },
            None,
        ),
        (
            {
                "type": "file",
                "file": {"file_data": data_uri(make_xlsx()), "filename": "x" * 100_000},
            },
            None,
        ),
        # Base64 written with Arabic-Indic digits is not base64.
        (
            {
                "type": "image_url",
                "image_url": {"url": "data:image/png;base64,\u0661\u0662\u0663\u0664"},
            },
            "not valid base64",
        ),
        ({"type": "file", "file": {"file_data": 12345}}, "give file_data"),
        ({"type": "file", "file": {"file_data": ["data:"], "filename": ["x"]}}, "give file_data"),
        ({"type": "file", "file": deep(5_000)}, "give file_data"),
        ({"type": "image_url", "image_url": deep(5_000)}, "give image_url.url"),
        ({"type": "file", "file": "not an object"}, "must be an object"),
        ({"type": "file", "file": {"sha256": "\u0661" * 64}}, "64 hex digits"),
    ],
)
def test_a_hostile_part_is_refused_or_sanitised_never_a_crash(part, words):
    project = factories.make_project(owner=factories.make_user())
    if words is None:
        episode = Episode.parse(with_part(part), files=ProjectIntake(project))
        [(_, ref)] = list(episode.files())
        assert "\x00" not in ref.name and len(ref.name) <= 120
        ref.name.encode("utf-8")  # no lone surrogate survives
        return
    with pytest.raises(ContentError) as refused:
        Episode.parse(with_part(part), files=ProjectIntake(project))
    assert refused.value.field.startswith("messages[0].content[1]")
    assert words in str(refused.value)
    assert not StoredFile.objects.filter(project=project).exists()


@pytest.mark.parametrize(
    "raw",
    [
        {"file": SHA, "page": "\u0663"},  # an Arabic-Indic 3
        {"file": SHA, "page": 3.0},
        {"file": SHA, "page": True},
        {"file": SHA, "page": 10**400},
        {"file": SHA, "sheet": "Debt", "cell": "D\uff13"},  # a fullwidth 3
        {"file": SHA, "sheet": "Debt", "cell": "B\u0667"},
        {"file": SHA, "sheet": "x" * 10_000, "cell": "B7"},
        {"file": SHA, "region": [0.1, 0.1, float("nan"), 0.2]},
        {"file": SHA, "region": [0.1] * 10_000},
        {"file": SHA, "region": deep(5_000)},
        {"file": "\u0661" * 64, "page": 1},
        {"file": SHA, "page": 1, "extra": deep(5_000)},
        "[" * 5_000,
        '{"file": "' + "a" * 5_000 + '"}',
        ["not", "an", "object"],
    ],
)
def test_a_hostile_anchor_is_an_anchor_error(raw):
    with pytest.raises(AnchorError):
        parse_anchor(raw)


@pytest.mark.parametrize(
    ("kind", "check", "field"),
    [
        ("xlsx_cell", {"cell": "B\u0667", "value": 1}, "check.cell"),
        ("xlsx_cell", {"cell": "B\uff17", "value": 1}, "check.cell"),
        ("xlsx_cell", {"cell": "B7", "value": "NaN"}, "check.value"),
        ("xlsx_cell", {"cell": "B7", "value": "1e400"}, "check.value"),
        ("xlsx_cell", {"cell": "A1:XFD1048576", "value": 1, "aggregate": "sum"}, "check.cell"),
        ("xlsx_cell", {"cell": "B7", "value": deep(5_000)}, "check.value"),
        ("pdf_max_pages", {"max": "\u0663"}, "check.max"),
        ("pdf_max_pages", {"max": 10**400}, "check.max"),
        ("file_present", {"kind": "xlsx", "min": "\u0662"}, "check.min"),
        ("file_text", {"kind": "docx", "check": deep(5_000)}, "check.check"),
    ],
)
def test_hostile_file_check_parameters_are_named_errors(kind, check, field):
    with pytest.raises(CheckError) as refused:
        file_checks.validate(kind, check)
    assert refused.value.field.startswith(field)


def test_unicode_digits_in_a_number_are_read_as_the_number_they_write():
    """Python reads Arabic-Indic digits as digits; the check stores the plain number."""
    out = file_checks.validate(
        "xlsx_cell", {"cell": "B7", "value": "\u0661\u0662", "tolerance": "\u0661"}
    )
    assert (out["value"], out["tolerance"]) == (12.0, 1.0)


def test_the_reward_endpoint_answers_hostile_parts_with_a_400_and_stores_nothing(personas, sim):
    grader = make_grader(personas.project, personas.admin)
    factories.make_judge(personas.project, sim.url)
    client = api_client(personas.engineer)
    task = grader.version.rubric.task.external_id
    nested = '{"file": ' * 5_000 + "{}" + "}" * 5_000
    head = '{"task": "' + task + '", "responses": [[{"role": "user", "content": '
    body = head + '[{"type": "file", "file": ' + nested + '}]}, {"role": "assistant"}]]}'
    reply = client.post(f"/api/graders/{grader.hash}/score/", body, content_type="application/json")
    assert reply.status_code == 400, reply.content[:300]
    for part in (
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,\u0661\u0662"}},
        {"type": "image_url", "image_url": {"url": "file:///etc/passwd"}},
        {"type": "file", "file": {"file_data": data_uri(b"\x00" * 4096), "filename": "z\x00"}},
    ):
        reply = client.post(
            f"/api/graders/{grader.hash}/score/",
            {"task": task, "responses": [with_part(part)["messages"]]},
            format="json",
        )
        assert reply.status_code == 400, (part, reply.content[:300])
        assert "content[1]" in reply.content.decode()
    assert not StoredFile.objects.filter(project=personas.project).exists()
    assert sim.stats.requests == 0


def test_a_judge_that_answers_a_prompt_with_images_with_no_verdict_errs_after_a_few_asks(
    personas, sim, settings
):
    grader = make_grader(personas.project, personas.admin)
    judge = vision_judge(personas.project, sim.url)
    response = deliverable(personas.project, image_part(make_png(), "chart.png"))
    settings.JUDGE_MAX_ATTEMPTS = 2
    sim.config.fault_rate = 1.0
    sim.config.faults = ("malformed",)
    out = grade(grader, judge, response)
    judged = [g for g in out.graded if g.judged]
    assert judged and all(g.outcome == "error" and g.error for g in judged)
    assert all(c.usage.attempts <= 3 for c in out.calls)
    assert sim.stats.requests == sum(c.usage.attempts for c in out.calls)
    assert out.to_cache == {}
