"""The trajectory view (annotation/_trajectory.html fed by render.for_page): numbered messages,
tool calls with pretty arguments and their outputs matched by call id, long parts collapsed,
metadata filtered for blind viewers, and every untrusted field inert."""

from __future__ import annotations

import html
import json
import re
from types import SimpleNamespace

from django.template.loader import render_to_string
from django.urls import reverse

from annotation.content import render
from annotation.content.episode import Episode
from annotation.models import Response, Verdict
from rubrics import services as rubric_services
from tests import factories
from tests.test_xss import html_problems
from tests.xss_payloads import ALL, PAYLOADS, RAW_MARKUP

LONG = "The order history, line by line. " * 40  # > PAGE_COLLAPSE_CHARS


def refund_episode(**extra) -> Episode:
    return Episode.parse(
        {
            "messages": [
                {"role": "user", "content": "Refund order A17, it arrived broken."},
                {
                    "role": "assistant",
                    "content": "Let me look it up.",
                    "reasoning": "Check the order before refunding.",
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "lookup_order", "arguments": '{"id": "A17"}'},
                        },
                        {
                            "id": "c2",
                            "type": "function",
                            "function": {
                                "name": "lookup_customer",
                                "arguments": {"email": "ann@example.com", "fields": ["name"]},
                            },
                        },
                    ],
                },
                # The outputs come back in the other order: matched by id, not by position.
                {"role": "tool", "tool_call_id": "c2", "content": '{"name": "Ann"}'},
                {"role": "tool", "tool_call_id": "c1", "content": LONG},
                {"role": "assistant", "content": "**Done**: your refund is on its way."},
            ],
            "final_state": {"orders": {"A17": {"refunded": True}}},
            "metadata": {"steps": 2, "tokens": 812, "wall_time_s": 4.1, **extra},
        }
    )


def page_of(episode: Episode, **kwargs) -> str:
    kwargs.setdefault("blind", False)
    return render_to_string(
        "annotation/_trajectory.html", {"trajectory": render.for_page(episode, **kwargs)}
    )


def blocks(page: str, testid: str) -> list[str]:
    """The unescaped text of each <pre> with this test id."""
    found = re.findall(rf'<pre[^>]*data-testid="{testid}">(.*?)</pre>', page, re.DOTALL)
    return [html.unescape(b) for b in found]


def call_blocks(page: str) -> dict[str, str]:
    found = re.findall(r'data-testid="tool-call" data-call="([^"]+)">(.*?)</div>', page, re.DOTALL)
    return dict(found)


def test_messages_are_numbered_with_their_roles_and_markdown():
    page = page_of(refund_episode())
    labels = re.findall(r'data-testid="message-label">([^<]+)<', page)
    assert labels == ["#1", "#2", "#3", "#4", "#5"]
    assert "<strong>Done</strong>: your refund is on its way." in page  # Markdown, sanitized
    assert "2 steps · 2 tool calls" in page
    # The reasoning is there, collapsed.
    assert re.search(r'<details class="traj-reasoning"[^>]*><summary>reasoning', page)
    assert "Check the order before refunding." in page


def test_tool_arguments_are_pretty_json_and_outputs_match_their_call_ids():
    page = page_of(refund_episode())
    arguments = blocks(page, "tool-arguments")
    assert arguments[0] == '{\n  "id": "A17"\n}'
    assert json.loads(arguments[1]) == {"email": "ann@example.com", "fields": ["name"]}
    assert '\n  "fields": [\n    "name"\n  ]' in arguments[1]
    calls = call_blocks(page)
    assert set(calls) == {"c1", "c2"}
    assert "lookup_order" in calls["c1"] and "The order history" in calls["c1"]
    assert "lookup_customer" in calls["c2"] and "&quot;name&quot;: &quot;Ann&quot;" in calls["c2"]
    assert "The order history" not in calls["c2"] and "Ann" not in calls["c1"]
    # The tool messages keep their numbers and point at the call they answer.
    assert "output of call <code>c2</code>, shown with #2" in page
    # The final state, pretty.
    assert json.loads(
        html.unescape(
            re.search(
                r'<pre class="json">(.*?)</pre>',
                page.split('data-testid="final-state"')[1],
                re.DOTALL,
            ).group(1)
        )
    ) == {"orders": {"A17": {"refunded": True}}}


def test_a_call_without_an_output_says_so():
    episode = Episode.parse(
        [
            {"role": "user", "content": "Go"},
            {
                "role": "assistant",
                "tool_calls": [{"id": "x", "function": {"name": "search", "arguments": {}}}],
            },
        ]
    )
    page = page_of(episode)
    assert 'data-testid="tool-output-missing"' in page
    assert 'data-testid="final-state"' not in page  # none kept


def test_long_parts_start_collapsed_and_short_ones_do_not():
    long_args = {"query": "x" * 700}
    episode = Episode.parse(
        {
            "messages": [
                {"role": "user", "content": LONG},
                {
                    "role": "assistant",
                    "content": "Short.",
                    "tool_calls": [
                        {"id": "a", "function": {"name": "search", "arguments": long_args}},
                        {"id": "b", "function": {"name": "search", "arguments": {"q": 1}}},
                    ],
                },
                {"role": "tool", "tool_call_id": "a", "content": LONG},
                {"role": "tool", "tool_call_id": "b", "content": "three hits"},
                {"role": "assistant", "content": "Found it."},
            ],
            "final_state": {"rows": list(range(400))},
        }
    )
    page = page_of(episode)
    collapsed = re.findall(
        r'<details class="traj-long" data-testid="collapsed">(.*?)</details>', page, re.DOTALL
    )
    # The long user message, the long arguments, the long output and the final state.
    assert len(collapsed) == 4
    assert any(LONG.strip()[:40] in html.unescape(c) for c in collapsed)
    assert any('"query"' in html.unescape(c) for c in collapsed)
    assert any("rows" in html.unescape(c) for c in collapsed)
    calls = call_blocks(page)
    assert "<details" not in calls["b"] and "three hits" in calls["b"]
    assert "<details" in calls["a"]
    last = page.split('data-index="4"')[1].split('data-testid="final-state"')[0]
    assert "<details" not in last and "Found it." in last  # short: open


def test_blind_viewers_see_no_metadata_that_could_name_a_model():
    episode = refund_episode(model="openai/gpt-secret", provider="Acme", agent="refund-bot-7")
    seen = page_of(episode)
    blind = page_of(episode, blind=True)
    for name in ("gpt-secret", "Acme", "refund-bot-7"):
        assert name in seen
        assert name not in blind
    assert "tokens 812" in blind and "wall time 4.1 s" in blind
    # Blind unless a page says otherwise: a page that forgets shows less, never more.
    assert set(render.for_page(episode)["metadata"]) == {"steps", "tokens", "wall_time_s"}


def test_step_verdicts_sit_beside_their_steps():
    verdicts = [
        SimpleNamespace(
            step=1,
            outcome="met",
            get_outcome_display="Met",
            explanation="Checked first.",
            step_label="criterion 2",
            error="",
            evidence="",
            simulated=False,
        ),
        SimpleNamespace(
            step=4,
            outcome="unmet",
            get_outcome_display="Not met",
            explanation="No apology.",
            step_label="criterion 2",
            error="",
            evidence="Done",
            simulated=True,
        ),
    ]
    page = page_of(refund_episode(), step_verdicts=verdicts)
    rows = re.split(r'<li class="msg ', page)[1:]
    assert 'data-outcome="met"' in rows[1] and "Checked first." in rows[1]
    assert 'data-outcome="unmet"' in rows[4] and "No apology." in rows[4]
    assert "step-verdict" not in rows[0] + rows[2] + rows[3]


def test_payloads_in_every_field_are_escaped():
    payload_keys = {f"k{n}": p for n, p in PAYLOADS}
    episode = Episode.parse(
        {
            "messages": [
                {"role": "system", "content": ALL},
                {"role": "user", "content": ALL},
                {
                    "role": "assistant",
                    "content": ALL,
                    "reasoning": ALL,
                    "tool_calls": [
                        {
                            "id": p[:60],
                            "function": {"name": p[:60], "arguments": {p: p, "all": ALL}},
                        }
                        for _, p in PAYLOADS
                    ],
                },
                *(
                    {"role": "tool", "tool_call_id": p[:60], "content": ALL + p}
                    for _, p in PAYLOADS
                ),
                {"role": "assistant", "content": "short " + PAYLOADS[1][1]},
            ],
            "final_state": {"notes": ALL, **payload_keys},
            "metadata": {"tokens": 3, "agent": ALL},
        }
    )
    verdicts = [
        SimpleNamespace(
            step=2,
            outcome="met",
            get_outcome_display="Met",
            explanation=ALL,
            step_label=ALL,
            error="",
            evidence=ALL,
            simulated=False,
        )
    ]
    page = page_of(episode, step_verdicts=verdicts)
    assert html_problems(page) == []
    assert not [p for p in RAW_MARKUP if p in page]
    # Escaped, not dropped: each payload is still readable as text in a tool output.
    outputs = blocks(page, "tool-output")
    assert all(any(p in out for out in outputs) for _, p in PAYLOADS)


# --- On pages: score, response, adjudication ------------------------------------------------


def long_episode(steps: int, *, agent: str = "refund-bot", long_at: int = -1) -> Episode:
    """A user turn, then `steps` assistant turns each calling lookup_order and reading its
    output (the output of call `long_at` is long), then a closing answer (steps + 1 steps
    in all)."""
    messages: list[dict] = [{"role": "user", "content": "Refund order A17, it arrived broken."}]
    for i in range(steps):
        messages.append(
            {
                "role": "assistant",
                "content": f"Checking page {i}.",
                "tool_calls": [
                    {"id": f"c{i}", "function": {"name": "lookup_order", "arguments": {"page": i}}}
                ],
            }
        )
        output = f"page {i}: ok" + (LONG if i == long_at else "")
        messages.append({"role": "tool", "tool_call_id": f"c{i}", "content": output})
    messages.append({"role": "assistant", "content": "Refund issued for **A17**."})
    return Episode.parse(
        {
            "messages": messages,
            "final_state": {"orders": {"A17": {"refunded": True}}},
            "metadata": {"steps": steps + 1, "tokens": 900, "model": agent},
        }
    )


def graded_world(personas, episode: Episode | None, *, text: str = "Plain answer."):
    """A run over one response (the episode, or a plain text) with a step criterion
    ("all" rule) and an outcome criterion; per-step verdicts on every step, unmet at the
    second step. Verdicts and the score are written directly, as a run would."""
    from grading.models import Score
    from rubrics.models import Criterion

    p = personas
    task = factories.make_task(p.project, f"refund-{len(episode.messages) if episode else 0}")
    rubric = rubric_services.rubric_create(
        project=p.project,
        task=task,
        title="Refund rubric",
        user=p.admin,
        criteria=[
            rubric_services.CriterionInput(text="Checks the order before refunding", points=3),
            rubric_services.CriterionInput(text="Apologises", points=1),
        ],
    )
    draft = rubric.versions.get()
    step_c, outcome_c = draft.criteria.order_by("position")
    Criterion.objects.filter(pk=step_c.pk).update(scope="step", step_rule="all")
    grader = rubric_services.version_publish(version=draft, user=p.admin)
    step_c.refresh_from_db()
    response = Response.objects.create(
        task=task,
        model="secret-model-x",
        text=episode.final_text if episode else text,
        content=episode.stored() if episode else None,
    )
    judge = factories.make_judge(p.project, "http://127.0.0.1:9/v1", name=f"sim {task.pk}")
    run = factories.make_run(
        project=p.project, grader=grader, judge=judge, total_items=1, status="completed"
    )
    common = {"run": run, "rater_id": judge.rater_id, "grader": grader, "response": response}
    steps = episode.steps() if episode else []
    Verdict.objects.bulk_create(
        Verdict(
            **common,
            criterion=step_c,
            step=s,
            outcome="unmet" if k == 1 else "met",
            explanation=f"step verdict {k}",
        )
        for k, s in enumerate(steps)
    )
    Verdict.objects.create(
        **common, criterion=step_c, outcome="unmet" if steps else "met", explanation="rule"
    )
    Verdict.objects.create(**common, criterion=outcome_c, outcome="met", explanation="sorry")
    score = Score.objects.create(
        run=run,
        response=response,
        grader=grader,
        status="done",
        raw=0.25,
        met_points=1,
        possible_points=4,
    )
    return run, score, response, grader, step_c


def step_rows(page: str) -> dict[int, str]:
    """The HTML of each trajectory message, by message index."""
    parts = re.split(r'data-testid="trajectory-message" data-index="(\d+)"', page)[1:]
    return {int(parts[i]): parts[i + 1] for i in range(0, len(parts), 2)}


def test_score_page_shows_steps_with_their_verdicts_and_the_rule_in_words(client, personas):
    episode = long_episode(3)
    run, score, response, grader, step_c = graded_world(personas, episode)
    client.force_login(personas.engineer)
    page = client.get(reverse("score", args=[run.pk, score.pk])).content.decode()
    assert 'data-testid="trajectory"' in page
    rows = step_rows(page)
    steps = episode.steps()
    assert steps == [1, 3, 5, 7]
    for k, s in enumerate(steps):
        assert rows[s].count('data-testid="step-verdict"') == 1
        assert f"step verdict {k}" in rows[s]
        assert ('data-outcome="unmet"' in rows[s]) == (k == 1)
        assert "criterion 1: Checks the order before refunding" in rows[s]
    assert all("step-verdict" not in rows[i] for i in rows if i not in steps)
    # The per-response verdict says the rule, and how many steps were met.
    assert "Met when met at every step" in page
    assert re.search(r'data-testid="steps-met">3 of 4 steps met<', page)
    # Engineers see the metadata as it came, model included.
    assert "refund-bot" in page


def test_a_plain_text_response_shows_as_before(client, personas):
    run, score, *_ = graded_world(personas, None, text="Just **text**.")
    client.force_login(personas.engineer)
    page = client.get(reverse("score", args=[run.pk, score.pk])).content.decode()
    assert 'data-testid="trajectory"' not in page
    assert '<div class="md scroll"><p>Just <strong>text</strong>.</p>' in page


def test_score_page_queries_do_not_grow_with_steps(client, personas, django_assert_max_num_queries):
    small = graded_world(personas, long_episode(2))
    big = graded_world(personas, long_episode(40))
    client.force_login(personas.engineer)
    client.get(reverse("score", args=[small[0].pk, small[1].pk]))  # session and caches warm
    counts = []
    for (run, score, *_), steps in ((small, 3), (big, 41)):
        with django_assert_max_num_queries(50) as captured:
            page = client.get(reverse("score", args=[run.pk, score.pk])).content.decode()
        assert page.count('data-testid="step-verdict"') == steps
        counts.append(len(captured.captured_queries))
    assert counts[0] == counts[1], counts


def test_response_page_shows_the_trajectory(client, personas):
    _, _, response, *_ = graded_world(personas, long_episode(2))
    client.force_login(personas.author)
    page = client.get(reverse("response", args=[response.pk])).content.decode()
    assert 'data-testid="trajectory"' in page and "Refund issued for <strong>A17</strong>." in page
    assert "step-verdict" not in page


def test_adjudication_shows_every_raters_step_verdicts_beside_the_steps(client, personas):
    episode = long_episode(2)
    run, score, response, grader, step_c = graded_world(personas, episode)
    client.force_login(personas.reviewer)
    url = reverse("adjudicate", args=[grader.version_id, response.pk, step_c.pk])
    page = client.get(url).content.decode()
    assert 'data-testid="trajectory"' in page
    rows = step_rows(page)
    label = f"Judge {run.judge.name} · run #{run.pk}"
    for s in episode.steps():
        assert rows[s].count('data-testid="step-verdict"') == 1 and label in rows[s]
    # The side-by-side verdicts are the per-response ones only, with the rule in words.
    assert page.count('data-testid="rater"') == 1
    assert "Met when met at every step" in page
    # The outcome criterion's dispute shows the trajectory without step verdicts.
    other = grader.version.criteria.exclude(pk=step_c.pk).get()
    page = client.get(
        reverse("adjudicate", args=[grader.version_id, response.pk, other.pk])
    ).content.decode()
    assert 'data-testid="trajectory"' in page and "step-verdict" not in page
