"""The content model (annotation.content): validation names the message and field, episodes
round-trip through their stored shape, steps, and the judge's budget."""

from __future__ import annotations

import json

import pytest

from annotation.content import render
from annotation.content.episode import ContentError, Episode


def call(call_id, name, arguments):
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


REFUND = [
    {"role": "user", "content": "Refund order A17, it arrived broken."},
    {
        "role": "assistant",
        "content": "Let me look it up.",
        "tool_calls": [call("c1", "lookup_order", '{"id": "A17"}')],
    },
    {"role": "tool", "tool_call_id": "c1", "content": '{"status": "delivered"}'},
    {"role": "assistant", "content": "", "tool_calls": [call("c2", "refund", {"id": "A17"})]},
    {"role": "tool", "tool_call_id": "c2", "content": "ok"},
    {"role": "assistant", "content": "Done: your refund is on its way."},
]


@pytest.mark.parametrize(
    ("messages", "field", "words"),
    [
        ([{"role": "robot", "content": "hi"}], "messages[0].role", "unknown role 'robot'"),
        (
            [
                {"role": "assistant", "content": "x", "tool_calls": [call("c1", "f", "{oops")]},
            ],
            "messages[0].tool_calls[0].function.arguments",
            "not valid JSON",
        ),
        (
            [
                {"role": "assistant", "content": "x", "tool_calls": [call("c1", "f", "[1, 2]")]},
            ],
            "messages[0].tool_calls[0].function.arguments",
            "must be a JSON object",
        ),
        (
            [{"role": "assistant", "content": "a"}, {"role": "tool", "tool_call_id": "zz"}],
            "messages[1].tool_call_id",
            "no earlier assistant tool call has id 'zz'",
        ),
        (
            [{"role": "user", "content": [{"type": "video", "url": "x"}]}],
            "messages[0].content[0].type",
            "unknown part type 'video'",
        ),
        ([{"role": "user", "content": "only a question"}], "messages", "at least one assistant"),
        (
            [{"role": "assistant", "content": "a", "colour": "red"}],
            "messages[0].colour",
            "unknown field",
        ),
    ],
)
def test_bad_episodes_name_the_message_and_field(messages, field, words):
    with pytest.raises(ContentError) as caught:
        Episode.parse(messages)
    assert caught.value.field == field
    assert words in str(caught.value)


def test_a_call_answered_twice_is_refused():
    messages = [*REFUND[:3], {"role": "tool", "tool_call_id": "c1", "content": "again"}]
    with pytest.raises(ContentError, match="answered twice"):
        Episode.parse(messages)


def test_round_trip_through_the_stored_shape():
    episode = Episode.parse(
        {"messages": REFUND, "final_state": {"A17": {"refunded": True}}, "metadata": {"steps": 3}}
    )
    stored = episode.stored()
    assert json.loads(json.dumps(stored)) == stored
    again = Episode.parse(stored)
    assert again == episode
    # OpenAI's shape: arguments as a JSON string.
    assert stored["messages"][3]["tool_calls"][0]["function"]["arguments"] == '{"id": "A17"}'
    assert episode.final_text == "Done: your refund is on its way."
    assert episode.steps() == [1, 3, 5]
    assert episode.steps(tool="refund") == [3]
    assert [c.name for _, c in episode.tool_calls()] == ["lookup_order", "refund"]
    assert episode.messages[2].name == "lookup_order"  # a tool output takes its call's name


def test_text_is_the_one_message_case():
    episode = Episode.from_text("Call 911 now.")
    assert episode.is_text and episode.stored() is None
    assert episode.final_text == "Call 911 now."
    assert Episode.load(None, "Call 911 now.") == episode
    assert not Episode.parse(REFUND).is_text


def test_the_judge_reads_a_compact_transcript():
    rendered = render.for_judge(Episode.parse({"messages": REFUND, "final_state": {"a": 1}}))
    assert rendered.note == ""
    lines = rendered.text.splitlines()
    assert lines[0] == "#1 user: Refund order A17, it arrived broken."
    assert '   calls lookup_order (c1) {"id": "A17"}' in lines
    assert '#3 tool lookup_order (c1): {"status": "delivered"}' in lines
    assert lines[-2:] == ["FINAL STATE:", '{"a": 1}']
    step = render.for_judge_step(Episode.parse(REFUND), 3)
    assert step.text.splitlines()[-1].startswith("   calls refund (c2)")
    assert "Done" not in step.text


def test_long_episodes_keep_head_and_tail_and_say_what_was_elided():
    messages = [{"role": "user", "content": "Plan the trip."}]
    for i in range(60):
        messages.append(
            {
                "role": "assistant",
                "content": f"step {i}",
                "tool_calls": [call(f"c{i}", "search", {"q": i})],
            }
        )
        messages.append({"role": "tool", "tool_call_id": f"c{i}", "content": "x" * 3_000})
    messages.append({"role": "assistant", "content": "Booked."})
    episode = Episode.parse(messages)
    rendered = render.for_judge(episode, budget=12_000)
    assert len(rendered.text) <= 12_000 + 500
    assert rendered.text.startswith("#1 user: Plan the trip.")
    assert rendered.text.rstrip().endswith("#122 assistant: Booked.")
    assert rendered.elided_messages > 0
    assert rendered.elided_steps + rendered.elided_tool_outputs == rendered.elided_messages
    assert f"[... {rendered.elided_messages} messages elided" in rendered.text
    assert "tool outputs" in rendered.note and "characters cut" in rendered.text
    assert rendered.cut_parts == 60  # every 3,000-character output is over the 2,000 cap
    full = render.for_judge(episode, budget=10**9)
    assert full.elided_messages == 0 and len(full.text) > len(rendered.text)


@pytest.mark.parametrize("budget", [2_000, 12_000, 10**9])
def test_a_transcript_renders_each_step_as_the_episode_up_to_it(budget):
    """render.Transcript makes each message's block once for every step's rendering: each
    step (asked for in any order) reads exactly as the episode cut at that step rendered on
    its own, elided middle, counts and cut parts included."""
    messages = [{"role": "user", "content": "Plan the trip."}]
    for i in range(30):
        messages.append(
            {
                "role": "assistant",
                "content": f"step {i} " + "y" * (i * 200),
                "tool_calls": [call(f"c{i}", "search", {"q": i})],
            }
        )
        messages.append({"role": "tool", "tool_call_id": f"c{i}", "content": "x" * (i * 100)})
    messages.append({"role": "assistant", "content": "Booked."})
    episode = Episode.parse({"messages": messages, "final_state": {"booked": True}})
    transcript = render.Transcript(episode)
    steps = episode.steps()
    for step in [steps[-1], *steps]:  # the last first: its blocks are then all made
        alone = render.for_judge(episode.upto(step), budget=budget)
        shared = transcript.upto(step, budget=budget)
        assert shared == alone
        assert "FINAL STATE" not in shared.text
    assert transcript.whole(budget=budget) == render.for_judge(episode, budget=budget)
    if budget == 2_000:
        assert transcript.upto(steps[-1], budget=budget).elided_messages > 0
