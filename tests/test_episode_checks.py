"""Checked criteria over episodes (rubrics.checks): every check type on real Episode objects,
worked by hand; the plain text response as a one-step episode; validation naming the field."""

from __future__ import annotations

import pytest

from annotation.content.episode import Episode
from rubrics import checks


def call(call_id, name, arguments):
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def turn(*calls, text=""):
    return {"role": "assistant", "content": text, "tool_calls": list(calls)}


def result(call_id, text="ok"):
    return {"role": "tool", "tool_call_id": call_id, "content": text}


# #1 user, #2 lookup A17, #3 result, #4 refund A17, #5 result, #6 email + search, #7, #8,
# #9 the final answer. The careful agent: it looks the order up before refunding.
CAREFUL = Episode.parse(
    {
        "messages": [
            {"role": "user", "content": "Refund order A17, it arrived broken."},
            turn(call("c1", "lookup_order", {"id": "A17", "fields": ["status"]})),
            result("c1", '{"status": "delivered"}'),
            turn(call("c2", "refund", {"id": "A17", "amount": 42.5})),
            result("c2"),
            turn(
                call("c3", "email", {"to": "ann@example.com", "meta": {"tone": "warm"}}),
                call("c4", "search", {"q": "refund policy"}),
            ),
            result("c3"),
            result("c4"),
            {"role": "assistant", "content": "Done: your refund is on its way."},
        ],
        "final_state": {
            "orders": {"A17": {"refunded": True, "total": 42.5, "notes": "refund issued"}},
            "outbox": ["ann@example.com"],
            "log": [{"event": "refund", "id": "A17"}],
        },
    }
)

# The hasty agent: refunds at #2, looks the order up only at #4; no final state.
HASTY = Episode.parse(
    [
        {"role": "user", "content": "Refund order A17."},
        turn(call("h1", "refund", {"id": "A17"})),
        result("h1"),
        turn(call("h2", "lookup_order", {"id": "A17"})),
        result("h2"),
        turn(call("h3", "refund", {"id": "B2"})),
        result("h3"),
        {"role": "assistant", "content": "Refunded."},
    ]
)


def run(check: dict, episode=None, text: str = "") -> tuple[bool, str]:
    return checks.evaluate(checks.validate(check), text, episode)


# --- tool_called / tool_not_called --------------------------------------------------------


def test_tool_called_names_where_it_was_called():
    assert run({"type": "tool_called", "tool": "refund"}, CAREFUL) == (
        True,
        "refund called at #4.",
    )
    assert run({"type": "tool_called", "tool": "cancel"}, CAREFUL) == (
        False,
        "cancel never called.",
    )


def test_tool_called_with_a_condition_on_its_arguments():
    where = {"type": "tool_called", "tool": "refund", "where": {"path": "id", "equals": "B2"}}
    assert run(where, HASTY) == (True, 'refund with id = "B2" called at #6.')
    assert run(where, CAREFUL) == (False, 'refund called 1 time(s), id was "A17".')
    nested = {"tool": "email", "where": {"path": "meta.tone", "equals": "warm"}}
    assert run({"type": "tool_called", **nested}, CAREFUL)[0] is True
    listed = {"tool": "lookup_order", "where": {"path": "fields.0", "equals": "status"}}
    assert run({"type": "tool_called", **listed}, CAREFUL)[0] is True
    # JSON equality: the number 42.5 is not the text "42.5", and true is not 1.
    text = {"tool": "refund", "where": {"path": "amount", "equals": "42.5"}}
    assert run({"type": "tool_called", **text}, CAREFUL)[0] is False
    number = {"tool": "refund", "where": {"path": "amount", "equals": 42.5}}
    assert run({"type": "tool_called", **number}, CAREFUL)[0] is True


def test_tool_not_called():
    assert run({"type": "tool_not_called", "tool": "cancel"}, CAREFUL) == (
        True,
        "cancel never called.",
    )
    assert run({"type": "tool_not_called", "tool": "refund"}, HASTY) == (
        False,
        "refund called at #2, #6.",
    )
    only_b2 = {"type": "tool_not_called", "tool": "refund", "where": {"path": "id", "equals": "B2"}}
    assert run(only_b2, CAREFUL) == (True, 'refund called 1 time(s), id was "A17".')
    assert run(only_b2, HASTY) == (False, 'refund with id = "B2" called at #6.')


# --- tool_order ---------------------------------------------------------------------------


def test_tool_order_met_when_every_then_follows_a_first():
    order = {"type": "tool_order", "first": "lookup_order", "then": "refund"}
    assert run(order, CAREFUL) == (True, "lookup_order at #2, then refund at #4.")
    assert run(order, HASTY) == (
        False,
        "refund called at #2 before any lookup_order (first at #4).",
    )


def test_tool_order_when_a_tool_is_missing():
    assert run({"type": "tool_order", "first": "lookup_order", "then": "cancel"}, CAREFUL) == (
        True,
        "cancel never called.",
    )
    assert run({"type": "tool_order", "first": "verify", "then": "refund"}, CAREFUL) == (
        False,
        "refund called at #4 before any verify; verify never called.",
    )


def test_tool_order_within_one_turn_follows_the_calls_order():
    same_turn = Episode.parse(
        [
            {"role": "user", "content": "go"},
            turn(call("a", "search", {}), call("b", "email", {})),
            result("a"),
            result("b"),
            {"role": "assistant", "content": "done"},
        ]
    )
    assert run({"type": "tool_order", "first": "search", "then": "email"}, same_turn)[0] is True
    assert run({"type": "tool_order", "first": "email", "then": "search"}, same_turn) == (
        False,
        "search called at #2 before any email (first at #2).",
    )


# --- bounds -------------------------------------------------------------------------------


def test_max_calls_of_one_tool_and_of_all():
    assert run({"type": "max_calls", "tool": "refund", "max": 1}, HASTY) == (
        False,
        "2 refund calls; at most 1 allowed.",
    )
    assert run({"type": "max_calls", "tool": "refund", "max": 2}, HASTY)[0] is True
    assert run({"type": "max_calls", "tool": "", "max": 4}, CAREFUL) == (
        True,
        "4 tool calls; at most 4 allowed.",
    )
    assert run({"type": "max_calls", "max": 3}, CAREFUL)[0] is False


def test_max_steps_counts_assistant_turns():
    assert run({"type": "max_steps", "max": 4}, CAREFUL) == (
        True,
        "4 steps; at most 4 allowed.",
    )
    assert run({"type": "max_steps", "max": 3}, CAREFUL) == (
        False,
        "4 steps; at most 3 allowed.",
    )


# --- final_state --------------------------------------------------------------------------


def test_final_state_equals():
    refunded = {"type": "final_state", "path": "orders.A17.refunded", "equals": True}
    assert run(refunded, CAREFUL) == (True, "'orders.A17.refunded' is true.")
    assert run({**refunded, "equals": 1}, CAREFUL)[0] is False  # true is not 1
    assert run({**refunded, "path": "log.0.event", "equals": "refund"}, CAREFUL)[0] is True
    assert run({**refunded, "path": "orders.B2.refunded"}, CAREFUL) == (
        False,
        "No field at 'orders.B2.refunded' in the final state.",
    )


def test_final_state_contains_text_item_or_key():
    def contains(path, value):
        return run({"type": "final_state", "path": path, "contains": value}, CAREFUL)[0]

    assert contains("orders.A17.notes", "refund") is True  # text within text
    assert contains("orders.A17.notes", "cancel") is False
    assert contains("outbox", "ann@example.com") is True  # item in a list
    assert contains("outbox", "ann") is False  # items are whole, not substrings
    assert contains("orders", "A17") is True  # key of an object
    assert contains("orders", "B2") is False
    assert contains("orders.A17.total", "42") is False  # a number contains nothing


def test_final_state_within_tolerance():
    total = {"type": "final_state", "path": "orders.A17.total", "value": 42.0, "tolerance": 0.5}
    assert run(total, CAREFUL) == (True, "'orders.A17.total' is 42.5, within 0.5 of 42.")
    assert run({**total, "tolerance": 0.4}, CAREFUL) == (
        False,
        "'orders.A17.total' is 42.5, not within 0.4 of 42.",
    )
    assert run({**total, "path": "orders.A17.notes"}, CAREFUL) == (
        False,
        "'orders.A17.notes' is \"refund issued\", not a number.",
    )


def test_final_state_absent_is_unmet():
    check = {"type": "final_state", "path": "orders", "contains": "A17"}
    assert run(check, HASTY) == (False, "No final state in the response.")
    assert run(check, None, "plain text") == (False, "No final state in the response.")


# --- a plain text response ------------------------------------------------------------------


@pytest.mark.parametrize("episode", [None, Episode.from_text("Refund issued.")])
def test_a_plain_text_response_is_one_step_with_no_calls(episode):
    text = "Refund issued."
    assert run({"type": "tool_called", "tool": "refund"}, episode, text) == (
        False,
        "refund never called (no tool calls in the response).",
    )
    assert run({"type": "tool_not_called", "tool": "refund"}, episode, text)[0] is True
    assert run({"type": "tool_order", "first": "a", "then": "b"}, episode, text)[0] is True
    assert run({"type": "max_calls", "max": 0}, episode, text)[0] is True
    assert run({"type": "max_steps", "max": 1}, episode, text) == (
        True,
        "1 step; at most 1 allowed.",
    )


def test_text_checks_still_read_the_final_text_beside_an_episode():
    assert run({"type": "contains", "value": "on its way"}, CAREFUL, CAREFUL.final_text)[0]


# --- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("check", "field"),
    [
        ({"type": "tool_called"}, "check.tool"),
        ({"type": "tool_called", "tool": "  "}, "check.tool"),
        ({"type": "tool_called", "tool": "x" * 201}, "check.tool"),
        ({"type": "tool_not_called", "tool": "refund", "where": "id=A17"}, "check.where"),
        ({"type": "tool_called", "tool": "refund", "where": {"equals": 1}}, "check.where.path"),
        ({"type": "tool_called", "tool": "refund", "where": {"path": "id"}}, "check.where.equals"),
        ({"type": "tool_order", "then": "refund"}, "check.first"),
        ({"type": "tool_order", "first": "lookup_order"}, "check.then"),
        ({"type": "tool_order", "first": "refund", "then": "refund"}, "check.then"),
        ({"type": "max_calls", "tool": "search"}, "check.max"),
        ({"type": "max_calls", "tool": "search", "max": -1}, "check.max"),
        ({"type": "max_calls", "tool": "search", "max": 2.5}, "check.max"),
        ({"type": "max_calls", "tool": "search", "max": True}, "check.max"),
        ({"type": "max_steps", "max": 0}, "check.max"),
        ({"type": "final_state", "equals": 1}, "check.path"),
        ({"type": "final_state", "path": "a"}, "check.equals"),
        ({"type": "final_state", "path": "a", "equals": 1, "contains": 1}, "check.equals"),
        ({"type": "final_state", "path": "a", "value": "six"}, "check.value"),
        ({"type": "final_state", "path": "a", "value": 6, "tolerance": -1}, "check.tolerance"),
        ({"type": "final_state", "path": "a", "value": "nan"}, "check.value"),
    ],
)
def test_validation_names_the_field(check, field):
    with pytest.raises(checks.CheckError) as caught:
        checks.validate(check)
    assert caught.value.field == field


def test_validation_normalises():
    assert checks.validate({"type": "max_calls", "tool": " search ", "max": "5"}) == {
        "type": "max_calls",
        "tool": "search",
        "max": 5,
    }
    assert checks.validate({"type": "tool_called", "tool": "refund", "where": {}}) == {
        "type": "tool_called",
        "tool": "refund",
    }
    assert checks.validate(
        {"type": "final_state", "path": " total ", "value": "6.2", "tolerance": "0.05"}
    ) == {"type": "final_state", "path": "total", "value": 6.2, "tolerance": 0.05}
