"""Authoring criteria over episodes: scope, step rule and step tool through the service, the
editor, the API and the rubric files; episode checks from the editor's plain fields; the
rubric and grader pages say them in words."""

from __future__ import annotations

import json

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import IntegrityError, transaction

from rubrics import formats, services
from rubrics.models import Criterion, Rubric
from tests import factories
from tests.test_api import api_client

pytestmark = pytest.mark.django_db


@pytest.fixture
def draft(personas):
    task = factories.make_task(personas.project, "t-agent")
    rubric = services.rubric_create(
        project=personas.project, task=task, title="Refund agent", user=personas.author
    )
    return rubric.versions.get()


STEP = {"scope": "step", "step_rule": "all", "step_tool": "refund"}


# --- The service ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"scope": "episode"}, "scope", "Choose one of outcome, trajectory, step"),
        ({"scope": "step"}, "step_rule", "A step criterion needs a step rule"),
        ({"scope": "step", "step_rule": "most"}, "step_rule", "needs a step rule"),
        ({"scope": "outcome", "step_rule": "all"}, "step_rule", "Only a step criterion"),
        ({"scope": "trajectory", "step_tool": "refund"}, "step_tool", "Only a step criterion"),
        ({"scope": "step", "step_rule": "all", "step_tool": "x" * 201}, "step_tool", "at most"),
    ],
)
def test_bad_scope_fields_are_named_and_nothing_is_written(draft, fields, field, words):
    with pytest.raises(ValidationError) as caught:
        services.criterion_add(version=draft, text="Checks the order", points=1, **fields)
    assert set(caught.value.message_dict) == {field}
    assert words in caught.value.message_dict[field][0]
    assert not draft.criteria.exists()


def test_the_database_refuses_a_step_rule_that_does_not_fit_the_scope(draft):
    with pytest.raises(IntegrityError), transaction.atomic():
        Criterion.objects.create(version=draft, position=0, text="x", points=1, scope="step")
    with pytest.raises(IntegrityError), transaction.atomic():
        Criterion.objects.create(version=draft, position=0, text="x", points=1, step_rule="all")


def test_leaving_step_scope_drops_the_rule_and_tool(draft):
    c = services.criterion_add(version=draft, text="Checked the order first", points=2, **STEP)
    assert (c.scope, c.step_rule, c.step_tool) == ("step", "all", "refund")
    c = services.criterion_update(criterion=c, scope="trajectory")
    assert (c.scope, c.step_rule, c.step_tool) == ("trajectory", "", "")
    with pytest.raises(ValidationError) as caught:
        services.criterion_update(criterion=c, scope="step")
    assert "step_rule" in caught.value.message_dict
    c = services.criterion_update(criterion=c, scope="step", step_rule="share")
    assert (c.scope, c.step_rule, c.step_tool) == ("step", "share", "")


def test_a_new_draft_copies_scope_rule_and_tool(draft, personas):
    c = services.criterion_add(version=draft, text="Checked the order first", points=2, **STEP)
    services.criterion_add(version=draft, text="Answers kindly", points=1, scope="trajectory")
    services.version_publish(version=draft, user=personas.author)
    new = services.draft_for_edit(rubric=draft.rubric, user=personas.author)
    copied = list(new.criteria.order_by("position"))
    assert [(x.scope, x.step_rule, x.step_tool) for x in copied] == [
        ("step", "all", "refund"),
        ("trajectory", "", ""),
    ]
    assert copied[0].lineage == c.lineage


# --- The editor -----------------------------------------------------------------------------


def post(client, c, data):
    return client.post(f"/criteria/{c.pk}/", data, HTTP_HX_REQUEST="true")


def test_the_editor_sets_scope_rule_and_tool_and_says_them_in_words(client, draft, personas):
    c = services.criterion_add(version=draft, text="Looked the order up first", points=2)
    client.force_login(personas.author)
    reply = post(client, c, {"scope": "step", "step_rule": "all", "step_tool": " refund "})
    assert reply.status_code == 200 and reply["X-Assay-Saved"] == "1"
    c.refresh_from_db()
    assert (c.scope, c.step_rule, c.step_tool) == ("step", "all", "refund")
    # The autosave's reply updates the words beside the criterion.
    assert "Judged at each call of refund; met only if met at every step." in reply.content.decode()
    page = client.get(f"/rubrics/{draft.rubric_id}/").content.decode()
    assert "Judged at each call of refund; met only if met at every step." in page
    assert 'aria-label="Criterion 1 step rule"' in page

    # Back to the outcome: the step fields the page still sends are dropped with the scope.
    reply = post(client, c, {"scope": "outcome", "step_rule": "all", "step_tool": "refund"})
    assert reply["X-Assay-Saved"] == "1"
    c.refresh_from_db()
    assert (c.scope, c.step_rule, c.step_tool) == ("outcome", "", "")


def test_the_editor_names_a_missing_step_rule(client, draft, personas):
    c = services.criterion_add(version=draft, text="Each turn is polite", points=1)
    client.force_login(personas.author)
    reply = post(client, c, {"scope": "step", "step_rule": ""})
    assert reply["X-Assay-Saved"] == "0"
    assert "A step criterion needs a step rule" in reply.content.decode()
    c.refresh_from_db()
    assert c.scope == "outcome"


@pytest.mark.parametrize(
    ("fields", "spec"),
    [
        (
            {"check_type": "tool_called", "check_tool": "lookup_order"},
            {"type": "tool_called", "tool": "lookup_order"},
        ),
        (
            {
                "check_type": "tool_not_called",
                "check_tool": "refund",
                "check_where_path": "id",
                "check_where": "B2",
            },
            {"type": "tool_not_called", "tool": "refund", "where": {"path": "id", "equals": "B2"}},
        ),
        (
            {"check_type": "tool_called", "check_tool": "refund", "check_where_path": "amount"},
            None,  # a where path with no value: the error names check.where.equals
        ),
        (
            {"check_type": "tool_order", "check_first": "lookup_order", "check_then": "refund"},
            {"type": "tool_order", "first": "lookup_order", "then": "refund"},
        ),
        (
            {"check_type": "max_calls", "check_tool": "", "check_max": "5"},
            {"type": "max_calls", "tool": "", "max": 5},
        ),
        ({"check_type": "max_steps", "check_max": "30"}, {"type": "max_steps", "max": 30}),
        (
            {
                "check_type": "final_state",
                "check_path": "orders.A17.refunded",
                "check_state_test": "equals",
                "check_value": "true",
            },
            {"type": "final_state", "path": "orders.A17.refunded", "equals": True},
        ),
        (
            {
                "check_type": "final_state",
                "check_path": "outbox",
                "check_state_test": "contains",
                "check_value": "ann@example.com",
            },
            {"type": "final_state", "path": "outbox", "contains": "ann@example.com"},
        ),
        (
            {
                "check_type": "final_state",
                "check_path": "invoice.total",
                "check_state_test": "within",
                "check_value": "6.2",
                "check_tolerance": "0.05",
            },
            {"type": "final_state", "path": "invoice.total", "value": 6.2, "tolerance": 0.05},
        ),
    ],
)
def test_episode_checks_from_the_editor_fields(client, draft, personas, fields, spec):
    c = services.criterion_add(version=draft, text="Refunds only after a lookup", points=2)
    client.force_login(personas.author)
    reply = post(client, c, {"kind": "checked", "kind_now": "checked", **fields})
    c.refresh_from_db()
    if spec is None:
        assert reply["X-Assay-Saved"] == "0"
        assert "check.where.equals" in reply.content.decode()
        assert c.kind == "binary"
        return
    assert reply["X-Assay-Saved"] == "1", reply.content.decode()
    assert c.check_spec == spec
    # The page gives the fields back as typed, so the next autosave keeps the check.
    page = client.get(f"/rubrics/{draft.rubric_id}/").content.decode()
    again = {k: v for k, v in fields.items() if k != "check_type"}
    for name, value in again.items():
        if name == "check_state_test":
            assert f'<option value="{value}" selected>' in page
        elif value:
            assert f'name="{name}"' in page and f'value="{value}"' in page, name


def test_the_editor_names_a_bad_episode_check(client, draft, personas):
    c = services.criterion_add(version=draft, text="Refunds after a lookup", points=2)
    client.force_login(personas.author)
    reply = post(
        client,
        c,
        {"kind": "checked", "kind_now": "checked", "check_type": "tool_order", "check_first": "a"},
    )
    assert reply["X-Assay-Saved"] == "0"
    assert "check.then" in reply.content.decode()


def test_published_criteria_read_in_words_on_the_rubric_and_grader_pages(client, draft, personas):
    services.criterion_add(version=draft, text="Looked the order up first", points=2, **STEP)
    services.criterion_add(
        version=draft,
        text="Refund follows a lookup",
        points=3,
        kind="checked",
        check_spec={"type": "tool_order", "first": "lookup_order", "then": "refund"},
    )
    services.criterion_add(
        version=draft,
        text="Refunded before checking",
        points=-3,
        scope="step",
        step_rule="any",
    )
    grader = services.version_publish(version=draft, user=personas.author)
    client.force_login(personas.annotator)
    page = client.get(f"/rubrics/{draft.rubric_id}/").content.decode()
    assert "Judged at each call of refund; met only if met at every step" in page
    assert "Refund is called only after lookup_order." in page
    assert "Judged at each assistant turn; met if met at any step" in page
    client.force_login(personas.engineer)
    page = client.get(f"/graders/{grader.hash}/").content.decode()
    assert "judged at each call of refund; met only if met at every step" in page
    assert "checks that refund is called only after lookup_order" in page
    assert grader.spec["criteria"][0]["step_tool"] == "refund"


# --- The API --------------------------------------------------------------------------------


def test_the_api_sets_scope_and_names_bad_fields(draft, personas):
    author = api_client(personas.author)
    url = f"/api/rubrics/{draft.rubric_id}/draft/criteria/"
    reply = author.post(url, {"text": "Each refund is justified", "points": 2, **STEP}, "json")
    assert reply.status_code == 201, reply.data
    assert (reply.data["scope"], reply.data["step_rule"], reply.data["step_tool"]) == (
        "step",
        "all",
        "refund",
    )
    pk = reply.data["id"]
    reply = author.patch(f"/api/criteria/{pk}/", {"scope": "outcome"}, "json")
    assert reply.status_code == 200
    assert (reply.data["scope"], reply.data["step_rule"], reply.data["step_tool"]) == (
        "outcome",
        "",
        "",
    )
    reply = author.patch(f"/api/criteria/{pk}/", {"scope": "step"}, "json")
    assert reply.status_code == 400 and set(reply.data) == {"step_rule"}
    reply = author.put(
        url,
        {
            "criteria": [
                {"text": "Fine", "points": 1, "scope": "trajectory"},
                {"text": "No rule", "points": 1, "scope": "step"},
                {"text": "Rule, no step", "points": 1, "step_rule": "any"},
            ]
        },
        "json",
    )
    assert reply.status_code == 400
    assert set(reply.data) == {"criteria[1].step_rule", "criteria[2].step_rule"}


# --- Rubric files ---------------------------------------------------------------------------


HB_ROW = {
    "prompt": [{"role": "user", "content": "Refund order A17."}],
    "prompt_id": "refund-1",
    "rubrics": [
        {"criterion": "Says the refund is on its way", "points": 3, "tags": []},
        {
            "criterion": "Checks the order before each refund",
            "points": 2,
            "tags": ["process"],
            "scope": "step",
            "step_rule": "all",
            "step_tool": "refund",
        },
        {
            "criterion": "Promises what it cannot",
            "points": -2,
            "tags": [],
            "scope": "step",
            "step_rule": "any",
        },
        {"criterion": "Stays courteous", "points": 1, "tags": [], "scope": "trajectory"},
    ],
}


def test_healthbench_files_carry_scope_and_round_trip(personas, tmp_path):
    source = tmp_path / "agent.jsonl"
    source.write_text(json.dumps(HB_ROW) + "\n")
    slug = personas.project.slug
    call_command("import_rubrics", str(source), format="healthbench", project=slug)
    saved = Criterion.objects.filter(version__rubric__task__external_id="refund-1")
    assert [(c.scope, c.step_rule, c.step_tool) for c in saved.order_by("position")] == [
        ("outcome", "", ""),
        ("step", "all", "refund"),
        ("step", "any", ""),
        ("trajectory", "", ""),
    ]
    assert all(c.extra == {} for c in saved)  # known fields, not kept as unknown extras
    out = tmp_path / "out.jsonl"
    call_command("export_rubrics", format="healthbench", project=slug, output=str(out))
    assert json.loads(out.read_text()) == HB_ROW
    # A changed scope in a re-import is a change: a new version holds it.
    changed = json.loads(json.dumps(HB_ROW))
    changed["rubrics"][1]["step_rule"] = "share"
    source.write_text(json.dumps(changed) + "\n")
    result = formats.import_healthbench(
        project=personas.project,
        lines=source.read_text().splitlines(),
        user=personas.author,
        reimport=True,
    )
    assert result.updated == 1
    rubric = Rubric.objects.get(task__external_id="refund-1")
    newest = rubric.versions.order_by("-number").first()
    assert newest.criteria.get(position=1).step_rule == "share"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"scope": "step"}, "line 1: rubrics[0].step_rule"),
        ({"scope": "whole"}, "line 1: rubrics[0].scope"),
        ({"step_rule": "all"}, "line 1: rubrics[0].step_rule"),
        ({"scope": 3}, "line 1: rubrics[0].scope"),
    ],
)
def test_a_bad_scope_in_a_healthbench_file_names_line_and_field(personas, tmp_path, change, field):
    row = json.loads(json.dumps(HB_ROW))
    row["rubrics"][0].update(change)
    source = tmp_path / "bad.jsonl"
    source.write_text(json.dumps(row) + "\n")
    with pytest.raises(ValidationError) as caught:
        formats.import_healthbench(
            project=personas.project, lines=source.read_text().splitlines(), user=personas.author
        )
    assert field in caught.value.message_dict
    assert not Rubric.objects.exists()


PB_TREE = {
    "id": "root",
    "requirements": "Handles the refund well",
    "weight": 1,
    "sub_tasks": [
        {"id": "a", "requirements": "The answer is right", "weight": 2, "sub_tasks": []},
        {
            "id": "b",
            "requirements": "Each refund call is justified",
            "weight": 1,
            "scope": "step",
            "step_rule": "share",
            "step_tool": "refund",
            "sub_tasks": [],
        },
    ],
}


def test_paperbench_trees_carry_scope_and_round_trip(personas, tmp_path):
    rubric_file = tmp_path / "tree.json"
    rubric_file.write_text(json.dumps(PB_TREE))
    slug = personas.project.slug
    call_command("import_rubrics", str(rubric_file), format="paperbench", project=slug)
    leaf = Criterion.objects.get(key="b")
    assert (leaf.scope, leaf.step_rule, leaf.step_tool, leaf.extra) == (
        "step",
        "share",
        "refund",
        {},
    )
    out = tmp_path / "out.json"
    call_command("export_rubrics", format="paperbench", project=slug, output=str(out))
    assert json.loads(out.read_text()) == PB_TREE
    bad = json.loads(json.dumps(PB_TREE))
    bad["sub_tasks"][1].pop("step_rule")
    rubric_file.write_text(json.dumps(bad))
    with pytest.raises(ValidationError) as caught:
        formats.import_paperbench(
            project=personas.project, text=rubric_file.read_text(), user=personas.author
        )
    assert "root.sub_tasks[1].step_rule" in caught.value.message_dict


# --- Lint -----------------------------------------------------------------------------------


def codes(*items):
    from rubrics import lint

    return {(w.position, w.code) for w in lint.lint(items) if w.position is not None}


def test_lint_a_step_criterion_that_names_the_final_answer():
    from rubrics.lint import Item

    assert codes(Item(0, "The final answer gives the refund date", 2, "binary", "step", "all")) == {
        (0, "step_names_final")
    }
    assert codes(Item(0, "In the end the order is refunded", 2, "binary", "step", "any")) == {
        (0, "step_names_final")
    }
    # The same words on an outcome or trajectory criterion are what those scopes are for.
    assert codes(Item(0, "The final answer gives the refund date", 2, "binary", "outcome")) == set()
    assert codes(Item(0, "The overall response is kind", 2, "binary", "trajectory")) == set()
    assert (
        codes(Item(0, "Looks the order up before refunding", 2, "binary", "step", "all")) == set()
    )


def test_lint_a_pitfall_with_the_share_rule():
    from rubrics.lint import Item

    assert codes(Item(0, "Refunds an unchecked order", -4, "binary", "step", "share")) == {
        (0, "pitfall_share")
    }
    assert codes(Item(0, "Refunds an unchecked order", -4, "binary", "step", "any")) == set()
    assert codes(Item(0, "Each reply is on topic", 2, "binary", "step", "share")) == set()


def test_lint_is_quiet_about_episode_criteria_on_a_plain_text_task(client, draft, personas):
    # The task has no responses at all, let alone episodes; the step tool is named nowhere else.
    services.criterion_add(
        version=draft, text="Looks the order up before refunding", points=2, **STEP
    )
    services.criterion_add(
        version=draft, text="Stays courteous throughout", points=1, scope="trajectory"
    )
    services.criterion_add(
        version=draft,
        text="Refunds before any lookup",
        points=-3,
        kind="checked",
        check_spec={"type": "tool_order", "first": "lookup_order", "then": "refund"},
    )
    client.force_login(personas.author)
    page = client.get(f"/rubrics/{draft.rubric_id}/").content.decode()
    assert "Nothing to flag." in page


def test_the_editor_shows_the_scope_lint(client, draft, personas):
    c = services.criterion_add(version=draft, text="Refunds an unchecked order", points=-3)
    client.force_login(personas.author)
    reply = post(client, c, {"scope": "step", "step_rule": "share"})
    assert reply["X-Assay-Saved"] == "1"
    assert 'data-code="pitfall_share"' in reply.content.decode()
