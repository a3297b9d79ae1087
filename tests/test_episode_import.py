"""Episodes in: response rows with `messages` (JSONL, Parquet), inspect-ai eval logs and
OpenTelemetry GenAI spans, each validated by the content model, all or nothing."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from annotation import services
from annotation.content.episode import Episode
from annotation.models import Response
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def project(personas):
    for external_id in ("t1", "t2"):
        factories.make_task(personas.project, external_id)
    return personas.project


def refund_messages(order: str = "A17") -> list[dict]:
    return [
        {"role": "user", "content": f"Refund order {order}, it arrived broken."},
        {
            "role": "assistant",
            "content": "Let me look it up.",
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "lookup_order", "arguments": json.dumps({"id": order})},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": '{"status": "delivered"}'},
        {"role": "assistant", "content": "Done: your refund is on its way."},
    ]


def episode_row(i: int, **more) -> dict:
    return {
        "task_id": "t1",
        "model": "agent",
        "messages": refund_messages(f"A{i}"),
        "final_state": {"orders": {f"A{i}": {"refunded": True, "note": None}}},
        "sample_index": i,
        "metadata": {"tokens": 812, "temperature": 0.2},
        **more,
    }


def lines_of(items: list[dict]) -> list[bytes]:
    return [json.dumps(item).encode() + b"\n" for item in items]


def test_episode_rows_import_with_their_final_answer_and_twice_adds_nothing(project):
    items = [episode_row(i) for i in range(3)] + [
        {"task_id": "t2", "model": "agent", "response": "plain text"}
    ]
    first = services.responses_import_jsonl(project=project, lines=lines_of(items))
    assert (first.ok, first.created) == (True, 4), first.errors
    stored = Response.objects.get(task__external_id="t1", sample_index=1)
    assert stored.text == "Done: your refund is on its way."
    expected = Episode.parse(
        {"messages": refund_messages("A1"), "final_state": items[1]["final_state"]},
        metadata={"tokens": 812},
    )
    assert stored.content == expected.stored() == expected.as_json()
    assert stored.episode == expected
    assert stored.metadata == {"tokens": 812, "temperature": 0.2}
    assert [c.arguments for _, c in stored.episode.tool_calls()] == [{"id": "A1"}]
    assert Response.objects.get(task__external_id="t2").content is None

    again = services.responses_import_jsonl(project=project, lines=lines_of(items))
    assert (again.ok, again.created, again.already_present) == (True, 0, 4)


def test_a_differing_episode_is_refused_like_a_differing_text(project):
    services.responses_import_jsonl(project=project, lines=lines_of([episode_row(0)]))
    changed = episode_row(0)
    changed["final_state"]["orders"]["A0"]["refunded"] = False  # same final text
    result = services.responses_import_jsonl(project=project, lines=lines_of([changed]))
    assert [(e.line, e.field) for e in result.errors] == [(1, "messages")]
    assert "immutable" in result.errors[0].message
    as_text = {"task_id": "t1", "model": "agent", "response": "Done: your refund is on its way."}
    result = services.responses_import_jsonl(project=project, lines=lines_of([as_text]))
    assert [(e.line, e.field) for e in result.errors] == [(1, "response")]
    assert Response.objects.count() == 1


def test_a_bad_episode_names_line_and_field_path_and_nothing_is_imported(project):
    bad_arguments = episode_row(3)
    bad_arguments["messages"][1]["tool_calls"][0]["function"]["arguments"] = "{id: A3"
    orphan = episode_row(4)
    orphan["messages"][2]["tool_call_id"] = "nope"
    items = [
        episode_row(0),
        {**episode_row(1), "response": "both"},
        {"task_id": "t1", "model": "agent", "final_state": {}, "response": "x", "sample_index": 2},
        bad_arguments,
        orphan,
        {**episode_row(5), "messages": [{"role": "robot", "content": "hi"}]},
        {**episode_row(6), "metadata": {"tokens": -1}},
    ]
    result = services.responses_import_jsonl(project=project, lines=lines_of(items))
    assert [(e.line, e.field) for e in result.errors] == [
        (2, "messages"),
        (3, "final_state"),
        (4, "messages[1].tool_calls[0].function.arguments"),
        (5, "messages[2].tool_call_id"),
        (6, "messages[0].role"),
        (7, "metadata.tokens"),
    ]
    assert str(result.errors[2]).startswith(
        "line 4, field 'messages[1].tool_calls[0].function.arguments': not valid JSON"
    )
    assert Response.objects.count() == 0


def test_parquet_rows_carry_episodes_as_json_text_or_as_lists(project, tmp_path):
    as_text = tmp_path / "text.parquet"
    pq.write_table(
        pa.Table.from_pylist(
            [
                {
                    **episode_row(i),
                    "messages": json.dumps(episode_row(i)["messages"]),
                    "final_state": json.dumps(episode_row(i)["final_state"]),
                    "metadata": json.dumps(episode_row(i)["metadata"]),
                }
                for i in range(2)
            ]
        ),
        as_text,
    )
    nested = tmp_path / "nested.parquet"
    pq.write_table(
        pa.Table.from_pylist(
            [
                {
                    "task_id": "t2",
                    "model": "agent",
                    "messages": refund_messages(),
                    "sample_index": 0,
                }
            ]
        ),
        nested,
    )
    for path in (as_text, nested):
        with path.open("rb") as upload:
            result = services.responses_import_file(
                project=project, upload=upload, filename=path.name, format="parquet"
            )
        assert result.ok, result.errors
    stored = Response.objects.get(task__external_id="t1", sample_index=1)
    assert stored.episode.final_state == {"orders": {"A1": {"refunded": True, "note": None}}}
    from_lists = Response.objects.get(task__external_id="t2")
    assert from_lists.episode == Episode.parse(refund_messages())
