"""Criterion fields and kinds, groups, concurrency, immutability, review, diff, history."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction

from rubrics import compiler, lint, scoring, selectors, services
from rubrics.models import Criterion, CriterionGroup, RubricEvent, RubricVersion
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def draft(personas):
    task = factories.make_task(personas.project, "t1")
    rubric = services.rubric_create(
        project=personas.project, task=task, title="R", user=personas.author
    )
    return rubric.versions.get()


def _error_fields(exc: ValidationError) -> set[str]:
    return set(exc.message_dict)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"text": "", "points": 1}, "text"),
        ({"text": "x", "points": 0}, "points"),
        ({"text": "x", "points": "abc"}, "points"),
        ({"text": "x", "points": 2, "importance": "pitfall"}, "points"),
        ({"text": "x", "points": -2, "importance": "essential"}, "importance"),
        ({"text": "x", "points": 1, "importance": "vital"}, "importance"),
        ({"text": "x", "points": 1, "kind": "vibes"}, "kind"),
        ({"text": "x", "points": 1, "kind": "scale", "scale": ["only one"]}, "scale"),
        ({"text": "x", "points": 1, "kind": "scale", "scale": ["low", " "]}, "scale[1]"),
        (
            {"text": "x", "points": 1, "kind": "checked", "check_spec": {"type": "eval"}},
            "check.type",
        ),
        (
            {
                "text": "x",
                "points": 1,
                "kind": "checked",
                "check_spec": {"type": "regex", "pattern": "("},
            },
            "check.pattern",
        ),
        ({"text": "x", "points": 1, "weight": -1}, "weight"),
        ({"text": "x", "points": 1, "tags": "a" * 101}, "tags"),
    ],
)
def test_bad_criterion_fields_are_named_and_nothing_is_written(draft, fields, field):
    with pytest.raises(ValidationError) as caught:
        services.criterion_add(version=draft, **fields)
    assert field in _error_fields(caught.value)
    assert not draft.criteria.exists()
    draft.refresh_from_db()
    assert draft.revision == 0  # the revision bump rolled back with the refused edit


def test_every_kind_is_stored_and_compiled_into_the_contract(draft, personas):
    services.criterion_add(
        version=draft,
        text="Advises calling emergency services",
        points=5,
        importance="essential",
        tags="accuracy, completeness, accuracy",
        guidance="Any emergency number counts.",
        example_met="Call 911 now.",
        example_unmet="Rest and see.",
        gate=True,
    )
    services.criterion_add(
        version=draft,
        text="Clarity",
        points=3,
        kind="scale",
        scale="Confusing\nUnderstandable\nClear and well ordered",
    )
    services.criterion_add(
        version=draft,
        text="Mentions 911",
        points=2,
        kind="checked",
        check_spec={"type": "contains", "value": "911"},
    )
    services.criterion_add(version=draft, text="Recommends driving oneself", points=-4)
    grader = services.version_publish(version=draft, user=personas.author)
    spec = grader.spec
    first, scale, checked, pitfall = spec["criteria"]
    assert first["importance"] == "essential" and first["gate"] is True
    assert first["tags"] == ["accuracy", "completeness"]
    assert first["kind"] == "binary" and first["group"] is None and first["weight"] == 1
    assert first["guidance"] == "Any emergency number counts."
    assert scale["scale"] == {
        "descriptors": ["Confusing", "Understandable", "Clear and well ordered"]
    }
    assert checked["check"] == {"type": "contains", "value": "911", "case_sensitive": False}
    assert pitfall["importance"] == "pitfall" and pitfall["points"] == -4
    assert {c["id"] for c in spec["criteria"]} == set(draft.criteria.values_list("pk", flat=True))
    assert spec["aggregation"] == {
        "method": "healthbench",
        "formula": scoring.formula(spec),
    }
    assert "gate" in spec["aggregation"]["formula"]
    assert spec["groups"] == [] and spec["reference"] == ""


def test_indent_and_outdent_build_a_weighted_tree(draft, personas):
    a = services.criterion_add(version=draft, text="A", points=1)
    b = services.criterion_add(version=draft, text="B", points=1)
    c = services.criterion_add(version=draft, text="C", points=1)
    with pytest.raises(ValidationError) as caught:
        services.criterion_indent(criterion=a)
    assert "group" in _error_fields(caught.value)
    services.criterion_indent(criterion=b)  # A and B open a new group
    b.refresh_from_db()
    a.refresh_from_db()
    assert a.group_id == b.group_id is not None
    services.criterion_indent(criterion=c)  # C joins it
    services.criterion_indent(criterion=c)  # and then a subgroup under it
    c.refresh_from_db()
    assert c.group.parent_id == b.group_id
    services.group_update(group=b.group, title="Safety", weight="3")
    grader = services.version_publish(version=draft, user=personas.author)
    spec = grader.spec
    assert spec["aggregation"]["method"] == "tree"
    assert {(g["title"], g["weight"]) for g in spec["groups"]} == {("Safety", 3), ("Group 2", 1)}
    # The second indent made a subgroup holding B and C; outdenting both empties it, and an
    # empty group is removed (on a new draft: v1 is frozen).
    new = services.draft_for_edit(rubric=draft.rubric, user=personas.author)
    services.criterion_outdent(criterion=new.criteria.get(text="C"))
    assert new.groups.count() == 2
    services.criterion_outdent(criterion=new.criteria.get(text="B"))
    assert new.groups.count() == 1
    services.criterion_outdent(criterion=new.criteria.get(text="C"))
    with pytest.raises(ValidationError, match="top level"):
        services.criterion_outdent(criterion=new.criteria.get(text="C"))


def test_a_stale_save_is_refused_with_a_clear_message(draft):
    c = services.criterion_add(version=draft, text="A", points=1)
    draft.refresh_from_db()
    seen = draft.revision
    services.criterion_update(criterion=c, text="Alice's edit", expected_revision=seen)
    with pytest.raises(ValidationError) as caught:
        services.criterion_update(criterion=c, text="Bob's edit", expected_revision=seen)
    assert "reload" in caught.value.message_dict["revision"][0]
    c.refresh_from_db()
    assert c.text == "Alice's edit"


def test_published_versions_are_immutable_in_the_database(personas):
    grader = factories.make_published_rubric(
        personas.project, factories.make_task(personas.project), [("A", 1)], personas.admin
    )
    version = grader.version
    for attempt in (
        lambda: Criterion.objects.filter(version=version).update(text="rewritten"),
        lambda: Criterion.objects.filter(version=version).delete(),
        lambda: Criterion.objects.create(version=version, position=9, text="sneaky", points=1),
        lambda: RubricVersion.objects.filter(pk=version.pk).update(content_hash="0" * 64),
        lambda: RubricVersion.objects.filter(pk=version.pk).update(status="draft"),
        lambda: CriterionGroup.objects.create(version=version, title="G"),
    ):
        with pytest.raises(IntegrityError, match="immutable"), transaction.atomic():
            attempt()
    assert Criterion.objects.get(version=version).text == "A"
    # Retiring is the one change a published version accepts.
    services.version_retire(version=version, user=personas.admin)
    version.refresh_from_db()
    assert version.status == "retired"


def test_a_purge_may_delete_frozen_versions(personas):
    grader = factories.make_published_rubric(
        personas.project, factories.make_task(personas.project), [("A", 1)], personas.admin
    )
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL assay.allow_purge = 'on'")
        grader.delete()
        grader.version.rubric.delete()
    assert not Criterion.objects.filter(version=grader.version).exists()


def test_review_rules(personas):
    p = personas
    grader = factories.make_published_rubric(
        p.project, factories.make_task(p.project), [("Mentions rest", 1)], p.author
    )
    rubric = grader.version.rubric
    draft = services.draft_for_edit(rubric=rubric, user=p.author)
    c = draft.criteria.get()
    services.version_submit(version=draft, user=p.author)
    with pytest.raises(ValidationError, match="in review"):
        services.criterion_update(criterion=c, text="changed while in review")
    comment = services.comment_add(version=draft, user=p.reviewer, body="Too vague", criterion=c)
    with pytest.raises(ValidationError, match="unresolved"):
        services.version_approve(version=draft, user=p.reviewer, role="reviewer")
    with pytest.raises(ValidationError, match="Only a reviewer"):
        services.version_approve(version=draft, user=p.admin, role="admin")
    services.comment_resolve(comment=comment, user=p.author)
    # A reviewer never approves a draft they wrote.
    own = factories.add_member(p.project, "reviewer")
    own_draft = services.rubric_create(
        project=p.project,
        title="Own",
        user=own,
        criteria=[services.clean_criterion("Says hello", 1)],
    ).versions.get()
    services.version_submit(version=own_draft, user=own)
    with pytest.raises(ValidationError, match="another reviewer"):
        services.version_approve(version=own_draft, user=own, role="reviewer")
    grader2 = services.version_approve(version=draft, user=p.reviewer, role="reviewer")
    draft.refresh_from_db()
    assert draft.status == "published" and draft.published_by == p.reviewer
    assert grader2.version == draft
    actions = list(RubricEvent.objects.filter(rubric=rubric).values_list("action", flat=True))
    assert {"submitted", "commented", "comment_resolved", "published"} <= set(actions)


def test_diff_pairs_criteria_across_versions(personas):
    p = personas
    grader = factories.make_published_rubric(
        p.project,
        factories.make_task(p.project),
        [("Keep", 1), ("Change", 2), ("Drop", 3)],
        p.author,
    )
    v1 = grader.version
    v2 = services.draft_for_edit(rubric=v1.rubric, user=p.author)
    services.criterion_update(criterion=v2.criteria.get(text="Change"), text="Changed", points=4)
    services.criterion_delete(criterion=v2.criteria.get(text="Drop"))
    services.criterion_add(
        version=v2,
        text="New",
        points=1,
        kind="checked",
        check_spec={"type": "contains", "value": "x"},
    )
    rows = selectors.version_diff(v1, v2)
    by_status = {r["status"]: r for r in rows}
    assert [r["status"] for r in rows].count("same") == 1
    assert by_status["changed"]["changed"] == ["text", "points"]
    assert by_status["changed"]["left"]["text"] == "Change"
    assert by_status["changed"]["right"]["text"] == "Changed"
    assert by_status["removed"]["left"]["text"] == "Drop"
    assert by_status["added"]["right"]["kind"] == "checked"


def test_history_names_who_changed_what(draft, personas):
    c = services.criterion_add(version=draft, text="A", points=1, user=personas.author)
    services.criterion_update(criterion=c, points=3, user=personas.admin)
    event = RubricEvent.objects.filter(action="criterion_changed").get()
    assert event.user == personas.admin and event.changes == {"points": [1, 3]}
    assert event.criterion_lineage == c.lineage


def test_reference_goes_into_the_spec_only_when_the_rubric_says_so(personas):
    task = services.task_create(
        project=personas.project,
        external_id="ref",
        title="Ref",
        messages="Q?",
        reference="Call 911.",
    )
    rubric = services.rubric_create(
        project=personas.project,
        task=task,
        title="R",
        user=personas.author,
        criteria=[services.clean_criterion("Mentions 911", 1)],
    )
    spec_off = services.version_publish(version=rubric.versions.get(), user=personas.author).spec
    assert spec_off["reference"] == ""
    services.rubric_settings_update(rubric=rubric, include_reference=True, user=personas.author)
    draft = services.draft_for_edit(rubric=rubric, user=personas.author)
    spec_on = services.version_publish(version=draft, user=personas.author).spec
    assert spec_on["reference"] == "Call 911."
    assert "{reference}" in spec_on["judge"]["user_template"]


def test_content_hash_does_not_depend_on_database_ids(personas):
    a = factories.make_published_rubric(
        personas.project,
        factories.make_task(personas.project),
        [("A", 1), ("B", -1)],
        personas.admin,
    )
    b = factories.make_published_rubric(
        personas.project,
        factories.make_task(personas.project),
        [("A", 1), ("B", -1)],
        personas.admin,
    )
    assert a.version.content_hash == b.version.content_hash
    assert compiler.content_hash(list(a.version.criteria.all())) == a.version.content_hash


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("Gives appropriate advice", "vague"),
        ("Lists symptoms, etc.", "vague"),
        ("Mentions aspirin and recommends calling 911 right away", "double_barreled"),
        ("Says the dose is 81 mg", "could_be_checked"),
        ('Uses the phrase "call an ambulance"', "could_be_checked"),
        (" ".join(["word"] * 61), "long"),
    ],
)
def test_lint_flags_each_weakness_with_why_and_how(text, code):
    warnings = lint.lint([lint.Item(0, text, 1.0)])
    found = [w for w in warnings if w.code == code]
    assert found and found[0].message and found[0].fix and found[0].position == 0


def test_lint_rubric_level_warnings():
    items = [
        lint.Item(0, "Advises rest for three days after the injury", 1.0),
        lint.Item(1, "Advises rest for three days after an injury", 1.0),
    ]
    codes = {w.code for w in lint.lint(items)}
    assert {"near_duplicate", "no_pitfalls"} <= codes
    assert "no_positive_points" in {w.code for w in lint.lint([lint.Item(0, "Bad", -1.0)])}
    clean = [
        lint.Item(0, "Advises calling emergency services", 2.0),
        lint.Item(1, "Suggests waiting", -2.0),
    ]
    assert lint.lint(clean) == []


def test_points_are_decimal_and_weights_nonnegative_in_the_database(draft):
    with pytest.raises(IntegrityError), transaction.atomic():
        Criterion.objects.create(version=draft, position=0, text="x", points=Decimal(1), weight=-1)


def _rubric_with(personas, n: int):
    criteria = [
        services.clean_criterion(f"Advises step {i} of the plan", -1 if i % 7 == 0 else 2)
        for i in range(n)
    ]
    rubric = services.rubric_create(
        project=personas.project, title=f"R{n}", user=personas.author, criteria=criteria
    )
    version = rubric.versions.get()
    for c in version.criteria.filter(position__in=[1, 2, n - 1]).order_by("position"):
        services.criterion_indent(criterion=c)
    services.version_submit(version=version, user=personas.author)
    services.comment_add(
        version=version, user=personas.reviewer, body="Split", criterion=version.criteria.first()
    )
    return rubric


@pytest.mark.parametrize("n", [20, 200])
def test_editor_query_count_does_not_grow_with_criteria(
    client, personas, django_assert_num_queries, n
):
    rubric = _rubric_with(personas, n)
    client.force_login(personas.author)
    url = f"/rubrics/{rubric.pk}/"
    # session + user, membership, rubric, versions + graders, criteria, groups, comments +
    # their replies, references: the same for 20 and 200 criteria.
    with django_assert_num_queries(11):
        reply = client.get(url)
    assert reply.status_code == 200
    assert reply.content.decode().count('data-testid="criterion"') == n


def test_a_template_applies_to_many_tasks_and_graders_name_its_version(personas):
    p = personas
    template = services.rubric_create(
        project=p.project,
        title="Clinical safety basics",
        user=p.author,
        is_template=True,
        criteria=[
            services.clean_criterion("Advises seeing a clinician when symptoms worsen", 3),
            services.clean_criterion("Gives a diagnosis with false certainty", -3),
        ],
    )
    tasks = [factories.make_task(p.project, f"tpl-{i}") for i in range(3)]
    early = services.rubric_create(
        project=p.project,
        title="Too early",
        user=p.author,
        task=factories.make_task(p.project, "tpl-early"),
        template=template,
        criteria=[services.clean_criterion("Mentions ice", 1)],
    )
    with pytest.raises(ValidationError, match="no published version"):
        services.version_publish(version=early.versions.get(), user=p.author)
    services.version_publish(version=template.versions.get(), user=p.author)
    applied = services.template_apply(template=template, tasks=tasks, user=p.author)
    assert len(applied) == 3 and all(r.template_id == template.pk for r in applied)
    first = applied[0]
    services.criterion_add(version=first.versions.get(), text="Mentions ice for the knee", points=2)
    grader = services.version_publish(version=first.versions.get(), user=p.author)
    spec = grader.spec
    assert spec["rubric"]["template"]["version"] == 1
    assert spec["rubric"]["template"]["title"] == "Clinical safety basics"
    assert [c["text"] for c in spec["criteria"]] == [
        "Advises seeing a clinician when symptoms worsen",
        "Gives a diagnosis with false certainty",
        "Mentions ice for the knee",
    ]
    assert [c["position"] for c in spec["criteria"]] == [0, 1, 2]
    # A new template version is picked up by the next publish, and named there.
    template_v2 = services.draft_for_edit(rubric=template, user=p.author)
    services.criterion_add(version=template_v2, text="Uses plain language", points=1)
    services.version_publish(version=template_v2, user=p.author)
    second = services.version_publish(
        version=services.draft_for_edit(rubric=applied[1], user=p.author), user=p.author
    )
    assert second.spec["rubric"]["template"]["version"] == 2
    assert len(second.spec["criteria"]) == 3
    # Graded criteria ids point at the template version's (immutable) criteria.
    assert spec["criteria"][0]["id"] in set(
        template.versions.get(number=1).criteria.values_list("pk", flat=True)
    )


def test_switching_a_criterion_to_checked_in_the_editor_starts_from_a_suggestion(
    client, draft, personas
):
    c = services.criterion_add(version=draft, text='Uses the phrase "call 911"', points=2)
    client.force_login(personas.author)
    reply = client.post(
        f"/criteria/{c.pk}/",
        {"text": c.text, "points": "2", "kind": "checked", "kind_now": "binary", "full": "1"},
        HTTP_HX_REQUEST="true",
    )
    assert reply.status_code == 200
    c.refresh_from_db()
    assert c.kind == "checked"
    assert c.check_spec == {"type": "contains", "value": "call 911", "case_sensitive": False}
    assert 'name="check_value" value="call 911"' in reply.content.decode()
    # Then the author edits the check's fields.
    client.post(
        f"/criteria/{c.pk}/",
        {"kind_now": "checked", "check_type": "regex", "check_value": r"\b911\b"},
        HTTP_HX_REQUEST="true",
    )
    c.refresh_from_db()
    assert c.check_spec == {"type": "regex", "pattern": r"\b911\b", "ignore_case": True}


def test_a_stale_autosave_in_the_editor_says_so_and_keeps_the_other_edit(client, draft, personas):
    c = services.criterion_add(version=draft, text="Original", points=1)
    draft.refresh_from_db()
    seen = draft.revision
    services.criterion_update(criterion=c, text="Other author's edit", expected_revision=seen)
    client.force_login(personas.author)
    reply = client.post(
        f"/criteria/{c.pk}/", {"text": "Mine", "revision": seen}, HTTP_HX_REQUEST="true"
    )
    body = reply.content.decode()
    assert "Not saved" in body and "reload" in body
    assert 'id="draft-revision"' not in body  # the page keeps its stale revision: no retry wins
    c.refresh_from_db()
    assert c.text == "Other author's edit"


def test_one_criterion_history_across_versions(client, personas):
    grader = factories.make_published_rubric(
        personas.project, factories.make_task(personas.project), [("Original", 1)], personas.admin
    )
    rubric = grader.version.rubric
    v2 = services.draft_for_edit(rubric=rubric, user=personas.author)
    c = v2.criteria.get()
    services.criterion_update(criterion=c, text="Revised", user=personas.author)
    services.criterion_add(version=v2, text="Unrelated", points=1, user=personas.author)
    client.force_login(personas.annotator)
    reply = client.get(f"/rubrics/{rubric.pk}/history/?criterion={c.lineage}")
    body = reply.content.decode()
    assert "Criterion: <strong>Revised</strong>" in body
    assert "criterion_changed" in body and "criterion_added" not in body
    assert client.get(f"/rubrics/{rubric.pk}/history/?criterion=nope").status_code == 404
